//! Argon2id verifications per second at the IMS's parameters on one thread: the ceiling of
//! password sign-ins. Run pinned to one core:
//! `taskset -c 0 cargo run --release -p ims-identity --example argon2_rate [seconds]`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use ims_core::secret::Secret;
use std::time::{Duration, Instant};

fn main() {
    let secs: f64 = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(5.0);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let password = Secret::new("a benchmark passphrase");
        let hash = ims_core::password::hash(&password).await.unwrap();
        let start = Instant::now();
        let mut n = 0u64;
        while start.elapsed() < Duration::from_secs_f64(secs) {
            assert!(ims_core::password::verify(&password, &hash).await.unwrap());
            n += 1;
        }
        println!(
            "ARGON2ID_VERIFY {:.1}/s",
            n as f64 / start.elapsed().as_secs_f64()
        );
    });
}
