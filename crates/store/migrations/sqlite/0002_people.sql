-- People sign in: users gain an identity type, a status, a country, an optional TOTP secret (sealed
-- under the master key) with recovery codes (digests), and a time before which nothing issued to
-- them counts. OAuth clients gain a type (technical account, confidential or public), a
-- first-party flag and registered redirect URIs. Authorization codes, refresh tokens, browser
-- sessions and sign-in flows are stored as digests of what the browser or client holds.
ALTER TABLE users ADD COLUMN identity_type TEXT NOT NULL DEFAULT 'adobeID';
ALTER TABLE users ADD COLUMN status TEXT NOT NULL DEFAULT 'active';
ALTER TABLE users ADD COLUMN country TEXT;
ALTER TABLE users ADD COLUMN totp_sealed TEXT;
ALTER TABLE users ADD COLUMN recovery_codes TEXT NOT NULL DEFAULT '';
-- The last one-time code's time step: a code is accepted once.
ALTER TABLE users ADD COLUMN totp_last_step INTEGER NOT NULL DEFAULT 0;
ALTER TABLE users ADD COLUMN sessions_valid_after INTEGER NOT NULL DEFAULT 0;
ALTER TABLE users ADD COLUMN updated_at INTEGER NOT NULL DEFAULT 0;

-- Sign-in attempts per organisation and lower-cased email (case variants share one counter): each
-- admitted attempt counts until a success clears the row; `admitted` names the last one let in.
CREATE TABLE sign_in_failures (
    org_id       TEXT NOT NULL,
    email_lower  TEXT NOT NULL,
    failures     INTEGER NOT NULL,
    last_failure INTEGER NOT NULL,
    locked_until INTEGER NOT NULL,
    admitted     TEXT NOT NULL,
    PRIMARY KEY (org_id, email_lower)
);

ALTER TABLE oauth_clients ADD COLUMN client_type TEXT NOT NULL DEFAULT 'technical_account';
ALTER TABLE oauth_clients ADD COLUMN first_party INTEGER NOT NULL DEFAULT 0;

CREATE TABLE client_redirect_uris (
    client_id TEXT NOT NULL REFERENCES oauth_clients(client_id),
    uri       TEXT NOT NULL,
    PRIMARY KEY (client_id, uri)
);

CREATE TABLE sign_in_flows (
    flow_digest    TEXT PRIMARY KEY,
    browser_digest TEXT NOT NULL,
    request        TEXT NOT NULL,
    stage          TEXT NOT NULL,
    email          TEXT,
    user_id        TEXT,
    created_at     INTEGER NOT NULL,
    expires_at     INTEGER NOT NULL
);
CREATE INDEX sign_in_flows_expiry ON sign_in_flows(expires_at);

CREATE TABLE browser_sessions (
    session_digest TEXT PRIMARY KEY,
    user_id        TEXT NOT NULL REFERENCES users(user_id),
    auth_time      INTEGER NOT NULL,
    amr            TEXT NOT NULL,
    created_at     INTEGER NOT NULL,
    expires_at     INTEGER NOT NULL
);
CREATE INDEX browser_sessions_user ON browser_sessions(user_id);

-- A code is consumed by setting consumed_at where it is still null: one redemption wins. What the
-- redemption issued (grant_id: the refresh token family, access_token_id) is revoked on reuse.
CREATE TABLE authorization_codes (
    code_digest     TEXT PRIMARY KEY,
    client_id       TEXT NOT NULL,
    user_id         TEXT NOT NULL,
    redirect_uri    TEXT NOT NULL,
    scope           TEXT NOT NULL,
    nonce           TEXT,
    code_challenge  TEXT NOT NULL,
    auth_time       INTEGER NOT NULL,
    amr             TEXT NOT NULL,
    created_at      INTEGER NOT NULL,
    expires_at      INTEGER NOT NULL,
    consumed_at     INTEGER,
    grant_id        TEXT NOT NULL,
    access_token_id TEXT,
    replayed_at     INTEGER
);
CREATE INDEX authorization_codes_expiry ON authorization_codes(expires_at);

-- Refresh tokens rotate: each use marks the row used and adds the next one of the same family.
CREATE TABLE refresh_tokens (
    token_digest      TEXT PRIMARY KEY,
    family_id         TEXT NOT NULL,
    client_id         TEXT NOT NULL,
    user_id           TEXT NOT NULL,
    scope             TEXT NOT NULL,
    auth_time         INTEGER NOT NULL,
    amr               TEXT NOT NULL,
    access_token_id   TEXT NOT NULL,
    access_expires_at INTEGER NOT NULL,
    created_at        INTEGER NOT NULL,
    family_expires_at INTEGER NOT NULL,
    used_at           INTEGER,
    revoked_at        INTEGER
);
CREATE INDEX refresh_tokens_family ON refresh_tokens(family_id);
CREATE INDEX refresh_tokens_user ON refresh_tokens(user_id);

-- One-time password reset links an administrator hands to a person.
CREATE TABLE password_resets (
    token_digest TEXT PRIMARY KEY,
    user_id      TEXT NOT NULL REFERENCES users(user_id),
    created_at   INTEGER NOT NULL,
    expires_at   INTEGER NOT NULL,
    used_at      INTEGER
);

-- What a person allowed a third-party application (first-party ones are not asked).
CREATE TABLE consents (
    user_id    TEXT NOT NULL REFERENCES users(user_id),
    client_id  TEXT NOT NULL,
    scopes     TEXT NOT NULL,
    granted_at INTEGER NOT NULL,
    PRIMARY KEY (user_id, client_id)
);
