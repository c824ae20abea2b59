//! Plan files: a plan names its phase, and `read_plan` is the one place that decides which
//! phase reads it. The envelope and the `Phase` trait are the runner's (`run`), named here too.

use serde::Deserialize;

use crate::finalize::Finalize;
pub use crate::run::{Checked, Phase, Plan};
use crate::technical::Technical;
use crate::users::Users;

/// A plan file of any phase that is applied from a file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AnyPlan {
    Users(Plan<Users>),
    Technical(Plan<Technical>),
    Finalize(Plan<Finalize>),
}

impl AnyPlan {
    pub fn plan_id(&self) -> &str {
        match self {
            AnyPlan::Users(p) => &p.plan_id,
            AnyPlan::Technical(p) => &p.plan_id,
            AnyPlan::Finalize(p) => &p.plan_id,
        }
    }

    pub fn instance(&self) -> &str {
        match self {
            AnyPlan::Users(p) => &p.instance,
            AnyPlan::Technical(p) => &p.instance,
            AnyPlan::Finalize(p) => &p.instance,
        }
    }
}

/// Why a plan file does not read.
#[derive(Debug, thiserror::Error)]
pub enum PlanFileError {
    #[error("not a plan: {0}")]
    Json(#[from] serde_json::Error),
    #[error("a plan of phase {0:?}, which is not applied from a file (phases: users, technical, finalize)")]
    Phase(String),
}

/// Reads a plan file (as `plan` wrote it, or as the journal holds it), whatever its phase.
pub fn read_plan(text: &str) -> Result<AnyPlan, PlanFileError> {
    #[derive(Deserialize)]
    struct Envelope {
        phase: String,
    }
    let phase = serde_json::from_str::<Envelope>(text)?.phase;
    Ok(match phase.as_str() {
        Users::NAME => AnyPlan::Users(serde_json::from_str(text)?),
        Technical::NAME => AnyPlan::Technical(serde_json::from_str(text)?),
        Finalize::NAME => AnyPlan::Finalize(serde_json::from_str(text)?),
        _ => return Err(PlanFileError::Phase(phase)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use ims_core::Now;

    /// A finalisation plan as `plan finalize` has always written it.
    const FINALIZE: &str = r#"{
  "plan_id": "finalize-prod-5",
  "phase": "finalize",
  "instance": "prod",
  "created_at": 5,
  "environment": "production",
  "staging_twin": null,
  "allow": [],
  "losing_native_sign_in": [],
  "blockers": [],
  "forced": false
}"#;

    #[test]
    fn plans_written_before_read_and_write_back_the_same_json() {
        let AnyPlan::Finalize(plan) = read_plan(FINALIZE).unwrap() else {
            panic!("not read as a finalisation plan");
        };
        assert_eq!(plan.plan_id, "finalize-prod-5");
        assert_eq!(plan.body.environment, "production");
        // A field added later reads as its default in an older plan.
        assert!(plan.body.builtins_outside_allow_list.is_empty());
        let written = serde_json::to_string_pretty(&plan).unwrap();
        // The envelope comes first, the body beside it: one object, as before.
        let keys: Vec<&str> = written
            .lines()
            .filter_map(|l| l.trim_start().strip_prefix('"')?.split('"').next())
            .collect();
        assert_eq!(
            &keys[..5],
            ["plan_id", "phase", "instance", "created_at", "environment"]
        );
        let again: serde_json::Value = serde_json::from_str(&written).unwrap();
        let mut before: serde_json::Value = serde_json::from_str(FINALIZE).unwrap();
        before["builtins_outside_allow_list"] = serde_json::json!([]);
        assert_eq!(again, before);
    }

    #[test]
    fn a_plan_file_is_read_by_the_phase_it_names() {
        let users = r#"{"plan_id":"users-prod-1","phase":"users","instance":"prod","created_at":1,
            "org_id":"o@AdobeOrg","product_context":"dma_campaign_classic","mask":"m (.*)",
            "people":[],"skipped":[{"login":"ana","reason":"disabled"}]}"#;
        match read_plan(users).unwrap() {
            AnyPlan::Users(p) => {
                assert_eq!(p.body.skipped[0].login, "ana");
                assert_eq!(AnyPlan::Users(p).plan_id(), "users-prod-1");
            }
            other => panic!("read as {other:?}"),
        }
        let technical = r#"{"plan_id":"t","phase":"technical","instance":"prod","created_at":1,
            "programs":[],"skipped":[]}"#;
        assert!(matches!(read_plan(technical).unwrap(), AnyPlan::Technical(_)));
        // Another phase's body under a phase's name does not read as that phase.
        let wrong = users.replace("\"phase\":\"users\"", "\"phase\":\"technical\"");
        assert!(matches!(read_plan(&wrong), Err(PlanFileError::Json(_))));
        let rollback = users.replace("\"phase\":\"users\"", "\"phase\":\"rollback\"");
        assert!(matches!(read_plan(&rollback), Err(PlanFileError::Phase(p)) if p == "rollback"));
        assert!(matches!(read_plan("{}"), Err(PlanFileError::Json(_))));
    }

    #[test]
    fn a_new_plan_is_named_after_its_phase_instance_and_time() {
        let plan = Plan::new(
            "prod",
            Now::from_millis(42),
            Technical {
                programs: vec![],
                skipped: vec![],
                wave: Default::default(),
                outside_wave: 0,
                project: None,
            },
        );
        assert_eq!(plan.plan_id, "technical-prod-42");
        assert_eq!(plan.phase, "technical");
        assert_eq!(plan.created_at, 42);
    }
}
