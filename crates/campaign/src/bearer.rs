//! Bearer tokens from the IMS, verified offline: the instance keeps the IMS's published keys
//! (JWKS), rereads them every few minutes and when a token names a key it has not seen (at most
//! once every few seconds), and accepts only access tokens of the pinned issuer.

use async_trait::async_trait;
use serde_json::{Map, Value};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, RwLock};

use ims_core::jose::{self, Expectations, JwtError, PublicKeys};
use ims_core::Now;

/// Why a bearer token was not accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BearerError {
    /// The token is not valid here (signature, time, issuer, type): the caller's problem.
    Refused(String),
    /// The IMS's keys could not be fetched: nothing to say about the token yet.
    Unavailable(String),
}

/// Where the published keys come from (the IMS's JWKS endpoint, in production).
#[async_trait]
pub trait JwksSource: Send + Sync {
    async fn fetch(&self) -> Result<Value, String>;
}

/// The scope a credential subscribed to the Campaign API is granted (the vendor's name): a
/// technical account's token without it was not obtained for this API.
pub const CAMPAIGN_API_SCOPE: &str = ims_wire::names::PROFILE_SCOPE;

/// Who sent a token, as far as an instance is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bearer {
    TechnicalAccount,
    Person,
}

/// Whether a verified access token was meant for this instance (the rule written in the
/// security model): a technical account's token must carry the Campaign API's scope; a
/// person's token must have been issued to the instance's own IMS client (`own_client`, known
/// only with an IMS sign-in configuration) with `openid`. A person's token minted for any other
/// application, even of the same organisation and with a valid signature, is refused, so that an
/// application the person allowed to read their profile cannot act as them here.
pub fn meant_for_instance(claims: &Map<String, Value>, own_client: Option<&str>) -> Result<Bearer, String> {
    let text = |name: &str| claims.get(name).and_then(Value::as_str).unwrap_or_default();
    let scopes: Vec<&str> = text("scope")
        .split([',', ' '])
        .filter(|s| !s.is_empty())
        .collect();
    if text("user_id").contains("@techacct.") {
        if !scopes.contains(&CAMPAIGN_API_SCOPE) {
            return Err(format!(
                "the token lacks the Campaign API's scope {CAMPAIGN_API_SCOPE}: subscribe the credential to the Campaign API and ask for that scope"
            ));
        }
        return Ok(Bearer::TechnicalAccount);
    }
    let Some(own) = own_client else {
        return Err(
            "this instance accepts people's tokens only once sign-in through the IMS is configured".into(),
        );
    };
    if !ims_core::secret::equal_ct(text("client_id"), own) {
        return Err("the token was issued to another application than this instance's".into());
    }
    if !scopes.contains(&"openid") {
        return Err("the token lacks the openid scope".into());
    }
    Ok(Bearer::Person)
}

/// Reread the keys this often even when every kid is known.
pub const REFRESH_SECS: i64 = 300;
/// At most one reread for an unknown kid in this many seconds.
pub const UNKNOWN_KID_INTERVAL_SECS: i64 = 5;

pub struct TrustedIssuer {
    issuer: String,
    source: Arc<dyn JwksSource>,
    keys: RwLock<Arc<PublicKeys>>,
    fetched_at: AtomicI64,
    last_forced: AtomicI64,
    fetch: tokio::sync::Mutex<()>,
}

impl std::fmt::Debug for TrustedIssuer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TrustedIssuer")
            .field("issuer", &self.issuer)
            .finish_non_exhaustive()
    }
}

impl TrustedIssuer {
    pub fn new(issuer: impl Into<String>, source: Arc<dyn JwksSource>) -> Self {
        TrustedIssuer {
            issuer: issuer.into(),
            source,
            keys: RwLock::new(Arc::new(PublicKeys::default())),
            fetched_at: AtomicI64::new(i64::MIN),
            last_forced: AtomicI64::new(i64::MIN),
            fetch: tokio::sync::Mutex::new(()),
        }
    }

    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    fn current(&self) -> Arc<PublicKeys> {
        match self.keys.read() {
            Ok(k) => Arc::clone(&k),
            Err(p) => Arc::clone(&p.into_inner()),
        }
    }

    async fn refetch(&self, now: Now, force: bool) -> Result<(), String> {
        let _guard = self.fetch.lock().await;
        let age = now
            .millis()
            .saturating_sub(self.fetched_at.load(Ordering::Relaxed));
        if !force && age < REFRESH_SECS * 1000 {
            return Ok(());
        }
        let doc = self.source.fetch().await?;
        let keys = PublicKeys::from_jwks(&doc);
        // An answer without a usable key (a broken page, an empty set) keeps the keys known:
        // replacing them would refuse every token until the next reading.
        if keys.is_empty() {
            return Err("the published key set holds no usable key".into());
        }
        let keys = Arc::new(keys);
        match self.keys.write() {
            Ok(mut k) => *k = keys,
            Err(p) => *p.into_inner() = keys,
        }
        self.fetched_at.store(now.millis(), Ordering::Relaxed);
        Ok(())
    }

    /// The claims of a valid access token of this issuer; otherwise why not.
    pub async fn verify(&self, token: &str, now: Now) -> Result<Map<String, Value>, BearerError> {
        let claims = self.verify_signed(token, None, now).await?;
        if claims.get("type").and_then(Value::as_str) != Some("access_token") {
            return Err(BearerError::Refused("not an access token".into()));
        }
        Ok(claims)
    }

    /// The claims of a valid ID token of this issuer issued to `client_id` for the sign-in that
    /// sent `nonce`.
    pub async fn verify_id_token(
        &self,
        token: &str,
        client_id: &str,
        nonce: &str,
        now: Now,
    ) -> Result<Map<String, Value>, BearerError> {
        let claims = self.verify_signed(token, Some(client_id), now).await?;
        if claims.get("type").and_then(Value::as_str) != Some("id_token") {
            return Err(BearerError::Refused("not an ID token".into()));
        }
        let sent = claims.get("nonce").and_then(Value::as_str).unwrap_or_default();
        if !ims_core::secret::equal_ct(sent, nonce) {
            return Err(BearerError::Refused(
                "the ID token answers another sign-in (nonce)".into(),
            ));
        }
        Ok(claims)
    }

    /// The claims of a valid logout token of this issuer for `client_id` (OpenID Connect
    /// Back-Channel Logout 1.0, section 2.6): the logout event, a subject, no nonce.
    pub async fn verify_logout_token(
        &self,
        token: &str,
        client_id: &str,
        now: Now,
    ) -> Result<Map<String, Value>, BearerError> {
        let claims = self.verify_signed(token, Some(client_id), now).await?;
        let event = claims
            .get("events")
            .and_then(|e| e.get(ims_wire::names::BACKCHANNEL_LOGOUT_EVENT));
        if claims.get("type").and_then(Value::as_str) != Some("logout_token")
            || !event.is_some_and(Value::is_object)
        {
            return Err(BearerError::Refused("not a logout token".into()));
        }
        if claims.contains_key("nonce") {
            return Err(BearerError::Refused("a logout token carries no nonce".into()));
        }
        if claims
            .get("sub")
            .and_then(Value::as_str)
            .is_none_or(str::is_empty)
        {
            return Err(BearerError::Refused("the logout token names nobody".into()));
        }
        Ok(claims)
    }

    async fn verify_signed(
        &self,
        token: &str,
        audience: Option<&str>,
        now: Now,
    ) -> Result<Map<String, Value>, BearerError> {
        if now
            .millis()
            .saturating_sub(self.fetched_at.load(Ordering::Relaxed))
            >= REFRESH_SECS * 1000
        {
            // A failed periodic reread keeps the keys we have.
            if let Err(e) = self.refetch(now, false).await {
                tracing::warn!(error = %e, "the IMS keys could not be reread");
            }
        }
        let expect = Expectations {
            issuer: &self.issuer,
            audience,
            now,
        };
        match jose::verify(token, self.current().as_ref(), &expect) {
            Err(JwtError::UnknownKey(_)) => {
                let last = self.last_forced.load(Ordering::Relaxed);
                if now.millis().saturating_sub(last) < UNKNOWN_KID_INTERVAL_SECS * 1000 {
                    return Err(BearerError::Refused("unknown signing key".into()));
                }
                self.last_forced.store(now.millis(), Ordering::Relaxed);
                self.refetch(now, true).await.map_err(BearerError::Unavailable)?;
                jose::verify(token, self.current().as_ref(), &expect)
            }
            other => other,
        }
        .map_err(|e| BearerError::Refused(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn claims(v: Value) -> Map<String, Value> {
        v.as_object().cloned().unwrap_or_default()
    }

    #[test]
    fn tokens_are_accepted_only_where_they_were_meant_for() {
        let tech = |scope: &str| {
            claims(json!({"user_id": "ABC@techacct.example.com", "client_id": "cred", "scope": scope}))
        };
        let person = |client: &str, scope: &str| {
            claims(json!({"user_id": "P1@AdobeID", "client_id": client, "scope": scope}))
        };
        let campaign = "openid,AdobeID,additional_info.projectedProductContext";
        assert_eq!(
            meant_for_instance(&tech(campaign), None),
            Ok(Bearer::TechnicalAccount)
        );
        assert_eq!(
            meant_for_instance(&tech(campaign), Some("inst")),
            Ok(Bearer::TechnicalAccount)
        );
        for scope in [
            "openid",
            "openid,AdobeID,read_organizations",
            "",
            "additional_info.projectedProductContext.x",
        ] {
            assert!(meant_for_instance(&tech(scope), Some("inst")).is_err(), "{scope}");
        }
        assert_eq!(
            meant_for_instance(&person("inst", "openid AdobeID"), Some("inst")),
            Ok(Bearer::Person)
        );
        assert!(
            meant_for_instance(&person("inst", "openid"), None).is_err(),
            "no configuration, no people"
        );
        assert!(meant_for_instance(&person("third-party", "openid"), Some("inst")).is_err());
        assert!(meant_for_instance(&person("inst", "AdobeID"), Some("inst")).is_err());
        assert!(meant_for_instance(&person("INST", "openid"), Some("inst")).is_err());
    }
}
