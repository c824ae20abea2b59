//! Campaign instances in-process: their stores, the SOAP router and its envelopes, the console.

use axum::body::Body;
use axum::Router;
use http::{Request, StatusCode};
use http_body_util::BodyExt as _;
use ims_campaign::model::{AuthType, Operator};
use ims_campaign::service::{Instance, InstanceInfo, InstanceKind};
use ims_campaign::store::OperatorStore as _;
use ims_core::secret::Secret;
use ims_core::Now;
use ims_http::instance::soap::{router, InstanceState};
use ims_store::instance::SqlInstanceStore;
use ims_wire::rights::DEFAULT_GROUPS;
use std::sync::Arc;
use tower::ServiceExt as _;

use super::*;

pub(crate) const OPERATOR_PASSWORD: &str = "operator password 1";

/// The store an instance was built over, kept by the test that built it (the instance does not
/// hand it out).
pub(crate) type Store = Arc<dyn ims_campaign::store::InstanceStore>;

pub(crate) async fn instance_with(build: &str) -> (Instance, Store, tempfile::TempDir) {
    instance_of(build, InstanceKind::Marketing).await
}

pub(crate) async fn instance_of(build: &str, kind: InstanceKind) -> (Instance, Store, tempfile::TempDir) {
    let (inst, store, dir, _) = instance_on(Db::Sqlite, build, kind).await.unwrap();
    (inst, store, dir)
}

/// A PostgreSQL schema to drop when a test is done.
pub(crate) type Cleanup = Option<(Arc<SqlInstanceStore>, String)>;

/// An instance on `db` with jdoe, three recipients and the default groups (`None` when the
/// run skips PostgreSQL).
pub(crate) async fn instance_on(
    db: Db,
    build: &str,
    kind: InstanceKind,
) -> Option<(Instance, Store, tempfile::TempDir, Cleanup)> {
    let dir = tempfile::tempdir().unwrap();
    let (opts, schema) = db_options(db, dir.path())?;
    let store = Arc::new(SqlInstanceStore::open(&opts, Now::system()).await.unwrap());
    for g in DEFAULT_GROUPS {
        store.ensure_group(g.name, g.label, g.rights).await.unwrap();
    }
    let now = Now::system();
    store
        .create_operator(
            &Operator {
                id: 0,
                login: "jdoe".into(),
                label: "J. Doe".into(),
                email: Some("jdoe@example.com".into()),
                auth_type: AuthType::Native,
                disabled: false,
                forbid_rich_client: false,
                trusted_ip_mask: None,
                security_zone: None,
                rights: vec![],
                groups: vec!["deliveryOperators".into()],
                password_hash: Some(
                    ims_core::password::hash(&Secret::new(OPERATOR_PASSWORD))
                        .await
                        .unwrap(),
                ),
                ims_id: None,
                builtin: false,
                created_at: now,
                modified_at: now,
            },
            &Context::new(ims_core::Now::from_millis(0), "test").event(
                "operator.create",
                "t",
                "success",
                serde_json::json!({}),
            ),
        )
        .await
        .unwrap();
    {
        use ims_campaign::store::RecipientStore as _;
        let folder = store
            .ensure_folder("nmsRootRecipient", "Recipients")
            .await
            .unwrap();
        store
            .grant_folder_to_group(
                folder,
                "deliveryOperators",
                true,
                false,
                &Context::new(now, "test").event(
                    "folder.grant",
                    "nmsRootRecipient",
                    "success",
                    serde_json::json!({}),
                ),
            )
            .await
            .unwrap();
        for (first, email) in [
            ("Ana", "ana@example.com"),
            ("Bo", "bo@example.com"),
            ("Chen", "chen@example.com"),
        ] {
            store
                .create_recipient(&ims_campaign::model::Recipient {
                    id: 0,
                    email: Some(email.into()),
                    first_name: Some(first.into()),
                    last_name: Some("Test".into()),
                    folder_id: Some(folder),
                    created_at: now,
                    modified_at: now,
                })
                .await
                .unwrap();
        }
    }
    let cleanup = schema.map(|s| (Arc::clone(&store), s));
    let store: Store = store;
    let inst = Instance::new(
        Arc::clone(&store),
        InstanceInfo::new("prod", kind, build.parse().unwrap()),
    );
    Some((inst, store, dir, cleanup))
}

/// Adds an operator like jdoe (same password and profile) under another login and groups.
pub(crate) async fn add_like_jdoe(
    store: &Arc<dyn ims_campaign::store::InstanceStore>,
    login: &str,
    groups: &[&str],
) -> i64 {
    let mut op = store.operator_by_login("jdoe").await.unwrap().unwrap();
    op.login = login.into();
    op.groups = groups.iter().map(|g| g.to_string()).collect();
    let ctx = Context::new(ims_core::Now::from_millis(0), "test");
    store
        .create_operator(
            &op,
            &ctx.event("operator.create", login, "success", serde_json::json!({})),
        )
        .await
        .unwrap()
}

/// Signs in with the shared password; the header that carries the session afterwards.
pub(crate) async fn session_of(app: &Router, login: &str) -> Vec<(&'static str, String)> {
    let (_, xml) = call(
        app,
        "xtk:session#Logon",
        logon_body(login, OPERATOR_PASSWORD),
        &[],
    )
    .await;
    vec![("x-session-token", value(&xml, "pstrSessionToken"))]
}

pub(crate) fn envelope(method: &str, urn: &str, params: &str) -> String {
    format!(
        r#"<SOAP-ENV:Envelope xmlns:xsd="http://www.w3.org/2001/XMLSchema" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" xmlns:SOAP-ENV="http://schemas.xmlsoap.org/soap/envelope/"><SOAP-ENV:Body><m:{method} xmlns:m="urn:{urn}" SOAP-ENV:encodingStyle="http://schemas.xmlsoap.org/soap/encoding/">{params}</m:{method}></SOAP-ENV:Body></SOAP-ENV:Envelope>"#
    )
}

pub(crate) fn logon_body(login: &str, password: &str) -> String {
    envelope(
        "Logon",
        "xtk:session",
        &format!(
            r#"<sessiontoken xsi:type="xsd:string"></sessiontoken><login xsi:type="xsd:string">{login}</login><password xsi:type="xsd:string">{password}</password><parameters xsi:type="ns:Element"/>"#
        ),
    )
}

pub(crate) fn soap_req(action: &str) -> http::request::Builder {
    Request::post(format!(
        "/nl/jsp/soaprouter.jsp?soapAction={}",
        url::form_urlencoded::byte_serialize(action.as_bytes()).collect::<String>()
    ))
    .header("content-type", "application/soap+xml;charset=UTF-8")
    .header("soapaction", action)
}

pub(crate) async fn call(
    app: &Router,
    action: &str,
    body: String,
    extra: &[(&str, String)],
) -> (StatusCode, String) {
    let mut b = soap_req(action);
    for (k, v) in extra {
        b = b.header(*k, v);
    }
    let resp = app
        .clone()
        .oneshot(b.body(Body::from(body)).unwrap())
        .await
        .unwrap();
    let status = resp.status();
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8(bytes.to_vec()).unwrap())
}

pub(crate) fn value(xml: &str, element: &str) -> String {
    let root = ims_wire::soap::parse_document(xml, ims_wire::soap::Limits::default()).unwrap();
    let body = root.element("Body").unwrap();
    let resp = body.elements().next().unwrap();
    resp.element(element).map(|e| e.text()).unwrap_or_default()
}

pub(crate) fn fault_code(xml: &str) -> Option<String> {
    let root = ims_wire::soap::parse_document(xml, ims_wire::soap::Limits::default()).ok()?;
    let f = root.element("Body")?.element("Fault")?;
    Some(f.element("faultstring")?.text().split(' ').next()?.to_owned())
}

pub(crate) fn query(def: &str) -> String {
    envelope(
        "ExecuteQuery",
        "xtk:queryDef",
        &format!(
            r#"<sessiontoken/><document xsi:type="" SOAP-ENV:encodingStyle="http://xml.apache.org/xml-soap/literalxml">{def}</document>"#
        ),
    )
}

/// A browser's view of one console request: status, headers, body.
pub(crate) async fn page(
    app: &Router,
    method: &str,
    path: &str,
    cookie: &str,
    form: &[(&str, &str)],
) -> (StatusCode, http::HeaderMap, String) {
    let body: String = url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(form)
        .finish();
    let mut b = Request::builder().method(method).uri(path);
    if !cookie.is_empty() {
        b = b.header("cookie", cookie);
    }
    if method == "POST" {
        b = b.header("content-type", "application/x-www-form-urlencoded");
    }
    let resp = app
        .clone()
        .oneshot(b.body(Body::from(body)).unwrap())
        .await
        .unwrap();
    let status = resp.status();
    let headers = resp.headers().clone();
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    (status, headers, String::from_utf8(bytes.to_vec()).unwrap())
}

pub(crate) fn set_cookie<'a>(headers: &'a http::HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with(&format!("{name}=")))
}

pub(crate) fn cookie_value(line: &str) -> String {
    line.split(';')
        .next()
        .unwrap()
        .split_once('=')
        .unwrap()
        .1
        .to_owned()
}

/// Signs in to the console; returns the cookie header and a page's CSRF token.
pub(crate) async fn console_sign_in(
    app: &Router,
    login: &str,
    password: &str,
) -> (StatusCode, http::HeaderMap, String) {
    let (_, headers, html) = page(app, "GET", "/console/login", "", &[]).await;
    let pre = cookie_value(set_cookie(&headers, "ims_console_login").unwrap());
    let csrf = csrf_in(&html);
    page(
        app,
        "POST",
        "/console/login",
        &format!("ims_console_login={pre}"),
        &[("csrf", &csrf), ("login", login), ("password", password)],
    )
    .await
}

pub(crate) fn push(event: &str) -> String {
    envelope(
        "PushEvent",
        "nms:rtEvent",
        &format!("<sessiontoken/><domEvent>{event}</domEvent>"),
    )
}

pub(crate) async fn finish(cleanup: Cleanup) {
    if let Some((store, schema)) = cleanup {
        store.drop_schema(&schema).await.unwrap();
    }
}

pub(crate) async fn instance_app() -> (Router, tempfile::TempDir) {
    let (inst, _, dir) = instance_with("7.4.1").await;
    (
        router(InstanceState {
            instance: Arc::new(inst),
            tls: false,
        }),
        dir,
    )
}

pub(crate) fn output(xml: &str) -> ims_wire::soap::Element {
    let root = ims_wire::soap::parse_document(xml, ims_wire::soap::Limits::default()).unwrap();
    let resp = root
        .element("Body")
        .unwrap()
        .element("ExecuteQueryResponse")
        .unwrap_or_else(|| panic!("{xml}"));
    let out = resp
        .element("pdomOutput")
        .unwrap()
        .elements()
        .next()
        .unwrap()
        .clone();
    out
}
