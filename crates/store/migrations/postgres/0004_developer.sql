-- Developer Console projects and their workspaces; where each technical account credential
-- sits, which services (APIs) it is subscribed to; a console credential's first secret kept
-- sealed until it is shown once; where each product instance answers.
CREATE TABLE projects (
    project_id   TEXT PRIMARY KEY,
    org_id       TEXT NOT NULL REFERENCES organizations(org_id),
    name         TEXT NOT NULL,
    title        TEXT NOT NULL,
    description  TEXT NOT NULL,
    project_type TEXT NOT NULL,
    who_created  TEXT NOT NULL,
    created_at   BIGINT NOT NULL,
    UNIQUE (org_id, name)
);

CREATE TABLE workspaces (
    workspace_id TEXT PRIMARY KEY,
    project_id   TEXT NOT NULL REFERENCES projects(project_id),
    name         TEXT NOT NULL,
    title        TEXT NOT NULL,
    description  TEXT NOT NULL,
    created_at   BIGINT NOT NULL,
    UNIQUE (project_id, name)
);

CREATE TABLE workspace_credentials (
    client_id    TEXT PRIMARY KEY REFERENCES oauth_clients(client_id),
    workspace_id TEXT NOT NULL REFERENCES workspaces(workspace_id),
    description  TEXT NOT NULL
);
CREATE INDEX workspace_credentials_workspace ON workspace_credentials(workspace_id);

CREATE TABLE credential_services (
    client_id TEXT NOT NULL REFERENCES oauth_clients(client_id),
    sdk_code  TEXT NOT NULL,
    added_at  BIGINT NOT NULL,
    PRIMARY KEY (client_id, sdk_code)
);

ALTER TABLE client_secrets ADD COLUMN unshown TEXT;

ALTER TABLE product_instances ADD COLUMN url TEXT NOT NULL DEFAULT '';
