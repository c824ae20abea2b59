//! The authorization endpoint and the sign-in it may start: a state machine of email, password
//! and (when enrolled) one-time code, kept server-side per flow and bound to the browser that
//! started it; failures counted per organisation and email with growing lock-outs; an IMS browser
//! session at the end, so the next client signs in without a prompt.
//!
//! Passwords and one-time codes are checked under the lock-out of every password path
//! ([`ims_core::lockout`], numbers in `docs/SECURITY.md`): counted per organisation and folded
//! email and per address before the check; while locked, even the right password is refused,
//! with the same answer as a wrong one, and the refused attempt changes nothing.

use serde_json::json;

use std::sync::{Arc, RwLock};

use super::{LogoutNotifier, Tokens};
use crate::grants::{AuthorizationCode, BrowserSession, FlowStage, SignInFlow};
use crate::links::{
    recovery_schedule_ms, LinkPurpose, RECOVERY_ADDRESS_SCOPE, RECOVERY_EMAIL_SCOPE, RECOVERY_PER_ADDRESS,
    RECOVERY_PER_EMAIL, RECOVERY_WINDOW_SECS,
};
use crate::model::{ClientType, IdentityType, OAuthClient, User, UserStatus};
use crate::oidc::{self, AuthorizationRequest, AuthorizeError, Prompt};
use crate::people;
use crate::store::SignInStorage;
use ims_core::audit::Context;
use ims_core::clock::Now;
use ims_core::error::{Error, Result};
use ims_core::lockout::{self, account_key, lock_secs};
use ims_core::secret::{self, Secret};

/// Codes live at most this long (a minute: long enough for a redirect, short for a thief).
pub const CODE_SECS: i64 = 60;

/// What an RP-initiated logout request names, once checked.
#[derive(Debug, Clone)]
pub struct PostLogout {
    /// Where to send the browser afterwards: a registered redirect URI of the client.
    pub redirect: Option<String>,
    /// The person a verified ID token hint was issued to: only that person's session ends
    /// without asking.
    pub hint_subject: Option<String>,
}

/// What the authorization endpoint answers.
#[derive(Debug)]
pub enum Authorized {
    /// 303 to the client: its redirect URI with a code or an error.
    Redirect(String),
    /// The client or redirect URI cannot be trusted: say so on a page.
    ErrorPage(String),
    /// Sign in first: the flow's token goes in the sign-in page's path.
    SignIn(Secret),
}

/// What a sign-in page shows.
#[derive(Debug)]
pub struct SignInPage {
    pub stage: FlowStage,
    pub email: Option<String>,
    pub client_name: String,
    /// What the application asks (shown on the consent page).
    pub scopes: Vec<String>,
    /// At the enrolment stage: the secret and recovery codes to show.
    pub enrolment: Option<people::PendingEnrolment>,
}

/// One submitted step.
#[derive(Debug)]
pub enum SignInStep {
    Email(String),
    Password(Secret),
    Code(String),
    /// A first one-time code with the enrolment page it answers.
    Enrol {
        sealed: String,
        code: String,
    },
    /// The answer to a third-party application's request: allow or deny.
    Consent(bool),
    /// Start again with another email.
    Restart,
}

/// The outcome of a step.
#[derive(Debug)]
pub enum StepOutcome {
    /// Show the flow's next page.
    Next,
    /// Signed in: send the browser to the client (setting the new session cookie, when the step
    /// opened a session).
    Done {
        session: Option<Secret>,
        redirect: String,
    },
    /// Signed in, a third-party application's permissions still to ask: set the session cookie
    /// and show the flow's (consent) page.
    Consent { session: Secret },
}

/// What a sign-in flow keeps of its start: the request as validated, and the client's name for
/// its pages (so that showing a page reads no client).
#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct FlowRequest {
    #[serde(flatten)]
    req: AuthorizationRequest,
    /// Absent from flows started before it was kept.
    #[serde(default)]
    client_name: Option<String>,
}

/// The sign-in service: authorization requests, the sign-in pages and their lock-outs, browser
/// sessions and sign-out, and what a person does with their own password.
pub struct SignIn {
    store: Arc<dyn SignInStorage>,
    tokens: Arc<Tokens>,
    /// Tells clients that a person signed out (OpenID Connect back-channel logout).
    logout_notifier: RwLock<Option<Arc<dyn LogoutNotifier>>>,
    /// Whether each organisation requires one-time codes, as read at most
    /// [`ORG_SETTINGS_SECS`] ago: a password sign-in asks without a database read.
    requires_totp: std::sync::Mutex<std::collections::HashMap<String, (bool, Now)>>,
}

/// How long a node goes on with an organisation's sign-in settings before reading them again
/// (a change reaches every node within this).
pub const ORG_SETTINGS_SECS: i64 = 5;

impl SignIn {
    pub(super) fn new(store: Arc<dyn SignInStorage>, tokens: Arc<Tokens>) -> Self {
        SignIn {
            store,
            tokens,
            logout_notifier: RwLock::new(None),
            requires_totp: Default::default(),
        }
    }

    /// Clients with a back-channel logout URI hear through `notifier` when a person signs out.
    pub fn set_logout_notifier(&self, notifier: Arc<dyn LogoutNotifier>) {
        *self.logout_notifier.write().unwrap_or_else(|e| e.into_inner()) = Some(notifier);
    }

    fn logout_notifier(&self) -> Option<Arc<dyn LogoutNotifier>> {
        self.logout_notifier
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// The person a link is for, while the link holds; `purposes` are those the page takes.
    pub async fn link_user(&self, token: &str, purposes: &[LinkPurpose], ctx: &Context) -> Result<User> {
        Ok(people::link_user(self.store.as_ref(), token, purposes, ctx)
            .await?
            .0)
    }

    /// Sets the password of a reset or recovery link's person, and spends the link.
    pub async fn reset_password(&self, token: &str, password: Secret, ctx: &Context) -> Result<User> {
        let purposes = [LinkPurpose::Reset, LinkPurpose::Recovery];
        Ok(
            people::set_password_by_link(self.store.as_ref(), token, &purposes, password, ctx)
                .await?
                .0,
        )
    }

    /// Accepts an invitation: the person's first password, then an IMS browser session (the
    /// link proved the mailbox, the password was just chosen), so that the product the person
    /// was invited to signs them in without asking again. Returns the session's token and where
    /// the person goes next.
    pub async fn accept_invitation(
        &self,
        token: &str,
        password: Secret,
        ctx: &Context,
    ) -> Result<(Secret, User, Option<String>)> {
        let (user, link) = people::set_password_by_link(
            self.store.as_ref(),
            token,
            &[LinkPurpose::Invitation],
            password,
            ctx,
        )
        .await?;
        let session = secret::generate("imsid_");
        let record = BrowserSession {
            session_digest: secret::digest_hex(session.expose()),
            user_id: user.user_id.clone(),
            auth_time: ctx.now,
            amr: vec!["pwd".into()],
            created_at: ctx.now,
            expires_at: ctx.now.plus_secs(self.tokens.settings().browser_session_secs),
        };
        let event = ctx.event(
            "user.session",
            &user.user_id,
            "success",
            json!({"through": "invitation"}),
        );
        self.store
            .complete_sign_in(&user.org_id, &account_key(&user.email), &record, &event, None)
            .await?;
        Ok((session, user, link.return_to))
    }

    /// Reads the organisation's sign-in settings again at its next sign-in.
    pub fn forget_org_settings(&self, org_id: &str) {
        self.requires_totp
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(org_id);
    }

    /// Whether `user` has to enrol in one-time codes before signing in: their organisation
    /// requires them and they have none.
    pub async fn must_enrol(&self, user: &User) -> Result<bool> {
        if user.totp_sealed.is_some() {
            return Ok(false);
        }
        let now = Now::system();
        let cached = self
            .requires_totp
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&user.org_id)
            .filter(|(_, at)| at.plus_secs(ORG_SETTINGS_SECS) > now)
            .map(|(required, _)| *required);
        if let Some(required) = cached {
            return Ok(required);
        }
        let required = self
            .store
            .org(&user.org_id)
            .await?
            .is_some_and(|o| o.require_totp);
        self.requires_totp
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(user.org_id.clone(), (required, now));
        Ok(required)
    }

    /// A one-time-code enrolment for `user` to show (nothing stored yet): the one sealed in
    /// `again` while it holds (the page shown again after a mistyped code), else a new one.
    pub async fn start_enrolment(
        &self,
        user: &User,
        again: Option<&str>,
        now: Now,
    ) -> Result<people::PendingEnrolment> {
        let org = self.store.org(&user.org_id).await?;
        let issuer = org.as_ref().map_or("IMS", |o| o.name.as_str());
        if let Some(Ok(same)) =
            again.map(|s| people::reopen_enrolment(&self.tokens.master, user, issuer, s, now))
        {
            return Ok(same);
        }
        people::start_enrolment(&self.tokens.master, user, issuer, now)
    }

    /// The person signed in through `session` enrols with a page from
    /// [`SignIn::start_enrolment`] and its first code.
    pub async fn confirm_own_enrolment(
        &self,
        session: Option<&str>,
        sealed: &str,
        code: &str,
        ctx: &Context,
    ) -> Result<User> {
        let (user, _) = self.live_session(session, ctx.now).await?.ok_or_else(|| {
            Error::not_found("you are no longer signed in; start again from the application")
        })?;
        people::confirm_enrolment(
            self.store.as_ref(),
            &self.tokens.master,
            &user.user_id,
            sealed,
            code,
            ctx,
        )
        .await
    }

    /// "Forgot password?" on a flow's sign-in page: mails a recovery link to `email` when it is
    /// a person of the flow's organisation who signs in with a password here, within the
    /// limits per email and per address. The caller answers the same whatever happened (and
    /// should not wait for this to finish: its duration depends on the email).
    pub async fn request_recovery(
        &self,
        flow_token: &str,
        browser: &str,
        email: &str,
        ctx: &Context,
    ) -> Result<()> {
        let (_, kept) = self.open_flow(flow_token, browser, ctx.now).await?;
        let Some(entry) = self.tokens.client_entry(&kept.req.client_id).await? else {
            return Ok(());
        };
        let org_id = entry.0.org_id.clone();
        let email_lower = account_key(email.trim());
        let (email_ms, address_ms) = (
            recovery_schedule_ms(RECOVERY_PER_EMAIL),
            recovery_schedule_ms(RECOVERY_PER_ADDRESS),
        );
        let limits = lockout::Limits {
            reset_secs: RECOVERY_WINDOW_SECS,
            account_ms: &email_ms,
            address_scope: RECOVERY_ADDRESS_SCOPE,
            address_ms: &address_ms,
        };
        let (admitted, _) = lockout::admit_under(
            self.store.as_ref(),
            &limits,
            RECOVERY_EMAIL_SCOPE,
            &email_lower,
            ctx.source.as_deref(),
            ctx.now,
        )
        .await?;
        let user = self
            .store
            .user_by_email(&org_id, email.trim())
            .await?
            .filter(|u| u.status == UserStatus::Active && u.identity_type != IdentityType::FederatedId);
        let outcome = match (&user, admitted) {
            (_, false) => "limited",
            (None, true) => "unknown",
            (Some(_), true) => "sent",
        };
        let target = user.as_ref().map_or(email_lower.as_str(), |u| u.user_id.as_str());
        self.store
            .append_audit(&ctx.event("user.recovery_request", target, outcome, json!({})))
            .await?;
        if let (Some(user), "sent") = (user, outcome) {
            let org = self.store.org(&org_id).await?;
            let mailed = people::Mailed {
                base_url: &self.tokens.settings().issuer,
                org_name: org.as_ref().map_or("", |o| o.name.as_str()),
            };
            people::password_link(
                self.store.as_ref(),
                &user,
                LinkPurpose::Recovery,
                Some(mailed),
                ctx,
            )
            .await?;
        }
        Ok(())
    }

    /// `GET|POST /ims/authorize/*`. `browser` is the browser's binding token; `session` its IMS
    /// session cookie, if any.
    pub async fn authorize(
        &self,
        params: &[(String, String)],
        browser: &str,
        session: Option<&str>,
        ctx: &Context,
    ) -> Result<Authorized> {
        let ids: Vec<&str> = params
            .iter()
            .filter(|(k, _)| k == "client_id")
            .map(|(_, v)| v.as_str())
            .collect();
        let client = match ids.as_slice() {
            [one] => self.tokens.client_entry(one).await?.map(|e| e.0.clone()),
            _ => None,
        };
        let req = match oidc::validate(params, |_| client.clone()) {
            Ok(r) => r,
            Err(AuthorizeError::Page(why)) => return Ok(Authorized::ErrorPage(why)),
            Err(AuthorizeError::Redirect {
                redirect_uri,
                error,
                description,
                state,
            }) => {
                return Ok(Authorized::Redirect(oidc::response_uri(
                    &redirect_uri,
                    &self.tokens.settings().issuer,
                    &[("error", error), ("error_description", &description)],
                    state.as_deref(),
                )))
            }
        };
        let Some(client) = client else {
            return Ok(Authorized::ErrorPage("unknown client".into()));
        };
        if req.prompt != Some(Prompt::Login) {
            if let Some((user, s)) = self.live_session(session, ctx.now).await? {
                let fresh_enough = req
                    .max_age
                    .is_none_or(|age| ctx.now.millis() - s.auth_time.millis() <= age.saturating_mul(1000));
                if fresh_enough && user.org_id == client.org_id {
                    if self.consented(&client, &user, &req).await? {
                        let redirect = self.issue_code(&req, &user, &s, ctx).await?;
                        return Ok(Authorized::Redirect(redirect));
                    }
                    if req.prompt == Some(Prompt::None) {
                        return Ok(Authorized::Redirect(oidc::response_uri(
                            &req.redirect_uri,
                            &self.tokens.settings().issuer,
                            &[
                                ("error", "consent_required"),
                                (
                                    "error_description",
                                    "the application's permissions were not granted",
                                ),
                            ],
                            req.state.as_deref(),
                        )));
                    }
                    return self
                        .start_flow(&req, &client, browser, FlowStage::Consent, Some(&user), ctx)
                        .await;
                }
            }
        }
        if req.prompt == Some(Prompt::None) {
            return Ok(Authorized::Redirect(oidc::response_uri(
                &req.redirect_uri,
                &self.tokens.settings().issuer,
                &[
                    ("error", "login_required"),
                    ("error_description", "nobody is signed in"),
                ],
                req.state.as_deref(),
            )));
        }
        self.start_flow(&req, &client, browser, FlowStage::Email, None, ctx)
            .await
    }

    /// Opens a sign-in flow for `req`, bound to `browser`, at `stage`.
    async fn start_flow(
        &self,
        req: &AuthorizationRequest,
        client: &OAuthClient,
        browser: &str,
        stage: FlowStage,
        user: Option<&User>,
        ctx: &Context,
    ) -> Result<Authorized> {
        let token = secret::generate("imsfl_");
        let kept = FlowRequest {
            req: req.clone(),
            client_name: Some(client.name.clone()),
        };
        let flow = SignInFlow {
            flow_digest: secret::digest_hex(token.expose()),
            browser_digest: secret::digest_hex(browser),
            request: serde_json::to_string(&kept).map_err(Error::internal)?,
            stage,
            email: user.map(|u| u.email.clone()).or_else(|| req.login_hint.clone()),
            user_id: user.map(|u| u.user_id.clone()),
            created_at: ctx.now,
            expires_at: ctx.now.plus_secs(self.tokens.settings().sign_in_flow_secs),
        };
        self.store.insert_flow(&flow).await?;
        Ok(Authorized::SignIn(token))
    }

    /// Whether the person has allowed everything the request asks (first-party applications
    /// are not asked).
    async fn consented(&self, client: &OAuthClient, user: &User, req: &AuthorizationRequest) -> Result<bool> {
        if client.first_party {
            return Ok(true);
        }
        let granted = self.store.consent(&user.user_id, &client.client_id).await?;
        Ok(granted.is_some_and(|g| req.scope.iter().all(|s| g.contains(s))))
    }

    /// The person behind a browser session cookie, while the session and the person are good.
    pub async fn live_session(
        &self,
        session: Option<&str>,
        now: Now,
    ) -> Result<Option<(User, BrowserSession)>> {
        let Some(token) = session.filter(|t| !t.is_empty()) else {
            return Ok(None);
        };
        let Some(s) = self.store.browser_session(&secret::digest_hex(token)).await? else {
            return Ok(None);
        };
        if s.expires_at <= now {
            return Ok(None);
        }
        let Some(user) = self.store.user(&s.user_id).await? else {
            return Ok(None);
        };
        if !user.holds_since(s.created_at) {
            return Ok(None);
        }
        Ok(Some((user, s)))
    }

    /// The flow behind a sign-in page, if it is this browser's and still open.
    async fn open_flow(
        &self,
        flow_token: &str,
        browser: &str,
        now: Now,
    ) -> Result<(SignInFlow, FlowRequest)> {
        let expired = || Error::not_found("this sign-in has expired; start again from the application");
        let flow = self
            .store
            .flow(&secret::digest_hex(flow_token))
            .await?
            .ok_or_else(expired)?;
        if flow.expires_at <= now || !secret::equal_ct(&flow.browser_digest, &secret::digest_hex(browser)) {
            return Err(expired());
        }
        let kept: FlowRequest = serde_json::from_str(&flow.request).map_err(Error::internal)?;
        Ok((flow, kept))
    }

    /// What the sign-in page of a flow shows.
    /// `again`: the enrolment a page showed, to show it again.
    pub async fn sign_in_page(
        &self,
        flow_token: &str,
        browser: &str,
        again: Option<&str>,
        now: Now,
    ) -> Result<SignInPage> {
        let (flow, FlowRequest { req, client_name }) = self.open_flow(flow_token, browser, now).await?;
        // Noted when the flow started; a flow from before that was noted reads it.
        let client_name = match client_name {
            Some(name) => name,
            None => self
                .tokens
                .client_entry(&req.client_id)
                .await?
                .map(|e| e.0.name.clone())
                .unwrap_or_default(),
        };
        let enrolment = match (flow.stage, &flow.user_id) {
            (FlowStage::Enrol, Some(user_id)) => match self.store.user(user_id).await? {
                Some(user) => Some(self.start_enrolment(&user, again, now).await?),
                None => None,
            },
            _ => None,
        };
        Ok(SignInPage {
            stage: flow.stage,
            email: flow.email,
            client_name,
            scopes: req.scope,
            enrolment,
        })
    }

    /// Handles one submitted step of a flow.
    pub async fn sign_in_step(
        &self,
        flow_token: &str,
        browser: &str,
        session: Option<&str>,
        step: SignInStep,
        ctx: &Context,
    ) -> Result<StepOutcome> {
        let (mut flow, FlowRequest { req, .. }) = self.open_flow(flow_token, browser, ctx.now).await?;
        // Read by the steps that sign in (email and restart only move the flow on): a client
        // disabled meanwhile is refused before a code is issued.
        let client = || async {
            self.tokens
                .client_entry(&req.client_id)
                .await?
                .map(|e| e.0.clone())
                .filter(|c| !c.disabled)
                .ok_or_else(|| Error::not_found("the application is no longer available"))
        };
        match (flow.stage, step) {
            (_, SignInStep::Restart) => {
                flow.stage = FlowStage::Email;
                flow.user_id = None;
                self.store.update_flow(&flow).await?;
                Ok(StepOutcome::Next)
            }
            (FlowStage::Email, SignInStep::Email(email)) => {
                let email = email.trim().to_owned();
                if email.is_empty() || email.len() > 254 {
                    return Err(Error::invalid_request("enter your email address"));
                }
                flow.email = Some(email);
                flow.stage = FlowStage::Password;
                self.store.update_flow(&flow).await?;
                Ok(StepOutcome::Next)
            }
            (FlowStage::Password, SignInStep::Password(password)) => {
                let client = client().await?;
                let email = flow.email.clone().unwrap_or_default();
                let user = self.check_password(&client, &email, &password, ctx).await?;
                if user.totp_sealed.is_some() || self.must_enrol(&user).await? {
                    flow.stage = if user.totp_sealed.is_some() {
                        FlowStage::Totp
                    } else {
                        FlowStage::Enrol
                    };
                    flow.user_id = Some(user.user_id.clone());
                    self.store.update_flow(&flow).await?;
                    return Ok(StepOutcome::Next);
                }
                self.finish(&mut flow, &req, &client, &user, vec!["pwd".into()], ctx)
                    .await
            }
            (FlowStage::Totp, SignInStep::Code(code)) => {
                let client = client().await?;
                let user_id = flow.user_id.clone().unwrap_or_default();
                let user = self.check_second_factor(&client, &user_id, &code, ctx).await?;
                self.finish(
                    &mut flow,
                    &req,
                    &client,
                    &user,
                    vec!["pwd".into(), "otp".into(), "mfa".into()],
                    ctx,
                )
                .await
            }
            (FlowStage::Enrol, SignInStep::Enrol { sealed, code }) => {
                let client = client().await?;
                let user_id = flow.user_id.clone().unwrap_or_default();
                let user = people::confirm_enrolment(
                    self.store.as_ref(),
                    &self.tokens.master,
                    &user_id,
                    &sealed,
                    &code,
                    ctx,
                )
                .await?;
                self.finish(
                    &mut flow,
                    &req,
                    &client,
                    &user,
                    vec!["pwd".into(), "otp".into(), "mfa".into()],
                    ctx,
                )
                .await
            }
            (FlowStage::Consent, SignInStep::Consent(allow)) => {
                let client = client().await?;
                self.answer_consent(&flow, &req, &client, session, allow, ctx)
                    .await
            }
            // A form from another stage (back button, second tab): show the current page.
            _ => Ok(StepOutcome::Next),
        }
    }

    /// Checks an email and password under the lock-out rules. Every refusal is
    /// [`Error::invalid_credentials()`] after an Argon2id verification, whatever the reason.
    async fn check_password(
        &self,
        client: &OAuthClient,
        email: &str,
        password: &Secret,
        ctx: &Context,
    ) -> Result<User> {
        let org = &client.org_id;
        let email_lower = account_key(email);
        let (admitted, failures) = self.admit(org, &email_lower, ctx).await?;
        let user = self.store.user_by_email(org, email).await?;
        let hash = match user.as_ref().and_then(|u| u.password_hash.clone()) {
            Some(h) => h,
            None => ims_core::password::decoy_hash().await?,
        };
        let matches = ims_core::password::verify(password, &hash).await?;
        let user = match user {
            Some(u)
                if matches
                    && admitted
                    && u.status == UserStatus::Active
                    && u.identity_type != IdentityType::FederatedId =>
            {
                u
            }
            other => {
                self.refused(&email_lower, other.as_ref(), "password", failures, admitted, ctx)
                    .await?;
                return Err(Error::invalid_credentials());
            }
        };
        self.forgive_address(ctx).await?;
        Ok(user)
    }

    /// The one-time code (or a recovery code) of the person the flow's password step accepted.
    async fn check_second_factor(
        &self,
        client: &OAuthClient,
        user_id: &str,
        code: &str,
        ctx: &Context,
    ) -> Result<User> {
        let user = self
            .store
            .user(user_id)
            .await?
            .filter(|u| u.status == UserStatus::Active)
            .ok_or(Error::invalid_credentials())?;
        let email_lower = account_key(&user.email);
        let (admitted, failures) = self.admit(&client.org_id, &email_lower, ctx).await?;
        let code = code.trim().replace(' ', "");
        let step = match &user.totp_sealed {
            Some(sealed) => {
                let key = self
                    .tokens
                    .master
                    .open(&crate::totp::seal_label(&user.user_id), sealed)?;
                crate::totp::verify(&key, &code, ctx.now, user.totp_last_step)
            }
            None => None,
        };
        let mut left = user.recovery_codes.clone();
        let recovery = step.is_none() && crate::totp::take_recovery_code(&mut left, &code);
        // Recorded with conditional updates: a code used meanwhile (a concurrent submission)
        // does not count twice, and nothing else of the person is rewritten.
        let recorded = if admitted && (step.is_some() || recovery) {
            let event = match step {
                Some(_) => ctx.event("user.totp", &user.user_id, "success", json!({})),
                None => ctx.event(
                    "user.recovery_code",
                    &user.user_id,
                    "success",
                    json!({"left": left.len()}),
                ),
            };
            let codes = recovery.then_some((user.recovery_codes.as_slice(), left.as_slice()));
            self.store
                .use_second_factor(&user.user_id, step, codes, ctx.now, &event)
                .await?
        } else {
            false
        };
        if !recorded {
            self.refused(&email_lower, Some(&user), "totp", failures, admitted, ctx)
                .await?;
            return Err(Error::invalid_credentials());
        }
        self.forgive_address(ctx).await?;
        Ok(user)
    }

    /// The administration API's Basic authentication (an administrator's email and password):
    /// the same counter, lock-out and answer as the sign-in pages, so that a password locked
    /// there is locked here too and guesses here count there. Unknown emails, wrong passwords,
    /// locks, accounts that are disabled, locked or removed, and people who are not system
    /// administrators all get [`Error::InvalidClient`] after the same work.
    pub async fn authenticate_admin(
        &self,
        email: &str,
        password: &Secret,
        ctx: &Context,
    ) -> Result<crate::admin::SystemAdmin> {
        let mut found = None;
        for org in self.store.orgs().await? {
            if let Some(u) = self.store.user_by_email(&org.org_id, email).await? {
                found = Some(u);
                break;
            }
        }
        // An unknown email is counted under the first organisation, like a known one.
        let org = match &found {
            Some(u) => u.org_id.clone(),
            None => self
                .store
                .orgs()
                .await?
                .first()
                .map(|o| o.org_id.clone())
                .unwrap_or_default(),
        };
        let email_lower = account_key(email);
        let (admitted, failures) = self.admit(&org, &email_lower, ctx).await?;
        let hash = match found.as_ref().and_then(|u| u.password_hash.clone()) {
            Some(h) => h,
            None => ims_core::password::decoy_hash().await?,
        };
        let matches = ims_core::password::verify(password, &hash).await?;
        match found {
            Some(user)
                if matches
                    && admitted
                    && user.system_admin
                    && user.status == UserStatus::Active
                    && user.identity_type != IdentityType::FederatedId =>
            {
                self.store.clear_failures(&org, &email_lower).await?;
                self.forgive_address(ctx).await?;
                Ok(crate::admin::SystemAdmin::new(user))
            }
            other => {
                self.refused(&email_lower, other.as_ref(), "admin_api", failures, admitted, ctx)
                    .await?;
                Err(Error::invalid_client(true))
            }
        }
    }

    /// Lets one attempt in unless a lock is in force (see [`ims_core::lockout`]).
    async fn admit(&self, org: &str, email_lower: &str, ctx: &Context) -> Result<(bool, u32)> {
        Ok(lockout::admit(
            self.store.as_ref(),
            org,
            email_lower,
            ctx.source.as_deref(),
            ctx.now,
        )
        .await?)
    }

    /// A success takes its attempt back from the caller's address.
    async fn forgive_address(&self, ctx: &Context) -> Result<()> {
        Ok(lockout::forgive_address(self.store.as_ref(), ctx.source.as_deref()).await?)
    }

    /// Audits a refused attempt (the attempt was counted when it was let in).
    async fn refused(
        &self,
        email_lower: &str,
        user: Option<&User>,
        factor: &str,
        failures: u32,
        admitted: bool,
        ctx: &Context,
    ) -> Result<()> {
        let event = ctx.event(
            "user.sign_in",
            user.map_or(email_lower, |u| u.user_id.as_str()),
            "failure",
            json!({"factor": factor, "failures": failures, "locked_for_secs": lock_secs(failures), "was_locked": !admitted}),
        );
        self.store.append_audit(&event).await?;
        Ok(())
    }

    /// Ends a successful sign-in: a new browser session (a fresh token, whatever the browser
    /// held before), the flow closed, a code for the client.
    async fn finish(
        &self,
        flow: &mut SignInFlow,
        req: &AuthorizationRequest,
        client: &OAuthClient,
        user: &User,
        amr: Vec<String>,
        ctx: &Context,
    ) -> Result<StepOutcome> {
        let token = secret::generate("imsid_");
        let session = BrowserSession {
            session_digest: secret::digest_hex(token.expose()),
            user_id: user.user_id.clone(),
            auth_time: ctx.now,
            amr,
            created_at: ctx.now,
            expires_at: ctx.now.plus_secs(self.tokens.settings().browser_session_secs),
        };
        let event = ctx.event(
            "user.sign_in",
            &user.user_id,
            "success",
            json!({"client_id": req.client_id, "amr": session.amr}),
        );
        let email_lower = account_key(&user.email);
        if !self.consented(client, user, req).await? {
            self.store
                .complete_sign_in(&user.org_id, &email_lower, &session, &event, None)
                .await?;
            flow.stage = FlowStage::Consent;
            flow.user_id = Some(user.user_id.clone());
            self.store.update_flow(flow).await?;
            return Ok(StepOutcome::Consent { session: token });
        }
        // The common case in one transaction: it is most of a sign-in's database work.
        let (code, record) = self.new_code(req, user, &session, ctx);
        self.store
            .complete_sign_in(
                &user.org_id,
                &email_lower,
                &session,
                &event,
                Some((&flow.flow_digest, &record)),
            )
            .await?;
        self.note_first_sign_in(user, ctx).await?;
        Ok(StepOutcome::Done {
            session: Some(token),
            redirect: self.code_redirect(req, &code),
        })
    }

    /// The person's answer to a third-party application: remembered when allowed; either way the
    /// browser goes back to the application (with a code, or `access_denied`).
    async fn answer_consent(
        &self,
        flow: &SignInFlow,
        req: &AuthorizationRequest,
        client: &OAuthClient,
        session: Option<&str>,
        allow: bool,
        ctx: &Context,
    ) -> Result<StepOutcome> {
        let user_id = flow.user_id.clone().unwrap_or_default();
        let (user, session) = match self.live_session(session, ctx.now).await? {
            Some((user, s)) if user.user_id == user_id => (user, s),
            _ => {
                return Err(Error::not_found(
                    "you are no longer signed in; start again from the application",
                ))
            }
        };
        self.store.delete_flow(&flow.flow_digest).await?;
        let details = json!({"client_id": client.client_id, "scopes": req.scope});
        if !allow {
            let event = ctx.event("user.consent", &user.user_id, "failure", details);
            self.store.append_audit(&event).await?;
            let redirect = oidc::response_uri(
                &req.redirect_uri,
                &self.tokens.settings().issuer,
                &[
                    ("error", "access_denied"),
                    ("error_description", "the person declined"),
                ],
                req.state.as_deref(),
            );
            return Ok(StepOutcome::Done {
                session: None,
                redirect,
            });
        }
        let event = ctx.event("user.consent", &user.user_id, "success", details);
        self.store
            .set_consent(&user.user_id, &client.client_id, &req.scope, ctx.now, &event)
            .await?;
        let redirect = self.issue_code(req, &user, &session, ctx).await?;
        Ok(StepOutcome::Done {
            session: None,
            redirect,
        })
    }

    /// A code for the client, as the redirect that carries it.
    async fn issue_code(
        &self,
        req: &AuthorizationRequest,
        user: &User,
        session: &BrowserSession,
        ctx: &Context,
    ) -> Result<String> {
        let (code, record) = self.new_code(req, user, session, ctx);
        self.store.insert_code(&record).await?;
        self.store
            .note_session_client(&session.session_digest, &req.client_id, &user.user_id, ctx.now)
            .await?;
        self.note_first_sign_in(user, ctx).await?;
        Ok(self.code_redirect(req, &code))
    }

    /// The first code a person is issued marks their first sign-in to an application (written
    /// once: later sign-ins cost nothing here).
    async fn note_first_sign_in(&self, user: &User, ctx: &Context) -> Result<()> {
        if user.first_sign_in_at.is_none() {
            self.store.record_first_sign_in(&user.user_id, ctx.now).await?;
        }
        Ok(())
    }

    /// The redirect that carries a code to the client.
    fn code_redirect(&self, req: &AuthorizationRequest, code: &Secret) -> String {
        oidc::response_uri(
            &req.redirect_uri,
            &self.tokens.settings().issuer,
            &[("code", code.expose())],
            req.state.as_deref(),
        )
    }

    /// A new code for `req` and the record it is stored as.
    fn new_code(
        &self,
        req: &AuthorizationRequest,
        user: &User,
        session: &BrowserSession,
        ctx: &Context,
    ) -> (Secret, AuthorizationCode) {
        let code = secret::generate("imsac_");
        let record = AuthorizationCode {
            code_digest: secret::digest_hex(code.expose()),
            client_id: req.client_id.clone(),
            user_id: user.user_id.clone(),
            redirect_uri: req.redirect_uri.clone(),
            scope: req.scope.clone(),
            nonce: req.nonce.clone(),
            code_challenge: req.code_challenge.clone(),
            auth_time: session.auth_time,
            amr: session.amr.clone(),
            created_at: ctx.now,
            expires_at: ctx.now.plus_secs(CODE_SECS),
            consumed_at: None,
            grant_id: secret::uuid_like(),
            access_token_id: None,
            replayed_at: None,
        };
        (code, record)
    }

    /// A signed-in person changes their password: the current one is checked under the lock-out
    /// rules, the new one against the policy; every session (this one too) and refresh token
    /// ends.
    pub async fn change_own_password(
        &self,
        session: Option<&str>,
        current: &Secret,
        new: Secret,
        ctx: &Context,
    ) -> Result<User> {
        let (user, _) = self
            .live_session(session, ctx.now)
            .await?
            .ok_or_else(|| Error::not_found("you are not signed in"))?;
        let email_lower = account_key(&user.email);
        let (admitted, failures) = self.admit(&user.org_id, &email_lower, ctx).await?;
        let hash = match &user.password_hash {
            Some(h) => h.clone(),
            None => ims_core::password::decoy_hash().await?,
        };
        if !admitted || !ims_core::password::verify(current, &hash).await? || user.password_hash.is_none() {
            self.refused(
                &email_lower,
                Some(&user),
                "password_change",
                failures,
                admitted,
                ctx,
            )
            .await?;
            return Err(Error::invalid_credentials());
        }
        self.store.clear_failures(&user.org_id, &email_lower).await?;
        self.forgive_address(ctx).await?;
        people::change_user(
            self.store.as_ref(),
            &user.user_id,
            people::UserChange::SetPassword(new),
            ctx,
        )
        .await
    }

    /// Ends the browser session (sign-out), and tells the clients that received a code in it
    /// and registered a back-channel logout URI.
    pub async fn end_browser_session(&self, session: &str, ctx: &Context) -> Result<()> {
        let digest = secret::digest_hex(session);
        if let Some(s) = self.store.browser_session(&digest).await? {
            let targets = self.store.logout_targets(&digest).await?;
            self.store.delete_browser_session(&digest).await?;
            let told = self.tell_clients(targets, ctx.now).await;
            let event = ctx.event(
                "user.sign_out",
                &s.user_id,
                "success",
                json!({"clients_told": told}),
            );
            self.store.append_audit(&event).await?;
        }
        Ok(())
    }

    /// Back-channel logout: a signed logout token to each client, all at once; the sign-out
    /// waits for the answers (each bounded by the notifier's timeout) so that, when it is done,
    /// the clients have ended their sessions. Returns what became of each (for the audit line).
    async fn tell_clients(
        &self,
        targets: Vec<(String, String, String)>,
        now: Now,
    ) -> serde_json::Map<String, serde_json::Value> {
        let mut told = serde_json::Map::new();
        let Some(notifier) = self.logout_notifier() else {
            for (client_id, _, _) in targets {
                told.insert(client_id, json!("not sent: no notifier in this server"));
            }
            return told;
        };
        let mut deliveries = tokio::task::JoinSet::new();
        for (client_id, user_id, uri) in targets {
            let claims = json!({
                "iss": self.tokens.settings().issuer,
                "aud": client_id,
                "sub": user_id,
                "iat": now.secs(),
                "exp": now.secs() + 120,
                "jti": secret::uuid_like(),
                "events": {super::BACKCHANNEL_LOGOUT_EVENT: {}},
                "type": "logout_token",
            });
            let token = match self
                .tokens
                .sign_with(&claims, self.tokens.settings().id_token_alg, now)
                .await
            {
                Ok(t) => t,
                Err(e) => {
                    tracing::warn!(client_id, error = %e, "no logout token could be signed");
                    told.insert(client_id, json!("not sent: not signed"));
                    continue;
                }
            };
            let notifier = Arc::clone(&notifier);
            deliveries.spawn(async move {
                let outcome = notifier.deliver(&uri, &token).await;
                (client_id, outcome)
            });
        }
        while let Some(done) = deliveries.join_next().await {
            match done {
                Ok((client_id, Ok(()))) => {
                    tracing::info!(client_id, "client told of a sign-out");
                    told.insert(client_id, json!("delivered"));
                }
                Ok((client_id, Err(e))) => {
                    tracing::warn!(client_id, error = %e, "a client was not told of a sign-out");
                    told.insert(client_id, json!("failed"));
                }
                Err(e) => tracing::warn!(error = %e, "a sign-out notice was lost"),
            }
        }
        told
    }

    /// Where to send the browser after sign-out: `post_logout_redirect_uri` when it is a
    /// registered redirect URI of the client the ID token hint names (RP-initiated logout).
    pub async fn post_logout_redirect(
        &self,
        id_token_hint: Option<&str>,
        client_id: Option<&str>,
        uri: Option<&str>,
        now: Now,
    ) -> Result<PostLogout> {
        let hinted = match id_token_hint.filter(|h| !h.is_empty()) {
            // An expired ID token still names its client and person; its signature must hold.
            Some(hint) => self.tokens.id_token_parties(hint, now).await,
            None => None,
        };
        let hint_subject = hinted.as_ref().map(|(_, sub)| sub.clone());
        let client_id = hinted.as_ref().map(|(aud, _)| aud.as_str()).or(client_id);
        let redirect = match (uri.filter(|u| !u.is_empty()), client_id) {
            (Some(uri), Some(client_id)) => self
                .tokens
                .client_entry(client_id)
                .await?
                .map(|e| e.0.clone())
                .filter(|c| {
                    c.client_type != ClientType::TechnicalAccount
                        && oidc::redirect_uri_matches(&c.redirect_uris, uri)
                })
                .map(|_| uri.to_owned()),
            _ => None,
        };
        Ok(PostLogout {
            redirect,
            hint_subject,
        })
    }
}
