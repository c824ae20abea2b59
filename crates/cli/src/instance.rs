//! The Campaign instances that `ims up` runs beside the IMS: each has its own database, its
//! built-in operators and default groups, and its own listener.

use anyhow::{Context as _, Result};
use std::path::Path;
use std::sync::Arc;

use ims_campaign::model::Operator;
use ims_campaign::service::{Instance, InstanceInfo, InstanceKind};
use ims_campaign::store::OperatorStore as _;
use ims_campaign::Build;
use ims_core::audit::Context;
use ims_core::secret::{self, Secret};
use ims_core::Now;
use ims_store::instance::SqlInstanceStore;
use ims_store::Options;
use ims_wire::operators::BUILTIN_OPERATORS;
use ims_wire::rights::DEFAULT_GROUPS;

/// Where an instance of `ims up` keeps its data: a SQLite file in the data directory, or, when
/// `up` runs on PostgreSQL (`database_url`), the schema named after the IMS's and the instance.
pub fn store_options(dir: &Path, name: &str, database_url: &str, schema: Option<&str>) -> Options {
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

/// Opens (creating on first start) an instance under `dir`. Returns it with the `admin`
/// operator's password when this start created it.
pub async fn open_embedded(
    dir: &Path,
    config: &crate::config::Config,
    name: &str,
    kind: InstanceKind,
    build: Build,
    technical_account_groups: Vec<String>,
    ims_http: Option<Arc<dyn ims_campaign::connect::ImsHttp>>,
) -> Result<(Instance, Option<Secret>)> {
    let conf_dir = dir.join("conf");
    let now = Now::system();
    let profile_refresh_secs = config.instance_profile_refresh_secs;
    let opts = store_options(
        dir,
        name,
        config.database_url.as_deref().unwrap_or_default(),
        config.database_schema.as_deref(),
    );
    let store = Arc::new(
        SqlInstanceStore::open(&opts, now)
            .await
            .with_context(|| format!("instance {name}"))?,
    );
    for g in DEFAULT_GROUPS {
        store.ensure_group(g.name, g.label, g.rights).await?;
    }
    let mut admin_password = None;
    if store.operator_count().await? == 0 {
        seed_recipients(&store, now).await?;
        if kind == InstanceKind::Marketing {
            crate::seed::legacy_population(&store, now).await?;
        }
        for (login, label) in BUILTIN_OPERATORS {
            // Only `admin` gets a usable password; the other built-ins are service accounts whose
            // credentials an administrator sets when the service is installed.
            let (hash, groups) = if *login == "admin" {
                let password = secret::generate("");
                let hash = ims_core::password::hash(&password).await?;
                admin_password = Some(password);
                (Some(hash), vec!["admin".to_owned()])
            } else {
                (None, Vec::new())
            };
            let audit = Context::new(now, "system").event(
                "operator.create",
                login,
                "success",
                serde_json::json!({"reason": "built-in operator, created at installation"}),
            );
            store
                .create_operator(
                    &Operator {
                        label: (*label).to_owned(),
                        builtin: true,
                        ..Operator::native(login, None, groups, hash, now)
                    },
                    &audit,
                )
                .await?;
        }
    }
    use ims_campaign::store::SettingsStore as _;
    // The build given applies at creation; afterwards the stored one (moved by `upgrade`) wins.
    let build = match store.setting("build").await? {
        Some(stored) => stored.parse::<Build>()?,
        None => {
            let audit = Context::new(Now::system(), "system").event(
                "instance.build",
                name,
                "success",
                serde_json::json!({"build": build.to_string(), "reason": "installation"}),
            );
            store.set_setting("build", &build.to_string(), &audit).await?;
            build
        }
    };
    let mut info = InstanceInfo::new(name, kind, build);
    info.technical_account_groups = technical_account_groups;
    info.profile_refresh_secs = profile_refresh_secs;
    crate::files::private_dir(&conf_dir)?;
    let server_conf = conf_dir.join("serverConf.xml");
    if !server_conf.exists() {
        crate::files::write_public(&server_conf, ims_campaign::config::DEFAULT_SERVER_CONF.as_bytes())?;
    }
    let loaded = read_configuration(dir, name, &build)?;
    let mut instance = Instance::new(store, info).with_switches(&loaded.switches);
    if let Some(http) = ims_http {
        let connection = crate::connect::connection_of(dir, name, &loaded.instance, http.clone())?;
        instance = instance.with_ims_http(http).with_connection(connection);
    }
    record_loaded(&instance, &loaded, "start").await?;
    let instance = instance.with_config_files(Arc::new(InstanceFiles { dir: dir.to_owned() }));
    instance.load_notice().await.map_err(|f| anyhow::anyhow!("{f}"))?;
    Ok((instance, admin_password))
}

/// The configuration of one instance as read from its files.
pub struct Loaded {
    /// `serverConf.xml` with `config-<name>.xml` laid over it.
    pub switches: ims_campaign::config::ImsSwitches,
    /// The instance file alone.
    pub instance: ims_campaign::config::InstanceConf,
    /// Digest of both files' text: what a reload reports having applied.
    pub digest: String,
}

/// Reads `conf/serverConf.xml` and `conf/config-<name>.xml` (when present) for an instance of
/// `build`. Any error names file, line and key; a start stops on it, a reload keeps the state
/// it had.
pub fn read_configuration(dir: &Path, name: &str, build: &Build) -> Result<Loaded> {
    let (server_conf, instance_conf) = conf_paths(dir, name);
    let text = std::fs::read_to_string(&server_conf)
        .with_context(|| format!("cannot read {}", server_conf.display()))?;
    let shared = ims_campaign::config::read_server_conf(&server_conf.display().to_string(), &text, build)?;
    let instance_text = match std::fs::read_to_string(&instance_conf) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", instance_conf.display())),
    };
    let instance = if instance_text.is_empty() {
        ims_campaign::config::InstanceConf::default()
    } else {
        ims_campaign::config::read_instance_conf(&instance_conf.display().to_string(), &instance_text, build)?
    };
    Ok(Loaded {
        switches: instance.switches.over(&shared),
        digest: secret::digest_hex(&format!("{text}\u{0}{instance_text}")),
        instance,
    })
}

/// `conf/serverConf.xml` (shared by the instances) and `conf/config-<name>.xml`.
pub fn conf_paths(dir: &Path, name: &str) -> (std::path::PathBuf, std::path::PathBuf) {
    let conf = dir.join("conf");
    (
        conf.join("serverConf.xml"),
        conf.join(format!("config-{name}.xml")),
    )
}

/// The instance setting where a start or reload records which configuration it applied (or
/// why it could not), for `ims instance reload` and `restrictions status` to read.
pub const LOADED_SETTING: &str = "config.loaded";

async fn record_loaded(instance: &Instance, loaded: &Loaded, how: &str) -> Result<()> {
    let value =
        serde_json::json!({"digest": loaded.digest, "at": Now::system().millis(), "by": how, "error": null});
    let audit = Context::new(Now::system(), "system").event(
        "instance.reload",
        &instance.info().name,
        "success",
        serde_json::json!({"by": how, "digest": loaded.digest}),
    );
    instance
        .store()
        .set_setting(LOADED_SETTING, &value.to_string(), &audit)
        .await?;
    Ok(())
}

/// Records the instance's environment and staging twin unless they are recorded already (an
/// administrator's later choice stays).
pub async fn declare_environment(
    instance: &Instance,
    environment: &str,
    staging_twin: Option<&str>,
) -> Result<()> {
    use ims_campaign::migration::ENVIRONMENT_SETTING;
    let store = instance.store();
    if store.setting(ENVIRONMENT_SETTING).await?.is_some() {
        return Ok(());
    }
    set_environment(
        store.as_ref(),
        &instance.info().name,
        environment,
        staging_twin,
        "system",
    )
    .await
}

async fn set_environment(
    store: &dyn ims_campaign::store::InstanceStore,
    name: &str,
    environment: &str,
    staging_twin: Option<&str>,
    actor: &str,
) -> Result<()> {
    use ims_campaign::migration::{ENVIRONMENT_SETTING, STAGING_TWIN_SETTING};
    if !matches!(environment, "staging" | "production") {
        anyhow::bail!("an environment is staging or production, not {environment:?}");
    }
    if environment == "staging" && staging_twin.is_some() {
        anyhow::bail!("a staging instance has no staging twin");
    }
    let audit = Context::new(Now::system(), actor).event(
        "instance.environment",
        name,
        "success",
        serde_json::json!({"environment": environment, "staging_twin": staging_twin}),
    );
    store
        .set_setting(ENVIRONMENT_SETTING, environment, &audit)
        .await?;
    store
        .set_setting(STAGING_TWIN_SETTING, staging_twin.unwrap_or_default(), &audit)
        .await?;
    Ok(())
}

/// The running process writes its instances' configuration files when the migration locks one
/// down through the instance's API, then has the instance read them again.
pub struct InstanceFiles {
    pub dir: std::path::PathBuf,
}

#[async_trait::async_trait]
impl ims_campaign::migration::ConfigFiles for InstanceFiles {
    async fn lock_down(&self, instance: &Instance, allow: &[String]) -> Result<(), String> {
        let (dir, name, allow) = (self.dir.clone(), instance.info().name.clone(), allow.to_vec());
        // The file writer's futures are not `Send` (sqlx's generic executors), which this
        // trait's are: it runs on a blocking thread of its own, driven by the runtime's handle.
        let handle = tokio::runtime::Handle::current();
        tokio::task::spawn_blocking(move || {
            handle.block_on(crate::restrictions::write_switches(
                &dir,
                Some(&name),
                true,
                (true, true),
                allow,
            ))
        })
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| format!("{e:#}"))?;
        reload(&self.dir, instance).await.map_err(|e| format!("{e:#}"))
    }

    async fn set_ims_account(
        &self,
        instance: &Instance,
        req: &ims_wire::migration::ImsAccountRequest,
    ) -> Result<serde_json::Value, String> {
        let args = crate::connect::ImsConfigArgs {
            instance: instance.info().name.clone(),
            register: false,
            client_id: Some(req.client_id.clone()),
            client_secret_file: None,
            ims_url: Some(req.ims_url.clone()),
            org_id: Some(req.org_id.clone()),
            callback_url: req.callback_url.clone(),
            association_mask: req.association_mask.clone(),
            product_context: req
                .product_context
                .clone()
                .unwrap_or_else(|| ims_campaign::connect::DEFAULT_PRODUCT_CONTEXT.to_owned()),
            scopes: req.scopes.clone(),
            remove: false,
            json: false,
        };
        let client = Some((req.client_id.clone(), Secret::new(&req.client_secret)));
        let dir = self.dir.clone();
        // As for the lock-down: the writer's futures are not `Send`.
        let handle = tokio::runtime::Handle::current();
        let mut set = tokio::task::spawn_blocking(move || {
            handle.block_on(crate::connect::configure(args, client, &dir))
        })
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| format!("{e:#}"))?;
        reload(&self.dir, instance).await.map_err(|e| format!("{e:#}"))?;
        // Where the file lies is the host's business, not the caller's.
        if let Some(o) = set.as_object_mut() {
            o.remove("file");
        }
        Ok(set)
    }
}

/// Reads the instance's configuration again and applies it (`SIGHUP`, `ims instance reload`).
/// A file that does not read leaves the running state as it was; the error is recorded for the
/// command that asked and logged.
pub async fn reload(dir: &Path, instance: &Instance) -> Result<()> {
    let name = instance.info().name.clone();
    let now = Now::system();
    let read = read_configuration(dir, &name, &instance.info().build).and_then(|loaded| {
        let connection = match instance.ims_http() {
            Some(http) => crate::connect::connection_of(dir, &name, &loaded.instance, http.clone())?,
            None => None,
        };
        Ok((loaded, connection))
    });
    match read {
        Ok((loaded, connection)) => {
            let ctx = Context::new(now, "system:reload");
            instance
                .apply_switches(&loaded.switches, &ctx)
                .await
                .map_err(|f| anyhow::anyhow!("{f}"))?;
            if instance.ims_http().is_some() {
                instance
                    .set_connection(connection, &ctx)
                    .await
                    .map_err(|f| anyhow::anyhow!("{f}"))?;
            }
            record_loaded(instance, &loaded, "reload").await?;
            tracing::info!(instance = %name, "configuration reloaded");
        }
        Err(e) => {
            tracing::error!(instance = %name, error = %format!("{e:#}"), "configuration not reloaded; the previous one stays in effect");
            let value = serde_json::json!({"digest": null, "at": now.millis(), "by": "reload", "error": format!("{e:#}")});
            let audit = Context::new(now, "system:reload").event(
                "instance.reload",
                &name,
                "failure",
                serde_json::json!({"error": format!("{e:#}")}),
            );
            instance
                .store()
                .set_setting(LOADED_SETTING, &value.to_string(), &audit)
                .await?;
        }
    }
    Ok(())
}

/// `ims instance config -instance:<name> -setimsoauth:<org-id>/<client-id>/<technical-account-id>/<client-secret>`,
/// the vendor's `nlserver config` syntax: stores the instance's own IMS credential, the secret
/// sealed under the data directory's master key.
pub fn config_command(data_dir: &Path, args: &[String]) -> Result<String> {
    let mut instance = None;
    let mut oauth = None;
    for a in args {
        if let Some(v) = a.strip_prefix("-instance:") {
            instance = Some(v.to_owned());
        } else if let Some(v) = a.strip_prefix("-setimsoauth:") {
            oauth = Some(ims_campaign::config::parse_setimsoauth(v).map_err(|e| anyhow::anyhow!(e))?);
        } else {
            anyhow::bail!("unknown argument {a:?} (expected -instance:<name> and -setimsoauth:<org>/<client>/<account>/<secret>)");
        }
    }
    let name = instance.ok_or_else(|| anyhow::anyhow!("-instance:<name> is required"))?;
    let (org_id, client_id, technical_account_id, secret) = oauth.ok_or_else(|| {
        anyhow::anyhow!("nothing to do: give -setimsoauth:<org>/<client>/<account>/<secret>")
    })?;
    let up = crate::up::read_up_file(data_dir)?;
    if !up.instances.iter().any(|i| i.name == name) {
        anyhow::bail!("no instance {name:?} in {}", data_dir.display());
    }
    let master_text = std::fs::read_to_string(data_dir.join("master.key"))
        .context("the data directory has no master.key")?;
    let master = ims_core::keys::MasterKey::parse(&master_text).map_err(|e| anyhow::anyhow!("{e}"))?;
    let label = format!("imsoauth:{name}");
    let sealed = format!(
        "enc:{}",
        master
            .seal(&label, secret.expose().as_bytes())
            .map_err(|e| anyhow::anyhow!("{e}"))?
    );
    let oauth = ims_campaign::config::ImsOAuth {
        org_id,
        client_id,
        technical_account_id,
        sealed_secret: sealed,
    };
    let (_, path) = conf_paths(data_dir, &name);
    crate::files::private_dir(&data_dir.join("conf"))?;
    // The file's restriction elements stay as they are.
    let mut conf = read_instance_file(&path)?;
    conf.oauth = Some(oauth);
    crate::files::write_private(&path, ims_campaign::config::write_instance_conf(&conf).as_bytes())?;
    println!(
        "IMS credential of {name} stored in {} (secret sealed)",
        path.display()
    );
    Ok(name)
}

/// `config-<name>.xml` as it stands (empty when absent). Read without a build: whether its
/// switches suit the instance is decided where they are applied.
pub fn read_instance_file(path: &Path) -> Result<ims_campaign::config::InstanceConf> {
    match std::fs::read_to_string(path) {
        Ok(text) => Ok(ims_campaign::config::read_instance_conf(
            &path.display().to_string(),
            &text,
            &Build::NEWEST,
        )?),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Default::default()),
        Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
    }
}

/// Records a configuration change made outside the database in the instance's audit log.
pub async fn audit_config_change(data_dir: &Path, name: &str, details: serde_json::Value) -> Result<()> {
    use ims_core::audit::AuditStore as _;
    let store = open_store(data_dir, name).await?;
    store
        .append_audit(&crate::admin::cli_context().event("instance.config", name, "success", details))
        .await?;
    store.close().await;
    Ok(())
}

/// Demo recipients of a new instance, in the default recipients folder.
async fn seed_recipients(store: &SqlInstanceStore, now: Now) -> Result<()> {
    use ims_campaign::store::RecipientStore as _;
    const FIRST: &[&str] = &[
        "Ana", "Bo", "Chen", "Dara", "Eli", "Femi", "Gus", "Hana", "Ivo", "Jun",
    ];
    const LAST: &[&str] = &["Abe", "Berg", "Costa", "Dahl", "Egan"];
    let folder = store.ensure_folder("nmsRootRecipient", "Recipients").await?;
    // Who works with recipients may read them; those who prepare deliveries and run campaigns
    // may change them.
    for (group, write) in [
        ("deliveryOperators", true),
        ("campaignManagers", true),
        ("reportAccess", false),
        ("messageCenterAgents", false),
    ] {
        let audit = Context::new(now, "system").event(
            "folder.grant",
            "nmsRootRecipient",
            "success",
            serde_json::json!({"group": group, "read": true, "write": write, "reason": "installation"}),
        );
        store
            .grant_folder_to_group(folder, group, true, write, &audit)
            .await?;
    }
    for (i, first) in FIRST.iter().enumerate() {
        for last in LAST.iter().take(1 + i % LAST.len()) {
            store
                .create_recipient(&ims_campaign::model::Recipient {
                    id: 0,
                    email: Some(format!(
                        "{}.{}@example.com",
                        first.to_lowercase(),
                        last.to_lowercase()
                    )),
                    first_name: Some((*first).to_owned()),
                    last_name: Some((*last).to_owned()),
                    folder_id: Some(folder),
                    created_at: now,
                    modified_at: now,
                })
                .await?;
        }
    }
    Ok(())
}

/// `ims instance ...`: administration of the instances of an `ims up` data directory.
#[derive(Debug, clap::Subcommand)]
pub enum InstanceCommand {
    /// Operators of an instance.
    #[command(subcommand)]
    Operator(OperatorCommand),
    /// How people sign in to the instance through the IMS: its client, callback URL, association
    /// mask, product context and scopes. The running `ims up` reloads it.
    ImsConfig(crate::connect::ImsConfigArgs),
    /// Test every rule of the IMS sign-in checklist against the IMS and say which fails and how
    /// to fix it; exit code 1 when one fails.
    ImsCheck {
        #[arg(long)]
        instance: String,
        #[arg(long)]
        json: bool,
    },
    /// The vendor's configuration syntax: `-instance:<name> -setimsoauth:<org>/<client>/<account>/<secret>`.
    Config {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true, num_args = 1..)]
        args: Vec<String>,
    },
    /// Move an instance to a newer build (never back) and say what changes. Takes effect when the
    /// instance next starts.
    Upgrade {
        #[arg(long)]
        instance: String,
        #[arg(long)]
        to: String,
    },
    /// Add a generated population of native operators (scale tests).
    Seed {
        #[arg(long)]
        instance: String,
        #[arg(long)]
        operators: u64,
    },
    /// Declare the instance's environment (and a production instance's staging twin, which
    /// must finish its migration first).
    Environment {
        #[arg(long)]
        instance: String,
        /// staging or production.
        #[arg(long)]
        environment: String,
        #[arg(long)]
        staging_twin: Option<String>,
    },
    /// The instance's audit log (operator and configuration changes), newest first.
    Audit {
        #[arg(long)]
        instance: String,
        #[arg(long)]
        action: Option<String>,
        #[arg(long, default_value_t = 100)]
        limit: u32,
    },
    /// The lock-down restrictions: enable, disable, status, verify.
    #[command(subcommand)]
    Restrictions(crate::restrictions::RestrictionsCommand),
    /// Make the running `ims up` read its instances' configuration files again (`SIGHUP`) and
    /// wait until each instance reports having applied them.
    Reload {
        #[arg(long)]
        instance: Option<String>,
    },
    /// The recorded sign-ins and calls (usage evidence), newest first.
    Usage {
        #[arg(long)]
        instance: String,
        /// Running totals of calls instead of sign-in events.
        #[arg(long)]
        calls: bool,
        #[arg(long)]
        login: Option<String>,
        #[arg(long, default_value_t = 50)]
        limit: u32,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, clap::Subcommand)]
pub enum OperatorCommand {
    /// Create a native operator.
    Create {
        #[arg(long)]
        instance: String,
        #[arg(long)]
        login: String,
        /// File holding the password (first line).
        #[arg(long)]
        password_file: std::path::PathBuf,
        /// Operator group (repeatable).
        #[arg(long = "group")]
        groups: Vec<String>,
        #[arg(long)]
        email: Option<String>,
        #[arg(long)]
        label: Option<String>,
        #[arg(long)]
        json: bool,
    },
}

pub async fn open_store(data_dir: &Path, name: &str) -> Result<SqlInstanceStore> {
    let up = crate::up::read_up_file(data_dir)?;
    if !up.instances.iter().any(|i| i.name == name) {
        anyhow::bail!(
            "no instance {name:?} in {} (known: {})",
            data_dir.display(),
            up.instances
                .iter()
                .map(|i| i.name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    let mut opts = store_options(data_dir, name, &up.database_url, up.database_schema.as_deref());
    opts.migrate = false;
    Ok(SqlInstanceStore::open(&opts, Now::system()).await?)
}

pub async fn command(cmd: InstanceCommand, data_dir: &Path) -> Result<()> {
    match cmd {
        InstanceCommand::Config { args } => {
            let name = config_command(data_dir, &args)?;
            audit_config_change(data_dir, &name, serde_json::json!({"set": "imsOAuth"})).await?;
        }
        InstanceCommand::ImsConfig(args) => {
            let name = args.instance.clone();
            let summary = crate::connect::ims_config(args, data_dir).await?;
            audit_config_change(data_dir, &name, summary).await?;
            crate::restrictions::reload_running(data_dir, &[name]).await?;
        }
        InstanceCommand::ImsCheck { instance, json } => {
            crate::connect::ims_check(data_dir, &instance, json).await?
        }
        InstanceCommand::Restrictions(cmd) => crate::restrictions::command(cmd, data_dir).await?,
        InstanceCommand::Reload { instance } => {
            let names = match instance {
                Some(n) => vec![n],
                None => crate::restrictions::instance_names(data_dir)?,
            };
            crate::restrictions::reload_running(data_dir, &names).await?;
        }
        InstanceCommand::Environment {
            instance,
            environment,
            staging_twin,
        } => {
            let store = open_store(data_dir, &instance).await?;
            set_environment(&store, &instance, &environment, staging_twin.as_deref(), "cli").await?;
            store.close().await;
            println!(
                "{instance}: {environment}{}",
                staging_twin
                    .map(|t| format!(", staging twin {t}"))
                    .unwrap_or_default()
            );
        }
        InstanceCommand::Audit {
            instance,
            action,
            limit,
        } => {
            use ims_core::audit::AuditStore as _;
            let store = open_store(data_dir, &instance).await?;
            let events = store
                .audit(&ims_core::audit::AuditQuery {
                    action_prefix: action,
                    limit,
                })
                .await?;
            println!("{}", serde_json::to_string_pretty(&events)?);
            store.close().await;
        }
        InstanceCommand::Seed { instance, operators } => {
            let store = open_store(data_dir, &instance).await?;
            let started = std::time::Instant::now();
            let n = crate::seed::scale_population(&store, operators, Now::system()).await?;
            println!(
                "{n} operators added to {instance} in {:.1} s",
                started.elapsed().as_secs_f64()
            );
            store.close().await;
        }
        InstanceCommand::Upgrade { instance, to } => {
            use ims_campaign::store::SettingsStore as _;
            let to: Build = to.parse()?;
            let store = open_store(data_dir, &instance).await?;
            let from: Build = store
                .setting("build")
                .await?
                .ok_or_else(|| anyhow::anyhow!("instance {instance} has no recorded build"))?
                .parse()?;
            let changes = from.upgrade_changes(&to).map_err(|e| anyhow::anyhow!(e))?;
            let audit = crate::admin::cli_context().event(
                "instance.upgrade",
                &instance,
                "success",
                serde_json::json!({"from": from.to_string(), "to": to.to_string()}),
            );
            store.set_setting("build", &to.to_string(), &audit).await?;
            println!("{instance}: {from} -> {to} (restart to apply)");
            for c in changes {
                println!("  - {c}");
            }
            store.close().await;
        }
        InstanceCommand::Operator(OperatorCommand::Create {
            instance,
            login,
            password_file,
            groups,
            email,
            label,
            json,
        }) => {
            use ims_campaign::operators::{self, OperatorEdit, OperatorKey, WriteMode, Written};
            let text = std::fs::read_to_string(&password_file)
                .with_context(|| format!("cannot read {}", password_file.display()))?;
            let edit = OperatorEdit {
                login: Some(login.clone()),
                label,
                email: Some(email),
                password: Some(Secret::new(text.lines().next().unwrap_or_default())),
                groups: Some(groups),
                ..OperatorEdit::default()
            };
            let store = open_store(data_dir, &instance).await?;
            let ctx = crate::admin::cli_context();
            let restrictions = crate::restrictions::effective(data_dir, &instance).await?;
            let written = operators::save(
                &store,
                &restrictions,
                &OperatorKey::Login(login.clone()),
                WriteMode::Insert,
                edit,
                &ctx,
            )
            .await
            .map_err(|f| anyhow::anyhow!("{}", f.message))?;
            let Written::Created(id) = written else {
                anyhow::bail!("operator {login} was not created");
            };
            let op = store
                .operator(id)
                .await?
                .ok_or_else(|| anyhow::anyhow!("operator {login} was not created"))?;
            let out = serde_json::json!({"instance": instance, "id": id, "login": op.login, "email": op.email, "groups": op.groups});
            if json {
                println!("{}", serde_json::to_string_pretty(&out)?);
            } else {
                println!("operator {} ({id}) created in {instance}", op.login);
            }
            store.close().await;
        }
        InstanceCommand::Usage {
            instance,
            calls: true,
            login,
            limit,
            json,
        } => {
            use ims_campaign::store::UsageStore as _;
            let store = open_store(data_dir, &instance).await?;
            let rows = store.usage_summary(login.as_deref(), limit).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&rows)?);
            } else {
                for r in rows {
                    println!(
                        "{} .. {} {:>8} calls {:<32} {:<7} {} from {} [{}]",
                        ims_core::time::iso8601(r.counts.first_at),
                        ims_core::time::iso8601(r.counts.last_at),
                        r.counts.calls,
                        r.key.action,
                        r.key.auth_path.as_str(),
                        r.key.login,
                        r.key.source,
                        r.key.client
                    );
                }
            }
            store.close().await;
        }
        InstanceCommand::Usage {
            instance,
            calls: false,
            login,
            limit,
            json,
        } => {
            use ims_campaign::store::UsageStore as _;
            let store = open_store(data_dir, &instance).await?;
            let events = store.usage(login.as_deref(), limit).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&events)?);
            } else {
                for e in events {
                    println!(
                        "{} {:<32} {:<7} {:<8} {} from {} [{}]",
                        ims_core::time::iso8601(e.at),
                        e.action,
                        e.auth_path.as_str(),
                        e.outcome,
                        e.login,
                        e.source.unwrap_or_default(),
                        e.client.unwrap_or_default()
                    );
                }
            }
            store.close().await;
        }
    }
    Ok(())
}
