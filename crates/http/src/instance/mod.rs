//! A Campaign instance's HTTP surface: the SOAP router and its WSDL, the instance console, and
//! the migration API the engine calls.

pub mod console;
mod migration_api;
pub mod ops;
pub mod soap;
mod wsdl;
