//! The numbered schema steps of the IMS's database and of an instance's; the runner that applies
//! them is `ims_sql::migrate`.

pub use ims_sql::migrate::Migration;

/// One step: its number, name, and the file of the same stem under each backend's folder
/// (`dir` is empty for the IMS database, `instance/` for instances').
macro_rules! step {
    ($version:literal, $name:literal, $dir:literal, $file:literal) => {
        Migration {
            version: $version,
            name: $name,
            sqlite: include_str!(concat!("../migrations/", $dir, "sqlite/", $file, ".sql")),
            postgres: include_str!(concat!("../migrations/", $dir, "postgres/", $file, ".sql")),
        }
    };
}

/// Every migration of the IMS database this build knows, in order. Append only; never edit a
/// released step.
pub const MIGRATIONS: &[Migration] = &[
    step!(1, "foundation", "", "0001_foundation"),
    step!(2, "people", "", "0002_people"),
    step!(3, "directory", "", "0003_directory"),
    step!(4, "developer", "", "0004_developer"),
    step!(5, "backchannel_logout", "", "0005_backchannel_logout"),
    step!(6, "outbox", "", "0006_outbox"),
    step!(7, "invitations", "", "0007_invitations"),
    step!(8, "shared_state", "", "0008_shared_state"),
];

/// The migrations of an instance's database (its own database: no part reads another's tables).
pub const INSTANCE_MIGRATIONS: &[Migration] = &[
    step!(1, "instance", "instance/", "0001_instance"),
    step!(2, "recipients", "instance/", "0002_recipients"),
    step!(3, "usage_summary", "instance/", "0003_usage_summary"),
    step!(4, "settings", "instance/", "0004_settings"),
    step!(5, "rt_events", "instance/", "0005_rt_events"),
    step!(6, "audit", "instance/", "0006_audit"),
    step!(7, "folder_rights", "instance/", "0007_folder_rights"),
    step!(8, "operator_email", "instance/", "0008_operator_email"),
    step!(9, "usage_by_operator", "instance/", "0009_usage_by_operator"),
    step!(10, "sign_in_failures", "instance/", "0010_sign_in_failures"),
];
