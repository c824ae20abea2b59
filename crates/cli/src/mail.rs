//! Delivery of the IMS's outbox: the sender every server runs, and the folder of `.eml` files
//! that stands in for an SMTP server when none is configured (`ims up`), so that invitations
//! and reset links can be read on the machine itself.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use anyhow::{Context as _, Result};
use lettre::message::{Mailbox, MultiPart};
use lettre::Message;

use ims_core::Now;
use ims_identity::mail::{deliver_due, Mail, MailTransport, Refusal};
use ims_identity::store::OutboxStore;

/// How often the sender looks for messages due.
const TICK: Duration = Duration::from_secs(2);

/// The message as it goes out: plain text and HTML alternatives, and the outbox's stable id as
/// its `Message-ID`, so that a message delivered twice is recognisably the same.
pub fn message(mail: &Mail, from: &Mailbox, domain: &str) -> Result<Message, Refusal> {
    let to: Mailbox = mail
        .to
        .parse()
        .map_err(|e| Refusal::Permanent(format!("not a mailbox: {e}")))?;
    let sent = UNIX_EPOCH + Duration::from_millis(u64::try_from(mail.created_at.millis()).unwrap_or(0));
    Message::builder()
        .from(from.clone())
        .to(to)
        .subject(mail.subject.clone())
        .message_id(Some(mail.message_id(domain)))
        .date(sent)
        .multipart(MultiPart::alternative_plain_html(
            mail.text.clone(),
            mail.html.clone(),
        ))
        .map_err(|e| Refusal::Permanent(format!("the message cannot be built: {e}")))
}

/// Writes each message to `<dir>/<mail id>.eml`. A message delivered again (at least once)
/// rewrites its own file, never a second one.
pub struct EmlFolder {
    dir: PathBuf,
    from: Mailbox,
    domain: String,
}

impl EmlFolder {
    pub fn new(dir: &Path, from: Mailbox, domain: &str) -> Result<Self> {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        Ok(EmlFolder {
            dir: dir.to_owned(),
            from,
            domain: domain.to_owned(),
        })
    }
}

#[async_trait::async_trait]
impl MailTransport for EmlFolder {
    async fn deliver(&self, mail: &Mail) -> Result<(), Refusal> {
        let bytes = message(mail, &self.from, &self.domain)?.formatted();
        // Written aside and renamed, so that a reader never sees half a message.
        let path = self.dir.join(format!("{}.eml", mail.mail_id));
        let partial = self.dir.join(format!(".{}.eml.partial", mail.mail_id));
        let written = async {
            tokio::fs::write(&partial, &bytes).await?;
            tokio::fs::rename(&partial, &path).await
        };
        written
            .await
            .map_err(|e| Refusal::Transient(format!("cannot write {}: {e}", path.display())))
    }
}

/// Delivers what is due, every couple of seconds, for as long as the server runs.
pub fn spawn_sender(store: Arc<dyn OutboxStore>, transport: Arc<dyn MailTransport>) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(TICK);
        loop {
            tick.tick().await;
            match deliver_due(store.as_ref(), transport.as_ref(), Now::system()).await {
                Ok(round) if round.sent + round.deferred + round.failed > 0 => {
                    tracing::info!(
                        sent = round.sent,
                        deferred = round.deferred,
                        failed = round.failed,
                        "mail delivered"
                    );
                }
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "mail delivery round failed"),
            }
        }
    });
}
