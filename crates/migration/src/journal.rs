//! The migration's own record (its journal), kept in the engine's store, not in either service:
//! every plan as it was approved, and every step of applying it, written before the step acts
//! and again after. A run that stops anywhere is resumed from it: a step recorded done is not
//! acted again, a step recorded started (or not at all) is acted again, which the services'
//! operations tolerate (each is idempotent or conditional).

use async_trait::async_trait;
use ims_core::Now;
use ims_core::StoreResult;
use serde::{Deserialize, Serialize};

/// A plan as stored: its body is the reviewable JSON the administrator saw.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlanRecord {
    pub plan_id: String,
    pub instance: String,
    pub phase: String,
    pub created_at: Now,
    pub body: String,
    /// When applying it finished with every step done.
    pub applied_at: Option<Now>,
    /// What the plan was limited to (a pilot wave, described); none, everyone.
    #[serde(default)]
    pub scope: Option<String>,
}

/// Where a step stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StepState {
    /// Recorded before acting; still so after a crash.
    Started,
    Done,
    /// Acted and refused; the detail says why. Acted again on the next run.
    Failed,
}

impl StepState {
    pub fn as_str(self) -> &'static str {
        match self {
            StepState::Started => "started",
            StepState::Done => "done",
            StepState::Failed => "failed",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "started" => Some(StepState::Started),
            "done" => Some(StepState::Done),
            "failed" => Some(StepState::Failed),
            _ => None,
        }
    }
}

/// One step of one operator: `identity` (its IMS user and profiles), `switch` (linked and moved
/// to IMS sign-in), `rollback`, ...
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct StepKey {
    pub operator: String,
    pub action: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StepRecord {
    pub key: StepKey,
    pub state: StepState,
    pub detail: String,
    pub started_at: Now,
    pub finished_at: Option<Now>,
}

/// How a step ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StepEnd {
    pub key: StepKey,
    pub state: StepState,
    pub detail: String,
}

/// A plan's record without its body, with its steps counted by state and the failed ones
/// listed: what `status` and the console show, read without loading a large plan's body or its
/// steps (a million people make two million).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PlanProgress {
    pub plan_id: String,
    pub phase: String,
    pub created_at: Now,
    pub applied_at: Option<Now>,
    /// As [`PlanRecord::scope`].
    pub scope: Option<String>,
    pub done: usize,
    pub started: usize,
    pub failed: Vec<StepRecord>,
}

#[async_trait]
pub trait Journal: Send + Sync {
    /// Stores the plan unless one with its id is stored already.
    async fn put_plan(&self, plan: &PlanRecord) -> StoreResult<()>;
    async fn plan(&self, plan_id: &str) -> StoreResult<Option<PlanRecord>>;
    /// The instance's plans, oldest first.
    async fn plans(&self, instance: &str) -> StoreResult<Vec<PlanRecord>>;
    async fn mark_applied(&self, plan_id: &str, at: Now) -> StoreResult<()>;
    /// Records, in one transaction, that these steps are about to act.
    async fn begin_steps(&self, plan_id: &str, keys: &[StepKey], at: Now) -> StoreResult<()>;
    /// Records, in one transaction, how these steps (each begun before) ended.
    async fn end_steps(&self, plan_id: &str, ends: &[StepEnd], at: Now) -> StoreResult<()>;
    async fn steps(&self, plan_id: &str) -> StoreResult<Vec<StepRecord>>;
    /// The instance's plans, oldest first, each with its steps counted.
    async fn progress(&self, instance: &str) -> StoreResult<Vec<PlanProgress>>;
}
