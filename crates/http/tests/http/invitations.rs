//! Moved people get in: a new Enterprise ID is invited (one-time link, set a password, on to
//! the product instance), a person given a product instance hears of it once, and "Forgot
//! password?" mails a recovery link with the same answer for every email.

use http::StatusCode;
use ims_core::keys::Algorithm;
use ims_identity::directory::ProductInstance;
use ims_identity::mail::{Mail, MailKind};
use ims_identity::service::directory::UMAPI_SCOPE;
use ims_identity::store::{OutboxStore as _, UserStore as _};
use serde_json::{json, Value};

use crate::harness::*;

async fn outbox(h: &Harness) -> Vec<Mail> {
    h.store.outbox(&h.org_id, 0, 1000).await.unwrap()
}

fn mails_to<'a>(all: &'a [Mail], to: &str, kind: MailKind) -> Vec<&'a Mail> {
    all.iter().filter(|m| m.to == to && m.kind == kind).collect()
}

/// The path of the link (on the IMS) a message carries.
fn link_in(mail: &Mail, path: &str) -> String {
    let start = mail.text.find(&format!("{ISSUER}{path}")).expect(&mail.text) + ISSUER.len();
    mail.text[start..].split_whitespace().next().unwrap().to_owned()
}

async fn action(h: &Harness, body: Value) -> Value {
    let um = h.credential(&["openid", UMAPI_SCOPE]).await;
    let token = h.token(&um, UMAPI_SCOPE).await;
    let (status, _, answer) = h
        .call(req(
            "POST",
            &format!("/v2/usermanagement/action/{}", h.org_id),
            Some(&token),
            Some(&um.client.client_id),
            Some(&body.to_string()),
        ))
        .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer["result"], "success", "{answer}");
    answer
}

/// The marketing instance, answering at an address, with two profiles of it.
async fn instance(h: &Harness) -> ProductInstance {
    let (instance, _) = marketing(h, Some(("Campaign Users", vec![], None))).await;
    marketing(h, Some(("Campaign Viewers", vec![], None))).await;
    instance
}

#[tokio::test]
async fn an_invited_person_sets_a_password_and_goes_on_to_the_product_instance() {
    for db in [Db::Sqlite, Db::Postgres] {
        let Some(h) = harness_on(db, Algorithm::ES256).await else {
            continue;
        };
        let instance = instance(&h).await;
        action(
            &h,
            json!([{"user": "jane@example.com", "do": [
                {"createEnterpriseID": {"email": "jane@example.com", "firstname": "Jane"}},
                {"add": {"group": ["Campaign Users", "Campaign Viewers"]}}
            ]}]),
        )
        .await;
        let all = outbox(&h).await;
        let invitations = mails_to(&all, "jane@example.com", MailKind::Invitation);
        assert_eq!(invitations.len(), 1, "one invitation");
        assert!(
            mails_to(&all, "jane@example.com", MailKind::Access).is_empty(),
            "the invitation names the instance: no second message"
        );
        let mail = invitations[0];
        assert_eq!(mail.subject, "Acme invites you to sign in");
        assert!(mail.text.contains("Hello Jane"), "{}", mail.text);
        assert!(mail.text.contains(&instance.label), "{}", mail.text);
        assert!(mail.html.contains("Set up your account"));
        let link = link_in(mail, "/ims/invitation/");
        let user = h
            .store
            .user_by_email(&h.org_id, "jane@example.com")
            .await
            .unwrap()
            .unwrap();
        assert!(user.password_hash.is_none() && user.first_sign_in_at.is_none());

        // The page; a password the policy refuses keeps the link.
        let mut b = Browser::default();
        let (status, _, html) = b.get(&h.app, &link).await;
        assert_eq!(status, StatusCode::OK, "{html}");
        assert!(html.contains("Set up your account") && html.contains("jane@example.com"));
        let csrf = csrf_in(&html);
        let (status, _, html) = b
            .post(
                &h.app,
                &link,
                &[("csrf", &csrf), ("password", "password"), ("confirm", "password")],
            )
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{html}");
        let (status, _, html) = b
            .post(
                &h.app,
                &link,
                &[("csrf", "forged"), ("password", PASSWORD), ("confirm", PASSWORD)],
            )
            .await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{html}");
        let (status, headers, html) = b
            .post(
                &h.app,
                &link,
                &[("csrf", &csrf), ("password", PASSWORD), ("confirm", PASSWORD)],
            )
            .await;
        assert_eq!(status, StatusCode::SEE_OTHER, "{html}");
        assert_eq!(
            location(&headers),
            "https://127.0.0.1:1/console/",
            "on to the instance's console"
        );
        assert!(b.has("ims_sid"), "signed in to the IMS");

        // The link is spent: a page that says what to do.
        let (status, _, html) = Browser::default().get(&h.app, &link).await;
        assert_eq!(status, StatusCode::GONE);
        assert!(
            html.contains("ask your administrator to send the invitation again"),
            "{html}"
        );

        // The product signs the person in without asking again, and that is their first
        // sign-in; the password works on the sign-in pages too.
        let client = h.app_client().await;
        let (status, headers, _) = b.get(&h.app, &authorize_path(&client, &[])).await;
        assert_eq!(status, StatusCode::SEE_OTHER);
        assert!(location(&headers).starts_with(REDIRECT), "{}", location(&headers));
        let user = h.store.user(&user.user_id).await.unwrap().unwrap();
        assert!(user.first_sign_in_at.is_some(), "the first sign-in is recorded");
        let (status, to) = sign_in(&h, &mut Browser::default(), &client, "jane@example.com", PASSWORD).await;
        assert_eq!(status, StatusCode::SEE_OTHER, "{to}");
        let state = h.audit("user.invitation_accept").await;
        assert_eq!(state.len(), 1);
        h.cleanup().await;
    }
}

#[tokio::test]
async fn invitations_can_be_declined_by_the_caller_and_access_is_announced_once_per_instance() {
    let h = harness().await;
    let instance = instance(&h).await;
    action(
        &h,
        json!([
            {"user": "quiet@example.com", "do": [
                {"createEnterpriseID": {"email": "quiet@example.com", "invite": false}},
                {"add": {"group": ["Campaign Users"]}}
            ]},
            {"user": "adobe@example.com", "do": [{"addAdobeID": {"email": "adobe@example.com"}}]}
        ]),
    )
    .await;
    let all = outbox(&h).await;
    assert!(
        mails_to(&all, "quiet@example.com", MailKind::Invitation).is_empty(),
        "opted out"
    );
    assert!(
        mails_to(&all, "adobe@example.com", MailKind::Invitation).is_empty(),
        "not an Enterprise ID"
    );
    let access = mails_to(&all, "quiet@example.com", MailKind::Access);
    assert_eq!(access.len(), 1, "told of the instance");
    assert_eq!(
        access[0].subject,
        format!("You now have access to {}", instance.label)
    );
    assert!(access[0].text.contains("https://127.0.0.1:1/console/"));

    // Another profile of the same instance, the same one again, then a new instance.
    action(
        &h,
        json!([{"user": "quiet@example.com", "do": [{"add": {"group": ["Campaign Viewers", "Campaign Users"]}}]}]),
    )
    .await;
    action(
        &h,
        json!([{"user": "adobe@example.com", "do": [{"add": {"group": ["Campaign Viewers"]}}]}]),
    )
    .await;
    let all = outbox(&h).await;
    assert_eq!(
        mails_to(&all, "quiet@example.com", MailKind::Access).len(),
        1,
        "once per instance"
    );
    assert_eq!(mails_to(&all, "adobe@example.com", MailKind::Access).len(), 1);

    // A bad invite value is refused as the API refuses any malformed step.
    let um = h.credential(&["openid", UMAPI_SCOPE]).await;
    let token = h.token(&um, UMAPI_SCOPE).await;
    let (_, _, answer) = h
        .call(req(
            "POST",
            &format!("/v2/usermanagement/action/{}", h.org_id),
            Some(&token),
            Some(&um.client.client_id),
            Some(r#"[{"user":"x@example.com","do":[{"createEnterpriseID":{"email":"x@example.com","invite":"no"}}]}]"#),
        ))
        .await;
    assert_eq!(answer["result"], "error", "{answer}");
    assert_eq!(
        answer["errors"][0]["errorCode"], "error.command.malformed",
        "{answer}"
    );
}

/// The forgot-password page of a fresh sign-in flow: its path and the form's token.
async fn forgot_page(h: &Harness, b: &mut Browser, client: &str) -> (String, String) {
    let (_, headers, _) = b.get(&h.app, &authorize_path(client, &[])).await;
    let page = location(&headers);
    let (_, _, html) = b.get(&h.app, &format!("{page}/forgot")).await;
    assert!(html.contains("Forgot your password?"), "{html}");
    (format!("{page}/forgot"), csrf_in(&html))
}

/// The recovery mails sent to `to` so far, once the background request had its time.
async fn recovery_mails(h: &Harness, to: &str, expected: usize) -> Vec<Mail> {
    for _ in 0..100 {
        let all = outbox(h).await;
        let found: Vec<Mail> = mails_to(&all, to, MailKind::PasswordReset)
            .into_iter()
            .cloned()
            .collect();
        if found.len() >= expected {
            return found;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    mails_to(&outbox(h).await, to, MailKind::PasswordReset)
        .into_iter()
        .cloned()
        .collect()
}

#[tokio::test]
async fn forgot_password_answers_the_same_for_every_email_and_mails_a_thirty_minute_link() {
    for db in [Db::Sqlite, Db::Postgres] {
        let Some(h) = harness_on(db, Algorithm::ES256).await else {
            continue;
        };
        let jane = h.person("jane@example.com").await;
        let client = h.app_client().await;

        // Signed in somewhere: recovery will end that session.
        let mut elsewhere = Browser::default();
        let (status, _) = sign_in(&h, &mut elsewhere, &client, "jane@example.com", PASSWORD).await;
        assert_eq!(status, StatusCode::SEE_OTHER);

        let mut b = Browser::default();
        let (path, csrf) = forgot_page(&h, &mut b, &client).await;
        let (known_status, _, known) = b
            .post(&h.app, &path, &[("csrf", &csrf), ("email", "jane@example.com")])
            .await;
        let (unknown_status, _, unknown) = b
            .post(&h.app, &path, &[("csrf", &csrf), ("email", "nobody@example.com")])
            .await;
        assert_eq!((known_status, unknown_status), (StatusCode::OK, StatusCode::OK));
        assert_eq!(known, unknown, "the same page for a known and an unknown email");
        assert!(known.contains("is on its way"));
        let (status, _, _) = b
            .post(
                &h.app,
                &path,
                &[("csrf", "forged"), ("email", "jane@example.com")],
            )
            .await;
        assert_eq!(status, StatusCode::FORBIDDEN);

        let mails = recovery_mails(&h, "jane@example.com", 1).await;
        assert_eq!(mails.len(), 1);
        assert!(mails[0].text.contains("within 30 minutes"), "{}", mails[0].text);
        assert!(outbox(&h).await.iter().all(|m| m.to != "nobody@example.com"));

        // The limit per email: three requests an hour, then nothing more is sent (same page).
        for _ in 0..4 {
            let (status, _, again) = b
                .post(&h.app, &path, &[("csrf", &csrf), ("email", "jane@example.com")])
                .await;
            assert_eq!((status, again.as_str()), (StatusCode::OK, known.as_str()));
        }
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        assert_eq!(
            recovery_mails(&h, "jane@example.com", 3).await.len(),
            3,
            "three an hour"
        );
        let limited = h.audit("user.recovery_request").await;
        assert!(limited.iter().any(|e| e.outcome == "limited"), "{limited:?}");
        assert!(limited.iter().any(|e| e.outcome == "unknown"));

        // The link sets a new password, ends the other sessions and works once.
        let link = link_in(&mails[0], "/ims/reset/");
        let mut r = Browser::default();
        let (status, _, html) = r.get(&h.app, &link).await;
        assert_eq!(status, StatusCode::OK, "{html}");
        let new = "another long passphrase";
        let (status, _, html) = r
            .post(
                &h.app,
                &link,
                &[("csrf", &csrf_in(&html)), ("password", new), ("confirm", new)],
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{html}");
        let (status, _, html) = r.get(&h.app, &link).await;
        assert_eq!(status, StatusCode::GONE);
        assert!(html.contains("Forgot password?"), "says what to do: {html}");
        let (status, headers, _) = elsewhere.get(&h.app, &authorize_path(&client, &[])).await;
        assert_eq!(status, StatusCode::SEE_OTHER);
        assert!(
            location(&headers).starts_with("/ims/signin/"),
            "the old session ended"
        );
        let (status, _) = sign_in(&h, &mut Browser::default(), &client, "jane@example.com", new).await;
        assert_eq!(status, StatusCode::SEE_OTHER);
        // The other links mailed meanwhile went with it.
        let others = recovery_mails(&h, "jane@example.com", 3).await;
        let (status, _, _) = Browser::default()
            .get(&h.app, &link_in(&others[2], "/ims/reset/"))
            .await;
        assert_eq!(status, StatusCode::GONE);
        assert_eq!(jane.email, "jane@example.com");
        h.cleanup().await;
    }
}

/// The secret an enrolment page shows, and a code it produces now.
fn enrolment_code(html: &str) -> (String, String) {
    let start = html.find(r#"<code id="totp-secret">"#).expect(html) + r#"<code id="totp-secret">"#.len();
    let secret = html[start..].split('<').next().unwrap().to_owned();
    let key = crate::account_security::base32_decode(&secret);
    let step = ims_core::Now::system().secs() / ims_identity::totp::STEP_SECS;
    (secret, ims_identity::totp::code_at(&key, step))
}

/// The page's QR code is the `otpauth` link it shows, module for module.
fn assert_qr_of_the_link(html: &str) {
    let marker = r#"Or open in the app: <a href=""#;
    let start = html.find(marker).expect(html) + marker.len();
    let link = html[start..]
        .split('"')
        .next()
        .unwrap()
        .replace("&#39;", "'")
        .replace("&#34;", "\"")
        .replace("&#60;", "<")
        .replace("&#62;", ">")
        .replace("&#38;", "&");
    assert!(link.starts_with("otpauth://totp/"), "{link}");
    let expected = qrcode::QrCode::new(link.as_bytes())
        .unwrap()
        .render::<qrcode::render::svg::Color<'_>>()
        .min_dimensions(200, 200)
        .build();
    let modules = expected.split(" d=\"").nth(1).unwrap().split('"').next().unwrap();
    assert!(html.contains(r#"<svg role="img" aria-label="#), "{html}");
    assert!(html.contains(modules), "the QR code is not the link's");
}

fn hidden(html: &str, name: &str) -> String {
    let marker = format!(r#"name="{name}" value=""#);
    let start = html.find(&marker).expect(html) + marker.len();
    html[start..].split('"').next().unwrap().to_owned()
}

#[tokio::test]
async fn an_organisation_that_requires_one_time_codes_has_people_enrol_before_going_on() {
    let h = harness().await;
    instance(&h).await;
    // A system administrator requires them from the Admin Console.
    let admin = console_token(&h, "admin@acme.test", ADMIN_PASSWORD).await;
    let (_, _, html) = page_as(&h, "GET", "/admin/", Some(&admin), "").await;
    assert!(html.contains("Require a one-time code"), "{html}");
    let body = format!("csrf={}&require_totp=1", csrf_in(&html));
    let (status, _, _) = page_as(&h, "POST", "/admin/settings", Some(&admin), &body).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert!(
        h.state
            .ims
            .directory()
            .org(&h.org_id)
            .await
            .unwrap()
            .unwrap()
            .require_totp
    );
    assert_eq!(h.audit("org.require_totp").await.len(), 1);

    // An invited person sets a password, then enrols, then goes on to the instance.
    action(
        &h,
        json!([{"user": "jane@example.com", "do": [
            {"createEnterpriseID": {"email": "jane@example.com"}},
            {"add": {"group": ["Campaign Users"]}}
        ]}]),
    )
    .await;
    let link = link_in(
        mails_to(&outbox(&h).await, "jane@example.com", MailKind::Invitation)[0],
        "/ims/invitation/",
    );
    let mut b = Browser::default();
    let (_, _, html) = b.get(&h.app, &link).await;
    let (status, headers, _) = b
        .post(
            &h.app,
            &link,
            &[
                ("csrf", &csrf_in(&html)),
                ("password", PASSWORD),
                ("confirm", PASSWORD),
            ],
        )
        .await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    let enrol = location(&headers);
    assert!(enrol.starts_with("/ims/account/totp?next="), "{enrol}");
    let (status, _, html) = b.get(&h.app, &enrol).await;
    assert_eq!(status, StatusCode::OK, "{html}");
    assert_eq!(
        html.matches("<li><code>").count(),
        10,
        "ten recovery codes: {html}"
    );
    let (secret, code) = enrolment_code(&html);
    assert_qr_of_the_link(&html);
    let sealed = hidden(&html, "sealed");
    let jane_sealed = sealed.clone();
    let (status, _, again) = b
        .post(
            &h.app,
            &enrol,
            &[("csrf", &csrf_in(&html)), ("sealed", &sealed), ("code", "000000")],
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(
        enrolment_code(&again).0,
        secret,
        "a mistyped code shows the same secret again"
    );
    let (status, headers, html) = b
        .post(
            &h.app,
            &enrol,
            &[("csrf", &csrf_in(&html)), ("sealed", &sealed), ("code", &code)],
        )
        .await;
    assert_eq!(status, StatusCode::SEE_OTHER, "{html}");
    assert_eq!(location(&headers), "https://127.0.0.1:1/console/");
    let jane = h
        .store
        .user_by_email(&h.org_id, "jane@example.com")
        .await
        .unwrap()
        .unwrap();
    assert!(jane.totp_sealed.is_some() && jane.recovery_codes.len() == 10);
    // A forged destination is ignored.
    let (_, _, html) = b
        .get(&h.app, "/ims/account/totp?next=https%3A%2F%2Fevil.test%2F&sig=00")
        .await;
    assert!(!html.contains("evil.test"), "{html}");

    // A person not enrolled enrols at the next sign-in, within the flow.
    h.person("bob@example.com").await;
    let client = h.app_client().await;
    let mut b = Browser::default();
    let (status, page) = sign_in(&h, &mut b, &client, "bob@example.com", PASSWORD).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    let (_, _, html) = b.get(&h.app, &page).await;
    assert!(html.contains("Set up one-time codes"), "{html}");
    let (secret, code) = enrolment_code(&html);
    let sealed = hidden(&html, "sealed");
    let (status, _, again) = b
        .post(
            &h.app,
            &page,
            &[("csrf", &csrf_in(&html)), ("sealed", &sealed), ("code", "000000")],
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(enrolment_code(&again).0, secret);
    // Another person's enrolment page does not enrol this one.
    let (status, _, _) = b
        .post(
            &h.app,
            &page,
            &[
                ("csrf", &csrf_in(&html)),
                ("sealed", &jane_sealed),
                ("code", &code),
            ],
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, headers, html) = b
        .post(
            &h.app,
            &page,
            &[("csrf", &csrf_in(&html)), ("sealed", &sealed), ("code", &code)],
        )
        .await;
    assert_eq!(status, StatusCode::SEE_OTHER, "{html}");
    let (status, tokens) = redeem(&h, &client, &query_of(&location(&headers))["code"]).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        claims(tokens["id_token"].as_str().unwrap())["amr"],
        json!(["pwd", "otp", "mfa"])
    );
    h.cleanup().await;
}

async fn invitations_page(h: &Harness, token: &str, key: Option<&str>) -> Value {
    let path = format!("/v2/usermanagement/invitations/{}/0", h.org_id);
    let (status, _, body) = h.call(req("GET", &path, Some(token), key, None)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body
}

#[tokio::test]
async fn the_invitations_listing_and_resend_extend_the_user_management_api() {
    let h = harness().await;
    instance(&h).await;
    action(
        &h,
        json!([
            {"user": "jane@example.com", "do": [{"createEnterpriseID": {"email": "jane@example.com"}}]},
            {"user": "adobe@example.com", "do": [{"addAdobeID": {"email": "adobe@example.com"}}]}
        ]),
    )
    .await;
    let um = h.credential(&["openid", UMAPI_SCOPE]).await;
    let token = h.token(&um, UMAPI_SCOPE).await;
    let key = Some(um.client.client_id.as_str());
    let body = invitations_page(&h, &token, key).await;
    let of = |body: &Value, email: &str| {
        body["users"]
            .as_array()
            .unwrap()
            .iter()
            .find(|u| u["email"] == email)
            .cloned()
            .unwrap()
    };
    assert_eq!(
        of(&body, "jane@example.com")["invitation"]["state"],
        "invited",
        "{body}"
    );
    assert!(of(&body, "adobe@example.com")["invitation"].is_null());
    assert!(of(&body, "jane@example.com")["firstSignInAt"].is_null());

    let (status, _, answer) = h
        .call(req(
            "POST",
            &format!("/v2/usermanagement/invitations/{}/resend", h.org_id),
            Some(&token),
            key,
            Some(r#"{"users":["jane@example.com","adobe@example.com","ghost@example.com"]}"#),
        ))
        .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer["sent"], json!(["jane@example.com"]));
    assert_eq!(answer["skipped"].as_array().unwrap().len(), 2);
    let mails = outbox(&h).await;
    let sent = mails_to(&mails, "jane@example.com", MailKind::Invitation);
    assert_eq!(sent.len(), 2, "resent");

    // Accepted through the newest link, then the first sign-in to an application.
    let link = link_in(
        sent.iter().max_by_key(|m| m.created_at).unwrap(),
        "/ims/invitation/",
    );
    let mut b = Browser::default();
    let (_, _, html) = b.get(&h.app, &link).await;
    b.post(
        &h.app,
        &link,
        &[
            ("csrf", &csrf_in(&html)),
            ("password", PASSWORD),
            ("confirm", PASSWORD),
        ],
    )
    .await;
    let client = h.app_client().await;
    b.get(&h.app, &authorize_path(&client, &[])).await;
    let jane = of(&invitations_page(&h, &token, key).await, "jane@example.com");
    assert_eq!(jane["invitation"]["state"], "accepted", "{jane}");
    assert!(jane["firstSignInAt"].is_string(), "{jane}");

    // Bad requests are the API's errors; other organisations are not reached.
    let (status, _, _) = h
        .call(req(
            "POST",
            &format!("/v2/usermanagement/invitations/{}/resend", h.org_id),
            Some(&token),
            key,
            Some("[1]"),
        ))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, _, _) = h
        .call(req(
            "GET",
            "/v2/usermanagement/invitations/0000000000000000000000AA@AdobeOrg/0",
            Some(&token),
            key,
            None,
        ))
        .await;
    assert!(status.is_client_error(), "{status}");
}
