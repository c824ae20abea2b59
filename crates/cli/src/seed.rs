//! Demo and scale populations of an instance: the legacy state a migration starts from.

use anyhow::Result;

use ims_campaign::model::{AuthPath, Operator, UsageEvent};
use ims_campaign::store::{OperatorStore as _, UsageStore as _};
use ims_campaign::usage::{UsageCounts, UsageKey, UsageSummary};
use ims_core::secret::{self};
use ims_core::Now;
use ims_store::instance::SqlInstanceStore;

const FIRST: &[&str] = &[
    "ana", "bo", "chen", "dara", "eli", "femi", "gus", "hana", "ivo", "jun", "kai", "lea", "mo", "nina",
    "omar",
];
const LAST: &[&str] = &["abe", "berg", "costa", "dahl", "egan", "fox", "gil", "hale"];
const GROUPS: &[&str] = &[
    "deliveryOperators",
    "campaignManagers",
    "workflowExecution",
    "reportAccess",
    "admin",
];

fn operator(login: String, email: Option<String>, groups: Vec<String>, hash: &str, now: Now) -> Operator {
    Operator::native(&login, email, groups, Some(hash.to_owned()), now)
}

/// The audit line of a generated operator.
fn seeded(login: &str, now: Now) -> ims_core::audit::AuditEvent {
    ims_core::audit::Context::new(now, "system:seed").event(
        "operator.create",
        login,
        "success",
        serde_json::json!({"reason": "generated population"}),
    )
}

/// The legacy population of the demo marketing instance: people across the default groups, some
/// without email, two sharing an email in different case, one disabled, direct named rights on a
/// few, and three technical operators with recorded API usage. Their passwords are random and
/// shown to no one: the demo signs in as `admin`.
pub async fn legacy_population(store: &SqlInstanceStore, now: Now) -> Result<()> {
    let hash = ims_core::password::hash(&secret::generate("")).await?;
    let mut n = 0;
    for (i, first) in FIRST.iter().enumerate() {
        for last in LAST.iter().skip(i % 3).step_by(3).take(2) {
            n += 1;
            let login = format!("{first}.{last}");
            let email = match n {
                // Some people never had an email on file.
                3 | 11 | 19 | 27 => None,
                _ => Some(format!("{login}@example.com")),
            };
            let mut op = operator(
                login,
                email,
                vec![GROUPS[n % GROUPS.len()].to_owned()],
                &hash,
                now,
            );
            if n == 7 {
                op.disabled = true;
            }
            if n % 9 == 0 {
                // Rights held directly, outside any group.
                op.rights = vec!["export".into(), "sql".into()];
            }
            store.create_operator(&op, &seeded(&op.login, now)).await?;
        }
    }
    // Two accounts of one person: the same email in different case.
    store
        .create_operator(
            &operator(
                "pat.lee".into(),
                Some("Pat.Lee@example.com".into()),
                vec!["deliveryOperators".into()],
                &hash,
                now,
            ),
            &seeded("pat.lee", now),
        )
        .await?;
    store
        .create_operator(
            &operator(
                "plee".into(),
                Some("pat.lee@EXAMPLE.com".into()),
                vec!["reportAccess".into()],
                &hash,
                now,
            ),
            &seeded("plee", now),
        )
        .await?;
    // Technical operators: integrations that sign in with a password and call the API.
    let integrations = [
        ("crm-sync", "10.20.0.15"),
        ("web-forms", "10.20.0.31"),
        ("bi-export", "10.20.1.7"),
    ];
    for (i, (login, source)) in integrations.iter().enumerate() {
        let mut op = operator(
            (*login).to_owned(),
            None,
            vec!["deliveryOperators".into()],
            &hash,
            now,
        );
        op.label = format!("Integration {login}");
        op.rights = vec!["export".into()];
        let id = store.create_operator(&op, &seeded(&op.login, now)).await?;
        let client = format!("acc-sdk-auth: UserPassword {login}; user-agent: {login}/2.{i}");
        let day = 86_400;
        for d in (1..=5).rev() {
            store
                .record_usage(&UsageEvent {
                    at: now.plus_secs(-d * day),
                    operator_id: Some(id),
                    login: (*login).to_owned(),
                    action: "xtk:session#Logon".into(),
                    auth_path: AuthPath::Native,
                    source: Some((*source).to_owned()),
                    client: Some(client.clone()),
                    outcome: "success".into(),
                })
                .await?;
        }
        store
            .add_usage(&[UsageSummary {
                key: UsageKey {
                    login: (*login).to_owned(),
                    operator_id: Some(id),
                    action: "xtk:queryDef#ExecuteQuery".into(),
                    auth_path: AuthPath::Native,
                    source: (*source).to_owned(),
                    client: client.clone(),
                    outcome: "success".into(),
                },
                counts: UsageCounts {
                    calls: 1_200 + 340 * i as i64,
                    first_at: now.plus_secs(-5 * day),
                    last_at: now.plus_secs(-3600),
                },
            }])
            .await?;
    }
    Ok(())
}

/// A large generated population for scale tests: `count` native operators named `op000001`...,
/// spread over the default groups, every tenth without email. They share one random password
/// hash that no one knows (hashing each would take hours at Argon2id's cost).
pub async fn scale_population(store: &SqlInstanceStore, count: u64, now: Now) -> Result<u64> {
    let hash = ims_core::password::hash(&secret::generate("")).await?;
    let start = store.operator_count().await?;
    for i in 0..count {
        let login = format!("op{:06}", start as u64 + i + 1);
        let email = (i % 10 != 9).then(|| format!("{login}@scale.example.com"));
        let groups = vec![GROUPS[(i % GROUPS.len() as u64) as usize].to_owned()];
        store
            .create_operator(
                &operator(login.clone(), email, groups, &hash, now),
                &seeded(&login, now),
            )
            .await?;
    }
    Ok(count)
}
