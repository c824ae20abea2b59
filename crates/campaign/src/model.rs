//! What an instance keeps about the people and programs that sign in to it.

use ims_core::Now;
use serde::{Deserialize, Serialize};

/// How an operator signs in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AuthType {
    /// Login and password stored in the instance.
    Native,
    /// A person signing in through the IMS.
    Ims,
    /// A technical account calling with IMS access tokens.
    TechnicalAccount,
}

impl AuthType {
    pub fn as_str(self) -> &'static str {
        match self {
            AuthType::Native => "native",
            AuthType::Ims => "ims",
            AuthType::TechnicalAccount => "technical_account",
        }
    }

    /// What the console's Authentication Type column shows.
    pub fn label(self) -> &'static str {
        match self {
            AuthType::Native => "Native",
            AuthType::Ims => "IMS",
            AuthType::TechnicalAccount => "Technical account",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "native" => Some(AuthType::Native),
            "ims" => Some(AuthType::Ims),
            "technical_account" => Some(AuthType::TechnicalAccount),
            _ => None,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Operator {
    pub id: i64,
    /// The login name (`@name` in queries).
    pub login: String,
    pub label: String,
    pub email: Option<String>,
    pub auth_type: AuthType,
    pub disabled: bool,
    /// "Forbid rich-client access".
    pub forbid_rich_client: bool,
    pub trusted_ip_mask: Option<String>,
    pub security_zone: Option<String>,
    /// Named rights held directly (not through a group).
    pub rights: Vec<String>,
    /// Operator group names.
    pub groups: Vec<String>,
    /// Argon2id PHC string, native operators only.
    #[serde(skip_serializing)]
    pub password_hash: Option<String>,
    /// The IMS identity the operator is linked to (people: user id; technical accounts: the
    /// technical account id).
    pub ims_id: Option<String>,
    pub builtin: bool,
    pub created_at: Now,
    pub modified_at: Now,
}

impl Operator {
    /// A native operator (login and password stored in the instance), not yet stored.
    pub fn native(
        login: &str,
        email: Option<String>,
        groups: Vec<String>,
        password_hash: Option<String>,
        now: Now,
    ) -> Self {
        Operator {
            id: 0,
            login: login.to_owned(),
            label: login.to_owned(),
            email,
            auth_type: AuthType::Native,
            disabled: false,
            forbid_rich_client: false,
            trusted_ip_mask: None,
            security_zone: None,
            rights: Vec::new(),
            groups,
            password_hash,
            ims_id: None,
            builtin: false,
            created_at: now,
            modified_at: now,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OperatorGroup {
    pub id: i64,
    pub name: String,
    pub label: String,
    pub rights: Vec<String>,
}

impl ims_wire::association::NamedGroup for OperatorGroup {
    fn name(&self) -> &str {
        &self.name
    }
    fn label(&self) -> &str {
        &self.label
    }
}

/// How a session or a call was authenticated.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AuthPath {
    /// `Logon` with login and password.
    Native,
    /// `BearerTokenLogon`, or `Authorization: Bearer` on the call.
    Bearer,
    /// The console, signed in through the IMS.
    Ims,
}

impl AuthPath {
    pub fn as_str(self) -> &'static str {
        match self {
            AuthPath::Native => "native",
            AuthPath::Bearer => "bearer",
            AuthPath::Ims => "ims",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "native" => Some(AuthPath::Native),
            "bearer" => Some(AuthPath::Bearer),
            "ims" => Some(AuthPath::Ims),
            _ => None,
        }
    }
}

/// A signed-in session: tokens stored as digests only.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Session {
    pub session_digest: String,
    pub security_digest: String,
    pub operator_id: i64,
    pub auth_path: AuthPath,
    pub created_at: Now,
    pub expires_at: Now,
}

/// One sign-in or call, kept as evidence of who uses the instance and how.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UsageEvent {
    pub at: Now,
    pub operator_id: Option<i64>,
    pub login: String,
    /// `xtk:session#Logon`, ...
    pub action: String,
    pub auth_path: AuthPath,
    pub source: Option<String>,
    /// Client headers worth keeping (`ACC-SDK-Auth`, `X-Query-Source`, user agent).
    pub client: Option<String>,
    pub outcome: String,
}

/// A recipient (`nms:recipient`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Recipient {
    pub id: i64,
    pub email: Option<String>,
    pub first_name: Option<String>,
    pub last_name: Option<String>,
    pub folder_id: Option<i64>,
    pub created_at: Now,
    pub modified_at: Now,
}
