//! `ims credential --url`: the same administration through a running IMS's `/admin/v1` API,
//! authenticated as a system administrator. The engine's credential at an `ims up` IMS is made
//! through it too.

use anyhow::{anyhow, Context as _, Result};
use serde_json::json;
use std::path::Path;

use ims_identity::developer::Service;
use ims_wire::{CredentialSecret, CredentialSummary};

/// Credential administration as the CLI drives it: on the database, or through a running IMS.
#[async_trait::async_trait]
pub trait CredentialAdmin: Send + Sync {
    async fn create(
        &self,
        name: &str,
        scopes: Option<Vec<String>>,
        services: &[Service],
    ) -> Result<CredentialSecret>;
    async fn list(&self) -> Result<Vec<CredentialSummary>>;
    async fn set_disabled(&self, client_id: &str, disabled: bool) -> Result<()>;
    async fn add_secret(&self, client_id: &str, expires_in_days: Option<u32>) -> Result<CredentialSecret>;
    async fn remove_secret(&self, client_id: &str, secret_id: &str) -> Result<()>;
}

/// The administration API of a running IMS, signed in as a system administrator.
pub struct Remote {
    http: reqwest::Client,
    base: String,
    email: String,
    password: String,
}

impl Remote {
    /// `ca`: the CA certificate (PEM) to trust, when the IMS's is not a public one.
    pub fn new(url: &str, email: String, password: String, ca: Option<&Path>) -> Result<Self> {
        let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
        let mut builder = reqwest::Client::builder().timeout(std::time::Duration::from_secs(30));
        if let Some(ca) = ca {
            let pem = std::fs::read(ca).with_context(|| format!("cannot read {}", ca.display()))?;
            builder = builder.add_root_certificate(reqwest::Certificate::from_pem(&pem)?);
        }
        Ok(Remote {
            http: builder.build()?,
            base: url.trim_end_matches('/').to_owned(),
            email,
            password,
        })
    }

    async fn send(&self, req: reqwest::RequestBuilder) -> Result<reqwest::Response> {
        let resp = req
            .basic_auth(&self.email, Some(&self.password))
            .send()
            .await
            .context("calling the IMS")?;
        if resp.status().is_success() {
            return Ok(resp);
        }
        let status = resp.status();
        let body: serde_json::Value = resp.json().await.unwrap_or_default();
        Err(anyhow!(
            "{status}: {}",
            body["detail"].as_str().unwrap_or("request refused")
        ))
    }

    fn url(&self, path: &str) -> String {
        format!("{}/admin/v1/credentials{path}", self.base)
    }
}

#[async_trait::async_trait]
impl CredentialAdmin for Remote {
    async fn create(
        &self,
        name: &str,
        scopes: Option<Vec<String>>,
        services: &[Service],
    ) -> Result<CredentialSecret> {
        let codes: Vec<&str> = services.iter().map(|s| s.code).collect();
        let body = json!({ "name": name, "scopes": scopes, "services": codes });
        Ok(self
            .send(self.http.post(self.url("")).json(&body))
            .await?
            .json()
            .await?)
    }

    async fn list(&self) -> Result<Vec<CredentialSummary>> {
        Ok(self.send(self.http.get(self.url(""))).await?.json().await?)
    }

    async fn set_disabled(&self, client_id: &str, disabled: bool) -> Result<()> {
        let action = if disabled { "disable" } else { "enable" };
        self.send(self.http.post(self.url(&format!("/{client_id}/{action}"))))
            .await?;
        Ok(())
    }

    async fn add_secret(&self, client_id: &str, expires_in_days: Option<u32>) -> Result<CredentialSecret> {
        let body = json!({ "expires_in_days": expires_in_days });
        Ok(self
            .send(
                self.http
                    .post(self.url(&format!("/{client_id}/secrets")))
                    .json(&body),
            )
            .await?
            .json()
            .await?)
    }

    async fn remove_secret(&self, client_id: &str, secret_id: &str) -> Result<()> {
        self.send(
            self.http
                .delete(self.url(&format!("/{client_id}/secrets/{secret_id}"))),
        )
        .await?;
        Ok(())
    }
}
