//! Rollback of the end-user phase, until the instance is locked down: people an end-user plan
//! moved are put back to native sign-in. First their IMS user leaves this instance's profiles
//! (so that signing in through the IMS can neither reach the operator nor create a second one),
//! then the instance clears the link and the type, ending their IMS sessions, and gives back the
//! groups and direct rights they held when planned. Journaled like a plan of phase `rollback`;
//! run again for the same people, an unfinished one is resumed under its own id.

use std::collections::{HashMap, HashSet};

use ims_core::Now;
use ims_wire::email::email_key;
use ims_wire::migration::{state_digest, Access, InstanceFacts, SwitchItem};
use serde::{Deserialize, Serialize};

use crate::journal::{StepKey, StepState};
use crate::run::{end, key, same_json, ApplyError, ApplyOptions, Engine, Run, Skipped};
use crate::run::{Checked, Phase, Plan};
use crate::users::{batch, UsersPlan};

pub const UNASSIGN: &str = "unassign";
pub const NATIVE: &str = "native";

/// An operator to put back to native sign-in, as its plan moved it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RollbackStep {
    pub login: String,
    pub email: String,
    pub profiles: Vec<String>,
    /// The plan that moved it.
    pub moved_by: String,
    /// Its native credential's fingerprint when that plan was made.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credential: Option<String>,
    /// Its groups and direct rights when that plan was made, given back with native sign-in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access: Option<Access>,
}

/// A rollback's plan: the people to put back. The journal keeps the list alone (`record`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rollback {
    pub targets: Vec<RollbackStep>,
}

pub type RollbackPlan = Plan<Rollback>;

/// Who to put back: the people named, or everyone the end-user plans moved (only that plan's
/// with `plan`).
#[derive(Clone, Debug, Default)]
pub struct RollbackArgs {
    pub operators: Vec<String>,
    pub plan: Option<String>,
}

/// What a rollback did.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct RollbackReport {
    pub rollback_id: String,
    pub dry_run: bool,
    pub restored: Vec<String>,
    /// Among them, those whose password changed while they signed in through the IMS: it was
    /// cleared, and an administrator sets a new one before they can sign in natively.
    pub password_reset: Vec<String>,
    pub already: Vec<String>,
    pub failed: Vec<Skipped>,
}

/// A person to put back: with the state digest it has now when it is to be switched back
/// (`None`: native already, out of the profiles only), and whether its password is cleared.
struct Todo {
    target: RollbackStep,
    state: Option<String>,
    reset: bool,
}

/// What checking found: who to put back, and the answer so far (those done already, those
/// that cannot be).
pub struct RollbackWork {
    todo: Vec<Todo>,
    report: RollbackReport,
}

/// The people of `plans` (applied end-user plans) to put back: those named in `logins`, or all
/// of them when `logins` is empty. Names no plan moved come back as errors.
pub fn rollback_targets(plans: &[UsersPlan], logins: &[String]) -> Result<Vec<RollbackStep>, Vec<String>> {
    let mut found: HashMap<&str, RollbackStep> = HashMap::new();
    for plan in plans {
        for p in &plan.body.people {
            if logins.is_empty() || logins.contains(&p.login) {
                found.insert(
                    p.login.as_str(),
                    RollbackStep {
                        login: p.login.clone(),
                        email: p.email.clone(),
                        profiles: p.profiles.clone(),
                        moved_by: plan.plan_id.clone(),
                        credential: p.credential.clone(),
                        access: p.rights.as_ref().map(|rights| Access {
                            groups: p.groups.clone(),
                            rights: rights.clone(),
                        }),
                    },
                );
            }
        }
    }
    let unknown: Vec<String> = logins
        .iter()
        .filter(|l| !found.contains_key(l.as_str()))
        .cloned()
        .collect();
    if !unknown.is_empty() {
        return Err(unknown);
    }
    let mut out: Vec<RollbackStep> = found.into_values().collect();
    out.sort_by(|a, b| a.login.cmp(&b.login));
    Ok(out)
}

impl RollbackReport {
    fn new(plan: &RollbackPlan, opts: &ApplyOptions) -> Self {
        RollbackReport {
            rollback_id: plan.plan_id.clone(),
            dry_run: opts.dry_run,
            ..RollbackReport::default()
        }
    }
}

impl Phase for Rollback {
    const NAME: &'static str = "rollback";
    const NEEDS_IMS: bool = true;
    type Args = RollbackArgs;
    type Work = RollbackWork;
    type Report = RollbackReport;

    /// The people from the end-user plans the journal holds. A rollback of these very people
    /// that a crash or a refusal left unfinished is resumed under its own id rather than left
    /// "in progress" beside a new one.
    async fn plan(engine: &Engine<'_>, args: RollbackArgs, now: Now) -> Result<RollbackPlan, ApplyError> {
        let name = engine.instance.facts().await?.name;
        let recorded = engine.journal.plans(&name).await?;
        let mut plans = Vec::new();
        for p in &recorded {
            if p.phase == crate::users::Users::NAME && args.plan.as_ref().is_none_or(|id| *id == p.plan_id) {
                plans.push(
                    serde_json::from_str::<UsersPlan>(&p.body)
                        .map_err(|e| ApplyError::Unreadable(p.plan_id.clone(), e.to_string()))?,
                );
            }
        }
        if let (Some(id), true) = (&args.plan, plans.is_empty()) {
            return Err(ApplyError::NoSuchPlan {
                plan: id.clone(),
                instance: name,
            });
        }
        let targets = rollback_targets(&plans, &args.operators).map_err(ApplyError::NotMoved)?;
        let mut plan = Plan::new(&name, now, Rollback { targets });
        let record = Self::record(&plan);
        if let Some(unfinished) = recorded
            .iter()
            .find(|p| p.phase == Self::NAME && p.applied_at.is_none() && same_json(&p.body, &record))
        {
            plan.plan_id = unfinished.plan_id.clone();
            plan.created_at = unfinished.created_at.millis();
        }
        Ok(plan)
    }

    fn summary(plan: &RollbackPlan) -> String {
        let mut out = format!(
            "rollback {} of {}: {} to put back to native sign-in\n",
            plan.plan_id,
            plan.instance,
            plan.body.targets.len()
        );
        for t in &plan.body.targets {
            out.push_str(&format!(
                "  {}: leaves [{}] at the IMS, then native sign-in (moved by {})\n",
                t.login,
                t.profiles.join(", "),
                t.moved_by
            ));
        }
        out
    }

    /// The journal keeps the people to put back, as it always has.
    fn record(plan: &RollbackPlan) -> String {
        serde_json::to_string(&plan.body.targets).unwrap_or_default()
    }

    /// Once locked down, the instance refuses to put anyone back: refused here, before the IMS
    /// side is touched (a person left with neither way in).
    fn admit(plan: &RollbackPlan, facts: &InstanceFacts, _engine: &Engine<'_>) -> Result<(), ApplyError> {
        if !facts.restrictions.operator_management_restricted {
            return Ok(());
        }
        Err(ApplyError::Drift(vec![Skipped {
            login: plan.instance.clone(),
            reason: "the instance is locked down: operators can no longer go back to native sign-in".into(),
        }]))
    }

    fn finished(plan: &RollbackPlan, opts: &ApplyOptions) -> RollbackReport {
        RollbackReport::new(plan, opts)
    }

    async fn check(plan: &RollbackPlan, run: &Run<'_>) -> Result<Checked<Self>, ApplyError> {
        let targets = &plan.body.targets;
        let current = run.operators_by_login().await?;
        // People a stopped apply gave their profiles but never switched: signing in through the
        // IMS they would get a second operator. Their user leaves the profiles too; those holding
        // none of them are left alone, so that a rollback run again writes nothing.
        let holding: HashMap<String, Vec<String>> = if targets
            .iter()
            .any(|t| current.get(&t.login).is_some_and(|o| o.auth_type == "native"))
        {
            run.engine
                .ims()?
                .users()
                .await?
                .into_iter()
                .map(|u| (email_key(&u.email), u.groups))
                .collect()
        } else {
            HashMap::new()
        };
        let mut report = RollbackReport::new(plan, run.opts);
        let mut todo = Vec::new();
        for t in targets {
            let target = t.clone();
            match current.get(&t.login) {
                None => report.failed.push(Skipped {
                    login: t.login.clone(),
                    reason: "no longer exists".into(),
                }),
                Some(op) if op.auth_type == "native" => {
                    let held = holding.get(&email_key(&t.email)).is_some_and(|groups| {
                        groups
                            .iter()
                            .any(|g| t.profiles.iter().any(|p| p.eq_ignore_ascii_case(g)))
                    });
                    if held {
                        todo.push(Todo {
                            target,
                            state: None,
                            reset: false,
                        });
                    } else {
                        report.already.push(t.login.clone());
                    }
                }
                // A password set while it signed in through the IMS is not one its person knows:
                // cleared on the way back (a forced reset). Plans older than the fingerprint say
                // nothing, and nothing is cleared for them.
                Some(op) if op.auth_type == "ims" => todo.push(Todo {
                    reset: t.credential.is_some() && op.credential != t.credential,
                    state: Some(state_digest(op)),
                    target,
                }),
                Some(op) => report.failed.push(Skipped {
                    login: t.login.clone(),
                    reason: format!("a {} operator is not put back", op.auth_type),
                }),
            }
        }
        if todo.is_empty() {
            return Ok(Checked::Nothing(report));
        }
        Ok(Checked::Work(RollbackWork { todo, report }))
    }

    /// What would be put back (those never switched: out of the profiles only).
    fn preview(_plan: &RollbackPlan, work: RollbackWork, _run: &Run<'_>) -> RollbackReport {
        let RollbackWork { todo, mut report } = work;
        for t in &todo {
            match t.state {
                Some(_) => report.restored.push(t.target.login.clone()),
                None => report.already.push(t.target.login.clone()),
            }
        }
        report.password_reset = todo
            .iter()
            .filter(|t| t.reset)
            .map(|t| t.target.login.clone())
            .collect();
        report
    }

    async fn apply(
        _plan: &RollbackPlan,
        work: RollbackWork,
        run: &Run<'_>,
    ) -> Result<RollbackReport, ApplyError> {
        let RollbackWork { todo, mut report } = work;
        for chunk in todo.chunks(batch(run.opts)) {
            let unassigned = unassign(chunk, run, &mut report).await?;
            run.reach("unassign-ended");
            if !unassigned.is_empty() {
                to_native(&unassigned, run, &mut report).await?;
            }
        }
        Ok(report)
    }

    fn complete(report: &RollbackReport) -> bool {
        report.failed.is_empty()
    }
}

/// The IMS side first: the users leave the instance's profiles. Returns those to switch back
/// on the instance.
async fn unassign(
    chunk: &[Todo],
    run: &Run<'_>,
    report: &mut RollbackReport,
) -> Result<Vec<SwitchItem>, ApplyError> {
    let ims = run.engine.ims()?;
    let keys: Vec<StepKey> = chunk.iter().map(|t| key(UNASSIGN, &t.target.login)).collect();
    run.begin(&keys).await?;
    let mut ends = Vec::new();
    let mut unassigned = Vec::new();
    for ten in chunk.chunks(10) {
        let entries: Vec<serde_json::Value> = ten
            .iter()
            .map(|t| serde_json::json!({"user": t.target.email, "do": [{"remove": {"group": t.target.profiles}}]}))
            .collect();
        let errors: HashMap<usize, String> = ims.action(&entries).await?.into_iter().collect();
        for (i, t) in ten.iter().enumerate() {
            let login = &t.target.login;
            match errors.get(&i) {
                // A user that is gone holds no profile either.
                Some(e) if !e.starts_with("error.user.nonexistent") => {
                    report.failed.push(Skipped {
                        login: login.clone(),
                        reason: format!("the IMS refused: {e}"),
                    });
                    ends.push(end(UNASSIGN, login, StepState::Failed, e.clone()));
                }
                _ => {
                    ends.push(end(UNASSIGN, login, StepState::Done, String::new()));
                    match &t.state {
                        Some(state) => unassigned.push(SwitchItem {
                            login: login.clone(),
                            ims_id: None,
                            state: state.clone(),
                            reset_password: t.reset,
                            restore: t.target.access.clone(),
                        }),
                        // Native already: out of the profiles was all it needed.
                        None => report.already.push(login.clone()),
                    }
                }
            }
        }
    }
    run.end(&ends).await?;
    Ok(unassigned)
}

/// Then the instance: back to native sign-in.
async fn to_native(
    unassigned: &[SwitchItem],
    run: &Run<'_>,
    report: &mut RollbackReport,
) -> Result<(), ApplyError> {
    let keys: Vec<StepKey> = unassigned.iter().map(|i| key(NATIVE, &i.login)).collect();
    run.begin(&keys).await?;
    let answer = run.engine.instance.switch("native", unassigned).await?;
    let reset: HashSet<&str> = unassigned
        .iter()
        .filter(|i| i.reset_password)
        .map(|i| i.login.as_str())
        .collect();
    let mut ends = Vec::new();
    for o in answer.operators {
        if o.outcome == "switched" || o.outcome == "already" {
            if o.outcome == "switched" && reset.contains(o.login.as_str()) {
                report.password_reset.push(o.login.clone());
            }
            report.restored.push(o.login.clone());
            ends.push(end(NATIVE, &o.login, StepState::Done, o.outcome));
        } else {
            let reason = format!("{}: {}", o.outcome, o.detail);
            report.failed.push(Skipped {
                login: o.login.clone(),
                reason: reason.clone(),
            });
            ends.push(end(NATIVE, &o.login, StepState::Failed, reason));
        }
    }
    run.end(&ends).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::users::{PersonStep, Users};

    fn moved(plan_id: &str, logins: &[&str]) -> UsersPlan {
        let people = logins
            .iter()
            .map(|l| PersonStep {
                login: (*l).into(),
                email: format!("{l}@example.com"),
                groups: vec!["deliveryOperators".into()],
                rights: Some(vec![]),
                profiles: vec!["campaign - prod - deliveryOperators".into()],
                ims_user: None,
                state: "s".into(),
                credential: None,
            })
            .collect();
        let mut plan = Plan::new(
            "prod",
            Now::from_millis(1),
            Users {
                org_id: "o@AdobeOrg".into(),
                product_context: "dma_campaign_classic".into(),
                mask: "campaign - prod - (.*)".into(),
                people,
                skipped: vec![],
                invite: true,
                wave: Default::default(),
                outside_wave: 0,
            },
        );
        plan.plan_id = plan_id.into();
        plan
    }

    #[test]
    fn targets_are_the_people_named_or_everyone_moved_and_unknown_names_refuse() {
        let plans = [
            moved("users-prod-1", &["bo", "ana"]),
            moved("users-prod-2", &["chen"]),
        ];
        let all = rollback_targets(&plans, &[]).unwrap();
        let logins: Vec<&str> = all.iter().map(|t| t.login.as_str()).collect();
        assert_eq!(logins, ["ana", "bo", "chen"]);
        assert_eq!(all[2].moved_by, "users-prod-2");
        assert_eq!(
            all[0].access,
            Some(Access {
                groups: vec!["deliveryOperators".into()],
                rights: vec![],
            })
        );
        let one = rollback_targets(&plans, &["chen".into()]).unwrap();
        assert_eq!(one.len(), 1);
        assert_eq!(
            rollback_targets(&plans, &["chen".into(), "dara".into()]),
            Err(vec!["dara".to_owned()])
        );
    }

    #[test]
    fn the_journal_keeps_the_list_of_people_alone() {
        let targets = rollback_targets(&[moved("users-prod-1", &["ana"])], &[]).unwrap();
        let plan = Plan::new(
            "prod",
            Now::from_millis(7),
            Rollback {
                targets: targets.clone(),
            },
        );
        assert_eq!(plan.plan_id, "rollback-prod-7");
        assert_eq!(Rollback::record(&plan), serde_json::to_string(&targets).unwrap());
    }
}
