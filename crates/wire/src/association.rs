//! How product profiles become operator groups and rights on an instance: the association mask
//! that reads a group's name out of a profile's name, and the lookups both the instance (at
//! sign-in) and the migration engine (when it plans and reconciles) must make the same way.

use crate::rights::PROFILE_GROUP_ALIASES;

/// The association mask: a regular expression over product profile names whose one capture
/// group names the operator group the profile grants (`campaign - marketing - (.*)`). It must
/// match a whole name.
#[derive(Clone, Debug)]
pub struct AssociationMask {
    source: String,
    re: regex_lite::Regex,
}

impl PartialEq for AssociationMask {
    fn eq(&self, other: &Self) -> bool {
        self.source == other.source
    }
}

impl Eq for AssociationMask {}

impl AssociationMask {
    pub fn parse(source: &str) -> Result<Self, String> {
        if source.trim().is_empty() {
            return Err("the association mask is empty".into());
        }
        if source.len() > 512 {
            return Err("the association mask is longer than 512 characters".into());
        }
        // Anchored: a mask for one instance must not match a longer name naming another.
        let re = regex_lite::Regex::new(&format!("^(?:{source})$"))
            .map_err(|e| format!("the association mask is not a regular expression: {e}"))?;
        if re.captures_len() != 2 {
            return Err(format!(
                "the association mask needs exactly one capture group naming the operator group, \
                 such as `campaign - <instance> - (.*)`; it has {}",
                re.captures_len() - 1
            ));
        }
        Ok(AssociationMask {
            source: source.to_owned(),
            re,
        })
    }

    pub fn as_str(&self) -> &str {
        &self.source
    }

    /// What the capture group names in `profile`, when the mask matches it whole.
    pub fn captured<'a>(&self, profile: &'a str) -> Option<&'a str> {
        let caps = self.re.captures(profile)?;
        let name = caps.get(1)?.as_str().trim();
        (!name.is_empty()).then_some(name)
    }
}

/// An operator group as the mapping sees it: its internal name and its label.
pub trait NamedGroup {
    fn name(&self) -> &str;
    fn label(&self) -> &str;
}

/// The operator group a captured name stands for: its internal name or its label, compared
/// case-insensitively, or one of the vendor's fixed profile names.
pub fn group_named<'g, G: NamedGroup>(captured: &str, groups: &'g [G]) -> Option<&'g G> {
    let find = |n: &str| {
        groups
            .iter()
            .find(|g| g.name().eq_ignore_ascii_case(n))
            .or_else(|| groups.iter().find(|g| g.label().eq_ignore_ascii_case(n)))
    };
    find(captured).or_else(|| {
        PROFILE_GROUP_ALIASES
            .iter()
            .find(|(alias, _)| alias.eq_ignore_ascii_case(captured))
            .and_then(|(_, group)| find(group))
    })
}
