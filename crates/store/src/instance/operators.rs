//! Operators, their groups and rights, and the batch switch of the migration.

use super::*;

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

    async fn switch_operator(&self, step: &SwitchStep) -> StoreResult<bool> {
        self.switch_alone(step).await
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
