-- An instance's own database: operators, operator groups and their named rights, sessions, and
-- the usage evidence of every sign-in and call. Times are epoch milliseconds; flags 0/1.
CREATE TABLE operator_groups (
    group_id BIGSERIAL PRIMARY KEY,
    name     TEXT NOT NULL UNIQUE,
    label    TEXT NOT NULL
);

CREATE TABLE group_rights (
    group_id   BIGINT NOT NULL REFERENCES operator_groups(group_id),
    right_name TEXT NOT NULL,
    PRIMARY KEY (group_id, right_name)
);

CREATE TABLE operators (
    operator_id        BIGSERIAL PRIMARY KEY,
    login              TEXT NOT NULL UNIQUE,
    label              TEXT NOT NULL,
    email              TEXT,
    auth_type          TEXT NOT NULL,
    disabled           BIGINT NOT NULL DEFAULT 0,
    forbid_rich_client BIGINT NOT NULL DEFAULT 0,
    trusted_ip_mask    TEXT,
    security_zone      TEXT,
    password_hash      TEXT,
    ims_id             TEXT UNIQUE,
    builtin            BIGINT NOT NULL DEFAULT 0,
    created_at         BIGINT NOT NULL,
    modified_at        BIGINT NOT NULL
);

CREATE TABLE operator_group_members (
    operator_id BIGINT NOT NULL REFERENCES operators(operator_id),
    group_id    BIGINT NOT NULL REFERENCES operator_groups(group_id),
    PRIMARY KEY (operator_id, group_id)
);

CREATE TABLE operator_rights (
    operator_id BIGINT NOT NULL REFERENCES operators(operator_id),
    right_name  TEXT NOT NULL,
    PRIMARY KEY (operator_id, right_name)
);

CREATE TABLE sessions (
    session_digest  TEXT PRIMARY KEY,
    security_digest TEXT NOT NULL,
    operator_id     BIGINT NOT NULL REFERENCES operators(operator_id),
    auth_path       TEXT NOT NULL,
    created_at      BIGINT NOT NULL,
    expires_at      BIGINT NOT NULL
);
CREATE INDEX sessions_expiry ON sessions(expires_at);

CREATE TABLE usage_events (
    seq         BIGSERIAL PRIMARY KEY,
    at          BIGINT NOT NULL,
    operator_id BIGINT,
    login       TEXT NOT NULL,
    action      TEXT NOT NULL,
    auth_path   TEXT NOT NULL,
    source      TEXT,
    client      TEXT,
    outcome     TEXT NOT NULL
);
CREATE INDEX usage_events_login ON usage_events(login, seq);
