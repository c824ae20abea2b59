-- Native sign-in failures per folded login (Logon and the console share them), with the same
-- growing lock-outs as the IMS's sign-in pages.
CREATE TABLE sign_in_failures (
    realm        TEXT NOT NULL,
    login_key    TEXT NOT NULL,
    failures     BIGINT NOT NULL,
    last_failure BIGINT NOT NULL,
    locked_until BIGINT NOT NULL,
    admitted     TEXT NOT NULL,
    PRIMARY KEY (realm, login_key)
);
