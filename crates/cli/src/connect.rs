//! The instance side of "Connect with IMS" in the binary: HTTPS to the IMS, the configuration
//! in effect built from the instance's files (secrets unsealed with the master key), and
//! `ims instance ims-config`, which writes that configuration.

use anyhow::{anyhow, bail, Context as _, Result};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use ims_campaign::config::InstanceConf;
use ims_campaign::connect::{self, ImsAccount, ImsHttp};
use ims_campaign::signin::Connection;
use ims_core::keys::MasterKey;
use ims_core::secret::Secret;
use ims_wire::association::AssociationMask;

/// HTTPS to the IMS, trusting the deployment's CA when one is given.
pub struct HttpIms {
    http: reqwest::Client,
}

impl HttpIms {
    pub fn new(ca_pem: Option<&[u8]>) -> Result<Self> {
        let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
        let mut builder = reqwest::Client::builder()
            .timeout(std::time::Duration::from_secs(10))
            // The instance follows no redirect: every endpoint answers where it is.
            .redirect(reqwest::redirect::Policy::none());
        if let Some(pem) = ca_pem {
            builder = builder.add_root_certificate(reqwest::Certificate::from_pem(pem)?);
        }
        Ok(HttpIms {
            http: builder.build()?,
        })
    }
}

/// Sends `req`; the status and the body as JSON (`Null` when it is not).
async fn answer(url: &str, req: reqwest::RequestBuilder) -> Result<(u16, serde_json::Value), String> {
    // The error names the address only: a request error may quote the request.
    let resp = req
        .send()
        .await
        .map_err(|e| format!("{url}: {}", e.without_url()))?;
    let status = resp.status().as_u16();
    Ok((status, resp.json().await.unwrap_or(serde_json::Value::Null)))
}

#[async_trait::async_trait]
impl ImsHttp for HttpIms {
    async fn get(&self, url: &str, bearer: Option<&str>) -> Result<(u16, serde_json::Value), String> {
        let mut req = self.http.get(url);
        if let Some(token) = bearer {
            req = req.bearer_auth(token);
        }
        answer(url, req).await
    }

    async fn get_basic(
        &self,
        url: &str,
        client_id: &str,
        secret: &str,
    ) -> Result<(u16, serde_json::Value), String> {
        let req = self
            .http
            .get(url)
            .basic_auth(form_encode(client_id), Some(form_encode(secret)));
        answer(url, req).await
    }

    async fn post_form(
        &self,
        url: &str,
        basic: Option<(&str, &str)>,
        form: &[(&str, &str)],
    ) -> Result<(u16, serde_json::Value), String> {
        let body = url::form_urlencoded::Serializer::new(String::new())
            .extend_pairs(form)
            .finish();
        let mut req = self
            .http
            .post(url)
            .header(reqwest::header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(body);
        if let Some((user, password)) = basic {
            req = req.basic_auth(form_encode(user), Some(form_encode(password)));
        }
        answer(url, req).await
    }
}

/// The IMS's side of back-channel logout: logout tokens POSTed to clients over HTTPS.
#[async_trait::async_trait]
impl ims_identity::service::LogoutNotifier for HttpIms {
    async fn deliver(&self, uri: &str, logout_token: &str) -> Result<(), String> {
        let (status, body) = self
            .post_form(uri, None, &[("logout_token", logout_token)])
            .await?;
        if status == 200 || status == 204 {
            Ok(())
        } else {
            Err(format!(
                "{uri} answered {status} {}",
                body.get("error_description")
                    .and_then(serde_json::Value::as_str)
                    .unwrap_or_default()
            ))
        }
    }
}

/// RFC 6749 section 2.3.1: client id and secret are form-encoded before Basic encoding.
fn form_encode(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

fn master_key(dir: &Path) -> Result<MasterKey> {
    let text =
        std::fs::read_to_string(dir.join("master.key")).context("the data directory has no master.key")?;
    MasterKey::parse(&text).map_err(|e| anyhow!("{e}"))
}

/// The label a sealed secret of an instance's IMS configuration is bound to.
fn account_label(name: &str) -> String {
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
    let (_, file) = crate::instance::conf_paths(dir, name);
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

/// `ims instance ims-config`: how people sign in to an instance through the IMS.
#[derive(Debug, clap::Args)]
pub struct ImsConfigArgs {
    #[arg(long)]
    pub instance: String,
    /// Create the instance's client at the IMS of the data directory (a first-party application
    /// whose redirect URI is the callback URL) and use it.
    #[arg(long, conflicts_with_all = ["client_id", "client_secret_file", "remove"])]
    pub register: bool,
    /// The instance's client at the IMS (default: the -setimsoauth credential's).
    #[arg(long, requires = "client_secret_file")]
    pub client_id: Option<String>,
    /// File holding the client secret (first line).
    #[arg(long, requires = "client_id")]
    pub client_secret_file: Option<PathBuf>,
    /// The IMS's base URL (default: the data directory's IMS).
    #[arg(long)]
    pub ims_url: Option<String>,
    /// Organisation id (default: the data directory's).
    #[arg(long = "ims-org")]
    pub org_id: Option<String>,
    /// Default: the instance's address followed by /console/ims/callback.
    #[arg(long)]
    pub callback_url: Option<String>,
    /// Regular expression over product profile names whose one capture group names the operator
    /// group (default: `campaign - <instance> - (.*)`).
    #[arg(long)]
    pub association_mask: Option<String>,
    #[arg(long, default_value = connect::DEFAULT_PRODUCT_CONTEXT)]
    pub product_context: String,
    /// Scope to ask for at sign-in (repeatable; default: openid, AdobeID, email, profile and the
    /// product profiles).
    #[arg(long = "scope")]
    pub scopes: Vec<String>,
    /// Remove the configuration: the instance no longer offers sign-in through the IMS.
    #[arg(long)]
    pub remove: bool,
    #[arg(long)]
    pub json: bool,
}

/// Writes the instance's IMS configuration (or removes it) and says what it set; returns what
/// the audit line says.
pub async fn ims_config(args: ImsConfigArgs, dir: &Path) -> Result<serde_json::Value> {
    let client = match (&args.client_id, &args.client_secret_file) {
        (Some(id), Some(file)) => {
            let text =
                std::fs::read_to_string(file).with_context(|| format!("cannot read {}", file.display()))?;
            let secret = Secret::new(text.lines().next().unwrap_or_default());
            if secret.is_empty() {
                bail!("{} holds no secret", file.display());
            }
            Some((id.clone(), secret))
        }
        _ => None,
    };
    let json = args.json;
    let summary = configure(args, client, dir).await?;
    let name = summary["instance"].as_str().unwrap_or_default();
    let path = summary["file"].as_str().unwrap_or_default();
    if summary.get("removed").is_some() {
        println!("{name}: sign-in through the IMS removed from {path}");
    } else if json {
        println!("{}", serde_json::to_string_pretty(&summary)?);
    } else {
        println!("{name}: sign-in through the IMS configured in {path}");
        println!(
            "  client        {}",
            summary["client_id"].as_str().unwrap_or_default()
        );
        println!(
            "  callback URL  {}",
            summary["callback_url"].as_str().unwrap_or_default()
        );
        println!(
            "  mask          {}",
            summary["association_mask"].as_str().unwrap_or_default()
        );
    }
    Ok(summary)
}

/// The instance's IMS configuration from `ims instance ims-config`'s options (with the client
/// and its secret read already), or from the migration API: checked, registered when asked,
/// written. Returns what was set, secret aside.
pub async fn configure(
    args: ImsConfigArgs,
    client: Option<(String, Secret)>,
    dir: &Path,
) -> Result<serde_json::Value> {
    let up = crate::up::read_up_file(dir)?;
    let inst = up
        .instances
        .iter()
        .find(|i| i.name == args.instance)
        .ok_or_else(|| anyhow!("no instance {:?} in {}", args.instance, dir.display()))?;
    let name = inst.name.clone();
    let (_, path) = crate::instance::conf_paths(dir, &name);
    crate::files::private_dir(&dir.join("conf"))?;
    let mut conf = crate::instance::read_instance_file(&path)?;
    if args.remove {
        conf.account = None;
        crate::files::write_private(&path, ims_campaign::config::write_instance_conf(&conf).as_bytes())?;
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
    crate::files::write_private(&path, ims_campaign::config::write_instance_conf(&conf).as_bytes())?;
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
    let target = crate::admin::Target {
        data_dir: Some(dir.to_path_buf()),
        database_url: None,
        database_schema: None,
        org: None,
        url: None,
        ca_cert: None,
    };
    let config = target.config(crate::config::Config::default())?;
    let store = crate::server::open_store(&config).await?;
    let org = crate::admin::org(&store, None).await?;
    let creds = ims_identity::credentials::Credentials::new(
        store.clone() as Arc<dyn ims_identity::store::Store>,
        config.domain.clone(),
    );
    let created = async {
        let client_name = format!("Campaign instance {name}");
        let (client, secret) = creds
            .create_people_client(
                &org.org_id,
                &client_name,
                ims_identity::model::ClientType::Confidential,
                vec![callback_url.to_owned()],
                scopes.to_vec(),
                true,
                &crate::admin::cli_context(),
            )
            .await?;
        // The instance hears of sign-outs at the IMS beside its callback.
        let logout_uri = callback_url.replace(connect::CALLBACK_PATH, connect::BACKCHANNEL_LOGOUT_PATH);
        crate::people::set_backchannel_logout_uri(
            store.as_ref(),
            &client.client_id,
            &logout_uri,
            &crate::admin::cli_context(),
        )
        .await?;
        use ims_identity::store::ClientStore as _;
        if let Some(old) = previous.filter(|old| *old != client.client_id) {
            let replaced = store.client(old).await?.filter(|c| c.name == client_name && c.org_id == org.org_id && !c.disabled);
            if replaced.is_some() {
                let ctx = crate::admin::cli_context();
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

/// Rules of the IMS checklist failed (exit code 1).
#[derive(Debug, thiserror::Error)]
#[error("{0} rule(s) of the IMS sign-in checklist failed")]
pub struct ChecksFailed(pub usize);

/// `ims instance ims-check`: the checklist against the instance's files as they are now and
/// the IMS they name.
pub async fn ims_check(dir: &Path, name: &str, json: bool) -> Result<()> {
    let up = crate::up::read_up_file(dir)?;
    if !up.instances.iter().any(|i| i.name == name) {
        bail!("no instance {name:?} in {}", dir.display());
    }
    let build = crate::restrictions::stored_build(dir, name).await?;
    let ca = std::fs::read(&up.ca_cert).ok();
    let http: Arc<dyn ImsHttp> = Arc::new(HttpIms::new(ca.as_deref())?);
    let connection = crate::instance::read_configuration(dir, name, &build)
        .and_then(|loaded| connection_of(dir, name, &loaded.instance, http));
    let report = match connection {
        Ok(Some(conn)) => {
            use ims_campaign::store::OperatorStore as _;
            let store = crate::instance::open_store(dir, name).await?;
            let groups = store.groups().await?;
            store.close().await;
            ims_campaign::diagnose::diagnose(&conn, name, &groups).await
        }
        Ok(None) => ims_campaign::diagnose::without_configuration(name, None),
        Err(e) => ims_campaign::diagnose::without_configuration(name, Some(format!("{e:#}"))),
    };
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        for c in &report.checks {
            let mark = match c.status {
                ims_campaign::diagnose::Status::Pass => "pass",
                ims_campaign::diagnose::Status::Fail => "FAIL",
                ims_campaign::diagnose::Status::Skipped => "skip",
            };
            println!("{mark}  {}: {}", c.title, c.detail);
            if let Some(fix) = &c.fix {
                println!("      fix: {fix}");
            }
        }
        for p in &report.admin_profiles {
            println!("warning: product profile {p:?} has \"admin\" in its name; such profiles grant Control Panel access in the vendor's world");
        }
    }
    let failed = report
        .checks
        .iter()
        .filter(|c| c.status == ims_campaign::diagnose::Status::Fail)
        .count();
    if failed > 0 {
        return Err(ChecksFailed(failed).into());
    }
    Ok(())
}
