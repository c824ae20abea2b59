//! Configuration of the IMS: defaults, then a TOML file, then `IMS_*` environment variables. One
//! source of truth, resolved once at start. Unknown keys are refused wherever they come from, and
//! every secret may also be given as `<key>_file` (`IMS_<KEY>_FILE`) naming a file that holds it.

use anyhow::{anyhow, bail, Context as _, Result};
use serde::Deserialize;
use std::path::{Path, PathBuf};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Str,
    Int,
    Bool,
}

/// Every key: its type (for environment values) and whether it is a secret.
const KEYS: &[(&str, Kind, bool)] = &[
    ("database_url", Kind::Str, true),
    ("database_schema", Kind::Str, false),
    ("database_max_connections", Kind::Int, false),
    ("database_listen_url", Kind::Str, true),
    ("change_poll_ms", Kind::Int, false),
    ("auto_migrate", Kind::Bool, false),
    ("listen", Kind::Str, false),
    ("ops_listen", Kind::Str, false),
    ("ops_allow", Kind::Str, false),
    ("trusted_proxies", Kind::Str, false),
    ("proxy_protocol", Kind::Bool, false),
    ("public_url", Kind::Str, false),
    ("tls", Kind::Bool, false),
    ("tls_cert", Kind::Str, false),
    ("tls_key", Kind::Str, false),
    ("master_key", Kind::Str, true),
    ("signing_alg", Kind::Str, false),
    ("access_token_secs", Kind::Int, false),
    ("key_publish_secs", Kind::Int, false),
    ("key_refresh_secs", Kind::Int, false),
    ("domain", Kind::Str, false),
    ("umapi_page_size", Kind::Int, false),
    ("umapi_requests_per_minute", Kind::Int, false),
    ("instance_profile_refresh_secs", Kind::Int, false),
    ("org_name", Kind::Str, false),
    ("admin_email", Kind::Str, false),
    ("admin_password", Kind::Str, true),
    ("log", Kind::Str, false),
    ("log_format", Kind::Str, false),
    ("smtp_url", Kind::Str, true),
    ("smtp_password", Kind::Str, true),
    ("smtp_ca_cert", Kind::Str, false),
    ("mail_from", Kind::Str, false),
];

/// Environment variables of ours that are not configuration keys.
const ENV_NOT_KEYS: &[&str] = &["IMS_CONFIG", "IMS_WEDGE_INSTANCE"];

/// Variables of `ims migrate`'s own options (a separate tool's, not the services'
/// configuration).
const ENV_NOT_KEYS_PREFIX: &str = "IMS_MIGRATE_";

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// `sqlite://PATH` or `postgres://USER@HOST:PORT/DB`.
    pub database_url: Option<String>,
    /// PostgreSQL schema (created if missing).
    pub database_schema: Option<String>,
    pub database_max_connections: u32,
    /// PostgreSQL: where to listen for change notifications when `database_url` goes through a
    /// pooler in transaction mode (PgBouncer), which does not deliver them; `database_url` when
    /// unset.
    pub database_listen_url: Option<String>,
    /// PostgreSQL: how often each node reads the client change counter. A disabled client or a
    /// revoked secret is refused on every node within twice this, whatever the notifications do.
    pub change_poll_ms: u64,
    /// Apply pending schema migrations at start (otherwise readiness fails until `ims db migrate`).
    pub auto_migrate: bool,
    pub listen: String,
    /// Separate listener for health and metrics; on the main listener when unset. On loopback it
    /// also serves the administration API; anywhere else only health and metrics, to the
    /// networks `ops_allow` names.
    pub ops_listen: Option<String>,
    /// Networks (`10.0.0.0/8 192.0.2.7`, commas or spaces) that may reach an operations listener
    /// bound off loopback; loopback always may.
    pub ops_allow: String,
    /// Networks of the proxies that stand in front (a TLS-terminating balancer): their
    /// `Forwarded` / `X-Forwarded-For` headers and PROXY protocol headers name the client, and
    /// with `tls = false` the listener may be bound off loopback, admitting only them.
    pub trusted_proxies: String,
    /// Connections from the trusted proxies begin with a PROXY protocol header (v1 or v2), as
    /// HAProxy's `send-proxy` writes.
    pub proxy_protocol: bool,
    /// Base URL clients use; the issuer of every token. Derived from the bound address when unset.
    pub public_url: Option<String>,
    pub tls: bool,
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    /// 32 bytes (base64 or hex) that encrypt signing keys at rest.
    pub master_key: Option<String>,
    pub signing_alg: String,
    pub access_token_secs: i64,
    pub key_publish_secs: i64,
    pub key_refresh_secs: i64,
    pub domain: String,
    /// Users or groups per page of the User Management API.
    pub umapi_page_size: u32,
    /// Calls a minute each client may make to the User Management API (0: no limit); over it the
    /// API answers 429 with `Retry-After`. On PostgreSQL one budget shared by every node.
    pub umapi_requests_per_minute: u32,
    /// How long an instance goes by a technical account's product profiles before reading them
    /// again (the bound on how late a profile given or taken reaches the instance).
    pub instance_profile_refresh_secs: i64,
    pub org_name: String,
    pub admin_email: String,
    /// The administrator's password: used by `ims serve` at first start (generated when unset) and
    /// by `ims credential --url`.
    pub admin_password: Option<String>,
    /// `error`, `warn`, `info`, `debug` or `trace`, optionally per target (`info,ims::access=warn`).
    pub log: String,
    /// `text` or `json`.
    pub log_format: String,
    /// Where mail goes: `smtp://[user@]host[:port]` (STARTTLS required),
    /// `smtps://[user@]host[:port]` (TLS from the start). Without it, `ims up` writes each
    /// message as an `.eml` file and `ims serve` keeps mail queued.
    pub smtp_url: Option<String>,
    /// The SMTP user's password (the user is the URL's).
    pub smtp_password: Option<String>,
    /// A PEM file of the certificate authority the SMTP server's certificate comes from, when it
    /// is not one the system trusts.
    pub smtp_ca_cert: Option<PathBuf>,
    /// The sender of every message; `IMS <no-reply@DOMAIN>` when unset.
    pub mail_from: Option<String>,
    /// What loading noticed and let pass (an `IMS_*` variable that is none of ours, such as one
    /// a container platform sets for a service named `ims`; a `RUST_LOG` this logger cannot
    /// read), to be logged as warnings once logging is up.
    #[serde(skip)]
    pub warnings: Vec<String>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            database_url: None,
            database_schema: None,
            database_max_connections: 16,
            database_listen_url: None,
            change_poll_ms: 1000,
            auto_migrate: true,
            listen: "127.0.0.1:8443".into(),
            ops_listen: None,
            ops_allow: String::new(),
            trusted_proxies: String::new(),
            proxy_protocol: false,
            public_url: None,
            tls: true,
            tls_cert: None,
            tls_key: None,
            master_key: None,
            signing_alg: "RS256".into(),
            access_token_secs: 86_400,
            key_publish_secs: 600,
            key_refresh_secs: 30,
            domain: "ims.local".into(),
            umapi_page_size: 200,
            umapi_requests_per_minute: 600,
            instance_profile_refresh_secs: ims_campaign::signin::PROFILE_REFRESH_SECS,
            org_name: "Default organisation".into(),
            admin_email: "admin@ims.local".into(),
            admin_password: None,
            log: "info".into(),
            log_format: "text".into(),
            smtp_url: None,
            smtp_password: None,
            smtp_ca_cert: None,
            mail_from: None,
            warnings: Vec::new(),
        }
    }
}

fn kind_of(key: &str) -> Option<(Kind, bool)> {
    KEYS.iter()
        .find(|(k, _, _)| *k == key)
        .map(|(_, kind, secret)| (*kind, *secret))
}

fn env_value(name: &str, key: &str, kind: Kind, raw: &str) -> Result<toml::Value> {
    Ok(match kind {
        Kind::Str => toml::Value::String(raw.to_owned()),
        Kind::Int => toml::Value::Integer(
            raw.trim()
                .parse()
                .map_err(|_| anyhow!("{name}: {key} must be an integer, got {raw:?}"))?,
        ),
        Kind::Bool => toml::Value::Boolean(match raw.trim().to_ascii_lowercase().as_str() {
            "1" | "true" | "yes" | "on" => true,
            "0" | "false" | "no" | "off" => false,
            _ => bail!("{name}: {key} must be true or false, got {raw:?}"),
        }),
    })
}

fn read_secret_file(path: &str, origin: &str) -> Result<toml::Value> {
    let text = std::fs::read_to_string(path).with_context(|| format!("{origin}: cannot read {path}"))?;
    Ok(toml::Value::String(
        text.trim_end_matches(['\n', '\r']).to_owned(),
    ))
}

impl Config {
    /// The key that encrypts signing keys (and seals secrets) at rest.
    pub fn master_key(&self) -> Result<ims_core::keys::MasterKey> {
        let text = self.master_key.as_deref().ok_or_else(|| {
            anyhow!("master_key is not set (IMS_MASTER_KEY or IMS_MASTER_KEY_FILE); it encrypts signing keys")
        })?;
        ims_core::keys::MasterKey::parse(text).map_err(|e| anyhow!("{e}"))
    }

    /// The token service's settings, for the IMS whose issuer is `issuer`.
    pub fn settings(&self, issuer: &str) -> Result<ims_identity::service::Settings> {
        let mut s = ims_identity::service::Settings::new(issuer);
        s.access_token_secs = self.access_token_secs;
        s.signing_alg = self
            .signing_alg
            .parse()
            .map_err(|e| anyhow!("signing_alg: {e}"))?;
        s.key_publish_secs = self.key_publish_secs;
        s.key_refresh_secs = self.key_refresh_secs;
        s.domain = self.domain.clone();
        s.umapi_page_size = self.umapi_page_size;
        s.umapi_requests_per_minute = self.umapi_requests_per_minute;
        Ok(s)
    }

    /// Resolves the configuration from an optional file and the given environment.
    pub fn load(file: Option<&Path>, env: impl IntoIterator<Item = (String, String)>) -> Result<Config> {
        let mut table = toml::Table::new();
        if let Some(path) = file {
            let text =
                std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
            table = text
                .parse::<toml::Table>()
                .map_err(|e| anyhow!("{}: {e}", path.display()))?;
            for key in table.keys() {
                let base = key
                    .strip_suffix("_file")
                    .filter(|b| kind_of(b).is_some_and(|(_, s)| s));
                if kind_of(key).is_none() && base.is_none() {
                    bail!("{}: unknown key {key:?}", path.display());
                }
            }
            resolve_secret_files(&mut table, &path.display().to_string())?;
        }
        let mut from_env = toml::Table::new();
        let mut warnings = Vec::new();
        let mut rust_log = None;
        for (name, raw) in env {
            if name == "RUST_LOG" {
                rust_log = Some(raw);
                continue;
            }
            let Some(rest) = name.strip_prefix("IMS_") else {
                continue;
            };
            if ENV_NOT_KEYS.contains(&name.as_str()) || name.starts_with(ENV_NOT_KEYS_PREFIX) {
                continue;
            }
            let key = rest.to_ascii_lowercase();
            if let Some(base) = key
                .strip_suffix("_file")
                .filter(|b| kind_of(b).is_some_and(|(_, s)| s))
            {
                from_env.insert(format!("{base}_file"), toml::Value::String(raw));
                continue;
            }
            let Some((kind, _)) = kind_of(&key) else {
                if let Some(base) = key.strip_suffix("_file").filter(|b| kind_of(b).is_some()) {
                    bail!("environment variable {name}: {base} is not read from a file");
                }
                // Not ours: a platform's (Kubernetes gives a service named `ims` IMS_PORT and
                // IMS_SERVICE_HOST) or someone's own (IMS_TOKEN). Said, not fatal; a near miss of
                // one of our keys is named.
                let hint = nearest_key(&key)
                    .map(|k| format!(" (did you mean IMS_{}?)", k.to_ascii_uppercase()))
                    .unwrap_or_default();
                warnings.push(format!(
                    "environment variable {name} is not a configuration key of ims: ignored{hint}"
                ));
                continue;
            };
            from_env.insert(key.clone(), env_value(&name, &key, kind, &raw)?);
        }
        resolve_secret_files(&mut from_env, "environment")?;
        for (k, v) in from_env {
            table.insert(k, v);
        }
        // `log` (file or IMS_LOG) first, then RUST_LOG as Rust programs read it, then `info`.
        if let (false, Some(directives)) = (table.contains_key("log"), rust_log) {
            match directives.parse::<tracing_subscriber::filter::Targets>() {
                Ok(_) => {
                    table.insert("log".into(), toml::Value::String(directives));
                }
                Err(e) => warnings.push(format!("RUST_LOG is not a filter ims reads ({e}): ignored")),
            }
        }
        let mut config: Config = toml::Value::Table(table)
            .try_into()
            .map_err(|e| anyhow!("configuration: {e}"))?;
        config.validate()?;
        config.warnings = warnings;
        Ok(config)
    }

    fn validate(&self) -> Result<()> {
        if self.access_token_secs < 60 || self.access_token_secs > 7 * 86_400 {
            bail!("access_token_secs must be between 60 and 604800");
        }
        if !(1..=86_400).contains(&self.instance_profile_refresh_secs) {
            bail!("instance_profile_refresh_secs must be between 1 and 86400");
        }
        if !(50..=60_000).contains(&self.change_poll_ms) {
            bail!("change_poll_ms must be between 50 and 60000");
        }
        if !(1..=2000).contains(&self.umapi_page_size) {
            bail!("umapi_page_size must be between 1 and 2000");
        }
        if self.key_publish_secs < 0 || self.key_refresh_secs < 1 {
            bail!("key_publish_secs must be >= 0 and key_refresh_secs >= 1");
        }
        if self.key_refresh_secs > self.key_publish_secs.max(1) {
            tracing::warn!("key_refresh_secs exceeds key_publish_secs: other nodes may meet a new key late");
        }
        self.log
            .parse::<tracing_subscriber::filter::Targets>()
            .map_err(|e| anyhow!("log: {e} (levels are error, warn, info, debug, trace)"))?;
        if !matches!(self.log_format.as_str(), "text" | "json") {
            bail!("log_format must be text or json");
        }
        self.signing_alg
            .parse::<ims_core::keys::Algorithm>()
            .map_err(|e| anyhow!("signing_alg: {e}"))?;
        let edge = self.edge()?;
        if self.proxy_protocol && edge.trusted.is_empty() {
            bail!("proxy_protocol needs trusted_proxies: the networks whose PROXY headers are read");
        }
        self.ops_edge()?;
        Ok(())
    }

    /// Who may connect to the public listener and whose word on the client is taken. With TLS,
    /// anyone may connect (a balancer may pass TLS through); without it, off loopback, only the
    /// trusted proxies.
    pub fn edge(&self) -> Result<ims_http::edge::Edge> {
        let trusted = ims_http::edge::parse_networks(&self.trusted_proxies)
            .map_err(|e| anyhow!("trusted_proxies: {e}"))?;
        Ok(ims_http::edge::Edge {
            allow: if self.tls { Vec::new() } else { trusted.clone() },
            trusted,
            proxy_protocol: self.proxy_protocol,
        })
    }

    /// Who may reach the operations listener: loopback and the `ops_allow` networks.
    pub fn ops_edge(&self) -> Result<ims_http::edge::Edge> {
        let allow = ims_http::edge::parse_networks(&self.ops_allow).map_err(|e| anyhow!("ops_allow: {e}"))?;
        Ok(ims_http::edge::Edge {
            allow,
            ..ims_http::edge::Edge::default()
        })
    }
}

/// Our key closest to `key` by edit distance, when it is within two edits (a typo).
fn nearest_key(key: &str) -> Option<&'static str> {
    fn distance(a: &str, b: &str) -> usize {
        let b: Vec<char> = b.chars().collect();
        let mut row: Vec<usize> = (0..=b.len()).collect();
        for (i, ca) in a.chars().enumerate() {
            let mut diagonal = row[0];
            row[0] = i + 1;
            for (j, cb) in b.iter().enumerate() {
                let substitution = diagonal + usize::from(ca != *cb);
                diagonal = row[j + 1];
                row[j + 1] = substitution.min(row[j] + 1).min(row[j + 1] + 1);
            }
        }
        row[b.len()]
    }
    KEYS.iter()
        .map(|(k, _, _)| (distance(key, k), *k))
        .filter(|(d, _)| *d <= 2)
        .min()
        .map(|(_, k)| k)
}

/// Replaces `<key>_file` entries by the file's content; both forms at once is an error.
fn resolve_secret_files(table: &mut toml::Table, origin: &str) -> Result<()> {
    let file_keys: Vec<String> = table.keys().filter(|k| k.ends_with("_file")).cloned().collect();
    for fk in file_keys {
        let base = fk.trim_end_matches("_file").to_owned();
        if table.contains_key(&base) {
            bail!("{origin}: give {base} or {fk}, not both");
        }
        let Some(toml::Value::String(path)) = table.remove(&fk) else {
            bail!("{origin}: {fk} must be a path");
        };
        table.insert(base, read_secret_file(&path, origin)?);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    }

    #[test]
    fn defaults_then_file_then_environment() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("ims.toml");
        std::fs::write(&f, "listen = \"127.0.0.1:9000\"\naccess_token_secs = 3600\n").unwrap();
        let c = Config::load(
            Some(&f),
            env(&[
                ("IMS_ACCESS_TOKEN_SECS", "7200"),
                ("IMS_TLS", "false"),
                ("PATH", "x"),
            ]),
        )
        .unwrap();
        assert_eq!(c.listen, "127.0.0.1:9000");
        assert_eq!(c.access_token_secs, 7200);
        assert!(!c.tls);
        assert_eq!(c.signing_alg, "RS256");
    }

    #[test]
    fn unknown_keys_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("ims.toml");
        std::fs::write(&f, "listne = \"x\"\n").unwrap();
        let err = Config::load(Some(&f), env(&[])).unwrap_err().to_string();
        assert!(err.contains("listne"), "{err}");
        assert!(Config::load(None, env(&[("IMS_TLS", "maybe")])).is_err());
    }

    #[test]
    fn foreign_variables_are_ignored_with_a_warning() {
        // What Kubernetes gives a service named `ims`, a shell's own token, and a typo.
        let c = Config::load(
            None,
            env(&[
                ("IMS_PORT", "tcp://10.0.0.7:443"),
                ("IMS_SERVICE_HOST", "10.0.0.7"),
                ("IMS_TOKEN", "eyJ..."),
                ("IMS_LISTNE", "0.0.0.0:1"),
                ("IMS_ACCESS_TOKEN_SECS", "3600"),
            ]),
        )
        .unwrap();
        assert_eq!(c.access_token_secs, 3600);
        assert_eq!(c.listen, Config::default().listen, "a typo sets nothing");
        assert_eq!(c.warnings.len(), 4, "{:?}", c.warnings);
        for name in ["IMS_PORT", "IMS_SERVICE_HOST", "IMS_TOKEN", "IMS_LISTNE"] {
            assert!(
                c.warnings.iter().any(|w| w.contains(name)),
                "{name}: {:?}",
                c.warnings
            );
        }
        let typo = c.warnings.iter().find(|w| w.contains("IMS_LISTNE")).unwrap();
        assert!(typo.contains("did you mean IMS_LISTEN?"), "{typo}");
        let token = c.warnings.iter().find(|w| w.contains("IMS_TOKEN")).unwrap();
        assert!(!token.contains("did you mean"), "{token}");
        // Ours, wrongly given, still stops.
        assert!(Config::load(None, env(&[("IMS_TLS", "maybe")])).is_err());
    }

    #[test]
    fn the_log_filter_is_checked_and_rust_log_is_honoured() {
        let err = Config::load(None, env(&[("IMS_LOG", "ims=loud")]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("log"), "{err}");
        let c = Config::load(None, env(&[("RUST_LOG", "debug,sqlx=warn")])).unwrap();
        assert_eq!(c.log, "debug,sqlx=warn");
        let c = Config::load(None, env(&[("RUST_LOG", "debug"), ("IMS_LOG", "warn")])).unwrap();
        assert_eq!(c.log, "warn", "IMS_LOG before RUST_LOG");
        let c = Config::load(None, env(&[("RUST_LOG", "ims=loud")])).unwrap();
        assert_eq!(c.log, Config::default().log);
        assert!(
            c.warnings.iter().any(|w| w.contains("RUST_LOG")),
            "{:?}",
            c.warnings
        );
    }

    #[test]
    fn secrets_from_files() {
        let dir = tempfile::tempdir().unwrap();
        let key = dir.path().join("mk");
        std::fs::write(&key, "c2VjcmV0\n").unwrap();
        let c = Config::load(None, env(&[("IMS_MASTER_KEY_FILE", key.to_str().unwrap())])).unwrap();
        assert_eq!(c.master_key.as_deref(), Some("c2VjcmV0"));
        let f = dir.path().join("ims.toml");
        std::fs::write(&f, format!("database_url_file = {:?}\n", key.to_str().unwrap())).unwrap();
        assert_eq!(
            Config::load(Some(&f), env(&[])).unwrap().database_url.as_deref(),
            Some("c2VjcmV0")
        );
        let both = env(&[
            ("IMS_MASTER_KEY", "a"),
            ("IMS_MASTER_KEY_FILE", key.to_str().unwrap()),
        ]);
        assert!(Config::load(None, both).is_err());
        // Non-secret keys have no _file form.
        assert!(Config::load(None, env(&[("IMS_LISTEN_FILE", "x")])).is_err());
    }

    #[test]
    fn bad_values_are_named() {
        let err = Config::load(None, env(&[("IMS_SIGNING_ALG", "HS256")]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("signing_alg"), "{err}");
        let err = Config::load(None, env(&[("IMS_ACCESS_TOKEN_SECS", "ten")]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("integer"), "{err}");
    }
}
