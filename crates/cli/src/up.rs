//! `ims up`: everything embedded on SQLite under one data directory. First start creates the
//! organisation, the administrator, the master key, the private CA and the server certificate;
//! every start writes `up.json` with what was actually bound.

use anyhow::{Context as _, Result};
use std::path::{Path, PathBuf};

use ims_campaign::service::InstanceKind;
use ims_campaign::Build;
use ims_core::keys::MasterKey;
use ims_http::edge::Edge;
use ims_wire::{UpFile, UpInstance};

use crate::config::Config;
use crate::context::{read_up_file, up_file, MARKETING_INSTANCE, MESSAGE_CENTER_INSTANCE, STAGING_INSTANCE};
use crate::https::HttpIms;
use crate::{files, pki, server};

pub struct UpArgs {
    pub data_dir: PathBuf,
    /// Explicit port (0 = a free one, keeping the previous run's port when it is still free).
    pub port: Option<u16>,
    pub port_base: Option<u16>,
    pub plain_http: bool,
    pub config: Config,
}

pub const DEFAULT_PORT_BASE: u16 = 8443;

fn master_key(dir: &Path) -> Result<String> {
    let path = dir.join("master.key");
    if path.exists() {
        return Ok(std::fs::read_to_string(&path)?.trim().to_owned());
    }
    let key = MasterKey::generate().to_base64();
    files::write_private(&path, key.as_bytes())?;
    Ok(key)
}

/// The IMS's schema when `up` runs on PostgreSQL and none is configured.
const DEFAULT_SCHEMA: &str = "ims_up";

/// The configuration `up` runs with: the user's, with the data directory's pieces filled in.
pub fn embedded_config(mut config: Config, dir: &Path) -> Result<Config> {
    match config.database_url.as_deref() {
        // PostgreSQL when given one (`IMS_DATABASE_URL`): the IMS and each instance in a schema
        // of their own, so that several data directories can share a database.
        Some(url) if url.starts_with("postgres") => {
            config
                .database_schema
                .get_or_insert_with(|| DEFAULT_SCHEMA.to_owned());
        }
        _ => {
            let db = dir.join("ims.db");
            config.database_url = Some(format!("sqlite://{}", db.display()));
            config.database_schema = None;
        }
    }
    if config.master_key.is_none() {
        config.master_key = Some(master_key(dir)?);
    }
    Ok(config)
}

pub async fn run(args: UpArgs) -> Result<()> {
    files::private_dir(&args.data_dir)?;
    let dir = std::fs::canonicalize(&args.data_dir)?;
    let previous = read_up_file(&dir).ok();
    let mut config = embedded_config(args.config, &dir)?;
    let pki = pki::ensure(&dir)?;
    config.tls = !args.plain_http;
    config.tls_cert = Some(pki.server_cert.clone());
    config.tls_key = Some(pki.server_key.clone());

    let port = match (args.port, args.port_base) {
        (Some(p), _) => p,
        (None, Some(base)) => base,
        (None, None) => DEFAULT_PORT_BASE,
    };
    // Keep the previous run's port when free: the issuer, and so every token, stays valid.
    let previous_port = previous.as_ref().and_then(|p| url_port(&p.ims_url));
    let listener = bind_port(port, previous_port, config.tls).await?;
    config.listen = listener.local_addr()?.to_string();

    // The operations listener (health, metrics, the administration API) on loopback, on the
    // previous run's port while it is free.
    let ops_port = previous
        .as_ref()
        .and_then(|p| p.ops_url.as_deref())
        .and_then(url_port)
        .filter(|p| std::net::TcpListener::bind(("127.0.0.1", *p)).is_ok())
        .unwrap_or(0);
    config.ops_listen = Some(format!("127.0.0.1:{ops_port}"));

    let store = crate::context::open_store(&config).await?;
    let created = server::bootstrap(&store, &config).await?;
    let prepared = server::prepare(&config, std::sync::Arc::clone(&store), listener).await?;
    let ops_url = prepared
        .ops_listener
        .as_ref()
        .map(|l| l.local_addr().map(|a| format!("http://{a}")))
        .transpose()?;
    // Sign-outs reach the instances (back-channel logout) over HTTPS trusting this CA.
    let ca_pem = std::fs::read(&pki.ca_cert)?;
    prepared
        .state
        .ims
        .sign_in()
        .set_logout_notifier(std::sync::Arc::new(HttpIms::new(Some(&ca_pem))?));

    // Without an SMTP server, `ims up` writes its mail where people can read it.
    let mail_dir = crate::mail::start(
        &config,
        std::sync::Arc::<ims_store::SqlStore>::clone(&store),
        Some(&dir.join("mail")),
    )?;

    let start = Start {
        dir: &dir,
        port,
        previous: previous.as_ref(),
        config: &config,
        issuer: &prepared.issuer,
        ca_pem: &ca_pem,
    };
    let (started, runtimes) = start_instances(&start).await?;
    let org = register_instances(&store, created.as_ref().map(|(org, _)| org), &started).await?;
    let admin_password = match (&created, &previous) {
        (Some((_, pw)), _) => pw.expose().to_owned(),
        (None, Some(prev)) => prev.admin_password.clone(),
        (None, None) => String::new(),
    };
    let up = UpFile {
        ims_url: prepared.issuer.clone(),
        org_id: org.org_id.clone(),
        admin_email: config.admin_email.clone(),
        admin_password,
        ca_cert: pki.ca_cert.display().to_string(),
        database_url: config.database_url.clone().unwrap_or_default(),
        database_schema: config.database_schema.clone(),
        pid: std::process::id(),
        ops_url,
        mail_dir: mail_dir.map(|d| d.display().to_string()),
        instances: started.iter().map(|s| s.up.clone()).collect(),
    };
    // Listening for SIGHUP before up.json names this process: a reload sent as soon as the file
    // appears must not meet the default action, which ends the process.
    let hangups = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
        .context("cannot listen for SIGHUP")?;
    files::write_private(&up_file(&dir), serde_json::to_string_pretty(&up)?.as_bytes())?;
    announce(&up, &org, &dir);
    serve(prepared, started, runtimes, &config, &dir, hangups).await
}

/// Binds `port` on loopback; port 0 takes the previous run's port when it is still free, else
/// any free one.
async fn bind_port(port: u16, previous: Option<u16>, tls: bool) -> Result<tokio::net::TcpListener> {
    // Loopback only: nothing in front, nobody else's word on the client taken.
    let bind = |p: u16| async move {
        server::bind(
            &format!("127.0.0.1:{p}"),
            tls,
            &Edge::default(),
            "trusted_proxies",
        )
        .await
    };
    if port != 0 {
        return bind(port).await;
    }
    match previous {
        Some(p) => match bind(p).await {
            Ok(l) => Ok(l),
            Err(_) => bind(0).await,
        },
        None => bind(0).await,
    }
}

/// What every instance starts from: the data directory, the IMS's port (the instances take the
/// next ones), the previous run, the configuration, the IMS they trust and its CA.
struct Start<'a> {
    dir: &'a Path,
    port: u16,
    previous: Option<&'a UpFile>,
    config: &'a Config,
    issuer: &'a str,
    ca_pem: &'a [u8],
}

/// The instances, on the next ports (or free ones, kept across restarts), each on its own
/// runtime.
async fn start_instances(start: &Start<'_>) -> Result<(Vec<StartedInstance>, Runtimes)> {
    let mut started = Vec::new();
    let mut runtimes = Runtimes(Vec::new());
    for (offset, spec) in (1u16..).zip(DEMO_INSTANCES) {
        let bind_port = if start.port == 0 {
            0
        } else {
            start.port.saturating_add(offset)
        };
        // Everything of the instance (listener, database pool, HTTP client, background tasks)
        // is made on its own runtime, so that it is driven there.
        runtimes.0.push(instance_runtime(spec.name)?);
        let runtime = runtimes.0.last().context("the runtime just made")?;
        let (dir, previous, config, issuer, ca_pem) = (
            start.dir.to_owned(),
            start.previous.cloned(),
            start.config.clone(),
            start.issuer.to_owned(),
            start.ca_pem.to_vec(),
        );
        let handle = runtime.handle().clone();
        let starting = tokio::task::spawn_blocking(move || {
            handle.block_on(start_instance(
                spec,
                &dir,
                bind_port,
                previous.as_ref(),
                &config,
                &issuer,
                &ca_pem,
            ))
        });
        started.push(
            starting
                .await
                .with_context(|| format!("instance {} did not start", spec.name))??,
        );
    }
    Ok((started, runtimes))
}

/// Each instance is a product instance of the Campaign product context of the organisation
/// (the one just created, or the store's): profiles grant it. Returns the organisation.
async fn register_instances(
    store: &ims_store::SqlStore,
    created: Option<&ims_identity::model::Organization>,
    started: &[StartedInstance],
) -> Result<ims_identity::model::Organization> {
    let org = match created {
        Some(org) => org.clone(),
        None => ims_identity::store::OrgStore::orgs(store)
            .await?
            .into_iter()
            .next()
            .context("the store has no organisation")?,
    };
    for s in started {
        ims_identity::store::DirectoryStore::ensure_product_instance(
            store,
            &org.org_id,
            ims_identity::directory::CAMPAIGN_PRODUCT_CONTEXT,
            &s.up.name,
            &format!("Campaign ({})", s.up.name),
            &s.up.url,
            ims_core::Now::system(),
        )
        .await?;
    }
    Ok(org)
}

/// Says what runs where.
fn announce(up: &UpFile, org: &ims_identity::model::Organization, dir: &Path) {
    println!("ims is up");
    println!("  IMS            {}", up.ims_url);
    println!("  organisation   {} ({})", org.org_id, org.name);
    println!(
        "  administrator  {} (password in {})",
        up.admin_email,
        up_file(dir).display()
    );
    for i in &up.instances {
        println!("  instance       {} (build {}) at {}", i.name, i.build, i.url);
    }
    println!("  CA certificate {}", up.ca_cert);
    if let Some(mail) = &up.mail_dir {
        println!(
            "  mail           no SMTP server configured: each message is written to {mail}/ as an .eml file"
        );
    }
    println!("  data           {}", dir.display());
    println!(
        "Create a technical account: ims credential create --data-dir {} --name NAME",
        dir.display()
    );
}

/// Serves the IMS and the instances until a signal, then writes what the instances counted
/// since their last flush (an instance that does not answer in time keeps it).
async fn serve(
    prepared: server::Prepared,
    started: Vec<StartedInstance>,
    runtimes: Runtimes,
    config: &Config,
    dir: &Path,
    hangups: tokio::signal::unix::Signal,
) -> Result<()> {
    let mut serving = Vec::new();
    let mut instances = Vec::new();
    let wedge = std::env::var(WEDGE_VAR).ok();
    for (s, runtime) in started.into_iter().zip(&runtimes.0) {
        let handle = runtime.handle().clone();
        handle.spawn(crate::host::usage_flush(std::sync::Arc::clone(&s.instance)));
        if wedge.as_deref() == Some(s.up.name.as_str()) {
            wedge_runtime(&handle, &s.up.name);
        }
        let router = ims_http::instance::soap::router(ims_http::instance::soap::InstanceState {
            instance: std::sync::Arc::clone(&s.instance),
            tls: config.tls,
        });
        serving.push(server::Served {
            listener: s.listener,
            router,
            runtime: Some(handle),
        });
        instances.push((s.instance, s.store));
    }
    crate::host::spawn_reload_on_hangup(hangups, dir.to_owned(), instances.clone());
    let served = server::run_with(prepared, serving).await;
    for (instance, _) in instances {
        crate::host::flush_usage_at_shutdown(&instance).await;
    }
    drop(runtimes);
    served
}

/// The instances' runtimes, let go without waiting when `ims up` ends (or fails to start): a
/// runtime may not be dropped, which waits, from async code, and a wedged one would never end.
struct Runtimes(Vec<tokio::runtime::Runtime>);

impl Drop for Runtimes {
    fn drop(&mut self) {
        for runtime in self.0.drain(..) {
            runtime.shutdown_background();
        }
    }
}

/// Names an instance whose runtime `ims up` wedges at start (every worker blocked), so that the
/// suite can prove the IMS and the other instances keep answering. Fault injection, like the
/// migration engine's fail points; never set in production.
const WEDGE_VAR: &str = "IMS_WEDGE_INSTANCE";

/// Each instance runs on a runtime of its own (its requests, database work and background
/// tasks on threads of their own): an instance that wedges (a blocking call, a runaway loop)
/// cannot starve the IMS or another instance. A stack overflow aborts the process whatever the
/// runtime; the bounds on what a request may build are what prevent it.
fn instance_runtime(name: &str) -> Result<tokio::runtime::Runtime> {
    let workers = std::thread::available_parallelism()
        .map_or(2, |n| n.get())
        .clamp(1, 4);
    Ok(tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .thread_name(format!("instance-{name}"))
        .enable_all()
        .build()?)
}

/// Blocks every worker of `runtime` for good (see [`WEDGE_VAR`]).
fn wedge_runtime(runtime: &tokio::runtime::Handle, name: &str) {
    tracing::warn!(instance = %name, "{WEDGE_VAR} is set: this instance is wedged on purpose");
    let workers = runtime.metrics().num_workers();
    for _ in 0..workers {
        runtime.spawn(async {
            loop {
                std::thread::sleep(std::time::Duration::from_secs(3600));
            }
        });
    }
}

/// An instance `ims up` runs: name, type, and the groups its technical account operators get
/// until product profiles decide.
struct InstanceSpec {
    name: &'static str,
    kind: InstanceKind,
    technical_account_groups: &'static [&'static str],
    /// Declared at first start (`ims instance environment` changes it).
    environment: &'static str,
    staging_twin: Option<&'static str>,
}

/// The demo instances: a marketing instance and its Message Center instance, where integrations
/// push real-time events.
/// The marketing instance's staging twin (a copy of its legacy population) lets the whole
/// migration be rehearsed before production.
const DEMO_INSTANCES: &[InstanceSpec] = &[
    InstanceSpec {
        name: MARKETING_INSTANCE,
        kind: InstanceKind::Marketing,
        technical_account_groups: &["deliveryOperators"],
        environment: "production",
        staging_twin: Some(STAGING_INSTANCE),
    },
    InstanceSpec {
        name: MESSAGE_CENTER_INSTANCE,
        kind: InstanceKind::MessageCenter,
        technical_account_groups: &["messageCenterAgents"],
        environment: "production",
        staging_twin: None,
    },
    InstanceSpec {
        name: STAGING_INSTANCE,
        kind: InstanceKind::Marketing,
        technical_account_groups: &["deliveryOperators"],
        environment: "staging",
        staging_twin: None,
    },
];

struct StartedInstance {
    listener: tokio::net::TcpListener,
    instance: std::sync::Arc<ims_campaign::service::Instance>,
    /// The store the host opened for it (the reload records itself there).
    store: std::sync::Arc<ims_store::instance::SqlInstanceStore>,
    up: UpInstance,
}

async fn start_instance(
    spec: &InstanceSpec,
    dir: &Path,
    port: u16,
    previous: Option<&UpFile>,
    config: &Config,
    issuer: &str,
    ca_pem: &[u8],
) -> Result<StartedInstance> {
    let previous_instance = previous.and_then(|p| p.instances.iter().find(|i| i.name == spec.name).cloned());
    let listener = bind_port(
        port,
        previous_instance.as_ref().and_then(|i| url_port(&i.url)),
        config.tls,
    )
    .await?;
    let build: Build = DEMO_BUILD.parse()?;
    let tech_groups: Vec<String> = spec
        .technical_account_groups
        .iter()
        .map(|g| g.to_string())
        .collect();
    let http: std::sync::Arc<dyn ims_campaign::connect::ImsHttp> =
        std::sync::Arc::new(HttpIms::new(Some(ca_pem))?);
    let url = format!(
        "{}://{}",
        if config.tls { "https" } else { "http" },
        listener.local_addr()?
    );
    let crate::host::Embedded {
        instance,
        store,
        admin_password: created_admin,
    } = crate::host::open_embedded(
        dir,
        config,
        spec.name,
        spec.kind,
        build,
        tech_groups,
        Some(std::sync::Arc::clone(&http)),
    )
    .await?;
    let instance = instance.with_public_url(&url);
    crate::host::declare_environment(store.as_ref(), spec.name, spec.environment, spec.staging_twin).await?;
    // Bearer tokens of this IMS, verified against its published keys.
    let instance = std::sync::Arc::new(crate::host::trusting(instance, http, issuer));
    let admin_password = match (created_admin, previous_instance) {
        (Some(p), _) => p.expose().to_owned(),
        (None, Some(prev)) => prev.admin_password,
        (None, None) => String::new(),
    };
    let up = UpInstance {
        name: spec.name.to_owned(),
        url,
        build: instance.info().build.to_string(),
        admin_login: "admin".to_owned(),
        admin_password,
    };
    Ok(StartedInstance {
        listener,
        instance,
        store,
        up,
    })
}

/// Its build: the one the vendor recommends migrating from.
pub const DEMO_BUILD: &str = "7.4.1";

fn url_port(url: &str) -> Option<u16> {
    url.rsplit(':').next()?.trim_end_matches('/').parse().ok()
}
