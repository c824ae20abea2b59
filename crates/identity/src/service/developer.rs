//! The Developer Console behind its API (`/console`) and its pages: who may use it (a person
//! holding the developer or system administrator role, through a first-party client, or a
//! technical account holding the `adobeio_api` scope, which the I/O Management API brings),
//! projects and workspaces, OAuth Server-to-Server credentials (the token service's technical
//! accounts, placed in a workspace), their subscriptions to services with product profiles, and
//! their secrets.
//!
//! Secrets are stored as digests. A credential created here has nobody to hand its first secret
//! to at once (the vendor's create call answers ids only, and clients read the secret next), so
//! that secret is also kept sealed under the master key until it is shown once, by whichever
//! read comes first (the integration's secrets, the workspace download, the "show" button of the
//! console page) and for a day at most; the sealed copy is then gone and later reads show a
//! hint. Secrets added later are shown in the answer that adds them and never kept.
//!
//! A credential that opens an API only system administrators may add (the User Management API)
//! is theirs alone: nobody else reads its secrets, adds one, changes or deletes it, and such an
//! API is added only when a credential is created, so no secret known to someone else ever
//! gains its powers.

use serde_json::json;

use std::sync::Arc;

use super::{IssuedToken, Result, Tokens};
use crate::credentials::{new_secret_record, NewSecret};
use crate::developer::{
    self, Placement, Project, Service, ServiceRequest, Workspace, CONSOLE_API_SCOPE, DEFAULT_WORKSPACE,
    MANAGE_SECRETS_SCOPE, READ_SECRETS_SCOPE, UNSHOWN_SECRET_SECS,
};
use crate::directory::{AdminRole, Group, GroupKind, ProductInstance};
use crate::model::{ClientSecretRecord, ClientType, OAuthClient, Organization};
use crate::service::directory::Administrator;
use crate::store::{DeveloperStorage, NewTechnicalAccount};
use ims_core::audit::Context;
use ims_core::error::{Error, ErrorKind};
use ims_core::secret::Secret;
use ims_core::Now;

/// Who calls the Developer Console (API or pages). Only [`Developer::console_caller`] and
/// [`ConsoleCaller::from_administrator`] make one.
#[derive(Clone, Debug)]
pub struct ConsoleCaller {
    org_id: String,
    /// The client the token was issued to (the pages: the Admin Console's).
    client_id: String,
    actor: String,
    system_admin: bool,
    /// A technical account: what it may do with secrets follows its scopes.
    technical_scopes: Option<Vec<String>>,
    /// May give a credential a profile that can carry ADMINISTRATION: a system administrator,
    /// or a technical account a system administrator opened the User Management API to (it
    /// can already give anyone any profile; the migration engine's is one).
    grants_administration: bool,
}

impl ConsoleCaller {
    /// A person signed in to the console pages, holding the developer or system administrator
    /// role.
    pub fn from_administrator(admin: &Administrator) -> Result<Self> {
        let system_admin = admin.holds(AdminRole::SystemAdmin);
        if !(system_admin || admin.holds(AdminRole::Developer)) {
            return Err(Error::forbidden(
                "the Developer Console needs the developer or system administrator role",
            ));
        }
        Ok(ConsoleCaller {
            org_id: admin.org_id().to_owned(),
            client_id: admin.client_id().to_owned(),
            actor: admin.actor().to_owned(),
            system_admin,
            technical_scopes: None,
            grants_administration: system_admin,
        })
    }

    pub fn org_id(&self) -> &str {
        &self.org_id
    }

    pub fn client_id(&self) -> &str {
        &self.client_id
    }

    /// `admin:<email>` or `client:<client id>`, for the audit log and `who_created`.
    pub fn actor(&self) -> &str {
        &self.actor
    }

    /// Holds the system administrator role (people only): may add the APIs that administer the
    /// whole organisation, and manage the credentials that open them.
    pub fn system_admin(&self) -> bool {
        self.system_admin
    }

    fn may(&self, scope: &'static str) -> Result<()> {
        match &self.technical_scopes {
            Some(scopes) if !scopes.iter().any(|s| s == scope) => Err(Error::insufficient_scope(scope)),
            _ => Ok(()),
        }
    }
}

/// A credential as the console shows it.
#[derive(Clone, Debug)]
pub struct Integration {
    pub client: OAuthClient,
    /// Where it sits, for credentials created in a workspace.
    pub placement: Option<Placement>,
    pub services: Vec<Service>,
    /// The product profiles it holds, with their product instances.
    pub profiles: Vec<LicenseConfig>,
    pub secrets: Vec<ClientSecretRecord>,
}

/// A product profile offered as a service's license config.
#[derive(Clone, Debug)]
pub struct LicenseConfig {
    pub profile: Group,
    pub instance: ProductInstance,
}

/// A secret in a listing: its value only the first time it is shown.
#[derive(Clone, Debug)]
pub struct ListedSecret {
    pub record: ClientSecretRecord,
    pub value: Option<Secret>,
}

/// What a new console credential is: where it goes (`None`: a project of its own), its name
/// and description, and the services it is subscribed to.
#[derive(Debug)]
pub struct NewConsoleCredential<'a> {
    pub placement: Option<(Project, Workspace)>,
    pub name: &'a str,
    pub description: &'a str,
    pub requests: &'a [ServiceRequest],
}

/// A credential just created, and where.
#[derive(Clone, Debug)]
pub struct CreatedCredential {
    pub integration: Integration,
    pub project: Project,
    pub workspace: Workspace,
    pub subscribed: Vec<String>,
}

/// What a subscription request resolves to before anything is written.
struct Subscription {
    services: Vec<Service>,
    profiles: Vec<(LicenseConfig, bool)>,
}

/// Most secrets a credential holds at once (rotation needs two).
pub const MAX_SECRETS: usize = 10;

fn unshown_label(secret_id: &str) -> String {
    format!("client-secret:{secret_id}")
}

/// The Developer Console service: projects, workspaces, and the technical account credentials
/// placed in them with their services, product profiles and secrets.
pub struct Developer {
    store: Arc<dyn DeveloperStorage>,
    tokens: Arc<Tokens>,
}

impl std::fmt::Debug for Developer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Developer").finish_non_exhaustive()
    }
}

impl Developer {
    pub(super) fn new(store: Arc<dyn DeveloperStorage>, tokens: Arc<Tokens>) -> Self {
        Developer { store, tokens }
    }

    /// Credential administration within `admin`'s organisation (the administration API).
    pub fn credentials(&self, admin: &crate::admin::SystemAdmin) -> crate::credentials::Credentials {
        admin.credentials(
            Arc::<dyn DeveloperStorage>::clone(&self.store),
            &self.tokens.settings().domain,
        )
    }

    /// Who is calling the Developer Console API with this token and `x-api-key`.
    pub async fn console_caller(
        &self,
        token: &str,
        api_key: Option<&str>,
        now: Now,
    ) -> Result<ConsoleCaller> {
        let valid = self.tokens.validate_access_token(token, now).await?;
        if api_key != Some(valid.client_id.as_str()) {
            return Err(Error::forbidden(
                "x-api-key must be the client id the access token was issued to",
            ));
        }
        if valid.client.client_type == ClientType::TechnicalAccount {
            valid.require_scope(CONSOLE_API_SCOPE)?;
            return Ok(ConsoleCaller {
                org_id: valid.org_id.clone(),
                client_id: valid.client_id.clone(),
                actor: format!("client:{}", valid.client_id),
                system_admin: false,
                technical_scopes: Some(valid.scopes().map(str::to_owned).collect()),
                grants_administration: valid
                    .scopes()
                    .any(|s| s == crate::service::directory::UMAPI_SCOPE),
            });
        }
        let user_id = valid
            .claims
            .get("user_id")
            .and_then(serde_json::Value::as_str)
            .ok_or_else(|| Error::invalid_token("token names no user"))?;
        // A person acts here only through our own applications: a third-party application the
        // person consented to (for `openid`, say) does not get to create credentials.
        if !valid.client.first_party {
            return Err(Error::forbidden(
                "people use the Developer Console through a first-party application",
            ));
        }
        // ... and one the token was granted the console API for (see `umapi_caller`).
        valid.require_scope(CONSOLE_API_SCOPE)?;
        let admin = super::directory::administrator(self.store.as_ref(), user_id, &valid.client_id).await?;
        ConsoleCaller::from_administrator(&admin)
    }

    /// The caller's organisation, named in a path by its numeric id or its `...@AdobeOrg` code.
    pub async fn console_org(&self, caller: &ConsoleCaller, named: &str) -> Result<Organization> {
        let org = self.tokens.organization(&caller.org_id).await?;
        if org.numeric_id.to_string() == named || org.org_id == named {
            return Ok(org);
        }
        Err(Error::forbidden(format!(
            "organisation {:?} is not the caller's",
            named.chars().take(64).collect::<String>()
        )))
    }

    pub async fn console_projects(&self, org: &Organization) -> Result<Vec<Project>> {
        Ok(self.store.projects(&org.org_id).await?)
    }

    pub async fn console_project(&self, org: &Organization, project_id: &str) -> Result<Project> {
        self.store
            .project(&org.org_id, project_id)
            .await?
            .ok_or_else(|| Error::not_found(format!("no project {project_id:?} in this organisation")))
    }

    /// A workspace of a project of the organisation.
    pub async fn console_workspace(
        &self,
        org: &Organization,
        project_id: &str,
        workspace_id: &str,
    ) -> Result<(Project, Workspace)> {
        let project = self.console_project(org, project_id).await?;
        let workspace = self
            .store
            .workspaces(&project.id)
            .await?
            .into_iter()
            .find(|w| w.id == workspace_id)
            .ok_or_else(|| Error::not_found(format!("no workspace {workspace_id:?} in this project")))?;
        Ok((project, workspace))
    }

    pub async fn console_workspaces(&self, project: &Project) -> Result<Vec<Workspace>> {
        Ok(self.store.workspaces(&project.id).await?)
    }

    /// A new project (built by [`Project::new`] for the caller's organisation) with its
    /// default workspace.
    pub async fn create_project(&self, project: Project, ctx: &Context) -> Result<(Project, Workspace)> {
        let (workspace, event) = default_workspace(&project, ctx)?;
        self.store
            .create_project(&project, &workspace, &event)
            .await
            .map_err(|e| conflict_as(e, format!("a project named {:?} exists already", project.name)))?;
        Ok((project, workspace))
    }

    pub async fn create_workspace(
        &self,
        org: &Organization,
        project_id: &str,
        name: &str,
        title: &str,
        description: &str,
        ctx: &Context,
    ) -> Result<Workspace> {
        let project = self.console_project(org, project_id).await?;
        let workspace = Workspace::new(&project.id, name, title, description, ctx.now)?;
        let event = ctx.event(
            "workspace.create",
            &workspace.id,
            "success",
            json!({"project_id": project.id, "name": workspace.name}),
        );
        self.store
            .create_workspace(&workspace, &event)
            .await
            .map_err(|e| {
                conflict_as(
                    e,
                    format!("the project has a workspace named {:?}", workspace.name),
                )
            })?;
        Ok(workspace)
    }

    /// Deletes a project and its workspaces once it holds no credential.
    /// Renames a project (`editProject`): name and title, and the description when given.
    pub async fn rename_project(
        &self,
        org: &Organization,
        project_id: &str,
        name: &str,
        title: &str,
        description: Option<&str>,
        ctx: &Context,
    ) -> Result<Project> {
        let project = self.console_project(org, project_id).await?;
        let renamed = project.renamed(name, title, description)?;
        let event = ctx.event(
            "project.rename",
            &project.id,
            "success",
            json!({"from": project.name, "name": renamed.name, "title": renamed.title}),
        );
        let found = self
            .store
            .update_project(&renamed, &event)
            .await
            .map_err(|e| conflict_as(e, format!("a project named {:?} exists already", renamed.name)))?;
        if !found {
            return Err(Error::not_found(format!(
                "no project {project_id:?} in this organisation"
            )));
        }
        Ok(renamed)
    }

    pub async fn delete_project(&self, org: &Organization, project_id: &str, ctx: &Context) -> Result<()> {
        let project = self.console_project(org, project_id).await?;
        let event = ctx.event(
            "project.delete",
            &project.id,
            "success",
            json!({"name": project.name}),
        );
        if !self
            .store
            .delete_project(&org.org_id, &project.id, &event)
            .await?
        {
            return Err(Error::not_found(format!(
                "no project {project_id:?} in this organisation"
            )));
        }
        Ok(())
    }

    /// The product profiles a service offers as license configs: those of the product
    /// instances of its product context.
    pub async fn license_configs(&self, org: &Organization, service: Service) -> Result<Vec<LicenseConfig>> {
        let Some(context) = service.product_context else {
            return Ok(Vec::new());
        };
        let instances: Vec<ProductInstance> = self
            .store
            .product_instances(&org.org_id)
            .await?
            .into_iter()
            .filter(|i| i.product_context == context)
            .collect();
        let mut out = Vec::new();
        for (group, _) in self.store.groups(&org.org_id).await? {
            if group.kind != GroupKind::ProductProfile {
                continue;
            }
            if let Some(instance) = instances.iter().find(|i| Some(i.id) == group.product_instance_id) {
                out.push(LicenseConfig {
                    profile: group,
                    instance: instance.clone(),
                });
            }
        }
        Ok(out)
    }

    /// Resolves a subscription request whole, or refuses it whole.
    async fn resolve(
        &self,
        caller: &ConsoleCaller,
        org: &Organization,
        requests: &[ServiceRequest],
    ) -> Result<Subscription> {
        let mut services = Vec::new();
        let mut profiles = Vec::new();
        for req in requests {
            let service = req.service()?;
            if service.system_admin_only && !caller.system_admin {
                return Err(Error::forbidden(format!(
                    "only a system administrator may subscribe a credential to the {}",
                    service.name
                )));
            }
            let ops = req.license_configs.as_deref().unwrap_or_default();
            if !ops.is_empty() {
                let offered = self.license_configs(org, service).await?;
                if offered.is_empty() && service.product_context.is_none() {
                    return Err(Error::invalid_request(format!(
                        "the {} has no license configs",
                        service.name
                    )));
                }
                for op in ops {
                    let config = offered
                        .iter()
                        .find(|c| c.profile.id.to_string() == op.id)
                        .ok_or_else(|| {
                            Error::invalid_request(format!(
                                "license config {:?} is not a product profile of the {}",
                                op.id.chars().take(32).collect::<String>(),
                                service.name
                            ))
                        })?;
                    if op
                        .product_id
                        .as_deref()
                        .is_some_and(|p| p != config.instance.id.to_string())
                    {
                        return Err(Error::invalid_request(format!(
                            "license config {} belongs to product {}, not {:?}",
                            op.id,
                            config.instance.id,
                            op.product_id.as_deref().unwrap_or_default()
                        )));
                    }
                    let adds = op.adds()?;
                    // Roles bound their reach: a developer (or a technical account using the
                    // console API) gives a credential ordinary profiles only; one that can carry
                    // ADMINISTRATION needs a system administrator (or a credential holding the
                    // User Management API). Taking one away is allowed.
                    if adds && !caller.grants_administration && config.profile.carries_administration() {
                        return Err(Error::forbidden(format!(
                            "the product profile {:?} can carry ADMINISTRATION: only a system administrator may give it to a credential",
                            config.profile.name
                        )));
                    }
                    profiles.push((config.clone(), adds));
                }
            }
            if !services.contains(&service) {
                services.push(service);
            }
        }
        Ok(Subscription { services, profiles })
    }

    /// An OAuth Server-to-Server credential in a workspace (or, with `placement` `None`, in a
    /// new project of its own, as the vendor's organisation-level form does), subscribed to
    /// its requested services.
    pub async fn create_console_credential(
        &self,
        caller: &ConsoleCaller,
        org: &Organization,
        new: NewConsoleCredential<'_>,
        ctx: &Context,
    ) -> Result<CreatedCredential> {
        let NewConsoleCredential {
            placement,
            name,
            description,
            requests,
        } = new;
        developer::check_text("a credential description", description, 1000)?;
        let sub = self.resolve(caller, org, requests).await?;
        let scopes = developer::scopes_with(&[], &sub.services);
        let client = OAuthClient::new_technical_account(
            &org.org_id,
            name,
            scopes,
            &self.tokens.settings().domain,
            ctx.now,
        )?;
        // The organisation-level form gives the credential a project of its own, made in the
        // same transaction.
        let (project, workspace, project_event) = match placement {
            Some((p, w)) => (p, w, None),
            None => {
                let project_name = project_name_for(&client.name);
                let title: String = client.name.chars().take(45).collect();
                let project = Project::new(
                    &org.org_id,
                    &project_name,
                    &title,
                    description,
                    "default",
                    &caller.actor,
                    ctx.now,
                )?;
                let (workspace, event) = default_workspace(&project, ctx)?;
                (project, workspace, Some(event))
            }
        };
        let (secret, record) = new_secret_record(&client.client_id, None, ctx.now);
        let sealed = self
            .tokens
            .master
            .seal(&unshown_label(&record.secret_id), secret.expose().as_bytes())?;
        drop(secret);
        let codes: Vec<String> = sub.services.iter().map(|s| s.code.to_owned()).collect();
        let given: Vec<&LicenseConfig> = sub
            .profiles
            .iter()
            .filter(|(_, add)| *add)
            .map(|(c, _)| c)
            .collect();
        let own_project = project_event.is_some();
        let mut audit: Vec<_> = project_event.into_iter().collect();
        audit.push(ctx.event(
            "credential.create",
            &client.client_id,
            "success",
            json!({
                "name": client.name,
                "technical_account_id": client.technical_account_id,
                "project_id": project.id,
                "workspace_id": workspace.id,
                "services": codes,
                "profiles": given.iter().map(|c| &c.profile.name).collect::<Vec<_>>(),
                "scopes": client.scopes,
                "secret_id": record.secret_id,
            }),
        ));
        let profile_ids: Vec<i64> = given.iter().map(|c| c.profile.id).collect();
        let new = NewTechnicalAccount {
            client: &client,
            secret: &record,
            unshown: Some(&sealed),
            new_project: own_project.then_some((&project, &workspace)),
            placement: Some((&workspace.id, description)),
            services: &codes,
            profiles: &profile_ids,
            audit: &audit,
        };
        self.store.create_technical_account(&new).await.map_err(|e| {
            conflict_as(
                e,
                "the workspace or a product profile changed meanwhile; try again".to_owned(),
            )
        })?;
        // What was just written, as the console shows it (no need to read it back).
        let integration = Integration {
            placement: Some(Placement {
                project_id: project.id.clone(),
                workspace_id: workspace.id.clone(),
                description: description.to_owned(),
            }),
            services: sub.services.clone(),
            profiles: given.into_iter().cloned().collect(),
            secrets: vec![record],
            client,
        };
        Ok(CreatedCredential {
            integration,
            project,
            workspace,
            subscribed: codes,
        })
    }

    /// The organisation's technical account credentials (console-made or not), oldest first.
    pub async fn integrations(&self, org: &Organization) -> Result<Vec<OAuthClient>> {
        Ok(self
            .store
            .clients(&org.org_id)
            .await?
            .into_iter()
            .filter(|c| c.client_type == ClientType::TechnicalAccount)
            .collect())
    }

    /// One credential of the organisation with what the console shows of it.
    pub async fn integration(&self, org: &Organization, client_id: &str) -> Result<Integration> {
        let client = self
            .store
            .client(client_id)
            .await?
            .filter(|c| c.org_id == org.org_id && c.client_type == ClientType::TechnicalAccount)
            .ok_or_else(|| Error::not_found(format!("no credential {client_id:?} in this organisation")))?;
        self.describe(client, &self.offered(org).await?).await
    }

    /// Credentials of the organisation with what the console shows of them; the organisation's
    /// license configs are read once for all.
    pub async fn describe_integrations(
        &self,
        org: &Organization,
        clients: Vec<OAuthClient>,
    ) -> Result<Vec<Integration>> {
        let offered = self.offered(org).await?;
        let mut out = Vec::with_capacity(clients.len());
        for client in clients {
            out.push(self.describe(client, &offered).await?);
        }
        Ok(out)
    }

    /// Every license config of every service that has them: the profiles a credential may hold.
    async fn offered(&self, org: &Organization) -> Result<Vec<LicenseConfig>> {
        let mut out = Vec::new();
        for service in Service::ALL.into_iter().filter(|s| s.product_context.is_some()) {
            out.extend(self.license_configs(org, service).await?);
        }
        Ok(out)
    }

    async fn describe(&self, client: OAuthClient, offered: &[LicenseConfig]) -> Result<Integration> {
        let client_id = &client.client_id;
        let services = self
            .store
            .credential_services(client_id)
            .await?
            .iter()
            .filter_map(|code| Service::by_code(code))
            .collect();
        let held = self.store.credential_profiles(client_id, None).await?;
        let profiles = offered
            .iter()
            .filter(|c| held.iter().any(|h| h.profile == c.profile.name))
            .cloned()
            .collect();
        Ok(Integration {
            placement: self.store.credential_placement(client_id).await?,
            secrets: self.store.secrets(client_id).await?,
            client,
            services,
            profiles,
        })
    }

    /// A credential the caller may read the secrets of, change or delete. Developers and
    /// technical accounts manage the credentials made in the Developer Console; the others
    /// (made from the command line or the administration API) and those that open an API only
    /// system administrators may add are system administrators' alone, or a developer could
    /// take a secret and act with powers they do not hold.
    async fn managed(
        &self,
        caller: &ConsoleCaller,
        org: &Organization,
        client_id: &str,
    ) -> Result<Integration> {
        let integration = self.integration(org, client_id).await?;
        if caller.system_admin {
            return Ok(integration);
        }
        if integration.placement.is_none() {
            return Err(Error::forbidden(
                "this credential was not made in the Developer Console: a system administrator manages it",
            ));
        }
        if opens_admin_api(&integration.client, &integration.services) {
            return Err(Error::forbidden(
                "this credential opens an API only system administrators manage",
            ));
        }
        Ok(integration)
    }

    /// The credentials of a workspace.
    pub async fn workspace_integrations(
        &self,
        org: &Organization,
        workspace: &Workspace,
    ) -> Result<Vec<Integration>> {
        let mut clients = Vec::new();
        for client_id in self.store.workspace_credentials(&workspace.id).await? {
            clients.extend(
                self.store
                    .client(&client_id)
                    .await?
                    .filter(|c| c.org_id == org.org_id),
            );
        }
        self.describe_integrations(org, clients).await
    }

    /// Subscribes a credential to services, giving or taking product profiles; answers the
    /// services it is subscribed to afterwards. Refused whole on any bad part. An API only
    /// system administrators may add comes with a new credential only: its secrets may be known
    /// to people who should not get its powers.
    pub async fn subscribe_credential(
        &self,
        caller: &ConsoleCaller,
        org: &Organization,
        client_id: &str,
        requests: &[ServiceRequest],
        ctx: &Context,
    ) -> Result<Vec<String>> {
        let integration = self.managed(caller, org, client_id).await?;
        let sub = self.resolve(caller, org, requests).await?;
        if let Some(s) = sub
            .services
            .iter()
            .find(|s| s.system_admin_only && !integration.services.contains(s))
        {
            return Err(Error::conflict(format!(
                "the {} is added when a credential is created: create a new credential for it",
                s.name
            )));
        }
        let scopes = developer::scopes_with(&[], &sub.services);
        let codes: Vec<String> = sub.services.iter().map(|s| s.code.to_owned()).collect();
        let names = |add: bool| -> Vec<&str> {
            sub.profiles
                .iter()
                .filter(|(_, a)| *a == add)
                .map(|(c, _)| c.profile.name.as_str())
                .collect()
        };
        let event = ctx.event(
            "credential.subscribe",
            client_id,
            "success",
            json!({"services": codes, "profiles_added": names(true), "profiles_removed": names(false), "scopes_added": scopes}),
        );
        let ops: Vec<(i64, bool)> = sub.profiles.iter().map(|(c, add)| (c.profile.id, *add)).collect();
        self.store
            .subscribe(client_id, &codes, &scopes, &ops, &event)
            .await
            .map_err(|e| {
                conflict_as(
                    e,
                    "the credential or a product profile changed meanwhile; try again".to_owned(),
                )
            })?;
        Ok(self.store.credential_services(client_id).await?)
    }

    /// The credential's secrets. With `show`, a secret never shown before (and at most a day
    /// old) is shown now, once; without, every secret is listed by its hint.
    pub async fn credential_secrets(
        &self,
        caller: &ConsoleCaller,
        org: &Organization,
        client_id: &str,
        show: bool,
        ctx: &Context,
    ) -> Result<(Integration, Vec<ListedSecret>)> {
        caller.may(READ_SECRETS_SCOPE)?;
        let integration = self.managed(caller, org, client_id).await?;
        let listed = if show {
            self.show_secrets(&integration, ctx).await?
        } else {
            hints(&integration)
        };
        Ok((integration, listed))
    }

    async fn show_secrets(&self, integration: &Integration, ctx: &Context) -> Result<Vec<ListedSecret>> {
        let client_id = &integration.client.client_id;
        let not_before = Now::from_millis(ctx.now.millis().saturating_sub(UNSHOWN_SECRET_SECS * 1000));
        let event = ctx.event("credential.secret.show", client_id, "success", json!({}));
        let taken = self
            .store
            .take_unshown_secrets(client_id, not_before, &event)
            .await?;
        let mut listed = Vec::with_capacity(integration.secrets.len());
        for record in &integration.secrets {
            let value = match taken.iter().find(|(id, _)| *id == record.secret_id) {
                Some((id, sealed)) => {
                    let plain = self.tokens.master.open(&unshown_label(id), sealed)?;
                    Some(Secret::new(String::from_utf8_lossy(&plain).into_owned()))
                }
                None => None,
            };
            listed.push(ListedSecret {
                record: record.clone(),
                value,
            });
        }
        Ok(listed)
    }

    /// Whether the credential has a secret waiting to be shown (the page offers to show it).
    pub async fn has_unshown_secret(&self, client_id: &str) -> Result<bool> {
        Ok(!self.store.unshown_secrets(client_id).await?.is_empty())
    }

    /// The workspace download's credentials: the ones the caller manages with their secrets
    /// (a first secret shown now, once), the others without any.
    pub async fn workspace_download(
        &self,
        caller: &ConsoleCaller,
        org: &Organization,
        workspace: &Workspace,
        ctx: &Context,
    ) -> Result<Vec<(Integration, Vec<ListedSecret>)>> {
        let mut out = Vec::new();
        for client_id in self.store.workspace_credentials(&workspace.id).await? {
            match self.credential_secrets(caller, org, &client_id, true, ctx).await {
                Ok(found) => out.push(found),
                Err(e)
                    if matches!(
                        e.kind(),
                        ErrorKind::Forbidden | ErrorKind::InsufficientScope { .. }
                    ) =>
                {
                    out.push((self.integration(org, &client_id).await?, Vec::new()));
                }
                Err(e) => return Err(e),
            }
        }
        Ok(out)
    }

    /// Adds a secret (rotation: add, move the integration, then remove the old one).
    pub async fn add_credential_secret(
        &self,
        caller: &ConsoleCaller,
        org: &Organization,
        client_id: &str,
        ctx: &Context,
    ) -> Result<NewSecret> {
        caller.may(MANAGE_SECRETS_SCOPE)?;
        let integration = self.managed(caller, org, client_id).await?;
        if integration.secrets.len() >= MAX_SECRETS {
            return Err(Error::conflict(format!(
                "a credential holds {MAX_SECRETS} secrets at most: remove one first"
            )));
        }
        crate::credentials::Credentials::for_org(
            Arc::<dyn DeveloperStorage>::clone(&self.store),
            &self.tokens.settings().domain,
            &org.org_id,
        )
        .add_secret(client_id, None, ctx)
        .await
    }

    /// Removes a secret: the token endpoint refuses it at once. The last live secret stays: a
    /// credential without one could never be used again (disable or delete it instead).
    pub async fn remove_credential_secret(
        &self,
        caller: &ConsoleCaller,
        org: &Organization,
        client_id: &str,
        secret_id: &str,
        ctx: &Context,
    ) -> Result<()> {
        caller.may(MANAGE_SECRETS_SCOPE)?;
        self.managed(caller, org, client_id).await?;
        let event = ctx.event(
            "credential.secret.remove",
            client_id,
            "success",
            json!({"secret_id": secret_id}),
        );
        if !self
            .store
            .remove_secret_keeping_one(client_id, secret_id, ctx.now, &event)
            .await?
        {
            return Err(Error::not_found(format!(
                "the credential has no secret {secret_id:?}"
            )));
        }
        Ok(())
    }

    /// Deletes a credential: its secrets stop working and its tokens stop validating at once
    /// (offline verifiers such as instances stop at the tokens' expiry, at most
    /// `access_token_secs`). Answers where it was.
    pub async fn delete_console_credential(
        &self,
        caller: &ConsoleCaller,
        org: &Organization,
        client_id: &str,
        ctx: &Context,
    ) -> Result<Option<Placement>> {
        let integration = self.managed(caller, org, client_id).await?;
        let event = ctx.event(
            "credential.delete",
            client_id,
            "success",
            json!({
                "name": integration.client.name,
                "technical_account_id": integration.client.technical_account_id,
                "project_id": integration.placement.as_ref().map(|p| &p.project_id),
                "workspace_id": integration.placement.as_ref().map(|p| &p.workspace_id),
            }),
        );
        if !self.store.delete_client(client_id, &event).await? {
            return Err(Error::not_found(format!(
                "no credential {client_id:?} in this organisation"
            )));
        }
        Ok(integration.placement)
    }

    /// A test access token for a credential, as the console's "generate access token" button
    /// gives: every scope the credential may request. Audited like any token.
    pub async fn console_test_token(
        &self,
        caller: &ConsoleCaller,
        org: &Organization,
        client_id: &str,
        ctx: &Context,
    ) -> Result<IssuedToken> {
        let integration = self.managed(caller, org, client_id).await?;
        let client = integration.client;
        if client.disabled {
            return Err(Error::conflict("the credential is disabled"));
        }
        let issued = self
            .tokens
            .issue_access_token(
                &client,
                &client.technical_account_id,
                client.scopes.clone(),
                ctx.now,
            )
            .await?;
        let event = ctx.event(
            "token.issue",
            &client.client_id,
            "success",
            json!({"grant_type": "console", "token_id": issued.token_id}),
        );
        self.store.append_audit(&event).await?;
        Ok(issued)
    }
}

/// Whether a credential opens an API only system administrators may add: subscribed to it, or
/// holding a scope only it brings (a credential made with `--scope` rather than `--service`).
fn opens_admin_api(client: &OAuthClient, services: &[Service]) -> bool {
    services.iter().any(|s| s.system_admin_only)
        || Service::ALL
            .iter()
            .filter(|s| s.system_admin_only)
            .flat_map(|s| s.scopes.iter())
            .filter(|scope| {
                !Service::ALL
                    .iter()
                    .any(|o| !o.system_admin_only && o.scopes.contains(scope))
            })
            .any(|scope| client.scopes.iter().any(|have| have == scope))
}

/// Every secret of a credential by its hint.
fn hints(integration: &Integration) -> Vec<ListedSecret> {
    integration
        .secrets
        .iter()
        .map(|record| ListedSecret {
            record: record.clone(),
            value: None,
        })
        .collect()
}

/// A project's first workspace, and the audit line of the project's creation.
fn default_workspace(project: &Project, ctx: &Context) -> Result<(Workspace, ims_core::audit::AuditEvent)> {
    let workspace = Workspace::new(&project.id, DEFAULT_WORKSPACE, DEFAULT_WORKSPACE, "", ctx.now)?;
    let event = ctx.event(
        "project.create",
        &project.id,
        "success",
        json!({"name": project.name, "title": project.title, "workspace_id": workspace.id}),
    );
    Ok((workspace, event))
}

/// A project name for a credential created at organisation level: its name's usable
/// characters and a random suffix, so two credentials of one name get two projects.
fn project_name_for(credential: &str) -> String {
    let stem: String = credential
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '-'
            }
        })
        .skip_while(|c| !c.is_ascii_alphanumeric())
        .take(30)
        .collect();
    let stem = if stem.len() < 3 {
        "integration".to_owned()
    } else {
        stem
    };
    format!("{stem}-{}", ims_core::secret::random_hex(3))
}

fn conflict_as(e: ims_core::error::StoreError, message: String) -> Error {
    match e {
        ims_core::error::StoreError::Conflict(_) => Error::conflict(message),
        other => other.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn organisation_level_credentials_get_a_valid_project_name() {
        for name in [
            "Campaign sync",
            "ü",
            "--x",
            "a very long credential name that goes on and on",
            "ok_name",
        ] {
            let p = project_name_for(name);
            developer::check_name("project", &p).unwrap_or_else(|e| panic!("{name:?} -> {p:?}: {e}"));
        }
    }

    #[test]
    fn technical_accounts_need_the_secret_scopes_and_people_do_not() {
        let tech = ConsoleCaller {
            org_id: "O".into(),
            client_id: "x".into(),
            actor: "client:x".into(),
            system_admin: false,
            technical_scopes: Some(vec![CONSOLE_API_SCOPE.into(), READ_SECRETS_SCOPE.into()]),
            grants_administration: false,
        };
        tech.may(READ_SECRETS_SCOPE).unwrap();
        assert_eq!(
            tech.may(MANAGE_SECRETS_SCOPE).map_err(|e| e.kind()),
            Err(ErrorKind::InsufficientScope {
                scope: MANAGE_SECRETS_SCOPE
            })
        );
        let person = ConsoleCaller {
            org_id: "O".into(),
            client_id: "console".into(),
            actor: "admin:dev@example.com".into(),
            system_admin: false,
            technical_scopes: None,
            grants_administration: false,
        };
        person.may(MANAGE_SECRETS_SCOPE).unwrap();
    }
}
