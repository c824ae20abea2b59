//! The User Management API at `/v2/usermanagement`, shaped as the vendor's clients expect
//! (the wire notes are in the README): bearer token plus `x-api-key`, JSON results with a `result` field, a 404
//! that means "not found" on queries, 429 with `Retry-After` when a client exceeds its budget.

use axum::extract::{FromRequestParts, Path, Query, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use http::request::Parts;
use http::StatusCode;
use ims_identity::umapi::ResultCode;
use serde::Deserialize;
use serde_json::{json, Value};

use ims_core::Error;
use ims_identity::service::directory::Administrator;

use crate::error::no_store;
use crate::error::umapi::UmapiError;
use crate::{AppState, Body, Meta};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/v2/usermanagement/users/{org}/{page}", get(users))
        .route(
            "/v2/usermanagement/users/{org}/{page}/{group}",
            get(users_in_group),
        )
        .route("/v2/usermanagement/groups/{org}/{page}", get(groups))
        .route("/v2/usermanagement/organizations/{org}/users/{user}", get(user))
        .route("/v2/usermanagement/action/{org}", post(action))
        .route("/v2/usermanagement/audit/{org}/{page}", get(audit))
        .route("/v2/usermanagement/profiles/{org}", post(profile_create))
        .route(
            "/v2/usermanagement/invitations/{org}/resend",
            post(invitations_resend),
        )
        .route("/v2/usermanagement/invitations/{org}/{page}", get(invitations))
        .route("/v2/usermanagement/profiles/{org}/{name}", get(profile))
}

/// An authenticated caller within its budget: obtaining one is the only way into a handler.
pub struct Caller(pub Administrator);

impl FromRequestParts<AppState> for Caller {
    type Rejection = UmapiError;

    async fn from_request_parts(parts: &mut Parts, app: &AppState) -> Result<Self, Self::Rejection> {
        let meta = Meta::from_request_parts(parts, app)
            .await
            .unwrap_or_else(|never| match never {});
        let (token, api_key) = crate::ims::oauth::bearer_and_api_key(parts)?;
        let admin = app
            .ims
            .directory()
            .umapi_caller(&token, api_key, meta.now)
            .await?;
        app.ims
            .directory()
            .umapi_admit(admin.client_id(), meta.now)
            .await?
            .map_err(UmapiError::Throttled)?;
        Ok(Caller(admin))
    }
}

impl Caller {
    /// The caller's own organisation, as the path names it.
    async fn org(&self, app: &AppState, org: &str) -> Result<(), UmapiError> {
        if org == self.0.org_id() {
            return Ok(());
        }
        if app.ims.directory().org_exists(org).await? {
            return Err(Error::forbidden("this organisation is not the caller's").into());
        }
        Err(UmapiError::BadOrg)
    }
}

fn page_number(raw: &str) -> Result<u32, UmapiError> {
    raw.parse::<u32>().map_err(|_| {
        UmapiError::Request(
            ResultCode::RequestMalformed,
            format!("{raw:?} is not a page number"),
        )
    })
}

#[derive(Debug, Deserialize)]
struct UsersQuery {
    #[serde(rename = "directOnly")]
    direct_only: Option<String>,
    /// Accepted: every user of ours carries its domain in its email.
    #[allow(dead_code)]
    domain: Option<String>,
}

/// `directOnly` as Python's clients write booleans (`True`/`False`), in any case.
fn direct_only(q: &UsersQuery) -> Result<bool, UmapiError> {
    match q.direct_only.as_deref().map(str::to_ascii_lowercase).as_deref() {
        None | Some("true") => Ok(true),
        Some("false") => Ok(false),
        Some(other) => Err(UmapiError::Request(
            ResultCode::RequestMalformed,
            format!("directOnly is true or false, not {other:?}"),
        )),
    }
}

fn success(key: &str, items: Vec<Value>, last_page: bool) -> Response {
    let mut resp = Json(json!({"result": "success", "lastPage": last_page, key: items})).into_response();
    no_store(&mut resp);
    resp
}

async fn list_users(
    app: &AppState,
    caller: &Caller,
    org: &str,
    page: &str,
    group: Option<&str>,
    q: &UsersQuery,
) -> Result<Response, UmapiError> {
    caller.org(app, org).await?;
    let page = page_number(page)?;
    match app
        .ims
        .directory()
        .umapi_users(org, page, group, direct_only(q)?)
        .await?
    {
        Some((users, last)) => Ok(success("users", users, last)),
        None => Err(UmapiError::NotFound(
            ResultCode::GroupNotFound,
            format!("no group named {:?}", group.unwrap_or_default()),
        )),
    }
}

async fn users(
    State(app): State<AppState>,
    caller: Caller,
    Path((org, page)): Path<(String, String)>,
    Query(q): Query<UsersQuery>,
) -> Result<Response, UmapiError> {
    list_users(&app, &caller, &org, &page, None, &q).await
}

async fn users_in_group(
    State(app): State<AppState>,
    caller: Caller,
    Path((org, page, group)): Path<(String, String, String)>,
    Query(q): Query<UsersQuery>,
) -> Result<Response, UmapiError> {
    list_users(&app, &caller, &org, &page, Some(&group), &q).await
}

async fn groups(
    State(app): State<AppState>,
    caller: Caller,
    Path((org, page)): Path<(String, String)>,
) -> Result<Response, UmapiError> {
    caller.org(&app, &org).await?;
    let (groups, last) = app
        .ims
        .directory()
        .umapi_groups(&org, page_number(&page)?)
        .await?;
    Ok(success("groups", groups, last))
}

async fn user(
    State(app): State<AppState>,
    caller: Caller,
    Path((org, email)): Path<(String, String)>,
) -> Result<Response, UmapiError> {
    caller.org(&app, &org).await?;
    match app.ims.directory().umapi_user(&org, &email).await? {
        Some(u) => {
            let mut resp = Json(json!({"result": "success", "user": u})).into_response();
            no_store(&mut resp);
            Ok(resp)
        }
        None => Err(UmapiError::NotFound(
            ResultCode::UserNonexistent,
            format!("no user {email}"),
        )),
    }
}

#[derive(Debug, Deserialize)]
struct ActionQuery {
    #[serde(rename = "testOnly")]
    test_only: Option<String>,
}

async fn action(
    State(app): State<AppState>,
    caller: Caller,
    meta: Meta,
    Path(org): Path<String>,
    Query(q): Query<ActionQuery>,
    Body(body, _): Body<UmapiError>,
) -> Result<Response, UmapiError> {
    caller.org(&app, &org).await?;
    let test_only = match q.test_only.as_deref().map(str::to_ascii_lowercase).as_deref() {
        None | Some("false") => false,
        Some("true") => true,
        Some(other) => {
            return Err(UmapiError::Request(
                ResultCode::RequestMalformed,
                format!("testOnly is true or false, not {other:?}"),
            ))
        }
    };
    let ctx = meta.context(caller.0.actor().to_owned());
    let result = app
        .ims
        .directory()
        .umapi_action(&caller.0, &body, test_only, &ctx)
        .await??;
    let mut resp = Json(result).into_response();
    no_store(&mut resp);
    Ok(resp)
}

#[derive(Debug, Deserialize)]
struct AuditQuery {
    /// Only actions starting with this (`umapi.`, `profile.`, `user.`...).
    action: Option<String>,
}

/// Our extension: the audit log, newest first, paged like the listings (who, what, when, from
/// where, request id). System administrators and credentials of the API only.
async fn audit(
    State(app): State<AppState>,
    caller: Caller,
    Path((org, page)): Path<(String, String)>,
    Query(q): Query<AuditQuery>,
) -> Result<Response, UmapiError> {
    caller.org(&app, &org).await?;
    let size = app.ims.directory().umapi_page_size();
    let (events, last) = app
        .ims
        .directory()
        .audit_page(
            q.action.as_deref().filter(|a| !a.is_empty()),
            page_number(&page)?,
            size,
        )
        .await?;
    Ok(success("events", events, last))
}

/// Our extension: one product profile with its product instance and permission items.
async fn profile(
    State(app): State<AppState>,
    caller: Caller,
    Path((org, name)): Path<(String, String)>,
) -> Result<Response, UmapiError> {
    caller.org(&app, &org).await?;
    match app.ims.directory().umapi_profile(&org, &name).await? {
        Some(p) => {
            let mut resp = Json(json!({"result": "success", "profile": p})).into_response();
            no_store(&mut resp);
            Ok(resp)
        }
        None => Err(UmapiError::NotFound(
            ResultCode::GroupNotFound,
            format!("no product profile named {name:?}"),
        )),
    }
}

/// Our extension: creates a product profile (`{"name", "productContext", "instance",
/// "permissions", "licenseQuota"}`); 201, or 409 when the name is taken.
async fn profile_create(
    State(app): State<AppState>,
    caller: Caller,
    meta: Meta,
    Path(org): Path<String>,
    Body(body, _): Body<UmapiError>,
) -> Result<Response, UmapiError> {
    caller.org(&app, &org).await?;
    let req: ims_identity::service::directory::ProfileRequest = serde_json::from_slice(&body)
        .map_err(|e| UmapiError::Request(ResultCode::RequestMalformed, format!("not a profile: {e}")))?;
    let ctx = meta.context(caller.0.actor().to_owned());
    let created = app
        .ims
        .directory()
        .umapi_create_profile(&caller.0, &req, &ctx)
        .await?;
    let mut resp = (
        StatusCode::CREATED,
        Json(json!({"result": "success", "profile": created})),
    )
        .into_response();
    no_store(&mut resp);
    Ok(resp)
}

/// Our extension: where each user's invitation stands, a listing page at a time.
async fn invitations(
    State(app): State<AppState>,
    caller: Caller,
    meta: Meta,
    Path((org, page)): Path<(String, String)>,
) -> Result<Response, UmapiError> {
    caller.org(&app, &org).await?;
    let (items, last) = app
        .ims
        .directory()
        .umapi_invitations(&org, page_number(&page)?, meta.now)
        .await?;
    Ok(success("users", items, last))
}

/// People one resend takes at most.
const MAX_RESEND: usize = 1000;

/// Our extension: `{"users": [email, ...]}` are sent a new invitation each.
async fn invitations_resend(
    State(app): State<AppState>,
    caller: Caller,
    meta: Meta,
    Path(org): Path<String>,
    Body(body, _): Body<UmapiError>,
) -> Result<Response, UmapiError> {
    caller.org(&app, &org).await?;
    #[derive(Deserialize)]
    struct Resend {
        users: Vec<String>,
    }
    let req: Resend = serde_json::from_slice(&body).map_err(|e| {
        UmapiError::Request(
            ResultCode::RequestMalformed,
            format!("expected {{\"users\": [email, ...]}}: {e}"),
        )
    })?;
    if req.users.len() > MAX_RESEND {
        return Err(UmapiError::Request(
            ResultCode::RequestMalformed,
            format!("at most {MAX_RESEND} users per request"),
        ));
    }
    let ctx = meta.context(caller.0.actor().to_owned());
    let answer = app
        .ims
        .directory()
        .umapi_resend_invitations(&caller.0, &req.users, &ctx)
        .await?;
    let mut resp = Json(answer).into_response();
    no_store(&mut resp);
    Ok(resp)
}
