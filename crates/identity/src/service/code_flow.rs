//! The token endpoint's grants for people: `authorization_code` (single use, PKCE, bound to its
//! client and redirect URI; a second redemption revokes what the first issued) and
//! `refresh_token` (rotated on every use; reuse revokes the family; an absolute lifetime), with
//! ID tokens and the access tokens people carry; and userinfo.

use serde_json::{json, Map, Value};

use super::Tokens;
use super::{ClientAuth, IssuedToken, TokenRequest, AUTHORITY};
use crate::grants::{RefreshToken, Rotation};
use crate::model::{ClientType, GrantType, OAuthClient, User, UserStatus};
use ims_core::audit::Context;
use ims_core::clock::Now;
use ims_core::error::{Error, Result};
use ims_core::jose::{self, Expectations};
use ims_core::secret::{self, Secret};

/// Why a family is revoked when a code or refresh token comes back.
const REUSED: &str = "a code or refresh token was used twice";

/// What userinfo answers: the claims of the scopes the token carries.
pub type UserInfo = Map<String, Value>;

impl Tokens {
    /// Client authentication for the people grants: a confidential client proves itself with its
    /// secret; a public one names itself (its proof is the PKCE verifier or the refresh token).
    pub(super) async fn authenticate_people_client(
        &self,
        auth: &ClientAuth,
        now: Now,
    ) -> Result<OAuthClient> {
        if let ClientAuth::None { client_id } = auth {
            let entry = self.client_entry(client_id).await?;
            return match entry.map(|e| e.0.clone()) {
                Some(c) if c.client_type == ClientType::Public && !c.disabled => Ok(c),
                _ => Err(Error::invalid_client(false)),
            };
        }
        let client = self.authenticate_client(auth, now).await?;
        if client.client_type == ClientType::Public {
            // A public client has no secret; one that sends something is confused or forged.
            return Err(Error::invalid_client(false));
        }
        Ok(client)
    }

    pub(super) async fn authorization_code(
        &self,
        client: &OAuthClient,
        req: &TokenRequest,
        ctx: &Context,
    ) -> Result<IssuedToken> {
        let code = req
            .code
            .as_deref()
            .ok_or_else(|| Error::invalid_request("code is required"))?;
        let verifier = req
            .code_verifier
            .as_deref()
            .ok_or_else(|| Error::invalid_grant("PKCE: code_verifier is required"))?;
        let digest = secret::digest_hex(code);
        let refused =
            || Error::invalid_grant("the code is invalid, expired, used, or not issued to this client");
        let Some(seen) = self.store.code(&digest).await? else {
            return Err(refused());
        };
        // Someone else's code proves nothing and is left alone, so it cannot be burnt by others.
        if seen.client_id != client.client_id {
            return Err(refused());
        }
        if seen.consumed_at.is_some() {
            self.code_replayed(&seen, ctx).await?;
            return Err(refused());
        }
        if seen.expires_at <= ctx.now
            || Some(seen.redirect_uri.as_str()) != req.redirect_uri.as_deref()
            || !crate::oidc::pkce_matches(verifier, &seen.code_challenge)
        {
            return Err(refused());
        }
        // The conditional update decides between concurrent redemptions.
        let Some(found) = self.store.consume_code(&digest, ctx.now).await? else {
            self.code_replayed(&seen, ctx).await?;
            return Err(refused());
        };
        let user = self.active_user(&found.user_id, found.auth_time).await?;
        let issued = self
            .issue_people_tokens(
                client,
                &user,
                PeopleGrant {
                    scope: found.scope.clone(),
                    nonce: found.nonce.clone(),
                    auth_time: found.auth_time,
                    amr: found.amr.clone(),
                    family_id: found.grant_id.clone(),
                    family_expires_at: ctx.now.plus_secs(self.settings.refresh_token_secs),
                    grant: GrantType::AuthorizationCode,
                },
                Persist::Redemption(&digest),
                ctx,
            )
            .await?;
        // A replay seen while this redemption ran: what it issued is revoked too.
        if issued.replayed {
            self.revoke_grant(&found.grant_id, Some(&issued.token.token_id), REUSED, ctx)
                .await?;
        }
        Ok(issued.token)
    }

    /// A second redemption of a code: flags it and revokes what the first one issued (whatever
    /// it has issued by now; the first redemption checks the flag when it is done).
    async fn code_replayed(&self, code: &crate::grants::AuthorizationCode, ctx: &Context) -> Result<()> {
        self.store.mark_code_replayed(&code.code_digest, ctx.now).await?;
        let access = self
            .store
            .code(&code.code_digest)
            .await?
            .and_then(|c| c.access_token_id);
        self.revoke_grant(&code.grant_id, access.as_deref(), REUSED, ctx)
            .await
    }

    pub(super) async fn refresh(
        &self,
        client: &OAuthClient,
        req: &TokenRequest,
        ctx: &Context,
    ) -> Result<IssuedToken> {
        let token = req
            .refresh_token
            .as_deref()
            .ok_or_else(|| Error::invalid_request("refresh_token is required"))?;
        let refused = || Error::invalid_grant("the refresh token is invalid, expired, revoked or used");
        let digest = secret::digest_hex(token);
        let Some(current) = self.store.refresh_token(&digest).await? else {
            return Err(refused());
        };
        // Another client's token: refused, and left as it is (it proves nothing about its owner).
        if current.client_id != client.client_id {
            return Err(refused());
        }
        if current.used_at.is_some() || current.revoked_at.is_some() {
            self.revoke_grant(&current.family_id, None, REUSED, ctx).await?;
            return Err(refused());
        }
        if current.family_expires_at <= ctx.now {
            return Err(refused());
        }
        let scope = match req.scope.as_deref() {
            Some(s) => crate::scope::grant(Some(s), &current.scope)?,
            None => current.scope.clone(),
        };
        // A failed check above does not consume the token; from here one rotation wins.
        let user = self.active_user(&current.user_id, current.created_at).await?;
        let grant = PeopleGrant {
            scope,
            nonce: None,
            auth_time: current.auth_time,
            amr: current.amr.clone(),
            family_id: current.family_id.clone(),
            family_expires_at: current.family_expires_at,
            grant: GrantType::RefreshToken,
        };
        let issued = self
            .issue_people_tokens(client, &user, grant, Persist::Rotation(&digest), ctx)
            .await?;
        Ok(issued.token)
    }

    /// The person a grant was made for, while it is active and nothing ended its sessions since
    /// `since`.
    async fn active_user(&self, user_id: &str, since: Now) -> Result<User> {
        match self.store.user(user_id).await? {
            Some(u) if u.holds_since(since) => Ok(u),
            _ => Err(Error::invalid_grant("the account can no longer sign in")),
        }
    }

    /// RFC 7009 for a refresh token: the caller's own only (anything else changes nothing).
    pub(super) async fn revoke_refresh_token(
        &self,
        caller: &OAuthClient,
        token: &str,
        ctx: &Context,
    ) -> Result<()> {
        match self.store.refresh_token(&secret::digest_hex(token)).await? {
            Some(t) if t.client_id == caller.client_id => {
                self.revoke_grant(&t.family_id, None, "revoked by the client", ctx)
                    .await
            }
            _ => Ok(()),
        }
    }

    /// Revokes a refresh token family and every access token issued with it.
    async fn revoke_grant(
        &self,
        family_id: &str,
        access_token_id: Option<&str>,
        reason: &str,
        ctx: &Context,
    ) -> Result<()> {
        let mut access = self.store.revoke_family(family_id, ctx.now).await?;
        if let Some(id) = access_token_id {
            access.push((
                id.to_owned(),
                ctx.now.plus_secs(self.settings.people_access_token_secs),
            ));
        }
        for (token_id, expires) in &access {
            let event = ctx.event(
                "token.revoke",
                token_id,
                "success",
                json!({"reason": reason, "family": family_id}),
            );
            self.store
                .revoke_token(
                    token_id,
                    "",
                    expires.plus_secs(jose::LEEWAY_SECS),
                    ctx.now,
                    &event,
                )
                .await?;
        }
        Ok(())
    }

    /// Access token, refresh token (rotating `rotate_from` when given) and ID token.
    async fn issue_people_tokens(
        &self,
        client: &OAuthClient,
        user: &User,
        g: PeopleGrant,
        persist: Persist<'_>,
        ctx: &Context,
    ) -> Result<Issued> {
        let now = ctx.now;
        let life = self.settings.people_access_token_secs;
        let token_id = format!("{}_{}", now.millis(), secret::uuid_like());
        let claims = json!({
            "id": token_id,
            "type": "access_token",
            "client_id": client.client_id,
            "user_id": user.user_id,
            "as": AUTHORITY,
            "scope": g.scope.join(","),
            "created_at": now.millis().to_string(),
            "expires_in": (life * 1000).to_string(),
            "iss": self.settings.issuer,
            "sub": user.user_id,
            "aud": client.client_id,
            "iat": now.secs(),
            "exp": now.secs() + life,
            "jti": token_id,
            "auth_time": g.auth_time.secs(),
            // An instance serves one organisation: it checks the person belongs to it.
            "org": user.org_id,
        });
        let access = self.sign_with(&claims, self.settings.signing_alg, now).await?;
        let mut first_refresh = None;
        let refresh = if client.grant_types.contains(&GrantType::RefreshToken) {
            let value = secret::generate("imsrt_");
            let next = RefreshToken {
                token_digest: secret::digest_hex(value.expose()),
                family_id: g.family_id.clone(),
                client_id: client.client_id.clone(),
                user_id: user.user_id.clone(),
                scope: g.scope.clone(),
                auth_time: g.auth_time,
                amr: g.amr.clone(),
                access_token_id: token_id.clone(),
                access_expires_at: now.plus_secs(life),
                created_at: now,
                family_expires_at: g.family_expires_at,
                used_at: None,
                revoked_at: None,
            };
            match persist {
                Persist::Rotation(old) => match self.store.rotate_refresh_token(old, &next, now).await? {
                    Rotation::Rotated(_) => {}
                    // Lost a race with a concurrent refresh, or replayed: the family ends.
                    Rotation::Spent(t) => {
                        self.revoke_grant(&t.family_id, Some(&token_id), REUSED, ctx)
                            .await?;
                        return Err(Error::invalid_grant("the refresh token was already used"));
                    }
                    Rotation::Unknown => return Err(Error::invalid_grant("unknown refresh token")),
                },
                // Stored with the rest of the redemption, below.
                Persist::Redemption(_) => first_refresh = Some(next),
            }
            Some(value)
        } else {
            None
        };
        let id_token = if g.scope.iter().any(|s| s == "openid") {
            let mut id = json!({
                "iss": self.settings.issuer,
                "sub": user.user_id,
                "aud": client.client_id,
                "azp": client.client_id,
                "iat": now.secs(),
                "exp": now.secs() + life,
                "auth_time": g.auth_time.secs(),
                "amr": g.amr,
                "type": "id_token",
            });
            if let (Some(nonce), Some(obj)) = (&g.nonce, id.as_object_mut()) {
                obj.insert("nonce".into(), json!(nonce));
            }
            if let Some(obj) = id.as_object_mut() {
                obj.extend(scope_claims(user, &g.scope));
            }
            Some(self.sign_with(&id, self.settings.id_token_alg, now).await?)
        } else {
            None
        };
        let event = ctx.event(
            "token.issue",
            &client.client_id,
            "success",
            json!({"grant_type": g.grant.as_str(), "user_id": user.user_id, "token_id": token_id}),
        );
        let replayed = match persist {
            Persist::Redemption(code) => {
                self.store
                    .record_redemption(code, &token_id, first_refresh.as_ref(), &event)
                    .await?
            }
            Persist::Rotation(_) => {
                self.store.append_audit(&event).await?;
                false
            }
        };
        Ok(Issued {
            token: IssuedToken {
                access_token: Secret::new(access),
                expires_in: life,
                scope: g.scope,
                token_id,
                client_id: client.client_id.clone(),
                grant: g.grant,
                refresh_token: refresh,
                id_token,
            },
            replayed,
        })
    }

    /// `GET|POST /ims/userinfo/*`: the claims of the scopes the person's access token carries.
    pub async fn userinfo(&self, access_token: &str, now: Now) -> Result<UserInfo> {
        let valid = self.validate_access_token(access_token, now).await?;
        let user_id = valid
            .claims
            .get("user_id")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let user = self
            .store
            .user(user_id)
            .await?
            .filter(|u| u.status == UserStatus::Active)
            .ok_or_else(|| Error::invalid_token("the token does not stand for a person who can sign in"))?;
        let scopes: Vec<String> = valid.scopes().map(str::to_owned).collect();
        if !scopes.iter().any(|s| s == "openid") {
            return Err(Error::insufficient_scope("openid"));
        }
        let mut out = Map::new();
        out.insert("sub".into(), json!(user.user_id));
        out.extend(scope_claims(&user, &scopes));
        Ok(out)
    }

    /// The client an ID token (possibly expired) was issued to, when its signature is ours.
    /// The client (audience) and person (subject) of one of our ID tokens, possibly expired.
    pub(super) async fn id_token_parties(&self, token: &str, now: Now) -> Option<(String, String)> {
        let ring = self.ring(now).await.ok()?;
        // Verified as of its own issue time: an expired hint still names its audience.
        let iat = jose::parse(token).ok()?.claims.get("iat")?.as_i64()?;
        let expect = Expectations {
            issuer: &self.settings.issuer,
            audience: None,
            now: Now::from_millis(iat.saturating_mul(1000)),
        };
        let claims = jose::verify(token, ring.as_ref(), &expect).ok()?;
        if claims.get("type").and_then(Value::as_str) != Some("id_token") {
            return None;
        }
        let aud = claims.get("aud").and_then(Value::as_str)?;
        let sub = claims.get("sub").and_then(Value::as_str)?;
        Some((aud.to_owned(), sub.to_owned()))
    }
}

/// Where the tokens of a people grant are recorded.
#[derive(Clone, Copy)]
enum Persist<'a> {
    /// A code's redemption (its digest): the first refresh token of a new family.
    Redemption(&'a str),
    /// A refresh token's rotation (the old token's digest).
    Rotation(&'a str),
}

/// Tokens issued, and whether the code was replayed while they were.
struct Issued {
    token: IssuedToken,
    replayed: bool,
}

/// What a people grant carries into the tokens.
struct PeopleGrant {
    scope: Vec<String>,
    nonce: Option<String>,
    auth_time: Now,
    amr: Vec<String>,
    family_id: String,
    family_expires_at: Now,
    grant: GrantType,
}

/// Claims released for the granted scopes (OpenID Connect section 5.4, and the vendor's
/// `AdobeID` scope).
fn scope_claims(user: &User, scopes: &[String]) -> Map<String, Value> {
    let mut out = Map::new();
    let has = |s: &str| scopes.iter().any(|x| x == s);
    if has("email") {
        out.insert("email".into(), json!(user.email));
        // Accounts are created by administrators with the email they control.
        out.insert("email_verified".into(), json!(true));
    }
    if has("profile") {
        let name = format!("{} {}", user.first_name, user.last_name)
            .trim()
            .to_owned();
        out.insert("name".into(), json!(name));
        out.insert("given_name".into(), json!(user.first_name));
        out.insert("family_name".into(), json!(user.last_name));
    }
    if has("AdobeID") {
        out.insert("account_type".into(), json!(user.identity_type.as_str()));
        out.insert("user_id".into(), json!(user.user_id));
        if let Some(c) = &user.country {
            out.insert("countryCode".into(), json!(c));
        }
    }
    out
}
