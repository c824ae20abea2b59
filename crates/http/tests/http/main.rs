//! The IMS's HTTP surface through `Router::oneshot`: the token family, the vendor endpoints and
//! the security behaviours they must show. Storage is real: SQLite by default, and the flows that
//! touch every table also run on PostgreSQL.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod account_security;
mod admin_api;
mod admin_console;
mod bearer;
mod campaign_signin;
mod campaign_tokens;
mod credentials_and_keys;
mod developer_api;
mod developer_console;
mod harness;
mod instance_console;
mod invitations;
mod migration_api;
mod native_sign_in;
mod oauth;
mod operations;
mod restrictions;
mod signin;
mod soap;
mod umapi;
mod umapi_model;
