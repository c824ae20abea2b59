//! How the people a migration moves get in. Before: per person, whether the IMS will invite
//! them (no account yet), they already hold an account, or something blocks them. After: per
//! moved person, whether they were invited, accepted, and first signed in to the instance
//! through the IMS, in total and by name, with the people who have not come in after some days
//! (whom `ims migrate remind` invites again). Pure: the facts and the time passed in.

use std::collections::HashMap;

use ims_core::time::parse_iso8601;
use ims_wire::email::email_key;
use ims_wire::migration::OperatorFacts;
use ims_wire::names::CONSOLE_IMS_LOGON;
use serde::{Deserialize, Serialize};

use crate::assess::{EmailStatus, OperatorAssessment};
use crate::client::{ImsInvitation, ImsUser};

/// How a person not moved yet will get in.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "way", content = "why")]
pub enum Access {
    /// No IMS account with that email: one is created and mailed an invitation.
    Invited,
    /// An active IMS account has that email: the person signs in with it (and hears of the
    /// instance by mail).
    HasAccount,
    /// Cannot be moved as things are; says why.
    Blocked(String),
}

impl Access {
    pub fn label(&self) -> String {
        match self {
            Access::Invited => "invited".into(),
            Access::HasAccount => "has account".into(),
            Access::Blocked(why) => format!("blocked: {why}"),
        }
    }
}

/// The IMS's users by email key.
pub fn users_by_email(users: &[ImsUser]) -> HashMap<String, &ImsUser> {
    users.iter().map(|u| (email_key(&u.email), u)).collect()
}

/// How a person will get in, from what the assessment found of them and the IMS's users.
pub fn access(op: &OperatorAssessment, users: &HashMap<String, &ImsUser>) -> Access {
    match op.email_status {
        EmailStatus::Ok => {}
        EmailStatus::Missing => return Access::Blocked("no email".into()),
        EmailStatus::Invalid => return Access::Blocked("the email is not valid".into()),
        EmailStatus::Duplicate => return Access::Blocked("another operator has the same email".into()),
    }
    if op.disabled {
        return Access::Blocked("disabled on the instance".into());
    }
    let key = email_key(op.email.as_deref().unwrap_or_default());
    match users.get(&key).map(|u| u.status.as_str()) {
        None | Some("removed") => Access::Invited,
        Some("active") => Access::HasAccount,
        Some(other) => Access::Blocked(format!("the IMS account is {other}")),
    }
}

/// One moved person, as far as the IMS and the instance know.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PersonProgress {
    pub login: String,
    pub email: String,
    /// `invited`, `accepted`, `expired`, or `None` when the person was never invited (they
    /// held an account already, or the plan said not to).
    pub invitation: Option<String>,
    pub invited_at: Option<i64>,
    pub accepted_at: Option<i64>,
    /// The first time the person signed in to this instance through the IMS.
    pub first_ims_sign_in: Option<i64>,
}

impl PersonProgress {
    /// Whether the person has come in (signed in to the instance through the IMS).
    pub fn came_in(&self) -> bool {
        self.first_ims_sign_in.is_some()
    }

    /// Invited long enough ago and still not in.
    pub fn waiting_since(&self, now: i64, after_days: i64) -> bool {
        !self.came_in()
            && self
                .invited_at
                .is_some_and(|at| now - at >= after_days.saturating_mul(86_400_000))
    }
}

/// Moved people, in total and by name.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeopleProgress {
    pub moved: usize,
    pub invited: usize,
    pub accepted: usize,
    pub expired: usize,
    pub signed_in: usize,
    /// Days after an invitation from which someone who has not come in is named.
    pub after_days: i64,
    /// Invited at least `after_days` ago and not come in.
    pub waiting: Vec<String>,
    pub people: Vec<PersonProgress>,
}

/// The first successful IMS sign-in an operator's usage records.
fn first_ims_sign_in(op: &OperatorFacts) -> Option<i64> {
    op.usage
        .iter()
        .filter(|u| u.outcome == "success")
        .filter(|u| u.action == CONSOLE_IMS_LOGON || u.action == "xtk:session#BearerTokenLogon")
        .map(|u| u.first_at)
        .min()
}

/// Where the people moved to IMS sign-in stand.
pub fn progress(
    ops: &[OperatorFacts],
    invitations: &[ImsInvitation],
    now: i64,
    after_days: i64,
) -> PeopleProgress {
    let by_email: HashMap<String, &ImsInvitation> =
        invitations.iter().map(|i| (email_key(&i.email), i)).collect();
    let millis = |t: &Option<String>| t.as_deref().and_then(parse_iso8601).map(|n| n.millis());
    let mut out = PeopleProgress {
        after_days,
        ..PeopleProgress::default()
    };
    for op in ops.iter().filter(|o| o.auth_type == "ims" && !o.builtin) {
        let email = op.email.clone().unwrap_or_default();
        let ims = by_email
            .get(&email_key(&email))
            .and_then(|i| i.invitation.as_ref());
        let person = PersonProgress {
            login: op.login.clone(),
            email,
            invitation: ims.map(|i| i.state.clone()),
            invited_at: ims.and_then(|i| parse_iso8601(&i.sent_at)).map(|n| n.millis()),
            accepted_at: ims.and_then(|i| millis(&i.accepted_at)),
            first_ims_sign_in: first_ims_sign_in(op),
        };
        out.moved += 1;
        match person.invitation.as_deref() {
            Some("accepted") => {
                out.invited += 1;
                out.accepted += 1;
            }
            Some("expired") => {
                out.invited += 1;
                out.expired += 1;
            }
            Some(_) => out.invited += 1,
            None => {}
        }
        if person.came_in() {
            out.signed_in += 1;
        }
        if person.waiting_since(now, after_days) {
            out.waiting.push(person.login.clone());
        }
        out.people.push(person);
    }
    out
}

impl PeopleProgress {
    /// The emails `ims migrate remind` invites again: people waiting who have not accepted
    /// (someone who set a password but never came in hears nothing new from an invitation).
    pub fn to_remind(&self) -> Vec<String> {
        let waiting: std::collections::HashSet<&str> = self.waiting.iter().map(String::as_str).collect();
        self.people
            .iter()
            .filter(|p| waiting.contains(p.login.as_str()))
            .filter(|p| p.invitation.as_deref() != Some("accepted"))
            .map(|p| p.email.clone())
            .collect()
    }

    /// What the instance's console shows of it.
    pub fn report(&self) -> ims_wire::migration::PeopleReport {
        ims_wire::migration::PeopleReport {
            moved: self.moved,
            invited: self.invited,
            accepted: self.accepted,
            expired: self.expired,
            signed_in: self.signed_in,
            after_days: self.after_days,
            waiting: self
                .waiting
                .iter()
                .take(ims_wire::migration::MAX_REPORTED_WAITING)
                .cloned()
                .collect(),
            waiting_count: self.waiting.len(),
        }
    }

    /// The human report.
    pub fn text(&self) -> String {
        let mut out = format!(
            "people: {} moved, {} invited, {} accepted, {} expired, {} signed in through the IMS\n",
            self.moved, self.invited, self.accepted, self.expired, self.signed_in
        );
        if !self.waiting.is_empty() {
            out.push_str(&format!(
                "  not in {} day(s) after their invitation: {}\n",
                self.after_days,
                self.waiting.join(", ")
            ));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::InvitationFacts;
    use ims_wire::migration::UsageFacts;

    fn op(login: &str, auth: &str, email: &str) -> OperatorFacts {
        OperatorFacts {
            id: 1,
            email: Some(email.into()),
            auth_type: auth.into(),
            ..crate::testing::operator(login)
        }
    }

    fn user(email: &str, status: &str) -> ImsUser {
        ImsUser {
            id: format!("{email}-id"),
            email: email.into(),
            status: status.into(),
            groups: vec![],
        }
    }

    #[test]
    fn how_each_person_gets_in() {
        let users = vec![
            user("has@x.com", "active"),
            user("off@x.com", "disabled"),
            user("gone@x.com", "removed"),
        ];
        let by = users_by_email(&users);
        let assessed = |email: &str, status| OperatorAssessment {
            login: "l".into(),
            label: String::new(),
            email: Some(email.into()),
            email_status: status,
            auth_type: "native".into(),
            disabled: false,
            groups: vec![],
            rights: vec![],
            rights_beyond_groups: vec![],
            last_native_sign_in: None,
            last_ims_sign_in: None,
            api: Default::default(),
            class: crate::assess::Class::Person,
            evidence: String::new(),
            migrated: false,
            access: None,
        };
        let a = |email: &str, status| access(&assessed(email, status), &by);
        assert_eq!(a("new@x.com", EmailStatus::Ok), Access::Invited);
        assert_eq!(a("HAS@x.com", EmailStatus::Ok), Access::HasAccount);
        assert_eq!(a("gone@x.com", EmailStatus::Ok), Access::Invited);
        assert!(matches!(a("off@x.com", EmailStatus::Ok), Access::Blocked(w) if w.contains("disabled")));
        assert!(matches!(a("", EmailStatus::Missing), Access::Blocked(_)));
        let mut off = assessed("new@x.com", EmailStatus::Ok);
        off.disabled = true;
        assert!(matches!(access(&off, &by), Access::Blocked(_)));
    }

    #[test]
    fn progress_counts_and_names_who_has_not_come_in() {
        let day = 86_400_000;
        let now = 10 * day;
        let invitation = |email: &str, state: &str, sent: i64| ImsInvitation {
            id: String::new(),
            email: email.into(),
            kind: "enterpriseID".into(),
            status: "active".into(),
            invitation: Some(InvitationFacts {
                state: state.into(),
                sent_at: ims_core::time::iso8601(ims_core::Now::from_millis(sent)),
                accepted_at: None,
            }),
            first_sign_in_at: None,
        };
        let mut came = op("came", "ims", "came@x.com");
        came.usage.push(UsageFacts {
            action: CONSOLE_IMS_LOGON.into(),
            auth_path: "ims".into(),
            source: String::new(),
            client: String::new(),
            outcome: "success".into(),
            count: 2,
            first_at: 9 * day,
            last_at: 9 * day + 5,
        });
        let ops = vec![
            came,
            op("late", "ims", "late@x.com"),
            op("fresh", "ims", "fresh@x.com"),
            op("owner", "ims", "owner@x.com"),
            op("native", "native", "native@x.com"),
        ];
        let invitations = vec![
            invitation("came@x.com", "accepted", day),
            invitation("late@x.com", "expired", day),
            invitation("fresh@x.com", "invited", 9 * day),
        ];
        let p = progress(&ops, &invitations, now, 3);
        assert_eq!(
            (p.moved, p.invited, p.accepted, p.expired, p.signed_in),
            (4, 3, 1, 1, 1)
        );
        assert_eq!(
            p.waiting,
            vec!["late".to_owned()],
            "fresh is recent, owner was not invited"
        );
        assert_eq!(p.to_remind(), vec!["late@x.com".to_owned()]);
        assert_eq!(p.people[0].first_ims_sign_in, Some(9 * day));
        assert!(p
            .text()
            .contains("4 moved, 3 invited, 1 accepted, 1 expired, 1 signed in"));
    }
}
