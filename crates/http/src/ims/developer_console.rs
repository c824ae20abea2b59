//! The Developer Console's pages at `/admin/developer`: projects, adding an API with an OAuth
//! Server-to-Server credential and product profiles, the credential's details (its first secret
//! shown once, with copy buttons and ready-to-run curl commands), a test access token, secret
//! rotation and deletion. Signed in like the Admin Console (same cookie); open to developers and
//! system administrators. The same domain calls as the `/console` API, so both write the same
//! audit lines.

use askama::Template;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use http::StatusCode;

use ims_core::Error;
use ims_identity::developer::{LicenseConfigOp, Project, Service, ServiceRequest, CAMPAIGN_SERVICE};
use ims_identity::directory::AdminRole;
use ims_identity::model::Organization;
use ims_identity::service::developer::{ConsoleCaller, Integration, ListedSecret, NewConsoleCredential};

use crate::ims::admin_console::{error_page, Developer, Shell};
use crate::pages::{self, render, see_other};
use crate::{AppState, Meta};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/admin/developer", get(home).post(create_project))
        .route("/admin/developer/projects/{project}", get(project).post(add_api))
        .route("/admin/developer/projects/{project}/rename", post(rename_project))
        .route(
            "/admin/developer/credentials/{credential}",
            get(credential).post(credential_change),
        )
        .layer(axum::middleware::map_response(|r: Response| async move {
            // The copy buttons are our one script, served from our origin.
            pages::harden(r, "form-action 'self'; script-src 'self'; ")
        }))
}

/// The copy buttons: each copies the text of the element its `data-copy` names.
pub(crate) async fn copy_script() -> Response {
    (
        [
            (http::header::CONTENT_TYPE, "text/javascript;charset=utf-8"),
            (http::header::CACHE_CONTROL, "max-age=3600"),
        ],
        include_str!("../../static/copy.js"),
    )
        .into_response()
}

fn caller(dev: &Developer) -> Result<ConsoleCaller, Error> {
    ConsoleCaller::from_administrator(&dev.signed().admin)
}

async fn org(app: &AppState, dev: &Developer) -> Result<Organization, Error> {
    app.ims.tokens().organization(dev.signed().admin.org_id()).await
}

/// The value, or (from the handler) the error page for the failure.
macro_rules! or_page {
    ($result:expr, $dev:expr) => {
        match $result {
            Ok(v) => v,
            Err(e) => return error_page(Some($dev.signed().shell()), &e),
        }
    };
}

// ----- projects ------------------------------------------------------------------------------

struct ProjectRow {
    id: String,
    name: String,
    title: String,
    created: String,
}

#[derive(Template)]
#[template(path = "admin/developer_home.html")]
struct HomePage {
    shell: Shell,
    projects: Vec<ProjectRow>,
}

async fn home(State(app): State<AppState>, dev: Developer) -> Response {
    let org = or_page!(org(&app, &dev).await, dev);
    let projects = or_page!(app.ims.developer().console_projects(&org).await, dev);
    render(
        StatusCode::OK,
        &HomePage {
            shell: dev.signed().shell(),
            projects: projects
                .into_iter()
                .map(|p| ProjectRow {
                    created: ims_core::time::iso8601(p.created_at),
                    id: p.id,
                    name: p.name,
                    title: p.title,
                })
                .collect(),
        },
    )
}

async fn create_project(
    State(app): State<AppState>,
    meta: Meta,
    dev: Developer,
    body: bytes::Bytes,
) -> Response {
    let form = or_page!(dev.signed().form(&body), dev);
    let org = or_page!(org(&app, &dev).await, dev);
    let who = or_page!(caller(&dev), dev);
    let project = or_page!(
        Project::new(
            &org.org_id,
            form.text("name").trim(),
            &form.text("title"),
            &form.text("description"),
            "default",
            who.actor(),
            meta.now,
        ),
        dev
    );
    let (project, _) = or_page!(
        app.ims
            .developer()
            .create_project(project, &dev.signed().context(&meta))
            .await,
        dev
    );
    see_other(&format!("/admin/developer/projects/{}", project.id), vec![])
}

struct CredentialRow {
    id: String,
    name: String,
    services: String,
}

struct ServiceChoice {
    code: &'static str,
    name: &'static str,
    description: &'static str,
    allowed: bool,
}

/// Every service, and whether this caller may add it.
fn service_choices(system_admin: bool) -> Vec<ServiceChoice> {
    Service::ALL
        .iter()
        .map(|s| ServiceChoice {
            code: s.code,
            name: s.name,
            description: s.description,
            allowed: system_admin || !s.system_admin_only,
        })
        .collect()
}

struct ProfileChoice {
    id: String,
    name: String,
    instance: String,
}

#[derive(Template)]
#[template(path = "admin/developer_project.html")]
struct ProjectPage {
    shell: Shell,
    project: Project,
    workspace: String,
    credentials: Vec<CredentialRow>,
    services: Vec<ServiceChoice>,
    profiles: Vec<ProfileChoice>,
}

async fn project(State(app): State<AppState>, dev: Developer, Path(id): Path<String>) -> Response {
    let org = or_page!(org(&app, &dev).await, dev);
    let project = or_page!(app.ims.developer().console_project(&org, &id).await, dev);
    let workspaces = or_page!(app.ims.developer().console_workspaces(&project).await, dev);
    let mut credentials = Vec::new();
    for w in &workspaces {
        for i in or_page!(app.ims.developer().workspace_integrations(&org, w).await, dev) {
            credentials.push(CredentialRow {
                services: i.services.iter().map(|s| s.name).collect::<Vec<_>>().join(", "),
                id: i.client.client_id,
                name: i.client.name,
            });
        }
    }
    let system = dev.signed().admin.holds(AdminRole::SystemAdmin);
    let campaign = Service::by_code(CAMPAIGN_SERVICE).ok_or(Error::internal("no Campaign service"));
    let campaign = or_page!(campaign, dev);
    let configs = or_page!(app.ims.developer().license_configs(&org, campaign).await, dev);
    render(
        StatusCode::OK,
        &ProjectPage {
            shell: dev.signed().shell(),
            workspace: workspaces.first().map(|w| w.name.clone()).unwrap_or_default(),
            credentials,
            services: service_choices(system),
            profiles: configs
                .into_iter()
                .map(|c| ProfileChoice {
                    id: c.profile.id.to_string(),
                    name: c.profile.name,
                    instance: c.instance.name,
                })
                .collect(),
            project,
        },
    )
}

/// The services and profiles a form asks for, as the API's subscription request. Profiles are
/// the Campaign API's license configs: ticking one asks for that API too.
fn requests_of(form: &pages::FormData) -> Vec<ServiceRequest> {
    let profiles: Vec<LicenseConfigOp> = form
        .all("profile")
        .into_iter()
        .map(|id| LicenseConfigOp {
            id,
            product_id: None,
            op: Some("add".into()),
            selected: None,
        })
        .collect();
    let mut codes = form.all("service");
    if !profiles.is_empty() && !codes.iter().any(|c| c == CAMPAIGN_SERVICE) {
        codes.push(CAMPAIGN_SERVICE.to_owned());
    }
    codes
        .into_iter()
        .map(|code| {
            let campaign = code == CAMPAIGN_SERVICE;
            ServiceRequest {
                sdk_code: code,
                license_configs: campaign.then(|| profiles.clone()),
            }
        })
        .collect()
}

async fn add_api(
    State(app): State<AppState>,
    meta: Meta,
    dev: Developer,
    Path(id): Path<String>,
    body: bytes::Bytes,
) -> Response {
    let form = or_page!(dev.signed().form(&body), dev);
    let org = or_page!(org(&app, &dev).await, dev);
    if form.text("authentication") != "oauth-server-to-server" {
        return error_page(
            Some(dev.signed().shell()),
            &Error::invalid_request("choose OAuth Server-to-Server: it is the one credential type offered"),
        );
    }
    let requests = requests_of(&form);
    if requests.is_empty() {
        return error_page(
            Some(dev.signed().shell()),
            &Error::invalid_request("choose an API to add"),
        );
    }
    let project = or_page!(app.ims.developer().console_project(&org, &id).await, dev);
    let workspaces = or_page!(app.ims.developer().console_workspaces(&project).await, dev);
    let Some(workspace) = workspaces.into_iter().next() else {
        return error_page(
            Some(dev.signed().shell()),
            &Error::not_found("the project has no workspace"),
        );
    };
    let name = form.text("name");
    let name = if name.trim().is_empty() {
        project.title.clone()
    } else {
        name
    };
    let made = or_page!(
        app.ims
            .developer()
            .create_console_credential(
                &or_page!(caller(&dev), dev),
                &org,
                NewConsoleCredential {
                    placement: Some((project, workspace)),
                    name: &name,
                    description: &form.text("description"),
                    requests: &requests,
                },
                &dev.signed().context(&meta),
            )
            .await,
        dev
    );
    see_other(
        &format!(
            "/admin/developer/credentials/{}",
            made.integration.client.client_id
        ),
        vec![],
    )
}

/// The project's name, title and description changed; back to its page.
async fn rename_project(
    State(app): State<AppState>,
    meta: Meta,
    dev: Developer,
    Path(id): Path<String>,
    body: bytes::Bytes,
) -> Response {
    let form = or_page!(dev.signed().form(&body), dev);
    let org = or_page!(org(&app, &dev).await, dev);
    let renamed = or_page!(
        app.ims
            .developer()
            .rename_project(
                &org,
                &id,
                form.text("name").trim(),
                &form.text("title"),
                Some(&form.text("description")),
                &dev.signed().context(&meta),
            )
            .await,
        dev
    );
    see_other(&format!("/admin/developer/projects/{}", renamed.id), vec![])
}

// ----- a credential ----------------------------------------------------------------------------

struct SecretRow {
    uuid: String,
    /// In full: only the one time it is shown.
    value: Option<String>,
    hint: String,
    created: String,
}

#[derive(Template)]
#[template(path = "admin/developer_credential.html")]
struct CredentialPage {
    shell: Shell,
    id: String,
    name: String,
    project: Option<String>,
    technical_account_id: String,
    technical_account_email: String,
    org_id: String,
    scopes: String,
    services: Vec<String>,
    profiles: Vec<String>,
    secrets: Vec<SecretRow>,
    token_curl: String,
    test_token: Option<String>,
    /// Per instance (its name, empty for the placeholder address), the command.
    soap_curls: Vec<(String, String)>,
    subscribable: Vec<ServiceChoice>,
    profile_choices: Vec<ProfileChoice>,
    /// A first secret waits to be shown.
    unshown: bool,
}

const SOAP_SAMPLE: &str = "<soapenv:Envelope xmlns:soapenv=\"http://schemas.xmlsoap.org/soap/envelope/\" xmlns:urn=\"urn:xtk:session\"><soapenv:Header/><soapenv:Body><urn:GetUserInfo><urn:sessiontoken/></urn:GetUserInfo></soapenv:Body></soapenv:Envelope>";

/// Quotes a value for a POSIX shell.
fn sh(value: &str) -> String {
    format!("'{}'", value.replace('\'', "'\\''"))
}

/// What a credential's page shows besides the credential: its secrets, a test token just made,
/// a notice.
struct Shown {
    listed: Vec<ListedSecret>,
    test_token: Option<String>,
    notice: Option<String>,
}

async fn credential_page(
    app: &AppState,
    dev: &Developer,
    org: &Organization,
    i: Integration,
    shown: Shown,
) -> Response {
    let Shown {
        listed,
        test_token,
        notice,
    } = shown;
    let issuer = &app.ims.settings().issuer;
    let shown = listed
        .iter()
        .find_map(|s| s.value.as_ref().map(|v| v.expose().to_owned()));
    let scope = i.client.scopes.join(",");
    let token_curl = format!(
        "curl -sS -X POST {} -d grant_type=client_credentials -d client_id={} -d client_secret={} -d scope={}",
        sh(&format!("{issuer}/ims/token/v3")),
        sh(&i.client.client_id),
        shown.as_deref().map_or_else(|| "\"$CLIENT_SECRET\"".to_owned(), sh),
        sh(&scope),
    );
    let authorization = test_token.as_deref().map_or_else(
        || "\"Authorization: Bearer $ACCESS_TOKEN\"".to_owned(),
        |t| sh(&format!("Authorization: Bearer {t}")),
    );
    let soap_curl = |router: &str| {
        format!(
            "curl -sS -X POST {router} -H {authorization} -H 'Content-Type: text/xml; charset=utf-8' -H 'SOAPAction: xtk:session#GetUserInfo' --data {}",
            sh(SOAP_SAMPLE),
        )
    };
    let system = dev.signed().admin.holds(AdminRole::SystemAdmin);
    let configs = match Service::by_code(CAMPAIGN_SERVICE) {
        Some(c) => or_page!(app.ims.developer().license_configs(org, c).await, dev),
        None => Vec::new(),
    };
    let unshown = or_page!(
        app.ims.developer().has_unshown_secret(&i.client.client_id).await,
        dev
    );
    // The instances its profiles grant, else every Campaign instance; addresses as they said.
    let granted = if i.profiles.is_empty() {
        &configs
    } else {
        &i.profiles
    };
    let mut instances: Vec<(String, String)> = Vec::new();
    for c in granted {
        let known = instances.iter().any(|(name, _)| *name == c.instance.name);
        if !known && !c.instance.url.is_empty() {
            instances.push((c.instance.name.clone(), c.instance.url.clone()));
        }
    }
    let soap_curls: Vec<(String, String)> = if instances.is_empty() {
        vec![(
            String::new(),
            soap_curl("\"$INSTANCE_URL/nl/jsp/soaprouter.jsp\""),
        )]
    } else {
        instances
            .into_iter()
            .map(|(name, url)| (name, soap_curl(&sh(&format!("{url}/nl/jsp/soaprouter.jsp")))))
            .collect()
    };
    let mut shell = dev.signed().shell();
    shell.notice = notice;
    render(
        StatusCode::OK,
        &CredentialPage {
            shell,
            project: i.placement.as_ref().map(|p| p.project_id.clone()),
            unshown,
            technical_account_id: i.client.technical_account_id.clone(),
            technical_account_email: i.client.technical_account_email.clone(),
            org_id: org.org_id.clone(),
            scopes: i.client.scopes.join(", "),
            services: i.services.iter().map(|s| s.name.to_owned()).collect(),
            profiles: i.profiles.iter().map(|c| c.profile.name.clone()).collect(),
            secrets: listed
                .into_iter()
                .map(|s| SecretRow {
                    uuid: s.record.secret_id.clone(),
                    value: s.value.map(|v| v.expose().to_owned()),
                    hint: s.record.hint.clone(),
                    created: ims_core::time::iso8601(s.record.created_at),
                })
                .collect(),
            token_curl,
            test_token,
            soap_curls,
            subscribable: service_choices(system),
            profile_choices: configs
                .into_iter()
                .filter(|c| !i.profiles.iter().any(|h| h.profile.id == c.profile.id))
                .map(|c| ProfileChoice {
                    id: c.profile.id.to_string(),
                    name: c.profile.name,
                    instance: c.instance.name,
                })
                .collect(),
            id: i.client.client_id,
            name: i.client.name,
        },
    )
}

async fn credential(
    State(app): State<AppState>,
    meta: Meta,
    dev: Developer,
    Path(id): Path<String>,
) -> Response {
    let org = or_page!(org(&app, &dev).await, dev);
    let who = or_page!(caller(&dev), dev);
    // Listing shows nothing: a first secret is shown by the form below it (a GET anyone can
    // make a browser send must not use it up).
    let (i, listed) = or_page!(
        app.ims
            .developer()
            .credential_secrets(&who, &org, &id, false, &dev.signed().context(&meta))
            .await,
        dev
    );
    credential_page(
        &app,
        &dev,
        &org,
        i,
        Shown {
            listed,
            test_token: None,
            notice: None,
        },
    )
    .await
}

async fn credential_change(
    State(app): State<AppState>,
    meta: Meta,
    dev: Developer,
    Path(id): Path<String>,
    body: bytes::Bytes,
) -> Response {
    let form = or_page!(dev.signed().form(&body), dev);
    let org = or_page!(org(&app, &dev).await, dev);
    let who = or_page!(caller(&dev), dev);
    let ctx = dev.signed().context(&meta);
    let here = format!("/admin/developer/credentials/{id}");
    let mut token = None;
    let mut added = None;
    let notice = match form.text("action").as_str() {
        "show" => {
            let (i, listed) = or_page!(
                app.ims
                    .developer()
                    .credential_secrets(&who, &org, &id, true, &ctx)
                    .await,
                dev
            );
            let notice = if listed.iter().any(|s| s.value.is_some()) {
                "Copy the secret now: it is not shown again."
            } else {
                "The secret was shown already (or waited more than a day): add a new one."
            };
            let shown = Shown {
                listed,
                test_token: None,
                notice: Some(notice.to_owned()),
            };
            return credential_page(&app, &dev, &org, i, shown).await;
        }
        "token" => {
            let issued = or_page!(
                app.ims
                    .developer()
                    .console_test_token(&who, &org, &id, &ctx)
                    .await,
                dev
            );
            token = Some(issued.access_token.expose().to_owned());
            format!(
                "Test access token generated; it expires in {} s.",
                issued.expires_in
            )
        }
        "add_secret" => {
            added = Some(or_page!(
                app.ims
                    .developer()
                    .add_credential_secret(&who, &org, &id, &ctx)
                    .await,
                dev
            ));
            "Secret added: copy it now, it is not shown again.".to_owned()
        }
        "remove_secret" => {
            or_page!(
                app.ims
                    .developer()
                    .remove_credential_secret(&who, &org, &id, &form.text("uuid"), &ctx)
                    .await,
                dev
            );
            return see_other(&here, vec![]);
        }
        "subscribe" => {
            or_page!(
                app.ims
                    .developer()
                    .subscribe_credential(&who, &org, &id, &requests_of(&form), &ctx)
                    .await,
                dev
            );
            return see_other(&here, vec![]);
        }
        "delete" => {
            let placement = or_page!(
                app.ims
                    .developer()
                    .delete_console_credential(&who, &org, &id, &ctx)
                    .await,
                dev
            );
            return see_other(
                &placement.map_or_else(
                    || "/admin/developer".to_owned(),
                    |p| format!("/admin/developer/projects/{}", p.project_id),
                ),
                vec![],
            );
        }
        other => {
            return error_page(
                Some(dev.signed().shell()),
                &Error::invalid_request(format!(
                    "unknown action {:?}",
                    other.chars().take(32).collect::<String>()
                )),
            )
        }
    };
    // Listed by their hints: the page shows at most the secret just added.
    let (i, mut listed) = or_page!(
        app.ims
            .developer()
            .credential_secrets(&who, &org, &id, false, &ctx)
            .await,
        dev
    );
    if let Some(new) = added {
        for s in listed
            .iter_mut()
            .filter(|s| s.record.secret_id == new.record.secret_id)
        {
            s.value = Some(new.secret.clone());
        }
    }
    let shown = Shown {
        listed,
        test_token: token,
        notice: Some(notice),
    };
    credential_page(&app, &dev, &org, i, shown).await
}
