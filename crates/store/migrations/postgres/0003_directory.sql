-- Who may use which product instance: product instances of a product context, product profiles
-- and user groups (one table: their names share one namespace per organisation), direct
-- memberships, user groups linked to profiles, and administrator roles.
CREATE TABLE product_instances (
    instance_id     BIGSERIAL PRIMARY KEY,
    org_id          TEXT NOT NULL REFERENCES organizations(org_id),
    product_context TEXT NOT NULL,
    name            TEXT NOT NULL,
    label           TEXT NOT NULL,
    created_at      BIGINT NOT NULL,
    UNIQUE (org_id, product_context, name)
);

CREATE TABLE directory_groups (
    group_id      BIGSERIAL PRIMARY KEY,
    org_id        TEXT NOT NULL REFERENCES organizations(org_id),
    name          TEXT NOT NULL,
    name_lower    TEXT NOT NULL,
    kind          TEXT NOT NULL,
    description   TEXT NOT NULL,
    instance_id   BIGINT REFERENCES product_instances(instance_id),
    license_quota BIGINT,
    -- Permission items, space-separated.
    permissions   TEXT NOT NULL,
    -- Direct members, kept with every membership change (quotas and listings read it).
    member_count  BIGINT NOT NULL DEFAULT 0,
    created_at    BIGINT NOT NULL,
    updated_at    BIGINT NOT NULL,
    UNIQUE (org_id, name_lower)
);

CREATE TABLE group_members (
    group_id BIGINT NOT NULL REFERENCES directory_groups(group_id) ON DELETE CASCADE,
    user_id  TEXT NOT NULL REFERENCES users(user_id),
    added_at BIGINT NOT NULL,
    PRIMARY KEY (group_id, user_id)
);
CREATE INDEX group_members_user ON group_members(user_id);

CREATE TABLE group_links (
    user_group_id BIGINT NOT NULL REFERENCES directory_groups(group_id) ON DELETE CASCADE,
    profile_id    BIGINT NOT NULL REFERENCES directory_groups(group_id) ON DELETE CASCADE,
    PRIMARY KEY (user_group_id, profile_id)
);
CREATE INDEX group_links_profile ON group_links(profile_id);

-- Technical accounts hold product profiles through their credential (the client).
CREATE TABLE profile_credentials (
    group_id  BIGINT NOT NULL REFERENCES directory_groups(group_id) ON DELETE CASCADE,
    client_id TEXT NOT NULL REFERENCES oauth_clients(client_id),
    added_at  BIGINT NOT NULL,
    PRIMARY KEY (group_id, client_id)
);
CREATE INDEX profile_credentials_client ON profile_credentials(client_id);

CREATE TABLE admin_roles (
    user_id    TEXT NOT NULL REFERENCES users(user_id),
    role       TEXT NOT NULL,
    -- Empty for organisation-wide roles; a product context or a group id otherwise.
    target     TEXT NOT NULL,
    granted_at BIGINT NOT NULL,
    PRIMARY KEY (user_id, role, target)
);
