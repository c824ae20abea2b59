//! Administration commands that act on a deployment's store directly: credentials, keys, audit
//! log, schema. They work while the servers run (SQLite in WAL mode, PostgreSQL as usual).

use anyhow::{anyhow, Result};
use std::sync::Arc;

use ims_core::audit::Context;
use ims_core::Now;
use ims_http::ims::admin::{secret_body, summary, DEFAULT_SCOPES};
use ims_identity::credentials::Credentials;
use ims_identity::developer::Service;
use ims_identity::service::Ims;
use ims_identity::store::AuditQuery;
use ims_wire::{CredentialSecret, CredentialSummary};

use crate::config::Config;
use crate::context::{cli_context, open_store, org, Target};
use crate::remote::CredentialAdmin;

fn print_secret(out: &CredentialSecret, json: bool) -> Result<()> {
    if json {
        println!("{}", serde_json::to_string_pretty(out)?);
    } else {
        println!("client_id               {}", out.client_id);
        println!(
            "client_secret           {}   (shown once: store it now)",
            out.client_secret
        );
        println!("secret_id               {}", out.secret_id);
        println!("technical_account_id    {}", out.technical_account_id);
        println!("technical_account_email {}", out.technical_account_email);
        println!("org_id                  {}", out.org_id);
        println!("scopes                  {}", out.scopes.join(","));
    }
    Ok(())
}

fn print_list(list: &[CredentialSummary], json: bool) -> Result<()> {
    if json {
        println!("{}", serde_json::to_string_pretty(list)?);
    } else {
        println!("{:<34} {:<9} {:<8} name", "client_id", "state", "secrets");
        for c in list {
            let state = if c.disabled { "disabled" } else { "enabled" };
            println!(
                "{:<34} {:<9} {:<8} {}",
                c.client_id,
                state,
                c.secrets.len(),
                c.name
            );
        }
    }
    Ok(())
}

#[derive(Debug, clap::Subcommand)]
pub enum CredentialCommand {
    /// Create a technical account with its first client secret.
    Create {
        #[arg(long)]
        name: String,
        /// Scope the credential may request (repeatable; default openid, AdobeID, read_organizations).
        #[arg(long = "scope")]
        scopes: Vec<String>,
        /// An API the credential is subscribed to (repeatable), with the scopes the subscription
        /// brings: `campaign` (the Campaign API), `io-management` (the Developer Console API),
        /// `user-management` (the User Management API).
        #[arg(long = "service", value_parser = Service::ALL.map(|s| s.cli_name))]
        services: Vec<String>,
        #[arg(long)]
        json: bool,
    },
    /// List credentials (secrets appear as hints only).
    List {
        #[arg(long)]
        json: bool,
    },
    /// Disable a credential: its secrets stop working and its tokens stop validating at once.
    Disable {
        #[arg(long)]
        client_id: String,
    },
    /// Enable a disabled credential again.
    Enable {
        #[arg(long)]
        client_id: String,
    },
    /// Add or remove client secrets (rotation: add the new one, move clients, remove the old one).
    #[command(subcommand)]
    Secret(SecretCommand),
}

#[derive(Debug, clap::Subcommand)]
pub enum SecretCommand {
    Add {
        #[arg(long)]
        client_id: String,
        /// Make the secret expire after this many days.
        #[arg(long)]
        expires_in_days: Option<u32>,
        #[arg(long)]
        json: bool,
    },
    Remove {
        #[arg(long)]
        client_id: String,
        #[arg(long)]
        secret_id: String,
    },
}

/// On the database directly, as the local operator.
struct Local {
    creds: Credentials,
    org_id: String,
    ctx: Context,
}

#[async_trait::async_trait]
impl CredentialAdmin for Local {
    async fn create(
        &self,
        name: &str,
        scopes: Option<Vec<String>>,
        services: &[Service],
    ) -> Result<CredentialSecret> {
        let scopes = scopes.unwrap_or_else(|| DEFAULT_SCOPES.iter().map(|s| s.to_string()).collect());
        Ok(secret_body(
            &self
                .creds
                .create_credential(&self.org_id, name, scopes, services, &self.ctx)
                .await?,
        ))
    }

    async fn list(&self) -> Result<Vec<CredentialSummary>> {
        let all = self.creds.credentials(&self.org_id).await?;
        Ok(all.into_iter().map(|(c, s)| summary(c, s)).collect())
    }

    async fn set_disabled(&self, client_id: &str, disabled: bool) -> Result<()> {
        Ok(self
            .creds
            .set_credential_disabled(client_id, disabled, &self.ctx)
            .await?)
    }

    async fn add_secret(&self, client_id: &str, expires_in_days: Option<u32>) -> Result<CredentialSecret> {
        let expires = expires_in_days.map(|d| self.ctx.now.plus_secs(i64::from(d) * 86_400));
        Ok(secret_body(
            &self.creds.add_secret(client_id, expires, &self.ctx).await?,
        ))
    }

    async fn remove_secret(&self, client_id: &str, secret_id: &str) -> Result<()> {
        Ok(self.creds.remove_secret(client_id, secret_id, &self.ctx).await?)
    }
}

pub async fn credential(cmd: CredentialCommand, target: &Target, config: Config) -> Result<()> {
    if let Some(url) = &target.url {
        let remote = target.remote(url, &config)?;
        return run_credential(cmd, &remote).await;
    }
    let config = target.config(config)?;
    let store = open_store(&config).await?;
    let org = org(&store, target.org.as_deref()).await?;
    let local = Local {
        creds: Credentials::new(Arc::<ims_store::SqlStore>::clone(&store), config.domain.clone()),
        org_id: org.org_id,
        ctx: cli_context(),
    };
    let result = run_credential(cmd, &local).await;
    store.close().await;
    result
}

async fn run_credential(cmd: CredentialCommand, admin: &dyn CredentialAdmin) -> Result<()> {
    match cmd {
        CredentialCommand::Create {
            name,
            scopes,
            services,
            json,
        } => {
            let services: Vec<Service> = services
                .iter()
                .map(|name| {
                    Service::by_cli_name(name).ok_or_else(|| anyhow::anyhow!("unknown service {name:?}"))
                })
                .collect::<Result<_>>()?;
            // A subscription brings its own scopes; the defaults are for a bare credential.
            let scopes = (!scopes.is_empty() || !services.is_empty()).then_some(scopes);
            print_secret(&admin.create(&name, scopes, &services).await?, json)?;
        }
        CredentialCommand::List { json } => print_list(&admin.list().await?, json)?,
        CredentialCommand::Disable { client_id } => {
            admin.set_disabled(&client_id, true).await?;
            println!("credential {client_id} disabled");
        }
        CredentialCommand::Enable { client_id } => {
            admin.set_disabled(&client_id, false).await?;
            println!("credential {client_id} enabled");
        }
        CredentialCommand::Secret(SecretCommand::Add {
            client_id,
            expires_in_days,
            json,
        }) => {
            print_secret(&admin.add_secret(&client_id, expires_in_days).await?, json)?;
        }
        CredentialCommand::Secret(SecretCommand::Remove { client_id, secret_id }) => {
            admin.remove_secret(&client_id, &secret_id).await?;
            println!("secret {secret_id} of {client_id} removed");
        }
    }
    Ok(())
}

#[derive(Debug, clap::Subcommand)]
pub enum KeysCommand {
    /// Add a signing key: published now, signing after key_publish_secs (or at once).
    Rotate {
        /// RS256, ES256 or EdDSA (default: the configured signing_alg).
        #[arg(long)]
        alg: Option<String>,
        /// Sign with the new key at once (verifiers that cached the JWKS refetch on the new kid).
        #[arg(long)]
        immediate: bool,
    },
    /// List signing keys and their state.
    List {
        #[arg(long)]
        json: bool,
    },
}

pub async fn keys(cmd: KeysCommand, target: &Target, config: Config) -> Result<()> {
    let config = target.config(config)?;
    let store = open_store(&config).await?;
    let ctx = cli_context();
    let ims = Ims::start(
        Arc::<ims_store::SqlStore>::clone(&store),
        config.master_key()?,
        config.settings("")?,
        &ctx,
    )
    .await?;
    match cmd {
        KeysCommand::Rotate { alg, immediate } => {
            let alg = alg
                .map(|a| a.parse())
                .transpose()
                .map_err(|e: ims_core::Error| anyhow!("{e}"))?;
            let kid = ims.tokens().rotate_key(alg, immediate, &ctx).await?;
            println!("new signing key {kid}");
        }
        KeysCommand::List { json } => {
            let states = ims.tokens().key_states(ctx.now).await?;
            if json {
                let v: Vec<serde_json::Value> = states
                    .iter()
                    .map(|(kid, alg, act, signing, published)| {
                        serde_json::json!({"kid": kid, "alg": alg.as_str(), "activates_at": act.millis(), "signing": signing, "published": published})
                    })
                    .collect();
                println!("{}", serde_json::to_string_pretty(&v)?);
            } else {
                for (kid, alg, act, signing, published) in states {
                    let state = if signing {
                        "signing"
                    } else if published {
                        "published"
                    } else {
                        "retired"
                    };
                    println!("{kid:<24} {alg:<6} {state:<10} activates_at={}", act.millis());
                }
            }
        }
    }
    store.close().await;
    Ok(())
}

pub async fn audit(
    target: &Target,
    config: Config,
    action: Option<String>,
    limit: u32,
    json: bool,
) -> Result<()> {
    let config = target.config(config)?;
    let store = open_store(&config).await?;
    let events = ims_core::audit::AuditStore::audit(
        &*store,
        &AuditQuery {
            action_prefix: action,
            limit,
        },
    )
    .await?;
    if json {
        println!("{}", serde_json::to_string_pretty(&events)?);
    } else {
        for e in events {
            println!(
                "{} {:<28} {:<8} actor={} target={} source={} request={} {}",
                e.at.millis(),
                e.action,
                e.outcome,
                e.actor,
                e.target,
                e.source.unwrap_or_default(),
                e.request_id.unwrap_or_default(),
                e.details
            );
        }
    }
    store.close().await;
    Ok(())
}

pub async fn db(migrate: bool, target: &Target, config: Config) -> Result<()> {
    let mut config = target.config(config)?;
    config.auto_migrate = false;
    let store = open_store(&config).await?;
    let pending = ims_identity::store::SchemaStore::pending_migrations(&*store).await?;
    if migrate {
        let done = store.migrate(Now::system()).await?;
        println!("applied {} migration(s)", done.len());
    } else if pending.is_empty() {
        println!("schema up to date");
    } else {
        println!("pending migrations: {}", pending.join(", "));
    }
    store.close().await;
    Ok(())
}

pub async fn backup(target: &Target, config: Config, to: &std::path::Path) -> Result<()> {
    let config = target.config(config)?;
    let store = open_store(&config).await?;
    let path = to
        .to_str()
        .ok_or_else(|| anyhow!("the backup path must be UTF-8"))?;
    store.backup_to(path).await?;
    store.close().await;
    println!("database copied to {path}; restoring it also needs the master key");
    Ok(())
}
