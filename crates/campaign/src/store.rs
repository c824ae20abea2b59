//! What an instance needs from storage. Implemented for SQLite and PostgreSQL in `ims-store`,
//! in the instance's own database.

use async_trait::async_trait;
use ims_core::audit::AuditEvent;
use ims_core::Now;
use ims_core::StoreResult;

use crate::model::{AuthPath, AuthType, Operator, OperatorGroup, Recipient, Session, UsageEvent};
use crate::query::Sql;
use crate::usage::UsageSummary;

#[async_trait]
pub trait OperatorStore: Send + Sync {
    async fn operator_by_login(&self, login: &str) -> StoreResult<Option<Operator>>;
    async fn operator(&self, id: i64) -> StoreResult<Option<Operator>>;
    /// The operators with these logins (those that exist, in no particular order): one reading
    /// for a batch instead of one per login.
    async fn operators_by_logins(&self, logins: &[String]) -> StoreResult<Vec<Operator>> {
        let mut out = Vec::with_capacity(logins.len());
        for login in logins {
            out.extend(self.operator_by_login(login).await?);
        }
        Ok(out)
    }
    /// The operator linked to an IMS identity (user id or technical account id).
    async fn operator_by_ims_id(&self, ims_id: &str) -> StoreResult<Option<Operator>>;
    /// Operators whose email equals `email` case-insensitively (a few at most).
    async fn operators_by_email(&self, email: &str) -> StoreResult<Vec<Operator>>;
    /// Inserts the operator (its `id` is ignored) with its groups and direct rights, and its
    /// audit line, in one transaction; returns the id.
    async fn create_operator(&self, op: &Operator, audit: &AuditEvent) -> StoreResult<i64>;
    /// Replaces the operator's fields (authentication type included), groups and direct rights (found by `id`), with its audit
    /// line, in one transaction; with `end_sessions`, its sessions end in the same transaction.
    /// A login taken by another operator is a conflict.
    async fn update_operator(&self, op: &Operator, end_sessions: bool, audit: &AuditEvent)
        -> StoreResult<()>;
    /// Sets only what a sign-in through the IMS or a reading of product profiles decides: the
    /// operator's groups and direct rights, and its IMS link when `link` is given, with the audit
    /// line, in one transaction; every other field stays as it is in the store now (an
    /// administrator's change made meanwhile is kept). The link is set only on an operator linked
    /// to nobody or to that identity already (a conflict otherwise); with `end_ims_sessions` its
    /// sessions opened through the IMS end too. Returns the operator as it now is.
    async fn set_operator_access(
        &self,
        id: i64,
        groups: &[String],
        rights: &[String],
        link: Option<&str>,
        end_ims_sessions: bool,
        audit: &AuditEvent,
    ) -> StoreResult<Operator>;
    /// Switches an operator's authentication type from `step.from` to `step.to` and sets its IMS
    /// link (`None` clears it), provided it is still as the caller read it (`read_at`, its
    /// `modified_at`): the migration's compare-and-set. Its sessions opened through `end_path`
    /// end in the same transaction as the change and its audit line. False when the operator
    /// changed meanwhile, is gone, or the identity is linked to another operator.
    async fn switch_operator(&self, step: &SwitchStep) -> StoreResult<bool>;
    /// Several switches (see `switch_operator`), each deciding alone (one's conflict does not
    /// stop the others), in as few transactions as the store can: the migration moves thousands
    /// of operators and a transaction each would bound it. One answer per step, in order.
    async fn switch_operators(&self, steps: &[SwitchStep]) -> StoreResult<Vec<bool>> {
        let mut out = Vec::with_capacity(steps.len());
        for s in steps {
            // A store without batches has no password reset either: refused, not half done.
            if s.reset_password {
                out.push(false);
                continue;
            }
            out.push(self.switch_operator(s).await?);
        }
        Ok(out)
    }
    /// Gives operator `to` every direct named right and folder right operator `from` holds that
    /// `to` lacks (nothing `to` holds is taken or narrowed), in one transaction with the audit
    /// line, written only when something is added. Returns how many rights and folder rights
    /// were added.
    async fn copy_operator_access(&self, from: i64, to: i64, audit: &AuditEvent) -> StoreResult<(u64, u64)>;
    /// Removes the operator, its memberships, direct and folder rights and sessions, with its
    /// audit line, in one transaction. Its usage evidence stays.
    async fn delete_operator(&self, id: i64, audit: &AuditEvent) -> StoreResult<()>;
    /// One page of operators by login, those whose login, label or email contains `search`
    /// (case-insensitively), and how many match in all.
    async fn operators_page(
        &self,
        search: Option<&str>,
        offset: u32,
        limit: u32,
    ) -> StoreResult<(Vec<Operator>, i64)>;
    /// Up to `limit` operators with ids above `after`, in id order: the way through every
    /// operator that stays fast whatever their number (a few queries per page).
    async fn operators_after(&self, after: i64, limit: u32) -> StoreResult<Vec<Operator>>;
    async fn operator_count(&self) -> StoreResult<i64>;
    async fn groups(&self) -> StoreResult<Vec<OperatorGroup>>;
    /// Creates the group unless one of that name exists.
    async fn ensure_group(&self, name: &str, label: &str, rights: &[&str]) -> StoreResult<()>;
    /// Creates the group with its rights and its audit line, in one transaction; false (and
    /// nothing written) when a group of that name exists.
    async fn create_group(&self, group: &OperatorGroup, audit: &AuditEvent) -> StoreResult<bool>;
}

/// The scope of an instance's native sign-in counters per folded login (`Logon` and the console
/// together; addresses are counted under the IMS's common address scope).
pub const LOGIN_REALM: &str = "native";

#[async_trait]
pub trait SessionStore: Send + Sync {
    /// Opens the session, provided its operator still exists and still signs in the way the
    /// session was opened (native or IMS): a conflict otherwise.
    async fn insert_session(&self, session: &Session) -> StoreResult<()>;
    async fn session(&self, session_digest: &str) -> StoreResult<Option<Session>>;
    async fn delete_session(&self, session_digest: &str) -> StoreResult<bool>;
    /// Ends the operator's sessions opened through `path`; returns how many.
    async fn delete_operator_sessions(&self, operator_id: i64, path: AuthPath) -> StoreResult<u64>;
    async fn purge_sessions(&self, now: Now) -> StoreResult<u64>;
}

#[async_trait]
pub trait UsageStore: Send + Sync {
    async fn record_usage(&self, event: &UsageEvent) -> StoreResult<()>;
    /// Newest first.
    async fn usage(&self, login: Option<&str>, limit: u32) -> StoreResult<Vec<UsageEvent>>;
    /// Adds counted calls to the running totals, in one transaction.
    async fn add_usage(&self, rows: &[UsageSummary]) -> StoreResult<()>;
    /// Running totals, most recently seen first.
    async fn usage_summary(&self, login: Option<&str>, limit: u32) -> StoreResult<Vec<UsageSummary>>;
    /// Everything recorded of the operators with ids in `first..=last`: the running totals of
    /// their calls and their sign-ins and refusals summed the same way (count, first and last
    /// time per action, path, source, client and outcome).
    async fn usage_of_operators(&self, first: i64, last: i64) -> StoreResult<Vec<UsageSummary>>;
}

/// The instance's own settings (name, type, build).
#[async_trait]
pub trait SettingsStore: Send + Sync {
    async fn setting(&self, key: &str) -> StoreResult<Option<String>>;
    async fn set_setting(&self, key: &str, value: &str, audit: &AuditEvent) -> StoreResult<()>;
}

/// Real-time events of a Message Center instance.
#[async_trait]
pub trait EventStore: Send + Sync {
    /// Stores a pushed event; returns its id.
    async fn push_event(
        &self,
        event_type: &str,
        email: Option<&str>,
        ctx: &str,
        pushed_by: i64,
        now: Now,
    ) -> StoreResult<i64>;
    /// Events waiting to be processed.
    async fn pending_events(&self) -> StoreResult<i64>;
}

/// How a written recipient is found (`_key`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RecipientKey {
    Id,
    Email,
}

/// The recipients of the small data model, filed in folders.
#[async_trait]
pub trait RecipientStore: Send + Sync {
    /// Creates the folder unless it exists; returns its id.
    async fn ensure_folder(&self, name: &str, label: &str) -> StoreResult<i64>;
    /// Grants (or changes) a group's rights on a folder, with its audit line.
    async fn grant_folder_to_group(
        &self,
        folder_id: i64,
        group: &str,
        read: bool,
        write: bool,
        audit: &AuditEvent,
    ) -> StoreResult<()>;
    /// Folders `operator_id` may read, directly or through its groups.
    async fn readable_folders(&self, operator_id: i64) -> StoreResult<Vec<i64>>;
    async fn create_recipient(&self, r: &Recipient) -> StoreResult<i64>;
    /// Folders `operator_id` may write, directly or through its groups.
    async fn writable_folders(&self, operator_id: i64) -> StoreResult<Vec<i64>>;
    async fn folder_by_name(&self, name: &str) -> StoreResult<Option<i64>>;
    /// The recipient whose `id` or `email` (the only keys) equals `value`; the first by id.
    async fn recipient_by(&self, key: RecipientKey, value: &str) -> StoreResult<Option<Recipient>>;
    async fn update_recipient(&self, r: &Recipient) -> StoreResult<()>;
    async fn delete_recipient(&self, id: i64) -> StoreResult<()>;
}

/// Queries built from `xtk:queryDef` documents. Table and column names come from the schema
/// whitelist ([`crate::schemas`]), never from the caller; values are bound parameters.
#[async_trait]
pub trait QueryStore: Send + Sync {
    /// Rows as text (absent values as `None`), columns in the order asked.
    async fn select(
        &self,
        table: &'static str,
        columns: &[&'static str],
        filter: Option<&Sql>,
        order: &[(&'static str, bool)],
        limit: Option<u32>,
        offset: u32,
    ) -> StoreResult<Vec<Vec<Option<String>>>>;
    async fn count(&self, table: &'static str, filter: Option<&Sql>) -> StoreResult<i64>;
}

pub trait InstanceStore:
    OperatorStore
    + SessionStore
    + UsageStore
    + QueryStore
    + RecipientStore
    + SettingsStore
    + EventStore
    + ims_core::audit::AuditStore
    + ims_core::lockout::ThrottleStore
{
}

impl<T> InstanceStore for T where
    T: OperatorStore
        + SessionStore
        + UsageStore
        + QueryStore
        + RecipientStore
        + SettingsStore
        + EventStore
        + ims_core::audit::AuditStore
        + ims_core::lockout::ThrottleStore
{
}

/// One operator's switch of authentication type, as `OperatorStore::switch_operator` takes it.
#[derive(Clone, Debug)]
pub struct SwitchStep {
    pub id: i64,
    /// Its modification time when read: the compare-and-set.
    pub read_at: Now,
    pub from: AuthType,
    pub to: AuthType,
    /// The IMS identity it is linked to (`None` clears the link).
    pub link: Option<String>,
    /// Its sessions opened this way end.
    pub end_path: AuthPath,
    /// Its stored password is cleared too (an administrator sets a new one).
    pub reset_password: bool,
    /// Its groups and direct named rights become these (every group exists).
    pub access: Option<ims_wire::migration::Access>,
    pub audit: AuditEvent,
}
