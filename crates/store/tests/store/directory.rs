//! The directory of users, user groups and product profiles, and administrative roles.

use ims_core::error::StoreError;
use ims_identity::directory::{
    AdminRole, Group, GroupKind, ProductInstance, RoleGrant, CAMPAIGN_PRODUCT_CONTEXT,
};
use ims_identity::store::{DirectoryStore, UsersQuery};
use ims_identity::umapi::{parse_request, plan_entry, Change, Snapshot};

use crate::harness::*;

/// The directory: groups of both kinds in one namespace, memberships direct and through user
/// groups, paging, entries applied whole, roles; the same on both backends.
#[tokio::test]
async fn directory_on_both_backends() {
    for f in each_backend().await {
        let (org, _, _) = seeded(&f.store).await;
        let o = org.org_id.as_str();
        let marketing = one_namespace_for_profiles_and_groups(&f, o).await;
        let snap = people_planned_as_the_api_plans_them(&f, o).await;
        users_paged_by_email(&f, o).await;
        let p1_id = snap.users["p1@example.com"].user_id.clone();
        let profile_id = held_profiles_memberships_and_counts(&f, o, &p1_id).await;
        quotas_and_entries_applied_whole(&f, o, &marketing, &snap).await;
        deleted_groups_and_roles(&f, o, &p1_id, profile_id).await;
        f.cleanup().await;
    }
}

/// The `marketing` product instance and its administrators' profile, whose name no user group
/// may take.
async fn one_namespace_for_profiles_and_groups(f: &Fixture, o: &str) -> ProductInstance {
    let marketing = f
        .store
        .ensure_product_instance(
            o,
            CAMPAIGN_PRODUCT_CONTEXT,
            "marketing",
            "Marketing",
            "https://marketing.test",
            now(),
        )
        .await
        .unwrap();
    let again = f
        .store
        .ensure_product_instance(
            o,
            CAMPAIGN_PRODUCT_CONTEXT,
            "marketing",
            "Marketing",
            "https://moved.test",
            now(),
        )
        .await
        .unwrap();
    assert_eq!(
        (marketing.id, again.url.as_str()),
        (again.id, "https://moved.test"),
        "ensured once, its address kept current"
    );
    let mut profile = Group::product_profile(o, "campaign - marketing - admin", &marketing, now());
    profile.permissions = vec!["admin".into(), "export".into()];
    profile.license_quota = Some(5);
    f.store
        .apply_changes(
            o,
            &[Change::CreateGroup(profile.clone())],
            &[event("profile.create")],
        )
        .await
        .unwrap();
    let twin = Group::user_group(o, "CAMPAIGN - Marketing - Admin", "", now());
    assert!(
        matches!(
            f.store.apply_changes(o, &[Change::CreateGroup(twin)], &[]).await,
            Err(StoreError::Conflict(_))
        ),
        "profiles and user groups share one namespace, case-insensitively"
    );
    marketing
}

/// Users p0..p6 and the user group `Marketers`, planned and applied entry by entry; the
/// planner's view.
async fn people_planned_as_the_api_plans_them(f: &Fixture, o: &str) -> Snapshot {
    // Users and a user group linked to the profile, planned as the API plans them.
    let mut body = String::from("[");
    for i in 0..7 {
        body.push_str(&format!(
            r#"{{"user":"p{i}@example.com","do":[{{"createEnterpriseID":{{"email":"p{i}@example.com","firstname":"P","lastname":"{i}","country":"fr"}}}}]}},"#
        ));
    }
    body.push_str(r#"{"usergroup":"Marketers","do":[{"createUserGroup":{"description":"people who market"}},{"add":{"user":["p1@example.com","p2@example.com"]}},{"add":{"productConfiguration":["campaign - marketing - admin"]}}]},"#);
    body.push_str(r#"{"user":"p0@example.com","do":[{"add":{"group":["campaign - marketing - admin"]}}]}]"#);
    let entries = parse_request(body.as_bytes()).unwrap();
    let mut snap = f
        .store
        .directory_snapshot(
            o,
            &Snapshot::emails_named(&entries),
            &Snapshot::groups_named(&entries),
        )
        .await
        .unwrap();
    for e in &entries {
        let changes = plan_entry(&mut snap, e, now()).unwrap();
        f.store
            .apply_changes(o, &changes, &[event("umapi.action")])
            .await
            .unwrap();
    }
    // The planner's view and the stored one agree.
    let reloaded = f
        .store
        .directory_snapshot(
            o,
            &snap.users.keys().cloned().collect(),
            &snap.groups.keys().cloned().collect(),
        )
        .await
        .unwrap();
    // Ids of new groups are the database's to give.
    let without_ids = |s: &Snapshot| {
        let mut g = s.groups.clone();
        g.values_mut().for_each(|state| state.group.id = 0);
        g
    };
    assert_eq!(without_ids(&reloaded), without_ids(&snap));
    assert_eq!(reloaded.users.len(), snap.users.len());
    snap
}

/// Pages of users, by email and by group, with direct and inherited memberships.
async fn users_paged_by_email(f: &Fixture, o: &str) {
    // Paging by email, removed users aside; 8 users (the admin and p0..p6).
    let (first, more) = f
        .store
        .users_page(
            o,
            &UsersQuery {
                group: None,
                direct_only: true,
                after: None,
                offset: 0,
                limit: 5,
            },
        )
        .await
        .unwrap()
        .unwrap();
    assert!(more && first.len() == 5);
    let (rest, more) = f
        .store
        .users_page(
            o,
            &UsersQuery {
                group: None,
                direct_only: true,
                after: None,
                offset: 5,
                limit: 5,
            },
        )
        .await
        .unwrap()
        .unwrap();
    assert!(!more && rest.len() == 3);
    let emails: Vec<String> = first
        .iter()
        .chain(&rest)
        .map(|(u, _)| u.email.to_lowercase())
        .collect();
    let mut sorted = emails.clone();
    sorted.sort();
    assert_eq!(emails, sorted);
    // The next page read from where the first ended, not counted from the start: the same.
    let last = first[4].0.email.to_lowercase();
    let (after, more) = f
        .store
        .users_page(
            o,
            &UsersQuery {
                group: None,
                direct_only: true,
                after: Some(&last),
                offset: 99,
                limit: 5,
            },
        )
        .await
        .unwrap()
        .unwrap();
    assert!(!more);
    let ids = |page: &[(ims_identity::model::User, Vec<String>)]| -> Vec<String> {
        page.iter().map(|(u, _)| u.user_id.clone()).collect()
    };
    assert_eq!(ids(&after), ids(&rest));
    let p1 = first
        .iter()
        .chain(&rest)
        .find(|(u, _)| u.email == "p1@example.com")
        .unwrap();
    assert_eq!(p1.1, vec!["Marketers".to_owned()], "direct memberships only");
    let (inherited, _) = f
        .store
        .users_page(
            o,
            &UsersQuery {
                group: None,
                direct_only: false,
                after: None,
                offset: 0,
                limit: 10,
            },
        )
        .await
        .unwrap()
        .unwrap();
    let p1 = inherited
        .iter()
        .find(|(u, _)| u.email == "p1@example.com")
        .unwrap();
    assert_eq!(
        p1.1,
        vec!["Marketers".to_owned(), "campaign - marketing - admin".to_owned()]
    );
    // Members of the profile: p0 directly; with inheritance p1 and p2 too.
    let (direct, _) = f
        .store
        .users_page(
            o,
            &UsersQuery {
                group: Some("Campaign - Marketing - Admin"),
                direct_only: true,
                after: None,
                offset: 0,
                limit: 10,
            },
        )
        .await
        .unwrap()
        .unwrap();
    assert_eq!(direct.len(), 1);
    let (all, _) = f
        .store
        .users_page(
            o,
            &UsersQuery {
                group: Some("campaign - marketing - admin"),
                direct_only: false,
                after: None,
                offset: 0,
                limit: 10,
            },
        )
        .await
        .unwrap()
        .unwrap();
    assert_eq!(all.len(), 3);
    assert!(f
        .store
        .users_page(
            o,
            &UsersQuery {
                group: Some("nobody"),
                direct_only: true,
                after: None,
                offset: 0,
                limit: 10
            }
        )
        .await
        .unwrap()
        .is_none());
}

/// The profiles p1 holds through `Marketers`, its memberships, and the groups with their member
/// counts; the id of the administrators' profile.
async fn held_profiles_memberships_and_counts(f: &Fixture, o: &str, p1_id: &str) -> i64 {
    let held = f
        .store
        .held_profiles(p1_id, Some(CAMPAIGN_PRODUCT_CONTEXT))
        .await
        .unwrap();
    assert_eq!(held.len(), 1);
    assert_eq!(
        (
            held[0].instance.as_str(),
            held[0].permissions.clone(),
            held[0].through.clone()
        ),
        (
            "marketing",
            vec!["admin".to_owned(), "export".to_owned()],
            vec!["Marketers".to_owned()]
        )
    );
    assert!(f
        .store
        .held_profiles(p1_id, Some("other_context"))
        .await
        .unwrap()
        .is_empty());
    let m = f.store.memberships(p1_id).await.unwrap();
    assert_eq!(m.len(), 2);
    assert!(m
        .iter()
        .any(|x| x.kind == GroupKind::ProductProfile && x.through.as_deref() == Some("Marketers")));

    let groups = f.store.groups(o).await.unwrap();
    let counts: Vec<(String, i64)> = groups.iter().map(|(g, n)| (g.name.clone(), *n)).collect();
    assert_eq!(
        counts,
        vec![
            ("campaign - marketing - admin".to_owned(), 1),
            ("Marketers".to_owned(), 2)
        ]
    );
    assert_eq!(
        groups[0].0.permissions,
        vec!["admin".to_owned(), "export".to_owned()]
    );
    assert_eq!(groups[0].0.license_quota, Some(5));
    groups[0].0.id
}

/// Licence quotas hold at the database, and an entry applies whole or not at all.
async fn quotas_and_entries_applied_whole(
    f: &Fixture,
    o: &str,
    marketing: &ProductInstance,
    snap: &Snapshot,
) {
    let p1_id = snap.users["p1@example.com"].user_id.clone();
    // The quota holds at the database too (two requests planned on the same count).
    let mut tight = Group::product_profile(o, "tight", marketing, now());
    tight.license_quota = Some(1);
    f.store
        .apply_changes(o, &[Change::CreateGroup(tight)], &[])
        .await
        .unwrap();
    let p2_id = snap.users["p2@example.com"].user_id.clone();
    // Members added in one run are counted together: past the quota, none is added (the
    // additions one by one below would find them otherwise).
    let both = [p1_id.clone(), p2_id.clone()].map(|user_id| Change::AddMember {
        group: "tight".into(),
        user_id,
    });
    assert!(matches!(
        f.store.apply_changes(o, &both, &[]).await,
        Err(StoreError::Conflict(_))
    ));
    f.store
        .apply_changes(
            o,
            &[Change::AddMember {
                group: "tight".into(),
                user_id: p1_id.clone(),
            }],
            &[],
        )
        .await
        .unwrap();
    assert!(matches!(
        f.store
            .apply_changes(
                o,
                &[Change::AddMember {
                    group: "tight".into(),
                    user_id: p2_id
                }],
                &[]
            )
            .await,
        Err(StoreError::Conflict(_))
    ));
    f.store
        .apply_changes(o, &[Change::DeleteGroup { name: "tight".into() }], &[])
        .await
        .unwrap();
    // An entry whose last change cannot apply leaves nothing behind.
    let bad = vec![
        Change::CreateGroup(Group::user_group(o, "Half", "", now())),
        Change::AddMember {
            group: "Half".into(),
            user_id: p1_id.clone(),
        },
        Change::AddMember {
            group: "Gone".into(),
            user_id: p1_id.clone(),
        },
    ];
    assert!(f.store.apply_changes(o, &bad, &[event("x")]).await.is_err());
    assert_eq!(f.store.groups(o).await.unwrap().len(), 2, "nothing half-applied");
}

/// Deleting a user group ends what it gave; administrative roles are granted and revoked.
async fn deleted_groups_and_roles(f: &Fixture, o: &str, p1_id: &str, profile_id: i64) {
    // Deleting the user group ends its members' inherited profile.
    f.store
        .apply_changes(
            o,
            &[Change::DeleteGroup {
                name: "marketers".into(),
            }],
            &[],
        )
        .await
        .unwrap();
    assert!(f.store.held_profiles(p1_id, None).await.unwrap().is_empty());

    let grant = RoleGrant {
        user_id: p1_id.to_owned(),
        role: AdminRole::ProfileAdmin,
        target: profile_id.to_string(),
    };
    f.store
        .set_role(&grant, true, now(), &event("role.grant"))
        .await
        .unwrap();
    f.store
        .set_role(&grant, true, now(), &event("role.grant"))
        .await
        .unwrap();
    assert_eq!(f.store.role_grants(p1_id).await.unwrap(), vec![grant.clone()]);
    f.store
        .set_role(&grant, false, now(), &event("role.revoke"))
        .await
        .unwrap();
    assert!(f.store.role_grants(p1_id).await.unwrap().is_empty());
}
