//! `ims`: runs the IMS (alone against a database, or everything embedded with `ims up`) and
//! administers it.

mod account;
mod admin;
mod conf;
mod config;
mod context;
mod directory;
mod files;
mod host;
mod https;
mod instance;
mod instance_serve;
mod mail;
mod migrate;
mod people;
mod pki;
mod remote;
mod seed;
mod server;
mod up;

use anyhow::Result;
use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

use config::Config;

#[derive(Debug, Parser)]
#[command(
    name = "ims",
    version,
    about = "Identity management system: token service, consoles, migration"
)]
struct Cli {
    /// Configuration file (TOML); IMS_* environment variables override it.
    #[arg(long, global = true, env = "IMS_CONFIG")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run everything embedded on SQLite under a data directory and write DIR/up.json.
    Up {
        #[arg(long, default_value = "ims-data")]
        data_dir: PathBuf,
        /// Port of the IMS; 0 picks a free one (kept across restarts when still free).
        #[arg(long, conflicts_with = "port_base")]
        port: Option<u16>,
        /// First port of the services (the IMS listens on it).
        #[arg(long)]
        port_base: Option<u16>,
        /// Serve plain HTTP on loopback instead of HTTPS (benchmarks, debugging).
        #[arg(long)]
        plain_http: bool,
    },
    /// Run the IMS alone against the configured database (several nodes may share PostgreSQL).
    Serve,
    /// Print shell completions (bash, zsh, fish, elvish, powershell) on standard output.
    Completions { shell: clap_complete::Shell },
    /// Print the manual page (roff) on standard output: `ims manual | man -l -`.
    Manual,
    /// Technical accounts (OAuth server-to-server credentials).
    Credential {
        #[command(flatten)]
        target: context::Target,
        #[command(subcommand)]
        command: admin::CredentialCommand,
    },
    /// People of the organisation.
    User {
        #[command(flatten)]
        target: context::Target,
        #[command(subcommand)]
        command: people::UserCommand,
    },
    /// Product profiles of the product instances (and user groups, listed with them).
    Profile {
        #[command(flatten)]
        target: context::Target,
        #[command(subcommand)]
        command: directory::ProfileCommand,
    },
    /// Administrator roles of people.
    Role {
        #[command(flatten)]
        target: context::Target,
        #[command(subcommand)]
        command: directory::RoleCommand,
    },
    /// Applications that sign people in (OpenID Connect clients).
    Client {
        #[command(flatten)]
        target: context::Target,
        #[command(subcommand)]
        command: people::ClientCommand,
    },
    /// Signing keys.
    Keys {
        #[command(flatten)]
        target: context::Target,
        #[command(subcommand)]
        command: admin::KeysCommand,
    },
    /// Read the audit log, newest first.
    Audit {
        #[command(flatten)]
        target: context::Target,
        /// Only actions starting with this (e.g. credential.)
        #[arg(long)]
        action: Option<String>,
        #[arg(long, default_value_t = 100)]
        limit: u32,
        #[arg(long)]
        json: bool,
    },
    /// The Campaign instances of an `ims up` data directory.
    Instance {
        #[arg(long, default_value = "ims-data", global = true)]
        data_dir: PathBuf,
        #[command(subcommand)]
        command: instance::InstanceCommand,
    },
    /// Move an instance's operators from native sign-in to the IMS (assess, ...).
    Migrate {
        #[command(flatten)]
        target: context::MigrationTarget,
        #[command(subcommand)]
        command: migrate::MigrateCommand,
    },
    /// Database schema.
    Db {
        #[command(flatten)]
        target: context::Target,
        #[command(subcommand)]
        command: DbCommand,
    },
}

#[derive(Debug, Subcommand)]
enum DbCommand {
    /// Apply pending migrations.
    Migrate,
    /// Show pending migrations.
    Status,
    /// Copy the SQLite database, consistently, while the IMS runs (keep master.key beside it:
    /// signing keys stay encrypted in the copy). PostgreSQL: use pg_dump.
    Backup {
        #[arg(long)]
        to: PathBuf,
    },
}

fn init_logging(config: &Config) {
    use tracing_subscriber::filter::Targets;
    use tracing_subscriber::prelude::*;
    let filter: Targets = config
        .log
        .parse()
        .unwrap_or_else(|_| Targets::new().with_default(tracing::Level::INFO));
    // Query strings and bodies never reach the logs (see ims_http::observe); sqlx's statement log
    // is kept at warn so parameters are not echoed either.
    let filter = filter.with_target("sqlx", tracing::Level::WARN);
    let registry = tracing_subscriber::registry().with(filter);
    if config.log_format == "json" {
        registry
            .with(
                tracing_subscriber::fmt::layer()
                    .json()
                    .with_writer(std::io::stderr),
            )
            .init();
    } else {
        // Colour escapes only for a person at a terminal, never into a file or a log collector.
        use std::io::IsTerminal as _;
        registry
            .with(
                tracing_subscriber::fmt::layer()
                    .with_ansi(std::io::stderr().is_terminal())
                    .with_writer(std::io::stderr),
            )
            .init();
    }
    for warning in &config.warnings {
        tracing::warn!("{warning}");
    }
}

async fn run(cli: Cli) -> Result<()> {
    let config = Config::load(cli.config.as_deref(), std::env::vars())?;
    init_logging(&config);
    match cli.command {
        Command::Up {
            data_dir,
            port,
            port_base,
            plain_http,
        } => {
            up::run(up::UpArgs {
                data_dir,
                port,
                port_base,
                plain_http,
                config,
            })
            .await
        }
        Command::Serve => {
            let store = context::open_store(&config).await?;
            if let Some((org, password)) = server::bootstrap(&store, &config).await? {
                // Shown once on the terminal, never logged.
                println!(
                    "created organisation {} with administrator {}",
                    org.org_id, config.admin_email
                );
                if config.admin_password.is_none() {
                    println!("administrator password (shown once): {}", password.expose());
                }
            }
            mail::start(
                &config,
                std::sync::Arc::<ims_store::SqlStore>::clone(&store),
                None,
            )?;
            let listener =
                server::bind(&config.listen, config.tls, &config.edge()?, "trusted_proxies").await?;
            let prepared = server::prepare(&config, store, listener).await?;
            tracing::info!(issuer = %prepared.issuer, "IMS listening");
            server::run(prepared).await
        }
        // Answered in `main`, before the configuration is read.
        Command::Completions { .. } | Command::Manual => Ok(()),
        Command::Credential { target, command } => admin::credential(command, &target, config).await,
        Command::User { target, command } => people::user(command, &target, config).await,
        Command::Client { target, command } => people::client(command, &target, config).await,
        Command::Profile { target, command } => directory::profile(command, &target, config).await,
        Command::Role { target, command } => directory::role(command, &target, config).await,
        Command::Keys { target, command } => admin::keys(command, &target, config).await,
        Command::Audit {
            target,
            action,
            limit,
            json,
        } => admin::audit(&target, config, action, limit, json).await,
        Command::Instance {
            data_dir,
            command: instance::InstanceCommand::Serve(args),
        } => instance_serve::serve(args, &data_dir, &config).await,
        Command::Instance { data_dir, command } => instance::command(command, &data_dir).await,
        Command::Migrate { target, command } => migrate::command(command, &target, config).await,
        Command::Db { target, command } => match command {
            DbCommand::Backup { to } => admin::backup(&target, config, &to).await,
            DbCommand::Migrate => admin::db(true, &target, config).await,
            DbCommand::Status => admin::db(false, &target, config).await,
        },
    }
}

/// Output piped into a reader that stops early (`ims migrate assess | head`) is the reader's
/// choice, not a failure: `print!` panics on the closed pipe (Rust ignores SIGPIPE), so that one
/// panic ends the process quietly with the status a shell expects from a closed pipe. Any other
/// panic is reported as usual.
fn quiet_on_closed_pipe() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let message = info
            .payload()
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| info.payload().downcast_ref::<&str>().copied())
            .unwrap_or_default();
        if message.starts_with("failed printing to stdout") && message.contains("Broken pipe") {
            std::process::exit(141);
        }
        default(info);
    }));
}

fn main() -> ExitCode {
    quiet_on_closed_pipe();
    let cli = Cli::parse();
    // Generated from the command line's own definition, before any configuration is read: a
    // package build runs these with nothing set up.
    let generated = match &cli.command {
        Command::Completions { shell } => {
            let mut out = Vec::new();
            clap_complete::generate(
                *shell,
                &mut <Cli as clap::CommandFactory>::command(),
                "ims",
                &mut out,
            );
            Some(Ok(out))
        }
        Command::Manual => {
            let mut out = Vec::new();
            let page = clap_mangen::Man::new(<Cli as clap::CommandFactory>::command());
            Some(page.render(&mut out).map(|()| out))
        }
        _ => None,
    };
    if let Some(text) = generated {
        use std::io::Write as _;
        let written = text.and_then(|t| std::io::stdout().write_all(&t));
        return match written {
            Ok(()) => ExitCode::SUCCESS,
            // A reader that stopped early (`| head`) is not an error.
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("ims: {e}");
                ExitCode::from(1)
            }
        };
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("ims: cannot start the runtime: {e}");
            return ExitCode::from(1);
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ims: {e:#}");
            if e.downcast_ref::<instance::ProbesFailed>().is_some()
                || e.downcast_ref::<instance::ChecksFailed>().is_some()
                || e.downcast_ref::<context::Blocked>().is_some()
            {
                ExitCode::from(1)
            } else {
                ExitCode::from(2)
            }
        }
    }
}
