-- State the nodes share. First a counter of client changes beside the notification: a node
-- polls it, so that a change reaches every node within a bound even where notifications do not
-- (a pooler in transaction mode accepts LISTEN and delivers nothing; a listener connection may be
-- down). The trigger function names the schema of the table that changed, whatever the session's
-- search path.
CREATE TABLE change_counters (
    name TEXT PRIMARY KEY,
    value BIGINT NOT NULL
);
INSERT INTO change_counters (name, value) VALUES ('clients', 0);

CREATE OR REPLACE FUNCTION notify_client_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE format('UPDATE %I.change_counters SET value = value + 1 WHERE name = ''clients''',
                   TG_TABLE_SCHEMA);
    PERFORM pg_notify('ims_client_changes', TG_TABLE_SCHEMA);
    RETURN NULL;
END;
$$;

-- API budgets held by the database, so that several nodes share one budget per caller: a token
-- bucket per key (tokens left, when last counted), taken from by one conditional upsert.
CREATE TABLE api_budgets (
    bucket TEXT PRIMARY KEY,
    tokens DOUBLE PRECISION NOT NULL,
    at BIGINT NOT NULL,
    taken TEXT NOT NULL
);
