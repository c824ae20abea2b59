//! The migration engine's journal (`ims_migration::journal::Journal`) on SQLite or PostgreSQL,
//! in its own database.

use async_trait::async_trait;
use sqlx::any::AnyRow;
use sqlx::AnyPool;

use ims_identity::error::StoreError;
use ims_identity::store::StoreResult;
use ims_identity::Now;
use ims_migration::journal::{Journal, PlanRecord, StepEnd, StepKey, StepRecord, StepState};

use crate::{backend_error, begin_write, connect, get, migrate, Backend, Connected, Options};

#[derive(Clone, Debug)]
pub struct SqlJournal {
    pool: AnyPool,
    backend: Backend,
}

impl SqlJournal {
    pub async fn open(opts: &Options, now: Now) -> Result<Self, StoreError> {
        let Connected { pool, backend, .. } = connect(opts, now, migrate::JOURNAL_MIGRATIONS).await?;
        Ok(SqlJournal { pool, backend })
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }

    pub async fn drop_schema(&self, schema: &str) -> Result<(), StoreError> {
        crate::drop_pg_schema(&self.pool, self.backend, schema).await
    }
}

fn plan_of(r: &AnyRow) -> StoreResult<PlanRecord> {
    Ok(PlanRecord {
        plan_id: get(r, "plan_id")?,
        instance: get(r, "instance")?,
        phase: get(r, "phase")?,
        created_at: Now::from_millis(get(r, "created_at")?),
        body: get(r, "body")?,
        applied_at: get::<Option<i64>>(r, "applied_at")?.map(Now::from_millis),
    })
}

const PLAN_COLUMNS: &str = "plan_id, instance, phase, created_at, body, applied_at";

#[async_trait]
impl Journal for SqlJournal {
    async fn put_plan(&self, plan: &PlanRecord) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO migration_plans (plan_id, instance, phase, created_at, body, applied_at)
             VALUES ($1, $2, $3, $4, $5, NULL) ON CONFLICT (plan_id) DO NOTHING",
        )
        .bind(plan.plan_id.clone())
        .bind(plan.instance.clone())
        .bind(plan.phase.clone())
        .bind(plan.created_at.millis())
        .bind(plan.body.clone())
        .execute(&self.pool)
        .await
        .map_err(backend_error)?;
        Ok(())
    }

    async fn plan(&self, plan_id: &str) -> StoreResult<Option<PlanRecord>> {
        sqlx::query(&format!(
            "SELECT {PLAN_COLUMNS} FROM migration_plans WHERE plan_id = $1"
        ))
        .bind(plan_id.to_owned())
        .fetch_optional(&self.pool)
        .await
        .map_err(backend_error)?
        .as_ref()
        .map(plan_of)
        .transpose()
    }

    async fn plans(&self, instance: &str) -> StoreResult<Vec<PlanRecord>> {
        sqlx::query(&format!(
            "SELECT {PLAN_COLUMNS} FROM migration_plans WHERE instance = $1 ORDER BY created_at, plan_id"
        ))
        .bind(instance.to_owned())
        .fetch_all(&self.pool)
        .await
        .map_err(backend_error)?
        .iter()
        .map(plan_of)
        .collect()
    }

    async fn mark_applied(&self, plan_id: &str, at: Now) -> StoreResult<()> {
        sqlx::query("UPDATE migration_plans SET applied_at = $1 WHERE plan_id = $2 AND applied_at IS NULL")
            .bind(at.millis())
            .bind(plan_id.to_owned())
            .execute(&self.pool)
            .await
            .map_err(backend_error)?;
        Ok(())
    }

    async fn begin_steps(&self, plan_id: &str, keys: &[StepKey], at: Now) -> StoreResult<()> {
        let mut tx = begin_write(&self.pool, self.backend).await?;
        for k in keys {
            sqlx::query(
                "INSERT INTO migration_steps (plan_id, operator, action, state, detail, started_at, finished_at)
                 VALUES ($1, $2, $3, 'started', '', $4, NULL)
                 ON CONFLICT (plan_id, action, operator)
                 DO UPDATE SET state = 'started', detail = '', started_at = $4, finished_at = NULL",
            )
            .bind(plan_id.to_owned())
            .bind(k.operator.clone())
            .bind(k.action.clone())
            .bind(at.millis())
            .execute(&mut *tx)
            .await
            .map_err(backend_error)?;
        }
        tx.commit().await.map_err(backend_error)
    }

    async fn end_steps(&self, plan_id: &str, ends: &[StepEnd], at: Now) -> StoreResult<()> {
        let mut tx = begin_write(&self.pool, self.backend).await?;
        for e in ends {
            sqlx::query(
                "UPDATE migration_steps SET state = $1, detail = $2, finished_at = $3
                 WHERE plan_id = $4 AND action = $5 AND operator = $6",
            )
            .bind(e.state.as_str())
            .bind(e.detail.clone())
            .bind(at.millis())
            .bind(plan_id.to_owned())
            .bind(e.key.action.clone())
            .bind(e.key.operator.clone())
            .execute(&mut *tx)
            .await
            .map_err(backend_error)?;
        }
        tx.commit().await.map_err(backend_error)
    }

    async fn steps(&self, plan_id: &str) -> StoreResult<Vec<StepRecord>> {
        let rows = sqlx::query(
            "SELECT operator, action, state, detail, started_at, finished_at FROM migration_steps
             WHERE plan_id = $1 ORDER BY started_at, action, operator",
        )
        .bind(plan_id.to_owned())
        .fetch_all(&self.pool)
        .await
        .map_err(backend_error)?;
        rows.iter()
            .map(|r| {
                let state: String = get(r, "state")?;
                Ok(StepRecord {
                    key: StepKey {
                        operator: get(r, "operator")?,
                        action: get(r, "action")?,
                    },
                    state: StepState::parse(&state)
                        .ok_or_else(|| StoreError::Backend(format!("unknown step state {state:?}")))?,
                    detail: get(r, "detail")?,
                    started_at: Now::from_millis(get(r, "started_at")?),
                    finished_at: get::<Option<i64>>(r, "finished_at")?.map(Now::from_millis),
                })
            })
            .collect()
    }
}
