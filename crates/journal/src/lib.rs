//! The migration engine's journal (`ims_migration::journal::Journal`) on SQLite or PostgreSQL,
//! in a database of its own. Kept beside the engine rather than in the services' storage: no
//! server links the engine, and the engine's crate stays free of SQL.

use async_trait::async_trait;
use sqlx::any::AnyRow;
use sqlx::AnyPool;

use ims_core::error::StoreError;
use ims_core::Now;
use ims_core::StoreResult;
use ims_migration::journal::{Journal, PlanProgress, PlanRecord, StepEnd, StepKey, StepRecord, StepState};

use ims_sql::migrate::Migration;
use ims_sql::{backend_error, begin_write, connect, get, Backend, Connected, Options, Writer};

/// The journal's schema steps. Append only; never edit a released step.
pub const JOURNAL_MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        name: "journal",
        sqlite: include_str!("../migrations/sqlite/0001_journal.sql"),
        postgres: include_str!("../migrations/postgres/0001_journal.sql"),
    },
    Migration {
        version: 2,
        name: "plan_scope",
        sqlite: include_str!("../migrations/sqlite/0002_plan_scope.sql"),
        postgres: include_str!("../migrations/postgres/0002_plan_scope.sql"),
    },
];

#[derive(Clone, Debug)]
pub struct SqlJournal {
    pool: AnyPool,
    backend: Backend,
    writer: Writer,
}

impl SqlJournal {
    pub async fn open(opts: &Options, now: Now) -> Result<Self, StoreError> {
        let Connected {
            pool,
            backend,
            writer,
            ..
        } = connect(opts, now, JOURNAL_MIGRATIONS).await?;
        Ok(SqlJournal {
            pool,
            backend,
            writer,
        })
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }

    pub async fn drop_schema(&self, schema: &str) -> Result<(), StoreError> {
        ims_sql::drop_pg_schema(&self.pool, self.backend, schema).await
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
        scope: get(r, "scope")?,
    })
}

const PLAN_COLUMNS: &str = "plan_id, instance, phase, created_at, body, applied_at, scope";

#[async_trait]
impl Journal for SqlJournal {
    async fn put_plan(&self, plan: &PlanRecord) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO migration_plans (plan_id, instance, phase, created_at, body, applied_at, scope)
             VALUES ($1, $2, $3, $4, $5, NULL, $6) ON CONFLICT (plan_id) DO NOTHING",
        )
        .bind(plan.plan_id.clone())
        .bind(plan.instance.clone())
        .bind(plan.phase.clone())
        .bind(plan.created_at.millis())
        .bind(plan.body.clone())
        .bind(plan.scope.clone())
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
        let rows: Vec<StepRow<'_>> = keys
            .iter()
            .map(|k| StepRow {
                key: k,
                state: "started",
                detail: "",
            })
            .collect();
        self.write_steps(plan_id, &rows, at, Upsert::Begin).await
    }

    async fn end_steps(&self, plan_id: &str, ends: &[StepEnd], at: Now) -> StoreResult<()> {
        let rows: Vec<StepRow<'_>> = ends
            .iter()
            .map(|e| StepRow {
                key: &e.key,
                state: e.state.as_str(),
                detail: &e.detail,
            })
            .collect();
        self.write_steps(plan_id, &rows, at, Upsert::End).await
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
        rows.iter().map(step_of).collect()
    }

    async fn progress(&self, instance: &str) -> StoreResult<Vec<PlanProgress>> {
        let mut plans: Vec<PlanProgress> = sqlx::query(
            "SELECT plan_id, phase, created_at, applied_at, scope FROM migration_plans
             WHERE instance = $1 ORDER BY created_at, plan_id",
        )
        .bind(instance.to_owned())
        .fetch_all(&self.pool)
        .await
        .map_err(backend_error)?
        .iter()
        .map(|r| {
            Ok(PlanProgress {
                plan_id: get(r, "plan_id")?,
                phase: get(r, "phase")?,
                created_at: Now::from_millis(get(r, "created_at")?),
                applied_at: get::<Option<i64>>(r, "applied_at")?.map(Now::from_millis),
                scope: get(r, "scope")?,
                done: 0,
                started: 0,
                failed: Vec::new(),
            })
        })
        .collect::<StoreResult<_>>()?;
        let counts = sqlx::query(
            "SELECT s.plan_id, s.state, COUNT(*) AS n FROM migration_steps s
             JOIN migration_plans p ON p.plan_id = s.plan_id
             WHERE p.instance = $1 GROUP BY s.plan_id, s.state",
        )
        .bind(instance.to_owned())
        .fetch_all(&self.pool)
        .await
        .map_err(backend_error)?;
        let failed = sqlx::query(
            "SELECT s.plan_id, s.operator, s.action, s.state, s.detail, s.started_at, s.finished_at
             FROM migration_steps s JOIN migration_plans p ON p.plan_id = s.plan_id
             WHERE p.instance = $1 AND s.state = 'failed' ORDER BY s.started_at, s.action, s.operator",
        )
        .bind(instance.to_owned())
        .fetch_all(&self.pool)
        .await
        .map_err(backend_error)?;
        let at: std::collections::HashMap<String, usize> = plans
            .iter()
            .enumerate()
            .map(|(i, p)| (p.plan_id.clone(), i))
            .collect();
        for r in &counts {
            let Some(&i) = at.get(&get::<String>(r, "plan_id")?) else {
                continue;
            };
            let p = &mut plans[i];
            let n = usize::try_from(get::<i64>(r, "n")?).unwrap_or(0);
            match get::<String>(r, "state")?.as_str() {
                "done" => p.done = n,
                "started" => p.started = n,
                _ => {}
            }
        }
        for r in &failed {
            if let Some(i) = at.get(&get::<String>(r, "plan_id")?) {
                plans[*i].failed.push(step_of(r)?);
            }
        }
        Ok(plans)
    }
}

fn step_of(r: &AnyRow) -> StoreResult<StepRecord> {
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
}

/// One step as written: its key, state and detail.
struct StepRow<'a> {
    key: &'a StepKey,
    state: &'a str,
    detail: &'a str,
}

/// What writing a step does to one already recorded: a beginning starts it again; an end
/// keeps when it started.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Upsert {
    Begin,
    End,
}

/// Steps per statement: a batch of a thousand operators is a handful of statements, not a
/// thousand, and stays under every backend's limit on parameters.
const STEPS_PER_STATEMENT: usize = 200;

impl SqlJournal {
    async fn write_steps(
        &self,
        plan_id: &str,
        rows: &[StepRow<'_>],
        at: Now,
        how: Upsert,
    ) -> StoreResult<()> {
        let on_conflict = match how {
            Upsert::Begin => {
                "DO UPDATE SET state = excluded.state, detail = excluded.detail,
                 started_at = excluded.started_at, finished_at = NULL"
            }
            Upsert::End => {
                "DO UPDATE SET state = excluded.state, detail = excluded.detail, finished_at = excluded.finished_at"
            }
        };
        let finished = match how {
            Upsert::Begin => None,
            Upsert::End => Some(at.millis()),
        };
        let mut tx = begin_write(&self.pool, &self.writer).await?;
        for chunk in rows.chunks(STEPS_PER_STATEMENT) {
            let values = ims_sql::value_rows(self.backend, chunk.len(), 7);
            let sql = format!(
                "INSERT INTO migration_steps (plan_id, operator, action, state, detail, started_at, finished_at)
                 VALUES {values} ON CONFLICT (plan_id, action, operator) {on_conflict}"
            );
            let mut q = sqlx::query(&sql);
            for r in chunk {
                q = q
                    .bind(plan_id.to_owned())
                    .bind(r.key.operator.clone())
                    .bind(r.key.action.clone())
                    .bind(r.state.to_owned())
                    .bind(r.detail.to_owned())
                    .bind(at.millis())
                    .bind(finished);
            }
            q.execute(&mut *tx).await.map_err(backend_error)?;
        }
        tx.commit().await.map_err(backend_error)
    }
}
