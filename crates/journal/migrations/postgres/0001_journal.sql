-- The migration engine's own record: the plans it was given and every step of applying them.
CREATE TABLE migration_plans (
    plan_id    TEXT PRIMARY KEY,
    instance   TEXT NOT NULL,
    phase      TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    body       TEXT NOT NULL,
    applied_at BIGINT
);
CREATE INDEX migration_plans_instance ON migration_plans(instance, created_at);

CREATE TABLE migration_steps (
    plan_id     TEXT NOT NULL REFERENCES migration_plans(plan_id),
    operator    TEXT NOT NULL,
    action      TEXT NOT NULL,
    state       TEXT NOT NULL,
    detail      TEXT NOT NULL DEFAULT '',
    started_at  BIGINT NOT NULL,
    finished_at BIGINT,
    PRIMARY KEY (plan_id, action, operator)
);
