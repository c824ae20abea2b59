//! The Admin Console: sign-out, the role each page needs, and changes landing in the directory.

use http::StatusCode;
use ims_core::audit::Context;
use ims_core::Now;
use ims_identity::directory::{AdminRole, ProductInstance};
use ims_identity::service::directory::UMAPI_SCOPE;
use ims_identity::store::UserStore as _;
use serde_json::json;

use crate::harness::*;

/// Every page of the Admin Console and the role it needs (`None`: any administrator).
fn console_routes() -> Vec<(&'static str, &'static str, Option<AdminRole>)> {
    vec![
        ("GET", "/admin/", None),
        ("GET", "/admin/users", Some(AdminRole::SystemAdmin)),
        ("POST", "/admin/users", Some(AdminRole::SystemAdmin)),
        (
            "GET",
            "/admin/users/admin%40acme.test",
            Some(AdminRole::SystemAdmin),
        ),
        (
            "POST",
            "/admin/users/admin%40acme.test",
            Some(AdminRole::SystemAdmin),
        ),
        ("GET", "/admin/profiles", Some(AdminRole::ProfileAdmin)),
        ("POST", "/admin/profiles", Some(AdminRole::ProfileAdmin)),
        ("GET", "/admin/profiles/P", Some(AdminRole::ProfileAdmin)),
        ("POST", "/admin/profiles/P", Some(AdminRole::ProfileAdmin)),
        ("GET", "/admin/groups", Some(AdminRole::UserGroupAdmin)),
        ("POST", "/admin/groups", Some(AdminRole::SystemAdmin)),
        ("GET", "/admin/groups/G", Some(AdminRole::UserGroupAdmin)),
        ("POST", "/admin/groups/G", Some(AdminRole::UserGroupAdmin)),
        ("GET", "/admin/roles", Some(AdminRole::SystemAdmin)),
        ("POST", "/admin/roles", Some(AdminRole::SystemAdmin)),
        ("GET", "/admin/import", Some(AdminRole::SystemAdmin)),
        ("POST", "/admin/import", Some(AdminRole::SystemAdmin)),
        ("GET", "/admin/audit", Some(AdminRole::SystemAdmin)),
        ("GET", "/admin/mail", Some(AdminRole::SystemAdmin)),
        ("POST", "/admin/mail", Some(AdminRole::SystemAdmin)),
        ("POST", "/admin/settings", Some(AdminRole::SystemAdmin)),
        ("POST", "/admin/logout", None),
    ]
}

/// The attack: signing out of the Admin Console only cleared the cookie; the old cookie
/// still opened the pages and the User Management API. Sign-out now revokes the token.
#[tokio::test]
async fn admin_console_sign_out_ends_the_token_server_side() {
    let h = harness().await;
    let admin = console_token(&h, "admin@acme.test", ADMIN_PASSWORD).await;
    let (status, _, html) = page_as(&h, "GET", "/admin/", Some(&admin), "").await;
    assert_eq!(status, StatusCode::OK, "{html}");
    let csrf = csrf_in(&html);
    let (status, headers, _) =
        page_as(&h, "POST", "/admin/logout", Some(&admin), &format!("csrf={csrf}")).await;
    assert_eq!(status, StatusCode::OK);
    assert!(format!("{headers:?}").contains("ims_admin=;"), "{headers:?}");
    // The old cookie, replayed.
    let (status, headers, _) = page_as(&h, "GET", "/admin/", Some(&admin), "").await;
    assert_eq!(
        (status, location(&headers).as_str()),
        (StatusCode::SEE_OTHER, "/admin/login")
    );
    let (status, _, _) = page_as(&h, "GET", "/admin/users", Some(&admin), "").await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    let (status, _, _) = h
        .call(get_bearer("/ims/userinfo/v2", &format!("Bearer {admin}")))
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "the token itself is dead");
    let audit = h.audit("token.revoke").await;
    assert!(!audit.is_empty());
}

#[tokio::test]
async fn every_console_page_needs_its_role() {
    use ims_identity::directory::RoleGrant;
    use ims_identity::store::DirectoryStore as _;
    let h = harness().await;
    let ctx = Context::new(Now::system(), "test");
    let profile = marketing(&h, Some(("P", vec![], None))).await.1.unwrap();
    h.store
        .apply_changes(
            &h.org_id,
            &[ims_identity::umapi::Change::CreateGroup(
                ims_identity::directory::Group::user_group(&h.org_id, "G", "", Now::system()),
            )],
            &[],
        )
        .await
        .unwrap();
    let group_id = h
        .store
        .groups(&h.org_id)
        .await
        .unwrap()
        .into_iter()
        .find(|(g, _)| g.name == "G")
        .unwrap()
        .0
        .id;
    let mut tokens = Vec::new();
    for (email, role, target) in [
        ("nobody@acme.test", None, String::new()),
        (
            "groups@acme.test",
            Some(AdminRole::UserGroupAdmin),
            group_id.to_string(),
        ),
        (
            "profiles@acme.test",
            Some(AdminRole::ProfileAdmin),
            profile.id.to_string(),
        ),
    ] {
        let u = h.person(email).await;
        if let Some(role) = role {
            let grant = RoleGrant {
                user_id: u.user_id.clone(),
                role,
                target,
            };
            h.store
                .set_role(
                    &grant,
                    true,
                    Now::system(),
                    &ctx.event("role.grant", email, "success", json!({})),
                )
                .await
                .unwrap();
        }
        tokens.push((role, console_token(&h, email, PASSWORD).await));
    }
    let admin = console_token(&h, "admin@acme.test", ADMIN_PASSWORD).await;
    // Another application's token for the same administrator does not open the console.
    let (elsewhere, _) = person_token(&h, "admin@acme.test", ADMIN_PASSWORD).await;
    let (status, headers, _) = page_as(&h, "GET", "/admin/", Some(&elsewhere), "").await;
    assert_eq!(
        (status, location(&headers).as_str()),
        (StatusCode::SEE_OTHER, "/admin/login")
    );
    let credential = h.credential(&["openid", UMAPI_SCOPE]).await;
    let machine = h.token(&credential, "openid").await;
    for m in ["POST", "PUT", "DELETE"] {
        let (status, _, _) = page_as(&h, m, "/admin/audit", Some(&admin), "").await;
        assert_eq!(
            status,
            StatusCode::METHOD_NOT_ALLOWED,
            "{m} /admin/audit: the log only reads"
        );
    }
    for (method, path, needs) in console_routes() {
        // Nobody signed in: sent to sign in, never served.
        let (status, headers, _) = page_as(&h, method, path, None, "").await;
        assert_eq!(
            (status, headers.get("location").and_then(|v| v.to_str().ok())),
            (StatusCode::SEE_OTHER, Some("/admin/login")),
            "{method} {path}"
        );
        // A technical account's token is no person's session.
        let (status, _, _) = page_as(&h, method, path, Some(&machine), "").await;
        assert_eq!(
            status,
            StatusCode::SEE_OTHER,
            "{method} {path} with a machine token"
        );
        for (role, token) in &tokens {
            let allowed = match (needs, role) {
                (_, None) => false,
                (None, Some(_)) => true,
                (Some(n), Some(r)) => n == *r,
            };
            let (status, _, body) = page_as(&h, method, path, Some(token), "").await;
            if allowed {
                assert_ne!(status, StatusCode::SEE_OTHER, "{method} {path} as {role:?}");
                if method == "POST" {
                    assert_eq!(
                        status,
                        StatusCode::FORBIDDEN,
                        "{method} {path} as {role:?} without the form token: {body}"
                    );
                } else {
                    assert_eq!(status, StatusCode::OK, "{method} {path} as {role:?}: {body}");
                }
            } else {
                assert_eq!(
                    status,
                    StatusCode::FORBIDDEN,
                    "{method} {path} as {role:?}: {body}"
                );
            }
        }
        // The system administrator gets every page (posts still need the form token).
        let (status, _, body) = page_as(&h, method, path, Some(&admin), "").await;
        let expected = if method == "POST" {
            StatusCode::FORBIDDEN
        } else {
            StatusCode::OK
        };
        assert_eq!(
            status, expected,
            "{method} {path} as system administrator: {body}"
        );
    }
}

#[tokio::test]
async fn console_changes_land_in_the_directory_and_the_audit_log() {
    let h = harness().await;
    let ctx = Context::new(Now::system(), "test");
    let (marketing, _) = marketing(&h, None).await;
    let admin = console_token(&h, "admin@acme.test", ADMIN_PASSWORD).await;
    let (_, _, html) = page_as(&h, "GET", "/admin/profiles", Some(&admin), "").await;
    let csrf = csrf_in(&html);
    let c = Console { h: &h, admin, csrf };
    a_profile_created_with_a_member(&c, &marketing).await;
    a_credential_holds_it_and_a_refused_change_says_why(&c).await;
    a_csv_import_previews_then_applies(&c).await;
    roles_and_the_audit_log(&c).await;
    the_mail_page_shows_and_resends_the_organisations_messages(&c).await;
    invitations_from_the_console(&c).await;
    let _ = ctx;
}

/// The organisation's messages with their state and the server's answer; a refused one is
/// queued again from the page. Another organisation's message is neither shown nor resent.
async fn the_mail_page_shows_and_resends_the_organisations_messages(c: &Console<'_>) {
    use ims_identity::mail::{Compose, Mail, MailKind, MailStatus};
    use ims_identity::store::OutboxStore as _;
    let h = c.h;
    let compose = |org_id, to| Compose {
        org_id,
        kind: MailKind::Invitation,
        to,
        subject: "You are invited",
        text: "t",
        html: "<p>t</p>",
    };
    let ours = Mail::new(compose(h.org_id.as_str(), "ana@acme.test"), Now::system());
    let theirs = Mail::new(compose("OTHER@AdobeOrg", "bob@other.test"), Now::system());
    for m in [&ours, &theirs] {
        h.store
            .queue_mail(
                m,
                &Context::new(Now::system(), "test").event("mail.queue", "t", "success", json!({})),
            )
            .await
            .unwrap();
    }
    h.store.take_due_mail(Now::system(), 120, 10).await.unwrap();
    h.store
        .mail_failed(&ours.mail_id, "550 5.1.1 no such user", None)
        .await
        .unwrap();
    let (status, _, html) = page_as(h, "GET", "/admin/mail", Some(&c.admin), "").await;
    assert_eq!(status, StatusCode::OK, "{html}");
    assert!(
        html.contains("ana@acme.test") && html.contains("550 5.1.1 no such user"),
        "{html}"
    );
    assert!(!html.contains("bob@other.test"), "{html}");
    let (status, _, body) = c
        .post("/admin/mail", vec![("mail_id", theirs.mail_id.clone())])
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    let (status, _, body) = c
        .post("/admin/mail", vec![("mail_id", ours.mail_id.clone())])
        .await;
    assert_eq!(status, StatusCode::SEE_OTHER, "{body}");
    let again = h.store.mail(&ours.mail_id).await.unwrap().unwrap();
    assert_eq!((again.status, again.attempts), (MailStatus::Queued, 0));
    assert_eq!(h.audit("mail.resend").await.len(), 1);
}

/// The Admin Console as an administrator signed in to it (`admin`, the cookie's value); a form
/// posted carries the CSRF token of a page.
struct Console<'a> {
    h: &'a Harness,
    admin: String,
    csrf: String,
}

impl Console<'_> {
    async fn post(
        &self,
        path: &str,
        pairs: Vec<(&'static str, String)>,
    ) -> (StatusCode, http::HeaderMap, String) {
        let mut all = vec![("csrf", self.csrf.clone())];
        all.extend(pairs);
        let body = url::form_urlencoded::Serializer::new(String::new())
            .extend_pairs(all)
            .finish();
        page_as(self.h, "POST", path, Some(&self.admin), &body).await
    }
}

/// A product profile of `marketing` created through the console, which shows it; a user
/// created and added to it holds it.
async fn a_profile_created_with_a_member(c: &Console<'_>, marketing: &ProductInstance) {
    let h = c.h;
    let (status, headers, body) = c
        .post(
            "/admin/profiles",
            vec![
                ("instance", marketing.id.to_string()),
                ("name", "campaign - marketing - ops".into()),
                ("permissions", "export admin".into()),
                ("quota", "3".into()),
            ],
        )
        .await;
    assert_eq!(status, StatusCode::SEE_OTHER, "{body}");
    let location = headers["location"].to_str().unwrap().to_owned();
    assert!(location.starts_with("/admin/profiles/campaign%20"), "{location}");
    let (status, _, html) = page_as(h, "GET", &location, Some(&c.admin), "").await;
    assert_eq!(status, StatusCode::OK, "the page the console sends to exists");
    assert!(
        html.contains("<h1>campaign - marketing - ops</h1>") && html.contains("Product profile created."),
        "{html}"
    );
    let (status, _, _) = c
        .post(
            "/admin/users",
            vec![
                ("email", "ops@acme.test".into()),
                ("firstname", "O".into()),
                ("type", "enterpriseID".into()),
            ],
        )
        .await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    let (status, _, _) = c
        .post(
            "/admin/profiles/campaign%20-%20marketing%20-%20ops",
            vec![("action", "add_member".into()), ("email", "ops@acme.test".into())],
        )
        .await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    let ops = h
        .store
        .user_by_email(&h.org_id, "ops@acme.test")
        .await
        .unwrap()
        .unwrap();
    let held = ims_identity::store::DirectoryStore::held_profiles(
        h.store.as_ref(),
        &ops.user_id,
        Some("dma_campaign_classic"),
    )
    .await
    .unwrap();
    assert_eq!(held.len(), 1);
    assert_eq!(held[0].permissions, vec!["admin".to_owned(), "export".to_owned()]);
}

/// A technical account's credential holds the profile too; a refused change says why and
/// changes nothing.
async fn a_credential_holds_it_and_a_refused_change_says_why(c: &Console<'_>) {
    let h = c.h;
    let machine = h.credential(&["openid"]).await;
    let (status, _, _) = c
        .post(
            "/admin/profiles/campaign%20-%20marketing%20-%20ops",
            vec![
                ("action", "add_credential".into()),
                ("client_id", machine.client.client_id.clone()),
            ],
        )
        .await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    let (_, _, html) = page_as(
        h,
        "GET",
        "/admin/profiles/campaign%20-%20marketing%20-%20ops",
        Some(&c.admin),
        "",
    )
    .await;
    assert!(
        html.contains(&format!("<code>{}</code>", machine.client.client_id)),
        "{html}"
    );
    // A refused change says why and changes nothing.
    let (status, _, body) = c
        .post(
            "/admin/profiles/campaign%20-%20marketing%20-%20ops",
            vec![
                ("action", "add_member".into()),
                ("email", "nobody@acme.test".into()),
            ],
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(body.contains("error.user.nonexistent"), "{body}");
}

/// CSV import: a preview changes nothing, then the import applies.
async fn a_csv_import_previews_then_applies(c: &Console<'_>) {
    let h = c.h;
    let csv = "email,firstname,lastname,country,type,groups\nbulk1@acme.test,B,One,FR,enterpriseID,campaign - marketing - ops\nbad-address,X,Y,,enterpriseID,\n".to_owned();
    let (status, _, body) = c
        .post("/admin/import", vec![("csv", csv.clone()), ("apply", "0".into())])
        .await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        body.contains("will be imported") && body.contains("error.user.invalid_email"),
        "{body}"
    );
    assert!(
        h.store
            .user_by_email(&h.org_id, "bulk1@acme.test")
            .await
            .unwrap()
            .is_none(),
        "a preview changes nothing"
    );
    let (_, _, body) = c
        .post("/admin/import", vec![("csv", csv), ("apply", "1".into())])
        .await;
    assert!(body.contains("1 row(s) imported, 1 refused"), "{body}");
    assert!(h
        .store
        .user_by_email(&h.org_id, "bulk1@acme.test")
        .await
        .unwrap()
        .is_some());
    assert!(
        invitations_to(h, "bulk1@acme.test").await.is_empty(),
        "the box was not ticked"
    );
    let csv = "email,type\nbulk2@acme.test,enterpriseID\n".to_owned();
    let (_, _, body) = c
        .post(
            "/admin/import",
            vec![("csv", csv), ("apply", "1".into()), ("invite", "1".into())],
        )
        .await;
    assert!(body.contains("1 row(s) imported, 0 refused"), "{body}");
    assert_eq!(invitations_to(h, "bulk2@acme.test").await.len(), 1);
}

async fn invitations_to(h: &Harness, to: &str) -> Vec<ims_identity::mail::Mail> {
    use ims_identity::store::OutboxStore as _;
    h.store
        .outbox(&h.org_id, 0, 1000)
        .await
        .unwrap()
        .into_iter()
        .filter(|m| m.to == to && m.kind == ims_identity::mail::MailKind::Invitation)
        .collect()
}

/// A user created with the box ticked is invited; the user page shows where the invitation
/// stands and sends another; without the box, the page offers to send the first.
async fn invitations_from_the_console(c: &Console<'_>) {
    let h = c.h;
    for (email, invite) in [("inv1@acme.test", true), ("inv2@acme.test", false)] {
        let mut form = vec![("email", email.to_owned()), ("type", "enterpriseID".into())];
        if invite {
            form.push(("invite", "1".into()));
        }
        let (status, _, body) = c.post("/admin/users", form).await;
        assert_eq!(status, StatusCode::SEE_OTHER, "{body}");
    }
    assert_eq!(invitations_to(h, "inv1@acme.test").await.len(), 1);
    assert!(invitations_to(h, "inv2@acme.test").await.is_empty());
    let (_, _, html) = page_as(h, "GET", "/admin/users/inv1%40acme.test", Some(&c.admin), "").await;
    assert!(html.contains("Invitation: <strong>invited</strong>"), "{html}");
    assert!(html.contains("Resend the invitation"), "{html}");
    let (_, _, html) = page_as(h, "GET", "/admin/users/inv2%40acme.test", Some(&c.admin), "").await;
    assert!(!html.contains("id=\"invitation\""), "{html}");
    assert!(html.contains("Send an invitation"), "{html}");
    let (status, _, body) = c
        .post("/admin/users/inv2%40acme.test", vec![("action", "invite".into())])
        .await;
    assert_eq!(status, StatusCode::SEE_OTHER, "{body}");
    assert_eq!(invitations_to(h, "inv2@acme.test").await.len(), 1);
    assert!(h
        .audit("user.invite")
        .await
        .iter()
        .any(|e| e.details["resend"] == true));
    // An Adobe ID is not invited here.
    c.post(
        "/admin/users",
        vec![("email", "adobe1@acme.test".into()), ("type", "adobeID".into())],
    )
    .await;
    let (status, _, _) = c
        .post(
            "/admin/users/adobe1%40acme.test",
            vec![("action", "invite".into())],
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
}

/// Roles, then the audit log page and its API.
async fn roles_and_the_audit_log(c: &Console<'_>) {
    let h = c.h;
    let (status, _, body) = c
        .post(
            "/admin/roles",
            vec![
                ("action", "grant".into()),
                ("email", "ops@acme.test".into()),
                ("role", "profile_admin".into()),
                ("target", "campaign - marketing - ops".into()),
            ],
        )
        .await;
    assert_eq!(status, StatusCode::SEE_OTHER, "{body}");
    let (_, _, html) = page_as(h, "GET", "/admin/audit", Some(&c.admin), "").await;
    for action in ["profile.create", "umapi.user", "role.grant"] {
        assert!(html.contains(action), "{action} is on the audit page");
    }
    assert!(html.contains("admin:admin@acme.test"));
    let um = h.credential(&["openid", UMAPI_SCOPE]).await;
    let token = h.token(&um, UMAPI_SCOPE).await;
    let (status, _, out) = h
        .call(req(
            "GET",
            &format!("/v2/usermanagement/audit/{}/0?action=role.", h.org_id),
            Some(&token),
            Some(&um.client.client_id),
            None,
        ))
        .await;
    assert_eq!(status, StatusCode::OK);
    let event = &out["events"][0];
    assert_eq!(
        (
            event["action"].as_str(),
            event["target"].as_str(),
            event["actor"].as_str()
        ),
        (
            Some("role.grant"),
            Some("ops@acme.test"),
            Some("admin:admin@acme.test")
        )
    );
    assert!(event["request_id"].as_str().is_some_and(|r| !r.is_empty()));
}
