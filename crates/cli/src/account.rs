//! An instance's IMS sign-in configuration in its files ("Connect with IMS"): the
//! configuration in effect built from the instance's file (secrets unsealed with the data
//! directory's master key), and the writer of that configuration that `ims instance ims-config`
//! and the migration API both use, which can register the instance's client at the IMS.

use anyhow::{anyhow, bail, Context as _, Result};
use std::path::Path;
use std::sync::Arc;

use ims_campaign::config::InstanceConf;
use ims_campaign::connect::{self, ImsAccount, ImsHttp};
use ims_campaign::signin::Connection;
use ims_core::keys::MasterKey;
use ims_core::secret::Secret;
use ims_wire::association::AssociationMask;

use crate::conf::{conf_paths, read_instance_file};
use crate::context::{cli_context, read_up_file, Target};

/// The data directory's master key, which seals the secrets of the instances' files.
pub fn master_key(dir: &Path) -> Result<MasterKey> {
    let text =
        std::fs::read_to_string(dir.join("master.key")).context("the data directory has no master.key")?;
    MasterKey::parse(&text).map_err(|e| anyhow!("{e}"))
}

/// The label a sealed secret of an instance's IMS configuration is bound to.
pub fn account_label(name: &str) -> String {
    format!("imsaccount:{name}")
}

fn unseal(master: &MasterKey, label: &str, sealed: &str) -> Result<Secret> {
    let body = sealed
        .strip_prefix("enc:")
        .ok_or_else(|| anyhow!("the secret is not sealed"))?;
    let bytes = master
        .open(label, body)
        .map_err(|e| anyhow!("the secret does not open with this data directory's master key: {e}"))?;
    let text = std::str::from_utf8(&bytes).map_err(|_| anyhow!("the sealed secret is not text"))?;
    Ok(Secret::new(text))
}

/// The IMS configuration in effect for instance `name` from its file: the `imsAccount`, with
/// the client of its own or, failing that, the `-setimsoauth` credential's.
pub fn connection_of(
    dir: &Path,
    name: &str,
    conf: &InstanceConf,
    http: Arc<dyn ImsHttp>,
) -> Result<Option<Connection>> {
    let Some(account) = &conf.account else {
        return Ok(None);
    };
    let (_, file) = conf_paths(dir, name);
    let master = master_key(dir)?;
    let (client_id, secret) = match (&account.client_id, &account.sealed_secret, &conf.oauth) {
        (Some(id), Some(sealed), _) => (id.clone(), unseal(&master, &account_label(name), sealed)),
        (None, None, Some(oauth)) => (
            oauth.client_id.clone(),
            unseal(&master, &format!("imsoauth:{name}"), &oauth.sealed_secret),
        ),
        _ => bail!(
            "{}: imsAccount names no client (clientId and clientSecret) and there is no -setimsoauth credential",
            file.display()
        ),
    };
    let secret = secret.with_context(|| format!("{}: imsAccount/@clientSecret", file.display()))?;
    Ok(Some(Connection::new(account.clone(), client_id, secret, http)))
}

/// A change to an instance's IMS sign-in configuration, as `ims instance ims-config` or the
/// migration API asks it.
#[derive(Clone, Debug)]
pub struct AccountChange {
    pub instance: String,
    /// Create the instance's client at the data directory's IMS and use it.
    pub register: bool,
    /// The IMS's base URL (default: the data directory's IMS).
    pub ims_url: Option<String>,
    /// Organisation id (default: the data directory's).
    pub org_id: Option<String>,
    /// Default: the instance's address followed by the callback path.
    pub callback_url: Option<String>,
    /// Default: `campaign - <instance> - (.*)`.
    pub association_mask: Option<String>,
    pub product_context: String,
    /// Default: the checklist's scopes.
    pub scopes: Vec<String>,
    /// Remove the configuration instead.
    pub remove: bool,
}

/// The instance's IMS configuration from `ims instance ims-config`'s options (with the client
/// and its secret read already), or from the migration API: checked, registered when asked,
/// written. Returns what was set, secret aside.
pub async fn configure(
    args: AccountChange,
    client: Option<(String, Secret)>,
    dir: &Path,
) -> Result<serde_json::Value> {
    let up = read_up_file(dir)?;
    let inst = up
        .instances
        .iter()
        .find(|i| i.name == args.instance)
        .ok_or_else(|| anyhow!("no instance {:?} in {}", args.instance, dir.display()))?;
    let name = inst.name.clone();
    let (_, path) = conf_paths(dir, &name);
    crate::files::private_dir(&dir.join("conf"))?;
    let mut conf = read_instance_file(&path)?;
    if args.remove {
        conf.account = None;
        crate::conf::write_instance_file(&path, &conf)?;
        return Ok(serde_json::json!({
            "instance": name,
            "file": path.display().to_string(),
            "removed": "imsAccount",
        }));
    }
    let callback_url = args
        .callback_url
        .unwrap_or_else(|| format!("{}{}", inst.url, connect::CALLBACK_PATH));
    let scopes = if args.scopes.is_empty() {
        connect::DEFAULT_SCOPES.iter().map(|s| s.to_string()).collect()
    } else {
        args.scopes
    };
    let mask_text = args
        .association_mask
        .map(|m| m.trim().to_owned())
        .unwrap_or_else(|| format!("campaign - {name} - (.*)"));
    let mask = AssociationMask::parse(&mask_text).map_err(|e| anyhow!(e))?;
    let ims_url = args.ims_url.unwrap_or_else(|| up.ims_url.clone());
    if args.register && ims_url != up.ims_url {
        bail!("--register creates the client at this data directory's IMS ({}); for another IMS, give --client-id and --client-secret-file", up.ims_url);
    }
    let mut account = ImsAccount {
        url: ims_url,
        org_id: args.org_id.unwrap_or_else(|| up.org_id.clone()),
        client_id: None,
        sealed_secret: None,
        callback_url,
        mask,
        product_context: args.product_context,
        scopes,
    };
    // Checked before anything is registered or written.
    let client_given = args.register || client.is_some();
    if !client_given && conf.oauth.is_none() {
        bail!("give --register, --client-id with --client-secret-file, or set -setimsoauth first");
    }
    let checked = ImsAccount {
        client_id: client_given.then(|| "client".to_owned()),
        sealed_secret: client_given.then(|| "enc:secret".to_owned()),
        ..account.clone()
    };
    connect::check_account(&checked).map_err(|(key, m)| anyhow!("{key}: {m}"))?;
    let master = master_key(dir)?;
    let seal = |secret: &Secret| -> Result<String> {
        Ok(format!(
            "enc:{}",
            master
                .seal(&account_label(&name), secret.expose().as_bytes())
                .map_err(|e| anyhow!("{e}"))?
        ))
    };
    let registered = if args.register {
        let previous = conf.account.as_ref().and_then(|a| a.client_id.clone());
        let (id, secret) = register_client(
            dir,
            &name,
            &account.callback_url,
            &account.scopes,
            previous.as_deref(),
        )
        .await?;
        account.client_id = Some(id);
        account.sealed_secret = Some(seal(&secret)?);
        true
    } else {
        if let Some((id, secret)) = client {
            account.client_id = Some(id);
            account.sealed_secret = Some(seal(&secret)?);
        }
        false
    };
    let summary = serde_json::json!({
        "instance": name,
        "file": path.display().to_string(),
        "set": "imsAccount",
        "ims_url": account.url,
        "org_id": account.org_id,
        "client_id": account.client_id.clone().or_else(|| conf.oauth.as_ref().map(|o| o.client_id.clone())),
        "registered": registered,
        "callback_url": account.callback_url,
        "association_mask": account.mask.as_str(),
        "product_context": account.product_context,
        "scopes": account.scopes,
    });
    conf.account = Some(account);
    crate::conf::write_instance_file(&path, &conf)?;
    Ok(summary)
}

/// Creates the instance's client at the data directory's IMS. A client this command registered
/// for the instance before (`previous`, under the same name) is disabled: its secret is sealed
/// in no file any more.
async fn register_client(
    dir: &Path,
    name: &str,
    callback_url: &str,
    scopes: &[String],
    previous: Option<&str>,
) -> Result<(String, Secret)> {
    let config = Target::data_dir(dir).config(crate::config::Config::default())?;
    let store = crate::context::open_store(&config).await?;
    let org = crate::context::org(&store, None).await?;
    let creds = ims_identity::credentials::Credentials::new(
        Arc::<ims_store::SqlStore>::clone(&store),
        config.domain.clone(),
    );
    let created = async {
        let client_name = format!("Campaign instance {name}");
        let (client, secret) = creds
            .create_people_client(&org.org_id, ims_identity::credentials::NewPeopleClient { name: &client_name, client_type: ims_identity::model::ClientType::Confidential, redirect_uris: vec![callback_url.to_owned()], scopes: scopes.to_vec(), first_party: true }, &cli_context())
            .await?;
        // The instance hears of sign-outs at the IMS beside its callback.
        let logout_uri = callback_url.replace(connect::CALLBACK_PATH, connect::BACKCHANNEL_LOGOUT_PATH);
        crate::context::set_backchannel_logout_uri(
            store.as_ref(),
            &client.client_id,
            &logout_uri,
            &cli_context(),
        )
        .await?;
        use ims_identity::store::ClientStore as _;
        if let Some(old) = previous.filter(|old| *old != client.client_id) {
            let replaced = store.client(old).await?.filter(|c| c.name == client_name && c.org_id == org.org_id && !c.disabled);
            if replaced.is_some() {
                let ctx = cli_context();
                let audit = ctx.event(
                    "client.disable",
                    old,
                    "success",
                    serde_json::json!({"reason": format!("replaced by {} for instance {name}", client.client_id)}),
                );
                store.set_client_disabled(old, true, ctx.now, &audit).await?;
                eprintln!("{name}: the client registered before ({old}) is disabled");
            }
        }
        anyhow::Ok((client, secret))
    }
    .await;
    store.close().await;
    match created? {
        (client, Some(secret)) => Ok((client.client_id, secret)),
        (_, None) => bail!("the IMS created the client without a secret"),
    }
}
