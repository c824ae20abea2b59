//! People, their sign-in records and the grants the OpenID Connect flows rely on.

use ims_core::error::StoreError;
use ims_identity::grants::{AuthorizationCode, RefreshToken, Rotation};
use ims_identity::links::{AccountLink, LinkPurpose};
use ims_identity::mail::messages::{self, Recipient};
use ims_identity::model::{Organization, User};
use ims_identity::store::{GrantStore, OrgStore, OutboxStore, ThrottleStore, UserStore};

use crate::harness::*;

/// People, their sign-in records and the atomic steps the OpenID Connect flows rely on.
#[tokio::test]
async fn people_and_grants_on_both_backends() {
    for f in each_backend().await {
        let (org, _, _) = seeded(&f.store).await;
        let u = users_and_second_factors(&f, &org).await;
        sign_in_attempts(&f, &org).await;
        codes_and_refresh_tokens(&f, &u).await;
        reset_links_consents_and_purging(&f, &u).await;
        f.cleanup().await;
    }
}

/// Jane, stored and read back; her one-time and recovery codes each work once.
async fn users_and_second_factors(f: &Fixture, org: &Organization) -> User {
    // Users: case-insensitive uniqueness, round trip of every field, lost updates refused.
    let mut u = User::new(&org.org_id, "Jane.Doe@Example.com", "Jane", "Doe", now());
    u.country = Some("FR".into());
    u.recovery_codes = vec!["d1".into(), "d2".into()];
    f.store.create_user(&u, &event("user.create")).await.unwrap();
    let twin = User::new(&org.org_id, "JANE.DOE@example.com", "", "", now());
    assert!(matches!(
        f.store.create_user(&twin, &event("user.create")).await,
        Err(StoreError::Conflict(_))
    ));
    assert_eq!(f.store.user(&u.user_id).await.unwrap().unwrap(), u);
    assert!(f
        .store
        .use_second_factor(&u.user_id, Some(5), None, now(), &event("user.totp"))
        .await
        .unwrap());
    assert!(
        !f.store
            .use_second_factor(&u.user_id, Some(5), None, now(), &event("user.totp"))
            .await
            .unwrap(),
        "a step once"
    );
    let before = vec!["d1".to_owned(), "d2".to_owned()];
    let after = vec!["d2".to_owned()];
    assert!(f
        .store
        .use_second_factor(
            &u.user_id,
            None,
            Some((&before, &after)),
            now(),
            &event("user.recovery_code")
        )
        .await
        .unwrap());
    assert!(
        !f.store
            .use_second_factor(
                &u.user_id,
                None,
                Some((&before, &after)),
                now(),
                &event("user.recovery_code")
            )
            .await
            .unwrap(),
        "a code once"
    );
    assert_eq!(
        f.store.user(&u.user_id).await.unwrap().unwrap().recovery_codes,
        after
    );
    u
}

/// Sign-in attempts for one address of `org`, counted and locked out.
async fn sign_in_attempts(f: &Fixture, org: &Organization) {
    // Attempts: five let in, then the lock refuses and changes nothing; a success clears.
    let lock_ms = [0, 0, 0, 0, 30_000, 60_000];
    for n in 1..=5 {
        assert_eq!(
            f.store
                .admit_attempt(&org.org_id, "x@y.z", now(), 3600, &lock_ms, &format!("a{n}"))
                .await
                .unwrap(),
            (true, n)
        );
    }
    assert_eq!(
        f.store
            .admit_attempt(&org.org_id, "x@y.z", now(), 3600, &lock_ms, "a6")
            .await
            .unwrap(),
        (false, 5)
    );
    let later = now().plus_secs(31);
    assert_eq!(
        f.store
            .admit_attempt(&org.org_id, "x@y.z", later, 3600, &lock_ms, "a7")
            .await
            .unwrap(),
        (true, 6)
    );
    let (_, _, until) = f.store.failures(&org.org_id, "x@y.z").await.unwrap().unwrap();
    assert_eq!(until.millis(), later.millis() + 60_000);
    assert_eq!(
        f.store
            .admit_attempt(&org.org_id, "x@y.z", later.plus_secs(7200), 3600, &lock_ms, "a8")
            .await
            .unwrap(),
        (true, 1),
        "stale counters start over"
    );
    f.store.clear_failures(&org.org_id, "x@y.z").await.unwrap();
    assert!(f.store.failures(&org.org_id, "x@y.z").await.unwrap().is_none());
    // Free attempts set no lock: one that read the clock a little earlier than one counted
    // before it (concurrent requests) is let in.
    let t = later.plus_secs(9000);
    for (n, at) in [(1, t.plus_millis(5)), (2, t), (3, t.plus_millis(2))] {
        assert_eq!(
            f.store
                .admit_attempt(&org.org_id, "x@y.z", at, 3600, &lock_ms, &format!("b{n}"))
                .await
                .unwrap(),
            (true, n),
            "attempt {n}"
        );
    }
    f.store.clear_failures(&org.org_id, "x@y.z").await.unwrap();
}

/// An authorization code of `u`'s, redeemed once, and the refresh tokens it yields.
async fn codes_and_refresh_tokens(f: &Fixture, u: &User) {
    // Codes: one consumption wins.
    let code = AuthorizationCode {
        code_digest: "c1".into(),
        client_id: "cl".into(),
        user_id: u.user_id.clone(),
        redirect_uri: "https://a/cb".into(),
        scope: vec!["openid".into()],
        nonce: None,
        code_challenge: "x".repeat(43),
        auth_time: now(),
        amr: vec!["pwd".into()],
        created_at: now(),
        expires_at: now().plus_secs(60),
        consumed_at: None,
        grant_id: "g1".into(),
        access_token_id: None,
        replayed_at: None,
    };
    f.store.insert_code(&code).await.unwrap();
    assert_eq!(f.store.code("c1").await.unwrap().unwrap(), code);
    assert!(f.store.consume_code("c1", now()).await.unwrap().is_some());
    assert!(f.store.consume_code("c1", now()).await.unwrap().is_none());
    // Refresh tokens: a redemption stores the first, rotation wins once, the family revokes.
    let rt = |digest: &str, access: &str| RefreshToken {
        token_digest: digest.into(),
        family_id: "g1".into(),
        client_id: "cl".into(),
        user_id: u.user_id.clone(),
        scope: vec!["openid".into()],
        auth_time: now(),
        amr: vec!["pwd".into()],
        access_token_id: access.into(),
        access_expires_at: now().plus_secs(3600),
        created_at: now(),
        family_expires_at: now().plus_secs(86_400),
        used_at: None,
        revoked_at: None,
    };
    f.store.mark_code_replayed("c1", now()).await.unwrap();
    assert!(
        f.store
            .record_redemption("c1", "at1", Some(&rt("r1", "at1")), &event("token.issue"))
            .await
            .unwrap(),
        "the replay is seen"
    );
    assert!(matches!(
        f.store
            .rotate_refresh_token("r1", &rt("r2", "at2"), now())
            .await
            .unwrap(),
        Rotation::Rotated(_)
    ));
    assert!(matches!(
        f.store
            .rotate_refresh_token("r1", &rt("r3", "at3"), now())
            .await
            .unwrap(),
        Rotation::Spent(_)
    ));
    assert!(matches!(
        f.store
            .rotate_refresh_token("nope", &rt("r4", "at4"), now())
            .await
            .unwrap(),
        Rotation::Unknown
    ));
    let mut revoked: Vec<String> = f
        .store
        .revoke_family("g1", now())
        .await
        .unwrap()
        .into_iter()
        .map(|(id, _)| id)
        .collect();
    revoked.sort();
    assert_eq!(revoked, vec!["at1", "at2"]);
    assert!(f
        .store
        .refresh_token("r2")
        .await
        .unwrap()
        .unwrap()
        .revoked_at
        .is_some());
}

/// `u`'s password reset link and consents; then everything that ended is purged (the code and
/// refresh tokens of [`codes_and_refresh_tokens`] among them).
async fn reset_links_consents_and_purging(f: &Fixture, u: &User) {
    // Links: stored as digests with their message, used once, not after expiry; a password
    // set through one spends every other link of the person's.
    let to = Recipient {
        org_id: &u.org_id,
        org_name: "Acme",
        email: &u.email,
        name: &u.first_name,
    };
    let mail = messages::password(&to, "https://ims/ims/reset/p1", LinkPurpose::Reset, now());
    let (_, reset) = AccountLink::new(LinkPurpose::Reset, &u.user_id, now(), None);
    f.store
        .insert_account_link(&reset, Some(&mail), &event("user.password_reset_link"))
        .await
        .unwrap();
    assert_eq!(f.store.mail(&mail.mail_id).await.unwrap(), Some(mail));
    assert_eq!(
        f.store.account_link(&reset.token_digest).await.unwrap(),
        Some(reset.clone())
    );
    let (_, invite) = AccountLink::new(
        LinkPurpose::Invitation,
        &u.user_id,
        now().plus_secs(1),
        Some("https://mkt/console/".into()),
    );
    f.store
        .insert_account_link(&invite, None, &event("user.invite"))
        .await
        .unwrap();
    assert_eq!(
        f.store.latest_invitation(&u.user_id).await.unwrap(),
        Some(invite.clone())
    );
    assert_eq!(
        f.store
            .invitations_of(&[u.user_id.clone(), "nobody".into()])
            .await
            .unwrap(),
        vec![invite.clone()]
    );
    assert!(f.store.invitations_of(&[]).await.unwrap().is_empty());
    let mut changed = f.store.user(&u.user_id).await.unwrap().unwrap();
    changed.password_hash = Some("$argon2id$new".into());
    let late = now().plus_secs(LinkPurpose::Reset.lifetime_secs() + 1);
    assert!(!f
        .store
        .use_account_link(&reset.token_digest, &changed, late, &event("user.password"))
        .await
        .unwrap());
    assert!(f
        .store
        .use_account_link(&reset.token_digest, &changed, now(), &event("user.password"))
        .await
        .unwrap());
    assert!(!f
        .store
        .use_account_link(&reset.token_digest, &changed, now(), &event("user.password"))
        .await
        .unwrap());
    assert_eq!(
        f.store
            .user(&u.user_id)
            .await
            .unwrap()
            .unwrap()
            .password_hash
            .as_deref(),
        Some("$argon2id$new")
    );
    let spent = f.store.latest_invitation(&u.user_id).await.unwrap().unwrap();
    assert_eq!(spent.used_at, Some(now()), "the invitation went with the reset");
    assert!(!f
        .store
        .use_account_link(&invite.token_digest, &changed, now(), &event("user.password"))
        .await
        .unwrap());
    // The first sign-in is written once.
    f.store.record_first_sign_in(&u.user_id, now()).await.unwrap();
    f.store
        .record_first_sign_in(&u.user_id, now().plus_secs(99))
        .await
        .unwrap();
    assert_eq!(
        f.store.user(&u.user_id).await.unwrap().unwrap().first_sign_in_at,
        Some(now())
    );
    // Consents are replaced, not added to.
    f.store
        .set_consent(
            &u.user_id,
            "cl",
            &["openid".into()],
            now(),
            &event("user.consent"),
        )
        .await
        .unwrap();
    f.store
        .set_consent(
            &u.user_id,
            "cl",
            &["openid".into(), "email".into()],
            now(),
            &event("user.consent"),
        )
        .await
        .unwrap();
    assert_eq!(
        f.store.consent(&u.user_id, "cl").await.unwrap().unwrap(),
        vec!["openid", "email"]
    );
    // Purging removes what ended.
    assert!(f.store.purge_grants(now().plus_secs(100_000)).await.unwrap() >= 2);
    assert!(f.store.code("c1").await.unwrap().is_none());
}

#[tokio::test]
async fn bootstrap_happens_once_and_users_match_case_insensitively() {
    for f in each_backend().await {
        let (org, _, _) = seeded(&f.store).await;
        let other = Organization::new("Second", now());
        let mut admin = User::new(&other.org_id, "b@example.com", "", "", now());
        admin.user_id = "B@AdobeID".into();
        admin.system_admin = true;
        assert!(!f
            .store
            .bootstrap(&other, &admin, &event("org.bootstrap"))
            .await
            .unwrap());
        assert_eq!(f.store.orgs().await.unwrap(), vec![org.clone()]);
        let u = f
            .store
            .user_by_email(&org.org_id, "ADMIN@example.COM")
            .await
            .unwrap()
            .unwrap();
        assert_eq!(u.email, "Admin@Example.com", "stored as entered");
        assert!(u.system_admin);
        f.cleanup().await;
    }
}
