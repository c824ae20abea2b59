//! Finalisation: the instance locked down (both restrictions on, through its configuration
//! file), the lock-down probes run against it and passing, then its migration marked complete.
//! A production instance waits for its staging twin; people still signing in natively would lose
//! it. Either is a blocker that only `--force` overrides, and the plan, the journal and the
//! instance record that it was forced and why.

use ims_core::Now;
use ims_wire::migration::{Completion, InstanceFacts, OperatorFacts};
use serde::{Deserialize, Serialize};

use crate::assess::{classify, Class};
use crate::client::{ImsClient, InstanceClient};
use crate::journal::{Journal, StepState};
use crate::users::{end, key, record_plan, ApplyError, ApplyOptions, Skipped};

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FinalizePlan {
    pub plan_id: String,
    pub phase: String,
    pub instance: String,
    pub created_at: i64,
    pub environment: String,
    pub staging_twin: Option<String>,
    /// The allow-list the lock-down sets (empty: the one the instance has, the vendor's default
    /// unless configured).
    pub allow: Vec<String>,
    /// Operators who sign in natively now and cannot once locked down (allow-list aside).
    pub losing_native_sign_in: Vec<String>,
    /// Built-in operators among them: the vendor's service accounts, which the allow-list alone
    /// decides on (said in the summary, never a blocker).
    #[serde(default)]
    pub builtins_outside_allow_list: Vec<String>,
    /// What would stop finalisation; `forced` carries on regardless.
    pub blockers: Vec<String>,
    pub forced: bool,
}

impl FinalizePlan {
    pub fn summary(&self) -> String {
        let mut out = format!(
            "plan {} (finalise {}, {}): switch both restrictions on (allow-list: {}), run the lock-down probes, mark the migration complete\n",
            self.plan_id,
            self.instance,
            self.environment,
            if self.allow.is_empty() {
                "the instance's".to_owned()
            } else {
                self.allow.join(", ")
            }
        );
        if !self.builtins_outside_allow_list.is_empty() {
            out.push_str(&format!(
                "  note: built-in operators outside the allow-list stop signing in natively: {} (--allow keeps one)\n",
                self.builtins_outside_allow_list.join(", ")
            ));
        }
        for b in &self.blockers {
            let how = if self.forced { "forced past" } else { "blocker" };
            out.push_str(&format!("  {how}: {b}\n"));
        }
        out
    }
}

/// Operators that sign in natively and are not on the allow-list the lock-down will have (`allow`
/// when it names operators, else the instance's own, `current`): locked out by finalisation.
pub fn losing_native(ops: &[OperatorFacts], allow: &[String], current: &[String]) -> Vec<String> {
    let list = if allow.is_empty() { current } else { allow };
    ops.iter()
        .filter(|o| o.auth_type == "native" && !o.disabled)
        .filter(|o| !ims_wire::operators::allow_listed(list, &o.login))
        .map(|o| o.login.clone())
        .collect()
}

/// Plans finalisation. `twin` is the staging twin's facts when the instance names one.
pub fn plan_finalize(
    facts: &InstanceFacts,
    ops: &[OperatorFacts],
    twin: Option<&InstanceFacts>,
    allow: Vec<String>,
    forced: bool,
    now: Now,
) -> FinalizePlan {
    let mut blockers = Vec::new();
    if !facts.supports_restrictions {
        blockers.push(format!(
            "build {} has no lock-down switches; builds that have them: {}",
            facts.build, facts.restriction_builds
        ));
    }
    if let Some(name) = facts.staging_twin.as_deref().filter(|t| !t.is_empty()) {
        match twin {
            Some(t) if t.migration_complete.is_some() => {}
            Some(_) => blockers.push(format!("its staging twin {name} has not finished its migration")),
            None => blockers.push(format!("its staging twin {name} could not be asked")),
        }
    }
    let losing = losing_native(ops, &allow, &facts.restrictions.allow_list);
    let (mut people, mut programs, mut builtins) = (Vec::new(), Vec::new(), Vec::new());
    for login in &losing {
        if let Some(op) = ops.iter().find(|o| &o.login == login) {
            match classify(op).0 {
                Class::Technical => programs.push(login.clone()),
                Class::Person => people.push(login.clone()),
                // Service accounts no phase moves: the allow-list alone decides whether one keeps
                // signing in natively (`webapp` is outside the vendor's default list).
                Class::BuiltIn => builtins.push(login.clone()),
            }
        }
    }
    if !people.is_empty() {
        blockers.push(format!(
            "these people still sign in natively and would lose it: {} (move them with `plan users`, or disable them)",
            people.join(", ")
        ));
    }
    if !programs.is_empty() {
        blockers.push(format!(
            "these programs still sign in natively and would stop working: {} (move them to technical accounts first)",
            programs.join(", ")
        ));
    }
    FinalizePlan {
        plan_id: format!("finalize-{}-{}", facts.name, now.millis()),
        phase: "finalize".into(),
        instance: facts.name.clone(),
        created_at: now.millis(),
        environment: facts.environment.clone(),
        staging_twin: facts.staging_twin.clone().filter(|t| !t.is_empty()),
        allow,
        losing_native_sign_in: losing,
        builtins_outside_allow_list: builtins,
        blockers,
        forced,
    }
}

pub const LOCKDOWN: &str = "lockdown";
pub const VERIFY: &str = "verify";
pub const COMPLETE: &str = "complete";

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct FinalizeReport {
    pub plan_id: String,
    pub dry_run: bool,
    pub locked_down: bool,
    pub probes: Vec<ims_wire::migration::ProbeFacts>,
    pub complete: bool,
    pub forced: bool,
}

/// Applies a finalisation plan: refused while it has blockers and is not forced, or when the
/// operators who would lose native sign-in are no longer those planned.
#[allow(clippy::too_many_arguments)]
pub async fn apply_finalize(
    plan: &FinalizePlan,
    twin: Option<&InstanceFacts>,
    journal: &dyn Journal,
    instance: &InstanceClient,
    ims: Option<&ImsClient>,
    opts: &ApplyOptions,
    now: impl Fn() -> Now,
) -> Result<FinalizeReport, ApplyError> {
    let mut report = FinalizeReport {
        plan_id: plan.plan_id.clone(),
        dry_run: opts.dry_run,
        forced: plan.forced,
        ..FinalizeReport::default()
    };
    if !plan.blockers.is_empty() && !plan.forced {
        return Err(ApplyError::Drift(
            plan.blockers
                .iter()
                .map(|b| Skipped {
                    login: plan.instance.clone(),
                    reason: format!("blocker: {b} (plan again with --force to carry on regardless)"),
                })
                .collect(),
        ));
    }
    let facts = instance.facts().await?;
    crate::users::check_instance(&plan.instance, &facts)?;
    let stored = journal.plan(&plan.plan_id).await?;
    crate::users::check_stored(stored.as_ref(), plan)?;
    if stored.as_ref().is_some_and(|p| p.applied_at.is_some()) {
        report.locked_down = true;
        report.complete = true;
        return Ok(report);
    }
    let already_locked =
        facts.restrictions.native_api_disabled && facts.restrictions.operator_management_restricted;
    if !already_locked {
        let ops = instance.operators(|_| {}).await?;
        // The blockers as they are now: one the plan did not list (so was not forced past)
        // stops it, whatever the file says.
        let live = plan_finalize(&facts, &ops, twin, plan.allow.clone(), plan.forced, now());
        let new: Vec<&String> = live
            .blockers
            .iter()
            .filter(|b| !plan.blockers.contains(b))
            .collect();
        if !new.is_empty() {
            return Err(ApplyError::Drift(
                new.into_iter()
                    .map(|b| Skipped {
                        login: plan.instance.clone(),
                        reason: format!("blocker not in the plan: {b}"),
                    })
                    .collect(),
            ));
        }
        let now_losing = losing_native(&ops, &plan.allow, &facts.restrictions.allow_list);
        if now_losing != plan.losing_native_sign_in {
            return Err(ApplyError::Drift(vec![Skipped {
                login: plan.instance.clone(),
                reason: format!(
                    "operators losing native sign-in are now [{}], not the planned [{}]",
                    now_losing.join(", "),
                    plan.losing_native_sign_in.join(", ")
                ),
            }]));
        }
    }
    if opts.dry_run {
        report.locked_down = already_locked;
        return Ok(report);
    }
    if stored.is_none() {
        record_plan(
            journal,
            &plan.plan_id,
            &plan.instance,
            &plan.phase,
            plan.created_at,
            plan,
        )
        .await?;
    }
    let step = |action: &str| key(action, &plan.instance);
    let ended = |action: &str, state: StepState, detail: String| end(action, &plan.instance, state, detail);
    journal
        .begin_steps(&plan.plan_id, &[step(LOCKDOWN)], now())
        .await?;
    if !already_locked {
        instance.lock_down(&plan.allow).await?;
    }
    report.locked_down = true;
    journal
        .end_steps(
            &plan.plan_id,
            &[ended(LOCKDOWN, StepState::Done, String::new())],
            now(),
        )
        .await?;

    journal.begin_steps(&plan.plan_id, &[step(VERIFY)], now()).await?;
    let token = match ims {
        Some(ims) => Some(ims.token().await?),
        None => None,
    };
    report.probes = instance.verify(token).await?;
    let failed: Vec<String> = report
        .probes
        .iter()
        .filter(|p| !p.passed)
        .map(|p| format!("{}: expected {}, observed {}", p.probe, p.expected, p.observed))
        .collect();
    if !failed.is_empty() {
        journal
            .end_steps(
                &plan.plan_id,
                &[ended(VERIFY, StepState::Failed, failed.join("; "))],
                now(),
            )
            .await?;
        return Ok(report);
    }
    journal
        .end_steps(
            &plan.plan_id,
            &[ended(VERIFY, StepState::Done, String::new())],
            now(),
        )
        .await?;

    journal
        .begin_steps(&plan.plan_id, &[step(COMPLETE)], now())
        .await?;
    let note = if plan.forced {
        format!("forced past: {}", plan.blockers.join("; "))
    } else {
        String::new()
    };
    instance
        .complete(&Completion {
            at: 0,
            by: String::new(),
            forced: plan.forced,
            note: note.clone(),
        })
        .await?;
    journal
        .end_steps(&plan.plan_id, &[ended(COMPLETE, StepState::Done, note)], now())
        .await?;
    journal.mark_applied(&plan.plan_id, now()).await?;
    report.complete = true;
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn native(login: &str, builtin: bool) -> OperatorFacts {
        OperatorFacts {
            id: 1,
            login: login.into(),
            label: login.into(),
            email: None,
            auth_type: "native".into(),
            disabled: false,
            builtin,
            groups: vec![],
            rights: vec![],
            ims_id: None,
            credential: None,
            usage: vec![],
        }
    }

    #[test]
    fn built_in_operators_outside_the_allow_list_are_said_but_block_nothing() {
        let facts = crate::testing::facts(&[]);
        let ops = vec![native("admin", true), native("webapp", true)];
        let plan = plan_finalize(&facts, &ops, None, vec![], false, Now::from_millis(0));
        assert_eq!(plan.losing_native_sign_in, ["webapp"]);
        assert_eq!(plan.builtins_outside_allow_list, ["webapp"]);
        assert!(plan.blockers.is_empty(), "{:?}", plan.blockers);
        assert!(plan
            .summary()
            .contains("note: built-in operators outside the allow-list stop signing in natively: webapp"));

        // A person who still signs in natively blocks, named as a person.
        let ops = vec![native("webapp", true), native("ana", false)];
        let plan = plan_finalize(&facts, &ops, None, vec![], false, Now::from_millis(0));
        assert_eq!(
            plan.blockers,
            ["these people still sign in natively and would lose it: ana (move them with `plan users`, or disable them)"]
        );
    }
}
