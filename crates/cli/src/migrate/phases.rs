//! `ims migrate plan ...`, `apply` and `rollback`: every phase planned, applied and rolled back
//! through the engine's one runner; what is phase-specific here is only how the answer is shown
//! and which answers are refusals (exit code 1).

use anyhow::{Context as _, Result};
use std::path::{Path, PathBuf};

use ims_migration::finalize::{Finalize, FinalizeArgs, FinalizeReport};
use ims_migration::inspect::report_journal;
use ims_migration::plan::{read_plan, AnyPlan, Phase, Plan};
use ims_migration::rollback::{Rollback, RollbackArgs, RollbackReport};
use ims_migration::run::{ApplyError, ApplyOptions, Engine, FailPoint, Skipped};
use ims_migration::technical::{Technical, TechnicalArgs, TechnicalReport};
use ims_migration::users::{Users, UsersArgs, UsersReport};
use ims_migration::wave::Wave;

use super::progress::Display;
use crate::config::Config;
use crate::context::{connect, Blocked, MigrationTarget, Services};

#[derive(Debug, clap::Subcommand)]
pub enum PlanCommand {
    /// The end users: each native person with a usable email gets its IMS user, with the
    /// profiles of its groups, and is linked and moved to IMS sign-in.
    Users {
        /// Where to write the plan (JSON); its summary goes to standard output.
        #[arg(long)]
        out: PathBuf,
        /// Do not mail the people it creates at the IMS an invitation (hand out access some
        /// other way; `ims user reset-link` makes a link per person).
        #[arg(long)]
        no_invitations: bool,
        #[command(flatten)]
        wave: WaveArgs,
    },
    /// The technical operators: each program that signs in with a password gets an OAuth
    /// Server-to-Server credential with the profiles of its groups, proved by a token and a
    /// SOAP call; its technical account operator gets the legacy operator's rights; a kit is
    /// written for its integrator.
    Technical {
        #[arg(long)]
        out: PathBuf,
        #[command(flatten)]
        wave: WaveArgs,
        /// Put every credential in this Developer Console project (found by name, or created)
        /// instead of a project of its own each.
        #[arg(long, value_name = "NAME")]
        project: Option<String>,
    },
    /// The lock-down: both restrictions on, the probes run, the migration marked complete. A
    /// production instance waits for its staging twin; nobody may lose native sign-in. Exit 1
    /// when something blocks, unless --force (recorded).
    Finalize {
        #[arg(long)]
        out: PathBuf,
        /// Replaces the allow-list (repeatable; default: the instance's stays).
        #[arg(long = "allow", value_name = "LOGIN")]
        allow: Vec<String>,
        /// Carry on past the blockers; the plan, the journal and the instance record it.
        #[arg(long)]
        force: bool,
    },
}

/// A pilot wave: the plan covers only these operators (all given together add up); none given,
/// everyone.
#[derive(Debug, clap::Args)]
pub struct WaveArgs {
    /// Operators of this group (internal name; repeatable).
    #[arg(long = "group", value_name = "GROUP")]
    groups: Vec<String>,
    /// This operator, by login (repeatable). (`--login` names the administrator the engine
    /// signs in as.)
    #[arg(long = "operator", value_name = "LOGIN")]
    logins: Vec<String>,
    /// The operators whose logins this file lists, one per line (`#` starts a comment).
    #[arg(long = "operators-file", value_name = "FILE")]
    logins_file: Option<PathBuf>,
}

impl WaveArgs {
    fn wave(self) -> Result<Wave> {
        let mut logins = self.logins;
        if let Some(f) = &self.logins_file {
            let text = std::fs::read_to_string(f).with_context(|| format!("cannot read {}", f.display()))?;
            logins.extend(ims_migration::wave::logins_from(&text));
        }
        Ok(Wave {
            groups: self.groups,
            logins,
        })
    }
}

/// How the command line shows a phase's answers.
trait Shown: Phase {
    /// Says (on standard error) what drifted, and the refusal to return.
    fn drifted(items: &[Skipped]) -> Blocked;
    /// The answer, for people.
    fn show(report: &Self::Report);
    /// Whether the answer is a refusal (exit code 1).
    fn outcome(report: &Self::Report) -> Result<()>;
    /// Whether a plan just written blocks (exit code 1).
    fn planned(_plan: &Plan<Self>) -> Result<()> {
        Ok(())
    }
}

/// What changed since a plan was made, operator by operator: nothing was applied.
fn operators_drifted(items: &[Skipped]) -> Blocked {
    for i in items {
        eprintln!("drifted: {}: {}", i.login, i.reason);
    }
    Blocked(format!(
        "{} operator(s) changed since the plan was made: nothing was applied; plan again",
        items.len()
    ))
}

fn refused(items: &[Skipped], what: &str) -> Blocked {
    for i in items {
        eprintln!("{}: {}", i.login, i.reason);
    }
    Blocked(what.to_owned())
}

impl Shown for Users {
    fn drifted(items: &[Skipped]) -> Blocked {
        operators_drifted(items)
    }

    fn show(report: &UsersReport) {
        for f in &report.failed {
            println!("failed: {}: {}", f.login, f.reason);
        }
        let verb = if report.dry_run { "would apply" } else { "applied" };
        println!(
            "{verb} {}: identities {}, switched {}, already done {}, failed {}{}",
            report.plan_id,
            report.identities,
            report.switched,
            report.already,
            report.failed.len(),
            if report.complete { ", complete" } else { "" }
        );
    }

    fn outcome(report: &UsersReport) -> Result<()> {
        if report.failed.is_empty() {
            return Ok(());
        }
        Err(Blocked(format!(
            "{} operator(s) not moved: see above; fix and apply again",
            report.failed.len()
        ))
        .into())
    }
}

impl Shown for Technical {
    fn drifted(items: &[Skipped]) -> Blocked {
        operators_drifted(items)
    }

    fn show(report: &TechnicalReport) {
        for (legacy, ta, kit) in &report.moved {
            println!("{legacy}: now {ta}; kit in {kit}");
        }
        for l in &report.already {
            println!("{l}: done earlier");
        }
        for l in &report.would_move {
            println!("{l}: would move to a technical account (project, credential, first call, rights, kit)");
        }
        for f in &report.failed {
            println!("failed: {}: {}", f.login, f.reason);
        }
    }

    fn outcome(report: &TechnicalReport) -> Result<()> {
        if report.failed.is_empty() {
            return Ok(());
        }
        Err(Blocked(format!("{} program(s) not moved", report.failed.len())).into())
    }
}

impl Shown for Finalize {
    fn drifted(items: &[Skipped]) -> Blocked {
        refused(items, "nothing was applied")
    }

    fn show(report: &FinalizeReport) {
        for p in &report.probes {
            println!(
                "{} {}: expected {}, observed {}",
                if p.passed { "PASS" } else { "FAIL" },
                p.probe,
                p.expected,
                p.observed
            );
        }
        println!(
            "{}: locked down {}, complete {}{}",
            report.plan_id,
            report.locked_down,
            report.complete,
            if report.forced { " (forced)" } else { "" }
        );
    }

    fn outcome(report: &FinalizeReport) -> Result<()> {
        if report.complete || report.dry_run {
            return Ok(());
        }
        Err(Blocked("a verification probe failed: the migration is not marked complete".into()).into())
    }

    fn planned(plan: &Plan<Finalize>) -> Result<()> {
        if plan.body.blockers.is_empty() || plan.body.forced {
            return Ok(());
        }
        Err(Blocked(format!(
            "{} blocker(s): fix them, or plan again with --force to carry on regardless (recorded)",
            plan.body.blockers.len()
        ))
        .into())
    }
}

impl Shown for Rollback {
    fn drifted(items: &[Skipped]) -> Blocked {
        refused(items, "nobody was put back")
    }

    fn show(report: &RollbackReport) {
        let verb = if report.dry_run {
            "would put back"
        } else {
            "put back"
        };
        for l in &report.restored {
            if report.password_reset.contains(l) {
                println!(
                    "{verb} {l} to native sign-in; its password changed meanwhile, so it is cleared: an administrator sets a new one (xtk:session#Write of its password)"
                );
            } else {
                println!("{verb} {l} to native sign-in");
            }
        }
        for l in &report.already {
            println!("{l} signs in natively already");
        }
        for f in &report.failed {
            println!("failed: {}: {}", f.login, f.reason);
        }
    }

    fn outcome(report: &RollbackReport) -> Result<()> {
        if report.failed.is_empty() {
            return Ok(());
        }
        Err(Blocked(format!("{} operator(s) not put back", report.failed.len())).into())
    }
}

/// The engine's refusals that the command line says as refusals (exit code 1); the others are
/// failures (exit code 2).
fn failure<P: Shown>(e: ApplyError) -> anyhow::Error {
    match e {
        ApplyError::Drift(items) => P::drifted(&items).into(),
        ApplyError::NotMoved(_) | ApplyError::Build { .. } => Blocked(e.to_string()).into(),
        e => e.into(),
    }
}

/// The services signed in, refusing without the IMS a phase that needs it.
async fn services<P: Phase>(target: &MigrationTarget, config: &Config) -> Result<Services> {
    let services = connect(target, config).await?;
    if P::NEEDS_IMS {
        services.ims()?;
    }
    Ok(services)
}

pub async fn plan(cmd: PlanCommand, target: &MigrationTarget, config: &Config) -> Result<()> {
    match cmd {
        PlanCommand::Users {
            out,
            no_invitations,
            wave,
        } => {
            let args = UsersArgs {
                invite: !no_invitations,
                wave: wave.wave()?,
            };
            write_plan::<Users>(args, &out, target, config).await
        }
        PlanCommand::Technical { out, wave, project } => {
            let args = TechnicalArgs {
                wave: wave.wave()?,
                project,
            };
            write_plan::<Technical>(args, &out, target, config).await
        }
        PlanCommand::Finalize { out, allow, force } => {
            write_plan::<Finalize>(FinalizeArgs { allow, force }, &out, target, config).await
        }
    }
}

/// Plans phase `P`, writes the plan (owner-only) and prints its summary.
async fn write_plan<P: Shown>(
    args: P::Args,
    out: &Path,
    target: &MigrationTarget,
    config: &Config,
) -> Result<()> {
    let services = services::<P>(target, config).await?;
    let journal = target.journal();
    let display = Display::new();
    let progress = |s: &str, d, t| display.show(s, d, t);
    let planned = services.engine(&journal, &progress).plan::<P>(args).await;
    journal.close().await;
    let plan = planned.map_err(failure::<P>)?;
    crate::files::write_private(out, &serde_json::to_vec_pretty(&plan)?)?;
    print!("{}", plan.summary());
    println!("written to {}", out.display());
    P::planned(&plan)
}

/// What applying is given: the options, the fail point a test may set, where kits go.
fn options(dry_run: bool, batch: usize, target: &MigrationTarget) -> ApplyOptions {
    ApplyOptions {
        dry_run,
        batch,
        fail_at: std::env::var("IMS_MIGRATE_FAIL_AT")
            .ok()
            .map(|s| FailPoint::parse(&s)),
        kit_dir: target.kit_dir(),
    }
}

pub async fn apply(
    path: &Path,
    dry_run: bool,
    batch: usize,
    json: bool,
    target: &MigrationTarget,
    config: &Config,
) -> Result<()> {
    let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let plan = read_plan(&text).with_context(|| format!("{} is not a plan", path.display()))?;
    let opts = options(dry_run, batch, target);
    match plan {
        AnyPlan::Users(plan) => apply_plan(&plan, &opts, json, target, config).await,
        AnyPlan::Technical(plan) => apply_plan(&plan, &opts, json, target, config).await,
        AnyPlan::Finalize(plan) => apply_plan(&plan, &opts, json, target, config).await,
    }
}

/// Applies a plan through the runner, tells the instance's console, and shows the answer.
async fn apply_plan<P: Shown>(
    plan: &Plan<P>,
    opts: &ApplyOptions,
    json: bool,
    target: &MigrationTarget,
    config: &Config,
) -> Result<()> {
    let services = services::<P>(target, config).await?;
    let journal = target.journal();
    let display = Display::new();
    let progress = |s: &str, d, t| display.show(s, d, t);
    let engine = services.engine(&journal, &progress);
    let outcome = engine.apply(plan, opts).await;
    display.finish();
    finish(&engine, &plan.instance, &journal).await;
    show::<P>(outcome, json)
}

pub async fn rollback(
    operators: Vec<String>,
    plan: Option<String>,
    dry_run: bool,
    json: bool,
    target: &MigrationTarget,
    config: &Config,
) -> Result<()> {
    if operators.is_empty() && plan.is_none() {
        anyhow::bail!("say who to put back: --operator LOGIN (repeatable) or --plan PLAN_ID");
    }
    let services = services::<Rollback>(target, config).await?;
    let journal = target.journal();
    let display = Display::new();
    let progress = |s: &str, d, t| display.show(s, d, t);
    let engine = services.engine(&journal, &progress);
    let planned = engine.plan::<Rollback>(RollbackArgs { operators, plan }).await;
    let plan = match planned {
        Ok(plan) => plan,
        Err(e) => {
            journal.close().await;
            return Err(failure::<Rollback>(e));
        }
    };
    let outcome = engine.apply(&plan, &options(dry_run, 500, target)).await;
    finish(&engine, &plan.instance, &journal).await;
    show::<Rollback>(outcome, json)
}

/// The instance's console hears of the journal's state; the journal is closed.
async fn finish(engine: &Engine<'_>, instance: &str, journal: &crate::context::LazyJournal) {
    if let Err(e) = report_journal(engine, instance).await {
        eprintln!("{e}");
    }
    journal.close().await;
}

fn show<P: Shown>(outcome: Result<P::Report, ApplyError>, json: bool) -> Result<()> {
    let report = outcome.map_err(failure::<P>)?;
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        P::show(&report);
    }
    P::outcome(&report)
}
