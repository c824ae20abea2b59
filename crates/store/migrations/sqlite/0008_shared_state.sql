-- The counter of client changes PostgreSQL nodes poll. On SQLite every process reads the WAL
-- index's header instead (see the store's signal module); the table is kept so that both
-- backends hold the same tables.
CREATE TABLE change_counters (
    name TEXT PRIMARY KEY,
    value INTEGER NOT NULL
);
INSERT INTO change_counters (name, value) VALUES ('clients', 0);

-- API budgets: PostgreSQL nodes share theirs here; on SQLite, one node, they stay in memory.
CREATE TABLE api_budgets (
    bucket TEXT PRIMARY KEY,
    tokens REAL NOT NULL,
    at INTEGER NOT NULL,
    taken TEXT NOT NULL
);
