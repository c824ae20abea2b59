-- Who may read or write a folder's content: operators directly, or through their groups.
CREATE TABLE folder_rights (
    folder_id    INTEGER NOT NULL REFERENCES folders(folder_id),
    grantee_type TEXT NOT NULL,
    grantee_id   INTEGER NOT NULL,
    can_read     INTEGER NOT NULL,
    can_write    INTEGER NOT NULL,
    PRIMARY KEY (folder_id, grantee_type, grantee_id)
);
