//! The listener: HTTPS (rustls, HTTP/1.1 and HTTP/2 by ALPN) or, when asked for, plain HTTP. Each
//! request learns its peer address; slow TLS handshakes and header reads are cut off; shutdown lets
//! requests in flight finish.

use axum::extract::ConnectInfo;
use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use hyper_util::server::graceful::GracefulShutdown;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tower::ServiceExt as _;

use crate::edge::Edge;

const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(15);

fn server_config(
    resolver: Arc<dyn rustls::server::ResolvesServerCert>,
) -> io::Result<Arc<rustls::ServerConfig>> {
    let mut config = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?
        .with_no_client_auth()
        .with_cert_resolver(resolver);
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

/// The certificate a listener presents, which can be replaced while it serves: a certificate
/// renewed on disk (by an ACME client, cert-manager, an operator) is taken up by [`reload`]
/// without a restart; connections already open keep the one they began with.
///
/// [`reload`]: Certificate::reload
#[derive(Debug)]
pub struct Certificate {
    current: std::sync::RwLock<Arc<rustls::sign::CertifiedKey>>,
}

impl Certificate {
    /// Reads a PEM certificate chain and its private key, which must match.
    pub fn from_pem(cert_pem: &[u8], key_pem: &[u8]) -> io::Result<Self> {
        Ok(Certificate {
            current: std::sync::RwLock::new(Arc::new(certified_key(cert_pem, key_pem)?)),
        })
    }

    /// Replaces the certificate with the files' content; on any error the one in use stays.
    pub fn reload(&self, cert_pem: &[u8], key_pem: &[u8]) -> io::Result<()> {
        let next = Arc::new(certified_key(cert_pem, key_pem)?);
        match self.current.write() {
            Ok(mut guard) => *guard = next,
            Err(poisoned) => *poisoned.into_inner() = next,
        }
        Ok(())
    }

    /// The TLS configuration that presents this certificate, whatever it is at each handshake.
    pub fn server_config(self: &Arc<Self>) -> io::Result<Arc<rustls::ServerConfig>> {
        let resolver: Arc<dyn rustls::server::ResolvesServerCert> = Arc::<Certificate>::clone(self);
        server_config(resolver)
    }
}

impl rustls::server::ResolvesServerCert for Certificate {
    fn resolve(&self, _hello: rustls::server::ClientHello<'_>) -> Option<Arc<rustls::sign::CertifiedKey>> {
        Some(match self.current.read() {
            Ok(guard) => Arc::clone(&guard),
            Err(poisoned) => Arc::clone(&poisoned.into_inner()),
        })
    }
}

fn certified_key(cert_pem: &[u8], key_pem: &[u8]) -> io::Result<rustls::sign::CertifiedKey> {
    use rustls::pki_types::pem::PemObject as _;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let unreadable = |what: &str, e: rustls::pki_types::pem::Error| {
        io::Error::new(io::ErrorKind::InvalidData, format!("{what}: {e}"))
    };
    let certs = CertificateDer::pem_slice_iter(cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| unreadable("certificate", e))?;
    if certs.is_empty() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "no certificate in the PEM file",
        ));
    }
    let key = PrivateKeyDer::from_pem_slice(key_pem).map_err(|e| match e {
        rustls::pki_types::pem::Error::NoItemsFound => {
            io::Error::new(io::ErrorKind::InvalidData, "no private key in the PEM file")
        }
        e => unreadable("private key", e),
    })?;
    rustls::sign::CertifiedKey::from_der(certs, key, &provider())
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
}

/// Serves `app` on `listener` until `shutdown` resolves, then waits for open requests to finish.
/// `edge` says who may connect and whose word on the client's address is taken: each request
/// carries its client's address (`ConnectInfo`), the proxy's only when no trusted proxy named
/// another.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    tls: Option<Arc<rustls::ServerConfig>>,
    edge: Arc<Edge>,
    shutdown: impl Future<Output = ()> + Send,
) -> io::Result<()> {
    let acceptor = tls.map(tokio_rustls::TlsAcceptor::from);
    let graceful = GracefulShutdown::new();
    let mut builder = Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT);
    let builder = Arc::new(builder);
    tokio::pin!(shutdown);
    loop {
        let (mut stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        if !edge.admits(peer.ip()) {
            tracing::debug!(%peer, "connection refused: not an address this listener admits");
            continue;
        }
        let _ = stream.set_nodelay(true);
        let app = app.clone();
        let builder = Arc::clone(&builder);
        let acceptor = acceptor.clone();
        let watcher = graceful.watcher();
        let edge = Arc::clone(&edge);
        tokio::spawn(async move {
            let peer = match edge.proxy_header(&mut stream, peer).await {
                Ok(p) => p,
                Err(e) => {
                    tracing::debug!(%peer, error = %e, "connection dropped: PROXY protocol header");
                    return;
                }
            };
            let service = hyper::service::service_fn(move |mut req: http::Request<hyper::body::Incoming>| {
                let client = edge.client(peer, req.headers());
                req.extensions_mut().insert(ConnectInfo(client));
                answered(app.clone().oneshot(req.map(axum::body::Body::new)), peer)
            });
            match acceptor {
                Some(acceptor) => {
                    let tls = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                        Ok(Ok(tls)) => tls,
                        Ok(Err(e)) => {
                            tracing::debug!(%peer, error = %e, "TLS handshake failed");
                            return;
                        }
                        Err(_) => {
                            tracing::debug!(%peer, "TLS handshake timed out");
                            return;
                        }
                    };
                    let conn = builder.serve_connection_with_upgrades(TokioIo::new(tls), service);
                    if let Err(e) = watcher.watch(conn.into_owned()).await {
                        tracing::debug!(%peer, error = %e, "connection ended with an error");
                    }
                }
                None => {
                    let conn = builder.serve_connection_with_upgrades(TokioIo::new(stream), service);
                    if let Err(e) = watcher.watch(conn.into_owned()).await {
                        tracing::debug!(%peer, error = %e, "connection ended with an error");
                    }
                }
            }
        });
    }
    drop(listener);
    if tokio::time::timeout(Duration::from_secs(10), graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("connections still open after 10 s; closing them");
    }
    Ok(())
}

/// A panic boundary around one request: a handler that panics (a bug: server code denies
/// panics by lint) costs that request a 500, not the connection, the listener or the process.
/// A stack overflow cannot be caught; the bounds on what a request may build prevent it.
async fn answered<F>(
    request: F,
    peer: SocketAddr,
) -> Result<axum::response::Response, std::convert::Infallible>
where
    F: Future<Output = Result<axum::response::Response, std::convert::Infallible>>,
{
    use futures_util::FutureExt as _;
    match std::panic::AssertUnwindSafe(request).catch_unwind().await {
        Ok(answer) => answer,
        Err(_) => {
            tracing::error!(%peer, "a request handler panicked; answered 500");
            let mut resp = axum::response::Response::new(axum::body::Body::from(
                r#"{"error":"server_error","error_description":"internal error"}"#,
            ));
            *resp.status_mut() = http::StatusCode::INTERNAL_SERVER_ERROR;
            resp.headers_mut().insert(
                http::header::CONTENT_TYPE,
                http::HeaderValue::from_static("application/json"),
            );
            Ok(resp)
        }
    }
}

/// Whether plain HTTP may be served on this address: on loopback, or where the listener admits
/// only the networks its edge names (a balancer that terminates TLS, a monitoring network).
pub fn plain_http_allowed(addr: &SocketAddr, edge: &Edge) -> bool {
    addr.ip().is_loopback() || !edge.allow.is_empty()
}
