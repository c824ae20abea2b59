//! The migration engine: moves a Campaign instance from native sign-in to the IMS. It talks to
//! the IMS and to the instance only through their public APIs (`client`), exactly as a
//! separately deployed tool would; what it decides is pure (`assess`) and shown by `report`.

pub mod apply;
pub mod assess;
pub mod client;
pub mod finalize;
pub mod inspect;
pub mod journal;
pub mod people;
pub mod plan;
pub mod prepare;
pub mod reconcile;
pub mod report;
pub mod retire;
pub mod rollback;
pub mod run;
pub mod setup;
pub mod status;
pub mod technical;
pub mod users;
pub mod watch;
pub mod wave;

#[cfg(test)]
mod testing;
