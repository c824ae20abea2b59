//! The Campaign instances that `ims up` runs beside the IMS: each has its own database, its
//! built-in operators and default groups, its configuration files, and its own listener. Opened
//! (created at first start), told its environment, and made to read its files again on reload.

use anyhow::{Context as _, Result};
use std::path::Path;
use std::sync::Arc;

use ims_campaign::model::Operator;
use ims_campaign::service::{Configuration, Instance, InstanceInfo, InstanceKind};
use ims_campaign::store::{OperatorStore as _, SettingsStore};
use ims_campaign::Build;
use ims_core::audit::Context;
use ims_core::secret::{self, Secret};
use ims_core::Now;
use ims_store::instance::SqlInstanceStore;
use ims_wire::operators::BUILTIN_OPERATORS;
use ims_wire::rights::DEFAULT_GROUPS;

use crate::account::{configure, connection_of, AccountChange};
use crate::conf::{read_configuration, write_switches, Loaded, LOADED_SETTING};
use crate::context::{fault, instance_store_options};

/// An instance this process runs, with the store it opened for it: the host writes the
/// instance's own settings (the configuration it read, its environment) through that store.
pub struct Embedded {
    pub instance: Instance,
    pub store: Arc<SqlInstanceStore>,
    /// The `admin` operator's password, when this start created it.
    pub admin_password: Option<Secret>,
}

/// Opens (creating on first start) an instance under `dir`.
pub async fn open_embedded(
    dir: &Path,
    config: &crate::config::Config,
    name: &str,
    kind: InstanceKind,
    build: Build,
    technical_account_groups: Vec<String>,
    ims_http: Option<Arc<dyn ims_campaign::connect::ImsHttp>>,
) -> Result<Embedded> {
    let conf_dir = dir.join("conf");
    let now = Now::system();
    let profile_refresh_secs = config.instance_profile_refresh_secs;
    let opts = instance_store_options(
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
    let mut instance =
        Instance::new(Arc::<SqlInstanceStore>::clone(&store), info).with_switches(&loaded.switches);
    if let Some(http) = ims_http {
        let connection = connection_of(dir, name, &loaded.instance, Arc::clone(&http))?;
        instance = instance.with_ims_http(http).with_connection(connection);
    }
    record_loaded(store.as_ref(), name, &loaded, "start").await?;
    let instance = instance.with_config_files(Arc::new(InstanceFiles {
        dir: dir.to_owned(),
        settings: Arc::<SqlInstanceStore>::clone(&store),
    }));
    instance.migration().load_notice().await.map_err(fault)?;
    Ok(Embedded {
        instance,
        store,
        admin_password,
    })
}

async fn record_loaded(settings: &dyn SettingsStore, name: &str, loaded: &Loaded, how: &str) -> Result<()> {
    let value =
        serde_json::json!({"digest": loaded.digest, "at": Now::system().millis(), "by": how, "error": null});
    let audit = Context::new(Now::system(), "system").event(
        "instance.reload",
        name,
        "success",
        serde_json::json!({"by": how, "digest": loaded.digest}),
    );
    settings
        .set_setting(LOADED_SETTING, &value.to_string(), &audit)
        .await?;
    Ok(())
}

/// Records the instance's environment and staging twin unless they are recorded already (an
/// administrator's later choice stays).
pub async fn declare_environment(
    store: &dyn SettingsStore,
    name: &str,
    environment: &str,
    staging_twin: Option<&str>,
) -> Result<()> {
    use ims_campaign::migration::ENVIRONMENT_SETTING;
    if store.setting(ENVIRONMENT_SETTING).await?.is_some() {
        return Ok(());
    }
    set_environment(store, name, environment, staging_twin, "system").await
}

pub async fn set_environment(
    store: &dyn SettingsStore,
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
    /// The instance's store, which its host opened: the reload is recorded in its settings.
    pub settings: Arc<dyn SettingsStore>,
}

#[async_trait::async_trait]
impl ims_campaign::migration::ConfigFiles for InstanceFiles {
    async fn lock_down(&self, instance: &Configuration, allow: &[String]) -> Result<(), String> {
        let (dir, name, allow) = (self.dir.clone(), instance.info().name.clone(), allow.to_vec());
        // The file writer's futures are not `Send` (sqlx's generic executors), which this
        // trait's are: it runs on a blocking thread of its own, driven by the runtime's handle.
        let handle = tokio::runtime::Handle::current();
        tokio::task::spawn_blocking(move || {
            handle.block_on(write_switches(&dir, Some(&name), true, (true, true), allow))
        })
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| format!("{e:#}"))?;
        reload(&self.dir, instance, self.settings.as_ref())
            .await
            .map(drop)
            .map_err(|e| format!("{e:#}"))
    }

    async fn set_ims_account(
        &self,
        instance: &Configuration,
        req: &ims_wire::migration::ImsAccountRequest,
    ) -> Result<serde_json::Value, String> {
        let change = AccountChange {
            instance: instance.info().name.clone(),
            register: false,
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
        };
        let client = Some((req.client_id.clone(), Secret::new(&req.client_secret)));
        let dir = self.dir.clone();
        // As for the lock-down: the writer's futures are not `Send`.
        let handle = tokio::runtime::Handle::current();
        let mut set = tokio::task::spawn_blocking(move || handle.block_on(configure(change, client, &dir)))
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| format!("{e:#}"))?;
        reload(&self.dir, instance, self.settings.as_ref())
            .await
            .map_err(|e| format!("{e:#}"))?;
        // Where the file lies is the host's business, not the caller's.
        if let Some(o) = set.as_object_mut() {
            o.remove("file");
        }
        Ok(set)
    }
}

/// Reads the instance's configuration again and applies it (`SIGHUP`, `ims instance reload`,
/// the operations call). A file that does not read leaves the running state as it was; the error
/// is recorded for the command that asked, logged, and returned as `Some`.
pub async fn reload(
    dir: &Path,
    instance: &Configuration,
    settings: &dyn SettingsStore,
) -> Result<Option<String>> {
    let name = instance.info().name.clone();
    let now = Now::system();
    let read = read_configuration(dir, &name, &instance.info().build).and_then(|loaded| {
        let connection = match instance.ims_http() {
            Some(http) => connection_of(dir, &name, &loaded.instance, Arc::clone(http))?,
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
                .map_err(fault)?;
            if instance.ims_http().is_some() {
                instance.set_connection(connection, &ctx).await.map_err(fault)?;
            }
            record_loaded(settings, &name, &loaded, "reload").await?;
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
            settings
                .set_setting(LOADED_SETTING, &value.to_string(), &audit)
                .await?;
            return Ok(Some(format!("{e:#}")));
        }
    }
    Ok(None)
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

/// `SIGHUP` reads every instance's configuration files again and applies them, as the vendor's
/// `config -reload` does; `ims instance reload` sends it.
pub fn spawn_reload_on_hangup(
    mut hangups: tokio::signal::unix::Signal,
    dir: std::path::PathBuf,
    instances: Vec<(Arc<Instance>, Arc<SqlInstanceStore>)>,
) {
    tokio::spawn(async move {
        while hangups.recv().await.is_some() {
            for (instance, store) in &instances {
                if let Err(e) = reload(&dir, instance.configuration(), store.as_ref()).await {
                    tracing::error!(instance = %instance.info().name, error = %format!("{e:#}"), "reload failed");
                }
            }
        }
    });
}

/// An instance served on its own, as its operations listener sees it.
pub struct ServedInstance {
    pub dir: std::path::PathBuf,
    pub instance: Arc<Instance>,
    pub store: Arc<SqlInstanceStore>,
}

#[async_trait::async_trait]
impl ims_http::instance::ops::InstanceHost for ServedInstance {
    async fn pending_migrations(&self) -> Result<Vec<String>, String> {
        self.store.pending_migrations().await.map_err(|e| e.to_string())
    }

    fn connections(&self) -> ims_identity::store::Connections {
        self.store.connections()
    }

    async fn reload(&self) -> Result<(), String> {
        match reload(&self.dir, self.instance.configuration(), self.store.as_ref()).await {
            Ok(None) => Ok(()),
            Ok(Some(e)) => Err(e),
            Err(e) => Err(format!("{e:#}")),
        }
    }
}

/// How often counted calls are written to the instance's usage summary.
const USAGE_FLUSH_SECS: u64 = 5;

pub async fn usage_flush(instance: Arc<Instance>) {
    let mut tick = tokio::time::interval(std::time::Duration::from_secs(USAGE_FLUSH_SECS));
    let mut ticks: u64 = 0;
    loop {
        tick.tick().await;
        if let Err(e) = instance.sessions().flush_usage().await {
            tracing::warn!(error = %e, "usage flush failed; kept for the next one");
        }
        // About hourly: expired sessions are of no use to anyone.
        ticks += 1;
        if ticks % (3600 / USAGE_FLUSH_SECS) == 1 {
            if let Err(e) = instance.sessions().purge_expired_sessions(Now::system()).await {
                tracing::warn!(error = %e, "purging expired sessions failed");
            }
        }
    }
}

/// Writes what an instance counted since its last flush, as the process ends; an instance that
/// does not answer within 5 s keeps it.
pub async fn flush_usage_at_shutdown(instance: &Instance) {
    match tokio::time::timeout(
        std::time::Duration::from_secs(5),
        instance.sessions().flush_usage(),
    )
    .await
    {
        Ok(Ok(_)) => {}
        Ok(Err(e)) => tracing::warn!(error = %e, "usage could not be flushed at shutdown"),
        Err(_) => {
            tracing::warn!(instance = %instance.info().name, "usage not flushed at shutdown: the instance does not answer")
        }
    }
}

/// The instance accepting the access tokens of the IMS whose issuer is `issuer`, checked against
/// the keys it publishes.
pub fn trusting(instance: Instance, http: Arc<dyn ims_campaign::connect::ImsHttp>, issuer: &str) -> Instance {
    let issuer = issuer.trim_end_matches('/');
    let jwks = ims_campaign::connect::HttpKeys {
        http,
        url: format!("{issuer}/ims/keys"),
    };
    let trusted = ims_campaign::bearer::TrustedIssuer::new(issuer, Arc::new(jwks));
    instance.with_bearer(Arc::new(trusted))
}
