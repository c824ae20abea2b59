//! After the technical phase: the legacy operators it replaced, watched (the quiet ones marked
//! so in the journal) and retired: disabled, then deleted, through `xtk:session#Write`, only
//! when ready (quiet; to delete, disabled too) or forced with a reason. Everything is recorded in
//! the journal's `retire-<instance>` plan: who did what and, when forced, in what state.

use std::collections::{HashMap, HashSet};

use ims_core::Now;
use ims_wire::migration::OperatorFacts;
use serde::Serialize;

use crate::journal::{PlanRecord, StepEnd, StepKey, StepState};
use crate::run::Phase as _;
use crate::run::{ApplyError, Engine};
use crate::technical::{CREDENTIAL, KIT};
use crate::watch::Watched;

/// The journal's phase of retirements.
pub const RETIRE: &str = "retire";
/// The step that marks a legacy operator quiet.
pub const QUIET: &str = "quiet";

/// The legacy operators the technical phase moved, and the instance's operators now.
pub struct Legacy {
    pub instance: String,
    /// Legacy login -> its technical account and when it was moved (its kit step).
    pub moved: HashMap<String, (String, i64)>,
    pub ops: Vec<OperatorFacts>,
}

impl Legacy {
    pub async fn read(engine: &Engine<'_>) -> Result<Self, ApplyError> {
        let instance = engine.instance.facts().await?.name;
        let moved = moved_programs(engine, &instance).await?;
        let ops = engine.instance.operators(|_| {}).await?;
        Ok(Legacy { instance, moved, ops })
    }

    /// Of `operators`, those no technical plan moved.
    pub fn unknown(&self, operators: &[String]) -> Vec<String> {
        operators
            .iter()
            .filter(|o| !self.moved.contains_key(*o))
            .cloned()
            .collect()
    }

    fn retire_id(&self) -> String {
        format!("{RETIRE}-{}", self.instance)
    }

    /// Each legacy operator's native traffic since its move, at `now`.
    pub fn watch(&self, now: Now, quiet_after_ms: i64) -> Vec<Watched> {
        crate::watch::watch(&self.moved, &self.ops, now.millis(), quiet_after_ms)
    }
}

/// The legacy operators the technical plans moved: technical account and when (its kit step).
async fn moved_programs(
    engine: &Engine<'_>,
    instance: &str,
) -> Result<HashMap<String, (String, i64)>, ApplyError> {
    let journal = engine.journal;
    let mut moved = HashMap::new();
    for plan in journal.plans(instance).await? {
        if plan.phase != crate::technical::Technical::NAME {
            continue;
        }
        let steps = journal.steps(&plan.plan_id).await?;
        for s in steps
            .iter()
            .filter(|s| s.key.action == KIT && s.state == StepState::Done)
        {
            let ta = steps
                .iter()
                .find(|c| c.key.action == CREDENTIAL && c.key.operator == s.key.operator)
                .and_then(|c| c.detail.split_once(' ').map(|(_, email)| email.to_owned()))
                .unwrap_or_default();
            let at = s.finished_at.map_or(0, |t| t.millis());
            moved.insert(s.key.operator.clone(), (ta, at));
        }
    }
    Ok(moved)
}

/// Stores the retirements' plan unless it is stored already.
async fn record_retire_plan(engine: &Engine<'_>, legacy: &Legacy, now: Now) -> Result<(), ApplyError> {
    engine
        .journal
        .put_plan(&PlanRecord {
            plan_id: legacy.retire_id(),
            instance: legacy.instance.clone(),
            phase: RETIRE.into(),
            created_at: now,
            body: "{}".into(),
            applied_at: None,
            scope: None,
        })
        .await?;
    Ok(())
}

/// Watches the legacy operators and records those found quiet (once each), with the period
/// they were quiet for (`quiet_after`, as given).
pub async fn watch(
    engine: &Engine<'_>,
    legacy: &Legacy,
    quiet_after_ms: i64,
    quiet_after: &str,
) -> Result<Vec<Watched>, ApplyError> {
    let now = (engine.now)();
    let watched = legacy.watch(now, quiet_after_ms);
    let quiet: Vec<&Watched> = watched.iter().filter(|w| w.state == "quiet").collect();
    if quiet.is_empty() {
        return Ok(watched);
    }
    record_retire_plan(engine, legacy, now).await?;
    let retire_id = legacy.retire_id();
    let already: HashSet<String> = engine
        .journal
        .steps(&retire_id)
        .await?
        .into_iter()
        .filter(|s| s.key.action == QUIET)
        .map(|s| s.key.operator)
        .collect();
    let new: Vec<StepKey> = quiet
        .iter()
        .filter(|w| !already.contains(&w.legacy))
        .map(|w| StepKey {
            operator: w.legacy.clone(),
            action: QUIET.into(),
        })
        .collect();
    if !new.is_empty() {
        engine.journal.begin_steps(&retire_id, &new, now).await?;
        let ends: Vec<StepEnd> = new
            .into_iter()
            .map(|key| StepEnd {
                key,
                state: StepState::Done,
                detail: format!("quiet for {quiet_after}"),
            })
            .collect();
        engine.journal.end_steps(&retire_id, &ends, now).await?;
    }
    Ok(watched)
}

/// What to retire, and how.
#[derive(Clone, Debug)]
pub struct RetireRequest {
    /// Delete (else disable).
    pub delete: bool,
    pub operators: Vec<String>,
    pub quiet_after_ms: i64,
    /// Act although the operator is not ready, for `reason`.
    pub force: bool,
    pub reason: Option<String>,
    /// Who runs this, on the machine that runs it (the record adds the instance's login).
    pub actor: String,
}

/// What retiring did.
#[derive(Clone, Debug, Default, Serialize)]
pub struct RetireReport {
    /// Operators no technical plan moved: nothing was done.
    pub unknown: Vec<String>,
    /// `(login, what happened)`, in the order asked.
    pub outcomes: Vec<(String, String)>,
    /// Not ready, and not forced: left as they are, with their state.
    pub refused: Vec<String>,
}

/// Disables (or deletes) legacy operators that are ready: quiet (and, to delete, disabled), or
/// forced with a reason; the journal records who did what and, when forced, in what state.
pub async fn retire(
    engine: &Engine<'_>,
    legacy: &Legacy,
    req: &RetireRequest,
) -> Result<RetireReport, ApplyError> {
    let mut report = RetireReport {
        unknown: legacy.unknown(&req.operators),
        ..RetireReport::default()
    };
    if !report.unknown.is_empty() {
        return Ok(report);
    }
    let now = (engine.now)();
    let watched = legacy.watch(now, req.quiet_after_ms);
    record_retire_plan(engine, legacy, now).await?;
    let who = format!("{} as {}", req.actor, engine.instance.login());
    let action = if req.delete { "delete" } else { "disable" };
    for login in &req.operators {
        let Some(w) = watched.iter().find(|w| &w.legacy == login) else {
            continue;
        };
        let ready = w.quiet && (!req.delete || w.state == "disabled");
        if w.state == "deleted" || (!req.delete && w.state == "disabled") {
            report
                .outcomes
                .push((login.clone(), format!("{} already", w.state)));
            continue;
        }
        if !ready && !req.force {
            let hint = if req.delete && w.state != "disabled" {
                " (disable it first)"
            } else {
                ""
            };
            report.refused.push(format!("{login} is {}{hint}", w.state));
            continue;
        }
        let detail = if ready {
            format!("{action}d by {who}: quiet")
        } else {
            format!(
                "{action}d by {who}, forced while {} (last native {:?}, from [{}]): {}",
                w.state,
                w.last_native,
                w.sources.join(", "),
                req.reason.clone().unwrap_or_default()
            )
        };
        retire_one(engine, legacy, login, action, &detail, now).await?;
        report.outcomes.push((login.clone(), detail));
    }
    Ok(report)
}

/// One operator disabled or deleted through `xtk:session#Write`, journaled before and after.
async fn retire_one(
    engine: &Engine<'_>,
    legacy: &Legacy,
    login: &str,
    action: &str,
    detail: &str,
    now: Now,
) -> Result<(), ApplyError> {
    let retire_id = legacy.retire_id();
    let key = StepKey {
        operator: login.to_owned(),
        action: action.into(),
    };
    engine
        .journal
        .begin_steps(&retire_id, std::slice::from_ref(&key), now)
        .await?;
    let name = ims_wire::soap::escape(login);
    let doc = if action == "delete" {
        format!(r#"<operator xtkschema="xtk:operator" _operation="delete" _key="@name" name="{name}"/>"#)
    } else {
        format!(
            r#"<operator xtkschema="xtk:operator" _operation="update" _key="@name" name="{name}" disabled="1"/>"#
        )
    };
    engine.instance.write_operator(&doc).await?;
    engine
        .journal
        .end_steps(
            &retire_id,
            &[StepEnd {
                key,
                state: StepState::Done,
                detail: detail.to_owned(),
            }],
            now,
        )
        .await?;
    Ok(())
}
