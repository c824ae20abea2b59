-- Folders and the recipients they hold: the small data model API access control protects.
CREATE TABLE folders (
    folder_id BIGSERIAL PRIMARY KEY,
    name      TEXT NOT NULL UNIQUE,
    label     TEXT NOT NULL
);

CREATE TABLE recipients (
    recipient_id BIGSERIAL PRIMARY KEY,
    email        TEXT,
    first_name   TEXT,
    last_name    TEXT,
    folder_id    BIGINT REFERENCES folders(folder_id),
    created_at   BIGINT NOT NULL,
    modified_at  BIGINT NOT NULL
);
CREATE INDEX recipients_email ON recipients(email);
