//! Request and response bodies of the IMS's public APIs, shared by the servers, the CLI and the
//! tests. Field names are the wire names the vendor's clients expect.

pub mod association;
pub mod email;
pub mod migration;
pub mod names;
pub mod operators;
pub mod rights;
pub mod soap;
pub mod soap_ops;

use serde::{Deserialize, Serialize};

/// Successful token endpoint answer. `expires_in` is in seconds.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenResponse {
    pub access_token: String,
    pub token_type: String,
    pub expires_in: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refresh_token: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id_token: Option<String>,
    /// Granted scopes (space-separated), for the people grants.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
}

/// OAuth 2.0 error body.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OAuthErrorBody {
    pub error: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_description: Option<String>,
}

/// One entry of `GET /ims/organizations/v6`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ImsOrganization {
    pub org_name: String,
    pub org_ref: OrgRef,
    pub org_type: String,
    pub groups: Vec<serde_json::Value>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OrgRef {
    pub ident: String,
    pub auth_src: String,
}

/// What `ims credential create --json` and `ims credential secret add --json` print.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CredentialSecret {
    pub client_id: String,
    pub client_secret: String,
    pub secret_id: String,
    pub technical_account_id: String,
    pub technical_account_email: String,
    pub org_id: String,
    pub scopes: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<i64>,
}

/// One credential in `ims credential list --json`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CredentialSummary {
    pub client_id: String,
    pub name: String,
    pub technical_account_id: String,
    pub technical_account_email: String,
    pub org_id: String,
    pub scopes: Vec<String>,
    pub disabled: bool,
    pub created_at: i64,
    pub secrets: Vec<SecretSummary>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SecretSummary {
    pub secret_id: String,
    pub hint: String,
    pub created_at: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<i64>,
}

/// `DIR/up.json`, written by `ims up`: the contract scripts and tests rely on.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UpFile {
    /// Base URL of the IMS actually bound, e.g. `https://127.0.0.1:8443`.
    pub ims_url: String,
    pub org_id: String,
    pub admin_email: String,
    pub admin_password: String,
    /// Absolute path of the private CA certificate (PEM).
    pub ca_cert: String,
    /// Database URL of the embedded store.
    pub database_url: String,
    /// On PostgreSQL: the IMS's schema (each instance's is named after it and the instance).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub database_schema: Option<String>,
    /// Process id of the `ims up` that wrote the file.
    pub pid: u32,
    /// The operations listener (loopback, plain HTTP): health, metrics and the administration
    /// API, which the public port does not serve.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ops_url: Option<String>,
    /// Where the IMS's mail goes as `.eml` files when no SMTP server is configured.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mail_dir: Option<String>,
    /// The Campaign instances `ims up` runs.
    #[serde(default)]
    pub instances: Vec<UpInstance>,
}

impl UpFile {
    /// Where the administration API answers: the operations listener (older files: the IMS).
    pub fn admin_url(&self) -> &str {
        self.ops_url.as_deref().unwrap_or(&self.ims_url)
    }
}

/// One instance in `up.json`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UpInstance {
    pub name: String,
    /// Base URL, e.g. `https://127.0.0.1:8444` (the SOAP router is `{url}/nl/jsp/soaprouter.jsp`).
    pub url: String,
    pub build: String,
    /// The instance's `admin` operator.
    pub admin_login: String,
    pub admin_password: String,
}
