//! The token service: signing keys and their rotation, client lookup and authentication, the
//! token endpoint (`client_credentials` here, the people grants in `code_flow`), access-token
//! validation, introspection and revocation. It holds only the storage it needs
//! ([`TokenStorage`]); the other services reach tokens through it.

use serde_json::{json, Map, Value};
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use super::{ClientAuth, IssuedToken, Settings, TokenRequest, ValidToken, AUTHORITY};
use crate::model::{GrantType, OAuthClient, Organization};
use crate::store::TokenStorage;
use ims_core::audit::Context;
use ims_core::clock::Now;
use ims_core::error::{Error, Result};
use ims_core::jose::{self, Expectations, JwtError};
use ims_core::keys::{self, Algorithm, KeyRing, MasterKey};
use ims_core::secret::{self, uuid_like, Secret};

/// Clients with their secrets, kept while the store's change signal stays put.
#[derive(Default)]
struct ClientCache {
    generation: Option<u64>,
    entries: std::collections::HashMap<String, Arc<ClientEntry>>,
}

type ClientEntry = (OAuthClient, Vec<crate::model::ClientSecretRecord>);

/// Most clients kept in memory; past it the cache starts over.
const CLIENT_CACHE_MAX: usize = 10_000;

pub struct Tokens {
    pub(super) store: Arc<dyn TokenStorage>,
    clients: Mutex<ClientCache>,
    pub(super) master: MasterKey,
    pub(super) settings: Settings,
    ring: RwLock<Arc<KeyRing>>,
    ring_loaded_at: AtomicI64,
    last_forced_reload: AtomicI64,
    forced_reloads: AtomicU64,
    /// Client look-ups answered from memory, and from the database.
    client_hits: AtomicU64,
    client_misses: AtomicU64,
    reload: tokio::sync::Mutex<()>,
}

impl std::fmt::Debug for Tokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tokens")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

impl Tokens {
    /// Loads the key ring and makes sure a key of each configured algorithm can sign.
    pub(super) async fn start(
        store: Arc<dyn TokenStorage>,
        master: MasterKey,
        settings: Settings,
        ctx: &Context,
    ) -> Result<Self> {
        let tokens = Tokens {
            store,
            master,
            settings,
            ring: RwLock::new(Arc::new(KeyRing::empty())),
            clients: Mutex::new(ClientCache::default()),
            ring_loaded_at: AtomicI64::new(i64::MIN),
            last_forced_reload: AtomicI64::new(i64::MIN),
            forced_reloads: AtomicU64::new(0),
            client_hits: AtomicU64::new(0),
            client_misses: AtomicU64::new(0),
            reload: tokio::sync::Mutex::new(()),
        };
        tokens.reload_keys(ctx.now, true).await?;
        for alg in [tokens.settings.signing_alg, tokens.settings.id_token_alg] {
            tokens.ensure_signing_key(alg, ctx).await?;
        }
        Ok(tokens)
    }

    /// Makes sure a key of `alg` signs or is about to.
    pub(super) async fn ensure_signing_key(&self, alg: Algorithm, ctx: &Context) -> Result<()> {
        let ims = self;
        if ims.current_ring().signer(alg, ctx.now).is_none() && !ims.current_ring().has_pending(alg, ctx.now)
        {
            // First key of this algorithm: nothing was signed before it, so it may sign at once.
            let key = keys::generate(alg, &ims.master, ctx.now, ctx.now)?;
            let event = ctx.event(
                "key.create",
                &key.kid,
                "success",
                json!({"alg": alg.as_str(), "activates_at": ctx.now.millis()}),
            );
            ims.store.insert_key(&key, &event).await?;
            ims.reload_keys(ctx.now, true).await?;
        }
        Ok(())
    }

    /// Signs `claims` with the current key of `alg`.
    pub(super) async fn sign_with(&self, claims: &Value, alg: Algorithm, now: Now) -> Result<String> {
        let ring = self.ring(now).await?;
        let key = ring
            .signer(alg, now)
            .ok_or_else(|| Error::internal(format!("no active {alg} signing key")))?;
        jose::sign(claims, key)
    }

    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// Whether this node can sign tokens now with each algorithm it issues (readiness). A node
    /// that holds no such key rereads the key table once before saying no: another node may just
    /// have rotated.
    pub async fn can_sign(&self, now: Now) -> Result<bool> {
        let algs = [self.settings.signing_alg, self.settings.id_token_alg];
        let has_all = |ring: &KeyRing| algs.iter().all(|alg| ring.signer(*alg, now).is_some());
        if has_all(self.ring(now).await?.as_ref()) {
            return Ok(true);
        }
        self.reload_keys(now, true).await?;
        Ok(has_all(self.current_ring().as_ref()))
    }

    fn current_ring(&self) -> Arc<KeyRing> {
        match self.ring.read() {
            Ok(g) => Arc::clone(&g),
            Err(poisoned) => Arc::clone(&poisoned.into_inner()),
        }
    }

    fn ring_is_stale(&self, now: Now) -> bool {
        let age = now
            .millis()
            .saturating_sub(self.ring_loaded_at.load(Ordering::Relaxed));
        age >= self.settings.key_refresh_secs.saturating_mul(1000)
    }

    /// Rereads the key table. Unless `force`d, a caller that waited for another's reread does
    /// not repeat it.
    pub(super) async fn reload_keys(&self, now: Now, force: bool) -> Result<()> {
        let _guard = self.reload.lock().await;
        if !force && !self.ring_is_stale(now) {
            return Ok(());
        }
        let stored = self.store.keys().await?;
        let previous = self.current_ring();
        let ring = Arc::new(KeyRing::load(stored, &self.master, Some(&previous))?);
        match self.ring.write() {
            Ok(mut g) => *g = ring,
            Err(poisoned) => *poisoned.into_inner() = ring,
        }
        self.ring_loaded_at.store(now.millis(), Ordering::Relaxed);
        Ok(())
    }

    /// The ring, reread when older than the refresh period.
    pub(super) async fn ring(&self, now: Now) -> Result<Arc<KeyRing>> {
        if self.ring_is_stale(now) {
            self.reload_keys(now, false).await?;
        }
        Ok(self.current_ring())
    }

    /// How many times a token naming an unknown key made this node reread the key table.
    pub fn forced_key_reloads(&self) -> u64 {
        self.forced_reloads.load(Ordering::Relaxed)
    }

    /// Client look-ups answered from memory and from the database, since start.
    pub fn client_lookups(&self) -> (u64, u64) {
        (
            self.client_hits.load(Ordering::Relaxed),
            self.client_misses.load(Ordering::Relaxed),
        )
    }

    /// Published keys (the JWKS document).
    pub async fn jwks(&self, now: Now) -> Result<Value> {
        Ok(self
            .ring(now)
            .await?
            .jwks(now, self.settings.key_retention_secs()))
    }

    // ----- client lookup and authentication ---------------------------------------------------

    fn with_cache<R>(&self, f: impl FnOnce(&mut ClientCache) -> R) -> R {
        match self.clients.lock() {
            Ok(mut g) => f(&mut g),
            Err(poisoned) => f(&mut poisoned.into_inner()),
        }
    }

    /// A client and its secrets, from memory while the store's change signal says nothing
    /// changed, from the store otherwise. The signal is read before the store, so a change that
    /// lands during the read moves the signal and the entry is dropped at the next lookup.
    pub(super) async fn client_entry(&self, client_id: &str) -> Result<Option<Arc<ClientEntry>>> {
        let generation = self.store.client_generation();
        let hit = self.with_cache(|c| {
            if c.generation != generation || generation.is_none() {
                c.entries.clear();
                c.generation = generation;
                return None;
            }
            c.entries.get(client_id).cloned()
        });
        if hit.is_some() {
            self.client_hits.fetch_add(1, Ordering::Relaxed);
            return Ok(hit);
        }
        self.client_misses.fetch_add(1, Ordering::Relaxed);
        let Some(found) = self.store.client_with_secrets(client_id).await? else {
            return Ok(None);
        };
        let entry = Arc::new(found);
        if generation.is_some() {
            self.with_cache(|c| {
                if c.generation == generation {
                    if c.entries.len() >= CLIENT_CACHE_MAX {
                        c.entries.clear();
                    }
                    c.entries.insert(client_id.to_owned(), Arc::clone(&entry));
                }
            });
        }
        Ok(Some(entry))
    }

    /// Checks a client's credentials. Every failure looks the same to the caller.
    pub async fn authenticate_client(&self, auth: &ClientAuth, now: Now) -> Result<OAuthClient> {
        let basic = auth.is_basic();
        let (client_id, presented) = match auth {
            ClientAuth::Basic { client_id, secret } | ClientAuth::Post { client_id, secret } => {
                (client_id, secret)
            }
            ClientAuth::None { .. } | ClientAuth::Missing => return Err(Error::invalid_client(basic)),
        };
        let Some(entry) = self.client_entry(client_id).await? else {
            return Err(Error::invalid_client(basic));
        };
        let (client, secrets) = entry.as_ref();
        let digest = secret::digest_hex(presented.expose());
        // Compare against every live secret without stopping early, so timing says nothing about
        // which secret (if any) matched.
        let matched = secrets
            .iter()
            .filter(|s| s.is_live(now))
            .fold(false, |acc, s| secret::equal_ct(&s.digest, &digest) | acc);
        if !matched || client.disabled {
            return Err(Error::invalid_client(basic));
        }
        Ok(client.clone())
    }

    // ----- token endpoint ----------------------------------------------------------------------

    /// `POST /ims/token/*`. Failures are audited (without any secret) before they are returned.
    pub async fn token(&self, req: &TokenRequest, ctx: &Context) -> Result<IssuedToken> {
        let result = self.token_inner(req, ctx).await;
        if let Err(e) = &result {
            self.record_token_failure(ctx, req.auth.client_id(), req.grant_type.as_deref(), e)
                .await;
        }
        result
    }

    /// Audits a refused token request: who asked, for which grant, which error. Never a secret.
    pub async fn record_token_failure(
        &self,
        ctx: &Context,
        client_id: Option<&str>,
        grant: Option<&str>,
        e: &Error,
    ) {
        let clip = |s: &str| s.chars().take(64).collect::<String>();
        let target = client_id.map(clip).unwrap_or_default();
        let event = ctx.event(
            "token.issue",
            &target,
            "failure",
            json!({"error": e.code(), "grant_type": grant.map(clip)}),
        );
        if let Err(audit_err) = self.store.append_audit(&event).await {
            tracing::error!(error = %audit_err, "could not audit a token failure");
        }
    }

    async fn token_inner(&self, req: &TokenRequest, ctx: &Context) -> Result<IssuedToken> {
        let grant = req
            .grant_type
            .as_deref()
            .ok_or_else(|| Error::invalid_request("grant_type is required"))?;
        let parsed = GrantType::parse(grant);
        let client = match parsed {
            // Clients that sign people in may be public: PKCE stands in for their secret.
            Some(GrantType::AuthorizationCode | GrantType::RefreshToken) => {
                self.authenticate_people_client(&req.auth, ctx.now).await?
            }
            _ => self.authenticate_client(&req.auth, ctx.now).await?,
        };
        match parsed {
            Some(g) if !client.grant_types.contains(&g) => Err(Error::unauthorized_client(format!(
                "this client may not use the {grant} grant"
            ))),
            Some(GrantType::ClientCredentials) => self.client_credentials(&client, req, ctx).await,
            Some(GrantType::AuthorizationCode) => self.authorization_code(&client, req, ctx).await,
            Some(GrantType::RefreshToken) => self.refresh(&client, req, ctx).await,
            None => Err(Error::unsupported_grant_type(format!(
                "grant type {:?} is not supported",
                grant.chars().take(64).collect::<String>()
            ))),
        }
    }

    async fn client_credentials(
        &self,
        client: &OAuthClient,
        req: &TokenRequest,
        ctx: &Context,
    ) -> Result<IssuedToken> {
        if let Some(org) = req.org_id.as_deref() {
            if org != client.org_id {
                return Err(Error::invalid_request(
                    "org_id does not match the client's organisation",
                ));
            }
        }
        let scope = crate::scope::grant(req.scope.as_deref(), &client.scopes)?;
        self.issue_access_token(client, &client.technical_account_id, scope, ctx.now)
            .await
    }

    pub(super) async fn issue_access_token(
        &self,
        client: &OAuthClient,
        user_id: &str,
        scope: Vec<String>,
        now: Now,
    ) -> Result<IssuedToken> {
        let life = self.settings.access_token_secs;
        let token_id = format!("{}_{}", now.millis(), uuid_like());
        let claims = json!({
            "id": token_id,
            "type": "access_token",
            "client_id": client.client_id,
            "user_id": user_id,
            "as": AUTHORITY,
            "org": client.org_id,
            // The technical account's email: instances name its operator after it.
            "email": client.technical_account_email,
            "scope": scope.join(","),
            "created_at": now.millis().to_string(),
            "expires_in": (life * 1000).to_string(),
            "iss": self.settings.issuer,
            "sub": user_id,
            "aud": client.client_id,
            "iat": now.secs(),
            "exp": now.secs() + life,
            "jti": token_id,
        });
        let token = self.sign_with(&claims, self.settings.signing_alg, now).await?;
        Ok(IssuedToken {
            access_token: Secret::new(token),
            expires_in: life,
            scope,
            token_id,
            client_id: client.client_id.clone(),
            grant: GrantType::ClientCredentials,
            refresh_token: None,
            id_token: None,
        })
    }

    // ----- validation, introspection, revocation ------------------------------------------------

    /// Verifies signature and time, then that the token is an access token, not revoked, and its
    /// client still enabled.
    pub async fn validate_access_token(&self, token: &str, now: Now) -> Result<ValidToken> {
        let claims = self
            .verify_signed(token, now)
            .await
            .map_err(|e| Error::invalid_token(e.to_string()))?;
        if claims.get("type").and_then(Value::as_str) != Some("access_token") {
            return Err(Error::invalid_token("not an access token"));
        }
        let str_claim = |name: &str| claims.get(name).and_then(Value::as_str).map(str::to_owned);
        let (Some(token_id), Some(client_id)) = (str_claim("id"), str_claim("client_id")) else {
            return Err(Error::invalid_token("token lacks id or client_id"));
        };
        if self.store.is_revoked(&token_id).await? {
            return Err(Error::invalid_token("token revoked"));
        }
        let entry = self.client_entry(&client_id).await?;
        let Some(client) = entry.map(|e| e.0.clone()).filter(|c| !c.disabled) else {
            return Err(Error::invalid_token("client disabled or removed"));
        };
        Ok(ValidToken {
            claims,
            client_id,
            org_id: client.org_id.clone(),
            token_id,
            client,
        })
    }

    pub(super) async fn verify_signed(
        &self,
        token: &str,
        now: Now,
    ) -> std::result::Result<Map<String, Value>, JwtError> {
        let expect = Expectations {
            issuer: &self.settings.issuer,
            audience: None,
            now,
        };
        let ring = self
            .ring(now)
            .await
            .map_err(|_| JwtError::Malformed("key ring unavailable"))?;
        match jose::verify(token, ring.as_ref(), &expect) {
            Err(JwtError::UnknownKey(kid)) => {
                // Another node may have rotated; reread at most once a second. Within that
                // second a reread may still be under way (the tokens of a new key arrive
                // together): wait for it to end and look again, without reading once more.
                let last = self.last_forced_reload.load(Ordering::Relaxed);
                if now.millis().saturating_sub(last) < 1000 {
                    drop(self.reload.lock().await);
                    return match jose::verify(token, self.current_ring().as_ref(), &expect) {
                        Err(JwtError::UnknownKey(_)) => Err(JwtError::UnknownKey(kid)),
                        other => other,
                    };
                }
                self.last_forced_reload.store(now.millis(), Ordering::Relaxed);
                self.forced_reloads.fetch_add(1, Ordering::Relaxed);
                self.reload_keys(now, true)
                    .await
                    .map_err(|_| JwtError::Malformed("key ring unavailable"))?;
                jose::verify(token, self.current_ring().as_ref(), &expect)
            }
            other => other,
        }
    }

    /// RFC 7662. Inactive, expired, revoked, foreign and garbage tokens all answer `{"active": false}`.
    pub async fn introspect(&self, auth: &ClientAuth, token: &str, ctx: &Context) -> Result<Value> {
        let caller = self.authenticate_client(auth, ctx.now).await?;
        let Ok(valid) = self.validate_access_token(token, ctx.now).await else {
            return Ok(json!({"active": false}));
        };
        if valid.org_id != caller.org_id {
            return Ok(json!({"active": false}));
        }
        let c = &valid.claims;
        let scope = c
            .get("scope")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .replace(',', " ");
        Ok(json!({
            "active": true,
            "scope": scope,
            "client_id": valid.client_id,
            "username": c.get("user_id"),
            "token_type": "Bearer",
            "exp": c.get("exp"),
            "iat": c.get("iat"),
            "sub": c.get("sub"),
            "aud": c.get("aud"),
            "iss": c.get("iss"),
            "jti": valid.token_id,
        }))
    }

    /// RFC 7009 (and the vendor's `invalidate_token`): the caller may revoke only its own tokens;
    /// anything else, garbage included, is accepted and changes nothing.
    /// Refresh tokens too: revoking one ends its whole family and the access tokens issued with
    /// it. Public clients name themselves (RFC 7009 section 2.1).
    pub async fn revoke(&self, auth: &ClientAuth, token: &str, ctx: &Context) -> Result<()> {
        let caller = match auth {
            ClientAuth::None { .. } => self.authenticate_people_client(auth, ctx.now).await?,
            _ => self.authenticate_client(auth, ctx.now).await?,
        };
        if token.starts_with("imsrt_") {
            return self.revoke_refresh_token(&caller, token, ctx).await;
        }
        let Ok(claims) = self.verify_signed(token, ctx.now).await else {
            return Ok(());
        };
        let owner = claims.get("client_id").and_then(Value::as_str);
        let (Some(token_id), Some(exp)) = (
            claims.get("id").and_then(Value::as_str),
            claims.get("exp").and_then(Value::as_i64),
        ) else {
            return Ok(());
        };
        if owner != Some(caller.client_id.as_str()) {
            return Ok(());
        }
        let expires = Now::from_millis(exp.saturating_add(jose::LEEWAY_SECS).saturating_mul(1000));
        let event = ctx.event(
            "token.revoke",
            &caller.client_id,
            "success",
            json!({"token_id": token_id}),
        );
        self.store
            .revoke_token(token_id, &caller.client_id, expires, ctx.now, &event)
            .await?;
        Ok(())
    }

    pub async fn organization(&self, org_id: &str) -> Result<Organization> {
        self.store
            .org(org_id)
            .await?
            .ok_or_else(|| Error::not_found(format!("organisation {org_id}")))
    }

    // ----- administration ---------------------------------------------------------------------

    /// Adds a key that will sign after the publication delay (or at once when `immediate`), and
    /// deletes keys whose tokens have all expired. Returns the new kid.
    pub async fn rotate_key(&self, alg: Option<Algorithm>, immediate: bool, ctx: &Context) -> Result<String> {
        let alg = alg.unwrap_or(self.settings.signing_alg);
        let activates = if immediate {
            ctx.now
        } else {
            ctx.now.plus_secs(self.settings.key_publish_secs)
        };
        let key = keys::generate(alg, &self.master, ctx.now, activates)?;
        let kid = key.kid.clone();
        let event = ctx.event(
            "key.rotate",
            &kid,
            "success",
            json!({"alg": alg.as_str(), "activates_at": activates.millis()}),
        );
        self.store.insert_key(&key, &event).await?;
        self.reload_keys(ctx.now, true).await?;
        let expired = self
            .current_ring()
            .expired(ctx.now, self.settings.key_retention_secs());
        if !expired.is_empty() {
            let event = ctx.event(
                "key.delete",
                &expired.join(","),
                "success",
                json!({"reason": "every token it signed has expired"}),
            );
            self.store.delete_keys(&expired, &event).await?;
            self.reload_keys(ctx.now, true).await?;
        }
        Ok(kid)
    }

    /// Drops the revocation records of tokens that have expired anyway. Returns how many went.
    pub async fn purge_revocations(&self, now: Now) -> Result<u64> {
        Ok(self.store.purge_revocations(now).await?)
    }

    /// Drops sign-in flows, browser sessions, codes and refresh token families past their end.
    /// Returns how many went.
    pub async fn purge_grants(&self, now: Now) -> Result<u64> {
        Ok(self.store.purge_grants(now).await?)
    }

    /// Keys with their state at `now`: (kid, alg, activates_at, signing, published).
    pub async fn key_states(&self, now: Now) -> Result<Vec<(String, Algorithm, Now, bool, bool)>> {
        let ring = self.ring(now).await?;
        let published: Vec<String> = ring
            .published(now, self.settings.key_retention_secs())
            .iter()
            .map(|k| k.kid.clone())
            .collect();
        let mut out = Vec::new();
        for key in self.store.keys().await? {
            let signing = ring.signer(key.alg, now).is_some_and(|s| s.kid == key.kid);
            let is_published = published.contains(&key.kid);
            out.push((key.kid, key.alg, key.activates_at, signing, is_published));
        }
        Ok(out)
    }
}
