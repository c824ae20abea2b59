//! The instance's sign-in and sessions: native `Logon`, session checks, `Logoff`, and the user
//! information clients read after signing in. Every decision that depends on the build is taken
//! through [`crate::version::Build`].

use std::sync::{Arc, RwLock};

use ims_core::error::StoreError;
use ims_core::secret::{self, Secret};
use ims_core::Now;
use ims_core::StoreResult;

use crate::bearer::{BearerError, TrustedIssuer};
use crate::config::ImsSwitches;
use crate::connect::ImsHttp;
use crate::fault::Fault;
use crate::model::{AuthPath, AuthType, Operator, Session, UsageEvent};
use crate::restrictions::Restrictions;
use crate::signin::Connection;
use crate::store::InstanceStore;
use crate::usage::{UsageKey, UsageRecorder};
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

use ims_wire::names::CONSOLE_LOGON;

/// Where a native sign-in comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Channel {
    Api,
    Console,
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

pub struct Instance {
    pub(crate) store: Arc<dyn InstanceStore>,
    info: InstanceInfo,
    pub(crate) bearer: Option<Arc<TrustedIssuer>>,
    usage: UsageRecorder,
    /// The `imsConfig` switches as last read, with their effect on this build; replaced whole
    /// on reload so every request sees one consistent state.
    restrictions: RwLock<Arc<Restrictions>>,
    /// How people sign in through the IMS, when configured; replaced whole on reload.
    connection: RwLock<Option<Arc<Connection>>>,
    /// How the instance reaches the IMS (discovery, tokens, product profiles).
    ims_http: Option<Arc<dyn ImsHttp>>,
    /// When each technical account operator's rights were last read from its profiles.
    pub(crate) profiles_read: crate::signin::ProfileClock,
    /// Who writes the instance's configuration files, when the process that runs it does.
    pub(crate) config_files: Option<Arc<dyn crate::migration::ConfigFiles>>,
    /// The migration window's notice, as stored (read on every console page).
    pub(crate) notice: RwLock<Option<ims_wire::migration::Notice>>,
    /// The security zones operators are tied to.
    zones: crate::zones::Zone,
    /// What the IMS last said about bearer tokens (see [`crate::revalidate`]).
    revalidation: crate::revalidate::Revalidation,
}

impl std::fmt::Debug for Instance {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Instance")
            .field("info", &self.info)
            .finish_non_exhaustive()
    }
}

impl Instance {
    pub fn new(store: Arc<dyn InstanceStore>, info: InstanceInfo) -> Self {
        let restrictions = Restrictions::effective(&info.build, &ImsSwitches::default());
        Instance {
            store,
            info,
            bearer: None,
            usage: UsageRecorder::default(),
            restrictions: RwLock::new(Arc::new(restrictions)),
            connection: RwLock::new(None),
            ims_http: None,
            profiles_read: Default::default(),
            config_files: None,
            notice: RwLock::new(None),
            zones: crate::zones::default_tree(),
            revalidation: Default::default(),
        }
    }

    /// Whether the IMS still stands behind a bearer token whose signature and claims were
    /// checked offline (see [`crate::revalidate`]): asked at most once every
    /// `profile_refresh_secs` per token, and only where no IMS sign-in configuration reads
    /// profiles with it anyway. The question is the one a configured instance asks, the
    /// token's Campaign profiles: the IMS refuses a revoked token, a disabled or deleted
    /// credential's, and a credential not subscribed to the Campaign API.
    async fn still_valid(&self, token: &str, id: &str, now: Now) -> bool {
        let (Some(http), Some(issuer)) = (&self.ims_http, &self.bearer) else {
            return true;
        };
        if self.connection().is_some() {
            return true;
        }
        if id.is_empty() {
            // Every token of the IMS names itself; one that does not is not one of its own.
            return false;
        }
        if let Some(valid) = self.revalidation.recent(id, now, self.info.profile_refresh_secs) {
            return valid;
        }
        let url = format!(
            "{}?product_context={}",
            crate::connect::endpoint(
                issuer.issuer().trim_end_matches('/'),
                crate::connect::Endpoint::Profile
            ),
            crate::connect::DEFAULT_PRODUCT_CONTEXT
        );
        match http.get(&url, Some(token)).await {
            Ok((status, body)) => match crate::revalidate::verdict_of(status, &body) {
                Some(valid) => {
                    self.revalidation.record(id, valid, now);
                    valid
                }
                None => {
                    tracing::warn!(
                        status,
                        "the IMS gave no verdict on a bearer token; accepted as it stands"
                    );
                    true
                }
            },
            Err(e) => {
                tracing::warn!(error = %e, "the IMS could not be asked about a bearer token; accepted as it stands");
                true
            }
        }
    }

    /// Whether `op` may connect from `source` (its trusted IP mask and security zone); a
    /// refusal is logged with its reason and answered like any other.
    fn connects_from(&self, op: &Operator, source: Option<&str>) -> bool {
        match crate::zones::check(
            &self.zones,
            op.trusted_ip_mask.as_deref(),
            op.security_zone.as_deref(),
            source,
        ) {
            Ok(()) => true,
            Err(why) => {
                tracing::info!(operator = %op.login, source = source.unwrap_or("?"), %why, "connection refused by address");
                false
            }
        }
    }

    /// The address clients reach the instance at (see [`InstanceInfo::public_url`]).
    pub fn with_public_url(mut self, url: &str) -> Self {
        self.info.public_url = Some(url.to_owned());
        self
    }

    /// Reaches the IMS through `http` (sign-in, product profiles).
    pub fn with_ims_http(mut self, http: Arc<dyn ImsHttp>) -> Self {
        self.ims_http = Some(http);
        self
    }

    pub fn ims_http(&self) -> Option<&Arc<dyn ImsHttp>> {
        self.ims_http.as_ref()
    }

    /// Starts with the IMS configuration of the instance's files (a reload changes it with
    /// [`Instance::set_connection`], audited).
    pub fn with_connection(self, connection: Option<Connection>) -> Self {
        *self.connection.write().unwrap_or_else(|e| e.into_inner()) = connection.map(Arc::new);
        self
    }

    /// The IMS configuration in effect, if any.
    pub fn connection(&self) -> Option<Arc<Connection>> {
        self.connection.read().unwrap_or_else(|e| e.into_inner()).clone()
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
            if let Some(n) = next {
                *self.connection.write().unwrap_or_else(|e| e.into_inner()) = Some(Arc::new(n));
            }
            return Ok(false);
        }
        let audit = ctx.event(
            "instance.ims_account",
            &self.info.name,
            "success",
            serde_json::json!({"before": before, "after": after}),
        );
        self.store.append_audit(&audit).await?;
        tracing::info!(instance = %self.info.name, configured = after.is_some(), "IMS sign-in configuration changed");
        *self.connection.write().unwrap_or_else(|e| e.into_inner()) = next.map(Arc::new);
        Ok(true)
    }

    /// Starts with the `imsConfig` switches of `serverConf.xml`.
    pub fn with_switches(self, switches: &ImsSwitches) -> Self {
        *self.restrictions.write().unwrap_or_else(|e| e.into_inner()) =
            Arc::new(Restrictions::effective(&self.info.build, switches));
        self
    }

    /// The restrictions in effect now.
    pub fn restrictions(&self) -> Arc<Restrictions> {
        self.restrictions
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Applies switches read again from `serverConf.xml` (a reload). Logs and audits the change
    /// as `ctx.actor`; returns whether anything changed. From the next request on, sign-ins,
    /// sessions and operator changes follow the new state.
    pub async fn apply_switches(
        &self,
        switches: &ImsSwitches,
        ctx: &ims_core::audit::Context,
    ) -> Result<bool, Fault> {
        let next = Restrictions::effective(&self.info.build, switches);
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
            &self.info.name,
            "success",
            serde_json::json!({"before": describe(&before), "after": describe(&next)}),
        );
        self.store.append_audit(&audit).await?;
        tracing::info!(
            instance = %self.info.name,
            operator_management = next.operator_management,
            native_api = next.native_api,
            allow_list = ?next.allow_list,
            "restrictions changed"
        );
        *self.restrictions.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(next);
        Ok(true)
    }

    /// Lets the migration API lock the instance down by writing its configuration files.
    pub fn with_config_files(mut self, files: Arc<dyn crate::migration::ConfigFiles>) -> Self {
        self.config_files = Some(files);
        self
    }

    /// Accepts access tokens of this IMS (`Authorization: Bearer`, `BearerTokenLogon`).
    pub fn with_bearer(mut self, issuer: Arc<TrustedIssuer>) -> Self {
        self.bearer = Some(issuer);
        self
    }

    /// The IMS this instance trusts, when it has one.
    pub fn ims_url(&self) -> Option<&str> {
        self.bearer.as_deref().map(TrustedIssuer::issuer)
    }

    pub fn info(&self) -> &InstanceInfo {
        &self.info
    }

    pub fn store(&self) -> &Arc<dyn InstanceStore> {
        &self.store
    }

    /// Records one sign-in attempt, call or refusal as usage evidence.
    pub(crate) async fn record(&self, call: &Call<'_>, op: Option<&Operator>, login: &str, outcome: &str) {
        // A bearer token refused before it names an operator costs its sender no password work:
        // counted in memory like calls (bounded keys, flushed as totals), never a row each, so
        // a flood of garbage tokens cannot fill the database.
        if op.is_none() && call.path == AuthPath::Bearer {
            let key = UsageKey {
                login: login.chars().take(128).collect(),
                operator_id: None,
                action: call.action.chars().take(128).collect(),
                auth_path: call.path,
                source: call.caller.source.clone().unwrap_or_default(),
                client: call.caller.client.clone().unwrap_or_default(),
                outcome: outcome.to_owned(),
            };
            self.usage.record(key, call.now);
            return;
        }
        let event = UsageEvent {
            at: call.now,
            operator_id: op.map(|o| o.id),
            login: login.chars().take(128).collect(),
            action: call.action.to_owned(),
            auth_path: call.path,
            source: call.caller.source.clone(),
            client: call.caller.client.clone(),
            outcome: outcome.to_owned(),
        };
        if let Err(e) = self.store.record_usage(&event).await {
            tracing::warn!(error = %e, "usage could not be recorded");
        }
    }

    /// Whether `op` may sign in natively: always, unless the build (8.6 and later) or the
    /// `nonIMSAuthnAPI disableAPI` switch limits native sign-in to the allow-list.
    fn native_allowed(&self, op: &Operator) -> bool {
        self.restrictions().allows_native(&op.login)
    }

    /// `xtk:session#Logon`. Unknown login, wrong password, disabled or non-native operator and a
    /// build that refuses native sign-in all give the same fault after the same work.
    pub async fn logon(
        &self,
        login: &str,
        password: &Secret,
        remember_me: bool,
        now: Now,
        caller: &Caller,
    ) -> Result<(SessionTokens, Operator), Fault> {
        self.logon_through(Channel::Api, login, password, remember_me, now, caller)
            .await
    }

    /// Sign-in to the instance console: as `Logon`, recorded as a console sign-in (evidence of a
    /// person), and refused to operators whose rich-client access is forbidden.
    pub async fn console_logon(
        &self,
        login: &str,
        password: &Secret,
        now: Now,
        caller: &Caller,
    ) -> Result<(SessionTokens, Operator), Fault> {
        self.logon_through(Channel::Console, login, password, false, now, caller)
            .await
    }

    async fn logon_through(
        &self,
        channel: Channel,
        login: &str,
        password: &Secret,
        remember_me: bool,
        now: Now,
        caller: &Caller,
    ) -> Result<(SessionTokens, Operator), Fault> {
        let call = Call {
            now,
            action: match channel {
                Channel::Api => "xtk:session#Logon",
                Channel::Console => CONSOLE_LOGON,
            },
            path: AuthPath::Native,
            caller,
        };
        // Counted before the password is checked, per folded login and per client address (the
        // IMS's lock-out model): a lock in force refuses the right password too, with the same
        // fault and the same work.
        let key = ims_core::lockout::account_key(login);
        let source = caller.source.as_deref();
        let (admitted, _) =
            ims_core::lockout::admit(self.store.as_ref(), crate::store::LOGIN_REALM, &key, source, now)
                .await?;
        let found = self.store.operator_by_login(login).await?;
        let hash = match found.as_ref().and_then(|o| o.password_hash.clone()) {
            Some(h) => h,
            None => decoy_hash().await?,
        };
        let password_ok = ims_core::password::verify(password, &hash)
            .await
            .map_err(|_| Fault::internal())?;
        let op = match found {
            Some(op)
                if password_ok
                    && admitted
                    && self.connects_from(&op, caller.source.as_deref())
                    && !op.disabled
                    && op.auth_type == AuthType::Native
                    && self.native_allowed(&op) =>
            {
                op
            }
            other => {
                self.record(&call, other.as_ref(), login, "refused").await;
                return Err(Fault::invalid_login());
            }
        };
        if channel == Channel::Console && op.forbid_rich_client {
            self.record(&call, Some(&op), &op.login, "refused").await;
            return Err(Fault::forbidden(
                "this operator may not use the console (rich-client access is forbidden)",
            ));
        }
        let Some(tokens) = self.open_session(&op, AuthPath::Native, remember_me, now).await? else {
            // Switched to the IMS while its password was being checked.
            self.record(&call, Some(&op), &op.login, "refused").await;
            return Err(Fault::invalid_login());
        };
        self.store.clear_failures(crate::store::LOGIN_REALM, &key).await?;
        ims_core::lockout::forgive_address(self.store.as_ref(), source).await?;
        self.record(&call, Some(&op), &op.login, "success").await;
        Ok((tokens, op))
    }

    /// Opens a session for `op` through `path`; `None` when `op` no longer signs in that way
    /// (switched meanwhile: nothing is opened).
    pub(crate) async fn open_session(
        &self,
        op: &Operator,
        path: AuthPath,
        remember_me: bool,
        now: Now,
    ) -> Result<Option<SessionTokens>, Fault> {
        let tokens = SessionTokens {
            session: secret::generate(SESSION_PREFIX),
            security: secret::generate(SECURITY_PREFIX),
        };
        let life = if remember_me {
            self.info.remember_me_secs
        } else {
            self.info.session_secs
        };
        let session = Session {
            session_digest: secret::digest_hex(tokens.session.expose()),
            security_digest: secret::digest_hex(tokens.security.expose()),
            operator_id: op.id,
            auth_path: path,
            created_at: now,
            expires_at: now.plus_secs(life),
        };
        match self.store.insert_session(&session).await {
            Ok(()) => Ok(Some(tokens)),
            Err(StoreError::Conflict(_)) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// The operator behind a session token (and, when given, its security token). A session of
    /// an operator who has since been disabled, or whose native sign-in the build now refuses, is
    /// refused like an expired one.
    pub async fn session_operator(
        &self,
        session_token: &str,
        security_token: Option<&str>,
        source: Option<&str>,
        now: Now,
    ) -> Result<(Operator, Session), Fault> {
        let digest = secret::digest_hex(session_token);
        let session = self
            .store
            .session(&digest)
            .await?
            .ok_or_else(Fault::session_expired)?;
        if session.expires_at <= now {
            return Err(Fault::session_expired());
        }
        if let Some(sec) = security_token.filter(|s| !s.is_empty()) {
            if !secret::equal_ct(&secret::digest_hex(sec), &session.security_digest) {
                return Err(Fault::session_expired());
            }
        }
        let op = self
            .store
            .operator(session.operator_id)
            .await?
            .ok_or_else(Fault::session_expired)?;
        let still_allowed = match session.auth_path {
            AuthPath::Native => op.auth_type == AuthType::Native && self.native_allowed(&op),
            // Switched back to native sign-in (a rollback): the IMS session no longer counts.
            AuthPath::Ims => op.auth_type == AuthType::Ims,
            AuthPath::Bearer => true,
        };
        if op.disabled || !still_allowed || !self.connects_from(&op, source) {
            return Err(Fault::session_expired());
        }
        // A session `BearerTokenLogon` opened lives no longer than its token, nor past the
        // IMS's revoking it (while this process remembers the token).
        if session.auth_path == AuthPath::Bearer {
            if let Some(kept) = self.revalidation.session_token(&digest) {
                let valid =
                    now.secs() < kept.expires_at && self.still_valid(&kept.token, &kept.id, now).await;
                if !valid {
                    self.revalidation.forget_session(&digest);
                    return Err(Fault::session_expired());
                }
            }
        }
        Ok((op, session))
    }

    /// The operator an IMS access token stands for. A technical account's operator is created at
    /// its first call, named by the technical account's email; a person's token needs an operator
    /// already linked to that identity.
    pub async fn bearer_operator(
        &self,
        token: &str,
        action: &str,
        now: Now,
        caller: &Caller,
    ) -> Result<Operator, Fault> {
        let call = Call {
            now,
            action,
            path: AuthPath::Bearer,
            caller,
        };
        if !self.info.build.accepts_bearer_tokens() {
            self.record(&call, None, "", "refused").await;
            return Err(Fault::forbidden(format!(
                "build {} does not accept bearer tokens; builds that do: {}",
                self.info.build,
                Build::BEARER_BUILDS
            )));
        }
        let Some(issuer) = &self.bearer else {
            return Err(Fault::forbidden(
                "this instance has no IMS configured for bearer tokens",
            ));
        };
        let claims = match issuer.verify(token, now).await {
            Ok(c) => c,
            Err(BearerError::Refused(reason)) => {
                tracing::debug!(%reason, "bearer token refused");
                self.record(&call, None, "", "refused").await;
                return Err(Fault::session_expired());
            }
            // Not the caller's fault: a server-side fault, so clients do not loop on re-sign-in.
            Err(BearerError::Unavailable(reason)) => {
                tracing::warn!(%reason, "the IMS keys are unavailable; bearer tokens cannot be checked");
                return Err(Fault::unavailable(
                    "the identity service's keys cannot be read; retry later",
                ));
            }
        };
        let claim = |name: &str| {
            claims
                .get(name)
                .and_then(serde_json::Value::as_str)
                .map(str::to_owned)
        };
        let user_id = claim("user_id").ok_or_else(Fault::session_expired)?;
        // Read once for the whole call.
        let conn = self.connection();
        let own_client = conn.as_ref().map(|c| c.client_id.as_str());
        if let Err(why) = crate::bearer::meant_for_instance(&claims, own_client) {
            tracing::info!(%why, "a bearer token meant for another application was refused");
            self.record(&call, None, &user_id, "refused").await;
            return Err(Fault::forbidden(why));
        }
        let token_id = claim("jti").or_else(|| claim("id")).unwrap_or_default();
        if !self.still_valid(token, &token_id, now).await {
            tracing::info!("a bearer token the IMS no longer stands behind was refused");
            self.record(&call, None, &user_id, "refused").await;
            return Err(Fault::session_expired());
        }
        // An instance serves one organisation: another's tokens do not reach its operators.
        if let Some(conn) = &conn {
            if claim("org").as_deref() != Some(conn.account.org_id.as_str()) {
                self.record(&call, None, &user_id, "refused").await;
                return Err(Fault::forbidden(
                    "this token belongs to another organisation than the one this instance serves",
                ));
            }
        }
        let op = match self.store.operator_by_ims_id(&user_id).await? {
            Some(op) => op,
            None if user_id.contains("@techacct.") => {
                let login = claim("email").unwrap_or_else(|| user_id.clone());
                self.create_technical_operator(&login, &user_id, conn.is_some(), now)
                    .await?
            }
            None => {
                self.record(&call, None, &user_id, "refused").await;
                return Err(Fault::forbidden("no operator is linked to this identity"));
            }
        };
        if op.disabled {
            self.record(&call, Some(&op), &op.login, "refused").await;
            return Err(Fault::session_expired());
        }
        // With an IMS configuration, product profiles decide what the caller may do, people
        // and technical accounts alike.
        let op = match &conn {
            Some(conn) if matches!(op.auth_type, AuthType::TechnicalAccount | AuthType::Ims) => {
                self.profile_rights(conn, op, token, now).await?
            }
            _ => op,
        };
        if action == "xtk:session#BearerTokenLogon" {
            self.record(&call, Some(&op), &op.login, "success").await;
        } else {
            self.note_call(&op, action, AuthPath::Bearer, caller, now);
        }
        Ok(op)
    }

    /// Counts a successful call as usage evidence (written by [`Instance::flush_usage`]).
    pub fn note_call(&self, op: &Operator, action: &str, path: AuthPath, caller: &Caller, now: Now) {
        let key = UsageKey {
            login: op.login.clone(),
            operator_id: Some(op.id),
            action: action.chars().take(128).collect(),
            auth_path: path,
            source: caller.source.clone().unwrap_or_default(),
            client: caller.client.clone().unwrap_or_default(),
            outcome: "success".into(),
        };
        self.usage.record(key, now);
    }

    /// Writes the calls counted since the last flush; on failure keeps them for the next one.
    pub async fn flush_usage(&self) -> Result<usize, Fault> {
        let (rows, dropped) = self.usage.drain();
        if dropped > 0 {
            tracing::warn!(
                dropped,
                "usage keys dropped: too many distinct callers between two flushes"
            );
        }
        if rows.is_empty() {
            return Ok(0);
        }
        let n = rows.len();
        if let Err(e) = self.store.add_usage(&rows).await {
            self.usage.restore(rows);
            return Err(e.into());
        }
        Ok(n)
    }

    async fn create_technical_operator(
        &self,
        login: &str,
        ims_id: &str,
        profiles_decide: bool,
        now: Now,
    ) -> Result<Operator, Fault> {
        let op = Operator {
            id: 0,
            login: login.to_owned(),
            label: format!("Technical account {login}"),
            email: Some(login.to_owned()),
            auth_type: AuthType::TechnicalAccount,
            disabled: false,
            forbid_rich_client: true,
            trusted_ip_mask: None,
            security_zone: None,
            rights: Vec::new(),
            // With an IMS configuration, the credential's product profiles decide (at once,
            // below); without one, the instance's default groups for technical accounts.
            groups: if profiles_decide {
                Vec::new()
            } else {
                self.info.technical_account_groups.clone()
            },
            password_hash: None,
            ims_id: Some(ims_id.to_owned()),
            builtin: false,
            created_at: now,
            modified_at: now,
        };
        let audit = ims_core::audit::Context::new(now, format!("technical-account:{ims_id}")).event(
            "operator.create",
            login,
            "success",
            serde_json::json!({"auth_type": "technical_account", "reason": "first call with an IMS access token", "groups": op.groups}),
        );
        match self.store.create_operator(&op, &audit).await {
            Ok(_) => {}
            // Two first calls at once: the other one created it.
            Err(StoreError::Conflict(_)) => {}
            Err(e) => return Err(e.into()),
        }
        self.store
            .operator_by_ims_id(ims_id)
            .await?
            .ok_or_else(Fault::internal)
    }

    /// `xtk:session#BearerTokenLogon`: a session for the token's operator.
    pub async fn bearer_logon(
        &self,
        token: &str,
        now: Now,
        caller: &Caller,
    ) -> Result<(SessionTokens, Operator), Fault> {
        let op = self
            .bearer_operator(token, "xtk:session#BearerTokenLogon", now, caller)
            .await?;
        let tokens = self
            .open_session(&op, AuthPath::Bearer, false, now)
            .await?
            .ok_or_else(Fault::session_expired)?;
        // Kept in memory only, to ask the IMS about it again during the session and to end the
        // session with it; its signature was verified just now.
        if let Some(issuer) = &self.bearer {
            if let Ok(claims) = issuer.verify(token, now).await {
                let text = |name: &str| claims.get(name).and_then(serde_json::Value::as_str);
                let kept = crate::revalidate::SessionToken {
                    token: token.to_owned(),
                    id: text("jti").or_else(|| text("id")).unwrap_or_default().to_owned(),
                    expires_at: claims.get("exp").and_then(serde_json::Value::as_i64).unwrap_or(0),
                };
                self.revalidation
                    .remember_session(&secret::digest_hex(tokens.session.expose()), kept);
            }
        }
        Ok((tokens, op))
    }

    /// `xtk:session#Logoff`: ends the session; an unknown token is not an error.
    pub async fn logoff(&self, session_token: &str) -> Result<(), Fault> {
        let digest = secret::digest_hex(session_token);
        self.store.delete_session(&digest).await?;
        self.revalidation.forget_session(&digest);
        Ok(())
    }

    /// Rights of an operator: direct ones and those of its groups.
    pub async fn effective_rights(&self, op: &Operator) -> Result<Vec<String>, Fault> {
        let groups = self.store.groups().await?;
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
}

/// The named right that grants every other one.
pub const ADMINISTRATION: &str = "admin";

/// Whether `rights` grant `right` (ADMINISTRATION grants everything).
pub fn holds(rights: &[String], right: &str) -> bool {
    rights.iter().any(|r| r == right || r == ADMINISTRATION)
}

async fn decoy_hash() -> Result<String, Fault> {
    ims_core::password::decoy_hash()
        .await
        .map_err(|_| Fault::internal())
}

impl Instance {
    /// `<serverInfo .../>` of the session information.
    pub fn server_info_xml(&self) -> String {
        use ims_wire::soap::escape;
        let b = &self.info.build;
        format!(
            "<serverInfo buildNumber=\"{}\" majNumber=\"{}\" minNumber=\"{}\" servicePack=\"{}\" instanceName=\"{}\"/>",
            self.info.build_number,
            b.major,
            b.minor,
            b.patch,
            escape(&self.info.name)
        )
    }

    /// `<userInfo .../>` for an operator, with its groups, effective rights and packages.
    pub async fn user_info_xml(&self, op: &Operator) -> Result<String, Fault> {
        use ims_wire::soap::escape;
        let groups = self.store.groups().await?;
        let rights = self.effective_rights(op).await?;
        let mut xml = format!(
            "<userInfo login=\"{}\" loginId=\"{}\" loginCS=\"{} ({})\" timezone=\"UTC\" instanceLocale=\"en\" locale=\"en\">",
            escape(&op.login),
            op.id,
            escape(&op.label),
            escape(&op.login)
        );
        for g in groups.iter().filter(|g| op.groups.contains(&g.name)) {
            xml.push_str(&format!(
                "<login-group id=\"{}\" name=\"{}\" label=\"{}\"/>",
                g.id,
                escape(&g.name),
                escape(&g.label)
            ));
        }
        for r in &rights {
            xml.push_str(&format!("<login-right right=\"{}\"/>", escape(r)));
        }
        xml.push_str("<installed-package name=\"core\" namespace=\"nms\"/>");
        if self.info.kind == InstanceKind::MessageCenter {
            xml.push_str("<installed-package name=\"messageCenter\" namespace=\"nms\"/>");
        }
        xml.push_str("</userInfo>");
        Ok(xml)
    }

    /// `<sessionInfo>` returned by `Logon` and `BearerTokenLogon`.
    pub async fn session_info_xml(&self, op: &Operator) -> Result<String, Fault> {
        Ok(format!(
            "<sessionInfo>{}{}</sessionInfo>",
            self.server_info_xml(),
            self.user_info_xml(op).await?
        ))
    }
}

impl Instance {
    /// `xtk:queryDef#ExecuteQuery` on a schema we serve, for `op`: the answer document.
    pub async fn execute_query(&self, op: &Operator, doc: &ims_wire::soap::Element) -> Result<String, Fault> {
        use crate::query::{Operation, QueryDef};
        use ims_wire::soap::escape;
        let q = QueryDef::from_element(doc).map_err(|e| Fault::bad_request(e.0))?;
        let rights = self.effective_rights(op).await?;
        if let Some(right) = q.schema.right {
            if !holds(&rights, right) {
                return Err(Fault::forbidden(format!(
                    "reading {} needs the {right} right",
                    q.schema.id
                )));
            }
        }
        let mut filter = q.where_sql().map_err(|e| Fault::bad_request(e.0))?;
        if let Some(column) = q.schema.folder_column {
            if !holds(&rights, ADMINISTRATION) {
                let folders = self.store.readable_folders(op.id).await?;
                filter = Some(crate::query::and_in(filter, column, &folders));
            }
        }
        let element = q.schema.element;
        if q.operation == Operation::Count {
            let n = self.store.count(q.schema.table, filter.as_ref()).await?;
            return Ok(format!("<{element} count=\"{n}\"/>"));
        }
        let columns: Vec<&'static str> = q.select.iter().map(|(_, c)| *c).collect();
        let limit = match q.operation {
            Operation::Get | Operation::GetIfExists => Some(1),
            _ => q.line_count,
        };
        let rows = self
            .store
            .select(
                q.schema.table,
                &columns,
                filter.as_ref(),
                &q.order,
                limit,
                q.start_line,
            )
            .await?;
        let render = |row: &Vec<Option<String>>| {
            let mut xml = format!("<{element}");
            for ((attr, _), value) in q.select.iter().zip(row) {
                if let Some(v) = value {
                    xml.push_str(&format!(" {attr}=\"{}\"", escape(v)));
                }
            }
            xml.push_str("/>");
            xml
        };
        match q.operation {
            Operation::Get => rows
                .first()
                .map(render)
                .ok_or_else(|| Fault::not_found(format!("No {element} matches the query"))),
            Operation::GetIfExists => Ok(rows
                .first()
                .map(render)
                .unwrap_or_else(|| format!("<{element}/>"))),
            _ => {
                let mut xml = format!("<{element}-collection>");
                for row in &rows {
                    xml.push_str(&render(row));
                }
                xml.push_str(&format!("</{element}-collection>"));
                Ok(xml)
            }
        }
    }
}

/// Largest real-time event context accepted, in bytes of XML.
pub const MAX_EVENT_CTX: usize = 64 * 1024;
/// Queue size `mcPing.jsp` reports against.
pub const EVENT_QUEUE_SIZE: i64 = 400;

impl Instance {
    /// `nms:rtEvent#PushEvent` on a Message Center instance, for an operator holding the
    /// Message Center right (or ADMINISTRATION). Returns the event id.
    pub async fn push_event(
        &self,
        op: &Operator,
        event: &ims_wire::soap::Element,
        now: Now,
    ) -> Result<i64, Fault> {
        if self.info.kind != InstanceKind::MessageCenter {
            return Err(Fault::unknown_method("PushEvent", "urn:nms:rtEvent"));
        }
        if !holds(&self.effective_rights(op).await?, "messageCenter") {
            return Err(Fault::forbidden("pushing events needs the Message Center right"));
        }
        if event.name != "rtEvent" {
            return Err(Fault::bad_request("the event must be an <rtEvent> element"));
        }
        let event_type = event
            .attr("type")
            .filter(|t| !t.trim().is_empty())
            .ok_or_else(|| Fault::bad_request("the event has no type"))?;
        let ctx = serialize(event);
        if ctx.len() > MAX_EVENT_CTX {
            return Err(Fault::bad_request(format!(
                "the event exceeds {MAX_EVENT_CTX} bytes"
            )));
        }
        Ok(self
            .store
            .push_event(event_type, event.attr("email"), &ctx, op.id, now)
            .await?)
    }

    /// `mcPing.jsp`: pending events and the queue size.
    pub async fn mc_ping(&self) -> Result<(i64, i64), Fault> {
        Ok((self.store.pending_events().await?, EVENT_QUEUE_SIZE))
    }
}

/// Writes an element back as XML (the stored context of an event).
fn serialize(el: &ims_wire::soap::Element) -> String {
    use ims_wire::soap::{escape, Node};
    let mut out = format!("<{}", el.name);
    for (k, v) in &el.attrs {
        out.push_str(&format!(" {k}=\"{}\"", escape(v)));
    }
    out.push('>');
    for child in &el.children {
        match child {
            Node::Element(e) => out.push_str(&serialize(e)),
            Node::Text(t) => out.push_str(&escape(t)),
        }
    }
    out.push_str(&format!("</{}>", el.name));
    out
}

impl Instance {
    /// `xtk:session#GetOption`: the options integrations read (string values).
    pub fn option(&self, name: &str) -> Option<String> {
        match name {
            "XtkInstanceName" => Some(self.info.name.clone()),
            "XtkBuildNumber" => Some(self.info.build_number.to_string()),
            "XtkBuildVersion" => Some(self.info.build.to_string()),
            "NmsMessageCenter_Enabled" => {
                Some(u8::from(self.info.kind == InstanceKind::MessageCenter).to_string())
            }
            _ => None,
        }
    }
}

impl Instance {
    /// Deletes sessions past their expiry; returns how many.
    pub async fn purge_expired_sessions(&self, now: Now) -> Result<u64, Fault> {
        Ok(self.store.purge_sessions(now).await?)
    }
}

/// Folder new recipients go to unless the document names one.
pub const DEFAULT_RECIPIENT_FOLDER: &str = "nmsRootRecipient";

impl Instance {
    /// `xtk:session#Write` (the `xtk:persist` interface) of an `xtk:operator` document (see
    /// [`crate::operators::parse_document`]) or an `nms:recipient` document. For recipients:
    /// `_operation` insert, update, insertOrUpdate (the default) or delete, `_key` `@id` (the
    /// default) or `@email`. Needs the write right on the folder written to and, for a change, on
    /// the folder the recipient is in (ADMINISTRATION writes everywhere).
    pub async fn write(
        &self,
        op: &Operator,
        doc: &ims_wire::soap::Element,
        now: Now,
        caller: &Caller,
    ) -> Result<(), Fault> {
        use crate::model::Recipient;
        use crate::store::RecipientKey;
        let schema = doc.attr("xtkschema").unwrap_or_default();
        match (schema, doc.name.as_str()) {
            ("nms:recipient", "recipient") => {}
            ("xtk:operator", "operator") => {
                let d = crate::operators::parse_document(doc)?;
                return self
                    .change_operator(op, &d.key, d.mode, d.edit, now, caller)
                    .await
                    .map(drop);
            }
            _ => {
                return Err(Fault::bad_request(format!(
                    "this instance writes nms:recipient and xtk:operator documents, not {schema:?}"
                )))
            }
        }
        let admin = holds(&self.effective_rights(op).await?, ADMINISTRATION);
        let writable = if admin {
            Vec::new()
        } else {
            self.store.writable_folders(op.id).await?
        };
        let may_write = |folder: Option<i64>| admin || folder.is_some_and(|f| writable.contains(&f));
        let key = match doc.attr("_key").unwrap_or("@id") {
            "@id" => RecipientKey::Id,
            "@email" => RecipientKey::Email,
            other => return Err(Fault::bad_request(format!("_key {other:?}: use @id or @email"))),
        };
        let key_value = match key {
            RecipientKey::Id => doc.attr("id"),
            RecipientKey::Email => doc.attr("email"),
        };
        let existing = match key_value {
            Some(v) => self.store.recipient_by(key, v).await?,
            None => None,
        };
        let folder = match doc.attr("folder-id") {
            Some(f) => Some(
                f.trim()
                    .parse::<i64>()
                    .map_err(|_| Fault::bad_request("folder-id must be a number"))?,
            ),
            None => match &existing {
                Some(r) => r.folder_id,
                None => self.store.folder_by_name(DEFAULT_RECIPIENT_FOLDER).await?,
            },
        };
        let text = |name: &str, old: Option<String>| doc.attr(name).map(str::to_owned).or(old);
        // The database refuses a folder that does not exist (a foreign key): that is the
        // caller's mistake, said as such, not a server fault.
        let written = |r: StoreResult<()>| match r {
            Err(StoreError::Conflict(_)) => Err(Fault::bad_request(format!(
                "folder-id {} is not a folder of this instance",
                folder.map(|f| f.to_string()).unwrap_or_default()
            ))),
            other => other.map_err(Fault::from),
        };
        let operation = doc.attr("_operation").unwrap_or("insertOrUpdate");
        match (operation, existing) {
            ("delete", Some(r)) => {
                if !may_write(r.folder_id) {
                    return Err(Fault::forbidden("no write right on the recipient's folder"));
                }
                self.store.delete_recipient(r.id).await?;
            }
            ("delete", None) => return Err(Fault::not_found("No recipient matches the key")),
            ("update" | "insertOrUpdate", Some(r)) => {
                if !may_write(r.folder_id) || !may_write(folder) {
                    return Err(Fault::forbidden("no write right on the recipient's folder"));
                }
                let updated = Recipient {
                    email: text("email", r.email.clone()),
                    first_name: text("firstName", r.first_name.clone()),
                    last_name: text("lastName", r.last_name.clone()),
                    folder_id: folder,
                    modified_at: now,
                    ..r
                };
                written(self.store.update_recipient(&updated).await)?;
            }
            ("update", None) => return Err(Fault::not_found("No recipient matches the key")),
            ("insert" | "insertOrUpdate", _) => {
                if !may_write(folder) {
                    return Err(Fault::forbidden("no write right on the folder"));
                }
                let email = doc.attr("email").map(str::trim).filter(|e| !e.is_empty());
                if email.is_some_and(|e| e.len() > 320 || !e.contains('@')) {
                    return Err(Fault::bad_request("email is not an email address"));
                }
                written(
                    self.store
                        .create_recipient(&Recipient {
                            id: 0,
                            email: email.map(str::to_owned),
                            first_name: doc.attr("firstName").map(str::to_owned),
                            last_name: doc.attr("lastName").map(str::to_owned),
                            folder_id: folder,
                            created_at: now,
                            modified_at: now,
                        })
                        .await
                        .map(drop),
                )?;
            }
            (other, _) => return Err(Fault::bad_request(format!("unsupported _operation {other:?}"))),
        }
        Ok(())
    }
}
