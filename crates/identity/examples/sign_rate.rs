//! Raw signing rate of our JWS signer on one thread, per algorithm: the ceiling of token issuance.
//! Run pinned to one core: `taskset -c 0 cargo run --release -p ims-identity --example sign_rate`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use ims_core::keys::{generate, Algorithm, KeyRing, MasterKey};
use ims_core::Now;
use std::time::{Duration, Instant};

fn main() {
    let secs: f64 = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(3.0);
    let master = MasterKey::generate();
    let now = Now::from_millis(0);
    let claims = serde_json::json!({"id": "x", "type": "access_token", "client_id": "c", "scope": "openid", "iat": 0, "exp": 86400});
    for alg in Algorithm::ALL {
        let ring = KeyRing::load(vec![generate(alg, &master, now, now).unwrap()], &master, None).unwrap();
        let key = ring.signer(alg, now).unwrap();
        let start = Instant::now();
        let mut n = 0u64;
        while start.elapsed() < Duration::from_secs_f64(secs) {
            for _ in 0..50 {
                std::hint::black_box(ims_core::jose::sign(&claims, key).unwrap());
            }
            n += 50;
        }
        println!("SIGN {alg} {:.0}/s", n as f64 / start.elapsed().as_secs_f64());
    }
}
