//! The outbox: queued with its audit line, taken once per lease however many senders ask,
//! retried, sent, failed for good, resent.

use ims_identity::mail::{
    deliver_due, retry_delay_secs, Compose, Mail, MailKind, MailStatus, MailTransport, Refusal, Round,
    MAX_ATTEMPTS,
};
use ims_identity::store::{AuditQuery, AuditStore, OutboxStore};

use crate::harness::*;

fn compose<'a>(org_id: &'a str, to: &'a str) -> Compose<'a> {
    Compose {
        org_id,
        kind: MailKind::Invitation,
        to,
        subject: "You are invited to Acme",
        text: "Open https://ims.example/invite/x",
        html: "<p>Open <a href=\"https://ims.example/invite/x\">the link</a></p>",
    }
}

#[tokio::test]
async fn mail_moves_through_the_outbox_on_both_backends() {
    for f in each_backend().await {
        let s = &f.store;
        let first = Mail::new(compose("O1", "jane@example.com"), now());
        let second = Mail::new(compose("O1", "joe@example.com"), now().plus_secs(1));
        let elsewhere = Mail::new(compose("O2", "ann@example.com"), now().plus_secs(2));
        for m in [&first, &second, &elsewhere] {
            s.queue_mail(m, &event("mail.queue")).await.unwrap();
        }
        assert_eq!(s.mail(&first.mail_id).await.unwrap().unwrap(), first);
        let audited = s
            .audit(&AuditQuery {
                action_prefix: Some("mail.".into()),
                limit: 10,
            })
            .await
            .unwrap();
        assert_eq!(audited.len(), 3);

        // Two senders at once: each message goes to one of them, attempt counted, lease set.
        let at = now().plus_secs(5);
        let (a, b) = tokio::join!(s.take_due_mail(at, 120, 10), s.take_due_mail(at, 120, 10));
        let (a, b) = (a.unwrap(), b.unwrap());
        assert_eq!(a.len() + b.len(), 3, "{a:?} {b:?}");
        let taken: Vec<&Mail> = a.iter().chain(&b).collect();
        assert!(taken
            .iter()
            .all(|m| m.attempts == 1 && m.next_attempt_at == at.plus_secs(120)));
        // While the lease runs nobody takes them again; after it, a stopped sender's are due.
        assert!(s
            .take_due_mail(at.plus_secs(60), 120, 10)
            .await
            .unwrap()
            .is_empty());

        s.mails_sent(std::slice::from_ref(&first.mail_id), at.plus_secs(1))
            .await
            .unwrap();
        s.mail_failed(
            &second.mail_id,
            "451 4.3.0 try again later",
            Some(at.plus_secs(60)),
        )
        .await
        .unwrap();
        s.mail_failed(&elsewhere.mail_id, "550 5.1.1 no such user", None)
            .await
            .unwrap();
        let sent = s.mail(&first.mail_id).await.unwrap().unwrap();
        assert_eq!(
            (sent.status, sent.sent_at),
            (MailStatus::Sent, Some(at.plus_secs(1)))
        );
        let later = s.mail(&second.mail_id).await.unwrap().unwrap();
        assert_eq!(later.status, MailStatus::Queued);
        assert_eq!(later.last_error.as_deref(), Some("451 4.3.0 try again later"));
        let refused = s.mail(&elsewhere.mail_id).await.unwrap().unwrap();
        assert_eq!(refused.status, MailStatus::Failed);

        // The deferred one comes back at its time, and only it.
        let again = s.take_due_mail(at.plus_secs(60), 120, 10).await.unwrap();
        assert_eq!(
            again
                .iter()
                .map(|m| (m.mail_id.as_str(), m.attempts))
                .collect::<Vec<_>>(),
            vec![(second.mail_id.as_str(), 2)]
        );
        // A late answer for a message already sent changes nothing.
        s.mail_failed(&first.mail_id, "421 too late", Some(at))
            .await
            .unwrap();
        assert_eq!(
            s.mail(&first.mail_id).await.unwrap().unwrap().status,
            MailStatus::Sent
        );

        // An administrator resends the refused one: queued, due now, attempts afresh.
        assert!(s
            .resend_mail(&elsewhere.mail_id, at.plus_secs(100), &event("mail.resend"))
            .await
            .unwrap());
        assert!(!s
            .resend_mail("no-such-mail", at, &event("mail.resend"))
            .await
            .unwrap());
        let resent = s.take_due_mail(at.plus_secs(100), 120, 10).await.unwrap();
        assert_eq!(resent.len(), 1);
        assert_eq!(
            (resent[0].mail_id.as_str(), resent[0].attempts),
            (elsewhere.mail_id.as_str(), 1)
        );

        // Each organisation sees its own messages, newest first, page by page.
        let page = s.outbox("O1", 0, 10).await.unwrap();
        assert_eq!(
            page.iter().map(|m| m.to.as_str()).collect::<Vec<_>>(),
            vec!["joe@example.com", "jane@example.com"]
        );
        assert_eq!(s.outbox("O1", 1, 10).await.unwrap().len(), 1);
        assert_eq!(s.outbox("O2", 0, 10).await.unwrap().len(), 1);
        f.cleanup().await;
    }
}

/// A mail server that answers by recipient: `later@` is refused for now, `nobody@` for good,
/// and the rest are taken. It counts what it was handed.
#[derive(Default)]
struct Server {
    handed: std::sync::Mutex<Vec<String>>,
}

#[async_trait::async_trait]
impl MailTransport for Server {
    async fn deliver(&self, mail: &Mail) -> Result<(), Refusal> {
        self.handed.lock().unwrap().push(mail.to.clone());
        match mail.to.split('@').next() {
            Some("later") => Err(Refusal::Transient("451 4.4.1 no answer from host".into())),
            Some("nobody") => Err(Refusal::Permanent("550 5.1.1 no such user".into())),
            _ => Ok(()),
        }
    }
}

#[tokio::test]
async fn delivery_rounds_send_defer_and_give_up_on_both_backends() {
    for f in each_backend().await {
        let s = &f.store;
        let mails: Vec<Mail> = ["jane@example.com", "later@example.com", "nobody@example.com"]
            .into_iter()
            .map(|to| Mail::new(compose("O1", to), now()))
            .collect();
        for m in &mails {
            s.queue_mail(m, &event("mail.queue")).await.unwrap();
        }
        let server = Server::default();
        let round = deliver_due(s, &server, now()).await.unwrap();
        assert_eq!(
            round,
            Round {
                sent: 1,
                deferred: 1,
                failed: 1
            }
        );
        let state = |i: usize| {
            let id = mails[i].mail_id.clone();
            async move { s.mail(&id).await.unwrap().unwrap() }
        };
        assert_eq!(state(0).await.status, MailStatus::Sent);
        let deferred = state(1).await;
        assert_eq!(deferred.status, MailStatus::Queued);
        assert_eq!(deferred.next_attempt_at, now().plus_secs(retry_delay_secs(1)));
        assert_eq!(state(2).await.status, MailStatus::Failed);
        assert_eq!(
            state(2).await.last_error.as_deref(),
            Some("550 5.1.1 no such user")
        );

        // Nothing due before the retry; then the deferred one alone, until its attempts run out.
        assert_eq!(
            deliver_due(s, &server, now().plus_secs(30)).await.unwrap(),
            Round::default()
        );
        let mut at = now();
        for _ in 1..MAX_ATTEMPTS {
            at = s.mail(&mails[1].mail_id).await.unwrap().unwrap().next_attempt_at;
            deliver_due(s, &server, at).await.unwrap();
        }
        let given_up = state(1).await;
        assert_eq!(
            (given_up.status, given_up.attempts),
            (MailStatus::Failed, MAX_ATTEMPTS)
        );
        assert!(deliver_due(s, &server, at.plus_secs(86_400)).await.unwrap() == Round::default());
        let handed = server.handed.lock().unwrap().clone();
        assert_eq!(
            handed.iter().filter(|t| t.starts_with("later@")).count(),
            MAX_ATTEMPTS as usize
        );
        assert_eq!(handed.iter().filter(|t| t.starts_with("jane@")).count(), 1);
        f.cleanup().await;
    }
}
