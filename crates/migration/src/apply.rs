//! What applying a plan is given (its options, the fail points a test may set) and how it
//! refuses or fails.

use std::path::PathBuf;

use serde::Serialize;

use crate::client::Error;

/// An operator (or the instance) a step or a check is about, and why.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct Skipped {
    pub login: String,
    pub reason: String,
}

/// Why planning or applying did not start, or stopped.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    #[error("the state drifted since the plan was made; plan again. {}", describe(.0))]
    Drift(Vec<Skipped>),
    #[error(transparent)]
    Service(#[from] Error),
    #[error("the journal: {0}")]
    Journal(#[from] ims_core::error::StoreError),
    #[error("the integration kit could not be written: {0}")]
    Kit(String),
    #[error("this step needs the IMS, and none was given")]
    NoIms,
    #[error(
        "{0} does not sign people in through the IMS yet: people moved now could not get in; configure it first (`ims migrate prepare --ims-connection`, or `ims instance ims-config --register` on `ims up`)"
    )]
    NoWayIn(String),
    #[error("build {build} of {instance} cannot move people to sign-in through the IMS; upgrade to one of: {builds}")]
    Build {
        instance: String,
        build: String,
        builds: String,
    },
    /// A pilot wave naming groups or logins the instance does not have.
    #[error("{0}")]
    Wave(String),
    #[error("no end-user plan {plan} in the journal of {instance}")]
    NoSuchPlan { plan: String, instance: String },
    #[error("no applied plan moved {}: nothing was done", .0.join(", "))]
    NotMoved(Vec<String>),
    #[error("the association mask {0:?} does not read: {1}")]
    Mask(String, String),
    #[error("the journal holds a plan {0} that does not read: {1}")]
    Unreadable(String, String),
}

fn describe(items: &[Skipped]) -> String {
    items
        .iter()
        .map(|s| format!("{}: {}", s.login, s.reason))
        .collect::<Vec<_>>()
        .join("; ")
}

/// Where a test may stop the engine dead (`std::process::abort`, as a `kill -9` would): at a
/// named boundary, the `nth` time it is reached.
#[derive(Clone, Debug, Default)]
pub struct FailPoint {
    pub name: String,
    pub nth: u32,
    reached: std::sync::Arc<std::sync::atomic::AtomicU32>,
}

impl FailPoint {
    /// `name` or `name:nth` (`IMS_MIGRATE_FAIL_AT`).
    pub fn parse(spec: &str) -> Self {
        let (name, nth) = match spec.split_once(':') {
            Some((n, k)) => (n, k.parse().unwrap_or(1)),
            None => (spec, 1),
        };
        FailPoint {
            name: name.to_owned(),
            nth: nth.max(1),
            reached: Default::default(),
        }
    }

    fn reach(&self, name: &str) {
        if self.name == name {
            let n = self.reached.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1;
            if n == self.nth {
                eprintln!("fail point {name} reached: stopping dead");
                std::process::abort();
            }
        }
    }
}

/// The step boundaries of applying, in order (for fail points and the crash matrix).
pub const BOUNDARIES: &[&str] = &[
    "plan-stored",
    "identity-begun",
    "identity-acted",
    "identity-ended",
    "users-read",
    "switch-begun",
    "switch-acted",
    "switch-ended",
    "unassign-ended",
];

#[derive(Clone, Debug, Default)]
pub struct ApplyOptions {
    pub dry_run: bool,
    /// Operators per journaled batch on the instance side.
    pub batch: usize,
    pub fail_at: Option<FailPoint>,
    /// Where the technical phase writes integration kits (`<kit_dir>/<instance>/<login>/`).
    pub kit_dir: PathBuf,
}

impl ApplyOptions {
    pub(crate) fn reach(&self, name: &str) {
        if let Some(f) = &self.fail_at {
            f.reach(name);
        }
    }
}
