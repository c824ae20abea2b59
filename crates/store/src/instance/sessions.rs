//! Sessions and the sign-in failure counters.

use super::*;

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
            &crate::lockout::Attempt {
                now,
                reset_secs,
                lock_ms,
                id: attempt_id,
            },
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
