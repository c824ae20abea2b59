//! `ims migrate prepare`: the instance and the IMS made ready for the phases: people's emails
//! from a CSV file, operator groups for rights held directly, one product profile per group,
//! and the instance's sign-in through the IMS.

use anyhow::{bail, Context as _, Result};
use std::path::{Path, PathBuf};

use ims_migration::prepare::read_email_csv;
use ims_migration::setup::{self, ProfilesReport};
use ims_wire::migration::{EmailOutcome, GroupOutcome, GroupRequest, ImsAccountRequest};

use super::progress::Display;
use crate::config::Config;
use crate::context::{connect, Blocked, MigrationTarget};

#[derive(Debug, clap::Args)]
pub struct PrepareArgs {
    /// Configure the instance's sign-in through the IMS (its client at the IMS, given by
    /// --instance-client-id and --instance-client-secret-file), at the engine's IMS and
    /// organisation.
    #[arg(long, conflicts_with_all = ["emails", "rights", "profiles"], requires_all = ["instance_client_id", "instance_client_secret_file"])]
    ims_connection: bool,
    /// The instance's own client at the IMS (a web application whose redirect URI is the
    /// instance's `/console/ims/callback`).
    #[arg(long)]
    instance_client_id: Option<String>,
    /// File holding that client's secret (first line).
    #[arg(long)]
    instance_client_secret_file: Option<PathBuf>,
    /// Default: the instance's address followed by /console/ims/callback.
    #[arg(long)]
    callback_url: Option<String>,
    /// Default: `campaign - <instance> - (.*)`.
    #[arg(long)]
    association_mask: Option<String>,
    /// CSV file with a header naming the columns `login` and `email`.
    #[arg(long)]
    emails: Option<PathBuf>,
    /// Create the product profiles (a step of its own: not with --emails).
    #[arg(long, conflicts_with_all = ["emails", "rights"])]
    profiles: bool,
    /// Create operator groups carrying the rights people hold directly beyond their groups,
    /// with those people as members (before --profiles, which then names them too).
    #[arg(long, conflicts_with = "emails")]
    rights: bool,
    /// Check everything against the live state; write nothing.
    #[arg(long)]
    dry_run: bool,
    #[arg(long)]
    json: bool,
}

pub async fn prepare(args: PrepareArgs, target: &MigrationTarget, config: &Config) -> Result<()> {
    match &args {
        PrepareArgs {
            ims_connection: true,
            instance_client_id: Some(client_id),
            instance_client_secret_file: Some(file),
            ..
        } => ims_connection(&args, client_id, file, target, config).await,
        PrepareArgs { profiles: true, .. } => profiles(&args, target, config).await,
        PrepareArgs {
            emails: Some(file), ..
        } => emails(&args, file, target, config).await,
        PrepareArgs { rights: true, .. } => rights(&args, target, config).await,
        _ => bail!("say what to prepare: --emails FILE.csv, --rights, --profiles or --ims-connection"),
    }
}

/// The instance's sign-in through the IMS, at the engine's IMS and organisation.
async fn ims_connection(
    args: &PrepareArgs,
    client_id: &str,
    file: &Path,
    target: &MigrationTarget,
    config: &Config,
) -> Result<()> {
    let text = std::fs::read_to_string(file).with_context(|| format!("cannot read {}", file.display()))?;
    let client_secret = text.lines().next().unwrap_or_default().to_owned();
    if client_secret.is_empty() {
        bail!("{} holds no secret", file.display());
    }
    let services = connect(target, config).await?;
    let ims = services.ims()?;
    let req = ImsAccountRequest {
        ims_url: ims.base().to_owned(),
        org_id: ims.org_id.clone(),
        client_id: client_id.to_owned(),
        client_secret,
        callback_url: args.callback_url.clone(),
        association_mask: args.association_mask.clone(),
        product_context: None,
        scopes: Vec::new(),
    };
    if args.dry_run {
        println!(
            "would configure sign-in through {} ({}) with the client {}",
            req.ims_url, req.org_id, req.client_id
        );
        return Ok(());
    }
    let set = services.instance.set_ims_account(&req).await?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&set)?);
    } else {
        println!(
            "{}: sign-in through the IMS configured: client {}, callback {}, mask {}",
            set["instance"].as_str().unwrap_or_default(),
            set["client_id"].as_str().unwrap_or_default(),
            set["callback_url"].as_str().unwrap_or_default(),
            set["association_mask"].as_str().unwrap_or_default()
        );
    }
    Ok(())
}

async fn profiles(args: &PrepareArgs, target: &MigrationTarget, config: &Config) -> Result<()> {
    let services = connect(target, config).await?;
    let ims = services
        .ims
        .as_ref()
        .context("creating product profiles needs the IMS (--ims-url and the engine's credential)")?;
    let facts = services.instance.facts().await?;
    let report = setup::create_profiles(ims, &facts, args.dry_run).await?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        for line in profile_lines(&report) {
            println!("{line}");
        }
    }
    Ok(())
}

fn profile_lines(report: &ProfilesReport) -> Vec<String> {
    let mut out = Vec::new();
    let verb = if report.dry_run { "would create" } else { "created" };
    for p in &report.created {
        out.push(format!(
            "{verb} {:?} (group {}, items {})",
            p.name,
            p.group,
            p.permissions.join(", ")
        ));
    }
    for p in &report.present {
        out.push(format!("present {:?}", p.name));
    }
    for (p, items) in &report.different {
        out.push(format!(
            "warning: {:?} exists with items [{}], not the group's [{}]: left as it is",
            p.name,
            items.join(", "),
            p.permissions.join(", ")
        ));
    }
    for g in &report.unnamed {
        out.push(format!(
            "warning: the association mask {:?} cannot name a profile for group {g}",
            report.mask
        ));
    }
    out
}

/// Emails from the file: every line read first, every batch checked on the instance before
/// any is written.
async fn emails(args: &PrepareArgs, file: &Path, target: &MigrationTarget, config: &Config) -> Result<()> {
    let text = std::fs::read_to_string(file).with_context(|| format!("cannot read {}", file.display()))?;
    let assignments = match read_email_csv(&text) {
        Ok(a) => a,
        Err(problems) => {
            for p in &problems {
                eprintln!("{}:{}: {}", file.display(), p.line, p.problem);
            }
            return Err(Blocked(format!(
                "{} unusable line(s) in {}: nothing was written",
                problems.len(),
                file.display()
            ))
            .into());
        }
    };
    let services = connect(target, config).await?;
    let outcome = setup::set_emails(&services.instance, &assignments, args.dry_run).await?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&outcome)?);
    } else {
        show_emails(&outcome, args.dry_run);
    }
    if outcome.problems.is_empty() {
        Ok(())
    } else if outcome.changed.is_empty() {
        Err(Blocked(format!(
            "{} problem(s): nothing was written",
            outcome.problems.len()
        ))
        .into())
    } else {
        // Every row was checked first; a change made meanwhile stopped a later batch of the
        // write, and the batches before it stand.
        Err(Blocked(format!(
            "{} problem(s) met while writing: the {} change(s) listed were written, the rest was not; fix and run the file again",
            outcome.problems.len(),
            outcome.changed.len()
        ))
        .into())
    }
}

fn show_emails(outcome: &EmailOutcome, dry_run: bool) {
    for c in &outcome.changed {
        println!(
            "{}: {} -> {}",
            c.login,
            c.before.as_deref().unwrap_or("(none)"),
            c.after
        );
    }
    for p in &outcome.problems {
        println!("{}: {}", p.login, p.problem);
    }
    let verb = if dry_run { "would change" } else { "changed" };
    println!(
        "{verb} {}, already set {}, problems {}",
        outcome.changed.len(),
        outcome.unchanged.len(),
        outcome.problems.len()
    );
}

/// Groups for the rights people hold directly beyond their groups.
async fn rights(args: &PrepareArgs, target: &MigrationTarget, config: &Config) -> Result<()> {
    let services = connect(target, config).await?;
    let facts = services.instance.facts().await?;
    let display = Display::new();
    let ops = services
        .instance
        .operators(|n| display.show("operators read", n, 0))
        .await?;
    let (req, outcome) = setup::create_right_groups(&services.instance, &facts, &ops, args.dry_run).await?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&outcome)?);
    } else {
        show_groups(&req, &outcome, args.dry_run);
    }
    if outcome.problems.is_empty() {
        return Ok(());
    }
    Err(Blocked(format!(
        "{} problem(s): nothing was written",
        outcome.problems.len()
    ))
    .into())
}

fn show_groups(req: &GroupRequest, outcome: &GroupOutcome, dry_run: bool) {
    let verb = if dry_run { "would create" } else { "created" };
    if req.groups.is_empty() {
        println!("no one holds named rights beyond their groups");
    }
    for g in &req.groups {
        let state = if outcome.created.contains(&g.name) {
            verb
        } else {
            "present"
        };
        println!(
            "{state} group {} ({}) for {}",
            g.name,
            g.label,
            g.members.join(", ")
        );
    }
    for p in &outcome.problems {
        println!("{}: {}", p.login, p.problem);
    }
    println!(
        "groups {verb} {}, present {}, memberships added {}",
        outcome.created.len(),
        outcome.present.len(),
        outcome.added.len()
    );
}
