//! The instance database: operators, groups and rights, sessions, folders, usage and its
//! migrations, on both backends.

use ims_campaign::model::{AuthPath, AuthType, Operator, UsageEvent};
use ims_campaign::service::{Caller, Instance, InstanceInfo, InstanceKind};
use ims_campaign::store::{OperatorStore, SessionStore, SwitchStep, UsageStore};
use ims_campaign::Build;
use ims_core::error::StoreError;
use ims_core::secret::Secret;
use ims_identity::store::{AuditQuery, AuditStore};
use ims_store::instance::SqlInstanceStore;
use ims_store::{migrate, Backend, Options};
use ims_wire::rights::DEFAULT_GROUPS;
use std::sync::Arc;

use crate::harness::*;

struct Inst {
    store: Arc<SqlInstanceStore>,
    schema: Option<String>,
    _dir: Option<tempfile::TempDir>,
}

impl Inst {
    async fn cleanup(self) {
        if let Some(s) = &self.schema {
            self.store.drop_schema(s).await.unwrap();
        }
        self.store.close().await;
    }
}

/// The SQLite instance store alone (tests about domain rules, not storage).
async fn sqlite_only() -> Inst {
    let mut all = each().await;
    let first = all.remove(0);
    for other in all {
        other.cleanup().await;
    }
    first
}

async fn each() -> Vec<Inst> {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("instance.db").display());
    let mut out = vec![Inst {
        store: Arc::new(SqlInstanceStore::open(&Options::new(url), now()).await.unwrap()),
        schema: None,
        _dir: Some(dir),
    }];
    if let Some(url) = pg_url() {
        let schema = fresh_schema();
        let mut opts = Options::new(url);
        opts.schema = Some(schema.clone());
        opts.max_connections = 4;
        out.push(Inst {
            store: Arc::new(SqlInstanceStore::open(&opts, now()).await.unwrap()),
            schema: Some(schema),
            _dir: None,
        });
    }
    for i in &out {
        for g in DEFAULT_GROUPS {
            i.store.ensure_group(g.name, g.label, g.rights).await.unwrap();
        }
    }
    out
}

async fn operator(login: &str, password: Option<&str>, groups: &[&str]) -> Operator {
    let hash = match password {
        Some(p) => Some(ims_core::password::hash(&Secret::new(p)).await.unwrap()),
        None => None,
    };
    Operator {
        id: 0,
        login: login.into(),
        label: format!("{login} label"),
        email: Some(format!("{login}@example.com")),
        auth_type: AuthType::Native,
        disabled: false,
        forbid_rich_client: false,
        trusted_ip_mask: None,
        security_zone: None,
        rights: vec!["export".into()],
        groups: groups.iter().map(|g| g.to_string()).collect(),
        password_hash: hash,
        ims_id: None,
        builtin: false,
        created_at: now(),
        modified_at: now(),
    }
}

#[tokio::test]
async fn a_batch_of_switches_decides_each_operator_alone_on_both_backends() {
    let ev = |action: &str| {
        ims_core::audit::Context::new(ims_core::Now::from_millis(5), "test").event(
            action,
            "t",
            "success",
            serde_json::json!({}),
        )
    };
    for i in each().await {
        for login in ["ana", "bob", "cy"] {
            let op = operator(login, Some("pw-1234567"), &["deliveryOperators"]).await;
            i.store
                .create_operator(&op, &ev("operator.create"))
                .await
                .unwrap();
        }
        let logins: Vec<String> = ["cy", "ana", "nobody", "bob"].map(String::from).to_vec();
        let mut found = i.store.operators_by_logins(&logins).await.unwrap();
        found.sort_by(|a, b| a.login.cmp(&b.login));
        assert_eq!(
            found.iter().map(|o| o.login.as_str()).collect::<Vec<_>>(),
            ["ana", "bob", "cy"]
        );
        assert_eq!(found[0], i.store.operator_by_login("ana").await.unwrap().unwrap());
        let step = |op: &Operator, read_at: ims_core::Now, link: &str| SwitchStep {
            id: op.id,
            read_at,
            from: AuthType::Native,
            to: AuthType::Ims,
            link: Some(link.to_owned()),
            end_path: AuthPath::Native,
            reset_password: false,
            access: None,
            audit: ev("operator.migrate"),
        };
        let stale = ims_core::Now::from_millis(found[1].modified_at.millis() - 1);
        // A session of ana's (the first found).
        let session = |digest: &str, auth_path| ims_campaign::model::Session {
            session_digest: digest.into(),
            security_digest: format!("{digest}-security"),
            operator_id: found[0].id,
            auth_path,
            created_at: now(),
            expires_at: now().plus_secs(60),
        };
        i.store
            .insert_session(&session("before", AuthPath::Native))
            .await
            .unwrap();
        let done = i
            .store
            .switch_operators(&[
                step(&found[0], found[0].modified_at, "ims-ana"),
                // Read before a change made meanwhile: refused.
                step(&found[1], stale, "ims-bob"),
                // The identity ana was just linked to: refused, ana keeps it.
                step(&found[2], found[2].modified_at, "ims-ana"),
            ])
            .await
            .unwrap();
        assert_eq!(done, [true, false, false]);
        let ana = i.store.operator_by_login("ana").await.unwrap().unwrap();
        assert_eq!(
            (ana.auth_type, ana.ims_id.as_deref()),
            (AuthType::Ims, Some("ims-ana"))
        );
        // Its native sessions ended with the switch, which alone was audited.
        assert!(i.store.session("before").await.unwrap().is_none());
        let audited = i
            .store
            .audit(&AuditQuery {
                action_prefix: Some("operator.migrate".into()),
                limit: 100,
            })
            .await
            .unwrap();
        assert_eq!(audited.len(), 1);
        // A native sign-in that read ana before the switch cannot open its session after.
        assert!(matches!(
            i.store.insert_session(&session("late", AuthPath::Native)).await,
            Err(StoreError::Conflict(_))
        ));
        assert!(i.store.session("late").await.unwrap().is_none());
        i.store
            .insert_session(&session("ims", AuthPath::Ims))
            .await
            .unwrap();
        for login in ["bob", "cy"] {
            let op = i.store.operator_by_login(login).await.unwrap().unwrap();
            assert_eq!((op.auth_type, op.ims_id), (AuthType::Native, None), "{login}");
        }
        // Steps that cannot affect one another are made by one statement: each still only if
        // its operator is as it was read.
        let bob = i.store.operator_by_login("bob").await.unwrap().unwrap();
        let cy = i.store.operator_by_login("cy").await.unwrap().unwrap();
        let cy_stale = ims_core::Now::from_millis(cy.modified_at.millis() - 1);
        let mut fresh = step(&bob, bob.modified_at, "ims-bob");
        fresh.reset_password = true;
        let done = i
            .store
            .switch_operators(&[fresh, step(&cy, cy_stale, "ims-cy")])
            .await
            .unwrap();
        assert_eq!(done, [true, false]);
        let bob = i.store.operator_by_login("bob").await.unwrap().unwrap();
        assert_eq!(
            (bob.auth_type, bob.ims_id.as_deref(), bob.password_hash.is_none()),
            (AuthType::Ims, Some("ims-bob"), true)
        );
        let cy = i.store.operator_by_login("cy").await.unwrap().unwrap();
        assert_eq!((cy.auth_type, cy.ims_id), (AuthType::Native, None));
        i.cleanup().await;
    }
}

#[tokio::test]
async fn operators_groups_and_rights_round_trip() {
    for i in each().await {
        let op = operator("jdoe", Some("pw-1234567"), &["deliveryOperators", "admin"]).await;
        let id = i
            .store
            .create_operator(
                &op,
                &ims_core::audit::Context::new(ims_core::Now::from_millis(0), "test").event(
                    "operator.create",
                    "t",
                    "success",
                    serde_json::json!({}),
                ),
            )
            .await
            .unwrap();
        let got = i.store.operator_by_login("jdoe").await.unwrap().unwrap();
        assert_eq!(got.id, id);
        assert_eq!(
            got.groups,
            vec!["admin".to_owned(), "deliveryOperators".to_owned()]
        );
        assert_eq!(got.rights, vec!["export".to_owned()]);
        assert_eq!(i.store.operator(id).await.unwrap().unwrap(), got);
        let err = i
            .store
            .create_operator(
                &op,
                &ims_core::audit::Context::new(ims_core::Now::from_millis(0), "test").event(
                    "operator.create",
                    "t",
                    "success",
                    serde_json::json!({}),
                ),
            )
            .await
            .unwrap_err();
        assert!(matches!(err, StoreError::Conflict(_)), "duplicate login: {err:?}");
        let ghost = operator("ghost", None, &["noSuchGroup"]).await;
        assert!(matches!(
            i.store
                .create_operator(
                    &ghost,
                    &ims_core::audit::Context::new(ims_core::Now::from_millis(0), "test").event(
                        "operator.create",
                        "t",
                        "success",
                        serde_json::json!({})
                    )
                )
                .await,
            Err(StoreError::Conflict(_))
        ));
        assert!(
            i.store.operator_by_login("ghost").await.unwrap().is_none(),
            "nothing half-created"
        );
        let groups = i.store.groups().await.unwrap();
        assert_eq!(groups.len(), DEFAULT_GROUPS.len());
        let delivery = groups.iter().find(|g| g.name == "deliveryOperators").unwrap();
        assert_eq!(
            delivery.rights,
            vec!["prepareDelivery".to_owned(), "startDelivery".to_owned()]
        );
        assert_eq!(i.store.operator_count().await.unwrap(), 1);
        i.cleanup().await;
    }
}

#[tokio::test]
async fn operator_updates_deletes_and_pages_on_both_backends() {
    use ims_campaign::store::RecipientStore as _;
    for i in each().await {
        let audit = |action: &str| {
            ims_core::audit::Context::new(now(), "test").event(action, "t", "success", serde_json::json!({}))
        };
        let mut ids = Vec::new();
        for login in ["ana", "bob", "carla_x", "dan%"] {
            let op = operator(login, Some("pw-1234567"), &["deliveryOperators"]).await;
            ids.push(
                i.store
                    .create_operator(&op, &audit("operator.create"))
                    .await
                    .unwrap(),
            );
        }
        // A page, a search (wildcards taken literally, case-insensitive), the total.
        let (page, total) = i.store.operators_page(None, 1, 2).await.unwrap();
        assert_eq!(total, 4);
        assert_eq!(
            page.iter().map(|o| o.login.as_str()).collect::<Vec<_>>(),
            ["bob", "carla_x"]
        );
        assert_eq!(page[0].groups, ["deliveryOperators"], "groups come with the page");
        let (found, n) = i.store.operators_page(Some("A_X"), 0, 10).await.unwrap();
        assert_eq!((found.len(), n), (1, 1));
        let (found, _) = i.store.operators_page(Some("%"), 0, 10).await.unwrap();
        assert_eq!(
            found.iter().map(|o| o.login.as_str()).collect::<Vec<_>>(),
            ["dan%"]
        );
        let (found, _) = i.store.operators_page(Some("BOB@EXAMPLE"), 0, 10).await.unwrap();
        assert_eq!(found.len(), 1, "email is searched");
        // Update replaces fields and sets; with end_sessions the sessions go too.
        let mut bob = i.store.operator(ids[1]).await.unwrap().unwrap();
        let session = |digest: &str, op: i64| ims_campaign::model::Session {
            session_digest: digest.into(),
            security_digest: "s".into(),
            operator_id: op,
            auth_path: AuthPath::Native,
            created_at: now(),
            expires_at: now().plus_secs(60),
        };
        i.store.insert_session(&session("bob-1", bob.id)).await.unwrap();
        bob.label = "Bob B".into();
        bob.groups = vec!["admin".into(), "reportAccess".into()];
        bob.rights = vec![];
        bob.disabled = true;
        i.store
            .update_operator(&bob, false, &audit("operator.update"))
            .await
            .unwrap();
        assert_eq!(i.store.operator(bob.id).await.unwrap().unwrap(), bob);
        assert!(
            i.store.session("bob-1").await.unwrap().is_some(),
            "kept without end_sessions"
        );
        i.store
            .update_operator(&bob, true, &audit("operator.update"))
            .await
            .unwrap();
        assert!(i.store.session("bob-1").await.unwrap().is_none());
        // A taken login or an unknown group changes nothing.
        let mut clash = bob.clone();
        clash.login = "ana".into();
        clash.label = "changed".into();
        assert!(matches!(
            i.store
                .update_operator(&clash, false, &audit("operator.update"))
                .await,
            Err(StoreError::Conflict(_))
        ));
        let mut ghost_group = bob.clone();
        ghost_group.groups = vec!["nope".into()];
        assert!(matches!(
            i.store
                .update_operator(&ghost_group, false, &audit("operator.update"))
                .await,
            Err(StoreError::Conflict(_))
        ));
        assert_eq!(
            i.store.operator(bob.id).await.unwrap().unwrap(),
            bob,
            "nothing half-applied"
        );
        // Delete takes memberships, rights, folder rights and sessions with it.
        let folder = i.store.ensure_folder("f", "F").await.unwrap();
        i.store
            .grant_folder_to_group(folder, "admin", true, true, &audit("folder.grant"))
            .await
            .unwrap();
        i.store.insert_session(&session("bob-2", bob.id)).await.unwrap();
        i.store
            .delete_operator(bob.id, &audit("operator.delete"))
            .await
            .unwrap();
        assert!(i.store.operator(bob.id).await.unwrap().is_none());
        assert!(i.store.session("bob-2").await.unwrap().is_none());
        assert!(i.store.writable_folders(bob.id).await.unwrap().is_empty());
        assert!(matches!(
            i.store.delete_operator(bob.id, &audit("operator.delete")).await,
            Err(StoreError::Conflict(_))
        ));
        assert_eq!(i.store.operators_page(None, 0, 10).await.unwrap().1, 3);
        i.cleanup().await;
    }
}

fn instance(store: &Arc<SqlInstanceStore>, build: &str) -> Instance {
    Instance::new(
        Arc::<SqlInstanceStore>::clone(store),
        InstanceInfo::new("prod", InstanceKind::Marketing, build.parse::<Build>().unwrap()),
    )
}

#[tokio::test]
async fn native_logon_sessions_and_logoff() {
    for i in each().await {
        i.store
            .create_operator(
                &operator("jdoe", Some("right password"), &["deliveryOperators"]).await,
                &ims_core::audit::Context::new(ims_core::Now::from_millis(0), "test").event(
                    "operator.create",
                    "t",
                    "success",
                    serde_json::json!({}),
                ),
            )
            .await
            .unwrap();
        let inst = instance(&i.store, "7.4.1");
        let caller = Caller {
            source: Some("127.0.0.1".into()),
            client: Some("ACC-SDK-Auth: UserPassword jdoe".into()),
        };
        let (tokens, op) = inst
            .sessions()
            .logon("jdoe", &Secret::new("right password"), false, now(), &caller)
            .await
            .unwrap();
        assert!(
            tokens.session.expose().starts_with("___ims_") && tokens.security.expose().starts_with("@ims_")
        );
        assert_eq!(op.login, "jdoe");
        let rights = inst.sessions().effective_rights(&op).await.unwrap();
        assert!(rights.contains(&"export".to_owned()) && rights.contains(&"startDelivery".to_owned()));
        // The session works with and without its security token; a wrong one is refused.
        inst.sessions()
            .session_operator(
                tokens.session.expose(),
                Some(tokens.security.expose()),
                None,
                now(),
            )
            .await
            .unwrap();
        inst.sessions()
            .session_operator(tokens.session.expose(), None, None, now())
            .await
            .unwrap();
        assert_eq!(
            inst.sessions()
                .session_operator(tokens.session.expose(), Some("@ims_wrong"), None, now())
                .await
                .unwrap_err()
                .code,
            "XSV-350008"
        );
        // Expiry.
        let later = now().plus_secs(24 * 3600);
        assert_eq!(
            inst.sessions()
                .session_operator(tokens.session.expose(), None, None, later)
                .await
                .unwrap_err()
                .code,
            "XSV-350008"
        );
        // Stored as digests only.
        assert!(i.store.session(tokens.session.expose()).await.unwrap().is_none());
        // Logoff ends it.
        inst.sessions().logoff(tokens.session.expose()).await.unwrap();
        assert!(inst
            .sessions()
            .session_operator(tokens.session.expose(), None, None, now())
            .await
            .is_err());
        // Wrong password and unknown login: the same fault.
        let bad = inst
            .sessions()
            .logon("jdoe", &Secret::new("wrong"), false, now(), &caller)
            .await
            .unwrap_err();
        let unknown = inst
            .sessions()
            .logon("nobody", &Secret::new("wrong"), false, now(), &caller)
            .await
            .unwrap_err();
        assert_eq!(
            (bad.code, bad.message.clone()),
            (unknown.code, unknown.message.clone())
        );
        assert_eq!(bad.code, "XSV-350024");
        // Every attempt is evidence.
        let usage: Vec<UsageEvent> = i.store.usage(Some("jdoe"), 10).await.unwrap();
        assert_eq!(usage.len(), 2);
        assert_eq!(usage[0].outcome, "refused");
        assert_eq!(usage[1].outcome, "success");
        assert_eq!(usage[1].auth_path, AuthPath::Native);
        assert_eq!(usage[1].source.as_deref(), Some("127.0.0.1"));
        // rememberMe lasts longer.
        let (long, _) = inst
            .sessions()
            .logon("jdoe", &Secret::new("right password"), true, now(), &caller)
            .await
            .unwrap();
        inst.sessions()
            .session_operator(long.session.expose(), None, None, later)
            .await
            .unwrap();
        // Past every expiry the remaining (rememberMe) session is purged; the other ended at Logoff.
        assert_eq!(
            inst.sessions()
                .purge_expired_sessions(now().plus_secs(31 * 86_400))
                .await
                .unwrap(),
            1
        );
        i.cleanup().await;
    }
}

#[tokio::test]
async fn folder_rights_through_groups_on_both_backends() {
    use ims_campaign::store::RecipientStore as _;
    for i in each().await {
        let folder = i
            .store
            .ensure_folder("nmsRootRecipient", "Recipients")
            .await
            .unwrap();
        assert_eq!(
            i.store
                .ensure_folder("nmsRootRecipient", "Recipients")
                .await
                .unwrap(),
            folder,
            "idempotent"
        );
        let other = i.store.ensure_folder("archive", "Archive").await.unwrap();
        let reader = i
            .store
            .create_operator(
                &operator("reader", None, &["reportAccess"]).await,
                &event("operator.create"),
            )
            .await
            .unwrap();
        let nobody = i
            .store
            .create_operator(&operator("nobody", None, &[]).await, &event("operator.create"))
            .await
            .unwrap();
        i.store
            .grant_folder_to_group(folder, "reportAccess", true, false, &event("folder.grant"))
            .await
            .unwrap();
        i.store
            .grant_folder_to_group(other, "reportAccess", false, false, &event("folder.grant"))
            .await
            .unwrap();
        assert_eq!(i.store.readable_folders(reader).await.unwrap(), vec![folder]);
        assert!(i.store.readable_folders(nobody).await.unwrap().is_empty());
        // A second grant changes the first.
        i.store
            .grant_folder_to_group(other, "reportAccess", true, true, &event("folder.grant"))
            .await
            .unwrap();
        assert_eq!(i.store.readable_folders(reader).await.unwrap().len(), 2);
        assert!(matches!(
            i.store
                .grant_folder_to_group(folder, "noSuchGroup", true, true, &event("folder.grant"))
                .await,
            Err(StoreError::Conflict(_))
        ));
        i.cleanup().await;
    }
}

#[tokio::test]
async fn instance_audit_log_is_append_only() {
    use ims_core::audit::AuditStore as _;
    for i in each().await {
        i.store
            .create_operator(&operator("audited", None, &[]).await, &event("operator.create"))
            .await
            .unwrap();
        let got = i
            .store
            .audit(&AuditQuery {
                action_prefix: Some("operator.".into()),
                limit: 10,
            })
            .await
            .unwrap();
        assert_eq!(got.len(), 1);
        // Outside the store's API, on a connection of its own, the database itself refuses.
        use sqlx::Connection as _;
        let url = match &i._dir {
            Some(d) => format!("sqlite://{}", d.path().join("instance.db").display()),
            None => pg_url().unwrap(),
        };
        let mut conn = sqlx::AnyConnection::connect(&url).await.unwrap();
        if let Some(schema) = &i.schema {
            sqlx::query(&format!("SET search_path TO {schema}"))
                .execute(&mut conn)
                .await
                .unwrap();
        }
        assert!(sqlx::query("UPDATE audit_log SET actor = 'x'")
            .execute(&mut conn)
            .await
            .is_err());
        assert!(sqlx::query("DELETE FROM audit_log")
            .execute(&mut conn)
            .await
            .is_err());
        i.cleanup().await;
    }
}

#[tokio::test]
async fn usage_totals_add_up_on_both_backends() {
    use ims_campaign::usage::{UsageCounts, UsageKey, UsageSummary};
    for i in each().await {
        let key = UsageKey {
            login: "tech@techacct.ims.test".into(),
            operator_id: Some(7),
            action: "xtk:queryDef#ExecuteQuery".into(),
            auth_path: AuthPath::Bearer,
            source: "10.1.2.3".into(),
            client: String::new(),
            outcome: "success".into(),
        };
        let row = |calls, first, last| UsageSummary {
            key: key.clone(),
            counts: UsageCounts {
                calls,
                first_at: now().plus_secs(first),
                last_at: now().plus_secs(last),
            },
        };
        i.store.add_usage(&[row(3, 10, 20)]).await.unwrap();
        i.store.add_usage(&[row(2, 5, 15)]).await.unwrap();
        let got = i
            .store
            .usage_summary(Some("tech@techacct.ims.test"), 10)
            .await
            .unwrap();
        assert_eq!(got, vec![row(5, 5, 20)]);
        i.cleanup().await;
    }
}

#[tokio::test]
async fn disabled_and_non_native_operators_cannot_logon_and_lose_their_sessions() {
    let i = sqlite_only().await;
    let mut disabled = operator("gone", Some("pw-pw-pw-pw"), &[]).await;
    disabled.disabled = true;
    i.store
        .create_operator(
            &disabled,
            &ims_core::audit::Context::new(ims_core::Now::from_millis(0), "test").event(
                "operator.create",
                "t",
                "success",
                serde_json::json!({}),
            ),
        )
        .await
        .unwrap();
    let mut ims_op = operator("person", Some("pw-pw-pw-pw"), &[]).await;
    ims_op.auth_type = AuthType::Ims;
    i.store
        .create_operator(
            &ims_op,
            &ims_core::audit::Context::new(ims_core::Now::from_millis(0), "test").event(
                "operator.create",
                "t",
                "success",
                serde_json::json!({}),
            ),
        )
        .await
        .unwrap();
    let inst = instance(&i.store, "7.4.1");
    for login in ["gone", "person"] {
        let err = inst
            .sessions()
            .logon(
                login,
                &Secret::new("pw-pw-pw-pw"),
                false,
                now(),
                &Caller::default(),
            )
            .await
            .unwrap_err();
        assert_eq!(err.code, "XSV-350024", "{login}");
    }
    i.cleanup().await;
}

#[tokio::test]
async fn native_logon_follows_the_build_matrix() {
    let i = sqlite_only().await;
    for login in ["admin", "internal", "jdoe"] {
        i.store
            .create_operator(
                &operator(login, Some("pw-pw-pw-pw"), &[]).await,
                &ims_core::audit::Context::new(ims_core::Now::from_millis(0), "test").event(
                    "operator.create",
                    "t",
                    "success",
                    serde_json::json!({}),
                ),
            )
            .await
            .unwrap();
    }
    for (build, jdoe_allowed) in [
        ("7.3.1", true),
        ("7.4.1", true),
        ("8.5.2", true),
        ("8.6.0", false),
        ("9.0", false),
    ] {
        let inst = instance(&i.store, build);
        let jdoe = inst
            .sessions()
            .logon(
                "jdoe",
                &Secret::new("pw-pw-pw-pw"),
                false,
                now(),
                &Caller::default(),
            )
            .await;
        assert_eq!(jdoe.is_ok(), jdoe_allowed, "{build}: jdoe");
        // The allow-list (`internal|monitoring` names two operators) still signs in.
        for listed in ["admin", "internal"] {
            assert!(
                inst.sessions()
                    .logon(
                        listed,
                        &Secret::new("pw-pw-pw-pw"),
                        false,
                        now(),
                        &Caller::default()
                    )
                    .await
                    .is_ok(),
                "{build}: {listed}"
            );
        }
    }
    // A session opened on 8.5 stops working once the instance runs 8.6.
    let (tokens, _) = instance(&i.store, "8.5.2")
        .sessions()
        .logon(
            "jdoe",
            &Secret::new("pw-pw-pw-pw"),
            false,
            now(),
            &Caller::default(),
        )
        .await
        .unwrap();
    assert!(instance(&i.store, "8.6.0")
        .sessions()
        .session_operator(tokens.session.expose(), None, None, now())
        .await
        .is_err());
    i.cleanup().await;
}

#[tokio::test]
async fn instance_migrations_match_across_backends() {
    for m in migrate::INSTANCE_MIGRATIONS {
        assert!(!m.sqlite.trim().is_empty() && !m.postgres.trim().is_empty());
    }
    let mut all = each().await;
    let shapes: Vec<Vec<(String, String)>> = {
        let mut v = Vec::new();
        for i in &all {
            v.push(instance_shape(i).await);
        }
        v
    };
    if shapes.len() == 2 {
        assert_eq!(shapes[0], shapes[1], "same tables and columns on both backends");
    }
    assert!(shapes[0].iter().any(|(t, _)| t == "operators"));
    while let Some(i) = all.pop() {
        i.cleanup().await;
    }
}

/// The instance's later steps applied to data written under its first one.
#[tokio::test]
async fn instance_migrations_carry_the_data_of_the_first_step() {
    use sqlx::Connection as _;
    for backend in [Backend::Sqlite, Backend::Postgres] {
        let dir = tempfile::tempdir().unwrap();
        let (mut opts, schema) = match backend {
            Backend::Sqlite => (
                Options::new(format!("sqlite://{}", dir.path().join("old.db").display())),
                None,
            ),
            Backend::Postgres => {
                let Some(url) = pg_url() else { continue };
                let schema = fresh_schema();
                let mut o = Options::new(url);
                o.schema = Some(schema.clone());
                (o, Some(schema))
            }
        };
        opts.migrate = false;
        let store = SqlInstanceStore::open(&opts, now()).await.unwrap();
        assert_eq!(store.migrate_to(1, now()).await.unwrap(), vec![1]);
        sqlx::any::install_default_drivers();
        let mut conn = sqlx::AnyConnection::connect(&opts.url).await.unwrap();
        if let Some(s) = &schema {
            sqlx::query(&format!("SET search_path TO {s}"))
                .execute(&mut conn)
                .await
                .unwrap();
        }
        for sql in [
                "INSERT INTO operator_groups (name, label) VALUES ('admin', 'Administrator')",
                "INSERT INTO group_rights (group_id, right_name) SELECT group_id, 'admin' FROM operator_groups",
                "INSERT INTO operators (login, label, email, auth_type, password_hash, created_at, modified_at) VALUES ('old', 'Old', 'old@example.com', 'native', 'h', 1, 2)",
                "INSERT INTO operator_group_members (operator_id, group_id) SELECT o.operator_id, g.group_id FROM operators o, operator_groups g",
                "INSERT INTO usage_events (at, operator_id, login, action, auth_path, outcome) SELECT 5, operator_id, 'old', 'xtk:session#Logon', 'native', 'success' FROM operators",
            ] {
                sqlx::query(sql).execute(&mut conn).await.unwrap();
            }
        let applied = store.migrate_to(i64::MAX, now()).await.unwrap();
        assert_eq!(
            applied,
            migrate::INSTANCE_MIGRATIONS
                .iter()
                .skip(1)
                .map(|m| m.version)
                .collect::<Vec<_>>()
        );
        let op = store.operator_by_login("old").await.unwrap().unwrap();
        assert_eq!(
            (op.email.as_deref(), op.groups.as_slice()),
            (Some("old@example.com"), &["admin".to_owned()][..])
        );
        assert_eq!(store.usage(Some("old"), 10).await.unwrap().len(), 1);
        assert_eq!(store.groups().await.unwrap()[0].rights, vec!["admin"]);
        if let Some(s) = &schema {
            store.drop_schema(s).await.unwrap();
        }
        store.close().await;
    }
}

async fn instance_shape(i: &Inst) -> Vec<(String, String)> {
    use sqlx::Connection as _;
    sqlx::any::install_default_drivers();
    let (url, sql) = match &i._dir {
            Some(d) => (
                format!("sqlite://{}", d.path().join("instance.db").display()),
                "SELECT m.name, p.name FROM sqlite_master m, pragma_table_info(m.name) p WHERE m.type = 'table' AND m.name NOT LIKE 'sqlite_%' ORDER BY 1, 2".to_owned(),
            ),
            None => (
                pg_url().unwrap(),
                format!("SELECT table_name::text, column_name::text FROM information_schema.columns WHERE table_schema = '{}' ORDER BY 1, 2", i.schema.as_deref().unwrap()),
            ),
        };
    let mut conn = sqlx::AnyConnection::connect(&url).await.unwrap();
    let rows = sqlx::query(&sql).fetch_all(&mut conn).await.unwrap();
    use sqlx::Row as _;
    rows.iter()
        .map(|r| (r.get::<String, _>(0), r.get::<String, _>(1)))
        .collect()
}
