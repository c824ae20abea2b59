//! Credentials and signing keys: disabling, secret rotation, the JWKS, restarts and a second node.

use axum::body::Body;
use http::{Request, StatusCode};
use ims_core::audit::Context;
use ims_core::keys::{Algorithm, MasterKey};
use ims_core::Now;
use ims_http::{public_router, AppState, Metrics};
use ims_identity::credentials::{Credentials, NewSecret};
use ims_identity::service::Ims;
use ims_store::{Options, SqlStore};
use serde_json::json;
use std::sync::Arc;

use crate::harness::*;

#[tokio::test]
async fn disabling_a_credential_stops_tokens_and_issued_tokens_at_once() {
    for db in [Db::Sqlite, Db::Postgres] {
        let Some(h) = harness_on(db, Algorithm::ES256).await else {
            continue;
        };
        let c = h.credential(&["openid"]).await;
        let observer = h.credential(&["openid"]).await;
        let token = h.token(&c, "openid").await;
        let ctx = Context::new(Now::system(), "test");
        h.creds
            .set_credential_disabled(&c.client.client_id, true, &ctx)
            .await
            .unwrap();
        let (status, _, body) = h.cc(&c.client.client_id, c.secret.expose(), &[]).await;
        assert_eq!(
            (status, body["error"].as_str()),
            (StatusCode::UNAUTHORIZED, Some("invalid_client"))
        );
        let (_, _, body) = h
            .call(form(
                "/ims/introspect/v1",
                &[
                    ("token", &token),
                    ("client_id", &observer.client.client_id),
                    ("client_secret", observer.secret.expose()),
                ],
            ))
            .await;
        assert_eq!(body, json!({"active": false}));
        let (status, _, _) = h
            .call(get_bearer("/ims/organizations/v6", &format!("Bearer {token}")))
            .await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        h.creds
            .set_credential_disabled(&c.client.client_id, false, &ctx)
            .await
            .unwrap();
        h.token(&c, "openid").await;
        assert!(h
            .audit("credential.")
            .await
            .iter()
            .any(|e| e.action == "credential.disable"));
        h.cleanup().await;
    }
}

#[tokio::test]
async fn secret_rotation_overlaps_and_removal_is_immediate() {
    let h = harness().await;
    let c = h.credential(&["openid"]).await;
    let ctx = Context::new(Now::system(), "test");
    let second = h.creds.add_secret(&c.client.client_id, None, &ctx).await.unwrap();
    assert_ne!(second.secret, c.secret);
    // Both valid during the overlap.
    h.token(&c, "openid").await;
    h.token(
        &NewSecret {
            client: c.client.clone(),
            ..second.clone()
        },
        "openid",
    )
    .await;
    h.creds
        .remove_secret(&c.client.client_id, &c.record.secret_id, &ctx)
        .await
        .unwrap();
    let (status, _, _) = h.cc(&c.client.client_id, c.secret.expose(), &[]).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "a removed secret fails at once");
    h.token(
        &NewSecret {
            client: c.client.clone(),
            ..second
        },
        "openid",
    )
    .await;
    // Stored as digests only.
    let stored = ims_identity::store::ClientStore::secrets(&*h.store, &c.client.client_id)
        .await
        .unwrap();
    assert!(stored
        .iter()
        .all(|s| s.digest.len() == 64 && !s.digest.contains("imscs_")));
    // An expired secret fails.
    let soon = Now::system().plus_millis(1);
    let expiring = h
        .creds
        .add_secret(
            &c.client.client_id,
            Some(soon.plus_millis(50)),
            &Context::new(Now::system(), "t"),
        )
        .await
        .unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    let (status, _, _) = h.cc(&c.client.client_id, expiring.secret.expose(), &[]).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn jwks_publishes_public_keys_only_and_rotation_keeps_old_tokens_valid() {
    let h = harness_on(Db::Sqlite, Algorithm::RS256).await.unwrap();
    let c = h.credential(&["openid"]).await;
    let before = h.token(&c, "openid").await;
    assert_eq!(header(&before)["alg"], "RS256");
    let ctx = Context::new(Now::system(), "test");
    // A scheduled rotation publishes first and keeps signing with the old key.
    let next = h.state.ims.tokens().rotate_key(None, false, &ctx).await.unwrap();
    let (_, _, jwks) = h
        .call(Request::get("/ims/keys").body(Body::empty()).unwrap())
        .await;
    let kids: Vec<&str> = jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["kid"].as_str().unwrap())
        .collect();
    assert!(kids.contains(&next.as_str()), "published before it signs");
    assert_ne!(header(&h.token(&c, "openid").await)["kid"], next.as_str());
    // An immediate rotation signs with the new key; tokens of the old one stay valid.
    let now_kid = h
        .state
        .ims
        .tokens()
        .rotate_key(Some(Algorithm::ES256), true, &ctx)
        .await
        .unwrap();
    let _ = now_kid;
    let (_, _, jwks) = h
        .call(Request::get("/ims/keys").body(Body::empty()).unwrap())
        .await;
    let keys = jwks["keys"].as_array().unwrap();
    let mut kids: Vec<&str> = keys.iter().map(|k| k["kid"].as_str().unwrap()).collect();
    let n = kids.len();
    kids.sort_unstable();
    kids.dedup();
    assert_eq!(kids.len(), n, "kids are unique");
    for k in keys {
        for private in ["d", "p", "q", "dp", "dq", "qi", "k"] {
            assert!(k.get(private).is_none(), "no private or symmetric material: {k}");
        }
    }
    assert!(h
        .state
        .ims
        .tokens()
        .validate_access_token(&before, Now::system())
        .await
        .is_ok());
    assert!(h.audit("key.").await.iter().any(|e| e.action == "key.rotate"));
}

/// A new service on the harness's store and master key: a restart, or another node.
async fn another_node(h: &Harness, ctx: &Context) -> Ims {
    Ims::start(
        Arc::<SqlStore>::clone(&h.store),
        h.master.clone(),
        settings(Algorithm::ES256),
        ctx,
    )
    .await
    .unwrap()
}

#[tokio::test]
async fn keys_and_tokens_survive_a_restart_and_a_second_node_agrees() {
    for db in [Db::Sqlite, Db::Postgres] {
        let Some(h) = harness_on(db, Algorithm::ES256).await else {
            continue;
        };
        let c = h.credential(&["openid"]).await;
        let t = h.token(&c, "openid").await;
        // A new service on the same store and master key (a restart, or another node).
        let ctx = Context::new(Now::system(), "test");
        let other = another_node(&h, &ctx).await;
        assert!(other
            .tokens()
            .validate_access_token(&t, Now::system())
            .await
            .is_ok());
        // The second node rotates; the first sees the new kid on first contact.
        let kid = other.tokens().rotate_key(None, true, &ctx).await.unwrap();
        let other_state = AppState {
            ims: Arc::new(other),
            metrics: Arc::new(Metrics::default()),
        };
        let t2 = &token_from(&other_state, &c).await;
        assert_eq!(header(t2)["kid"], kid.as_str());
        assert!(h
            .state
            .ims
            .tokens()
            .validate_access_token(t2, Now::system())
            .await
            .is_ok());
        // A backup restored into an empty place validates the tokens issued before it.
        if matches!(db, Db::Sqlite) {
            let copy = h._dir.path().join("backup.db");
            h.store.backup_to(copy.to_str().unwrap()).await.unwrap();
            let restored = Arc::new(
                SqlStore::open(
                    &Options::new(format!("sqlite://{}", copy.display())),
                    Now::system(),
                )
                .await
                .unwrap(),
            );
            let ims = Ims::start(restored, h.master.clone(), settings(Algorithm::ES256), &ctx)
                .await
                .unwrap();
            assert!(ims
                .tokens()
                .validate_access_token(&t, Now::system())
                .await
                .is_ok());
            assert!(ims
                .tokens()
                .validate_access_token(t2, Now::system())
                .await
                .is_ok());
        }
        // A wrong master key cannot load the keys.
        let wrong = Ims::start(
            Arc::<SqlStore>::clone(&h.store),
            MasterKey::generate(),
            settings(Algorithm::ES256),
            &ctx,
        )
        .await;
        assert!(wrong.is_err(), "keys are encrypted at rest");
        h.cleanup().await;
    }
}

#[tokio::test]
async fn a_change_made_elsewhere_reaches_the_token_endpoint() {
    for db in [Db::Sqlite, Db::Postgres] {
        let Some(h) = harness_on(db, Algorithm::ES256).await else {
            continue;
        };
        let c = h.credential(&["openid"]).await;
        // Warm the in-memory client, then disable it through another connection (the CLI, a node).
        h.token(&c, "openid").await;
        h.token(&c, "openid").await;
        let url = match db {
            Db::Sqlite => format!("sqlite://{}", h._dir.path().join("store.db").display()),
            Db::Postgres => std::env::var("TEST_POSTGRES_URL")
                .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into()),
        };
        let mut opts = Options::new(url);
        opts.schema = h.schema.clone();
        let elsewhere = Arc::new(SqlStore::open(&opts, Now::system()).await.unwrap());
        let creds = Credentials::new(Arc::<SqlStore>::clone(&elsewhere), "ims.test");
        creds
            .set_credential_disabled(
                &c.client.client_id,
                true,
                &Context::new(Now::system(), "elsewhere"),
            )
            .await
            .unwrap();
        // Requests until the first refusal; SQLite must refuse the very first one.
        let mut attempts = 0;
        let started = std::time::Instant::now();
        loop {
            attempts += 1;
            let (status, _, _) = h.cc(&c.client.client_id, c.secret.expose(), &[]).await;
            if status == StatusCode::UNAUTHORIZED {
                break;
            }
            assert!(
                started.elapsed() < std::time::Duration::from_secs(2),
                "{db:?}: still issuing after 2 s"
            );
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        if matches!(db, Db::Sqlite) {
            assert_eq!(attempts, 1, "SQLite sees the change on the next request");
        }
        elsewhere.close().await;
        h.cleanup().await;
    }
}

#[tokio::test]
async fn unknown_kids_trigger_a_rate_limited_reread() {
    let h = harness().await;
    // A token signed by a key this IMS never had, with a kid it does not know.
    let master = MasterKey::generate();
    let now = Now::system();
    let foreign = ims_core::keys::KeyRing::load(
        vec![ims_core::keys::generate(Algorithm::ES256, &master, now, now).unwrap()],
        &master,
        None,
    )
    .unwrap();
    let claims =
        json!({"iss": ISSUER, "type": "access_token", "id": "x", "client_id": "c", "exp": now.secs() + 600});
    let forged = ims_core::jose::sign(&claims, foreign.signer(Algorithm::ES256, now).unwrap()).unwrap();
    let before = h.state.ims.tokens().forced_key_reloads();
    for _ in 0..20 {
        let err = h
            .state
            .ims
            .tokens()
            .validate_access_token(&forged, Now::system())
            .await
            .unwrap_err();
        assert_eq!(err.code(), "invalid_token");
    }
    assert_eq!(
        h.state.ims.tokens().forced_key_reloads() - before,
        1,
        "at most one reread a second"
    );
    let (_, _, metrics) = send(&h.ops, Request::get("/metrics").body(Body::empty()).unwrap()).await;
    assert!(metrics
        .as_str()
        .unwrap()
        .contains("ims_key_forced_reloads_total 1"));
}

/// Tokens of a key another node just added, arriving together: one reread serves them all, and
/// none is taken for invalid while it runs (a node once answered `active: false` to a fresh
/// token that came in during the reread another one had started).
#[tokio::test]
async fn tokens_of_a_new_key_arriving_together_all_validate_after_one_reread() {
    let h = harness().await;
    let c = h.credential(&["openid"]).await;
    let ctx = Context::new(Now::system(), "test");
    let other = another_node(&h, &ctx).await;
    let kid = other.tokens().rotate_key(None, true, &ctx).await.unwrap();
    let other_state = AppState {
        ims: Arc::new(other),
        metrics: Arc::new(Metrics::default()),
    };
    let mut tokens = Vec::new();
    for _ in 0..8 {
        let t = token_from(&other_state, &c).await;
        assert_eq!(header(&t)["kid"], kid.as_str());
        tokens.push(t);
    }
    let before = h.state.ims.tokens().forced_key_reloads();
    let checks = tokens
        .iter()
        .map(|t| h.state.ims.tokens().validate_access_token(t, Now::system()));
    for (i, checked) in futures_util::future::join_all(checks)
        .await
        .into_iter()
        .enumerate()
    {
        assert!(checked.is_ok(), "token {i}: {checked:?}");
    }
    assert_eq!(h.state.ims.tokens().forced_key_reloads() - before, 1);
}

/// A client-credentials token of `c` issued by the node whose state is `state`.
async fn token_from(state: &AppState, c: &NewSecret) -> String {
    let (_, _, body) = send(
        &public_router(state.clone()),
        form(
            "/ims/token/v3",
            &[
                ("grant_type", "client_credentials"),
                ("client_id", &c.client.client_id),
                ("client_secret", c.secret.expose()),
            ],
        ),
    )
    .await;
    body["access_token"].as_str().unwrap().to_owned()
}
