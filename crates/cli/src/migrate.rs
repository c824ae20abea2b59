//! `ims migrate`: the migration engine's commands. Each parses its arguments, runs through the
//! engine (`ims_migration`), and renders what the engine answered. The engine reaches the
//! instance and the IMS through their APIs only; against `ims up`, `--data-dir DIR --instance
//! NAME` finds both (and the credentials) in `up.json` (see `context`).

mod legacy;
mod phases;
mod prepare;
mod progress;
mod status;

use anyhow::Result;
use clap::Subcommand;
use std::path::PathBuf;

use crate::config::Config;
use crate::context::MigrationTarget;

#[derive(Debug, Subcommand)]
pub enum MigrateCommand {
    /// Read-only: who the migration touches, how each operator signs in and calls, and what
    /// blocks each phase. Exit code 1 when something blocks.
    Assess {
        #[arg(long)]
        json: bool,
        #[arg(long, conflicts_with = "json")]
        csv: bool,
    },
    /// Get the instance ready: emails from a CSV file (`login,email`), checked against every
    /// operator before any is written; one product profile per operator group at the IMS,
    /// named by the association mask, carrying the group's named rights; the instance's IMS
    /// sign-in configured through its API.
    Prepare(prepare::PrepareArgs),
    /// Write a reviewable plan of a phase, computed from the current state of both services.
    #[command(subcommand)]
    Plan(phases::PlanCommand),
    /// Put people an end-user plan moved back to native sign-in (until the instance is locked
    /// down): their IMS user leaves the instance's profiles, then the operator is unlinked.
    Rollback {
        /// A person to put back (repeatable).
        #[arg(long = "operator")]
        operators: Vec<String>,
        /// Every person this plan moved (its id, as `status` shows it).
        #[arg(long)]
        plan: Option<String>,
        #[arg(long)]
        dry_run: bool,
        #[arg(long)]
        json: bool,
    },
    /// After the technical phase: watch the legacy operators, then retire them.
    #[command(subcommand)]
    Technical(legacy::TechnicalCommand),
    /// Per phase what is done, in progress or blocked (from the journal), the operators by
    /// authentication type, and the reconciliation of both sides. Exit 1 when they differ.
    Status {
        #[arg(long)]
        json: bool,
        /// Name the people who have not come in this many days after their invitation.
        #[arg(long, default_value_t = 3)]
        after_days: i64,
    },
    /// Invite again the moved people who have not accepted their invitation this many days
    /// after it was sent (a new link each; the old ones keep working until they expire).
    Remind {
        #[arg(long, default_value_t = 3)]
        after_days: i64,
        /// Say whom it would invite, and send nothing.
        #[arg(long)]
        dry_run: bool,
        #[arg(long)]
        json: bool,
    },
    /// Carry out a plan, journaled step by step; refused when the state drifted since it was
    /// made. Run it again to resume after an interruption (a finished plan writes nothing).
    Apply {
        plan: PathBuf,
        #[arg(long)]
        dry_run: bool,
        /// Operators per journaled batch.
        #[arg(long, default_value_t = 500)]
        batch: usize,
        #[arg(long)]
        json: bool,
    },
}

pub async fn command(cmd: MigrateCommand, target: &MigrationTarget, config: Config) -> Result<()> {
    match cmd {
        MigrateCommand::Assess { json, csv } => status::assess(target, &config, json, csv).await,
        MigrateCommand::Prepare(args) => prepare::prepare(args, target, &config).await,
        MigrateCommand::Plan(cmd) => phases::plan(cmd, target, &config).await,
        MigrateCommand::Apply {
            plan,
            dry_run,
            batch,
            json,
        } => phases::apply(&plan, dry_run, batch, json, target, &config).await,
        MigrateCommand::Rollback {
            operators,
            plan,
            dry_run,
            json,
        } => phases::rollback(operators, plan, dry_run, json, target, &config).await,
        MigrateCommand::Technical(cmd) => legacy::technical(cmd, target, &config).await,
        MigrateCommand::Status { json, after_days } => {
            status::status(target, &config, json, after_days).await
        }
        MigrateCommand::Remind {
            after_days,
            dry_run,
            json,
        } => status::remind(target, &config, after_days, dry_run, json).await,
    }
}
