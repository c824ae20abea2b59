//! The instance's sign-in and sessions: native `Logon`, session checks, bearer tokens, `Logoff`,
//! and what clients read about themselves after signing in. Every decision that depends on the
//! build is taken through [`crate::version::Build`]. Sign-in through the IMS is in
//! [`crate::signin`], on the same service.

use std::sync::Arc;

use ims_core::audit::AuditStore;
use ims_core::error::StoreError;
use ims_core::lockout::ThrottleStore;
use ims_core::secret::{self, Secret};
use ims_core::Now;
use ims_wire::names::CONSOLE_LOGON;

use crate::bearer::BearerError;
use crate::fault::Fault;
use crate::model::{AuthPath, AuthType, Operator, OperatorGroup, Session, UsageEvent};
use crate::service::{
    effective_rights, Call, Caller, InstanceKind, SessionTokens, Shared, SECURITY_PREFIX, SESSION_PREFIX,
};
use crate::store::{OperatorStore, SessionStore, UsageStore};
use crate::usage::{UsageKey, UsageRecorder};
use crate::version::Build;

/// Where a native sign-in comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Channel {
    Api,
    Console,
}

/// Signing in and out, natively and through the IMS, checking sessions and bearer tokens, and
/// the usage evidence they leave.
pub struct Sessions {
    pub(crate) shared: Arc<Shared>,
    pub(crate) operators: Arc<dyn OperatorStore>,
    pub(crate) sessions: Arc<dyn SessionStore>,
    usage: Arc<dyn UsageStore>,
    throttle: Arc<dyn ThrottleStore>,
    pub(crate) audit: Arc<dyn AuditStore>,
    /// Calls counted since the last flush (see [`Sessions::flush_usage`]).
    calls: UsageRecorder,
    /// When each technical account operator's rights were last read from its profiles.
    pub(crate) profiles_read: crate::signin::ProfileClock,
    /// The security zones operators are tied to.
    zones: crate::zones::Zone,
    /// What the IMS last said about bearer tokens (see [`crate::revalidate`]).
    revalidation: crate::revalidate::Revalidation,
}

impl Sessions {
    pub(crate) fn new(
        shared: Arc<Shared>,
        operators: Arc<dyn OperatorStore>,
        sessions: Arc<dyn SessionStore>,
        usage: Arc<dyn UsageStore>,
        throttle: Arc<dyn ThrottleStore>,
        audit: Arc<dyn AuditStore>,
    ) -> Self {
        Sessions {
            shared,
            operators,
            sessions,
            usage,
            throttle,
            audit,
            calls: UsageRecorder::default(),
            profiles_read: Default::default(),
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
        let (Some(http), Some(issuer)) = (&self.shared.ims_http, &self.shared.bearer) else {
            return true;
        };
        if self.shared.connection().is_some() {
            return true;
        }
        if id.is_empty() {
            // Every token of the IMS names itself; one that does not is not one of its own.
            return false;
        }
        if let Some(valid) = self
            .revalidation
            .recent(id, now, self.shared.info.profile_refresh_secs)
        {
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
            self.calls.record(key, call.now);
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
        if let Err(e) = self.usage.record_usage(&event).await {
            tracing::warn!(error = %e, "usage could not be recorded");
        }
    }

    /// Whether `op` may sign in natively: always, unless the build (8.6 and later) or the
    /// `nonIMSAuthnAPI disableAPI` switch limits native sign-in to the allow-list.
    fn native_allowed(&self, op: &Operator) -> bool {
        self.shared.restrictions().allows_native(&op.login)
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
        let (admitted, _) = ims_core::lockout::admit(
            self.throttle.as_ref(),
            crate::store::LOGIN_REALM,
            &key,
            source,
            now,
        )
        .await?;
        let found = self.operators.operator_by_login(login).await?;
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
        self.throttle
            .clear_failures(crate::store::LOGIN_REALM, &key)
            .await?;
        ims_core::lockout::forgive_address(self.throttle.as_ref(), source).await?;
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
            self.shared.info.remember_me_secs
        } else {
            self.shared.info.session_secs
        };
        let session = Session {
            session_digest: secret::digest_hex(tokens.session.expose()),
            security_digest: secret::digest_hex(tokens.security.expose()),
            operator_id: op.id,
            auth_path: path,
            created_at: now,
            expires_at: now.plus_secs(life),
        };
        match self.sessions.insert_session(&session).await {
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
            .sessions
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
            .operators
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
        if !self.shared.info.build.accepts_bearer_tokens() {
            self.record(&call, None, "", "refused").await;
            return Err(Fault::forbidden(format!(
                "build {} does not accept bearer tokens; builds that do: {}",
                self.shared.info.build,
                Build::BEARER_BUILDS
            )));
        }
        let Some(issuer) = &self.shared.bearer else {
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
        let conn = self.shared.connection();
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
        let op = match self.operators.operator_by_ims_id(&user_id).await? {
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

    /// Counts a successful call as usage evidence (written by [`Sessions::flush_usage`]).
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
        self.calls.record(key, now);
    }

    /// Writes the calls counted since the last flush; on failure keeps them for the next one.
    pub async fn flush_usage(&self) -> Result<usize, Fault> {
        let (rows, dropped) = self.calls.drain();
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
        if let Err(e) = self.usage.add_usage(&rows).await {
            self.calls.restore(rows);
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
                self.shared.info.technical_account_groups.clone()
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
        match self.operators.create_operator(&op, &audit).await {
            Ok(_) => {}
            // Two first calls at once: the other one created it.
            Err(StoreError::Conflict(_)) => {}
            Err(e) => return Err(e.into()),
        }
        self.operators
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
        if let Some(issuer) = &self.shared.bearer {
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
        self.sessions.delete_session(&digest).await?;
        self.revalidation.forget_session(&digest);
        Ok(())
    }

    /// Rights of an operator: direct ones and those of its groups.
    pub async fn effective_rights(&self, op: &Operator) -> Result<Vec<String>, Fault> {
        effective_rights(self.operators.as_ref(), op).await
    }

    /// Deletes sessions past their expiry; returns how many.
    pub async fn purge_expired_sessions(&self, now: Now) -> Result<u64, Fault> {
        Ok(self.sessions.purge_sessions(now).await?)
    }

    /// `xtk:session#GetOption`: the options integrations read (string values).
    pub fn option(&self, name: &str) -> Option<String> {
        let info = &self.shared.info;
        match name {
            "XtkInstanceName" => Some(info.name.clone()),
            "XtkBuildNumber" => Some(info.build_number.to_string()),
            "XtkBuildVersion" => Some(info.build.to_string()),
            "NmsMessageCenter_Enabled" => {
                Some(u8::from(info.kind == InstanceKind::MessageCenter).to_string())
            }
            _ => None,
        }
    }

    /// The server's part of the session information.
    pub fn server_info(&self) -> ServerInfo {
        ServerInfo {
            build_number: self.shared.info.build_number,
            build: self.shared.info.build,
            instance_name: self.shared.info.name.clone(),
        }
    }

    /// Who `op` is to a client: its groups, effective rights and the packages installed.
    pub async fn user_info(&self, op: &Operator) -> Result<UserInfo, Fault> {
        let groups = self.operators.groups().await?;
        let rights = self.effective_rights(op).await?;
        let mut packages = vec![Package {
            name: "core",
            namespace: "nms",
        }];
        if self.shared.info.kind == InstanceKind::MessageCenter {
            packages.push(Package {
                name: "messageCenter",
                namespace: "nms",
            });
        }
        Ok(UserInfo {
            login: op.login.clone(),
            id: op.id,
            label: op.label.clone(),
            groups: groups
                .into_iter()
                .filter(|g| op.groups.contains(&g.name))
                .collect(),
            rights,
            packages,
        })
    }

    /// The session information `Logon` and `BearerTokenLogon` return.
    pub async fn session_info(&self, op: &Operator) -> Result<SessionInfo, Fault> {
        Ok(SessionInfo {
            server: self.server_info(),
            user: self.user_info(op).await?,
        })
    }
}

/// The server a client signed in to (`serverInfo`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServerInfo {
    pub build_number: u32,
    pub build: Build,
    pub instance_name: String,
}

/// A package installed on the instance, as clients see it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Package {
    pub name: &'static str,
    pub namespace: &'static str,
}

/// An operator as it sees itself (`userInfo`): its groups, its effective rights (direct and
/// through groups) and the packages installed.
#[derive(Clone, Debug)]
pub struct UserInfo {
    pub login: String,
    pub id: i64,
    pub label: String,
    pub groups: Vec<OperatorGroup>,
    pub rights: Vec<String>,
    pub packages: Vec<Package>,
}

/// What a sign-in answers besides the tokens (`sessionInfo`).
#[derive(Clone, Debug)]
pub struct SessionInfo {
    pub server: ServerInfo,
    pub user: UserInfo,
}

async fn decoy_hash() -> Result<String, Fault> {
    ims_core::password::decoy_hash()
        .await
        .map_err(|_| Fault::internal())
}
