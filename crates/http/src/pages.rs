//! What every server-rendered page shares: rendering, the hardened headers, the stylesheet,
//! cookies, redirects after a POST, and forms with repeated fields.

use askama::Template;
use axum::response::{IntoResponse, Redirect, Response};
use http::{HeaderMap, HeaderValue, StatusCode};

/// The consoles' and sign-in pages' one stylesheet.
pub(crate) async fn stylesheet() -> Response {
    (
        [
            (http::header::CONTENT_TYPE, "text/css;charset=utf-8"),
            (http::header::CACHE_CONTROL, "max-age=3600"),
        ],
        include_str!("../static/console.css"),
    )
        .into_response()
}

/// Pages are never cached, framed, or given a referrer; nothing loads but our stylesheet, and no
/// script runs. `extra` adds directives (a console restricts where its forms post; the sign-in
/// pages cannot, since their final redirect leaves for the client).
pub(crate) fn harden(mut resp: Response, extra: &str) -> Response {
    let csp = format!("default-src 'none'; style-src 'self'; {extra}frame-ancestors 'none'; base-uri 'none'");
    let h = resp.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&csp) {
        h.insert(http::header::CONTENT_SECURITY_POLICY, v);
    }
    h.insert(http::header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        http::header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(
        http::header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    if !h.contains_key(http::header::CACHE_CONTROL) {
        h.insert(http::header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    resp
}

pub(crate) fn render(status: StatusCode, page: &impl Template) -> Response {
    match page.render() {
        Ok(html) => (
            status,
            [(http::header::CONTENT_TYPE, "text/html;charset=utf-8")],
            html,
        )
            .into_response(),
        Err(e) => {
            tracing::error!(error = %e, "a page could not be rendered");
            StatusCode::INTERNAL_SERVER_ERROR.into_response()
        }
    }
}

/// A cookie the request carries.
pub(crate) fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(|c| {
            c.split(';').map(str::trim).find_map(|kv| {
                kv.strip_prefix(name)
                    .and_then(|r| r.strip_prefix('='))
                    .map(str::to_owned)
            })
        })
}

/// An anti-forgery token for a form: a digest of what only the legitimate browser holds (its
/// session or binding cookie) and what the form is for, so the server keeps nothing for it.
pub(crate) fn form_token(purpose: &str, parts: &[&str]) -> String {
    let mut text = purpose.to_owned();
    for p in parts {
        text.push('\u{0}');
        text.push_str(p);
    }
    ims_core::secret::digest_hex(&text)
}

/// A `Set-Cookie` line: HttpOnly, SameSite=Lax, Secure when served over TLS.
pub(crate) fn cookie_line(
    name: &str,
    value: &str,
    path: &str,
    secure: bool,
    max_age: Option<i64>,
) -> HeaderValue {
    let secure = if secure { "; Secure" } else { "" };
    let age = max_age.map(|a| format!("; Max-Age={a}")).unwrap_or_default();
    let line = format!("{name}={value}; Path={path}; HttpOnly; SameSite=Lax{secure}{age}");
    HeaderValue::from_str(&line).unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// 303 See Other (never 302/307 after a POST, so credentials are not posted again).
pub(crate) fn see_other(to: &str, cookies: Vec<HeaderValue>) -> Response {
    let mut resp = Redirect::to(to).into_response();
    for c in cookies {
        resp.headers_mut().append(http::header::SET_COOKIE, c);
    }
    resp
}

/// A submitted form, keeping repeated fields (checkbox groups).
pub(crate) struct FormData(pub Vec<(String, String)>);

impl FormData {
    pub fn parse(body: &[u8]) -> Self {
        FormData(url::form_urlencoded::parse(body).into_owned().collect())
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.0.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }

    pub fn text(&self, name: &str) -> String {
        self.get(name).unwrap_or_default().to_owned()
    }

    pub fn all(&self, name: &str) -> Vec<String> {
        self.0
            .iter()
            .filter(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
            .collect()
    }

    pub fn checked(&self, name: &str) -> bool {
        self.get(name).is_some()
    }
}
