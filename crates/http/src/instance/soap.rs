//! The instance's HTTP surface: the SOAP router, `/r/test` and `ping.jsp`. Faults are sent with
//! HTTP 200, the choice that lets the reference client parse them into errors with their codes
//! (the reference client reads `faultcode` and `faultstring` only when the status is 200).

use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use http::{HeaderMap, HeaderValue, StatusCode, Uri};
use std::sync::Arc;

use ims_campaign::fault::Fault;
use ims_campaign::model::Operator;
use ims_campaign::records::{QueryAnswer, QueryRow};
use ims_campaign::service::{Caller, Instance, SessionTokens};
use ims_campaign::sessions::{ServerInfo, SessionInfo, UserInfo};
use ims_core::secret::Secret;
use ims_core::time;
use ims_core::Now;
use ims_wire::soap::{self, Envelope, Limits, Value};
use ims_wire::soap_ops::{self, Operation};

use crate::error::soap::{xml, SoapFault};
use crate::metrics::Metrics;
use crate::pages::cookie;
use crate::{Body, Meta};

/// Largest SOAP request read (checked before parsing).
pub const MAX_SOAP_BODY: usize = 1024 * 1024;

#[derive(Clone, Debug)]
pub struct InstanceState {
    pub instance: Arc<Instance>,
    /// Served over HTTPS (for the addresses the WSDL gives).
    pub tls: bool,
}

/// Collapses repeated slashes: the reference client concatenates its endpoint and paths, so a
/// trailing slash in the endpoint yields `//nl/jsp/...`.
async fn normalise_slashes(mut req: Request, next: axum::middleware::Next) -> Response {
    let path = req.uri().path();
    if path.contains("//") {
        let mut clean = String::with_capacity(path.len());
        for c in path.chars() {
            if !(c == '/' && clean.ends_with('/')) {
                clean.push(c);
            }
        }
        let pq = match req.uri().query() {
            Some(q) => format!("{clean}?{q}"),
            None => clean,
        };
        if let Ok(uri) = pq.parse::<Uri>() {
            *req.uri_mut() = uri;
        }
    }
    next.run(req).await
}

pub fn router(state: InstanceState) -> Router {
    measured_router(state, None)
}

/// The instance's routes, each request counted in `metrics` when given (an instance served on
/// its own has metrics of its own; inside `ims up` the access log alone).
pub fn measured_router(state: InstanceState, metrics: Option<Arc<Metrics>>) -> Router {
    let name: Arc<str> = Arc::from(state.instance.info().name.as_str());
    // One access log line per instance request (route template, status, time, request id), like
    // the IMS's; calls are also known through usage evidence.
    let access_log = move |req: Request, next: axum::middleware::Next| {
        let (metrics, name) = (metrics.clone(), Arc::clone(&name));
        async move { crate::request::observed(metrics.as_deref(), Some(&name), req, next).await }
    };
    let inner = Router::new()
        .route("/nl/jsp/soaprouter.jsp", post(soap_router))
        .route("/r/test", get(r_test))
        .route("/nl/jsp/ping.jsp", get(ping))
        .route("/nl/jsp/mcPing.jsp", get(mc_ping))
        .route("/nl/jsp/schemawsdl.jsp", get(schema_wsdl).post(schema_wsdl))
        .merge(crate::instance::console::routes())
        .merge(crate::instance::migration_api::routes())
        .layer(axum::extract::DefaultBodyLimit::max(MAX_SOAP_BODY))
        .layer(axum::Extension(crate::BodyLimit(MAX_SOAP_BODY)))
        .layer(axum::middleware::from_fn(access_log))
        .with_state(state);
    // Slashes are normalised before routing, so this layer wraps the whole router.
    Router::new()
        .fallback_service(inner)
        .layer(axum::middleware::from_fn(normalise_slashes))
        .layer(axum::middleware::map_response(crate::ims::strict_transport))
}

async fn r_test(State(st): State<InstanceState>, meta: Meta, headers: HeaderMap) -> Response {
    let info = st.instance.info();
    let host = headers
        .get(http::header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or_default();
    let body = format!(
        "<redir status='OK' date='{}' build='{}' version='{}.{}.{}' instance='{}' sourceIP='{}' host='{}' localHost='{}'/>",
        time::server_date(meta.now),
        info.build_number,
        info.build.major,
        info.build.minor,
        info.build.patch,
        soap::escape(&info.name),
        soap::escape(meta.source.as_deref().unwrap_or_default()),
        soap::escape(host),
        soap::escape(&info.name)
    );
    xml(body)
}

async fn ping(meta: Meta) -> Response {
    let mut resp = format!("OK\n{}\n", time::server_date(meta.now)).into_response();
    resp.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain;charset=utf-8"),
    );
    resp
}

/// The Message Center queue: `Ok`, the time and the pending events, or `Error` when full.
async fn mc_ping(State(st): State<InstanceState>, meta: Meta) -> Response {
    let text = match st.instance.records().mc_ping().await {
        Ok((pending, size)) if pending < size => {
            format!(
                "Ok\n{}\n{pending}/{size} pending events\n",
                time::server_date(meta.now)
            )
        }
        Ok((pending, size)) => format!("Error\nThe queue is full ({pending}/{size})\n"),
        Err(_) => "Error\nThe event queue cannot be read\n".to_owned(),
    };
    let mut resp = text.into_response();
    resp.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain;charset=utf-8"),
    );
    resp
}

/// WSDL of a schema we serve, for a signed-in caller (session or bearer).
async fn schema_wsdl(State(st): State<InstanceState>, meta: Meta, headers: HeaderMap, uri: Uri) -> Response {
    let schema = uri
        .query()
        .and_then(|q| {
            url::form_urlencoded::parse(q.as_bytes())
                .find(|(k, _)| k == "schema")
                .map(|(_, v)| v.into_owned())
        })
        .unwrap_or_default();
    let creds = Presented::from_headers(&headers);
    let caller = Caller {
        source: meta.source.clone(),
        client: client_headers(&headers),
    };
    if creds.bearer.is_some() && creds.session.is_some() {
        return SoapFault(Fault::bad_request(
            "send either a bearer token or a session token, not both",
        ))
        .into_response();
    }
    if let Err(fault) = authenticated(&st.instance, &creds, "schemawsdl.jsp", meta.now, &caller).await {
        return SoapFault(fault).into_response();
    }
    // The router's address as configured: a `Host` header is the caller's to choose, and a WSDL
    // naming the caller's host would send the next client's calls (and tokens) there.
    let scheme = if st.tls { "https" } else { "http" };
    let base = st
        .instance
        .info()
        .public_url
        .clone()
        .unwrap_or_else(|| format!("{scheme}://localhost"));
    let location = format!("{}/nl/jsp/soaprouter.jsp", base.trim_end_matches('/'));
    match crate::instance::wsdl::wsdl(&schema, &location) {
        Some(doc) => xml(doc),
        None => {
            let mut resp = (StatusCode::NOT_FOUND, format!("no schema {schema:?}")).into_response();
            resp.headers_mut().insert(
                http::header::CONTENT_TYPE,
                HeaderValue::from_static("text/plain;charset=utf-8"),
            );
            resp
        }
    }
}

pub(crate) fn bearer_of(headers: &HeaderMap) -> Option<String> {
    header(headers, "authorization").and_then(|a| {
        let (scheme, token) = a.split_once(' ')?;
        scheme
            .eq_ignore_ascii_case("bearer")
            .then(|| token.trim().to_owned())
    })
}

/// Credentials a request carries, from wherever the reference client puts them.
#[derive(Debug, Default)]
pub(crate) struct Presented {
    /// The session came from the HTTP `Cookie` header, which a browser adds by itself to a
    /// request another site makes it send: then the security token must come too.
    pub(crate) from_cookie: bool,
    pub(crate) session: Option<String>,
    pub(crate) security: Option<String>,
    pub(crate) bearer: Option<String>,
}

impl Presented {
    /// What the HTTP headers carry: a session (`X-Session-Token`, else the `__sessiontoken`
    /// cookie, noted as such), its security token, a bearer token.
    fn from_headers(headers: &HeaderMap) -> Self {
        let explicit = header(headers, "x-session-token");
        let cookie = cookie(headers, "__sessiontoken").filter(|s| !s.trim().is_empty());
        Presented {
            from_cookie: explicit.is_none() && cookie.is_some(),
            session: explicit.or(cookie),
            security: header(headers, "x-security-token"),
            bearer: bearer_of(headers),
        }
    }
}

pub(crate) fn header(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .map(str::to_owned)
}

fn presented(headers: &HeaderMap, env: &Envelope) -> Presented {
    let soap_cookie = env.header_text("Cookie").and_then(|c| {
        c.split(';')
            .map(str::trim)
            .find_map(|kv| kv.strip_prefix("__sessiontoken=").map(str::to_owned))
    });
    let first_param = env
        .params()
        .first()
        .filter(|p| p.name.eq_ignore_ascii_case("sessiontoken"))
        .map(|p| p.text());
    let non_empty = |v: Option<String>| v.filter(|s| !s.trim().is_empty());
    let from_http = Presented::from_headers(headers);
    Presented {
        session: from_http
            .session
            .or_else(|| non_empty(soap_cookie))
            .or_else(|| non_empty(first_param)),
        security: from_http
            .security
            .or_else(|| non_empty(env.header_text("X-Security-Token"))),
        ..from_http
    }
}

/// Client headers kept as usage evidence.
pub(crate) fn client_headers(headers: &HeaderMap) -> Option<String> {
    let keep = [
        "acc-sdk-auth",
        "acc-sdk-version",
        "acc-sdk-client-app",
        "x-query-source",
        "user-agent",
    ];
    let parts: Vec<String> = keep
        .iter()
        .filter_map(|k| {
            header(headers, k).map(|v| format!("{k}: {}", v.chars().take(120).collect::<String>()))
        })
        .collect();
    (!parts.is_empty()).then(|| parts.join("; "))
}

async fn soap_router(
    State(st): State<InstanceState>,
    meta: Meta,
    headers: HeaderMap,
    uri: Uri,
    Body(body, _): Body<SoapFault>,
) -> Response {
    match handle(&st, &meta, &headers, &uri, &body).await {
        Ok(xml_body) => xml(xml_body),
        Err(fault) => SoapFault(fault).into_response(),
    }
}

async fn handle(
    st: &InstanceState,
    meta: &Meta,
    headers: &HeaderMap,
    uri: &Uri,
    body: &[u8],
) -> Result<String, Fault> {
    let text = std::str::from_utf8(body).map_err(|_| Fault::bad_request("the request must be UTF-8"))?;
    let env = soap::parse_envelope(text, Limits::default()).map_err(|e| Fault::bad_request(e.0))?;
    // The operation is the Body's; every action the request names (header, URL parameter) must
    // agree with it, so nothing upstream can route or authorise on a different one.
    let from_url = uri.query().and_then(|q| {
        url::form_urlencoded::parse(q.as_bytes())
            .find(|(k, _)| k == "soapAction")
            .map(|(_, v)| v.into_owned())
    });
    for action in [header(headers, "soapaction"), from_url].iter().flatten() {
        if !soap::action_matches(action, &env) {
            return Err(Fault::bad_request(
                "the SOAPAction does not name the operation in the Body",
            ));
        }
    }
    let creds = presented(headers, &env);
    if creds.bearer.is_some() && creds.session.is_some() {
        return Err(Fault::bad_request(
            "send either a bearer token or a session token, not both",
        ));
    }
    let caller = Caller {
        source: meta.source.clone(),
        client: client_headers(headers),
    };
    let operation = env.operation();
    let op = Operation::parse(&env).map_err(|e| Fault::bad_request(e.0))?;
    let call = Call {
        inst: &st.instance,
        creds: &creds,
        operation: &operation,
        now: meta.now,
        caller: &caller,
    };
    match op {
        Operation::Logon {
            login,
            password,
            remember,
        } => {
            let password = Secret::new(password);
            let (tokens, who) = call
                .inst
                .sessions()
                .logon(&login, &password, remember, call.now, &caller)
                .await?;
            logon_response("Logon", call.inst, &who, &tokens).await
        }
        Operation::BearerTokenLogon { token } => {
            let (tokens, who) = call
                .inst
                .sessions()
                .bearer_logon(token.trim(), call.now, &caller)
                .await?;
            logon_response("BearerTokenLogon", call.inst, &who, &tokens).await
        }
        Operation::Logoff => {
            if let Some(session) = &creds.session {
                call.inst.sessions().logoff(session).await?;
            }
            Ok(soap::response("Logoff", "urn:xtk:session", &[]))
        }
        Operation::Unknown { name, ns } => {
            call.operator().await?;
            Err(Fault::unknown_method(&name, &ns))
        }
        op => call.run(op, &env.method.ns).await,
    }
}

/// A document argument, or the client fault that says why it is missing.
fn argument(d: soap_ops::Document<'_>) -> Result<&soap::Element, Fault> {
    d.map_err(|e| Fault::bad_request(e.0))
}

/// An authenticated call's context: who presents what, to which instance, when.
struct Call<'a> {
    inst: &'a Instance,
    creds: &'a Presented,
    operation: &'a str,
    now: Now,
    caller: &'a Caller,
}

impl Call<'_> {
    async fn operator(&self) -> Result<Operator, Fault> {
        authenticated(self.inst, self.creds, self.operation, self.now, self.caller).await
    }

    /// Runs an operation that needs an authenticated operator; `ns` is the envelope's
    /// namespace, which a `Write` answers in.
    async fn run(&self, op: Operation<'_>, ns: &str) -> Result<String, Fault> {
        let who = self.operator().await?;
        let inst = self.inst;
        match op {
            Operation::GetServerTime => Ok(soap::response(
                "GetServerTime",
                "urn:xtk:session",
                &[("pdtTime", Value::DateTime(time::iso8601(self.now)))],
            )),
            Operation::GetOption { name } => {
                // Unknown options answer an empty value of type 0, as the vendor's server does.
                let (value, kind) = inst
                    .sessions()
                    .option(&name)
                    .map_or((String::new(), 0), |v| (v, 6));
                Ok(soap::response(
                    "GetOption",
                    "urn:xtk:session",
                    &[
                        ("pstrValue", Value::String(value)),
                        ("pbtType", Value::Byte(kind)),
                    ],
                ))
            }
            Operation::GetUserInfo => Ok(soap::response(
                "GetUserInfo",
                "urn:xtk:session",
                &[(
                    "pUserInfo",
                    Value::Element(user_info_xml(&inst.sessions().user_info(&who).await?)),
                )],
            )),
            Operation::GetEntityIfMoreRecent { pk } => {
                let doc = match pk.split_once('|') {
                    Some(("xtk:schema", id)) => ims_campaign::schemas::compiled(id).unwrap_or_default(),
                    _ => "",
                };
                Ok(soap::response(
                    "GetEntityIfMoreRecent",
                    "urn:wpp:default",
                    &[("pdomDoc", Value::Element(doc.to_owned()))],
                ))
            }
            Operation::Write { document } => {
                inst.records()
                    .write(&who, argument(document)?, self.now, self.caller)
                    .await?;
                Ok(soap::response("Write", ns, &[]))
            }
            Operation::PushEvent { event } => {
                let id = inst
                    .records()
                    .push_event(&who, argument(event)?, self.now)
                    .await?;
                Ok(soap::response(
                    "PushEvent",
                    "urn:nms:rtEvent",
                    &[("plId", Value::Int64(id))],
                ))
            }
            Operation::ExecuteQuery { query } => {
                let output = inst.records().execute_query(&who, argument(query)?).await?;
                Ok(soap::response(
                    "ExecuteQuery",
                    "urn:xtk:queryDef",
                    &[("pdomOutput", Value::Element(query_xml(&output)))],
                ))
            }
            // Logons, Logoff and unknown methods are answered before authentication.
            Operation::Logon { .. }
            | Operation::BearerTokenLogon { .. }
            | Operation::Logoff
            | Operation::Unknown { .. } => Err(Fault::bad_request("this operation is not run here")),
        }
    }
}

/// The operator a call runs as: the bearer token's, or the session's.
pub(crate) async fn authenticated(
    inst: &Instance,
    creds: &Presented,
    operation: &str,
    now: Now,
    caller: &Caller,
) -> Result<Operator, Fault> {
    if let Some(token) = &creds.bearer {
        return inst
            .sessions()
            .bearer_operator(token, operation, now, caller)
            .await;
    }
    let session = creds.session.as_deref().ok_or_else(Fault::session_expired)?;
    // The vendor pairs the session cookie with `X-Security-Token`; we require the pair when the
    // session rides on the cookie (cross-site requests carry cookies, never headers), and take
    // a session token sent explicitly (header, SOAP header, first parameter) alone.
    if creds.from_cookie && creds.security.is_none() {
        return Err(Fault::session_expired_because(
            "a session sent as the __sessiontoken cookie needs its security token (X-Security-Token)",
        ));
    }
    let (op, session) = inst
        .sessions()
        .session_operator(session, creds.security.as_deref(), caller.source.as_deref(), now)
        .await?;
    inst.sessions()
        .note_call(&op, operation, session.auth_path, caller, now);
    Ok(op)
}

async fn logon_response(
    method: &str,
    inst: &Instance,
    op: &Operator,
    tokens: &SessionTokens,
) -> Result<String, Fault> {
    Ok(soap::response(
        method,
        "urn:xtk:session",
        &[
            (
                "pstrSessionToken",
                Value::String(tokens.session.expose().to_owned()),
            ),
            (
                "pSessionInfo",
                Value::Element(session_info_xml(&inst.sessions().session_info(op).await?)),
            ),
            (
                "pstrSecurityToken",
                Value::String(tokens.security.expose().to_owned()),
            ),
        ],
    ))
}

/// `<serverInfo .../>` of the session information.
fn server_info_xml(s: &ServerInfo) -> String {
    format!(
        "<serverInfo buildNumber=\"{}\" majNumber=\"{}\" minNumber=\"{}\" servicePack=\"{}\" instanceName=\"{}\"/>",
        s.build_number,
        s.build.major,
        s.build.minor,
        s.build.patch,
        soap::escape(&s.instance_name)
    )
}

/// `<userInfo .../>`: the operator, its groups, effective rights and the installed packages.
fn user_info_xml(u: &UserInfo) -> String {
    use soap::escape;
    let mut xml = format!(
        "<userInfo login=\"{}\" loginId=\"{}\" loginCS=\"{} ({})\" timezone=\"UTC\" instanceLocale=\"en\" locale=\"en\">",
        escape(&u.login),
        u.id,
        escape(&u.label),
        escape(&u.login)
    );
    for g in &u.groups {
        xml.push_str(&format!(
            "<login-group id=\"{}\" name=\"{}\" label=\"{}\"/>",
            g.id,
            escape(&g.name),
            escape(&g.label)
        ));
    }
    for r in &u.rights {
        xml.push_str(&format!("<login-right right=\"{}\"/>", escape(r)));
    }
    for p in &u.packages {
        xml.push_str(&format!(
            "<installed-package name=\"{}\" namespace=\"{}\"/>",
            escape(p.name),
            escape(p.namespace)
        ));
    }
    xml.push_str("</userInfo>");
    xml
}

/// `<sessionInfo>` returned by `Logon` and `BearerTokenLogon`.
fn session_info_xml(s: &SessionInfo) -> String {
    format!(
        "<sessionInfo>{}{}</sessionInfo>",
        server_info_xml(&s.server),
        user_info_xml(&s.user)
    )
}

/// A query's answer document: rows as elements named after the schema, their attributes in the
/// order asked, absent values left out.
fn query_xml(answer: &QueryAnswer) -> String {
    let row_xml = |element: &str, row: &QueryRow| {
        let mut xml = format!("<{element}");
        for (attr, value) in &row.fields {
            if let Some(v) = value {
                xml.push_str(&format!(" {attr}=\"{}\"", soap::escape(v)));
            }
        }
        xml.push_str("/>");
        xml
    };
    match answer {
        QueryAnswer::Count { element, count } => format!("<{element} count=\"{count}\"/>"),
        QueryAnswer::One {
            element,
            row: Some(row),
        } => row_xml(element, row),
        QueryAnswer::One { element, row: None } => format!("<{element}/>"),
        QueryAnswer::Many { element, rows } => {
            let mut xml = format!("<{element}-collection>");
            for row in rows {
                xml.push_str(&row_xml(element, row));
            }
            xml.push_str(&format!("</{element}-collection>"));
            xml
        }
    }
}
