//! Preparation: what an instance needs before its people can move, decided without I/O. Emails
//! come from a CSV file (`login,email`), checked here by the IMS's rule before the instance
//! checks them against every operator.

use std::collections::HashMap;

use ims_wire::email::email_key;
use ims_wire::migration::EmailAssignment;

use crate::assess::email_syntax_ok;

/// A line of the file that cannot be used, and why (lines counted from 1, the header included).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct LineProblem {
    pub line: u64,
    pub problem: String,
}

/// Reads `login,email` rows (a header naming both columns first; other columns ignored; RFC
/// 4180 quoting). Every problem of the file is reported, not only the first.
pub fn read_email_csv(text: &str) -> Result<Vec<EmailAssignment>, Vec<LineProblem>> {
    let mut reader = csv::ReaderBuilder::new()
        .trim(csv::Trim::All)
        .flexible(true)
        .from_reader(text.as_bytes());
    let header = match reader.headers() {
        Ok(h) => h.clone(),
        Err(e) => {
            return Err(vec![LineProblem {
                line: 1,
                problem: format!("the header cannot be read: {e}"),
            }])
        }
    };
    let column = |name: &str| header.iter().position(|h| h.eq_ignore_ascii_case(name));
    let (Some(login_col), Some(email_col)) = (column("login"), column("email")) else {
        return Err(vec![LineProblem {
            line: 1,
            problem: "the first line must name the columns: login,email".into(),
        }]);
    };
    let mut problems = Vec::new();
    let mut out = Vec::new();
    let mut first_line_of_login: HashMap<String, u64> = HashMap::new();
    let mut first_line_of_email: HashMap<String, u64> = HashMap::new();
    for record in reader.records() {
        let record = match record {
            Ok(r) => r,
            Err(e) => {
                let line = e.position().map_or(0, |p| p.line());
                problems.push(LineProblem {
                    line,
                    problem: format!("unreadable: {e}"),
                });
                continue;
            }
        };
        let line = record.position().map_or(0, |p| p.line());
        let login = record.get(login_col).unwrap_or_default().to_owned();
        let email = record.get(email_col).unwrap_or_default().to_owned();
        let mut bad = |problem: String| problems.push(LineProblem { line, problem });
        if login.is_empty() {
            bad("no login".into());
            continue;
        }
        if !email_syntax_ok(&email) {
            bad(format!("{email:?} is not an email address"));
            continue;
        }
        if let Some(first) = first_line_of_login.insert(login.clone(), line) {
            bad(format!("{login} is already given an email on line {first}"));
            continue;
        }
        if let Some(first) = first_line_of_email.insert(email_key(&email), line) {
            bad(format!(
                "{email} is already given on line {first} (emails are compared case-insensitively)"
            ));
            continue;
        }
        out.push(EmailAssignment { login, email });
    }
    if problems.is_empty() {
        Ok(out)
    } else {
        Err(problems)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn rows_are_read_by_header_and_every_problem_is_listed() {
        // Columns by header name, whatever their order; spaces trimmed; quoting honoured.
        let rows = read_email_csv(
            "Email,Login,note\n bo@example.com , bo.berg ,x\n\"kim@example.com\",\"kim, the second\"\n",
        )
        .unwrap();
        assert_eq!(
            rows[0],
            EmailAssignment {
                login: "bo.berg".into(),
                email: "bo@example.com".into()
            }
        );
        assert_eq!(rows[1].login, "kim, the second");
        let rows =
            read_email_csv("login,email\nbo.berg,Bo.Berg@example.com\njun.abe,jun@example.com\n").unwrap();
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0].email, "Bo.Berg@example.com");

        let problems = read_email_csv(
            "login,email\nbo.berg,bo@example.com\nbo.berg,other@example.com\nkim,BO@EXAMPLE.COM\n,x@example.com\nlee,not-an-address\n",
        )
        .unwrap_err();
        let lines: Vec<u64> = problems.iter().map(|p| p.line).collect();
        assert_eq!(lines, [3, 4, 5, 6]);
        assert!(problems[1].problem.contains("line 2"), "{problems:?}");

        assert_eq!(read_email_csv("user,mail\na,b@c.com\n").unwrap_err()[0].line, 1);
        assert!(read_email_csv("").is_err());
    }

    proptest! {
        #[test]
        fn any_text_gives_rows_or_problems_never_a_panic(text in "\\PC{0,400}") {
            let _ = read_email_csv(&text);
        }

        #[test]
        fn accepted_rows_have_distinct_logins_and_emails(
            rows in proptest::collection::vec(("[a-zé]{1,4}", "[a-zA-Z]{1,3}@[a-z]{1,2}\\.com"), 0..30)
        ) {
            let mut text = String::from("login,email\n");
            for (l, e) in &rows {
                text.push_str(&format!("{l},{e}\n"));
            }
            if let Ok(out) = read_email_csv(&text) {
                let logins: std::collections::HashSet<&str> = out.iter().map(|a| a.login.as_str()).collect();
                let emails: std::collections::HashSet<String> = out.iter().map(|a| email_key(&a.email)).collect();
                prop_assert_eq!(logins.len(), out.len());
                prop_assert_eq!(emails.len(), out.len());
                prop_assert_eq!(out.len(), rows.len());
            }
        }
    }
}

/// The mask the instance uses, or the vendor's default for the instance when it has none yet.
pub fn mask_for(instance: &str, configured: Option<&str>) -> String {
    configured.map_or_else(|| format!("campaign - {instance} - (.*)"), str::to_owned)
}

/// The profile name that `mask` maps to `group`: the mask's capture group replaced by the
/// group's name, the rest taken literally. `None` when the rest is not a literal (a wildcard or
/// a class outside the capture group) or the name would not map back to the group.
pub fn profile_name(mask: &str, group: &str) -> Option<String> {
    let chars: Vec<char> = mask.chars().collect();
    let mut out = String::new();
    let mut i = 0;
    let mut replaced = false;
    while i < chars.len() {
        match chars[i] {
            '\\' => {
                let next = *chars.get(i + 1)?;
                if next.is_alphanumeric() {
                    return None; // a class such as \d or \s
                }
                out.push(next);
                i += 2;
            }
            '(' if !replaced && chars.get(i + 1) != Some(&'?') => {
                // Skip to the matching parenthesis, escapes and nesting included.
                let mut depth = 0;
                while i < chars.len() {
                    match chars[i] {
                        '\\' => i += 1,
                        '(' => depth += 1,
                        ')' => {
                            depth -= 1;
                            if depth == 0 {
                                break;
                            }
                        }
                        _ => {}
                    }
                    i += 1;
                }
                out.push_str(group);
                replaced = true;
                i += 1;
            }
            '.' | '*' | '+' | '?' | '[' | ']' | '{' | '}' | '|' | '^' | '$' | '(' | ')' => return None,
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    let parsed = ims_wire::association::AssociationMask::parse(mask).ok()?;
    (replaced && parsed.captured(&out) == Some(group)).then_some(out)
}

/// A product profile the instance needs: its name, the operator group it stands for and the
/// group's named rights as permission items.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct ProfileSpec {
    pub name: String,
    pub group: String,
    pub permissions: Vec<String>,
}

/// One profile per operator group, named by `mask`, plus the vendor's fixed `messagecenter`
/// profile on a Message Center instance. Groups whose name the mask cannot carry are returned
/// apart.
pub fn profiles_for(
    instance: &str,
    kind: &str,
    mask: &str,
    groups: &[ims_wire::migration::GroupFacts],
) -> (Vec<ProfileSpec>, Vec<String>) {
    let mut specs = Vec::new();
    let mut unnamed = Vec::new();
    for g in groups {
        match profile_name(mask, &g.name) {
            Some(name) => specs.push(ProfileSpec {
                name,
                group: g.name.clone(),
                permissions: g.rights.clone(),
            }),
            None => unnamed.push(g.name.clone()),
        }
    }
    if kind == "message_center" {
        for (alias, group) in ims_wire::rights::PROFILE_GROUP_ALIASES {
            if let Some(g) = groups.iter().find(|g| g.name == *group) {
                specs.push(ProfileSpec {
                    name: format!("campaign - {instance} - {alias}"),
                    group: g.name.clone(),
                    permissions: g.rights.clone(),
                });
            }
        }
    }
    (specs, unnamed)
}

#[cfg(test)]
mod profile_tests {
    use super::*;
    use ims_wire::migration::GroupFacts;

    #[test]
    fn profile_names_follow_the_mask_and_map_back() {
        let m = mask_for("marketing", None);
        assert_eq!(m, "campaign - marketing - (.*)");
        assert_eq!(
            profile_name(&m, "deliveryOperators").as_deref(),
            Some("campaign - marketing - deliveryOperators")
        );
        assert_eq!(
            profile_name(r"acc\.prod \(eu\) - ([a-zA-Z]+)", "admin").as_deref(),
            Some("acc.prod (eu) - admin")
        );
        // Not literal outside the group, or not mapping back: no name.
        assert_eq!(profile_name("campaign - .* - (.*)", "admin"), None);
        assert_eq!(profile_name(r"campaign\d - (.*)", "admin"), None);
        assert_eq!(profile_name("campaign - ([a-z]+)", "deliveryOperators"), None);
        assert_eq!(profile_name("campaign - (?:x)", "admin"), None);
    }

    #[test]
    fn one_profile_per_group_and_messagecenter_on_message_center_instances() {
        let groups = vec![
            GroupFacts {
                name: "admin".into(),
                label: "Administrator".into(),
                rights: vec!["admin".into()],
            },
            GroupFacts {
                name: "messageCenterAgents".into(),
                label: "Message Center agents".into(),
                rights: vec!["messageCenter".into()],
            },
        ];
        let (specs, unnamed) = profiles_for("mc", "message_center", &mask_for("mc", None), &groups);
        let names: Vec<&str> = specs.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "campaign - mc - admin",
                "campaign - mc - messageCenterAgents",
                "campaign - mc - messagecenter"
            ]
        );
        assert_eq!(specs[2].permissions, ["messageCenter"]);
        assert!(unnamed.is_empty());
        let (specs, _) = profiles_for("marketing", "marketing", &mask_for("marketing", None), &groups);
        assert_eq!(specs.len(), 2);
    }
}

/// `rights-<rights joined by ->`, or, past the instance's 64 characters, its first part and a
/// digest of the whole (the same set always gets the same name).
fn right_group_name(rights: &[String]) -> String {
    let full = format!("rights-{}", rights.join("-"));
    if full.len() <= 64 {
        return full;
    }
    let digest = ims_core::secret::digest_hex(&full);
    let head: String = full.chars().take(64 - 13).collect();
    format!("{head}-{}", &digest[..12])
}

/// Groups that carry the named rights operators (people and programs) hold directly beyond their
/// groups, one per set of such rights (`rights-export-sql`), with those operators as members:
/// once the groups exist, their profiles give the rights back after the move, as every other
/// right comes back.
pub fn right_groups(
    facts: &ims_wire::migration::InstanceFacts,
    ops: &[ims_wire::migration::OperatorFacts],
) -> ims_wire::migration::GroupRequest {
    use std::collections::{BTreeMap, BTreeSet};
    let carried: HashMap<&str, &[String]> = facts
        .groups
        .iter()
        .map(|g| (g.name.as_str(), g.rights.as_slice()))
        .collect();
    let mut sets: BTreeMap<Vec<String>, Vec<String>> = BTreeMap::new();
    for op in ops {
        // People and programs alike: a technical account's rights come from its profiles too.
        let (class, _) = crate::assess::classify(op);
        if class == crate::assess::Class::BuiltIn || op.auth_type != "native" || op.disabled {
            continue;
        }
        let from_groups: BTreeSet<&str> = op
            .groups
            .iter()
            .filter_map(|g| carried.get(g.as_str()))
            .flat_map(|r| r.iter().map(String::as_str))
            .collect();
        let beyond: BTreeSet<String> = op
            .rights
            .iter()
            .filter(|r| !from_groups.contains(r.as_str()))
            .cloned()
            .collect();
        if !beyond.is_empty() {
            sets.entry(beyond.into_iter().collect())
                .or_default()
                .push(op.login.clone());
        }
    }
    let groups = sets
        .into_iter()
        .map(|(rights, members)| {
            let labels: Vec<&str> = rights
                .iter()
                .map(|r| ims_wire::rights::right(r).map_or(r.as_str(), |n| n.label))
                .collect();
            ims_wire::migration::NewGroup {
                name: right_group_name(&rights),
                label: format!("Direct rights: {}", labels.join(", ")),
                rights,
                members,
            }
        })
        .collect();
    ims_wire::migration::GroupRequest { groups }
}

#[cfg(test)]
mod right_group_tests {
    use super::*;
    use ims_wire::migration::{OperatorFacts, UsageFacts};

    fn op(login: &str, groups: &[&str], rights: &[&str]) -> OperatorFacts {
        OperatorFacts {
            id: 0,
            login: login.into(),
            label: login.into(),
            email: Some(format!("{login}@example.com")),
            auth_type: "native".into(),
            disabled: false,
            builtin: false,
            groups: groups.iter().map(|g| g.to_string()).collect(),
            rights: rights.iter().map(|r| r.to_string()).collect(),
            ims_id: None,
            credential: None,
            usage: Vec::new(),
        }
    }

    #[test]
    fn operators_holding_the_same_rights_beyond_their_groups_share_one_group() {
        let facts = crate::testing::facts(&[("admin", &["admin"])]);
        let mut program = op("crm-sync", &[], &["export"]);
        program.usage = vec![UsageFacts {
            action: "xtk:session#Logon".into(),
            auth_path: "native".into(),
            source: "10.0.0.1".into(),
            client: String::new(),
            outcome: "success".into(),
            count: 3,
            first_at: 0,
            last_at: 1,
        }];
        let mut disabled = op("gone", &[], &["export"]);
        disabled.disabled = true;
        let ops = vec![
            op("ana", &["admin"], &["sql", "export"]),
            op("bo", &[], &["export", "sql"]),
            op("kim", &["admin"], &["admin"]),
            op("lee", &[], &["export"]),
            program,
            disabled,
        ];
        let req = right_groups(&facts, &ops);
        let got: Vec<(&str, Vec<&str>)> = req
            .groups
            .iter()
            .map(|g| (g.name.as_str(), g.members.iter().map(String::as_str).collect()))
            .collect();
        assert_eq!(
            got,
            [
                ("rights-export", vec!["lee", "crm-sync"]),
                ("rights-export-sql", vec!["ana", "bo"])
            ]
        );
        assert_eq!(req.groups[1].label, "Direct rights: EXPORT, SQL SCRIPT EXECUTION");
        assert_eq!(req.groups[1].rights, ["export", "sql"]);
        let many: Vec<String> = ims_wire::rights::NAMED_RIGHTS
            .iter()
            .map(|r| r.name.to_owned())
            .collect();
        let long = right_group_name(&many);
        assert!(long.len() <= 64 && long.starts_with("rights-admin-"), "{long}");
        assert_eq!(long, right_group_name(&many));
    }
}
