//! The one lock-out counter of every password path: the IMS's sign-in pages and administration
//! API count in the IMS database, an instance's `Logon` and console in the instance's own. One
//! statement decides (see [`admit`]), so that concurrent guesses cannot slip past the count.

use sqlx::AnyPool;

use ims_core::Now;
use ims_core::StoreResult;

use crate::{backend_error, get, Writer};

/// Where a counter lives: its table and the two columns that key it (a scope, such as the
/// organisation, and the folded account name).
pub(crate) struct Counter {
    pub table: &'static str,
    pub scope: &'static str,
    pub subject: &'static str,
}

/// People of the IMS, per organisation and lower-cased email.
pub(crate) const PEOPLE: Counter = Counter {
    table: "sign_in_failures",
    scope: "org_id",
    subject: "email_lower",
};

/// Operators of an instance, per realm (`native`, or the common address scope) and key.
pub(crate) const OPERATORS: Counter = Counter {
    table: "sign_in_failures",
    scope: "realm",
    subject: "login_key",
};

/// One attempt to count: when, under which policy, and its id (how the caller learns whether
/// it was this attempt that got in).
pub(crate) struct Attempt<'a> {
    pub(crate) now: Now,
    /// A counter whose last attempt is older than this starts over.
    pub(crate) reset_secs: i64,
    /// `lock_ms[n - 1]` is the lock the `n`th counted attempt sets (the last one repeats).
    pub(crate) lock_ms: &'a [i64],
    pub(crate) id: &'a str,
}

/// Counts one attempt unless a lock is in force; returns whether this attempt was let in and the
/// count.
pub(crate) async fn admit(
    pool: &AnyPool,
    writer: &Writer,
    c: &Counter,
    (scope, subject): (&str, &str),
    attempt: &Attempt<'_>,
) -> StoreResult<(bool, u32)> {
    let Attempt {
        now,
        reset_secs,
        lock_ms,
        id: attempt_id,
    } = *attempt;
    let Counter {
        table: t,
        scope: sc,
        subject: su,
    } = c;
    // The lock an attempt that brings the count to n sets (an instant, as a CASE over numbers
    // of ours). A free attempt sets none (0, not "now"): requests read the clock when they
    // start, so a later one may carry an earlier instant than one already counted, and a
    // lock "until now" would refuse it.
    let until = |ms: i64| {
        if ms == 0 {
            "0".to_owned()
        } else {
            format!("$3 + {ms}")
        }
    };
    let mut lock = format!("CASE {t}.failures + 1");
    for (i, ms) in lock_ms.iter().enumerate() {
        lock.push_str(&format!(" WHEN {} THEN {}", i + 1, until(*ms)));
    }
    lock.push_str(&format!(
        " ELSE {} END",
        until(lock_ms.last().copied().unwrap_or(0))
    ));
    let first = until(lock_ms.first().copied().unwrap_or(0));
    // $3 now, $4 the oldest last attempt that still counts, $5 this attempt. Every right-hand
    // side reads the row as it was: stale counters start over, a lock in force refuses and
    // changes nothing, otherwise the attempt counts and sets its lock.
    let sql = format!(
        "INSERT INTO {t} ({sc}, {su}, failures, last_failure, locked_until, admitted)
         VALUES ($1, $2, 1, $3, {first}, $5)
         ON CONFLICT ({sc}, {su}) DO UPDATE SET
           failures = CASE WHEN {t}.last_failure < $4 THEN 1
                           WHEN {t}.locked_until > $3 THEN {t}.failures
                           ELSE {t}.failures + 1 END,
           locked_until = CASE WHEN {t}.last_failure < $4 THEN {first}
                               WHEN {t}.locked_until > $3 THEN {t}.locked_until
                               ELSE {lock} END,
           admitted = CASE WHEN {t}.last_failure >= $4 AND {t}.locked_until > $3
                           THEN {t}.admitted ELSE $5 END,
           last_failure = CASE WHEN {t}.last_failure >= $4 AND {t}.locked_until > $3
                               THEN {t}.last_failure ELSE $3 END"
    );
    // One statement, with the count as it wrote it: on SQLite it runs within this process's
    // turn to write (see `Writer`), on PostgreSQL the row lock orders concurrent attempts.
    let _turn = writer.turn().await?;
    let row = sqlx::query(&format!("{sql} RETURNING failures, admitted"))
        .bind(scope)
        .bind(subject)
        .bind(now.millis())
        .bind(now.millis().saturating_sub(reset_secs.saturating_mul(1000)))
        .bind(attempt_id)
        .fetch_one(writer.pool(pool))
        .await
        .map_err(backend_error)?;
    let n: i64 = get(&row, "failures")?;
    let admitted: String = get(&row, "admitted")?;
    Ok((admitted == attempt_id, u32::try_from(n).unwrap_or(u32::MAX)))
}

/// Takes one attempt back (a success from a shared counter, such as an address's, which a
/// success must not clear for everyone); below `free` attempts no lock stands.
pub(crate) async fn forgive(
    pool: &AnyPool,
    c: &Counter,
    (scope, subject): (&str, &str),
    free: u32,
) -> StoreResult<()> {
    let t = c.table;
    sqlx::query(&format!(
        "UPDATE {t} SET failures = {t}.failures - 1,
                        locked_until = CASE WHEN {t}.failures - 1 < $3 THEN 0 ELSE {t}.locked_until END
         WHERE {} = $1 AND {} = $2 AND {t}.failures > 0",
        c.scope, c.subject
    ))
    .bind(scope)
    .bind(subject)
    .bind(i64::from(free))
    .execute(pool)
    .await
    .map_err(backend_error)?;
    Ok(())
}

/// The count, the last attempt and the lock in force of a counter, if it has one.
pub(crate) async fn failures(
    pool: &AnyPool,
    c: &Counter,
    (scope, subject): (&str, &str),
) -> StoreResult<Option<(u32, Now, Now)>> {
    let row = sqlx::query(&format!(
        "SELECT failures, last_failure, locked_until FROM {} WHERE {} = $1 AND {} = $2",
        c.table, c.scope, c.subject
    ))
    .bind(scope)
    .bind(subject)
    .fetch_optional(pool)
    .await
    .map_err(backend_error)?;
    row.map(|r| {
        let n: i64 = get(&r, "failures")?;
        let last: i64 = get(&r, "last_failure")?;
        let locked: i64 = get(&r, "locked_until")?;
        Ok((
            u32::try_from(n).unwrap_or(u32::MAX),
            Now::from_millis(last),
            Now::from_millis(locked),
        ))
    })
    .transpose()
}

/// Forgets a counter (a success).
pub(crate) async fn clear(pool: &AnyPool, c: &Counter, (scope, subject): (&str, &str)) -> StoreResult<()> {
    sqlx::query(&format!(
        "DELETE FROM {} WHERE {} = $1 AND {} = $2",
        c.table, c.scope, c.subject
    ))
    .bind(scope)
    .bind(subject)
    .execute(pool)
    .await
    .map_err(backend_error)?;
    Ok(())
}
