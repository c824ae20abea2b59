//! An instance's database: the campaign domain's store traits on SQLite and PostgreSQL, with the
//! same one-implementation approach as the IMS store (see the crate docs).

use std::collections::{HashMap, HashSet};

use async_trait::async_trait;
use sqlx::any::AnyRow;
use sqlx::{AnyPool, Row as _};

use ims_campaign::model::Recipient;
use ims_campaign::model::{AuthPath, AuthType, Operator, OperatorGroup, Session, UsageEvent};
use ims_campaign::query::{Sql, SqlValue};
use ims_campaign::store::RecipientKey;
use ims_campaign::store::{
    EventStore, OperatorStore, QueryStore, RecipientStore, SessionStore, SettingsStore, SwitchStep,
    UsageStore,
};
use ims_campaign::usage::{UsageCounts, UsageKey, UsageSummary};
use ims_core::audit::AuditEvent;
use ims_core::error::StoreError;
use ims_core::Now;
use ims_identity::store::{AuditQuery, AuditStore, StoreResult};

use crate::migrate;
use ims_sql::{backend_error, begin_write, connect, Backend, Connected, Options, WriteTx, Writer};

#[derive(Clone, Copy)]
enum FolderRight {
    Read,
    Write,
}

/// A lookup key of one of the operators' unique columns.
enum Key<'a> {
    Text(&'a str),
    Int(i64),
}

#[derive(Clone, Debug)]
pub struct SqlInstanceStore {
    pool: AnyPool,
    backend: Backend,
    writer: Writer,
}

fn get<T>(row: &AnyRow, col: &str) -> StoreResult<T>
where
    T: for<'r> sqlx::Decode<'r, sqlx::Any> + sqlx::Type<sqlx::Any>,
{
    row.try_get::<T, _>(col).map_err(backend_error)
}

const OPERATOR_COLUMNS: &str = "operator_id, login, label, email, auth_type, disabled, forbid_rich_client, \
     trusted_ip_mask, security_zone, password_hash, ims_id, builtin, created_at, modified_at";

impl SqlInstanceStore {
    pub async fn open(opts: &Options, now: Now) -> Result<Self, StoreError> {
        let Connected {
            pool,
            backend,
            writer,
            ..
        } = connect(opts, now, migrate::INSTANCE_MIGRATIONS).await?;
        Ok(SqlInstanceStore {
            pool,
            backend,
            writer,
        })
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Applies the instance's pending migrations up to `version` (see `SqlStore::migrate_to`).
    pub async fn migrate_to(&self, version: i64, now: Now) -> Result<Vec<i64>, StoreError> {
        ims_sql::migrate::run_to(
            &self.pool,
            self.backend,
            now,
            migrate::INSTANCE_MIGRATIONS,
            version,
        )
        .await
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }

    /// Schema steps this build knows that the database has not applied yet (readiness).
    pub async fn pending_migrations(&self) -> Result<Vec<String>, StoreError> {
        ims_sql::migrate::pending(&self.pool, migrate::INSTANCE_MIGRATIONS).await
    }

    /// This node's connections to the instance's database (for metrics).
    pub fn connections(&self) -> ims_identity::store::Connections {
        crate::connections_of(&self.pool)
    }

    pub async fn drop_schema(&self, schema: &str) -> Result<(), StoreError> {
        ims_sql::drop_pg_schema(&self.pool, self.backend, schema).await
    }

    /// Folders where `operator_id` holds `right`, directly or through one of its groups.
    async fn folders_with(&self, operator_id: i64, right: FolderRight) -> StoreResult<Vec<i64>> {
        let column = match right {
            FolderRight::Read => "can_read",
            FolderRight::Write => "can_write",
        };
        let rows = sqlx::query(&format!(
            "SELECT DISTINCT r.folder_id FROM folder_rights r
             WHERE r.{column} = 1 AND (
               (r.grantee_type = 'operator' AND r.grantee_id = $1)
               OR (r.grantee_type = 'group' AND r.grantee_id IN
                   (SELECT group_id FROM operator_group_members WHERE operator_id = $1)))
             ORDER BY r.folder_id"
        ))
        .bind(operator_id)
        .fetch_all(&self.pool)
        .await
        .map_err(backend_error)?;
        rows.iter().map(|r| get(r, "folder_id")).collect()
    }

    /// The operator whose unique `column` (one of ours) equals `key`.
    async fn operator_where(&self, column: &'static str, key: Key<'_>) -> StoreResult<Option<Operator>> {
        let sql = format!("SELECT {OPERATOR_COLUMNS} FROM operators WHERE {column} = $1");
        let query = match key {
            Key::Text(t) => sqlx::query(&sql).bind(t.to_owned()),
            Key::Int(i) => sqlx::query(&sql).bind(i),
        };
        match query.fetch_optional(&self.pool).await.map_err(backend_error)? {
            Some(r) => Ok(Some(self.complete(&r).await?)),
            None => Ok(None),
        }
    }

    /// One switch in a transaction of its own (see `OperatorStore::switch_operator`).
    async fn switch_alone(&self, step: &SwitchStep) -> StoreResult<bool> {
        let mut tx = begin_write(&self.pool, &self.writer).await?;
        let done = match switch_in(&mut tx, std::slice::from_ref(step)).await {
            // Another switch linking the same identity at the same moment: the unique link
            // decides, and this one reports it lost.
            Err(StoreError::Conflict(_)) => return Ok(false),
            other => other?[0],
        };
        if done {
            tx.commit().await.map_err(backend_error)?;
        }
        Ok(done)
    }

    async fn complete(&self, row: &AnyRow) -> StoreResult<Operator> {
        let id: i64 = get(row, "operator_id")?;
        let groups = sqlx::query(
            "SELECT g.name FROM operator_group_members m JOIN operator_groups g ON g.group_id = m.group_id
             WHERE m.operator_id = $1 ORDER BY g.name",
        )
        .bind(id)
        .fetch_all(&self.pool)
        .await
        .map_err(backend_error)?;
        let rights =
            sqlx::query("SELECT right_name FROM operator_rights WHERE operator_id = $1 ORDER BY right_name")
                .bind(id)
                .fetch_all(&self.pool)
                .await
                .map_err(backend_error)?;
        operator_of(
            row,
            groups
                .iter()
                .map(|r| get(r, "name"))
                .collect::<StoreResult<_>>()?,
            rights
                .iter()
                .map(|r| get(r, "right_name"))
                .collect::<StoreResult<_>>()?,
        )
    }
}

/// An operator row with its groups and direct rights.
fn operator_of(row: &AnyRow, groups: Vec<String>, rights: Vec<String>) -> StoreResult<Operator> {
    let auth: String = get(row, "auth_type")?;
    Ok(Operator {
        id: get(row, "operator_id")?,
        login: get(row, "login")?,
        label: get(row, "label")?,
        email: get(row, "email")?,
        auth_type: AuthType::parse(&auth)
            .ok_or_else(|| StoreError::Backend(format!("unknown auth type {auth:?}")))?,
        disabled: get::<i64>(row, "disabled")? != 0,
        forbid_rich_client: get::<i64>(row, "forbid_rich_client")? != 0,
        trusted_ip_mask: get(row, "trusted_ip_mask")?,
        security_zone: get(row, "security_zone")?,
        rights,
        groups,
        password_hash: get(row, "password_hash")?,
        ims_id: get(row, "ims_id")?,
        builtin: get::<i64>(row, "builtin")? != 0,
        created_at: Now::from_millis(get(row, "created_at")?),
        modified_at: Now::from_millis(get(row, "modified_at")?),
    })
}

fn auth_path_of(r: &AnyRow) -> StoreResult<AuthPath> {
    let path: String = get(r, "auth_path")?;
    AuthPath::parse(&path).ok_or_else(|| StoreError::Backend(format!("unknown auth path {path:?}")))
}

fn summary_of(r: &AnyRow) -> StoreResult<UsageSummary> {
    Ok(UsageSummary {
        key: UsageKey {
            login: get(r, "login")?,
            operator_id: get(r, "operator_id")?,
            action: get(r, "action")?,
            auth_path: auth_path_of(r)?,
            source: get(r, "source")?,
            client: get(r, "client")?,
            outcome: get(r, "outcome")?,
        },
        counts: UsageCounts {
            calls: get(r, "calls")?,
            first_at: Now::from_millis(get(r, "first_at")?),
            last_at: Now::from_millis(get(r, "last_at")?),
        },
    })
}

/// `(operator_id, name)` rows grouped by operator.
fn names_by_operator(rows: &[AnyRow], column: &str) -> StoreResult<HashMap<i64, Vec<String>>> {
    let mut out: HashMap<i64, Vec<String>> = HashMap::new();
    for r in rows {
        out.entry(get(r, "operator_id")?)
            .or_default()
            .push(get(r, column)?);
    }
    Ok(out)
}

/// Adds the operator's groups (which must exist) and direct rights.
async fn insert_memberships(tx: &mut WriteTx, id: i64, op: &Operator) -> StoreResult<()> {
    for group in &op.groups {
        let done = sqlx::query(
            "INSERT INTO operator_group_members (operator_id, group_id)
             SELECT $1, group_id FROM operator_groups WHERE name = $2",
        )
        .bind(id)
        .bind(group)
        .execute(&mut **tx)
        .await
        .map_err(backend_error)?;
        if done.rows_affected() == 0 {
            return Err(StoreError::Conflict(format!("no operator group {group:?}")));
        }
    }
    for right in &op.rights {
        sqlx::query("INSERT INTO operator_rights (operator_id, right_name) VALUES ($1, $2)")
            .bind(id)
            .bind(right)
            .execute(&mut **tx)
            .await
            .map_err(backend_error)?;
    }
    Ok(())
}

/// Replaces an operator's memberships and direct rights with `op`'s.
async fn replace_memberships(tx: &mut WriteTx, id: i64, op: &Operator) -> StoreResult<()> {
    for sql in [
        "DELETE FROM operator_group_members WHERE operator_id = $1",
        "DELETE FROM operator_rights WHERE operator_id = $1",
    ] {
        sqlx::query(sql)
            .bind(id)
            .execute(&mut **tx)
            .await
            .map_err(backend_error)?;
    }
    insert_memberships(tx, id, op).await
}

/// Switches inside `tx` (see `OperatorStore::switch_operators`): per step, true when it was
/// made; false, with nothing of it written, when the operator changed since it was read, is gone,
/// or the identity links another one. The statements common to the steps (the links held, the
/// sessions ended, the audit lines) run once for the whole batch: on PostgreSQL each statement
/// is a round trip.
async fn switch_in(tx: &mut WriteTx, steps: &[SwitchStep]) -> StoreResult<Vec<bool>> {
    // An identity links one operator at most: a link held elsewhere refuses the switch.
    let links: Vec<&str> = steps.iter().filter_map(|s| s.link.as_deref()).collect();
    let mut holder: HashMap<String, i64> = HashMap::new();
    for chunk in links.chunks(500) {
        let marks = crate::placeholders(1, chunk.len());
        let sql = format!("SELECT ims_id, operator_id FROM operators WHERE ims_id IN ({marks})");
        let mut q = sqlx::query(&sql);
        for link in chunk {
            q = q.bind(*link);
        }
        for r in q.fetch_all(&mut **tx).await.map_err(backend_error)? {
            holder.insert(get(&r, "ims_id")?, get(&r, "operator_id")?);
        }
    }
    let mut out = Vec::with_capacity(steps.len());
    let mut made: Vec<&SwitchStep> = Vec::with_capacity(steps.len());
    // Steps that cannot affect one another (the common case: a migration gives each operator an
    // identity of their own) switch in one statement; otherwise one at a time, in order.
    let together = if independent(steps, &holder) {
        Some(switch_together(tx, steps).await?)
    } else {
        None
    };
    for step in steps {
        let done = match &together {
            Some(switched) => switched.contains(&step.id),
            None => {
                if step
                    .link
                    .as_ref()
                    .is_some_and(|link| holder.get(link).is_some_and(|id| *id != step.id))
                {
                    false
                } else {
                    switch_together(tx, std::slice::from_ref(step))
                        .await?
                        .contains(&step.id)
                }
            }
        };
        if !done {
            out.push(false);
            continue;
        }
        // What this batch linked and unlinked counts for its later steps.
        holder.retain(|_, id| *id != step.id);
        if let Some(link) = &step.link {
            holder.insert(link.clone(), step.id);
        }
        if let Some(access) = &step.access {
            let given = Operator {
                groups: access.groups.clone(),
                rights: access.rights.clone(),
                ..Operator::native("", None, Vec::new(), None, step.audit.at)
            };
            replace_memberships(tx, step.id, &given).await?;
        }
        out.push(true);
        made.push(step);
    }
    let mut paths: Vec<AuthPath> = made.iter().map(|s| s.end_path).collect();
    paths.sort_by_key(|p| p.as_str());
    paths.dedup();
    for path in paths {
        let ids: Vec<i64> = made.iter().filter(|s| s.end_path == path).map(|s| s.id).collect();
        for chunk in ids.chunks(500) {
            let marks = crate::placeholders(2, chunk.len());
            let sql = format!("DELETE FROM sessions WHERE auth_path = $1 AND operator_id IN ({marks})");
            let mut q = sqlx::query(&sql).bind(path.as_str());
            for id in chunk {
                q = q.bind(*id);
            }
            q.execute(&mut **tx).await.map_err(backend_error)?;
        }
    }
    let events: Vec<AuditEvent> = made.iter().map(|s| s.audit.clone()).collect();
    crate::audit_many(tx, &events).await?;
    Ok(out)
}

/// Whether no step of a batch can change what another may do: each operator and each identity
/// appears once, and no identity a step links is held by another operator.
fn independent(steps: &[SwitchStep], holder: &HashMap<String, i64>) -> bool {
    let mut ids = HashSet::new();
    let mut links = HashSet::new();
    steps.iter().all(|s| {
        ids.insert(s.id)
            && s.link.as_ref().is_none_or(|link| {
                links.insert(link.as_str()) && holder.get(link).is_none_or(|id| *id == s.id)
            })
    })
}

/// Switches the steps' operators, each only if it is still as its step read it, a statement for
/// up to `ROWS_PER_STATEMENT` steps; returns the operators switched. Cleared, a password no
/// longer signs in: an administrator sets a new one.
async fn switch_together(tx: &mut WriteTx, steps: &[SwitchStep]) -> StoreResult<HashSet<i64>> {
    let mut switched = HashSet::new();
    for chunk in steps.chunks(ims_sql::ROWS_PER_STATEMENT) {
        // A VALUES list's columns are column1, column2, ... on both backends: the operator, the
        // new type, identity and time, the type and time read, whether the password goes.
        let sql = format!(
            "UPDATE operators SET auth_type = v.column2, ims_id = v.column3, modified_at = v.column4,
               password_hash = CASE WHEN v.column7 = 1 THEN NULL ELSE operators.password_hash END
             FROM (VALUES {}) AS v
             WHERE operators.operator_id = v.column1 AND operators.auth_type = v.column5
               AND operators.modified_at = v.column6
             RETURNING operator_id",
            ims_sql::value_rows(Backend::of(tx), chunk.len(), 7)
        );
        let mut q = sqlx::query(&sql);
        for step in chunk {
            q = q
                .bind(step.id)
                .bind(step.to.as_str())
                .bind(step.link.clone())
                .bind(step.audit.at.millis().max(step.read_at.millis() + 1))
                .bind(step.from.as_str())
                .bind(step.read_at.millis())
                .bind(i64::from(step.reset_password));
        }
        for row in q.fetch_all(&mut **tx).await.map_err(backend_error)? {
            switched.insert(get::<i64>(&row, "operator_id")?);
        }
    }
    Ok(switched)
}

mod data;
mod operators;
mod sessions;
mod usage;
