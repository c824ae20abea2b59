//! Administration of technical accounts (server-to-server credentials) and their secrets. Needs
//! the store only: no signing keys, so the CLI can run it against a live deployment's database.

use serde_json::json;
use std::sync::Arc;

use crate::developer::{self, Service};
use crate::model::{ClientSecretRecord, OAuthClient};
use crate::store::{CredentialStorage, NewTechnicalAccount};
use ims_core::audit::Context;
use ims_core::clock::Now;
use ims_core::error::{Error, Result};
use ims_core::secret::uuid_like;
use ims_core::secret::{self, Secret, CLIENT_SECRET_PREFIX};

/// A credential just created or a secret just added: the only time the secret is seen.
#[derive(Clone, Debug)]
pub struct NewSecret {
    pub client: OAuthClient,
    pub secret: Secret,
    pub record: ClientSecretRecord,
}

pub struct Credentials {
    store: Arc<dyn CredentialStorage>,
    /// Domain of technical account emails: `<id>@techacct.<domain>`.
    domain: String,
    /// When set, only this organisation's credentials exist for the caller.
    org: Option<String>,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("domain", &self.domain)
            .finish_non_exhaustive()
    }
}

impl Credentials {
    pub fn new(store: Arc<dyn CredentialStorage>, domain: impl Into<String>) -> Self {
        Credentials {
            store,
            domain: domain.into(),
            org: None,
        }
    }

    /// Credentials of one organisation only: others answer "not found".
    pub fn for_org(store: Arc<dyn CredentialStorage>, domain: impl Into<String>, org_id: &str) -> Self {
        Credentials {
            org: Some(org_id.to_owned()),
            ..Credentials::new(store, domain)
        }
    }

    fn visible(&self, org_id: &str) -> bool {
        self.org.as_deref().is_none_or(|o| o == org_id)
    }

    /// The client, if it exists and is visible to the caller.
    pub async fn credential(&self, client_id: &str) -> Result<OAuthClient> {
        self.store
            .client(client_id)
            .await?
            .filter(|c| self.visible(&c.org_id))
            .ok_or_else(|| Error::not_found(format!("no credential with client id {client_id}")))
    }

    /// A new technical account with its first secret, subscribed to `services` (their scopes are
    /// added to `scopes`).
    pub async fn create_credential(
        &self,
        org_id: &str,
        name: &str,
        scopes: Vec<String>,
        services: &[Service],
        ctx: &Context,
    ) -> Result<NewSecret> {
        self.store
            .org(org_id)
            .await?
            .filter(|o| self.visible(&o.org_id))
            .ok_or_else(|| Error::not_found(format!("organisation {org_id}")))?;
        let scopes = developer::scopes_with(&scopes, services);
        let client = OAuthClient::new_technical_account(org_id, name, scopes, &self.domain, ctx.now)?;
        let (secret, record) = new_secret_record(&client.client_id, None, ctx.now);
        let codes: Vec<String> = services.iter().map(|s| s.code.to_owned()).collect();
        let event = ctx.event(
            "credential.create",
            &client.client_id,
            "success",
            json!({"name": client.name, "technical_account_id": client.technical_account_id, "scopes": client.scopes, "services": codes, "secret_id": record.secret_id}),
        );
        self.store
            .create_technical_account(&NewTechnicalAccount {
                client: &client,
                secret: &record,
                unshown: None,
                new_project: None,
                placement: None,
                services: &codes,
                profiles: &[],
                audit: std::slice::from_ref(&event),
            })
            .await?;
        Ok(NewSecret {
            client,
            secret,
            record,
        })
    }

    /// Registers an application that signs people in. A confidential client gets its first
    /// secret (returned once); a public one has none.
    pub async fn create_people_client(
        &self,
        org_id: &str,
        new: NewPeopleClient<'_>,
        ctx: &Context,
    ) -> Result<(OAuthClient, Option<Secret>)> {
        let NewPeopleClient {
            name,
            client_type,
            redirect_uris,
            scopes,
            first_party,
        } = new;
        self.store
            .org(org_id)
            .await?
            .filter(|o| self.visible(&o.org_id))
            .ok_or_else(|| Error::not_found(format!("organisation {org_id}")))?;
        let mut client = OAuthClient::new_people_client(
            org_id,
            name,
            client_type,
            redirect_uris,
            scopes,
            &self.domain,
            ctx.now,
        )?;
        client.first_party = first_party;
        let secret = (client_type == crate::model::ClientType::Confidential)
            .then(|| new_secret_record(&client.client_id, None, ctx.now));
        let event = ctx.event(
            "client.create",
            &client.client_id,
            "success",
            json!({"name": client.name, "type": client_type.as_str(), "redirect_uris": client.redirect_uris, "scopes": client.scopes, "first_party": first_party}),
        );
        self.store
            .create_client(&client, secret.as_ref().map(|(_, r)| r), &event)
            .await?;
        Ok((client, secret.map(|(s, _)| s)))
    }

    pub async fn credentials(&self, org_id: &str) -> Result<Vec<(OAuthClient, Vec<ClientSecretRecord>)>> {
        if !self.visible(org_id) {
            return Err(Error::not_found(format!("organisation {org_id}")));
        }
        let mut out = Vec::new();
        for client in self.store.clients(org_id).await? {
            let secrets = self.store.secrets(&client.client_id).await?;
            out.push((client, secrets));
        }
        Ok(out)
    }

    pub async fn set_credential_disabled(
        &self,
        client_id: &str,
        disabled: bool,
        ctx: &Context,
    ) -> Result<()> {
        let action = if disabled {
            "credential.disable"
        } else {
            "credential.enable"
        };
        self.credential(client_id).await?;
        let event = ctx.event(action, client_id, "success", json!({}));
        if !self
            .store
            .set_client_disabled(client_id, disabled, ctx.now, &event)
            .await?
        {
            return Err(Error::not_found(format!(
                "no credential with client id {client_id}"
            )));
        }
        Ok(())
    }

    pub async fn add_secret(
        &self,
        client_id: &str,
        expires_at: Option<Now>,
        ctx: &Context,
    ) -> Result<NewSecret> {
        let client = self.credential(client_id).await?;
        if expires_at.is_some_and(|e| e <= ctx.now) {
            return Err(Error::invalid_request("a secret's expiry must be in the future"));
        }
        let (secret, record) = new_secret_record(client_id, expires_at, ctx.now);
        let event = ctx.event(
            "credential.secret.add",
            client_id,
            "success",
            json!({"secret_id": record.secret_id}),
        );
        self.store.add_secret(&record, &event).await?;
        Ok(NewSecret {
            client,
            secret,
            record,
        })
    }

    pub async fn remove_secret(&self, client_id: &str, secret_id: &str, ctx: &Context) -> Result<()> {
        self.credential(client_id).await?;
        let event = ctx.event(
            "credential.secret.remove",
            client_id,
            "success",
            json!({"secret_id": secret_id}),
        );
        if !self.store.remove_secret(client_id, secret_id, &event).await? {
            return Err(Error::not_found(format!(
                "credential {client_id} has no secret {secret_id}"
            )));
        }
        Ok(())
    }
}

pub(crate) fn new_secret_record(
    client_id: &str,
    expires_at: Option<Now>,
    now: Now,
) -> (Secret, ClientSecretRecord) {
    let secret = secret::generate(CLIENT_SECRET_PREFIX);
    let record = ClientSecretRecord {
        secret_id: uuid_like(),
        client_id: client_id.to_owned(),
        digest: secret::digest_hex(secret.expose()),
        hint: secret::hint(secret.expose()),
        created_at: now,
        expires_at,
    };
    (secret, record)
}

/// An application that signs people in, as it is registered.
#[derive(Debug)]
pub struct NewPeopleClient<'a> {
    pub name: &'a str,
    pub client_type: crate::model::ClientType,
    pub redirect_uris: Vec<String>,
    pub scopes: Vec<String>,
    /// One of the IMS's own applications (no consent asked; may read product profiles).
    pub first_party: bool,
}
