//! An instance's database: the campaign domain's store traits on SQLite and PostgreSQL, with the
//! same one-implementation approach as the IMS store (see the crate docs).

use std::collections::HashMap;

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
    for step in steps {
        if let Some(link) = &step.link {
            if holder.get(link).is_some_and(|id| *id != step.id) {
                out.push(false);
                continue;
            }
        }
        // Cleared, the password no longer signs in: an administrator sets a new one.
        let password = if step.reset_password {
            ", password_hash = NULL"
        } else {
            ""
        };
        let done = sqlx::query(&format!(
            "UPDATE operators SET auth_type = $1, ims_id = $2, modified_at = $3{password}
             WHERE operator_id = $4 AND auth_type = $5 AND modified_at = $6"
        ))
        .bind(step.to.as_str())
        .bind(step.link.clone())
        .bind(step.audit.at.millis().max(step.read_at.millis() + 1))
        .bind(step.id)
        .bind(step.from.as_str())
        .bind(step.read_at.millis())
        .execute(&mut **tx)
        .await
        .map_err(backend_error)?;
        if done.rows_affected() == 0 {
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

#[async_trait]
impl OperatorStore for SqlInstanceStore {
    async fn operator_by_login(&self, login: &str) -> StoreResult<Option<Operator>> {
        self.operator_where("login", Key::Text(login)).await
    }

    async fn operator(&self, id: i64) -> StoreResult<Option<Operator>> {
        self.operator_where("operator_id", Key::Int(id)).await
    }

    async fn operators_by_logins(&self, logins: &[String]) -> StoreResult<Vec<Operator>> {
        let mut out = Vec::with_capacity(logins.len());
        // Well under every backend's limit on parameters per statement.
        for chunk in logins.chunks(500) {
            let marks = crate::placeholders(1, chunk.len());
            let sql = format!("SELECT {OPERATOR_COLUMNS} FROM operators WHERE login IN ({marks})");
            let mut q = sqlx::query(&sql);
            for login in chunk {
                q = q.bind(login.as_str());
            }
            let rows = q.fetch_all(&self.pool).await.map_err(backend_error)?;
            let ids = rows
                .iter()
                .map(|r| get::<i64>(r, "operator_id").map(|id| id.to_string()))
                .collect::<StoreResult<Vec<_>>>()?;
            if ids.is_empty() {
                continue;
            }
            // Ids are integers read from the store: inlined, they need no placeholders.
            let ids = ids.join(", ");
            let groups = sqlx::query(&format!(
                "SELECT m.operator_id, g.name FROM operator_group_members m
                 JOIN operator_groups g ON g.group_id = m.group_id
                 WHERE m.operator_id IN ({ids}) ORDER BY m.operator_id, g.name"
            ))
            .fetch_all(&self.pool)
            .await
            .map_err(backend_error)?;
            let rights = sqlx::query(&format!(
                "SELECT operator_id, right_name FROM operator_rights
                 WHERE operator_id IN ({ids}) ORDER BY operator_id, right_name"
            ))
            .fetch_all(&self.pool)
            .await
            .map_err(backend_error)?;
            let mut groups = names_by_operator(&groups, "name")?;
            let mut rights = names_by_operator(&rights, "right_name")?;
            for row in &rows {
                let id: i64 = get(row, "operator_id")?;
                out.push(operator_of(
                    row,
                    groups.remove(&id).unwrap_or_default(),
                    rights.remove(&id).unwrap_or_default(),
                )?);
            }
        }
        Ok(out)
    }

    async fn operator_by_ims_id(&self, ims_id: &str) -> StoreResult<Option<Operator>> {
        self.operator_where("ims_id", Key::Text(ims_id)).await
    }

    async fn operators_by_email(&self, email: &str) -> StoreResult<Vec<Operator>> {
        // lower() folds ASCII on SQLite and more on PostgreSQL; the caller compares the
        // candidates again with full case folding.
        let rows = sqlx::query(&format!(
            "SELECT {OPERATOR_COLUMNS} FROM operators WHERE lower(email) = lower($1) ORDER BY operator_id LIMIT 20"
        ))
        .bind(email.trim().to_owned())
        .fetch_all(&self.pool)
        .await
        .map_err(backend_error)?;
        let mut out = Vec::with_capacity(rows.len());
        for r in &rows {
            out.push(self.complete(r).await?);
        }
        Ok(out)
    }

    async fn create_operator(&self, op: &Operator, audit: &AuditEvent) -> StoreResult<i64> {
        let mut tx = begin_write(&self.pool, &self.writer).await?;
        let row = sqlx::query(
            "INSERT INTO operators (login, label, email, auth_type, disabled, forbid_rich_client, trusted_ip_mask,
             security_zone, password_hash, ims_id, builtin, created_at, modified_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13) RETURNING operator_id",
        )
        .bind(&op.login)
        .bind(&op.label)
        .bind(op.email.clone())
        .bind(op.auth_type.as_str())
        .bind(i64::from(op.disabled))
        .bind(i64::from(op.forbid_rich_client))
        .bind(op.trusted_ip_mask.clone())
        .bind(op.security_zone.clone())
        .bind(op.password_hash.clone())
        .bind(op.ims_id.clone())
        .bind(i64::from(op.builtin))
        .bind(op.created_at.millis())
        .bind(op.modified_at.millis())
        .fetch_one(&mut *tx)
        .await
        .map_err(backend_error)?;
        let id: i64 = get(&row, "operator_id")?;
        insert_memberships(&mut tx, id, op).await?;
        crate::audit_in(&mut *tx, audit).await?;
        tx.commit().await.map_err(backend_error)?;
        Ok(id)
    }

    async fn update_operator(
        &self,
        op: &Operator,
        end_sessions: bool,
        audit: &AuditEvent,
    ) -> StoreResult<()> {
        let mut tx = begin_write(&self.pool, &self.writer).await?;
        let taken = sqlx::query("SELECT operator_id FROM operators WHERE login = $1 AND operator_id <> $2")
            .bind(&op.login)
            .bind(op.id)
            .fetch_optional(&mut *tx)
            .await
            .map_err(backend_error)?;
        if taken.is_some() {
            return Err(StoreError::Conflict(format!(
                "an operator named {:?} already exists",
                op.login
            )));
        }
        let done = sqlx::query(
            "UPDATE operators SET login = $1, label = $2, email = $3, disabled = $4, forbid_rich_client = $5,
             trusted_ip_mask = $6, security_zone = $7, password_hash = $8, ims_id = $9, modified_at = $10,
             auth_type = $12
             WHERE operator_id = $11",
        )
        .bind(&op.login)
        .bind(&op.label)
        .bind(op.email.clone())
        .bind(i64::from(op.disabled))
        .bind(i64::from(op.forbid_rich_client))
        .bind(op.trusted_ip_mask.clone())
        .bind(op.security_zone.clone())
        .bind(op.password_hash.clone())
        .bind(op.ims_id.clone())
        .bind(op.modified_at.millis())
        .bind(op.id)
        .bind(op.auth_type.as_str())
        .execute(&mut *tx)
        .await
        .map_err(backend_error)?;
        if done.rows_affected() == 0 {
            return Err(StoreError::Conflict(format!(
                "operator {} no longer exists",
                op.id
            )));
        }
        if end_sessions {
            sqlx::query("DELETE FROM sessions WHERE operator_id = $1")
                .bind(op.id)
                .execute(&mut *tx)
                .await
                .map_err(backend_error)?;
        }
        replace_memberships(&mut tx, op.id, op).await?;
        crate::audit_in(&mut *tx, audit).await?;
        tx.commit().await.map_err(backend_error)?;
        Ok(())
    }

    async fn set_operator_access(
        &self,
        id: i64,
        groups: &[String],
        rights: &[String],
        link: Option<&str>,
        end_ims_sessions: bool,
        audit: &AuditEvent,
    ) -> StoreResult<Operator> {
        let mut tx = begin_write(&self.pool, &self.writer).await?;
        let done = match link {
            Some(ims_id) => sqlx::query(
                "UPDATE operators SET ims_id = $1, modified_at = $2
                 WHERE operator_id = $3 AND (ims_id IS NULL OR ims_id = $1)",
            )
            .bind(ims_id)
            .bind(audit.at.millis())
            .bind(id),
            None => sqlx::query("UPDATE operators SET modified_at = $1 WHERE operator_id = $2")
                .bind(audit.at.millis())
                .bind(id),
        }
        .execute(&mut *tx)
        .await
        .map_err(backend_error)?;
        if done.rows_affected() == 0 {
            return Err(StoreError::Conflict(format!(
                "operator {id} no longer exists or is linked to another identity"
            )));
        }
        if end_ims_sessions {
            sqlx::query("DELETE FROM sessions WHERE operator_id = $1 AND auth_path = $2")
                .bind(id)
                .bind(AuthPath::Ims.as_str())
                .execute(&mut *tx)
                .await
                .map_err(backend_error)?;
        }
        let access = Operator {
            groups: groups.to_vec(),
            rights: rights.to_vec(),
            ..Operator::native("", None, Vec::new(), None, audit.at)
        };
        replace_memberships(&mut tx, id, &access).await?;
        crate::audit_in(&mut *tx, audit).await?;
        tx.commit().await.map_err(backend_error)?;
        self.operator(id)
            .await?
            .ok_or_else(|| StoreError::Conflict(format!("operator {id} no longer exists")))
    }

    async fn switch_operator(
        &self,
        id: i64,
        read_at: Now,
        from: AuthType,
        to: AuthType,
        link: Option<&str>,
        end_path: AuthPath,
        audit: &AuditEvent,
    ) -> StoreResult<bool> {
        let step = SwitchStep {
            id,
            read_at,
            from,
            to,
            link: link.map(str::to_owned),
            end_path,
            reset_password: false,
            access: None,
            audit: audit.clone(),
        };
        self.switch_alone(&step).await
    }

    async fn switch_operators(&self, steps: &[SwitchStep]) -> StoreResult<Vec<bool>> {
        let mut tx = begin_write(&self.pool, &self.writer).await?;
        match switch_in(&mut tx, steps).await {
            Ok(out) => {
                tx.commit().await.map_err(backend_error)?;
                Ok(out)
            }
            // A link taken between the check and the update (a concurrent switch): on
            // PostgreSQL the error spoils the whole transaction, so the batch is given up and
            // each step runs again alone, the lost one reporting false.
            Err(StoreError::Conflict(_)) => {
                drop(tx);
                let mut out = Vec::with_capacity(steps.len());
                for s in steps {
                    out.push(self.switch_alone(s).await?);
                }
                Ok(out)
            }
            Err(other) => Err(other),
        }
    }

    async fn copy_operator_access(&self, from: i64, to: i64, audit: &AuditEvent) -> StoreResult<(u64, u64)> {
        let mut tx = begin_write(&self.pool, &self.writer).await?;
        let rights = sqlx::query(
            "INSERT INTO operator_rights (operator_id, right_name)
             SELECT $2, right_name FROM operator_rights WHERE operator_id = $1
               AND right_name NOT IN (SELECT right_name FROM operator_rights WHERE operator_id = $2)",
        )
        .bind(from)
        .bind(to)
        .execute(&mut *tx)
        .await
        .map_err(backend_error)?
        .rows_affected();
        let folders = sqlx::query(
            "INSERT INTO folder_rights (folder_id, grantee_type, grantee_id, can_read, can_write)
             SELECT f.folder_id, 'operator', $2, f.can_read, f.can_write FROM folder_rights f
              WHERE f.grantee_type = 'operator' AND f.grantee_id = $1
                AND NOT EXISTS (SELECT 1 FROM folder_rights g WHERE g.folder_id = f.folder_id
                                AND g.grantee_type = 'operator' AND g.grantee_id = $2)",
        )
        .bind(from)
        .bind(to)
        .execute(&mut *tx)
        .await
        .map_err(backend_error)?
        .rows_affected();
        if rights + folders == 0 {
            return Ok((0, 0));
        }
        crate::audit_in(&mut *tx, audit).await?;
        tx.commit().await.map_err(backend_error)?;
        Ok((rights, folders))
    }

    async fn delete_operator(&self, id: i64, audit: &AuditEvent) -> StoreResult<()> {
        let mut tx = begin_write(&self.pool, &self.writer).await?;
        for sql in [
            "DELETE FROM sessions WHERE operator_id = $1",
            "DELETE FROM operator_group_members WHERE operator_id = $1",
            "DELETE FROM operator_rights WHERE operator_id = $1",
            "DELETE FROM folder_rights WHERE grantee_type = 'operator' AND grantee_id = $1",
        ] {
            sqlx::query(sql)
                .bind(id)
                .execute(&mut *tx)
                .await
                .map_err(backend_error)?;
        }
        let done = sqlx::query("DELETE FROM operators WHERE operator_id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await
            .map_err(backend_error)?;
        if done.rows_affected() == 0 {
            return Err(StoreError::Conflict(format!("operator {id} no longer exists")));
        }
        crate::audit_in(&mut *tx, audit).await?;
        tx.commit().await.map_err(backend_error)?;
        Ok(())
    }

    async fn operators_page(
        &self,
        search: Option<&str>,
        offset: u32,
        limit: u32,
    ) -> StoreResult<(Vec<Operator>, i64)> {
        // LIKE wildcards in the search are matched literally.
        let pattern = search.map(|s| {
            let escaped = s
                .to_lowercase()
                .replace('\\', "\\\\")
                .replace('%', "\\%")
                .replace('_', "\\_");
            format!("%{escaped}%")
        });
        let filter = if pattern.is_some() {
            "WHERE LOWER(login) LIKE $1 ESCAPE '\\' OR LOWER(label) LIKE $1 ESCAPE '\\' OR LOWER(COALESCE(email, '')) LIKE $1 ESCAPE '\\'"
        } else {
            ""
        };
        let count_sql = format!("SELECT COUNT(*) AS n FROM operators {filter}");
        let page_sql = format!(
            "SELECT {OPERATOR_COLUMNS} FROM operators {filter} ORDER BY login LIMIT {} OFFSET {}",
            limit.min(1000),
            offset
        );
        let mut count = sqlx::query(&count_sql);
        let mut page = sqlx::query(&page_sql);
        if let Some(p) = &pattern {
            count = count.bind(p.clone());
            page = page.bind(p.clone());
        }
        let total: i64 = get(&count.fetch_one(&self.pool).await.map_err(backend_error)?, "n")?;
        let rows = page.fetch_all(&self.pool).await.map_err(backend_error)?;
        let mut out = Vec::with_capacity(rows.len());
        for row in &rows {
            out.push(self.complete(row).await?);
        }
        Ok((out, total))
    }

    async fn operators_after(&self, after: i64, limit: u32) -> StoreResult<Vec<Operator>> {
        let rows = sqlx::query(&format!(
            "SELECT {OPERATOR_COLUMNS} FROM operators WHERE operator_id > $1 ORDER BY operator_id LIMIT $2"
        ))
        .bind(after)
        .bind(i64::from(limit.clamp(1, 10_000)))
        .fetch_all(&self.pool)
        .await
        .map_err(backend_error)?;
        let (Some(first), Some(last)) = (rows.first(), rows.last()) else {
            return Ok(Vec::new());
        };
        let (first, last): (i64, i64) = (get(first, "operator_id")?, get(last, "operator_id")?);
        let groups = sqlx::query(
            "SELECT m.operator_id, g.name FROM operator_group_members m
             JOIN operator_groups g ON g.group_id = m.group_id
             WHERE m.operator_id BETWEEN $1 AND $2 ORDER BY m.operator_id, g.name",
        )
        .bind(first)
        .bind(last)
        .fetch_all(&self.pool)
        .await
        .map_err(backend_error)?;
        let rights = sqlx::query(
            "SELECT operator_id, right_name FROM operator_rights
             WHERE operator_id BETWEEN $1 AND $2 ORDER BY operator_id, right_name",
        )
        .bind(first)
        .bind(last)
        .fetch_all(&self.pool)
        .await
        .map_err(backend_error)?;
        let mut groups = names_by_operator(&groups, "name")?;
        let mut rights = names_by_operator(&rights, "right_name")?;
        rows.iter()
            .map(|row| {
                let id: i64 = get(row, "operator_id")?;
                operator_of(
                    row,
                    groups.remove(&id).unwrap_or_default(),
                    rights.remove(&id).unwrap_or_default(),
                )
            })
            .collect()
    }

    async fn operator_count(&self) -> StoreResult<i64> {
        let row = sqlx::query("SELECT COUNT(*) AS n FROM operators")
            .fetch_one(&self.pool)
            .await
            .map_err(backend_error)?;
        get(&row, "n")
    }

    async fn groups(&self) -> StoreResult<Vec<OperatorGroup>> {
        let rows = sqlx::query(
            "SELECT g.group_id, g.name, g.label, r.right_name FROM operator_groups g
             LEFT JOIN group_rights r ON r.group_id = g.group_id ORDER BY g.name, r.right_name",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(backend_error)?;
        let mut out: Vec<OperatorGroup> = Vec::new();
        for row in &rows {
            let id: i64 = get(row, "group_id")?;
            if out.last().is_none_or(|g| g.id != id) {
                out.push(OperatorGroup {
                    id,
                    name: get(row, "name")?,
                    label: get(row, "label")?,
                    rights: Vec::new(),
                });
            }
            if let (Some(g), Some(right)) = (out.last_mut(), get::<Option<String>>(row, "right_name")?) {
                g.rights.push(right);
            }
        }
        Ok(out)
    }

    async fn create_group(&self, group: &OperatorGroup, audit: &AuditEvent) -> StoreResult<bool> {
        let mut tx = begin_write(&self.pool, &self.writer).await?;
        let inserted = sqlx::query(
            "INSERT INTO operator_groups (name, label) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING",
        )
        .bind(group.name.clone())
        .bind(group.label.clone())
        .execute(&mut *tx)
        .await
        .map_err(backend_error)?
        .rows_affected();
        if inserted == 0 {
            return Ok(false);
        }
        for right in &group.rights {
            sqlx::query(
                "INSERT INTO group_rights (group_id, right_name) SELECT group_id, $1 FROM operator_groups WHERE name = $2",
            )
            .bind(right.clone())
            .bind(group.name.clone())
            .execute(&mut *tx)
            .await
            .map_err(backend_error)?;
        }
        crate::audit_in(&mut *tx, audit).await?;
        tx.commit().await.map_err(backend_error)?;
        Ok(true)
    }

    async fn ensure_group(&self, name: &str, label: &str, rights: &[&str]) -> StoreResult<()> {
        let mut tx = begin_write(&self.pool, &self.writer).await?;
        let inserted = sqlx::query(
            "INSERT INTO operator_groups (name, label) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING",
        )
        .bind(name)
        .bind(label)
        .execute(&mut *tx)
        .await
        .map_err(backend_error)?
        .rows_affected();
        if inserted > 0 {
            for right in rights {
                sqlx::query(
                    "INSERT INTO group_rights (group_id, right_name) SELECT group_id, $1 FROM operator_groups WHERE name = $2",
                )
                .bind(*right)
                .bind(name)
                .execute(&mut *tx)
                .await
                .map_err(backend_error)?;
            }
        }
        tx.commit().await.map_err(backend_error)
    }
}

#[async_trait]
impl SessionStore for SqlInstanceStore {
    async fn insert_session(&self, s: &Session) -> StoreResult<()> {
        // The operator was read before the password check, which takes a while: a migration
        // may have switched it meanwhile. The session is written only if the operator still
        // signs in the way it was opened, in the same statement, so none outlives a switch.
        let still = match s.auth_path {
            AuthPath::Native => "AND auth_type = 'native'",
            AuthPath::Ims => "AND auth_type = 'ims'",
            AuthPath::Bearer => "",
        };
        let done = sqlx::query(&format!(
            "INSERT INTO sessions (session_digest, security_digest, operator_id, auth_path, created_at, expires_at)
             SELECT $1, $2, $3, $4, $5, $6 WHERE EXISTS
               (SELECT 1 FROM operators WHERE operator_id = $3 {still})"
        ))
        .bind(&s.session_digest)
        .bind(&s.security_digest)
        .bind(s.operator_id)
        .bind(s.auth_path.as_str())
        .bind(s.created_at.millis())
        .bind(s.expires_at.millis())
        .execute(&self.pool)
        .await
        .map_err(backend_error)?;
        if done.rows_affected() == 0 {
            return Err(StoreError::Conflict(format!(
                "operator {} no longer signs in this way",
                s.operator_id
            )));
        }
        Ok(())
    }

    async fn session(&self, digest: &str) -> StoreResult<Option<Session>> {
        let row = sqlx::query(
            "SELECT session_digest, security_digest, operator_id, auth_path, created_at, expires_at
             FROM sessions WHERE session_digest = $1",
        )
        .bind(digest)
        .fetch_optional(&self.pool)
        .await
        .map_err(backend_error)?;
        let Some(row) = row else { return Ok(None) };
        let path: String = get(&row, "auth_path")?;
        Ok(Some(Session {
            session_digest: get(&row, "session_digest")?,
            security_digest: get(&row, "security_digest")?,
            operator_id: get(&row, "operator_id")?,
            auth_path: AuthPath::parse(&path)
                .ok_or_else(|| StoreError::Backend(format!("unknown auth path {path:?}")))?,
            created_at: Now::from_millis(get(&row, "created_at")?),
            expires_at: Now::from_millis(get(&row, "expires_at")?),
        }))
    }

    async fn delete_session(&self, digest: &str) -> StoreResult<bool> {
        Ok(sqlx::query("DELETE FROM sessions WHERE session_digest = $1")
            .bind(digest)
            .execute(&self.pool)
            .await
            .map_err(backend_error)?
            .rows_affected()
            > 0)
    }

    async fn delete_operator_sessions(&self, operator_id: i64, path: AuthPath) -> StoreResult<u64> {
        Ok(
            sqlx::query("DELETE FROM sessions WHERE operator_id = $1 AND auth_path = $2")
                .bind(operator_id)
                .bind(path.as_str())
                .execute(&self.pool)
                .await
                .map_err(backend_error)?
                .rows_affected(),
        )
    }

    async fn purge_sessions(&self, now: Now) -> StoreResult<u64> {
        Ok(sqlx::query("DELETE FROM sessions WHERE expires_at <= $1")
            .bind(now.millis())
            .execute(&self.pool)
            .await
            .map_err(backend_error)?
            .rows_affected())
    }
}

/// Native sign-in counters (see `ims_core::lockout`): per login realm and folded login, and
/// per client address, in the instance's own database.
#[async_trait]
impl ims_core::lockout::ThrottleStore for SqlInstanceStore {
    async fn admit_attempt(
        &self,
        scope: &str,
        key: &str,
        now: Now,
        reset_secs: i64,
        lock_ms: &[i64],
        attempt_id: &str,
    ) -> StoreResult<(bool, u32)> {
        let counter = (scope, key);
        crate::lockout::admit(
            &self.pool,
            &self.writer,
            &crate::lockout::OPERATORS,
            counter,
            now,
            reset_secs,
            lock_ms,
            attempt_id,
        )
        .await
    }

    async fn failures(&self, scope: &str, key: &str) -> StoreResult<Option<(u32, Now, Now)>> {
        crate::lockout::failures(&self.pool, &crate::lockout::OPERATORS, (scope, key)).await
    }

    async fn clear_failures(&self, scope: &str, key: &str) -> StoreResult<()> {
        crate::lockout::clear(&self.pool, &crate::lockout::OPERATORS, (scope, key)).await
    }

    async fn forgive_attempt(&self, scope: &str, key: &str, free: u32) -> StoreResult<()> {
        crate::lockout::forgive(&self.pool, &crate::lockout::OPERATORS, (scope, key), free).await
    }
}

#[async_trait]
impl UsageStore for SqlInstanceStore {
    async fn record_usage(&self, e: &UsageEvent) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO usage_events (at, operator_id, login, action, auth_path, source, client, outcome)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(e.at.millis())
        .bind(e.operator_id)
        .bind(&e.login)
        .bind(&e.action)
        .bind(e.auth_path.as_str())
        .bind(e.source.clone())
        .bind(e.client.clone())
        .bind(&e.outcome)
        .execute(&self.pool)
        .await
        .map_err(backend_error)?;
        Ok(())
    }

    async fn add_usage(&self, rows: &[UsageSummary]) -> StoreResult<()> {
        let mut tx = begin_write(&self.pool, &self.writer).await?;
        for r in rows {
            let k = &r.key;
            sqlx::query(
                "INSERT INTO usage_summary (login, operator_id, action, auth_path, source, client, outcome, calls, first_at, last_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
                 ON CONFLICT (login, action, auth_path, source, client, outcome) DO UPDATE SET
                   calls = usage_summary.calls + excluded.calls,
                   operator_id = excluded.operator_id,
                   first_at = CASE WHEN excluded.first_at < usage_summary.first_at THEN excluded.first_at ELSE usage_summary.first_at END,
                   last_at = CASE WHEN excluded.last_at > usage_summary.last_at THEN excluded.last_at ELSE usage_summary.last_at END",
            )
            .bind(&k.login)
            .bind(k.operator_id)
            .bind(&k.action)
            .bind(k.auth_path.as_str())
            .bind(&k.source)
            .bind(&k.client)
            .bind(&k.outcome)
            .bind(r.counts.calls)
            .bind(r.counts.first_at.millis())
            .bind(r.counts.last_at.millis())
            .execute(&mut *tx)
            .await
            .map_err(backend_error)?;
        }
        tx.commit().await.map_err(backend_error)
    }

    async fn usage_summary(&self, login: Option<&str>, limit: u32) -> StoreResult<Vec<UsageSummary>> {
        let limit = i64::from(limit.clamp(1, 10_000));
        const COLS: &str = "SELECT login, operator_id, action, auth_path, source, client, outcome, calls, first_at, last_at FROM usage_summary";
        let by_login = format!("{COLS} WHERE login = $1 ORDER BY last_at DESC LIMIT $2");
        let all = format!("{COLS} ORDER BY last_at DESC LIMIT $1");
        let rows = match login {
            Some(l) => sqlx::query(&by_login).bind(l.to_owned()).bind(limit),
            None => sqlx::query(&all).bind(limit),
        }
        .fetch_all(&self.pool)
        .await
        .map_err(backend_error)?;
        rows.iter().map(summary_of).collect()
    }

    async fn usage_of_operators(&self, first: i64, last: i64) -> StoreResult<Vec<UsageSummary>> {
        // Sign-ins are single events; summed here into the shape of the call totals.
        let rows = sqlx::query(
            "SELECT login, operator_id, action, auth_path, source, client, outcome, calls, first_at, last_at
               FROM usage_summary WHERE operator_id BETWEEN $1 AND $2
             UNION ALL
             SELECT login, operator_id, action, auth_path, COALESCE(source, '') AS source,
                    COALESCE(client, '') AS client, outcome, COUNT(*) AS calls,
                    MIN(at) AS first_at, MAX(at) AS last_at
               FROM usage_events WHERE operator_id BETWEEN $1 AND $2
              GROUP BY login, operator_id, action, auth_path, COALESCE(source, ''), COALESCE(client, ''), outcome
             ORDER BY operator_id, last_at DESC",
        )
        .bind(first)
        .bind(last)
        .fetch_all(&self.pool)
        .await
        .map_err(backend_error)?;
        rows.iter().map(summary_of).collect()
    }

    async fn usage(&self, login: Option<&str>, limit: u32) -> StoreResult<Vec<UsageEvent>> {
        let limit = i64::from(limit.clamp(1, 10_000));
        let rows = match login {
            Some(l) => sqlx::query(
                "SELECT at, operator_id, login, action, auth_path, source, client, outcome FROM usage_events
                 WHERE login = $1 ORDER BY seq DESC LIMIT $2",
            )
            .bind(l)
            .bind(limit),
            None => sqlx::query(
                "SELECT at, operator_id, login, action, auth_path, source, client, outcome FROM usage_events
                 ORDER BY seq DESC LIMIT $1",
            )
            .bind(limit),
        }
        .fetch_all(&self.pool)
        .await
        .map_err(backend_error)?;
        rows.iter()
            .map(|r| {
                Ok(UsageEvent {
                    at: Now::from_millis(get(r, "at")?),
                    operator_id: get(r, "operator_id")?,
                    login: get(r, "login")?,
                    action: get(r, "action")?,
                    auth_path: auth_path_of(r)?,
                    source: get(r, "source")?,
                    client: get(r, "client")?,
                    outcome: get(r, "outcome")?,
                })
            })
            .collect()
    }
}

fn bind_all<'q>(
    mut q: sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>>,
    sql: Option<&'q Sql>,
) -> sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>> {
    for p in sql.map(|s| s.params.as_slice()).unwrap_or_default() {
        q = match p {
            SqlValue::Text(t) => q.bind(t.as_str()),
            SqlValue::Int(i) => q.bind(*i),
            SqlValue::Float(f) => q.bind(*f),
        };
    }
    q
}

#[async_trait]
impl QueryStore for SqlInstanceStore {
    async fn select(
        &self,
        table: &'static str,
        columns: &[&'static str],
        filter: Option<&Sql>,
        order: &[(&'static str, bool)],
        limit: Option<u32>,
        offset: u32,
    ) -> StoreResult<Vec<Vec<Option<String>>>> {
        let cols: Vec<String> = columns
            .iter()
            .map(|c| format!("CAST({c} AS TEXT) AS c_{c}"))
            .collect();
        let mut text = format!("SELECT {} FROM {table}", cols.join(", "));
        if let Some(f) = filter {
            text.push_str(&format!(" WHERE {}", f.text));
        }
        if !order.is_empty() {
            let by: Vec<String> = order
                .iter()
                .map(|(c, desc)| format!("{c}{}", if *desc { " DESC" } else { "" }))
                .collect();
            text.push_str(&format!(" ORDER BY {}", by.join(", ")));
        }
        // Both dialects take LIMIT/OFFSET as literals we format from integers.
        text.push_str(&format!(
            " LIMIT {} OFFSET {offset}",
            limit.unwrap_or(ims_campaign::query::MAX_LINES)
        ));
        let rows = bind_all(sqlx::query(&text), filter)
            .fetch_all(&self.pool)
            .await
            .map_err(backend_error)?;
        rows.iter()
            .map(|r| {
                columns
                    .iter()
                    .map(|c| get::<Option<String>>(r, &format!("c_{c}")))
                    .collect()
            })
            .collect()
    }

    async fn count(&self, table: &'static str, filter: Option<&Sql>) -> StoreResult<i64> {
        let mut text = format!("SELECT COUNT(*) AS n FROM {table}");
        if let Some(f) = filter {
            text.push_str(&format!(" WHERE {}", f.text));
        }
        let row = bind_all(sqlx::query(&text), filter)
            .fetch_one(&self.pool)
            .await
            .map_err(backend_error)?;
        get(&row, "n")
    }
}

#[async_trait]
impl RecipientStore for SqlInstanceStore {
    async fn ensure_folder(&self, name: &str, label: &str) -> StoreResult<i64> {
        sqlx::query("INSERT INTO folders (name, label) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING")
            .bind(name)
            .bind(label)
            .execute(&self.pool)
            .await
            .map_err(backend_error)?;
        let row = sqlx::query("SELECT folder_id FROM folders WHERE name = $1")
            .bind(name)
            .fetch_one(&self.pool)
            .await
            .map_err(backend_error)?;
        get(&row, "folder_id")
    }

    async fn grant_folder_to_group(
        &self,
        folder_id: i64,
        group: &str,
        read: bool,
        write: bool,
        audit: &AuditEvent,
    ) -> StoreResult<()> {
        let mut tx = begin_write(&self.pool, &self.writer).await?;
        let done = sqlx::query(
            "INSERT INTO folder_rights (folder_id, grantee_type, grantee_id, can_read, can_write)
             SELECT $1, 'group', group_id, $2, $3 FROM operator_groups WHERE name = $4
             ON CONFLICT (folder_id, grantee_type, grantee_id) DO UPDATE SET can_read = excluded.can_read, can_write = excluded.can_write",
        )
        .bind(folder_id)
        .bind(i64::from(read))
        .bind(i64::from(write))
        .bind(group)
        .execute(&mut *tx)
        .await
        .map_err(backend_error)?;
        if done.rows_affected() == 0 {
            return Err(StoreError::Conflict(format!("no operator group {group:?}")));
        }
        crate::audit_in(&mut *tx, audit).await?;
        tx.commit().await.map_err(backend_error)
    }

    async fn readable_folders(&self, operator_id: i64) -> StoreResult<Vec<i64>> {
        self.folders_with(operator_id, FolderRight::Read).await
    }

    async fn writable_folders(&self, operator_id: i64) -> StoreResult<Vec<i64>> {
        self.folders_with(operator_id, FolderRight::Write).await
    }

    async fn folder_by_name(&self, name: &str) -> StoreResult<Option<i64>> {
        let row = sqlx::query("SELECT folder_id FROM folders WHERE name = $1")
            .bind(name)
            .fetch_optional(&self.pool)
            .await
            .map_err(backend_error)?;
        row.map(|r| get(&r, "folder_id")).transpose()
    }

    async fn recipient_by(&self, key: RecipientKey, value: &str) -> StoreResult<Option<Recipient>> {
        let base = "SELECT recipient_id, email, first_name, last_name, folder_id, created_at, modified_at FROM recipients";
        let row = match key {
            RecipientKey::Id => {
                let Ok(id) = value.trim().parse::<i64>() else {
                    return Ok(None);
                };
                sqlx::query(&format!("{base} WHERE recipient_id = $1"))
                    .bind(id)
                    .fetch_optional(&self.pool)
                    .await
            }
            RecipientKey::Email => {
                sqlx::query(&format!("{base} WHERE email = $1 ORDER BY recipient_id LIMIT 1"))
                    .bind(value.to_owned())
                    .fetch_optional(&self.pool)
                    .await
            }
        }
        .map_err(backend_error)?;
        row.map(|r| {
            Ok(Recipient {
                id: get(&r, "recipient_id")?,
                email: get(&r, "email")?,
                first_name: get(&r, "first_name")?,
                last_name: get(&r, "last_name")?,
                folder_id: get(&r, "folder_id")?,
                created_at: Now::from_millis(get(&r, "created_at")?),
                modified_at: Now::from_millis(get(&r, "modified_at")?),
            })
        })
        .transpose()
    }

    async fn update_recipient(&self, r: &Recipient) -> StoreResult<()> {
        sqlx::query(
            "UPDATE recipients SET email = $1, first_name = $2, last_name = $3, folder_id = $4, modified_at = $5
             WHERE recipient_id = $6",
        )
        .bind(r.email.clone())
        .bind(r.first_name.clone())
        .bind(r.last_name.clone())
        .bind(r.folder_id)
        .bind(r.modified_at.millis())
        .bind(r.id)
        .execute(&self.pool)
        .await
        .map_err(backend_error)?;
        Ok(())
    }

    async fn delete_recipient(&self, id: i64) -> StoreResult<()> {
        sqlx::query("DELETE FROM recipients WHERE recipient_id = $1")
            .bind(id)
            .execute(&self.pool)
            .await
            .map_err(backend_error)?;
        Ok(())
    }

    async fn create_recipient(&self, r: &Recipient) -> StoreResult<i64> {
        let row = sqlx::query(
            "INSERT INTO recipients (email, first_name, last_name, folder_id, created_at, modified_at)
             VALUES ($1, $2, $3, $4, $5, $6) RETURNING recipient_id",
        )
        .bind(r.email.clone())
        .bind(r.first_name.clone())
        .bind(r.last_name.clone())
        .bind(r.folder_id)
        .bind(r.created_at.millis())
        .bind(r.modified_at.millis())
        .fetch_one(&self.pool)
        .await
        .map_err(backend_error)?;
        get(&row, "recipient_id")
    }
}

#[async_trait]
impl SettingsStore for SqlInstanceStore {
    async fn setting(&self, key: &str) -> StoreResult<Option<String>> {
        let row = sqlx::query("SELECT value FROM instance_settings WHERE key = $1")
            .bind(key)
            .fetch_optional(&self.pool)
            .await
            .map_err(backend_error)?;
        row.map(|r| get(&r, "value")).transpose()
    }

    async fn set_setting(&self, key: &str, value: &str, audit: &AuditEvent) -> StoreResult<()> {
        let mut tx = begin_write(&self.pool, &self.writer).await?;
        sqlx::query(
            "INSERT INTO instance_settings (key, value) VALUES ($1, $2)
             ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        )
        .bind(key)
        .bind(value)
        .execute(&mut *tx)
        .await
        .map_err(backend_error)?;
        crate::audit_in(&mut *tx, audit).await?;
        tx.commit().await.map_err(backend_error)
    }
}

#[async_trait]
impl EventStore for SqlInstanceStore {
    async fn push_event(
        &self,
        event_type: &str,
        email: Option<&str>,
        ctx: &str,
        pushed_by: i64,
        now: Now,
    ) -> StoreResult<i64> {
        // Events are handed to delivery as they arrive: there is no queue to wait in here.
        let row = sqlx::query(
            "INSERT INTO rt_events (event_type, email, ctx, status, pushed_by, created_at)
             VALUES ($1, $2, $3, 'processed', $4, $5) RETURNING event_id",
        )
        .bind(event_type)
        .bind(email.map(str::to_owned))
        .bind(ctx)
        .bind(pushed_by)
        .bind(now.millis())
        .fetch_one(&self.pool)
        .await
        .map_err(backend_error)?;
        get(&row, "event_id")
    }

    async fn pending_events(&self) -> StoreResult<i64> {
        let row = sqlx::query("SELECT COUNT(*) AS n FROM rt_events WHERE status = 'pending'")
            .fetch_one(&self.pool)
            .await
            .map_err(backend_error)?;
        get(&row, "n")
    }
}

#[async_trait]
impl AuditStore for SqlInstanceStore {
    async fn append_audit(&self, event: &AuditEvent) -> StoreResult<()> {
        crate::audit_in(&self.pool, event).await
    }

    async fn audit(&self, q: &AuditQuery) -> StoreResult<Vec<AuditEvent>> {
        crate::audit_query(&self.pool, q).await
    }
}
