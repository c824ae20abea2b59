-- OpenID Connect back-channel logout: where a client wants to hear that a person signed out,
-- and which clients received a code in each browser session (those are told when it ends).
ALTER TABLE oauth_clients ADD COLUMN backchannel_logout_uri TEXT;

CREATE TABLE session_clients (
    session_digest TEXT NOT NULL,
    client_id      TEXT NOT NULL,
    user_id        TEXT NOT NULL,
    created_at     BIGINT NOT NULL,
    PRIMARY KEY (session_digest, client_id)
);
