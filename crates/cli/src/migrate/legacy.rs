//! `ims migrate technical watch | disable | delete`: the legacy operators the technical phase
//! replaced, watched until quiet, then retired; the engine decides and records, this shows.

use anyhow::{Context as _, Result};

use ims_core::Now;
use ims_migration::inspect::report_journal;
use ims_migration::retire::{self, Legacy, RetireRequest};
use ims_migration::watch::{parse_period, Watched};

use super::progress::{local_user, Display};
use crate::config::Config;
use crate::context::{connect, Blocked, MigrationTarget};

#[derive(Debug, clap::Subcommand)]
pub enum TechnicalCommand {
    /// Each legacy operator's native traffic since its move: who, from where, last seen, and
    /// whether it has been quiet for the whole period.
    Watch {
        /// How long without native traffic makes an operator quiet (`7d`, `12h`, `30m`, `90s`).
        #[arg(long, default_value = "7d")]
        quiet_after: String,
        #[arg(long)]
        json: bool,
    },
    /// Disable legacy operators that are quiet (or, with --force and a --reason, any).
    Disable(RetireArgs),
    /// Delete legacy operators that are disabled and quiet (or, with --force and a --reason, any).
    Delete(RetireArgs),
}

#[derive(Debug, clap::Args)]
pub struct RetireArgs {
    /// A legacy operator (repeatable).
    #[arg(long = "operator", required = true)]
    operators: Vec<String>,
    #[arg(long, default_value = "7d")]
    quiet_after: String,
    /// Act although the operator is not ready; recorded with who and why.
    #[arg(long, requires = "reason")]
    force: bool,
    #[arg(long)]
    reason: Option<String>,
}

fn period(text: &str) -> Result<i64> {
    parse_period(text).with_context(|| format!("--quiet-after {text:?}: a number and a unit (s, m, h, d)"))
}

pub async fn technical(cmd: TechnicalCommand, target: &MigrationTarget, config: &Config) -> Result<()> {
    let services = connect(target, config).await?;
    let journal = target.journal();
    let display = Display::new();
    let progress = |s: &str, d, t| display.show(s, d, t);
    let engine = services.engine(&journal, &progress);
    let legacy = match Legacy::read(&engine).await {
        Ok(legacy) => legacy,
        Err(e) => {
            journal.close().await;
            return Err(e.into());
        }
    };
    let outcome = match cmd {
        TechnicalCommand::Watch { quiet_after, json } => watch(&engine, &legacy, &quiet_after, json).await,
        TechnicalCommand::Disable(args) => retire(false, args, &engine, &legacy).await,
        TechnicalCommand::Delete(args) => retire(true, args, &engine, &legacy).await,
    };
    if let Err(e) = report_journal(&engine, &legacy.instance).await {
        eprintln!("{e}");
    }
    journal.close().await;
    outcome
}

/// Watches, records the quiet ones, and shows where each stands.
async fn watch(
    engine: &ims_migration::run::Engine<'_>,
    legacy: &Legacy,
    quiet_after: &str,
    json: bool,
) -> Result<()> {
    let watched = retire::watch(engine, legacy, period(quiet_after)?, quiet_after).await?;
    if json {
        println!("{}", serde_json::to_string_pretty(&watched)?);
    } else {
        for w in &watched {
            println!("{}", watched_line(w));
        }
    }
    Ok(())
}

fn watched_line(w: &Watched) -> String {
    let last = w
        .last_native
        .map(|t| ims_core::time::iso8601(Now::from_millis(t)))
        .unwrap_or_else(|| "none since the move".into());
    format!(
        "{}: {} (now {}; native calls since the move {}, last {}{})",
        w.legacy,
        w.state,
        w.technical_account,
        w.calls_since,
        last,
        if w.sources.is_empty() {
            String::new()
        } else {
            format!(", from {}", w.sources.join(", "))
        }
    )
}

/// Disables (or deletes) the legacy operators named, when ready or forced.
async fn retire(
    delete: bool,
    args: RetireArgs,
    engine: &ims_migration::run::Engine<'_>,
    legacy: &Legacy,
) -> Result<()> {
    let unknown = legacy.unknown(&args.operators);
    if !unknown.is_empty() {
        return Err(not_moved(&unknown).into());
    }
    let req = RetireRequest {
        delete,
        quiet_after_ms: period(&args.quiet_after)?,
        operators: args.operators,
        force: args.force,
        reason: args.reason,
        actor: local_user(),
    };
    let report = retire::retire(engine, legacy, &req).await?;
    if !report.unknown.is_empty() {
        return Err(not_moved(&report.unknown).into());
    }
    for (login, what) in &report.outcomes {
        println!("{login}: {what}");
    }
    if report.refused.is_empty() {
        return Ok(());
    }
    Err(Blocked(format!(
        "not ready: {} (watch it, or --force with a --reason)",
        report.refused.join("; ")
    ))
    .into())
}

fn not_moved(unknown: &[String]) -> Blocked {
    Blocked(format!(
        "no technical plan moved {}: retire only what the migration replaced",
        unknown.join(", ")
    ))
}
