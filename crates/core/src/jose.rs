//! Compact JWS: the only token format we issue, and a deliberately strict verifier.
//!
//! The verifier accepts only the algorithms we sign with, takes keys only from our own key ring
//! (never from `jku`, `x5u`, `jwk` or `x5c` headers), binds each key to one algorithm so that a
//! header cannot switch an RSA key into HMAC or another algorithm, and checks time claims with a
//! bounded leeway.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use serde::Deserialize;
use serde_json::{Map, Value};

use crate::clock::Now;
use crate::keys::{Algorithm, KeyRing, SigningKey, VerifyingKey};

/// Leeway applied to `exp`, `nbf` and `iat`, in seconds.
pub const LEEWAY_SECS: i64 = 60;

/// Longest token we will even try to parse.
pub const MAX_TOKEN_LEN: usize = 16 * 1024;

/// Why a token was refused. Kept precise for logs and tests; callers show a generic reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JwtError {
    Malformed(&'static str),
    AlgorithmNotAllowed(String),
    ForbiddenHeader(&'static str),
    UnknownKey(String),
    KeyAlgorithmMismatch,
    BadSignature,
    Expired,
    NotYetValid,
    WrongIssuer,
    WrongAudience,
}

impl std::fmt::Display for JwtError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            JwtError::Malformed(what) => write!(f, "malformed token: {what}"),
            JwtError::AlgorithmNotAllowed(alg) => write!(f, "algorithm {alg:?} is not allowed"),
            JwtError::ForbiddenHeader(h) => write!(f, "header {h:?} is not accepted"),
            JwtError::UnknownKey(_) => f.write_str("unknown signing key"),
            JwtError::KeyAlgorithmMismatch => f.write_str("key does not match the token's algorithm"),
            JwtError::BadSignature => f.write_str("bad signature"),
            JwtError::Expired => f.write_str("token expired"),
            JwtError::NotYetValid => f.write_str("token not yet valid"),
            JwtError::WrongIssuer => f.write_str("wrong issuer"),
            JwtError::WrongAudience => f.write_str("wrong audience"),
        }
    }
}

#[derive(Debug, Deserialize)]
pub struct Header {
    pub alg: String,
    pub kid: Option<String>,
    pub typ: Option<String>,
}

/// A token split and decoded, signature not yet checked.
#[derive(Debug)]
pub struct Parsed<'a> {
    pub header: Header,
    pub claims: Map<String, Value>,
    signing_input: &'a str,
    signature: Vec<u8>,
}

const FORBIDDEN_HEADERS: [&str; 6] = ["jku", "x5u", "jwk", "x5c", "crit", "b64"];

/// Splits and decodes a compact JWS without trusting anything in it.
pub fn parse(token: &str) -> Result<Parsed<'_>, JwtError> {
    if token.len() > MAX_TOKEN_LEN {
        return Err(JwtError::Malformed("too long"));
    }
    let mut parts = token.split('.');
    let (Some(h), Some(p), Some(s), None) = (parts.next(), parts.next(), parts.next(), parts.next()) else {
        return Err(JwtError::Malformed("expected three dot-separated parts"));
    };
    let header_bytes = URL_SAFE_NO_PAD
        .decode(h)
        .map_err(|_| JwtError::Malformed("header is not base64url"))?;
    let header_obj: Map<String, Value> = serde_json::from_slice(&header_bytes)
        .map_err(|_| JwtError::Malformed("header is not a JSON object"))?;
    for name in FORBIDDEN_HEADERS {
        if header_obj.contains_key(name) {
            return Err(JwtError::ForbiddenHeader(name));
        }
    }
    let header: Header = serde_json::from_value(Value::Object(header_obj))
        .map_err(|_| JwtError::Malformed("header lacks a string alg"))?;
    let payload = URL_SAFE_NO_PAD
        .decode(p)
        .map_err(|_| JwtError::Malformed("payload is not base64url"))?;
    let claims: Map<String, Value> =
        serde_json::from_slice(&payload).map_err(|_| JwtError::Malformed("payload is not a JSON object"))?;
    let signature = URL_SAFE_NO_PAD
        .decode(s)
        .map_err(|_| JwtError::Malformed("signature is not base64url"))?;
    let signing_input = &token[..h.len() + 1 + p.len()];
    Ok(Parsed {
        header,
        claims,
        signing_input,
        signature,
    })
}

/// Signs `claims` with `key` into a compact JWS.
pub fn sign(claims: &Value, key: &SigningKey) -> crate::error::Result<String> {
    let header = serde_json::json!({ "alg": key.alg.as_str(), "kid": key.kid, "typ": "JWT" });
    let mut token = URL_SAFE_NO_PAD.encode(header.to_string());
    token.push('.');
    token.push_str(&URL_SAFE_NO_PAD.encode(claims.to_string()));
    let sig = key.sign(token.as_bytes())?;
    token.push('.');
    token.push_str(&URL_SAFE_NO_PAD.encode(sig));
    Ok(token)
}

/// What the verifier insists on besides a good signature.
#[derive(Debug, Clone)]
pub struct Expectations<'a> {
    pub issuer: &'a str,
    /// When set, `aud` must equal it or (as an array) contain it.
    pub audience: Option<&'a str>,
    pub now: Now,
}

/// Checks signature and time claims; returns the claims.
/// Where a verifier finds the public key named by a token's `kid`: our own key ring, or the
/// keys another service published (a JWKS).
pub trait KeyLookup {
    fn key(&self, kid: &str) -> Option<&VerifyingKey>;
}

impl KeyLookup for KeyRing {
    fn key(&self, kid: &str) -> Option<&VerifyingKey> {
        self.verifier(kid)
    }
}

/// Public keys read from a JWKS document. Entries we cannot use (other key types, private
/// material) are skipped, never trusted.
#[derive(Debug, Clone, Default)]
pub struct PublicKeys {
    keys: Vec<VerifyingKey>,
}

impl PublicKeys {
    pub fn from_jwks(doc: &Value) -> Self {
        let keys = doc
            .get("keys")
            .and_then(Value::as_array)
            .map(|keys| {
                keys.iter()
                    .filter_map(|k| VerifyingKey::from_jwk(k).ok())
                    .collect()
            })
            .unwrap_or_default();
        PublicKeys { keys }
    }

    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }
}

impl KeyLookup for PublicKeys {
    fn key(&self, kid: &str) -> Option<&VerifyingKey> {
        self.keys.iter().find(|k| k.kid == kid)
    }
}

pub fn verify(
    token: &str,
    ring: &dyn KeyLookup,
    expect: &Expectations<'_>,
) -> Result<Map<String, Value>, JwtError> {
    let parsed = parse(token)?;
    let alg = match parsed.header.alg.as_str() {
        "RS256" => Algorithm::RS256,
        "ES256" => Algorithm::ES256,
        "EdDSA" => Algorithm::EdDSA,
        other => return Err(JwtError::AlgorithmNotAllowed(other.to_owned())),
    };
    let kid = parsed
        .header
        .kid
        .as_deref()
        .ok_or(JwtError::Malformed("header lacks kid"))?;
    let key = ring
        .key(kid)
        .ok_or_else(|| JwtError::UnknownKey(kid.to_owned()))?;
    if key.alg != alg {
        return Err(JwtError::KeyAlgorithmMismatch);
    }
    if !key.verify(parsed.signing_input.as_bytes(), &parsed.signature) {
        return Err(JwtError::BadSignature);
    }
    check_claims(&parsed.claims, expect)?;
    Ok(parsed.claims)
}

fn check_claims(claims: &Map<String, Value>, expect: &Expectations<'_>) -> Result<(), JwtError> {
    let now = expect.now.secs();
    let exp = claims
        .get("exp")
        .and_then(Value::as_i64)
        .ok_or(JwtError::Malformed("exp missing"))?;
    if now > exp.saturating_add(LEEWAY_SECS) {
        return Err(JwtError::Expired);
    }
    if let Some(nbf) = claims.get("nbf") {
        let nbf = nbf.as_i64().ok_or(JwtError::Malformed("nbf is not a number"))?;
        if now.saturating_add(LEEWAY_SECS) < nbf {
            return Err(JwtError::NotYetValid);
        }
    }
    if let Some(iat) = claims.get("iat") {
        let iat = iat.as_i64().ok_or(JwtError::Malformed("iat is not a number"))?;
        if now.saturating_add(LEEWAY_SECS) < iat {
            return Err(JwtError::NotYetValid);
        }
    }
    if claims.get("iss").and_then(Value::as_str) != Some(expect.issuer) {
        return Err(JwtError::WrongIssuer);
    }
    if let Some(aud) = expect.audience {
        let ok = match claims.get("aud") {
            Some(Value::String(s)) => s == aud,
            Some(Value::Array(items)) => items.iter().any(|v| v.as_str() == Some(aud)),
            _ => false,
        };
        if !ok {
            return Err(JwtError::WrongAudience);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::{generate, MasterKey};
    use proptest::prelude::*;
    use serde_json::json;

    const ISS: &str = "https://ims.test";

    fn now() -> Now {
        Now::from_millis(1_700_000_000_000)
    }

    fn ring(alg: Algorithm) -> KeyRing {
        let m = MasterKey::generate();
        KeyRing::load(vec![generate(alg, &m, now(), now()).unwrap()], &m, None).unwrap()
    }

    fn claims() -> Value {
        json!({"iss": ISS, "sub": "x", "aud": "c1", "iat": now().secs(), "exp": now().secs() + 600})
    }

    fn expect(at: Now) -> Expectations<'static> {
        Expectations {
            issuer: ISS,
            audience: Some("c1"),
            now: at,
        }
    }

    fn forge(header: Value, claims: &Value, sig: &[u8]) -> String {
        format!(
            "{}.{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string()),
            URL_SAFE_NO_PAD.encode(sig)
        )
    }

    #[test]
    fn round_trip_each_algorithm() {
        for alg in Algorithm::ALL {
            let r = ring(alg);
            let tok = sign(&claims(), r.signer(alg, now()).unwrap()).unwrap();
            let got = verify(&tok, &r, &expect(now())).unwrap();
            assert_eq!(got["sub"], "x");
        }
    }

    #[test]
    fn alg_none_is_refused() {
        let r = ring(Algorithm::RS256);
        let kid = r.signer(Algorithm::RS256, now()).unwrap().kid.clone();
        let tok = forge(json!({"alg": "none", "kid": kid}), &claims(), b"");
        assert_eq!(
            verify(&tok, &r, &expect(now())),
            Err(JwtError::AlgorithmNotAllowed("none".into()))
        );
        let tok = format!("{}.", tok.trim_end_matches('.'));
        assert!(verify(&tok, &r, &expect(now())).is_err());
    }

    #[test]
    fn rs_hs_confusion_is_refused() {
        // The classic attack: HMAC-sign with the RSA public key published in the JWKS.
        let r = ring(Algorithm::RS256);
        let signer = r.signer(Algorithm::RS256, now()).unwrap();
        let jwks = r.jwks(now(), 3600);
        let public = jwks["keys"][0].to_string();
        let header = json!({"alg": "HS256", "kid": signer.kid});
        let unsigned = forge(header.clone(), &claims(), b"");
        let input = unsigned.rsplit_once('.').unwrap().0;
        let key = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, public.as_bytes());
        let mac = aws_lc_rs::hmac::sign(&key, input.as_bytes());
        let tok = forge(header, &claims(), mac.as_ref());
        assert_eq!(
            verify(&tok, &r, &expect(now())),
            Err(JwtError::AlgorithmNotAllowed("HS256".into()))
        );
    }

    #[test]
    fn key_is_bound_to_its_algorithm() {
        let r = ring(Algorithm::ES256);
        let signer = r.signer(Algorithm::ES256, now()).unwrap();
        let good = sign(&claims(), signer).unwrap();
        let (_, rest) = good.split_once('.').unwrap();
        let header = URL_SAFE_NO_PAD.encode(json!({"alg": "RS256", "kid": signer.kid}).to_string());
        let tok = format!("{header}.{rest}");
        assert_eq!(
            verify(&tok, &r, &expect(now())),
            Err(JwtError::KeyAlgorithmMismatch)
        );
    }

    #[test]
    fn untrusted_key_headers_are_refused() {
        let r = ring(Algorithm::ES256);
        for h in ["jku", "x5u", "jwk", "x5c"] {
            let tok = forge(
                json!({"alg": "ES256", "kid": "k", h: "https://evil.example/keys"}),
                &claims(),
                b"x",
            );
            assert_eq!(
                verify(&tok, &r, &expect(now())).unwrap_err(),
                JwtError::ForbiddenHeader(h)
            );
        }
    }

    #[test]
    fn unknown_kid_and_tampering() {
        let r = ring(Algorithm::ES256);
        let other = ring(Algorithm::ES256);
        let tok = sign(&claims(), other.signer(Algorithm::ES256, now()).unwrap()).unwrap();
        assert!(matches!(
            verify(&tok, &r, &expect(now())),
            Err(JwtError::UnknownKey(_))
        ));
        let good = sign(&claims(), r.signer(Algorithm::ES256, now()).unwrap()).unwrap();
        let mut parts: Vec<&str> = good.split('.').collect();
        let evil = URL_SAFE_NO_PAD
            .encode(json!({"iss": ISS, "aud": "c1", "exp": now().secs() + 9999, "sub": "admin"}).to_string());
        parts[1] = &evil;
        assert_eq!(
            verify(&parts.join("."), &r, &expect(now())),
            Err(JwtError::BadSignature)
        );
    }

    #[test]
    fn time_issuer_and_audience() {
        let r = ring(Algorithm::EdDSA);
        let tok = sign(&claims(), r.signer(Algorithm::EdDSA, now()).unwrap()).unwrap();
        assert!(
            verify(&tok, &r, &expect(now().plus_secs(600 + 60))).is_ok(),
            "within leeway"
        );
        assert_eq!(
            verify(&tok, &r, &expect(now().plus_secs(600 + 61))),
            Err(JwtError::Expired)
        );
        assert_eq!(
            verify(&tok, &r, &expect(now().plus_secs(-61))),
            Err(JwtError::NotYetValid)
        );
        let e = Expectations {
            issuer: "https://other",
            audience: None,
            now: now(),
        };
        assert_eq!(verify(&tok, &r, &e), Err(JwtError::WrongIssuer));
        let e = Expectations {
            issuer: ISS,
            audience: Some("c2"),
            now: now(),
        };
        assert_eq!(verify(&tok, &r, &e), Err(JwtError::WrongAudience));
    }

    proptest! {
        #[test]
        fn parse_never_panics(s in ".{0,300}") {
            let _ = parse(&s);
        }

        #[test]
        fn parse_never_panics_on_dotted_base64(a in "[A-Za-z0-9_-]{0,80}", b in "[A-Za-z0-9_-]{0,80}", c in "[A-Za-z0-9_-]{0,80}") {
            let _ = parse(&format!("{a}.{b}.{c}"));
        }

        #[test]
        fn any_json_header_and_payload_is_handled(h in any::<std::collections::HashMap<String, String>>(), alg in "(none|HS256|RS256|ES256|EdDSA|PS256)") {
            let r = ring_cached();
            let mut header = Map::new();
            for (k, v) in h { header.insert(k, Value::String(v)); }
            header.insert("alg".into(), Value::String(alg));
            let tok = forge(Value::Object(header), &claims(), b"sig");
            prop_assert!(verify(&tok, r, &expect(now())).is_err());
        }
    }

    fn ring_cached() -> &'static KeyRing {
        static RING: std::sync::OnceLock<KeyRing> = std::sync::OnceLock::new();
        RING.get_or_init(|| ring(Algorithm::ES256))
    }
}
