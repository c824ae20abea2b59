//! The IMS as services, one per domain, each holding only the storage it needs:
//!
//! - [`Tokens`]: signing keys, client authentication, the token endpoint, validation,
//!   introspection and revocation, userinfo;
//! - [`SignIn`]: the authorization endpoint, the sign-in pages, browser sessions, sign-out and
//!   a person's own password;
//! - [`Directory`]: the User Management API and, through an [`administration::Administration`]
//!   obtained from the proof of who asks, the Admin Console;
//! - [`Developer`]: the Developer Console's projects, workspaces and credentials.
//!
//! [`Ims`] starts them over one store and hands each out; nothing hands the store itself out.
//! Every use case reads the clock from its [`Context`] and writes its audit line in the same
//! transaction as its change.

use serde_json::{json, Map, Value};
use std::sync::Arc;

use crate::model::{GrantType, OAuthClient, Organization, User};
use crate::store::{OrgStore, SchemaStore, Store};
use ims_core::audit::Context;
use ims_core::error::{Error, Result};
use ims_core::jose;
use ims_core::keys::{Algorithm, MasterKey};
use ims_core::secret::{self, Secret};

pub mod administration;
mod code_flow;
pub mod developer;
pub mod directory;
mod signin;
mod tokens;

pub use code_flow::UserInfo;
pub use developer::Developer;
pub use directory::Directory;
pub use ims_core::lockout::{ADDRESS_FREE_FAILURES, FREE_FAILURES};
pub use signin::{Authorized, PostLogout, SignIn, SignInPage, SignInStep, StepOutcome};
pub use tokens::Tokens;

/// The `as` claim. A wire value aio-lib-ims checks (`ims-na1` or `ims-na1-stg1`), kept as is.
pub const AUTHORITY: &str = "ims-na1";

/// Tunables of the token service (from configuration).
#[derive(Clone, Debug)]
pub struct Settings {
    /// Base URL of this IMS; the `iss` of every token and the discovery issuer.
    pub issuer: String,
    pub access_token_secs: i64,
    pub signing_alg: Algorithm,
    /// How long a new key is published before it signs (must exceed JWKS cache times).
    pub key_publish_secs: i64,
    /// How often each node rereads the key table (so rotations made elsewhere are seen).
    pub key_refresh_secs: i64,
    /// Domain of technical account emails: `<id>@techacct.<domain>`.
    pub domain: String,
    /// Access tokens issued to people (shorter than technical accounts': refresh tokens renew
    /// them).
    pub people_access_token_secs: i64,
    /// ID tokens are signed with RS256 unless configured otherwise (OpenID Connect's default).
    pub id_token_alg: Algorithm,
    /// Absolute lifetime of a refresh token family, however often it rotates.
    pub refresh_token_secs: i64,
    /// Lifetime of an IMS browser session.
    pub browser_session_secs: i64,
    /// Time to finish a sign-in once started.
    pub sign_in_flow_secs: i64,
    /// Users or groups per page of the User Management API.
    pub umapi_page_size: u32,
    /// Calls a minute each client may make to the User Management API (0: no limit).
    pub umapi_requests_per_minute: u32,
}

impl Settings {
    pub fn new(issuer: impl Into<String>) -> Self {
        Settings {
            issuer: issuer.into(),
            access_token_secs: 86_400,
            signing_alg: Algorithm::RS256,
            key_publish_secs: 600,
            key_refresh_secs: 30,
            domain: "ims.local".into(),
            people_access_token_secs: 3600,
            id_token_alg: Algorithm::RS256,
            refresh_token_secs: 30 * 86_400,
            browser_session_secs: 12 * 3600,
            sign_in_flow_secs: 15 * 60,
            umapi_page_size: 200,
            umapi_requests_per_minute: 600,
        }
    }

    /// A key keeps being published this long after it stopped signing.
    fn key_retention_secs(&self) -> i64 {
        self.access_token_secs.max(self.people_access_token_secs) + jose::LEEWAY_SECS
    }
}

/// How the client presented its credentials at the token, introspection or revocation endpoint.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ClientAuth {
    /// `client_secret_basic`
    Basic {
        client_id: String,
        secret: Secret,
    },
    /// `client_secret_post` (or the query string, which the vendor's clients use)
    Post {
        client_id: String,
        secret: Secret,
    },
    /// Only a `client_id`, no secret.
    None {
        client_id: String,
    },
    Missing,
}

impl ClientAuth {
    fn is_basic(&self) -> bool {
        matches!(self, ClientAuth::Basic { .. })
    }

    fn client_id(&self) -> Option<&str> {
        match self {
            ClientAuth::Basic { client_id, .. }
            | ClientAuth::Post { client_id, .. }
            | ClientAuth::None { client_id } => Some(client_id),
            ClientAuth::Missing => None,
        }
    }
}

/// A token endpoint request, as parsed from the wire.
#[derive(Clone, Debug)]
pub struct TokenRequest {
    pub grant_type: Option<String>,
    pub auth: ClientAuth,
    pub scope: Option<String>,
    pub org_id: Option<String>,
    /// `authorization_code`: the code, the redirect URI it was issued for, the PKCE verifier.
    pub code: Option<String>,
    pub redirect_uri: Option<String>,
    pub code_verifier: Option<String>,
    /// `refresh_token`: the token.
    pub refresh_token: Option<String>,
}

#[derive(Clone, Debug)]
pub struct IssuedToken {
    pub access_token: Secret,
    pub expires_in: i64,
    pub scope: Vec<String>,
    pub token_id: String,
    pub client_id: String,
    pub grant: GrantType,
    pub refresh_token: Option<Secret>,
    pub id_token: Option<String>,
}

/// A validated access token.
#[derive(Clone, Debug)]
pub struct ValidToken {
    pub claims: Map<String, Value>,
    pub client_id: String,
    pub org_id: String,
    pub token_id: String,
    /// The client the token was issued to, as validation found it (from the client cache).
    pub client: OAuthClient,
}

impl ValidToken {
    /// Scopes the token carries.
    pub fn scopes(&self) -> impl Iterator<Item = &str> {
        self.claims
            .get("scope")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .split([',', ' '])
            .filter(|s| !s.is_empty())
    }

    pub fn require_scope(&self, scope: &'static str) -> Result<()> {
        if self.scopes().any(|s| s == scope) {
            Ok(())
        } else {
            Err(Error::insufficient_scope(scope))
        }
    }
}

/// The IMS: its services, started over one store.
pub struct Ims {
    tokens: Arc<Tokens>,
    sign_in: SignIn,
    directory: Directory,
    developer: Developer,
    schema: Arc<dyn SchemaStore>,
}

impl std::fmt::Debug for Ims {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ims")
            .field("settings", self.tokens.settings())
            .finish_non_exhaustive()
    }
}

impl Ims {
    /// Loads the key ring, makes sure a key of each configured algorithm can sign, and gives
    /// each service its view of `store`.
    pub async fn start(
        store: Arc<dyn Store>,
        master: MasterKey,
        settings: Settings,
        ctx: &Context,
    ) -> Result<Self> {
        let tokens = Arc::new(Tokens::start(Arc::<dyn Store>::clone(&store), master, settings, ctx).await?);
        Ok(Ims {
            sign_in: SignIn::new(Arc::<dyn Store>::clone(&store), Arc::clone(&tokens)),
            directory: Directory::new(Arc::<dyn Store>::clone(&store), Arc::clone(&tokens)),
            developer: Developer::new(Arc::<dyn Store>::clone(&store), Arc::clone(&tokens)),
            schema: store,
            tokens,
        })
    }

    pub fn tokens(&self) -> &Tokens {
        &self.tokens
    }

    pub fn sign_in(&self) -> &SignIn {
        &self.sign_in
    }

    pub fn directory(&self) -> &Directory {
        &self.directory
    }

    pub fn developer(&self) -> &Developer {
        &self.developer
    }

    pub fn settings(&self) -> &Settings {
        self.tokens.settings()
    }

    /// Schema steps this build knows that the database has not applied yet (readiness).
    pub async fn pending_migrations(&self) -> Result<Vec<String>> {
        Ok(self.schema.pending_migrations().await?)
    }

    /// This node's database connections (for metrics).
    pub fn connections(&self) -> crate::store::Connections {
        self.schema.connections()
    }
}

/// Delivers logout tokens to clients' back-channel logout URIs (over HTTPS in the server).
#[async_trait::async_trait]
pub trait LogoutNotifier: Send + Sync {
    /// POSTs `logout_token` to `uri`; the error says why it was not accepted.
    async fn deliver(&self, uri: &str, logout_token: &str) -> std::result::Result<(), String>;
}

/// The event a logout token carries (OpenID Connect Back-Channel Logout 1.0).
pub const BACKCHANNEL_LOGOUT_EVENT: &str = ims_wire::names::BACKCHANNEL_LOGOUT_EVENT;

/// Creates the first organisation and its system administrator, unless one exists. Returns them
/// with the administrator's generated password (shown once) when it created them.
pub async fn bootstrap(
    store: &dyn OrgStore,
    org_name: &str,
    admin_email: &str,
    admin_password: Option<Secret>,
    ctx: &Context,
) -> Result<Option<(Organization, User, Secret)>> {
    if !store.orgs().await?.is_empty() {
        return Ok(None);
    }
    let org = Organization::new(org_name, ctx.now);
    let password = admin_password.unwrap_or_else(|| secret::generate(""));
    let mut admin = User::new(&org.org_id, admin_email, "System", "Administrator", ctx.now);
    admin.password_hash = Some(ims_core::password::hash(&password).await?);
    admin.system_admin = true;
    let event = ctx.event(
        "org.bootstrap",
        &org.org_id,
        "success",
        json!({"name": org.name, "admin": admin.email}),
    );
    if store.bootstrap(&org, &admin, &event).await? {
        Ok(Some((org, admin, password)))
    } else {
        Ok(None)
    }
}
