//! `ims instance restrictions ...` and the reload `ims instance` asks of the running `ims up`:
//! the lock-down switches of an instance, edited in its configuration files, applied by the
//! running `ims up` on reload, shown, and verified by probes that change nothing.

use anyhow::{Context as _, Result};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use ims_campaign::config::{ImsSwitches, SwitchElements};
use ims_campaign::restrictions::Restrictions;
use ims_campaign::service::{InstanceInfo, InstanceKind};
use ims_campaign::store::SettingsStore as _;
use ims_core::secret::Secret;
use ims_core::Now;
use ims_wire::operators::valid_allow_entry;

use crate::conf::{read_configuration, stored_build, write_switches, LOADED_SETTING};
use crate::context::{instance_names, open_instance_store, read_up_file, MESSAGE_CENTER_INSTANCE};

#[derive(Debug, clap::Subcommand)]
pub enum RestrictionsCommand {
    /// Switch restrictions on (both unless --ui or --api is given), then reload the running
    /// instances.
    Enable(SwitchArgs),
    /// Switch restrictions off (both unless --ui or --api is given), then reload.
    Disable(SwitchArgs),
    /// The restrictions in effect on each instance and what they block.
    Status {
        #[arg(long)]
        instance: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Probe every effect of the restrictions without changing anything; exit code 1 when a
    /// probe fails.
    Verify {
        #[arg(long)]
        instance: String,
        /// A technical account credential (the JSON `ims credential create --json` prints), for
        /// the bearer-token probe.
        #[arg(long)]
        credential: Option<PathBuf>,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, clap::Args)]
pub struct SwitchArgs {
    /// Only this instance (its `config-<name>.xml`); otherwise `serverConf.xml`, which every
    /// instance shares.
    #[arg(long)]
    instance: Option<String>,
    /// The operator management restriction (`nonIMSOperatorMgmtInClientConsole`).
    #[arg(long)]
    ui: bool,
    /// The native sign-in restriction (`nonIMSAuthnAPI`).
    #[arg(long)]
    api: bool,
    /// Replaces the allow-list (repeatable; `a|b` names two operators in one entry).
    #[arg(long = "allow", value_name = "LOGIN")]
    allow: Vec<String>,
}

/// The probes ran and at least one failed (exit code 1).
#[derive(Debug, thiserror::Error)]
#[error("{0} verification probe(s) failed")]
pub struct ProbesFailed(pub usize);

/// Edits the switches and reloads what runs.
async fn switch(data_dir: &Path, args: SwitchArgs, on: bool) -> Result<()> {
    let both = !args.ui && !args.api;
    let (ui, api) = (args.ui || both, args.api || both);
    if let Some(bad) = args.allow.iter().find(|a| !valid_allow_entry(a.trim())) {
        anyhow::bail!("--allow {bad:?}: an operator name, or names separated by | (no spaces)");
    }
    let allow: Vec<String> = args.allow.iter().map(|a| a.trim().to_owned()).collect();
    let (path, targets) = write_switches(data_dir, args.instance.as_deref(), on, (ui, api), allow).await?;
    println!(
        "{} {} in {}",
        if on { "enabled" } else { "disabled" },
        match (ui, api) {
            (true, true) => "operator management and native sign-in restrictions",
            (true, false) => "the operator management restriction",
            _ => "the native sign-in restriction",
        },
        path.display()
    );
    reload_running(data_dir, &targets).await?;
    for name in &targets {
        print_status(data_dir, name).await?;
    }
    Ok(())
}

/// The `ims up` that wrote `up.json`, when it still runs.
fn running_pid(data_dir: &Path) -> Result<Option<rustix::process::Pid>> {
    let up = read_up_file(data_dir)?;
    let cmdline = std::fs::read(format!("/proc/{}/cmdline", up.pid)).unwrap_or_default();
    let argv0 = cmdline.split(|b| *b == 0).next().unwrap_or_default();
    let is_ims = Path::new(&*String::from_utf8_lossy(argv0))
        .file_name()
        .is_some_and(|f| f == "ims");
    let pid = i32::try_from(up.pid)
        .ok()
        .and_then(rustix::process::Pid::from_raw);
    Ok(pid.filter(|_| is_ims))
}

/// How long a reload may take before the command gives up waiting.
const RELOAD_WAIT: std::time::Duration = std::time::Duration::from_secs(15);

/// Asks the running `ims up` to reload (`SIGHUP`) and waits until each of `names` reports having
/// applied its current files, or why it could not.
pub async fn reload_running(data_dir: &Path, names: &[String]) -> Result<()> {
    let Some(pid) = running_pid(data_dir)? else {
        println!("ims up is not running: the configuration applies at its next start");
        return Ok(());
    };
    let asked_at = Now::system().millis();
    rustix::process::kill_process(pid, rustix::process::Signal::HUP)
        .context("cannot signal the running ims up")?;
    for name in names {
        let build = stored_build(data_dir, name).await?;
        let expected = read_configuration(data_dir, name, &build).ok().map(|l| l.digest);
        let store = open_instance_store(data_dir, name).await?;
        let started = std::time::Instant::now();
        loop {
            let loaded: serde_json::Value = store
                .setting(LOADED_SETTING)
                .await?
                .and_then(|v| serde_json::from_str(&v).ok())
                .unwrap_or_default();
            let fresh = loaded["at"].as_i64().is_some_and(|at| at >= asked_at);
            if fresh {
                if let Some(error) = loaded["error"].as_str() {
                    anyhow::bail!(
                        "{name}: the reload was refused, the previous configuration stays in effect: {error}"
                    );
                }
                if loaded["digest"].as_str() == expected.as_deref() {
                    println!("{name}: reloaded");
                    break;
                }
            }
            if started.elapsed() > RELOAD_WAIT {
                anyhow::bail!("{name}: no reload reported within {} s", RELOAD_WAIT.as_secs());
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        store.close().await;
    }
    Ok(())
}

/// What `status` reports for one instance.
#[derive(serde::Serialize)]
struct Status {
    instance: String,
    build: String,
    /// `serverConf.xml` with the instance file laid over it.
    configured: ImsSwitches,
    /// Elements the instance file sets for itself.
    instance_file: SwitchElements,
    operator_management_restricted: bool,
    native_api_disabled: bool,
    forced_by_build: bool,
    allow_list: Vec<String>,
    blocks: Vec<String>,
    /// Whether the running instance has applied the files as they are now.
    running: String,
}

async fn status_of(data_dir: &Path, name: &str) -> Result<Status> {
    let build = stored_build(data_dir, name).await?;
    let loaded = read_configuration(data_dir, name, &build)?;
    let r = Restrictions::effective(&build, &loaded.switches);
    let running = if running_pid(data_dir)?.is_none() {
        "not running (applies at the next start)".to_owned()
    } else {
        let store = open_instance_store(data_dir, name).await?;
        let applied: serde_json::Value = store
            .setting(LOADED_SETTING)
            .await?
            .and_then(|v| serde_json::from_str(&v).ok())
            .unwrap_or_default();
        store.close().await;
        if applied["digest"].as_str() == Some(loaded.digest.as_str()) {
            "running with these files".to_owned()
        } else {
            "running with an earlier version of the files: run `ims instance reload`".to_owned()
        }
    };
    Ok(Status {
        instance: name.to_owned(),
        build: build.to_string(),
        configured: loaded.switches.clone(),
        instance_file: loaded.instance.switches.clone(),
        operator_management_restricted: r.operator_management,
        native_api_disabled: r.native_api,
        forced_by_build: r.forced_by_build,
        blocks: r.blocks(),
        allow_list: r.allow_list,
        running,
    })
}

fn on_off(b: bool) -> &'static str {
    if b {
        "ON"
    } else {
        "off"
    }
}

async fn print_status(data_dir: &Path, name: &str) -> Result<()> {
    let s = status_of(data_dir, name).await?;
    println!("instance {} (build {})", s.instance, s.build);
    let forced = if s.forced_by_build {
        " (always on from build 8.6)"
    } else {
        ""
    };
    println!(
        "  operator management restriction  {}{forced}",
        on_off(s.operator_management_restricted)
    );
    println!(
        "  native sign-in restriction       {}{forced}",
        on_off(s.native_api_disabled)
    );
    println!("  allow-list                       {}", s.allow_list.join(", "));
    if s.instance_file != SwitchElements::default() {
        println!("  set for this instance in         config-{}.xml", s.instance);
    }
    println!("  {}", s.running);
    if s.blocks.is_empty() {
        println!("  blocks nothing");
    } else {
        println!("  blocks:");
        for b in &s.blocks {
            println!("    - {b}");
        }
    }
    Ok(())
}

/// Reads a technical account credential file and fetches an access token with it.
async fn credential_token(data_dir: &Path, path: &Path) -> Result<Secret> {
    let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let cred: serde_json::Value =
        serde_json::from_str(&text).with_context(|| format!("{} is not JSON", path.display()))?;
    let field = |k: &str| {
        cred[k]
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| anyhow::anyhow!("{} has no {k}", path.display()))
    };
    let up = read_up_file(data_dir)?;
    let http = https_client(&up)?;
    let resp = http
        .post(format!("{}/ims/token/v3", up.ims_url))
        .form(&[
            ("grant_type", "client_credentials".to_owned()),
            ("client_id", field("client_id")?),
            ("client_secret", field("client_secret")?),
        ])
        .send()
        .await?;
    let status = resp.status();
    let body: serde_json::Value = resp.json().await.unwrap_or_default();
    let token = body["access_token"]
        .as_str()
        .ok_or_else(|| anyhow::anyhow!("the IMS refused the credential ({status}): {body}"))?;
    Ok(Secret::new(token))
}

fn https_client(up: &ims_wire::UpFile) -> Result<reqwest::Client> {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let ca = std::fs::read(&up.ca_cert).with_context(|| format!("cannot read {}", up.ca_cert))?;
    Ok(reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(&ca)?)
        .timeout(std::time::Duration::from_secs(10))
        .build()?)
}

async fn verify(data_dir: &Path, name: &str, credential: Option<&Path>, json: bool) -> Result<()> {
    let build = stored_build(data_dir, name).await?;
    let loaded = read_configuration(data_dir, name, &build)?;
    let up = read_up_file(data_dir)?;
    let bearer = match credential {
        Some(path) => {
            let token = credential_token(data_dir, path).await?;
            let ca = std::fs::read(&up.ca_cert)?;
            let jwks = ims_campaign::connect::HttpKeys {
                http: Arc::new(crate::https::HttpIms::new(Some(&ca))?),
                url: format!("{}/ims/keys", up.ims_url),
            };
            let issuer = ims_campaign::bearer::TrustedIssuer::new(&up.ims_url, Arc::new(jwks));
            Some((Arc::new(issuer), token))
        }
        None => None,
    };
    let kind = if name == MESSAGE_CENTER_INSTANCE {
        InstanceKind::MessageCenter
    } else {
        InstanceKind::Marketing
    };
    let store = Arc::new(open_instance_store(data_dir, name).await?);
    let mut results = ims_campaign::probe::verify(
        Arc::<ims_store::instance::SqlInstanceStore>::clone(&store),
        ims_campaign::probe::ProbeInput {
            info: InstanceInfo::new(name, kind, build),
            switches: loaded.switches.clone(),
            bearer,
        },
    )
    .await;
    // The probes test the files; the running instance must be the one applying them.
    let status = status_of(data_dir, name).await?;
    results.insert(
        0,
        ims_campaign::probe::ProbeResult {
            probe: "the running instance applies the current configuration files".into(),
            expected: "running with these files, or not running".into(),
            passed: !status.running.contains("earlier version"),
            observed: status.running,
        },
    );
    store.close().await;
    let failed = results.iter().filter(|r| !r.passed).count();
    if json {
        println!("{}", serde_json::to_string_pretty(&results)?);
    } else {
        println!("verification of {name} (build {build}); nothing is changed by these probes");
        let width = results.iter().map(|r| r.probe.len()).max().unwrap_or(0);
        for r in &results {
            println!(
                "  {}  {:width$}  expected {}; observed {}",
                if r.passed { "PASS" } else { "FAIL" },
                r.probe,
                r.expected,
                r.observed
            );
        }
        println!("{} passed, {failed} failed", results.len() - failed);
    }
    if failed > 0 {
        return Err(ProbesFailed(failed).into());
    }
    Ok(())
}

pub async fn command(cmd: RestrictionsCommand, data_dir: &Path) -> Result<()> {
    match cmd {
        RestrictionsCommand::Enable(args) => switch(data_dir, args, true).await,
        RestrictionsCommand::Disable(args) => switch(data_dir, args, false).await,
        RestrictionsCommand::Status { instance, json } => {
            let names = instance.map_or_else(|| instance_names(data_dir), |n| Ok(vec![n]))?;
            if json {
                let mut all = Vec::new();
                for n in &names {
                    all.push(status_of(data_dir, n).await?);
                }
                println!("{}", serde_json::to_string_pretty(&all)?);
            } else {
                for n in &names {
                    print_status(data_dir, n).await?;
                }
            }
            Ok(())
        }
        RestrictionsCommand::Verify {
            instance,
            credential,
            json,
        } => verify(data_dir, &instance, credential.as_deref(), json).await,
    }
}
