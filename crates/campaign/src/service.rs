//! One Campaign instance: what it is ([`InstanceInfo`]), the state its services share, and the
//! façade that builds the services over the narrow parts of its store and hands them out:
//! [`Sessions`] (sign-in, sessions, bearer tokens), [`Operators`] (operator administration),
//! [`Records`] (queries, recipients, events), [`Migration`] (the migration API) and
//! [`Configuration`] (the switches and IMS configuration read from the instance's files).

use std::sync::{Arc, RwLock};

use ims_core::audit::AuditStore;
use ims_core::secret::Secret;
use ims_core::Now;

use crate::bearer::TrustedIssuer;
use crate::config::ImsSwitches;
use crate::connect::ImsHttp;
use crate::fault::Fault;
use crate::migration::{Migration, MigrationStores};
use crate::model::{AuthPath, Operator};
use crate::operator_admin::Operators;
use crate::records::Records;
use crate::restrictions::Restrictions;
use crate::sessions::Sessions;
use crate::signin::Connection;
use crate::store::{InstanceStore, OperatorStore};
use crate::version::Build;

/// Prefixes of generated tokens: the vendor's clients recognise `___` and `@`; ours follows.
pub const SESSION_PREFIX: &str = "___ims_";
pub const SECURITY_PREFIX: &str = "@ims_";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InstanceKind {
    Marketing,
    MessageCenter,
}

/// What an instance is.
#[derive(Clone, Debug)]
pub struct InstanceInfo {
    pub name: String,
    pub kind: InstanceKind,
    pub build: Build,
    /// The build number `/r/test` and `serverInfo` report.
    pub build_number: u32,
    pub session_secs: i64,
    pub remember_me_secs: i64,
    /// Groups a technical account operator gets when it is created at its first call (until
    /// product profiles decide).
    pub technical_account_groups: Vec<String>,
    /// With an IMS configuration, a technical account's groups and rights follow its
    /// credential's product profiles, read again at its first call after this many seconds.
    pub profile_refresh_secs: i64,
    /// The address clients reach the instance at (`https://host:port`), which the WSDL gives
    /// as the SOAP router's location; never taken from a request's `Host` header.
    pub public_url: Option<String>,
}

impl InstanceInfo {
    pub fn new(name: &str, kind: InstanceKind, build: Build) -> Self {
        InstanceInfo {
            name: name.to_owned(),
            kind,
            build,
            build_number: 9_000 + u32::from(build.minor) * 100 + u32::from(build.patch),
            session_secs: 24 * 3600,
            remember_me_secs: 30 * 24 * 3600,
            technical_account_groups: Vec::new(),
            profile_refresh_secs: crate::signin::PROFILE_REFRESH_SECS,
            public_url: None,
        }
    }
}

/// Tokens handed out at sign-in: shown to the client once, stored as digests.
#[derive(Clone, Debug)]
pub struct SessionTokens {
    pub session: Secret,
    pub security: Secret,
}

/// One sign-in attempt or call, as the usage record describes it.
pub(crate) struct Call<'a> {
    pub(crate) now: Now,
    pub(crate) action: &'a str,
    pub(crate) path: AuthPath,
    pub(crate) caller: &'a Caller,
}

/// Who made a request, from where, with which client.
#[derive(Clone, Debug, Default)]
pub struct Caller {
    pub source: Option<String>,
    pub client: Option<String>,
}

/// What every service of one instance reads: who the instance is, whose tokens it trusts, how it
/// reaches the IMS, and the restrictions and IMS configuration in effect. Kept to what more than
/// one service needs, behind one `Arc`, so that a reload replacing the restrictions or the IMS
/// configuration reaches every service at once; what one service alone uses stays in it.
pub(crate) struct Shared {
    pub(crate) info: InstanceInfo,
    pub(crate) bearer: Option<Arc<TrustedIssuer>>,
    /// How the instance reaches the IMS (discovery, tokens, product profiles).
    pub(crate) ims_http: Option<Arc<dyn ImsHttp>>,
    /// The `imsConfig` switches as last read, with their effect on this build; replaced whole
    /// on reload so every request sees one consistent state.
    restrictions: RwLock<Arc<Restrictions>>,
    /// How people sign in through the IMS, when configured; replaced whole on reload.
    connection: RwLock<Option<Arc<Connection>>>,
}

impl Shared {
    /// The restrictions in effect now.
    pub(crate) fn restrictions(&self) -> Arc<Restrictions> {
        self.restrictions
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// The IMS configuration in effect, if any.
    pub(crate) fn connection(&self) -> Option<Arc<Connection>> {
        self.connection.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn set_restrictions(&self, next: Restrictions) {
        *self.restrictions.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(next);
    }

    fn set_connection(&self, next: Option<Connection>) {
        *self.connection.write().unwrap_or_else(|e| e.into_inner()) = next.map(Arc::new);
    }

    /// The same state in a value of its own, for a builder to change.
    fn copy(&self) -> Shared {
        Shared {
            info: self.info.clone(),
            bearer: self.bearer.clone(),
            ims_http: self.ims_http.clone(),
            restrictions: RwLock::new(self.restrictions()),
            connection: RwLock::new(self.connection()),
        }
    }
}

/// The instance's configuration as the process running it reads it from its files: the
/// `imsConfig` switches and the IMS configuration, put in effect (and audited) on start and on
/// reload.
#[derive(Clone)]
pub struct Configuration {
    pub(crate) shared: Arc<Shared>,
    audit: Arc<dyn AuditStore>,
}

impl Configuration {
    pub fn info(&self) -> &InstanceInfo {
        &self.shared.info
    }

    /// How the instance reaches the IMS, when it does.
    pub fn ims_http(&self) -> Option<&Arc<dyn ImsHttp>> {
        self.shared.ims_http.as_ref()
    }

    /// The IMS configuration in effect, if any.
    pub fn connection(&self) -> Option<Arc<Connection>> {
        self.shared.connection()
    }

    /// The restrictions in effect now.
    pub fn restrictions(&self) -> Arc<Restrictions> {
        self.shared.restrictions()
    }

    /// Puts an IMS configuration in effect (start, reload), audited when it changes; from the
    /// next request on, sign-ins use it. Returns whether anything changed.
    pub async fn set_connection(
        &self,
        next: Option<Connection>,
        ctx: &ims_core::audit::Context,
    ) -> Result<bool, Fault> {
        let before = self.connection().map(|c| c.describe());
        let after = next.as_ref().map(Connection::describe);
        if before == after {
            // Same settings: a new secret (same client) still takes effect.
            if next.is_some() {
                self.shared.set_connection(next);
            }
            return Ok(false);
        }
        let audit = ctx.event(
            "instance.ims_account",
            &self.shared.info.name,
            "success",
            serde_json::json!({"before": before, "after": after}),
        );
        self.audit.append_audit(&audit).await?;
        tracing::info!(instance = %self.shared.info.name, configured = after.is_some(), "IMS sign-in configuration changed");
        self.shared.set_connection(next);
        Ok(true)
    }

    /// Applies switches read again from `serverConf.xml` (a reload). Logs and audits the change
    /// as `ctx.actor`; returns whether anything changed. From the next request on, sign-ins,
    /// sessions and operator changes follow the new state.
    pub async fn apply_switches(
        &self,
        switches: &ImsSwitches,
        ctx: &ims_core::audit::Context,
    ) -> Result<bool, Fault> {
        let next = Restrictions::effective(&self.shared.info.build, switches);
        let before = self.restrictions();
        if before.switches == next.switches {
            return Ok(false);
        }
        let describe = |r: &Restrictions| {
            serde_json::json!({
                "operator_management_restricted": r.switches.operator_management_restricted,
                "native_api_disabled": r.switches.native_api_disabled,
                "allow_list": r.allow_list,
                "effective_operator_management": r.operator_management,
                "effective_native_api": r.native_api,
            })
        };
        let audit = ctx.event(
            "instance.restrictions",
            &self.shared.info.name,
            "success",
            serde_json::json!({"before": describe(&before), "after": describe(&next)}),
        );
        self.audit.append_audit(&audit).await?;
        tracing::info!(
            instance = %self.shared.info.name,
            operator_management = next.operator_management,
            native_api = next.native_api,
            allow_list = ?next.allow_list,
            "restrictions changed"
        );
        self.shared.set_restrictions(next);
        Ok(true)
    }
}

/// A Campaign instance: its services, each over the parts of the store it uses. Built once by
/// the process that opened the store; the store itself is not handed out again.
pub struct Instance {
    shared: Arc<Shared>,
    sessions: Sessions,
    operators: Operators,
    records: Records,
    migration: Migration,
    configuration: Configuration,
}

impl std::fmt::Debug for Instance {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Instance")
            .field("info", &self.shared.info)
            .finish_non_exhaustive()
    }
}

impl Instance {
    pub fn new(store: Arc<dyn InstanceStore>, info: InstanceInfo) -> Self {
        let restrictions = Restrictions::effective(&info.build, &ImsSwitches::default());
        let shared = Arc::new(Shared {
            info,
            bearer: None,
            ims_http: None,
            restrictions: RwLock::new(Arc::new(restrictions)),
            connection: RwLock::new(None),
        });
        // Each service gets the parts of the store it uses, the same store seen through
        // narrower traits.
        let part = || Arc::<dyn InstanceStore>::clone(&store);
        let operators: Arc<dyn OperatorStore> = part();
        let audit: Arc<dyn AuditStore> = part();
        let admin = Operators::new(Arc::clone(&shared), Arc::clone(&operators));
        let configuration = Configuration {
            shared: Arc::clone(&shared),
            audit: Arc::clone(&audit),
        };
        Instance {
            sessions: Sessions::new(
                Arc::clone(&shared),
                Arc::clone(&operators),
                part(),
                part(),
                part(),
                Arc::clone(&audit),
            ),
            records: Records::new(part(), part(), part(), admin.clone()),
            migration: Migration::new(
                MigrationStores {
                    operators,
                    settings: part(),
                    usage: part(),
                    audit,
                },
                crate::probe::Verifier::new(store),
                configuration.clone(),
            ),
            operators: admin,
            configuration,
            shared,
        }
    }

    /// Sign-in, sessions, bearer tokens and usage evidence.
    pub fn sessions(&self) -> &Sessions {
        &self.sessions
    }

    /// Operator administration.
    pub fn operators(&self) -> &Operators {
        &self.operators
    }

    /// Queries, recipients and real-time events.
    pub fn records(&self) -> &Records {
        &self.records
    }

    /// The migration API.
    pub fn migration(&self) -> &Migration {
        &self.migration
    }

    /// The switches and the IMS configuration read from the instance's files.
    pub fn configuration(&self) -> &Configuration {
        &self.configuration
    }

    pub fn info(&self) -> &InstanceInfo {
        &self.shared.info
    }

    /// The restrictions in effect now.
    pub fn restrictions(&self) -> Arc<Restrictions> {
        self.shared.restrictions()
    }

    /// The IMS configuration in effect, if any.
    pub fn connection(&self) -> Option<Arc<Connection>> {
        self.shared.connection()
    }

    /// The IMS this instance trusts, when it has one.
    pub fn ims_url(&self) -> Option<&str> {
        self.shared.bearer.as_deref().map(TrustedIssuer::issuer)
    }

    /// Changes the shared state while the instance is being built: every service is given the
    /// changed state, so none keeps the old one.
    fn configure(mut self, change: impl FnOnce(&mut Shared)) -> Self {
        let mut next = self.shared.copy();
        change(&mut next);
        let shared = Arc::new(next);
        for held in [
            &mut self.sessions.shared,
            &mut self.operators.shared,
            &mut self.records.admin.shared,
            &mut self.migration.shared,
            &mut self.migration.configuration.shared,
            &mut self.configuration.shared,
        ] {
            *held = Arc::clone(&shared);
        }
        self.shared = shared;
        self
    }

    /// The address clients reach the instance at (see [`InstanceInfo::public_url`]).
    pub fn with_public_url(self, url: &str) -> Self {
        self.configure(|s| s.info.public_url = Some(url.to_owned()))
    }

    /// Reaches the IMS through `http` (sign-in, product profiles).
    pub fn with_ims_http(self, http: Arc<dyn ImsHttp>) -> Self {
        self.configure(|s| s.ims_http = Some(http))
    }

    /// Accepts access tokens of this IMS (`Authorization: Bearer`, `BearerTokenLogon`).
    pub fn with_bearer(self, issuer: Arc<TrustedIssuer>) -> Self {
        self.configure(|s| s.bearer = Some(issuer))
    }

    /// Starts with the IMS configuration of the instance's files (a reload changes it with
    /// [`Configuration::set_connection`], audited).
    pub fn with_connection(self, connection: Option<Connection>) -> Self {
        self.shared.set_connection(connection);
        self
    }

    /// Starts with the `imsConfig` switches of `serverConf.xml`.
    pub fn with_switches(self, switches: &ImsSwitches) -> Self {
        self.shared
            .set_restrictions(Restrictions::effective(&self.shared.info.build, switches));
        self
    }

    /// Lets the migration API lock the instance down by writing its configuration files.
    pub fn with_config_files(mut self, files: Arc<dyn crate::migration::ConfigFiles>) -> Self {
        self.migration.config_files = Some(files);
        self
    }
}

/// Rights of an operator: direct ones and those of its groups.
pub(crate) async fn effective_rights(store: &dyn OperatorStore, op: &Operator) -> Result<Vec<String>, Fault> {
    let groups = store.groups().await?;
    let mut rights: Vec<String> = op.rights.clone();
    for g in groups.iter().filter(|g| op.groups.contains(&g.name)) {
        for r in &g.rights {
            if !rights.contains(r) {
                rights.push(r.clone());
            }
        }
    }
    Ok(rights)
}

/// The named right that grants every other one.
pub const ADMINISTRATION: &str = "admin";

/// Whether `rights` grant `right` (ADMINISTRATION grants everything).
pub fn holds(rights: &[String], right: &str) -> bool {
    rights.iter().any(|r| r == right || r == ADMINISTRATION)
}
