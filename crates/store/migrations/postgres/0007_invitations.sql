-- Invitations and self-service recovery: the one-time links people are mailed (the table of
-- administrators' reset links, now told apart by purpose), where a person goes once the
-- password is set, the product instances a person was told about (each once), and the first
-- time a person signed in to an application; and whether an organisation requires every person to
-- sign in with a one-time code (enrolled at their next sign-in or when they accept an invitation).
ALTER TABLE password_resets ADD COLUMN purpose TEXT NOT NULL DEFAULT 'reset';
ALTER TABLE password_resets ADD COLUMN return_to TEXT;
CREATE INDEX password_resets_user ON password_resets (user_id, purpose, created_at);

ALTER TABLE users ADD COLUMN first_sign_in_at BIGINT;

CREATE TABLE access_notices (
    user_id             TEXT NOT NULL,
    product_instance_id BIGINT NOT NULL,
    created_at          BIGINT NOT NULL,
    PRIMARY KEY (user_id, product_instance_id)
);

ALTER TABLE organizations ADD COLUMN require_totp BIGINT NOT NULL DEFAULT 0;
