//! Discovery, health, readiness and metrics, and a handler that panics.

use axum::body::Body;
use axum::Router;
use http::{Request, StatusCode};
use ims_core::audit::Context;
use ims_core::keys::{Algorithm, MasterKey};
use ims_core::Now;
use ims_http::{ops_router, AppState, Metrics};
use ims_identity::service::{self, Ims};
use ims_identity::store::KeyStore as _;
use ims_store::{Options, SqlStore};
use serde_json::json;
use std::sync::Arc;
use tower::ServiceExt as _;

use crate::harness::*;

#[tokio::test]
async fn discovery_health_and_metrics() {
    let h = harness().await;
    let (status, _, d) = h
        .call(
            Request::get("/.well-known/openid-configuration")
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(d["issuer"], ISSUER);
    assert_eq!(d["jwks_uri"], format!("{ISSUER}/ims/keys"));
    // HSTS on every answer, unknown paths included.
    for path in [
        "/.well-known/openid-configuration",
        "/no/such/path",
        "/ims/authorize/v2",
    ] {
        let (_, headers, _) = h.call(Request::get(path).body(Body::empty()).unwrap()).await;
        assert_eq!(headers["strict-transport-security"], "max-age=31536000", "{path}");
    }
    assert_eq!(d["token_endpoint"], format!("{ISSUER}/ims/token/v3"));
    let c = h.credential(&["openid"]).await;
    h.token(&c, "openid").await;
    let _ = h.cc("x", "y", &[]).await;
    let (status, _, _) = send(&h.ops, Request::get("/health/live").body(Body::empty()).unwrap()).await;
    assert_eq!(status, StatusCode::OK);
    let (status, _, body) = send(&h.ops, Request::get("/health/ready").body(Body::empty()).unwrap()).await;
    assert_eq!((status, body["status"].as_str()), (StatusCode::OK, Some("ready")));
    let (_, _, metrics) = send(&h.ops, Request::get("/metrics").body(Body::empty()).unwrap()).await;
    let text = metrics.as_str().unwrap();
    assert!(
        text.contains("ims_tokens_issued_total{grant_type=\"client_credentials\"} 1"),
        "{text}"
    );
    assert!(text.contains("ims_token_failures_total{error=\"invalid_client\"} 1"));
    for series in [
        "ims_build_info{version=",
        "process_resident_memory_bytes ",
        "process_open_fds ",
    ] {
        assert!(text.contains(series), "{series}: {text}");
    }
    assert!(
        text.contains("ims_http_requests_total{route=\"/ims/token/v3\",method=\"POST\",status=\"200\"} 1")
    );
    // The token requests above looked their clients up; the pool has connections, within bound.
    let value = |series: &str| -> u64 {
        let line = text
            .lines()
            .find(|l| l.starts_with(series))
            .unwrap_or_else(|| panic!("{series}: {text}"));
        line.rsplit(' ').next().unwrap().parse().unwrap()
    };
    let lookups = value("ims_client_cache_lookups_total{result=\"hit\"}")
        + value("ims_client_cache_lookups_total{result=\"miss\"}");
    assert!(lookups >= 2, "{text}");
    let (idle, in_use, max) = (
        value("ims_db_connections{state=\"idle\"}"),
        value("ims_db_connections{state=\"in_use\"}"),
        value("ims_db_connections_max "),
    );
    assert!(idle + in_use >= 1 && idle + in_use <= max && max >= 1, "{text}");
    // Unknown paths are a JSON 404; request ids are echoed.
    let req = Request::get("/nope")
        .header("x-request-id", "abc-123")
        .body(Body::empty())
        .unwrap();
    let resp = h.app.clone().oneshot(req).await.unwrap();
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
    let req = Request::get("/ims/keys")
        .header("x-request-id", "abc-123")
        .body(Body::empty())
        .unwrap();
    let resp = h.app.clone().oneshot(req).await.unwrap();
    assert_eq!(resp.headers()["x-request-id"], "abc-123");
}

#[tokio::test]
async fn readiness_needs_a_key_to_sign_with() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("ims.db").display());
    let store = Arc::new(SqlStore::open(&Options::new(url), Now::system()).await.unwrap());
    let ctx = Context::new(Now::system(), "test");
    service::bootstrap(&*store, "Acme", "a@b.c", None, &ctx)
        .await
        .unwrap();
    let mut s = settings(Algorithm::ES256);
    s.key_refresh_secs = 1;
    let ims = Arc::new(
        Ims::start(Arc::<SqlStore>::clone(&store), MasterKey::generate(), s, &ctx)
            .await
            .unwrap(),
    );
    let ops = ops_router(AppState {
        ims: Arc::clone(&ims),
        metrics: Arc::new(Metrics::default()),
    });
    let ready = || async {
        let (status, _, body) = send(&ops, Request::get("/health/ready").body(Body::empty()).unwrap()).await;
        (status, body["status"].as_str().unwrap_or_default().to_owned())
    };
    assert_eq!(ready().await, (StatusCode::OK, "ready".to_owned()));
    // Every key gone from the database: once this node's ring is reread it cannot sign.
    let kids: Vec<String> = store.keys().await.unwrap().into_iter().map(|k| k.kid).collect();
    store
        .delete_keys(&kids, &ctx.event("key.delete", "all", "success", json!({})))
        .await
        .unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    assert_eq!(
        ready().await,
        (StatusCode::SERVICE_UNAVAILABLE, "no signing key".to_owned())
    );
    // Keys again (as another node's rotation would make them): ready at the next probe.
    let now = Context::new(Now::system(), "test");
    for alg in [Algorithm::ES256, Algorithm::RS256] {
        ims.tokens().rotate_key(Some(alg), true, &now).await.unwrap();
    }
    assert_eq!(ready().await, (StatusCode::OK, "ready".to_owned()));
}

#[tokio::test]
async fn readiness_fails_while_migrations_are_pending() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("ims.db").display());
    let migrated = Arc::new(
        SqlStore::open(&Options::new(url.clone()), Now::system())
            .await
            .unwrap(),
    );
    let ctx = Context::new(Now::system(), "test");
    service::bootstrap(&*migrated, "Acme", "a@b.c", None, &ctx)
        .await
        .unwrap();
    let ims = Ims::start(
        Arc::<SqlStore>::clone(&migrated),
        MasterKey::generate(),
        settings(Algorithm::ES256),
        &ctx,
    )
    .await
    .unwrap();
    // Forget the applied step: the service now sees its schema as behind.
    let mut conn = <sqlx::AnyConnection as sqlx::Connection>::connect(&url)
        .await
        .unwrap();
    sqlx::query("DELETE FROM schema_migrations")
        .execute(&mut conn)
        .await
        .unwrap();
    let state = AppState {
        ims: Arc::new(ims),
        metrics: Arc::new(Metrics::default()),
    };
    let (status, _, body) = send(
        &ops_router(state),
        Request::get("/health/ready").body(Body::empty()).unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(
        body["pending_migrations"],
        json!([
            "0001_foundation",
            "0002_people",
            "0003_directory",
            "0004_developer",
            "0005_backchannel_logout",
            "0006_outbox",
            "0007_invitations",
            "0008_shared_state"
        ])
    );
}

/// A handler that panics costs its request a 500; the connection's next request, other
/// connections and the listener go on.
#[tokio::test]
async fn a_panicking_handler_answers_500_and_the_server_goes_on() {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    #[allow(clippy::panic)]
    async fn broken() -> &'static str {
        panic!("a bug in a handler")
    }
    let app = Router::new()
        .route("/broken", axum::routing::get(broken))
        .route("/fine", axum::routing::get(|| async { "fine" }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(ims_http::serve::serve(
        listener,
        app,
        None,
        Default::default(),
        async {
            let _ = stopped.await;
        },
    ));
    let ask = |path: &'static str| async move {
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        s.write_all(format!("GET {path} HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n").as_bytes())
            .await
            .unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).await.unwrap();
        out
    };
    for _ in 0..3 {
        let answer = ask("/broken").await;
        assert!(answer.starts_with("HTTP/1.1 500"), "{answer}");
        assert!(answer.contains("server_error"), "{answer}");
        let answer = ask("/fine").await;
        assert!(
            answer.starts_with("HTTP/1.1 200") && answer.ends_with("fine"),
            "{answer}"
        );
    }
    stop.send(()).unwrap();
    server.await.unwrap().unwrap();
}

/// Sends `bytes` on a new connection and reads until the server closes it.
async fn exchange(addr: std::net::SocketAddr, bytes: &[u8]) -> String {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(bytes).await.unwrap();
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out).await;
    String::from_utf8_lossy(&out).into_owned()
}

/// A listener that answers each request with the client address it settled on.
async fn who_server(edge: ims_http::edge::Edge) -> (std::net::SocketAddr, tokio::sync::oneshot::Sender<()>) {
    async fn who(meta: ims_http::Meta) -> String {
        meta.source.unwrap_or_default()
    }
    let app = Router::new().route("/who", axum::routing::get(who));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(ims_http::serve::serve(
        listener,
        app,
        None,
        Arc::new(edge),
        async {
            let _ = stopped.await;
        },
    ));
    (addr, stop)
}

const WHO: &str = "GET /who HTTP/1.1\r\nhost: x\r\nconnection: close\r\n";

fn body(answer: &str) -> &str {
    answer.split("\r\n\r\n").nth(1).unwrap_or_default()
}

/// The client's address comes from a trusted proxy's forwarding headers, and only from a trusted
/// proxy: from anyone else they are the client's own words and change nothing.
#[tokio::test]
async fn forwarding_headers_name_the_client_only_from_a_trusted_proxy() {
    let trusting = ims_http::edge::Edge {
        trusted: ims_http::edge::parse_networks("127.0.0.0/8").unwrap(),
        ..Default::default()
    };
    let (addr, _stop) = who_server(trusting).await;
    let answer = exchange(
        addr,
        format!("{WHO}x-forwarded-for: 203.0.113.9\r\n\r\n").as_bytes(),
    )
    .await;
    assert_eq!(body(&answer), "203.0.113.9", "{answer}");
    let answer = exchange(
        addr,
        format!("{WHO}forwarded: for=\"[2001:db8::5]:443\"\r\n\r\n").as_bytes(),
    )
    .await;
    assert_eq!(body(&answer), "2001:db8::5", "{answer}");
    let answer = exchange(addr, format!("{WHO}\r\n").as_bytes()).await;
    assert_eq!(body(&answer), "127.0.0.1", "{answer}");

    let elsewhere = ims_http::edge::Edge {
        trusted: ims_http::edge::parse_networks("10.0.0.0/8").unwrap(),
        ..Default::default()
    };
    let (addr, _stop) = who_server(elsewhere).await;
    let answer = exchange(
        addr,
        format!("{WHO}x-forwarded-for: 203.0.113.9\r\n\r\n").as_bytes(),
    )
    .await;
    assert_eq!(
        body(&answer),
        "127.0.0.1",
        "a header from an untrusted peer was believed: {answer}"
    );
}

/// With the PROXY protocol on, a trusted proxy's connection must start with its header, whose
/// source is the client; a connection that does not is dropped unanswered.
#[tokio::test]
async fn proxy_protocol_headers_name_the_client_and_are_required_from_the_proxy() {
    let edge = ims_http::edge::Edge {
        trusted: ims_http::edge::parse_networks("127.0.0.1").unwrap(),
        proxy_protocol: true,
        ..Default::default()
    };
    let (addr, _stop) = who_server(edge).await;
    let v1 = format!("PROXY TCP4 198.51.100.23 127.0.0.1 40000 443\r\n{WHO}\r\n");
    let answer = exchange(addr, v1.as_bytes()).await;
    assert_eq!(body(&answer), "198.51.100.23", "{answer}");
    let mut v2 = b"\r\n\r\n\0\r\nQUIT\n".to_vec();
    v2.extend([
        0x21, 0x11, 0, 12, 192, 0, 2, 44, 127, 0, 0, 1, 0x9c, 0x40, 0x01, 0xbb,
    ]);
    v2.extend(format!("{WHO}\r\n").as_bytes());
    let answer = exchange(addr, &v2).await;
    assert_eq!(body(&answer), "192.0.2.44", "{answer}");
    // The header's client is not a proxy: what it forwards is its own say.
    let spoof =
        format!("PROXY TCP4 198.51.100.23 127.0.0.1 40000 443\r\n{WHO}x-forwarded-for: 10.9.9.9\r\n\r\n");
    let answer = exchange(addr, spoof.as_bytes()).await;
    assert_eq!(body(&answer), "198.51.100.23", "{answer}");
    let answer = exchange(addr, format!("{WHO}\r\n").as_bytes()).await;
    assert_eq!(answer, "", "a connection without its PROXY header was served");
    // The shortest header, the request right behind it: nothing of the request is taken.
    let answer = exchange(addr, format!("PROXY UNKNOWN\r\n{WHO}\r\n").as_bytes()).await;
    assert_eq!(body(&answer), "127.0.0.1", "{answer}");
    // A header that arrives in pieces is waited for.
    {
        use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        s.write_all(b"PROXY TCP4 198.51.100.").await.unwrap();
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        s.write_all(format!("24 127.0.0.1 40000 443\r\n{WHO}\r\n").as_bytes())
            .await
            .unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).await.unwrap();
        assert_eq!(body(&out), "198.51.100.24", "{out}");
    }
}
