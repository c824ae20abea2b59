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
use ims_core::Error;
use ims_identity::directory::{AdminRole, Group, GroupKind};
use ims_identity::model::UserStatus;
use ims_identity::people::UserChange;
use ims_identity::service::administration::{Administration, ProfileSettings, SystemAdministration};
use ims_identity::service::directory::{self as dir, Administrator};
use ims_identity::service::{ClientAuth, TokenRequest};

use crate::pages::{self, cookie, cookie_line, form_token, render, see_other, FormData};
use crate::signin::secure;
use crate::{AppState, Meta};

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
    let (status, heading) = match e {
        Error::Forbidden(_) | Error::InsufficientScope(_) => (StatusCode::FORBIDDEN, "Not allowed"),
        Error::NotFound(_) => (StatusCode::NOT_FOUND, "Not found"),
        Error::InvalidRequest(_) | Error::Conflict(_) => (StatusCode::UNPROCESSABLE_ENTITY, "Not saved"),
        Error::InvalidToken(_) => (StatusCode::UNAUTHORIZED, "Signed out"),
        other => {
            tracing::error!(error = %other, "admin console failure");
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
            Err(Error::Forbidden(
                "this form has expired or did not come from this console; reload the page".into(),
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
        let valid = match app.ims.validate_access_token(&token, now).await {
            Ok(v) => v,
            Err(Error::InvalidToken(_)) => return Err(NotSigned::SignIn),
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
        let admin = match app.ims.administrator(user_id, &valid.client_id).await {
            Ok(a) => a,
            Err(Error::InvalidToken(_)) => return Err(NotSigned::SignIn),
            Err(e) => return Err(NotSigned::Refused(e)),
        };
        if admin.roles().is_empty() {
            return Err(NotSigned::Refused(Error::Forbidden(
                "you hold no administrator role in this organisation".into(),
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
                    Err(NotSigned::Refused(Error::Forbidden(format!(
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
    let org = match app.ims.admin_console_org().await {
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
    if let Err(e) = app.ims.revoke(&auth, &who.token, &who.context(&meta)).await {
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
}

async fn home(State(app): State<AppState>, who: Signed) -> Response {
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
    match counts.await {
        Ok((users, profiles, groups)) => render(
            StatusCode::OK,
            &HomePage {
                shell: who.shell(),
                org,
                users,
                profiles,
                groups,
            },
        ),
        Err(e) => error_page(Some(who.shell()), &e),
    }
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
        .umapi_action(&who.admin, body.as_bytes(), test_only, &who.context(meta))
        .await?
        .map_err(|e| Error::InvalidRequest(e.message))
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

// ----- users -----------------------------------------------------------------------------------

struct UserRow {
    email: String,
    link: String,
    name: String,
    kind: &'static str,
    status: &'static str,
    groups: String,
}

#[derive(Template)]
#[template(path = "admin/users.html")]
struct UsersPage {
    shell: Shell,
    search: String,
    rows: Vec<UserRow>,
    page: u32,
    previous: Option<u32>,
    next: Option<u32>,
}

const PAGE: u32 = 50;

async fn users(
    State(app): State<AppState>,
    SystemAdministrator(who): SystemAdministrator,
    Query(q): Query<ListQuery>,
) -> Response {
    let page = q.page.unwrap_or(0);
    let search = q.q.clone().unwrap_or_default().trim().to_lowercase();
    // Search filters the organisation's users by email or name.
    let all = or_page!(who.administration(&app).everyone(None, true).await, who);
    let matching: Vec<_> = all
        .into_iter()
        .filter(|(u, _)| {
            search.is_empty()
                || u.email.to_lowercase().contains(&search)
                || format!("{} {}", u.first_name, u.last_name)
                    .to_lowercase()
                    .contains(&search)
        })
        .collect();
    let total = matching.len() as u32;
    let rows = matching
        .into_iter()
        .skip((page * PAGE) as usize)
        .take(PAGE as usize)
        .map(|(u, g)| UserRow {
            link: format!("/admin/users/{}", enc(&u.email)),
            name: format!("{} {}", u.first_name, u.last_name).trim().to_owned(),
            kind: u.identity_type.as_str(),
            status: u.status.as_str(),
            groups: g.join(", "),
            email: u.email,
        })
        .collect();
    render(
        StatusCode::OK,
        &UsersPage {
            shell: with_notice(who.shell(), &q),
            search: q.q.unwrap_or_default(),
            rows,
            page,
            previous: page.checked_sub(1),
            next: ((page + 1) * PAGE < total).then_some(page + 1),
        },
    )
}

async fn user_create(
    State(app): State<AppState>,
    SystemAdministrator(who): SystemAdministrator,
    meta: Meta,
    body: bytes::Bytes,
) -> Response {
    let form = or_page!(who.form(&body), who);
    let email = form.text("email").trim().to_owned();
    let command = match form.text("type").as_str() {
        "adobeID" => "addAdobeID",
        "federatedID" => "createFederatedID",
        _ => "createEnterpriseID",
    };
    let mut args =
        json!({"email": email, "firstname": form.text("firstname"), "lastname": form.text("lastname")});
    if !form.text("country").trim().is_empty() {
        args["country"] = json!(form.text("country"));
    }
    let mut steps = vec![json!({ command: args })];
    let groups: Vec<String> = form.all("group").into_iter().filter(|g| !g.is_empty()).collect();
    if !groups.is_empty() {
        steps.push(json!({"add": {"group": groups}}));
    }
    match act(&app, &who, &meta, json!([{"user": email, "do": steps}]), false).await {
        Ok(r) => match first_error(&r) {
            None => back(&format!("/admin/users/{}", enc(&email)), "User created."),
            Some(e) => error_page(Some(who.shell()), &Error::InvalidRequest(e)),
        },
        Err(e) => error_page(Some(who.shell()), &e),
    }
}

struct MembershipRow {
    group: String,
    kind: &'static str,
    through: String,
}

#[derive(Template)]
#[template(path = "admin/user.html")]
struct UserPage {
    shell: Shell,
    email: String,
    action: String,
    first_name: String,
    last_name: String,
    country: String,
    kind: &'static str,
    status: &'static str,
    active: bool,
    user_id: String,
    memberships: Vec<MembershipRow>,
    groups: Vec<String>,
    reset_link: Option<String>,
}

async fn user_page(
    State(app): State<AppState>,
    SystemAdministrator(who): SystemAdministrator,
    Path(email): Path<String>,
    Query(q): Query<ListQuery>,
) -> Response {
    user_view(&app, &who, &email, with_notice(who.shell(), &q), None).await
}

async fn user_view(
    app: &AppState,
    who: &Signed,
    email: &str,
    shell: Shell,
    reset_link: Option<String>,
) -> Response {
    let people = or_page!(who.system(app), who);
    let user = match people.user(email).await {
        Ok(u) => u,
        Err(e) => return error_page(Some(shell), &e),
    };
    let directory = people.administration();
    let memberships = or_page!(directory.memberships(&user).await, who);
    let groups = match directory.groups().await {
        Ok(g) => g.into_iter().map(|(g, _)| g.name).collect(),
        Err(e) => return error_page(Some(shell), &e),
    };
    render(
        StatusCode::OK,
        &UserPage {
            shell,
            action: format!("/admin/users/{}", enc(&user.email)),
            email: user.email.clone(),
            first_name: user.first_name.clone(),
            last_name: user.last_name.clone(),
            country: user.country.clone().unwrap_or_default(),
            kind: user.identity_type.as_str(),
            status: user.status.as_str(),
            active: user.status == UserStatus::Active,
            user_id: user.user_id.clone(),
            memberships: memberships
                .into_iter()
                .map(|m| MembershipRow {
                    kind: m.kind.as_str(),
                    through: m.through.unwrap_or_default(),
                    group: m.group,
                })
                .collect(),
            groups,
            reset_link,
        },
    )
}

async fn user_change(
    State(app): State<AppState>,
    SystemAdministrator(who): SystemAdministrator,
    meta: Meta,
    Path(email): Path<String>,
    body: bytes::Bytes,
) -> Response {
    let form = or_page!(who.form(&body), who);
    let here = format!("/admin/users/{}", enc(&email));
    let people = or_page!(who.system(&app), who);
    let user = match people.any_user(&email).await {
        Ok(u) => u,
        Err(e) => return error_page(Some(who.shell()), &e),
    };
    let ctx = who.context(&meta);
    let entry = |steps: Value| json!([{"user": email, "do": steps}]);
    let outcome: Result<&str, Error> = match form.text("action").as_str() {
        "update" => {
            let mut args = json!({"firstname": form.text("firstname"), "lastname": form.text("lastname")});
            if !form.text("country").trim().is_empty() {
                args["country"] = json!(form.text("country"));
            }
            run_entry(&app, &who, &meta, entry(json!([{"update": args}])), "Saved.").await
        }
        "add_group" => {
            run_entry(
                &app,
                &who,
                &meta,
                entry(json!([{"add": {"group": [form.text("group")]}}])),
                "Added.",
            )
            .await
        }
        "remove_group" => {
            run_entry(
                &app,
                &who,
                &meta,
                entry(json!([{"remove": {"group": [form.text("group")]}}])),
                "Removed from the group.",
            )
            .await
        }
        "remove" => {
            return match run_entry(
                &app,
                &who,
                &meta,
                entry(json!([{"removeFromOrg": {"deleteAccount": false}}])),
                "",
            )
            .await
            {
                Ok(_) => back("/admin/users", &format!("{email} removed from the organisation.")),
                Err(e) => error_page(Some(who.shell()), &e),
            }
        }
        "disable" | "enable" => {
            let status = if form.text("action") == "disable" {
                UserStatus::Disabled
            } else {
                UserStatus::Active
            };
            people
                .change_user(&user, UserChange::SetStatus(status), &ctx)
                .await
                .map(|_| "Saved.")
        }
        "end_sessions" => people
            .change_user(&user, UserChange::EndSessions, &ctx)
            .await
            .map(|_| "Sessions ended."),
        "reset" => {
            return match people.password_reset_link(&user, &ctx).await {
                Ok(token) => {
                    let link = format!("{}/ims/reset/{}", app.ims.settings().issuer, token.expose());
                    let mut shell = who.shell();
                    shell.notice = Some("Reset link created: give it to the person; it works once.".into());
                    user_view(&app, &who, &email, shell, Some(link)).await
                }
                Err(e) => error_page(Some(who.shell()), &e),
            }
        }
        other => Err(Error::invalid_request(format!("unknown action {other:?}"))),
    };
    match outcome {
        Ok(notice) => back(&here, notice),
        Err(e) => error_page(Some(who.shell()), &e),
    }
}

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
        Some(e) => Err(Error::InvalidRequest(e)),
    }
}

// ----- product profiles ------------------------------------------------------------------------

struct ProfileRow {
    name: String,
    link: String,
    instance: String,
    permissions: String,
    quota: String,
    members: i64,
}

struct InstanceChoice {
    id: i64,
    label: String,
}

#[derive(Template)]
#[template(path = "admin/profiles.html")]
struct ProfilesPage {
    shell: Shell,
    rows: Vec<ProfileRow>,
    instances: Vec<InstanceChoice>,
    may_create: bool,
}

async fn profiles(
    State(app): State<AppState>,
    ProfileAdministrator(who): ProfileAdministrator,
    Query(q): Query<ListQuery>,
) -> Response {
    let directory = who.administration(&app);
    let (instances, groups) = or_page!(
        tokio::try_join!(directory.product_instances(), directory.groups()),
        who
    );
    let context_of = |g: &Group| {
        instances
            .iter()
            .find(|i| Some(i.id) == g.product_instance_id)
            .map(|i| {
                (
                    i.product_context.clone(),
                    format!("{} ({})", i.label, i.product_context),
                )
            })
            .unwrap_or_default()
    };
    let rows = groups
        .iter()
        .filter(|(g, _)| {
            g.kind == GroupKind::ProductProfile && who.admin.may_manage_profile(g, &context_of(g).0)
        })
        .map(|(g, n)| ProfileRow {
            name: g.name.clone(),
            link: format!("/admin/profiles/{}", enc(&g.name)),
            instance: context_of(g).1,
            permissions: g.permissions.join(", "),
            quota: g
                .license_quota
                .map_or_else(|| "unlimited".to_owned(), |q| q.to_string()),
            members: *n,
        })
        .collect();
    let creatable: Vec<InstanceChoice> = instances
        .iter()
        .filter(|i| who.admin.administers_product(&i.product_context))
        .map(|i| InstanceChoice {
            id: i.id,
            label: format!("{} ({} / {})", i.label, i.product_context, i.name),
        })
        .collect();
    render(
        StatusCode::OK,
        &ProfilesPage {
            shell: with_notice(who.shell(), &q),
            may_create: !creatable.is_empty(),
            rows,
            instances: creatable,
        },
    )
}

fn permissions_of(form: &FormData) -> Vec<String> {
    let mut out: Vec<String> = form
        .text("permissions")
        .split([',', '\n', ' '])
        .map(|p| p.trim().to_owned())
        .filter(|p| !p.is_empty())
        .collect();
    out.sort();
    out.dedup();
    out
}

fn quota_of(form: &FormData) -> Result<Option<i64>, Error> {
    let raw = form.text("quota");
    let raw = raw.trim();
    if raw.is_empty() {
        return Ok(None);
    }
    raw.parse::<i64>()
        .map(Some)
        .map_err(|_| Error::invalid_request("the licence quota is a number (or empty for no limit)"))
}

async fn profile_create(
    State(app): State<AppState>,
    ProfileAdministrator(who): ProfileAdministrator,
    meta: Meta,
    body: bytes::Bytes,
) -> Response {
    let form = or_page!(who.form(&body), who);
    let name = form.text("name").trim().to_owned();
    let created = match quota_of(&form) {
        Ok(license_quota) => {
            let settings = ProfileSettings {
                name: &name,
                permissions: permissions_of(&form),
                license_quota,
            };
            who.administration(&app)
                .create_profile(&form.text("instance"), settings, &who.context(&meta))
                .await
        }
        Err(e) => Err(e),
    };
    match created {
        Ok(_) => back(
            &format!("/admin/profiles/{}", enc(&name)),
            "Product profile created.",
        ),
        Err(e) => error_page(Some(who.shell()), &e),
    }
}

struct MemberRow {
    email: String,
    link: String,
    through: String,
}

#[derive(Template)]
#[template(path = "admin/profile.html")]
struct ProfilePage {
    shell: Shell,
    name: String,
    action: String,
    instance: String,
    permissions: String,
    quota: String,
    members: Vec<MemberRow>,
    linked_groups: Vec<String>,
    /// Technical account credentials (client ids) holding the profile.
    credentials: Vec<String>,
}

async fn profile_page(
    State(app): State<AppState>,
    ProfileAdministrator(who): ProfileAdministrator,
    Path(name): Path<String>,
    Query(q): Query<ListQuery>,
) -> Response {
    let shell = with_notice(who.shell(), &q);
    let profile = or_page!(who.administration(&app).managed_profile(&name).await, who);
    let directory = who.administration(&app);
    let members = or_page!(directory.everyone(Some(&profile.name), false).await, who);
    let mut rows = Vec::new();
    for (u, _) in members {
        let through = match directory.memberships(&u).await {
            Ok(ms) => ms
                .into_iter()
                .filter(|m| m.group == profile.name)
                .map(|m| m.through.unwrap_or_else(|| "direct".into()))
                .collect::<Vec<_>>()
                .join(", "),
            Err(e) => return error_page(Some(shell), &e),
        };
        rows.push(MemberRow {
            link: format!("/admin/users/{}", enc(&u.email)),
            email: u.email,
            through,
        });
    }
    let linked_groups = or_page!(directory.linked(&profile).await, who);
    let instance = match directory.product_instances().await {
        Ok(i) => i
            .into_iter()
            .find(|i| Some(i.id) == profile.product_instance_id)
            .map(|i| format!("{} ({} / {})", i.label, i.product_context, i.name))
            .unwrap_or_default(),
        Err(e) => return error_page(Some(shell), &e),
    };
    let credentials = or_page!(directory.profile_credentials(&profile).await, who);
    render(
        StatusCode::OK,
        &ProfilePage {
            shell,
            credentials,
            action: format!("/admin/profiles/{}", enc(&profile.name)),
            permissions: profile.permissions.join(" "),
            quota: profile.license_quota.map(|q| q.to_string()).unwrap_or_default(),
            name: profile.name,
            instance,
            members: rows,
            linked_groups,
        },
    )
}

async fn profile_change(
    State(app): State<AppState>,
    ProfileAdministrator(who): ProfileAdministrator,
    meta: Meta,
    Path(name): Path<String>,
    body: bytes::Bytes,
) -> Response {
    let form = or_page!(who.form(&body), who);
    let profile = or_page!(who.administration(&app).managed_profile(&name).await, who);
    let here = format!("/admin/profiles/{}", enc(&profile.name));
    let member = form.text("email").trim().to_owned();
    let outcome = match form.text("action").as_str() {
        "permissions" => match quota_of(&form) {
            Ok(license_quota) => {
                let settings = ProfileSettings {
                    name: &profile.name,
                    permissions: permissions_of(&form),
                    license_quota,
                };
                who.administration(&app)
                    .update_profile(&profile, settings, &who.context(&meta))
                    .await
                    .map(|()| "Saved.")
            }
            Err(e) => Err(e),
        },
        "add_member" => {
            run_entry(
                &app,
                &who,
                &meta,
                json!([{"user": member, "do": [{"add": {"group": [profile.name]}}]}]),
                "Member added.",
            )
            .await
        }
        "remove_member" => {
            run_entry(
                &app,
                &who,
                &meta,
                json!([{"user": member, "do": [{"remove": {"group": [profile.name]}}]}]),
                "Member removed.",
            )
            .await
        }
        action @ ("add_credential" | "remove_credential") => app
            .ims
            .set_profile_credential(
                who.admin.org_id(),
                &profile,
                form.text("client_id").trim(),
                action == "add_credential",
                &who.context(&meta),
            )
            .await
            .map(|()| "Saved."),
        other => Err(Error::invalid_request(format!("unknown action {other:?}"))),
    };
    match outcome {
        Ok(notice) => back(&here, notice),
        Err(e) => error_page(Some(who.shell()), &e),
    }
}

// ----- user groups -----------------------------------------------------------------------------

struct GroupRow {
    name: String,
    link: String,
    description: String,
    members: i64,
}

#[derive(Template)]
#[template(path = "admin/groups.html")]
struct GroupsPage {
    shell: Shell,
    rows: Vec<GroupRow>,
}

async fn groups(
    State(app): State<AppState>,
    GroupAdministrator(who): GroupAdministrator,
    Query(q): Query<ListQuery>,
) -> Response {
    let groups = or_page!(who.administration(&app).groups().await, who);
    let rows = groups
        .iter()
        .filter(|(g, _)| g.kind == GroupKind::UserGroup && who.admin.may_manage_group(g))
        .map(|(g, n)| GroupRow {
            name: g.name.clone(),
            link: format!("/admin/groups/{}", enc(&g.name)),
            description: g.description.clone(),
            members: *n,
        })
        .collect();
    render(
        StatusCode::OK,
        &GroupsPage {
            shell: with_notice(who.shell(), &q),
            rows,
        },
    )
}

async fn group_create(
    State(app): State<AppState>,
    SystemAdministrator(who): SystemAdministrator,
    meta: Meta,
    body: bytes::Bytes,
) -> Response {
    let form = or_page!(who.form(&body), who);
    let name = form.text("name").trim().to_owned();
    let entries =
        json!([{"usergroup": name, "do": [{"createUserGroup": {"description": form.text("description")}}]}]);
    match run_entry(&app, &who, &meta, entries, "User group created.").await {
        Ok(n) => back(&format!("/admin/groups/{}", enc(&name)), n),
        Err(e) => error_page(Some(who.shell()), &e),
    }
}

#[derive(Template)]
#[template(path = "admin/group.html")]
struct GroupPage {
    shell: Shell,
    name: String,
    action: String,
    description: String,
    members: Vec<MemberRow>,
    profiles: Vec<String>,
    all_profiles: Vec<String>,
}

async fn group_page(
    State(app): State<AppState>,
    GroupAdministrator(who): GroupAdministrator,
    Path(name): Path<String>,
    Query(q): Query<ListQuery>,
) -> Response {
    let shell = with_notice(who.shell(), &q);
    let group = or_page!(who.administration(&app).managed_user_group(&name).await, who);
    let directory = who.administration(&app);
    let members = or_page!(directory.everyone(Some(&group.name), true).await, who);
    let profiles = or_page!(directory.linked(&group).await, who);
    let all_profiles = or_page!(directory.groups().await, who)
        .into_iter()
        .filter(|(g, _)| g.kind == GroupKind::ProductProfile)
        .map(|(g, _)| g.name)
        .collect();
    render(
        StatusCode::OK,
        &GroupPage {
            shell,
            action: format!("/admin/groups/{}", enc(&group.name)),
            description: group.description.clone(),
            name: group.name,
            members: members
                .into_iter()
                .map(|(u, _)| MemberRow {
                    link: format!("/admin/users/{}", enc(&u.email)),
                    email: u.email,
                    through: "direct".into(),
                })
                .collect(),
            profiles,
            all_profiles,
        },
    )
}

async fn group_change(
    State(app): State<AppState>,
    GroupAdministrator(who): GroupAdministrator,
    meta: Meta,
    Path(name): Path<String>,
    body: bytes::Bytes,
) -> Response {
    let form = or_page!(who.form(&body), who);
    let group = or_page!(who.administration(&app).managed_user_group(&name).await, who);
    let here = format!("/admin/groups/{}", enc(&group.name));
    let step = match form.text("action").as_str() {
        "add_member" => json!({"add": {"user": [form.text("email").trim()]}}),
        "remove_member" => json!({"remove": {"user": [form.text("email").trim()]}}),
        // Linking a profile grants its access: the profile's administrators decide that.
        "link" | "unlink" if !who.admin.holds(AdminRole::SystemAdmin) => {
            return error_page(
                Some(who.shell()),
                &Error::Forbidden("linking product profiles needs the system administrator role".into()),
            )
        }
        "link" => json!({"add": {"productConfiguration": [form.text("profile")]}}),
        "unlink" => json!({"remove": {"productConfiguration": [form.text("profile")]}}),
        "delete" if !who.admin.holds(AdminRole::SystemAdmin) => {
            return error_page(
                Some(who.shell()),
                &Error::Forbidden("deleting user groups needs the system administrator role".into()),
            )
        }
        "delete" => {
            return match run_entry(
                &app,
                &who,
                &meta,
                json!([{"usergroup": group.name, "do": [{"deleteUserGroup": {}}]}]),
                "",
            )
            .await
            {
                Ok(_) => back("/admin/groups", "User group deleted."),
                Err(e) => error_page(Some(who.shell()), &e),
            }
        }
        other => {
            return error_page(
                Some(who.shell()),
                &Error::invalid_request(format!("unknown action {other:?}")),
            )
        }
    };
    match run_entry(
        &app,
        &who,
        &meta,
        json!([{"usergroup": group.name, "do": [step]}]),
        "Saved.",
    )
    .await
    {
        Ok(n) => back(&here, n),
        Err(e) => error_page(Some(who.shell()), &e),
    }
}

// ----- roles -----------------------------------------------------------------------------------

struct RoleRow {
    email: String,
    role: &'static str,
    role_key: &'static str,
    target: String,
    target_key: String,
}

struct RoleChoice {
    key: &'static str,
    label: &'static str,
}

#[derive(Template)]
#[template(path = "admin/roles.html")]
struct RolesPage {
    shell: Shell,
    rows: Vec<RoleRow>,
    choices: Vec<RoleChoice>,
}

async fn roles(
    State(app): State<AppState>,
    SystemAdministrator(who): SystemAdministrator,
    Query(q): Query<ListQuery>,
) -> Response {
    let people = or_page!(who.system(&app), who);
    let users = or_page!(people.administration().everyone(None, true).await, who);
    let groups = or_page!(people.administration().groups().await, who);
    let mut rows = Vec::new();
    for (u, _) in &users {
        if u.system_admin {
            rows.push(RoleRow {
                email: u.email.clone(),
                role: AdminRole::SystemAdmin.label(),
                role_key: "",
                target: "(the organisation's first administrator)".into(),
                target_key: String::new(),
            });
        }
        let grants = or_page!(people.role_grants(u).await, who);
        for g in grants {
            let target = match g.role {
                AdminRole::ProfileAdmin | AdminRole::UserGroupAdmin => groups
                    .iter()
                    .find(|(x, _)| x.id.to_string() == g.target)
                    .map_or_else(|| g.target.clone(), |(x, _)| x.name.clone()),
                _ => g.target.clone(),
            };
            rows.push(RoleRow {
                email: u.email.clone(),
                role: g.role.label(),
                role_key: g.role.as_str(),
                target,
                target_key: g.target,
            });
        }
    }
    render(
        StatusCode::OK,
        &RolesPage {
            shell: with_notice(who.shell(), &q),
            rows,
            choices: AdminRole::ALL
                .iter()
                .map(|r| RoleChoice {
                    key: r.as_str(),
                    label: r.label(),
                })
                .collect(),
        },
    )
}

async fn role_change(
    State(app): State<AppState>,
    SystemAdministrator(who): SystemAdministrator,
    meta: Meta,
    body: bytes::Bytes,
) -> Response {
    let form = or_page!(who.form(&body), who);
    let outcome = async {
        let people = who.system(&app)?;
        let held = match form.text("action").as_str() {
            "grant" => true,
            "revoke" => false,
            other => return Err(Error::invalid_request(format!("unknown action {other:?}"))),
        };
        let role =
            AdminRole::parse(&form.text("role")).ok_or_else(|| Error::invalid_request("choose a role"))?;
        let user = people.user(form.text("email").trim()).await?;
        let raw_target = form.text("target").trim().to_owned();
        let target = match role {
            AdminRole::SystemAdmin | AdminRole::Developer => String::new(),
            AdminRole::ProductAdmin if raw_target.is_empty() => {
                return Err(Error::invalid_request(
                    "a product administrator needs a product context",
                ))
            }
            AdminRole::ProductAdmin => raw_target,
            AdminRole::ProfileAdmin | AdminRole::UserGroupAdmin if held => {
                let (g, _) = people.administration().group(&raw_target).await?;
                let kind = if role == AdminRole::ProfileAdmin {
                    GroupKind::ProductProfile
                } else {
                    GroupKind::UserGroup
                };
                if g.kind != kind {
                    return Err(Error::invalid_request(format!(
                        "{raw_target:?} is not a {}",
                        kind.as_str()
                    )));
                }
                g.id.to_string()
            }
            // Revoking names the stored target as listed.
            _ => raw_target,
        };
        people
            .set_role(&user, role, target, held, &who.context(&meta))
            .await?;
        Ok(if held { "Role granted." } else { "Role revoked." })
    };
    match outcome.await {
        Ok(n) => back("/admin/roles", n),
        Err(e) => error_page(Some(who.shell()), &e),
    }
}

// ----- CSV import ------------------------------------------------------------------------------

struct ImportRow {
    line: u64,
    email: String,
    outcome: String,
    ok: bool,
}

#[derive(Template)]
#[template(path = "admin/import.html")]
struct ImportPage {
    shell: Shell,
    csv: String,
    rows: Vec<ImportRow>,
    applied: bool,
    ready: bool,
}

async fn import_page(SystemAdministrator(who): SystemAdministrator) -> Response {
    render(
        StatusCode::OK,
        &ImportPage {
            shell: who.shell(),
            csv: "email,firstname,lastname,country,type,groups\n".into(),
            rows: Vec::new(),
            applied: false,
            ready: false,
        },
    )
}

async fn import_run(
    State(app): State<AppState>,
    SystemAdministrator(who): SystemAdministrator,
    meta: Meta,
    body: bytes::Bytes,
) -> Response {
    let form = or_page!(who.form(&body), who);
    let csv = form.text("csv");
    let apply = form.text("apply") == "1";
    let entries = or_page!(ims_identity::import::parse_users_csv(&csv), who);
    let mut rows = Vec::new();
    // Ten entries per request, as the API takes them; the preview runs in test mode.
    for chunk in entries.chunks(ims_identity::umapi::MAX_ENTRIES) {
        let batch = Value::Array(chunk.iter().map(|r| r.entry.clone()).collect());
        let result = or_page!(act(&app, &who, &meta, batch, !apply).await, who);
        let errors = result["errors"].as_array().cloned().unwrap_or_default();
        for (i, row) in chunk.iter().enumerate() {
            let error = errors.iter().find(|e| e["index"].as_u64() == Some(i as u64));
            rows.push(ImportRow {
                line: row.line,
                email: row.email.clone(),
                ok: error.is_none(),
                outcome: match error {
                    None if apply => "imported".into(),
                    None => "will be imported".into(),
                    Some(e) => format!(
                        "{} ({})",
                        e["message"].as_str().unwrap_or_default(),
                        e["errorCode"].as_str().unwrap_or_default()
                    ),
                },
            });
        }
    }
    let mut shell = who.shell();
    let failed = rows.iter().filter(|r| !r.ok).count();
    shell.notice = Some(if apply {
        format!("{} row(s) imported, {failed} refused.", rows.len() - failed)
    } else {
        format!(
            "Preview: nothing was changed. {} row(s) would be imported, {failed} refused.",
            rows.len() - failed
        )
    });
    render(
        StatusCode::OK,
        &ImportPage {
            shell,
            ready: !apply && failed < rows.len(),
            csv,
            rows,
            applied: apply,
        },
    )
}

// ----- audit log -------------------------------------------------------------------------------

struct AuditRow {
    at: String,
    actor: String,
    action: String,
    target: String,
    outcome: String,
    source: String,
    request_id: String,
    details: String,
}

#[derive(Template)]
#[template(path = "admin/audit.html")]
struct AuditPage {
    shell: Shell,
    action: String,
    rows: Vec<AuditRow>,
}

async fn audit(
    State(app): State<AppState>,
    SystemAdministrator(who): SystemAdministrator,
    Query(q): Query<ListQuery>,
) -> Response {
    let action = q.action.clone().unwrap_or_default().trim().to_owned();
    let query = AuditQuery {
        action_prefix: (!action.is_empty()).then(|| action.clone()),
        limit: 200,
    };
    let events = match who.system(&app) {
        Ok(people) => people.audit(&query).await,
        Err(e) => Err(e),
    };
    let events = or_page!(events, who);
    render(
        StatusCode::OK,
        &AuditPage {
            shell: with_notice(who.shell(), &q),
            action,
            rows: events
                .into_iter()
                .map(|e| AuditRow {
                    at: ims_core::time::iso8601(e.at),
                    actor: e.actor,
                    action: e.action,
                    target: e.target,
                    outcome: e.outcome,
                    source: e.source.unwrap_or_default(),
                    request_id: e.request_id.unwrap_or_default(),
                    details: e.details.to_string(),
                })
                .collect(),
        },
    )
}
