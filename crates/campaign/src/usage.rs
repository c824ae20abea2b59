//! Usage evidence of calls, kept bounded: calls are counted in memory per (operator, action,
//! authentication path, source, client, outcome) and flushed now and then as running totals with
//! first and last times. Sign-ins and refusals are rare and telling, so they are written one by
//! one as events instead (see `Sessions::record`).

use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::Mutex;

use ims_core::Now;

use crate::model::AuthPath;

#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct UsageKey {
    pub login: String,
    pub operator_id: Option<i64>,
    pub action: String,
    pub auth_path: AuthPath,
    /// Empty when unknown.
    pub source: String,
    /// Empty when the client sent none of the headers we keep.
    pub client: String,
    pub outcome: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UsageCounts {
    pub calls: i64,
    pub first_at: Now,
    pub last_at: Now,
}

/// A row of the usage summary.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UsageSummary {
    #[serde(flatten)]
    pub key: UsageKey,
    #[serde(flatten)]
    pub counts: UsageCounts,
}

/// Most distinct keys held before a flush is forced; past it new keys are dropped (and counted),
/// so a flood of distinct sources cannot grow memory without bound.
pub const MAX_PENDING_KEYS: usize = 10_000;

#[derive(Default)]
pub struct UsageRecorder {
    pending: Mutex<(HashMap<UsageKey, UsageCounts>, u64)>,
}

impl std::fmt::Debug for UsageRecorder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("UsageRecorder")
    }
}

impl UsageRecorder {
    pub fn record(&self, key: UsageKey, now: Now) {
        let Ok(mut guard) = self.pending.lock() else {
            return;
        };
        let (map, dropped) = &mut *guard;
        if let Some(c) = map.get_mut(&key) {
            c.calls += 1;
            c.last_at = c.last_at.max(now);
            c.first_at = c.first_at.min(now);
        } else if map.len() < MAX_PENDING_KEYS {
            map.insert(
                key,
                UsageCounts {
                    calls: 1,
                    first_at: now,
                    last_at: now,
                },
            );
        } else {
            *dropped += 1;
        }
    }

    /// Takes what was counted since the last drain, and how many keys were dropped meanwhile.
    pub fn drain(&self) -> (Vec<UsageSummary>, u64) {
        let Ok(mut guard) = self.pending.lock() else {
            return (Vec::new(), 0);
        };
        let (map, dropped) = &mut *guard;
        let rows = map
            .drain()
            .map(|(key, counts)| UsageSummary { key, counts })
            .collect();
        (rows, std::mem::take(dropped))
    }

    /// Puts back rows a failed flush could not write, so nothing counted is lost.
    pub fn restore(&self, rows: Vec<UsageSummary>) {
        let Ok(mut guard) = self.pending.lock() else {
            return;
        };
        for row in rows {
            let e = guard.0.entry(row.key).or_insert(UsageCounts {
                calls: 0,
                first_at: row.counts.first_at,
                last_at: row.counts.last_at,
            });
            e.calls += row.counts.calls;
            e.first_at = e.first_at.min(row.counts.first_at);
            e.last_at = e.last_at.max(row.counts.last_at);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(action: &str) -> UsageKey {
        UsageKey {
            login: "tech".into(),
            operator_id: Some(1),
            action: action.into(),
            auth_path: AuthPath::Bearer,
            source: "10.0.0.1".into(),
            client: String::new(),
            outcome: "success".into(),
        }
    }

    #[test]
    fn counts_aggregate_and_drain_once() {
        let r = UsageRecorder::default();
        r.record(key("a"), Now::from_millis(5));
        r.record(key("a"), Now::from_millis(2));
        r.record(key("b"), Now::from_millis(9));
        let (mut rows, dropped) = r.drain();
        rows.sort_by(|x, y| x.key.action.cmp(&y.key.action));
        assert_eq!(dropped, 0);
        assert_eq!(
            rows[0].counts,
            UsageCounts {
                calls: 2,
                first_at: Now::from_millis(2),
                last_at: Now::from_millis(5)
            }
        );
        assert_eq!(rows[1].counts.calls, 1);
        assert!(r.drain().0.is_empty());
        r.restore(rows);
        assert_eq!(r.drain().0.len(), 2, "a failed flush loses nothing");
    }

    #[test]
    fn distinct_keys_are_bounded() {
        let r = UsageRecorder::default();
        for i in 0..(MAX_PENDING_KEYS + 5) {
            let mut k = key("a");
            k.source = i.to_string();
            r.record(k, Now::from_millis(0));
        }
        let (rows, dropped) = r.drain();
        assert_eq!((rows.len(), dropped), (MAX_PENDING_KEYS, 5));
    }
}
