//! The emails a migration needs, as the instance console's page works with them: which people
//! still signing in natively have an email the move cannot use, and giving them theirs.
//!
//! Setting goes through `Migration::migration_set_emails`, the migration API's own check and
//! write path, so the console and `ims migrate prepare --emails` refuse the same rows and leave
//! the same audit lines. Like the engine does with a CSV file, addresses are first held to the
//! IMS's rule, which is stricter than the instance's: an address only the instance accepts would
//! still keep its operator from moving.

use std::collections::{HashMap, HashSet};

use ims_core::Now;
use ims_wire::migration::{EmailAssignment, EmailOutcome, RowProblem};

use crate::fault::Fault;
use crate::migration::Migration;
use crate::model::{AuthPath, AuthType, Operator};
use crate::service::{effective_rights, holds, Caller, ADMINISTRATION};
use crate::usage::UsageSummary;
use ims_wire::email::email_key;

/// Why an operator's email keeps it from moving to the IMS.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EmailStatus {
    Missing,
    /// Not an address by the IMS's rule.
    Invalid,
    /// Another operator has the same email, compared case-insensitively.
    Shared,
}

impl EmailStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            EmailStatus::Missing => "missing",
            EmailStatus::Invalid => "invalid",
            EmailStatus::Shared => "shared",
        }
    }
}

/// A person whose email blocks its move.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EmailBlocker {
    pub login: String,
    pub label: String,
    pub email: Option<String>,
    pub status: EmailStatus,
    /// The other operators with the same email (any type), for a shared one.
    pub shared_with: Vec<String>,
}

/// Whether the IMS accepts `email` as an identity's address.
pub fn ims_accepts(email: &str) -> bool {
    ims_wire::email::is_email(email.trim())
}

/// A console sign-in that succeeded: a person's evidence.
pub fn is_console_sign_in(u: &UsageSummary) -> bool {
    u.key.outcome == "success" && u.key.action.starts_with("console#")
}

/// A native API sign-in or call that succeeded (not the migration's own calls): a program's
/// evidence, unless the operator also signs in to the console.
pub fn is_native_api_call(u: &UsageSummary) -> bool {
    u.key.outcome == "success"
        && u.key.auth_path == AuthPath::Native
        && !u.key.action.starts_with("console#")
        && !u.key.action.starts_with("migration#")
}

/// The operators `usage` shows to be programs: native API calls, never a console sign-in.
pub fn programs(usage: &[UsageSummary]) -> HashSet<i64> {
    let console: HashSet<i64> = usage
        .iter()
        .filter(|u| is_console_sign_in(u))
        .filter_map(|u| u.key.operator_id)
        .collect();
    usage
        .iter()
        .filter(|u| is_native_api_call(u))
        .filter_map(|u| u.key.operator_id)
        .filter(|id| !console.contains(id))
        .collect()
}

/// The people whose email blocks the move, in id order: native operators that are neither
/// built in nor disabled (a disabled one stays native) nor programs (native API calls without a
/// console sign-in: they move as technical accounts, without an email), with no email, one the
/// IMS refuses, or one another operator of any type has too. The same people as the migration
/// page's blockers, which `usage` classifies the same way.
pub fn email_blockers(ops: &[Operator], usage: &[UsageSummary]) -> Vec<EmailBlocker> {
    let mut holders: HashMap<String, Vec<&str>> = HashMap::new();
    for op in ops {
        if let Some(e) = op.email.as_deref().filter(|e| !e.trim().is_empty()) {
            holders.entry(email_key(e)).or_default().push(&op.login);
        }
    }
    let programs = programs(usage);
    ops.iter()
        .filter(|o| o.auth_type == AuthType::Native && !o.builtin && !o.disabled && !programs.contains(&o.id))
        .filter_map(|op| {
            let (status, shared_with) = match op.email.as_deref().map(str::trim) {
                None | Some("") => (EmailStatus::Missing, Vec::new()),
                Some(e) if !ims_accepts(e) => (EmailStatus::Invalid, Vec::new()),
                Some(e) => {
                    let others: Vec<String> = holders
                        .get(&email_key(e))
                        .into_iter()
                        .flatten()
                        .filter(|l| **l != op.login)
                        .map(|l| (*l).to_owned())
                        .collect();
                    if others.is_empty() {
                        return None;
                    }
                    (EmailStatus::Shared, others)
                }
            };
            Some(EmailBlocker {
                login: op.login.clone(),
                label: op.label.clone(),
                email: op.email.clone(),
                status,
                shared_with,
            })
        })
        .collect()
}

impl Migration {
    /// The people whose email blocks their move (see [`email_blockers`]), for an administrator.
    pub async fn migration_email_blockers(&self, actor: &Operator) -> Result<Vec<EmailBlocker>, Fault> {
        if !holds(
            &effective_rights(self.operators.as_ref(), actor).await?,
            ADMINISTRATION,
        ) {
            return Err(Fault::forbidden(
                "the migration's emails need the ADMINISTRATION right",
            ));
        }
        let ops = self.all_operators().await?;
        // Everyone's usage in one reading, as the migration page does.
        let usage = match (ops.first(), ops.last()) {
            (Some(first), Some(last)) => self.usage.usage_of_operators(first.id, last.id).await?,
            _ => Vec::new(),
        };
        Ok(email_blockers(&ops, &usage))
    }

    /// Gives operators the emails an administrator typed on the console. With every address one
    /// the IMS accepts, this is exactly the migration API's `emails` (checked whole, then written
    /// through the operators' write path, or nothing in a dry run). Otherwise nothing is written:
    /// those addresses are reported with whatever the API finds wrong with the other rows.
    pub async fn migration_set_emails_checked(
        &self,
        actor: &Operator,
        assignments: &[EmailAssignment],
        dry_run: bool,
        now: Now,
        caller: &Caller,
    ) -> Result<EmailOutcome, Fault> {
        let (refused, accepted): (Vec<EmailAssignment>, Vec<EmailAssignment>) =
            assignments.iter().cloned().partition(|a| !ims_accepts(&a.email));
        if refused.is_empty() {
            return self
                .migration_set_emails(actor, assignments, dry_run, now, caller)
                .await;
        }
        let checked = self
            .migration_set_emails(actor, &accepted, true, now, caller)
            .await?;
        let mut problems: Vec<RowProblem> = refused
            .iter()
            .map(|a| RowProblem {
                login: a.login.clone(),
                problem: format!("{:?} is not an email address the IMS accepts", a.email.trim()),
            })
            .chain(checked.problems)
            .collect();
        // In the order the rows came, as the API lists them.
        let place: HashMap<&str, usize> = assignments
            .iter()
            .enumerate()
            .rev()
            .map(|(i, a)| (a.login.as_str(), i))
            .collect();
        problems.sort_by_key(|p| place.get(p.login.as_str()).copied().unwrap_or(usize::MAX));
        Ok(EmailOutcome {
            dry_run,
            problems,
            ..EmailOutcome::default()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::usage::{UsageCounts, UsageKey};

    fn op(id: i64, login: &str, email: Option<&str>) -> Operator {
        let mut op = Operator::native(
            login,
            email.map(str::to_owned),
            Vec::new(),
            None,
            Now::from_millis(0),
        );
        op.id = id;
        op
    }

    fn used(id: i64, action: &str) -> UsageSummary {
        UsageSummary {
            key: UsageKey {
                login: String::new(),
                operator_id: Some(id),
                action: action.into(),
                auth_path: AuthPath::Native,
                source: "10.0.0.1".into(),
                client: String::new(),
                outcome: "success".into(),
            },
            counts: UsageCounts {
                calls: 1,
                first_at: Now::from_millis(1),
                last_at: Now::from_millis(1),
            },
        }
    }

    #[test]
    fn missing_refused_and_case_variant_emails_block_people_only() {
        let mut disabled = op(6, "gone", None);
        disabled.disabled = true;
        let mut ims = op(7, "moved", Some("ANA@example.com"));
        ims.auth_type = AuthType::Ims;
        let ops = vec![
            op(1, "ana", Some("ana@example.com")),
            op(2, "bo", None),
            op(3, "chen", Some("chen@example")),
            op(4, "dee", Some("dee@example.com")),
            op(5, "script", None),
            disabled,
            ims,
        ];
        // `script` only calls the API: a program, not a person. A console sign-in makes `bo` one.
        let usage = vec![
            used(5, "xtk:session#Logon"),
            used(2, "console#Logon"),
            used(2, "xtk:session#Logon"),
        ];
        let found: Vec<(String, &str, Vec<String>)> = email_blockers(&ops, &usage)
            .into_iter()
            .map(|b| (b.login, b.status.as_str(), b.shared_with))
            .collect();
        assert_eq!(
            found,
            [
                ("ana".to_owned(), "shared", vec!["moved".to_owned()]),
                ("bo".to_owned(), "missing", vec![]),
                ("chen".to_owned(), "invalid", vec![]),
            ]
        );
        assert!(ims_accepts(" dee@example.com ") && !ims_accepts("dee@example") && !ims_accepts("a b@c.com"));
    }
}
