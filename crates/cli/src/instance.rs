//! `ims instance ...`: administration of the instances of an `ims up` data directory: their
//! operators, builds, environments, audit logs and usage, their configuration (the vendor's
//! syntax, the IMS sign-in, the restrictions) and reloading what runs.

mod restrictions;
mod signin;

pub use restrictions::ProbesFailed;
pub use signin::ChecksFailed;

use anyhow::{Context as _, Result};
use std::path::{Path, PathBuf};

use ims_campaign::store::{OperatorStore as _, SettingsStore as _, UsageStore as _};
use ims_campaign::Build;
use ims_core::secret::Secret;
use ims_core::Now;

use crate::conf::{audit_config_change, conf_paths, read_instance_file};
use crate::context::{cli_context, instance_names, open_instance_store, read_up_file};

/// `ims instance config -instance:<name> -setimsoauth:<org-id>/<client-id>/<technical-account-id>/<client-secret>`,
/// the vendor's `nlserver config` syntax: stores the instance's own IMS credential, the secret
/// sealed under the data directory's master key.
fn config_command(data_dir: &Path, args: &[String]) -> Result<String> {
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
    let up = read_up_file(data_dir)?;
    if !up.instances.iter().any(|i| i.name == name) {
        anyhow::bail!("no instance {name:?} in {}", data_dir.display());
    }
    let master = crate::account::master_key(data_dir)?;
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
    crate::conf::write_instance_file(&path, &conf)?;
    println!(
        "IMS credential of {name} stored in {} (secret sealed)",
        path.display()
    );
    Ok(name)
}

/// `ims instance ...`: administration of the instances of an `ims up` data directory.
#[derive(Debug, clap::Subcommand)]
pub enum InstanceCommand {
    /// Run one instance as a service of its own, from configuration (`listen`, `database_url`,
    /// `tls`, `trusted_proxies`, ...) and the configuration files under --data-dir; several
    /// nodes of one instance may share its PostgreSQL schema. SIGHUP reads the files again.
    Serve(crate::instance_serve::ServeArgs),
    /// Operators of an instance.
    #[command(subcommand)]
    Operator(OperatorCommand),
    /// How people sign in to the instance through the IMS: its client, callback URL, association
    /// mask, product context and scopes. The running `ims up` reloads it.
    ImsConfig(signin::ImsConfigArgs),
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
    Restrictions(restrictions::RestrictionsCommand),
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
        password_file: PathBuf,
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

pub async fn command(cmd: InstanceCommand, data_dir: &Path) -> Result<()> {
    match cmd {
        // Run from `main`, with the configuration.
        InstanceCommand::Serve(_) => {}
        InstanceCommand::Config { args } => {
            let name = config_command(data_dir, &args)?;
            audit_config_change(data_dir, &name, serde_json::json!({"set": "imsOAuth"})).await?;
        }
        InstanceCommand::ImsConfig(args) => {
            let name = args.instance.clone();
            let summary = signin::ims_config(args, data_dir).await?;
            audit_config_change(data_dir, &name, summary).await?;
            restrictions::reload_running(data_dir, &[name]).await?;
        }
        InstanceCommand::ImsCheck { instance, json } => signin::ims_check(data_dir, &instance, json).await?,
        InstanceCommand::Restrictions(cmd) => restrictions::command(cmd, data_dir).await?,
        InstanceCommand::Reload { instance } => {
            let names = match instance {
                Some(n) => vec![n],
                None => instance_names(data_dir)?,
            };
            restrictions::reload_running(data_dir, &names).await?;
        }
        InstanceCommand::Environment {
            instance,
            environment,
            staging_twin,
        } => {
            let store = open_instance_store(data_dir, &instance).await?;
            crate::host::set_environment(&store, &instance, &environment, staging_twin.as_deref(), "cli")
                .await?;
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
            let store = open_instance_store(data_dir, &instance).await?;
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
            let store = open_instance_store(data_dir, &instance).await?;
            let started = std::time::Instant::now();
            let n = crate::seed::scale_population(&store, operators, Now::system()).await?;
            println!(
                "{n} operators added to {instance} in {:.1} s",
                started.elapsed().as_secs_f64()
            );
            store.close().await;
        }
        InstanceCommand::Upgrade { instance, to } => upgrade(data_dir, &instance, &to).await?,
        InstanceCommand::Operator(OperatorCommand::Create {
            instance,
            login,
            password_file,
            groups,
            email,
            label,
            json,
        }) => {
            let text = std::fs::read_to_string(&password_file)
                .with_context(|| format!("cannot read {}", password_file.display()))?;
            let edit = ims_campaign::operators::OperatorEdit {
                login: Some(login.clone()),
                label,
                email: Some(email),
                password: Some(Secret::new(text.lines().next().unwrap_or_default())),
                groups: Some(groups),
                ..Default::default()
            };
            create_operator(data_dir, &instance, &login, edit, json).await?;
        }
        InstanceCommand::Usage {
            instance,
            calls,
            login,
            limit,
            json,
        } => usage(data_dir, &instance, calls, login.as_deref(), limit, json).await?,
    }
    Ok(())
}

/// Moves an instance to a newer build (recorded; the instance applies it at its next start).
async fn upgrade(data_dir: &Path, instance: &str, to: &str) -> Result<()> {
    let to: Build = to.parse()?;
    let store = open_instance_store(data_dir, instance).await?;
    let from: Build = store
        .setting("build")
        .await?
        .ok_or_else(|| anyhow::anyhow!("instance {instance} has no recorded build"))?
        .parse()?;
    let changes = from.upgrade_changes(&to).map_err(|e| anyhow::anyhow!(e))?;
    let audit = cli_context().event(
        "instance.upgrade",
        instance,
        "success",
        serde_json::json!({"from": from.to_string(), "to": to.to_string()}),
    );
    store.set_setting("build", &to.to_string(), &audit).await?;
    println!("{instance}: {from} -> {to} (restart to apply)");
    for c in changes {
        println!("  - {c}");
    }
    store.close().await;
    Ok(())
}

/// Creates a native operator through the one write path every operator change takes, under the
/// restrictions the instance's files put in effect.
async fn create_operator(
    data_dir: &Path,
    instance: &str,
    login: &str,
    edit: ims_campaign::operators::OperatorEdit,
    json: bool,
) -> Result<()> {
    use ims_campaign::operators::{self, OperatorKey, WriteMode, Written};
    let store = open_instance_store(data_dir, instance).await?;
    let ctx = cli_context();
    let restrictions = crate::conf::effective(data_dir, instance).await?;
    let written = operators::save(
        &store,
        &restrictions,
        &OperatorKey::Login(login.to_owned()),
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
    Ok(())
}

/// The recorded sign-ins (or, with `calls`, the running totals of calls), newest first.
async fn usage(
    data_dir: &Path,
    instance: &str,
    calls: bool,
    login: Option<&str>,
    limit: u32,
    json: bool,
) -> Result<()> {
    let store = open_instance_store(data_dir, instance).await?;
    if calls {
        let rows = store.usage_summary(login, limit).await?;
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
    } else {
        let events = store.usage(login, limit).await?;
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
    }
    store.close().await;
    Ok(())
}
