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

use ims_campaign::fault::Fault;
use ims_campaign::model::{AuthPath, AuthType, Operator, OperatorGroup};
use ims_campaign::operators::{OperatorEdit, OperatorKey, WriteMode, Written};
use ims_campaign::restrictions::RESTRICTED_CODE;
use ims_campaign::service::{holds, Caller, InstanceKind, ADMINISTRATION};
use ims_core::secret::{self, Secret};
use ims_core::Now;
use ims_wire::migration::EmailAssignment;
use ims_wire::rights::NAMED_RIGHTS;

use crate::campaign::{client_headers, InstanceState};
use crate::pages::{self, cookie, render, see_other, stylesheet, FormData};
use crate::Meta;

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
            window: st.instance.notice(Now::system()),
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
    let (status, heading) = match fault.code {
        "XSV-350122" => (StatusCode::FORBIDDEN, "Not allowed"),
        RESTRICTED_CODE => (StatusCode::FORBIDDEN, "Restricted"),
        "XSV-350123" => (StatusCode::NOT_FOUND, "Not found"),
        "XSV-350008" => (StatusCode::UNAUTHORIZED, "Signed out"),
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
            .session_operator(&token, None, meta.source.as_deref(), meta.now)
            .await
            .map_err(|_| to_login())?;
        // Forbidding rich-client access takes effect on open console sessions too.
        let console_path = matches!(session.auth_path, AuthPath::Native | AuthPath::Ims);
        if op.forbid_rich_client || !console_path {
            return Err(to_login());
        }
        let rights = inst
            .effective_rights(&op)
            .await
            .map_err(|f| fault_page(Shell::anonymous(st), &f))?;
        inst.note_call(
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
            let status = if f.code == "XSV-350024" {
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
    if let Err(f) = st.instance.logoff(&who.token).await {
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
        st.instance.backchannel_logout(token, meta.now).await
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
    match st.instance.start_ims_sign_in() {
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

struct OperatorRow {
    id: i64,
    login: String,
    label: String,
    email: String,
    auth_type: &'static str,
    disabled: bool,
    builtin: bool,
    groups: String,
}

#[derive(Template)]
#[template(path = "console/operators.html")]
struct OperatorsPage {
    shell: Shell,
    /// New operators would be native: the restriction forbids creating them.
    creation_restricted: bool,
    search: String,
    total: i64,
    rows: Vec<OperatorRow>,
    page: u32,
    pages: u32,
    previous: Option<u32>,
    next: Option<u32>,
}

#[derive(Debug, Deserialize)]
struct ListQuery {
    q: Option<String>,
    page: Option<u32>,
    deleted: Option<String>,
}

async fn operators(
    State(st): State<InstanceState>,
    Administrator(who): Administrator,
    Query(q): Query<ListQuery>,
) -> Response {
    let search = q.q.unwrap_or_default().trim().to_owned();
    let page = q.page.unwrap_or(1).max(1);
    let offset = (page - 1).saturating_mul(PAGE_SIZE);
    let found = match st.instance.operator_admin(&who.op).await {
        Ok(admin) => {
            admin
                .operators_page((!search.is_empty()).then_some(search.as_str()), offset, PAGE_SIZE)
                .await
        }
        Err(f) => Err(f),
    };
    let (ops, total) = match found {
        Ok(r) => r,
        Err(e) => return fault_page(Shell::of(&st, &who), &e),
    };
    let pages = u32::try_from(
        u64::try_from(total.max(1))
            .unwrap_or(1)
            .div_ceil(u64::from(PAGE_SIZE)),
    )
    .unwrap_or(u32::MAX);
    let notice = q.deleted.map(|login| format!("Operator {login} deleted."));
    render(
        StatusCode::OK,
        &OperatorsPage {
            creation_restricted: st.instance.restrictions().operator_management,
            shell: Shell::of(&st, &who).with_notice(notice.as_deref()),
            search,
            total,
            rows: ops
                .into_iter()
                .map(|o| OperatorRow {
                    id: o.id,
                    login: o.login,
                    label: o.label,
                    email: o.email.unwrap_or_default(),
                    auth_type: o.auth_type.label(),
                    disabled: o.disabled,
                    builtin: o.builtin,
                    groups: o.groups.join(", "),
                })
                .collect(),
            page,
            pages,
            previous: (page > 1).then(|| page - 1),
            next: (page < pages).then(|| page + 1),
        },
    )
}

struct Choice {
    name: String,
    label: String,
    checked: bool,
}

#[derive(Template)]
#[template(path = "console/operator.html")]
struct OperatorPage {
    shell: Shell,
    id: Option<i64>,
    login: String,
    label: String,
    email: String,
    auth_type: &'static str,
    ims_id: String,
    native: bool,
    builtin: bool,
    disabled: bool,
    forbid_rich_client: bool,
    trusted_ip_mask: String,
    security_zone: String,
    groups: Vec<Choice>,
    rights: Vec<Choice>,
    created: String,
    modified: String,
    error: Option<String>,
    /// The restriction forbids changing this operator (or creating one): the form is shown
    /// read-only with the reason.
    locked: bool,
    /// The build, not the configuration, keeps the restrictions on.
    forced_by_build: bool,
}

/// The operator form: from the stored operator, or (after a refused change) from what was sent.
async fn operator_form(
    st: &InstanceState,
    who: &SignedIn,
    shell: Shell,
    stored: Option<&Operator>,
    sent: Option<&FormData>,
    error: Option<String>,
) -> Response {
    let all_groups = match operator_groups(st, who).await {
        Ok(g) => g,
        Err(f) => return fault_page(shell, &f),
    };
    let blank = Operator::native("", None, Vec::new(), None, Now::from_millis(0));
    let restrictions = st.instance.restrictions();
    let op = stored.unwrap_or(&blank);
    let text = |field: &str, stored: String| sent.map_or(stored, |f| f.text(field));
    let checked = |field: &str, stored: bool| sent.map_or(stored, |f| f.checked(field));
    let chosen = |field: &str, stored: &[String]| sent.map_or_else(|| stored.to_vec(), |f| f.all(field));
    let groups_on = chosen("group", &op.groups);
    let rights_on = chosen("right", &op.rights);
    let status = if error.is_some() {
        StatusCode::UNPROCESSABLE_ENTITY
    } else {
        StatusCode::OK
    };
    render(
        status,
        &OperatorPage {
            shell,
            id: stored.map(|o| o.id),
            login: text("login", op.login.clone()),
            label: text("label", op.label.clone()),
            email: text("email", op.email.clone().unwrap_or_default()),
            auth_type: op.auth_type.label(),
            ims_id: op.ims_id.clone().unwrap_or_default(),
            native: op.auth_type == AuthType::Native,
            builtin: op.builtin,
            disabled: checked("disabled", op.disabled),
            forbid_rich_client: checked("forbidRichClient", op.forbid_rich_client),
            trusted_ip_mask: text("trustedIpMask", op.trusted_ip_mask.clone().unwrap_or_default()),
            security_zone: text("securityZone", op.security_zone.clone().unwrap_or_default()),
            groups: all_groups
                .iter()
                .map(|g| Choice {
                    name: g.name.clone(),
                    label: g.label.clone(),
                    checked: groups_on.contains(&g.name),
                })
                .collect(),
            rights: NAMED_RIGHTS
                .iter()
                .map(|r| Choice {
                    name: r.name.into(),
                    label: r.label.into(),
                    checked: rights_on.iter().any(|n| n == r.name),
                })
                .collect(),
            created: ims_core::time::iso8601(op.created_at),
            modified: ims_core::time::iso8601(op.modified_at),
            error,
            locked: restrictions
                .check_operator_change(stored, op.auth_type == AuthType::Native)
                .is_err(),
            forced_by_build: restrictions.forced_by_build,
        },
    )
    .into_response()
}

/// The change a submitted operator form asks for: every field of the form, as it stands.
fn edit_from(form: &FormData, native: bool) -> OperatorEdit {
    let password = form.text("password");
    OperatorEdit {
        login: Some(form.text("login")),
        label: Some(form.text("label")),
        email: Some(Some(form.text("email"))),
        password: (native && !password.is_empty()).then(|| Secret::new(password)),
        disabled: Some(form.checked("disabled")),
        forbid_rich_client: Some(form.checked("forbidRichClient")),
        trusted_ip_mask: Some(Some(form.text("trustedIpMask"))),
        security_zone: Some(Some(form.text("securityZone"))),
        groups: Some(form.all("group")),
        rights: Some(form.all("right")),
    }
}

async fn operator_new(State(st): State<InstanceState>, Administrator(who): Administrator) -> Response {
    operator_form(&st, &who, Shell::of(&st, &who), None, None, None).await
}

async fn operator_create(
    State(st): State<InstanceState>,
    Administrator(who): Administrator,
    meta: Meta,
    headers: HeaderMap,
    body: bytes::Bytes,
) -> Response {
    let form = FormData::parse(&body);
    if let Err(f) = who.check_form(&form) {
        return fault_page(Shell::of(&st, &who), &f);
    }
    let login = form.text("login").trim().to_owned();
    let result = st
        .instance
        .change_operator(
            &who.op,
            &OperatorKey::Login(login),
            Some(WriteMode::Insert),
            edit_from(&form, true),
            meta.now,
            &caller(&meta, &headers),
        )
        .await;
    match result {
        Ok(Written::Created(id)) => see_other(&format!("/console/operators/{id}?saved=1"), vec![]),
        Ok(_) => see_other("/console/operators", vec![]),
        Err(f) if f.client && !matches!(f.code, "XSV-350122" | RESTRICTED_CODE) => {
            operator_form(
                &st,
                &who,
                Shell::of(&st, &who),
                None,
                Some(&form),
                Some(f.message),
            )
            .await
        }
        Err(f) => fault_page(Shell::of(&st, &who), &f),
    }
}

#[derive(Debug, Deserialize)]
struct ShowQuery {
    saved: Option<String>,
}

/// The operator groups, as the signed-in administrator may read them.
async fn operator_groups(st: &InstanceState, who: &SignedIn) -> Result<Vec<OperatorGroup>, Fault> {
    st.instance.operator_admin(&who.op).await?.groups().await
}

async fn stored_operator(st: &InstanceState, who: &SignedIn, id: i64) -> Result<Operator, Response> {
    let found = match st.instance.operator_admin(&who.op).await {
        Ok(admin) => admin.operator(id).await,
        Err(f) => Err(f),
    };
    match found {
        Ok(Some(op)) => Ok(op),
        Ok(None) => Err(fault_page(
            Shell::of(st, who),
            &Fault::not_found(format!("There is no operator {id}.")),
        )),
        Err(f) => Err(fault_page(Shell::of(st, who), &f)),
    }
}

async fn operator_show(
    State(st): State<InstanceState>,
    Administrator(who): Administrator,
    Path(id): Path<i64>,
    Query(q): Query<ShowQuery>,
) -> Response {
    let op = match stored_operator(&st, &who, id).await {
        Ok(op) => op,
        Err(resp) => return resp,
    };
    let shell = Shell::of(&st, &who).with_notice(q.saved.is_some().then_some("Saved."));
    operator_form(&st, &who, shell, Some(&op), None, None).await
}

async fn operator_update(
    State(st): State<InstanceState>,
    Administrator(who): Administrator,
    Path(id): Path<i64>,
    meta: Meta,
    headers: HeaderMap,
    body: bytes::Bytes,
) -> Response {
    let form = FormData::parse(&body);
    if let Err(f) = who.check_form(&form) {
        return fault_page(Shell::of(&st, &who), &f);
    }
    let op = match stored_operator(&st, &who, id).await {
        Ok(op) => op,
        Err(resp) => return resp,
    };
    let result = st
        .instance
        .change_operator(
            &who.op,
            &OperatorKey::Id(id),
            Some(WriteMode::Update),
            edit_from(&form, op.auth_type == AuthType::Native),
            meta.now,
            &caller(&meta, &headers),
        )
        .await;
    match result {
        Ok(_) => see_other(&format!("/console/operators/{id}?saved=1"), vec![]),
        Err(f) if f.client && !matches!(f.code, "XSV-350122" | RESTRICTED_CODE) => {
            operator_form(
                &st,
                &who,
                Shell::of(&st, &who),
                Some(&op),
                Some(&form),
                Some(f.message),
            )
            .await
        }
        Err(f) => fault_page(Shell::of(&st, &who), &f),
    }
}

async fn operator_delete(
    State(st): State<InstanceState>,
    Administrator(who): Administrator,
    Path(id): Path<i64>,
    meta: Meta,
    headers: HeaderMap,
    body: bytes::Bytes,
) -> Response {
    if let Err(f) = who.check_form(&FormData::parse(&body)) {
        return fault_page(Shell::of(&st, &who), &f);
    }
    let op = match stored_operator(&st, &who, id).await {
        Ok(op) => op,
        Err(resp) => return resp,
    };
    let result = st
        .instance
        .change_operator(
            &who.op,
            &OperatorKey::Id(id),
            None,
            OperatorEdit::default(),
            meta.now,
            &caller(&meta, &headers),
        )
        .await;
    match result {
        Ok(_) => {
            let login: String = url::form_urlencoded::byte_serialize(op.login.as_bytes()).collect();
            see_other(&format!("/console/operators?deleted={login}"), vec![])
        }
        Err(f) => fault_page(Shell::of(&st, &who), &f),
    }
}

struct GroupRow {
    name: String,
    label: String,
    rights: String,
}

#[derive(Template)]
#[template(path = "console/groups.html")]
struct GroupsPage {
    shell: Shell,
    rows: Vec<GroupRow>,
}

async fn groups(State(st): State<InstanceState>, Administrator(who): Administrator) -> Response {
    let all = match operator_groups(&st, &who).await {
        Ok(g) => g,
        Err(f) => return fault_page(Shell::of(&st, &who), &f),
    };
    let rows = all
        .into_iter()
        .map(|g| GroupRow {
            rights: g
                .rights
                .iter()
                .map(|r| right_label(r))
                .collect::<Vec<_>>()
                .join(", "),
            name: g.name,
            label: g.label,
        })
        .collect();
    render(
        StatusCode::OK,
        &GroupsPage {
            shell: Shell::of(&st, &who),
            rows,
        },
    )
}

struct RightRow {
    name: &'static str,
    label: &'static str,
    groups: String,
}

#[derive(Template)]
#[template(path = "console/rights.html")]
struct RightsPage {
    shell: Shell,
    rows: Vec<RightRow>,
}

async fn rights(State(st): State<InstanceState>, Administrator(who): Administrator) -> Response {
    let all = match operator_groups(&st, &who).await {
        Ok(g) => g,
        Err(f) => return fault_page(Shell::of(&st, &who), &f),
    };
    let rows = NAMED_RIGHTS
        .iter()
        .map(|r| RightRow {
            name: r.name,
            label: r.label,
            groups: all
                .iter()
                .filter(|g| g.rights.iter().any(|n| n == r.name))
                .map(|g| g.name.as_str())
                .collect::<Vec<_>>()
                .join(", "),
        })
        .collect();
    render(
        StatusCode::OK,
        &RightsPage {
            shell: Shell::of(&st, &who),
            rows,
        },
    )
}

#[derive(Template)]
#[template(path = "console/restrictions.html")]
struct RestrictionsPage {
    shell: Shell,
    operator_management: bool,
    native_api: bool,
    forced_by_build: bool,
    configured_operator_management: bool,
    configured_native_api: bool,
    allow_list: Vec<String>,
    blocks: Vec<String>,
}

/// The lock-down state: what is switched on, by the configuration or by the build, the
/// allow-list, and what it blocks.
#[derive(Template)]
#[template(path = "console/ims.html")]
struct ImsPage {
    shell: Shell,
    configured: Option<ImsSettings>,
    report: ims_campaign::diagnose::Report,
}

/// The configuration in effect, as the page shows it.
struct ImsSettings {
    url: String,
    org_id: String,
    client_id: String,
    callback_url: String,
    mask: String,
    product_context: String,
    scopes: String,
}

/// `GET /console/ims`: the IMS sign-in configuration in effect and the checklist run against
/// the IMS now (product profiles whose names contain "admin" are warned about).
async fn ims_page(State(st): State<InstanceState>, Administrator(who): Administrator) -> Response {
    let name = st.instance.info().name.clone();
    let (configured, report) = match st.instance.connection() {
        Some(conn) => {
            let groups = match operator_groups(&st, &who).await {
                Ok(g) => g,
                Err(f) => return fault_page(Shell::of(&st, &who), &f),
            };
            let a = &conn.account;
            let settings = ImsSettings {
                url: a.url.clone(),
                org_id: a.org_id.clone(),
                client_id: conn.client_id.clone(),
                callback_url: a.callback_url.clone(),
                mask: a.mask.as_str().to_owned(),
                product_context: a.product_context.clone(),
                scopes: a.scopes.join(" "),
            };
            (
                Some(settings),
                ims_campaign::diagnose::diagnose(&conn, &name, &groups).await,
            )
        }
        None => (None, ims_campaign::diagnose::without_configuration(&name, None)),
    };
    render(
        StatusCode::OK,
        &ImsPage {
            shell: Shell::of(&st, &who),
            configured,
            report,
        },
    )
}

async fn restrictions(State(st): State<InstanceState>, Administrator(who): Administrator) -> Response {
    let r = st.instance.restrictions();
    render(
        StatusCode::OK,
        &RestrictionsPage {
            shell: Shell::of(&st, &who),
            operator_management: r.operator_management,
            native_api: r.native_api,
            forced_by_build: r.forced_by_build,
            configured_operator_management: r.switches.operator_management_restricted,
            configured_native_api: r.switches.native_api_disabled,
            allow_list: r.allow_list.clone(),
            blocks: r.blocks(),
        },
    )
}

#[derive(Template)]
#[template(path = "console/migration.html")]
struct MigrationPage {
    shell: Shell,
    by_type: Vec<(String, i64)>,
    /// The chart: one polyline per authentication type, in a 600 x 200 box.
    lines: Vec<(&'static str, &'static str, String)>,
    first: String,
    last: String,
    max: i64,
    blockers: Vec<String>,
    legacy: Vec<(String, String, String, bool)>,
    plans: Vec<ims_wire::migration::ReportedPlan>,
    reported_at: Option<String>,
    completion: Option<String>,
}

/// Polyline points of one series over the history, scaled into 600 x 200.
fn points(history: &[(i64, i64, i64, i64)], pick: fn(&(i64, i64, i64, i64)) -> i64, max: i64) -> String {
    let n = history.len().max(2) - 1;
    history
        .iter()
        .enumerate()
        .map(|(i, h)| {
            let x = 600 * i as i64 / n as i64;
            let y = 200 - 200 * pick(h) / max.max(1);
            format!("{x},{y}")
        })
        .collect::<Vec<_>>()
        .join(" ")
}

async fn migration_page(
    State(st): State<InstanceState>,
    meta: Meta,
    Administrator(who): Administrator,
) -> Response {
    let d = match st.instance.migration_dashboard(&who.op, meta.now).await {
        Ok(d) => d,
        Err(f) => return fault_page(Shell::of(&st, &who), &f),
    };
    let max = d.history.iter().map(|h| h.1.max(h.2).max(h.3)).max().unwrap_or(1);
    let day = |ms: i64| {
        ims_core::time::iso8601(Now::from_millis(ms))
            .chars()
            .take(16)
            .collect::<String>()
            .replace('T', " ")
    };
    render(
        StatusCode::OK,
        &MigrationPage {
            shell: Shell::of(&st, &who),
            by_type: d.by_type.into_iter().collect(),
            lines: vec![
                ("native", "#b03a2e", points(&d.history, |h| h.1, max)),
                ("ims", "#1f618d", points(&d.history, |h| h.2, max)),
                ("technical_account", "#1e8449", points(&d.history, |h| h.3, max)),
            ],
            first: d.history.first().map(|h| day(h.0)).unwrap_or_default(),
            last: d.history.last().map(|h| day(h.0)).unwrap_or_default(),
            max,
            blockers: d.blockers,
            legacy: d
                .legacy
                .into_iter()
                .map(|l| (l.login, day(l.last_native), l.sources, l.quiet))
                .collect(),
            plans: d.report.as_ref().map(|r| r.plans.clone()).unwrap_or_default(),
            reported_at: d.report.as_ref().map(|r| day(r.at)),
            completion: d.completion.map(|c| {
                format!(
                    "complete since {} ({}{})",
                    day(c.at),
                    c.by,
                    if c.forced {
                        format!(", forced: {}", c.note)
                    } else {
                        String::new()
                    }
                )
            }),
        },
    )
}

/// Most rows the emails page shows at once: a form that reads, and always posts whole (the
/// migration API takes at most `MAX_EMAILS` rows).
const EMAIL_ROWS: usize = 200;

struct EmailRow {
    login: String,
    label: String,
    email: String,
    status: String,
    /// What was typed, kept when nothing was written.
    entered: String,
    problems: Vec<String>,
}

#[derive(Template)]
#[template(path = "console/migration_emails.html")]
struct EmailsPage {
    shell: Shell,
    rows: Vec<EmailRow>,
    /// Blockers beyond the rows shown.
    more: usize,
    error: Option<String>,
    /// Problems of operators the page does not list (changed meanwhile, or a forged row).
    other_problems: Vec<String>,
    /// `(login, before, after)`: written, or what saving would write.
    changes: Vec<(String, String, String)>,
    unchanged: Vec<String>,
    saved: bool,
}

/// What a submission gives the page to show beside the blockers.
#[derive(Default)]
struct EmailsShown {
    entered: Vec<(String, String)>,
    problems: Vec<ims_wire::migration::RowProblem>,
    error: Option<String>,
    changes: Vec<(String, String, String)>,
    unchanged: Vec<String>,
    saved: bool,
}

/// The emails page: the people whose email blocks their move, read now, with a submission's
/// values and problems beside their rows.
async fn emails_page(
    st: &InstanceState,
    who: &SignedIn,
    shell: Shell,
    status: StatusCode,
    shown: EmailsShown,
) -> Response {
    let blockers = match st.instance.migration_email_blockers(&who.op).await {
        Ok(b) => b,
        Err(f) => return fault_page(shell, &f),
    };
    let more = blockers.len().saturating_sub(EMAIL_ROWS);
    let mut problems = shown.problems;
    let rows: Vec<EmailRow> = blockers
        .into_iter()
        .take(EMAIL_ROWS)
        .map(|b| {
            let (mine, rest): (Vec<_>, Vec<_>) = problems.drain(..).partition(|p| p.login == b.login);
            problems = rest;
            let status = if b.shared_with.is_empty() {
                b.status.as_str().to_owned()
            } else {
                format!("{} with {}", b.status.as_str(), b.shared_with.join(", "))
            };
            EmailRow {
                entered: shown
                    .entered
                    .iter()
                    .find(|(l, _)| *l == b.login)
                    .map(|(_, e)| e.clone())
                    .unwrap_or_default(),
                problems: mine.into_iter().map(|p| p.problem).collect(),
                login: b.login,
                label: b.label,
                email: b.email.unwrap_or_default(),
                status,
            }
        })
        .collect();
    render(
        status,
        &EmailsPage {
            shell,
            rows,
            more,
            error: shown.error,
            other_problems: problems
                .into_iter()
                .map(|p| format!("{}: {}", p.login, p.problem))
                .collect(),
            changes: shown.changes,
            unchanged: shown.unchanged,
            saved: shown.saved,
        },
    )
}

/// `GET /console/migration/emails`.
async fn migration_emails(State(st): State<InstanceState>, Administrator(who): Administrator) -> Response {
    let shell = Shell::of(&st, &who);
    emails_page(&st, &who, shell, StatusCode::OK, EmailsShown::default()).await
}

/// `POST /console/migration/emails` (fields `login` and `email` in pairs, one per row, and
/// `action`: `save` writes, anything else checks): the migration API's own check and write
/// path, whole or not at all.
async fn migration_emails_submit(
    State(st): State<InstanceState>,
    Administrator(who): Administrator,
    meta: Meta,
    headers: HeaderMap,
    body: bytes::Bytes,
) -> Response {
    let form = FormData::parse(&body);
    if let Err(f) = who.check_form(&form) {
        return fault_page(Shell::of(&st, &who), &f);
    }
    let (logins, emails) = (form.all("login"), form.all("email"));
    if logins.len() != emails.len() {
        return fault_page(
            Shell::of(&st, &who),
            &Fault::bad_request("each operator of the form comes with one email field"),
        );
    }
    // Anything but an explicit save only checks: a stray submission writes nothing.
    let save = form.get("action") == Some("save");
    let entered: Vec<(String, String)> = logins.into_iter().zip(emails).collect();
    let assignments: Vec<EmailAssignment> = entered
        .iter()
        .filter(|(_, e)| !e.trim().is_empty())
        .map(|(login, email)| EmailAssignment {
            login: login.clone(),
            email: email.clone(),
        })
        .collect();
    let shell = Shell::of(&st, &who);
    if assignments.is_empty() {
        let shell = shell.with_notice(Some("Nothing to do: every new email is empty."));
        return emails_page(&st, &who, shell, StatusCode::OK, EmailsShown::default()).await;
    }
    let outcome = st
        .instance
        .migration_set_emails_checked(&who.op, &assignments, !save, meta.now, &caller(&meta, &headers))
        .await;
    let mut shown = EmailsShown {
        entered,
        ..EmailsShown::default()
    };
    match outcome {
        Ok(o) if o.problems.is_empty() => {
            let n = o.changed.len();
            shown.changes = o
                .changed
                .into_iter()
                .map(|c| (c.login, c.before.unwrap_or_default(), c.after))
                .collect();
            shown.unchanged = o.unchanged;
            let notice = if save {
                shown.entered.clear();
                shown.saved = true;
                format!("Saved: {n} email(s) changed.")
            } else {
                format!("Checked: nothing is wrong; saving would change {n} email(s). Nothing was written.")
            };
            emails_page(&st, &who, shell.with_notice(Some(&notice)), StatusCode::OK, shown).await
        }
        Ok(o) => {
            shown.error = Some(format!("{} problem(s): nothing was written.", o.problems.len()));
            shown.problems = o.problems;
            emails_page(&st, &who, shell, StatusCode::UNPROCESSABLE_ENTITY, shown).await
        }
        Err(f) if f.client && !matches!(f.code, "XSV-350122" | RESTRICTED_CODE) => {
            shown.error = Some(format!("{} Nothing was written.", f.message));
            emails_page(&st, &who, shell, StatusCode::UNPROCESSABLE_ENTITY, shown).await
        }
        Err(f) => fault_page(shell, &f),
    }
}
