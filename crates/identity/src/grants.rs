//! What people's sign-in leaves behind, as stored: sign-in flows in progress, browser sessions,
//! authorization codes and refresh tokens. Each is keyed by the SHA-256 digest of the value the
//! browser or client holds, so a copy of the database lets nobody sign in.

use serde::{Deserialize, Serialize};

use ims_core::clock::Now;

/// Where a sign-in flow stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FlowStage {
    /// Asking for the email.
    Email,
    /// Email given; asking for the password.
    Password,
    /// Password accepted; asking for the one-time code.
    Totp,
    /// Password accepted in an organisation that requires one-time codes, by a person not
    /// enrolled yet: enrolling.
    Enrol,
    /// Signed in; asking a third-party application's permissions.
    Consent,
}

impl FlowStage {
    pub fn as_str(self) -> &'static str {
        match self {
            FlowStage::Email => "email",
            FlowStage::Password => "password",
            FlowStage::Totp => "totp",
            FlowStage::Enrol => "enrol",
            FlowStage::Consent => "consent",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "email" => Some(FlowStage::Email),
            "password" => Some(FlowStage::Password),
            "totp" => Some(FlowStage::Totp),
            "enrol" => Some(FlowStage::Enrol),
            "consent" => Some(FlowStage::Consent),
            _ => None,
        }
    }
}

/// A sign-in in progress: the validated authorization request it will answer, bound to the
/// browser that started it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SignInFlow {
    pub flow_digest: String,
    pub browser_digest: String,
    /// The authorization request, as JSON.
    pub request: String,
    pub stage: FlowStage,
    /// Email typed at the first step (kept to show it and to count failures).
    pub email: Option<String>,
    /// Set once the password is accepted and a second factor is still due.
    pub user_id: Option<String>,
    pub created_at: Now,
    pub expires_at: Now,
}

/// A person signed in to the IMS in a browser.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BrowserSession {
    pub session_digest: String,
    pub user_id: String,
    pub auth_time: Now,
    /// Authentication methods (`pwd`, `otp`, `mfa`).
    pub amr: Vec<String>,
    pub created_at: Now,
    pub expires_at: Now,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuthorizationCode {
    pub code_digest: String,
    pub client_id: String,
    pub user_id: String,
    pub redirect_uri: String,
    pub scope: Vec<String>,
    pub nonce: Option<String>,
    /// The S256 challenge.
    pub code_challenge: String,
    pub auth_time: Now,
    pub amr: Vec<String>,
    pub created_at: Now,
    pub expires_at: Now,
    pub consumed_at: Option<Now>,
    /// The refresh token family the redemption starts (revoked if the code is used again).
    pub grant_id: String,
    /// The access token the redemption issued.
    pub access_token_id: Option<String>,
    /// Set when the code is presented again after its redemption.
    pub replayed_at: Option<Now>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RefreshToken {
    pub token_digest: String,
    /// Every token rotated from the same grant shares it.
    pub family_id: String,
    pub client_id: String,
    pub user_id: String,
    pub scope: Vec<String>,
    pub auth_time: Now,
    pub amr: Vec<String>,
    /// The access token issued beside this refresh token.
    pub access_token_id: String,
    pub access_expires_at: Now,
    pub created_at: Now,
    /// The absolute end of the family, however often it rotates.
    pub family_expires_at: Now,
    pub used_at: Option<Now>,
    pub revoked_at: Option<Now>,
}

/// What an attempt to rotate a refresh token found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Rotation {
    /// The token was live and is now used; its successor is stored.
    Rotated(RefreshToken),
    /// The token had been used already (a replay) or revoked.
    Spent(RefreshToken),
    Unknown,
}
