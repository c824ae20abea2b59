//! What the commands share: where a deployment is (the data directory's `up.json`, a database,
//! a running IMS) and what opens it (the IMS's store, an instance's store, the migration
//! engine's journal), the audit context of the command line, and the clients the migration
//! engine reaches both services with. Command modules use this module and never each other.

use anyhow::{anyhow, bail, Context as _, Result};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use ims_core::audit::Context;
use ims_core::error::StoreError;
use ims_core::Now;
use ims_core::StoreResult;
use ims_identity::developer::{Service, IO_MANAGEMENT_SERVICE, USER_MANAGEMENT_SERVICE};
use ims_identity::model::Organization;
use ims_identity::store::{OrgStore as _, Store};
use ims_journal::SqlJournal;
use ims_migration::client::{ImsClient, InstanceClient};
use ims_migration::journal::{Journal, PlanProgress, PlanRecord, StepEnd, StepKey, StepRecord};
use ims_migration::run::{Engine, Progress, Twins};
use ims_store::instance::SqlInstanceStore;
use ims_store::{Options, SqlStore};
use ims_wire::migration::InstanceFacts;
use ims_wire::UpFile;

use crate::config::Config;
use crate::remote::{CredentialAdmin as _, Remote};

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
    opts.listen_url = config.database_listen_url.clone();
    opts.change_poll = std::time::Duration::from_millis(config.change_poll_ms);
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

// The migration engine's view: the instance and the IMS through their APIs, and its journal.

/// Where the instance and the IMS are, and how the engine signs in to each.
#[derive(Debug, clap::Args)]
pub struct MigrationTarget {
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

impl MigrationTarget {
    /// Where integration kits go.
    pub fn kit_dir(&self) -> PathBuf {
        match (&self.kit_dir, &self.data_dir) {
            (Some(k), _) => k.clone(),
            (None, Some(d)) => d.join("migration-kits"),
            (None, None) => PathBuf::from("migration-kits"),
        }
    }

    /// The engine's journal: `--journal`, else beside up.json, else in the working directory.
    /// Opened when first used.
    pub fn journal(&self) -> LazyJournal {
        let url = match (&self.journal, &self.data_dir) {
            (Some(url), _) => url.clone(),
            (None, Some(dir)) => format!("sqlite://{}", dir.join("migration-journal.db").display()),
            (None, None) => "sqlite://ims-migration.db".to_owned(),
        };
        LazyJournal {
            opts: Options::new(url),
            opened: tokio::sync::OnceCell::new(),
        }
    }
}

/// The engine's journal, opened at its first use: a command that neither reads nor writes it
/// (planning, say) leaves no database behind.
pub struct LazyJournal {
    opts: Options,
    opened: tokio::sync::OnceCell<SqlJournal>,
}

impl LazyJournal {
    async fn get(&self) -> StoreResult<&SqlJournal> {
        self.opened
            .get_or_try_init(|| async {
                // Opening's futures are not `Send` (sqlx's generic executors), which the
                // journal's are: it runs on a blocking thread of its own, driven by the
                // runtime's handle.
                let (opts, handle) = (self.opts.clone(), tokio::runtime::Handle::current());
                tokio::task::spawn_blocking(move || handle.block_on(SqlJournal::open(&opts, Now::system())))
                    .await
                    .map_err(|e| StoreError::Backend(e.to_string()))?
            })
            .await
    }

    pub async fn close(&self) {
        if let Some(journal) = self.opened.get() {
            journal.close().await;
        }
    }
}

#[async_trait::async_trait]
impl Journal for LazyJournal {
    async fn put_plan(&self, plan: &PlanRecord) -> StoreResult<()> {
        self.get().await?.put_plan(plan).await
    }

    async fn plan(&self, plan_id: &str) -> StoreResult<Option<PlanRecord>> {
        self.get().await?.plan(plan_id).await
    }

    async fn plans(&self, instance: &str) -> StoreResult<Vec<PlanRecord>> {
        self.get().await?.plans(instance).await
    }

    async fn mark_applied(&self, plan_id: &str, at: Now) -> StoreResult<()> {
        self.get().await?.mark_applied(plan_id, at).await
    }

    async fn begin_steps(&self, plan_id: &str, keys: &[StepKey], at: Now) -> StoreResult<()> {
        self.get().await?.begin_steps(plan_id, keys, at).await
    }

    async fn end_steps(&self, plan_id: &str, ends: &[StepEnd], at: Now) -> StoreResult<()> {
        self.get().await?.end_steps(plan_id, ends, at).await
    }

    async fn steps(&self, plan_id: &str) -> StoreResult<Vec<StepRecord>> {
        self.get().await?.steps(plan_id).await
    }

    async fn progress(&self, instance: &str) -> StoreResult<Vec<PlanProgress>> {
        self.get().await?.progress(instance).await
    }
}

/// The two services, signed in.
pub struct Services {
    pub instance: InstanceClient,
    /// Absent when no IMS credential was given (assess still runs, without profiles).
    pub ims: Option<ImsClient>,
    /// The staging twin's sign-in, from up.json (none without --data-dir).
    twins: UpTwins,
}

impl Services {
    /// The IMS, for the steps that need it.
    pub fn ims(&self) -> Result<&ImsClient> {
        self.ims.as_ref().context(
            "this step needs the IMS: --ims-url, --ims-org, --client-id and --client-secret-file (or --data-dir)",
        )
    }

    /// The engine over these services and `journal`, with the system clock and `progress`.
    pub fn engine<'a>(&'a self, journal: &'a dyn Journal, progress: Progress<'a>) -> Engine<'a> {
        Engine {
            journal,
            instance: &self.instance,
            ims: self.ims.as_ref(),
            twins: &self.twins,
            progress,
            now: Now::system,
        }
    }
}

fn read_secret_file(path: &Path) -> Result<String> {
    let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let text = text.trim().to_owned();
    if text.is_empty() {
        bail!("{} is empty", path.display());
    }
    Ok(text)
}

/// HTTPS for the engine, trusting `ca` when given.
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
    let path = dir.join(ENGINE_CREDENTIAL_FILE);
    let up = read_up_file(dir)?;
    let target = Target {
        url: Some(up.ims_url.clone()),
        ca_cert: Some(up.ca_cert.clone().into()),
        ..Target::data_dir(dir)
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
        .filter_map(|code| Service::by_code(code))
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
pub async fn connect(target: &MigrationTarget, config: &Config) -> Result<Services> {
    let twins = UpTwins(target.data_dir.clone());
    if let Some(dir) = &target.data_dir {
        let up = read_up_file(dir)?;
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
            twins,
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
    Ok(Services { instance, ims, twins })
}

/// Other instances of the data directory, asked as their own administrator (from up.json).
struct UpTwins(Option<PathBuf>);

#[async_trait::async_trait]
impl Twins for UpTwins {
    async fn facts(&self, name: &str) -> Option<InstanceFacts> {
        let dir = self.0.as_ref()?;
        let up = read_up_file(dir).ok()?;
        let inst = up.instances.iter().find(|i| i.name == name)?;
        let http = http_client(Some(Path::new(&up.ca_cert))).ok()?;
        let client = InstanceClient::sign_in(http, &inst.url, &inst.admin_login, &inst.admin_password)
            .await
            .ok()?;
        client.facts().await.ok()
    }
}

/// An instance's fault as a command's error: the code and message its clients would read, and
/// what only an operator may (the debug text), since the person running the command is one.
pub(crate) fn fault(f: ims_campaign::fault::Fault) -> anyhow::Error {
    match f.debug() {
        Some(debug) => anyhow::anyhow!("{f} ({debug})"),
        None => anyhow::anyhow!("{f}"),
    }
}
