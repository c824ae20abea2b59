//! Per-caller request budgets: a token bucket per key (a client id), refilled continuously. A
//! refused call learns how long to wait. This one is held in memory, for a store that holds no
//! budgets (SQLite: one node); on PostgreSQL the nodes share the store's (`BudgetStore`).

use std::collections::HashMap;
use std::sync::Mutex;

use ims_core::Now;

/// Most keys remembered; past it, keys whose bucket is full again are forgotten first.
const MAX_KEYS: usize = 10_000;

#[derive(Debug)]
pub struct RateLimiter {
    per_minute: u32,
    buckets: Mutex<HashMap<String, (f64, i64)>>,
}

impl RateLimiter {
    /// `per_minute` calls a minute per key, up to that many at once. 0 means no limit.
    pub fn new(per_minute: u32) -> Self {
        RateLimiter {
            per_minute,
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Takes one call from `key`'s budget, or says after how many seconds one is available.
    pub fn admit(&self, key: &str, now: Now) -> Result<(), u64> {
        if self.per_minute == 0 {
            return Ok(());
        }
        let capacity = f64::from(self.per_minute);
        let per_ms = capacity / 60_000.0;
        let mut buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        if buckets.len() >= MAX_KEYS && !buckets.contains_key(key) {
            buckets.retain(|_, (tokens, at)| {
                let elapsed = now.millis().saturating_sub(*at) as f64;
                *tokens + elapsed * per_ms < capacity
            });
        }
        let (tokens, at) = buckets.entry(key.to_owned()).or_insert((capacity, now.millis()));
        let elapsed = now.millis().saturating_sub(*at).max(0) as f64;
        *tokens = (*tokens + elapsed * per_ms).min(capacity);
        *at = now.millis();
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            Ok(())
        } else {
            let wait_ms = (1.0 - *tokens) / per_ms;
            Err((wait_ms / 1000.0).ceil().max(1.0) as u64)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_then_the_refill_rate() {
        let limiter = RateLimiter::new(60);
        let t0 = Now::from_millis(1_000_000);
        for _ in 0..60 {
            assert!(limiter.admit("c", t0).is_ok());
        }
        assert_eq!(limiter.admit("c", t0), Err(1), "one a second after the burst");
        assert!(limiter.admit("other", t0).is_ok(), "budgets are per key");
        assert!(limiter.admit("c", Now::from_millis(1_001_000)).is_ok());
        assert!(limiter.admit("c", Now::from_millis(1_001_000)).is_err());
        assert!(RateLimiter::new(0).admit("c", t0).is_ok());
    }
}
