//! The records the IMS keeps: organisations, technical accounts (OAuth clients) with their secrets,
//! the bootstrap administrator, and audit events.

use serde::{Deserialize, Serialize};

use ims_core::clock::Now;
use ims_core::error::{Error, Result};
use ims_core::secret::random_hex_upper;

/// Suffix of organisation ids. A wire value the vendor's clients check, kept for compatibility.
pub const ORG_SUFFIX: &str = "@AdobeOrg";

/// An organisation: the tenant that owns users, profiles and credentials.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Organization {
    /// `XXXXXXXXXXXXXXXXXXXXXXXX@AdobeOrg`.
    pub org_id: String,
    /// The numeric id the Developer Console API uses in its paths.
    pub numeric_id: i64,
    pub name: String,
    pub created_at: Now,
    /// Every person signs in with a one-time code after the password; one not enrolled yet
    /// enrols at the next sign-in (or on accepting an invitation).
    pub require_totp: bool,
}

impl Organization {
    pub fn new(name: &str, now: Now) -> Self {
        let digits = u64::from_be_bytes(ims_core::secret::random_bytes::<8>());
        Organization {
            org_id: format!("{}{ORG_SUFFIX}", random_hex_upper(12)),
            numeric_id: i64::try_from(100_000 + digits % 900_000).unwrap_or(100_000),
            name: name.to_owned(),
            created_at: now,
            require_totp: false,
        }
    }

    /// The part before `@AdobeOrg`, as `organizations/v6` reports it (`orgRef.ident`).
    pub fn ident(&self) -> &str {
        self.org_id.strip_suffix(ORG_SUFFIX).unwrap_or(&self.org_id)
    }
}

/// Grants a client may use. Technical accounts hold `client_credentials` only.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GrantType {
    ClientCredentials,
    AuthorizationCode,
    RefreshToken,
}

impl GrantType {
    pub fn as_str(self) -> &'static str {
        match self {
            GrantType::ClientCredentials => "client_credentials",
            GrantType::AuthorizationCode => "authorization_code",
            GrantType::RefreshToken => "refresh_token",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "client_credentials" => Some(GrantType::ClientCredentials),
            "authorization_code" => Some(GrantType::AuthorizationCode),
            "refresh_token" => Some(GrantType::RefreshToken),
            _ => None,
        }
    }
}

/// What kind of client an OAuth client is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ClientType {
    /// A server-to-server credential: its tokens stand for its technical account.
    TechnicalAccount,
    /// An application that signs people in and keeps a secret (a web server).
    Confidential,
    /// An application that signs people in and cannot keep a secret (browser, native app): PKCE
    /// only.
    Public,
}

impl ClientType {
    pub fn as_str(self) -> &'static str {
        match self {
            ClientType::TechnicalAccount => "technical_account",
            ClientType::Confidential => "confidential",
            ClientType::Public => "public",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "technical_account" => Some(ClientType::TechnicalAccount),
            "confidential" => Some(ClientType::Confidential),
            "public" => Some(ClientType::Public),
            _ => None,
        }
    }
}

/// An OAuth client. Every client carries a technical account identity (the subject of its
/// `client_credentials` tokens, when it may use that grant); clients that sign people in carry
/// their registered redirect URIs.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OAuthClient {
    pub client_id: String,
    pub org_id: String,
    pub name: String,
    pub technical_account_id: String,
    pub technical_account_email: String,
    /// Scopes the client may ask for.
    pub scopes: Vec<String>,
    pub grant_types: Vec<GrantType>,
    pub disabled: bool,
    pub created_at: Now,
    pub updated_at: Now,
    pub client_type: ClientType,
    /// Our own applications (consoles, instances): people are not asked for consent.
    pub first_party: bool,
    pub redirect_uris: Vec<String>,
}

impl OAuthClient {
    /// A new server-to-server credential. `domain` is the IMS's own domain: technical account
    /// emails read `<id>@techacct.<domain>`.
    pub fn new_technical_account(
        org_id: &str,
        name: &str,
        scopes: Vec<String>,
        domain: &str,
        now: Now,
    ) -> Result<Self> {
        let name = name.trim();
        if name.is_empty() || name.chars().count() > 200 || name.chars().any(char::is_control) {
            return Err(Error::invalid_request(
                "credential name must be 1 to 200 printable characters",
            ));
        }
        for s in &scopes {
            crate::scope::validate_token(s)?;
        }
        let ta = random_hex_upper(12);
        Ok(OAuthClient {
            client_id: ims_core::secret::random_hex(16),
            org_id: org_id.to_owned(),
            name: name.to_owned(),
            technical_account_id: format!("{ta}@techacct.{domain}"),
            technical_account_email: format!("{}@techacct.{domain}", ims_core::secret::uuid_like()),
            scopes,
            grant_types: vec![GrantType::ClientCredentials],
            disabled: false,
            created_at: now,
            updated_at: now,
            client_type: ClientType::TechnicalAccount,
            first_party: false,
            redirect_uris: Vec::new(),
        })
    }

    /// A new application that signs people in with the authorization code flow (and refresh
    /// tokens). Redirect URIs are checked by [`crate::oidc::check_redirect_uri_registration`].
    pub fn new_people_client(
        org_id: &str,
        name: &str,
        client_type: ClientType,
        redirect_uris: Vec<String>,
        scopes: Vec<String>,
        domain: &str,
        now: Now,
    ) -> Result<Self> {
        if client_type == ClientType::TechnicalAccount {
            return Err(Error::invalid_request(
                "a technical account does not sign people in",
            ));
        }
        if redirect_uris.is_empty() {
            return Err(Error::invalid_request("register at least one redirect URI"));
        }
        for uri in &redirect_uris {
            crate::oidc::check_redirect_uri_registration(uri)?;
        }
        let mut client = OAuthClient::new_technical_account(org_id, name, scopes, domain, now)?;
        client.client_type = client_type;
        client.grant_types = vec![GrantType::AuthorizationCode, GrantType::RefreshToken];
        client.redirect_uris = redirect_uris;
        Ok(client)
    }
}

/// A client secret as stored: only its digest and a non-secret hint.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClientSecretRecord {
    pub secret_id: String,
    pub client_id: String,
    #[serde(skip_serializing)]
    pub digest: String,
    pub hint: String,
    pub created_at: Now,
    pub expires_at: Option<Now>,
}

impl ClientSecretRecord {
    pub fn is_live(&self, now: Now) -> bool {
        self.expires_at.is_none_or(|e| now < e)
    }
}

/// How a person's identity is held, in the vendor's terms.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum IdentityType {
    /// A personal identity the person owns.
    #[serde(rename = "adobeID")]
    AdobeId,
    /// An identity the organisation owns and holds the password of.
    #[serde(rename = "enterpriseID")]
    EnterpriseId,
    /// An identity whose password another identity provider holds.
    #[serde(rename = "federatedID")]
    FederatedId,
}

impl IdentityType {
    pub fn as_str(self) -> &'static str {
        match self {
            IdentityType::AdobeId => "adobeID",
            IdentityType::EnterpriseId => "enterpriseID",
            IdentityType::FederatedId => "federatedID",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "adobeID" => Some(IdentityType::AdobeId),
            "enterpriseID" => Some(IdentityType::EnterpriseId),
            "federatedID" => Some(IdentityType::FederatedId),
            _ => None,
        }
    }
}

/// Whether a person may sign in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UserStatus {
    Active,
    /// Switched off by an administrator.
    Disabled,
    /// Locked by an administrator until unlocked (temporary lock-outs after failed sign-ins are
    /// kept apart, in the failure counters).
    Locked,
    /// Removed from the organisation; kept so its id is never reused.
    Removed,
}

impl UserStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            UserStatus::Active => "active",
            UserStatus::Disabled => "disabled",
            UserStatus::Locked => "locked",
            UserStatus::Removed => "removed",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "active" => Some(UserStatus::Active),
            "disabled" => Some(UserStatus::Disabled),
            "locked" => Some(UserStatus::Locked),
            "removed" => Some(UserStatus::Removed),
            _ => None,
        }
    }
}

/// A person of the organisation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct User {
    /// `<24 hex>@AdobeID`: the `user_id` claim and the stable `sub`.
    pub user_id: String,
    pub org_id: String,
    /// As entered; unique case-insensitively within the organisation.
    pub email: String,
    pub first_name: String,
    pub last_name: String,
    /// Argon2id PHC string.
    pub password_hash: Option<String>,
    pub system_admin: bool,
    pub created_at: Now,
    pub identity_type: IdentityType,
    pub status: UserStatus,
    /// ISO 3166-1 alpha-2.
    pub country: Option<String>,
    /// The TOTP secret sealed under the master key, when enrolled.
    pub totp_sealed: Option<String>,
    /// The time step of the last one-time code accepted (RFC 6238 section 5.2: once only).
    pub totp_last_step: i64,
    /// Digests of the recovery codes not used yet.
    pub recovery_codes: Vec<String>,
    /// Browser sessions and refresh tokens issued before this time are void.
    pub sessions_valid_after: Now,
    pub updated_at: Now,
    /// The first time the person signed in to an application (the migration reports who has
    /// come in). Written only by the sign-in, never by a change to the person.
    pub first_sign_in_at: Option<Now>,
}

impl User {
    /// Whether what was issued to the person at `issued` (a session, a refresh token family)
    /// still stands: the person is active and nothing ended their sessions since.
    pub fn holds_since(&self, issued: Now) -> bool {
        self.status == UserStatus::Active && issued >= self.sessions_valid_after
    }

    /// A new active person with a fresh id.
    pub fn new(org_id: &str, email: &str, first_name: &str, last_name: &str, now: Now) -> Self {
        User {
            user_id: format!("{}@AdobeID", random_hex_upper(12)),
            org_id: org_id.to_owned(),
            email: email.to_owned(),
            first_name: first_name.to_owned(),
            last_name: last_name.to_owned(),
            password_hash: None,
            system_admin: false,
            created_at: now,
            identity_type: IdentityType::AdobeId,
            status: UserStatus::Active,
            country: None,
            totp_sealed: None,
            totp_last_step: 0,
            recovery_codes: Vec::new(),
            sessions_valid_after: Now::from_millis(0),
            updated_at: now,
            first_sign_in_at: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn org_id_has_vendor_shape() {
        let o = Organization::new("Acme", Now::from_millis(0));
        let (ident, suffix) = o.org_id.split_at(24);
        assert_eq!(suffix, "@AdobeOrg");
        assert!(ident
            .chars()
            .all(|c| c.is_ascii_digit() || c.is_ascii_uppercase()));
        assert_eq!(o.ident(), ident);
        assert!(o.numeric_id >= 100_000);
    }

    #[test]
    fn technical_account_shape() {
        let c = OAuthClient::new_technical_account(
            "X@AdobeOrg",
            "n",
            vec!["openid".into()],
            "ims.test",
            Now::from_millis(0),
        )
        .unwrap();
        assert!(c.technical_account_id.ends_with("@techacct.ims.test"));
        assert_eq!(c.client_id.len(), 32);
        assert!(OAuthClient::new_technical_account("X", " ", vec![], "d", Now::from_millis(0)).is_err());
        assert!(
            OAuthClient::new_technical_account("X", "n", vec!["a b".into()], "d", Now::from_millis(0))
                .is_err()
        );
    }
}
