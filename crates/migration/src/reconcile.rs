//! The reconciliation report: both sides of every moved operator compared. The instance says
//! what the operator is (email, groups, effective named rights, disabled); the IMS says what its
//! linked user would make it at its next sign-in (email, the groups its profiles name through the
//! association mask, the rights of those groups plus the profiles' permission items, disabled
//! unless active). Each side is reduced to a digest per operator; counts and every difference are
//! reported. Pure.

use std::collections::{BTreeSet, HashMap, HashSet};

use ims_wire::association::AssociationMask;
use ims_wire::email::email_key;
use ims_wire::migration::{InstanceFacts, OperatorFacts};
use ims_wire::rights::right_named;
use serde::{Deserialize, Serialize};

use crate::client::{ImsUser, ProfileDetail};

/// What one side says of an operator.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    pub email: String,
    pub groups: Vec<String>,
    pub rights: Vec<String>,
    pub disabled: bool,
}

impl Record {
    /// The per-operator digest compared across the two sides.
    pub fn digest(&self) -> String {
        let text = serde_json::to_string(self).unwrap_or_default();
        ims_core::secret::digest_hex(&text)[..16].to_owned()
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Difference {
    pub login: String,
    pub instance: Option<Record>,
    pub ims: Option<Record>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reconciliation {
    /// Operators linked to an IMS identity.
    pub linked_operators: usize,
    /// IMS users holding a profile of this instance.
    pub ims_users_with_access: usize,
    /// Linked operators whose two digests agree.
    pub matching: usize,
    pub differences: Vec<Difference>,
    /// IMS users holding a profile of this instance and linked to no operator (their operator is
    /// created at their first sign-in).
    pub not_linked_yet: Vec<String>,
    /// `(login, instance digest, IMS digest)` per linked operator.
    pub digests: Vec<(String, String, String)>,
}

fn sorted(v: impl IntoIterator<Item = String>) -> Vec<String> {
    v.into_iter().collect::<BTreeSet<_>>().into_iter().collect()
}

/// The instance's side: effective rights are the groups' and the direct ones together.
pub fn instance_record(op: &OperatorFacts, facts: &InstanceFacts) -> Record {
    let mut rights: Vec<String> = op.rights.clone();
    for g in &facts.groups {
        if op.groups.contains(&g.name) {
            rights.extend(g.rights.iter().cloned());
        }
    }
    Record {
        email: op.email.as_deref().map(email_key).unwrap_or_default(),
        groups: sorted(op.groups.iter().cloned()),
        rights: sorted(rights),
        disabled: op.disabled,
    }
}

/// The IMS's side: what the user's profiles of this instance make of the operator.
pub fn ims_record(
    user: &ImsUser,
    profiles: &HashMap<String, ProfileDetail>,
    mask: &AssociationMask,
    facts: &InstanceFacts,
) -> Record {
    let mut groups = Vec::new();
    let mut rights = Vec::new();
    for name in &user.groups {
        let Some(p) = profiles.get(name) else { continue };
        let Some(captured) = mask.captured(&p.name) else {
            continue;
        };
        if let Some(g) = ims_wire::association::group_named(captured, &facts.groups) {
            groups.push(g.name.clone());
            rights.extend(g.rights.iter().cloned());
        }
        rights.extend(
            p.permissions
                .iter()
                .filter_map(|i| right_named(i))
                .map(str::to_owned),
        );
    }
    Record {
        email: email_key(&user.email),
        groups: sorted(groups),
        rights: sorted(rights),
        disabled: user.status != "active",
    }
}

/// Compares every linked operator with its IMS user. `profiles` are this instance's profiles
/// (by name, with their permission items).
pub fn reconcile(
    facts: &InstanceFacts,
    ops: &[OperatorFacts],
    users: &[ImsUser],
    profiles: &HashMap<String, ProfileDetail>,
    mask: &AssociationMask,
) -> Reconciliation {
    let by_id: HashMap<&str, &ImsUser> = users.iter().map(|u| (u.id.as_str(), u)).collect();
    let mut r = Reconciliation::default();
    let mut linked_ids = HashSet::new();
    for op in ops {
        let Some(id) = op.ims_id.as_deref() else { continue };
        if op.auth_type != "ims" {
            continue;
        }
        r.linked_operators += 1;
        linked_ids.insert(id);
        let mine = instance_record(op, facts);
        match by_id.get(id) {
            Some(user) => {
                let theirs = ims_record(user, profiles, mask, facts);
                let (a, b) = (mine.digest(), theirs.digest());
                if a == b {
                    r.matching += 1;
                } else {
                    r.differences.push(Difference {
                        login: op.login.clone(),
                        instance: Some(mine),
                        ims: Some(theirs),
                    });
                }
                r.digests.push((op.login.clone(), a, b));
            }
            None => {
                r.digests.push((op.login.clone(), mine.digest(), String::new()));
                r.differences.push(Difference {
                    login: op.login.clone(),
                    instance: Some(mine),
                    ims: None,
                });
            }
        }
    }
    for u in users {
        let holds = u.groups.iter().any(|g| profiles.contains_key(g));
        if holds {
            r.ims_users_with_access += 1;
            if !linked_ids.contains(u.id.as_str()) {
                r.not_linked_yet.push(u.email.clone());
            }
        }
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts() -> InstanceFacts {
        crate::testing::facts(&[
            ("deliveryOperators", &["prepareDelivery", "startDelivery"]),
            ("rights-export", &["export"]),
        ])
    }

    fn profile(name: &str, items: &[&str]) -> (String, ProfileDetail) {
        (
            name.to_owned(),
            ProfileDetail {
                name: name.to_owned(),
                product_context: Some("dma_campaign_classic".into()),
                instance: Some("prod".into()),
                permissions: items.iter().map(|i| i.to_string()).collect(),
            },
        )
    }

    #[test]
    fn both_sides_agree_until_one_changes() {
        let f = facts();
        let mask = AssociationMask::parse("campaign - prod - (.*)").unwrap();
        let profiles: HashMap<String, ProfileDetail> = [
            profile(
                "campaign - prod - deliveryOperators",
                &["prepareDelivery", "startDelivery"],
            ),
            profile("campaign - prod - rights-export", &["export"]),
        ]
        .into_iter()
        .collect();
        let op = OperatorFacts {
            id: 1,
            login: "ana".into(),
            label: "Ana".into(),
            email: Some("Ana@Example.com".into()),
            auth_type: "ims".into(),
            disabled: false,
            builtin: false,
            groups: vec!["rights-export".into(), "deliveryOperators".into()],
            rights: vec!["export".into()],
            ims_id: Some("U1".into()),
            credential: None,
            usage: vec![],
        };
        let mut user = ImsUser {
            id: "U1".into(),
            email: "ana@example.com".into(),
            status: "active".into(),
            groups: vec![
                "campaign - prod - deliveryOperators".into(),
                "campaign - prod - rights-export".into(),
                "another product's profile".into(),
            ],
        };
        let newcomer = ImsUser {
            id: "U2".into(),
            email: "new@example.com".into(),
            status: "active".into(),
            groups: vec!["campaign - prod - deliveryOperators".into()],
        };
        let r = reconcile(
            &f,
            std::slice::from_ref(&op),
            &[user.clone(), newcomer],
            &profiles,
            &mask,
        );
        assert_eq!(
            (r.linked_operators, r.matching, r.ims_users_with_access),
            (1, 1, 2)
        );
        assert!(r.differences.is_empty(), "{:?}", r.differences);
        assert_eq!(r.not_linked_yet, ["new@example.com"]);
        assert_eq!(r.digests[0].1, r.digests[0].2);

        // A profile taken away at the IMS, or the user disabled: a difference, named.
        user.groups.retain(|g| !g.ends_with("rights-export"));
        let r = reconcile(
            &f,
            std::slice::from_ref(&op),
            std::slice::from_ref(&user),
            &profiles,
            &mask,
        );
        assert_eq!(r.differences.len(), 1);
        assert_eq!(
            r.differences[0].ims.as_ref().unwrap().groups,
            ["deliveryOperators"]
        );
        let r = reconcile(&f, &[op], &[], &profiles, &mask);
        assert!(r.differences[0].ims.is_none());
    }
}
