//! Developer Console projects, workspaces and the credentials they hold.

use ims_core::error::StoreError;
use ims_core::Now;
use ims_identity::developer::{Project, Workspace};
use ims_identity::directory::{Group, CAMPAIGN_PRODUCT_CONTEXT};
use ims_identity::model::{ClientSecretRecord, OAuthClient};
use ims_identity::store::{AuditStore, ClientStore, DeveloperStore, DirectoryStore, NewTechnicalAccount};
use ims_identity::umapi::Change;
use serde_json::json;

use crate::harness::*;

/// Developer Console projects and credentials: one transaction per creation, a first secret
/// taken once (and not at all once too old), scopes merged, deletion leaving nothing behind.
#[tokio::test]
async fn developer_console_on_both_backends() {
    for f in each_backend().await {
        let (org, _, _) = seeded(&f.store).await;
        let o = org.org_id.as_str();
        let profile_id = marketing_admin_profile(&f, o).await;
        let (project, workspace, client, secret) =
            a_project_and_its_first_credential(&f, o, profile_id).await;
        placement_and_subscriptions(&f, &project, &workspace, &client, profile_id).await;
        let other = unshown_secrets_taken_once(&f, o, &workspace, &client, &secret).await;
        last_secrets_and_deletion(&f, o, &project, &client, &other).await;
        f.cleanup().await;
    }
}

/// The id of the administrators' profile of the `marketing` product instance.
async fn marketing_admin_profile(f: &Fixture, o: &str) -> i64 {
    let instance = f
        .store
        .ensure_product_instance(o, CAMPAIGN_PRODUCT_CONTEXT, "marketing", "Marketing", "", now())
        .await
        .unwrap();
    let profile = Group::product_profile(o, "campaign - marketing - admin", &instance, now());
    f.store
        .apply_changes(o, &[Change::CreateGroup(profile)], &[event("profile.create")])
        .await
        .unwrap();
    f.store
        .group(o, "campaign - marketing - admin")
        .await
        .unwrap()
        .unwrap()
        .id
}

/// A project created with its first credential, a technical account holding the profile
/// `profile_id`; the same project again creates nothing.
async fn a_project_and_its_first_credential(
    f: &Fixture,
    o: &str,
    profile_id: i64,
) -> (Project, Workspace, OAuthClient, ClientSecretRecord) {
    let project = Project::new(o, "sync-job", "", "", "default", "admin:a@b.c", now()).unwrap();
    let workspace = Workspace::new(&project.id, "Production", "", "", now()).unwrap();
    let client =
        OAuthClient::new_technical_account(o, "Sync", vec!["openid".into()], "ims.test", now()).unwrap();
    let secret = ClientSecretRecord {
        secret_id: "first".into(),
        client_id: client.client_id.clone(),
        digest: "d".into(),
        hint: "imscs_...wxyz".into(),
        created_at: now(),
        expires_at: None,
    };
    let services = vec!["CampaignSDK".to_owned()];
    let new = NewTechnicalAccount {
        client: &client,
        secret: &secret,
        unshown: Some("sealed-value"),
        new_project: Some((&project, &workspace)),
        placement: Some((&workspace.id, "nightly")),
        services: &services,
        profiles: &[profile_id],
        audit: &[event("project.create"), event("credential.create")],
    };
    f.store.create_technical_account(&new).await.unwrap();
    // The same project again: nothing of the second attempt stays.
    let twin = OAuthClient::new_technical_account(o, "Twin", vec![], "ims.test", now()).unwrap();
    let twin_secret = ClientSecretRecord {
        client_id: twin.client_id.clone(),
        secret_id: "twin".into(),
        ..secret.clone()
    };
    let again = NewTechnicalAccount {
        client: &twin,
        secret: &twin_secret,
        ..new
    };
    assert!(matches!(
        f.store.create_technical_account(&again).await,
        Err(StoreError::Conflict(_))
    ));
    assert!(
        f.store.client(&twin.client_id).await.unwrap().is_none(),
        "all or nothing"
    );

    (project, workspace, client, secret)
}

/// Where the credential sits, and the services, scopes and profiles a subscription gives it.
async fn placement_and_subscriptions(
    f: &Fixture,
    project: &Project,
    workspace: &Workspace,
    client: &OAuthClient,
    profile_id: i64,
) {
    let placed = f
        .store
        .credential_placement(&client.client_id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (placed.project_id.as_str(), placed.description.as_str()),
        (project.id.as_str(), "nightly")
    );
    assert_eq!(
        f.store.workspace_credentials(&workspace.id).await.unwrap(),
        vec![client.client_id.clone()]
    );
    assert_eq!(
        f.store
            .credential_profiles(&client.client_id, None)
            .await
            .unwrap()
            .len(),
        1
    );

    // Scopes are added to what the credential has, each once.
    f.store
        .subscribe(
            &client.client_id,
            &["AdobeIOManagementAPISDK".to_owned()],
            &["openid".to_owned(), "adobeio_api".to_owned()],
            &[(profile_id, false)],
            &event("credential.subscribe"),
        )
        .await
        .unwrap();
    let stored = f.store.client(&client.client_id).await.unwrap().unwrap();
    assert_eq!(stored.scopes, vec!["openid".to_owned(), "adobeio_api".to_owned()]);
    assert_eq!(
        f.store
            .credential_services(&client.client_id)
            .await
            .unwrap()
            .len(),
        2
    );
    assert!(f
        .store
        .credential_profiles(&client.client_id, None)
        .await
        .unwrap()
        .is_empty());
}

/// The sealed copy of a first secret goes to one taker, and not at all once too old; the
/// credential created to show the latter.
async fn unshown_secrets_taken_once(
    f: &Fixture,
    o: &str,
    workspace: &Workspace,
    client: &OAuthClient,
    secret: &ClientSecretRecord,
) -> OAuthClient {
    // The sealed copy goes to one taker, with its audit line.
    let show = ctx().event("credential.secret.show", &client.client_id, "success", json!({}));
    assert_eq!(
        f.store.unshown_secrets(&client.client_id).await.unwrap(),
        vec!["first".to_owned()]
    );
    let taken = f
        .store
        .take_unshown_secrets(&client.client_id, now(), &show)
        .await
        .unwrap();
    assert_eq!(taken, vec![("first".to_owned(), "sealed-value".to_owned())]);
    assert!(f
        .store
        .take_unshown_secrets(&client.client_id, now(), &show)
        .await
        .unwrap()
        .is_empty());
    let lines = f
        .store
        .audit(&ims_core::audit::AuditQuery {
            action_prefix: Some("credential.secret.show".into()),
            limit: 10,
        })
        .await
        .unwrap();
    assert_eq!(
        (lines.len(), &lines[0].details["secret_ids"]),
        (1, &json!(["first"]))
    );
    // Too old to be shown: dropped unseen.
    let late = ClientSecretRecord {
        secret_id: "late".into(),
        ..secret.clone()
    };
    let other = OAuthClient::new_technical_account(o, "Late", vec![], "ims.test", now()).unwrap();
    let late = ClientSecretRecord {
        client_id: other.client_id.clone(),
        ..late
    };
    f.store
        .create_technical_account(&NewTechnicalAccount {
            client: &other,
            secret: &late,
            unshown: Some("sealed-late"),
            new_project: None,
            placement: Some((&workspace.id, "")),
            services: &[],
            profiles: &[],
            audit: &[event("credential.create")],
        })
        .await
        .unwrap();
    let after = Now::from_millis(now().millis() + 1);
    assert!(f
        .store
        .take_unshown_secrets(&other.client_id, after, &show)
        .await
        .unwrap()
        .is_empty());
    assert!(
        f.store
            .unshown_secrets(&other.client_id)
            .await
            .unwrap()
            .is_empty(),
        "dropped"
    );
    other
}

/// The last live secret of a credential stays; a project is deleted once its credentials are.
async fn last_secrets_and_deletion(
    f: &Fixture,
    o: &str,
    project: &Project,
    client: &OAuthClient,
    other: &OAuthClient,
) {
    // The last live secret stays; an expired one does not count.
    assert!(matches!(
        f.store
            .remove_secret_keeping_one(
                &client.client_id,
                "first",
                now(),
                &event("credential.secret.remove")
            )
            .await,
        Err(StoreError::Conflict(_))
    ));
    assert!(!f
        .store
        .remove_secret_keeping_one(
            &client.client_id,
            "nope",
            now(),
            &event("credential.secret.remove")
        )
        .await
        .unwrap());

    // A project holding credentials stays; deleting them leaves nothing behind.
    assert!(matches!(
        f.store
            .delete_project(o, &project.id, &event("project.delete"))
            .await,
        Err(StoreError::Conflict(_))
    ));
    for c in [&client.client_id, &other.client_id] {
        assert!(f
            .store
            .delete_client(c, &event("credential.delete"))
            .await
            .unwrap());
        assert!(f.store.client_with_secrets(c).await.unwrap().is_none());
        assert!(f.store.credential_services(c).await.unwrap().is_empty());
        assert!(f.store.credential_placement(c).await.unwrap().is_none());
    }
    assert!(!f
        .store
        .delete_client(&client.client_id, &event("credential.delete"))
        .await
        .unwrap());
    assert!(f
        .store
        .delete_project(o, &project.id, &event("project.delete"))
        .await
        .unwrap());
    assert!(f.store.project(o, &project.id).await.unwrap().is_none());
    assert!(f.store.workspaces(&project.id).await.unwrap().is_empty());
}
