//! Credentials, their secrets and signing keys, revocations, the audit log and the signal that
//! tells other nodes a credential changed.

use ims_core::error::StoreError;
use ims_core::keys::{self, Algorithm, MasterKey};
use ims_identity::model::ClientSecretRecord;
use ims_identity::store::{AuditQuery, AuditStore, ClientStore, KeyStore, RevocationStore};
use ims_store::{Options, SqlStore};

use crate::harness::*;

#[tokio::test]
async fn clients_and_secrets_round_trip() {
    for f in each_backend().await {
        let (org, client, secret) = seeded(&f.store).await;
        assert_eq!(f.store.client(&client.client_id).await.unwrap().unwrap(), client);
        let (c, secrets) = f
            .store
            .client_with_secrets(&client.client_id)
            .await
            .unwrap()
            .unwrap();
        assert_eq!((c, secrets), (client.clone(), vec![secret.clone()]));
        let second = ClientSecretRecord {
            secret_id: "s2".into(),
            digest: "d2".into(),
            expires_at: Some(now().plus_secs(60)),
            ..secret.clone()
        };
        f.store
            .add_secret(&second, &event("credential.secret.add"))
            .await
            .unwrap();
        assert_eq!(f.store.secrets(&client.client_id).await.unwrap().len(), 2);
        assert!(f
            .store
            .remove_secret(&client.client_id, "s1", &event("credential.secret.remove"))
            .await
            .unwrap());
        assert!(!f
            .store
            .remove_secret(&client.client_id, "s1", &event("credential.secret.remove"))
            .await
            .unwrap());
        assert_eq!(f.store.secrets(&client.client_id).await.unwrap(), vec![second]);
        assert!(f
            .store
            .set_client_disabled(&client.client_id, true, now(), &event("credential.disable"))
            .await
            .unwrap());
        assert!(f.store.client(&client.client_id).await.unwrap().unwrap().disabled);
        assert!(!f
            .store
            .set_client_disabled("nope", true, now(), &event("credential.disable"))
            .await
            .unwrap());
        assert_eq!(f.store.clients(&org.org_id).await.unwrap().len(), 1);
        assert!(f.store.client_with_secrets("nope").await.unwrap().is_none());
        f.cleanup().await;
    }
}

#[tokio::test]
async fn duplicate_and_dangling_writes_are_conflicts_and_write_nothing() {
    for f in each_backend().await {
        let (_, client, secret) = seeded(&f.store).await;
        let before = f
            .store
            .audit(&AuditQuery {
                limit: 1000,
                ..Default::default()
            })
            .await
            .unwrap()
            .len();
        let err = f
            .store
            .create_client(&client, Some(&secret), &event("credential.create"))
            .await
            .unwrap_err();
        assert!(matches!(err, StoreError::Conflict(_)), "{err:?}");
        let orphan = ClientSecretRecord {
            secret_id: "s9".into(),
            client_id: "missing".into(),
            ..secret
        };
        let err = f
            .store
            .add_secret(&orphan, &event("credential.secret.add"))
            .await
            .unwrap_err();
        assert!(matches!(err, StoreError::Conflict(_)), "{err:?}");
        let after = f
            .store
            .audit(&AuditQuery {
                limit: 1000,
                ..Default::default()
            })
            .await
            .unwrap()
            .len();
        assert_eq!(before, after, "a refused change leaves no audit line");
        f.cleanup().await;
    }
}

#[tokio::test]
async fn keys_are_stored_sealed_and_reload() {
    for f in each_backend().await {
        let master = MasterKey::generate();
        let k = keys::generate(Algorithm::ES256, &master, now(), now()).unwrap();
        f.store.insert_key(&k, &event("key.create")).await.unwrap();
        let loaded = f.store.keys().await.unwrap();
        assert_eq!(loaded, vec![k.clone()]);
        assert!(!loaded[0].sealed_private.contains("PRIVATE"));
        let ring = keys::KeyRing::load(loaded, &master, None).unwrap();
        assert!(ring.signer(Algorithm::ES256, now()).is_some());
        f.store
            .delete_keys(std::slice::from_ref(&k.kid), &event("key.delete"))
            .await
            .unwrap();
        assert!(f.store.keys().await.unwrap().is_empty());
        f.cleanup().await;
    }
}

#[tokio::test]
async fn revocations_are_recorded_idempotently_and_purged() {
    for f in each_backend().await {
        f.store
            .revoke_token("t1", "c", now().plus_secs(10), now(), &event("token.revoke"))
            .await
            .unwrap();
        f.store
            .revoke_token("t1", "c", now().plus_secs(10), now(), &event("token.revoke"))
            .await
            .unwrap();
        assert!(f.store.is_revoked("t1").await.unwrap());
        assert!(!f.store.is_revoked("t2").await.unwrap());
        assert_eq!(f.store.purge_revocations(now().plus_secs(11)).await.unwrap(), 1);
        assert!(!f.store.is_revoked("t1").await.unwrap());
        f.cleanup().await;
    }
}

#[tokio::test]
async fn audit_log_is_append_only() {
    for f in each_backend().await {
        seeded(&f.store).await;
        let mut e = event("credential.disable");
        e.source = Some("127.0.0.1".into());
        e.request_id = Some("r-1".into());
        f.store.append_audit(&e).await.unwrap();
        let got = f
            .store
            .audit(&AuditQuery {
                action_prefix: Some("credential.".into()),
                limit: 10,
            })
            .await
            .unwrap();
        assert_eq!(got.first(), Some(&e), "newest first");
        assert!(got.iter().all(|x| x.action.starts_with("credential.")));
        // No API rewrites it, and the database itself refuses to.
        let pool_err = f.raw("UPDATE audit_log SET actor = 'x'").await;
        assert!(pool_err.is_err(), "update must be refused");
        let pool_err = f.raw("DELETE FROM audit_log").await;
        assert!(pool_err.is_err(), "delete must be refused");
        f.cleanup().await;
    }
}

/// Waits up to five seconds for the change signal to satisfy `pred`.
async fn signal_until(store: &SqlStore, pred: impl Fn(Option<u64>) -> bool) -> Option<u64> {
    use ims_identity::store::ClientChangeSignal as _;
    for _ in 0..100 {
        let g = store.client_generation();
        if pred(g) {
            return g;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!("the change signal never moved");
}

#[tokio::test]
async fn client_changes_by_another_connection_move_the_signal() {
    for f in each_backend().await {
        let (_, client, _) = seeded(&f.store).await;
        // A second store on the same database stands for the CLI or another node.
        let mut opts = Options::new(f.url.clone());
        opts.schema = f.schema.clone();
        opts.max_connections = 2;
        let other = SqlStore::open(&opts, now()).await.unwrap();
        let before = signal_until(&f.store, |g| g.is_some()).await;
        other
            .set_client_disabled(&client.client_id, true, now(), &event("credential.disable"))
            .await
            .unwrap();
        let after = signal_until(&f.store, |g| g.is_some() && g != before).await;
        assert_ne!(before, after);
        // Our own writes move it at once, on every backend.
        let here = ims_identity::store::ClientChangeSignal::client_generation(&f.store);
        f.store
            .set_client_disabled(&client.client_id, false, now(), &event("credential.enable"))
            .await
            .unwrap();
        assert_ne!(
            ims_identity::store::ClientChangeSignal::client_generation(&f.store),
            here
        );
        other.close().await;
        f.cleanup().await;
    }
}

/// A node whose notifications never arrive (as behind PgBouncer in transaction mode, which
/// accepts LISTEN and delivers nothing; here its listener is on another database, where no
/// notification of ours is sent) still sees a client change within twice its poll interval,
/// through the change counter.
#[tokio::test]
async fn client_changes_reach_a_node_that_hears_no_notifications_within_the_poll_bound() {
    for f in each_backend().await {
        if !f.url.starts_with("postgres") {
            continue;
        }
        let (_, client, _) = seeded(&f.store).await;
        let poll = std::time::Duration::from_millis(200);
        let mut opts = Options::new(f.url.clone());
        opts.schema = f.schema.clone();
        opts.max_connections = 2;
        opts.change_poll = poll;
        let (base, _) = f.url.rsplit_once('/').unwrap();
        opts.listen_url = Some(format!("{base}/postgres"));
        let deaf = SqlStore::open(&opts, now()).await.unwrap();
        let before = signal_until(&deaf, |g| g.is_some()).await;
        // Quiet: the generation holds while nothing changes.
        tokio::time::sleep(3 * poll).await;
        assert_eq!(
            ims_identity::store::ClientChangeSignal::client_generation(&deaf),
            before
        );
        let changed = std::time::Instant::now();
        f.store
            .set_client_disabled(&client.client_id, true, now(), &event("credential.disable"))
            .await
            .unwrap();
        signal_until(&deaf, |g| g.is_some() && g != before).await;
        let seen = changed.elapsed();
        assert!(
            seen <= 2 * poll,
            "seen after {seen:?}, beyond twice the poll interval"
        );
        deaf.close().await;
        f.cleanup().await;
    }
}

/// On PostgreSQL the nodes take from one budget per key: five calls a minute are five between
/// two nodes, not five each; the budget refills with time. SQLite holds none (one node keeps
/// its own in memory).
#[tokio::test]
async fn api_budgets_are_shared_by_the_nodes_of_one_database() {
    use ims_identity::store::BudgetStore as _;
    for f in each_backend().await {
        let t0 = now();
        if !f.url.starts_with("postgres") {
            assert_eq!(f.store.take_budget("umapi:c", 5, t0).await.unwrap(), None);
            continue;
        }
        let mut opts = Options::new(f.url.clone());
        opts.schema = f.schema.clone();
        opts.max_connections = 2;
        let other = SqlStore::open(&opts, t0).await.unwrap();
        for node in [&f.store, &other, &f.store, &other, &other] {
            assert_eq!(node.take_budget("umapi:c", 5, t0).await.unwrap(), Some(Ok(())));
        }
        // Spent, on both nodes; a minute a call at five a minute is twelve seconds.
        assert_eq!(
            f.store.take_budget("umapi:c", 5, t0).await.unwrap(),
            Some(Err(12))
        );
        assert_eq!(other.take_budget("umapi:c", 5, t0).await.unwrap(), Some(Err(12)));
        // Another key has its own; time refills.
        assert_eq!(other.take_budget("umapi:d", 5, t0).await.unwrap(), Some(Ok(())));
        let later = ims_core::Now::from_millis(t0.millis() + 12_000);
        assert_eq!(
            f.store.take_budget("umapi:c", 5, later).await.unwrap(),
            Some(Ok(()))
        );
        assert!(matches!(
            other.take_budget("umapi:c", 5, later).await.unwrap(),
            Some(Err(_))
        ));
        // A node whose clock is behind neither refills nor drains anything by it.
        let behind = ims_core::Now::from_millis(t0.millis() - 60_000);
        assert!(matches!(
            other.take_budget("umapi:c", 5, behind).await.unwrap(),
            Some(Err(_))
        ));
        other.close().await;
        f.cleanup().await;
    }
}
