//! The Campaign instance's access layer: build versions and what they allow; later operators,
//! groups, named rights, sessions and restrictions. No HTTP and no SQL here.

pub mod query;
pub mod version;

pub use version::{Build, NativeAuth};
