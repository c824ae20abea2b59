//! What every service of the product stands on: the clock, secrets and their comparison, the
//! password hasher, signing keys and JWS, storage errors, the audit line and the lock-out model.
//! No product knowledge lives here (no organisation, no operator), and nothing here reaches a
//! database, the network or another crate of the workspace.

pub mod audit;
pub mod clock;
pub mod error;
pub mod jose;
pub mod keys;
pub mod lockout;
pub mod net;
pub mod password;
pub mod secret;
pub mod time;

pub use clock::Now;
pub use error::{Error, ErrorKind, Result, StoreError, StoreResult};
