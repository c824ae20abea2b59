//! Delivery of the IMS's outbox: the sender every server runs, and the folder of `.eml` files
//! that stands in for an SMTP server when none is configured (`ims up`), so that invitations
//! and reset links can be read on the machine itself.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use anyhow::{Context as _, Result};
use lettre::message::{Mailbox, MultiPart};
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
use lettre::transport::smtp::PoolConfig;
use lettre::{AsyncSmtpTransport, AsyncTransport as _, Message, Tokio1Executor};

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

/// Hands each message to an SMTP server: `smtp://` upgrades with STARTTLS (required: a server
/// that does not offer it is refused, so no message goes out in clear), `smtps://` speaks TLS
/// from the start.
pub struct Smtp {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
    domain: String,
}

/// How the sender reaches its SMTP server (configuration).
pub struct SmtpSettings<'a> {
    pub url: &'a str,
    pub password: Option<&'a str>,
    /// PEM of the authority behind the server's certificate, beside the system's.
    pub ca_pem: Option<&'a [u8]>,
    pub from: Mailbox,
    pub domain: &'a str,
}

impl Smtp {
    pub fn new(s: SmtpSettings<'_>) -> Result<Self> {
        let url = url::Url::parse(s.url).with_context(|| "smtp_url is not a URL".to_owned())?;
        let host = url
            .host_str()
            .context("smtp_url names no host")?
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned();
        let implicit = match url.scheme() {
            "smtp" => false,
            "smtps" => true,
            other => anyhow::bail!("smtp_url: {other}:// is not smtp:// or smtps://"),
        };
        let mut tls = TlsParameters::builder(host.clone());
        if let Some(pem) = s.ca_pem {
            tls = tls.add_root_certificate(
                Certificate::from_pem(pem).context("smtp_ca_cert holds no certificate")?,
            );
        }
        let tls = tls.build_rustls().context("smtp TLS settings")?;
        let port = url.port().unwrap_or(if implicit { 465 } else { 587 });
        let mut builder = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(host)
            .port(port)
            .timeout(Some(Duration::from_secs(30)))
            // As many connections as messages the sender has in flight.
            .pool_config(PoolConfig::new().max_size(ims_identity::mail::IN_FLIGHT as u32))
            .tls(if implicit {
                Tls::Wrapper(tls)
            } else {
                Tls::Required(tls)
            });
        if !url.username().is_empty() {
            let user = percent_decoded(url.username());
            let password = s
                .password
                .map(str::to_owned)
                .or_else(|| url.password().map(percent_decoded))
                .context("smtp_url names a user but no smtp_password is set")?;
            builder = builder.credentials(Credentials::new(user, password));
        }
        Ok(Smtp {
            transport: builder.build(),
            from: s.from,
            domain: s.domain.to_owned(),
        })
    }
}

/// A URL's user or password as written, percent-decoded (a `+` there is a plus, not a space as in
/// a form).
fn percent_decoded(s: &str) -> String {
    percent_encoding::percent_decode_str(s)
        .decode_utf8_lossy()
        .into_owned()
}

#[async_trait::async_trait]
impl MailTransport for Smtp {
    async fn deliver(&self, mail: &Mail) -> Result<(), Refusal> {
        let message = message(mail, &self.from, &self.domain)?;
        match self.transport.send(message).await {
            Ok(_) => Ok(()),
            // A 5xx answer will not change; anything else (4xx, no connection, TLS, timeouts) may.
            Err(e) if e.is_permanent() => Err(Refusal::Permanent(e.to_string())),
            Err(e) => Err(Refusal::Transient(e.to_string())),
        }
    }
}

/// The sender address: `mail_from`, else `IMS <no-reply@DOMAIN>`.
fn sender(config: &crate::config::Config) -> Result<Mailbox> {
    let from = config
        .mail_from
        .clone()
        .unwrap_or_else(|| format!("IMS <no-reply@{}>", config.domain));
    from.parse()
        .with_context(|| format!("mail_from {from:?} is not a mailbox"))
}

/// The SMTP transport the configuration names, if it names one.
fn smtp_from_config(config: &crate::config::Config) -> Result<Option<Smtp>> {
    let Some(url) = config.smtp_url.as_deref() else {
        return Ok(None);
    };
    let ca_pem = match &config.smtp_ca_cert {
        Some(path) => Some(std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?),
        None => None,
    };
    Smtp::new(SmtpSettings {
        url,
        password: config.smtp_password.as_deref(),
        ca_pem: ca_pem.as_deref(),
        from: sender(config)?,
        domain: &config.domain,
    })
    .map(Some)
}

/// Starts the sender: to the configured SMTP server, else to `.eml` files under `eml_dir` when
/// given (`ims up`); with neither, mail stays queued and a warning says so (`ims serve`).
/// Returns the folder the mail is written to, if it is one.
pub fn start(
    config: &crate::config::Config,
    store: Arc<dyn OutboxStore>,
    eml_dir: Option<&Path>,
) -> Result<Option<PathBuf>> {
    let (transport, folder): (Arc<dyn MailTransport>, _) = match (smtp_from_config(config)?, eml_dir) {
        (Some(smtp), _) => (Arc::new(smtp), None),
        (None, Some(dir)) => (
            Arc::new(EmlFolder::new(dir, sender(config)?, &config.domain)?),
            Some(dir.to_owned()),
        ),
        (None, None) => {
            tracing::warn!("no smtp_url: mail stays in the outbox until one is configured");
            return Ok(None);
        }
    };
    spawn_sender(store, transport);
    Ok(folder)
}

/// Delivers what is due, every couple of seconds, for as long as the server runs; a full round
/// is followed by the next at once (a migration's invitations are due together).
fn spawn_sender(store: Arc<dyn OutboxStore>, transport: Arc<dyn MailTransport>) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(TICK);
        loop {
            tick.tick().await;
            loop {
                match deliver_due(store.as_ref(), transport.as_ref(), Now::system()).await {
                    Ok(round) => {
                        if round.sent + round.deferred + round.failed > 0 {
                            tracing::info!(
                                sent = round.sent,
                                deferred = round.deferred,
                                failed = round.failed,
                                "mail delivered"
                            );
                        }
                        if !round.full() {
                            break;
                        }
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "mail delivery round failed");
                        break;
                    }
                }
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn smtp_credentials_in_the_url_are_percent_decoded_literally() {
        let url = url::Url::parse("smtp://ops%40acme+mail:p%2Fw+d@mail.example:2525").unwrap();
        assert_eq!(percent_decoded(url.username()), "ops@acme+mail");
        assert_eq!(percent_decoded(url.password().unwrap()), "p/w+d");
    }

    // Within a runtime: the pooled transport closes its connections on the runtime when dropped.
    #[tokio::test]
    async fn only_smtp_and_smtps_are_taken() {
        let settings = |url| SmtpSettings {
            url,
            password: None,
            ca_pem: None,
            from: "IMS <no-reply@ims.local>".parse().unwrap(),
            domain: "ims.local",
        };
        assert!(Smtp::new(settings("smtp://127.0.0.1:2525")).is_ok());
        assert!(Smtp::new(settings("smtps://mail.example")).is_ok());
        let refused = Smtp::new(settings("http://mail.example")).err().unwrap();
        assert!(
            refused.to_string().contains("not smtp:// or smtps://"),
            "{refused}"
        );
        let no_password = Smtp::new(settings("smtp://ops@mail.example")).err().unwrap();
        assert!(no_password.to_string().contains("smtp_password"), "{no_password}");
    }
}
