//! `ims instance serve`: one Campaign instance as a service of its own, from configuration, the
//! way `ims serve` runs the IMS. Several nodes of one instance share its PostgreSQL schema
//! (sessions, operators and settings live there) behind a balancer; each node reads the
//! configuration files of its own directory and reads them again on `SIGHUP`.

use anyhow::{Context as _, Result};
use clap::Args;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use ims_campaign::service::InstanceKind;
use ims_campaign::Build;

use crate::config::Config;
use crate::https::HttpIms;
use crate::server;

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// The instance's name (its configuration file is conf/config-NAME.xml under --data-dir).
    #[arg(long)]
    pub name: String,
    /// marketing or message-center.
    #[arg(long, default_value = "marketing", value_parser = ["marketing", "message-center"])]
    pub kind: String,
    /// The build it runs at its first start (afterwards the stored one, moved by `upgrade`).
    #[arg(long, default_value = crate::up::DEMO_BUILD)]
    pub build: String,
    /// The IMS whose access tokens the instance accepts (`Authorization: Bearer`): its issuer.
    #[arg(long)]
    pub ims_url: Option<String>,
    /// A PEM file of the authority behind the IMS's certificate, when the system does not trust it.
    #[arg(long)]
    pub ims_ca_cert: Option<PathBuf>,
    /// Operator groups given to technical accounts of the IMS (repeatable).
    #[arg(long = "technical-account-group")]
    pub technical_account_groups: Vec<String>,
}

pub async fn serve(args: ServeArgs, dir: &Path, config: &Config) -> Result<()> {
    crate::files::private_dir(dir)?;
    let kind = match args.kind.as_str() {
        "message-center" => InstanceKind::MessageCenter,
        _ => InstanceKind::Marketing,
    };
    let build: Build = args.build.parse()?;
    let ca_pem = match &args.ims_ca_cert {
        Some(p) => Some(std::fs::read(p).with_context(|| format!("cannot read {}", p.display()))?),
        None => None,
    };
    let http: Arc<dyn ims_campaign::connect::ImsHttp> = Arc::new(HttpIms::new(ca_pem.as_deref())?);
    let edge = config.edge()?;
    let listener = server::bind(&config.listen, config.tls, &edge, "trusted_proxies").await?;
    let url = server::public_url(config, listener.local_addr()?)?;
    let crate::host::Embedded {
        instance,
        store,
        admin_password,
    } = crate::host::open_embedded(
        dir,
        config,
        &args.name,
        kind,
        build,
        args.technical_account_groups.clone(),
        Some(Arc::clone(&http)),
    )
    .await?;
    if let Some(p) = admin_password {
        // Shown once on the terminal, never logged: the first node to start creates it.
        println!(
            "instance {}: operator admin created; password (shown once): {}",
            args.name,
            p.expose()
        );
    }
    let mut instance = instance.with_public_url(&url);
    if let Some(issuer) = &args.ims_url {
        instance = crate::host::trusting(instance, http, issuer);
    }
    let instance = Arc::new(instance);
    tokio::spawn(crate::host::usage_flush(Arc::clone(&instance)));
    let hangups = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
        .context("cannot handle SIGHUP")?;
    crate::host::spawn_reload_on_hangup(
        hangups,
        dir.to_owned(),
        vec![(Arc::clone(&instance), Arc::clone(&store))],
    );
    let tls = server::serving_tls(config)?;
    let metrics = Arc::new(ims_http::metrics::Metrics::default());
    let router = ims_http::instance::soap::measured_router(
        ims_http::instance::soap::InstanceState {
            instance: Arc::clone(&instance),
            tls: config.tls,
        },
        Some(Arc::clone(&metrics)),
    );
    let ops = ims_http::instance::ops::OpsState {
        instance: Arc::clone(&instance),
        host: Arc::new(crate::host::ServedInstance {
            dir: dir.to_owned(),
            instance: Arc::clone(&instance),
            store: Arc::clone(&store),
        }),
        metrics,
    };
    tracing::info!(instance = %args.name, %url, "instance listening");
    let served = match &config.ops_listen {
        // Health and metrics on the operations listener, and the reload call when that is on
        // loopback (it takes an operator's token, which is not to cross a network in clear);
        // health on the public port too, for the balancer's probes.
        Some(addr) => {
            let ops_edge = config.ops_edge()?;
            let ops_listener = server::bind(addr, false, &ops_edge, "ops_allow").await?;
            let admin = ops_listener.local_addr()?.ip().is_loopback();
            tracing::info!(instance = %args.name, address = %ops_listener.local_addr()?, "operations listening");
            let ops_task = tokio::spawn(ims_http::serve::serve(
                ops_listener,
                ims_http::instance::ops::router(ops.clone(), admin),
                None,
                Arc::new(ops_edge),
                server::shutdown_signal(),
            ));
            let public = router.merge(ims_http::instance::ops::health_router(ops));
            let served =
                ims_http::serve::serve(listener, public, tls, Arc::new(edge), server::shutdown_signal())
                    .await;
            ops_task.abort();
            served
        }
        // Without one, health and metrics answer on the public port, and there is no reload
        // call (SIGHUP remains).
        None => {
            let public = router.merge(ims_http::instance::ops::router(ops, false));
            ims_http::serve::serve(listener, public, tls, Arc::new(edge), server::shutdown_signal()).await
        }
    };
    // Calls counted since the last flush are written before the process ends.
    crate::host::flush_usage_at_shutdown(&instance).await;
    store.close().await;
    tracing::info!("stopped");
    Ok(served?)
}
