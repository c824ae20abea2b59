-- Organisations, the bootstrap administrator, technical accounts and their secrets, signing keys,
-- revoked tokens and the audit log. Times are epoch milliseconds; flags are 0/1 integers so that
-- both backends read them the same way.
CREATE TABLE organizations (
    org_id      TEXT PRIMARY KEY,
    numeric_id  BIGINT NOT NULL UNIQUE,
    name        TEXT NOT NULL,
    created_at  BIGINT NOT NULL
);

CREATE TABLE users (
    user_id       TEXT PRIMARY KEY,
    org_id        TEXT NOT NULL REFERENCES organizations(org_id),
    email         TEXT NOT NULL,
    email_lower   TEXT NOT NULL,
    first_name    TEXT NOT NULL,
    last_name     TEXT NOT NULL,
    password_hash TEXT,
    system_admin  BIGINT NOT NULL DEFAULT 0,
    created_at    BIGINT NOT NULL,
    UNIQUE (org_id, email_lower)
);

CREATE TABLE oauth_clients (
    client_id               TEXT PRIMARY KEY,
    org_id                  TEXT NOT NULL REFERENCES organizations(org_id),
    name                    TEXT NOT NULL,
    technical_account_id    TEXT NOT NULL UNIQUE,
    technical_account_email TEXT NOT NULL,
    scopes                  TEXT NOT NULL,
    grant_types             TEXT NOT NULL,
    disabled                BIGINT NOT NULL DEFAULT 0,
    created_at              BIGINT NOT NULL,
    updated_at              BIGINT NOT NULL
);
CREATE INDEX oauth_clients_org ON oauth_clients(org_id);

CREATE TABLE client_secrets (
    secret_id  TEXT PRIMARY KEY,
    client_id  TEXT NOT NULL REFERENCES oauth_clients(client_id),
    digest     TEXT NOT NULL,
    hint       TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT
);
CREATE INDEX client_secrets_client ON client_secrets(client_id);

CREATE TABLE signing_keys (
    kid            TEXT PRIMARY KEY,
    alg            TEXT NOT NULL,
    public_jwk     TEXT NOT NULL,
    sealed_private TEXT NOT NULL,
    created_at     BIGINT NOT NULL,
    activates_at   BIGINT NOT NULL
);

CREATE TABLE revoked_tokens (
    token_id   TEXT PRIMARY KEY,
    client_id  TEXT NOT NULL,
    expires_at BIGINT NOT NULL,
    revoked_at BIGINT NOT NULL
);
CREATE INDEX revoked_tokens_expiry ON revoked_tokens(expires_at);

CREATE TABLE audit_log (
    seq        BIGSERIAL PRIMARY KEY,
    at         BIGINT NOT NULL,
    actor      TEXT NOT NULL,
    action     TEXT NOT NULL,
    target     TEXT NOT NULL,
    outcome    TEXT NOT NULL,
    source     TEXT,
    request_id TEXT,
    details    TEXT NOT NULL
);
CREATE INDEX audit_log_action ON audit_log(action);

-- The audit log is append-only, whoever connects.
CREATE FUNCTION audit_log_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit_log is append-only';
END;
$$;
CREATE TRIGGER audit_log_no_update BEFORE UPDATE OR DELETE ON audit_log
    FOR EACH ROW EXECUTE FUNCTION audit_log_append_only();

-- Every change to clients or their secrets tells the nodes, which keep clients in memory (see
-- the store's signal module). The payload is the schema, so deployments sharing a database can
-- tell their changes apart.
CREATE FUNCTION notify_client_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('ims_client_changes', TG_TABLE_SCHEMA);
    RETURN NULL;
END;
$$;
CREATE TRIGGER oauth_clients_changed AFTER INSERT OR UPDATE OR DELETE ON oauth_clients
    FOR EACH STATEMENT EXECUTE FUNCTION notify_client_change();
CREATE TRIGGER client_secrets_changed AFTER INSERT OR UPDATE OR DELETE ON client_secrets
    FOR EACH STATEMENT EXECUTE FUNCTION notify_client_change();
