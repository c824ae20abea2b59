//! `ims user ...` and `ims client ...`: people and the applications that sign them in, on the
//! deployment's database (they work while `ims up` runs).

use anyhow::{anyhow, Context as _, Result};
use std::path::PathBuf;
use std::sync::Arc;

use ims_core::secret::Secret;
use ims_identity::credentials::Credentials;
use ims_identity::links::LinkPurpose;
use ims_identity::model::{ClientType, IdentityType, UserStatus};
use ims_identity::people::{self, NewUser, UserChange};
use ims_identity::store::{Store, UserStore as _};

use crate::config::Config;
use crate::context::{cli_context, open_store, org, Target};

#[derive(Debug, clap::Subcommand)]
pub enum UserCommand {
    /// Create a person in the organisation.
    Create {
        #[arg(long)]
        email: String,
        /// File whose first line is the password (none: the person cannot sign in with one yet).
        #[arg(long)]
        password_file: Option<PathBuf>,
        #[arg(long, default_value = "")]
        first_name: String,
        #[arg(long, default_value = "")]
        last_name: String,
        /// Two-letter ISO 3166 country code.
        #[arg(long)]
        country: Option<String>,
        /// adobeID, enterpriseID or federatedID.
        #[arg(long = "type", default_value = "adobeID")]
        identity_type: String,
        #[arg(long)]
        json: bool,
    },
    /// Stop a person signing in; ends their sessions and refresh tokens.
    Disable {
        #[arg(long)]
        email: String,
    },
    Enable {
        #[arg(long)]
        email: String,
    },
    /// End every browser session and refresh token of a person now.
    EndSessions {
        #[arg(long)]
        email: String,
    },
    /// Set a new password (ends sessions and refresh tokens).
    SetPassword {
        #[arg(long)]
        email: String,
        #[arg(long)]
        password_file: PathBuf,
    },
    /// A one-time link (24 hours) where the person chooses a new password; hand it over yourself.
    ResetLink {
        #[arg(long)]
        email: String,
    },
    /// Enrol a person in one-time codes (TOTP); prints the secret and recovery codes once.
    EnrolTotp {
        #[arg(long)]
        email: String,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, clap::Subcommand)]
pub enum ClientCommand {
    /// Register an application that signs people in (authorization code with PKCE).
    Create {
        #[arg(long)]
        name: String,
        /// Redirect URI (repeatable): https, http on loopback, or a private-use scheme.
        #[arg(long = "redirect-uri", required = true)]
        redirect_uris: Vec<String>,
        /// A browser or native application that keeps no secret.
        #[arg(long)]
        public: bool,
        /// One of our own applications: no consent asked.
        #[arg(long)]
        first_party: bool,
        /// Scope it may request (repeatable; default openid, email, profile, AdobeID).
        #[arg(long = "scope")]
        scopes: Vec<String>,
        /// Where it hears that a person signed out (OpenID Connect back-channel logout).
        #[arg(long)]
        backchannel_logout_uri: Option<String>,
        #[arg(long)]
        json: bool,
    },
}

fn read_password(path: &PathBuf) -> Result<Secret> {
    let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    Ok(Secret::new(text.lines().next().unwrap_or_default()))
}

pub async fn user(cmd: UserCommand, target: &Target, config: Config) -> Result<()> {
    let config = target.config(config)?;
    let store = open_store(&config).await?;
    let org = org(&store, target.org.as_deref()).await?;
    let ctx = cli_context();
    let dyn_store: &dyn Store = store.as_ref();
    let find = |email: String| {
        let store = Arc::clone(&store);
        let org_id = org.org_id.clone();
        async move {
            store
                .user_by_email(&org_id, &email)
                .await?
                .ok_or_else(|| anyhow!("no user with email {email}"))
        }
    };
    match cmd {
        UserCommand::Create {
            email,
            password_file,
            first_name,
            last_name,
            country,
            identity_type,
            json,
        } => {
            let identity_type = IdentityType::parse(&identity_type)
                .ok_or_else(|| anyhow!("--type is adobeID, enterpriseID or federatedID"))?;
            let password = password_file.as_ref().map(read_password).transpose()?;
            let new = NewUser {
                email,
                first_name,
                last_name,
                country,
                identity_type,
                password,
            };
            let user = people::create_user(dyn_store, &org.org_id, new, &ctx).await?;
            let out = serde_json::json!({"user_id": user.user_id, "email": user.email, "identity_type": user.identity_type.as_str(), "org_id": user.org_id});
            if json {
                println!("{}", serde_json::to_string_pretty(&out)?);
            } else {
                println!("user {} ({}) created", user.email, user.user_id);
            }
        }
        UserCommand::Disable { email } => {
            let u = find(email).await?;
            people::change_user(
                dyn_store,
                &u.user_id,
                UserChange::SetStatus(UserStatus::Disabled),
                &ctx,
            )
            .await?;
            println!("{} disabled; sessions and refresh tokens ended", u.email);
        }
        UserCommand::Enable { email } => {
            let u = find(email).await?;
            people::change_user(
                dyn_store,
                &u.user_id,
                UserChange::SetStatus(UserStatus::Active),
                &ctx,
            )
            .await?;
            println!("{} enabled", u.email);
        }
        UserCommand::EndSessions { email } => {
            let u = find(email).await?;
            people::change_user(dyn_store, &u.user_id, UserChange::EndSessions, &ctx).await?;
            println!("sessions and refresh tokens of {} ended", u.email);
        }
        UserCommand::SetPassword { email, password_file } => {
            let u = find(email).await?;
            let p = read_password(&password_file)?;
            people::change_user(dyn_store, &u.user_id, UserChange::SetPassword(p), &ctx).await?;
            println!("password of {} set; sessions and refresh tokens ended", u.email);
        }
        UserCommand::ResetLink { email } => {
            let u = find(email).await?;
            let data_dir = match (&target.data_dir, &target.database_url) {
                (Some(dir), _) => Some(dir.clone()),
                (None, None) => Some(PathBuf::from("ims-data")),
                (None, Some(_)) => None,
            };
            let base = data_dir
                .and_then(|dir| crate::context::read_up_file(&dir).ok().map(|up| up.ims_url))
                .or_else(|| config.public_url.clone())
                .unwrap_or_default();
            // Only a link that leads somewhere is mailed.
            let mailed = (!base.is_empty()).then_some(people::Mailed {
                base_url: &base,
                org_name: &org.name,
            });
            let token = people::password_link(dyn_store, &u, LinkPurpose::Reset, mailed, &ctx).await?;
            println!("{}/ims/reset/{}", base.trim_end_matches('/'), token.expose());
            match mailed {
                Some(_) => eprintln!("(works once, for 24 hours; also mailed to {})", u.email),
                None => eprintln!(
                    "(works once, for 24 hours; not mailed, since the IMS's address is unknown: hand it to {})",
                    u.email
                ),
            }
        }
        UserCommand::EnrolTotp { email, json } => {
            let u = find(email).await?;
            let master = config.master_key()?;
            let e = people::enrol_totp(dyn_store, &master, &u.user_id, &org.name, &ctx).await?;
            let codes: Vec<&str> = e.recovery_codes.iter().map(|c| c.expose()).collect();
            if json {
                let out = serde_json::json!({"user_id": u.user_id, "secret": e.secret_base32, "otpauth_uri": e.otpauth_uri, "recovery_codes": codes});
                println!("{}", serde_json::to_string_pretty(&out)?);
            } else {
                println!("secret          {}   (shown once)", e.secret_base32);
                println!("otpauth URI     {}", e.otpauth_uri);
                println!("recovery codes  {}", codes.join(" "));
            }
        }
    }
    store.close().await;
    Ok(())
}

/// Scopes a people client may request unless told otherwise.
pub const DEFAULT_PEOPLE_SCOPES: &[&str] = &["openid", "email", "profile", "AdobeID"];

pub async fn client(cmd: ClientCommand, target: &Target, config: Config) -> Result<()> {
    let config = target.config(config)?;
    let store = open_store(&config).await?;
    let org = org(&store, target.org.as_deref()).await?;
    let ctx = cli_context();
    match cmd {
        ClientCommand::Create {
            name,
            redirect_uris,
            public,
            first_party,
            scopes,
            backchannel_logout_uri,
            json,
        } => {
            if let Some(uri) = &backchannel_logout_uri {
                ims_identity::oidc::check_redirect_uri_registration(uri)?;
            }
            let creds = Credentials::new(Arc::<ims_store::SqlStore>::clone(&store), config.domain.clone());
            let scopes = if scopes.is_empty() {
                DEFAULT_PEOPLE_SCOPES.iter().map(|s| s.to_string()).collect()
            } else {
                scopes
            };
            let kind = if public {
                ClientType::Public
            } else {
                ClientType::Confidential
            };
            let (client, secret) = creds
                .create_people_client(
                    &org.org_id,
                    ims_identity::credentials::NewPeopleClient {
                        name: &name,
                        client_type: kind,
                        redirect_uris,
                        scopes,
                        first_party,
                    },
                    &ctx,
                )
                .await?;
            if let Some(uri) = &backchannel_logout_uri {
                crate::context::set_backchannel_logout_uri(store.as_ref(), &client.client_id, uri, &ctx)
                    .await?;
            }
            let mut out = serde_json::json!({
                "client_id": client.client_id,
                "client_type": kind.as_str(),
                "redirect_uris": client.redirect_uris,
                "scopes": client.scopes,
                "org_id": client.org_id,
            });
            if let (Some(s), Some(obj)) = (&secret, out.as_object_mut()) {
                obj.insert("client_secret".into(), serde_json::json!(s.expose()));
            }
            if json {
                println!("{}", serde_json::to_string_pretty(&out)?);
            } else {
                println!("client_id      {}", client.client_id);
                if let Some(s) = &secret {
                    println!("client_secret  {}   (shown once: store it now)", s.expose());
                }
                println!("redirect URIs  {}", client.redirect_uris.join(" "));
            }
        }
    }
    store.close().await;
    Ok(())
}
