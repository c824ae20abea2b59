//! People and their sign-in on both backends: users, failed sign-in counters, sign-in flows,
//! browser sessions, authorization codes and refresh tokens.

use async_trait::async_trait;
use sqlx::any::AnyRow;
use sqlx::AnyConnection;

use ims_core::audit::AuditEvent;
use ims_core::error::StoreError;
use ims_core::Now;
use ims_identity::grants::{
    AuthorizationCode, BrowserSession, FlowStage, RefreshToken, Rotation, SignInFlow,
};
use ims_identity::links::{AccountLink, LinkPurpose};
use ims_identity::mail::Mail;
use ims_identity::model::User;
use ims_identity::store::{GrantStore, StoreResult, ThrottleStore, UserStore};

use crate::{
    audit_in, backend_error, begin_write, get, insert_users, user_from, words, SqlStore, USER_COLUMNS,
};

/// The one row whose key column (in `sql`, as `$1`) equals `key`.
async fn row_by<'c, E>(exec: E, sql: &str, key: &str) -> StoreResult<Option<AnyRow>>
where
    E: sqlx::Executor<'c, Database = sqlx::Any>,
{
    sqlx::query(sql)
        .bind(key.to_owned())
        .fetch_optional(exec)
        .await
        .map_err(backend_error)
}

fn opt_time(row: &AnyRow, col: &str) -> StoreResult<Option<Now>> {
    Ok(get::<Option<i64>>(row, col)?.map(Now::from_millis))
}

fn time(row: &AnyRow, col: &str) -> StoreResult<Now> {
    Ok(Now::from_millis(get(row, col)?))
}

/// Writes every field of a user (found by id) inside `tx`; with `end_sessions`, its browser
/// sessions and refresh tokens end in the same transaction.
pub(crate) async fn write_user(tx: &mut AnyConnection, u: &User, end_sessions: bool) -> StoreResult<()> {
    let done = sqlx::query(
        "UPDATE users SET email = $1, email_lower = $2, first_name = $3, last_name = $4, password_hash = $5,
         system_admin = $6, identity_type = $7, status = $8, country = $9, totp_sealed = $10,
         recovery_codes = $11, sessions_valid_after = $12, updated_at = $13, totp_last_step = $14 WHERE user_id = $15",
    )
    .bind(&u.email)
    .bind(u.email.to_lowercase())
    .bind(&u.first_name)
    .bind(&u.last_name)
    .bind(u.password_hash.clone())
    .bind(i64::from(u.system_admin))
    .bind(u.identity_type.as_str())
    .bind(u.status.as_str())
    .bind(u.country.clone())
    .bind(u.totp_sealed.clone())
    .bind(u.recovery_codes.join(" "))
    .bind(u.sessions_valid_after.millis())
    .bind(u.updated_at.millis())
    .bind(u.totp_last_step)
    .bind(&u.user_id)
    .execute(&mut *tx)
    .await
    .map_err(backend_error)?;
    if done.rows_affected() == 0 {
        return Err(StoreError::Conflict(format!(
            "user {} no longer exists",
            u.user_id
        )));
    }
    if end_sessions {
        sqlx::query("DELETE FROM browser_sessions WHERE user_id = $1")
            .bind(&u.user_id)
            .execute(&mut *tx)
            .await
            .map_err(backend_error)?;
        sqlx::query("UPDATE refresh_tokens SET revoked_at = $1 WHERE user_id = $2 AND revoked_at IS NULL")
            .bind(u.updated_at.millis())
            .bind(&u.user_id)
            .execute(&mut *tx)
            .await
            .map_err(backend_error)?;
    }
    Ok(())
}

impl SqlStore {
    async fn user_where(&self, filter: &str, args: &[&str]) -> StoreResult<Option<User>> {
        let sql = format!("SELECT {USER_COLUMNS} FROM users WHERE {filter}");
        let mut q = sqlx::query(&sql);
        for a in args {
            q = q.bind(a.to_string());
        }
        let row = q.fetch_optional(&self.pool).await.map_err(backend_error)?;
        row.as_ref().map(user_from).transpose()
    }
}

#[async_trait]
impl UserStore for SqlStore {
    async fn user_by_email(&self, org_id: &str, email: &str) -> StoreResult<Option<User>> {
        self.user_where(
            "org_id = $1 AND email_lower = $2",
            &[org_id, &email.to_lowercase()],
        )
        .await
    }

    async fn user(&self, user_id: &str) -> StoreResult<Option<User>> {
        self.user_where("user_id = $1", &[user_id]).await
    }

    async fn create_user(&self, user: &User, audit: &AuditEvent) -> StoreResult<()> {
        let mut tx = begin_write(&self.pool, &self.writer).await?;
        insert_users(&mut tx, &[user]).await?;
        audit_in(&mut *tx, audit).await?;
        tx.commit().await.map_err(backend_error)
    }

    async fn update_user(&self, u: &User, end_sessions: bool, audit: &AuditEvent) -> StoreResult<()> {
        let mut tx = begin_write(&self.pool, &self.writer).await?;
        write_user(&mut tx, u, end_sessions).await?;
        audit_in(&mut *tx, audit).await?;
        tx.commit().await.map_err(backend_error)
    }

    async fn insert_account_link(
        &self,
        link: &AccountLink,
        mail: Option<&Mail>,
        audit: &AuditEvent,
    ) -> StoreResult<()> {
        let mut tx = begin_write(&self.pool, &self.writer).await?;
        insert_links(&mut tx, &[link]).await?;
        if let Some(mail) = mail {
            crate::outbox::insert_mails(&mut tx, &[mail]).await?;
        }
        audit_in(&mut *tx, audit).await?;
        tx.commit().await.map_err(backend_error)
    }

    async fn account_link(&self, token_digest: &str) -> StoreResult<Option<AccountLink>> {
        let row = sqlx::query(&format!(
            "SELECT {LINK_COLUMNS} FROM password_resets WHERE token_digest = $1"
        ))
        .bind(token_digest)
        .fetch_optional(&self.pool)
        .await
        .map_err(backend_error)?;
        row.as_ref().map(link_from).transpose()
    }

    async fn use_account_link(
        &self,
        token_digest: &str,
        user: &User,
        now: Now,
        audit: &AuditEvent,
    ) -> StoreResult<bool> {
        let mut tx = begin_write(&self.pool, &self.writer).await?;
        let won = sqlx::query(
            "UPDATE password_resets SET used_at = $1
             WHERE token_digest = $2 AND user_id = $3 AND used_at IS NULL AND expires_at > $1",
        )
        .bind(now.millis())
        .bind(token_digest)
        .bind(&user.user_id)
        .execute(&mut *tx)
        .await
        .map_err(backend_error)?
        .rows_affected()
            == 1;
        if !won {
            return Ok(false);
        }
        // A password set through one link supersedes every other link still out for the person.
        sqlx::query("UPDATE password_resets SET used_at = $1 WHERE user_id = $2 AND used_at IS NULL")
            .bind(now.millis())
            .bind(&user.user_id)
            .execute(&mut *tx)
            .await
            .map_err(backend_error)?;
        write_user(&mut tx, user, true).await?;
        audit_in(&mut *tx, audit).await?;
        tx.commit().await.map_err(backend_error)?;
        Ok(true)
    }

    async fn latest_invitation(&self, user_id: &str) -> StoreResult<Option<AccountLink>> {
        let row = sqlx::query(&format!(
            "SELECT {LINK_COLUMNS} FROM password_resets WHERE user_id = $1 AND purpose = 'invitation'
             ORDER BY created_at DESC LIMIT 1"
        ))
        .bind(user_id)
        .fetch_optional(&self.pool)
        .await
        .map_err(backend_error)?;
        row.as_ref().map(link_from).transpose()
    }

    async fn invitations_of(&self, user_ids: &[String]) -> StoreResult<Vec<AccountLink>> {
        if user_ids.is_empty() {
            return Ok(Vec::new());
        }
        let mut out = Vec::new();
        // A listing's page at a time; well under either backend's limit on parameters.
        for chunk in user_ids.chunks(1000) {
            let marks: Vec<String> = (1..=chunk.len()).map(|i| format!("${i}")).collect();
            let sql = format!(
                "SELECT {LINK_COLUMNS} FROM password_resets WHERE purpose = 'invitation' AND user_id IN ({})
                 ORDER BY created_at",
                marks.join(", ")
            );
            let mut q = sqlx::query(&sql);
            for id in chunk {
                q = q.bind(id.clone());
            }
            let rows = q.fetch_all(&self.pool).await.map_err(backend_error)?;
            for row in &rows {
                out.push(link_from(row)?);
            }
        }
        out.sort_by_key(|l| l.created_at);
        Ok(out)
    }

    async fn record_first_sign_in(&self, user_id: &str, now: Now) -> StoreResult<()> {
        let mut tx = begin_write(&self.pool, &self.writer).await?;
        sqlx::query("UPDATE users SET first_sign_in_at = $1 WHERE user_id = $2 AND first_sign_in_at IS NULL")
            .bind(now.millis())
            .bind(user_id)
            .execute(&mut *tx)
            .await
            .map_err(backend_error)?;
        tx.commit().await.map_err(backend_error)
    }

    async fn use_second_factor(
        &self,
        user_id: &str,
        totp_step: Option<i64>,
        recovery: Option<(&[String], &[String])>,
        now: Now,
        audit: &AuditEvent,
    ) -> StoreResult<bool> {
        let mut tx = begin_write(&self.pool, &self.writer).await?;
        let mut done = true;
        if let Some(step) = totp_step {
            done &= sqlx::query(
                "UPDATE users SET totp_last_step = $1, updated_at = $2 WHERE user_id = $3 AND totp_last_step < $1",
            )
            .bind(step)
            .bind(now.millis())
            .bind(user_id)
            .execute(&mut *tx)
            .await
            .map_err(backend_error)?
            .rows_affected()
                == 1;
        }
        if let Some((before, after)) = recovery {
            done &= sqlx::query(
                "UPDATE users SET recovery_codes = $1, updated_at = $2 WHERE user_id = $3 AND recovery_codes = $4",
            )
            .bind(after.join(" "))
            .bind(now.millis())
            .bind(user_id)
            .bind(before.join(" "))
            .execute(&mut *tx)
            .await
            .map_err(backend_error)?
            .rows_affected()
                == 1;
        }
        if !done {
            return Ok(false);
        }
        audit_in(&mut *tx, audit).await?;
        tx.commit().await.map_err(backend_error)?;
        Ok(true)
    }
}

#[async_trait]
impl ThrottleStore for SqlStore {
    async fn admit_attempt(
        &self,
        org_id: &str,
        email_lower: &str,
        now: Now,
        reset_secs: i64,
        lock_ms: &[i64],
        attempt_id: &str,
    ) -> StoreResult<(bool, u32)> {
        crate::lockout::admit(
            &self.pool,
            &self.writer,
            &crate::lockout::PEOPLE,
            (org_id, email_lower),
            &crate::lockout::Attempt {
                now,
                reset_secs,
                lock_ms,
                id: attempt_id,
            },
        )
        .await
    }

    async fn failures(&self, org_id: &str, email_lower: &str) -> StoreResult<Option<(u32, Now, Now)>> {
        crate::lockout::failures(&self.pool, &crate::lockout::PEOPLE, (org_id, email_lower)).await
    }

    async fn clear_failures(&self, org_id: &str, email_lower: &str) -> StoreResult<()> {
        crate::lockout::clear(&self.pool, &crate::lockout::PEOPLE, (org_id, email_lower)).await
    }

    async fn forgive_attempt(&self, org_id: &str, key: &str, free: u32) -> StoreResult<()> {
        crate::lockout::forgive(&self.pool, &crate::lockout::PEOPLE, (org_id, key), free).await
    }
}

const FLOW_COLUMNS: &str =
    "flow_digest, browser_digest, request, stage, email, user_id, created_at, expires_at";

fn flow_from(row: &AnyRow) -> StoreResult<SignInFlow> {
    let stage: String = get(row, "stage")?;
    Ok(SignInFlow {
        flow_digest: get(row, "flow_digest")?,
        browser_digest: get(row, "browser_digest")?,
        request: get(row, "request")?,
        stage: FlowStage::parse(&stage)
            .ok_or_else(|| StoreError::Backend(format!("unknown flow stage {stage:?}")))?,
        email: get(row, "email")?,
        user_id: get(row, "user_id")?,
        created_at: time(row, "created_at")?,
        expires_at: time(row, "expires_at")?,
    })
}

const CODE_COLUMNS: &str =
    "code_digest, client_id, user_id, redirect_uri, scope, nonce, code_challenge, auth_time, amr, \
     created_at, expires_at, consumed_at, grant_id, access_token_id, replayed_at";

fn code_from(row: &AnyRow) -> StoreResult<AuthorizationCode> {
    Ok(AuthorizationCode {
        code_digest: get(row, "code_digest")?,
        client_id: get(row, "client_id")?,
        user_id: get(row, "user_id")?,
        redirect_uri: get(row, "redirect_uri")?,
        scope: words(&get::<String>(row, "scope")?),
        nonce: get(row, "nonce")?,
        code_challenge: get(row, "code_challenge")?,
        auth_time: time(row, "auth_time")?,
        amr: words(&get::<String>(row, "amr")?),
        created_at: time(row, "created_at")?,
        expires_at: time(row, "expires_at")?,
        consumed_at: opt_time(row, "consumed_at")?,
        grant_id: get(row, "grant_id")?,
        access_token_id: get(row, "access_token_id")?,
        replayed_at: opt_time(row, "replayed_at")?,
    })
}

const REFRESH_COLUMNS: &str =
    "token_digest, family_id, client_id, user_id, scope, auth_time, amr, access_token_id, \
     access_expires_at, created_at, family_expires_at, used_at, revoked_at";

fn refresh_from(row: &AnyRow) -> StoreResult<RefreshToken> {
    Ok(RefreshToken {
        token_digest: get(row, "token_digest")?,
        family_id: get(row, "family_id")?,
        client_id: get(row, "client_id")?,
        user_id: get(row, "user_id")?,
        scope: words(&get::<String>(row, "scope")?),
        auth_time: time(row, "auth_time")?,
        amr: words(&get::<String>(row, "amr")?),
        access_token_id: get(row, "access_token_id")?,
        access_expires_at: time(row, "access_expires_at")?,
        created_at: time(row, "created_at")?,
        family_expires_at: time(row, "family_expires_at")?,
        used_at: opt_time(row, "used_at")?,
        revoked_at: opt_time(row, "revoked_at")?,
    })
}

async fn insert_refresh<'c, E>(exec: E, t: &RefreshToken) -> StoreResult<()>
where
    E: sqlx::Executor<'c, Database = sqlx::Any>,
{
    sqlx::query(&format!(
        "INSERT INTO refresh_tokens ({REFRESH_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)"
    ))
    .bind(&t.token_digest)
    .bind(&t.family_id)
    .bind(&t.client_id)
    .bind(&t.user_id)
    .bind(t.scope.join(" "))
    .bind(t.auth_time.millis())
    .bind(t.amr.join(" "))
    .bind(&t.access_token_id)
    .bind(t.access_expires_at.millis())
    .bind(t.created_at.millis())
    .bind(t.family_expires_at.millis())
    .bind(t.used_at.map(Now::millis))
    .bind(t.revoked_at.map(Now::millis))
    .execute(exec)
    .await
    .map_err(backend_error)?;
    Ok(())
}

async fn insert_code<'c, E>(exec: E, c: &AuthorizationCode) -> StoreResult<()>
where
    E: sqlx::Executor<'c, Database = sqlx::Any>,
{
    sqlx::query(&format!(
        "INSERT INTO authorization_codes ({CODE_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)"
    ))
    .bind(&c.code_digest)
    .bind(&c.client_id)
    .bind(&c.user_id)
    .bind(&c.redirect_uri)
    .bind(c.scope.join(" "))
    .bind(c.nonce.clone())
    .bind(&c.code_challenge)
    .bind(c.auth_time.millis())
    .bind(c.amr.join(" "))
    .bind(c.created_at.millis())
    .bind(c.expires_at.millis())
    .bind(c.consumed_at.map(Now::millis))
    .bind(&c.grant_id)
    .bind(c.access_token_id.clone())
    .bind(c.replayed_at.map(Now::millis))
    .execute(exec)
    .await
    .map_err(backend_error)?;
    Ok(())
}

async fn insert_session<'c, E>(exec: E, s: &BrowserSession) -> StoreResult<()>
where
    E: sqlx::Executor<'c, Database = sqlx::Any>,
{
    sqlx::query(
        "INSERT INTO browser_sessions (session_digest, user_id, auth_time, amr, created_at, expires_at)
         VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(&s.session_digest)
    .bind(&s.user_id)
    .bind(s.auth_time.millis())
    .bind(s.amr.join(" "))
    .bind(s.created_at.millis())
    .bind(s.expires_at.millis())
    .execute(exec)
    .await
    .map_err(backend_error)?;
    Ok(())
}

#[async_trait]
impl GrantStore for SqlStore {
    async fn insert_flow(&self, f: &SignInFlow) -> StoreResult<()> {
        sqlx::query(&format!(
            "INSERT INTO sign_in_flows ({FLOW_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)"
        ))
        .bind(&f.flow_digest)
        .bind(&f.browser_digest)
        .bind(&f.request)
        .bind(f.stage.as_str())
        .bind(f.email.clone())
        .bind(f.user_id.clone())
        .bind(f.created_at.millis())
        .bind(f.expires_at.millis())
        .execute(&self.pool)
        .await
        .map_err(backend_error)?;
        Ok(())
    }

    async fn flow(&self, flow_digest: &str) -> StoreResult<Option<SignInFlow>> {
        let row = row_by(
            &self.pool,
            &format!("SELECT {FLOW_COLUMNS} FROM sign_in_flows WHERE flow_digest = $1"),
            flow_digest,
        )
        .await?;
        row.as_ref().map(flow_from).transpose()
    }

    async fn update_flow(&self, f: &SignInFlow) -> StoreResult<()> {
        sqlx::query("UPDATE sign_in_flows SET stage = $1, email = $2, user_id = $3 WHERE flow_digest = $4")
            .bind(f.stage.as_str())
            .bind(f.email.clone())
            .bind(f.user_id.clone())
            .bind(&f.flow_digest)
            .execute(&self.pool)
            .await
            .map_err(backend_error)?;
        Ok(())
    }

    async fn delete_flow(&self, flow_digest: &str) -> StoreResult<()> {
        sqlx::query("DELETE FROM sign_in_flows WHERE flow_digest = $1")
            .bind(flow_digest)
            .execute(&self.pool)
            .await
            .map_err(backend_error)?;
        Ok(())
    }

    async fn consent(&self, user_id: &str, client_id: &str) -> StoreResult<Option<Vec<String>>> {
        let row = sqlx::query("SELECT scopes FROM consents WHERE user_id = $1 AND client_id = $2")
            .bind(user_id)
            .bind(client_id)
            .fetch_optional(&self.pool)
            .await
            .map_err(backend_error)?;
        row.map(|r| Ok(words(&get::<String>(&r, "scopes")?))).transpose()
    }

    async fn set_consent(
        &self,
        user_id: &str,
        client_id: &str,
        scopes: &[String],
        now: Now,
        audit: &AuditEvent,
    ) -> StoreResult<()> {
        let mut tx = begin_write(&self.pool, &self.writer).await?;
        sqlx::query(
            "INSERT INTO consents (user_id, client_id, scopes, granted_at) VALUES ($1, $2, $3, $4)
             ON CONFLICT (user_id, client_id) DO UPDATE SET scopes = excluded.scopes, granted_at = excluded.granted_at",
        )
        .bind(user_id)
        .bind(client_id)
        .bind(scopes.join(" "))
        .bind(now.millis())
        .execute(&mut *tx)
        .await
        .map_err(backend_error)?;
        audit_in(&mut *tx, audit).await?;
        tx.commit().await.map_err(backend_error)
    }

    async fn browser_session(&self, session_digest: &str) -> StoreResult<Option<BrowserSession>> {
        let row = sqlx::query(
            "SELECT session_digest, user_id, auth_time, amr, created_at, expires_at
             FROM browser_sessions WHERE session_digest = $1",
        )
        .bind(session_digest)
        .fetch_optional(&self.pool)
        .await
        .map_err(backend_error)?;
        row.map(|r| {
            Ok(BrowserSession {
                session_digest: get(&r, "session_digest")?,
                user_id: get(&r, "user_id")?,
                auth_time: time(&r, "auth_time")?,
                amr: words(&get::<String>(&r, "amr")?),
                created_at: time(&r, "created_at")?,
                expires_at: time(&r, "expires_at")?,
            })
        })
        .transpose()
    }

    async fn delete_browser_session(&self, session_digest: &str) -> StoreResult<()> {
        let mut tx = begin_write(&self.pool, &self.writer).await?;
        for table in ["browser_sessions", "session_clients"] {
            sqlx::query(&format!("DELETE FROM {table} WHERE session_digest = $1"))
                .bind(session_digest)
                .execute(&mut *tx)
                .await
                .map_err(backend_error)?;
        }
        tx.commit().await.map_err(backend_error)
    }

    async fn insert_code(&self, c: &AuthorizationCode) -> StoreResult<()> {
        insert_code(&self.pool, c).await
    }

    async fn note_session_client(
        &self,
        session_digest: &str,
        client_id: &str,
        user_id: &str,
        now: Now,
    ) -> StoreResult<()> {
        note_client(&self.pool, session_digest, client_id, user_id, now).await
    }

    async fn logout_targets(&self, session_digest: &str) -> StoreResult<Vec<(String, String, String)>> {
        let rows = sqlx::query(
            "SELECT s.client_id, s.user_id, c.backchannel_logout_uri FROM session_clients s
             JOIN oauth_clients c ON c.client_id = s.client_id
             WHERE s.session_digest = $1 AND c.backchannel_logout_uri IS NOT NULL AND c.disabled = 0
             ORDER BY s.client_id",
        )
        .bind(session_digest)
        .fetch_all(&self.pool)
        .await
        .map_err(backend_error)?;
        rows.iter()
            .map(|r| {
                Ok((
                    get(r, "client_id")?,
                    get(r, "user_id")?,
                    get(r, "backchannel_logout_uri")?,
                ))
            })
            .collect()
    }

    async fn set_backchannel_logout_uri(
        &self,
        client_id: &str,
        uri: Option<&str>,
        audit: &AuditEvent,
    ) -> StoreResult<()> {
        let mut tx = begin_write(&self.pool, &self.writer).await?;
        let done = sqlx::query("UPDATE oauth_clients SET backchannel_logout_uri = $1 WHERE client_id = $2")
            .bind(uri.map(str::to_owned))
            .bind(client_id)
            .execute(&mut *tx)
            .await
            .map_err(backend_error)?;
        if done.rows_affected() == 0 {
            return Err(StoreError::Conflict(format!(
                "client {client_id} no longer exists"
            )));
        }
        audit_in(&mut *tx, audit).await?;
        tx.commit().await.map_err(backend_error)
    }

    async fn backchannel_logout_uri(&self, client_id: &str) -> StoreResult<Option<String>> {
        let row = sqlx::query("SELECT backchannel_logout_uri FROM oauth_clients WHERE client_id = $1")
            .bind(client_id)
            .fetch_optional(&self.pool)
            .await
            .map_err(backend_error)?;
        match row {
            Some(r) => get(&r, "backchannel_logout_uri"),
            None => Ok(None),
        }
    }

    async fn complete_sign_in(
        &self,
        org_id: &str,
        email_lower: &str,
        s: &BrowserSession,
        audit: &AuditEvent,
        finished: Option<(&str, &AuthorizationCode)>,
    ) -> StoreResult<()> {
        let mut tx = begin_write(&self.pool, &self.writer).await?;
        sqlx::query("DELETE FROM sign_in_failures WHERE org_id = $1 AND email_lower = $2")
            .bind(org_id)
            .bind(email_lower)
            .execute(&mut *tx)
            .await
            .map_err(backend_error)?;
        insert_session(&mut *tx, s).await?;
        audit_in(&mut *tx, audit).await?;
        if let Some((flow_digest, code)) = finished {
            sqlx::query("DELETE FROM sign_in_flows WHERE flow_digest = $1")
                .bind(flow_digest)
                .execute(&mut *tx)
                .await
                .map_err(backend_error)?;
            insert_code(&mut *tx, code).await?;
            note_client(
                &mut *tx,
                &s.session_digest,
                &code.client_id,
                &s.user_id,
                s.created_at,
            )
            .await?;
        }
        tx.commit().await.map_err(backend_error)
    }

    async fn record_redemption(
        &self,
        code_digest: &str,
        access_token_id: &str,
        refresh: Option<&RefreshToken>,
        audit: &AuditEvent,
    ) -> StoreResult<bool> {
        let mut tx = begin_write(&self.pool, &self.writer).await?;
        // Whether a replay was seen meanwhile, as of this update (which, on PostgreSQL, a replay
        // marked after it waits for until this transaction ends).
        let row = sqlx::query(
            "UPDATE authorization_codes SET access_token_id = $1 WHERE code_digest = $2 RETURNING replayed_at",
        )
        .bind(access_token_id)
        .bind(code_digest)
        .fetch_optional(&mut *tx)
        .await
        .map_err(backend_error)?;
        if let Some(t) = refresh {
            insert_refresh(&mut *tx, t).await?;
        }
        audit_in(&mut *tx, audit).await?;
        tx.commit().await.map_err(backend_error)?;
        Ok(match row {
            Some(r) => opt_time(&r, "replayed_at")?.is_some(),
            None => false,
        })
    }

    async fn code(&self, code_digest: &str) -> StoreResult<Option<AuthorizationCode>> {
        let row = row_by(
            &self.pool,
            &format!("SELECT {CODE_COLUMNS} FROM authorization_codes WHERE code_digest = $1"),
            code_digest,
        )
        .await?;
        row.as_ref().map(code_from).transpose()
    }

    async fn mark_code_replayed(&self, code_digest: &str, now: Now) -> StoreResult<()> {
        sqlx::query(
            "UPDATE authorization_codes SET replayed_at = $1 WHERE code_digest = $2 AND replayed_at IS NULL",
        )
        .bind(now.millis())
        .bind(code_digest)
        .execute(&self.pool)
        .await
        .map_err(backend_error)?;
        Ok(())
    }

    async fn consume_code(&self, code_digest: &str, now: Now) -> StoreResult<Option<AuthorizationCode>> {
        // The conditional update is the arbiter: only one redemption sees a null consumed_at,
        // and it gets the code as it was; the others get nothing.
        let _turn = self.writer.turn().await?;
        let row = sqlx::query(&format!(
            "UPDATE authorization_codes SET consumed_at = $1 WHERE code_digest = $2 AND consumed_at IS NULL
             RETURNING {CODE_COLUMNS}"
        ))
        .bind(now.millis())
        .bind(code_digest)
        .fetch_optional(self.writer.pool(&self.pool))
        .await
        .map_err(backend_error)?;
        let Some(row) = row else {
            return Ok(None);
        };
        let mut code = code_from(&row)?;
        code.consumed_at = None;
        Ok(Some(code))
    }

    async fn rotate_refresh_token(
        &self,
        token_digest: &str,
        next: &RefreshToken,
        now: Now,
    ) -> StoreResult<Rotation> {
        let mut tx = begin_write(&self.pool, &self.writer).await?;
        let won = sqlx::query(
            "UPDATE refresh_tokens SET used_at = $1
             WHERE token_digest = $2 AND used_at IS NULL AND revoked_at IS NULL AND family_expires_at > $1",
        )
        .bind(now.millis())
        .bind(token_digest)
        .execute(&mut *tx)
        .await
        .map_err(backend_error)?
        .rows_affected()
            == 1;
        let row = row_by(
            &mut *tx,
            &format!("SELECT {REFRESH_COLUMNS} FROM refresh_tokens WHERE token_digest = $1"),
            token_digest,
        )
        .await?;
        let Some(row) = row else {
            return Ok(Rotation::Unknown);
        };
        let found = refresh_from(&row)?;
        if !won {
            return Ok(Rotation::Spent(found));
        }
        insert_refresh(&mut *tx, next).await?;
        tx.commit().await.map_err(backend_error)?;
        Ok(Rotation::Rotated(found))
    }

    async fn refresh_token(&self, token_digest: &str) -> StoreResult<Option<RefreshToken>> {
        let row = row_by(
            &self.pool,
            &format!("SELECT {REFRESH_COLUMNS} FROM refresh_tokens WHERE token_digest = $1"),
            token_digest,
        )
        .await?;
        row.as_ref().map(refresh_from).transpose()
    }

    async fn revoke_family(&self, family_id: &str, now: Now) -> StoreResult<Vec<(String, Now)>> {
        let mut tx = begin_write(&self.pool, &self.writer).await?;
        sqlx::query("UPDATE refresh_tokens SET revoked_at = $1 WHERE family_id = $2 AND revoked_at IS NULL")
            .bind(now.millis())
            .bind(family_id)
            .execute(&mut *tx)
            .await
            .map_err(backend_error)?;
        let rows =
            sqlx::query("SELECT access_token_id, access_expires_at FROM refresh_tokens WHERE family_id = $1")
                .bind(family_id)
                .fetch_all(&mut *tx)
                .await
                .map_err(backend_error)?;
        tx.commit().await.map_err(backend_error)?;
        rows.iter()
            .map(|r| Ok((get(r, "access_token_id")?, time(r, "access_expires_at")?)))
            .collect()
    }

    async fn purge_grants(&self, now: Now) -> StoreResult<u64> {
        let mut n = 0;
        for sql in [
            "DELETE FROM sign_in_flows WHERE expires_at <= $1",
            "DELETE FROM browser_sessions WHERE expires_at <= $1",
            "DELETE FROM authorization_codes WHERE expires_at <= $1",
            "DELETE FROM refresh_tokens WHERE family_expires_at <= $1",
            // Sessions gone, their list of clients goes too.
            "DELETE FROM session_clients WHERE created_at <= $1 AND session_digest NOT IN (SELECT session_digest FROM browser_sessions)",
        ] {
            n += sqlx::query(sql)
                .bind(now.millis())
                .execute(&self.pool)
                .await
                .map_err(backend_error)?
                .rows_affected();
        }
        Ok(n)
    }
}

const LINK_COLUMNS: &str = "token_digest, user_id, purpose, created_at, expires_at, used_at, return_to";

fn link_from(row: &AnyRow) -> StoreResult<AccountLink> {
    let purpose: String = get(row, "purpose")?;
    Ok(AccountLink {
        token_digest: get(row, "token_digest")?,
        user_id: get(row, "user_id")?,
        purpose: LinkPurpose::parse(&purpose)
            .ok_or_else(|| StoreError::Backend(format!("unknown link purpose {purpose:?}")))?,
        created_at: Now::from_millis(get(row, "created_at")?),
        expires_at: Now::from_millis(get(row, "expires_at")?),
        used_at: get::<Option<i64>>(row, "used_at")?.map(Now::from_millis),
        return_to: get(row, "return_to")?,
    })
}

/// Stores a one-time link (its digest only).
/// Inserts account links, several to a statement.
pub(crate) async fn insert_links(tx: &mut AnyConnection, links: &[&AccountLink]) -> StoreResult<()> {
    let into = format!("password_resets ({LINK_COLUMNS})");
    crate::insert_rows(tx, &into, 7, links, |q, link| {
        q.bind(&link.token_digest)
            .bind(&link.user_id)
            .bind(link.purpose.as_str())
            .bind(link.created_at.millis())
            .bind(link.expires_at.millis())
            .bind(link.used_at.map(Now::millis))
            .bind(link.return_to.clone())
    })
    .await
}

/// Records that a browser session signed in to a client (for back-channel logout).
async fn note_client<'c, E>(
    exec: E,
    session_digest: &str,
    client_id: &str,
    user_id: &str,
    now: Now,
) -> StoreResult<()>
where
    E: sqlx::Executor<'c, Database = sqlx::Any>,
{
    sqlx::query(
        "INSERT INTO session_clients (session_digest, client_id, user_id, created_at) VALUES ($1, $2, $3, $4)
         ON CONFLICT (session_digest, client_id) DO NOTHING",
    )
    .bind(session_digest.to_owned())
    .bind(client_id.to_owned())
    .bind(user_id.to_owned())
    .bind(now.millis())
    .execute(exec)
    .await
    .map_err(backend_error)?;
    Ok(())
}
