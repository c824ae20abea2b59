//! `ims profile ...` and `ims role ...`: product profiles of the product instances, and
//! administrator roles, on the deployment's database (they work while `ims up` runs).

use anyhow::{anyhow, Result};

use ims_identity::directory::{AdminRole, RoleGrant, CAMPAIGN_PRODUCT_CONTEXT};
use ims_identity::store::{DirectoryStore as _, UserStore as _};

use crate::config::Config;
use crate::context::{cli_context, open_store, org, Target};

#[derive(Debug, clap::Subcommand)]
pub enum ProfileCommand {
    /// Create a product profile granting access to one product instance.
    Create {
        /// The product instance (for Campaign: the instance's name, e.g. `marketing`).
        #[arg(long)]
        instance: String,
        #[arg(long, default_value = CAMPAIGN_PRODUCT_CONTEXT)]
        product_context: String,
        #[arg(long)]
        name: String,
        /// A permission item (repeatable; for Campaign, a named right).
        #[arg(long = "permission")]
        permissions: Vec<String>,
        /// Most members (none: no limit).
        #[arg(long)]
        quota: Option<i64>,
    },
    /// Product profiles and user groups, with their member counts.
    List {
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, clap::Subcommand)]
pub enum RoleCommand {
    /// Give a person an administrator role.
    Grant(RoleArgs),
    /// Take an administrator role away.
    Revoke(RoleArgs),
}

#[derive(Debug, clap::Args)]
pub struct RoleArgs {
    #[arg(long)]
    email: String,
    /// system_admin, product_admin, profile_admin, user_group_admin or developer.
    #[arg(long)]
    role: String,
    /// For product_admin a product context; for profile_admin and user_group_admin a group name.
    #[arg(long)]
    target: Option<String>,
}

pub async fn profile(cmd: ProfileCommand, target: &Target, config: Config) -> Result<()> {
    let config = target.config(config)?;
    let store = open_store(&config).await?;
    let org = org(&store, target.org.as_deref()).await?;
    match cmd {
        ProfileCommand::Create {
            instance,
            product_context,
            name,
            permissions,
            quota,
        } => {
            let instances = store.product_instances(&org.org_id).await?;
            let pi = instances
                .iter()
                .find(|i| i.name == instance && i.product_context == product_context)
                .ok_or_else(|| {
                    anyhow!(
                        "no product instance {instance} of {product_context} (known: {})",
                        instances
                            .iter()
                            .map(|i| format!("{}/{}", i.product_context, i.name))
                            .collect::<Vec<_>>()
                            .join(", ")
                    )
                })?;
            let g = ims_identity::service::directory::create_product_profile(
                store.as_ref(),
                pi,
                &name,
                permissions,
                quota,
                &cli_context(),
            )
            .await?;
            println!(
                "product profile {:?} created for {}/{}",
                g.name, pi.product_context, pi.name
            );
        }
        ProfileCommand::List { json } => {
            let instances = store.product_instances(&org.org_id).await?;
            let groups = store.groups(&org.org_id).await?;
            if json {
                let v: Vec<_> = groups
                    .iter()
                    .map(|(g, n)| ims_identity::service::directory::group_json(g, *n, &instances))
                    .collect();
                println!("{}", serde_json::to_string_pretty(&v)?);
            } else {
                for (g, n) in &groups {
                    println!("{:<16} {:<40} {n} member(s)", g.kind.as_str(), g.name);
                }
            }
        }
    }
    store.close().await;
    Ok(())
}

pub async fn role(cmd: RoleCommand, target: &Target, config: Config) -> Result<()> {
    let config = target.config(config)?;
    let store = open_store(&config).await?;
    let org = org(&store, target.org.as_deref()).await?;
    let (args, held) = match cmd {
        RoleCommand::Grant(a) => (a, true),
        RoleCommand::Revoke(a) => (a, false),
    };
    let role = AdminRole::parse(&args.role).ok_or_else(|| {
        anyhow!(
            "--role is one of {}",
            AdminRole::ALL.map(AdminRole::as_str).join(", ")
        )
    })?;
    let user = store
        .user_by_email(&org.org_id, &args.email)
        .await?
        .ok_or_else(|| anyhow!("no user with email {}", args.email))?;
    let target_value = match (role.targeted(), args.target) {
        (false, None) => String::new(),
        (false, Some(_)) => anyhow::bail!(
            "{} is held for the whole organisation: no --target",
            role.as_str()
        ),
        (true, None) => anyhow::bail!("{} needs --target", role.as_str()),
        (true, Some(t)) if role == AdminRole::ProductAdmin => t,
        (true, Some(t)) => {
            let groups = store.groups(&org.org_id).await?;
            groups
                .iter()
                .find(|(g, _)| g.name.eq_ignore_ascii_case(&t))
                .map(|(g, _)| g.id.to_string())
                .ok_or_else(|| anyhow!("no group named {t:?}"))?
        }
    };
    let grant = RoleGrant {
        user_id: user.user_id.clone(),
        role,
        target: target_value,
    };
    let ctx = cli_context();
    let audit = ctx.event(
        if held { "role.grant" } else { "role.revoke" },
        &user.email,
        "success",
        serde_json::json!({"role": role.as_str(), "target": grant.target}),
    );
    store.set_role(&grant, held, ctx.now, &audit).await?;
    println!(
        "{} {} {}",
        user.email,
        if held { "now holds" } else { "no longer holds" },
        role.label()
    );
    store.close().await;
    Ok(())
}
