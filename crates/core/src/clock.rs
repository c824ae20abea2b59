//! The one place that reads the wall clock. Everything else takes a [`Now`] from its caller, so a
//! request sees a single instant and tests choose the time they need.

use std::time::{Duration, UNIX_EPOCH};

/// An instant, as milliseconds since the Unix epoch.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize)]
#[serde(transparent)]
pub struct Now(i64);

impl Now {
    /// Reads the system clock. Call it once at the edge (a request, a command) and pass it down.
    #[allow(clippy::disallowed_methods)]
    pub fn system() -> Self {
        let since = std::time::SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or(Duration::ZERO);
        Now(i64::try_from(since.as_millis()).unwrap_or(i64::MAX))
    }

    pub const fn from_millis(ms: i64) -> Self {
        Now(ms)
    }

    pub const fn millis(self) -> i64 {
        self.0
    }

    pub const fn secs(self) -> i64 {
        self.0.div_euclid(1000)
    }

    pub const fn plus_secs(self, secs: i64) -> Self {
        Now(self.0.saturating_add(secs.saturating_mul(1000)))
    }

    pub const fn plus_millis(self, ms: i64) -> Self {
        Now(self.0.saturating_add(ms))
    }
}
