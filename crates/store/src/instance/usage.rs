//! Usage evidence: which operator signed in or called how, when.

use super::*;

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
