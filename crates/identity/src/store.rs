//! What the IMS needs from storage, in capability-sized traits. The `ims-store` crate implements
//! them for SQLite and PostgreSQL; both pass the same test suite.
//!
//! Every mutating call that changes identities, credentials or keys takes the [`AuditEvent`] that
//! describes it and writes both in one transaction: a change without its audit line cannot exist.

use async_trait::async_trait;

use crate::clock::Now;
use crate::error::StoreError;
use crate::keys::StoredKey;
use crate::model::{AuditEvent, ClientSecretRecord, OAuthClient, Organization, User};

pub type StoreResult<T> = std::result::Result<T, StoreError>;

#[async_trait]
pub trait OrgStore: Send + Sync {
    /// Creates the first organisation and its system administrator in one transaction, unless an
    /// organisation exists already. Returns whether it created them.
    async fn bootstrap(&self, org: &Organization, admin: &User, audit: &AuditEvent) -> StoreResult<bool>;
    async fn org(&self, org_id: &str) -> StoreResult<Option<Organization>>;
    async fn orgs(&self) -> StoreResult<Vec<Organization>>;
}

#[async_trait]
pub trait UserStore: Send + Sync {
    async fn user_by_email(&self, org_id: &str, email: &str) -> StoreResult<Option<User>>;
}

#[async_trait]
pub trait ClientStore: Send + Sync {
    async fn create_client(
        &self,
        client: &OAuthClient,
        secret: &ClientSecretRecord,
        audit: &AuditEvent,
    ) -> StoreResult<()>;
    async fn client(&self, client_id: &str) -> StoreResult<Option<OAuthClient>>;
    /// A client with its secrets, read together (one round trip on the token path).
    async fn client_with_secrets(
        &self,
        client_id: &str,
    ) -> StoreResult<Option<(OAuthClient, Vec<ClientSecretRecord>)>>;
    async fn clients(&self, org_id: &str) -> StoreResult<Vec<OAuthClient>>;
    /// Returns false when no such client exists.
    async fn set_client_disabled(
        &self,
        client_id: &str,
        disabled: bool,
        now: Now,
        audit: &AuditEvent,
    ) -> StoreResult<bool>;
    async fn secrets(&self, client_id: &str) -> StoreResult<Vec<ClientSecretRecord>>;
    async fn add_secret(&self, secret: &ClientSecretRecord, audit: &AuditEvent) -> StoreResult<()>;
    /// Returns false when the client has no such secret.
    async fn remove_secret(&self, client_id: &str, secret_id: &str, audit: &AuditEvent) -> StoreResult<bool>;
}

#[async_trait]
pub trait KeyStore: Send + Sync {
    async fn insert_key(&self, key: &StoredKey, audit: &AuditEvent) -> StoreResult<()>;
    async fn keys(&self) -> StoreResult<Vec<StoredKey>>;
    async fn delete_keys(&self, kids: &[String], audit: &AuditEvent) -> StoreResult<()>;
}

#[async_trait]
pub trait RevocationStore: Send + Sync {
    /// Records a revoked token id until `expires_at`, after which the token is dead anyway.
    async fn revoke_token(
        &self,
        token_id: &str,
        client_id: &str,
        expires_at: Now,
        now: Now,
        audit: &AuditEvent,
    ) -> StoreResult<()>;
    async fn is_revoked(&self, token_id: &str) -> StoreResult<bool>;
    async fn purge_revocations(&self, now: Now) -> StoreResult<u64>;
}

/// A query over the audit log, newest first.
#[derive(Clone, Debug, Default)]
pub struct AuditQuery {
    pub action_prefix: Option<String>,
    pub limit: u32,
}

#[async_trait]
pub trait AuditStore: Send + Sync {
    async fn append_audit(&self, event: &AuditEvent) -> StoreResult<()>;
    async fn audit(&self, query: &AuditQuery) -> StoreResult<Vec<AuditEvent>>;
}

/// Schema state, for readiness.
#[async_trait]
pub trait SchemaStore: Send + Sync {
    /// Migrations this build knows that the database has not applied yet.
    async fn pending_migrations(&self) -> StoreResult<Vec<String>>;
}

/// How a node learns, without a query, that clients or their secrets may have changed, whoever
/// changed them (this process, the CLI, another node). Lets the token path keep clients in memory
/// and still refuse a disabled client or a removed secret straight away.
pub trait ClientChangeSignal: Send + Sync {
    /// A value that differs whenever a client or secret may have changed since it was last read;
    /// `None` when the backend cannot tell right now, and then nothing may be cached.
    fn client_generation(&self) -> Option<u64>;
}

/// Everything the IMS token service uses.
pub trait Store:
    OrgStore
    + UserStore
    + ClientStore
    + KeyStore
    + RevocationStore
    + AuditStore
    + SchemaStore
    + ClientChangeSignal
{
}

impl<T> Store for T where
    T: OrgStore
        + UserStore
        + ClientStore
        + KeyStore
        + RevocationStore
        + AuditStore
        + SchemaStore
        + ClientChangeSignal
{
}
