//! The migration engine's journal of plans and steps.

use ims_core::Now;
use ims_store::{Backend, Options};

use crate::harness::*;

/// The migration engine's journal, on both backends: plans stored once, steps recorded before
/// and after they act, a restarted step started again.
#[tokio::test]
async fn the_migration_journal_records_plans_and_steps() {
    use ims_journal::SqlJournal;
    use ims_migration::journal::{Journal as _, PlanRecord, StepEnd, StepKey, StepState};
    for m in ims_journal::JOURNAL_MIGRATIONS {
        assert!(!m.sqlite.trim().is_empty() && !m.postgres.trim().is_empty());
    }
    for backend in [Backend::Sqlite, Backend::Postgres] {
        let dir = tempfile::tempdir().unwrap();
        let (opts, schema) = match backend {
            Backend::Sqlite => (
                Options::new(format!("sqlite://{}", dir.path().join("journal.db").display())),
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
        let j = SqlJournal::open(&opts, now()).await.unwrap();
        let plan = PlanRecord {
            plan_id: "users-marketing-1".into(),
            instance: "marketing".into(),
            phase: "users".into(),
            created_at: Now::from_millis(1),
            body: "{}".into(),
            applied_at: None,
            scope: Some("groups delivery".into()),
        };
        j.put_plan(&plan).await.unwrap();
        // Stored once: a second put keeps the first body.
        j.put_plan(&PlanRecord {
            body: "changed".into(),
            ..plan.clone()
        })
        .await
        .unwrap();
        assert_eq!(j.plan(&plan.plan_id).await.unwrap().unwrap().body, "{}");
        let key = |op: &str, action: &str| StepKey {
            operator: op.into(),
            action: action.into(),
        };
        j.begin_steps(
            &plan.plan_id,
            &[key("ana", "switch"), key("bo", "switch")],
            Now::from_millis(5),
        )
        .await
        .unwrap();
        j.end_steps(
            &plan.plan_id,
            &[StepEnd {
                key: key("ana", "switch"),
                state: StepState::Done,
                detail: String::new(),
            }],
            Now::from_millis(6),
        )
        .await
        .unwrap();
        let steps = j.steps(&plan.plan_id).await.unwrap();
        let states: Vec<(&str, StepState)> =
            steps.iter().map(|s| (s.key.operator.as_str(), s.state)).collect();
        assert_eq!(states, [("ana", StepState::Done), ("bo", StepState::Started)]);
        assert_eq!(steps[0].finished_at, Some(Now::from_millis(6)));
        // A step begun again (after a crash) starts over.
        j.begin_steps(&plan.plan_id, &[key("bo", "switch")], Now::from_millis(9))
            .await
            .unwrap();
        let bo = j.steps(&plan.plan_id).await.unwrap().pop().unwrap();
        assert_eq!(
            (bo.state, bo.started_at),
            (StepState::Started, Now::from_millis(9))
        );
        j.mark_applied(&plan.plan_id, Now::from_millis(10)).await.unwrap();
        j.mark_applied(&plan.plan_id, Now::from_millis(11)).await.unwrap();
        let stored = j.plans("marketing").await.unwrap();
        assert_eq!(stored.len(), 1);
        assert_eq!(
            stored[0].applied_at,
            Some(Now::from_millis(10)),
            "the first finish stays"
        );
        assert!(j.plans("mc").await.unwrap().is_empty());
        // Counted per state, the failed ones listed, without the plan's body or its steps read.
        j.end_steps(
            &plan.plan_id,
            &[StepEnd {
                key: key("bo", "switch"),
                state: StepState::Failed,
                detail: "drifted".into(),
            }],
            Now::from_millis(12),
        )
        .await
        .unwrap();
        j.begin_steps(&plan.plan_id, &[key("cy", "switch")], Now::from_millis(13))
            .await
            .unwrap();
        let p = j.progress("marketing").await.unwrap();
        assert_eq!(p.len(), 1);
        assert_eq!(
            (p[0].plan_id.as_str(), p[0].done, p[0].started, p[0].applied_at),
            (plan.plan_id.as_str(), 1, 1, Some(Now::from_millis(10)))
        );
        // The plan's scope (its pilot wave) comes with its progress, without its body.
        assert_eq!(p[0].scope.as_deref(), Some("groups delivery"));
        assert_eq!(p[0].failed.len(), 1);
        assert_eq!(
            (
                p[0].failed[0].key.operator.as_str(),
                p[0].failed[0].detail.as_str()
            ),
            ("bo", "drifted")
        );
        assert!(j.progress("mc").await.unwrap().is_empty());
        if let Some(s) = schema {
            j.drop_schema(&s).await.unwrap();
        }
        j.close().await;
    }
}
