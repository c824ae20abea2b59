//! An instance's configuration files, as the vendor lays them out: `conf/serverConf.xml`,
//! which the instances share, and `conf/config-<name>.xml`, each instance's own. Read strictly
//! (a start stops on an error, a reload keeps what it had), the lock-down switches written in
//! either, and what the instance's build and its files make of the restrictions.

use anyhow::{Context as _, Result};
use std::path::{Path, PathBuf};

use ims_campaign::config::{self, ImsSwitches, InstanceConf};
use ims_campaign::restrictions::Restrictions;
use ims_campaign::store::SettingsStore as _;
use ims_campaign::Build;
use ims_core::secret;

use crate::context::{cli_context, instance_names, open_instance_store};

/// The configuration of one instance as read from its files.
pub struct Loaded {
    /// `serverConf.xml` with `config-<name>.xml` laid over it.
    pub switches: ImsSwitches,
    /// The instance file alone.
    pub instance: InstanceConf,
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
    let shared = config::read_server_conf(&server_conf.display().to_string(), &text, build)?;
    let instance_text = match std::fs::read_to_string(&instance_conf) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", instance_conf.display())),
    };
    let instance = if instance_text.is_empty() {
        InstanceConf::default()
    } else {
        config::read_instance_conf(&instance_conf.display().to_string(), &instance_text, build)?
    };
    Ok(Loaded {
        switches: instance.switches.over(&shared),
        digest: secret::digest_hex(&format!("{text}\u{0}{instance_text}")),
        instance,
    })
}

/// `conf/serverConf.xml` (shared by the instances) and `conf/config-<name>.xml`.
pub fn conf_paths(dir: &Path, name: &str) -> (PathBuf, PathBuf) {
    let conf = dir.join("conf");
    (
        conf.join("serverConf.xml"),
        conf.join(format!("config-{name}.xml")),
    )
}

/// The instance setting where a start or reload records which configuration it applied (or
/// why it could not), for `ims instance reload` and `restrictions status` to read.
pub const LOADED_SETTING: &str = "config.loaded";

/// `config-<name>.xml` as it stands (empty when absent). Read without a build: whether its
/// switches suit the instance is decided where they are applied.
pub fn read_instance_file(path: &Path) -> Result<InstanceConf> {
    match std::fs::read_to_string(path) {
        Ok(text) => Ok(config::read_instance_conf(
            &path.display().to_string(),
            &text,
            &Build::NEWEST,
        )?),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Default::default()),
        Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
    }
}

/// Writes `conf` into the instance's file at `path` (owner-only): its `imsConfig` element
/// replaced, everything else in the file kept.
pub fn write_instance_file(path: &Path, conf: &InstanceConf) -> Result<()> {
    let existing = match std::fs::read_to_string(path) {
        Ok(text) => Some(text),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
    };
    crate::files::write_private(
        path,
        config::write_instance_conf(existing.as_deref(), conf).as_bytes(),
    )
}

/// Records a configuration change made outside the database in the instance's audit log.
pub async fn audit_config_change(data_dir: &Path, name: &str, details: serde_json::Value) -> Result<()> {
    use ims_core::audit::AuditStore as _;
    let store = open_instance_store(data_dir, name).await?;
    store
        .append_audit(&cli_context().event("instance.config", name, "success", details))
        .await?;
    store.close().await;
    Ok(())
}

/// The restrictions an instance applies with its files as they are now.
pub async fn effective(data_dir: &Path, name: &str) -> Result<Restrictions> {
    let build = stored_build(data_dir, name).await?;
    let loaded = read_configuration(data_dir, name, &build)?;
    Ok(Restrictions::effective(&build, &loaded.switches))
}

/// Build recorded for an instance.
pub async fn stored_build(data_dir: &Path, name: &str) -> Result<Build> {
    let store = open_instance_store(data_dir, name).await?;
    let build = store
        .setting("build")
        .await?
        .ok_or_else(|| anyhow::anyhow!("instance {name} has no recorded build"))?
        .parse()?;
    store.close().await;
    Ok(build)
}

/// Edits the switches (both files' forms checked against every instance's build before
/// anything is written) and audits the change; what runs is not told. Returns the file written
/// and the instances it applies to.
pub async fn write_switches(
    data_dir: &Path,
    instance: Option<&str>,
    on: bool,
    (ui, api): (bool, bool),
    allow: Vec<String>,
) -> Result<(PathBuf, Vec<String>)> {
    let targets = match instance {
        Some(name) => vec![name.to_owned()],
        None => instance_names(data_dir)?,
    };
    let (server_conf, _) = conf_paths(data_dir, "");
    let shared_text =
        std::fs::read_to_string(&server_conf).unwrap_or_else(|_| config::DEFAULT_SERVER_CONF.to_owned());
    let shared = config::read_server_conf(&server_conf.display().to_string(), &shared_text, &Build::NEWEST)?;
    let change = |current: &ImsSwitches| {
        let mut next = current.clone();
        if ui {
            next.operator_management_restricted = on;
        }
        if api {
            next.native_api_disabled = on;
        }
        if !allow.is_empty() {
            next.allow_list = allow.clone();
        }
        next
    };
    // What to write, checked against the build of every instance it applies to before anything
    // is written.
    let (path, text, private) = match instance {
        None => (
            server_conf.clone(),
            config::write_server_conf(Some(&shared_text), &change(&shared)),
            false,
        ),
        Some(name) => {
            let (_, path) = conf_paths(data_dir, name);
            let mut conf = read_instance_file(&path)?;
            let next = change(&conf.switches.over(&shared));
            let mut elements = conf.switches.clone();
            if ui {
                elements.operator_management_restricted = Some(next.operator_management_restricted);
            }
            if api || !allow.is_empty() {
                elements.native_api = Some((next.native_api_disabled, next.allow_list));
            }
            conf.switches = elements;
            let existing = std::fs::read_to_string(&path).ok();
            (
                path,
                config::write_instance_conf(existing.as_deref(), &conf),
                true,
            )
        }
    };
    for name in &targets {
        let build = stored_build(data_dir, name).await?;
        let check = match instance {
            None => config::read_server_conf(&path.display().to_string(), &text, &build).map(drop),
            Some(_) => config::read_instance_conf(&path.display().to_string(), &text, &build).map(drop),
        };
        check.map_err(|e| anyhow::anyhow!("instance {name} (build {build}): {}", e.message))?;
    }
    if private {
        crate::files::write_private(&path, text.as_bytes())?;
    } else {
        crate::files::write_public(&path, text.as_bytes())?;
    }
    let what = serde_json::json!({
        "file": path.file_name().map(|f| f.to_string_lossy().into_owned()),
        "restrictions": if on { "enable" } else { "disable" },
        "operator_management": ui,
        "native_api": api,
        "allow_list": allow,
    });
    for name in &targets {
        audit_config_change(data_dir, name, what.clone()).await?;
    }
    Ok((path, targets))
}
