//! What the IMS needs from storage, in capability-sized traits. The `ims-store` crate implements
//! them for SQLite and PostgreSQL; both pass the same test suite.
//!
//! Every mutating call that changes identities, credentials or keys takes the [`AuditEvent`] that
//! describes it and writes both in one transaction: a change without its audit line cannot exist.

use async_trait::async_trait;
use std::collections::BTreeSet;

use crate::developer::{Placement, Project, Workspace};
use crate::directory::{Group, HeldProfile, Membership, ProductInstance, RoleGrant};
use crate::grants::{AuthorizationCode, BrowserSession, RefreshToken, Rotation, SignInFlow};
use crate::links::AccountLink;
use crate::mail::Mail;
use crate::model::{ClientSecretRecord, OAuthClient, Organization, User};
use crate::umapi::{Change, Snapshot};
use ims_core::audit::AuditEvent;
use ims_core::clock::Now;
use ims_core::keys::StoredKey;

pub use ims_core::audit::{AuditQuery, AuditStore};
pub use ims_core::error::StoreResult;
pub use ims_core::lockout::ThrottleStore;

#[async_trait]
pub trait OrgStore: Send + Sync {
    /// Creates the first organisation and its system administrator in one transaction, unless an
    /// organisation exists already. Returns whether it created them.
    async fn bootstrap(&self, org: &Organization, admin: &User, audit: &AuditEvent) -> StoreResult<bool>;
    async fn org(&self, org_id: &str) -> StoreResult<Option<Organization>>;
    async fn orgs(&self) -> StoreResult<Vec<Organization>>;
    /// Sets whether the organisation requires one-time codes, with its audit line.
    async fn set_require_totp(&self, org_id: &str, required: bool, audit: &AuditEvent) -> StoreResult<()>;
}

#[async_trait]
pub trait UserStore: Send + Sync {
    async fn user_by_email(&self, org_id: &str, email: &str) -> StoreResult<Option<User>>;
    async fn user(&self, user_id: &str) -> StoreResult<Option<User>>;
    /// A taken email (case-insensitively, within the organisation) is a conflict.
    async fn create_user(&self, user: &User, audit: &AuditEvent) -> StoreResult<()>;
    /// Replaces the user's record (found by id). With `end_sessions`, its browser sessions and
    /// refresh tokens end in the same transaction.
    async fn update_user(&self, user: &User, end_sessions: bool, audit: &AuditEvent) -> StoreResult<()>;
    /// Stores a one-time link (its digest) with its audit line and, when given, the message
    /// that carries it to the person, in one transaction.
    async fn insert_account_link(
        &self,
        link: &AccountLink,
        mail: Option<&Mail>,
        audit: &AuditEvent,
    ) -> StoreResult<()>;
    /// A stored link, whatever its state.
    async fn account_link(&self, token_digest: &str) -> StoreResult<Option<AccountLink>>;
    /// Uses up a link of `user`'s, unused and unexpired at `now`, and stores `user` as it
    /// becomes (its new password), ending its sessions, in one transaction: of concurrent calls
    /// one wins. Returns whether this one did.
    async fn use_account_link(
        &self,
        token_digest: &str,
        user: &User,
        now: Now,
        audit: &AuditEvent,
    ) -> StoreResult<bool>;
    /// The person's latest invitation.
    async fn latest_invitation(&self, user_id: &str) -> StoreResult<Option<AccountLink>>;
    /// Every invitation of these people, oldest first.
    async fn invitations_of(&self, user_ids: &[String]) -> StoreResult<Vec<AccountLink>>;
    /// Notes the first time the person signed in to an application (later calls change nothing).
    async fn record_first_sign_in(&self, user_id: &str, now: Now) -> StoreResult<()>;
    /// Records the use of a second factor unless it was used meanwhile: the one-time code's time
    /// step (only if later than the stored one) or the remaining recovery codes (only if they are
    /// still `before`). Returns whether it was recorded.
    async fn use_second_factor(
        &self,
        user_id: &str,
        totp_step: Option<i64>,
        recovery: Option<(&[String], &[String])>,
        now: Now,
        audit: &AuditEvent,
    ) -> StoreResult<bool>;
}

/// Sign-in flows, browser sessions, codes and refresh tokens (see [`crate::grants`]).
#[async_trait]
pub trait GrantStore: Send + Sync {
    async fn insert_flow(&self, flow: &SignInFlow) -> StoreResult<()>;
    async fn flow(&self, flow_digest: &str) -> StoreResult<Option<SignInFlow>>;
    async fn update_flow(&self, flow: &SignInFlow) -> StoreResult<()>;
    async fn delete_flow(&self, flow_digest: &str) -> StoreResult<()>;

    /// Scopes a person allowed a client, if asked before.
    async fn consent(&self, user_id: &str, client_id: &str) -> StoreResult<Option<Vec<String>>>;
    async fn set_consent(
        &self,
        user_id: &str,
        client_id: &str,
        scopes: &[String],
        now: Now,
        audit: &AuditEvent,
    ) -> StoreResult<()>;

    async fn browser_session(&self, session_digest: &str) -> StoreResult<Option<BrowserSession>>;
    async fn delete_browser_session(&self, session_digest: &str) -> StoreResult<()>;

    async fn insert_code(&self, code: &AuthorizationCode) -> StoreResult<()>;
    /// Remembers that `client_id` received a code in the browser session (for back-channel
    /// logout).
    async fn note_session_client(
        &self,
        session_digest: &str,
        client_id: &str,
        user_id: &str,
        now: Now,
    ) -> StoreResult<()>;
    /// The clients that received a code in the browser session and want to hear of its end:
    /// (client id, person, back-channel logout URI).
    async fn logout_targets(&self, session_digest: &str) -> StoreResult<Vec<(String, String, String)>>;
    /// Sets (or clears) where a client hears of sign-outs, with its audit line.
    async fn set_backchannel_logout_uri(
        &self,
        client_id: &str,
        uri: Option<&str>,
        audit: &AuditEvent,
    ) -> StoreResult<()>;
    async fn backchannel_logout_uri(&self, client_id: &str) -> StoreResult<Option<String>>;
    /// The end of a successful sign-in, in one transaction: the email's failure counter cleared,
    /// the new browser session and its audit line, and, when the flow is over, the flow closed,
    /// the client's code stored and the client noted as one the session signed in to (as
    /// `note_session_client` does).
    async fn complete_sign_in(
        &self,
        org_id: &str,
        email_lower: &str,
        session: &BrowserSession,
        audit: &AuditEvent,
        finished: Option<(&str, &AuthorizationCode)>,
    ) -> StoreResult<()>;
    /// What a code's redemption issued, in one transaction: the access token id on the code, the
    /// first refresh token of the family, the audit line. Returns whether a replay of the code was
    /// seen meanwhile (then what was issued must be revoked).
    async fn record_redemption(
        &self,
        code_digest: &str,
        access_token_id: &str,
        refresh: Option<&RefreshToken>,
        audit: &AuditEvent,
    ) -> StoreResult<bool>;
    async fn code(&self, code_digest: &str) -> StoreResult<Option<AuthorizationCode>>;
    async fn mark_code_replayed(&self, code_digest: &str, now: Now) -> StoreResult<()>;
    /// Marks the code consumed unless it already was, atomically: of concurrent calls exactly one
    /// gets the code (as it was before); the others, and a call for an unknown code, get `None`.
    async fn consume_code(&self, code_digest: &str, now: Now) -> StoreResult<Option<AuthorizationCode>>;

    /// Marks `token_digest` used and stores `next`, in one transaction, if the token is live;
    /// otherwise says what it found. Of concurrent rotations of one token exactly one succeeds.
    async fn rotate_refresh_token(
        &self,
        token_digest: &str,
        next: &RefreshToken,
        now: Now,
    ) -> StoreResult<Rotation>;
    async fn refresh_token(&self, token_digest: &str) -> StoreResult<Option<RefreshToken>>;
    /// Revokes every token of the family; returns the access tokens they carried (id, expiry)
    /// so that those can be revoked too.
    async fn revoke_family(&self, family_id: &str, now: Now) -> StoreResult<Vec<(String, Now)>>;
    /// Purges expired flows, codes, sessions and refresh families.
    async fn purge_grants(&self, now: Now) -> StoreResult<u64>;
}

#[async_trait]
pub trait ClientStore: Send + Sync {
    /// Creates a client with its redirect URIs and its first secret (public clients have none).
    async fn create_client(
        &self,
        client: &OAuthClient,
        secret: Option<&ClientSecretRecord>,
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

/// Schema state, for readiness.
#[async_trait]
pub trait SchemaStore: Send + Sync {
    /// Migrations this build knows that the database has not applied yet.
    async fn pending_migrations(&self) -> StoreResult<Vec<String>>;
    /// The connection pool as it stands: for metrics.
    fn connections(&self) -> Connections;
}

/// A node's database connections.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Connections {
    /// Open now, in use or idle.
    pub open: u32,
    pub idle: u32,
    /// The pool's bound.
    pub max: u32,
}

/// How a node learns, without a query, that clients or their secrets may have changed, whoever
/// changed them (this process, the CLI, another node). Lets the token path keep clients in memory
/// and still refuse a disabled client or a removed secret straight away.
pub trait ClientChangeSignal: Send + Sync {
    /// A value that differs whenever a client or secret may have changed since it was last read;
    /// `None` when the backend cannot tell right now, and then nothing may be cached.
    fn client_generation(&self) -> Option<u64>;
}

/// Which of an organisation's users a listing page holds.
#[derive(Clone, Copy, Debug)]
pub struct UsersQuery<'a> {
    /// Only members of this group, when given.
    pub group: Option<&'a str>,
    /// Group names listed and members counted directly only; otherwise the profiles held
    /// through user groups count too.
    pub direct_only: bool,
    /// The page starts after this email (lower-cased) when given, else `offset` users in: a
    /// listing read page by page stays linear that way.
    pub after: Option<&'a str>,
    pub offset: u32,
    pub limit: u32,
}

/// Users with the names of their groups, and whether more pages follow.
pub type UsersPage = (Vec<(User, Vec<String>)>, bool);

/// Product instances, product profiles, user groups, memberships and administrator roles.
#[async_trait]
pub trait DirectoryStore: Send + Sync {
    /// The product instance of that context and name, created when missing; its label and
    /// address are set to these.
    async fn ensure_product_instance(
        &self,
        org_id: &str,
        product_context: &str,
        name: &str,
        label: &str,
        url: &str,
        now: Now,
    ) -> StoreResult<ProductInstance>;
    async fn product_instances(&self, org_id: &str) -> StoreResult<Vec<ProductInstance>>;
    /// The group of that name (case-insensitively).
    async fn group(&self, org_id: &str, name: &str) -> StoreResult<Option<Group>>;
    /// Every group of the organisation with its number of direct members, by name.
    async fn groups(&self, org_id: &str) -> StoreResult<Vec<(Group, i64)>>;
    /// What an action request plans against: the users of `emails`, the groups of `groups` and
    /// those the users are in (all lower-cased), each with its member count, which of the users
    /// are members, and its links.
    async fn directory_snapshot(
        &self,
        org_id: &str,
        emails: &BTreeSet<String>,
        groups: &BTreeSet<String>,
    ) -> StoreResult<Snapshot>;
    /// For a user group, the profiles it is linked to; for a profile, the user groups linked to
    /// it (names).
    async fn linked(&self, org_id: &str, group: &str) -> StoreResult<Vec<String>>;
    /// Applies one entry's changes and audit lines in one transaction: all or nothing.
    async fn apply_changes(&self, org_id: &str, changes: &[Change], audit: &[AuditEvent]) -> StoreResult<()>;
    /// One page of the organisation's users (removed ones aside) by email, each with the names
    /// of its groups (see [`UsersQuery`]); `None` when the query names a group that does not
    /// exist. The flag says whether more pages follow.
    async fn users_page(&self, org_id: &str, query: &UsersQuery<'_>) -> StoreResult<Option<UsersPage>>;
    /// A user's memberships, direct and through user groups.
    async fn memberships(&self, user_id: &str) -> StoreResult<Vec<Membership>>;
    /// The product profiles a user holds (directly or through user groups), for one product
    /// context or all.
    async fn held_profiles(
        &self,
        user_id: &str,
        product_context: Option<&str>,
    ) -> StoreResult<Vec<HeldProfile>>;
    /// Gives (`true`) or takes a product profile to a technical account's credential, with its
    /// audit line; the profile is named case-insensitively.
    async fn set_profile_credential(
        &self,
        org_id: &str,
        profile: &str,
        client_id: &str,
        held: bool,
        now: Now,
        audit: &AuditEvent,
    ) -> StoreResult<()>;
    /// The product profiles a credential holds, for one product context or all.
    async fn credential_profiles(
        &self,
        client_id: &str,
        product_context: Option<&str>,
    ) -> StoreResult<Vec<HeldProfile>>;
    /// The credentials (client ids) holding a profile.
    async fn profile_credentials(&self, org_id: &str, profile: &str) -> StoreResult<Vec<String>>;
    async fn role_grants(&self, user_id: &str) -> StoreResult<Vec<RoleGrant>>;
    /// Grants (`true`) or withdraws a role, with its audit line.
    async fn set_role(&self, grant: &RoleGrant, held: bool, now: Now, audit: &AuditEvent) -> StoreResult<()>;
}

/// A technical account credential to create and what comes with it.
#[derive(Clone, Copy, Debug)]
pub struct NewTechnicalAccount<'a> {
    pub client: &'a OAuthClient,
    pub secret: &'a ClientSecretRecord,
    /// The secret sealed under the master key, kept until it is shown once.
    pub unshown: Option<&'a str>,
    /// A project (with its first workspace) created in the same transaction: the
    /// organisation-level form gives each credential a project of its own.
    pub new_project: Option<(&'a Project, &'a Workspace)>,
    /// The workspace it sits in (id) and its description.
    pub placement: Option<(&'a str, &'a str)>,
    /// The services (sdk codes) it is subscribed to.
    pub services: &'a [String],
    /// The product profiles (group ids) it holds.
    pub profiles: &'a [i64],
    pub audit: &'a [AuditEvent],
}

/// Developer Console projects, workspaces, and where each technical account credential sits,
/// which services it is subscribed to, and its secrets not shown yet.
#[async_trait]
pub trait DeveloperStore: Send + Sync {
    /// Creates a project with its first workspace. A project name taken in the organisation is
    /// a conflict.
    async fn create_project(
        &self,
        project: &Project,
        workspace: &Workspace,
        audit: &AuditEvent,
    ) -> StoreResult<()>;
    async fn projects(&self, org_id: &str) -> StoreResult<Vec<Project>>;
    async fn project(&self, org_id: &str, project_id: &str) -> StoreResult<Option<Project>>;
    /// A workspace name taken in the project is a conflict.
    async fn create_workspace(&self, workspace: &Workspace, audit: &AuditEvent) -> StoreResult<()>;
    async fn workspaces(&self, project_id: &str) -> StoreResult<Vec<Workspace>>;
    /// Creates a technical account credential with everything that comes with it, in one
    /// transaction (see [`NewTechnicalAccount`]).
    async fn create_technical_account(&self, new: &NewTechnicalAccount<'_>) -> StoreResult<()>;
    /// The credentials (client ids) of a workspace, oldest first.
    async fn workspace_credentials(&self, workspace_id: &str) -> StoreResult<Vec<String>>;
    /// Where a credential sits, when it was made in a workspace.
    async fn credential_placement(&self, client_id: &str) -> StoreResult<Option<Placement>>;
    /// The services (sdk codes) a credential is subscribed to.
    async fn credential_services(&self, client_id: &str) -> StoreResult<Vec<String>>;
    /// Subscribes a credential, in one transaction with the credential locked: `services`
    /// added, `scopes` added to those it has, each profile (group id) given (`true`) or taken,
    /// with the audit line.
    async fn subscribe(
        &self,
        client_id: &str,
        services: &[String],
        scopes: &[String],
        profiles: &[(i64, bool)],
        audit: &AuditEvent,
    ) -> StoreResult<()>;
    /// The ids of a credential's secrets not shown yet.
    async fn unshown_secrets(&self, client_id: &str) -> StoreResult<Vec<String>>;
    /// Takes the sealed copies of a credential's secrets not shown yet and created at
    /// `not_before` or later (secret id, sealed value); older copies are dropped unseen. Each
    /// copy goes to exactly one caller, and the one that gets any writes `audit` in the same
    /// transaction, with the ids under `secret_ids`.
    async fn take_unshown_secrets(
        &self,
        client_id: &str,
        not_before: Now,
        audit: &AuditEvent,
    ) -> StoreResult<Vec<(String, String)>>;
    /// Removes a secret unless it is the credential's last one live at `now` (a conflict),
    /// with the credential locked so that two removals cannot both pass. False when the
    /// credential has no such secret.
    async fn remove_secret_keeping_one(
        &self,
        client_id: &str,
        secret_id: &str,
        now: Now,
        audit: &AuditEvent,
    ) -> StoreResult<bool>;
    /// Writes a project's name, title and description. False when no such project exists in the
    /// organisation; another project of that name is a conflict.
    async fn update_project(&self, p: &Project, audit: &AuditEvent) -> StoreResult<bool>;
    /// Deletes a project with its workspaces. A project that still holds credentials is a
    /// conflict (they are deleted one by one, each stopping an integration); false when no such
    /// project exists in the organisation.
    async fn delete_project(&self, org_id: &str, project_id: &str, audit: &AuditEvent) -> StoreResult<bool>;
    /// Deletes a credential with its secrets, services, profiles and placement. False when no
    /// such credential exists.
    async fn delete_client(&self, client_id: &str, audit: &AuditEvent) -> StoreResult<bool>;
}

/// The outbox (see [`crate::mail`]). A message caused by another change is written by that
/// change's own call, in its transaction; these calls queue a message on its own and move
/// messages through delivery.
#[async_trait]
pub trait OutboxStore: Send + Sync {
    /// Queues a message with its audit line.
    async fn queue_mail(&self, mail: &Mail, audit: &AuditEvent) -> StoreResult<()>;
    /// Takes up to `limit` queued messages due at `now`, oldest first, for one delivery attempt
    /// each: each taken message counts the attempt and is not due again before `now` plus
    /// `lease_secs`, so that concurrent senders (other nodes) each take different messages, and
    /// a sender that stops mid-delivery leaves it due again after the lease.
    async fn take_due_mail(&self, now: Now, lease_secs: i64, limit: u32) -> StoreResult<Vec<Mail>>;
    /// The messages were accepted by the mail server.
    async fn mails_sent(&self, mail_ids: &[String], now: Now) -> StoreResult<()>;
    /// The attempt failed with the server's `answer`: the message is due again at `retry_at`, or
    /// failed for good when there is none.
    async fn mail_failed(&self, mail_id: &str, answer: &str, retry_at: Option<Now>) -> StoreResult<()>;
    async fn mail(&self, mail_id: &str) -> StoreResult<Option<Mail>>;
    /// An organisation's messages, newest first.
    async fn outbox(&self, org_id: &str, offset: u32, limit: u32) -> StoreResult<Vec<Mail>>;
    /// Queues a message again, due at `now` with its attempts counted afresh (an administrator's
    /// resend), with its audit line. False when no such message exists.
    async fn resend_mail(&self, mail_id: &str, now: Now, audit: &AuditEvent) -> StoreResult<bool>;
}

/// What the token service reads and writes: keys, clients and revocations for every token;
/// codes, refresh families and their people for the grants that sign people in.
pub trait TokenStorage:
    KeyStore + ClientStore + ClientChangeSignal + RevocationStore + GrantStore + UserStore + OrgStore + AuditStore
{
}

impl<T> TokenStorage for T where
    T: KeyStore
        + ClientStore
        + ClientChangeSignal
        + RevocationStore
        + GrantStore
        + UserStore
        + OrgStore
        + AuditStore
{
}

/// What the sign-in service reads and writes: flows and browser sessions, the people signing
/// in, and the lock-out counters that slow guessing down.
pub trait SignInStorage: GrantStore + UserStore + OrgStore + ThrottleStore + AuditStore {}

impl<T> SignInStorage for T where T: GrantStore + UserStore + OrgStore + ThrottleStore + AuditStore {}

/// What credential administration reads and writes: clients, their secrets and placement, and
/// the organisation they belong to (see `crate::credentials`).
pub trait CredentialStorage: ClientStore + DeveloperStore + OrgStore {}

impl<T> CredentialStorage for T where T: ClientStore + DeveloperStore + OrgStore {}

/// API budgets held where every node sees them, so that several nodes share one budget per
/// caller.
#[async_trait]
pub trait BudgetStore: Send + Sync {
    /// Takes one call from `bucket`'s token bucket (`per_minute` calls a minute, up to that many
    /// at once): `Ok(())`, or after how many seconds one is available. `None` from a store that
    /// holds no budgets (a single node's, which keeps them in memory).
    async fn take_budget(
        &self,
        bucket: &str,
        per_minute: u32,
        now: Now,
    ) -> StoreResult<Option<Result<(), u64>>>;
}

/// What the directory service (User Management API and Admin Console) reads and writes: people,
/// groups, profiles and roles, the clients it registers and what their credentials are
/// subscribed to (which decides the product profiles a token carries), and the organisation's
/// mail.
pub trait DirectoryStorage:
    CredentialStorage + DirectoryStore + UserStore + GrantStore + AuditStore + OutboxStore + BudgetStore
{
}

impl<T> DirectoryStorage for T where
    T: CredentialStorage + DirectoryStore + UserStore + GrantStore + AuditStore + OutboxStore + BudgetStore
{
}

/// What the Developer Console service reads and writes: projects, workspaces and the
/// credentials placed in them, with the product profiles those hold, and the people (with their
/// roles) who may use it.
pub trait DeveloperStorage: CredentialStorage + DirectoryStore + UserStore + AuditStore {}

impl<T> DeveloperStorage for T where T: CredentialStorage + DirectoryStore + UserStore + AuditStore {}

/// Everything the IMS keeps: the union of what its services use. Only the process that opens the
/// database holds it; each service is handed its own narrow view of it (see `crate::service`).
pub trait Store:
    TokenStorage + SignInStorage + DirectoryStorage + DeveloperStorage + SchemaStore + OutboxStore
{
}

impl<T> Store for T where
    T: TokenStorage + SignInStorage + DirectoryStorage + DeveloperStorage + SchemaStore + OutboxStore
{
}
