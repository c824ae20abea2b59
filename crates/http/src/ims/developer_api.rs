//! The Developer Console API at `/console`, shaped as `@adobe/aio-lib-console` expects
//! (the wire notes are in the README): bearer token plus `x-api-key`, organisations named in paths by their
//! numeric id, projects and workspaces, OAuth Server-to-Server credentials, their services and
//! license configs (product profiles), their secrets, the workspace download.

use axum::extract::{FromRequestParts, Path, Query, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post, put};
use axum::{Json, Router};
use http::request::Parts;
use http::StatusCode;
use serde::Deserialize;
use serde_json::{json, Value};

use ims_core::time::iso8601;
use ims_core::Error;
use ims_identity::developer::{Project, Service, ServiceRequest, Workspace};
use ims_identity::model::Organization;
use ims_identity::service::developer::{
    ConsoleCaller, CreatedCredential, Integration, LicenseConfig, ListedSecret, NewConsoleCredential,
};

use crate::error::console::ConsoleError;
use crate::error::no_store;
use crate::{AppState, Body, Meta};

const ORG: &str = "/console/organizations/{org}";

pub fn routes() -> Router<AppState> {
    let r = |tail: &str| format!("{ORG}{tail}");
    Router::new()
        .route("/console/organizations", get(organizations))
        .route(&r("/projects"), get(projects).post(create_project))
        .route(
            &r("/projects/{project}"),
            get(project).patch(edit_project).delete(delete_project),
        )
        .route(
            &r("/projects/{project}/workspaces"),
            get(workspaces).post(create_workspace),
        )
        .route(&r("/projects/{project}/workspaces/{workspace}"), get(workspace))
        .route(
            &r("/projects/{project}/workspaces/{workspace}/credentials"),
            get(credentials),
        )
        .route(
            &r("/projects/{project}/workspaces/{workspace}/credentials/oauth-server-to-server"),
            post(create_in_workspace),
        )
        .route(
            &r("/projects/{project}/workspaces/{workspace}/credentials/{kind}/{credential}/services"),
            put(subscribe_in_workspace),
        )
        .route(
            &r("/projects/{project}/workspaces/{workspace}/credentials/{credential}"),
            delete(delete_in_workspace),
        )
        .route(
            &r("/projects/{project}/workspaces/{workspace}/download"),
            get(download),
        )
        .route(
            &r("/credentials/oauth-server-to-server"),
            post(create_integration),
        )
        .route(
            &r("/credentials/oauth-server-to-server/{credential}/services"),
            put(subscribe),
        )
        .route(
            &r("/credentials/{credential}/secrets"),
            get(credential_secrets).post(add_secret),
        )
        .route(
            &r("/credentials/{credential}/secrets/{secret}"),
            delete(remove_secret),
        )
        .route(
            &r("/projects_workspaces/credentials/{credential}"),
            get(placement),
        )
        .route(&r("/services"), get(services))
        .route(&r("/integrations"), get(integrations))
        .route(
            &r("/integrations/{credential}"),
            get(integration).delete(delete_integration),
        )
        .route(&r("/integrations/{credential}/secrets"), get(integration_secrets))
}

type Answer = Result<Response, ConsoleError>;

fn ok(status: StatusCode, body: Value) -> Answer {
    let mut resp = (status, Json(body)).into_response();
    no_store(&mut resp);
    Ok(resp)
}

/// An authenticated caller: obtaining one is the only way into a handler.
pub struct Caller(ConsoleCaller, Meta);

impl FromRequestParts<AppState> for Caller {
    type Rejection = ConsoleError;

    async fn from_request_parts(parts: &mut Parts, app: &AppState) -> Result<Self, Self::Rejection> {
        let meta = Meta::from_request_parts(parts, app)
            .await
            .unwrap_or_else(|never| match never {});
        let (token, api_key) = crate::ims::oauth::bearer_and_api_key(parts)?;
        let caller = app
            .ims
            .developer()
            .console_caller(&token, api_key, meta.now)
            .await?;
        // One budget per client for the vendor's APIs (this one and the User Management API).
        app.ims
            .directory()
            .umapi_admit(caller.client_id(), meta.now)
            .await?
            .map_err(ConsoleError::Throttled)?;
        Ok(Caller(caller, meta))
    }
}

impl Caller {
    async fn org(&self, app: &AppState, named: &str) -> Result<Organization, ConsoleError> {
        Ok(app.ims.developer().console_org(&self.0, named).await?)
    }

    fn ctx(&self) -> ims_core::audit::Context {
        self.1.context(self.0.actor())
    }
}

fn json_body<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ConsoleError> {
    serde_json::from_slice(body)
        .map_err(|e| Error::invalid_request(format!("the request body is not the expected JSON: {e}")).into())
}

pub fn org_json(org: &Organization, caller: &ConsoleCaller) -> Value {
    json!({
        "id": org.numeric_id.to_string(),
        "code": org.org_id,
        "name": org.name,
        "description": org.name,
        "type": "entp",
        "roles": [if caller.system_admin() { "ADMIN" } else { "DEVELOPER" }],
    })
}

pub fn project_json(org: &Organization, p: &Project) -> Value {
    json!({
        "id": p.id,
        "name": p.name,
        "title": p.title,
        "description": p.description,
        "type": p.project_type,
        "org_id": org.numeric_id.to_string(),
        "who_created": p.who_created,
        "date_created": iso8601(p.created_at),
        "date_last_modified": iso8601(p.created_at),
        "deleted": false,
    })
}

fn workspace_json(w: &Workspace) -> Value {
    json!({
        "id": w.id,
        "name": w.name,
        "title": w.title,
        "description": w.description,
        "date_created": iso8601(w.created_at),
    })
}

fn license_config_json(c: &LicenseConfig) -> Value {
    json!({
        "id": c.profile.id.to_string(),
        "name": c.profile.name,
        "productId": c.instance.id.to_string(),
        "description": c.profile.description,
    })
}

/// The credential's service properties: per subscribed service, its scopes and the license
/// configs the credential holds.
fn service_properties(i: &Integration) -> Vec<Value> {
    i.services
        .iter()
        .map(|s| {
            let configs: Vec<Value> = i
                .profiles
                .iter()
                .filter(|c| Some(c.instance.product_context.as_str()) == s.product_context)
                .map(license_config_json)
                .collect();
            json!({
                "sdkCode": s.code,
                "name": s.name,
                "roles": null,
                "scopes": s.scopes,
                "licenseConfigs": if s.product_context.is_some() { json!(configs) } else { Value::Null },
            })
        })
        .collect()
}

pub fn integration_json(org: &Organization, i: &Integration) -> Value {
    let c = &i.client;
    json!({
        "id": c.client_id,
        "apikey": c.client_id,
        "orgId": org.org_id,
        "name": c.name,
        "description": i.placement.as_ref().map(|p| p.description.clone()).unwrap_or_default(),
        "type": "entp",
        "integration_type": "oauth_server_to_server",
        "technicalAccountId": c.technical_account_id,
        "technicalAccountEmail": c.technical_account_email,
        "disabled": c.disabled,
        "createdDate": iso8601(c.created_at),
        "sdkList": i.services.iter().map(|s| s.code).collect::<Vec<_>>(),
        "scopes": c.scopes,
        "serviceProperties": service_properties(i),
        "status": if c.disabled { "DISABLED" } else { "ENABLED" },
        "lastModified": iso8601(c.updated_at),
        "production": true,
        "projectId": i.placement.as_ref().map(|p| p.project_id.clone()),
        "workspaceId": i.placement.as_ref().map(|p| p.workspace_id.clone()),
    })
}

/// A secret in a listing: its value the one time it is shown; otherwise `null`, with its hint
/// (never a hint where a secret is expected, which a client would store as the secret).
pub fn secret_json(s: &ListedSecret) -> Value {
    json!({
        "uuid": s.record.secret_id,
        "client_secret": s.value.as_ref().map(|v| v.expose().to_owned()),
        "hint": s.record.hint,
        "created_at": iso8601(s.record.created_at),
        "expires_at": s.record.expires_at.map(iso8601),
    })
}

// ----- organisations, projects, workspaces ------------------------------------------------------

async fn organizations(State(app): State<AppState>, caller: Caller) -> Answer {
    let org = app.ims.tokens().organization(caller.0.org_id()).await?;
    ok(StatusCode::OK, json!([org_json(&org, &caller.0)]))
}

async fn projects(State(app): State<AppState>, caller: Caller, Path(org): Path<String>) -> Answer {
    let org = caller.org(&app, &org).await?;
    let list = app.ims.developer().console_projects(&org).await?;
    ok(
        StatusCode::OK,
        json!(list.iter().map(|p| project_json(&org, p)).collect::<Vec<_>>()),
    )
}

#[derive(Debug, Deserialize)]
struct NewProject {
    name: String,
    #[serde(default)]
    title: String,
    #[serde(default)]
    description: Option<String>,
    #[serde(default, rename = "type")]
    project_type: Option<String>,
}

async fn create_project(
    State(app): State<AppState>,
    caller: Caller,
    Path(org): Path<String>,
    Body(body, _): Body<ConsoleError>,
) -> Answer {
    let org = caller.org(&app, &org).await?;
    let req: NewProject = json_body(&body)?;
    let project = Project::new(
        &org.org_id,
        &req.name,
        &req.title,
        req.description.as_deref().unwrap_or_default(),
        req.project_type.as_deref().unwrap_or_default(),
        caller.0.actor(),
        caller.1.now,
    )?;
    let (project, workspace) = app.ims.developer().create_project(project, &caller.ctx()).await?;
    ok(
        StatusCode::CREATED,
        json!({"projectId": project.id, "workspaceId": workspace.id, "projectType": project.project_type}),
    )
}

async fn project(
    State(app): State<AppState>,
    caller: Caller,
    Path((org, project)): Path<(String, String)>,
) -> Answer {
    let org = caller.org(&app, &org).await?;
    let project = app.ims.developer().console_project(&org, &project).await?;
    ok(StatusCode::OK, project_json(&org, &project))
}

/// `editProject`: name and title together (the description too when given), or only
/// `notifications_enabled`, which this console keeps no setting for and so changes nothing.
#[derive(Debug, Deserialize)]
struct ProjectEdit {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    title: Option<String>,
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    notifications_enabled: Option<bool>,
}

async fn edit_project(
    State(app): State<AppState>,
    caller: Caller,
    Path((org, project)): Path<(String, String)>,
    Body(body, _): Body<ConsoleError>,
) -> Answer {
    let org = caller.org(&app, &org).await?;
    let edit: ProjectEdit = json_body(&body)?;
    let project =
        match (&edit.name, &edit.title) {
            (Some(name), Some(title)) => {
                app.ims
                    .developer()
                    .rename_project(
                        &org,
                        &project,
                        name,
                        title,
                        edit.description.as_deref(),
                        &caller.ctx(),
                    )
                    .await?
            }
            (None, None) if edit.notifications_enabled.is_some() && edit.description.is_none() => {
                app.ims.developer().console_project(&org, &project).await?
            }
            _ => return Err(Error::invalid_request(
                "send name and title together (and a description if it changes), or notifications_enabled",
            )
            .into()),
        };
    ok(StatusCode::OK, project_json(&org, &project))
}

async fn delete_project(
    State(app): State<AppState>,
    caller: Caller,
    Path((org, project)): Path<(String, String)>,
) -> Answer {
    let org = caller.org(&app, &org).await?;
    app.ims
        .developer()
        .delete_project(&org, &project, &caller.ctx())
        .await?;
    ok(StatusCode::OK, json!({"projectId": project}))
}

async fn workspaces(
    State(app): State<AppState>,
    caller: Caller,
    Path((org, project)): Path<(String, String)>,
) -> Answer {
    let org = caller.org(&app, &org).await?;
    let project = app.ims.developer().console_project(&org, &project).await?;
    let list = app.ims.developer().console_workspaces(&project).await?;
    ok(
        StatusCode::OK,
        json!(list.iter().map(workspace_json).collect::<Vec<_>>()),
    )
}

#[derive(Debug, Deserialize)]
struct NewWorkspace {
    name: String,
    #[serde(default)]
    title: String,
    #[serde(default)]
    description: Option<String>,
}

async fn create_workspace(
    State(app): State<AppState>,
    caller: Caller,
    Path((org, project)): Path<(String, String)>,
    Body(body, _): Body<ConsoleError>,
) -> Answer {
    let org = caller.org(&app, &org).await?;
    let req: NewWorkspace = json_body(&body)?;
    let w = app
        .ims
        .developer()
        .create_workspace(
            &org,
            &project,
            &req.name,
            &req.title,
            req.description.as_deref().unwrap_or_default(),
            &caller.ctx(),
        )
        .await?;
    ok(
        StatusCode::CREATED,
        json!({"projectId": w.project_id, "workspaceId": w.id}),
    )
}

async fn workspace(
    State(app): State<AppState>,
    caller: Caller,
    Path((org, project, workspace)): Path<(String, String, String)>,
) -> Answer {
    let org = caller.org(&app, &org).await?;
    let (_, w) = app
        .ims
        .developer()
        .console_workspace(&org, &project, &workspace)
        .await?;
    ok(StatusCode::OK, workspace_json(&w))
}

// ----- credentials ---------------------------------------------------------------------------

async fn credentials(
    State(app): State<AppState>,
    caller: Caller,
    Path((org, project, workspace)): Path<(String, String, String)>,
) -> Answer {
    let org = caller.org(&app, &org).await?;
    let (_, w) = app
        .ims
        .developer()
        .console_workspace(&org, &project, &workspace)
        .await?;
    let list = app.ims.developer().workspace_integrations(&org, &w).await?;
    ok(
        StatusCode::OK,
        json!(list
            .iter()
            .map(|i| json!({
                "id_workspace": w.id,
                "id_integration": i.client.client_id,
                "name": i.client.name,
                "flow_type": "entp",
                "integration_type": "oauth_server_to_server",
                "credential_type": "oauth_server_to_server",
            }))
            .collect::<Vec<_>>()),
    )
}

#[derive(Debug, Deserialize)]
struct NewCredential {
    name: String,
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    services: Option<Vec<ServiceRequest>>,
    /// Accepted and ignored: no templates here.
    #[serde(default, rename = "templateId")]
    #[allow(dead_code)]
    template_id: Option<String>,
}

async fn create_in_workspace(
    State(app): State<AppState>,
    caller: Caller,
    Path((org, project, workspace)): Path<(String, String, String)>,
    Body(body, _): Body<ConsoleError>,
) -> Answer {
    let org = caller.org(&app, &org).await?;
    let placement = app
        .ims
        .developer()
        .console_workspace(&org, &project, &workspace)
        .await?;
    let made = create_credential(&app, &caller, &org, Some(placement), &body).await?;
    let id = &made.integration.client.client_id;
    ok(
        StatusCode::OK,
        json!({"id": id, "apiKey": id, "orgId": org.org_id}),
    )
}

/// The organisation-level form: the credential comes with a project of its own.
async fn create_integration(
    State(app): State<AppState>,
    caller: Caller,
    Path(org): Path<String>,
    Body(body, _): Body<ConsoleError>,
) -> Answer {
    let org = caller.org(&app, &org).await?;
    let made = create_credential(&app, &caller, &org, None, &body).await?;
    let c = &made.integration.client;
    ok(
        StatusCode::CREATED,
        json!({
            "id": c.client_id,
            "apiKey": c.client_id,
            "orgId": org.org_id,
            "technicalAccountId": c.technical_account_id,
            "projectId": made.project.id,
            "workspaceId": made.workspace.id,
            "subscriptionResult": {"sdkList": made.subscribed, "errorList": []},
        }),
    )
}

async fn create_credential(
    app: &AppState,
    caller: &Caller,
    org: &Organization,
    placement: Option<(Project, Workspace)>,
    body: &[u8],
) -> Result<CreatedCredential, ConsoleError> {
    let req: NewCredential = json_body(body)?;
    Ok(app
        .ims
        .developer()
        .create_console_credential(
            &caller.0,
            org,
            NewConsoleCredential {
                placement,
                name: &req.name,
                description: req.description.as_deref().unwrap_or_default(),
                requests: req.services.as_deref().unwrap_or_default(),
            },
            &caller.ctx(),
        )
        .await?)
}

async fn subscribe_body(
    app: &AppState,
    caller: &Caller,
    org: &Organization,
    credential: &str,
    body: &[u8],
) -> Answer {
    let requests: Vec<ServiceRequest> = json_body(body)?;
    let list = app
        .ims
        .developer()
        .subscribe_credential(&caller.0, org, credential, &requests, &caller.ctx())
        .await?;
    ok(StatusCode::OK, json!({"sdkList": list}))
}

async fn subscribe_in_workspace(
    State(app): State<AppState>,
    caller: Caller,
    Path((org, project, workspace, kind, credential)): Path<(String, String, String, String, String)>,
    Body(body, _): Body<ConsoleError>,
) -> Answer {
    let org = caller.org(&app, &org).await?;
    if kind != "oauth_server_to_server" && kind != "oauth-server-to-server" {
        return Err(Error::invalid_request(format!(
            "credential type {:?} is not supported; OAuth Server-to-Server is",
            kind.chars().take(32).collect::<String>()
        ))
        .into());
    }
    in_workspace(&app, &org, &project, &workspace, &credential).await?;
    subscribe_body(&app, &caller, &org, &credential, &body).await
}

async fn subscribe(
    State(app): State<AppState>,
    caller: Caller,
    Path((org, credential)): Path<(String, String)>,
    Body(body, _): Body<ConsoleError>,
) -> Answer {
    let org = caller.org(&app, &org).await?;
    subscribe_body(&app, &caller, &org, &credential, &body).await
}

/// The credential, when it sits in that workspace of that project.
async fn in_workspace(
    app: &AppState,
    org: &Organization,
    project: &str,
    workspace: &str,
    credential: &str,
) -> Result<Integration, ConsoleError> {
    app.ims
        .developer()
        .console_workspace(org, project, workspace)
        .await?;
    let i = app.ims.developer().integration(org, credential).await?;
    match &i.placement {
        Some(p) if p.project_id == project && p.workspace_id == workspace => Ok(i),
        _ => Err(Error::not_found(format!("no credential {credential:?} in this workspace")).into()),
    }
}

async fn delete_in_workspace(
    State(app): State<AppState>,
    caller: Caller,
    Path((org, project, workspace, credential)): Path<(String, String, String, String)>,
) -> Answer {
    let org = caller.org(&app, &org).await?;
    in_workspace(&app, &org, &project, &workspace, &credential).await?;
    app.ims
        .developer()
        .delete_console_credential(&caller.0, &org, &credential, &caller.ctx())
        .await?;
    ok(
        StatusCode::OK,
        json!({"projectId": project, "workspaceId": workspace}),
    )
}

async fn delete_integration(
    State(app): State<AppState>,
    caller: Caller,
    Path((org, credential)): Path<(String, String)>,
) -> Answer {
    let org = caller.org(&app, &org).await?;
    app.ims
        .developer()
        .delete_console_credential(&caller.0, &org, &credential, &caller.ctx())
        .await?;
    let mut resp = StatusCode::NO_CONTENT.into_response();
    no_store(&mut resp);
    Ok(resp)
}

async fn placement(
    State(app): State<AppState>,
    caller: Caller,
    Path((org, credential)): Path<(String, String)>,
) -> Answer {
    let org = caller.org(&app, &org).await?;
    let i = app.ims.developer().integration(&org, &credential).await?;
    let Some(p) = i.placement else {
        return Err(Error::not_found("this credential sits in no project").into());
    };
    ok(
        StatusCode::OK,
        json!([{"projectId": p.project_id, "workspaceId": p.workspace_id, "credentialId": credential}]),
    )
}

#[derive(Debug, Deserialize)]
struct PageQuery {
    page: Option<usize>,
    size: Option<usize>,
}

/// Most integrations in one page, as the vendor's API allows.
const MAX_PAGE: usize = 50;

async fn integrations(
    State(app): State<AppState>,
    caller: Caller,
    Path(org): Path<String>,
    Query(q): Query<PageQuery>,
) -> Answer {
    let org = caller.org(&app, &org).await?;
    let all = app.ims.developer().integrations(&org).await?;
    let size = q.size.unwrap_or(MAX_PAGE).clamp(1, MAX_PAGE);
    let page = q.page.unwrap_or(0);
    let shown: Vec<_> = all
        .iter()
        .skip(page.saturating_mul(size))
        .take(size)
        .cloned()
        .collect();
    let content: Vec<Value> = app
        .ims
        .developer()
        .describe_integrations(&org, shown)
        .await?
        .iter()
        .map(|i| integration_json(&org, i))
        .collect();
    ok(
        StatusCode::OK,
        json!({"content": content, "page": page, "size": size, "total": all.len(), "pages": all.len().div_ceil(size)}),
    )
}

async fn integration(
    State(app): State<AppState>,
    caller: Caller,
    Path((org, credential)): Path<(String, String)>,
) -> Answer {
    let org = caller.org(&app, &org).await?;
    let i = app.ims.developer().integration(&org, &credential).await?;
    ok(StatusCode::OK, integration_json(&org, &i))
}

async fn services(State(app): State<AppState>, caller: Caller, Path(org): Path<String>) -> Answer {
    let org = caller.org(&app, &org).await?;
    let mut out = Vec::new();
    for s in Service::ALL {
        let configs = app.ims.developer().license_configs(&org, s).await?;
        out.push(json!({
            "name": s.name,
            "code": s.code,
            "description": s.description,
            "enabled": true,
            "type": "entp",
            "properties": s.product_context.map(|_| json!({"licenseConfigs": configs.iter().map(license_config_json).collect::<Vec<_>>()})),
            "requiresApproval": false,
            "requiresSystemAdministrator": s.system_admin_only,
        }));
    }
    ok(StatusCode::OK, json!(out))
}

// ----- secrets and the workspace download ----------------------------------------------------------

/// `integrations/{id}/secrets`: a first secret not shown yet is shown, once.
async fn integration_secrets(
    State(app): State<AppState>,
    caller: Caller,
    Path((org, credential)): Path<(String, String)>,
) -> Answer {
    list_secrets(&app, &caller, &org, &credential, true).await
}

/// `credentials/{id}/secrets`: the secrets' ids and times (the vendor's listing has no values),
/// so a rotation script can list them without using up a first secret.
async fn credential_secrets(
    State(app): State<AppState>,
    caller: Caller,
    Path((org, credential)): Path<(String, String)>,
) -> Answer {
    list_secrets(&app, &caller, &org, &credential, false).await
}

async fn list_secrets(app: &AppState, caller: &Caller, org: &str, credential: &str, show: bool) -> Answer {
    let org = caller.org(app, org).await?;
    let (integration, listed) = app
        .ims
        .developer()
        .credential_secrets(&caller.0, &org, credential, show, &caller.ctx())
        .await?;
    ok(
        StatusCode::OK,
        json!({
            "client_id": integration.client.client_id,
            "client_secrets": listed.iter().map(secret_json).collect::<Vec<_>>(),
        }),
    )
}

async fn add_secret(
    State(app): State<AppState>,
    caller: Caller,
    Path((org, credential)): Path<(String, String)>,
) -> Answer {
    let org = caller.org(&app, &org).await?;
    let added = app
        .ims
        .developer()
        .add_credential_secret(&caller.0, &org, &credential, &caller.ctx())
        .await?;
    // The vendor's answer also names the expiry as `expires_at_str`.
    let mut body = secret_json(&ListedSecret {
        value: Some(added.secret),
        record: added.record,
    });
    body["expires_at_str"] = body["expires_at"].clone();
    ok(StatusCode::OK, body)
}

async fn remove_secret(
    State(app): State<AppState>,
    caller: Caller,
    Path((org, credential, secret)): Path<(String, String, String)>,
) -> Answer {
    let org = caller.org(&app, &org).await?;
    app.ims
        .developer()
        .remove_credential_secret(&caller.0, &org, &credential, &secret, &caller.ctx())
        .await?;
    ok(StatusCode::OK, json!({}))
}

async fn download(
    State(app): State<AppState>,
    caller: Caller,
    Path((org, project, workspace)): Path<(String, String, String)>,
) -> Answer {
    let org = caller.org(&app, &org).await?;
    let (project, workspace) = app
        .ims
        .developer()
        .console_workspace(&org, &project, &workspace)
        .await?;
    let mut credentials = Vec::new();
    let mut services: Vec<Service> = Vec::new();
    for (i, listed) in app
        .ims
        .developer()
        .workspace_download(&caller.0, &org, &workspace, &caller.ctx())
        .await?
    {
        for s in &i.services {
            if !services.contains(s) {
                services.push(*s);
            }
        }
        let c = &i.client;
        credentials.push(json!({
            "id": c.client_id,
            "name": c.name,
            "integration_type": "oauth_server_to_server",
            "oauth_server_to_server": {
                "client_id": c.client_id,
                // Only a secret shown now: the others are not ours to give again.
                "client_secrets": listed.iter().filter_map(|s| s.value.as_ref().map(|v| v.expose().to_owned())).collect::<Vec<_>>(),
                "technical_account_email": c.technical_account_email,
                "technical_account_id": c.technical_account_id,
                "scopes": c.scopes,
            },
        }));
    }
    ok(
        StatusCode::OK,
        json!({"project": {
            "id": project.id,
            "name": project.name,
            "title": project.title,
            "org": {"id": org.numeric_id.to_string(), "name": org.name, "ims_org_id": org.org_id},
            "workspace": {
                "id": workspace.id,
                "name": workspace.name,
                "title": workspace.title,
                "details": {
                    "credentials": credentials,
                    "services": services.iter().map(|s| json!({"code": s.code, "name": s.name})).collect::<Vec<_>>(),
                },
            },
        }}),
    )
}
