//! Human passwords: Argon2id at OWASP's parameters, computed on the blocking pool with a bound on
//! how many run at once (each hash in flight holds about 19 MiB).

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use std::sync::OnceLock;
use tokio::sync::Semaphore;

use crate::error::{Error, Result};
use crate::secret::Secret;

/// OWASP: m = 19 MiB, t = 2, p = 1.
const MEMORY_KIB: u32 = 19_456;
const ITERATIONS: u32 = 2;
const PARALLELISM: u32 = 1;

fn hasher() -> Result<Argon2<'static>> {
    let params = Params::new(MEMORY_KIB, ITERATIONS, PARALLELISM, None)
        .map_err(|e| Error::internal(format!("argon2 parameters: {e}")))?;
    Ok(Argon2::new(Algorithm::Argon2id, Version::V0x13, params))
}

fn pool() -> &'static Semaphore {
    static POOL: OnceLock<Semaphore> = OnceLock::new();
    POOL.get_or_init(|| Semaphore::new(std::thread::available_parallelism().map_or(2, |n| n.get())))
}

pub async fn hash(password: &Secret) -> Result<String> {
    let _permit = pool().acquire().await.map_err(Error::internal)?;
    let password = password.clone();
    tokio::task::spawn_blocking(move || {
        let salt = SaltString::encode_b64(&crate::secret::random_bytes::<16>())
            .map_err(|e| Error::internal(format!("salt: {e}")))?;
        hasher()?
            .hash_password(password.expose().as_bytes(), &salt)
            .map(|h| h.to_string())
            .map_err(|e| Error::internal(format!("argon2: {e}")))
    })
    .await
    .map_err(Error::internal)?
}

pub async fn verify(password: &Secret, phc: &str) -> Result<bool> {
    let _permit = pool().acquire().await.map_err(Error::internal)?;
    let password = password.clone();
    let phc = phc.to_owned();
    tokio::task::spawn_blocking(move || {
        let parsed = PasswordHash::new(&phc).map_err(|e| Error::internal(format!("stored hash: {e}")))?;
        Ok(hasher()?
            .verify_password(password.expose().as_bytes(), &parsed)
            .is_ok())
    })
    .await
    .map_err(Error::internal)?
}

/// A hash of a random password, made once: verifying against it when an account is unknown (or
/// has no password) takes as long as a real check, so timing does not tell accounts apart.
pub async fn decoy_hash() -> Result<String> {
    static DECOY: tokio::sync::OnceCell<String> = tokio::sync::OnceCell::const_new();
    DECOY
        .get_or_try_init(|| async { hash(&crate::secret::generate("")).await })
        .await
        .cloned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn hash_and_verify() {
        let pw = Secret::new("correct horse battery staple");
        let h = hash(&pw).await.unwrap();
        assert!(h.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"));
        assert!(verify(&pw, &h).await.unwrap());
        assert!(!verify(&Secret::new("wrong"), &h).await.unwrap());
    }
}
