//! What every phase's plan has in common: the envelope (its id, its phase, the instance it is
//! for, when it was made) around the phase's own body, and the `Phase` trait through which the
//! runner (`run`) plans, applies and summarises any of them. A plan file names its phase, and
//! `read_plan` is the one place that decides which phase reads it.

use std::future::Future;

use ims_core::Now;
use ims_wire::migration::InstanceFacts;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::finalize::Finalize;
use crate::run::{ApplyError, ApplyOptions, Engine, Run};
use crate::technical::Technical;
use crate::users::Users;

/// A reviewable plan: the envelope every phase shares and the phase's body. The body is
/// flattened, so the JSON is one object with the envelope's fields first, as plans have always
/// been written (and as the journal holds them).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Plan<P> {
    pub plan_id: String,
    pub phase: String,
    pub instance: String,
    pub created_at: i64,
    #[serde(flatten)]
    pub body: P,
}

impl<P: Phase> Plan<P> {
    /// A new plan of phase `P` for `instance`, named after the phase, the instance and the time.
    pub fn new(instance: &str, now: Now, body: P) -> Self {
        Plan {
            plan_id: format!("{}-{instance}-{}", P::NAME, now.millis()),
            phase: P::NAME.to_owned(),
            instance: instance.to_owned(),
            created_at: now.millis(),
            body,
        }
    }

    /// The human summary.
    pub fn summary(&self) -> String {
        P::summary(self)
    }
}

/// What the runner found when it compared a plan with the live state.
pub enum Checked<P: Phase> {
    /// This is left to do.
    Work(P::Work),
    /// Nothing is left to do; this is the answer (and the journal is not written).
    Nothing(P::Report),
}

/// A phase of the migration: how it is planned from the services, summarised for review, and
/// applied step by step. The runner (`Engine::apply`) does what every phase's application has
/// in common and calls these in order: `admit`, `check`, then `preview` (dry run) or `apply`.
pub trait Phase: Clone + Serialize + DeserializeOwned + Send + Sync + 'static {
    /// The phase's name in plans and in the journal (`users`, `technical`, ...).
    const NAME: &'static str;
    /// Whether planning and applying need the IMS (refused before anything is read without it).
    const NEEDS_IMS: bool;
    /// What planning is given beyond what it reads from the services.
    type Args: Send;
    /// What checking found left to do, handed to `preview` or `apply`.
    type Work: Send;
    /// What applying answers.
    type Report: Serialize + Send;

    /// Reads what the phase needs from the services (and the journal) and plans it.
    fn plan(
        engine: &Engine<'_>,
        args: Self::Args,
        now: Now,
    ) -> impl Future<Output = Result<Plan<Self>, ApplyError>> + Send;

    /// What each operator's part of the plan changes on each side, for review.
    fn summary(plan: &Plan<Self>) -> String;

    /// What the journal keeps of the plan (JSON): the plan itself unless the phase says
    /// otherwise.
    fn record(plan: &Plan<Self>) -> String {
        serde_json::to_string(plan).unwrap_or_default()
    }

    /// Refusals that need only the plan, the instance's facts and the services, asked before
    /// the plan is compared with the instance or the journal.
    fn admit(_plan: &Plan<Self>, _facts: &InstanceFacts, _engine: &Engine<'_>) -> Result<(), ApplyError> {
        Ok(())
    }

    /// The answer for a plan the journal records as applied already.
    fn finished(plan: &Plan<Self>, opts: &ApplyOptions) -> Self::Report;

    /// Compares the plan with the live state: refused when it drifted, else what is left.
    fn check(
        plan: &Plan<Self>,
        run: &Run<'_>,
    ) -> impl Future<Output = Result<Checked<Self>, ApplyError>> + Send;

    /// What a dry run answers: what applying would do now.
    fn preview(plan: &Plan<Self>, work: Self::Work, run: &Run<'_>) -> Self::Report;

    /// Does the work, each step journaled before it acts and after.
    fn apply(
        plan: &Plan<Self>,
        work: Self::Work,
        run: &Run<'_>,
    ) -> impl Future<Output = Result<Self::Report, ApplyError>> + Send;

    /// Whether the answer finishes the plan (the journal then records it applied).
    fn complete(report: &Self::Report) -> bool;
}

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
            crate::technical::Technical {
                programs: vec![],
                skipped: vec![],
            },
        );
        assert_eq!(plan.plan_id, "technical-prod-42");
        assert_eq!(plan.phase, "technical");
        assert_eq!(plan.created_at, 42);
    }
}
