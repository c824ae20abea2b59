//! Human passwords: Argon2id at OWASP's parameters, computed on a few dedicated threads (one per
//! core) that each keep their 19 MiB of working memory between hashes: a hash costs no allocation
//! or page faults, and memory stays bounded however many sign-ins queue.

use argon2::password_hash::PasswordHash;
use argon2::{Algorithm, Argon2, Block, Params, Version};
use std::sync::{mpsc, Mutex, OnceLock};

use crate::error::{Error, Result};
use crate::secret::Secret;

/// OWASP: m = 19 MiB, t = 2, p = 1.
const MEMORY_KIB: u32 = 19_456;
const ITERATIONS: u32 = 2;
const PARALLELISM: u32 = 1;
const OUTPUT_LEN: usize = 32;

fn params() -> Result<Params> {
    Params::new(MEMORY_KIB, ITERATIONS, PARALLELISM, Some(OUTPUT_LEN))
        .map_err(|e| Error::internal(format!("argon2 parameters: {e}")))
}

enum Job {
    Hash(Secret, tokio::sync::oneshot::Sender<Result<String>>),
    Verify(Secret, String, tokio::sync::oneshot::Sender<Result<bool>>),
}

/// The queue the hashing threads serve, started at first use.
fn queue() -> &'static Mutex<mpsc::Sender<Job>> {
    static QUEUE: OnceLock<Mutex<mpsc::Sender<Job>>> = OnceLock::new();
    QUEUE.get_or_init(|| {
        let (tx, rx) = mpsc::channel::<Job>();
        let rx = std::sync::Arc::new(Mutex::new(rx));
        let workers = std::thread::available_parallelism().map_or(2, |n| n.get());
        for i in 0..workers {
            let rx = std::sync::Arc::clone(&rx);
            let spawned = std::thread::Builder::new()
                .name(format!("argon2-{i}"))
                .spawn(move || worker(&rx));
            if let Err(e) = spawned {
                tracing::error!(error = %e, "could not start a password hashing thread");
            }
        }
        Mutex::new(tx)
    })
}

fn worker(rx: &Mutex<mpsc::Receiver<Job>>) {
    let mut memory: Vec<Block> = Vec::new();
    loop {
        let job = match rx.lock() {
            Ok(guard) => guard.recv(),
            Err(poisoned) => poisoned.into_inner().recv(),
        };
        match job {
            Ok(Job::Hash(p, reply)) => drop(reply.send(hash_with(&p, &mut memory))),
            Ok(Job::Verify(p, phc, reply)) => drop(reply.send(verify_with(&p, &phc, &mut memory))),
            Err(_) => return,
        }
    }
}

/// Runs `argon2` into `out` with the thread's memory, grown to what `params` needs.
fn compute(
    params: Params,
    password: &[u8],
    salt: &[u8],
    out: &mut [u8],
    memory: &mut Vec<Block>,
) -> Result<()> {
    let blocks = params.block_count();
    if memory.len() != blocks {
        memory.clear();
        memory.resize(blocks, Block::new());
    }
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
        .hash_password_into_with_memory(password, salt, out, &mut memory[..])
        .map_err(|e| Error::internal(format!("argon2: {e}")))
}

fn hash_with(password: &Secret, memory: &mut Vec<Block>) -> Result<String> {
    use base64::engine::general_purpose::STANDARD_NO_PAD;
    use base64::Engine as _;
    let salt = crate::secret::random_bytes::<16>();
    let mut out = [0u8; OUTPUT_LEN];
    compute(params()?, password.expose().as_bytes(), &salt, &mut out, memory)?;
    // The PHC string format, as every Argon2 implementation reads it.
    Ok(format!(
        "$argon2id$v=19$m={MEMORY_KIB},t={ITERATIONS},p={PARALLELISM}${}${}",
        STANDARD_NO_PAD.encode(salt),
        STANDARD_NO_PAD.encode(out)
    ))
}

fn verify_with(password: &Secret, phc: &str, memory: &mut Vec<Block>) -> Result<bool> {
    let parsed = PasswordHash::new(phc).map_err(|e| Error::internal(format!("stored hash: {e}")))?;
    if parsed.algorithm.as_str() != "argon2id" {
        return Err(Error::internal("stored hash is not Argon2id"));
    }
    let expected = parsed
        .hash
        .ok_or_else(|| Error::internal("stored hash has no output"))?;
    let mut salt = [0u8; 64];
    let salt = parsed
        .salt
        .ok_or_else(|| Error::internal("stored hash has no salt"))?
        .decode_b64(&mut salt)
        .map_err(|e| Error::internal(format!("stored salt: {e}")))?;
    let stored = Params::try_from(&parsed).map_err(|e| Error::internal(format!("stored parameters: {e}")))?;
    let params = Params::new(
        stored.m_cost(),
        stored.t_cost(),
        stored.p_cost(),
        Some(expected.len()),
    )
    .map_err(|e| Error::internal(format!("stored parameters: {e}")))?;
    let mut out = vec![0u8; expected.len()];
    compute(params, password.expose().as_bytes(), salt, &mut out, memory)?;
    Ok(subtle::ConstantTimeEq::ct_eq(&out[..], expected.as_bytes()).into())
}

async fn run<T>(make: impl FnOnce(tokio::sync::oneshot::Sender<Result<T>>) -> Job) -> Result<T> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    let sent = match queue().lock() {
        Ok(q) => q.send(make(tx)),
        Err(poisoned) => poisoned.into_inner().send(make(tx)),
    };
    sent.map_err(|_| Error::internal("the password hashing threads are gone"))?;
    rx.await
        .map_err(|_| Error::internal("a password hashing thread stopped"))?
}

pub async fn hash(password: &Secret) -> Result<String> {
    let password = password.clone();
    run(|tx| Job::Hash(password, tx)).await
}

pub async fn verify(password: &Secret, phc: &str) -> Result<bool> {
    let (password, phc) = (password.clone(), phc.to_owned());
    run(|tx| Job::Verify(password, phc, tx)).await
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

    /// Our PHC strings and the argon2 crate's own are interchangeable, so hashes stored before
    /// (or by other tools) keep verifying, and ours verify elsewhere.
    #[tokio::test]
    async fn interoperates_with_the_reference_phc_encoding() {
        use argon2::password_hash::{PasswordHasher, PasswordVerifier, SaltString};
        let pw = Secret::new("correct horse battery staple");
        let reference = Argon2::new(Algorithm::Argon2id, Version::V0x13, params().unwrap());
        let salt = SaltString::encode_b64(b"0123456789abcdef").unwrap();
        let theirs = reference
            .hash_password(pw.expose().as_bytes(), &salt)
            .unwrap()
            .to_string();
        assert!(verify(&pw, &theirs).await.unwrap());
        let ours = hash(&pw).await.unwrap();
        let parsed = PasswordHash::new(&ours).unwrap();
        assert!(reference.verify_password(pw.expose().as_bytes(), &parsed).is_ok());
        assert!(reference.verify_password(b"wrong", &parsed).is_err());
        // Other parameters (an older policy) still verify.
        let weaker = Argon2::new(
            Algorithm::Argon2id,
            Version::V0x13,
            Params::new(8192, 1, 1, None).unwrap(),
        );
        let old = weaker
            .hash_password(pw.expose().as_bytes(), &salt)
            .unwrap()
            .to_string();
        assert!(verify(&pw, &old).await.unwrap());
        assert!(!verify(&Secret::new("nope"), &old).await.unwrap());
    }
}
