//! The end-user phase: each native person with a usable email gets an IMS user (found or
//! created through the User Management API) holding the profiles of its groups, and is then
//! linked to it and moved to IMS sign-in on the instance, its native sessions ended.
//!
//! Planning is pure. Applying runs in three stages, each journaled before and after it acts:
//! identities (action entries `createEnterpriseID` with `ignoreIfAlreadyExists`, then `add` the
//! profiles: both idempotent), one reading of the organisation's users (ids by email), and the
//! switch on the instance (conditional on the planned state). Nothing else is written, so a run
//! cut short anywhere is finished by the next, and a run after success writes nothing.

use std::collections::{BTreeSet, HashMap, HashSet};

use futures_util::StreamExt as _;
use ims_core::Now;
use ims_wire::email::email_key;
use ims_wire::migration::{state_digest, Access, InstanceFacts, OperatorFacts, SwitchItem, MAX_SWITCH};
use serde::{Deserialize, Serialize};

use crate::assess::{classify, email_statuses, Class, EmailStatus};
use crate::client::{Error, ImsClient, InstanceClient};
use crate::journal::{Journal, PlanRecord, StepEnd, StepKey, StepState};
use crate::prepare::{mask_for, profile_name};

pub const IDENTITY: &str = "identity";
/// User Management API requests the end-user phase keeps in flight at once.
const IN_FLIGHT: usize = 4;
pub const SWITCH: &str = "switch";

/// A person the plan moves.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PersonStep {
    pub login: String,
    pub email: String,
    pub groups: Vec<String>,
    /// Its direct named rights when planned (all carried by its groups); with its groups, what
    /// a rollback gives back. Absent from plans made before it was recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rights: Option<Vec<String>>,
    /// The product profiles of its groups, which its IMS user is added to.
    pub profiles: Vec<String>,
    /// The IMS user with that email when planned (`None`: it is created).
    pub ims_user: Option<String>,
    /// The operator's state digest when planned: apply refuses any other.
    pub state: String,
    /// Its native credential's fingerprint when planned (see `OperatorFacts::credential`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credential: Option<String>,
}

/// An operator the plan leaves as it is, and why.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Skipped {
    pub login: String,
    pub reason: String,
}

/// The end-user plan: reviewable, stored in the journal when applied.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UsersPlan {
    pub plan_id: String,
    pub phase: String,
    pub instance: String,
    pub created_at: i64,
    pub org_id: String,
    pub product_context: String,
    pub mask: String,
    pub people: Vec<PersonStep>,
    pub skipped: Vec<Skipped>,
}

impl UsersPlan {
    /// The human summary: what changes on each side, per operator.
    pub fn summary(&self) -> String {
        let mut out = format!(
            "plan {} (end users of {}): {} to move, {} left as they are\n",
            self.plan_id,
            self.instance,
            self.people.len(),
            self.skipped.len()
        );
        for p in &self.people {
            let user = match &p.ims_user {
                Some(id) => format!("IMS user {} ({id}, exists)", p.email),
                None => format!("IMS user {} (created)", p.email),
            };
            out.push_str(&format!(
                "  {}: {user} added to [{}]; operator linked, switched to IMS sign-in, native sessions ended\n",
                p.login,
                p.profiles.join(", ")
            ));
        }
        for s in &self.skipped {
            out.push_str(&format!("  {}: left as it is: {}\n", s.login, s.reason));
        }
        out
    }
}

/// Plans the end-user phase from the instance's operators, the organisation's profile names
/// and users (email key -> id).
pub fn plan_users(
    facts: &InstanceFacts,
    ops: &[OperatorFacts],
    profiles: &[String],
    users: &HashMap<String, String>,
    org_id: &str,
    now: Now,
) -> UsersPlan {
    let account = facts.ims_account.as_ref();
    let mask = mask_for(&facts.name, account.map(|a| a.association_mask.as_str()));
    let known: HashSet<&str> = profiles.iter().map(String::as_str).collect();
    let carried: HashMap<&str, &[String]> = facts
        .groups
        .iter()
        .map(|g| (g.name.as_str(), g.rights.as_slice()))
        .collect();
    let mut people = Vec::new();
    let mut skipped = Vec::new();
    for (op, status) in ops.iter().zip(email_statuses(ops)) {
        let (class, _) = classify(op);
        if class != Class::Person || op.auth_type != "native" {
            continue;
        }
        let skip = |reason: String| Skipped {
            login: op.login.clone(),
            reason,
        };
        if op.disabled {
            skipped.push(skip("disabled: stays native and unable to sign in".into()));
            continue;
        }
        if status != EmailStatus::Ok {
            skipped.push(skip(format!(
                "its email is {}: give it one with `ims migrate prepare --emails`",
                status.as_str()
            )));
            continue;
        }
        // The IMS lets a person into an instance through a product profile of it: with no
        // group there is no profile to give, and the person could not sign in at all.
        if op.groups.is_empty() {
            skipped.push(skip(
                "belongs to no group: no product profile would let it in through the IMS; give it a group"
                    .into(),
            ));
            continue;
        }
        let from_groups: BTreeSet<&str> = op
            .groups
            .iter()
            .filter_map(|g| carried.get(g.as_str()))
            .flat_map(|r| r.iter().map(String::as_str))
            .collect();
        let beyond: Vec<&str> = op
            .rights
            .iter()
            .map(String::as_str)
            .filter(|r| !from_groups.contains(r))
            .collect();
        if !beyond.is_empty() {
            skipped.push(skip(format!(
                "holds rights none of its groups carries ({}): its profiles would not give them back",
                beyond.join(", ")
            )));
            continue;
        }
        let mut names = Vec::new();
        let mut missing = Vec::new();
        for g in &op.groups {
            match profile_name(&mask, g) {
                Some(n) if known.contains(n.as_str()) => names.push(n),
                Some(n) => missing.push(n),
                None => missing.push(format!("(the mask names no profile for {g})")),
            }
        }
        if !missing.is_empty() {
            skipped.push(skip(format!(
                "no profile for its groups at the IMS: {} (run `ims migrate prepare --profiles`)",
                missing.join(", ")
            )));
            continue;
        }
        let email = op.email.clone().unwrap_or_default();
        people.push(PersonStep {
            login: op.login.clone(),
            ims_user: users.get(&email_key(&email)).cloned(),
            email,
            groups: op.groups.clone(),
            rights: Some(op.rights.clone()),
            profiles: names,
            state: state_digest(op),
            credential: op.credential.clone(),
        });
    }
    UsersPlan {
        plan_id: format!("users-{}-{}", facts.name, now.millis()),
        phase: "users".into(),
        instance: facts.name.clone(),
        created_at: now.millis(),
        org_id: org_id.to_owned(),
        product_context: account.map_or_else(
            || "dma_campaign_classic".to_owned(),
            |a| a.product_context.clone(),
        ),
        mask,
        people,
        skipped,
    }
}

/// Where a test may stop the engine dead (`std::process::abort`, as a `kill -9` would): at a
/// named boundary, the `nth` time it is reached.
#[derive(Clone, Debug, Default)]
pub struct FailPoint {
    pub name: String,
    pub nth: u32,
    reached: std::sync::Arc<std::sync::atomic::AtomicU32>,
}

impl FailPoint {
    /// `name` or `name:nth` (`IMS_MIGRATE_FAIL_AT`).
    pub fn parse(spec: &str) -> Self {
        let (name, nth) = match spec.split_once(':') {
            Some((n, k)) => (n, k.parse().unwrap_or(1)),
            None => (spec, 1),
        };
        FailPoint {
            name: name.to_owned(),
            nth: nth.max(1),
            reached: Default::default(),
        }
    }

    fn reach(&self, name: &str) {
        if self.name == name {
            let n = self.reached.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1;
            if n == self.nth {
                eprintln!("fail point {name} reached: stopping dead");
                std::process::abort();
            }
        }
    }
}

/// The step boundaries of applying, in order (for fail points and the crash matrix).
pub const BOUNDARIES: &[&str] = &[
    "plan-stored",
    "identity-begun",
    "identity-acted",
    "identity-ended",
    "users-read",
    "switch-begun",
    "switch-acted",
    "switch-ended",
    "unassign-ended",
];

#[derive(Clone, Debug, Default)]
pub struct ApplyOptions {
    pub dry_run: bool,
    /// Operators per journaled batch on the instance side.
    pub batch: usize,
    pub fail_at: Option<FailPoint>,
}

impl ApplyOptions {
    fn reach(&self, name: &str) {
        if let Some(f) = &self.fail_at {
            f.reach(name);
        }
    }
}

/// What applying did.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct ApplyReport {
    pub plan_id: String,
    pub dry_run: bool,
    /// Identities created or updated now (with `dry_run`: that a run would make now).
    pub identities: usize,
    /// Operators switched now (with `dry_run`: that a run would switch).
    pub switched: usize,
    /// Already done by an earlier run (journal) or found done on the instance.
    pub already: usize,
    pub failed: Vec<Skipped>,
    pub complete: bool,
}

/// Why applying did not start.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    #[error("the state drifted since the plan was made; plan again. {}", describe(.0))]
    Drift(Vec<Skipped>),
    #[error(transparent)]
    Service(#[from] Error),
    #[error("the journal: {0}")]
    Journal(#[from] ims_core::error::StoreError),
    #[error("the integration kit could not be written: {0}")]
    Kit(String),
}

fn describe(items: &[Skipped]) -> String {
    items
        .iter()
        .map(|s| format!("{}: {}", s.login, s.reason))
        .collect::<Vec<_>>()
        .join("; ")
}

/// What applying works with: the journal and the two services.
#[derive(Clone, Copy)]
pub struct Engine<'a> {
    pub journal: &'a dyn Journal,
    pub instance: &'a InstanceClient,
    pub ims: &'a ImsClient,
}

/// Progress of a stage: name, done, total.
pub type Progress<'a> = &'a mut (dyn FnMut(&str, usize, usize) + Send);

/// Applies an end-user plan (see the module's documentation).
pub async fn apply_users(
    plan: &UsersPlan,
    engine: Engine<'_>,
    opts: &ApplyOptions,
    progress: Progress<'_>,
    now: impl Fn() -> Now,
) -> Result<ApplyReport, ApplyError> {
    let Engine {
        journal,
        instance,
        ims,
    } = engine;
    let mut report = ApplyReport {
        plan_id: plan.plan_id.clone(),
        dry_run: opts.dry_run,
        ..ApplyReport::default()
    };
    check_instance(&plan.instance, &instance.facts().await?)?;
    if plan.org_id != ims.org_id {
        return Err(ApplyError::Drift(vec![Skipped {
            login: plan.instance.clone(),
            reason: format!(
                "the plan is for the organisation {}, not {}",
                plan.org_id, ims.org_id
            ),
        }]));
    }
    let stored = journal.plan(&plan.plan_id).await?;
    check_stored(stored.as_ref(), plan)?;
    if stored.as_ref().is_some_and(|p| p.applied_at.is_some()) {
        report.already = plan.people.len();
        report.complete = true;
        return Ok(report);
    }
    let steps = journal.steps(&plan.plan_id).await?;
    let done: HashSet<(String, String)> = steps
        .iter()
        .filter(|s| s.state == StepState::Done)
        .map(|s| (s.key.action.clone(), s.key.operator.clone()))
        .collect();
    let is_done = |action: &str, login: &str| done.contains(&(action.to_owned(), login.to_owned()));

    // Drift: every operator still to switch must be as planned.
    let current: HashMap<String, OperatorFacts> = instance
        .operators(|_| {})
        .await?
        .into_iter()
        .map(|o| (o.login.clone(), o))
        .collect();
    let mut drifted = Vec::new();
    for p in plan.people.iter().filter(|p| !is_done(SWITCH, &p.login)) {
        match current.get(&p.login) {
            None => drifted.push(Skipped {
                login: p.login.clone(),
                reason: "no longer exists".into(),
            }),
            Some(op) if op.auth_type == "ims" && op.ims_id.is_some() => {}
            Some(op) if state_digest(op) != p.state => drifted.push(Skipped {
                login: p.login.clone(),
                reason: format!(
                    "now type {}, email {}, groups [{}], rights [{}]{}",
                    op.auth_type,
                    op.email.as_deref().unwrap_or("none"),
                    op.groups.join(", "),
                    op.rights.join(", "),
                    if op.disabled { ", disabled" } else { "" }
                ),
            }),
            Some(_) => {}
        }
    }
    if !drifted.is_empty() {
        return Err(ApplyError::Drift(drifted));
    }
    if opts.dry_run {
        // What a run would do now: the identities not made yet, the switches not made yet.
        report.already = plan.people.iter().filter(|p| is_done(SWITCH, &p.login)).count();
        report.identities = plan
            .people
            .iter()
            .filter(|p| !is_done(IDENTITY, &p.login) && !is_done(SWITCH, &p.login))
            .count();
        report.switched = plan.people.len() - report.already;
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
    opts.reach("plan-stored");
    // The window, announced on every page of the instance's console.
    instance
        .set_notice(&ims_wire::migration::Notice {
            message: "Sign-in is moving to the IMS: people are being moved one by one; once moved, sign in with \"Connect with IMS\" (your IMS account uses your email). Passwords stored in this instance stop working as each person is moved.".into(),
            until: None,
        })
        .await?;

    // Stage 1: identities, ten action entries per request (the API's limit).
    let todo: Vec<&PersonStep> = plan
        .people
        .iter()
        .filter(|p| !is_done(IDENTITY, &p.login) && !is_done(SWITCH, &p.login))
        .collect();
    let mut failed_identity: HashSet<String> = HashSet::new();
    let batch = opts.batch.clamp(10, MAX_SWITCH);
    let mut n = 0;
    for chunk in todo.chunks(batch) {
        let keys: Vec<StepKey> = chunk.iter().map(|p| key(IDENTITY, &p.login)).collect();
        journal.begin_steps(&plan.plan_id, &keys, now()).await?;
        opts.reach("identity-begun");
        let mut ends = Vec::with_capacity(chunk.len());
        // Several requests in flight: the IMS overlaps their reading and checking with its
        // writes. Answers come back in order.
        let answers: Vec<Result<Vec<(usize, String)>, Error>> = futures_util::stream::iter(chunk.chunks(10))
            .map(|ten| {
                let entries: Vec<serde_json::Value> = ten.iter().map(|p| identity_entry(p)).collect();
                async move { ims.action(&entries).await }
            })
            .buffered(IN_FLIGHT)
            .collect()
            .await;
        for (ten, answer) in chunk.chunks(10).zip(answers) {
            let errors: HashMap<usize, String> = answer?.into_iter().collect();
            for (i, p) in ten.iter().enumerate() {
                match errors.get(&i) {
                    None => ends.push(end(IDENTITY, &p.login, StepState::Done, String::new())),
                    Some(e) => {
                        failed_identity.insert(p.login.clone());
                        report.failed.push(Skipped {
                            login: p.login.clone(),
                            reason: format!("the IMS refused its user: {e}"),
                        });
                        ends.push(end(IDENTITY, &p.login, StepState::Failed, e.clone()));
                    }
                }
            }
        }
        opts.reach("identity-acted");
        report.identities += ends.iter().filter(|e| e.state == StepState::Done).count();
        journal.end_steps(&plan.plan_id, &ends, now()).await?;
        opts.reach("identity-ended");
        n += chunk.len();
        progress("identities", n, todo.len());
    }

    // Stage 2: the users' ids, read once.
    let to_switch: Vec<&PersonStep> = plan
        .people
        .iter()
        .filter(|p| !is_done(SWITCH, &p.login) && !failed_identity.contains(&p.login))
        .collect();
    report.already += plan
        .people
        .len()
        .saturating_sub(to_switch.len() + failed_identity.len());
    if !to_switch.is_empty() {
        let ids: HashMap<String, (String, String)> = ims
            .users()
            .await?
            .into_iter()
            .map(|u| (email_key(&u.email), (u.id, u.status)))
            .collect();
        opts.reach("users-read");

        // Stage 3: link and switch, in journaled batches.
        let mut n = 0;
        for chunk in to_switch.chunks(batch) {
            let mut items = Vec::with_capacity(chunk.len());
            let mut ends = Vec::new();
            for p in chunk {
                match ids.get(&email_key(&p.email)) {
                    Some((id, status)) if status == "active" => items.push(SwitchItem {
                        login: p.login.clone(),
                        ims_id: Some(id.clone()),
                        state: p.state.clone(),
                        reset_password: false,
                        restore: None,
                    }),
                    other => {
                        let why = match other {
                            Some((_, status)) => format!("its IMS user is {status}"),
                            None => "its IMS user was not found".to_owned(),
                        };
                        report.failed.push(Skipped {
                            login: p.login.clone(),
                            reason: why,
                        });
                    }
                }
            }
            let keys: Vec<StepKey> = items.iter().map(|i| key(SWITCH, &i.login)).collect();
            journal.begin_steps(&plan.plan_id, &keys, now()).await?;
            opts.reach("switch-begun");
            let answer = instance.switch("ims", &items).await?;
            opts.reach("switch-acted");
            for o in answer.operators {
                match o.outcome.as_str() {
                    "switched" => {
                        report.switched += 1;
                        ends.push(end(SWITCH, &o.login, StepState::Done, String::new()));
                    }
                    "already" => {
                        report.already += 1;
                        ends.push(end(SWITCH, &o.login, StepState::Done, "already".into()));
                    }
                    other => {
                        let reason = format!("{other}: {}", o.detail);
                        report.failed.push(Skipped {
                            login: o.login.clone(),
                            reason: reason.clone(),
                        });
                        ends.push(end(SWITCH, &o.login, StepState::Failed, reason));
                    }
                }
            }
            journal.end_steps(&plan.plan_id, &ends, now()).await?;
            opts.reach("switch-ended");
            n += chunk.len();
            progress("switch", n, to_switch.len());
        }
    }
    report.complete = report.failed.is_empty();
    if report.complete {
        instance
            .set_notice(&ims_wire::migration::Notice {
                message: "Sign-in has moved to the IMS: sign in with \"Connect with IMS\".".into(),
                until: Some(now().millis() + 7 * 86_400_000),
            })
            .await?;
        journal.mark_applied(&plan.plan_id, now()).await?;
    }
    Ok(report)
}

/// Stores a plan in the journal as it is about to be applied (its body: the reviewable JSON).
pub(crate) async fn record_plan<T: Serialize>(
    journal: &dyn Journal,
    plan_id: &str,
    instance: &str,
    phase: &str,
    created_at: i64,
    plan: &T,
) -> Result<(), ApplyError> {
    journal
        .put_plan(&PlanRecord {
            plan_id: plan_id.to_owned(),
            instance: instance.to_owned(),
            phase: phase.to_owned(),
            created_at: Now::from_millis(created_at),
            body: serde_json::to_string(plan).unwrap_or_default(),
            applied_at: None,
        })
        .await?;
    Ok(())
}

/// Refuses a plan made for another instance(a staging plan applied to production, say).
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
/// plans are what was approved and what rollback reads).
pub fn check_stored<T: Serialize>(stored: Option<&PlanRecord>, plan: &T) -> Result<(), ApplyError> {
    let Some(stored) = stored else { return Ok(()) };
    let same =
        serde_json::from_str::<serde_json::Value>(&stored.body).ok() == serde_json::to_value(plan).ok();
    if same {
        return Ok(());
    }
    Err(ApplyError::Drift(vec![Skipped {
        login: stored.plan_id.clone(),
        reason: "this file differs from the plan of that id the journal holds: plan again".into(),
    }]))
}

/// The step `action` of `login` (or of the instance, for instance-wide steps).
pub(crate) fn key(action: &str, login: &str) -> StepKey {
    StepKey {
        operator: login.to_owned(),
        action: action.to_owned(),
    }
}

pub(crate) fn end(action: &str, login: &str, state: StepState, detail: String) -> StepEnd {
    StepEnd {
        key: key(action, login),
        state,
        detail,
    }
}

/// The action entry that makes sure a person's IMS user exists and holds its profiles; both
/// steps change nothing when already so.
fn identity_entry(p: &PersonStep) -> serde_json::Value {
    let mut steps = vec![serde_json::json!({
        "createEnterpriseID": {"email": p.email, "option": "ignoreIfAlreadyExists"}
    })];
    if !p.profiles.is_empty() {
        steps.push(serde_json::json!({"add": {"group": p.profiles}}));
    }
    serde_json::json!({"user": p.email, "requestID": format!("migrate-{}", p.login), "do": steps})
}

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

/// The people of `plans` (applied end-user plans) to put back: those named in `logins`, or all
/// of them when `logins` is empty. Names no plan moved come back as errors.
pub fn rollback_targets(plans: &[UsersPlan], logins: &[String]) -> Result<Vec<RollbackStep>, Vec<String>> {
    let mut found: HashMap<&str, RollbackStep> = HashMap::new();
    for plan in plans {
        for p in &plan.people {
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

/// Puts people back to native sign-in, until the instance is locked down: first their IMS user
/// leaves this instance's profiles (so that signing in through the IMS can neither reach the
/// operator nor create a second one), then the instance clears the link and the type, ending
/// their IMS sessions. Journaled like a plan (`rollback_id`), resumable, idempotent.
pub async fn rollback(
    rollback_id: &str,
    instance_name: &str,
    targets: &[RollbackStep],
    engine: Engine<'_>,
    opts: &ApplyOptions,
    now: impl Fn() -> Now,
) -> Result<RollbackReport, ApplyError> {
    let Engine {
        journal,
        instance,
        ims,
    } = engine;
    let mut report = RollbackReport {
        rollback_id: rollback_id.to_owned(),
        dry_run: opts.dry_run,
        ..RollbackReport::default()
    };
    // Once locked down, the instance refuses to put anyone back: refused here, before the IMS
    // side is touched (a person left with neither way in).
    let facts = instance.facts().await?;
    if facts.restrictions.operator_management_restricted {
        return Err(ApplyError::Drift(vec![Skipped {
            login: instance_name.to_owned(),
            reason: "the instance is locked down: operators can no longer go back to native sign-in".into(),
        }]));
    }
    check_instance(instance_name, &facts)?;
    let current: HashMap<String, OperatorFacts> = instance
        .operators(|_| {})
        .await?
        .into_iter()
        .map(|o| (o.login.clone(), o))
        .collect();
    // People a stopped apply gave their profiles but never switched: signing in through the
    // IMS they would get a second operator. Their user leaves the profiles too; those holding
    // none of them are left alone, so that a rollback run again writes nothing.
    let holding: HashMap<String, Vec<String>> = if targets
        .iter()
        .any(|t| current.get(&t.login).is_some_and(|o| o.auth_type == "native"))
    {
        ims.users()
            .await?
            .into_iter()
            .map(|u| (email_key(&u.email), u.groups))
            .collect()
    } else {
        HashMap::new()
    };
    let mut todo = Vec::new();
    for t in targets {
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
                    todo.push((t, None, false));
                } else {
                    report.already.push(t.login.clone());
                }
            }
            // A password set while it signed in through the IMS is not one its person knows:
            // cleared on the way back (a forced reset). Plans older than the fingerprint say
            // nothing, and nothing is cleared for them.
            Some(op) if op.auth_type == "ims" => {
                let reset = t.credential.is_some() && op.credential != t.credential;
                todo.push((t, Some(state_digest(op)), reset));
            }
            Some(op) => report.failed.push(Skipped {
                login: t.login.clone(),
                reason: format!("a {} operator is not put back", op.auth_type),
            }),
        }
    }
    if opts.dry_run {
        // What would be put back (those never switched: out of the profiles only).
        report.restored = todo
            .iter()
            .filter(|(_, state, _)| state.is_some())
            .map(|(t, _, _)| t.login.clone())
            .collect();
        report.already.extend(
            todo.iter()
                .filter(|(_, state, _)| state.is_none())
                .map(|(t, _, _)| t.login.clone()),
        );
        report.password_reset = todo
            .iter()
            .filter(|(_, _, reset)| *reset)
            .map(|(t, _, _)| t.login.clone())
            .collect();
        return Ok(report);
    }
    if todo.is_empty() {
        return Ok(report);
    }
    if journal.plan(rollback_id).await?.is_none() {
        journal
            .put_plan(&PlanRecord {
                plan_id: rollback_id.to_owned(),
                instance: instance_name.to_owned(),
                phase: "rollback".into(),
                created_at: now(),
                body: serde_json::to_string(targets).unwrap_or_default(),
                applied_at: None,
            })
            .await?;
    }
    let batch = opts.batch.clamp(10, MAX_SWITCH);
    for chunk in todo.chunks(batch) {
        // The IMS side first: the user leaves the instance's profiles.
        let keys: Vec<StepKey> = chunk.iter().map(|(t, _, _)| key(UNASSIGN, &t.login)).collect();
        journal.begin_steps(rollback_id, &keys, now()).await?;
        let mut ends = Vec::new();
        let mut unassigned = Vec::new();
        for ten in chunk.chunks(10) {
            let entries: Vec<serde_json::Value> = ten
                .iter()
                .map(|(t, _, _)| serde_json::json!({"user": t.email, "do": [{"remove": {"group": t.profiles}}]}))
                .collect();
            let errors: HashMap<usize, String> = ims.action(&entries).await?.into_iter().collect();
            for (i, (t, state, reset)) in ten.iter().enumerate() {
                match errors.get(&i) {
                    // A user that is gone holds no profile either.
                    Some(e) if !e.starts_with("error.user.nonexistent") => {
                        report.failed.push(Skipped {
                            login: t.login.clone(),
                            reason: format!("the IMS refused: {e}"),
                        });
                        ends.push(end(UNASSIGN, &t.login, StepState::Failed, e.clone()));
                    }
                    _ => {
                        ends.push(end(UNASSIGN, &t.login, StepState::Done, String::new()));
                        match state {
                            Some(state) => unassigned.push(SwitchItem {
                                login: t.login.clone(),
                                ims_id: None,
                                state: state.clone(),
                                reset_password: *reset,
                                restore: t.access.clone(),
                            }),
                            // Native already: out of the profiles was all it needed.
                            None => report.already.push(t.login.clone()),
                        }
                    }
                }
            }
        }
        journal.end_steps(rollback_id, &ends, now()).await?;
        opts.reach("unassign-ended");
        if unassigned.is_empty() {
            continue;
        }
        // Then the instance: back to native sign-in.
        let keys: Vec<StepKey> = unassigned.iter().map(|i| key(NATIVE, &i.login)).collect();
        journal.begin_steps(rollback_id, &keys, now()).await?;
        let answer = instance.switch("native", &unassigned).await?;
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
        journal.end_steps(rollback_id, &ends, now()).await?;
    }
    if report.failed.is_empty() {
        journal.mark_applied(rollback_id, now()).await?;
    }
    Ok(report)
}
