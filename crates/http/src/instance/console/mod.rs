//! The instance console: server-rendered pages where an operator signs in, and where an
//! administrator (ADMINISTRATION right) lists operators with their authentication type and
//! whether the account is disabled (the view that shows who a migration affects), edits them, and
//! reads the groups and named rights, and follows a migration to the IMS (giving people the emails
//! it needs). Pages work without JavaScript; every change goes through the same operator write path
//! as the SOAP API (emails: the migration API's own path).
//!
//! A console session is an ordinary instance session, kept in an HttpOnly cookie scoped to
//! `/console` (so it is never a SOAP credential); forms carry a token derived from it (CSRF).

use askama::Template;
use axum::extract::{FromRequestParts, Path, Query, State};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::Router;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use http::request::Parts;
use http::{HeaderMap, HeaderValue, StatusCode};
use serde::Deserialize;

use ims_campaign::fault::{Fault, FaultCode};
use ims_campaign::model::{AuthPath, AuthType, Operator, OperatorGroup};
use ims_campaign::operators::{OperatorEdit, OperatorKey, WriteMode, Written};
use ims_campaign::service::{holds, Caller, InstanceKind, ADMINISTRATION};
use ims_core::secret::{self, Secret};
use ims_core::Now;
use ims_wire::migration::EmailAssignment;
use ims_wire::rights::NAMED_RIGHTS;

use crate::instance::soap::{client_headers, InstanceState};
use crate::pages::{self, cookie, render, see_other, stylesheet, FormData};
use crate::Meta;

use migration::{migration_emails, migration_emails_submit, migration_page};
use operators::{operator_create, operator_delete, operator_new, operator_show, operator_update, operators};
use settings::{groups, ims_page, restrictions, rights};

const SESSION_COOKIE: &str = "ims_console";
/// Double-submit token of the sign-in form (there is no session yet to derive one from).
const LOGIN_CSRF_COOKIE: &str = "ims_console_login";
const PAGE_SIZE: u32 = 50;
/// What a sign-in through the IMS keeps in the browser between leaving and coming back: state,
/// nonce and PKCE verifier (the browser's own secrets, HttpOnly, ten minutes).
const IMS_FLOW_COOKIE: &str = "ims_console_flow";
const IMS_FLOW_SECS: i64 = 600;
/// What the last sign-in through the IMS changed, shown once on the home page.
const NOTICE_COOKIE: &str = "ims_console_notice";

pub fn routes() -> Router<InstanceState> {
    Router::new()
        .route("/console", get(|| async { Redirect::to("/console/") }))
        .route("/console/", get(home))
        .route("/console/login", get(login_page).post(login_submit))
        .route("/console/logout", post(logout))
        .route("/console/ims/login", get(ims_login))
        .route("/console/ims/callback", get(ims_callback))
        .route("/console/ims/backchannel-logout", post(backchannel_logout))
        .route("/console/operators", get(operators).post(operator_create))
        .route("/console/operators/new", get(operator_new))
        .route(
            "/console/operators/{id}",
            get(operator_show).post(operator_update),
        )
        .route("/console/operators/{id}/delete", post(operator_delete))
        .route("/console/groups", get(groups))
        .route("/console/rights", get(rights))
        .route("/console/restrictions", get(restrictions))
        .route("/console/ims", get(ims_page))
        .route("/console/migration", get(migration_page))
        .route(
            "/console/migration/emails",
            get(migration_emails).post(migration_emails_submit),
        )
        .route("/console/static/console.css", get(stylesheet))
        .layer(axum::middleware::map_response(console_headers))
}

/// What the frame of every page shows.
struct Shell {
    instance: String,
    build: String,
    message_center: bool,
    operator: Option<String>,
    admin: bool,
    csrf: String,
    notice: Option<String>,
    /// The migration window's announcement, on every page.
    window: Option<String>,
    /// Where people are managed once native operator management is restricted.
    admin_console: String,
}
impl Shell {
    fn anonymous(st: &InstanceState) -> Self {
        let info = st.instance.info();
        Shell {
            instance: info.name.clone(),
            build: info.build.to_string(),
            message_center: info.kind == InstanceKind::MessageCenter,
            operator: None,
            admin: false,
            csrf: String::new(),
            notice: None,
            window: st.instance.migration().notice(Now::system()),
            admin_console: st
                .instance
                .ims_url()
                .map_or_else(String::new, |u| format!("{u}/admin/")),
        }
    }

    fn of(st: &InstanceState, who: &SignedIn) -> Self {
        Shell {
            operator: Some(who.op.login.clone()),
            admin: who.admin(),
            csrf: csrf_for(&who.token),
            ..Shell::anonymous(st)
        }
    }

    fn with_notice(mut self, notice: Option<&str>) -> Self {
        self.notice = notice.map(str::to_owned);
        self
    }
}

#[derive(Template)]
#[template(path = "console/error.html")]
struct ErrorPage {
    shell: Shell,
    heading: String,
    message: String,
}

/// A refusal as a page, with the status that says what kind it is. Server faults keep their
/// details in the log.
fn fault_page(shell: Shell, fault: &Fault) -> Response {
    crate::error::soap::log_fault(fault);
    let (status, heading) = match fault.code {
        FaultCode::Forbidden => (StatusCode::FORBIDDEN, "Not allowed"),
        FaultCode::Restricted => (StatusCode::FORBIDDEN, "Restricted"),
        FaultCode::NotFound => (StatusCode::NOT_FOUND, "Not found"),
        FaultCode::SessionExpired => (StatusCode::UNAUTHORIZED, "Signed out"),
        _ if fault.client => (StatusCode::UNPROCESSABLE_ENTITY, "Not saved"),
        _ => (StatusCode::INTERNAL_SERVER_ERROR, "Something went wrong"),
    };
    render(
        status,
        &ErrorPage {
            shell,
            heading: heading.into(),
            message: fault.message.clone(),
        },
    )
}

/// The anti-forgery token of a signed-in console: derived from the session token, which only the
/// browser holding the HttpOnly cookie knows.
fn csrf_for(session_token: &str) -> String {
    pages::form_token("console-csrf", &[session_token])
}

fn caller(meta: &Meta, headers: &HeaderMap) -> Caller {
    Caller {
        source: meta.source.clone(),
        client: client_headers(headers),
    }
}

fn set_cookie(st: &InstanceState, name: &str, value: &str, max_age: Option<i64>) -> HeaderValue {
    pages::cookie_line(name, value, "/console", st.tls, max_age)
}

/// Forms post to the console only, and redirects stay on it.
async fn console_headers(resp: Response) -> Response {
    pages::harden(resp, "form-action 'self'; ")
}

/// A signed-in operator, from the console cookie. Obtaining one is the only way into a page.
struct SignedIn {
    op: Operator,
    token: String,
    rights: Vec<String>,
    path: AuthPath,
}

impl SignedIn {
    fn admin(&self) -> bool {
        holds(&self.rights, ADMINISTRATION)
    }

    /// Checks a form's anti-forgery token.
    fn check_form(&self, form: &FormData) -> Result<(), Fault> {
        let sent = form.get("csrf").unwrap_or_default();
        if secret::equal_ct(sent, &csrf_for(&self.token)) {
            Ok(())
        } else {
            Err(Fault::forbidden(
                "the form is out of date; reload the page and try again",
            ))
        }
    }
}

impl FromRequestParts<InstanceState> for SignedIn {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, st: &InstanceState) -> Result<Self, Response> {
        let meta = Meta::from_request_parts(parts, st)
            .await
            .unwrap_or_else(|never| match never {});
        let to_login = || see_other("/console/login", vec![]);
        let token = cookie(&parts.headers, SESSION_COOKIE).ok_or_else(to_login)?;
        let inst = &st.instance;
        let (op, session) = inst
            .sessions()
            .session_operator(&token, None, meta.source.as_deref(), meta.now)
            .await
            .map_err(|_| to_login())?;
        // Forbidding rich-client access takes effect on open console sessions too.
        let console_path = matches!(session.auth_path, AuthPath::Native | AuthPath::Ims);
        if op.forbid_rich_client || !console_path {
            return Err(to_login());
        }
        let rights = inst
            .sessions()
            .effective_rights(&op)
            .await
            .map_err(|f| fault_page(Shell::anonymous(st), &f))?;
        inst.sessions().note_call(
            &op,
            "console",
            session.auth_path,
            &caller(&meta, &parts.headers),
            meta.now,
        );
        Ok(SignedIn {
            op,
            token,
            rights,
            path: session.auth_path,
        })
    }
}

/// A signed-in operator holding ADMINISTRATION: what the operator pages need.
struct Administrator(SignedIn);

impl FromRequestParts<InstanceState> for Administrator {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, st: &InstanceState) -> Result<Self, Response> {
        let who = SignedIn::from_request_parts(parts, st).await?;
        if !who.admin() {
            return Err(fault_page(
                Shell::of(st, &who),
                &Fault::forbidden("managing operators needs the ADMINISTRATION right"),
            ));
        }
        Ok(Administrator(who))
    }
}

#[derive(Template)]
#[template(path = "console/login.html")]
struct LoginPage {
    shell: Shell,
    csrf: String,
    login: String,
    error: Option<String>,
    /// Sign-in through the IMS is configured.
    ims: bool,
}

fn login_form(st: &InstanceState, status: StatusCode, login: String, error: Option<String>) -> Response {
    let csrf = secret::generate("").expose().to_owned();
    let mut resp = render(
        status,
        &LoginPage {
            shell: Shell::anonymous(st),
            csrf: csrf.clone(),
            login,
            error,
            ims: st.instance.connection().is_some(),
        },
    );
    resp.headers_mut().append(
        http::header::SET_COOKIE,
        set_cookie(st, LOGIN_CSRF_COOKIE, &csrf, Some(3600)),
    );
    resp
}

async fn login_page(State(st): State<InstanceState>) -> Response {
    login_form(&st, StatusCode::OK, String::new(), None)
}

async fn login_submit(
    State(st): State<InstanceState>,
    meta: Meta,
    headers: HeaderMap,
    body: bytes::Bytes,
) -> Response {
    let form = FormData::parse(&body);
    let login = form.text("login").trim().to_owned();
    let expected = cookie(&headers, LOGIN_CSRF_COOKIE).unwrap_or_default();
    let sent = form.get("csrf").unwrap_or_default();
    if expected.is_empty() || !secret::equal_ct(sent, &expected) {
        return login_form(
            &st,
            StatusCode::FORBIDDEN,
            login,
            Some("The sign-in form expired; please try again.".into()),
        );
    }
    let password = Secret::new(form.text("password"));
    match st
        .instance
        .sessions()
        .console_logon(&login, &password, meta.now, &caller(&meta, &headers))
        .await
    {
        Ok((tokens, _)) => see_other(
            "/console/",
            vec![
                set_cookie(&st, SESSION_COOKIE, tokens.session.expose(), None),
                set_cookie(&st, LOGIN_CSRF_COOKIE, "", Some(0)),
            ],
        ),
        Err(f) => {
            let status = if f.code == FaultCode::InvalidLogin {
                StatusCode::UNAUTHORIZED
            } else {
                StatusCode::FORBIDDEN
            };
            login_form(&st, status, login, Some(f.message))
        }
    }
}

#[derive(Template)]
#[template(path = "console/signed_out.html")]
struct SignedOutPage {
    shell: Shell,
    ims_logout: String,
}

async fn logout(State(st): State<InstanceState>, who: SignedIn, body: bytes::Bytes) -> Response {
    if let Err(f) = who.check_form(&FormData::parse(&body)) {
        return fault_page(Shell::of(&st, &who), &f);
    }
    if let Err(f) = st.instance.sessions().logoff(&who.token).await {
        return fault_page(Shell::of(&st, &who), &f);
    }
    let clear = set_cookie(&st, SESSION_COOKIE, "", Some(0));
    match (who.path, st.instance.connection()) {
        // Signed in through the IMS: the person may end that session too. A link, not a
        // redirect: the pages' policy keeps form submissions on the instance.
        (AuthPath::Ims, Some(conn)) => {
            let mut resp = render(
                StatusCode::OK,
                &SignedOutPage {
                    shell: Shell::anonymous(&st),
                    ims_logout: conn.logout_url(),
                },
            );
            resp.headers_mut().append(http::header::SET_COOKIE, clear);
            resp
        }
        _ => see_other("/console/login", vec![clear]),
    }
}

/// `POST /console/ims/backchannel-logout` (form: `logout_token`): the IMS says a person signed
/// out (OpenID Connect Back-Channel Logout 1.0): 200 once their sessions here ended, 400 with an
/// OAuth-style error for a token that is not valid.
async fn backchannel_logout(State(st): State<InstanceState>, meta: Meta, body: bytes::Bytes) -> Response {
    let form = FormData::parse(&body);
    let token = form.get("logout_token").unwrap_or_default();
    let result = if token.is_empty() {
        Err(Fault::bad_request("logout_token is missing"))
    } else {
        st.instance.sessions().backchannel_logout(token, meta.now).await
    };
    let (status, body) = match result {
        Ok(_) => (StatusCode::OK, serde_json::json!({})),
        Err(f) if f.client => (
            StatusCode::BAD_REQUEST,
            serde_json::json!({"error": "invalid_request", "error_description": f.message}),
        ),
        Err(f) => (
            StatusCode::SERVICE_UNAVAILABLE,
            serde_json::json!({"error": "temporarily_unavailable", "error_description": f.message}),
        ),
    };
    let mut resp = (status, axum::Json(body)).into_response();
    resp.headers_mut()
        .insert(http::header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

/// `GET /console/ims/login`: off to the IMS, with the state, nonce and verifier kept here.
async fn ims_login(State(st): State<InstanceState>) -> Response {
    match st.instance.sessions().start_ims_sign_in() {
        Ok(start) => {
            let kept = format!("{}.{}.{}", start.state, start.nonce, start.verifier);
            see_other(
                &start.url,
                vec![set_cookie(&st, IMS_FLOW_COOKIE, &kept, Some(IMS_FLOW_SECS))],
            )
        }
        Err(f) => fault_page(Shell::anonymous(&st), &f),
    }
}

#[derive(Deserialize)]
struct CallbackQuery {
    code: Option<String>,
    state: Option<String>,
    error: Option<String>,
    iss: Option<String>,
}

/// `GET /console/ims/callback`: the IMS sends the browser back with a code (or an error).
async fn ims_callback(
    State(st): State<InstanceState>,
    meta: Meta,
    headers: HeaderMap,
    Query(q): Query<CallbackQuery>,
) -> Response {
    let refuse = |message: String| {
        let mut resp = login_form(&st, StatusCode::FORBIDDEN, String::new(), Some(message));
        resp.headers_mut().append(
            http::header::SET_COOKIE,
            set_cookie(&st, IMS_FLOW_COOKIE, "", Some(0)),
        );
        resp
    };
    let kept = cookie(&headers, IMS_FLOW_COOKIE).unwrap_or_default();
    let mut parts = kept.splitn(3, '.');
    let expired = "The sign-in expired or was started in another browser; please try again.";
    let (Some(state), Some(nonce), Some(verifier)) = (parts.next(), parts.next(), parts.next()) else {
        return refuse(expired.into());
    };
    // The state ties the answer to the browser that left: a forged callback carries another.
    let sent_state = q.state.as_deref().unwrap_or_default();
    if [state, nonce, verifier].iter().any(|p| p.is_empty()) || !secret::equal_ct(sent_state, state) {
        return refuse(expired.into());
    }
    if let Some(error) = q.error.as_deref() {
        // Only the code is shown: the description is the sender's text.
        let code: String = error
            .chars()
            .filter(|c| c.is_ascii_lowercase() || *c == '_')
            .take(40)
            .collect();
        return refuse(format!("The identity service did not sign you in ({code})."));
    }
    let Some(code) = q.code.as_deref().filter(|c| !c.is_empty()) else {
        return refuse("The identity service sent no sign-in code; please try again.".into());
    };
    match st
        .instance
        .sessions()
        .finish_ims_sign_in(
            code,
            verifier,
            nonce,
            q.iss.as_deref(),
            meta.now,
            &caller(&meta, &headers),
        )
        .await
    {
        Ok((tokens, _, report)) => {
            let notice = URL_SAFE_NO_PAD.encode(format!("Signed in through the IMS: {}.", report.summary()));
            see_other(
                "/console/",
                vec![
                    set_cookie(&st, SESSION_COOKIE, tokens.session.expose(), None),
                    set_cookie(&st, IMS_FLOW_COOKIE, "", Some(0)),
                    set_cookie(&st, NOTICE_COOKIE, &notice, Some(60)),
                ],
            )
        }
        Err(f) if f.client => refuse(f.message),
        Err(f) => fault_page(Shell::anonymous(&st), &f),
    }
}

#[derive(Template)]
#[template(path = "console/home.html")]
struct HomePage {
    shell: Shell,
    login: String,
    label: String,
    auth_type: &'static str,
    groups: Vec<String>,
    rights: Vec<String>,
}

async fn home(State(st): State<InstanceState>, headers: HeaderMap, who: SignedIn) -> Response {
    let mut rights: Vec<String> = who.rights.iter().map(|r| right_label(r).to_owned()).collect();
    rights.sort();
    let notice = cookie(&headers, NOTICE_COOKIE)
        .and_then(|n| URL_SAFE_NO_PAD.decode(n).ok())
        .and_then(|b| String::from_utf8(b).ok());
    let mut resp = render(
        StatusCode::OK,
        &HomePage {
            shell: Shell::of(&st, &who).with_notice(notice.as_deref()),
            login: who.op.login.clone(),
            label: who.op.label.clone(),
            auth_type: who.op.auth_type.label(),
            groups: who.op.groups.clone(),
            rights,
        },
    );
    if notice.is_some() {
        resp.headers_mut().append(
            http::header::SET_COOKIE,
            set_cookie(&st, NOTICE_COOKIE, "", Some(0)),
        );
    }
    resp
}

fn right_label(name: &str) -> &str {
    ims_wire::rights::right(name).map_or(name, |r| r.label)
}

/// The operator groups, as the signed-in administrator may read them.
async fn operator_groups(st: &InstanceState, who: &SignedIn) -> Result<Vec<OperatorGroup>, Fault> {
    st.instance
        .operators()
        .operator_admin(&who.op)
        .await?
        .groups()
        .await
}

mod migration;
mod operators;
mod settings;
