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
use ims_wire::migration::{state_digest, InstanceFacts, Notice, OperatorFacts, SwitchItem, MAX_SWITCH};
use serde::{Deserialize, Serialize};

use crate::assess::{classify, email_statuses, Class, EmailStatus};
use crate::client::Error;
use crate::journal::{StepKey, StepState};
use crate::prepare::{mask_for, profile_name};
use crate::run::{end, key, ApplyError, ApplyOptions, Engine, Run, Skipped};
use crate::run::{Checked, Phase, Plan};
use crate::wave::Wave;

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

/// The end-user phase's plan (in its envelope, `Plan<Users>`): reviewable, stored in the
/// journal when applied. The operators it leaves as they are are listed with the reason.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Users {
    pub org_id: String,
    pub product_context: String,
    pub mask: String,
    pub people: Vec<PersonStep>,
    pub skipped: Vec<Skipped>,
    /// Whether the people the plan creates at the IMS are mailed an invitation (plans made
    /// before this was recorded did invite).
    #[serde(default = "invite_by_default")]
    pub invite: bool,
    /// The pilot wave the plan is limited to (none: everyone).
    #[serde(default, skip_serializing_if = "Wave::is_everyone")]
    pub wave: Wave,
    /// People left out because they are outside the wave (not listed one by one).
    #[serde(default)]
    pub outside_wave: usize,
}

fn invite_by_default() -> bool {
    true
}

/// What `plan users` is told.
#[derive(Clone, Debug)]
pub struct UsersArgs {
    /// Mail each created person an invitation (`--no-invitations` turns it off: the
    /// administrator hands out access some other way).
    pub invite: bool,
    /// Only these operators (a pilot wave); default, everyone.
    pub wave: Wave,
}

impl Default for UsersArgs {
    fn default() -> Self {
        UsersArgs {
            invite: true,
            wave: Wave::default(),
        }
    }
}

pub type UsersPlan = Plan<Users>;

/// The human summary: what changes on each side, per operator.
fn summary(plan: &UsersPlan) -> String {
    let body = &plan.body;
    let mut out = format!(
        "plan {} (end users of {}{}): {} to move, {} left as they are{}\n",
        plan.plan_id,
        plan.instance,
        body.wave.scope(),
        body.people.len(),
        body.skipped.len(),
        body.wave.left_out(body.outside_wave)
    );
    for p in &body.people {
        let user = match &p.ims_user {
            Some(id) => format!("IMS user {} ({id}, exists)", p.email),
            None if body.invite => format!("IMS user {} (created, invited by mail)", p.email),
            None => format!("IMS user {} (created, not invited)", p.email),
        };
        out.push_str(&format!(
            "  {}: {user} added to [{}]; operator linked, switched to IMS sign-in, native sessions ended\n",
            p.login,
            p.profiles.join(", ")
        ));
    }
    for s in &body.skipped {
        out.push_str(&format!("  {}: left as it is: {}\n", s.login, s.reason));
    }
    out
}

/// Refuses an instance whose build does not carry the end-user phase: at planning, and again
/// before applying, from the facts read then.
fn carries_people(facts: &InstanceFacts) -> Result<(), ApplyError> {
    if facts.accepts_ims_signin {
        return Ok(());
    }
    Err(ApplyError::Build {
        instance: facts.name.clone(),
        build: facts.build.clone(),
        builds: crate::assess::builds(&facts.people_builds).to_owned(),
    })
}

/// Plans the end-user phase from the instance's operators, the organisation's profile names
/// and users (email key -> id).
pub fn plan_users(
    facts: &InstanceFacts,
    ops: &[OperatorFacts],
    profiles: &[String],
    users: &HashMap<String, String>,
    org_id: &str,
    args: UsersArgs,
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
    let mut outside_wave = 0;
    for (op, status) in ops.iter().zip(email_statuses(ops)) {
        let (class, _) = classify(op);
        if class != Class::Person || op.auth_type != "native" {
            continue;
        }
        if !args.wave.takes(op) {
            outside_wave += 1;
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
    let body = Users {
        org_id: org_id.to_owned(),
        product_context: account.map_or_else(
            || "dma_campaign_classic".to_owned(),
            |a| a.product_context.clone(),
        ),
        mask,
        people,
        skipped,
        invite: args.invite,
        wave: args.wave,
        outside_wave,
    };
    Plan::new(&facts.name, now, body)
}

/// What applying an end-user plan did.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct UsersReport {
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

impl UsersReport {
    fn new(plan: &UsersPlan, opts: &ApplyOptions) -> Self {
        UsersReport {
            plan_id: plan.plan_id.clone(),
            dry_run: opts.dry_run,
            ..UsersReport::default()
        }
    }
}

impl Phase for Users {
    const NAME: &'static str = "users";
    const NEEDS_IMS: bool = true;
    type Args = UsersArgs;
    type Work = ();
    type Report = UsersReport;

    async fn plan(engine: &Engine<'_>, args: UsersArgs, now: Now) -> Result<UsersPlan, ApplyError> {
        let ims = engine.ims()?;
        let facts = engine.instance.facts().await?;
        carries_people(&facts)?;
        if facts.ims_account.is_none() {
            return Err(ApplyError::NoWayIn(facts.name));
        }
        let ops = engine.operators().await?;
        args.wave.check(&facts, &ops).map_err(ApplyError::Wave)?;
        let profiles = engine.profile_names().await?;
        let users = ims
            .users()
            .await?
            .into_iter()
            .map(|u| (email_key(&u.email), u.id))
            .collect();
        Ok(plan_users(
            &facts,
            &ops,
            &profiles,
            &users,
            &ims.org_id,
            args,
            now,
        ))
    }

    fn summary(plan: &UsersPlan) -> String {
        summary(plan)
    }

    fn scope(plan: &UsersPlan) -> Option<String> {
        plan.body.wave.described()
    }

    /// The plan's organisation must be the engine's, and the instance must sign people in
    /// through the IMS.
    fn admit(plan: &UsersPlan, facts: &InstanceFacts, engine: &Engine<'_>) -> Result<(), ApplyError> {
        let ims = engine.ims()?;
        carries_people(facts)?;
        if facts.ims_account.is_none() {
            return Err(ApplyError::NoWayIn(facts.name.clone()));
        }
        if plan.body.org_id == ims.org_id {
            return Ok(());
        }
        Err(ApplyError::Drift(vec![Skipped {
            login: plan.instance.clone(),
            reason: format!(
                "the plan is for the organisation {}, not {}",
                plan.body.org_id, ims.org_id
            ),
        }]))
    }

    fn finished(plan: &UsersPlan, opts: &ApplyOptions) -> UsersReport {
        UsersReport {
            already: plan.body.people.len(),
            complete: true,
            ..UsersReport::new(plan, opts)
        }
    }

    /// Drift: every operator still to switch must be as planned.
    async fn check(plan: &UsersPlan, run: &Run<'_>) -> Result<Checked<Self>, ApplyError> {
        let current = run.operators_by_login().await?;
        let mut drifted = Vec::new();
        for p in plan.body.people.iter().filter(|p| !run.is_done(SWITCH, &p.login)) {
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
        if drifted.is_empty() {
            Ok(Checked::Work(()))
        } else {
            Err(ApplyError::Drift(drifted))
        }
    }

    /// What a run would do now: the identities not made yet, the switches not made yet.
    fn preview(plan: &UsersPlan, (): (), run: &Run<'_>) -> UsersReport {
        let people = &plan.body.people;
        let already = people.iter().filter(|p| run.is_done(SWITCH, &p.login)).count();
        UsersReport {
            already,
            identities: people
                .iter()
                .filter(|p| !run.is_done(IDENTITY, &p.login) && !run.is_done(SWITCH, &p.login))
                .count(),
            switched: people.len() - already,
            ..UsersReport::new(plan, run.opts)
        }
    }

    async fn apply(plan: &UsersPlan, (): (), run: &Run<'_>) -> Result<UsersReport, ApplyError> {
        let instance = run.engine.instance;
        let mut report = UsersReport::new(plan, run.opts);
        // The window, announced on every page of the instance's console.
        instance
            .set_notice(&Notice {
                message: "Sign-in is moving to the IMS: people are being moved one by one; once moved, sign in with \"Connect with IMS\" (your IMS account uses your email). Passwords stored in this instance stop working as each person is moved.".into(),
                until: None,
            })
            .await?;
        let failed_identity = identities(plan, run, &mut report).await?;
        switch(plan, run, &mut report, &failed_identity).await?;
        report.complete = report.failed.is_empty();
        if report.complete {
            instance
                .set_notice(&Notice {
                    message: "Sign-in has moved to the IMS: sign in with \"Connect with IMS\".".into(),
                    until: Some(run.now().millis() + 7 * 86_400_000),
                })
                .await?;
        }
        Ok(report)
    }

    fn complete(report: &UsersReport) -> bool {
        report.complete
    }
}

/// Stage 1: identities, ten action entries per request (the API's limit), several requests in
/// flight. Returns the people whose identity the IMS refused.
async fn identities(
    plan: &UsersPlan,
    run: &Run<'_>,
    report: &mut UsersReport,
) -> Result<HashSet<String>, ApplyError> {
    let ims = run.engine.ims()?;
    let todo: Vec<&PersonStep> = plan
        .body
        .people
        .iter()
        .filter(|p| !run.is_done(IDENTITY, &p.login) && !run.is_done(SWITCH, &p.login))
        .collect();
    let mut failed_identity: HashSet<String> = HashSet::new();
    let mut n = 0;
    for chunk in todo.chunks(batch(run.opts)) {
        let keys: Vec<StepKey> = chunk.iter().map(|p| key(IDENTITY, &p.login)).collect();
        run.begin(&keys).await?;
        run.reach("identity-begun");
        let mut ends = Vec::with_capacity(chunk.len());
        // Several requests in flight: the IMS overlaps their reading and checking with its
        // writes. Answers come back in order.
        // The entries are made before the requests: the requests then own what they send.
        let requests: Vec<Vec<serde_json::Value>> = chunk
            .chunks(10)
            .map(|ten| ten.iter().map(|p| identity_entry(p, plan.body.invite)).collect())
            .collect();
        let answers: Vec<Result<Vec<(usize, String)>, Error>> = futures_util::stream::iter(requests)
            .map(|entries| async move { ims.action(&entries).await })
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
        run.reach("identity-acted");
        report.identities += ends.iter().filter(|e| e.state == StepState::Done).count();
        run.end(&ends).await?;
        run.reach("identity-ended");
        n += chunk.len();
        run.progress("identities", n, todo.len());
    }
    Ok(failed_identity)
}

/// Stages 2 and 3: the users' ids, read once; then link and switch, in journaled batches.
async fn switch(
    plan: &UsersPlan,
    run: &Run<'_>,
    report: &mut UsersReport,
    failed_identity: &HashSet<String>,
) -> Result<(), ApplyError> {
    let people = &plan.body.people;
    let to_switch: Vec<&PersonStep> = people
        .iter()
        .filter(|p| !run.is_done(SWITCH, &p.login) && !failed_identity.contains(&p.login))
        .collect();
    report.already += people
        .len()
        .saturating_sub(to_switch.len() + failed_identity.len());
    if to_switch.is_empty() {
        return Ok(());
    }
    let ids: HashMap<String, (String, String)> = run
        .engine
        .ims()?
        .users()
        .await?
        .into_iter()
        .map(|u| (email_key(&u.email), (u.id, u.status)))
        .collect();
    run.reach("users-read");
    let mut n = 0;
    for chunk in to_switch.chunks(batch(run.opts)) {
        let mut items = Vec::with_capacity(chunk.len());
        for p in chunk {
            match ids.get(&email_key(&p.email)) {
                Some((id, status)) if status == "active" => items.push(SwitchItem {
                    login: p.login.clone(),
                    ims_id: Some(id.clone()),
                    state: p.state.clone(),
                    reset_password: false,
                    restore: None,
                }),
                other => report.failed.push(Skipped {
                    login: p.login.clone(),
                    reason: match other {
                        Some((_, status)) => format!("its IMS user is {status}"),
                        None => "its IMS user was not found".to_owned(),
                    },
                }),
            }
        }
        let keys: Vec<StepKey> = items.iter().map(|i| key(SWITCH, &i.login)).collect();
        run.begin(&keys).await?;
        run.reach("switch-begun");
        let answer = run.engine.instance.switch("ims", &items).await?;
        run.reach("switch-acted");
        let mut ends = Vec::new();
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
        run.end(&ends).await?;
        run.reach("switch-ended");
        n += chunk.len();
        run.progress("switch", n, to_switch.len());
    }
    Ok(())
}

/// Operators per journaled batch: at least one request's worth, at most what the instance
/// takes in one switch.
pub(crate) fn batch(opts: &ApplyOptions) -> usize {
    opts.batch.clamp(10, MAX_SWITCH)
}

/// The action entry that makes sure a person's IMS user exists and holds its profiles; both
/// steps change nothing when already so. A user it creates is invited unless `invite` is off
/// (a user that exists is not invited again).
fn identity_entry(p: &PersonStep, invite: bool) -> serde_json::Value {
    let mut create = serde_json::json!({"email": p.email, "option": "ignoreIfAlreadyExists"});
    if !invite {
        create["invite"] = serde_json::json!(false);
    }
    let mut steps = vec![serde_json::json!({ "createEnterpriseID": create })];
    if !p.profiles.is_empty() {
        steps.push(serde_json::json!({"add": {"group": p.profiles}}));
    }
    serde_json::json!({"user": p.email, "requestID": format!("migrate-{}", p.login), "do": steps})
}
