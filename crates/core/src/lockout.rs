//! The one brute-force model of every password path (the IMS's sign-in pages and
//! administration API, an instance's `Logon` and console): its numbers, and how an attempt is let
//! in. Attempts are counted before the password or code is checked, on the account (folded, see
//! [`account_key`]) and on the caller's address, each by one statement of the store that
//! decides, so that concurrent guesses cannot slip past the count. A success clears the
//! account's counter (its caller does, with the success) and takes its attempt back from the
//! address's.

use async_trait::async_trait;

use crate::clock::Now;
use crate::error::StoreResult;

/// Failed sign-ins, counted per organisation and lower-cased email.
#[async_trait]
pub trait ThrottleStore: Send + Sync {
    /// Lets one sign-in attempt in unless a lock is in force, in one statement, so that
    /// concurrent attempts are decided one at a time. An admitted attempt counts as a failure
    /// until a success clears the counter, and locks for `lock_ms[count - 1]` from now (the last
    /// entry beyond); a refused one changes nothing. A counter starts over after `reset_secs`
    /// without attempts. Returns whether this attempt (`attempt_id`) was let in, and the count.
    async fn admit_attempt(
        &self,
        org_id: &str,
        email_lower: &str,
        now: Now,
        reset_secs: i64,
        lock_ms: &[i64],
        attempt_id: &str,
    ) -> StoreResult<(bool, u32)>;
    /// Failures so far and the lock in force, if any failures are recorded.
    async fn failures(&self, org_id: &str, email_lower: &str) -> StoreResult<Option<(u32, Now, Now)>>;
    async fn clear_failures(&self, org_id: &str, email_lower: &str) -> StoreResult<()>;
    /// Takes one admitted attempt back (a success on a shared counter); below `free` attempts no
    /// lock stands.
    async fn forgive_attempt(&self, org_id: &str, key: &str, free: u32) -> StoreResult<()>;
}

/// Failures before the first lock.
pub const FREE_FAILURES: u32 = 5;
/// The first lock; each further failure doubles it.
pub const FIRST_LOCK_SECS: i64 = 30;
pub const MAX_LOCK_SECS: i64 = 15 * 60;
/// A counter starts over after this long without a failure.
pub const FAILURE_RESET_SECS: i64 = 12 * 3600;

/// Failures from one client address, net of its successes, before it is locked: far more than
/// an account's, since everyone behind an office's NAT or a proxy shares an address (and a
/// migration sends people who still try their old passwords), few enough that spraying one
/// password across many accounts stops after a hundred tries and then crawls (one try per lock,
/// the lock doubling to 15 minutes). Every password path counts addresses too.
pub const ADDRESS_FREE_FAILURES: u32 = 100;
/// The scope of an address's counter (no organisation id, nor an instance's login realm, starts
/// with `@`).
pub const ADDRESS_SCOPE: &str = "@address";

/// How long the `n`th failure locks sign-in.
pub fn lock_secs(failures: u32) -> i64 {
    lock_after(failures, FREE_FAILURES)
}

/// How long the `n`th failure locks when `free` failures are let through.
fn lock_after(failures: u32, free: u32) -> i64 {
    if failures < free {
        return 0;
    }
    let doublings = (failures - free).min(16);
    FIRST_LOCK_SECS.saturating_mul(1 << doublings).min(MAX_LOCK_SECS)
}

/// The lock each counted failure sets, in milliseconds (`[n - 1]` for the `n`th; the last
/// repeats): what every password path hands its counter.
pub fn lock_schedule_ms() -> Vec<i64> {
    schedule(FREE_FAILURES)
}

/// The same for a client address (see [`ADDRESS_FREE_FAILURES`]).
pub fn address_lock_schedule_ms() -> Vec<i64> {
    schedule(ADDRESS_FREE_FAILURES)
}

fn schedule(free: u32) -> Vec<i64> {
    (1..=free + 6)
        .map(|n| lock_after(n, free).saturating_mul(1000))
        .collect()
}

/// The key a failure counter files an account name under: compatibility forms folded (NFKC, so
/// full-width and other look-alike spellings of a name count as one) and lower-cased, whatever
/// the case or normal form an attacker types.
pub fn account_key(name: &str) -> String {
    use unicode_normalization::UnicodeNormalization as _;
    name.trim().nfkc().collect::<String>().to_lowercase()
}

/// How attempts are counted: when a counter starts over, and the lock schedules of the account
/// and of the caller's address (kept under `address_scope`).
#[derive(Clone, Copy, Debug)]
pub struct Limits<'a> {
    pub reset_secs: i64,
    pub account_ms: &'a [i64],
    pub address_scope: &'a str,
    pub address_ms: &'a [i64],
}

/// Lets one attempt on `scope`'s `account` in unless a lock is in force on the account or on
/// `source`, the caller's address; the attempt counts on both. Returns whether it was let in and
/// the account's count. Password attempts use [`admit`].
pub async fn admit_under<S: ThrottleStore + ?Sized>(
    store: &S,
    limits: &Limits<'_>,
    scope: &str,
    account: &str,
    source: Option<&str>,
    now: Now,
) -> StoreResult<(bool, u32)> {
    let attempt = crate::secret::uuid_like();
    let (account_admitted, failures) = store
        .admit_attempt(
            scope,
            account,
            now,
            limits.reset_secs,
            limits.account_ms,
            &attempt,
        )
        .await?;
    let address_admitted = match source {
        Some(source) => {
            store
                .admit_attempt(
                    limits.address_scope,
                    source,
                    now,
                    limits.reset_secs,
                    limits.address_ms,
                    &attempt,
                )
                .await?
                .0
        }
        None => true,
    };
    Ok((account_admitted && address_admitted, failures))
}

/// [`admit_under`] the password limits: every password path counts this way.
pub async fn admit<S: ThrottleStore + ?Sized>(
    store: &S,
    scope: &str,
    account: &str,
    source: Option<&str>,
    now: Now,
) -> StoreResult<(bool, u32)> {
    let (account_ms, address_ms) = (lock_schedule_ms(), address_lock_schedule_ms());
    let limits = Limits {
        reset_secs: FAILURE_RESET_SECS,
        account_ms: &account_ms,
        address_scope: ADDRESS_SCOPE,
        address_ms: &address_ms,
    };
    admit_under(store, &limits, scope, account, source, now).await
}

/// A success takes its attempt back from the caller's address (the account's counter is cleared
/// by the caller, with the success itself).
pub async fn forgive_address<S: ThrottleStore + ?Sized>(store: &S, source: Option<&str>) -> StoreResult<()> {
    match source {
        Some(source) => {
            store
                .forgive_attempt(ADDRESS_SCOPE, source, ADDRESS_FREE_FAILURES)
                .await
        }
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lock_out_numbers() {
        let got: Vec<i64> = (1..=12).map(lock_secs).collect();
        assert_eq!(got, vec![0, 0, 0, 0, 30, 60, 120, 240, 480, 900, 900, 900]);
        assert_eq!(lock_secs(u32::MAX), MAX_LOCK_SECS);
    }
}
