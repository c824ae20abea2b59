//! People sign in through the browser: the authorization endpoint, the sign-in pages (email, then
//! password, then a one-time code when enrolled), userinfo and sign-out. Pages are server-rendered
//! and work without JavaScript; every POST answers with 303 or with the page again.
//!
//! Two cookies, both HttpOnly and `SameSite=Lax`, path `/ims`, Secure over TLS: `ims_browser`
//! binds a sign-in flow to the browser that started it (and keys the forms' anti-forgery token);
//! `ims_sid` is the IMS session, issued fresh at each sign-in.

use askama::Template;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use axum::Json;
use http::{HeaderMap, HeaderValue, Method, StatusCode, Uri};

use ims_core::secret::{self, Secret};
use ims_core::{Error, ErrorKind};
use ims_identity::service::{Authorized, SignInStep, StepOutcome};

use crate::error::{no_store, BearerError};
use crate::pages::{self, cookie, render, see_other, FormData};
use crate::{AppState, Meta};

pub(super) const BROWSER_COOKIE: &str = "ims_browser";
pub(super) const SESSION_COOKIE: &str = "ims_sid";
/// The browser binding outlives sessions; a year, renewed when it is set again.
const BROWSER_COOKIE_SECS: i64 = 365 * 86_400;

/// Sign-in pages: their forms may end in a redirect to the client, so no `form-action`.
pub(crate) async fn signin_headers(resp: Response) -> Response {
    pages::harden(resp, "")
}

/// Cookies are `Secure` when the IMS is served over TLS.
pub(crate) fn secure(app: &AppState) -> bool {
    app.ims.settings().issuer.starts_with("https://")
}

/// The browser's binding token, and the cookie to set when it had none.
pub(super) fn browser(app: &AppState, headers: &HeaderMap) -> (String, Option<HeaderValue>) {
    match cookie(headers, BROWSER_COOKIE).filter(|b| b.len() >= 32 && b.len() <= 128) {
        Some(b) => (b, None),
        None => {
            let b = secret::generate("").expose().to_owned();
            let line = pages::cookie_line(BROWSER_COOKIE, &b, "/ims", secure(app), Some(BROWSER_COOKIE_SECS));
            (b, Some(line))
        }
    }
}

pub(super) fn csrf_for(purpose: &str, key: &str, browser: &str) -> String {
    pages::form_token(purpose, &[key, browser])
}

#[derive(Template)]
#[template(path = "ims/message.html")]
struct MessagePage {
    heading: String,
    message: String,
}

pub(super) fn message(status: StatusCode, heading: &str, text: &str) -> Response {
    render(
        status,
        &MessagePage {
            heading: heading.into(),
            message: text.into(),
        },
    )
}

pub(super) fn error_page(e: &Error) -> Response {
    match e.kind() {
        ErrorKind::NotFound => message(StatusCode::BAD_REQUEST, "Sign-in expired", e.description()),
        ErrorKind::Internal => {
            tracing::error!(error = ?e, "sign-in failed");
            message(
                StatusCode::INTERNAL_SERVER_ERROR,
                "Something went wrong",
                "The sign-in could not be completed; try again.",
            )
        }
        _ => message(StatusCode::BAD_REQUEST, "Cannot sign in", e.description()),
    }
}

/// The request's parameters: the query string for GET, the form body for POST.
fn authorize_params(
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Vec<(String, String)>, Error> {
    if method == Method::POST {
        let form = headers
            .get(http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|c| c.starts_with("application/x-www-form-urlencoded"));
        if !form {
            return Err(Error::invalid_request(
                "send the authorization request as application/x-www-form-urlencoded",
            ));
        }
        return Ok(FormData::parse(body).0);
    }
    Ok(FormData::parse(uri.query().unwrap_or_default().as_bytes()).0)
}

/// `GET|POST /ims/authorize/v1|v2`.
pub(crate) async fn authorize(
    State(app): State<AppState>,
    meta: Meta,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: bytes::Bytes,
) -> Response {
    let params = match authorize_params(&method, &uri, &headers, &body) {
        Ok(p) => p,
        Err(e) => return error_page(&e),
    };
    let (browser, new_cookie) = browser(&app, &headers);
    let session = cookie(&headers, SESSION_COOKIE);
    let result = app
        .ims
        .sign_in()
        .authorize(&params, &browser, session.as_deref(), &meta.context("anonymous"))
        .await;
    let cookies: Vec<HeaderValue> = new_cookie.into_iter().collect();
    match result {
        Ok(Authorized::Redirect(to)) => see_other(&to, cookies),
        Ok(Authorized::SignIn(flow)) => see_other(&format!("/ims/signin/{}", flow.expose()), cookies),
        Ok(Authorized::ErrorPage(why)) => message(StatusCode::BAD_REQUEST, "Cannot sign in", &why),
        Err(e) => error_page(&e),
    }
}

#[derive(Template)]
#[template(path = "ims/signin.html")]
struct SignInPageView {
    flow: String,
    csrf: String,
    stage: &'static str,
    email: String,
    client_name: String,
    /// The consent page's list: what each requested scope lets the application do.
    permissions: Vec<&'static str>,
    /// At the enrolment stage.
    enrolment: Option<EnrolView>,
    error: Option<String>,
}

/// A pending one-time-code enrolment as its page shows it.
pub(super) struct EnrolView {
    secret: String,
    otpauth: String,
    /// The `otpauth` URI as a QR code (SVG markup we generate), for a phone's camera.
    qr: String,
    codes: Vec<String>,
    sealed: String,
}

impl From<ims_identity::people::PendingEnrolment> for EnrolView {
    fn from(e: ims_identity::people::PendingEnrolment) -> Self {
        EnrolView {
            secret: e.secret_base32,
            qr: qr_svg(&e.otpauth_uri),
            otpauth: e.otpauth_uri,
            codes: e.recovery_codes.iter().map(|c| c.expose().to_owned()).collect(),
            sealed: e.sealed,
        }
    }
}

/// `text` as a QR code in SVG, ready to sit in a page: no XML declaration, an image role and a
/// name for screen readers. Empty when the text does not fit a QR code (the page still shows the
/// link and the key).
pub fn qr_svg(text: &str) -> String {
    let Ok(code) = qrcode::QrCode::new(text.as_bytes()) else {
        return String::new();
    };
    let svg = code
        .render::<qrcode::render::svg::Color<'_>>()
        .min_dimensions(200, 200)
        .build();
    match svg.find("<svg") {
        Some(start) => svg[start..].replacen(
            "<svg",
            r#"<svg role="img" aria-label="QR code of the account to add to your authenticator app""#,
            1,
        ),
        None => String::new(),
    }
}

/// What a scope lets an application do, in words a person reads on the consent page.
fn permission(scope: &str) -> &'static str {
    match scope {
        "openid" => "know who you are",
        "email" => "see your email address",
        "profile" => "see your name",
        "AdobeID" => "see your account type and country",
        "offline_access" => "keep access while you are away",
        _ => "use your account for other purposes",
    }
}

async fn show(
    app: &AppState,
    flow: &str,
    browser: &str,
    status: StatusCode,
    error: Option<String>,
    now: ims_core::Now,
) -> Response {
    show_again(app, flow, browser, status, error, None, now).await
}

/// The flow's page; at the enrolment stage, the enrolment sealed in `again` when it holds.
async fn show_again(
    app: &AppState,
    flow: &str,
    browser: &str,
    status: StatusCode,
    error: Option<String>,
    again: Option<&str>,
    now: ims_core::Now,
) -> Response {
    match app.ims.sign_in().sign_in_page(flow, browser, again, now).await {
        Ok(page) => render(
            status,
            &SignInPageView {
                flow: flow.to_owned(),
                csrf: csrf_for("signin", flow, browser),
                stage: page.stage.as_str(),
                email: page.email.unwrap_or_default(),
                client_name: page.client_name,
                permissions: page.scopes.iter().map(|s| permission(s)).collect(),
                enrolment: page.enrolment.map(EnrolView::from),
                error,
            },
        ),
        Err(e) => error_page(&e),
    }
}

/// `GET /ims/signin/{flow}`: the flow's current page.
pub(crate) async fn signin_page(
    State(app): State<AppState>,
    meta: Meta,
    Path(flow): Path<String>,
    headers: HeaderMap,
) -> Response {
    let Some(browser) = cookie(&headers, BROWSER_COOKIE) else {
        return error_page(&Error::not_found(
            "this sign-in has expired; start again from the application",
        ));
    };
    show(&app, &flow, &browser, StatusCode::OK, None, meta.now).await
}

/// `POST /ims/signin/{flow}`: one step.
pub(crate) async fn signin_submit(
    State(app): State<AppState>,
    meta: Meta,
    Path(flow): Path<String>,
    headers: HeaderMap,
    body: bytes::Bytes,
) -> Response {
    let Some(browser) = cookie(&headers, BROWSER_COOKIE) else {
        return error_page(&Error::not_found(
            "this sign-in has expired; start again from the application",
        ));
    };
    let form = FormData::parse(&body);
    if !secret::equal_ct(
        form.get("csrf").unwrap_or_default(),
        &csrf_for("signin", &flow, &browser),
    ) {
        return message(
            StatusCode::FORBIDDEN,
            "Cannot sign in",
            "The form is out of date; go back to the application and start again.",
        );
    }
    let step = if form.checked("restart") {
        SignInStep::Restart
    } else if let Some(answer) = form.get("consent") {
        SignInStep::Consent(answer == "allow")
    } else if let Some(e) = form.get("email") {
        SignInStep::Email(e.to_owned())
    } else if let Some(sealed) = form.get("sealed") {
        SignInStep::Enrol {
            sealed: sealed.to_owned(),
            code: form.text("code"),
        }
    } else if let Some(p) = form.get("password") {
        SignInStep::Password(Secret::new(p))
    } else if let Some(c) = form.get("code") {
        SignInStep::Code(c.to_owned())
    } else {
        return show(
            &app,
            &flow,
            &browser,
            StatusCode::BAD_REQUEST,
            Some("Fill in the form.".into()),
            meta.now,
        )
        .await;
    };
    let ctx = meta.context("anonymous");
    let session = cookie(&headers, SESSION_COOKIE);
    let session_cookie =
        |s: &Secret| pages::cookie_line(SESSION_COOKIE, s.expose(), "/ims", secure(&app), None);
    match app
        .ims
        .sign_in()
        .sign_in_step(&flow, &browser, session.as_deref(), step, &ctx)
        .await
    {
        Ok(StepOutcome::Next) => see_other(&format!("/ims/signin/{flow}"), vec![]),
        Ok(StepOutcome::Consent { session }) => {
            app.metrics.token_issued("sign_in");
            see_other(&format!("/ims/signin/{flow}"), vec![session_cookie(&session)])
        }
        Ok(StepOutcome::Done { session, redirect }) => {
            if session.is_some() {
                app.metrics.token_issued("sign_in");
            }
            see_other(&redirect, session.iter().map(session_cookie).collect())
        }
        Err(e) if e.kind() == ErrorKind::InvalidCredentials => {
            show(
                &app,
                &flow,
                &browser,
                StatusCode::UNAUTHORIZED,
                Some(e.to_string()),
                meta.now,
            )
            .await
        }
        Err(e) if e.kind() == ErrorKind::InvalidRequest => {
            let m = e.to_string();
            let again = form.get("sealed");
            show_again(
                &app,
                &flow,
                &browser,
                StatusCode::BAD_REQUEST,
                Some(m),
                again,
                meta.now,
            )
            .await
        }
        Err(e) => error_page(&e),
    }
}

/// `GET|POST /ims/userinfo/v2` (and `/ims/userinfo`): the person's claims for the token's scopes.
pub(crate) async fn userinfo(
    State(app): State<AppState>,
    meta: Meta,
    headers: HeaderMap,
    uri: Uri,
) -> Response {
    let result = async {
        let token = crate::ims::oauth::bearer_token(&headers, &uri)?;
        app.ims.tokens().userinfo(&token, meta.now).await
    }
    .await;
    match result {
        Ok(claims) => {
            let mut resp = Json(claims).into_response();
            no_store(&mut resp);
            resp
        }
        Err(e) => BearerError(e).into_response(),
    }
}

#[derive(Template)]
#[template(path = "ims/logout.html")]
struct LogoutPage {
    csrf: String,
    post_logout_redirect_uri: Option<String>,
    client_id: Option<String>,
    state: Option<String>,
}

/// `GET|POST /ims/logout/v1`: RP-initiated logout (`id_token_hint`, `post_logout_redirect_uri`
/// or the vendor's `redirect_uri`, `client_id`, `state`). With a valid ID token hint the session
/// ends at once; otherwise the person confirms with a form (a link alone cannot sign anyone out).
pub(crate) async fn logout(
    State(app): State<AppState>,
    meta: Meta,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: bytes::Bytes,
) -> Response {
    let params = match authorize_params(&method, &uri, &headers, &body) {
        Ok(p) => FormData(p),
        Err(e) => return error_page(&e),
    };
    let (browser, new_cookie) = browser(&app, &headers);
    let param = |name: &str| params.get(name).filter(|v| !v.is_empty()).map(str::to_owned);
    let target = param("post_logout_redirect_uri").or_else(|| param("redirect_uri"));
    let hint = param("id_token_hint");
    let checked = match app
        .ims
        .sign_in()
        .post_logout_redirect(
            hint.as_deref(),
            param("client_id").as_deref(),
            target.as_deref(),
            meta.now,
        )
        .await
    {
        Ok(r) => r,
        Err(e) => return error_page(&e),
    };
    let redirect = checked.redirect.clone();
    let session = cookie(&headers, SESSION_COOKIE);
    let signed_in = match app.ims.sign_in().live_session(session.as_deref(), meta.now).await {
        Ok(s) => s.map(|(user, _)| user.user_id),
        Err(e) => return error_page(&e),
    };
    let confirmed = method == Method::POST
        && secret::equal_ct(
            params.get("csrf").unwrap_or_default(),
            &csrf_for("logout", "", &browser),
        );
    // Without the form, only an ID token of the very person signed in ends the session (a link
    // alone cannot sign anyone out); with nobody signed in there is nothing to end.
    let hinted = match &signed_in {
        Some(user) => checked.hint_subject.as_deref() == Some(user.as_str()),
        None => true,
    };
    if !confirmed && !hinted {
        let mut resp = render(
            StatusCode::OK,
            &LogoutPage {
                csrf: csrf_for("logout", "", &browser),
                post_logout_redirect_uri: target,
                client_id: param("client_id"),
                state: param("state"),
            },
        );
        if let Some(c) = new_cookie {
            resp.headers_mut().append(http::header::SET_COOKIE, c);
        }
        return resp;
    }
    if let Some(session) = session {
        if let Err(e) = app
            .ims
            .sign_in()
            .end_browser_session(&session, &meta.context("anonymous"))
            .await
        {
            return error_page(&e);
        }
    }
    let clear = pages::cookie_line(SESSION_COOKIE, "", "/ims", secure(&app), Some(0));
    match redirect {
        Some(to) => {
            let to = match (param("state"), url::Url::parse(&to)) {
                (Some(state), Ok(mut u)) => {
                    u.query_pairs_mut().append_pair("state", &state);
                    u.to_string()
                }
                _ => to,
            };
            see_other(&to, vec![clear])
        }
        None => {
            let mut resp = message(StatusCode::OK, "Signed out", "You are signed out.");
            resp.headers_mut().append(http::header::SET_COOKIE, clear);
            resp
        }
    }
}

#[derive(Template)]
#[template(path = "ims/password.html")]
struct PasswordPage {
    /// `change` (a signed-in person), `reset` (a reset or recovery link), `invite` (an
    /// invitation).
    mode: &'static str,
    action: String,
    csrf: String,
    email: String,
    error: Option<String>,
}

/// Checks a password form's token and its two copies of the new password.
pub(super) fn new_password(form: &FormData, expected_csrf: &str) -> Result<Secret, (StatusCode, String)> {
    if !secret::equal_ct(form.get("csrf").unwrap_or_default(), expected_csrf) {
        return Err((
            StatusCode::FORBIDDEN,
            "The form is out of date; reload the page.".into(),
        ));
    }
    let (p, c) = (form.text("password"), form.text("confirm"));
    if p != c {
        return Err((StatusCode::BAD_REQUEST, "The two passwords differ.".into()));
    }
    Ok(Secret::new(p))
}

pub(super) fn password_page(
    status: StatusCode,
    mode: &'static str,
    action: String,
    csrf: String,
    email: String,
    error: Option<String>,
) -> Response {
    render(
        status,
        &PasswordPage {
            mode,
            action,
            csrf,
            email,
            error,
        },
    )
}

/// `GET|POST /ims/account/password`: a signed-in person changes their password.
pub(crate) async fn change_password(
    State(app): State<AppState>,
    meta: Meta,
    method: Method,
    headers: HeaderMap,
    body: bytes::Bytes,
) -> Response {
    let session = cookie(&headers, SESSION_COOKIE);
    let Ok(Some((user, _))) = app.ims.sign_in().live_session(session.as_deref(), meta.now).await else {
        return message(
            StatusCode::UNAUTHORIZED,
            "Not signed in",
            "Sign in from your application first.",
        );
    };
    let (browser, _) = browser(&app, &headers);
    let token = session.unwrap_or_default();
    let csrf = csrf_for("password", &token, &browser);
    let action = "/ims/account/password".to_owned();
    if method != Method::POST {
        return password_page(StatusCode::OK, "change", action, csrf, user.email, None);
    }
    let form = FormData::parse(&body);
    let new = match new_password(&form, &csrf) {
        Ok(p) => p,
        Err((status, why)) => return password_page(status, "change", action, csrf, user.email, Some(why)),
    };
    let current = Secret::new(form.text("current"));
    match app
        .ims
        .sign_in()
        .change_own_password(
            Some(&token),
            &current,
            new,
            &meta.context(format!("user:{}", user.user_id)),
        )
        .await
    {
        Ok(_) => {
            let mut resp = message(
                StatusCode::OK,
                "Password changed",
                "Your password is changed and every session has ended. Sign in again.",
            );
            let clear = pages::cookie_line(SESSION_COOKIE, "", "/ims", secure(&app), Some(0));
            resp.headers_mut().append(http::header::SET_COOKIE, clear);
            resp
        }
        Err(e) if e.kind() == ErrorKind::InvalidCredentials => password_page(
            StatusCode::UNAUTHORIZED,
            "change",
            action,
            csrf,
            user.email,
            Some(e.to_string()),
        ),
        Err(e) if e.kind() == ErrorKind::InvalidRequest => password_page(
            StatusCode::BAD_REQUEST,
            "change",
            action,
            csrf,
            user.email,
            Some(e.to_string()),
        ),
        Err(e) => error_page(&e),
    }
}

#[derive(Template)]
#[template(path = "ims/enrol.html")]
struct EnrolPage {
    action: String,
    csrf: String,
    email: String,
    enrolment: Option<EnrolView>,
    error: Option<String>,
}

/// Where a page sends the person next, signed with their session so that no one else can
/// make the IMS redirect a person anywhere.
pub(super) fn signed_next(next: &str, session: &str) -> String {
    let sig = pages::form_token("next", &[next, session]);
    let q = url::form_urlencoded::Serializer::new(String::new())
        .append_pair("next", next)
        .append_pair("sig", &sig)
        .finish();
    format!("/ims/account/totp?{q}")
}

/// `GET|POST /ims/account/totp`: a signed-in person turns on one-time codes (an invited person
/// of an organisation that requires them comes here, with where to go afterwards).
pub(crate) async fn enrol(
    State(app): State<AppState>,
    meta: Meta,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: bytes::Bytes,
) -> Response {
    let session = cookie(&headers, SESSION_COOKIE);
    let Ok(Some((user, _))) = app.ims.sign_in().live_session(session.as_deref(), meta.now).await else {
        return message(
            StatusCode::UNAUTHORIZED,
            "Not signed in",
            "Sign in from your application first.",
        );
    };
    let token = session.unwrap_or_default();
    let (browser, _) = browser(&app, &headers);
    let query = FormData::parse(uri.query().unwrap_or_default().as_bytes());
    let next = query
        .get("next")
        .filter(|n| {
            secret::equal_ct(
                query.get("sig").unwrap_or_default(),
                &pages::form_token("next", &[n, &token]),
            )
        })
        .map(str::to_owned);
    let action = match &next {
        Some(n) => signed_next(n, &token),
        None => "/ims/account/totp".to_owned(),
    };
    let csrf = csrf_for("enrol", &token, &browser);
    let page = |status: StatusCode, error: Option<String>, enrolment| {
        render(
            status,
            &EnrolPage {
                action: action.clone(),
                csrf: csrf.clone(),
                email: user.email.clone(),
                enrolment,
                error,
            },
        )
    };
    if method != Method::POST {
        return match app.ims.sign_in().start_enrolment(&user, None, meta.now).await {
            Ok(e) => page(StatusCode::OK, None, Some(e.into())),
            Err(e) => error_page(&e),
        };
    }
    let form = FormData::parse(&body);
    if !secret::equal_ct(form.get("csrf").unwrap_or_default(), &csrf) {
        return message(
            StatusCode::FORBIDDEN,
            "Cannot turn on one-time codes",
            "The form is out of date; reload the page.",
        );
    }
    let ctx = meta.context(format!("user:{}", user.user_id));
    match app
        .ims
        .sign_in()
        .confirm_own_enrolment(Some(&token), &form.text("sealed"), &form.text("code"), &ctx)
        .await
    {
        Ok(_) => match next {
            Some(to) => see_other(&to, vec![]),
            None => message(
                StatusCode::OK,
                "One-time codes are on",
                "From now on, sign in with your password and a code from your authenticator app.",
            ),
        },
        // A wrong code shows the same enrolment again (the person scanned it already).
        Err(e) if e.kind() == ErrorKind::InvalidRequest => {
            let sealed = form.text("sealed");
            match app
                .ims
                .sign_in()
                .start_enrolment(&user, Some(&sealed), meta.now)
                .await
            {
                Ok(same) => page(StatusCode::BAD_REQUEST, Some(e.to_string()), Some(same.into())),
                Err(e) => error_page(&e),
            }
        }
        Err(e) => error_page(&e),
    }
}
