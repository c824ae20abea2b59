//! People's accounts: sessions ended, lock-out without enumeration, one-time codes, logout,
//! password changes and reset links.

use http::StatusCode;
use ims_core::audit::Context;
use ims_core::keys::Algorithm;
use ims_core::lockout::ThrottleStore as _;
use ims_core::secret::Secret;
use ims_core::Now;
use ims_identity::service::FREE_FAILURES;
use serde_json::json;

use crate::harness::*;

#[tokio::test]
async fn disabling_a_password_change_or_end_sessions_end_sessions_and_refresh_tokens() {
    use ims_identity::people::{change_user, UserChange};
    let h = harness().await;
    let user = h.person("jane@example.com").await;
    let client = h.app_client().await;
    let ctx = Context::new(Now::system(), "test");
    for change in [
        UserChange::EndSessions,
        UserChange::SetPassword(Secret::new(PASSWORD)),
        UserChange::SetStatus(ims_identity::model::UserStatus::Disabled),
    ] {
        let mut b = Browser::default();
        let (_, to) = sign_in(&h, &mut b, &client, "jane@example.com", PASSWORD).await;
        let (_, tokens) = redeem(&h, &client, &query_of(&to)["code"]).await;
        // Sessions count from the millisecond after the change.
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        let label = format!("{change:?}");
        change_user(h.store.as_ref(), &user.user_id, change, &ctx)
            .await
            .unwrap();
        let (status, _) = refresh(&h, &client, tokens["refresh_token"].as_str().unwrap(), None).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{label}");
        let (_, headers, _) = b
            .get(&h.app, &authorize_path(&client, &[("prompt", "none")]))
            .await;
        assert_eq!(
            query_of(&location(&headers))["error"],
            "login_required",
            "{label}: browser session ended"
        );
        change_user(
            h.store.as_ref(),
            &user.user_id,
            UserChange::SetStatus(ims_identity::model::UserStatus::Active),
            &ctx,
        )
        .await
        .unwrap();
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    h.cleanup().await;
}

/// SECURITY 23 and 24: the lock-out numbers, one counter for every case of an email, and one
/// answer (status, body) for unknown email, wrong password, locked and disabled accounts.
#[tokio::test]
async fn lock_out_and_no_enumeration() {
    let h = harness().await;
    h.person("jane@example.com").await;
    let disabled = h.person("gone@example.com").await;
    ims_identity::people::change_user(
        h.store.as_ref(),
        &disabled.user_id,
        ims_identity::people::UserChange::SetStatus(ims_identity::model::UserStatus::Disabled),
        &Context::new(Now::system(), "test"),
    )
    .await
    .unwrap();
    let client = h.app_client().await;
    let strip = |html: &str| {
        html.replace(char::is_whitespace, "")
            .split("<formmethod")
            .next()
            .unwrap()
            .to_owned()
    };
    let mut answers = Vec::new();
    for (email, password) in [
        ("nobody@example.com", PASSWORD),
        ("jane@example.com", "wrong password"),
        ("gone@example.com", PASSWORD),
    ] {
        let (status, html) = sign_in(&h, &mut Browser::default(), &client, email, password).await;
        answers.push((status, strip(&html).replace(email, "EMAIL")));
    }
    assert!(answers.iter().all(|a| a == &answers[0]), "{answers:#?}");
    assert_eq!(answers[0].0, StatusCode::UNAUTHORIZED);
    // Four more failures in other cases of the email: the fifth locks for 30 s.
    for email in [
        "JANE@example.com",
        "Jane@Example.com",
        "jane@EXAMPLE.com",
        "jAnE@example.com",
    ] {
        sign_in(&h, &mut Browser::default(), &client, email, "wrong password").await;
    }
    let (failures, _, until) = h
        .store
        .failures(&h.org_id, "jane@example.com")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(failures, 5);
    let lock = until.millis() - Now::system().millis();
    assert!((25_000..=30_000).contains(&lock), "locked for {lock} ms");
    let (status, html) = sign_in(&h, &mut Browser::default(), &client, "jane@example.com", PASSWORD).await;
    assert_eq!(
        (status, strip(&html).replace("jane@example.com", "EMAIL")),
        answers[0].clone(),
        "locked: the right password gets the same answer"
    );
    // An attempt refused by the lock changes nothing.
    let (failures, _, still) = h
        .store
        .failures(&h.org_id, "jane@example.com")
        .await
        .unwrap()
        .unwrap();
    assert_eq!((failures, still), (5, until));
    h.cleanup().await;
}

/// Attempts are counted before the password is checked, in one statement: a burst of
/// concurrent guesses gets exactly five verifications before the lock, on both backends.
#[tokio::test]
async fn concurrent_guesses_are_let_in_five_at_a_time() {
    for db in [Db::Sqlite, Db::Postgres] {
        let Some(h) = harness_on(db, Algorithm::ES256).await else {
            continue;
        };
        let client = h.app_client().await;
        let mut tasks = Vec::new();
        for _ in 0..20 {
            let mut b = Browser::default();
            let app = h.app.clone();
            let path = authorize_path(&client, &[]);
            tasks.push(tokio::spawn(async move {
                let (_, headers, _) = b.get(&app, &path).await;
                let page = location(&headers);
                let (_, _, html) = b.get(&app, &page).await;
                b.post(
                    &app,
                    &page,
                    &[("csrf", &csrf_in(&html)), ("email", "burst@example.com")],
                )
                .await;
                b.post(&app, &page, &[("csrf", &csrf_in(&html)), ("password", "a guess")])
                    .await
                    .0
            }));
        }
        for t in tasks {
            assert_eq!(t.await.unwrap(), StatusCode::UNAUTHORIZED);
        }
        let (failures, _, _) = h
            .store
            .failures(&h.org_id, "burst@example.com")
            .await
            .unwrap()
            .unwrap();
        assert_eq!(failures, FREE_FAILURES, "only five attempts were let in");
        h.cleanup().await;
    }
}

/// SECURITY 23, timing: an unknown email and a wrong password both cost one Argon2id
/// verification. Tolerance: medians within 50 % of each other, plus 25 ms of scheduling noise.
#[tokio::test]
async fn unknown_email_and_wrong_password_take_about_as_long() {
    let h = harness().await;
    h.person("jane@example.com").await;
    let client = h.app_client().await;
    let mut median = Vec::new();
    for email in ["nobody@example.com", "jane@example.com"] {
        let mut times = Vec::new();
        for _ in 0..5 {
            let mut b = Browser::default();
            let (_, headers, _) = b.get(&h.app, &authorize_path(&client, &[])).await;
            let page = location(&headers);
            let (_, _, html) = b.get(&h.app, &page).await;
            b.post(&h.app, &page, &[("csrf", &csrf_in(&html)), ("email", email)])
                .await;
            let (_, _, html) = b.get(&h.app, &page).await;
            let started = std::time::Instant::now();
            b.post(
                &h.app,
                &page,
                &[("csrf", &csrf_in(&html)), ("password", "wrong password")],
            )
            .await;
            times.push(started.elapsed().as_secs_f64());
        }
        times.sort_by(f64::total_cmp);
        median.push(times[2]);
    }
    let (a, b) = (median[0], median[1]);
    assert!(
        (a - b).abs() <= 0.5 * a.max(b) + 0.025,
        "unknown {a:.3} s vs wrong password {b:.3} s"
    );
    h.cleanup().await;
}

#[tokio::test]
async fn one_time_codes_after_the_password() {
    let h = harness().await;
    let user = h.person("jane@example.com").await;
    let client = h.app_client().await;
    let e = ims_identity::people::enrol_totp(
        h.store.as_ref(),
        &h.master,
        &user.user_id,
        "Acme",
        &Context::new(Now::system(), "test"),
    )
    .await
    .unwrap();
    let key = base32_decode(&e.secret_base32);
    let mut b = Browser::default();
    let (status, html) = sign_in(&h, &mut b, &client, "jane@example.com", PASSWORD).await;
    assert_eq!(
        status,
        StatusCode::SEE_OTHER,
        "the password step moves on: {html}"
    );
    let page = html;
    let (_, _, html) = b.get(&h.app, &page).await;
    assert!(html.contains(r#"name="code""#), "{html}");
    let (status, _, html) = b
        .post(&h.app, &page, &[("csrf", &csrf_in(&html)), ("code", "000000")])
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let step = Now::system().secs() / ims_identity::totp::STEP_SECS;
    let code = ims_identity::totp::code_at(&key, step);
    let (status, headers, _) = b
        .post(&h.app, &page, &[("csrf", &csrf_in(&html)), ("code", &code)])
        .await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    let (_, tokens) = redeem(&h, &client, &query_of(&location(&headers))["code"]).await;
    assert_eq!(
        claims(tokens["id_token"].as_str().unwrap())["amr"],
        json!(["pwd", "otp", "mfa"])
    );
    // The same one-time code is accepted once.
    let mut again = Browser::default();
    let (_, page) = sign_in(&h, &mut again, &client, "jane@example.com", PASSWORD).await;
    let (_, _, html) = again.get(&h.app, &page).await;
    let (status, _, _) = again
        .post(&h.app, &page, &[("csrf", &csrf_in(&html)), ("code", &code)])
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "a replayed one-time code");
    // A recovery code works once.
    let recovery = e.recovery_codes[0].expose().to_owned();
    for expected in [StatusCode::SEE_OTHER, StatusCode::UNAUTHORIZED] {
        let mut b = Browser::default();
        let (_, page) = sign_in(&h, &mut b, &client, "jane@example.com", PASSWORD).await;
        let (_, _, html) = b.get(&h.app, &page).await;
        let (status, _, _) = b
            .post(&h.app, &page, &[("csrf", &csrf_in(&html)), ("code", &recovery)])
            .await;
        assert_eq!(status, expected);
    }
    h.cleanup().await;
}

pub(crate) fn base32_decode(s: &str) -> Vec<u8> {
    let (mut out, mut buffer, mut bits) = (Vec::new(), 0u32, 0u32);
    for c in s.bytes() {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'2'..=b'7' => c - b'2' + 26,
            _ => panic!("not base32"),
        };
        buffer = (buffer << 5) | u32::from(v);
        bits += 5;
        if bits >= 8 {
            bits -= 8;
            out.push((buffer >> bits) as u8);
        }
    }
    out
}

#[tokio::test]
async fn rp_initiated_logout() {
    let h = harness().await;
    h.person("jane@example.com").await;
    let client = h.app_client().await;
    let mut b = Browser::default();
    let (_, to) = sign_in(&h, &mut b, &client, "jane@example.com", PASSWORD).await;
    let (_, tokens) = redeem(&h, &client, &query_of(&to)["code"]).await;
    let id_token = tokens["id_token"].as_str().unwrap();
    // Without a hint: a confirmation form, nobody signed out by a link.
    let (status, _, html) = b.get(&h.app, "/ims/logout/v1").await;
    assert_eq!(status, StatusCode::OK);
    assert!(html.contains("Sign out?"));
    assert!(b.has("ims_sid"));
    // A link naming the client but no valid ID token of this person signs nobody out.
    h.person("mallory@example.com").await;
    let mut mallory = Browser::default();
    let (_, to) = sign_in(&h, &mut mallory, &client, "mallory@example.com", PASSWORD).await;
    let (_, theirs) = redeem(&h, &client, &query_of(&to)["code"]).await;
    for hint in ["garbage", theirs["id_token"].as_str().unwrap()] {
        let path = format!(
            "/ims/logout/v1?{}",
            encode(&[
                ("id_token_hint", hint),
                ("client_id", client.as_str()),
                ("post_logout_redirect_uri", REDIRECT)
            ])
        );
        let (status, _, html) = b.get(&h.app, &path).await;
        assert_eq!(status, StatusCode::OK, "a confirmation page");
        assert!(html.contains("Sign out?"));
        assert!(b.has("ims_sid"), "still signed in");
    }
    // An unregistered post-logout URI is not followed.
    let path = format!(
        "/ims/logout/v1?{}",
        encode(&[
            ("id_token_hint", id_token),
            ("post_logout_redirect_uri", "https://evil.test/"),
            ("state", "s")
        ])
    );
    let (status, _, _) = b.get(&h.app, &path).await;
    assert_eq!(status, StatusCode::OK, "confirmation page, no redirect");
    let path = format!(
        "/ims/logout/v1?{}",
        encode(&[
            ("id_token_hint", id_token),
            ("post_logout_redirect_uri", REDIRECT),
            ("state", "s")
        ])
    );
    let (status, headers, _) = b.get(&h.app, &path).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert_eq!(location(&headers), format!("{REDIRECT}?state=s"));
    assert!(!b.has("ims_sid"));
    let (_, headers, _) = b
        .get(&h.app, &authorize_path(&client, &[("prompt", "none")]))
        .await;
    assert_eq!(query_of(&location(&headers))["error"], "login_required");
    h.cleanup().await;
}

/// SECURITY 25 and 26: the session cookie's flags, a new session at every sign-in, the
/// password change page and an administrator's one-time reset link.
#[tokio::test]
async fn sessions_password_change_and_reset_links() {
    let h = harness().await;
    let user = h.person("jane@example.com").await;
    let client = h.app_client().await;
    let mut b = Browser::default();
    session_cookies_and_a_new_session_at_each_sign_in(&h, &client, &mut b).await;
    the_password_change_page(&h, &client, &mut b).await;
    an_administrators_reset_link(&h, &client, &user).await;
    h.cleanup().await;
}

/// The browser's cookie and the session's are Secure, HttpOnly and SameSite=Lax; each sign-in
/// opens a new session.
async fn session_cookies_and_a_new_session_at_each_sign_in(h: &Harness, client: &str, b: &mut Browser) {
    let (_, headers, _) = b.get(&h.app, &authorize_path(client, &[])).await;
    let line = headers["set-cookie"].to_str().unwrap().to_owned();
    assert!(
        line.starts_with("ims_browser=")
            && line.contains("Secure")
            && line.contains("HttpOnly")
            && line.contains("SameSite=Lax"),
        "{line}"
    );
    let sid = |b: &Browser| {
        b.cookies
            .iter()
            .find(|(k, _)| k == "ims_sid")
            .map(|(_, v)| v.clone())
    };
    sign_in(h, b, client, "jane@example.com", PASSWORD).await;
    let first = sid(b).unwrap();
    let (_, headers, _) = b
        .get(&h.app, &authorize_path(client, &[("prompt", "login")]))
        .await;
    let page = location(&headers);
    let (_, _, html) = b.get(&h.app, &page).await;
    b.post(
        &h.app,
        &page,
        &[("csrf", &csrf_in(&html)), ("email", "jane@example.com")],
    )
    .await;
    let (_, _, html) = b.get(&h.app, &page).await;
    let (_, headers, _) = b
        .post(
            &h.app,
            &page,
            &[("csrf", &csrf_in(&html)), ("password", PASSWORD)],
        )
        .await;
    let set = headers
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .find(|l| l.starts_with("ims_sid="))
        .unwrap();
    assert!(
        set.contains("Secure") && set.contains("HttpOnly") && set.contains("SameSite=Lax"),
        "{set}"
    );
    assert_ne!(sid(b).unwrap(), first, "a new session at each sign-in");
}

/// The password change page, for the person signed in with `b`: the current password is
/// checked, then the policy; a change ends every session.
async fn the_password_change_page(h: &Harness, client: &str, b: &mut Browser) {
    let (status, _, html) = b.get(&h.app, "/ims/account/password").await;
    assert_eq!(status, StatusCode::OK);
    let csrf = csrf_in(&html);
    let change = |current: &'static str, new: &'static str, confirm: &'static str| {
        vec![
            ("csrf", csrf.clone()),
            ("current", current.to_owned()),
            ("password", new.to_owned()),
            ("confirm", confirm.to_owned()),
        ]
    };
    for (form, status) in [
        (
            change("wrong one", "another long passphrase", "another long passphrase"),
            StatusCode::UNAUTHORIZED,
        ),
        (
            change(PASSWORD, "another long passphrase", "different"),
            StatusCode::BAD_REQUEST,
        ),
        (
            change(PASSWORD, "password1", "password1"),
            StatusCode::BAD_REQUEST,
        ),
    ] {
        let pairs: Vec<(&str, &str)> = form.iter().map(|(k, v)| (*k, v.as_str())).collect();
        assert_eq!(b.post(&h.app, "/ims/account/password", &pairs).await.0, status);
    }
    let form = change(PASSWORD, "another long passphrase", "another long passphrase");
    let pairs: Vec<(&str, &str)> = form.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let (status, _, html) = b.post(&h.app, "/ims/account/password", &pairs).await;
    assert_eq!(status, StatusCode::OK, "{html}");
    assert!(!b.has("ims_sid"), "every session ended");
    let (status, _) = sign_in(h, &mut Browser::default(), client, "jane@example.com", PASSWORD).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "the old password is gone");
}

/// A reset link: policy failures keep it usable, success uses it up.
async fn an_administrators_reset_link(h: &Harness, client: &str, user: &ims_identity::model::User) {
    let token = ims_identity::people::password_link(
        h.store.as_ref(),
        user,
        ims_identity::links::LinkPurpose::Reset,
        Some(ims_identity::people::Mailed {
            base_url: "https://ims.test",
            org_name: "Acme",
        }),
        &Context::new(Now::system(), "test"),
    )
    .await
    .unwrap();
    // The person gets the link by mail, queued with it.
    let mailed = ims_identity::store::OutboxStore::outbox(h.store.as_ref(), &user.org_id, 0, 10)
        .await
        .unwrap();
    assert!(
        mailed.iter().any(|m| m.to == user.email
            && m.text
                .contains(&format!("https://ims.test/ims/reset/{}", token.expose()))),
        "{mailed:?}"
    );
    let path = format!("/ims/reset/{}", token.expose());
    let mut b = Browser::default();
    let (status, _, html) = b.get(&h.app, &path).await;
    assert_eq!(status, StatusCode::OK);
    assert!(html.contains("jane@example.com"));
    let csrf = csrf_in(&html);
    assert_eq!(
        b.post(
            &h.app,
            &path,
            &[
                ("csrf", &csrf),
                ("password", "qwertyuiop"),
                ("confirm", "qwertyuiop")
            ]
        )
        .await
        .0,
        StatusCode::BAD_REQUEST
    );
    assert_eq!(
        b.post(
            &h.app,
            &path,
            &[
                ("csrf", "forged"),
                ("password", "a reset passphrase"),
                ("confirm", "a reset passphrase")
            ]
        )
        .await
        .0,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        b.post(
            &h.app,
            &path,
            &[
                ("csrf", &csrf),
                ("password", "a reset passphrase"),
                ("confirm", "a reset passphrase")
            ]
        )
        .await
        .0,
        StatusCode::OK
    );
    assert_eq!(b.get(&h.app, &path).await.0, StatusCode::GONE, "used up");
    let (status, _) = sign_in(
        h,
        &mut Browser::default(),
        client,
        "jane@example.com",
        "a reset passphrase",
    )
    .await;
    assert_eq!(status, StatusCode::SEE_OTHER);
}
