//! The instance's own data: queries, recipients, settings, real-time events, the audit log.

use super::*;

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
