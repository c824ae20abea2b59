//! What the commands share: where a deployment is (the data directory's `up.json`, a database,
//! a running IMS) and what opens it (the IMS's store, an instance's store), and the audit context
//! of the command line. Command modules use this module and never each other.

use anyhow::{anyhow, bail, Context as _, Result};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use ims_core::audit::Context;
use ims_core::Now;
use ims_identity::model::Organization;
use ims_identity::store::{OrgStore as _, Store};
use ims_store::instance::SqlInstanceStore;
use ims_store::{Options, SqlStore};
use ims_wire::UpFile;

use crate::config::Config;
use crate::remote::Remote;

/// The command ran and refused to go on (blockers, unusable input); the output says why.
/// Exit code 1, as failed checks elsewhere.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Blocked(pub String);

// The data directory of `ims up`.

/// The demo marketing instance `ims up` runs.
pub const MARKETING_INSTANCE: &str = "marketing";
/// Its Message Center instance.
pub const MESSAGE_CENTER_INSTANCE: &str = "mc";
/// The marketing instance's staging twin.
pub const STAGING_INSTANCE: &str = "marketing-stage";

pub fn up_file(dir: &Path) -> PathBuf {
    dir.join("up.json")
}

/// What `ims up` wrote about what it runs: addresses, credentials, the instances.
pub fn read_up_file(dir: &Path) -> Result<UpFile> {
    let path = up_file(dir);
    let text = std::fs::read_to_string(&path).with_context(|| {
        format!(
            "cannot read {} (has `ims up --data-dir {}` run?)",
            path.display(),
            dir.display()
        )
    })?;
    serde_json::from_str(&text).with_context(|| format!("{} is not a valid up.json", path.display()))
}

/// The instances of the data directory, by name.
pub fn instance_names(data_dir: &Path) -> Result<Vec<String>> {
    Ok(read_up_file(data_dir)?
        .instances
        .into_iter()
        .map(|i| i.name)
        .collect())
}

// Where an administration command finds the deployment.

/// Where an administration command finds the deployment.
#[derive(Clone, Debug, clap::Args)]
pub struct Target {
    /// Data directory of `ims up` (default ./ims-data unless --database-url or --config is given).
    #[arg(long, global = true)]
    pub data_dir: Option<PathBuf>,
    /// Database of a deployment (sqlite://... or postgres://...).
    #[arg(long, global = true)]
    pub database_url: Option<String>,
    /// PostgreSQL schema, with --database-url.
    #[arg(long, global = true)]
    pub database_schema: Option<String>,
    /// Organisation id (default: the only one).
    #[arg(long, global = true)]
    pub org: Option<String>,
    /// Base URL of a running IMS: administer it through its API (administrator email and password
    /// from `admin_email` / `admin_password` in the configuration, or from --data-dir's up.json).
    #[arg(long, global = true)]
    pub url: Option<String>,
    /// CA certificate (PEM) to trust for --url.
    #[arg(long, global = true)]
    pub ca_cert: Option<PathBuf>,
}

impl Target {
    /// The data directory alone.
    pub fn data_dir(dir: &Path) -> Self {
        Target {
            data_dir: Some(dir.to_owned()),
            database_url: None,
            database_schema: None,
            org: None,
            url: None,
            ca_cert: None,
        }
    }

    /// The configuration with this target's database (and the data directory's master key).
    pub fn config(&self, base: Config) -> Result<Config> {
        let mut config = base;
        if let Some(url) = &self.database_url {
            config.database_url = Some(url.clone());
            config.database_schema = self.database_schema.clone();
            return Ok(config);
        }
        if config.database_url.is_some() && self.data_dir.is_none() {
            return Ok(config);
        }
        let dir = self.data_dir.clone().unwrap_or_else(|| PathBuf::from("ims-data"));
        let up = read_up_file(&dir)?;
        config.database_url = Some(up.database_url);
        config.database_schema = up.database_schema;
        if config.master_key.is_none() {
            let key = dir.join("master.key");
            if key.exists() {
                config.master_key = Some(std::fs::read_to_string(key)?.trim().to_owned());
            }
        }
        Ok(config)
    }

    /// The administration API of the IMS at `url`, signed in as its system administrator
    /// (from the configuration, or from the data directory's up.json).
    pub fn remote(&self, url: &str, config: &Config) -> Result<Remote> {
        let up = self.data_dir.as_deref().map(read_up_file).transpose()?;
        let email = up
            .as_ref()
            .map(|u| u.admin_email.clone())
            .unwrap_or_else(|| config.admin_email.clone());
        let password = match (&up, &config.admin_password) {
            (_, Some(p)) => p.clone(),
            (Some(u), None) => u.admin_password.clone(),
            (None, None) => {
                bail!("--url needs the administrator's password: set IMS_ADMIN_PASSWORD_FILE (or --data-dir)")
            }
        };
        let ca = self
            .ca_cert
            .clone()
            .or_else(|| up.as_ref().map(|u| u.ca_cert.clone().into()));
        Remote::new(url, email, password, ca.as_deref())
    }
}

/// The organisation a command acts in: the one asked for, or the only one.
pub async fn org(store: &SqlStore, wanted: Option<&str>) -> Result<Organization> {
    let orgs = store.orgs().await?;
    match wanted {
        Some(id) => orgs
            .into_iter()
            .find(|o| o.org_id == id)
            .ok_or_else(|| anyhow!("no organisation {id}")),
        None => match orgs.len() {
            0 => bail!("the store has no organisation yet: start the IMS once"),
            1 => Ok(orgs
                .into_iter()
                .next()
                .ok_or_else(|| anyhow!("no organisation"))?),
            _ => bail!("several organisations: choose one with --org"),
        },
    }
}

/// Who acts, in audit lines: the command line and the local user.
pub fn cli_context() -> Context {
    let user = std::env::var("USER").unwrap_or_else(|_| "unknown".into());
    Context::new(Now::system(), format!("cli:{user}"))
}

// Stores.

pub fn store_options(config: &Config) -> Result<Options> {
    let url = config
        .database_url
        .clone()
        .ok_or_else(|| anyhow!("database_url is not set (IMS_DATABASE_URL)"))?;
    let mut opts = Options::new(url);
    opts.schema = config.database_schema.clone();
    opts.max_connections = config.database_max_connections;
    opts.migrate = config.auto_migrate;
    Ok(opts)
}

/// The IMS's store.
pub async fn open_store(config: &Config) -> Result<Arc<SqlStore>> {
    let store = SqlStore::open(&store_options(config)?, Now::system())
        .await
        .context("opening the store")?;
    Ok(Arc::new(store))
}

/// Where an instance of `ims up` keeps its data: a SQLite file in the data directory, or, when
/// `up` runs on PostgreSQL (`database_url`), the schema named after the IMS's and the instance.
pub fn instance_store_options(dir: &Path, name: &str, database_url: &str, schema: Option<&str>) -> Options {
    if database_url.starts_with("postgres") {
        let mut opts = Options::new(database_url.to_owned());
        let base = schema.unwrap_or("ims_up");
        opts.schema = Some(format!("{base}_{}", name.replace('-', "_")));
        return opts;
    }
    Options::new(format!(
        "sqlite://{}",
        dir.join(format!("instance-{name}.db")).display()
    ))
}

/// The store of an instance of the data directory (its schema as the running instance left it).
pub async fn open_instance_store(data_dir: &Path, name: &str) -> Result<SqlInstanceStore> {
    let up = read_up_file(data_dir)?;
    if !up.instances.iter().any(|i| i.name == name) {
        bail!(
            "no instance {name:?} in {} (known: {})",
            data_dir.display(),
            up.instances
                .iter()
                .map(|i| i.name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    let mut opts = instance_store_options(data_dir, name, &up.database_url, up.database_schema.as_deref());
    opts.migrate = false;
    Ok(SqlInstanceStore::open(&opts, Now::system()).await?)
}

/// Registers where a client hears that a person signed out (a client of `ims client create`,
/// or an instance's own client).
pub async fn set_backchannel_logout_uri(
    store: &dyn Store,
    client_id: &str,
    uri: &str,
    ctx: &Context,
) -> Result<()> {
    ims_identity::oidc::check_redirect_uri_registration(uri)?;
    let audit = ctx.event(
        "client.update",
        client_id,
        "success",
        serde_json::json!({"backchannel_logout_uri": uri}),
    );
    store
        .set_backchannel_logout_uri(client_id, Some(uri), &audit)
        .await?;
    Ok(())
}
