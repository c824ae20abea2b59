//! Mail the IMS sends (invitations, password resets, "you now have access"), as its outbox keeps
//! it. A message is written in the same transaction as the change that causes it, so that no
//! change is left without its message and no message goes out for a change that did not happen;
//! a sender delivers it afterwards, at least once, under a stable id that becomes its
//! `Message-ID` (a receiver that sees it twice can tell). A delivery that fails is tried again
//! later, with a growing delay, across restarts, until the server refuses it for good or the
//! attempts run out; an administrator can queue it again.

pub mod messages;

use ims_core::secret::uuid_like;
use ims_core::Now;

/// Why a message is sent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MailKind {
    Invitation,
    PasswordReset,
    /// "You now have access to <product instance>".
    Access,
}

impl MailKind {
    pub const fn as_str(self) -> &'static str {
        match self {
            MailKind::Invitation => "invitation",
            MailKind::PasswordReset => "password_reset",
            MailKind::Access => "access",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [MailKind::Invitation, MailKind::PasswordReset, MailKind::Access]
            .into_iter()
            .find(|k| k.as_str() == s)
    }
}

/// Where a message stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MailStatus {
    /// Waiting for its next attempt (`next_attempt_at`).
    Queued,
    Sent,
    /// Refused for good, or out of attempts: `last_error` says what the server answered.
    Failed,
}

impl MailStatus {
    pub const fn as_str(self) -> &'static str {
        match self {
            MailStatus::Queued => "queued",
            MailStatus::Sent => "sent",
            MailStatus::Failed => "failed",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [MailStatus::Queued, MailStatus::Sent, MailStatus::Failed]
            .into_iter()
            .find(|k| k.as_str() == s)
    }
}

/// One message of the outbox.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mail {
    /// Stable across attempts: the `Message-ID` is made from it.
    pub mail_id: String,
    pub org_id: String,
    pub kind: MailKind,
    pub to: String,
    pub subject: String,
    pub text: String,
    pub html: String,
    pub created_at: Now,
    pub status: MailStatus,
    /// Attempts made so far (each counted when a sender takes the message).
    pub attempts: u32,
    pub next_attempt_at: Now,
    /// The server's answer to the last failed attempt.
    pub last_error: Option<String>,
    pub sent_at: Option<Now>,
}

/// What a message says, before it is queued.
#[derive(Clone, Copy, Debug)]
pub struct Compose<'a> {
    pub org_id: &'a str,
    pub kind: MailKind,
    pub to: &'a str,
    pub subject: &'a str,
    pub text: &'a str,
    pub html: &'a str,
}

impl Mail {
    /// A message due at once.
    pub fn new(compose: Compose<'_>, now: Now) -> Self {
        Mail {
            mail_id: uuid_like(),
            org_id: compose.org_id.to_owned(),
            kind: compose.kind,
            to: compose.to.to_owned(),
            subject: compose.subject.to_owned(),
            text: compose.text.to_owned(),
            html: compose.html.to_owned(),
            created_at: now,
            status: MailStatus::Queued,
            attempts: 0,
            next_attempt_at: now,
            last_error: None,
            sent_at: None,
        }
    }

    /// The `Message-ID` header: the same for every attempt of this message.
    pub fn message_id(&self, domain: &str) -> String {
        format!("<{}@{}>", self.mail_id, domain)
    }
}

/// Attempts before a message that keeps failing is given up (with the delays below, about three
/// days of trying).
pub const MAX_ATTEMPTS: u32 = 20;

/// How long a sender holds a message it took before another may take it again: a sender that
/// stopped mid-delivery leaves the message due again after this (hence "at least once").
pub const LEASE_SECS: i64 = 120;

/// The delay before the next attempt after `attempts` failed ones: a minute, doubling, at most
/// six hours.
pub fn retry_delay_secs(attempts: u32) -> i64 {
    let doublings = attempts.saturating_sub(1).min(16);
    60_i64.saturating_mul(1 << doublings).min(6 * 3600)
}

/// When a message that failed its `attempts`th attempt at `now` is tried again; `None` when it
/// is given up.
pub fn next_attempt(attempts: u32, now: Now) -> Option<Now> {
    (attempts < MAX_ATTEMPTS).then(|| now.plus_secs(retry_delay_secs(attempts)))
}

/// Why a delivery attempt failed, as the server (or the folder) answered.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// Worth trying again later (a 4xx answer, a server that cannot be reached).
    Transient(String),
    /// Never worth trying again (a 5xx answer: no such mailbox, refused sender).
    Permanent(String),
}

/// Where messages go: an SMTP server, or a folder of `.eml` files when none is configured.
#[async_trait::async_trait]
pub trait MailTransport: Send + Sync {
    /// Hands one message over; `Ok` once the server (or the folder) holds it.
    async fn deliver(&self, mail: &Mail) -> Result<(), Refusal>;
}

/// What one round of delivery did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Round {
    pub sent: usize,
    pub deferred: usize,
    pub failed: usize,
}

/// Messages taken per round.
pub const ROUND_SIZE: u32 = 200;

/// Messages handed to the transport at once within a round (an SMTP transport keeps a pool of
/// connections: one per message in flight).
pub const IN_FLIGHT: usize = 32;

impl Round {
    /// Whether the round took all it could: more may be due at once.
    pub fn full(&self) -> bool {
        self.sent + self.deferred + self.failed >= ROUND_SIZE as usize
    }
}

/// One round of delivery: takes the messages due at `now` and hands them to `transport`, a few
/// at a time, recording what became of each. A message whose outcome cannot be recorded (the
/// database gone meanwhile) stays taken until its lease ends and is then tried again: delivered
/// at least once.
pub async fn deliver_due(
    store: &dyn crate::store::OutboxStore,
    transport: &dyn MailTransport,
    now: Now,
) -> ims_core::error::StoreResult<Round> {
    use futures_util::StreamExt as _;
    let taken = store.take_due_mail(now, LEASE_SECS, ROUND_SIZE).await?;
    let outcomes: Vec<_> = futures_util::stream::iter(taken)
        .map(|mail| async move {
            let outcome = transport.deliver(&mail).await;
            (mail, outcome)
        })
        .buffer_unordered(IN_FLIGHT)
        .collect()
        .await;
    let mut round = Round::default();
    let mut sent = Vec::with_capacity(outcomes.len());
    for (mail, outcome) in outcomes {
        match outcome {
            Ok(()) => sent.push(mail.mail_id),
            Err(Refusal::Transient(answer)) => match next_attempt(mail.attempts, now) {
                Some(at) => {
                    store.mail_failed(&mail.mail_id, &answer, Some(at)).await?;
                    round.deferred += 1;
                }
                None => {
                    store.mail_failed(&mail.mail_id, &answer, None).await?;
                    round.failed += 1;
                }
            },
            Err(Refusal::Permanent(answer)) => {
                store.mail_failed(&mail.mail_id, &answer, None).await?;
                round.failed += 1;
            }
        }
    }
    // The round's deliveries recorded together (refusals are few and each has its own answer).
    store.mails_sent(&sent, now).await?;
    round.sent = sent.len();
    Ok(round)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_grow_to_six_hours_then_stop() {
        assert_eq!(retry_delay_secs(1), 60);
        assert_eq!(retry_delay_secs(2), 120);
        assert_eq!(retry_delay_secs(5), 960);
        assert_eq!(retry_delay_secs(30), 6 * 3600);
        let now = Now::from_millis(1_000_000);
        assert_eq!(next_attempt(1, now), Some(now.plus_secs(60)));
        assert_eq!(next_attempt(MAX_ATTEMPTS, now), None);
        let total: i64 = (1..MAX_ATTEMPTS).map(retry_delay_secs).sum();
        assert!((2 * 86_400..4 * 86_400).contains(&total), "{total}");
    }

    #[test]
    fn kinds_and_states_round_trip() {
        for k in [MailKind::Invitation, MailKind::PasswordReset, MailKind::Access] {
            assert_eq!(MailKind::parse(k.as_str()), Some(k));
        }
        for s in [MailStatus::Queued, MailStatus::Sent, MailStatus::Failed] {
            assert_eq!(MailStatus::parse(s.as_str()), Some(s));
        }
        assert_eq!(MailKind::parse("spam"), None);
    }

    #[test]
    fn each_message_has_its_own_message_id_made_from_its_stable_id() {
        let at = Now::from_millis(1);
        let compose = Compose {
            org_id: "O",
            kind: MailKind::Invitation,
            to: "jane@example.com",
            subject: "s",
            text: "t",
            html: "<p>t</p>",
        };
        let (a, b) = (Mail::new(compose, at), Mail::new(compose, at));
        assert_eq!(a.message_id("ims.local"), format!("<{}@ims.local>", a.mail_id));
        assert_ne!(a.message_id("ims.local"), b.message_id("ims.local"));
    }
}
