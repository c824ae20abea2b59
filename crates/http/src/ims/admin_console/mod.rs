//! The Admin Console at `/admin/`: server-rendered pages where administrators manage people,
//! product profiles, user groups, roles, bulk imports, and read the audit log. Administrators
//! sign in through the IMS like any application (code flow with PKCE, with the console's own
//! first-party client); the access token is the console's HttpOnly cookie. Each page takes the
//! extractor of the role it needs, so a handler cannot run for someone without it. Changes to
//! people and memberships go through the User Management API's action path, so both interfaces
//! apply the same rules and write the same audit lines.

use askama::Template;
use axum::extract::{FromRequestParts, Path, Query, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use http::request::Parts;
use http::{HeaderMap, StatusCode};
use serde::Deserialize;
use serde_json::{json, Value};

use ims_core::audit::AuditQuery;
use ims_core::audit::Context;
use ims_core::{Error, ErrorKind};
use ims_identity::directory::{AdminRole, Group, GroupKind};
use ims_identity::model::UserStatus;
use ims_identity::people::UserChange;
use ims_identity::service::administration::{Administration, ProfileSettings, SystemAdministration};
use ims_identity::service::directory::{self as dir, Administrator};
use ims_identity::service::{ClientAuth, TokenRequest};

use crate::ims::signin::secure;
use crate::pages::{self, cookie, cookie_line, form_token, render, see_other, FormData};
use crate::{AppState, Meta};

use audit::audit;
use groups::{group_change, group_create, group_page, groups};
use import::{import_page, import_run};
use mail::{mail, mail_resend};
use profiles::{profile_change, profile_create, profile_page, profiles};
use roles::{role_change, roles};
use users::{user_change, user_create, user_page, users};

const COOKIE: &str = "ims_admin";
const FLOW_COOKIE: &str = "ims_admin_flow";
const PATH: &str = "/admin";

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/admin", get(|| async { see_other("/admin/", vec![]) }))
        .route("/admin/", get(home))
        .route("/admin/login", get(login))
        .route("/admin/callback", get(callback))
        .route("/admin/logout", post(logout))
        .route("/admin/users", get(users).post(user_create))
        .route("/admin/users/{email}", get(user_page).post(user_change))
        .route("/admin/profiles", get(profiles).post(profile_create))
        .route("/admin/profiles/{name}", get(profile_page).post(profile_change))
        .route("/admin/groups", get(groups).post(group_create))
        .route("/admin/groups/{name}", get(group_page).post(group_change))
        .route("/admin/roles", get(roles).post(role_change))
        .route("/admin/import", get(import_page).post(import_run))
        .route("/admin/audit", get(audit))
        .route("/admin/mail", get(mail).post(mail_resend))
        .route("/admin/settings", post(settings))
        .layer(axum::middleware::map_response(|r: Response| async move {
            pages::harden(r, "form-action 'self'; ")
        }))
}

/// The frame of every page.
pub(crate) struct Shell {
    pub(crate) who: String,
    pub(crate) roles: Vec<&'static str>,
    pub(crate) system: bool,
    /// May open the Developer Console.
    pub(crate) developer: bool,
    pub(crate) csrf: String,
    pub(crate) notice: Option<String>,
}

#[derive(Template)]
#[template(path = "admin/message.html")]
struct MessagePage {
    shell: Option<Shell>,
    heading: String,
    message: String,
}

pub(crate) fn message(status: StatusCode, shell: Option<Shell>, heading: &str, message: &str) -> Response {
    render(
        status,
        &MessagePage {
            shell,
            heading: heading.to_owned(),
            message: message.to_owned(),
        },
    )
}

/// A refusal or failure as a page; server errors keep their detail in the log.
pub(crate) fn error_page(shell: Option<Shell>, e: &Error) -> Response {
    let (status, heading) = match e.kind() {
        ErrorKind::Forbidden | ErrorKind::InsufficientScope { .. } => (StatusCode::FORBIDDEN, "Not allowed"),
        ErrorKind::NotFound => (StatusCode::NOT_FOUND, "Not found"),
        ErrorKind::InvalidRequest | ErrorKind::Conflict => (StatusCode::UNPROCESSABLE_ENTITY, "Not saved"),
        ErrorKind::InvalidToken => (StatusCode::UNAUTHORIZED, "Signed out"),
        _ => {
            tracing::error!(error = ?e, "admin console failure");
            return message(
                StatusCode::INTERNAL_SERVER_ERROR,
                shell,
                "Something went wrong",
                "The server could not complete the request.",
            );
        }
    };
    message(status, shell, heading, &e.to_string())
}

/// The value, or (from the handler) the error page for the failure.
macro_rules! or_page {
    ($result:expr, $who:expr) => {
        match $result {
            Ok(v) => v,
            Err(e) => return error_page(Some($who.shell()), &e.into()),
        }
    };
}

/// A signed-in administrator, from the console cookie.
pub struct Signed {
    pub(crate) admin: Administrator,
    token: String,
}

impl Signed {
    pub(crate) fn shell(&self) -> Shell {
        let mut roles: Vec<&'static str> = self.admin.roles().iter().map(|g| g.role.label()).collect();
        roles.sort_unstable();
        roles.dedup();
        Shell {
            who: self
                .admin
                .person()
                .map_or_else(|| self.admin.actor().to_owned(), |p| p.email.clone()),
            roles,
            system: self.admin.holds(AdminRole::SystemAdmin),
            developer: self.admin.holds(AdminRole::SystemAdmin) || self.admin.holds(AdminRole::Developer),
            csrf: form_token("admin", &[&self.token]),
            notice: None,
        }
    }

    /// The form of a POST, once its anti-forgery token is checked.
    pub(crate) fn form(&self, body: &[u8]) -> Result<FormData, Error> {
        let form = FormData::parse(body);
        self.check_form(&form)?;
        Ok(form)
    }

    fn check_form(&self, form: &FormData) -> Result<(), Error> {
        let expected = form_token("admin", &[&self.token]);
        if ims_core::secret::equal_ct(form.get("csrf").unwrap_or_default(), &expected) {
            Ok(())
        } else {
            Err(Error::forbidden(
                "this form has expired or did not come from this console; reload the page",
            ))
        }
    }

    pub(crate) fn context(&self, meta: &Meta) -> Context {
        meta.context(self.admin.actor().to_owned())
    }

    /// The directory as this administrator may see it.
    pub(crate) fn administration<'a>(&'a self, app: &'a AppState) -> Administration<'a> {
        app.ims.administration(&self.admin)
    }

    /// The system administrator's part of it (the extractor has checked the role).
    pub(crate) fn system<'a>(&'a self, app: &'a AppState) -> Result<SystemAdministration<'a>, Error> {
        self.administration(app).system()
    }
}

/// Why a request has no administrator: not signed in (go and sign in) or refused.
pub enum NotSigned {
    SignIn,
    Refused(Error),
}

impl IntoResponse for NotSigned {
    fn into_response(self) -> Response {
        match self {
            NotSigned::SignIn => see_other("/admin/login", vec![]),
            NotSigned::Refused(e) => error_page(None, &e),
        }
    }
}

impl FromRequestParts<AppState> for Signed {
    type Rejection = NotSigned;

    async fn from_request_parts(parts: &mut Parts, app: &AppState) -> Result<Self, Self::Rejection> {
        let Some(token) = cookie(&parts.headers, COOKIE).filter(|t| !t.is_empty()) else {
            return Err(NotSigned::SignIn);
        };
        let now = ims_core::Now::system();
        let valid = match app.ims.tokens().validate_access_token(&token, now).await {
            Ok(v) => v,
            Err(e) if e.kind() == ErrorKind::InvalidToken => return Err(NotSigned::SignIn),
            Err(e) => return Err(NotSigned::Refused(e)),
        };
        // Only a token issued to the console itself: an access token another application holds
        // for the same person does not open the console.
        if !(valid.client.first_party && valid.client.name == dir::ADMIN_CONSOLE_CLIENT) {
            return Err(NotSigned::SignIn);
        }
        let user_id = valid
            .claims
            .get("user_id")
            .and_then(Value::as_str)
            .ok_or(NotSigned::SignIn)?;
        let admin = match app.ims.directory().administrator(user_id, &valid.client_id).await {
            Ok(a) => a,
            Err(e) if e.kind() == ErrorKind::InvalidToken => return Err(NotSigned::SignIn),
            Err(e) => return Err(NotSigned::Refused(e)),
        };
        if admin.roles().is_empty() {
            return Err(NotSigned::Refused(Error::forbidden(
                "you hold no administrator role in this organisation",
            )));
        }
        Ok(Signed { admin, token })
    }
}

/// Generates an extractor that admits only administrators holding one of `roles` (any target).
macro_rules! role_extractor {
    ($(#[$doc:meta])* $name:ident, $($role:path),+) => {
        $(#[$doc])*
        pub struct $name(Signed);

        impl FromRequestParts<AppState> for $name {
            type Rejection = NotSigned;

            async fn from_request_parts(parts: &mut Parts, app: &AppState) -> Result<Self, Self::Rejection> {
                let signed = Signed::from_request_parts(parts, app).await?;
                let ok = signed
                    .admin
                    .roles()
                    .iter()
                    .any(|g| g.role == AdminRole::SystemAdmin $(|| g.role == $role)+);
                if ok {
                    Ok($name(signed))
                } else {
                    Err(NotSigned::Refused(Error::forbidden(format!(
                        "this page needs one of these roles: {}",
                        [AdminRole::SystemAdmin $(, $role)+].map(AdminRole::label).join(", ")
                    ))))
                }
            }
        }
    };
}

role_extractor!(
    /// People, roles, imports and the audit log.
    SystemAdministrator,
    AdminRole::SystemAdmin
);
role_extractor!(
    /// Product profiles (which ones is decided per profile).
    ProfileAdministrator,
    AdminRole::ProductAdmin,
    AdminRole::ProfileAdmin
);
role_extractor!(
    /// User groups (which ones is decided per group).
    GroupAdministrator,
    AdminRole::UserGroupAdmin
);
role_extractor!(
    /// The Developer Console: projects and credentials.
    Developer,
    AdminRole::Developer
);

impl Developer {
    pub(crate) fn signed(&self) -> &Signed {
        &self.0
    }
}

// ----- signing in ----------------------------------------------------------------------------

async fn login(State(app): State<AppState>, meta: Meta) -> Response {
    let org = match app.ims.directory().admin_console_org().await {
        Ok(org) => org,
        Err(e) => return error_page(None, &e),
    };
    let Some(org) = org else {
        return message(
            StatusCode::SERVICE_UNAVAILABLE,
            None,
            "Not set up",
            "There is no organisation yet.",
        );
    };
    let client = match app
        .ims
        .directory()
        .admin_console_client(&org.org_id, &meta.context("system:admin-console"))
        .await
    {
        Ok(c) => c,
        Err(e) => return error_page(None, &e),
    };
    let state = ims_core::secret::random_hex(16);
    let verifier = ims_core::secret::random_hex(32);
    let challenge = ims_core::secret::pkce_challenge(&verifier);
    let redirect = format!("{}/admin/callback", app.ims.settings().issuer);
    let query = url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs([
            ("response_type", "code"),
            ("client_id", client.as_str()),
            ("redirect_uri", redirect.as_str()),
            ("scope", "openid email profile"),
            ("state", state.as_str()),
            ("code_challenge", challenge.as_str()),
            ("code_challenge_method", "S256"),
        ])
        .finish();
    let flow = cookie_line(
        FLOW_COOKIE,
        &format!("{state}.{verifier}.{client}"),
        PATH,
        secure(&app),
        Some(600),
    );
    see_other(&format!("/ims/authorize/v2?{query}"), vec![flow])
}

#[derive(Debug, Deserialize)]
struct Callback {
    code: Option<String>,
    state: Option<String>,
    error: Option<String>,
}

async fn callback(
    State(app): State<AppState>,
    meta: Meta,
    headers: HeaderMap,
    Query(q): Query<Callback>,
) -> Response {
    let flow = cookie(&headers, FLOW_COOKIE).unwrap_or_default();
    let mut parts = flow.splitn(3, '.');
    let (Some(state), Some(verifier), Some(client)) = (parts.next(), parts.next(), parts.next()) else {
        return see_other("/admin/login", vec![]);
    };
    if let Some(e) = q.error {
        return message(
            StatusCode::UNAUTHORIZED,
            None,
            "Not signed in",
            &format!("The sign-in ended: {e}."),
        );
    }
    let state_ok = q
        .state
        .as_deref()
        .is_some_and(|s| ims_core::secret::equal_ct(s, state));
    let Some(code) = q.code.filter(|_| state_ok) else {
        return message(
            StatusCode::BAD_REQUEST,
            None,
            "Not signed in",
            "This sign-in did not start here; start again.",
        );
    };
    let req = TokenRequest {
        grant_type: Some("authorization_code".into()),
        auth: ClientAuth::None {
            client_id: client.to_owned(),
        },
        scope: None,
        org_id: None,
        code: Some(code),
        redirect_uri: Some(format!("{}/admin/callback", app.ims.settings().issuer)),
        code_verifier: Some(verifier.to_owned()),
        refresh_token: None,
    };
    match app
        .ims
        .tokens()
        .token(&req, &meta.context(format!("client:{client}")))
        .await
    {
        Ok(issued) => see_other(
            "/admin/",
            vec![
                cookie_line(
                    COOKIE,
                    issued.access_token.expose(),
                    PATH,
                    secure(&app),
                    Some(issued.expires_in),
                ),
                cookie_line(FLOW_COOKIE, "", PATH, secure(&app), Some(0)),
            ],
        ),
        Err(e) => {
            tracing::info!(error = %e, "admin console sign-in refused");
            message(
                StatusCode::UNAUTHORIZED,
                None,
                "Not signed in",
                "The sign-in could not be completed; start again.",
            )
        }
    }
}

async fn logout(State(app): State<AppState>, meta: Meta, who: Signed, body: bytes::Bytes) -> Response {
    if let Err(e) = who.check_form(&FormData::parse(&body)) {
        return error_page(Some(who.shell()), &e);
    }
    // The cookie holds the console's access token: revoked at the IMS, so that a copy of the
    // cookie (or the token in it) opens nothing any more, pages and APIs alike.
    let auth = ClientAuth::None {
        client_id: who.admin.client_id().to_owned(),
    };
    if let Err(e) = app
        .ims
        .tokens()
        .revoke(&auth, &who.token, &who.context(&meta))
        .await
    {
        return error_page(Some(who.shell()), &e);
    }
    let clear = cookie_line(COOKIE, "", PATH, secure(&app), Some(0));
    let mut resp = message(
        StatusCode::OK,
        None,
        "Signed out",
        "You have left the Admin Console. Your IMS session ends at /ims/logout/v1.",
    );
    resp.headers_mut().append(http::header::SET_COOKIE, clear);
    resp
}

// ----- home ------------------------------------------------------------------------------------

#[derive(Template)]
#[template(path = "admin/home.html")]
struct HomePage {
    shell: Shell,
    org: String,
    users: usize,
    profiles: usize,
    groups: usize,
    require_totp: bool,
}

async fn home(State(app): State<AppState>, who: Signed, Query(q): Query<ListQuery>) -> Response {
    let org = who.admin.org_id().to_owned();
    let directory = who.administration(&app);
    let counts = async {
        let groups = directory.groups().await?;
        let users = directory.everyone(None, true).await?;
        Ok::<_, Error>((
            users.len(),
            groups
                .iter()
                .filter(|(g, _)| g.kind == GroupKind::ProductProfile)
                .count(),
            groups
                .iter()
                .filter(|(g, _)| g.kind == GroupKind::UserGroup)
                .count(),
        ))
    };
    let require_totp = match app.ims.directory().org(&org).await {
        Ok(o) => o.is_some_and(|o| o.require_totp),
        Err(e) => return error_page(Some(who.shell()), &e),
    };
    match counts.await {
        Ok((users, profiles, groups)) => render(
            StatusCode::OK,
            &HomePage {
                shell: with_notice(who.shell(), &q),
                org,
                users,
                profiles,
                groups,
                require_totp,
            },
        ),
        Err(e) => error_page(Some(who.shell()), &e),
    }
}

/// `POST /admin/settings`: the organisation's sign-in rules (system administrators).
async fn settings(
    State(app): State<AppState>,
    SystemAdministrator(who): SystemAdministrator,
    meta: Meta,
    body: bytes::Bytes,
) -> Response {
    let form = or_page!(who.form(&body), who);
    let people = or_page!(who.system(&app), who);
    let required = form.checked("require_totp");
    or_page!(people.set_require_totp(required, &who.context(&meta)).await, who);
    back(
        "/admin/",
        if required {
            "One-time codes are required: people not enrolled enrol at their next sign-in."
        } else {
            "One-time codes are optional."
        },
    )
}

// ----- shared: run UMAPI-style entries as the signed-in administrator -------------------------

/// Runs action entries through the API's action path; the first error's message, if any.
async fn act(
    app: &AppState,
    who: &Signed,
    meta: &Meta,
    entries: Value,
    test_only: bool,
) -> Result<Value, Error> {
    let body = entries.to_string();
    app.ims
        .directory()
        .umapi_action(&who.admin, body.as_bytes(), test_only, &who.context(meta))
        .await?
        .map_err(|e| Error::invalid_request(e.message))
}

/// Runs action entries and answers with `done`, or the first entry's error.
async fn run_entry(
    app: &AppState,
    who: &Signed,
    meta: &Meta,
    entries: Value,
    done: &'static str,
) -> Result<&'static str, Error> {
    let r = act(app, who, meta, entries, false).await?;
    match first_error(&r) {
        None => Ok(done),
        Some(e) => Err(Error::invalid_request(e)),
    }
}

/// A member of a profile or group, as the pages list them.
struct MemberRow {
    email: String,
    link: String,
    through: String,
}

fn first_error(result: &Value) -> Option<String> {
    result["errors"].as_array().and_then(|a| a.first()).map(|e| {
        format!(
            "{} ({})",
            e["message"].as_str().unwrap_or_default(),
            e["errorCode"].as_str().unwrap_or_default()
        )
    })
}

fn back(to: &str, saved: &str) -> Response {
    let notice: String = url::form_urlencoded::byte_serialize(saved.as_bytes()).collect();
    see_other(&format!("{to}?notice={notice}"), vec![])
}

#[derive(Debug, Deserialize, Default)]
struct ListQuery {
    q: Option<String>,
    page: Option<u32>,
    notice: Option<String>,
    action: Option<String>,
}

fn with_notice(mut shell: Shell, q: &ListQuery) -> Shell {
    shell.notice = q.notice.clone().filter(|n| !n.is_empty() && n.len() < 200);
    shell
}

/// A name as one path segment (`+` would stay a plus there, so no form encoding).
fn enc(s: &str) -> String {
    percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC).to_string()
}

// The pages, by subject; declared after `or_page!`, which they use.
mod audit;
mod groups;
mod import;
mod mail;
mod profiles;
mod roles;
mod users;
