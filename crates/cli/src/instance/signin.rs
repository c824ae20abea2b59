//! `ims instance ims-config` and `ims instance ims-check`: how people sign in to an instance
//! through the IMS, written in the instance's file, and the checklist that tests it against the
//! IMS it names.

use anyhow::{bail, Context as _, Result};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use ims_campaign::connect::{self, ImsHttp};
use ims_core::secret::Secret;

use crate::account::{configure, connection_of, AccountChange};
use crate::conf::{read_configuration, stored_build};
use crate::context::{open_instance_store, read_up_file};
use crate::https::HttpIms;

/// `ims instance ims-config`: how people sign in to an instance through the IMS.
#[derive(Debug, clap::Args)]
pub struct ImsConfigArgs {
    #[arg(long)]
    pub instance: String,
    /// Create the instance's client at the IMS of the data directory (a first-party application
    /// whose redirect URI is the callback URL) and use it.
    #[arg(long, conflicts_with_all = ["client_id", "client_secret_file", "remove"])]
    pub register: bool,
    /// The instance's client at the IMS (default: the -setimsoauth credential's).
    #[arg(long, requires = "client_secret_file")]
    pub client_id: Option<String>,
    /// File holding the client secret (first line).
    #[arg(long, requires = "client_id")]
    pub client_secret_file: Option<PathBuf>,
    /// The IMS's base URL (default: the data directory's IMS).
    #[arg(long)]
    pub ims_url: Option<String>,
    /// Organisation id (default: the data directory's).
    #[arg(long = "ims-org")]
    pub org_id: Option<String>,
    /// Default: the instance's address followed by /console/ims/callback.
    #[arg(long)]
    pub callback_url: Option<String>,
    /// Regular expression over product profile names whose one capture group names the operator
    /// group (default: `campaign - <instance> - (.*)`).
    #[arg(long)]
    pub association_mask: Option<String>,
    #[arg(long, default_value = connect::DEFAULT_PRODUCT_CONTEXT)]
    pub product_context: String,
    /// Scope to ask for at sign-in (repeatable; default: openid, AdobeID, email, profile and the
    /// product profiles).
    #[arg(long = "scope")]
    pub scopes: Vec<String>,
    /// Remove the configuration: the instance no longer offers sign-in through the IMS.
    #[arg(long)]
    pub remove: bool,
    #[arg(long)]
    pub json: bool,
}

/// Writes the instance's IMS configuration (or removes it) and says what it set; returns what
/// the audit line says.
pub async fn ims_config(args: ImsConfigArgs, dir: &Path) -> Result<serde_json::Value> {
    let client = match (&args.client_id, &args.client_secret_file) {
        (Some(id), Some(file)) => {
            let text =
                std::fs::read_to_string(file).with_context(|| format!("cannot read {}", file.display()))?;
            let secret = Secret::new(text.lines().next().unwrap_or_default());
            if secret.is_empty() {
                bail!("{} holds no secret", file.display());
            }
            Some((id.clone(), secret))
        }
        _ => None,
    };
    let json = args.json;
    let change = AccountChange {
        instance: args.instance,
        register: args.register,
        ims_url: args.ims_url,
        org_id: args.org_id,
        callback_url: args.callback_url,
        association_mask: args.association_mask,
        product_context: args.product_context,
        scopes: args.scopes,
        remove: args.remove,
    };
    let summary = configure(change, client, dir).await?;
    let name = summary["instance"].as_str().unwrap_or_default();
    let path = summary["file"].as_str().unwrap_or_default();
    if summary.get("removed").is_some() {
        println!("{name}: sign-in through the IMS removed from {path}");
    } else if json {
        println!("{}", serde_json::to_string_pretty(&summary)?);
    } else {
        println!("{name}: sign-in through the IMS configured in {path}");
        println!(
            "  client        {}",
            summary["client_id"].as_str().unwrap_or_default()
        );
        println!(
            "  callback URL  {}",
            summary["callback_url"].as_str().unwrap_or_default()
        );
        println!(
            "  mask          {}",
            summary["association_mask"].as_str().unwrap_or_default()
        );
    }
    Ok(summary)
}

/// Rules of the IMS checklist failed (exit code 1).
#[derive(Debug, thiserror::Error)]
#[error("{0} rule(s) of the IMS sign-in checklist failed")]
pub struct ChecksFailed(pub usize);

/// `ims instance ims-check`: the checklist against the instance's files as they are now and
/// the IMS they name.
pub async fn ims_check(dir: &Path, name: &str, json: bool) -> Result<()> {
    let up = read_up_file(dir)?;
    if !up.instances.iter().any(|i| i.name == name) {
        bail!("no instance {name:?} in {}", dir.display());
    }
    let build = stored_build(dir, name).await?;
    let ca = std::fs::read(&up.ca_cert).ok();
    let http: Arc<dyn ImsHttp> = Arc::new(HttpIms::new(ca.as_deref())?);
    let connection = read_configuration(dir, name, &build)
        .and_then(|loaded| connection_of(dir, name, &loaded.instance, http));
    let report = match connection {
        Ok(Some(conn)) => {
            use ims_campaign::store::OperatorStore as _;
            let store = open_instance_store(dir, name).await?;
            let groups = store.groups().await?;
            store.close().await;
            ims_campaign::diagnose::diagnose(&conn, name, &groups).await
        }
        Ok(None) => ims_campaign::diagnose::without_configuration(name, None),
        Err(e) => ims_campaign::diagnose::without_configuration(name, Some(format!("{e:#}"))),
    };
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        for c in &report.checks {
            let mark = match c.status {
                ims_campaign::diagnose::Status::Pass => "pass",
                ims_campaign::diagnose::Status::Fail => "FAIL",
                ims_campaign::diagnose::Status::Skipped => "skip",
            };
            println!("{mark}  {}: {}", c.title, c.detail);
            if let Some(fix) = &c.fix {
                println!("      fix: {fix}");
            }
        }
        for p in &report.admin_profiles {
            println!("warning: product profile {p:?} has \"admin\" in its name; such profiles grant Control Panel access in the vendor's world");
        }
    }
    let failed = report
        .checks
        .iter()
        .filter(|c| c.status == ims_campaign::diagnose::Status::Fail)
        .count();
    if failed > 0 {
        return Err(ChecksFailed(failed).into());
    }
    Ok(())
}
