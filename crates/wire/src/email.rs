//! Email addresses as both services compare and check them.

/// Lower-cased for comparison: emails are compared case-insensitively everywhere.
pub fn email_key(email: &str) -> String {
    email.trim().to_lowercase()
}

/// Whether `email` looks like an address people type: one `@`, text either side, a dot in the
/// domain, no spaces, within the lengths mail allows.
pub fn is_email(email: &str) -> bool {
    email.len() <= 254
        && !email.chars().any(|c| c.is_whitespace() || c.is_control())
        && email.split_once('@').is_some_and(|(local, domain)| {
            !local.is_empty()
                && local.len() <= 64
                && domain.contains('.')
                && !domain.starts_with('.')
                && !domain.ends_with('.')
                && !domain.contains('@')
        })
}
