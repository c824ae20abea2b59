//! The Developer Console pages and the organisation form.

use http::StatusCode;
use ims_core::audit::Context;
use ims_core::Now;
use ims_identity::developer::Service;
use ims_identity::directory::{AdminRole, RoleGrant};
use ims_identity::store::DirectoryStore as _;
use serde_json::json;

use crate::harness::*;

#[tokio::test]
async fn the_organisation_form_and_system_administrators() {
    let h = harness().await;
    marketing(
        &h,
        Some(("campaign - marketing - Administrator", vec!["admin".into()], None)),
    )
    .await;
    let (token, key) = person_token(&h, "admin@acme.test", ADMIN_PASSWORD).await;
    let admin = Api {
        h: &h,
        token,
        key,
        org: numeric_org(&h).await,
    };
    let services = admin
        .ok("GET", "/console/organizations/{org}/services", None)
        .await;
    let config = services
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["code"] == "CampaignSDK")
        .unwrap()["properties"]["licenseConfigs"][0]
        .clone();
    let (status, made) = admin
            .call(
                "POST",
                "/console/organizations/{org}/credentials/oauth-server-to-server",
                Some(json!({"name": "Directory sync", "description": "", "services": [
                    {"sdkCode": "CampaignSDK", "licenseConfigs": [{"id": config["id"], "productId": config["productId"], "op": "add"}]},
                    {"sdkCode": "UserMgmtSDK", "licenseConfigs": null}
                ]})),
            )
            .await;
    assert_eq!(status, StatusCode::CREATED, "{made}");
    assert_eq!(
        made["subscriptionResult"]["sdkList"],
        json!(["CampaignSDK", "UserMgmtSDK"])
    );
    let (id, p) = (made["id"].as_str().unwrap(), made["projectId"].as_str().unwrap());
    let project = admin
        .ok(
            "GET",
            &format!("/console/organizations/{{org}}/projects/{p}"),
            None,
        )
        .await;
    assert!(
        project["name"].as_str().unwrap().starts_with("Directory-sync-"),
        "{project}"
    );
    let placed = admin
        .ok(
            "GET",
            &format!("/console/organizations/{{org}}/projects_workspaces/credentials/{id}"),
            None,
        )
        .await;
    assert_eq!(
        (&placed[0]["projectId"], &placed[0]["credentialId"]),
        (&json!(p), &json!(id))
    );
    // The organisation-level subscription call, then the credential holds both APIs' scopes.
    let list = admin
        .ok(
            "PUT",
            &format!("/console/organizations/{{org}}/credentials/oauth-server-to-server/{id}/services"),
            Some(json!([{"sdkCode": "AdobeIOManagementAPISDK"}])),
        )
        .await;
    assert_eq!(list["sdkList"].as_array().unwrap().len(), 3);
    let held = h.store.credential_profiles(id, None).await.unwrap();
    assert_eq!(held[0].profile, "campaign - marketing - Administrator");
    // A developer cannot take, add or remove the secrets of a credential that opens the
    // User Management API, nor delete it: that would hand them its powers.
    let (token, key) = developer(&h, "dev@acme.test").await;
    let dev = Api {
        h: &h,
        token,
        key,
        org: admin.org.clone(),
    };
    for (method, path) in [
        (
            "GET",
            format!("/console/organizations/{{org}}/integrations/{id}/secrets"),
        ),
        (
            "POST",
            format!("/console/organizations/{{org}}/credentials/{id}/secrets"),
        ),
        (
            "DELETE",
            format!("/console/organizations/{{org}}/integrations/{id}"),
        ),
        (
            "PUT",
            format!("/console/organizations/{{org}}/credentials/oauth-server-to-server/{id}/services"),
        ),
    ] {
        let (status, body) = dev.call(method, &path, Some(json!([]))).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{method} {path}: {body}");
    }
    // Concurrent readers of a secret never shown: exactly one of them sees it.
    let path = format!("/console/organizations/{}/integrations/{id}/secrets", admin.org);
    let reads = futures_util::future::join_all(
        (0..6).map(|_| h.call(req("GET", &path, Some(&admin.token), Some(&admin.key), None))),
    )
    .await;
    let shown = reads
        .iter()
        .filter(|(_, _, v)| v["client_secrets"][0]["client_secret"].is_string())
        .count();
    assert_eq!(shown, 1, "{reads:?}");
    // Every service listed is one we know.
    for s in services.as_array().unwrap() {
        assert!(Service::by_code(s["code"].as_str().unwrap()).is_some());
    }
}

#[tokio::test]
async fn the_console_pages_create_a_project_an_api_credential_and_a_token() {
    let h = harness().await;
    let (_, profile) = marketing(
        &h,
        // An ordinary profile: one that can carry ADMINISTRATION takes a system administrator
        // (`a_developer_cannot_give_a_credential_administration`).
        Some(("campaign - marketing - delivery", vec!["export".into()], None)),
    )
    .await;
    let profile = profile.unwrap();
    developer(&h, "dev@acme.test").await;
    let dev = console_token(&h, "dev@acme.test", PASSWORD).await;
    let (status, headers, html) = page_as(&h, "GET", "/admin/developer", Some(&dev), "").await;
    assert_eq!(status, StatusCode::OK, "{html}");
    let csp = headers["content-security-policy"].to_str().unwrap();
    assert!(
        csp.contains("script-src 'self'") && csp.contains("default-src 'none'"),
        "{csp}"
    );
    // A product profile administrator holds a role but not this one.
    let u = h.person("profiles@acme.test").await;
    h.store
        .set_role(
            &RoleGrant {
                user_id: u.user_id,
                role: AdminRole::ProfileAdmin,
                target: profile.id.to_string(),
            },
            true,
            Now::system(),
            &Context::new(Now::system(), "test").event("role.grant", "p", "success", json!({})),
        )
        .await
        .unwrap();
    let other = console_token(&h, "profiles@acme.test", PASSWORD).await;
    let (status, _, _) = page_as(&h, "GET", "/admin/developer", Some(&other), "").await;
    assert_eq!(status, StatusCode::FORBIDDEN);

    let csrf = csrf_in(&html);
    let (status, _, _) = page_as(
        &h,
        "POST",
        "/admin/developer",
        Some(&dev),
        "csrf=forged&name=nightly-sync",
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "a forged form changes nothing");
    let (status, headers, _) = page_as(
        &h,
        "POST",
        "/admin/developer",
        Some(&dev),
        &format!("csrf={csrf}&name=nightly-sync&title=Nightly+sync"),
    )
    .await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    let project = location(&headers);
    a_project_is_renamed_from_its_page(&h, &dev, &csrf, &project).await;
    let (_, _, html) = page_as(&h, "GET", &project, Some(&dev), "").await;
    assert!(
        html.contains("campaign - marketing - delivery") && html.contains("OAuth Server-to-Server"),
        "{html}"
    );
    assert!(
        html.contains(r#"value="UserMgmtSDK" disabled"#),
        "a developer cannot add the User Management API"
    );
    let form = format!(
        "csrf={csrf}&service=CampaignSDK&authentication=oauth-server-to-server&profile={}&name=Nightly+sync",
        profile.id
    );
    let (status, headers, body) = page_as(&h, "POST", &project, Some(&dev), &form).await;
    assert_eq!(status, StatusCode::SEE_OTHER, "{body}");
    let page = location(&headers);
    let id = page.rsplit('/').next().unwrap().to_owned();
    // Viewing the page shows nothing; its form shows the secret, once.
    let (_, _, html) = page_as(&h, "GET", &page, Some(&dev), "").await;
    assert!(
        !html.contains(r#"class="secret""#) && html.contains(r#"id="show-secret""#),
        "{html}"
    );
    let (status, _, html) = page_as(&h, "POST", &page, Some(&dev), &format!("csrf={csrf}&action=show")).await;
    assert_eq!(status, StatusCode::OK);
    let secret = html
        .split(r#"class="secret">"#)
        .nth(1)
        .expect("the secret, shown once")
        .split('<')
        .next()
        .unwrap()
        .to_owned();
    let text = html.replace("&#x27;", "'").replace("&#39;", "'");
    assert!(
        text.contains(&format!("client_secret='{secret}'")),
        "the token command carries the secret"
    );
    let (status, _, t) = h.cc(&id, &secret, &[]).await;
    assert_eq!(status, StatusCode::OK, "{t}");
    let (_, _, again) = page_as(&h, "POST", &page, Some(&dev), &format!("csrf={csrf}&action=show")).await;
    assert!(!again.contains(&secret) && again.contains("$CLIENT_SECRET") && again.contains("shown already"));
    assert!(!again.contains(r#"id="show-secret""#));
    let (status, _, html) = page_as(
        &h,
        "POST",
        &page,
        Some(&dev),
        &format!("csrf={csrf}&action=token"),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let token = html
        .split(r#"<pre id="test-token">"#)
        .nth(1)
        .unwrap()
        .split('<')
        .next()
        .unwrap();
    let (_, _, profile_body) = h
        .call(get_bearer("/ims/profile/v1", &format!("Bearer {token}")))
        .await;
    assert_eq!(
        profile_body["projectedProductContext"][0]["prodCtx"]["label"],
        json!("campaign - marketing - delivery")
    );
    let text = html
        .replace("&#x27;", "'")
        .replace("&#39;", "'")
        .replace("&quot;", "\"");
    assert!(
        text.contains(&format!("'Authorization: Bearer {token}'")),
        "the SOAP command carries the token"
    );
    assert!(
        text.contains("'https://127.0.0.1:1/nl/jsp/soaprouter.jsp'"),
        "and the address of the instance its profile grants"
    );
    let (status, headers, _) = page_as(
        &h,
        "POST",
        &page,
        Some(&dev),
        &format!("csrf={csrf}&action=delete"),
    )
    .await;
    assert_eq!((status, location(&headers)), (StatusCode::SEE_OTHER, project));
    let (status, _, _) = h.cc(&id, &secret, &[]).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}

/// Renamed from its page: a forged form changes nothing, the right one is kept, and a name
/// another project holds is refused.
async fn a_project_is_renamed_from_its_page(h: &Harness, dev: &str, csrf: &str, project: &str) {
    let rename = format!("{project}/rename");
    let (status, _, _) = page_as(h, "POST", &rename, Some(dev), "csrf=forged&name=x").await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, headers, body) = page_as(
        h,
        "POST",
        &rename,
        Some(dev),
        &format!("csrf={csrf}&name=nightly-sync-2&title=Nightly+sync+two&description=Every+night"),
    )
    .await;
    assert_eq!(
        (status, location(&headers)),
        (StatusCode::SEE_OTHER, project.to_owned()),
        "{body}"
    );
    let (_, _, html) = page_as(h, "GET", project, Some(dev), "").await;
    assert!(
        html.contains("<h1>Nightly sync two</h1>")
            && html.contains("<code>nightly-sync-2</code>")
            && html.contains("Every night"),
        "{html}"
    );
    page_as(
        h,
        "POST",
        "/admin/developer",
        Some(dev),
        &format!("csrf={csrf}&name=taken&title=Taken"),
    )
    .await;
    let (status, _, html) = page_as(
        h,
        "POST",
        &rename,
        Some(dev),
        &format!("csrf={csrf}&name=taken&title=T"),
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{html}");
    assert!(html.contains("exists already"), "{html}");
}

/// Every route of the Developer Console API, with a harmless request for each.
fn console_routes(org: &str) -> Vec<(&'static str, String)> {
    let o = format!("/console/organizations/{org}");
    let w = format!("{o}/projects/1/workspaces/2");
    vec![
        ("GET", "/console/organizations".to_owned()),
        ("GET", format!("{o}/projects")),
        ("POST", format!("{o}/projects")),
        ("GET", format!("{o}/projects/1")),
        ("PATCH", format!("{o}/projects/1")),
        ("DELETE", format!("{o}/projects/1")),
        ("GET", format!("{o}/projects/1/workspaces")),
        ("POST", format!("{o}/projects/1/workspaces")),
        ("GET", w.clone()),
        ("GET", format!("{w}/credentials")),
        ("POST", format!("{w}/credentials/oauth-server-to-server")),
        (
            "PUT",
            format!("{w}/credentials/oauth_server_to_server/3/services"),
        ),
        ("DELETE", format!("{w}/credentials/3")),
        ("GET", format!("{w}/download")),
        ("POST", format!("{o}/credentials/oauth-server-to-server")),
        (
            "PUT",
            format!("{o}/credentials/oauth-server-to-server/3/services"),
        ),
        ("GET", format!("{o}/credentials/3/secrets")),
        ("POST", format!("{o}/credentials/3/secrets")),
        ("DELETE", format!("{o}/credentials/3/secrets/4")),
        ("GET", format!("{o}/projects_workspaces/credentials/3")),
        ("GET", format!("{o}/services")),
        ("GET", format!("{o}/integrations")),
        ("GET", format!("{o}/integrations/3")),
        ("DELETE", format!("{o}/integrations/3")),
        ("GET", format!("{o}/integrations/3/secrets")),
    ]
}

#[tokio::test]
async fn every_console_route_denies_by_default() {
    let h = harness().await;
    let org = numeric_org(&h).await;
    h.person("nobody@acme.test").await;
    let (person, person_key) = person_token(&h, "nobody@acme.test", PASSWORD).await;
    let (dev, dev_key) = developer(&h, "dev@acme.test").await;
    let bare = h.credential(&["openid", "AdobeID"]).await;
    let bare_token = h.token(&bare, "openid").await;
    let audit_before = h.audit("").await.len();
    for (method, path) in console_routes(&org) {
        let body = Some("{}");
        let (status, headers, _) = h.call(req(method, &path, None, None, body)).await;
        assert_eq!(
            status,
            StatusCode::UNAUTHORIZED,
            "{method} {path} without a token"
        );
        assert!(headers["www-authenticate"]
            .to_str()
            .unwrap()
            .contains("invalid_token"));
        let (status, _, _) = h.call(req(method, &path, Some("garbage"), Some("x"), body)).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{method} {path} with garbage");
        let (status, _, _) = h
            .call(req(method, &path, Some(&person), Some(&person_key), body))
            .await;
        assert_eq!(
            status,
            StatusCode::FORBIDDEN,
            "{method} {path} as a person without the role"
        );
        let (status, _, _) = h
            .call(req(method, &path, Some(&dev), Some(&person_key), body))
            .await;
        assert_eq!(
            status,
            StatusCode::FORBIDDEN,
            "{method} {path} with another client's key"
        );
        let (status, headers, _) = h
            .call(req(
                method,
                &path,
                Some(&bare_token),
                Some(&bare.client.client_id),
                body,
            ))
            .await;
        assert_eq!(
            status,
            StatusCode::FORBIDDEN,
            "{method} {path} as a credential without the console API"
        );
        assert!(headers["www-authenticate"]
            .to_str()
            .unwrap()
            .contains("insufficient_scope"));
        // With the role, the route exists (whatever it then says about the made-up ids).
        let (status, headers, _) = h.call(req(method, &path, Some(&dev), Some(&dev_key), body)).await;
        assert!(
            [
                StatusCode::OK,
                StatusCode::CREATED,
                StatusCode::BAD_REQUEST,
                StatusCode::NOT_FOUND
            ]
            .contains(&status),
            "{method} {path} as a developer: {status}"
        );
        assert_eq!(headers["cache-control"], "no-store", "{method} {path}");
    }
    // The refusals changed nothing.
    let changes: Vec<String> = h.audit("").await[..h.audit("").await.len() - audit_before]
        .iter()
        .map(|e| e.action.clone())
        .filter(|a| !a.starts_with("token.") && !a.starts_with("signin.") && !a.starts_with("role."))
        .collect();
    assert!(changes.is_empty(), "{changes:?}");
}
