//! The User Management API: profiles, scopes, limits, the right caller, listings and budgets.

use axum::body::Body;
use http::{Request, StatusCode};
use ims_core::audit::Context;
use ims_core::keys::Algorithm;
use ims_core::Now;
use ims_identity::service::directory::UMAPI_SCOPE;
use ims_identity::store::AuditQuery;
use ims_identity::store::AuditStore as _;
use serde_json::{json, Value};
use tower::ServiceExt as _;

use crate::harness::*;

/// Every route of the admin surface, with a harmless request for each.
fn routes(org: &str) -> Vec<(&'static str, String, Option<&'static str>)> {
    vec![
        ("GET", format!("/v2/usermanagement/users/{org}/0"), None),
        (
            "GET",
            format!("/v2/usermanagement/users/{org}/0/Some%20Group?directOnly=False"),
            None,
        ),
        ("GET", format!("/v2/usermanagement/groups/{org}/0"), None),
        (
            "GET",
            format!("/v2/usermanagement/organizations/{org}/users/admin@acme.test"),
            None,
        ),
        (
            "POST",
            format!("/v2/usermanagement/action/{org}?testOnly=true"),
            Some(r#"[{"usergroup":"Probe","do":[{"createUserGroup":{}}]}]"#),
        ),
        (
            "GET",
            format!("/v2/usermanagement/audit/{org}/0?action=umapi."),
            None,
        ),
        ("GET", format!("/v2/usermanagement/profiles/{org}/Probe"), None),
        (
            "POST",
            format!("/v2/usermanagement/profiles/{org}"),
            Some(r#"{"name":"Probe","productContext":"dma_campaign_classic","instance":"none"}"#),
        ),
    ]
}

#[tokio::test]
async fn product_profiles_are_created_and_read_with_their_permission_items() {
    let h = harness().await;
    marketing(&h, None).await;
    let um = h.credential(&["openid", UMAPI_SCOPE]).await;
    let token = h.token(&um, UMAPI_SCOPE).await;
    let key = Some(um.client.client_id.as_str());
    let create = |body: &'static str| {
        h.call(req(
            "POST",
            &format!("/v2/usermanagement/profiles/{}", h.org_id),
            Some(&token),
            key,
            Some(body),
        ))
    };
    let body = r#"{"name":"campaign - marketing - deliveryOperators","productContext":"dma_campaign_classic","instance":"marketing","permissions":["prepareDelivery","startDelivery"]}"#;
    let (status, headers, out) = create(body).await;
    assert_eq!(status, StatusCode::CREATED, "{out}");
    assert_eq!(headers["cache-control"], "no-store");
    assert_eq!(
        out["profile"]["groupName"],
        "campaign - marketing - deliveryOperators"
    );
    assert_eq!(out["profile"]["instance"], "marketing");
    assert_eq!(
        out["profile"]["permissions"],
        json!(["prepareDelivery", "startDelivery"])
    );
    let (status, _, out) = create(body).await;
    assert_eq!(
        (status, out["result"].as_str()),
        (StatusCode::CONFLICT, Some("error.group.exists"))
    );
    let (status, _, out) =
        create(r#"{"name":"x","productContext":"dma_campaign_classic","instance":"nowhere"}"#).await;
    assert_eq!(
        (status, out["result"].as_str()),
        (StatusCode::NOT_FOUND, Some("error.product.not_found"))
    );
    let (status, _, _) = create(r#"{"name":"x"}"#).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);

    let get = |name: &'static str| {
        h.call(req(
            "GET",
            &format!("/v2/usermanagement/profiles/{}/{name}", h.org_id),
            Some(&token),
            key,
            None,
        ))
    };
    let (status, _, out) = get("campaign%20-%20marketing%20-%20deliveryOperators").await;
    assert_eq!(status, StatusCode::OK, "{out}");
    assert_eq!(
        out["profile"]["permissions"],
        json!(["prepareDelivery", "startDelivery"])
    );
    assert_eq!(out["profile"]["memberCount"], 0);
    let (status, _, out) = get("nothing").await;
    assert_eq!(
        (status, out["result"].as_str()),
        (StatusCode::NOT_FOUND, Some("error.group.not_found"))
    );
    // The creation is audited with who made it.
    let events = h
        .store
        .audit(&AuditQuery {
            action_prefix: Some("profile.create".into()),
            limit: 10,
        })
        .await
        .unwrap();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].actor, format!("client:{}", um.client.client_id));
}

/// A system administrator's token held by a first-party application that signs people in
/// for something else (an instance's own client asks `openid`, `AdobeID`, the profile
/// scope...) reaches neither administration API: each needs its own scope.
#[tokio::test]
async fn a_first_party_token_without_the_api_scope_administers_nothing() {
    let h = harness().await;
    let (client, _) = h
        .creds
        .create_people_client(
            &h.org_id,
            ims_identity::credentials::NewPeopleClient {
                name: "Campaign instance",
                client_type: ims_identity::model::ClientType::Public,
                redirect_uris: vec![REDIRECT.into()],
                scopes: [
                    "openid",
                    "AdobeID",
                    "email",
                    "profile",
                    "additional_info.projectedProductContext",
                ]
                .map(String::from)
                .to_vec(),
                first_party: true,
            },
            &Context::new(Now::system(), "test"),
        )
        .await
        .unwrap();
    let mut b = Browser::default();
    let path = authorize_path(
        &client.client_id,
        &[("scope", "openid AdobeID additional_info.projectedProductContext")],
    );
    let (status, to) = sign_in_at(&h, &mut b, &path, "admin@acme.test", ADMIN_PASSWORD).await;
    assert_eq!(status, StatusCode::SEE_OTHER, "{to}");
    let (status, body) = redeem(&h, &client.client_id, &query_of(&to)["code"]).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let token = body["access_token"].as_str().unwrap();
    for path in [
        format!("/v2/usermanagement/users/{}/0", h.org_id),
        "/console/organizations".to_owned(),
    ] {
        let (status, headers, out) = h
            .call(req("GET", &path, Some(token), Some(&client.client_id), None))
            .await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{path}: {out}");
        assert!(
            format!("{headers:?}{out}").contains("insufficient_scope") || out.to_string().contains("scope"),
            "{path}: {out}"
        );
    }
}

/// Every shape a User Management API request can make the server walk, at ten times its
/// limit (entries, steps, names, JSON nesting): refused whole in the API's convention, and
/// the API answers the next request.
#[tokio::test]
async fn action_requests_at_ten_times_their_limits_are_refused_cleanly() {
    use ims_identity::umapi::{MAX_ENTRIES, MAX_NAMES_PER_STEP, MAX_STEPS};
    let h = harness().await;
    h.person("jane@acme.test").await;
    let um = h.credential(&["openid", UMAPI_SCOPE]).await;
    let token = h.token(&um, UMAPI_SCOPE).await;
    let action = format!("/v2/usermanagement/action/{}", h.org_id);
    let post = |body: String| {
        let (h, token, key, action) = (&h, token.clone(), um.client.client_id.clone(), action.clone());
        async move {
            h.call(req("POST", &action, Some(&token), Some(&key), Some(&body)))
                .await
        }
    };
    let entry = r#"{"user":"jane@acme.test","do":[{"update":{"firstname":"Jane"}}]}"#;
    let entries = format!("[{}]", vec![entry; 10 * MAX_ENTRIES].join(","));
    let step = r#"{"update":{"firstname":"Jane"}}"#;
    let steps = format!(
        r#"[{{"user":"jane@acme.test","do":[{}]}}]"#,
        vec![step; 10 * MAX_STEPS].join(",")
    );
    let names: Vec<String> = (0..10 * MAX_NAMES_PER_STEP)
        .map(|i| format!("\"g{i}\""))
        .collect();
    let many_names = format!(
        r#"[{{"user":"jane@acme.test","do":[{{"add":{{"group":[{}]}}}}]}}]"#,
        names.join(",")
    );
    let deep = format!("{}{}", "[".repeat(1280), "]".repeat(1280));
    for (what, body) in [
        ("entries", entries),
        ("steps", steps),
        ("names", many_names),
        ("nesting", deep),
    ] {
        // Refused whole (a client error), or the entry failed at its step (the API's
        // per-entry error), never a server error and never applied.
        let (status, _, out) = post(body).await;
        let refused = status.is_client_error()
            || (status == StatusCode::OK
                && out["result"] != "success"
                && out["errors"].as_array().is_some_and(|e| !e.is_empty()));
        assert!(refused, "{what}: {status} {out}");
        let (status, _, out) = post(format!("[{entry}]")).await;
        assert_eq!(
            (status, out["result"].as_str()),
            (StatusCode::OK, Some("success")),
            "{what}: then {out}"
        );
    }
}

#[tokio::test]
async fn a_token_shows_the_profiles_held_for_a_product_context() {
    let h = harness().await;
    let ctx = Context::new(Now::system(), "test");
    marketing(
        &h,
        Some(("campaign - marketing - admin", vec!["admin".into()], None)),
    )
    .await;
    h.person("jane@acme.test").await;
    let um = h.credential(&["openid", UMAPI_SCOPE]).await;
    let token = h.token(&um, UMAPI_SCOPE).await;
    let body = r#"[{"usergroup":"Marketers","do":[{"createUserGroup":{}},{"add":{"user":["jane@acme.test"]}},{"add":{"productConfiguration":["campaign - marketing - admin"]}}]}]"#;
    let (status, _, out) = h
        .call(req(
            "POST",
            &format!("/v2/usermanagement/action/{}", h.org_id),
            Some(&token),
            Some(&um.client.client_id),
            Some(body),
        ))
        .await;
    assert_eq!(
        (status, out["result"].as_str()),
        (StatusCode::OK, Some("success")),
        "{out}"
    );
    let (jane, _) = person_token(&h, "jane@acme.test", PASSWORD).await;
    let get = |q: &'static str, t: String| {
        let h = &h;
        async move {
            h.call(
                Request::get(format!("/ims/profile/v1{q}"))
                    .header("authorization", format!("Bearer {t}"))
                    .body(Body::empty())
                    .unwrap(),
            )
            .await
        }
    };
    let (status, _, out) = get("?product_context=dma_campaign_classic", jane.clone()).await;
    assert_eq!(status, StatusCode::OK, "{out}");
    assert_eq!(out["email"], "jane@acme.test");
    let ctx0 = &out["projectedProductContext"][0]["prodCtx"];
    assert_eq!(
        (
            ctx0["serviceCode"].as_str(),
            ctx0["label"].as_str(),
            ctx0["instance"].as_str()
        ),
        (
            Some("dma_campaign_classic"),
            Some("campaign - marketing - admin"),
            Some("marketing")
        )
    );
    assert_eq!(ctx0["permissions"], json!(["admin"]));
    assert_eq!(ctx0["through"], json!(["Marketers"]));
    let (_, _, out) = get("?product_context=another_product", jane).await;
    assert_eq!(out["projectedProductContext"], json!([]));
    // An application that asked only `openid` learns nothing of the person's access.
    let third = h.people_client(true).await;
    let mut b = Browser::default();
    let (status, to) = sign_in_at(
        &h,
        &mut b,
        &authorize_path(&third, &[("scope", "openid")]),
        "jane@acme.test",
        PASSWORD,
    )
    .await;
    assert_eq!(status, StatusCode::SEE_OTHER, "{to}");
    let (status, body) = redeem(&h, &third, &query_of(&to)["code"]).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, headers, out) = get("", body["access_token"].as_str().unwrap().to_owned()).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{out}");
    assert!(
        format!("{headers:?}").contains("insufficient_scope"),
        "{headers:?}"
    );
    // A technical account holds profiles through its credential.
    let profile = ims_identity::store::DirectoryStore::groups(h.store.as_ref(), &h.org_id)
        .await
        .unwrap()
        .into_iter()
        .map(|(g, _)| g)
        .find(|g| g.name == "campaign - marketing - admin")
        .unwrap();
    // ... once its credential is subscribed to the Campaign API or holds one: the scope
    // alone (the I/O Management API brings it too) reads nothing.
    let machine = h
        .credential(&["openid", "additional_info.projectedProductContext"])
        .await;
    let machine_token = h
        .token(&machine, "openid,additional_info.projectedProductContext")
        .await;
    let (status, _, out) = get("?product_context=dma_campaign_classic", machine_token.clone()).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{out}");
    let subscribed = h.campaign_credential().await;
    let (status, _, out) = get(
        "?product_context=dma_campaign_classic",
        h.token(&subscribed, CAMPAIGN_SCOPES).await,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{out}");
    assert_eq!(out["projectedProductContext"], json!([]), "{out}");
    h.state
        .ims
        .directory()
        .set_profile_credential(&h.org_id, &profile, &machine.client.client_id, true, &ctx)
        .await
        .unwrap();
    let (_, _, out) = get("?product_context=dma_campaign_classic", machine_token).await;
    assert_eq!(
        out["projectedProductContext"][0]["prodCtx"]["label"], "campaign - marketing - admin",
        "{out}"
    );
    assert!(h
        .state
        .ims
        .directory()
        .set_profile_credential(&h.org_id, &profile, "no-such-client", true, &ctx)
        .await
        .is_err());
    let (status, _, _) = get("", "garbage".into()).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn every_route_denies_without_the_right_caller() {
    let h = harness().await;
    let org = h.org_id.clone();
    let um = h.credential(&["openid", UMAPI_SCOPE]).await;
    let um_token = h.token(&um, &format!("openid,{UMAPI_SCOPE}")).await;
    let other = h.credential(&["openid", "AdobeID"]).await;
    let other_token = h.token(&other, "openid").await;
    h.person("worker@acme.test").await;
    let (worker, worker_client) = person_token(&h, "worker@acme.test", PASSWORD).await;
    let (admin, admin_client) = person_token(&h, "admin@acme.test", ADMIN_PASSWORD).await;
    let um_id = um.client.client_id.clone();
    let other_id = other.client.client_id.clone();
    for (method, path, body) in routes(&org) {
        let cases: Vec<(&str, Option<&str>, Option<&str>, StatusCode)> = vec![
            ("no token", None, None, StatusCode::UNAUTHORIZED),
            (
                "garbage token",
                Some("not.a.token"),
                Some(&um_id),
                StatusCode::UNAUTHORIZED,
            ),
            ("no api key", Some(&um_token), None, StatusCode::FORBIDDEN),
            (
                "another client's api key",
                Some(&um_token),
                Some(&other_id),
                StatusCode::FORBIDDEN,
            ),
            (
                "a credential without the API",
                Some(&other_token),
                Some(&other_id),
                StatusCode::FORBIDDEN,
            ),
            (
                "a person without the role",
                Some(&worker),
                Some(&worker_client),
                StatusCode::FORBIDDEN,
            ),
        ];
        for (what, token, key, expected) in cases {
            let (status, headers, body_out) = h.call(req(method, &path, token, key, body)).await;
            assert_eq!(status, expected, "{method} {path}: {what}: {body_out}");
            if expected == StatusCode::UNAUTHORIZED {
                assert!(headers["www-authenticate"]
                    .to_str()
                    .unwrap()
                    .contains("invalid_token"));
            }
        }
        for (what, token, key) in [
            ("the credential", um_token.as_str(), um_id.as_str()),
            ("a system administrator", admin.as_str(), admin_client.as_str()),
        ] {
            let (status, headers, out) = h.call(req(method, &path, Some(token), Some(key), body)).await;
            assert!(
                status == StatusCode::OK || status == StatusCode::NOT_FOUND,
                "{method} {path} as {what}: {status} {out}"
            );
            assert!(headers.contains_key("x-request-id"));
        }
        // Nothing rewrites the audit log: its routes only read.
        if path.contains("/audit/") {
            for m in ["POST", "PUT", "PATCH", "DELETE"] {
                let (status, _, _) = h
                    .call(req(m, &path, Some(&um_token), Some(&um_id), Some("[]")))
                    .await;
                assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED, "{m} {path}");
            }
        }
        // Another organisation: refused whatever the caller may do in its own.
        let foreign = path.replace(&org, "FFFFFFFFFFFFFFFFFFFFFFFF@AdobeOrg");
        let (status, _, out) = h
            .call(req(method, &foreign, Some(&um_token), Some(&um_id), body))
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{out}");
        assert_eq!(out["result"], "error.organization.invalid_id");
    }
}

#[tokio::test]
async fn listing_paging_not_found_and_the_request_id() {
    let mut settings = settings(Algorithm::ES256);
    settings.umapi_page_size = 2;
    let h = harness_with(Db::Sqlite, settings).await.unwrap();
    let org = h.org_id.clone();
    let um = h.credential(&["openid", UMAPI_SCOPE]).await;
    let token = h.token(&um, UMAPI_SCOPE).await;
    let id = um.client.client_id.clone();
    let c = Caller { h: &h, token, id };
    let (status, _, out) = c.call(
            "POST",
            format!("/v2/usermanagement/action/{org}"),
            Some(r#"[{"user":"b@acme.test","do":[{"createEnterpriseID":{"email":"b@acme.test","firstname":"B","country":"de"}}]},
                    {"user":"c@acme.test","do":[{"createFederatedID":{"email":"c@acme.test","country":"FR"}}]},
                    {"user":"d@acme.test","do":[{"addAdobeID":{"email":"d@acme.test"}}]},
                    {"usergroup":"Team","do":[{"createUserGroup":{"description":"t"}},{"add":{"user":["b@acme.test","c@acme.test"]}}]}]"#),
        )
        .await;
    assert_eq!(
        (status, out["result"].as_str(), out["completed"].as_i64()),
        (StatusCode::OK, Some("success"), Some(4)),
        "{out}"
    );
    pages_lookups_and_what_is_not_found(&c, &org).await;
    whole_request_refusals(&c, &org).await;
    the_request_id_is_echoed_and_audited(&c, &org).await;
}

/// The User Management API as a credential calls it.
struct Caller<'a> {
    h: &'a Harness,
    token: String,
    id: String,
}

impl Caller<'_> {
    async fn call(
        &self,
        method: &str,
        path: String,
        body: Option<&str>,
    ) -> (StatusCode, http::HeaderMap, Value) {
        self.h
            .call(req(method, &path, Some(&self.token), Some(&self.id), body))
            .await
    }
}

/// Users listed page by page (two a page), past the end, one by one, by group; what is not
/// there is not found.
async fn pages_lookups_and_what_is_not_found(c: &Caller<'_>, org: &str) {
    let mut seen = Vec::new();
    for page in 0.. {
        let (status, _, out) = c
            .call("GET", format!("/v2/usermanagement/users/{org}/{page}"), None)
            .await;
        assert_eq!(status, StatusCode::OK);
        let users = out["users"].as_array().unwrap();
        assert!(users.len() <= 2);
        seen.extend(users.iter().map(|u| u["email"].as_str().unwrap().to_owned()));
        if out["lastPage"] == true {
            break;
        }
    }
    assert_eq!(
        seen,
        ["admin@acme.test", "b@acme.test", "c@acme.test", "d@acme.test"]
    );
    let (_, _, out) = c
        .call("GET", format!("/v2/usermanagement/users/{org}/9"), None)
        .await;
    assert_eq!(
        (out["lastPage"].as_bool(), out["users"].as_array().map(Vec::len)),
        (Some(true), Some(0)),
        "past the end: an empty last page"
    );
    let (status, _, out) = c
        .call(
            "GET",
            format!("/v2/usermanagement/organizations/{org}/users/B@ACME.test"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(out["user"]["type"], "enterpriseID");
    assert_eq!(out["user"]["country"], "DE");
    assert_eq!(out["user"]["groups"], json!(["Team"]));
    let (status, _, _) = c
        .call(
            "GET",
            format!("/v2/usermanagement/organizations/{org}/users/zz@acme.test"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _, _) = c
        .call(
            "GET",
            format!("/v2/usermanagement/users/{org}/0/NoSuchGroup"),
            None,
        )
        .await;
    assert_eq!(
        status,
        StatusCode::NOT_FOUND,
        "an unknown group is not found, which the client reads as empty"
    );
    let (_, _, out) = c
        .call("GET", format!("/v2/usermanagement/users/{org}/0/team"), None)
        .await;
    assert_eq!(out["users"].as_array().unwrap().len(), 2);
    let (status, _, out) = c
        .call("GET", format!("/v2/usermanagement/users/{org}/x"), None)
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{out}");
}

/// Whole-request refusals, in the API's convention.
async fn whole_request_refusals(c: &Caller<'_>, org: &str) {
    let (h, token, id) = (c.h, c.token.as_str(), c.id.as_str());
    for (body, code) in [
        ("{", "error.request.malformed"),
        ("{}", "error.request.malformed"),
        ("[]", "error.request.malformed"),
        (r#"[{"do":[]}]"#, "error.request.malformed"),
    ] {
        let (status, _, out) = h
            .call(req(
                "POST",
                &format!("/v2/usermanagement/action/{org}"),
                Some(token),
                Some(id),
                Some(body),
            ))
            .await;
        assert_eq!(
            (status, out["result"].as_str()),
            (StatusCode::BAD_REQUEST, Some(code)),
            "{body}"
        );
    }
    let eleven = format!("[{}]", [r#"{"user":"x@acme.test","do":[]}"#; 11].join(","));
    let (status, _, out) = h
        .call(req(
            "POST",
            &format!("/v2/usermanagement/action/{org}"),
            Some(token),
            Some(id),
            Some(&eleven),
        ))
        .await;
    assert_eq!(
        (status, out["result"].as_str()),
        (StatusCode::BAD_REQUEST, Some("error.request.too_many_entries"))
    );
}

/// The request id is echoed and lands in the audit log with the change.
async fn the_request_id_is_echoed_and_audited(c: &Caller<'_>, org: &str) {
    let (h, token, id) = (c.h, c.token.as_str(), c.id.as_str());
    let resp = h
        .app
        .clone()
        .oneshot({
            let mut r = req(
                "POST",
                &format!("/v2/usermanagement/action/{org}"),
                Some(token),
                Some(id),
                Some(r#"[{"user":"d@acme.test","requestID":"r-1","do":[{"update":{"firstname":"Dee"}}]}]"#),
            );
            r.headers_mut()
                .insert("x-request-id", "f00d-1234_1".parse().unwrap());
            r
        })
        .await
        .unwrap();
    assert_eq!(resp.headers()["x-request-id"], "f00d-1234_1");
    let audit = h
        .store
        .audit(&AuditQuery {
            action_prefix: Some("umapi.".into()),
            limit: 50,
        })
        .await
        .unwrap();
    let line = audit
        .iter()
        .find(|e| e.request_id.as_deref() == Some("f00d-1234_1"))
        .expect("audited with its request id");
    assert_eq!(
        (line.action.as_str(), line.target.as_str(), line.actor.clone()),
        ("umapi.user", "d@acme.test", format!("client:{id}"))
    );
    assert_eq!(line.details["requestID"], "r-1");
}

/// Over its budget a client gets 429 with `Retry-After`, on both backends: in memory on SQLite,
/// in the database (shared by the nodes) on PostgreSQL.
#[tokio::test]
async fn a_client_over_its_budget_gets_429_with_retry_after() {
    for db in [Db::Sqlite, Db::Postgres] {
        let mut settings = settings(Algorithm::ES256);
        settings.umapi_requests_per_minute = 5;
        let Some(h) = harness_with(db, settings).await else {
            continue;
        };
        let a = h.credential(&["openid", UMAPI_SCOPE]).await;
        let b = h.credential(&["openid", UMAPI_SCOPE]).await;
        let path = format!("/v2/usermanagement/groups/{}/0", h.org_id);
        let ta = h.token(&a, UMAPI_SCOPE).await;
        let tb = h.token(&b, UMAPI_SCOPE).await;
        for _ in 0..5 {
            let (status, _, _) = h
                .call(req("GET", &path, Some(&ta), Some(&a.client.client_id), None))
                .await;
            assert_eq!(status, StatusCode::OK);
        }
        let (status, headers, out) = h
            .call(req("GET", &path, Some(&ta), Some(&a.client.client_id), None))
            .await;
        assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
        let wait: u64 = headers["retry-after"].to_str().unwrap().parse().unwrap();
        assert!((1..=12).contains(&wait), "{wait}");
        assert_eq!(out["error_code"], "429050");
        let (status, _, _) = h
            .call(req("GET", &path, Some(&tb), Some(&b.client.client_id), None))
            .await;
        assert_eq!(status, StatusCode::OK, "budgets are per client");
        h.cleanup().await;
    }
}
