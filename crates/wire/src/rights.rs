//! Named rights and the default operator groups of an instance. Rights are
//! identified by their internal name (what `GetUserInfo` reports as `login-right`); the label is
//! what the console shows.

/// A named right: internal name and console label.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NamedRight {
    pub name: &'static str,
    pub label: &'static str,
}

pub const NAMED_RIGHTS: &[NamedRight] = &[
    NamedRight {
        name: "admin",
        label: "ADMINISTRATION",
    },
    NamedRight {
        name: "export",
        label: "EXPORT",
    },
    NamedRight {
        name: "import",
        label: "IMPORT",
    },
    NamedRight {
        name: "workflow",
        label: "WORKFLOW",
    },
    NamedRight {
        name: "merge",
        label: "MERGE",
    },
    NamedRight {
        name: "sql",
        label: "SQL SCRIPT EXECUTION",
    },
    NamedRight {
        name: "webapp",
        label: "WEBAPP",
    },
    NamedRight {
        name: "prepareDelivery",
        label: "PREPARE DELIVERIES",
    },
    NamedRight {
        name: "startDelivery",
        label: "START DELIVERIES",
    },
    NamedRight {
        name: "folderInsert",
        label: "INSERT FOLDERS",
    },
    NamedRight {
        name: "folderEdit",
        label: "EDIT FOLDERS",
    },
    NamedRight {
        name: "folderDelete",
        label: "DELETE FOLDERS",
    },
    NamedRight {
        name: "reports",
        label: "ACCESS TO REPORTS",
    },
    NamedRight {
        name: "messageCenter",
        label: "MESSAGE CENTER",
    },
];

pub fn right(name: &str) -> Option<&'static NamedRight> {
    NAMED_RIGHTS.iter().find(|r| r.name == name)
}

/// A group every instance starts with.
#[derive(Clone, Copy, Debug)]
pub struct DefaultGroup {
    pub name: &'static str,
    pub label: &'static str,
    pub rights: &'static [&'static str],
}

pub const DEFAULT_GROUPS: &[DefaultGroup] = &[
    DefaultGroup {
        name: "admin",
        label: "Administrator",
        rights: &["admin"],
    },
    DefaultGroup {
        name: "deliveryOperators",
        label: "Delivery operators",
        rights: &["prepareDelivery", "startDelivery"],
    },
    DefaultGroup {
        name: "campaignManagers",
        label: "Campaign managers",
        rights: &["folderInsert", "workflow"],
    },
    DefaultGroup {
        name: "workflowExecution",
        label: "Workflow execution",
        rights: &["workflow"],
    },
    DefaultGroup {
        name: "reportAccess",
        label: "Access to reports",
        rights: &["reports"],
    },
    DefaultGroup {
        name: "messageCenterAgents",
        label: "Message Center agents",
        rights: &["messageCenter"],
    },
];

/// Product profile names the vendor fixes, and the group each grants: a Message Center
/// instance's technical accounts hold `campaign - <instance> - messagecenter`.
pub const PROFILE_GROUP_ALIASES: &[(&str, &str)] = &[("messagecenter", "messageCenterAgents")];

/// The named right a permission item names (its internal name or label, case-insensitively).
pub fn right_named(item: &str) -> Option<&'static str> {
    let item = item.trim();
    NAMED_RIGHTS
        .iter()
        .find(|r| r.name.eq_ignore_ascii_case(item) || r.label.eq_ignore_ascii_case(item))
        .map(|r| r.name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_group_right_is_a_named_right_and_names_are_unique() {
        for g in DEFAULT_GROUPS {
            for r in g.rights {
                assert!(right(r).is_some(), "{} holds unknown right {r}", g.name);
            }
        }
        let mut names: Vec<&str> = NAMED_RIGHTS.iter().map(|r| r.name).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), NAMED_RIGHTS.len());
    }
}
