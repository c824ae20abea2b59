//! The pages mailed links open, and the request that mails one: `/ims/invitation/{token}` (a
//! new Enterprise ID sets its first password), `/ims/reset/{token}` (an administrator's reset
//! or the person's own recovery) and "Forgot password?" on a sign-in flow. A link that is
//! unknown, used or expired answers 410 with what to do next.

use askama::Template;
use axum::extract::{Path, State};
use axum::response::Response;
use http::{HeaderMap, HeaderValue, Method, StatusCode};

use ims_core::secret;
use ims_core::{Error, ErrorKind};
use ims_identity::links::LinkPurpose;

use super::signin::{
    browser, csrf_for, error_page, message, new_password, password_page, secure, signed_next, BROWSER_COOKIE,
    SESSION_COOKIE,
};
use crate::pages::{self, cookie, render, see_other, FormData};
use crate::{AppState, Meta};

/// A link that no longer works: 410, and the domain's words on what to do.
fn dead_link(e: &Error) -> Response {
    match e.kind() {
        ErrorKind::NotFound => message(StatusCode::GONE, "This link no longer works", e.description()),
        _ => error_page(e),
    }
}

fn with_cookie(mut resp: Response, cookie: Option<HeaderValue>) -> Response {
    if let Some(c) = cookie {
        resp.headers_mut().append(http::header::SET_COOKIE, c);
    }
    resp
}

/// `GET|POST /ims/reset/{token}`: a reset link from an administrator or a recovery link the
/// person asked for.
pub(crate) async fn reset(
    State(app): State<AppState>,
    meta: Meta,
    method: Method,
    Path(token): Path<String>,
    headers: HeaderMap,
    body: bytes::Bytes,
) -> Response {
    let (browser, new_cookie) = browser(&app, &headers);
    let ctx = meta.context("anonymous");
    let purposes = [LinkPurpose::Reset, LinkPurpose::Recovery];
    let user = match app.ims.sign_in().link_user(&token, &purposes, &ctx).await {
        Ok(u) => u,
        Err(e) => return dead_link(&e),
    };
    let csrf = csrf_for("reset", &token, &browser);
    let action = format!("/ims/reset/{token}");
    let resp =
        if method == Method::POST {
            match new_password(&FormData::parse(&body), &csrf) {
            Err((status, why)) => password_page(status, "reset", action, csrf, user.email, Some(why)),
            Ok(p) => match app.ims.sign_in().reset_password(&token, p, &ctx).await {
                Ok(_) => message(
                    StatusCode::OK,
                    "Password saved",
                    "Your password is set and you are signed out everywhere. Sign in from your application.",
                ),
                Err(e) if e.kind() == ErrorKind::InvalidRequest => {
                    let why = e.to_string();
                    password_page(StatusCode::BAD_REQUEST, "reset", action, csrf, user.email, Some(why))
                }
                Err(e) => dead_link(&e),
            },
        }
        } else {
            password_page(StatusCode::OK, "reset", action, csrf, user.email, None)
        };
    with_cookie(resp, new_cookie)
}

/// `GET|POST /ims/invitation/{token}`: the invited person chooses a password; they are then
/// signed in to the IMS and sent where they were invited (the product instance's console).
pub(crate) async fn invitation(
    State(app): State<AppState>,
    meta: Meta,
    method: Method,
    Path(token): Path<String>,
    headers: HeaderMap,
    body: bytes::Bytes,
) -> Response {
    let (browser, new_cookie) = browser(&app, &headers);
    let ctx = meta.context("anonymous");
    let user = match app
        .ims
        .sign_in()
        .link_user(&token, &[LinkPurpose::Invitation], &ctx)
        .await
    {
        Ok(u) => u,
        Err(e) => return dead_link(&e),
    };
    let csrf = csrf_for("invitation", &token, &browser);
    let action = format!("/ims/invitation/{token}");
    if method != Method::POST {
        let page = password_page(StatusCode::OK, "invite", action, csrf, user.email, None);
        return with_cookie(page, new_cookie);
    }
    let password = match new_password(&FormData::parse(&body), &csrf) {
        Ok(p) => p,
        Err((status, why)) => return password_page(status, "invite", action, csrf, user.email, Some(why)),
    };
    let ctx = meta.context(format!("user:{}", user.user_id));
    match app.ims.sign_in().accept_invitation(&token, password, &ctx).await {
        Ok((session, user, return_to)) => {
            app.metrics.token_issued("sign_in");
            let cookie = pages::cookie_line(SESSION_COOKIE, session.expose(), "/ims", secure(&app), None);
            // An organisation that requires one-time codes has the person enrol before going on.
            match app.ims.sign_in().must_enrol(&user).await {
                Ok(true) => {
                    let to = match &return_to {
                        Some(next) => signed_next(next, session.expose()),
                        None => "/ims/account/totp".to_owned(),
                    };
                    return see_other(&to, vec![cookie]);
                }
                Ok(false) => {}
                Err(e) => return error_page(&e),
            }
            let session = cookie;
            match return_to {
                Some(to) => see_other(&to, vec![session]),
                None => with_cookie(
                    message(
                        StatusCode::OK,
                        "Your account is ready",
                        &format!(
                            "Sign in from your application with {} and your new password.",
                            user.email
                        ),
                    ),
                    Some(session),
                ),
            }
        }
        Err(e) if e.kind() == ErrorKind::InvalidRequest => {
            let why = e.to_string();
            password_page(
                StatusCode::BAD_REQUEST,
                "invite",
                action,
                csrf,
                user.email,
                Some(why),
            )
        }
        Err(e) => dead_link(&e),
    }
}

#[derive(Template)]
#[template(path = "ims/forgot.html")]
struct ForgotPage {
    flow: String,
    csrf: String,
    email: String,
    sent: bool,
}

/// `GET|POST /ims/signin/{flow}/forgot`: "Forgot password?". The answer is the same page,
/// returned before the request is looked at, whether the email is known, unknown, federated or
/// over its limit: nothing in its content or its timing tells them apart.
pub(crate) async fn forgot(
    State(app): State<AppState>,
    meta: Meta,
    method: Method,
    Path(flow): Path<String>,
    headers: HeaderMap,
    body: bytes::Bytes,
) -> Response {
    let Some(browser) = cookie(&headers, BROWSER_COOKIE) else {
        return error_page(&Error::not_found(
            "this sign-in has expired; start again from the application",
        ));
    };
    let page = match app
        .ims
        .sign_in()
        .sign_in_page(&flow, &browser, None, meta.now)
        .await
    {
        Ok(p) => p,
        Err(e) => return error_page(&e),
    };
    let csrf = csrf_for("forgot", &flow, &browser);
    if method != Method::POST {
        return render(
            StatusCode::OK,
            &ForgotPage {
                flow,
                csrf,
                email: page.email.unwrap_or_default(),
                sent: false,
            },
        );
    }
    let form = FormData::parse(&body);
    if !secret::equal_ct(form.get("csrf").unwrap_or_default(), &csrf) {
        return message(
            StatusCode::FORBIDDEN,
            "Cannot send the link",
            "The form is out of date; go back to the application and start again.",
        );
    }
    let email = form.text("email").trim().to_owned();
    if email.is_empty() || email.len() > 254 {
        return render(
            StatusCode::BAD_REQUEST,
            &ForgotPage {
                flow,
                csrf,
                email,
                sent: false,
            },
        );
    }
    let ctx = meta.context("anonymous");
    let (task_app, task_flow) = (app.clone(), flow.clone());
    tokio::spawn(async move {
        let recovery = task_app.ims.sign_in();
        if let Err(e) = recovery
            .request_recovery(&task_flow, &browser, &email, &ctx)
            .await
        {
            tracing::error!(error = ?e, "a password recovery request failed");
        }
    });
    render(
        StatusCode::OK,
        &ForgotPage {
            flow,
            csrf: String::new(),
            email: String::new(),
            sent: true,
        },
    )
}
