//! Signing keys: generation, encryption at rest under the master key, and the key ring that decides
//! which key signs and which keys are published.
//!
//! Rotation never surprises a verifier: a new key is stored with an activation time in the future,
//! so it appears in the JWKS before anything is signed with it; the key it replaces stays published
//! until every token it signed has expired. Which key signs is derived from the stored activation
//! times alone, so every node that has loaded the same rows makes the same choice.

use aws_lc_rs::aead;
use aws_lc_rs::signature::{self, EcdsaKeyPair, Ed25519KeyPair, KeyPair as _, RsaKeyPair};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use serde_json::json;
use std::fmt;
use std::str::FromStr;
use std::sync::Arc;
use zeroize::Zeroizing;

use crate::clock::Now;
use crate::error::{Error, Result};
use crate::secret::{random_bytes, random_hex};

/// Signing algorithms we issue with. Nothing else is ever accepted by our verifier.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Algorithm {
    RS256,
    ES256,
    EdDSA,
}

impl Algorithm {
    pub const ALL: [Algorithm; 3] = [Algorithm::RS256, Algorithm::ES256, Algorithm::EdDSA];

    pub fn as_str(self) -> &'static str {
        match self {
            Algorithm::RS256 => "RS256",
            Algorithm::ES256 => "ES256",
            Algorithm::EdDSA => "EdDSA",
        }
    }
}

impl fmt::Display for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Algorithm {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "RS256" => Ok(Algorithm::RS256),
            "ES256" => Ok(Algorithm::ES256),
            "EdDSA" => Ok(Algorithm::EdDSA),
            other => Err(Error::invalid_request(format!(
                "unsupported signing algorithm {other:?} (expected RS256, ES256 or EdDSA)"
            ))),
        }
    }
}

/// The 256-bit key that encrypts signing keys at rest (AES-256-GCM).
#[derive(Clone)]
pub struct MasterKey(Zeroizing<[u8; 32]>);

impl fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("MasterKey(<redacted>)")
    }
}

impl MasterKey {
    pub fn generate() -> Self {
        MasterKey(Zeroizing::new(random_bytes::<32>()))
    }

    /// Parses the configured form: 32 bytes in base64 (standard or URL-safe) or 64 hex digits.
    pub fn parse(text: &str) -> Result<Self> {
        let text = text.trim();
        let bytes = if text.len() == 64 && text.bytes().all(|b| b.is_ascii_hexdigit()) {
            (0..32)
                .map(|i| u8::from_str_radix(&text[i * 2..i * 2 + 2], 16))
                .collect::<std::result::Result<Vec<u8>, _>>()
                .map_err(|_| Error::invalid_request("master key: bad hex"))?
        } else {
            base64::engine::general_purpose::STANDARD
                .decode(text)
                .or_else(|_| URL_SAFE_NO_PAD.decode(text.trim_end_matches('=')))
                .map_err(|_| Error::invalid_request("master key: expected 32 bytes in base64 or hex"))?
        };
        let arr: [u8; 32] = bytes
            .try_into()
            .map_err(|_| Error::invalid_request("master key: expected exactly 32 bytes"))?;
        Ok(MasterKey(Zeroizing::new(arr)))
    }

    pub fn to_base64(&self) -> String {
        base64::engine::general_purpose::STANDARD.encode(*self.0)
    }

    fn aead_key(&self) -> Result<aead::LessSafeKey> {
        let unbound = aead::UnboundKey::new(&aead::AES_256_GCM, self.0.as_ref())
            .map_err(|_| Error::internal("master key rejected by AES-256-GCM"))?;
        Ok(aead::LessSafeKey::new(unbound))
    }

    /// Encrypts `plain`, binding it to `label` (the key id) so a sealed blob cannot be moved to
    /// another row. Output: nonce || ciphertext || tag, in base64.
    pub fn seal(&self, label: &str, plain: &[u8]) -> Result<String> {
        let nonce_bytes = random_bytes::<12>();
        let mut buf = plain.to_vec();
        self.aead_key()?
            .seal_in_place_append_tag(
                aead::Nonce::assume_unique_for_key(nonce_bytes),
                aead::Aad::from(label.as_bytes()),
                &mut buf,
            )
            .map_err(|_| Error::internal("sealing a signing key failed"))?;
        let mut out = nonce_bytes.to_vec();
        out.extend_from_slice(&buf);
        Ok(base64::engine::general_purpose::STANDARD.encode(out))
    }

    pub fn open(&self, label: &str, sealed: &str) -> Result<Zeroizing<Vec<u8>>> {
        let raw = base64::engine::general_purpose::STANDARD
            .decode(sealed)
            .map_err(|_| Error::internal("sealed signing key is not base64"))?;
        if raw.len() < 12 + 16 {
            return Err(Error::internal("sealed signing key is truncated"));
        }
        let (nonce, body) = raw.split_at(12);
        let nonce = aead::Nonce::try_assume_unique_for_key(nonce)
            .map_err(|_| Error::internal("sealed signing key has a bad nonce"))?;
        let mut body = Zeroizing::new(body.to_vec());
        let plain_len = self
            .aead_key()?
            .open_in_place(nonce, aead::Aad::from(label.as_bytes()), &mut body)
            .map_err(|_| {
                Error::internal(format!(
                    "signing key {label} cannot be decrypted: wrong master key or altered row"
                ))
            })?
            .len();
        body.truncate(plain_len);
        Ok(body)
    }
}

/// A signing key as stored: public part in clear, private part sealed under the master key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredKey {
    pub kid: String,
    pub alg: Algorithm,
    /// The public JWK (JSON text), exactly as published.
    pub public_jwk: String,
    /// PKCS#8 private key, sealed with [`MasterKey::seal`] under the kid.
    pub sealed_private: String,
    pub created_at: Now,
    /// From this instant on (and until a newer key activates) the key signs.
    pub activates_at: Now,
}

enum Signer {
    Rsa(RsaKeyPair),
    Ec(EcdsaKeyPair),
    Ed(Ed25519KeyPair),
}

/// A key that can sign, loaded once and kept in memory.
pub struct SigningKey {
    pub kid: String,
    pub alg: Algorithm,
    signer: Signer,
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SigningKey")
            .field("kid", &self.kid)
            .field("alg", &self.alg)
            .finish()
    }
}

impl SigningKey {
    fn from_pkcs8(kid: String, alg: Algorithm, der: &[u8]) -> Result<Self> {
        let signer = match alg {
            Algorithm::RS256 => Signer::Rsa(
                RsaKeyPair::from_pkcs8(der).map_err(|e| Error::internal(format!("RSA key {kid}: {e}")))?,
            ),
            Algorithm::ES256 => Signer::Ec(
                EcdsaKeyPair::from_pkcs8(&signature::ECDSA_P256_SHA256_FIXED_SIGNING, der)
                    .map_err(|e| Error::internal(format!("EC key {kid}: {e}")))?,
            ),
            Algorithm::EdDSA => Signer::Ed(
                Ed25519KeyPair::from_pkcs8_maybe_unchecked(der)
                    .map_err(|e| Error::internal(format!("Ed25519 key {kid}: {e}")))?,
            ),
        };
        Ok(SigningKey { kid, alg, signer })
    }

    pub fn sign(&self, message: &[u8]) -> Result<Vec<u8>> {
        let rng = aws_lc_rs::rand::SystemRandom::new();
        match &self.signer {
            Signer::Rsa(k) => {
                let mut sig = vec![0u8; k.public_modulus_len()];
                k.sign(&signature::RSA_PKCS1_SHA256, &rng, message, &mut sig)
                    .map_err(|_| Error::internal("RSA signing failed"))?;
                Ok(sig)
            }
            Signer::Ec(k) => Ok(k
                .sign(&rng, message)
                .map_err(|_| Error::internal("ECDSA signing failed"))?
                .as_ref()
                .to_vec()),
            Signer::Ed(k) => Ok(k.sign(message).as_ref().to_vec()),
        }
    }
}

/// The public half of a key, as our verifier uses it.
#[derive(Clone, Debug)]
pub struct VerifyingKey {
    pub kid: String,
    pub alg: Algorithm,
    material: PublicMaterial,
}

#[derive(Clone, Debug)]
enum PublicMaterial {
    Rsa { n: Vec<u8>, e: Vec<u8> },
    Point(Vec<u8>),
}

impl VerifyingKey {
    /// Builds a verifier from a published JWK; refuses anything but the three key types we issue,
    /// and refuses private or symmetric material outright.
    pub fn from_jwk(jwk: &serde_json::Value) -> Result<Self> {
        let field = |name: &str| jwk.get(name).and_then(|v| v.as_str());
        let b64 = |name: &str| -> Result<Vec<u8>> {
            let v = field(name).ok_or_else(|| Error::invalid_request(format!("JWK lacks {name}")))?;
            URL_SAFE_NO_PAD
                .decode(v)
                .map_err(|_| Error::invalid_request(format!("JWK {name} is not base64url")))
        };
        if jwk.get("d").is_some() || jwk.get("k").is_some() {
            return Err(Error::invalid_request(
                "JWK carries private or symmetric material",
            ));
        }
        let kid = field("kid")
            .ok_or_else(|| Error::invalid_request("JWK lacks kid"))?
            .to_owned();
        let alg: Algorithm = field("alg")
            .ok_or_else(|| Error::invalid_request("JWK lacks alg"))?
            .parse()?;
        let material = match (alg, field("kty"), field("crv")) {
            (Algorithm::RS256, Some("RSA"), _) => PublicMaterial::Rsa {
                n: b64("n")?,
                e: b64("e")?,
            },
            (Algorithm::ES256, Some("EC"), Some("P-256")) => {
                let (x, y) = (b64("x")?, b64("y")?);
                if x.len() != 32 || y.len() != 32 {
                    return Err(Error::invalid_request("P-256 coordinates must be 32 bytes"));
                }
                let mut point = vec![4u8];
                point.extend_from_slice(&x);
                point.extend_from_slice(&y);
                PublicMaterial::Point(point)
            }
            (Algorithm::EdDSA, Some("OKP"), Some("Ed25519")) => PublicMaterial::Point(b64("x")?),
            _ => return Err(Error::invalid_request("JWK key type does not match its alg")),
        };
        Ok(VerifyingKey { kid, alg, material })
    }

    pub fn verify(&self, message: &[u8], sig: &[u8]) -> bool {
        match (&self.material, self.alg) {
            (PublicMaterial::Rsa { n, e }, Algorithm::RS256) => signature::RsaPublicKeyComponents { n, e }
                .verify(&signature::RSA_PKCS1_2048_8192_SHA256, message, sig)
                .is_ok(),
            (PublicMaterial::Point(p), Algorithm::ES256) => {
                signature::UnparsedPublicKey::new(&signature::ECDSA_P256_SHA256_FIXED, p)
                    .verify(message, sig)
                    .is_ok()
            }
            (PublicMaterial::Point(p), Algorithm::EdDSA) => {
                signature::UnparsedPublicKey::new(&signature::ED25519, p)
                    .verify(message, sig)
                    .is_ok()
            }
            _ => false,
        }
    }
}

/// Generates a key of `alg`, sealed under `master`, active from `activates_at`.
pub fn generate(alg: Algorithm, master: &MasterKey, now: Now, activates_at: Now) -> Result<StoredKey> {
    let kid = format!("{}-{}", alg.as_str().to_ascii_lowercase(), random_hex(8));
    let rng = aws_lc_rs::rand::SystemRandom::new();
    let (pkcs8, jwk): (Zeroizing<Vec<u8>>, serde_json::Value) = match alg {
        Algorithm::RS256 => {
            use aws_lc_rs::encoding::AsDer as _;
            let pair = RsaKeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048)
                .map_err(|_| Error::internal("RSA key generation failed"))?;
            let der: aws_lc_rs::encoding::Pkcs8V1Der<'_> = pair
                .as_der()
                .map_err(|_| Error::internal("RSA key encoding failed"))?;
            let public = pair.public_key();
            let jwk = json!({
                "kty": "RSA",
                "n": URL_SAFE_NO_PAD.encode(public.modulus().big_endian_without_leading_zero()),
                "e": URL_SAFE_NO_PAD.encode(public.exponent().big_endian_without_leading_zero()),
            });
            (Zeroizing::new(der.as_ref().to_vec()), jwk)
        }
        Algorithm::ES256 => {
            let doc = EcdsaKeyPair::generate_pkcs8(&signature::ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
                .map_err(|_| Error::internal("EC key generation failed"))?;
            let pair = EcdsaKeyPair::from_pkcs8(&signature::ECDSA_P256_SHA256_FIXED_SIGNING, doc.as_ref())
                .map_err(|e| Error::internal(format!("EC key: {e}")))?;
            let point = pair.public_key().as_ref();
            let jwk = json!({
                "kty": "EC",
                "crv": "P-256",
                "x": URL_SAFE_NO_PAD.encode(&point[1..33]),
                "y": URL_SAFE_NO_PAD.encode(&point[33..65]),
            });
            (Zeroizing::new(doc.as_ref().to_vec()), jwk)
        }
        Algorithm::EdDSA => {
            let doc = Ed25519KeyPair::generate_pkcs8(&rng)
                .map_err(|_| Error::internal("Ed25519 key generation failed"))?;
            let pair = Ed25519KeyPair::from_pkcs8(doc.as_ref())
                .map_err(|e| Error::internal(format!("Ed25519 key: {e}")))?;
            let jwk = json!({
                "kty": "OKP",
                "crv": "Ed25519",
                "x": URL_SAFE_NO_PAD.encode(pair.public_key().as_ref()),
            });
            (Zeroizing::new(doc.as_ref().to_vec()), jwk)
        }
    };
    let mut jwk = jwk;
    if let Some(obj) = jwk.as_object_mut() {
        obj.insert("kid".into(), json!(kid));
        obj.insert("alg".into(), json!(alg.as_str()));
        obj.insert("use".into(), json!("sig"));
    }
    Ok(StoredKey {
        sealed_private: master.seal(&kid, &pkcs8)?,
        public_jwk: jwk.to_string(),
        kid,
        alg,
        created_at: now,
        activates_at,
    })
}

struct RingEntry {
    stored: StoredKey,
    verifying: VerifyingKey,
    signing: Arc<SigningKey>,
    /// When a newer key of the same algorithm takes over signing, if one is stored.
    superseded_at: Option<Now>,
}

/// Every stored key, decrypted and ready; the decisions about signing and publishing live here.
pub struct KeyRing {
    entries: Vec<RingEntry>,
}

impl fmt::Debug for KeyRing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list()
            .entries(self.entries.iter().map(|e| (&e.stored.kid, e.stored.alg)))
            .finish()
    }
}

impl KeyRing {
    pub fn empty() -> Self {
        KeyRing { entries: Vec::new() }
    }

    /// Builds the ring from stored rows. Keys already decrypted in `previous` are reused, so a
    /// periodic reload costs one query, not one RSA key parse per key.
    pub fn load(stored: Vec<StoredKey>, master: &MasterKey, previous: Option<&KeyRing>) -> Result<Self> {
        let mut entries = Vec::with_capacity(stored.len());
        for key in stored {
            let known = previous.and_then(|p| p.entries.iter().find(|e| e.stored == key));
            let signing = match known {
                Some(e) => Arc::clone(&e.signing),
                None => {
                    let der = master.open(&key.kid, &key.sealed_private)?;
                    Arc::new(SigningKey::from_pkcs8(key.kid.clone(), key.alg, &der)?)
                }
            };
            let jwk: serde_json::Value = serde_json::from_str(&key.public_jwk)
                .map_err(|e| Error::internal(format!("stored JWK of {}: {e}", key.kid)))?;
            let verifying = VerifyingKey::from_jwk(&jwk)?;
            entries.push(RingEntry {
                stored: key,
                verifying,
                signing,
                superseded_at: None,
            });
        }
        entries.sort_by(|a, b| {
            (a.stored.activates_at, &a.stored.kid).cmp(&(b.stored.activates_at, &b.stored.kid))
        });
        for i in 0..entries.len() {
            let alg = entries[i].stored.alg;
            entries[i].superseded_at = entries[i + 1..]
                .iter()
                .find(|e| e.stored.alg == alg)
                .map(|e| e.stored.activates_at);
        }
        Ok(KeyRing { entries })
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The key that signs now: of `alg`, the one activated most recently, not in the future.
    pub fn signer(&self, alg: Algorithm, now: Now) -> Option<&SigningKey> {
        self.entries
            .iter()
            .rev()
            .find(|e| e.stored.alg == alg && e.stored.activates_at <= now)
            .map(|e| e.signing.as_ref())
    }

    /// Whether a key of `alg` is waiting to take over (published, not yet signing).
    pub fn has_pending(&self, alg: Algorithm, now: Now) -> bool {
        self.entries
            .iter()
            .any(|e| e.stored.alg == alg && e.stored.activates_at > now)
    }

    pub fn verifier(&self, kid: &str) -> Option<&VerifyingKey> {
        self.entries
            .iter()
            .find(|e| e.stored.kid == kid)
            .map(|e| &e.verifying)
    }

    /// Keys to publish: every key that may sign soon, signs now, or signed a token that can still be
    /// alive (`max_token_secs` after it stopped signing).
    pub fn published(&self, now: Now, max_token_secs: i64) -> Vec<&StoredKey> {
        self.entries
            .iter()
            .filter(|e| {
                e.superseded_at
                    .is_none_or(|end| end.plus_secs(max_token_secs) > now)
            })
            .map(|e| &e.stored)
            .collect()
    }

    /// Kids whose every token has expired: safe to delete.
    pub fn expired(&self, now: Now, max_token_secs: i64) -> Vec<String> {
        self.entries
            .iter()
            .filter(|e| {
                e.superseded_at
                    .is_some_and(|end| end.plus_secs(max_token_secs) <= now)
            })
            .map(|e| e.stored.kid.clone())
            .collect()
    }

    /// The JWKS document.
    pub fn jwks(&self, now: Now, max_token_secs: i64) -> serde_json::Value {
        let keys: Vec<serde_json::Value> = self
            .published(now, max_token_secs)
            .into_iter()
            .filter_map(|k| serde_json::from_str(&k.public_jwk).ok())
            .collect();
        json!({ "keys": keys })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: i64) -> Now {
        Now::from_millis(1_700_000_000_000).plus_secs(s)
    }

    #[test]
    fn master_key_round_trip_and_binding() {
        let m = MasterKey::generate();
        let sealed = m.seal("kid-1", b"private").unwrap();
        assert_eq!(&*m.open("kid-1", &sealed).unwrap(), b"private");
        assert!(
            m.open("kid-2", &sealed).is_err(),
            "a blob moved to another kid must not open"
        );
        assert!(MasterKey::generate().open("kid-1", &sealed).is_err());
        assert_eq!(
            MasterKey::parse(&m.to_base64()).unwrap().to_base64(),
            m.to_base64()
        );
        assert!(MasterKey::parse("short").is_err());
    }

    #[test]
    fn every_algorithm_signs_and_verifies() {
        let m = MasterKey::generate();
        for alg in Algorithm::ALL {
            let k = generate(alg, &m, t(0), t(0)).unwrap();
            let jwk: serde_json::Value = serde_json::from_str(&k.public_jwk).unwrap();
            assert!(jwk.get("d").is_none(), "no private material in the JWK");
            let ring = KeyRing::load(vec![k.clone()], &m, None).unwrap();
            let sig = ring.signer(alg, t(1)).unwrap().sign(b"msg").unwrap();
            let v = ring.verifier(&k.kid).unwrap();
            assert!(v.verify(b"msg", &sig));
            assert!(!v.verify(b"msh", &sig));
        }
    }

    #[test]
    fn rotation_publishes_before_signing_and_keeps_old_until_tokens_expire() {
        let m = MasterKey::generate();
        let old = generate(Algorithm::ES256, &m, t(0), t(0)).unwrap();
        let new = generate(Algorithm::ES256, &m, t(100), t(700)).unwrap();
        let ring = KeyRing::load(vec![new.clone(), old.clone()], &m, None).unwrap();
        let kids = |now| {
            ring.published(now, 3600)
                .iter()
                .map(|k| k.kid.clone())
                .collect::<Vec<_>>()
        };
        // Before activation the new key is published but the old one signs.
        assert_eq!(ring.signer(Algorithm::ES256, t(200)).unwrap().kid, old.kid);
        assert!(kids(t(200)).contains(&new.kid));
        // After activation the new key signs; the old one stays while its tokens may live.
        assert_eq!(ring.signer(Algorithm::ES256, t(700)).unwrap().kid, new.kid);
        assert!(kids(t(700 + 3599)).contains(&old.kid));
        assert!(!kids(t(700 + 3600)).contains(&old.kid));
        assert_eq!(ring.expired(t(700 + 3600), 3600), vec![old.kid]);
    }

    #[test]
    fn jwk_with_private_part_is_refused() {
        let jwk = json!({"kty":"EC","crv":"P-256","alg":"ES256","kid":"a","x":"AA","y":"AA","d":"AA"});
        assert!(VerifyingKey::from_jwk(&jwk).is_err());
        let hs = json!({"kty":"oct","alg":"HS256","kid":"a","k":"AA"});
        assert!(VerifyingKey::from_jwk(&hs).is_err());
    }
}
