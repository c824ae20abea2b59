//! Starting the IMS from a resolved configuration: open the store, bootstrap the first organisation,
//! load the keys, bind, serve until a signal. Dependencies are wired here explicitly.

use anyhow::{bail, Context as _, Result};
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::net::TcpListener;

use ims_core::audit::Context;
use ims_core::secret::Secret;
use ims_core::Now;
use ims_http::edge::Edge;
use ims_http::serve::Certificate;
use ims_http::{AppState, Metrics};
use ims_identity::model::Organization;
use ims_identity::service::{self, Ims};
use ims_store::SqlStore;

use crate::config::Config;

/// Creates the first organisation and administrator when the store has none.
pub async fn bootstrap(store: &SqlStore, config: &Config) -> Result<Option<(Organization, Secret)>> {
    let ctx = Context::new(Now::system(), "system");
    let created = service::bootstrap(
        store,
        &config.org_name,
        &config.admin_email,
        config.admin_password.clone().map(Secret::new),
        &ctx,
    )
    .await?;
    Ok(created.map(|(org, _admin, password)| (org, password)))
}

/// Binds `addr`, refusing plain HTTP off loopback unless the listener admits only the networks
/// its edge names.
pub async fn bind(addr: &str, tls: bool, edge: &Edge, setting: &str) -> Result<TcpListener> {
    let listener = TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {addr}"))?;
    let local = listener.local_addr()?;
    if !tls && !ims_http::serve::plain_http_allowed(&local, edge) {
        bail!(
            "plain HTTP off loopback ({local}) needs {setting}: the networks that may connect \
             (or set tls = true with a certificate)"
        );
    }
    Ok(listener)
}

/// The TLS configuration of a listener when `tls` is on: the certificate of `tls_cert` /
/// `tls_key`, taken up again whenever it is renewed (see [`reload_certificate`], started here).
pub fn serving_tls(config: &Config) -> Result<Option<Arc<rustls::ServerConfig>>> {
    if !config.tls {
        return Ok(None);
    }
    let (Some(cert), Some(key)) = (&config.tls_cert, &config.tls_key) else {
        bail!("tls is on but tls_cert / tls_key are not set (or set tls = false on loopback)");
    };
    let files = CertificateFiles {
        cert: cert.clone(),
        key: key.clone(),
    };
    let (cert_pem, key_pem) = files.read()?;
    let certificate = Arc::new(Certificate::from_pem(&cert_pem, &key_pem).context("TLS configuration")?);
    let tls = certificate.server_config().context("TLS configuration")?;
    tokio::spawn(reload_certificate(certificate, files));
    Ok(Some(tls))
}

/// The base URL clients use: `public_url`, else the address bound. Behind a balancer the address
/// bound is not the one clients use, and the URLs issued come from configuration, never from a
/// request's Host header: plain HTTP off loopback requires `public_url`.
pub fn public_url(config: &Config, local: SocketAddr) -> Result<String> {
    Ok(match &config.public_url {
        Some(url) => url.trim_end_matches('/').to_owned(),
        None if !config.tls && !local.ip().is_loopback() => {
            bail!("plain HTTP behind a proxy needs public_url: the address clients use (https://...)")
        }
        None => format!("{}://{local}", if config.tls { "https" } else { "http" }),
    })
}

pub struct Prepared {
    pub listener: TcpListener,
    pub edge: Arc<Edge>,
    pub ops_listener: Option<TcpListener>,
    pub ops_edge: Arc<Edge>,
    pub tls: Option<Arc<rustls::ServerConfig>>,
    pub issuer: String,
    pub state: AppState,
}

/// Everything up to serving: store, keys, listeners.
pub async fn prepare(config: &Config, store: Arc<SqlStore>, listener: TcpListener) -> Result<Prepared> {
    let tls = serving_tls(config)?;
    let edge = config.edge()?;
    let issuer = public_url(config, listener.local_addr()?)?;
    let ops_edge = config.ops_edge()?;
    let ops_listener = match &config.ops_listen {
        Some(addr) => Some(bind(addr, false, &ops_edge, "ops_allow").await?),
        None => None,
    };
    let ctx = Context::new(Now::system(), "system");
    let ims = Ims::start(store, config.master_key()?, config.settings(&issuer)?, &ctx).await?;
    // Sign-outs reach the clients that asked (back-channel logout); `ims up` adds its CA.
    ims.sign_in()
        .set_logout_notifier(Arc::new(crate::https::HttpIms::new(None)?));
    let state = AppState {
        ims: Arc::new(ims),
        metrics: Arc::new(Metrics::default()),
    };
    Ok(Prepared {
        listener,
        edge: Arc::new(edge),
        ops_listener,
        ops_edge: Arc::new(ops_edge),
        tls,
        issuer,
        state,
    })
}

/// Serves until SIGINT or SIGTERM.
pub async fn run(p: Prepared) -> Result<()> {
    run_with(p, Vec::new()).await
}

/// A listener served beside the IMS (an instance), on its own runtime when given one.
pub struct Served {
    pub listener: TcpListener,
    pub router: axum::Router,
    pub runtime: Option<tokio::runtime::Handle>,
}

/// Serves the IMS and the `extra` listeners (instances) until SIGINT or SIGTERM.
pub async fn run_with(p: Prepared, extra: Vec<Served>) -> Result<()> {
    let mut extra_tasks = Vec::new();
    for served in extra {
        let serving = ims_http::serve::serve(
            served.listener,
            served.router,
            p.tls.clone(),
            Arc::default(),
            shutdown_signal(),
        );
        extra_tasks.push(match served.runtime {
            Some(runtime) => runtime.spawn(serving),
            None => tokio::spawn(serving),
        });
    }
    let public = ims_http::public_router(p.state.clone());
    spawn_housekeeping(p.state.clone());
    match p.ops_listener {
        // Health and metrics on the operations listener; the administration API too when that
        // is on loopback (it takes an administrator's password, which is not to cross a network
        // in clear), never on the public port.
        Some(ops_listener) => {
            let mut ops = ims_http::ops_router(p.state.clone());
            if ops_listener.local_addr()?.ip().is_loopback() {
                ops = ops.merge(ims_http::ims::admin::router(p.state.clone()));
            }
            let ops_task = tokio::spawn(ims_http::serve::serve(
                ops_listener,
                ops,
                None,
                p.ops_edge,
                shutdown_signal(),
            ));
            let public = public.merge(ims_http::health_router(p.state.clone()));
            ims_http::serve::serve(p.listener, public, p.tls, p.edge, shutdown_signal()).await?;
            ops_task.abort();
        }
        // Without one, health and metrics answer on the public port and there is no
        // administration API (the CLI administers through the database).
        None => {
            let ops = ims_http::ops_router(p.state.clone());
            ims_http::serve::serve(p.listener, public.merge(ops), p.tls, p.edge, shutdown_signal()).await?
        }
    }
    // An instance that does not finish its requests in time (wedged) does not hold the
    // process: its runtime is let go.
    for task in extra_tasks {
        if tokio::time::timeout(std::time::Duration::from_secs(15), task)
            .await
            .is_err()
        {
            tracing::warn!("an instance did not stop in time; leaving it");
        }
    }
    tracing::info!("stopped");
    Ok(())
}

/// Where the listener's certificate and key are read from.
#[derive(Clone, Debug)]
pub struct CertificateFiles {
    pub cert: std::path::PathBuf,
    pub key: std::path::PathBuf,
}

impl CertificateFiles {
    fn read(&self) -> Result<(Vec<u8>, Vec<u8>)> {
        let cert =
            std::fs::read(&self.cert).with_context(|| format!("cannot read {}", self.cert.display()))?;
        let key = std::fs::read(&self.key).with_context(|| format!("cannot read {}", self.key.display()))?;
        Ok((cert, key))
    }

    /// When either file last changed (a renewal replaces them, often by renaming a new file in).
    fn stamp(&self) -> Option<(std::time::SystemTime, std::time::SystemTime)> {
        let modified = |p: &std::path::Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
        Some((modified(&self.cert)?, modified(&self.key)?))
    }
}

/// Takes up a renewed certificate without a restart: on `SIGHUP`, and when the files change
/// (looked at every 30 s, for renewals that send no signal). A certificate that cannot be read
/// or does not match its key is reported and the one in use stays; connections already open
/// keep theirs.
async fn reload_certificate(certificate: Arc<Certificate>, files: CertificateFiles) {
    use tokio::signal::unix::{signal, SignalKind};
    let mut hangup = match signal(SignalKind::hangup()) {
        Ok(s) => Some(s),
        Err(e) => {
            tracing::warn!(error = %e, "no SIGHUP handler: the certificate is reloaded when its files change only");
            None
        }
    };
    let mut tick = tokio::time::interval(std::time::Duration::from_secs(30));
    tick.tick().await;
    let mut seen = files.stamp();
    loop {
        let asked = tokio::select! {
            Some(()) = async { match hangup.as_mut() { Some(h) => h.recv().await, None => None } } => true,
            _ = tick.tick() => false,
        };
        let stamp = files.stamp();
        if !asked && stamp == seen {
            continue;
        }
        seen = stamp;
        let outcome = files.read().and_then(|(cert, key)| {
            certificate
                .reload(&cert, &key)
                .map_err(|e| anyhow::anyhow!("{e}"))
        });
        match outcome {
            Ok(()) => tracing::info!(cert = %files.cert.display(), "TLS certificate reloaded"),
            Err(e) => tracing::error!(
                cert = %files.cert.display(),
                error = %e,
                "TLS certificate not reloaded; the previous one stays in use"
            ),
        }
    }
}

/// Drops what has expired anyway: revocation records of dead tokens, and sign-in flows, browser
/// sessions, codes and refresh token families past their end.
fn spawn_housekeeping(state: AppState) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(std::time::Duration::from_secs(3600));
        loop {
            tick.tick().await;
            let tokens = state.ims.tokens();
            match tokens.purge_revocations(Now::system()).await {
                Ok(n) if n > 0 => tracing::info!(purged = n, "expired revocation records removed"),
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "purging revocation records failed"),
            }
            match tokens.purge_grants(Now::system()).await {
                Ok(n) if n > 0 => tracing::info!(purged = n, "expired sign-in records removed"),
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "purging expired sign-in records failed"),
            }
        }
    });
}

pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
}
