//! The IMS domain: organisations, technical accounts and their secrets, signing keys, and the token
//! service. No HTTP and no SQL here: storage is reached through the traits in [`store`], the wire
//! through the HTTP crate.

pub mod admin;
pub mod credentials;
pub mod developer;
pub mod directory;
pub mod grants;
pub mod import;
pub mod invitations;
pub mod links;
pub mod mail;
pub mod model;
pub mod oidc;
pub mod people;
pub mod scope;
pub mod service;
pub mod store;
pub mod throttle;
pub mod totp;
pub mod umapi;
