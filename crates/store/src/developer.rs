//! Developer Console projects and workspaces on both backends, and what the console adds to a
//! technical account credential: its workspace, its services, its secrets not shown yet.

use async_trait::async_trait;
use sqlx::any::AnyRow;
use sqlx::AnyConnection;

use ims_core::audit::AuditEvent;
use ims_core::error::StoreError;
use ims_core::Now;
use ims_identity::developer::{Placement, Project, Workspace};
use ims_identity::store::{DeveloperStore, NewTechnicalAccount, StoreResult};

use crate::{
    audit_in, backend_error, begin_write, get, insert_client, insert_secret, lock_client, words, SqlStore,
};

fn project_from(row: &AnyRow) -> StoreResult<Project> {
    Ok(Project {
        id: get(row, "project_id")?,
        org_id: get(row, "org_id")?,
        name: get(row, "name")?,
        title: get(row, "title")?,
        description: get(row, "description")?,
        project_type: get(row, "project_type")?,
        who_created: get(row, "who_created")?,
        created_at: Now::from_millis(get(row, "created_at")?),
    })
}

fn workspace_from(row: &AnyRow) -> StoreResult<Workspace> {
    Ok(Workspace {
        id: get(row, "workspace_id")?,
        project_id: get(row, "project_id")?,
        name: get(row, "name")?,
        title: get(row, "title")?,
        description: get(row, "description")?,
        created_at: Now::from_millis(get(row, "created_at")?),
    })
}

const PROJECT_COLUMNS: &str =
    "project_id, org_id, name, title, description, project_type, who_created, created_at";
const WORKSPACE_COLUMNS: &str = "workspace_id, project_id, name, title, description, created_at";

async fn insert_workspace(tx: &mut AnyConnection, w: &Workspace) -> StoreResult<()> {
    sqlx::query(&format!(
        "INSERT INTO workspaces ({WORKSPACE_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6)"
    ))
    .bind(w.id.clone())
    .bind(w.project_id.clone())
    .bind(w.name.clone())
    .bind(w.title.clone())
    .bind(w.description.clone())
    .bind(w.created_at.millis())
    .execute(&mut *tx)
    .await
    .map_err(backend_error)?;
    Ok(())
}

async fn insert_project(tx: &mut AnyConnection, p: &Project, w: &Workspace) -> StoreResult<()> {
    sqlx::query(&format!(
        "INSERT INTO projects ({PROJECT_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)"
    ))
    .bind(p.id.clone())
    .bind(p.org_id.clone())
    .bind(p.name.clone())
    .bind(p.title.clone())
    .bind(p.description.clone())
    .bind(p.project_type.clone())
    .bind(p.who_created.clone())
    .bind(p.created_at.millis())
    .execute(&mut *tx)
    .await
    .map_err(backend_error)?;
    insert_workspace(tx, w).await
}

async fn add_service(tx: &mut AnyConnection, client_id: &str, code: &str, now: Now) -> StoreResult<()> {
    sqlx::query(
        "INSERT INTO credential_services (client_id, sdk_code, added_at) VALUES ($1, $2, $3)
         ON CONFLICT (client_id, sdk_code) DO NOTHING",
    )
    .bind(client_id.to_owned())
    .bind(code.to_owned())
    .bind(now.millis())
    .execute(&mut *tx)
    .await
    .map_err(backend_error)?;
    Ok(())
}

/// Gives (`held`) or takes a product profile to a credential inside `tx`.
pub(crate) async fn set_profile(
    tx: &mut AnyConnection,
    client_id: &str,
    group_id: i64,
    held: bool,
    now: Now,
) -> StoreResult<()> {
    let q = if held {
        sqlx::query(
            "INSERT INTO profile_credentials (group_id, client_id, added_at) VALUES ($1, $2, $3)
             ON CONFLICT (group_id, client_id) DO NOTHING",
        )
        .bind(group_id)
        .bind(client_id.to_owned())
        .bind(now.millis())
    } else {
        sqlx::query("DELETE FROM profile_credentials WHERE group_id = $1 AND client_id = $2")
            .bind(group_id)
            .bind(client_id.to_owned())
    };
    q.execute(&mut *tx).await.map_err(backend_error)?;
    Ok(())
}

#[async_trait]
impl DeveloperStore for SqlStore {
    async fn create_project(&self, p: &Project, w: &Workspace, audit: &AuditEvent) -> StoreResult<()> {
        let mut tx = begin_write(&self.pool, &self.writer).await?;
        insert_project(&mut tx, p, w).await?;
        audit_in(&mut *tx, audit).await?;
        tx.commit().await.map_err(backend_error)
    }

    async fn projects(&self, org_id: &str) -> StoreResult<Vec<Project>> {
        let rows = sqlx::query(&format!(
            "SELECT {PROJECT_COLUMNS} FROM projects WHERE org_id = $1 ORDER BY created_at, project_id"
        ))
        .bind(org_id)
        .fetch_all(&self.pool)
        .await
        .map_err(backend_error)?;
        rows.iter().map(project_from).collect()
    }

    async fn project(&self, org_id: &str, project_id: &str) -> StoreResult<Option<Project>> {
        let row = sqlx::query(&format!(
            "SELECT {PROJECT_COLUMNS} FROM projects WHERE org_id = $1 AND project_id = $2"
        ))
        .bind(org_id)
        .bind(project_id)
        .fetch_optional(&self.pool)
        .await
        .map_err(backend_error)?;
        row.as_ref().map(project_from).transpose()
    }

    async fn create_workspace(&self, w: &Workspace, audit: &AuditEvent) -> StoreResult<()> {
        let mut tx = begin_write(&self.pool, &self.writer).await?;
        insert_workspace(&mut tx, w).await?;
        audit_in(&mut *tx, audit).await?;
        tx.commit().await.map_err(backend_error)
    }

    async fn workspaces(&self, project_id: &str) -> StoreResult<Vec<Workspace>> {
        let rows = sqlx::query(&format!(
            "SELECT {WORKSPACE_COLUMNS} FROM workspaces WHERE project_id = $1 ORDER BY created_at, workspace_id"
        ))
        .bind(project_id)
        .fetch_all(&self.pool)
        .await
        .map_err(backend_error)?;
        rows.iter().map(workspace_from).collect()
    }

    async fn create_technical_account(&self, new: &NewTechnicalAccount<'_>) -> StoreResult<()> {
        let client = new.client;
        let mut tx = begin_write(&self.pool, &self.writer).await?;
        if let Some((project, workspace)) = new.new_project {
            insert_project(&mut tx, project, workspace).await?;
        }
        insert_client(&mut tx, client).await?;
        insert_secret(&mut *tx, new.secret, new.unshown).await?;
        if let Some((workspace_id, description)) = new.placement {
            sqlx::query(
                "INSERT INTO workspace_credentials (client_id, workspace_id, description) VALUES ($1, $2, $3)",
            )
            .bind(client.client_id.clone())
            .bind(workspace_id.to_owned())
            .bind(description.to_owned())
            .execute(&mut *tx)
            .await
            .map_err(backend_error)?;
        }
        for code in new.services {
            add_service(&mut tx, &client.client_id, code, client.created_at).await?;
        }
        for &group_id in new.profiles {
            set_profile(&mut tx, &client.client_id, group_id, true, client.created_at).await?;
        }
        for event in new.audit {
            audit_in(&mut *tx, event).await?;
        }
        tx.commit().await.map_err(backend_error)?;
        self.signal.changed_here();
        Ok(())
    }

    async fn workspace_credentials(&self, workspace_id: &str) -> StoreResult<Vec<String>> {
        let rows = sqlx::query(
            "SELECT w.client_id FROM workspace_credentials w JOIN oauth_clients c ON c.client_id = w.client_id
             WHERE w.workspace_id = $1 ORDER BY c.created_at, c.client_id",
        )
        .bind(workspace_id)
        .fetch_all(&self.pool)
        .await
        .map_err(backend_error)?;
        rows.iter().map(|r| get(r, "client_id")).collect()
    }

    async fn credential_placement(&self, client_id: &str) -> StoreResult<Option<Placement>> {
        let row = sqlx::query(
            "SELECT w.project_id, c.workspace_id, c.description FROM workspace_credentials c
             JOIN workspaces w ON w.workspace_id = c.workspace_id WHERE c.client_id = $1",
        )
        .bind(client_id)
        .fetch_optional(&self.pool)
        .await
        .map_err(backend_error)?;
        row.map(|r| {
            Ok(Placement {
                project_id: get(&r, "project_id")?,
                workspace_id: get(&r, "workspace_id")?,
                description: get(&r, "description")?,
            })
        })
        .transpose()
    }

    async fn credential_services(&self, client_id: &str) -> StoreResult<Vec<String>> {
        let rows = sqlx::query(
            "SELECT sdk_code FROM credential_services WHERE client_id = $1 ORDER BY added_at, sdk_code",
        )
        .bind(client_id)
        .fetch_all(&self.pool)
        .await
        .map_err(backend_error)?;
        rows.iter().map(|r| get(r, "sdk_code")).collect()
    }

    async fn subscribe(
        &self,
        client_id: &str,
        services: &[String],
        scopes: &[String],
        profiles: &[(i64, bool)],
        audit: &AuditEvent,
    ) -> StoreResult<()> {
        let now = audit.at;
        let mut tx = begin_write(&self.pool, &self.writer).await?;
        lock_client(&mut tx, self.backend, client_id).await?;
        let row = sqlx::query("SELECT scopes FROM oauth_clients WHERE client_id = $1")
            .bind(client_id.to_owned())
            .fetch_optional(&mut *tx)
            .await
            .map_err(backend_error)?
            .ok_or_else(|| StoreError::Conflict(format!("credential {client_id} is gone")))?;
        let mut merged = words(&get::<String>(&row, "scopes")?);
        for scope in scopes {
            if !merged.contains(scope) {
                merged.push(scope.clone());
            }
        }
        for code in services {
            add_service(&mut tx, client_id, code, now).await?;
        }
        sqlx::query("UPDATE oauth_clients SET scopes = $1, updated_at = $2 WHERE client_id = $3")
            .bind(merged.join(" "))
            .bind(now.millis())
            .bind(client_id.to_owned())
            .execute(&mut *tx)
            .await
            .map_err(backend_error)?;
        for &(group_id, held) in profiles {
            set_profile(&mut tx, client_id, group_id, held, now).await?;
        }
        audit_in(&mut *tx, audit).await?;
        tx.commit().await.map_err(backend_error)?;
        self.signal.changed_here();
        Ok(())
    }

    async fn unshown_secrets(&self, client_id: &str) -> StoreResult<Vec<String>> {
        let rows =
            sqlx::query("SELECT secret_id FROM client_secrets WHERE client_id = $1 AND unshown IS NOT NULL")
                .bind(client_id)
                .fetch_all(&self.pool)
                .await
                .map_err(backend_error)?;
        rows.iter().map(|r| get(r, "secret_id")).collect()
    }

    async fn take_unshown_secrets(
        &self,
        client_id: &str,
        not_before: Now,
        audit: &AuditEvent,
    ) -> StoreResult<Vec<(String, String)>> {
        // Read first, outside the transaction; then each copy is cleared only if it is still
        // the one read, so of two concurrent readers one gets it.
        let rows = sqlx::query(
            "SELECT secret_id, unshown, created_at FROM client_secrets WHERE client_id = $1 AND unshown IS NOT NULL",
        )
        .bind(client_id.to_owned())
        .fetch_all(&self.pool)
        .await
        .map_err(backend_error)?;
        if rows.is_empty() {
            return Ok(Vec::new());
        }
        let mut tx = begin_write(&self.pool, &self.writer).await?;
        let mut taken = Vec::new();
        for row in &rows {
            let secret_id: String = get(row, "secret_id")?;
            let sealed: String = get(row, "unshown")?;
            let won =
                sqlx::query("UPDATE client_secrets SET unshown = NULL WHERE secret_id = $1 AND unshown = $2")
                    .bind(secret_id.clone())
                    .bind(sealed.clone())
                    .execute(&mut *tx)
                    .await
                    .map_err(backend_error)?
                    .rows_affected()
                    > 0;
            if won && get::<i64>(row, "created_at")? >= not_before.millis() {
                taken.push((secret_id, sealed));
            }
        }
        if !taken.is_empty() {
            let mut event = audit.clone();
            event.details["secret_ids"] = taken.iter().map(|(id, _)| id.clone()).collect();
            audit_in(&mut *tx, &event).await?;
        }
        tx.commit().await.map_err(backend_error)?;
        Ok(taken)
    }

    async fn remove_secret_keeping_one(
        &self,
        client_id: &str,
        secret_id: &str,
        now: Now,
        audit: &AuditEvent,
    ) -> StoreResult<bool> {
        self.delete_secret(client_id, secret_id, Some(now), audit).await
    }

    async fn update_project(&self, p: &Project, audit: &AuditEvent) -> StoreResult<bool> {
        let mut tx = begin_write(&self.pool, &self.writer).await?;
        let changed = sqlx::query(
            "UPDATE projects SET name = $1, title = $2, description = $3 WHERE org_id = $4 AND project_id = $5",
        )
        .bind(p.name.clone())
        .bind(p.title.clone())
        .bind(p.description.clone())
        .bind(p.org_id.clone())
        .bind(p.id.clone())
        .execute(&mut *tx)
        .await
        .map_err(backend_error)?
        .rows_affected();
        if changed == 0 {
            return Ok(false);
        }
        audit_in(&mut *tx, audit).await?;
        tx.commit().await.map_err(backend_error)?;
        Ok(true)
    }

    async fn delete_project(&self, org_id: &str, project_id: &str, audit: &AuditEvent) -> StoreResult<bool> {
        let mut tx = begin_write(&self.pool, &self.writer).await?;
        let held: i64 = sqlx::query(
            "SELECT COUNT(*) AS n FROM workspace_credentials c JOIN workspaces w ON w.workspace_id = c.workspace_id
             WHERE w.project_id = $1",
        )
        .bind(project_id.to_owned())
        .fetch_one(&mut *tx)
        .await
        .map_err(backend_error)
        .and_then(|r| get(&r, "n"))?;
        if held > 0 {
            return Err(StoreError::Conflict(format!(
                "the project holds {held} credential(s): delete them first"
            )));
        }
        let found = sqlx::query("SELECT project_id FROM projects WHERE org_id = $1 AND project_id = $2")
            .bind(org_id.to_owned())
            .bind(project_id.to_owned())
            .fetch_optional(&mut *tx)
            .await
            .map_err(backend_error)?
            .is_some();
        if !found {
            return Ok(false);
        }
        for statement in [
            "DELETE FROM workspaces WHERE project_id = $1",
            "DELETE FROM projects WHERE project_id = $1",
        ] {
            sqlx::query(statement)
                .bind(project_id.to_owned())
                .execute(&mut *tx)
                .await
                .map_err(backend_error)?;
        }
        audit_in(&mut *tx, audit).await?;
        tx.commit().await.map_err(backend_error)?;
        Ok(true)
    }

    async fn delete_client(&self, client_id: &str, audit: &AuditEvent) -> StoreResult<bool> {
        let mut tx = begin_write(&self.pool, &self.writer).await?;
        for table in [
            "client_secrets",
            "credential_services",
            "profile_credentials",
            "workspace_credentials",
            "client_redirect_uris",
        ] {
            sqlx::query(&format!("DELETE FROM {table} WHERE client_id = $1"))
                .bind(client_id.to_owned())
                .execute(&mut *tx)
                .await
                .map_err(backend_error)?;
        }
        let done = sqlx::query("DELETE FROM oauth_clients WHERE client_id = $1")
            .bind(client_id.to_owned())
            .execute(&mut *tx)
            .await
            .map_err(backend_error)?
            .rows_affected()
            > 0;
        if done {
            audit_in(&mut *tx, audit).await?;
        }
        tx.commit().await.map_err(backend_error)?;
        self.signal.changed_here();
        Ok(done)
    }
}
