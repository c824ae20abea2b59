//! Time-based one-time passwords (RFC 6238: HMAC-SHA-1, 30-second steps, 6 digits, one step of
//! drift either way) and single-use recovery codes, stored as digests.

use aws_lc_rs::hmac;

use ims_core::clock::Now;
use ims_core::secret::{self, Secret};

pub const STEP_SECS: i64 = 30;
pub const DIGITS: u32 = 6;
pub const RECOVERY_CODES: usize = 10;

/// The label a person's TOTP secret is sealed under (binds the ciphertext to its owner).
pub fn seal_label(user_id: &str) -> String {
    format!("totp:{user_id}")
}

/// The code of one time step (RFC 4226 dynamic truncation).
pub fn code_at(key: &[u8], step: i64) -> String {
    let k = hmac::Key::new(hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, key);
    let tag = hmac::sign(&k, &step.to_be_bytes());
    let h = tag.as_ref();
    let offset = usize::from(h[h.len() - 1] & 0x0f);
    let bin = (u32::from(h[offset] & 0x7f) << 24)
        | (u32::from(h[offset + 1]) << 16)
        | (u32::from(h[offset + 2]) << 8)
        | u32::from(h[offset + 3]);
    format!("{:0width$}", bin % 10u32.pow(DIGITS), width = DIGITS as usize)
}

/// The step whose code `code` is, among the current one and the one before or after it, if it
/// is later than `last_used` (a code is accepted once, RFC 6238 section 5.2).
pub fn verify(key: &[u8], code: &str, now: Now, last_used: i64) -> Option<i64> {
    if code.len() != DIGITS as usize || !code.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let step = now.secs().div_euclid(STEP_SECS);
    // Every candidate is computed and compared, whichever matches.
    [step - 1, step, step + 1].iter().fold(None, |found, s| {
        let hit = secret::equal_ct(&code_at(key, *s), code) && *s > last_used;
        if hit {
            Some(*s)
        } else {
            found
        }
    })
}

/// RFC 4648 base32 without padding, as authenticator apps take secrets.
pub fn base32(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let mut out = String::with_capacity(bytes.len().div_ceil(5) * 8);
    let (mut buffer, mut bits) = (0u32, 0u32);
    for &b in bytes {
        buffer = (buffer << 8) | u32::from(b);
        bits += 8;
        while bits >= 5 {
            bits -= 5;
            out.push(char::from(ALPHABET[((buffer >> bits) & 31) as usize]));
        }
    }
    if bits > 0 {
        out.push(char::from(ALPHABET[((buffer << (5 - bits)) & 31) as usize]));
    }
    out
}

/// A new enrolment: the secret (20 bytes), and the recovery codes shown once.
pub struct Enrolment {
    pub key: zeroize::Zeroizing<Vec<u8>>,
    pub recovery_codes: Vec<Secret>,
}

pub fn enrol() -> Enrolment {
    let codes = (0..RECOVERY_CODES)
        .map(|_| {
            let hex = secret::random_hex(5);
            Secret::new(format!("{}-{}", &hex[..5], &hex[5..]))
        })
        .collect();
    Enrolment {
        key: zeroize::Zeroizing::new(secret::random_bytes::<20>().to_vec()),
        recovery_codes: codes,
    }
}

fn normalise_recovery(code: &str) -> String {
    code.trim().to_lowercase().replace(['-', ' '], "")
}

/// The digest a recovery code is stored as.
pub fn recovery_digest(code: &str) -> String {
    secret::digest_hex(&normalise_recovery(code))
}

/// Uses up a recovery code: true when `code` was one of `digests` (which loses it).
pub fn take_recovery_code(digests: &mut Vec<String>, code: &str) -> bool {
    if normalise_recovery(code).len() != 10 {
        return false;
    }
    let d = recovery_digest(code);
    match digests.iter().position(|s| secret::equal_ct(s, &d)) {
        Some(i) => {
            digests.remove(i);
            true
        }
        None => false,
    }
}

/// The `otpauth://` URI authenticator apps read (as a QR code or pasted).
pub fn otpauth_uri(issuer: &str, account: &str, key: &[u8]) -> String {
    let enc = |s: &str| url::form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
    format!(
        "otpauth://totp/{}:{}?secret={}&issuer={}&algorithm=SHA1&digits={DIGITS}&period={STEP_SECS}",
        enc(issuer),
        enc(account),
        base32(key),
        enc(issuer)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc6238_sha1_vectors() {
        // RFC 6238 appendix B (SHA-1 key "12345678901234567890"), last six digits.
        let key = b"12345678901234567890";
        for (t, code) in [
            (59, "287082"),
            (1_111_111_109, "081804"),
            (1_234_567_890, "005924"),
            (2_000_000_000, "279037"),
        ] {
            assert_eq!(code_at(key, t / STEP_SECS), code, "t={t}");
        }
        let now = Now::from_millis(59_000);
        assert_eq!(verify(key, "287082", now, 0), Some(1));
        assert_eq!(
            verify(key, "287082", Now::from_millis(59_000 + 30_000), 0),
            Some(1),
            "one step late"
        );
        assert_eq!(
            verify(key, "287082", Now::from_millis(59_000 + 90_000), 0),
            None,
            "three steps late"
        );
        assert_eq!(verify(key, "287082", now, 1), None, "used once already");
        assert_eq!(verify(key, "28708", now, 0), None);
        assert_eq!(verify(key, "28708a", now, 0), None);
    }

    #[test]
    fn base32_of_rfc4648_vectors() {
        assert_eq!(base32(b"foobar"), "MZXW6YTBOI");
        assert_eq!(base32(b"f"), "MY");
        assert_eq!(base32(b""), "");
    }

    #[test]
    fn recovery_codes_are_single_use() {
        let e = enrol();
        let mut stored: Vec<String> = e
            .recovery_codes
            .iter()
            .map(|c| recovery_digest(c.expose()))
            .collect();
        let first = e.recovery_codes[0].expose().to_uppercase();
        assert!(
            take_recovery_code(&mut stored, &first),
            "case and dash do not matter"
        );
        assert!(!take_recovery_code(&mut stored, &first), "used up");
        assert_eq!(stored.len(), RECOVERY_CODES - 1);
        assert!(!take_recovery_code(&mut stored, "0000000000"));
    }
}
