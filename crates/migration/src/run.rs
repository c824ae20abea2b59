//! What every phase's plan has in common: the envelope (its id, its phase, the instance it is
//! for, when it was made) around the phase's own body, and the `Phase` trait through which the
//! runner plans, applies and summarises any of them.
//!
//! The runner: what applying any phase's plan has in common. The plan must be for the instance
//! it is applied to and, when the journal holds a plan under its id, be that very plan; a plan
//! recorded applied is answered as done without a call; what is left is checked against the
//! live state (refused whole when it drifted); a dry run stops there; otherwise the plan is
//! recorded in the journal as approved before its first step acts, every step is journaled
//! before it acts and after, and the plan is recorded applied once every step is done. A run
//! cut short anywhere is finished by the next.

use std::collections::HashMap;
use std::future::Future;

use ims_core::Now;
use ims_wire::migration::{InstanceFacts, OperatorFacts};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

pub use crate::apply::{ApplyError, ApplyOptions, FailPoint, Skipped, BOUNDARIES};
use crate::client::{Error, ImsClient, InstanceClient};
use crate::journal::{Journal, PlanRecord, StepEnd, StepKey, StepState};

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

    /// What the plan is limited to (a pilot wave, described), kept in the journal beside it.
    fn scope(_plan: &Plan<Self>) -> Option<String> {
        None
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

/// How the engine asks another instance for its facts (a production instance's staging twin):
/// the caller knows where instances are and how to sign in to them.
#[async_trait::async_trait]
pub trait Twins: Send + Sync {
    /// `None` when it cannot be asked.
    async fn facts(&self, name: &str) -> Option<InstanceFacts>;
}

/// Where progress is shown: a stage, how far it is, out of how many (0: not known).
pub type Progress<'a> = &'a (dyn Fn(&str, usize, usize) + Send + Sync);

/// What the engine works with: its journal, the two services, the other instances, the
/// caller's clock and where progress is shown.
#[derive(Clone, Copy)]
pub struct Engine<'a> {
    pub journal: &'a dyn Journal,
    pub instance: &'a InstanceClient,
    /// Absent when no IMS credential was given (phases that need it refuse to start).
    pub ims: Option<&'a ImsClient>,
    pub twins: &'a dyn Twins,
    pub progress: Progress<'a>,
    pub now: fn() -> Now,
}

impl<'a> Engine<'a> {
    pub fn ims(&self) -> Result<&'a ImsClient, ApplyError> {
        self.ims.ok_or(ApplyError::NoIms)
    }

    /// Every operator of the instance, counted on the progress display as they are read.
    pub async fn operators(&self) -> Result<Vec<OperatorFacts>, Error> {
        let progress = self.progress;
        self.instance
            .operators(|n| progress("operators read", n, 0))
            .await
    }

    /// The names of the organisation's product profiles.
    pub async fn profile_names(&self) -> Result<Vec<String>, ApplyError> {
        Ok(self
            .ims()?
            .profiles()
            .await?
            .into_iter()
            .map(|p| p.name)
            .collect())
    }

    /// Plans phase `P` from the services as they are now.
    pub async fn plan<P: Phase>(&self, args: P::Args) -> Result<Plan<P>, ApplyError> {
        if P::NEEDS_IMS {
            self.ims()?;
        }
        P::plan(self, args, (self.now)()).await
    }

    /// Applies a plan of phase `P` (see the module's documentation).
    pub async fn apply<P: Phase>(
        &self,
        plan: &Plan<P>,
        opts: &ApplyOptions,
    ) -> Result<P::Report, ApplyError> {
        if P::NEEDS_IMS {
            self.ims()?;
        }
        let facts = self.instance.facts().await?;
        P::admit(plan, &facts, self)?;
        check_instance(&plan.instance, &facts)?;
        let record = P::record(plan);
        let stored = self.journal.plan(&plan.plan_id).await?;
        check_stored(stored.as_ref(), &record)?;
        if stored.as_ref().is_some_and(|p| p.applied_at.is_some()) {
            return Ok(P::finished(plan, opts));
        }
        let done = self
            .journal
            .steps(&plan.plan_id)
            .await?
            .into_iter()
            .filter(|s| s.state == StepState::Done)
            .map(|s| ((s.key.action, s.key.operator), s.detail))
            .collect();
        let run = Run {
            engine: *self,
            opts,
            facts,
            plan_id: plan.plan_id.clone(),
            done,
        };
        let work = match P::check(plan, &run).await? {
            Checked::Work(work) => work,
            Checked::Nothing(report) => return Ok(report),
        };
        if opts.dry_run {
            return Ok(P::preview(plan, work, &run));
        }
        if stored.is_none() {
            self.journal
                .put_plan(&PlanRecord {
                    plan_id: plan.plan_id.clone(),
                    instance: plan.instance.clone(),
                    phase: plan.phase.clone(),
                    created_at: Now::from_millis(plan.created_at),
                    body: record,
                    applied_at: None,
                    scope: P::scope(plan),
                })
                .await?;
        }
        opts.reach("plan-stored");
        let report = P::apply(plan, work, &run).await?;
        if P::complete(&report) {
            self.journal.mark_applied(&plan.plan_id, run.now()).await?;
        }
        Ok(report)
    }
}

/// One application of one plan under way: the engine, the options, the instance's facts as
/// read at the start, and the steps an earlier run recorded done.
pub struct Run<'a> {
    pub engine: Engine<'a>,
    pub opts: &'a ApplyOptions,
    pub facts: InstanceFacts,
    plan_id: String,
    /// `(action, operator)` -> the detail recorded when it was done.
    done: HashMap<(String, String), String>,
}

impl Run<'_> {
    pub fn now(&self) -> Now {
        (self.engine.now)()
    }

    /// Whether an earlier run recorded this step done.
    pub fn is_done(&self, action: &str, operator: &str) -> bool {
        self.done.contains_key(&(action.to_owned(), operator.to_owned()))
    }

    /// Stops dead at this boundary when a fail point names it.
    pub fn reach(&self, boundary: &str) {
        self.opts.reach(boundary);
    }

    pub fn progress(&self, stage: &str, done: usize, total: usize) {
        (self.engine.progress)(stage, done, total);
    }

    /// Every operator of the instance, by login.
    pub async fn operators_by_login(&self) -> Result<HashMap<String, OperatorFacts>, ApplyError> {
        Ok(self
            .engine
            .instance
            .operators(|_| {})
            .await?
            .into_iter()
            .map(|o| (o.login.clone(), o))
            .collect())
    }

    /// Records, in one transaction, that these steps are about to act.
    pub async fn begin(&self, keys: &[StepKey]) -> Result<(), ApplyError> {
        Ok(self
            .engine
            .journal
            .begin_steps(&self.plan_id, keys, self.now())
            .await?)
    }

    /// Records, in one transaction, how these steps ended.
    pub async fn end(&self, ends: &[StepEnd]) -> Result<(), ApplyError> {
        Ok(self
            .engine
            .journal
            .end_steps(&self.plan_id, ends, self.now())
            .await?)
    }

    /// Records that one step is about to act.
    pub async fn begin_one(&self, action: &str, operator: &str) -> Result<(), ApplyError> {
        self.begin(&[key(action, operator)]).await
    }

    /// Records that one step ended so.
    pub async fn end_one(
        &self,
        action: &str,
        operator: &str,
        state: StepState,
        detail: String,
    ) -> Result<(), ApplyError> {
        self.end(&[end(action, operator, state, detail)]).await
    }
}

/// Refuses a plan made for another instance (a staging plan applied to production, say).
pub fn check_instance(planned: &str, facts: &InstanceFacts) -> Result<(), ApplyError> {
    if planned == facts.name {
        return Ok(());
    }
    Err(ApplyError::Drift(vec![Skipped {
        login: planned.to_owned(),
        reason: format!("the plan is for the instance {planned}, not {}", facts.name),
    }]))
}

/// Refuses a plan file that differs from the one the journal holds under its id (applied
/// plans are what was approved and what rollback reads). `record` is what the journal would
/// hold of the plan. Compared as JSON values: the same plan, whatever its layout.
pub fn check_stored(stored: Option<&PlanRecord>, record: &str) -> Result<(), ApplyError> {
    let Some(stored) = stored else { return Ok(()) };
    if same_json(&stored.body, record) {
        return Ok(());
    }
    Err(ApplyError::Drift(vec![Skipped {
        login: stored.plan_id.clone(),
        reason: "this file differs from the plan of that id the journal holds: plan again".into(),
    }]))
}

/// Whether two JSON texts hold the same value.
pub(crate) fn same_json(a: &str, b: &str) -> bool {
    let read = |t: &str| serde_json::from_str::<serde_json::Value>(t).ok();
    matches!((read(a), read(b)), (Some(a), Some(b)) if a == b)
}

/// The step `action` of `login` (or of the instance, for instance-wide steps).
pub fn key(action: &str, login: &str) -> StepKey {
    StepKey {
        operator: login.to_owned(),
        action: action.to_owned(),
    }
}

pub fn end(action: &str, login: &str, state: StepState, detail: String) -> StepEnd {
    StepEnd {
        key: key(action, login),
        state,
        detail,
    }
}
