//! `ims up` without an SMTP server: the outbox's messages land as `.eml` files under
//! `DIR/mail/`, once each, including those queued while the server was down.

use std::path::Path;
use std::time::{Duration, Instant};

use ims_identity::mail::{Compose, Mail, MailKind, MailStatus};
use ims_identity::store::{AuditStore as _, OutboxStore as _};
use ims_store::{Options, SqlStore};

use crate::harness::*;

fn queue(rt: &tokio::runtime::Runtime, store: &SqlStore, to: &str) -> Mail {
    let now = ims_core::Now::system();
    let mail = Mail::new(
        Compose {
            org_id: "O1",
            kind: MailKind::PasswordReset,
            to,
            subject: "Reset your password for Acme",
            text: "Open https://ims.example/ims/reset/abc within 24 hours.",
            html: "<p>Open <a href=\"https://ims.example/ims/reset/abc\">this link</a> within 24 hours.</p>",
        },
        now,
    );
    let audit = ims_core::audit::Context::new(now, "test").event(
        "mail.queue",
        &mail.mail_id,
        "success",
        serde_json::json!({}),
    );
    rt.block_on(store.queue_mail(&mail, &audit)).unwrap();
    mail
}

/// Waits for the message's file and returns its text.
fn delivered(dir: &Path, mail: &Mail) -> String {
    let path = dir.join(format!("{}.eml", mail.mail_id));
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Ok(text) = std::fs::read_to_string(&path) {
            return text;
        }
        assert!(Instant::now() < deadline, "{} was not written", path.display());
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn without_smtp_up_writes_each_message_as_an_eml_file_once() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let (server, upj) = up(&dir, &[]);
    let mail_dir = dir.join("mail");
    assert_eq!(
        upj["mail_dir"].as_str(),
        Some(mail_dir.to_str().unwrap()),
        "{upj}"
    );

    let rt = tokio::runtime::Runtime::new().unwrap();
    let opts = Options::new(upj["database_url"].as_str().unwrap());
    let store = rt
        .block_on(SqlStore::open(&opts, ims_core::Now::system()))
        .unwrap();
    let first = queue(&rt, &store, "jane.doe@example.com");
    let eml = delivered(&mail_dir, &first);
    for header in [
        "To: jane.doe@example.com".to_owned(),
        "Subject: Reset your password for Acme".to_owned(),
        format!("Message-ID: <{}@ims.local>", first.mail_id),
        "From: IMS <no-reply@ims.local>".to_owned(),
        "Content-Type: multipart/alternative".to_owned(),
    ] {
        assert!(eml.contains(&header), "{header} missing from:\n{eml}");
    }
    assert!(eml.contains("Content-Type: text/plain") && eml.contains("Content-Type: text/html"));
    assert!(eml.contains("https://ims.example/ims/reset/abc"), "{eml}");
    let sent = rt.block_on(store.mail(&first.mail_id)).unwrap().unwrap();
    assert_eq!((sent.status, sent.attempts), (MailStatus::Sent, 1));

    // Queued while the server is down: delivered after it starts again, and nothing twice.
    server.stop();
    let second = queue(&rt, &store, "joe@example.com");
    let (server, _) = up(&dir, &[]);
    assert!(delivered(&mail_dir, &second).contains("To: joe@example.com"));
    let files = std::fs::read_dir(&mail_dir)
        .unwrap()
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().ends_with(".eml"))
        .count();
    assert_eq!(files, 2);
    let audit = rt
        .block_on(store.audit(&ims_identity::store::AuditQuery {
            action_prefix: Some("mail.".into()),
            limit: 10,
        }))
        .unwrap();
    assert_eq!(audit.len(), 2);
    let log = server.stop();
    assert!(log.contains("no SMTP server configured"), "{log}");
}
