-- Running totals of calls per operator, action, authentication path, source and client: the
-- bounded record of API usage (sign-ins stay one row each in usage_events).
CREATE TABLE usage_summary (
    login       TEXT NOT NULL,
    operator_id BIGINT,
    action      TEXT NOT NULL,
    auth_path   TEXT NOT NULL,
    source      TEXT NOT NULL,
    client      TEXT NOT NULL,
    outcome     TEXT NOT NULL,
    calls       BIGINT NOT NULL,
    first_at    BIGINT NOT NULL,
    last_at     BIGINT NOT NULL,
    PRIMARY KEY (login, action, auth_path, source, client, outcome)
);
CREATE INDEX usage_summary_last ON usage_summary(last_at);
