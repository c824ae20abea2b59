//! Developer Console projects and workspaces on both backends, and what the console adds to a
//! technical account credential: its workspace, its services, its secrets not shown yet.

use async_trait::async_trait;
use sqlx::any::AnyRow;
use sqlx::AnyConnection;

use ims_identity::developer::{Project, Workspace};
use ims_identity::error::StoreError;
use ims_identity::model::{AuditEvent, ClientSecretRecord, OAuthClient};
use ims_identity::store::{DeveloperStore, StoreResult};
use ims_identity::Now;

use crate::{audit_in, backend_error, get, insert_client, insert_secret, SqlStore};

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
        let mut tx = self.pool.begin().await.map_err(backend_error)?;
        sqlx::query(&format!(
            "INSERT INTO projects ({PROJECT_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)"
        ))
        .bind(&p.id)
        .bind(&p.org_id)
        .bind(&p.name)
        .bind(&p.title)
        .bind(&p.description)
        .bind(&p.project_type)
        .bind(&p.who_created)
        .bind(p.created_at.millis())
        .execute(&mut *tx)
        .await
        .map_err(backend_error)?;
        insert_workspace(&mut tx, w).await?;
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
        let mut tx = self.pool.begin().await.map_err(backend_error)?;
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

    async fn create_technical_account(
        &self,
        client: &OAuthClient,
        secret: &ClientSecretRecord,
        unshown: Option<&str>,
        placement: Option<(&str, &str)>,
        services: &[String],
        profiles: &[i64],
        audit: &AuditEvent,
    ) -> StoreResult<()> {
        let mut tx = self.pool.begin().await.map_err(backend_error)?;
        insert_client(&mut tx, client).await?;
        insert_secret(&mut *tx, secret).await?;
        if let Some(sealed) = unshown {
            sqlx::query("UPDATE client_secrets SET unshown = $1 WHERE secret_id = $2")
                .bind(sealed.to_owned())
                .bind(secret.secret_id.clone())
                .execute(&mut *tx)
                .await
                .map_err(backend_error)?;
        }
        if let Some((workspace_id, description)) = placement {
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
        for code in services {
            add_service(&mut tx, &client.client_id, code, client.created_at).await?;
        }
        for &group_id in profiles {
            set_profile(&mut tx, &client.client_id, group_id, true, client.created_at).await?;
        }
        audit_in(&mut *tx, audit).await?;
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

    async fn credential_placement(&self, client_id: &str) -> StoreResult<Option<(String, String, String)>> {
        let row = sqlx::query(
            "SELECT w.project_id, c.workspace_id, c.description FROM workspace_credentials c
             JOIN workspaces w ON w.workspace_id = c.workspace_id WHERE c.client_id = $1",
        )
        .bind(client_id)
        .fetch_optional(&self.pool)
        .await
        .map_err(backend_error)?;
        row.map(|r| {
            Ok((
                get(&r, "project_id")?,
                get(&r, "workspace_id")?,
                get(&r, "description")?,
            ))
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
        now: Now,
        audit: &[AuditEvent],
    ) -> StoreResult<()> {
        let mut tx = self.pool.begin().await.map_err(backend_error)?;
        for code in services {
            add_service(&mut tx, client_id, code, now).await?;
        }
        sqlx::query("UPDATE oauth_clients SET scopes = $1, updated_at = $2 WHERE client_id = $3")
            .bind(scopes.join(" "))
            .bind(now.millis())
            .bind(client_id.to_owned())
            .execute(&mut *tx)
            .await
            .map_err(backend_error)?;
        for &(group_id, held) in profiles {
            set_profile(&mut tx, client_id, group_id, held, now).await?;
        }
        for event in audit {
            audit_in(&mut *tx, event).await?;
        }
        tx.commit().await.map_err(backend_error)?;
        self.signal.changed_here();
        Ok(())
    }

    async fn take_unshown_secrets(&self, client_id: &str) -> StoreResult<Vec<(String, String)>> {
        let mut tx = self.pool.begin().await.map_err(backend_error)?;
        let rows = sqlx::query(
            "SELECT secret_id, unshown FROM client_secrets WHERE client_id = $1 AND unshown IS NOT NULL",
        )
        .bind(client_id.to_owned())
        .fetch_all(&mut *tx)
        .await
        .map_err(backend_error)?;
        let mut taken = Vec::with_capacity(rows.len());
        for row in &rows {
            let secret_id: String = get(row, "secret_id")?;
            // Conditional: of two concurrent readers, the second finds it gone and gets nothing.
            let won = sqlx::query(
                "UPDATE client_secrets SET unshown = NULL WHERE secret_id = $1 AND unshown IS NOT NULL",
            )
            .bind(secret_id.clone())
            .execute(&mut *tx)
            .await
            .map_err(backend_error)?
            .rows_affected()
                > 0;
            if won {
                taken.push((secret_id, get(row, "unshown")?));
            }
        }
        tx.commit().await.map_err(backend_error)?;
        Ok(taken)
    }

    async fn delete_project(&self, org_id: &str, project_id: &str, audit: &AuditEvent) -> StoreResult<bool> {
        let mut tx = self.pool.begin().await.map_err(backend_error)?;
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
        let mut tx = self.pool.begin().await.map_err(backend_error)?;
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
