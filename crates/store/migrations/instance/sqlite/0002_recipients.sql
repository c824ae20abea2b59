-- Folders and the recipients they hold: the small data model API access control protects.
CREATE TABLE folders (
    folder_id INTEGER PRIMARY KEY AUTOINCREMENT,
    name      TEXT NOT NULL UNIQUE,
    label     TEXT NOT NULL
);

CREATE TABLE recipients (
    recipient_id INTEGER PRIMARY KEY AUTOINCREMENT,
    email        TEXT,
    first_name   TEXT,
    last_name    TEXT,
    folder_id    INTEGER REFERENCES folders(folder_id),
    created_at   INTEGER NOT NULL,
    modified_at  INTEGER NOT NULL
);
CREATE INDEX recipients_email ON recipients(email);
