//! People signing in to the instance console through the IMS (authorization code with PKCE), and
//! the groups and named rights that product profiles give operators, people and technical
//! accounts alike. The configuration and the pure rules are in [`crate::connect`].

use std::sync::Arc;

use ims_core::audit::Context;
use ims_core::secret::{self, Secret};
use ims_core::Now;
use serde_json::{json, Value};

use crate::bearer::{BearerError, TrustedIssuer};
use crate::connect::{
    self, endpoint, Endpoint, HeldProfile, HttpKeys, Identity, ImsAccount, ImsHttp, Mapping, Resolution,
    NO_MATCHING_RIGHT,
};
use crate::fault::Fault;
use crate::model::{AuthPath, AuthType, Operator};
use crate::service::{Call, Caller, SessionTokens};
use crate::sessions::Sessions;

/// How long a technical account's rights read from its product profiles stand before the next
/// call reads them again: a profile given or taken in the Admin or Developer Console reaches
/// the instance within this bound.
pub const PROFILE_REFRESH_SECS: i64 = 60;

/// At most this many technical accounts' read times are kept; past it the oldest are forgotten
/// (they are read again at their next call).
const PROFILE_CLOCK_MAX: usize = 10_000;

/// When each technical account operator's rights were last read from its profiles.
#[derive(Debug, Default)]
pub struct ProfileClock(std::sync::Mutex<std::collections::HashMap<i64, i64>>);

impl ProfileClock {
    /// Whether `operator` is due for a reading at `now`; if so, marks it read (so concurrent
    /// calls do not all ask the IMS).
    fn due(&self, operator: i64, now: Now, every_secs: i64) -> bool {
        let mut m = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if m.get(&operator)
            .is_some_and(|at| now.millis().saturating_sub(*at) < every_secs * 1000)
        {
            return false;
        }
        if m.len() >= PROFILE_CLOCK_MAX {
            let cutoff = now.millis().saturating_sub(every_secs * 1000);
            m.retain(|_, at| *at >= cutoff);
            if m.len() >= PROFILE_CLOCK_MAX {
                m.clear();
            }
        }
        m.insert(operator, now.millis());
        true
    }
}

use ims_wire::names::CONSOLE_IMS_LOGON;

/// The instance's IMS configuration in effect: the file's, with the client secret unsealed and
/// the IMS's keys for checking ID tokens.
pub struct Connection {
    pub account: ImsAccount,
    pub client_id: String,
    secret: Secret,
    keys: TrustedIssuer,
    http: Arc<dyn ImsHttp>,
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection")
            .field("url", &self.account.url)
            .field("client_id", &self.client_id)
            .finish_non_exhaustive()
    }
}

/// The IMS could not be reached: logged here, a server fault for the caller.
fn unreachable(e: String) -> Fault {
    tracing::warn!(error = %e, "the identity service could not be reached");
    Fault::unavailable("the identity service cannot be reached; try again later")
}

impl Connection {
    pub fn new(account: ImsAccount, client_id: String, secret: Secret, http: Arc<dyn ImsHttp>) -> Self {
        let keys = TrustedIssuer::new(
            account.url.clone(),
            Arc::new(HttpKeys {
                http: Arc::clone(&http),
                url: endpoint(&account.url, Endpoint::Keys),
            }),
        );
        Connection {
            account,
            client_id,
            secret,
            keys,
            http,
        }
    }

    pub fn http(&self) -> &Arc<dyn ImsHttp> {
        &self.http
    }

    pub fn secret(&self) -> &Secret {
        &self.secret
    }

    /// What the audit line of a configuration change shows (no secret).
    pub fn describe(&self) -> Value {
        let a = &self.account;
        json!({
            "url": a.url, "org_id": a.org_id, "client_id": self.client_id,
            "callback_url": a.callback_url, "association_mask": a.mask.as_str(),
            "product_context": a.product_context, "scopes": a.scopes,
        })
    }

    /// Where the browser goes to sign in; `state`, `nonce` and the PKCE verifier stay with the
    /// browser that started.
    pub fn start(&self) -> SignInStart {
        let state = secret::generate("").expose().to_owned();
        let nonce = secret::generate("").expose().to_owned();
        let verifier = secret::generate("").expose().to_owned();
        let challenge = secret::pkce_challenge(&verifier);
        let query = url::form_urlencoded::Serializer::new(String::new())
            .append_pair("client_id", &self.client_id)
            .append_pair("response_type", "code")
            .append_pair("redirect_uri", &self.account.callback_url)
            .append_pair("scope", &self.account.scopes.join(" "))
            .append_pair("state", &state)
            .append_pair("nonce", &nonce)
            .append_pair("code_challenge", &challenge)
            .append_pair("code_challenge_method", "S256")
            .finish();
        SignInStart {
            url: format!("{}?{query}", endpoint(&self.account.url, Endpoint::Authorize)),
            state,
            nonce,
            verifier,
        }
    }

    /// The IMS's sign-out page for this instance's client.
    pub fn logout_url(&self) -> String {
        let query = url::form_urlencoded::Serializer::new(String::new())
            .append_pair("client_id", &self.client_id)
            .finish();
        format!("{}?{query}", endpoint(&self.account.url, Endpoint::Logout))
    }

    /// Redeems the code and reads who signed in and the product profiles they hold.
    async fn redeem(
        &self,
        code: &str,
        verifier: &str,
        nonce: &str,
        now: Now,
    ) -> Result<(Identity, Vec<HeldProfile>), Fault> {
        let (status, tokens) = self
            .http
            .post_form(
                &endpoint(&self.account.url, Endpoint::Token),
                Some((&self.client_id, self.secret.expose())),
                &[
                    ("grant_type", "authorization_code"),
                    ("code", code),
                    ("redirect_uri", &self.account.callback_url),
                    ("code_verifier", verifier),
                ],
            )
            .await
            .map_err(unreachable)?;
        if status != 200 {
            let error = tokens
                .get("error")
                .and_then(Value::as_str)
                .unwrap_or("unknown error");
            tracing::info!(status, error, "the identity service refused the code");
            return Err(Fault::forbidden(format!(
                "The identity service refused the sign-in ({error}); sign in again."
            )));
        }
        let text = |k: &str| tokens.get(k).and_then(Value::as_str).unwrap_or_default();
        let refused = |e: BearerError| match e {
            BearerError::Refused(why) => {
                tracing::info!(%why, "a token from the identity service was refused");
                Fault::forbidden("The identity service's answer could not be verified; sign in again.")
            }
            BearerError::Unavailable(why) => unreachable(why),
        };
        let id = self
            .keys
            .verify_id_token(text("id_token"), &self.client_id, nonce, now)
            .await
            .map_err(refused)?;
        let access = self
            .keys
            .verify(text("access_token"), now)
            .await
            .map_err(refused)?;
        let claim =
            |m: &serde_json::Map<String, Value>, k: &str| m.get(k).and_then(Value::as_str).map(str::to_owned);
        let user_id = claim(&id, "sub").unwrap_or_default();
        if user_id.is_empty() || claim(&access, "user_id").as_deref() != Some(user_id.as_str()) {
            return Err(Fault::forbidden(
                "The identity service's tokens disagree; sign in again.",
            ));
        }
        if claim(&access, "org").as_deref() != Some(self.account.org_id.as_str()) {
            return Err(Fault::forbidden(
                "This identity belongs to another organisation than the one this instance serves.",
            ));
        }
        let profiles = self.profiles(text("access_token")).await?;
        let identity = Identity {
            user_id,
            email: claim(&id, "email"),
            email_verified: id.get("email_verified").and_then(Value::as_bool) == Some(true),
            name: claim(&id, "name").filter(|n| !n.trim().is_empty()),
        };
        Ok((identity, profiles))
    }

    /// The product profiles of the instance's product context that the token's holder has. A
    /// refusal by the IMS is a client fault; an IMS that cannot answer, a server fault.
    pub async fn profiles(&self, access_token: &str) -> Result<Vec<HeldProfile>, Fault> {
        let url = format!(
            "{}?product_context={}",
            endpoint(&self.account.url, Endpoint::Profile),
            url::form_urlencoded::byte_serialize(self.account.product_context.as_bytes()).collect::<String>()
        );
        match self.http.get(&url, Some(access_token)).await {
            Ok((200, v)) => Ok(connect::held_profiles(&v, &self.account.product_context)),
            Ok((status, _)) if status >= 500 => {
                tracing::warn!(status, "the identity service could not list product profiles");
                Err(Fault::unavailable(
                    "the identity service cannot answer; try again later",
                ))
            }
            Ok((status, _)) => {
                tracing::info!(status, "the identity service refused to list product profiles");
                Err(Fault::forbidden(
                    "The identity service refused to list the product profiles.",
                ))
            }
            Err(e) => Err(unreachable(e)),
        }
    }
}

/// A sign-in just started: the browser is sent to `url` and keeps the rest.
#[derive(Clone, Debug)]
pub struct SignInStart {
    pub url: String,
    pub state: String,
    pub nonce: String,
    pub verifier: String,
}

/// What a sign-in changed on the operator.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SyncReport {
    pub created: bool,
    /// Linked to the identity by this sign-in (by email).
    pub linked: bool,
    pub groups_added: Vec<String>,
    pub groups_removed: Vec<String>,
    pub rights_added: Vec<String>,
    pub rights_removed: Vec<String>,
    /// Matching profiles naming no group of the instance: (profile, captured name).
    pub unknown_groups: Vec<(String, String)>,
    pub unknown_rights: Vec<String>,
}

impl SyncReport {
    fn between(before: Option<&Operator>, mapping: &Mapping) -> Self {
        let diff = |new: &[String], old: &[String]| -> Vec<String> {
            new.iter().filter(|n| !old.contains(n)).cloned().collect()
        };
        let (groups, rights) =
            before.map_or((Vec::new(), Vec::new()), |o| (o.groups.clone(), o.rights.clone()));
        SyncReport {
            created: before.is_none(),
            linked: false,
            groups_added: diff(&mapping.groups, &groups),
            groups_removed: diff(&groups, &mapping.groups),
            rights_added: diff(&mapping.rights, &rights),
            rights_removed: diff(&rights, &mapping.rights),
            unknown_groups: mapping.unknown_groups.clone(),
            unknown_rights: mapping.unknown_rights.clone(),
        }
    }

    pub fn changed(&self) -> bool {
        self.created
            || self.linked
            || !(self.groups_added.is_empty()
                && self.groups_removed.is_empty()
                && self.rights_added.is_empty()
                && self.rights_removed.is_empty())
    }

    fn to_json(&self) -> Value {
        json!({
            "created": self.created, "linked": self.linked,
            "groups_added": self.groups_added, "groups_removed": self.groups_removed,
            "rights_added": self.rights_added, "rights_removed": self.rights_removed,
            "unknown_groups": self.unknown_groups, "unknown_rights": self.unknown_rights,
        })
    }

    /// One line for the person who signed in.
    pub fn summary(&self) -> String {
        let mut parts = Vec::new();
        if self.created {
            parts.push("operator created".to_owned());
        }
        if self.linked {
            parts.push("operator linked to your identity by its email".to_owned());
        }
        for (what, list) in [
            ("groups added", &self.groups_added),
            ("groups removed", &self.groups_removed),
            ("rights added", &self.rights_added),
            ("rights removed", &self.rights_removed),
        ] {
            if !list.is_empty() {
                parts.push(format!("{what}: {}", list.join(", ")));
            }
        }
        if parts.is_empty() {
            "no change".into()
        } else {
            parts.join("; ")
        }
    }
}

impl Sessions {
    /// Starts a console sign-in through the IMS.
    pub fn start_ims_sign_in(&self) -> Result<SignInStart, Fault> {
        Ok(self.require_connection()?.start())
    }

    fn require_connection(&self) -> Result<Arc<Connection>, Fault> {
        self.shared
            .connection()
            .ok_or_else(|| Fault::forbidden("sign-in through the IMS is not configured on this instance"))
    }

    /// Ends a console sign-in through the IMS: the code from the callback, with what the browser
    /// kept from the start. Opens a console session for the operator the identity maps to,
    /// whose groups and named rights are set from the matching product profiles.
    pub async fn finish_ims_sign_in(
        &self,
        code: &str,
        verifier: &str,
        nonce: &str,
        iss: Option<&str>,
        now: Now,
        caller: &Caller,
    ) -> Result<(SessionTokens, Operator, SyncReport), Fault> {
        let conn = self.require_connection()?;
        let call = Call {
            now,
            action: CONSOLE_IMS_LOGON,
            path: AuthPath::Ims,
            caller,
        };
        // RFC 9207: an answer naming another issuer is a mix-up, whatever it carries.
        if iss.is_some_and(|i| i != conn.account.url) {
            self.record(&call, None, "", "refused").await;
            return Err(Fault::forbidden("The answer came from another identity service."));
        }
        let (who, profiles) = conn.redeem(code, verifier, nonce, now).await?;
        let (op, report) = self
            .operator_for_identity(&conn, &who, &profiles, now, caller)
            .await?;
        let Some(tokens) = self.open_session(&op, AuthPath::Ims, false, now).await? else {
            // Put back to native sign-in (a rollback) while the sign-in ran.
            self.record(&call, Some(&op), &op.login, "refused").await;
            return Err(Fault::forbidden(
                "This operator no longer signs in through the IMS.",
            ));
        };
        self.record(&call, Some(&op), &op.login, "success").await;
        Ok((tokens, op, report))
    }

    async fn refuse_identity(&self, who: &Identity, why: &str, now: Now, caller: &Caller) -> Fault {
        let login = who.email.clone().unwrap_or_else(|| who.user_id.clone());
        self.record(
            &Call {
                now,
                action: CONSOLE_IMS_LOGON,
                path: AuthPath::Ims,
                caller,
            },
            None,
            &login,
            "refused",
        )
        .await;
        let audit = Context::new(now, format!("ims:{}", who.user_id)).event(
            "operator.ims_sign_in",
            &login,
            "failure",
            json!({"reason": why, "user_id": who.user_id}),
        );
        if let Err(e) = self.audit.append_audit(&audit).await {
            tracing::warn!(error = %e, "a refused sign-in could not be audited");
        }
        Fault::forbidden(why)
    }

    /// The operator `who` signs in as, created or linked as the rules say, with its groups and
    /// named rights set to exactly what the matching profiles give.
    async fn operator_for_identity(
        &self,
        conn: &Connection,
        who: &Identity,
        profiles: &[HeldProfile],
        now: Now,
        caller: &Caller,
    ) -> Result<(Operator, SyncReport), Fault> {
        let groups = self.operators.groups().await?;
        let mapping = connect::map_profiles(&conn.account.mask, profiles, &groups);
        let linked = self.operators.operator_by_ims_id(&who.user_id).await?;
        if mapping.matched.is_empty() {
            // No right left: what the operator held through profiles goes now, with its
            // console sessions, rather than at a sign-in that will never succeed.
            if let Some(op) = linked.filter(|o| o.auth_type == AuthType::Ims) {
                let report = SyncReport::between(Some(&op), &mapping);
                let audit = Context::new(now, format!("ims:{}", who.user_id)).event(
                    "operator.ims_sync",
                    &op.login,
                    "success",
                    json!({"profiles": [], "changes": report.to_json(), "user_id": who.user_id, "reason": NO_MATCHING_RIGHT}),
                );
                self.operators
                    .set_operator_access(op.id, &[], &[], None, true, &audit)
                    .await?;
            }
            return Err(self.refuse_identity(who, NO_MATCHING_RIGHT, now, caller).await);
        }
        let same_email = match (&linked, who.email.as_deref()) {
            (None, Some(email)) => self.operators.operators_by_email(email).await?,
            _ => Vec::new(),
        };
        let actor = format!("ims:{}", who.user_id);
        let (before, by_email) = match connect::resolve(who, linked, same_email) {
            Resolution::Refused(why) => return Err(self.refuse_identity(who, &why, now, caller).await),
            Resolution::Linked(op) => (Some(op), false),
            Resolution::ByEmail(op) => (Some(op), true),
            Resolution::Create => (None, false),
        };
        let mut report = SyncReport::between(before.as_ref(), &mapping);
        report.linked = by_email;
        let details =
            json!({"profiles": mapping.matched, "changes": report.to_json(), "user_id": who.user_id});
        let op = match before {
            Some(op) if report.changed() => {
                let audit =
                    Context::new(now, actor).event("operator.ims_sync", &op.login, "success", details);
                // Only groups, rights and the link are written: an administrator's change made
                // meanwhile (disabling, say) stays. The link holds only if nobody took it first.
                match self
                    .operators
                    .set_operator_access(
                        op.id,
                        &mapping.groups,
                        &mapping.rights,
                        Some(&who.user_id),
                        false,
                        &audit,
                    )
                    .await
                {
                    Ok(now_is) => now_is,
                    Err(ims_core::error::StoreError::Conflict(_)) => {
                        let why = "The operator is linked to another identity; it is not taken over.";
                        return Err(self.refuse_identity(who, why, now, caller).await);
                    }
                    Err(e) => return Err(e.into()),
                }
            }
            Some(op) => op,
            None => {
                self.create_ims_operator(who, &mapping, details, now, caller)
                    .await?
            }
        };
        if op.disabled {
            return Err(self
                .refuse_identity(who, "This operator is disabled.", now, caller)
                .await);
        }
        if op.forbid_rich_client {
            let why = "This operator may not use the console (rich-client access is forbidden).";
            return Err(self.refuse_identity(who, why, now, caller).await);
        }
        if report.changed() {
            tracing::info!(operator = %op.login, changes = %report.summary(), "operator synchronised from product profiles");
        }
        Ok((op, report))
    }

    async fn create_ims_operator(
        &self,
        who: &Identity,
        mapping: &Mapping,
        details: Value,
        now: Now,
        caller: &Caller,
    ) -> Result<Operator, Fault> {
        // An email the IMS does not vouch for is neither the login nor the email: its owner
        // may sign in later and must not find it taken.
        let email = who.email.clone().filter(|_| who.email_verified);
        let login = email.clone().unwrap_or_else(|| who.user_id.clone());
        let new = Operator {
            label: who.name.clone().unwrap_or_else(|| login.clone()),
            auth_type: AuthType::Ims,
            rights: mapping.rights.clone(),
            ims_id: Some(who.user_id.clone()),
            ..Operator::native(&login, email, mapping.groups.clone(), None, now)
        };
        let audit = Context::new(now, format!("ims:{}", who.user_id)).event(
            "operator.create",
            &login,
            "success",
            json!({"auth_type": "ims", "reason": "first sign-in through the IMS", "sync": details}),
        );
        match self.operators.create_operator(&new, &audit).await {
            Ok(id) => Ok(Operator { id, ..new }),
            Err(ims_core::error::StoreError::Conflict(_)) => {
                // Two first sign-ins at once: the other one created it.
                if let Some(op) = self.operators.operator_by_ims_id(&who.user_id).await? {
                    return Ok(op);
                }
                let why = format!(
                    "An operator named {login} already exists and is not linked to this identity; \
                     it is not taken over."
                );
                Err(self.refuse_identity(who, &why, now, caller).await)
            }
            Err(e) => Err(e.into()),
        }
    }

    /// An operator calling with an IMS access token (a technical account, or a person signed
    /// in through the IMS), with the groups and named rights its product profiles give, read
    /// with the caller's own token at most every
    /// [`InstanceInfo::profile_refresh_secs`](crate::service::InstanceInfo), under the
    /// configuration in effect `conn`. When the IMS cannot answer, the operator
    /// keeps its last rights until the next reading is due (calls do not wait on an unreachable
    /// IMS one after another); when it refuses the token, the rights go and the call is refused.
    pub(crate) async fn profile_rights(
        &self,
        conn: &Connection,
        op: Operator,
        token: &str,
        now: Now,
    ) -> Result<Operator, Fault> {
        if !self
            .profiles_read
            .due(op.id, now, self.shared.info.profile_refresh_secs)
        {
            return Ok(op);
        }
        let (profiles, refused) = match conn.profiles(token).await {
            Ok(p) => (p, false),
            // The IMS no longer accepts the token (credential deleted or disabled, person
            // removed): nothing is held any more, and this call is refused too.
            Err(f) if f.client => (Vec::new(), true),
            Err(f) => {
                tracing::warn!(operator = %op.login, fault = %f, "product profiles not read; the operator keeps its rights");
                return Ok(op);
            }
        };
        let groups = self.operators.groups().await?;
        let mapping = connect::map_profiles(&conn.account.mask, &profiles, &groups);
        let report = SyncReport::between(Some(&op), &mapping);
        let op = if report.changed() {
            let actor = match op.auth_type {
                AuthType::TechnicalAccount => "technical-account",
                _ => "ims",
            };
            let audit = Context::new(now, format!("{actor}:{}", op.ims_id.clone().unwrap_or_default()))
                .event(
                    "operator.ims_sync",
                    &op.login,
                    "success",
                    json!({"profiles": mapping.matched, "changes": report.to_json()}),
                );
            let next = self
                .operators
                .set_operator_access(op.id, &mapping.groups, &mapping.rights, None, false, &audit)
                .await?;
            tracing::info!(operator = %op.login, changes = %report.summary(), "operator synchronised from product profiles");
            next
        } else {
            op
        };
        if refused {
            return Err(Fault::session_expired());
        }
        Ok(op)
    }

    /// Back-channel logout: the IMS says a person signed out; their console sessions opened
    /// through the IMS end. Returns how many ended.
    pub async fn backchannel_logout(&self, logout_token: &str, now: Now) -> Result<u64, Fault> {
        let conn = self.require_connection()?;
        let claims = match conn
            .keys
            .verify_logout_token(logout_token, &conn.client_id, now)
            .await
        {
            Ok(c) => c,
            Err(BearerError::Refused(why)) => {
                tracing::info!(%why, "a logout token was refused");
                return Err(Fault::bad_request(format!(
                    "the logout token is not valid: {why}"
                )));
            }
            Err(BearerError::Unavailable(why)) => {
                tracing::warn!(error = %why, "the identity service's keys cannot be read");
                return Err(Fault::unavailable(
                    "the identity service's keys cannot be read; retry later",
                ));
            }
        };
        let user_id = claims.get("sub").and_then(Value::as_str).unwrap_or_default();
        let Some(op) = self.operators.operator_by_ims_id(user_id).await? else {
            return Ok(0);
        };
        let ended = self
            .sessions
            .delete_operator_sessions(op.id, AuthPath::Ims)
            .await?;
        let audit = Context::new(now, format!("ims:{user_id}")).event(
            "operator.ims_logout",
            &op.login,
            "success",
            json!({"sessions_ended": ended, "reason": "signed out at the IMS"}),
        );
        self.audit.append_audit(&audit).await?;
        tracing::info!(operator = %op.login, ended, "signed out at the IMS: console sessions ended");
        Ok(ended)
    }
}
