//! The User Management API (`/v2/usermanagement`) and the administrator roles behind it: who is
//! calling (a technical account whose credential holds the API's scope, or a person holding the
//! system administrator role), listing users and groups, and running action requests one entry
//! at a time, each applied whole or not at all.

use crate::umapi::ResultCode;
use serde_json::{json, Value};

use std::collections::BTreeSet;
use std::sync::Arc;

use super::{Result, Tokens};
use crate::directory::{AdminRole, Group, GroupKind, ProductInstance, RoleGrant};
use crate::invitations::Notifier;
use crate::model::{ClientType, Organization, User, UserStatus};
use crate::store::{DirectoryStorage, DirectoryStore, UserStore, UsersQuery};
use crate::umapi::{self, Change, Entry, EntryOutcome, RequestError, Snapshot, StepError, Target};
use ims_core::audit::Context;
use ims_core::error::Error;
use ims_core::Now;

/// How far back the audit API pages (older lines stay in the database and in `ims audit`).
pub const MAX_AUDIT_DEPTH: u64 = 100_000;

/// The scope under which `/ims/profile/v1` projects a caller's product profiles.
pub const PROFILE_SCOPE: &str = ims_wire::names::PROFILE_SCOPE;

/// The name of the Admin Console's client in each organisation.
pub const ADMIN_CONSOLE_CLIENT: &str = "Admin Console";

/// The scope the vendor grants credentials subscribed to the User Management API.
pub const UMAPI_SCOPE: &str = "user_management_sdk";

/// An authenticated administrator: a technical account or a person, with the roles it holds.
/// Made only by the token service from a valid token (no public constructor), so holding one
/// proves who is asking; the services an administrator may use are obtained from it.
#[derive(Clone, Debug)]
pub struct Administrator {
    org_id: String,
    /// `client:<client id>` or `admin:<email>`, for the audit log.
    actor: String,
    client_id: String,
    /// The person, when a person is calling.
    person: Option<User>,
    roles: Vec<RoleGrant>,
}

impl Administrator {
    pub fn org_id(&self) -> &str {
        &self.org_id
    }

    /// Who acts, for the audit log.
    pub fn actor(&self) -> &str {
        &self.actor
    }

    /// The client the administrator's token was issued to.
    pub fn client_id(&self) -> &str {
        &self.client_id
    }

    /// The person, when a person is calling (a technical account is not one).
    pub fn person(&self) -> Option<&User> {
        self.person.as_ref()
    }

    pub fn roles(&self) -> &[RoleGrant] {
        &self.roles
    }

    /// May manage the members and permission items of `profile`, whose product context is
    /// `product_context`.
    pub fn may_manage_profile(&self, profile: &Group, product_context: &str) -> bool {
        let id = profile.id.to_string();
        self.roles.iter().any(|g| match g.role {
            AdminRole::SystemAdmin => true,
            AdminRole::ProductAdmin => g.target == product_context,
            AdminRole::ProfileAdmin => g.target == id,
            _ => false,
        })
    }

    /// May manage the members and links of user group `group`.
    pub fn may_manage_group(&self, group: &Group) -> bool {
        let id = group.id.to_string();
        self.roles.iter().any(|g| match g.role {
            AdminRole::SystemAdmin => true,
            AdminRole::UserGroupAdmin => g.target == id,
            _ => false,
        })
    }

    /// Manages the profiles of `product_context`: a system administrator, or that product's.
    pub fn administers_product(&self, product_context: &str) -> bool {
        self.roles.iter().any(|g| {
            g.role == AdminRole::SystemAdmin
                || (g.role == AdminRole::ProductAdmin && g.target == product_context)
        })
    }

    /// Holds `role` for the whole organisation (or is a system administrator, who holds all).
    pub fn holds(&self, role: AdminRole) -> bool {
        self.roles
            .iter()
            .any(|g| g.role == AdminRole::SystemAdmin || (g.role == role && g.target.is_empty()))
    }
}

/// A person as an administrator, with their roles (the bootstrap administrator holds the
/// system administrator role). Only active people count.
pub(super) async fn administrator<S>(store: &S, user_id: &str, client_id: &str) -> Result<Administrator>
where
    S: UserStore + DirectoryStore + ?Sized,
{
    let user = store
        .user(user_id)
        .await?
        .filter(|u| u.status == UserStatus::Active)
        .ok_or_else(|| Error::invalid_token("the person cannot sign in"))?;
    let mut roles = store.role_grants(user_id).await?;
    if user.system_admin {
        roles.push(RoleGrant {
            user_id: user_id.to_owned(),
            role: AdminRole::SystemAdmin,
            target: String::new(),
        });
    }
    Ok(Administrator {
        org_id: user.org_id.clone(),
        actor: format!("admin:{}", user.email),
        client_id: client_id.to_owned(),
        person: Some(user),
        roles,
    })
}

/// A listing page: items, and whether it is the last.
pub type Page = (Vec<Value>, bool);

/// The directory service: the User Management API, the administrators it and the Admin Console
/// serve, and the product profiles tokens and instances read.
pub struct Directory {
    pub(super) store: Arc<dyn DirectoryStorage>,
    pub(super) tokens: Arc<Tokens>,
    umapi_budget: crate::throttle::RateLimiter,
    /// Where recent user listings' pages start (see `PageStarts`).
    page_starts: PageStarts,
}

impl std::fmt::Debug for Directory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Directory").finish_non_exhaustive()
    }
}

impl Directory {
    pub(super) fn new(store: Arc<dyn DirectoryStorage>, tokens: Arc<Tokens>) -> Self {
        Directory {
            umapi_budget: crate::throttle::RateLimiter::new(tokens.settings().umapi_requests_per_minute),
            page_starts: PageStarts::default(),
            store,
            tokens,
        }
    }

    /// The organisation the Admin Console signs people in to (the first one: an IMS serves one
    /// organisation per deployment), if there is one yet.
    pub async fn admin_console_org(&self) -> Result<Option<Organization>> {
        Ok(self.store.orgs().await?.into_iter().next())
    }

    /// Who is calling the User Management API with this bearer token and `x-api-key`.
    /// Technical accounts need the API's scope; people need the system administrator role.
    pub async fn umapi_caller(&self, token: &str, api_key: Option<&str>, now: Now) -> Result<Administrator> {
        let valid = self.tokens.validate_access_token(token, now).await?;
        if api_key != Some(valid.client_id.as_str()) {
            return Err(Error::forbidden(
                "x-api-key must be the client id the access token was issued to",
            ));
        }
        let client = &valid.client;
        if client.client_type == ClientType::TechnicalAccount {
            valid.require_scope(UMAPI_SCOPE)?;
            return Ok(Administrator {
                org_id: valid.org_id,
                actor: format!("client:{}", valid.client_id),
                client_id: valid.client_id,
                person: None,
                // A credential subscribed to the API administers the organisation's users, as
                // the vendor's do.
                roles: vec![RoleGrant {
                    user_id: client.technical_account_id.clone(),
                    role: AdminRole::SystemAdmin,
                    target: String::new(),
                }],
            });
        }
        let user_id = valid
            .claims
            .get("user_id")
            .and_then(Value::as_str)
            .ok_or_else(|| Error::invalid_token("token names no user"))?;
        // A person administers only through our own applications, not through a third-party
        // application they consented to.
        if !client.first_party {
            return Err(Error::forbidden(
                "people use the User Management API through a first-party application",
            ));
        }
        // ... and one the person's token was granted this API for: a first-party application
        // that signs people in for something else (an instance's own client, say) holds their
        // tokens without reaching their administration.
        valid.require_scope(UMAPI_SCOPE)?;
        let admin = self.administrator(user_id, &valid.client_id).await?;
        if !admin.holds(AdminRole::SystemAdmin) {
            return Err(Error::forbidden(
                "the User Management API needs the system administrator role",
            ));
        }
        Ok(admin)
    }

    /// A person as an administrator, with their roles (the bootstrap administrator holds the
    /// system administrator role). Only active people count.
    pub async fn administrator(&self, user_id: &str, client_id: &str) -> Result<Administrator> {
        administrator(self.store.as_ref(), user_id, client_id).await
    }

    /// Takes one call from the client's budget, or says how many seconds to wait. The budget is
    /// the store's where it holds one (PostgreSQL: every node takes from the same), this
    /// process's otherwise.
    pub async fn umapi_admit(&self, client_id: &str, now: Now) -> Result<std::result::Result<(), u64>> {
        let per_minute = self.tokens.settings().umapi_requests_per_minute;
        if per_minute == 0 {
            return Ok(Ok(()));
        }
        let bucket = format!("umapi:{client_id}");
        match self.store.take_budget(&bucket, per_minute, now).await? {
            Some(taken) => Ok(taken),
            None => Ok(self.umapi_budget.admit(client_id, now)),
        }
    }

    pub fn umapi_page_size(&self) -> u32 {
        self.tokens.settings().umapi_page_size.max(1)
    }

    /// Users of the organisation, one page, optionally members of one group; `None` when the
    /// group does not exist.
    pub async fn umapi_users(
        &self,
        org_id: &str,
        page: u32,
        group: Option<&str>,
        direct_only: bool,
    ) -> Result<Option<Page>> {
        Ok(self
            .users_at(org_id, page, group, direct_only)
            .await?
            .map(|(users, last)| (users.iter().map(|(u, g)| user_json(u, g)).collect(), last)))
    }

    /// One page of a users listing with each user's groups, and whether it is the last; where
    /// the next page starts is remembered, so that reading a listing page by page never scans
    /// what came before. `None` when the group does not exist.
    async fn users_at(
        &self,
        org_id: &str,
        page: u32,
        group: Option<&str>,
        direct_only: bool,
    ) -> Result<Option<(Vec<(User, Vec<String>)>, bool)>> {
        let size = self.umapi_page_size();
        let offset = page.saturating_mul(size);
        let listing = PageKey {
            org_id: org_id.to_owned(),
            group: group.map(str::to_lowercase),
            direct_only,
            size,
        };
        let after = self.page_starts.start_of(&listing, page);
        let Some((users, more)) = self
            .store
            .users_page(
                org_id,
                &UsersQuery {
                    group,
                    direct_only,
                    after: after.as_deref(),
                    offset,
                    limit: size,
                },
            )
            .await?
        else {
            return Ok(None);
        };
        if let (true, Some((last, _))) = (more, users.last()) {
            self.page_starts
                .remember(listing, page + 1, last.email.to_lowercase());
        }
        Ok(Some((users, !more)))
    }

    /// Our extension: for each user of a listing page, where its latest invitation stands and
    /// when it first signed in to an application (what the migration reports per person).
    pub async fn umapi_invitations(&self, org_id: &str, page: u32, now: Now) -> Result<Page> {
        let Some((users, last)) = self.users_at(org_id, page, None, true).await? else {
            return Ok((Vec::new(), true));
        };
        let ids: Vec<String> = users.iter().map(|(u, _)| u.user_id.clone()).collect();
        let mut latest = std::collections::HashMap::new();
        for link in self.store.invitations_of(&ids).await? {
            latest.insert(link.user_id.clone(), link);
        }
        let iso = |n: Now| ims_core::time::iso8601(n);
        let items = users
            .iter()
            .map(|(u, _)| {
                let invitation = latest.get(&u.user_id).map(|l| {
                    json!({
                        "state": l.invitation_state(now).as_str(),
                        "sentAt": iso(l.created_at),
                        "expiresAt": iso(l.expires_at),
                        "acceptedAt": l.used_at.map(iso),
                    })
                });
                json!({
                    "id": u.user_id,
                    "email": u.email,
                    "type": u.identity_type.as_str(),
                    "status": u.status.as_str(),
                    "invitation": invitation,
                    "firstSignInAt": u.first_sign_in_at.map(iso),
                })
            })
            .collect();
        Ok((items, last))
    }

    /// Our extension: sends a new invitation to each of `emails` that is an active Enterprise ID
    /// of the organisation; says per email what was done.
    pub async fn umapi_resend_invitations(
        &self,
        admin: &Administrator,
        emails: &[String],
        ctx: &Context,
    ) -> Result<Value> {
        let facts = self.mail_facts(&admin.org_id).await?;
        let mut sent = Vec::new();
        let mut skipped = Vec::new();
        for email in emails {
            match self.store.user_by_email(&admin.org_id, email).await? {
                Some(u) if crate::invitations::invitable(&u) => {
                    self.invite_again(&u, &facts, ctx).await?;
                    sent.push(u.email);
                }
                Some(u) => skipped.push(json!({"email": u.email, "reason": "not an active Enterprise ID"})),
                None => skipped.push(json!({"email": email, "reason": "no such user"})),
            }
        }
        Ok(json!({"result": "success", "sent": sent, "skipped": skipped}))
    }

    /// What invitations and notices say of an organisation: read once per request.
    pub(super) async fn mail_facts(&self, org_id: &str) -> Result<(Organization, Vec<ProductInstance>)> {
        let org = self
            .store
            .org(org_id)
            .await?
            .ok_or_else(|| Error::not_found(format!("organisation {org_id}")))?;
        Ok((org, self.store.product_instances(org_id).await?))
    }

    fn notifier<'a>(&'a self, org: &'a Organization, instances: &'a [ProductInstance]) -> Notifier<'a> {
        Notifier {
            org,
            instances,
            base_url: &self.tokens.settings().issuer,
        }
    }

    /// A new invitation for `user` (one [`crate::invitations::invitable`]), naming the product
    /// instances it holds; earlier links keep working until they expire or one is used.
    pub(super) async fn invite_again(
        &self,
        user: &User,
        (org, instances): &(Organization, Vec<ProductInstance>),
        ctx: &Context,
    ) -> Result<()> {
        let held: Vec<i64> = self
            .store
            .held_profiles(&user.user_id, None)
            .await?
            .iter()
            .filter_map(|h| {
                instances
                    .iter()
                    .find(|i| i.product_context == h.product_context && i.name == h.instance)
                    .map(|i| i.id)
            })
            .collect();
        let (_, invite) = self.notifier(org, instances).invitation(user, &held, ctx.now);
        let event = ctx.event("user.invite", &user.user_id, "success", json!({"resend": true}));
        self.store
            .apply_changes(&user.org_id, &[invite], &[event])
            .await?;
        Ok(())
    }

    /// One user by email, with its direct groups; `None` when there is none (or it was removed).
    pub async fn umapi_user(&self, org_id: &str, email: &str) -> Result<Option<Value>> {
        let Some(user) = self
            .store
            .user_by_email(org_id, email)
            .await?
            .filter(|u| u.status != UserStatus::Removed)
        else {
            return Ok(None);
        };
        let groups: Vec<String> = self
            .store
            .memberships(&user.user_id)
            .await?
            .into_iter()
            .filter(|m| m.through.is_none())
            .map(|m| m.group)
            .collect();
        Ok(Some(user_json(&user, &groups)))
    }

    /// A product profile with its permission items (our extension of the API: the vendor's
    /// lists profiles without them). `None` when no product profile has that name.
    pub async fn umapi_profile(&self, org_id: &str, name: &str) -> Result<Option<Value>> {
        let Some(g) = self.store.group(org_id, name).await? else {
            return Ok(None);
        };
        if g.kind != GroupKind::ProductProfile {
            return Ok(None);
        }
        let instances = self.store.product_instances(org_id).await?;
        let members = self
            .store
            .groups(org_id)
            .await?
            .into_iter()
            .find(|(x, _)| x.id == g.id)
            .map_or(0, |(_, n)| n);
        Ok(Some(profile_json(&g, members, &instances)))
    }

    /// Creates a product profile of one product instance (our extension of the API, for
    /// administrators of that product and system administrators, which credentials holding the
    /// API are).
    pub async fn umapi_create_profile(
        &self,
        admin: &Administrator,
        req: &ProfileRequest,
        ctx: &Context,
    ) -> Result<Value> {
        let instances = self.store.product_instances(&admin.org_id).await?;
        let instance = instances
            .iter()
            .find(|i| i.product_context == req.product_context && i.name == req.instance)
            .ok_or_else(|| {
                Error::not_found(format!(
                    "no product instance {:?} of {:?} in this organisation",
                    req.instance, req.product_context
                ))
            })?;
        if !admin.administers_product(&instance.product_context) {
            return Err(Error::forbidden(format!(
                "creating profiles of {} needs its product administrator role",
                instance.product_context
            )));
        }
        let g = create_product_profile(
            self.store.as_ref(),
            instance,
            &req.name,
            req.permissions.clone(),
            req.license_quota,
            ctx,
        )
        .await?;
        Ok(profile_json(&g, 0, &instances))
    }

    /// Groups of the organisation (profiles and user groups), one page.
    pub async fn umapi_groups(&self, org_id: &str, page: u32) -> Result<Page> {
        let size = self.umapi_page_size() as usize;
        let instances = self.store.product_instances(org_id).await?;
        let all = self.store.groups(org_id).await?;
        let start = (page as usize).saturating_mul(size);
        let items = all
            .iter()
            .skip(start)
            .take(size)
            .map(|(g, n)| group_json(g, *n, &instances))
            .collect();
        Ok((items, start.saturating_add(size) >= all.len()))
    }

    /// Runs an action request for `admin`: each entry planned against the directory as the
    /// entries before it left it, and (unless `test_only`) applied with its audit line, all in
    /// one transaction, or each in its own when the directory changed meanwhile. The body is
    /// the API's result document; a request refused whole is the inner error, a failure of the
    /// store the outer one.
    pub async fn umapi_action(
        &self,
        admin: &Administrator,
        body: &[u8],
        test_only: bool,
        ctx: &Context,
    ) -> Result<std::result::Result<Value, RequestError>> {
        let entries = match umapi::parse_request(body) {
            Ok(e) => e,
            Err(refused) => return Ok(Err(refused)),
        };
        let emails = Snapshot::emails_named(&entries);
        let groups = Snapshot::groups_named(&entries);
        let mut snap = self
            .store
            .directory_snapshot(&admin.org_id, &emails, &groups)
            .await?;
        if !test_only {
            // Every entry planned in turn, then all written in one transaction: a request's
            // worth of users in one commit rather than ten. Should the directory have changed
            // meanwhile, nothing was written and the entries run again one by one below.
            let mut outcomes = Vec::with_capacity(entries.len());
            let mut changes = Vec::new();
            let mut audit = Vec::new();
            for (index, entry) in entries.iter().enumerate() {
                match umapi::plan_entry(&mut snap, entry, ctx.now) {
                    Err(e) => outcomes.push(EntryOutcome::Failed(e)),
                    Ok(planned) => {
                        audit.push(entry_audit(ctx, entry, index, &planned));
                        changes.extend(planned);
                        outcomes.push(EntryOutcome::Done);
                    }
                }
            }
            let not_invited = not_invited(&entries);
            let changes = self
                .with_notices(&admin.org_id, &snap, changes, &not_invited, ctx.now)
                .await?;
            match self.store.apply_changes(&admin.org_id, &changes, &audit).await {
                Ok(()) => return Ok(Ok(umapi::response(&entries, &outcomes, test_only))),
                Err(ims_core::error::StoreError::Conflict(e)) => {
                    tracing::warn!(error = %e, "action request not applied whole: its entries run one by one");
                }
                Err(other) => return Err(other.into()),
            }
            snap = self
                .store
                .directory_snapshot(&admin.org_id, &emails, &groups)
                .await?;
        }
        let mut outcomes = Vec::with_capacity(entries.len());
        for (index, entry) in entries.iter().enumerate() {
            let outcome = match umapi::plan_entry(&mut snap, entry, ctx.now) {
                Err(e) => EntryOutcome::Failed(e),
                Ok(_) if test_only => EntryOutcome::Done,
                Ok(changes) => {
                    let audit = entry_audit(ctx, entry, index, &changes);
                    let changes = self
                        .with_notices(&admin.org_id, &snap, changes, &not_invited(&entries), ctx.now)
                        .await?;
                    match self.store.apply_changes(&admin.org_id, &changes, &[audit]).await {
                        Ok(()) => EntryOutcome::Done,
                        Err(e @ ims_core::error::StoreError::Conflict(_)) => {
                            // Someone else changed the directory in between: this entry is
                            // refused whole and the next ones plan against what is stored.
                            tracing::warn!(error = %e, index, "action entry not applied");
                            snap = self
                                .store
                                .directory_snapshot(&admin.org_id, &emails, &groups)
                                .await?;
                            EntryOutcome::Failed(StepError {
                                step: entry.steps.len().saturating_sub(1),
                                code: ResultCode::EntryConflict,
                                message:
                                    "the directory changed while the entry ran; nothing of it was applied"
                                        .into(),
                            })
                        }
                        Err(other) => return Err(other.into()),
                    }
                }
            };
            outcomes.push(outcome);
        }
        Ok(Ok(umapi::response(&entries, &outcomes, test_only)))
    }

    /// `changes` followed by the invitations and "you now have access" notices they call for.
    async fn with_notices(
        &self,
        org_id: &str,
        snap: &Snapshot,
        mut changes: Vec<Change>,
        not_invited: &BTreeSet<String>,
        now: Now,
    ) -> Result<Vec<Change>> {
        let tells = |c: &Change| matches!(c, Change::CreateUser(_) | Change::AddMember { .. });
        if !changes.iter().any(tells) && snap.reactivated.is_empty() {
            return Ok(changes);
        }
        let (org, instances) = self.mail_facts(org_id).await?;
        let notifier = self.notifier(&org, &instances);
        let notices = notifier.notices(snap, &changes, not_invited, now);
        changes.extend(notices);
        Ok(changes)
    }

    /// An organisation and its settings.
    pub async fn org(&self, org_id: &str) -> Result<Option<Organization>> {
        Ok(self.store.org(org_id).await?)
    }

    /// The Admin Console's own client in `org_id` (first-party, public, PKCE), created on first
    /// use: the console signs administrators in through the IMS like any application.
    pub async fn admin_console_client(&self, org_id: &str, ctx: &Context) -> Result<String> {
        let redirect = format!("{}/admin/callback", self.tokens.settings().issuer);
        let existing = self.store.clients(org_id).await?.into_iter().find(|c| {
            c.name == ADMIN_CONSOLE_CLIENT
                && c.first_party
                && !c.disabled
                && c.redirect_uris.contains(&redirect)
        });
        if let Some(c) = existing {
            return Ok(c.client_id);
        }
        let creds = crate::credentials::Credentials::new(
            Arc::<dyn DirectoryStorage>::clone(&self.store),
            &self.tokens.settings().domain,
        );
        let (client, _) = creds
            .create_people_client(
                org_id,
                crate::credentials::NewPeopleClient {
                    name: ADMIN_CONSOLE_CLIENT,
                    client_type: ClientType::Public,
                    redirect_uris: vec![redirect],
                    scopes: vec!["openid".into(), "email".into(), "profile".into()],
                    first_party: true,
                },
                ctx,
            )
            .await?;
        Ok(client.client_id)
    }

    /// The audit log of the organisation's directory and people, newest first, one page.
    pub async fn audit_page(&self, action_prefix: Option<&str>, page: u32, size: u32) -> Result<Page> {
        // Reading goes through the newest lines: far pages would read the whole log.
        if u64::from(page) * u64::from(size) > MAX_AUDIT_DEPTH {
            return Ok((Vec::new(), true));
        }
        let wanted = page.saturating_add(1).saturating_mul(size).saturating_add(1);
        let events = self
            .store
            .audit(&ims_core::audit::AuditQuery {
                action_prefix: action_prefix.map(str::to_owned),
                limit: wanted,
            })
            .await?;
        let start = (page as usize).saturating_mul(size as usize);
        let items: Vec<Value> = events
            .iter()
            .skip(start)
            .take(size as usize)
            .map(|e| serde_json::to_value(e).unwrap_or(Value::Null))
            .collect();
        Ok((items, events.len() <= start.saturating_add(size as usize)))
    }

    /// `GET /ims/profile/v1`: who the token stands for and the product profiles it holds for
    /// `product_context` (all contexts when `None`), in the vendor's `projectedProductContext`
    /// shape, so an instance maps profiles to its groups without calling the API.
    pub async fn product_profile_claims(
        &self,
        token: &str,
        product_context: Option<&str>,
        now: Now,
    ) -> Result<Value> {
        let valid = self.tokens.validate_access_token(token, now).await?;
        let user_id = valid
            .claims
            .get("user_id")
            .and_then(Value::as_str)
            .ok_or_else(|| Error::invalid_token("token names no user"))?
            .to_owned();
        // The profiles a token reads are the ones the vendor projects under this scope: an
        // application a person allowed only `openid` learns nothing of their access.
        let scope = valid
            .claims
            .get("scope")
            .and_then(Value::as_str)
            .unwrap_or_default();
        if !scope.split([',', ' ']).any(|s| s == PROFILE_SCOPE) {
            return Err(Error::insufficient_scope(PROFILE_SCOPE));
        }
        let person = self.store.user(&user_id).await?;
        if person.as_ref().is_some_and(|u| u.status != UserStatus::Active) {
            return Err(Error::invalid_token("the person cannot sign in"));
        }
        // A technical account reads its profiles only when its credential was subscribed to
        // an API of that product context or holds some of its profiles: the I/O Management
        // API's scope alone does not open an instance.
        if person.is_none() {
            let subscribed = self
                .store
                .credential_services(&valid.client_id)
                .await?
                .iter()
                .filter_map(|code| crate::developer::Service::by_code(code))
                .any(|s| {
                    s.product_context
                        .is_some_and(|c| product_context.is_none_or(|p| p == c))
                });
            if !subscribed
                && self
                    .store
                    .credential_profiles(&valid.client_id, product_context)
                    .await?
                    .is_empty()
            {
                return Err(Error::forbidden(
                    "the credential is not subscribed to an API of this product context",
                ));
            }
        }
        // A person holds profiles through memberships; a technical account through its
        // credential.
        let held = match &person {
            Some(_) => self.store.held_profiles(&user_id, product_context).await?,
            None => {
                self.store
                    .credential_profiles(&valid.client_id, product_context)
                    .await?
            }
        };
        Ok(json!({
            "userId": user_id,
            "email": person.as_ref().map(|u| u.email.clone()).or_else(|| valid.claims.get("email").and_then(Value::as_str).map(str::to_owned)),
            "projectedProductContext": held.iter().map(|p| json!({"prodCtx": {
                "serviceCode": p.product_context,
                "instance": p.instance,
                "label": p.profile,
                "permissions": p.permissions,
                "through": p.through,
            }})).collect::<Vec<_>>(),
        }))
    }

    /// `GET /ims/client/v1`: an authenticated client's own registration (RFC 7591 metadata
    /// names), so that an application can check its configuration against the IMS. Our own
    /// applications (first-party, those that sign people in) also see their organisation's
    /// product profiles of `product_context`, which is how an instance checks its association
    /// mask.
    pub async fn client_registration(
        &self,
        client: &crate::model::OAuthClient,
        product_context: Option<&str>,
    ) -> Result<Value> {
        let org = self.store.org(&client.org_id).await?;
        let mut out = json!({
            "client_id": client.client_id,
            "client_name": client.name,
            "org_id": client.org_id,
            "org_name": org.map(|o| o.name),
            "client_type": client.client_type.as_str(),
            "first_party": client.first_party,
            "redirect_uris": client.redirect_uris,
            "scope": client.scopes.join(" "),
            "grant_types": client.grant_types.iter().map(|g| g.as_str()).collect::<Vec<_>>(),
            "backchannel_logout_uri": self.store.backchannel_logout_uri(&client.client_id).await?,
        });
        let people_app = client.first_party && client.client_type != ClientType::TechnicalAccount;
        if let (Some(context), true, Some(obj)) = (product_context, people_app, out.as_object_mut()) {
            let instances = self.store.product_instances(&client.org_id).await?;
            let profiles: Vec<Value> = self
                .store
                .groups(&client.org_id)
                .await?
                .into_iter()
                .filter_map(|(g, _)| {
                    let instance = instances
                        .iter()
                        .find(|i| Some(i.id) == g.product_instance_id && i.product_context == context)?;
                    Some(json!({"name": g.name, "instance": instance.name, "permissions": g.permissions}))
                })
                .collect();
            let of_context: Vec<Value> = instances
                .iter()
                .filter(|i| i.product_context == context)
                .map(|i| json!({"name": i.name, "url": i.url}))
                .collect();
            obj.insert("product_context".into(), json!(context));
            obj.insert("product_instances".into(), json!(of_context));
            obj.insert("product_profiles".into(), json!(profiles));
        }
        Ok(out)
    }

    /// Gives or takes a product profile to a technical account's credential of the organisation.
    pub async fn set_profile_credential(
        &self,
        org_id: &str,
        profile: &Group,
        client_id: &str,
        held: bool,
        ctx: &Context,
    ) -> Result<()> {
        must_be_profile(profile)?;
        let client = self
            .store
            .client(client_id)
            .await?
            .filter(|c| c.org_id == org_id && c.client_type == ClientType::TechnicalAccount)
            .ok_or_else(|| {
                Error::not_found(format!(
                    "no technical account credential {client_id:?} in this organisation"
                ))
            })?;
        let audit = ctx.event(
            if held {
                "profile.credential.add"
            } else {
                "profile.credential.remove"
            },
            &profile.name,
            "success",
            json!({"client_id": client.client_id, "technical_account_id": client.technical_account_id}),
        );
        Ok(self
            .store
            .set_profile_credential(org_id, &profile.name, &client.client_id, held, ctx.now, &audit)
            .await?)
    }

    /// The organisation a path names, when it exists.
    pub async fn org_exists(&self, org_id: &str) -> Result<bool> {
        Ok(self.store.org(org_id).await?.is_some())
    }
}

fn must_be_profile(g: &Group) -> Result<()> {
    if g.kind == GroupKind::ProductProfile {
        Ok(())
    } else {
        Err(Error::invalid_request(format!(
            "{:?} is not a product profile",
            g.name
        )))
    }
}

fn check_quota(quota: Option<i64>) -> Result<()> {
    if quota.is_some_and(|q| q < 0) {
        return Err(Error::invalid_request("a licence quota is 0 or more"));
    }
    Ok(())
}

/// A product profile, created by an administrator (the API creates user groups only).
pub async fn create_product_profile(
    store: &dyn DirectoryStorage,
    instance: &ProductInstance,
    name: &str,
    permissions: Vec<String>,
    license_quota: Option<i64>,
    ctx: &Context,
) -> Result<Group> {
    crate::directory::check_group_name(name).map_err(Error::invalid_request)?;
    check_quota(license_quota)?;
    let mut g = Group::product_profile(&instance.org_id, name, instance, ctx.now);
    g.permissions = permissions;
    g.license_quota = license_quota;
    let audit = ctx.event(
        "profile.create",
        name,
        "success",
        json!({"product_context": instance.product_context, "instance": instance.name, "permissions": g.permissions, "license_quota": license_quota}),
    );
    store
        .apply_changes(&instance.org_id, &[Change::CreateGroup(g.clone())], &[audit])
        .await
        .map_err(|e| match e {
            ims_core::error::StoreError::Conflict(_) => {
                Error::conflict(format!("a group named {name:?} exists"))
            }
            other => other.into(),
        })?;
    // As stored, with the id the database gave it.
    store
        .group(&instance.org_id, name)
        .await?
        .ok_or_else(|| Error::internal(format!("profile {name:?} vanished after creation")))
}

/// Changes a product profile's permission items and licence quota.
pub async fn update_product_profile(
    store: &dyn DirectoryStorage,
    profile: &Group,
    permissions: Vec<String>,
    license_quota: Option<i64>,
    ctx: &Context,
) -> Result<()> {
    must_be_profile(profile)?;
    check_quota(license_quota)?;
    let mut g = profile.clone();
    g.permissions = permissions;
    g.license_quota = license_quota;
    g.updated_at = ctx.now;
    let audit = ctx.event(
        "profile.update",
        &g.name,
        "success",
        json!({"permissions": g.permissions, "license_quota": license_quota, "before": {"permissions": profile.permissions, "license_quota": profile.license_quota}}),
    );
    store
        .apply_changes(
            &profile.org_id,
            &[Change::UpdateGroup {
                name: profile.name.clone(),
                group: g,
            }],
            &[audit],
        )
        .await?;
    Ok(())
}

fn entry_audit(
    ctx: &Context,
    entry: &Entry,
    index: usize,
    changes: &[Change],
) -> ims_core::audit::AuditEvent {
    let (action, target) = match &entry.target {
        Target::User(u) => ("umapi.user", u.as_str()),
        Target::UserGroup(g) => ("umapi.usergroup", g.as_str()),
    };
    ctx.event(
        action,
        target,
        "success",
        json!({
            "index": index,
            "requestID": entry.request_id,
            "changes": changes.iter().map(Change::describe).collect::<Vec<_>>(),
        }),
    )
}

/// A user as the API shows it.
pub fn user_json(u: &User, groups: &[String]) -> Value {
    let domain = u
        .email
        .rsplit_once('@')
        .map(|(_, d)| d.to_lowercase())
        .unwrap_or_default();
    let mut v = json!({
        "id": u.user_id,
        "email": u.email,
        "status": u.status.as_str(),
        "username": u.email,
        "domain": domain,
        "firstname": u.first_name,
        "lastname": u.last_name,
        "type": u.identity_type.as_str(),
        "groups": groups,
    });
    if let Some(c) = &u.country {
        v["country"] = json!(c);
    }
    v
}

/// What `POST /v2/usermanagement/profiles/{org}` takes.
#[derive(Clone, Debug, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ProfileRequest {
    pub name: String,
    pub product_context: String,
    /// The product instance's name (a Campaign instance's name).
    pub instance: String,
    #[serde(default)]
    pub permissions: Vec<String>,
    #[serde(default)]
    pub license_quota: Option<i64>,
}

/// A profile as the listing shows it, with its instance and permission items.
fn profile_json(g: &Group, members: i64, instances: &[ProductInstance]) -> Value {
    let mut v = group_json(g, members, instances);
    v["permissions"] = json!(g.permissions);
    if let Some(i) = instances.iter().find(|i| Some(i.id) == g.product_instance_id) {
        v["instance"] = json!(i.name);
    }
    v
}

/// A group as the API shows it.
pub fn group_json(g: &Group, members: i64, instances: &[ProductInstance]) -> Value {
    let mut v = json!({
        "groupId": g.id,
        "groupName": g.name,
        "type": g.kind.as_str(),
        "memberCount": members,
    });
    match g.kind {
        GroupKind::ProductProfile => {
            let instance = instances.iter().find(|i| Some(i.id) == g.product_instance_id);
            v["productProfileName"] = json!(g.name);
            v["licenseQuota"] = json!(g
                .license_quota
                .map_or_else(|| "UNLIMITED".to_owned(), |q| q.to_string()));
            if let Some(i) = instance {
                v["productName"] = json!(i.label);
                v["productContext"] = json!(i.product_context);
            }
        }
        GroupKind::UserGroup => {
            v["userGroupName"] = json!(g.name);
        }
    }
    v
}

/// A listing of users, as a client pages through it.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) struct PageKey {
    org_id: String,
    group: Option<String>,
    direct_only: bool,
    size: u32,
}

/// Where the pages of recent listings start: the email the page before ended with. A client
/// reading page after page (the User Management API numbers pages) then costs one index step
/// per page instead of counting past every user before it, which made a whole listing grow
/// with the square of the organisation. A page not remembered is counted from the start; what
/// is remembered is bounded, kept by this node only, and a hint: both ways read the same users
/// unless the directory changed in between, and then the remembered start skips or repeats
/// no one.
#[derive(Debug, Default)]
pub(crate) struct PageStarts {
    starts: std::sync::Mutex<std::collections::HashMap<PageKey, std::collections::BTreeMap<u32, String>>>,
}

/// Listings remembered at once; one more and everything is forgotten (and learnt again).
const LISTINGS_REMEMBERED: usize = 64;
/// Page starts remembered per listing (a million users in pages of 200 is 5,000).
const PAGES_REMEMBERED: usize = 50_000;

impl PageStarts {
    fn start_of(&self, key: &PageKey, page: u32) -> Option<String> {
        let starts = self.starts.lock().unwrap_or_else(|e| e.into_inner());
        starts.get(key).and_then(|pages| pages.get(&page).cloned())
    }

    fn remember(&self, key: PageKey, page: u32, after: String) {
        let mut starts = self.starts.lock().unwrap_or_else(|e| e.into_inner());
        if !starts.contains_key(&key) && starts.len() >= LISTINGS_REMEMBERED {
            starts.clear();
        }
        let pages = starts.entry(key).or_default();
        if pages.len() >= PAGES_REMEMBERED {
            pages.clear();
        }
        pages.insert(page, after);
    }
}

/// The lower-cased emails a request creates with `"invite": false`.
fn not_invited(entries: &[Entry]) -> BTreeSet<String> {
    entries
        .iter()
        .flat_map(|e| &e.steps)
        .filter_map(|s| match s {
            umapi::Step::CreateUser(n) if !n.invite => Some(n.email.to_lowercase()),
            _ => None,
        })
        .collect()
}
