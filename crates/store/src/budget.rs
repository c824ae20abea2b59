//! API budgets shared by the nodes of one PostgreSQL database: a token bucket per key in a row,
//! taken from by one conditional upsert, so that N nodes hold one budget and not N. SQLite
//! serves one node, which keeps its budgets in memory (no write per call).

use async_trait::async_trait;

use ims_core::{Now, StoreResult};
use ims_identity::store::BudgetStore;
use ims_sql::{backend_error, get, Backend};

use crate::SqlStore;

#[async_trait]
impl BudgetStore for SqlStore {
    async fn take_budget(
        &self,
        bucket: &str,
        per_minute: u32,
        now: Now,
    ) -> StoreResult<Option<Result<(), u64>>> {
        if self.backend == Backend::Sqlite || per_minute == 0 {
            return Ok(None);
        }
        // What the bucket holds now: what it held, refilled for the time since (never for a time
        // before it, when another node's clock is behind), up to the capacity. The call is
        // taken when that is one or more; `taken` names the attempt that took one, so the
        // answer is read from the row as this statement left it.
        let holds = "LEAST(CAST($2 AS DOUBLE PRECISION),
                          api_budgets.tokens + GREATEST(0, $3 - api_budgets.at) * CAST($2 AS DOUBLE PRECISION) / 60000.0)";
        let sql = format!(
            "INSERT INTO api_budgets (bucket, tokens, at, taken) VALUES ($1, CAST($2 AS DOUBLE PRECISION) - 1, $3, $4)
             ON CONFLICT (bucket) DO UPDATE SET
               tokens = CASE WHEN {holds} >= 1 THEN {holds} - 1 ELSE {holds} END,
               taken = CASE WHEN {holds} >= 1 THEN $4 ELSE api_budgets.taken END,
               at = GREATEST(api_budgets.at, $3)
             RETURNING tokens, taken"
        );
        let attempt = ims_core::secret::uuid_like();
        let row = sqlx::query(&sql)
            .bind(bucket)
            .bind(i64::from(per_minute))
            .bind(now.millis())
            .bind(&attempt)
            .fetch_one(&self.pool)
            .await
            .map_err(backend_error)?;
        let taken: String = get(&row, "taken")?;
        if taken == attempt {
            return Ok(Some(Ok(())));
        }
        let tokens: f64 = get(&row, "tokens")?;
        let wait = ((1.0 - tokens) * 60.0 / f64::from(per_minute)).ceil().max(1.0);
        Ok(Some(Err(wait as u64)))
    }
}
