//! Finalisation: the instance locked down (both restrictions on, through its configuration
//! file), the lock-down probes run against it and passing, then its migration marked complete.
//! A production instance waits for its staging twin; people still signing in natively would lose
//! it. Either is a blocker that only `--force` overrides, and the plan, the journal and the
//! instance record that it was forced and why.

use ims_core::Now;
use ims_wire::migration::{Completion, InstanceFacts, OperatorFacts};
use serde::{Deserialize, Serialize};

use crate::assess::{classify, Class};
use crate::journal::StepState;
use crate::run::{ApplyError, ApplyOptions, Engine, Run, Skipped};
use crate::run::{Checked, Phase, Plan};

/// The finalisation's plan (in its envelope, `Plan<Finalize>`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Finalize {
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

pub type FinalizePlan = Plan<Finalize>;

/// Lock-down options: the allow-list it sets (empty: the instance's stays) and whether the
/// blockers are forced past.
#[derive(Clone, Debug, Default)]
pub struct FinalizeArgs {
    pub allow: Vec<String>,
    pub force: bool,
}

fn summary(plan: &FinalizePlan) -> String {
    let body = &plan.body;
    let mut out = format!(
        "plan {} (finalise {}, {}): switch both restrictions on (allow-list: {}), run the lock-down probes, mark the migration complete\n",
        plan.plan_id,
        plan.instance,
        body.environment,
        if body.allow.is_empty() {
            "the instance's".to_owned()
        } else {
            body.allow.join(", ")
        }
    );
    if !body.builtins_outside_allow_list.is_empty() {
        out.push_str(&format!(
            "  note: built-in operators outside the allow-list stop signing in natively: {} (--allow keeps one)\n",
            body.builtins_outside_allow_list.join(", ")
        ));
    }
    for b in &body.blockers {
        let how = if body.forced { "forced past" } else { "blocker" };
        out.push_str(&format!("  {how}: {b}\n"));
    }
    out
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
    let body = Finalize {
        environment: facts.environment.clone(),
        staging_twin: facts.staging_twin.clone().filter(|t| !t.is_empty()),
        allow,
        losing_native_sign_in: losing,
        builtins_outside_allow_list: builtins,
        blockers,
        forced,
    };
    Plan::new(&facts.name, now, body)
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

impl FinalizeReport {
    fn new(plan: &FinalizePlan, opts: &ApplyOptions) -> Self {
        FinalizeReport {
            plan_id: plan.plan_id.clone(),
            dry_run: opts.dry_run,
            forced: plan.body.forced,
            ..FinalizeReport::default()
        }
    }
}

/// What checking found: whether the instance is locked down already.
pub struct Locked(bool);

impl Phase for Finalize {
    const NAME: &'static str = "finalize";
    const NEEDS_IMS: bool = false;
    type Args = FinalizeArgs;
    type Work = Locked;
    type Report = FinalizeReport;

    /// Plans from the instance and, when it names one, its staging twin.
    async fn plan(engine: &Engine<'_>, args: FinalizeArgs, now: Now) -> Result<FinalizePlan, ApplyError> {
        let facts = engine.instance.facts().await?;
        let ops = engine.operators().await?;
        let twin = match facts.staging_twin.as_deref().filter(|t| !t.is_empty()) {
            Some(name) => engine.twins.facts(name).await,
            None => None,
        };
        Ok(plan_finalize(
            &facts,
            &ops,
            twin.as_ref(),
            args.allow,
            args.force,
            now,
        ))
    }

    fn summary(plan: &FinalizePlan) -> String {
        summary(plan)
    }

    /// Refused while the plan has blockers and is not forced.
    fn admit(plan: &FinalizePlan, _facts: &InstanceFacts, _engine: &Engine<'_>) -> Result<(), ApplyError> {
        if plan.body.blockers.is_empty() || plan.body.forced {
            return Ok(());
        }
        Err(ApplyError::Drift(
            plan.body
                .blockers
                .iter()
                .map(|b| Skipped {
                    login: plan.instance.clone(),
                    reason: format!("blocker: {b} (plan again with --force to carry on regardless)"),
                })
                .collect(),
        ))
    }

    fn finished(plan: &FinalizePlan, opts: &ApplyOptions) -> FinalizeReport {
        FinalizeReport {
            locked_down: true,
            complete: true,
            ..FinalizeReport::new(plan, opts)
        }
    }

    /// Unless locked down already: refused when a blocker the plan did not list (so was not
    /// forced past) appeared, or when the operators who would lose native sign-in are no
    /// longer those planned.
    async fn check(plan: &FinalizePlan, run: &Run<'_>) -> Result<Checked<Self>, ApplyError> {
        let facts = &run.facts;
        let body = &plan.body;
        let already_locked =
            facts.restrictions.native_api_disabled && facts.restrictions.operator_management_restricted;
        if already_locked {
            return Ok(Checked::Work(Locked(true)));
        }
        let ops = run.engine.instance.operators(|_| {}).await?;
        let twin = match body.staging_twin.as_deref() {
            Some(name) => run.engine.twins.facts(name).await,
            None => None,
        };
        let live = plan_finalize(
            facts,
            &ops,
            twin.as_ref(),
            body.allow.clone(),
            body.forced,
            run.now(),
        );
        let new: Vec<&String> = live
            .body
            .blockers
            .iter()
            .filter(|b| !body.blockers.contains(b))
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
        let now_losing = losing_native(&ops, &body.allow, &facts.restrictions.allow_list);
        if now_losing != body.losing_native_sign_in {
            return Err(ApplyError::Drift(vec![Skipped {
                login: plan.instance.clone(),
                reason: format!(
                    "operators losing native sign-in are now [{}], not the planned [{}]",
                    now_losing.join(", "),
                    body.losing_native_sign_in.join(", ")
                ),
            }]));
        }
        Ok(Checked::Work(Locked(false)))
    }

    fn preview(plan: &FinalizePlan, Locked(already): Locked, run: &Run<'_>) -> FinalizeReport {
        FinalizeReport {
            locked_down: already,
            ..FinalizeReport::new(plan, run.opts)
        }
    }

    /// Lock down, run the probes, mark complete: each step journaled. A probe that fails stops
    /// before completion (the plan stays unfinished; run it again once fixed).
    async fn apply(
        plan: &FinalizePlan,
        Locked(already): Locked,
        run: &Run<'_>,
    ) -> Result<FinalizeReport, ApplyError> {
        let instance = run.engine.instance;
        let here = plan.instance.as_str();
        let mut report = FinalizeReport::new(plan, run.opts);
        run.begin_one(LOCKDOWN, here).await?;
        if !already {
            instance.lock_down(&plan.body.allow).await?;
        }
        report.locked_down = true;
        run.end_one(LOCKDOWN, here, StepState::Done, String::new())
            .await?;

        run.begin_one(VERIFY, here).await?;
        let token = match run.engine.ims {
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
            run.end_one(VERIFY, here, StepState::Failed, failed.join("; "))
                .await?;
            return Ok(report);
        }
        run.end_one(VERIFY, here, StepState::Done, String::new()).await?;

        run.begin_one(COMPLETE, here).await?;
        let note = if plan.body.forced {
            format!("forced past: {}", plan.body.blockers.join("; "))
        } else {
            String::new()
        };
        instance
            .complete(&Completion {
                at: 0,
                by: String::new(),
                forced: plan.body.forced,
                note: note.clone(),
            })
            .await?;
        run.end_one(COMPLETE, here, StepState::Done, note).await?;
        report.complete = true;
        Ok(report)
    }

    fn complete(report: &FinalizeReport) -> bool {
        report.complete
    }
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
        assert_eq!(plan.body.losing_native_sign_in, ["webapp"]);
        assert_eq!(plan.body.builtins_outside_allow_list, ["webapp"]);
        assert!(plan.body.blockers.is_empty(), "{:?}", plan.body.blockers);
        assert!(plan
            .summary()
            .contains("note: built-in operators outside the allow-list stop signing in natively: webapp"));

        // A person who still signs in natively blocks, named as a person.
        let ops = vec![native("webapp", true), native("ana", false)];
        let plan = plan_finalize(&facts, &ops, None, vec![], false, Now::from_millis(0));
        assert_eq!(
            plan.body.blockers,
            ["these people still sign in natively and would lose it: ana (move them with `plan users`, or disable them)"]
        );
    }
}
