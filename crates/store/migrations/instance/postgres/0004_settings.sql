-- What the instance is: name, type and build, kept so that an upgrade survives restarts.
CREATE TABLE instance_settings (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
