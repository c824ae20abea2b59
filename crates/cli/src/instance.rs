//! The Campaign instances that `ims up` runs beside the IMS: each has its own database, its
//! built-in operators and default groups, and its own listener.

use anyhow::{Context as _, Result};
use std::path::Path;
use std::sync::Arc;

use ims_campaign::model::{AuthType, Operator};
use ims_campaign::rights::{BUILTIN_OPERATORS, DEFAULT_GROUPS};
use ims_campaign::service::{Instance, InstanceInfo, InstanceKind};
use ims_campaign::store::OperatorStore as _;
use ims_campaign::Build;
use ims_identity::secret::{self, Secret};
use ims_identity::Now;
use ims_store::instance::SqlInstanceStore;
use ims_store::Options;

/// Opens (creating on first start) an instance under `dir`. Returns it with the `admin`
/// operator's password when this start created it.
pub async fn open_embedded(
    dir: &Path,
    name: &str,
    kind: InstanceKind,
    build: Build,
) -> Result<(Instance, Option<Secret>)> {
    let url = format!("sqlite://{}", dir.join(format!("instance-{name}.db")).display());
    let now = Now::system();
    let store = Arc::new(
        SqlInstanceStore::open(&Options::new(url), now)
            .await
            .with_context(|| format!("instance {name}"))?,
    );
    for g in DEFAULT_GROUPS {
        store.ensure_group(g.name, g.label, g.rights).await?;
    }
    let mut admin_password = None;
    if store.operator_count().await? == 0 {
        for (login, label) in BUILTIN_OPERATORS {
            // Only `admin` gets a usable password; the other built-ins are service accounts whose
            // credentials an administrator sets when the service is installed.
            let (hash, groups) = if *login == "admin" {
                let password = secret::generate("");
                let hash = ims_identity::password::hash(&password).await?;
                admin_password = Some(password);
                (Some(hash), vec!["admin".to_owned()])
            } else {
                (None, Vec::new())
            };
            store
                .create_operator(&Operator {
                    id: 0,
                    login: (*login).to_owned(),
                    label: (*label).to_owned(),
                    email: None,
                    auth_type: AuthType::Native,
                    disabled: false,
                    forbid_rich_client: false,
                    trusted_ip_mask: None,
                    security_zone: None,
                    rights: Vec::new(),
                    groups,
                    password_hash: hash,
                    ims_id: None,
                    builtin: true,
                    created_at: now,
                    modified_at: now,
                })
                .await?;
        }
    }
    Ok((
        Instance::new(store, InstanceInfo::new(name, kind, build)),
        admin_password,
    ))
}

/// The IMS's published keys, fetched over HTTPS (the instance trusts the same CA as its clients).
pub struct HttpJwks {
    http: reqwest::Client,
    url: String,
}

impl HttpJwks {
    pub fn new(url: String, ca_pem: Option<&[u8]>) -> Result<Self> {
        let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
        let mut builder = reqwest::Client::builder().timeout(std::time::Duration::from_secs(10));
        if let Some(pem) = ca_pem {
            builder = builder.add_root_certificate(reqwest::Certificate::from_pem(pem)?);
        }
        Ok(HttpJwks {
            http: builder.build()?,
            url,
        })
    }
}

#[async_trait::async_trait]
impl ims_campaign::bearer::JwksSource for HttpJwks {
    async fn fetch(&self) -> Result<serde_json::Value, String> {
        let resp = self
            .http
            .get(&self.url)
            .send()
            .await
            .map_err(|e| format!("{}: {e}", self.url))?;
        if !resp.status().is_success() {
            return Err(format!("{} answered {}", self.url, resp.status()));
        }
        resp.json().await.map_err(|e| format!("{}: {e}", self.url))
    }
}
