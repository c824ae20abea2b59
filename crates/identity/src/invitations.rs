//! What a change to the directory tells people: a new Enterprise ID is invited (a one-time link
//! to set a password, mailed), and a person given a product instance for the first time hears
//! "you now have access". Both become changes of their own, written in the same transaction as
//! the change that causes them, so that no person is created without an invitation and no
//! message goes out for a change that did not happen.

use std::collections::{BTreeMap, BTreeSet};

use crate::directory::{GroupKind, ProductInstance};
use crate::links::{AccountLink, LinkPurpose};
use crate::mail::messages::{self, Recipient};
use crate::model::{IdentityType, Organization, User, UserStatus};
use crate::umapi::{Change, Snapshot};
use ims_core::Now;

/// What the messages need to know of the organisation and of where the IMS answers.
pub struct Notifier<'a> {
    pub org: &'a Organization,
    pub instances: &'a [ProductInstance],
    /// The IMS's base URL, for the links.
    pub base_url: &'a str,
}

/// Whether `user` is one an invitation is for: an active Enterprise ID (others sign in another
/// way: with their own account, or at their company's provider).
pub fn invitable(user: &User) -> bool {
    user.identity_type == IdentityType::EnterpriseId && user.status == UserStatus::Active
}

/// Where a product instance's people go: its console, when the instance said where it answers.
pub fn console_url(instance: &ProductInstance) -> Option<String> {
    let url = instance.url.trim_end_matches('/');
    (!url.is_empty()).then(|| format!("{url}/console/"))
}

/// How an instance is named to people.
fn instance_name(instance: &ProductInstance) -> String {
    if instance.label.trim().is_empty() {
        instance.name.clone()
    } else {
        instance.label.clone()
    }
}

impl Notifier<'_> {
    fn recipient<'u>(&'u self, user: &'u User) -> Recipient<'u> {
        Recipient {
            org_id: &self.org.org_id,
            org_name: &self.org.name,
            email: &user.email,
            name: &user.first_name,
        }
    }

    fn instance(&self, id: i64) -> Option<&ProductInstance> {
        self.instances.iter().find(|i| i.id == id)
    }

    /// An invitation for `user`, naming the product instances it was given: the link and the
    /// message that carries it, and the token (for a caller that hands it over itself).
    pub fn invitation(
        &self,
        user: &User,
        instance_ids: &[i64],
        now: Now,
    ) -> (ims_core::secret::Secret, Change) {
        let instances: Vec<&ProductInstance> =
            instance_ids.iter().filter_map(|id| self.instance(*id)).collect();
        let console = instances.iter().find_map(|i| console_url(i));
        let (token, link) = AccountLink::new(LinkPurpose::Invitation, &user.user_id, now, console.clone());
        let url = format!(
            "{}{}",
            self.base_url.trim_end_matches('/'),
            LinkPurpose::Invitation.path(token.expose())
        );
        let names: Vec<String> = instances.iter().map(|i| instance_name(i)).collect();
        let mail = messages::invitation(&self.recipient(user), &url, &names, console.as_deref(), now);
        (token, Change::Invite { link, mail })
    }

    /// The messages `changes` call for, as changes to write with them. `not_invited` holds the
    /// lower-cased emails whose caller opted out of an invitation.
    pub fn notices(
        &self,
        snap: &Snapshot,
        changes: &[Change],
        not_invited: &BTreeSet<String>,
        now: Now,
    ) -> Vec<Change> {
        let mut invited: Vec<&User> = Vec::new();
        let mut people: BTreeMap<&str, &User> =
            snap.users.values().map(|u| (u.user_id.as_str(), u)).collect();
        // Product instances each person is given, in the order the request gives them.
        let mut given: Vec<(&str, Vec<i64>)> = Vec::new();
        for change in changes {
            match change {
                Change::CreateUser(u) => {
                    people.insert(&u.user_id, u);
                    if u.identity_type == IdentityType::EnterpriseId
                        && !not_invited.contains(&u.email.to_lowercase())
                    {
                        invited.push(u);
                    }
                }
                // Brought back from removal without ever having set a password: as good as new.
                Change::UpdateUser { user: u, .. }
                    if snap.reactivated.contains(&u.user_id)
                        && u.identity_type == IdentityType::EnterpriseId
                        && u.password_hash.is_none()
                        && !not_invited.contains(&u.email.to_lowercase()) =>
                {
                    people.insert(&u.user_id, u);
                    invited.push(u);
                }
                Change::AddMember { group, user_id } => {
                    let Some(state) = snap.groups.get(&group.to_lowercase()) else {
                        continue;
                    };
                    let profiles: Vec<_> = match state.group.kind {
                        GroupKind::ProductProfile => vec![&state.group],
                        GroupKind::UserGroup => state
                            .profiles
                            .iter()
                            .filter_map(|p| snap.groups.get(p).map(|s| &s.group))
                            .collect(),
                    };
                    let ids: Vec<i64> = profiles.iter().filter_map(|g| g.product_instance_id).collect();
                    if ids.is_empty() {
                        continue;
                    }
                    let at = match given.iter().position(|(u, _)| u == user_id) {
                        Some(at) => at,
                        None => {
                            given.push((user_id.as_str(), Vec::new()));
                            given.len() - 1
                        }
                    };
                    for id in ids {
                        if !given[at].1.contains(&id) {
                            given[at].1.push(id);
                        }
                    }
                }
                _ => {}
            }
        }
        let mut out = Vec::new();
        for user in &invited {
            let ids = given
                .iter()
                .find(|(u, _)| *u == user.user_id)
                .map(|(_, ids)| ids.clone())
                .unwrap_or_default();
            out.push(self.invitation(user, &ids, now).1);
        }
        for (user_id, ids) in given {
            let Some(user) = people.get(user_id).filter(|u| u.status == UserStatus::Active) else {
                continue;
            };
            // The invitation names the instances: the notices are recorded without a message
            // of their own.
            let in_invitation = invited.iter().any(|u| u.user_id == user_id);
            for id in ids {
                let mail = match (in_invitation, self.instance(id)) {
                    (false, Some(instance)) => Some(messages::access(
                        &self.recipient(user),
                        &instance_name(instance),
                        console_url(instance).as_deref(),
                        now,
                    )),
                    _ => None,
                };
                out.push(Change::AccessNotice {
                    user_id: user_id.to_owned(),
                    product_instance_id: id,
                    mail,
                });
            }
        }
        out
    }
}
