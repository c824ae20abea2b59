//! Pilot waves: a phase planned for some operators only (those of some groups, or named by
//! login), so that a pilot group moves first and the rest stay as they are until their own plan.

use serde::{Deserialize, Serialize};

use ims_wire::migration::{InstanceFacts, OperatorFacts};

/// The operators a plan is limited to; empty, everyone. An operator is in the wave when it
/// belongs to one of `groups` or its login is one of `logins`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Wave {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub groups: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub logins: Vec<String>,
}

impl Wave {
    pub fn is_everyone(&self) -> bool {
        self.groups.is_empty() && self.logins.is_empty()
    }

    /// Logins compare as the instance compares them at sign-in, ignoring case.
    pub fn takes(&self, op: &OperatorFacts) -> bool {
        self.is_everyone()
            || self.logins.iter().any(|l| l.eq_ignore_ascii_case(&op.login))
            || op.groups.iter().any(|g| self.groups.contains(g))
    }

    /// A wave that names a group the instance does not have, or a login no operator has, is
    /// refused whole: a typo would otherwise leave someone out of the pilot unnoticed.
    pub fn check(&self, facts: &InstanceFacts, ops: &[OperatorFacts]) -> Result<(), String> {
        let unknown_groups: Vec<&str> = self
            .groups
            .iter()
            .filter(|g| !facts.groups.iter().any(|f| &f.name == *g))
            .map(String::as_str)
            .collect();
        let unknown_logins: Vec<&str> = self
            .logins
            .iter()
            .filter(|l| !ops.iter().any(|o| o.login.eq_ignore_ascii_case(l)))
            .map(String::as_str)
            .collect();
        let mut problems = Vec::new();
        if !unknown_groups.is_empty() {
            problems.push(format!(
                "no group {} on {} (its groups: {})",
                unknown_groups.join(", "),
                facts.name,
                facts
                    .groups
                    .iter()
                    .map(|g| g.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
        if !unknown_logins.is_empty() {
            problems.push(format!(
                "no operator {} on {}",
                unknown_logins.join(", "),
                facts.name
            ));
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(format!("the wave: {}", problems.join("; ")))
        }
    }

    /// The wave described, `None` for everyone (what the journal keeps beside the plan).
    pub fn described(&self) -> Option<String> {
        (!self.is_everyone()).then(|| self.describe())
    }

    /// For a plan's summary line: `, wave: ...` after the instance, nothing for everyone.
    pub fn scope(&self) -> String {
        self.described()
            .map(|w| format!(", wave: {w}"))
            .unwrap_or_default()
    }

    /// For a plan's summary line: how many were left out, nothing for everyone.
    pub fn left_out(&self, outside: usize) -> String {
        if self.is_everyone() {
            String::new()
        } else {
            format!(", {outside} outside the wave")
        }
    }

    /// For summaries and `status`: the groups, and the logins (the first five, then a count).
    pub fn describe(&self) -> String {
        if self.is_everyone() {
            return "everyone".to_owned();
        }
        let mut parts = Vec::new();
        if !self.groups.is_empty() {
            parts.push(format!("groups {}", self.groups.join(", ")));
        }
        if !self.logins.is_empty() {
            let shown: Vec<&str> = self.logins.iter().take(5).map(String::as_str).collect();
            let more = self.logins.len().saturating_sub(shown.len());
            parts.push(if more > 0 {
                format!("logins {} and {more} more", shown.join(", "))
            } else {
                format!("logins {}", shown.join(", "))
            });
        }
        parts.join("; ")
    }
}

/// Logins read from a file, one per line; blank lines and lines starting with `#` are skipped.
pub fn logins_from(text: &str) -> Vec<String> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(str::to_owned)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn op(login: &str, groups: &[&str]) -> OperatorFacts {
        let mut o = crate::testing::operator(login);
        o.groups = groups.iter().map(|g| (*g).to_owned()).collect();
        o
    }

    #[test]
    fn a_wave_takes_its_groups_and_logins_and_nobody_else() {
        let wave = Wave {
            groups: vec!["deliveryOperators".into()],
            logins: vec!["Ana".into()],
        };
        assert!(wave.takes(&op("bo", &["deliveryOperators", "admin"])));
        assert!(wave.takes(&op("ana", &["reportAccess"])));
        assert!(!wave.takes(&op("cy", &["reportAccess"])));
        assert!(Wave::default().takes(&op("cy", &[])));
        assert_eq!(wave.describe(), "groups deliveryOperators; logins Ana");
        let many = Wave {
            groups: vec![],
            logins: (1..=7).map(|i| format!("u{i}")).collect(),
        };
        assert_eq!(many.describe(), "logins u1, u2, u3, u4, u5 and 2 more");
    }

    #[test]
    fn unknown_groups_and_logins_refuse_the_wave() {
        let facts = crate::testing::facts(&[("deliveryOperators", &[])]);
        let ops = [op("ana", &["deliveryOperators"])];
        let ok = Wave {
            groups: vec!["deliveryOperators".into()],
            logins: vec!["ANA".into()],
        };
        assert_eq!(ok.check(&facts, &ops), Ok(()));
        let bad = Wave {
            groups: vec!["delivery0perators".into()],
            logins: vec!["ann".into()],
        };
        let e = bad.check(&facts, &ops).unwrap_err();
        assert!(
            e.contains("no group delivery0perators") && e.contains("no operator ann"),
            "{e}"
        );
    }

    #[test]
    fn a_logins_file_skips_blanks_and_comments() {
        assert_eq!(logins_from("# pilot\nana\n\n  bo  \n#cy\n"), ["ana", "bo"]);
    }
}
