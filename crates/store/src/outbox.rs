//! The outbox (`OutboxStore`): messages queued with their audit lines, taken for delivery a round
//! at a time by one conditional update (so that senders on several nodes never take the same one
//! while its lease runs), and moved to sent or failed.

use async_trait::async_trait;
use sqlx::any::AnyRow;
use sqlx::AnyConnection;

use ims_core::audit::AuditEvent;
use ims_core::Now;
use ims_identity::mail::{Mail, MailKind, MailStatus};
use ims_identity::store::{OutboxStore, StoreResult};
use ims_sql::ROWS_PER_STATEMENT;

use crate::{audit_in, backend_error, begin_write, get, SqlStore};

const MAIL_COLUMNS: &str = "mail_id, org_id, kind, recipient, subject, body_text, body_html, created_at, \
     status, attempts, next_attempt_at, last_error, sent_at";

fn mail_from(row: &AnyRow) -> StoreResult<Mail> {
    let kind: String = get(row, "kind")?;
    let status: String = get(row, "status")?;
    let attempts: i64 = get(row, "attempts")?;
    Ok(Mail {
        mail_id: get(row, "mail_id")?,
        org_id: get(row, "org_id")?,
        kind: MailKind::parse(&kind).ok_or_else(|| unknown("kind", &kind))?,
        to: get(row, "recipient")?,
        subject: get(row, "subject")?,
        text: get(row, "body_text")?,
        html: get(row, "body_html")?,
        created_at: Now::from_millis(get(row, "created_at")?),
        status: MailStatus::parse(&status).ok_or_else(|| unknown("status", &status))?,
        attempts: u32::try_from(attempts).unwrap_or(u32::MAX),
        next_attempt_at: Now::from_millis(get(row, "next_attempt_at")?),
        last_error: get(row, "last_error")?,
        sent_at: get::<Option<i64>>(row, "sent_at")?.map(Now::from_millis),
    })
}

fn unknown(column: &str, value: &str) -> ims_core::error::StoreError {
    ims_core::error::StoreError::Backend(format!("mail_outbox.{column} holds {value:?}"))
}

#[async_trait]
impl OutboxStore for SqlStore {
    async fn queue_mail(&self, mail: &Mail, audit: &AuditEvent) -> StoreResult<()> {
        let mut tx = begin_write(&self.pool, &self.writer).await?;
        insert_mails(&mut tx, &[mail]).await?;
        audit_in(&mut *tx, audit).await?;
        tx.commit().await.map_err(backend_error)
    }

    async fn take_due_mail(&self, now: Now, lease_secs: i64, limit: u32) -> StoreResult<Vec<Mail>> {
        // One statement takes the round: the due messages, each only if it is still due when the
        // update reaches it (on PostgreSQL a concurrent sender's update is waited for, and the
        // condition read again on what it wrote), so two senders never take the same message.
        let rows = sqlx::query(&format!(
            "UPDATE mail_outbox SET attempts = attempts + 1, next_attempt_at = $1 \
             WHERE mail_id IN (SELECT mail_id FROM mail_outbox WHERE status = 'queued' \
               AND next_attempt_at <= $2 ORDER BY next_attempt_at, created_at LIMIT $3) \
             AND status = 'queued' AND next_attempt_at <= $2 \
             RETURNING {MAIL_COLUMNS}"
        ))
        .bind(now.plus_secs(lease_secs).millis())
        .bind(now.millis())
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await
        .map_err(backend_error)?;
        let mut taken = rows.iter().map(mail_from).collect::<StoreResult<Vec<_>>>()?;
        taken.sort_by(|a, b| (a.created_at, &a.mail_id).cmp(&(b.created_at, &b.mail_id)));
        Ok(taken)
    }

    async fn mails_sent(&self, mail_ids: &[String], now: Now) -> StoreResult<()> {
        for chunk in mail_ids.chunks(ROWS_PER_STATEMENT * 4) {
            let sql = format!(
                "UPDATE mail_outbox SET status = 'sent', sent_at = $1, last_error = NULL \
                 WHERE mail_id IN ({})",
                ims_sql::placeholders(2, chunk.len())
            );
            let mut q = sqlx::query(&sql).bind(now.millis());
            for id in chunk {
                q = q.bind(id);
            }
            q.execute(&self.pool).await.map_err(backend_error)?;
        }
        Ok(())
    }

    async fn mail_failed(&self, mail_id: &str, answer: &str, retry_at: Option<Now>) -> StoreResult<()> {
        let (status, next) = match retry_at {
            Some(at) => (MailStatus::Queued, Some(at.millis())),
            None => (MailStatus::Failed, None),
        };
        sqlx::query(
            "UPDATE mail_outbox SET status = $1, last_error = $2, \
             next_attempt_at = COALESCE($3, next_attempt_at) WHERE mail_id = $4 AND status = 'queued'",
        )
        .bind(status.as_str())
        .bind(answer)
        .bind(next)
        .bind(mail_id)
        .execute(&self.pool)
        .await
        .map_err(backend_error)?;
        Ok(())
    }

    async fn mail(&self, mail_id: &str) -> StoreResult<Option<Mail>> {
        sqlx::query(&format!(
            "SELECT {MAIL_COLUMNS} FROM mail_outbox WHERE mail_id = $1"
        ))
        .bind(mail_id)
        .fetch_optional(&self.pool)
        .await
        .map_err(backend_error)?
        .as_ref()
        .map(mail_from)
        .transpose()
    }

    async fn outbox(&self, org_id: &str, offset: u32, limit: u32) -> StoreResult<Vec<Mail>> {
        sqlx::query(&format!(
            "SELECT {MAIL_COLUMNS} FROM mail_outbox WHERE org_id = $1 \
             ORDER BY created_at DESC, mail_id LIMIT $2 OFFSET $3"
        ))
        .bind(org_id)
        .bind(i64::from(limit))
        .bind(i64::from(offset))
        .fetch_all(&self.pool)
        .await
        .map_err(backend_error)?
        .iter()
        .map(mail_from)
        .collect()
    }

    async fn resend_mail(&self, mail_id: &str, now: Now, audit: &AuditEvent) -> StoreResult<bool> {
        let mut tx = begin_write(&self.pool, &self.writer).await?;
        let done = sqlx::query(
            "UPDATE mail_outbox SET status = 'queued', attempts = 0, next_attempt_at = $1, \
             sent_at = NULL WHERE mail_id = $2",
        )
        .bind(now.millis())
        .bind(mail_id)
        .execute(&mut *tx)
        .await
        .map_err(backend_error)?;
        if done.rows_affected() == 0 {
            return Ok(false);
        }
        audit_in(&mut *tx, audit).await?;
        tx.commit().await.map_err(backend_error)?;
        Ok(true)
    }
}

/// Writes a queued message inside the caller's transaction: the changes that cause mail queue
/// it with themselves.
pub(crate) async fn insert_mails(tx: &mut AnyConnection, mails: &[&Mail]) -> StoreResult<()> {
    let into = format!("mail_outbox ({MAIL_COLUMNS})");
    crate::insert_rows(tx, &into, 13, mails, |q, mail| {
        q.bind(&mail.mail_id)
            .bind(&mail.org_id)
            .bind(mail.kind.as_str())
            .bind(&mail.to)
            .bind(&mail.subject)
            .bind(&mail.text)
            .bind(&mail.html)
            .bind(mail.created_at.millis())
            .bind(mail.status.as_str())
            .bind(i64::from(mail.attempts))
            .bind(mail.next_attempt_at.millis())
            .bind(mail.last_error.clone())
            .bind(mail.sent_at.map(Now::millis))
    })
    .await
}
