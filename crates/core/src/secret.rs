//! Secrets in memory and at rest: a redacting newtype, generation of high-entropy values with a
//! recognisable prefix (so secret scanners can spot a leaked one), and digests compared in constant time.

use aws_lc_rs::digest;
use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use subtle::ConstantTimeEq;
use zeroize::Zeroize;

/// Prefix of generated client secrets. Documented so that scanners can be taught to find them.
pub const CLIENT_SECRET_PREFIX: &str = "imscs_";

/// Bytes of CSPRNG output in every generated secret (256 bits).
pub const SECRET_BYTES: usize = 32;

/// A secret value. `Debug` never shows it and the memory is wiped on drop.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// The secret itself: call this only where it leaves the process on purpose.
    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

impl Drop for Secret {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

/// Fills `N` bytes from the operating system's CSPRNG.
pub fn random_bytes<const N: usize>() -> [u8; N] {
    let mut out = [0u8; N];
    // The system source only fails when the OS has no entropy interface at all; there is no safe
    // fallback, so a failure here is fatal by design rather than silently weaker.
    if SystemRandom::new().fill(&mut out).is_err() {
        #[allow(clippy::panic)]
        {
            panic!("the operating system's random number generator is unavailable");
        }
    }
    out
}

/// A new secret: `prefix` followed by 256 random bits in URL-safe base64.
pub fn generate(prefix: &str) -> Secret {
    let bytes = random_bytes::<SECRET_BYTES>();
    Secret(format!("{prefix}{}", URL_SAFE_NO_PAD.encode(bytes)))
}

/// Random identifier in upper-case hex, `bytes` long before encoding.
pub fn random_hex_upper(bytes: usize) -> String {
    random_hex(bytes).to_ascii_uppercase()
}

/// Random identifier in lower-case hex.
pub fn random_hex(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    if SystemRandom::new().fill(&mut buf).is_err() {
        #[allow(clippy::panic)]
        {
            panic!("the operating system's random number generator is unavailable");
        }
    }
    hex(&buf)
}

pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(DIGITS[usize::from(b >> 4)] as char);
        s.push(DIGITS[usize::from(b & 0xf)] as char);
    }
    s
}

/// Digest under which a generated secret is stored. A generated secret has 256 bits of entropy, so a
/// fast hash is as good as a slow one and keeps `client_credentials` bound by signing, not hashing.
pub fn digest_hex(secret: &str) -> String {
    hex(digest::digest(&digest::SHA256, secret.as_bytes()).as_ref())
}

/// Constant-time comparison of two digests (or any two strings of secret material).
pub fn equal_ct(a: &str, b: &str) -> bool {
    a.as_bytes().ct_eq(b.as_bytes()).into()
}

/// A short, non-secret reminder of a secret for listings: its prefix and last four characters.
pub fn hint(secret: &str) -> String {
    let tail: String = secret
        .chars()
        .rev()
        .take(4)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect();
    let head = secret.split('_').next().unwrap_or_default();
    format!("{head}_...{tail}")
}

/// 128 random bits in the 8-4-4-4-12 layout (version 4 bits set), for ids that look like UUIDs.
pub fn uuid_like() -> String {
    let mut b = random_bytes::<16>();
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h = hex(&b);
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

/// The S256 PKCE challenge of a verifier (RFC 7636 section 4.2).
pub fn pkce_challenge(verifier: &str) -> String {
    let digest = digest::digest(&digest::SHA256, verifier.as_bytes());
    URL_SAFE_NO_PAD.encode(digest.as_ref())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_secrets_carry_prefix_and_256_bits() {
        let s = generate(CLIENT_SECRET_PREFIX);
        let body = s.expose().strip_prefix(CLIENT_SECRET_PREFIX).unwrap();
        assert_eq!(URL_SAFE_NO_PAD.decode(body).unwrap().len(), 32);
        assert_ne!(generate(CLIENT_SECRET_PREFIX), s);
    }

    #[test]
    fn debug_redacts() {
        let s = Secret::new("hunter2-planted");
        assert!(!format!("{s:?}").contains("hunter2"));
    }

    #[test]
    fn digest_comparison() {
        let d = digest_hex("abc");
        assert!(equal_ct(&d, &digest_hex("abc")));
        assert!(!equal_ct(&d, &digest_hex("abd")));
        assert_eq!(d.len(), 64);
    }

    #[test]
    fn hint_keeps_no_secret_body() {
        let s = generate(CLIENT_SECRET_PREFIX);
        let h = hint(s.expose());
        assert!(h.starts_with("imscs_..."));
        assert_eq!(h.len(), "imscs_...".len() + 4);
    }
}
