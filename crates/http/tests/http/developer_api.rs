//! The Developer Console API: projects, credentials, subscriptions, secrets and their limits.

use http::StatusCode;
use ims_core::audit::Context;
use ims_core::keys::Algorithm;
use ims_core::Now;
use ims_identity::directory::Group;
use ims_identity::store::{ClientStore as _, DirectoryStore as _};
use serde_json::{json, Value};

use crate::harness::*;

/// The attack: a person holding only the developer role gave a credential the instance's
/// administrators' profile, and its token wrote operators. A developer now gives ordinary
/// profiles only; one that can carry ADMINISTRATION (an `admin` permission item, or "admin"
/// in its name) takes a system administrator, on creation and on a later subscription.
#[tokio::test]
async fn a_developer_cannot_give_a_credential_administration() {
    let h = harness().await;
    let (instance, ordinary) = marketing(
        &h,
        Some(("campaign - marketing - delivery", vec!["export".into()], None)),
    )
    .await;
    let ordinary = ordinary.unwrap();
    let ctx = Context::new(Now::system(), "test");
    let mut privileged = Vec::new();
    for (name, items) in [
        ("campaign - marketing - Admin", vec![]),
        ("campaign - marketing - ops", vec!["ADMIN".to_owned()]),
    ] {
        ims_identity::service::directory::create_product_profile(
            h.store.as_ref(),
            &instance,
            name,
            items,
            None,
            &ctx,
        )
        .await
        .unwrap();
        let id = ims_identity::store::DirectoryStore::groups(h.store.as_ref(), &h.org_id)
            .await
            .unwrap()
            .into_iter()
            .map(|(g, _)| g)
            .find(|g| g.name == name)
            .unwrap()
            .id;
        privileged.push(id);
    }
    let (token, key) = developer(&h, "dev@acme.test").await;
    let org = numeric_org(&h).await;
    let dev = Api {
        h: &h,
        token,
        key,
        org: org.clone(),
    };
    let with = |id: i64| json!([{"sdkCode": "CampaignSDK", "licenseConfigs": [{"id": id.to_string(), "op": "add"}]}]);
    let create = |services: Value| json!({"name": "Sync", "services": services});
    for id in &privileged {
        let (status, body) = dev
            .call(
                "POST",
                "/console/organizations/{org}/credentials/oauth-server-to-server",
                Some(create(with(*id))),
            )
            .await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
        assert!(body.to_string().contains("ADMINISTRATION"), "{body}");
    }
    let made = dev
        .ok(
            "POST",
            "/console/organizations/{org}/credentials/oauth-server-to-server",
            Some(create(with(ordinary.id))),
        )
        .await;
    let id = made["id"].as_str().unwrap().to_owned();
    let services = format!("/console/organizations/{{org}}/credentials/oauth-server-to-server/{id}/services");
    let (status, body) = dev.call("PUT", &services, Some(with(privileged[0]))).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    let held = h.store.credential_profiles(&id, None).await.unwrap();
    assert_eq!(
        held.iter().map(|p| p.profile.as_str()).collect::<Vec<_>>(),
        ["campaign - marketing - delivery"]
    );
    // A technical account using the console API does not either, unless a system
    // administrator opened the User Management API to it (the migration engine's).
    for (scopes, allowed) in [
        (vec!["openid", "adobeio_api"], false),
        (
            vec![
                "openid",
                "adobeio_api",
                ims_identity::service::directory::UMAPI_SCOPE,
            ],
            true,
        ),
    ] {
        let machine = h.credential(&scopes).await;
        let machine = Api {
            h: &h,
            token: h.token(&machine, &scopes.join(",")).await,
            key: machine.client.client_id.clone(),
            org: org.clone(),
        };
        let (status, body) = machine.call("PUT", &services, Some(with(privileged[1]))).await;
        let expected = if allowed {
            StatusCode::OK
        } else {
            StatusCode::FORBIDDEN
        };
        assert_eq!(status, expected, "{scopes:?}: {body}");
    }
    // A system administrator gives it.
    let (admin_token, admin_key) = person_token(&h, "admin@acme.test", ADMIN_PASSWORD).await;
    let admin = Api {
        h: &h,
        token: admin_token,
        key: admin_key,
        org,
    };
    let (status, body) = admin.call("PUT", &services, Some(with(privileged[0]))).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let held = h.store.credential_profiles(&id, None).await.unwrap();
    assert!(
        held.iter().any(|p| p.profile == "campaign - marketing - Admin"),
        "{held:?}"
    );
}

#[tokio::test]
async fn projects_credentials_subscriptions_secrets_and_deletion() {
    for db in [Db::Sqlite, Db::Postgres] {
        let Some(h) = harness_on(db, Algorithm::RS256).await else {
            continue;
        };
        let (_, profile) = marketing(
            &h,
            Some((
                "campaign - marketing - messagecenter",
                vec!["messagecenter".into()],
                None,
            )),
        )
        .await;
        let profile = profile.unwrap();
        let (token, key) = developer(&h, "dev@acme.test").await;
        let org = numeric_org(&h).await;
        let dev = Api {
            h: &h,
            token,
            key,
            org: org.clone(),
        };

        who_may_call(&dev, &org, db).await;
        let (p, w) = a_project_with_its_default_workspace(&dev).await;
        let config = the_services_offer_the_campaign_profiles(&dev, &profile).await;
        let base = format!("/console/organizations/{{org}}/projects/{p}/workspaces/{w}");
        let id = a_credential_subscribed_with_the_profile(&dev, &base, &config).await;
        let (secret, first_uuid, ta_token) = the_first_secret_is_shown_once_and_works(&dev, &id).await;
        let second = rotation_keeps_the_last_secret(&dev, &id, &secret, &first_uuid).await;
        the_download_and_the_credentials_own_token(&dev, &base, &id, &second, &org).await;
        deleting_the_credential_then_the_project(&dev, &p, &base, &id, &second, &ta_token).await;

        let audit = serde_json::to_string(&h.audit("").await).unwrap();
        assert!(
            !audit.contains(&secret) && !audit.contains(&second),
            "{db:?}: no secret in the audit log"
        );
        let actions: Vec<String> = h.audit("").await.iter().map(|e| e.action.clone()).collect();
        for a in [
            "project.create",
            "credential.create",
            "credential.subscribe",
            "credential.secret.show",
            "credential.secret.add",
            "credential.secret.remove",
            "credential.delete",
            "project.delete",
        ] {
            assert!(actions.iter().any(|x| x == a), "{db:?}: no {a} in the audit log");
        }
        h.cleanup().await;
    }
}

/// Who may call: no token, another key, a person without the role; the developer sees its own
/// organisation (`org`) only.
async fn who_may_call(dev: &Api<'_>, org: &str, db: Db) {
    let h = dev.h;
    let (status, _, _) = h
        .call(req("GET", "/console/organizations", None, None, None))
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{db:?}");
    let (status, _, _) = h
        .call(req(
            "GET",
            "/console/organizations",
            Some(&dev.token),
            Some("someone-else"),
            None,
        ))
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    h.person("nobody@acme.test").await;
    let (plain, plain_key) = person_token(h, "nobody@acme.test", PASSWORD).await;
    let (status, _, body) = h
        .call(req(
            "GET",
            "/console/organizations",
            Some(&plain),
            Some(&plain_key),
            None,
        ))
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");

    let orgs = dev.ok("GET", "/console/organizations", None).await;
    assert_eq!(orgs[0]["id"], json!(org));
    assert_eq!(orgs[0]["code"], json!(h.org_id));
    let (status, _) = dev.call("GET", "/console/organizations/999/projects", None).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "another organisation's path");
}

/// A project with its default workspace; names are checked and unique. The project's and the
/// workspace's ids.
async fn a_project_with_its_default_workspace(dev: &Api<'_>) -> (String, String) {
    let (status, made) = dev
        .call(
            "POST",
            "/console/organizations/{org}/projects",
            Some(
                json!({"name": "sync-job", "title": "Sync job", "description": "nightly", "type": "default"}),
            ),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{made}");
    let (p, w) = (
        made["projectId"].as_str().unwrap().to_owned(),
        made["workspaceId"].as_str().unwrap().to_owned(),
    );
    let (status, _) = dev
        .call(
            "POST",
            "/console/organizations/{org}/projects",
            Some(json!({"name": "sync-job", "title": "again"})),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT);
    let (status, body) = dev
        .call(
            "POST",
            "/console/organizations/{org}/projects",
            Some(json!({"name": "no spaces please"})),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    let listed = dev.ok("GET", "/console/organizations/{org}/projects", None).await;
    assert_eq!(listed.as_array().unwrap().len(), 1);
    assert_eq!(listed[0]["who_created"], json!("admin:dev@acme.test"));
    let spaces = dev
        .ok(
            "GET",
            &format!("/console/organizations/{{org}}/projects/{p}/workspaces"),
            None,
        )
        .await;
    assert_eq!(spaces[0]["id"], json!(w));
    assert_eq!(spaces[0]["name"], json!("Production"));
    (p, w)
}

/// The services offer the Campaign profiles as license configs: the config of `profile`.
async fn the_services_offer_the_campaign_profiles(dev: &Api<'_>, profile: &Group) -> Value {
    let services = dev.ok("GET", "/console/organizations/{org}/services", None).await;
    let campaign = services
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["code"] == "CampaignSDK")
        .unwrap();
    let config = &campaign["properties"]["licenseConfigs"][0];
    assert_eq!(config["name"], json!("campaign - marketing - messagecenter"));
    assert_eq!(config["id"], json!(profile.id.to_string()));
    config.clone()
}

/// A credential in the workspace at `base`, then subscribed with the profile of `config`; the
/// credential's id.
async fn a_credential_subscribed_with_the_profile(dev: &Api<'_>, base: &str, config: &Value) -> String {
    let cred = dev
        .ok(
            "POST",
            &format!("{base}/credentials/oauth-server-to-server"),
            Some(json!({"name": "Sync job", "description": "pushes events"})),
        )
        .await;
    let id = cred["id"].as_str().unwrap().to_owned();
    assert_eq!(cred["apiKey"], json!(id));
    let creds = dev.ok("GET", &format!("{base}/credentials"), None).await;
    assert_eq!(creds[0]["id_integration"], json!(id));
    assert_eq!(creds[0]["integration_type"], json!("oauth_server_to_server"));
    let subscription = json!([
        {"sdkCode": "CampaignSDK", "licenseConfigs": [{"id": config["id"], "productId": config["productId"], "op": "add"}], "roles": null},
        {"sdkCode": "AdobeIOManagementAPISDK", "licenseConfigs": null, "roles": null},
    ]);
    let (status, body) = dev
        .call(
            "PUT",
            &format!("{base}/credentials/oauth_server_to_server/{id}/services"),
            Some(subscription),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["sdkList"], json!(["AdobeIOManagementAPISDK", "CampaignSDK"]));
    // A developer cannot open the User Management API; an unknown profile is refused whole.
    let (status, _) = dev
        .call(
            "PUT",
            &format!("{base}/credentials/oauth_server_to_server/{id}/services"),
            Some(json!([{"sdkCode": "UserMgmtSDK"}])),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _) = dev
        .call(
            "PUT",
            &format!("{base}/credentials/oauth_server_to_server/{id}/services"),
            Some(json!([{"sdkCode": "CampaignSDK", "licenseConfigs": [{"id": "424242", "op": "add"}]}])),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);

    let detail = dev
        .ok(
            "GET",
            &format!("/console/organizations/{{org}}/integrations/{id}"),
            None,
        )
        .await;
    assert_eq!(
        detail["technicalAccountId"].as_str().unwrap().split('@').nth(1),
        Some("techacct.ims.local")
    );
    let campaign_props = detail["serviceProperties"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["sdkCode"] == "CampaignSDK")
        .unwrap();
    assert_eq!(
        campaign_props["licenseConfigs"][0]["name"],
        json!("campaign - marketing - messagecenter")
    );
    assert!(detail["scopes"]
        .as_array()
        .unwrap()
        .contains(&json!("adobeio_api")));
    id
}

/// The first secret is shown once, to one reader; it works, and the token carries the profile.
/// The secret, its id and the token.
async fn the_first_secret_is_shown_once_and_works(dev: &Api<'_>, id: &str) -> (String, String, String) {
    let h = dev.h;
    let secrets_path = format!("/console/organizations/{{org}}/integrations/{id}/secrets");
    let first = dev.ok("GET", &secrets_path, None).await;
    let secret = first["client_secrets"][0]["client_secret"]
        .as_str()
        .unwrap()
        .to_owned();
    let first_uuid = first["client_secrets"][0]["uuid"].as_str().unwrap().to_owned();
    assert!(secret.starts_with("imscs_") && secret.len() > 40, "{first}");
    let again = dev.ok("GET", &secrets_path, None).await;
    assert_eq!(again["client_secrets"][0]["client_secret"], Value::Null);
    assert!(again["client_secrets"][0]["hint"]
        .as_str()
        .unwrap()
        .starts_with("imscs_..."));
    assert!(!again.to_string().contains(&secret));

    // The secret works; the token carries the profile.
    let (status, _, t) = h
        .cc(
            id,
            &secret,
            &[("scope", "openid,AdobeID,additional_info.projectedProductContext")],
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{t}");
    let ta_token = t["access_token"].as_str().unwrap().to_owned();
    let (_, _, profile_body) = h
        .call(get_bearer("/ims/profile/v1", &format!("Bearer {ta_token}")))
        .await;
    assert_eq!(
        profile_body["projectedProductContext"][0]["prodCtx"]["label"],
        json!("campaign - marketing - messagecenter"),
        "{profile_body}"
    );
    (secret, first_uuid, ta_token)
}

/// Rotation: two secrets at once, the removed one (`first_uuid`, of `secret`) fails at once,
/// the last one stays. The second secret.
async fn rotation_keeps_the_last_secret(dev: &Api<'_>, id: &str, secret: &str, first_uuid: &str) -> String {
    let h = dev.h;
    let added = dev
        .ok(
            "POST",
            &format!("/console/organizations/{{org}}/credentials/{id}/secrets"),
            None,
        )
        .await;
    let second = added["client_secret"].as_str().unwrap().to_owned();
    for s in [secret, second.as_str()] {
        let (status, _, body) = h.cc(id, s, &[]).await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }
    dev.ok(
        "DELETE",
        &format!("/console/organizations/{{org}}/credentials/{id}/secrets/{first_uuid}"),
        None,
    )
    .await;
    let (status, _, _) = h.cc(id, secret, &[]).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "a removed secret fails at once");
    let (status, _, _) = h.cc(id, &second, &[]).await;
    assert_eq!(status, StatusCode::OK);
    let second_uuid = added["uuid"].as_str().unwrap();
    let (status, _) = dev
        .call(
            "DELETE",
            &format!("/console/organizations/{{org}}/credentials/{id}/secrets/{second_uuid}"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "the last secret stays");
    second
}

/// The workspace download names the credential; its secret is no longer shown. The
/// credential's own token (I/O Management API) drives the console too.
async fn the_download_and_the_credentials_own_token(
    dev: &Api<'_>,
    base: &str,
    id: &str,
    second: &str,
    org: &str,
) {
    let h = dev.h;
    let download = dev.ok("GET", &format!("{base}/download"), None).await;
    let c = &download["project"]["workspace"]["details"]["credentials"][0]["oauth_server_to_server"];
    assert_eq!(c["client_id"], json!(id));
    assert_eq!(download["project"]["org"]["ims_org_id"], json!(h.org_id));
    assert!(!download.to_string().contains(second));

    // The credential's own token (I/O Management API) drives the console too.
    let own = Api {
        h,
        token: h
            .cc(id, second, &[("scope", "openid,adobeio_api,read_client_secret")])
            .await
            .2["access_token"]
            .as_str()
            .unwrap()
            .to_owned(),
        key: id.to_owned(),
        org: org.to_owned(),
    };
    own.ok("GET", "/console/organizations/{org}/projects", None).await;
    let (status, _) = own
        .call(
            "POST",
            &format!("/console/organizations/{{org}}/credentials/{id}/secrets"),
            None,
        )
        .await;
    assert_eq!(
        status,
        StatusCode::FORBIDDEN,
        "adding secrets needs manage_client_secrets"
    );
}

/// A project holding a credential stays; deleting the credential stops the token endpoint at
/// once and issued tokens stop validating; then the project goes.
async fn deleting_the_credential_then_the_project(
    dev: &Api<'_>,
    p: &str,
    base: &str,
    id: &str,
    second: &str,
    ta_token: &str,
) {
    let h = dev.h;
    let (status, _) = dev
        .call(
            "DELETE",
            &format!("/console/organizations/{{org}}/projects/{p}"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT);
    dev.ok("DELETE", &format!("{base}/credentials/{id}"), None).await;
    let (status, _, _) = h.cc(id, second, &[]).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (_, _, v) = h
        .call(form(
            "/ims/validate_token/v1",
            &[("type", "access_token"), ("client_id", id), ("token", ta_token)],
        ))
        .await;
    assert_eq!(v["valid"], json!(false), "{v}");
    let (status, _) = dev
        .call(
            "GET",
            &format!("/console/organizations/{{org}}/integrations/{id}"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    dev.ok(
        "DELETE",
        &format!("/console/organizations/{{org}}/projects/{p}"),
        None,
    )
    .await;
    let (status, _) = dev.call("GET", &format!("{base}/credentials"), None).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "its workspaces are gone with it");
}

#[tokio::test]
async fn secrets_are_listed_without_being_used_up_and_removals_cannot_race_to_none() {
    for db in [Db::Sqlite, Db::Postgres] {
        let Some(h) = harness_on(db, Algorithm::ES256).await else {
            continue;
        };
        let org = numeric_org(&h).await;
        let (token, key) = developer(&h, "dev@acme.test").await;
        let dev = Api {
            h: &h,
            token,
            key,
            org: org.clone(),
        };
        let made = dev
            .ok(
                "POST",
                "/console/organizations/{org}/credentials/oauth-server-to-server",
                Some(json!({"name": "Race", "services": [{"sdkCode": "CampaignSDK"}]})),
            )
            .await;
        let id = made["id"].as_str().unwrap().to_owned();
        // The credential listing carries ids and times only; the integration's shows the
        // first secret, once.
        let listing = dev
            .ok(
                "GET",
                &format!("/console/organizations/{{org}}/credentials/{id}/secrets"),
                None,
            )
            .await;
        assert_eq!(
            listing["client_secrets"][0]["client_secret"],
            Value::Null,
            "{db:?}"
        );
        let shown = dev
            .ok(
                "GET",
                &format!("/console/organizations/{{org}}/integrations/{id}/secrets"),
                None,
            )
            .await;
        let first = shown["client_secrets"][0]["client_secret"]
            .as_str()
            .expect("shown now")
            .to_owned();
        let first_id = shown["client_secrets"][0]["uuid"].as_str().unwrap().to_owned();
        let added = dev
            .ok(
                "POST",
                &format!("/console/organizations/{{org}}/credentials/{id}/secrets"),
                None,
            )
            .await;
        let second = added["client_secret"].as_str().unwrap().to_owned();
        let second_id = added["uuid"].as_str().unwrap().to_owned();
        // Both removed at once: one goes, the last one stays.
        let path = |sid: &str| format!("/console/organizations/{org}/credentials/{id}/secrets/{sid}");
        let (a, b) = tokio::join!(
            h.call(req(
                "DELETE",
                &path(&first_id),
                Some(&dev.token),
                Some(&dev.key),
                None
            )),
            h.call(req(
                "DELETE",
                &path(&second_id),
                Some(&dev.token),
                Some(&dev.key),
                None
            )),
        );
        let mut statuses = [a.0, b.0];
        statuses.sort();
        assert_eq!(
            statuses,
            [StatusCode::OK, StatusCode::CONFLICT],
            "{db:?}: {a:?} {b:?}"
        );
        let mut live = 0;
        for s in [&first, &second] {
            if h.cc(&id, s, &[]).await.0 == StatusCode::OK {
                live += 1;
            }
        }
        assert_eq!(live, 1, "{db:?}: exactly one secret left, and it works");

        // A system administrator cannot add the User Management API to a credential whose
        // secrets others know.
        let (admin_token, admin_key) = person_token(&h, "admin@acme.test", ADMIN_PASSWORD).await;
        let admin = Api {
            h: &h,
            token: admin_token,
            key: admin_key,
            org: org.clone(),
        };
        let (status, body) = admin
            .call(
                "PUT",
                &format!("/console/organizations/{{org}}/credentials/oauth-server-to-server/{id}/services"),
                Some(json!([{"sdkCode": "UserMgmtSDK"}])),
            )
            .await;
        assert_eq!(status, StatusCode::CONFLICT, "{db:?}: {body}");
        assert!(!h
            .store
            .client(&id)
            .await
            .unwrap()
            .unwrap()
            .scopes
            .iter()
            .any(|s| s == "user_management_sdk"));

        // A credential made outside the console is the system administrators'.
        let outside = h.credential(&["openid"]).await;
        let outside_path = format!(
            "/console/organizations/{{org}}/integrations/{}/secrets",
            outside.client.client_id
        );
        assert_eq!(
            dev.call("GET", &outside_path, None).await.0,
            StatusCode::FORBIDDEN
        );
        assert_eq!(admin.call("GET", &outside_path, None).await.0, StatusCode::OK);

        // A third-party application a system administrator consented to does not act for
        // them, here or in the User Management API.
        let third = h.people_client(false).await;
        let mut b = Browser::default();
        let (_, page) = sign_in(&h, &mut b, &third, "admin@acme.test", ADMIN_PASSWORD).await;
        let (_, _, html) = b.get(&h.app, &page).await;
        let (_, headers, _) = b
            .post(&h.app, &page, &[("csrf", &csrf_in(&html)), ("consent", "allow")])
            .await;
        let code = query_of(&location(&headers))["code"].clone();
        let (status, body) = redeem(&h, &third, &code).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let third_token = body["access_token"].as_str().unwrap();
        for path in [
            "/console/organizations".to_owned(),
            format!("/v2/usermanagement/groups/{}/0", h.org_id),
        ] {
            let (status, _, _) = h
                .call(req("GET", &path, Some(third_token), Some(&third), None))
                .await;
            assert_eq!(status, StatusCode::FORBIDDEN, "{db:?} {path}");
        }
        h.cleanup().await;
    }
}

#[tokio::test]
async fn the_api_budget_and_the_secret_cap_hold() {
    let mut settings = settings(Algorithm::ES256);
    settings.umapi_requests_per_minute = 4;
    let h = harness_with(Db::Sqlite, settings).await.unwrap();
    let (token, key) = developer(&h, "dev@acme.test").await;
    let dev = Api {
        h: &h,
        token,
        key,
        org: numeric_org(&h).await,
    };
    let made = dev
        .ok(
            "POST",
            "/console/organizations/{org}/credentials/oauth-server-to-server",
            Some(json!({"name": "Capped"})),
        )
        .await;
    let id = made["id"].as_str().unwrap();
    let mut statuses = Vec::new();
    for _ in 0..10 {
        statuses.push(
            dev.call(
                "POST",
                &format!("/console/organizations/{{org}}/credentials/{id}/secrets"),
                None,
            )
            .await
            .0,
        );
    }
    let (status, headers, _) = h
        .call(req(
            "GET",
            "/console/organizations",
            Some(&dev.token),
            Some(&dev.key),
            None,
        ))
        .await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    assert!(headers["retry-after"].to_str().unwrap().parse::<u64>().unwrap() >= 1);
    // Three secrets added within the budget (one call created the credential), then 429s.
    assert_eq!(
        statuses.iter().filter(|s| **s == StatusCode::OK).count(),
        3,
        "{statuses:?}"
    );
    assert!(statuses
        .iter()
        .all(|s| [StatusCode::OK, StatusCode::TOO_MANY_REQUESTS].contains(s)));
    // The cap, through the domain (no budget there).
    let caller = h
        .state
        .ims
        .developer()
        .console_caller(&dev.token, Some(&dev.key), Now::system())
        .await
        .unwrap();
    let org = h.state.ims.tokens().organization(&h.org_id).await.unwrap();
    let ctx = Context::new(Now::system(), "test");
    let mut refused = None;
    for _ in 0..ims_identity::service::developer::MAX_SECRETS {
        if let Err(e) = h
            .state
            .ims
            .developer()
            .add_credential_secret(&caller, &org, id, &ctx)
            .await
        {
            refused = Some(e);
            break;
        }
    }
    assert!(
        refused.as_ref().map(ims_core::Error::kind) == Some(ims_core::ErrorKind::Conflict),
        "{refused:?}"
    );
    let held = h.store.client_with_secrets(id).await.unwrap().unwrap().1.len();
    assert_eq!(held, ims_identity::service::developer::MAX_SECRETS);
}
