#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! The storage suite. Every test runs on SQLite and on PostgreSQL (`TEST_POSTGRES_URL`, default
//! the local test database; set it to `skip` to skip PostgreSQL loudly). Each PostgreSQL run gets a
//! schema of its own, so parallel runs do not collide.

mod clients;
mod developer;
mod directory;
mod harness;
mod instance;
mod journal;
mod migrations;
mod outbox;
mod people;
