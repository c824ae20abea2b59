//! The `ims` binary end to end: `up` and its contract file, the administration commands, restarts,
//! two nodes on one PostgreSQL database, configuration refusals, and logs free of secrets.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod assessment;
mod end_users;
mod generated;
mod harness;
mod instance_config;
mod mail;
mod operations;
mod technical_and_finalisation;
mod under_load;
mod up;
