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

/// The SMTP server of the mail tests: aiosmtpd (PyPI), from the interpreter the test command
/// installs it in (`TEST_SMTPD_PYTHON`).
struct Smtpd(std::process::Child);

impl Drop for Smtpd {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts aiosmtpd on `port`, offering STARTTLS with `pki`'s server certificate and refusing
/// mail before it, storing what it receives in the maildir `maildir`.
fn smtpd(python: &Path, port: u16, maildir: &Path, pki: &Path) -> Smtpd {
    let child = std::process::Command::new(python)
        .args(["-m", "aiosmtpd", "-n", "-l", &format!("127.0.0.1:{port}")])
        .arg("--tlscert")
        .arg(pki.join("server.pem"))
        .arg("--tlskey")
        .arg(pki.join("server.key"))
        .args(["-c", "aiosmtpd.handlers.Mailbox"])
        .arg(maildir)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "aiosmtpd did not start");
        std::thread::sleep(Duration::from_millis(100));
    }
    Smtpd(child)
}

/// The messages the SMTP server received, quoted-printable soft breaks undone.
fn received(maildir: &Path) -> Vec<String> {
    std::fs::read_dir(maildir.join("new"))
        .map(|dir| {
            dir.filter_map(Result::ok)
                .filter_map(|e| std::fs::read_to_string(e.path()).ok())
                .map(|m| m.replace("=\r\n", "").replace("=\n", ""))
                .collect()
        })
        .unwrap_or_default()
}

fn wait_for(maildir: &Path, count: usize, within: Duration) -> Vec<String> {
    let deadline = Instant::now() + within;
    loop {
        let got = received(maildir);
        if got.len() >= count {
            return got;
        }
        assert!(
            Instant::now() < deadline,
            "{} of {count} messages received",
            got.len()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn reset_link(d: &str, email: &str) -> String {
    run_ok(ims().args(["user", "reset-link", "--data-dir", d, "--email", email]))
        .trim()
        .to_owned()
}

#[test]
fn smtp_delivery_over_starttls_survives_the_server_and_the_ims_going_down() {
    let Some(python) = std::env::var_os("TEST_SMTPD_PYTHON").map(std::path::PathBuf::from) else {
        assert!(
            std::env::var_os("CI").is_none(),
            "TEST_SMTPD_PYTHON is not set: the test command installs aiosmtpd for this test"
        );
        eprintln!("!!! SKIPPED: no SMTP server for the mail test (run it through scripts/test)");
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let d = dir.to_str().unwrap();
    // A first start makes the PKI whose server certificate the SMTP server presents.
    let (server, upj) = up(&dir, &[]);
    server.stop();
    let ca = Path::new(upj["ca_cert"].as_str().unwrap()).to_owned();
    let pki = ca.parent().unwrap().to_owned();
    let port = free_port();
    let maildir = tmp.path().join("maildir");
    let mut smtp = Some(smtpd(&python, port, &maildir, &pki));
    let url = format!("smtp://127.0.0.1:{port}");
    let env = [
        ("IMS_SMTP_URL", url.as_str()),
        ("IMS_SMTP_CA_CERT", ca.to_str().unwrap()),
        ("IMS_MAIL_FROM", "Acme IMS <ims@acme.example>"),
    ];
    let (server, upj) = up(&dir, &env);
    assert!(upj["mail_dir"].is_null(), "with SMTP, no mail folder: {upj}");
    let pw = tmp.path().join("pw");
    std::fs::write(&pw, "a long enough password 1\n").unwrap();
    for email in ["jane.doe@example.com", "joe.bloggs@example.com"] {
        run_ok(
            ims()
                .args([
                    "user",
                    "create",
                    "--data-dir",
                    d,
                    "--email",
                    email,
                    "--password-file",
                ])
                .arg(&pw),
        );
    }

    let first = reset_link(d, "jane.doe@example.com");
    let got = wait_for(&maildir, 1, Duration::from_secs(30));
    assert!(got[0].contains(&first), "{}", got[0]);
    assert!(
        got[0].contains("From: \"Acme IMS\" <ims@acme.example>"),
        "{}",
        got[0]
    );
    assert!(got[0].contains("Subject: Choose a new password"), "{}", got[0]);

    // The SMTP server goes down: the message waits. The IMS restarts meanwhile; the server comes
    // back; the message arrives, once (the first retry is a minute after the failed attempt).
    drop(smtp.take());
    let second = reset_link(d, "joe.bloggs@example.com");
    std::thread::sleep(Duration::from_secs(4));
    assert_eq!(received(&maildir).len(), 1);
    server.stop();
    let (server, _) = up(&dir, &env);
    smtp = Some(smtpd(&python, port, &maildir, &pki));
    let got = wait_for(&maildir, 2, Duration::from_secs(120));
    assert!(got.iter().any(|m| m.contains(&second)), "{got:?}");
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(received(&maildir).len(), 2, "nothing twice");
    server.stop();
    drop(smtp);
}
