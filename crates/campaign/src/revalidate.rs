//! How soon a token revoked at the IMS stops working here. Signatures are checked offline, so a
//! revoked token (or one of a disabled or deleted credential) would otherwise work until it
//! expires. With an IMS sign-in configuration, the caller's profiles are read again with its
//! token every `profile_refresh_secs`, and a refused token is refused here. Without one, the
//! instance asks the IMS for the token's Campaign profiles (`/ims/profile/v1`) at most every
//! `profile_refresh_secs` as well (60 s by default): the IMS refuses a revoked token, a
//! disabled or deleted credential's, and a credential not subscribed to the Campaign API (the
//! scope alone, which the I/O Management API grants too, does not open an instance). The same
//! holds for the sessions `BearerTokenLogon` opened, whose token
//! is kept in memory (never stored) for that purpose. An IMS that cannot answer leaves the
//! token as it was (availability first); a restart forgets the sessions' tokens, which then end
//! with their token's expiry at the latest.

use std::collections::HashMap;
use std::sync::Mutex;

use serde_json::Value;

use ims_core::Now;

/// Most tokens (and sessions' tokens) remembered; beyond, the oldest are forgotten.
const MAX_REMEMBERED: usize = 10_000;

/// What the IMS said about a token, and when.
#[derive(Clone, Copy, Debug)]
struct Verdict {
    valid: bool,
    at: i64,
}

#[derive(Default)]
pub struct Revalidation {
    /// By token id (`jti`).
    verdicts: Mutex<HashMap<String, Verdict>>,
    /// The token behind each `BearerTokenLogon` session, by session digest.
    sessions: Mutex<HashMap<String, SessionToken>>,
}

/// What a `BearerTokenLogon` session keeps of its token: enough to ask the IMS about it and to
/// end with it, without verifying its signature again on every call.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionToken {
    pub token: String,
    /// Its id (`jti`).
    pub id: String,
    /// When it expires (`exp`, seconds).
    pub expires_at: i64,
}

impl std::fmt::Debug for Revalidation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Revalidation").finish_non_exhaustive()
    }
}

/// Whether a token must be asked about at `now` (`None`), or what the IMS said last, asking
/// again every `every_secs`.
fn known(map: &HashMap<String, Verdict>, id: &str, now: Now, every_secs: i64) -> Option<bool> {
    map.get(id)
        .filter(|v| now.millis().saturating_sub(v.at) < every_secs.saturating_mul(1000))
        .map(|v| v.valid)
}

fn bounded<K: Clone + Eq + std::hash::Hash, V>(map: &mut HashMap<K, V>) {
    if map.len() >= MAX_REMEMBERED {
        map.clear();
    }
}

impl Revalidation {
    /// The verdict on token `id` if it is recent enough.
    pub fn recent(&self, id: &str, now: Now, every_secs: i64) -> Option<bool> {
        let m = self.verdicts.lock().unwrap_or_else(|e| e.into_inner());
        known(&m, id, now, every_secs)
    }

    pub fn record(&self, id: &str, valid: bool, now: Now) {
        let mut m = self.verdicts.lock().unwrap_or_else(|e| e.into_inner());
        bounded(&mut m);
        m.insert(
            id.to_owned(),
            Verdict {
                valid,
                at: now.millis(),
            },
        );
    }

    pub fn remember_session(&self, session_digest: &str, token: SessionToken) {
        let mut m = self.sessions.lock().unwrap_or_else(|e| e.into_inner());
        bounded(&mut m);
        m.insert(session_digest.to_owned(), token);
    }

    pub fn session_token(&self, session_digest: &str) -> Option<SessionToken> {
        let m = self.sessions.lock().unwrap_or_else(|e| e.into_inner());
        m.get(session_digest).cloned()
    }

    pub fn forget_session(&self, session_digest: &str) {
        let mut m = self.sessions.lock().unwrap_or_else(|e| e.into_inner());
        m.remove(session_digest);
    }
}

/// The IMS's answer about a token's profiles: `Some(true)` when it answered them, `Some(false)`
/// when it refused the token (401, 403), `None` when it said nothing usable (an outage).
pub fn verdict_of(status: u16, body: &Value) -> Option<bool> {
    match status {
        200 => body.get("projectedProductContext").map(|_| true),
        401 | 403 => Some(false),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verdicts_last_a_minute_and_memory_is_bounded() {
        let r = Revalidation::default();
        let t0 = Now::from_millis(1_000_000);
        assert_eq!(r.recent("a", t0, 60), None);
        r.record("a", false, t0);
        assert_eq!(r.recent("a", t0.plus_secs(59), 60), Some(false));
        assert_eq!(r.recent("a", t0.plus_secs(60), 60), None, "asked again");
        assert_eq!(r.recent("a", t0, 0), None, "every call");
        for i in 0..MAX_REMEMBERED + 5 {
            r.record(&i.to_string(), true, t0);
        }
        assert!(r.verdicts.lock().unwrap().len() <= MAX_REMEMBERED);
        let kept = SessionToken {
            token: "tok".into(),
            id: "t1".into(),
            expires_at: 5,
        };
        r.remember_session("s", kept.clone());
        assert_eq!(r.session_token("s"), Some(kept));
        r.forget_session("s");
        assert_eq!(r.session_token("s"), None);
        let profiles = serde_json::json!({"projectedProductContext": []});
        assert_eq!(verdict_of(200, &profiles), Some(true));
        assert_eq!(verdict_of(401, &serde_json::json!({})), Some(false));
        assert_eq!(verdict_of(403, &serde_json::json!({})), Some(false));
        assert_eq!(verdict_of(500, &profiles), None);
        assert_eq!(verdict_of(200, &serde_json::json!({})), None);
    }
}
