//! The Campaign instance's access layer: build versions and what they allow, operators, groups,
//! named rights, sessions, usage evidence, the `where` language of queries. No HTTP and no SQL.

pub mod bearer;
pub mod config;
pub mod connect;
pub mod diagnose;
pub mod fault;
pub mod migration;
pub mod migration_emails;
mod migration_switch;
pub mod model;
pub mod operator_admin;
pub mod operators;
pub mod probe;
pub mod query;
pub mod records;
pub mod restrictions;
pub mod revalidate;
pub mod schemas;
pub mod service;
pub mod sessions;
pub mod signin;
pub mod store;
pub mod usage;
pub mod version;
pub mod wsdl;
pub mod zones;

pub use version::{Build, NativeAuth};
