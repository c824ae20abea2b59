//! The instance's migration API (`/nl/migration/v1`): JSON for the migration engine, which
//! authenticates like any API client (a session token from `Logon` in `X-Session-Token` and
//! `X-Security-Token`, or `Authorization: Bearer`) as an operator holding ADMINISTRATION.
//! Errors are problem details (RFC 9457) carrying the instance's fault code.

use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use http::{HeaderMap, HeaderValue, StatusCode};
use serde::Deserialize;
use serde_json::json;

use ims_campaign::fault::Fault;
use ims_campaign::model::Operator;
use ims_campaign::service::{Caller, Instance};
use ims_wire::migration::{
    Completion, CopyAccessRequest, EmailRequest, GroupRequest, ImsAccountRequest, JournalReport,
    LockdownRequest, Notice, RowProblem, SwitchRequest, VerifyRequest, MAX_PAGE,
};

use crate::error::problem_fault::ApiFault;
use crate::error::problem_response;
use crate::instance::soap::{authenticated, bearer_of, client_headers, header, InstanceState, Presented};
use crate::Meta;

pub fn routes() -> Router<InstanceState> {
    Router::new()
        .route("/nl/migration/v1/instance", get(instance))
        .route("/nl/migration/v1/operators", get(operators))
        .route("/nl/migration/v1/emails", post(emails))
        .route("/nl/migration/v1/switch", post(switch))
        .route("/nl/migration/v1/groups", post(groups))
        .route("/nl/migration/v1/lockdown", post(lockdown))
        .route("/nl/migration/v1/ims-account", put(ims_account))
        .route("/nl/migration/v1/verify", post(verify))
        .route("/nl/migration/v1/completion", put(completion))
        .route("/nl/migration/v1/copy-access", post(copy_access))
        .route("/nl/migration/v1/notice", put(notice))
        .route("/nl/migration/v1/journal", put(journal))
}

/// A request refused whole: problem details listing every problem (nothing was written).
fn refused_whole(problems: &[RowProblem]) -> Response {
    let status = StatusCode::UNPROCESSABLE_ENTITY;
    let body = json!({
        "type": "about:blank",
        "title": status.canonical_reason().unwrap_or("error"),
        "status": status.as_u16(),
        "detail": format!("{} problem(s): nothing was written", problems.len()),
        "code": "SOP-330011",
        "problems": problems,
    });
    problem_response(status, body)
}

/// The answer's JSON, or the fault as problem details.
fn json_answer<T: serde::Serialize>(outcome: Result<T, Fault>) -> Response {
    match outcome {
        Ok(body) => no_store(Json(body).into_response()),
        Err(f) => ApiFault(f).into_response(),
    }
}

fn no_store(mut resp: Response) -> Response {
    resp.headers_mut()
        .insert(http::header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

/// The operator calling, authenticated as for a SOAP call and recorded as usage under
/// `action`, with where the call comes from.
pub(crate) async fn caller(
    instance: &Instance,
    meta: &Meta,
    headers: &HeaderMap,
    action: &str,
) -> Result<(Operator, Caller), Fault> {
    let creds = Presented {
        from_cookie: false,
        session: header(headers, "x-session-token"),
        security: header(headers, "x-security-token"),
        bearer: bearer_of(headers),
    };
    if creds.bearer.is_some() && creds.session.is_some() {
        return Err(Fault::bad_request(
            "send either a bearer token or a session token, not both",
        ));
    }
    let caller = Caller {
        source: meta.source.clone(),
        client: client_headers(headers),
    };
    let op = authenticated(instance, &creds, action, meta.now, &caller).await?;
    instance.migration().require_administration(&op).await?;
    Ok((op, caller))
}

async fn instance(State(st): State<InstanceState>, meta: Meta, headers: HeaderMap) -> Response {
    let run = async {
        let (op, _) = caller(&st.instance, &meta, &headers, "migration#Instance").await?;
        st.instance.migration().migration_facts(&op, meta.now).await
    };
    json_answer(run.await)
}

#[derive(Deserialize)]
struct PageQuery {
    #[serde(default)]
    after: i64,
    limit: Option<u32>,
}

async fn operators(
    State(st): State<InstanceState>,
    meta: Meta,
    headers: HeaderMap,
    query: Result<Query<PageQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let run = async {
        let Query(q) = query.map_err(|_| {
            Fault::bad_request("after and limit must be whole numbers (a page holds at most 5000 operators)")
        })?;
        let (op, _) = caller(&st.instance, &meta, &headers, "migration#Operators").await?;
        st.instance
            .migration()
            .migration_operators(&op, q.after, q.limit.unwrap_or(MAX_PAGE))
            .await
    };
    json_answer(run.await)
}

#[derive(Deserialize)]
struct DryRun {
    #[serde(default)]
    dry_run: bool,
}

async fn emails(
    State(st): State<InstanceState>,
    meta: Meta,
    headers: HeaderMap,
    query: Result<Query<DryRun>, axum::extract::rejection::QueryRejection>,
    body: axum::body::Bytes,
) -> Response {
    let run = async {
        let Query(q) = query.map_err(|_| Fault::bad_request("dry_run is true or false"))?;
        let (op, caller) = caller(&st.instance, &meta, &headers, "migration#Emails").await?;
        let req: EmailRequest = body_of(&body, "an email request")?;
        st.instance
            .migration()
            .migration_set_emails(&op, &req.emails, q.dry_run, meta.now, &caller)
            .await
    };
    match run.await {
        Ok(outcome) if outcome.problems.is_empty() => no_store(Json(outcome).into_response()),
        Ok(outcome) => refused_whole(&outcome.problems),
        Err(f) => ApiFault(f).into_response(),
    }
}

async fn switch(
    State(st): State<InstanceState>,
    meta: Meta,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let run = async {
        let (op, caller) = caller(&st.instance, &meta, &headers, "migration#Switch").await?;
        let req: SwitchRequest = body_of(&body, "a switch request")?;
        st.instance
            .migration()
            .migration_switch(&op, &req, meta.now, &caller)
            .await
    };
    json_answer(run.await)
}

async fn groups(
    State(st): State<InstanceState>,
    meta: Meta,
    headers: HeaderMap,
    query: Result<Query<DryRun>, axum::extract::rejection::QueryRejection>,
    body: axum::body::Bytes,
) -> Response {
    let run = async {
        let Query(q) = query.map_err(|_| Fault::bad_request("dry_run is true or false"))?;
        let (op, caller) = caller(&st.instance, &meta, &headers, "migration#Groups").await?;
        let req: GroupRequest = body_of(&body, "a group request")?;
        st.instance
            .migration()
            .migration_groups(&op, &req, q.dry_run, meta.now, &caller)
            .await
    };
    match run.await {
        Ok(outcome) if outcome.problems.is_empty() => no_store(Json(outcome).into_response()),
        Ok(outcome) => refused_whole(&outcome.problems),
        Err(f) => ApiFault(f).into_response(),
    }
}

/// A JSON body, or the instance's fault for one that does not read.
fn body_of<T: serde::de::DeserializeOwned>(body: &[u8], what: &str) -> Result<T, Fault> {
    serde_json::from_slice(body).map_err(|e| Fault::bad_request(format!("the body is not {what}: {e}")))
}

async fn lockdown(
    State(st): State<InstanceState>,
    meta: Meta,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let run = async {
        let (op, _) = caller(&st.instance, &meta, &headers, "migration#Lockdown").await?;
        let req: LockdownRequest = body_of(&body, "a lock-down request")?;
        st.instance
            .migration()
            .migration_lock_down(&op, &req.allow, meta.now)
            .await
    };
    json_answer(run.await)
}

async fn ims_account(
    State(st): State<InstanceState>,
    meta: Meta,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let run = async {
        let (op, _) = caller(&st.instance, &meta, &headers, "migration#ImsAccount").await?;
        let req: ImsAccountRequest = body_of(&body, "an IMS configuration")?;
        st.instance
            .migration()
            .migration_set_ims_account(&op, &req, meta.now)
            .await
    };
    match run.await {
        Ok(set) => no_store(Json(set).into_response()),
        Err(f) => ApiFault(f).into_response(),
    }
}

async fn verify(
    State(st): State<InstanceState>,
    meta: Meta,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let run = async {
        let (op, _) = caller(&st.instance, &meta, &headers, "migration#Verify").await?;
        let req: VerifyRequest = body_of(&body, "a verify request")?;
        st.instance
            .migration()
            .migration_verify(&op, req.bearer_token)
            .await
    };
    match run.await {
        Ok(probes) => no_store(Json(json!({"probes": probes})).into_response()),
        Err(f) => ApiFault(f).into_response(),
    }
}

async fn completion(
    State(st): State<InstanceState>,
    meta: Meta,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let run = async {
        let (op, caller) = caller(&st.instance, &meta, &headers, "migration#Completion").await?;
        let req: Completion = body_of(&body, "a completion")?;
        st.instance
            .migration()
            .migration_complete(&op, &req, meta.now, &caller)
            .await
    };
    json_answer(run.await)
}

async fn copy_access(
    State(st): State<InstanceState>,
    meta: Meta,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let run = async {
        let (op, caller) = caller(&st.instance, &meta, &headers, "migration#CopyAccess").await?;
        let req: CopyAccessRequest = body_of(&body, "a copy-access request")?;
        st.instance
            .migration()
            .migration_copy_access(&op, &req, meta.now, &caller)
            .await
    };
    json_answer(run.await)
}

async fn notice(
    State(st): State<InstanceState>,
    meta: Meta,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let run = async {
        let (op, caller) = caller(&st.instance, &meta, &headers, "migration#Notice").await?;
        let req: Notice = body_of(&body, "a notice")?;
        st.instance
            .migration()
            .migration_set_notice(&op, &req, meta.now, &caller)
            .await
    };
    match run.await {
        Ok(()) => no_store(StatusCode::NO_CONTENT.into_response()),
        Err(f) => ApiFault(f).into_response(),
    }
}

async fn journal(
    State(st): State<InstanceState>,
    meta: Meta,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let run = async {
        let (op, _) = caller(&st.instance, &meta, &headers, "migration#Journal").await?;
        let req: JournalReport = body_of(&body, "a journal report")?;
        st.instance
            .migration()
            .migration_set_report(&op, &req, meta.now)
            .await
    };
    match run.await {
        Ok(()) => no_store(StatusCode::NO_CONTENT.into_response()),
        Err(f) => ApiFault(f).into_response(),
    }
}
