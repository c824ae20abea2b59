//! `ims migrate`: the migration engine's commands. The engine reaches the instance and the IMS
//! through their APIs only; against `ims up`, `--data-dir DIR --instance NAME` finds both (and
//! the credentials) in `up.json`.

use std::io::IsTerminal as _;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context as _, Result};
use clap::{Args, Subcommand};

use ims_core::Now;
use ims_identity::developer::{IO_MANAGEMENT_SERVICE, USER_MANAGEMENT_SERVICE};
use ims_migration::assess;
use ims_migration::client::{ImsClient, InstanceClient};
use ims_migration::{finalize, prepare, report, technical, users};
use ims_wire::migration::{EmailAssignment, EmailOutcome, MAX_EMAILS};

use crate::config::Config;
use crate::context::Blocked;

/// Where the instance and the IMS are, and how the engine signs in to each.
#[derive(Debug, Args)]
pub struct Target {
    /// Data directory of `ims up`: addresses and credentials come from its up.json.
    #[arg(long, global = true)]
    pub data_dir: Option<PathBuf>,
    /// The instance to migrate (its name in up.json).
    #[arg(long, global = true)]
    pub instance: Option<String>,
    /// Base URL of the instance, without --data-dir.
    #[arg(long, global = true)]
    pub instance_url: Option<String>,
    /// Login of an instance operator holding ADMINISTRATION, without --data-dir.
    #[arg(long, global = true, env = "IMS_MIGRATE_LOGIN")]
    pub login: Option<String>,
    /// File holding that operator's password.
    #[arg(long, global = true, env = "IMS_MIGRATE_PASSWORD_FILE")]
    pub password_file: Option<PathBuf>,
    /// Base URL of the IMS, without --data-dir.
    #[arg(long, global = true)]
    pub ims_url: Option<String>,
    /// The organisation (`...@AdobeOrg`), without --data-dir.
    #[arg(long, global = true)]
    pub ims_org: Option<String>,
    /// OAuth Server-to-Server credential of the organisation holding the User Management and
    /// I/O Management APIs, without --data-dir.
    #[arg(long, global = true, env = "IMS_MIGRATE_CLIENT_ID")]
    pub client_id: Option<String>,
    #[arg(long, global = true, env = "IMS_MIGRATE_CLIENT_SECRET_FILE")]
    pub client_secret_file: Option<PathBuf>,
    /// CA certificate (PEM) to trust for both services.
    #[arg(long, global = true)]
    pub ca_cert: Option<PathBuf>,
    /// Where integration kits are written; default: migration-kits beside up.json with
    /// --data-dir, else ./migration-kits.
    #[arg(long, global = true)]
    pub kit_dir: Option<PathBuf>,
    /// The engine's journal (sqlite://... or postgres://...); default: beside up.json with
    /// --data-dir, else ./ims-migration.db.
    #[arg(long, global = true, env = "IMS_MIGRATE_JOURNAL")]
    pub journal: Option<String>,
}

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
    Prepare {
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
    },
    /// Write a reviewable plan of a phase, computed from the current state of both services.
    #[command(subcommand)]
    Plan(PlanCommand),
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
    Technical(TechnicalCommand),
    /// Per phase what is done, in progress or blocked (from the journal), the operators by
    /// authentication type, and the reconciliation of both sides. Exit 1 when they differ.
    Status {
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

#[derive(Debug, Subcommand)]
pub enum PlanCommand {
    /// The end users: each native person with a usable email gets its IMS user, with the
    /// profiles of its groups, and is linked and moved to IMS sign-in.
    Users {
        /// Where to write the plan (JSON); its summary goes to standard output.
        #[arg(long)]
        out: PathBuf,
    },
    /// The technical operators: each program that signs in with a password gets an OAuth
    /// Server-to-Server credential with the profiles of its groups, proved by a token and a
    /// SOAP call; its technical account operator gets the legacy operator's rights; a kit is
    /// written for its integrator.
    Technical {
        #[arg(long)]
        out: PathBuf,
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

#[derive(Debug, Subcommand)]
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

/// The legacy operators the technical phase moved: technical account and when (its kit step).
async fn moved_programs(
    journal: &ims_journal::SqlJournal,
    instance: &str,
) -> Result<std::collections::HashMap<String, (String, i64)>> {
    use ims_migration::journal::{Journal as _, StepState};
    let mut moved = std::collections::HashMap::new();
    for plan in journal.plans(instance).await? {
        if plan.phase != "technical" {
            continue;
        }
        let steps = journal.steps(&plan.plan_id).await?;
        for s in steps
            .iter()
            .filter(|s| s.key.action == technical::KIT && s.state == StepState::Done)
        {
            let ta = steps
                .iter()
                .find(|c| c.key.action == technical::CREDENTIAL && c.key.operator == s.key.operator)
                .and_then(|c| c.detail.split_once(' ').map(|(_, email)| email.to_owned()))
                .unwrap_or_default();
            let at = s.finished_at.map_or(0, |t| t.millis());
            moved.insert(s.key.operator.clone(), (ta, at));
        }
    }
    Ok(moved)
}

async fn technical_command(cmd: TechnicalCommand, target: &Target, config: &Config) -> Result<()> {
    use ims_migration::journal::{Journal as _, PlanRecord, StepEnd, StepKey, StepState};
    let services = connect(target, config).await?;
    let facts = services.instance.facts().await?;
    let journal = open_journal(target).await?;
    let moved = moved_programs(&journal, &facts.name).await?;
    let ops = services.instance.operators(|_| {}).await?;
    let period = |text: &str| {
        ims_migration::watch::parse_period(text)
            .with_context(|| format!("--quiet-after {text:?}: a number and a unit (s, m, h, d)"))
    };
    let now = Now::system();
    let outcome = match cmd {
        TechnicalCommand::Watch { quiet_after, json } => {
            let watched = ims_migration::watch::watch(&moved, &ops, now.millis(), period(&quiet_after)?);
            // Quiet ones are marked so in the record.
            let retire_id = format!("retire-{}", facts.name);
            let quiet: Vec<&ims_migration::watch::Watched> =
                watched.iter().filter(|w| w.state == "quiet").collect();
            if !quiet.is_empty() {
                journal
                    .put_plan(&PlanRecord {
                        plan_id: retire_id.clone(),
                        instance: facts.name.clone(),
                        phase: "retire".into(),
                        created_at: now,
                        body: "{}".into(),
                        applied_at: None,
                    })
                    .await?;
                let keys: Vec<StepKey> = quiet
                    .iter()
                    .map(|w| StepKey {
                        operator: w.legacy.clone(),
                        action: "quiet".into(),
                    })
                    .collect();
                let already: std::collections::HashSet<String> = journal
                    .steps(&retire_id)
                    .await?
                    .into_iter()
                    .filter(|s| s.key.action == "quiet")
                    .map(|s| s.key.operator)
                    .collect();
                let new: Vec<StepKey> = keys
                    .into_iter()
                    .filter(|k| !already.contains(&k.operator))
                    .collect();
                if !new.is_empty() {
                    journal.begin_steps(&retire_id, &new, now).await?;
                    let ends: Vec<StepEnd> = new
                        .into_iter()
                        .map(|key| StepEnd {
                            key,
                            state: StepState::Done,
                            detail: format!("quiet for {quiet_after}"),
                        })
                        .collect();
                    journal.end_steps(&retire_id, &ends, now).await?;
                }
            }
            if json {
                println!("{}", serde_json::to_string_pretty(&watched)?);
            } else {
                for w in &watched {
                    let last = w
                        .last_native
                        .map(|t| ims_core::time::iso8601(Now::from_millis(t)))
                        .unwrap_or_else(|| "none since the move".into());
                    println!(
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
                    );
                }
            }
            Ok(())
        }
        TechnicalCommand::Disable(args) => {
            retire(false, args, &services, &journal, &facts.name, &moved, &ops).await
        }
        TechnicalCommand::Delete(args) => {
            retire(true, args, &services, &journal, &facts.name, &moved, &ops).await
        }
    };
    report_journal(&services.instance, &journal, &facts.name).await;
    journal.close().await;
    outcome
}

/// Disables (or deletes) legacy operators that are ready: quiet (and, to delete, disabled), or
/// forced with a reason; the journal records who did what and, when forced, in what state.
async fn retire(
    delete: bool,
    args: RetireArgs,
    services: &Services,
    journal: &ims_journal::SqlJournal,
    instance: &str,
    moved: &std::collections::HashMap<String, (String, i64)>,
    ops: &[ims_wire::migration::OperatorFacts],
) -> Result<()> {
    use ims_migration::journal::{Journal as _, PlanRecord, StepEnd, StepKey, StepState};
    let unknown: Vec<&str> = args
        .operators
        .iter()
        .filter(|o| !moved.contains_key(*o))
        .map(String::as_str)
        .collect();
    if !unknown.is_empty() {
        return Err(Blocked(format!(
            "no technical plan moved {}: retire only what the migration replaced",
            unknown.join(", ")
        ))
        .into());
    }
    let now = Now::system();
    let quiet_after = ims_migration::watch::parse_period(&args.quiet_after).with_context(|| {
        format!(
            "--quiet-after {:?}: a number and a unit (s, m, h, d)",
            args.quiet_after
        )
    })?;
    let watched = ims_migration::watch::watch(moved, ops, now.millis(), quiet_after);
    let retire_id = format!("retire-{instance}");
    journal
        .put_plan(&PlanRecord {
            plan_id: retire_id.clone(),
            instance: instance.to_owned(),
            phase: "retire".into(),
            created_at: now,
            body: "{}".into(),
            applied_at: None,
        })
        .await?;
    let who = format!("{} as {}", local_user(), services.instance.login());
    let action = if delete { "delete" } else { "disable" };
    let mut refused = Vec::new();
    for login in &args.operators {
        let Some(w) = watched.iter().find(|w| &w.legacy == login) else {
            continue;
        };
        let ready = if delete {
            w.quiet && w.state == "disabled"
        } else {
            w.quiet
        };
        if w.state == "deleted" || (!delete && w.state == "disabled") {
            println!("{login}: {} already", w.state);
            continue;
        }
        if !ready && !args.force {
            refused.push(format!(
                "{login} is {}{}",
                w.state,
                if delete && w.state != "disabled" {
                    " (disable it first)"
                } else {
                    ""
                }
            ));
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
                args.reason.clone().unwrap_or_default()
            )
        };
        let key = StepKey {
            operator: login.clone(),
            action: action.into(),
        };
        journal
            .begin_steps(&retire_id, std::slice::from_ref(&key), now)
            .await?;
        let name = ims_wire::soap::escape(login);
        let doc = if delete {
            format!(r#"<operator xtkschema="xtk:operator" _operation="delete" _key="@name" name="{name}"/>"#)
        } else {
            format!(
                r#"<operator xtkschema="xtk:operator" _operation="update" _key="@name" name="{name}" disabled="1"/>"#
            )
        };
        services.instance.write_operator(&doc).await?;
        journal
            .end_steps(
                &retire_id,
                &[StepEnd {
                    key,
                    state: StepState::Done,
                    detail: detail.clone(),
                }],
                now,
            )
            .await?;
        println!("{login}: {detail}");
    }
    if refused.is_empty() {
        Ok(())
    } else {
        Err(Blocked(format!(
            "not ready: {} (watch it, or --force with a --reason)",
            refused.join("; ")
        ))
        .into())
    }
}

/// The two services, signed in.
pub struct Services {
    pub instance: InstanceClient,
    /// Absent when no IMS credential was given (assess still runs, without profiles).
    pub ims: Option<ImsClient>,
}

fn read_secret_file(path: &Path) -> Result<String> {
    let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let text = text.trim().to_owned();
    if text.is_empty() {
        bail!("{} is empty", path.display());
    }
    Ok(text)
}

fn http_client(ca: Option<&Path>) -> Result<reqwest::Client> {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let mut builder = reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(60))
        .redirect(reqwest::redirect::Policy::none());
    if let Some(ca) = ca {
        let pem = std::fs::read(ca).with_context(|| format!("cannot read {}", ca.display()))?;
        builder = builder.add_root_certificate(reqwest::Certificate::from_pem(&pem)?);
    }
    Ok(builder.build()?)
}

/// The engine's own credential at an `ims up` IMS, made once by the administrator through the
/// administration API and kept (owner-only) beside up.json.
#[derive(serde::Serialize, serde::Deserialize)]
struct EngineCredential {
    client_id: String,
    client_secret: String,
}

const ENGINE_CREDENTIAL_FILE: &str = "migration-credential.json";
const ENGINE_CREDENTIAL_NAME: &str = "ims migrate";

async fn engine_credential(dir: &Path, config: &Config) -> Result<EngineCredential> {
    use crate::remote::CredentialAdmin as _;
    let path = dir.join(ENGINE_CREDENTIAL_FILE);
    let up = crate::context::read_up_file(dir)?;
    let target = crate::context::Target {
        url: Some(up.ims_url.clone()),
        ca_cert: Some(up.ca_cert.clone().into()),
        ..crate::context::Target::data_dir(dir)
    };
    let admin = target.remote(up.admin_url(), config)?;
    if let Ok(text) = std::fs::read_to_string(&path) {
        let kept: EngineCredential =
            serde_json::from_str(&text).with_context(|| format!("{} is not readable", path.display()))?;
        // Still there and enabled: keep using it.
        if admin
            .list()
            .await?
            .iter()
            .any(|c| c.client_id == kept.client_id && !c.disabled)
        {
            return Ok(kept);
        }
    }
    let services: Vec<_> = [USER_MANAGEMENT_SERVICE, IO_MANAGEMENT_SERVICE]
        .iter()
        .filter_map(|code| ims_identity::developer::Service::by_code(code))
        .collect();
    let made = admin.create(ENGINE_CREDENTIAL_NAME, None, &services).await?;
    let cred = EngineCredential {
        client_id: made.client_id,
        client_secret: made.client_secret,
    };
    crate::files::write_private(&path, &serde_json::to_vec_pretty(&cred)?)?;
    Ok(cred)
}

/// Signs in to the instance and prepares the IMS client, from up.json or the explicit options.
pub async fn connect(target: &Target, config: &Config) -> Result<Services> {
    if let Some(dir) = &target.data_dir {
        let up = crate::context::read_up_file(dir)?;
        let name = target
            .instance
            .as_deref()
            .context("--instance NAME is needed with --data-dir")?;
        let inst = up.instances.iter().find(|i| i.name == name).with_context(|| {
            let names: Vec<&str> = up.instances.iter().map(|i| i.name.as_str()).collect();
            format!("no instance {name:?} in up.json (it has: {})", names.join(", "))
        })?;
        let http = http_client(Some(Path::new(&up.ca_cert)))?;
        let instance =
            InstanceClient::sign_in(http.clone(), &inst.url, &inst.admin_login, &inst.admin_password).await?;
        let cred = engine_credential(dir, config).await?;
        let ims = ImsClient::new(
            http,
            &up.ims_url,
            &up.org_id,
            &cred.client_id,
            &cred.client_secret,
        );
        return Ok(Services {
            instance,
            ims: Some(ims),
        });
    }
    let http = http_client(target.ca_cert.as_deref())?;
    let (Some(url), Some(login), Some(password_file)) = (
        target.instance_url.as_deref(),
        target.login.as_deref(),
        target.password_file.as_deref(),
    ) else {
        bail!("give --data-dir DIR --instance NAME, or --instance-url, --login and --password-file");
    };
    let instance =
        InstanceClient::sign_in(http.clone(), url, login, &read_secret_file(password_file)?).await?;
    let ims = match (
        target.ims_url.as_deref(),
        target.ims_org.as_deref(),
        target.client_id.as_deref(),
        target.client_secret_file.as_deref(),
    ) {
        (Some(ims_url), Some(org), Some(client_id), Some(secret_file)) => Some(ImsClient::new(
            http,
            ims_url,
            org,
            client_id,
            &read_secret_file(secret_file)?,
        )),
        (None, None, None, None) => None,
        _ => bail!("the IMS needs --ims-url, --ims-org, --client-id and --client-secret-file together"),
    };
    Ok(Services { instance, ims })
}

/// Both sides of every linked operator, compared (the instance's profiles found by its mask).
async fn reconciliation(
    ims: &ImsClient,
    facts: &ims_wire::migration::InstanceFacts,
    ops: &[ims_wire::migration::OperatorFacts],
) -> Result<ims_migration::reconcile::Reconciliation> {
    let mask_text = prepare::mask_for(
        &facts.name,
        facts.ims_account.as_ref().map(|a| a.association_mask.as_str()),
    );
    let mask = ims_wire::association::AssociationMask::parse(&mask_text).map_err(anyhow::Error::msg)?;
    let mut profiles = std::collections::HashMap::new();
    for p in ims.profiles().await? {
        if mask.captured(&p.name).is_some() {
            if let Some(detail) = ims.profile(&p.name).await? {
                profiles.insert(p.name.clone(), detail);
            }
        }
    }
    let users = ims.users().await?;
    Ok(ims_migration::reconcile::reconcile(
        facts, ops, &users, &profiles, &mask,
    ))
}

/// The phase a plan file is for.
fn plan_phase(path: &Path) -> Result<String> {
    let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let v: serde_json::Value =
        serde_json::from_str(&text).with_context(|| format!("{} is not a plan", path.display()))?;
    Ok(v["phase"].as_str().unwrap_or_default().to_owned())
}

/// The staging twin's facts, asked as its own administrator (from up.json); `None` when it
/// cannot be asked.
async fn twin_facts(target: &Target, name: &str) -> Option<ims_wire::migration::InstanceFacts> {
    let dir = target.data_dir.as_ref()?;
    let up = crate::context::read_up_file(dir).ok()?;
    let inst = up.instances.iter().find(|i| i.name == name)?;
    let http = http_client(Some(Path::new(&up.ca_cert))).ok()?;
    let client = InstanceClient::sign_in(http, &inst.url, &inst.admin_login, &inst.admin_password)
        .await
        .ok()?;
    client.facts().await.ok()
}

/// Hands the instance the journal's state of its plans, for its console's migration page. A
/// failure is said, not fatal: the journal stays the record.
async fn report_journal(instance: &InstanceClient, journal: &ims_journal::SqlJournal, name: &str) {
    use ims_migration::journal::Journal as _;
    let listed = match journal.progress(name).await {
        Ok(p) => p,
        Err(e) => {
            eprintln!("the journal could not be read for the console's report: {e}");
            return;
        }
    };
    let mut plans = Vec::new();
    for p in listed {
        let st = ims_migration::status::PlanStatus::of(p);
        plans.push(ims_wire::migration::ReportedPlan {
            state: st.state().to_owned(),
            plan_id: st.plan_id,
            phase: st.phase,
            done: st.done,
            started: st.started,
            failed: st.failed,
        });
    }
    let report = ims_wire::migration::JournalReport {
        at: Now::system().millis(),
        plans,
    };
    if let Err(e) = instance.report_journal(&report).await {
        eprintln!("the console's migration page was not updated: {e}");
    }
}

fn need_ims(services: &Services) -> Result<&ImsClient> {
    services.ims.as_ref().context(
        "this step needs the IMS: --ims-url, --ims-org, --client-id and --client-secret-file (or --data-dir)",
    )
}

/// The engine's journal: `--journal`, else beside up.json, else in the working directory.
async fn open_journal(target: &Target) -> Result<ims_journal::SqlJournal> {
    let url = match (&target.journal, &target.data_dir) {
        (Some(url), _) => url.clone(),
        (None, Some(dir)) => format!("sqlite://{}", dir.join("migration-journal.db").display()),
        (None, None) => "sqlite://ims-migration.db".to_owned(),
    };
    let opts = ims_store::Options::new(url);
    Ok(ims_journal::SqlJournal::open(&opts, Now::system()).await?)
}

/// A progress bar per stage, with rate and time left, on standard error when it is a terminal
/// (hidden otherwise).
struct Bars {
    current: Option<(String, indicatif::ProgressBar)>,
}

impl Bars {
    fn new() -> Self {
        Bars { current: None }
    }

    fn show(&mut self, stage: &str, done: usize, total: usize) {
        if self.current.as_ref().is_none_or(|(s, _)| s != stage) {
            self.finish();
            let bar = indicatif::ProgressBar::with_draw_target(
                Some(total as u64),
                indicatif::ProgressDrawTarget::stderr(),
            );
            if let Ok(style) = indicatif::ProgressStyle::with_template(
                "{prefix:>10} [{bar:30}] {pos}/{len} {per_sec} eta {eta}",
            ) {
                bar.set_style(style.progress_chars("=> "));
            }
            bar.set_prefix(stage.to_owned());
            self.current = Some((stage.to_owned(), bar));
        }
        if let Some((_, bar)) = &self.current {
            bar.set_position(done as u64);
        }
    }

    fn finish(&mut self) {
        if let Some((_, bar)) = self.current.take() {
            bar.finish();
        }
    }
}

/// Who runs this command on this machine, for the record of what was forced: the login name
/// when the environment gives one (cron and containers often do not), else the user id.
fn local_user() -> String {
    use std::os::unix::fs::MetadataExt as _;
    ["USER", "LOGNAME"]
        .iter()
        .find_map(|k| std::env::var(k).ok().filter(|v| !v.is_empty()))
        .or_else(|| {
            std::fs::metadata("/proc/self")
                .ok()
                .map(|m| format!("uid {}", m.uid()))
        })
        .unwrap_or_else(|| "an unnamed local user".into())
}

/// Counts on standard error while a long read runs, when it is a terminal.
fn progress(what: &'static str) -> impl FnMut(usize) {
    let tty = std::io::stderr().is_terminal();
    move |n| {
        if tty {
            eprint!("\r{what}: {n}");
        }
    }
}

pub async fn command(cmd: MigrateCommand, target: &Target, config: Config) -> Result<()> {
    match cmd {
        MigrateCommand::Assess { json, csv } => {
            let services = connect(target, &config).await?;
            let facts = services.instance.facts().await?;
            let ops = services.instance.operators(progress("operators read")).await?;
            if std::io::stderr().is_terminal() {
                eprintln!();
            }
            let profiles = match &services.ims {
                Some(ims) => Some(
                    ims.profiles()
                        .await?
                        .into_iter()
                        .map(|p| p.name)
                        .collect::<Vec<_>>(),
                ),
                None => None,
            };
            let a = assess::assess(&facts, &ops, profiles.as_deref(), Now::system().millis());
            if json {
                println!("{}", serde_json::to_string_pretty(&a)?);
            } else if csv {
                print!("{}", report::csv(&a)?);
            } else {
                print!("{}", report::table(&a));
            }
            if a.blockers.is_empty() {
                Ok(())
            } else {
                Err(Blocked(format!(
                    "{} blocker(s): fix them before migrating (see the report)",
                    a.blockers.len()
                ))
                .into())
            }
        }
        MigrateCommand::Prepare {
            ims_connection: true,
            instance_client_id: Some(client_id),
            instance_client_secret_file: Some(file),
            callback_url,
            association_mask,
            dry_run,
            json,
            ..
        } => {
            let text =
                std::fs::read_to_string(&file).with_context(|| format!("cannot read {}", file.display()))?;
            let client_secret = text.lines().next().unwrap_or_default().to_owned();
            if client_secret.is_empty() {
                bail!("{} holds no secret", file.display());
            }
            let services = connect(target, &config).await?;
            let ims = need_ims(&services)?;
            let req = ims_wire::migration::ImsAccountRequest {
                ims_url: ims.base().to_owned(),
                org_id: ims.org_id.clone(),
                client_id,
                client_secret,
                callback_url,
                association_mask,
                product_context: None,
                scopes: Vec::new(),
            };
            if dry_run {
                println!(
                    "would configure sign-in through {} ({}) with the client {}",
                    req.ims_url, req.org_id, req.client_id
                );
                return Ok(());
            }
            let set = services.instance.set_ims_account(&req).await?;
            if json {
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
        MigrateCommand::Prepare {
            profiles: true,
            dry_run,
            json,
            ..
        } => {
            let services = connect(target, &config).await?;
            let ims = services
                .ims
                .as_ref()
                .context("creating product profiles needs the IMS (--ims-url and the engine's credential)")?;
            let facts = services.instance.facts().await?;
            let report = prepare_profiles(ims, &facts, dry_run).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                for line in report.lines() {
                    println!("{line}");
                }
            }
            Ok(())
        }
        MigrateCommand::Prepare {
            emails: Some(file),
            dry_run,
            json,
            ..
        } => {
            let text =
                std::fs::read_to_string(&file).with_context(|| format!("cannot read {}", file.display()))?;
            let assignments = match prepare::read_email_csv(&text) {
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
            let services = connect(target, &config).await?;
            let outcome = set_emails(&services.instance, &assignments, dry_run).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&outcome)?);
            } else {
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
            if outcome.problems.is_empty() {
                Ok(())
            } else if outcome.changed.is_empty() {
                Err(Blocked(format!(
                    "{} problem(s): nothing was written",
                    outcome.problems.len()
                ))
                .into())
            } else {
                // Every row was checked first; a change made meanwhile stopped a later batch of
                // the write, and the batches before it stand.
                Err(Blocked(format!(
                    "{} problem(s) met while writing: the {} change(s) listed were written, the rest was not; fix and run the file again",
                    outcome.problems.len(),
                    outcome.changed.len()
                ))
                .into())
            }
        }
        MigrateCommand::Prepare {
            rights: true,
            dry_run,
            json,
            ..
        } => {
            let services = connect(target, &config).await?;
            let facts = services.instance.facts().await?;
            let ops = services.instance.operators(progress("operators read")).await?;
            let req = prepare::right_groups(&facts, &ops);
            let mut outcome = services.instance.groups(&req, true).await?;
            if !dry_run && outcome.problems.is_empty() {
                outcome = services.instance.groups(&req, false).await?;
            }
            if json {
                println!("{}", serde_json::to_string_pretty(&outcome)?);
            } else {
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
            if outcome.problems.is_empty() {
                Ok(())
            } else {
                Err(Blocked(format!(
                    "{} problem(s): nothing was written",
                    outcome.problems.len()
                ))
                .into())
            }
        }
        MigrateCommand::Prepare { .. } => {
            bail!("say what to prepare: --emails FILE.csv, --rights, --profiles or --ims-connection")
        }
        MigrateCommand::Plan(PlanCommand::Users { out }) => {
            let services = connect(target, &config).await?;
            let ims = need_ims(&services)?;
            let facts = services.instance.facts().await?;
            let ops = services.instance.operators(progress("operators read")).await?;
            let profiles: Vec<String> = ims.profiles().await?.into_iter().map(|p| p.name).collect();
            let users = ims
                .users()
                .await?
                .into_iter()
                .map(|u| (ims_wire::email::email_key(&u.email), u.id))
                .collect();
            let plan = users::plan_users(&facts, &ops, &profiles, &users, &ims.org_id, Now::system());
            crate::files::write_private(&out, &serde_json::to_vec_pretty(&plan)?)?;
            print!("{}", plan.summary());
            println!("written to {}", out.display());
            Ok(())
        }
        MigrateCommand::Rollback {
            operators,
            plan,
            dry_run,
            json,
        } => {
            use ims_migration::journal::Journal as _;
            if operators.is_empty() && plan.is_none() {
                bail!("say who to put back: --operator LOGIN (repeatable) or --plan PLAN_ID");
            }
            let services = connect(target, &config).await?;
            let ims = need_ims(&services)?;
            let facts = services.instance.facts().await?;
            let journal = open_journal(target).await?;
            let recorded = journal.plans(&facts.name).await?;
            let mut plans = Vec::new();
            for p in &recorded {
                if p.phase == "users" && plan.as_ref().is_none_or(|id| *id == p.plan_id) {
                    plans.push(serde_json::from_str::<users::UsersPlan>(&p.body)?);
                }
            }
            if let (Some(id), true) = (&plan, plans.is_empty()) {
                bail!("no end-user plan {id} in the journal of {}", facts.name);
            }
            let targets = users::rollback_targets(&plans, &operators).map_err(|unknown| {
                Blocked(format!(
                    "no applied plan moved {}: nothing was done",
                    unknown.join(", ")
                ))
            })?;
            let opts = users::ApplyOptions {
                dry_run,
                batch: 500,
                fail_at: std::env::var("IMS_MIGRATE_FAIL_AT")
                    .ok()
                    .map(|s| users::FailPoint::parse(&s)),
            };
            // A rollback of these very people that a crash or a refusal left unfinished is
            // resumed under its own id rather than left "in progress" beside a new one.
            let body = serde_json::to_string(&targets)?;
            let id = recorded
                .iter()
                .find(|p| p.phase == "rollback" && p.applied_at.is_none() && p.body == body)
                .map(|p| p.plan_id.clone())
                .unwrap_or_else(|| format!("rollback-{}-{}", facts.name, Now::system().millis()));
            let outcome = users::rollback(
                &id,
                &facts.name,
                &targets,
                users::Engine {
                    journal: &journal,
                    instance: &services.instance,
                    ims,
                },
                &opts,
                Now::system,
            )
            .await;
            report_journal(&services.instance, &journal, &facts.name).await;
            journal.close().await;
            let report = match outcome {
                Ok(r) => r,
                Err(users::ApplyError::Drift(items)) => {
                    for i in &items {
                        eprintln!("{}: {}", i.login, i.reason);
                    }
                    return Err(Blocked("nobody was put back".into()).into());
                }
                Err(e) => return Err(e.into()),
            };
            if json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                let verb = if dry_run { "would put back" } else { "put back" };
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
            if report.failed.is_empty() {
                Ok(())
            } else {
                Err(Blocked(format!("{} operator(s) not put back", report.failed.len())).into())
            }
        }
        MigrateCommand::Technical(cmd) => technical_command(cmd, target, &config).await,
        MigrateCommand::Status { json } => {
            use ims_migration::journal::Journal as _;
            let services = connect(target, &config).await?;
            let facts = services.instance.facts().await?;
            let ops = services.instance.operators(progress("operators read")).await?;
            let journal = open_journal(target).await?;
            let plans: Vec<_> = journal
                .progress(&facts.name)
                .await?
                .into_iter()
                .map(ims_migration::status::PlanStatus::of)
                .collect();
            journal.close().await;
            let reconciliation = match &services.ims {
                Some(ims) => Some(reconciliation(ims, &facts, &ops).await?),
                None => None,
            };
            let status = ims_migration::status::Status::of(&facts, &ops, plans, reconciliation);
            if json {
                println!("{}", serde_json::to_string_pretty(&status)?);
            } else {
                print!("{}", status.text());
            }
            match &status.reconciliation {
                Some(r) if !r.differences.is_empty() => Err(Blocked(format!(
                    "{} operator(s) differ between the instance and the IMS",
                    r.differences.len()
                ))
                .into()),
                _ => Ok(()),
            }
        }
        MigrateCommand::Plan(PlanCommand::Finalize { out, allow, force }) => {
            let services = connect(target, &config).await?;
            let facts = services.instance.facts().await?;
            let ops = services.instance.operators(progress("operators read")).await?;
            let twin = match facts.staging_twin.as_deref().filter(|t| !t.is_empty()) {
                Some(name) => twin_facts(target, name).await,
                None => None,
            };
            let plan = finalize::plan_finalize(&facts, &ops, twin.as_ref(), allow, force, Now::system());
            crate::files::write_private(&out, &serde_json::to_vec_pretty(&plan)?)?;
            print!("{}", plan.summary());
            println!("written to {}", out.display());
            if plan.blockers.is_empty() || plan.forced {
                Ok(())
            } else {
                Err(Blocked(format!(
                    "{} blocker(s): fix them, or plan again with --force to carry on regardless (recorded)",
                    plan.blockers.len()
                ))
                .into())
            }
        }
        MigrateCommand::Apply {
            plan, dry_run, json, ..
        } if plan_phase(&plan)? == "finalize" => {
            let text = std::fs::read_to_string(&plan)?;
            let plan: finalize::FinalizePlan =
                serde_json::from_str(&text).with_context(|| format!("{} is not a plan", plan.display()))?;
            let services = connect(target, &config).await?;
            let journal = open_journal(target).await?;
            let opts = users::ApplyOptions {
                dry_run,
                ..users::ApplyOptions::default()
            };
            let twin = match plan.staging_twin.as_deref() {
                Some(name) => twin_facts(target, name).await,
                None => None,
            };
            let outcome = finalize::apply_finalize(
                &plan,
                twin.as_ref(),
                &journal,
                &services.instance,
                services.ims.as_ref(),
                &opts,
                Now::system,
            )
            .await;
            report_journal(&services.instance, &journal, &plan.instance).await;
            journal.close().await;
            let report = match outcome {
                Ok(r) => r,
                Err(users::ApplyError::Drift(items)) => {
                    for i in &items {
                        eprintln!("{}: {}", i.login, i.reason);
                    }
                    return Err(Blocked("nothing was applied".into()).into());
                }
                Err(e) => return Err(e.into()),
            };
            if json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
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
            if report.complete || dry_run {
                Ok(())
            } else {
                Err(
                    Blocked("a verification probe failed: the migration is not marked complete".into())
                        .into(),
                )
            }
        }
        MigrateCommand::Plan(PlanCommand::Technical { out }) => {
            let services = connect(target, &config).await?;
            let ims = need_ims(&services)?;
            let facts = services.instance.facts().await?;
            let ops = services.instance.operators(progress("operators read")).await?;
            let profiles: Vec<String> = ims.profiles().await?.into_iter().map(|p| p.name).collect();
            let plan = technical::plan_technical(&facts, &ops, &profiles, Now::system());
            crate::files::write_private(&out, &serde_json::to_vec_pretty(&plan)?)?;
            print!("{}", plan.summary());
            println!("written to {}", out.display());
            Ok(())
        }
        MigrateCommand::Apply {
            plan, dry_run, json, ..
        } if plan_phase(&plan)? == "technical" => {
            let text = std::fs::read_to_string(&plan)?;
            let plan: technical::TechnicalPlan =
                serde_json::from_str(&text).with_context(|| format!("{} is not a plan", plan.display()))?;
            let services = connect(target, &config).await?;
            let ims = need_ims(&services)?;
            let journal = open_journal(target).await?;
            let kit_dir = match (&target.kit_dir, &target.data_dir) {
                (Some(k), _) => k.clone(),
                (None, Some(d)) => d.join("migration-kits"),
                (None, None) => PathBuf::from("migration-kits"),
            };
            let opts = users::ApplyOptions {
                dry_run,
                ..users::ApplyOptions::default()
            };
            let outcome = technical::apply_technical(
                &plan,
                &journal,
                &services.instance,
                ims,
                &kit_dir,
                &opts,
                Now::system,
            )
            .await;
            report_journal(&services.instance, &journal, &plan.instance).await;
            journal.close().await;
            let report = match outcome {
                Ok(r) => r,
                Err(users::ApplyError::Drift(items)) => {
                    for i in &items {
                        eprintln!("drifted: {}: {}", i.login, i.reason);
                    }
                    return Err(Blocked(format!(
                        "{} operator(s) changed since the plan was made: nothing was applied; plan again",
                        items.len()
                    ))
                    .into());
                }
                Err(e) => return Err(e.into()),
            };
            if json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                for (legacy, ta, kit) in &report.moved {
                    println!("{legacy}: now {ta}; kit in {kit}");
                }
                for l in &report.already {
                    println!("{l}: done earlier");
                }
                for l in &report.would_move {
                    println!(
                        "{l}: would move to a technical account (project, credential, first call, rights, kit)"
                    );
                }
                for f in &report.failed {
                    println!("failed: {}: {}", f.login, f.reason);
                }
            }
            if report.failed.is_empty() {
                Ok(())
            } else {
                Err(Blocked(format!("{} program(s) not moved", report.failed.len())).into())
            }
        }
        MigrateCommand::Apply {
            plan,
            dry_run,
            batch,
            json,
        } => {
            let text =
                std::fs::read_to_string(&plan).with_context(|| format!("cannot read {}", plan.display()))?;
            let plan: users::UsersPlan =
                serde_json::from_str(&text).with_context(|| format!("{} is not a plan", plan.display()))?;
            let services = connect(target, &config).await?;
            let ims = need_ims(&services)?;
            let journal = open_journal(target).await?;
            let opts = users::ApplyOptions {
                dry_run,
                batch,
                fail_at: std::env::var("IMS_MIGRATE_FAIL_AT")
                    .ok()
                    .map(|s| users::FailPoint::parse(&s)),
            };
            let mut bars = Bars::new();
            let engine = users::Engine {
                journal: &journal,
                instance: &services.instance,
                ims,
            };
            let outcome = users::apply_users(
                &plan,
                engine,
                &opts,
                &mut |stage, done, total| bars.show(stage, done, total),
                Now::system,
            )
            .await;
            bars.finish();
            report_journal(&services.instance, &journal, &plan.instance).await;
            journal.close().await;
            let report = match outcome {
                Ok(r) => r,
                Err(users::ApplyError::Drift(items)) => {
                    for i in &items {
                        eprintln!("drifted: {}: {}", i.login, i.reason);
                    }
                    return Err(Blocked(format!(
                        "{} operator(s) changed since the plan was made: nothing was applied; plan again",
                        items.len()
                    ))
                    .into());
                }
                Err(e) => return Err(e.into()),
            };
            if json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                for f in &report.failed {
                    println!("failed: {}: {}", f.login, f.reason);
                }
                let verb = if dry_run { "would apply" } else { "applied" };
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
            if report.failed.is_empty() {
                Ok(())
            } else {
                Err(Blocked(format!(
                    "{} operator(s) not moved: see above; fix and apply again",
                    report.failed.len()
                ))
                .into())
            }
        }
    }
}

/// What `prepare --profiles` did (or would do) per profile.
#[derive(Debug, Default, serde::Serialize)]
struct ProfilesReport {
    dry_run: bool,
    mask: String,
    created: Vec<prepare::ProfileSpec>,
    present: Vec<prepare::ProfileSpec>,
    /// Present with other permission items: left as they are, said here.
    different: Vec<(prepare::ProfileSpec, Vec<String>)>,
    /// Groups the mask cannot name.
    unnamed: Vec<String>,
}

impl ProfilesReport {
    fn lines(&self) -> Vec<String> {
        let mut out = Vec::new();
        let verb = if self.dry_run { "would create" } else { "created" };
        for p in &self.created {
            out.push(format!(
                "{verb} {:?} (group {}, items {})",
                p.name,
                p.group,
                p.permissions.join(", ")
            ));
        }
        for p in &self.present {
            out.push(format!("present {:?}", p.name));
        }
        for (p, items) in &self.different {
            out.push(format!(
                "warning: {:?} exists with items [{}], not the group's [{}]: left as it is",
                p.name,
                items.join(", "),
                p.permissions.join(", ")
            ));
        }
        for g in &self.unnamed {
            out.push(format!(
                "warning: the association mask {:?} cannot name a profile for group {g}",
                self.mask
            ));
        }
        out
    }
}

/// One product profile per operator group (the profile of a group that already exists is
/// left as it is), in the instance's product instance of the configured product context.
async fn prepare_profiles(
    ims: &ImsClient,
    facts: &ims_wire::migration::InstanceFacts,
    dry_run: bool,
) -> Result<ProfilesReport> {
    let account = facts.ims_account.as_ref();
    let mask = prepare::mask_for(&facts.name, account.map(|a| a.association_mask.as_str()));
    let context = account.map_or("dma_campaign_classic", |a| a.product_context.as_str());
    let (specs, unnamed) = prepare::profiles_for(&facts.name, &facts.kind, &mask, &facts.groups);
    let mut report = ProfilesReport {
        dry_run,
        mask,
        unnamed,
        ..ProfilesReport::default()
    };
    for spec in specs {
        match ims.profile(&spec.name).await? {
            Some(p) => {
                let mut have = p.permissions.clone();
                let mut want = spec.permissions.clone();
                have.sort();
                want.sort();
                if have == want {
                    report.present.push(spec);
                } else {
                    report.different.push((spec, p.permissions));
                }
            }
            None => {
                if !dry_run {
                    ims.create_profile(&spec.name, context, &facts.name, &spec.permissions)
                        .await?;
                }
                report.created.push(spec);
            }
        }
    }
    Ok(report)
}

/// Checks every batch against the live state, then (unless `dry_run`) writes them: a problem
/// anywhere stops the whole file before anything is written.
async fn set_emails(
    instance: &InstanceClient,
    assignments: &[EmailAssignment],
    dry_run: bool,
) -> Result<EmailOutcome> {
    let mut checked = EmailOutcome {
        dry_run,
        ..EmailOutcome::default()
    };
    for batch in assignments.chunks(MAX_EMAILS) {
        let o = instance.set_emails(batch, true).await?;
        checked.changed.extend(o.changed);
        checked.unchanged.extend(o.unchanged);
        checked.problems.extend(o.problems);
    }
    if dry_run || !checked.problems.is_empty() {
        return Ok(checked);
    }
    let mut done = EmailOutcome::default();
    for batch in assignments.chunks(MAX_EMAILS) {
        let o = instance.set_emails(batch, false).await?;
        done.changed.extend(o.changed);
        done.unchanged.extend(o.unchanged);
        // A batch refused whole (changed meanwhile) ends the write: what follows stays as it
        // is, so that the file can be run again once fixed.
        let refused = !o.problems.is_empty();
        done.problems.extend(o.problems);
        if refused {
            break;
        }
    }
    Ok(done)
}
