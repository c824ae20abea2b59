//! Operators every instance knows by name: those installed with it, and the allow-list of those
//! that may still sign in natively once native sign-in is otherwise refused.

/// Operators that exist from installation, and what they are for.
pub const BUILTIN_OPERATORS: &[(&str, &str)] = &[
    ("admin", "Administrator"),
    ("webapp", "Web applications agent"),
    ("aemserver", "Content management server"),
    ("campaign-loginmonitor", "Sign-in monitoring"),
    ("internal", "Internal"),
    ("monitoring", "Monitoring"),
];

/// Operators that may still sign in natively where native sign-in is otherwise refused (the
/// default allow-list; `internal|monitoring` is one entry listing two operators).
pub const DEFAULT_ALLOW_LIST: &[&str] = &[
    "admin",
    "aemserver",
    "campaign-loginmonitor",
    "internal|monitoring",
];

/// Whether `login` is one of the names of `entries` (each entry possibly `a|b`).
pub fn allow_listed<S: AsRef<str>>(entries: &[S], login: &str) -> bool {
    entries
        .iter()
        .any(|entry| entry.as_ref().split('|').any(|name| name == login))
}

/// Whether an `allowOperator/@name` value (already trimmed) is well formed.
pub fn valid_allow_entry(entry: &str) -> bool {
    !entry.is_empty()
        && entry
            .split('|')
            .all(|n| !n.is_empty() && !n.chars().any(char::is_whitespace))
}
