//! What the Admin Console may read and change, as services obtained from the proof of who is
//! asking. An [`Administration`] comes only from an [`Administrator`] (itself made only by the
//! token service from a valid token), so everything reached through it is that administrator's
//! organisation: no handler scopes a query by hand. A [`SystemAdministration`] comes only from an
//! administration whose administrator holds the system administrator role, and carries what
//! only that role may do (people, roles, the audit log).

use serde_json::json;

use super::directory::Administrator;
use super::{Directory, Ims, Result};
use crate::directory::{AdminRole, Group, GroupKind, Membership, ProductInstance, RoleGrant};
use crate::links::{AccountLink, LinkPurpose};
use crate::mail::Mail;
use crate::model::{User, UserStatus};
use crate::people::{self, UserChange};
use crate::store::UsersQuery;
use ims_core::audit::{AuditEvent, AuditQuery, Context};
use ims_core::error::Error;
use ims_core::secret::Secret;

/// One administrator's view of their organisation's directory.
#[derive(Clone, Copy)]
pub struct Administration<'a> {
    directory: &'a Directory,
    /// Told when the organisation's sign-in settings change, so that this node applies them at
    /// once (others within `signin::ORG_SETTINGS_SECS`).
    sign_in: &'a super::SignIn,
    admin: &'a Administrator,
}

/// What a system administrator may do beyond any administrator.
#[derive(Clone, Copy)]
pub struct SystemAdministration<'a> {
    of: Administration<'a>,
}

impl Ims {
    /// The directory as `admin` may see it.
    pub fn administration<'a>(&'a self, admin: &'a Administrator) -> Administration<'a> {
        Administration {
            directory: self.directory(),
            sign_in: self.sign_in(),
            admin,
        }
    }

    /// Credential administration within `admin`'s organisation (the administration API).
    pub fn credentials(&self, admin: &crate::admin::SystemAdmin) -> crate::credentials::Credentials {
        self.developer().credentials(admin)
    }
}

impl<'a> Administration<'a> {
    pub fn admin(&self) -> &'a Administrator {
        self.admin
    }

    fn org(&self) -> &'a str {
        self.admin.org_id()
    }

    /// The system administrator's part, when this administrator holds that role.
    pub fn system(self) -> Result<SystemAdministration<'a>> {
        if self.admin.holds(AdminRole::SystemAdmin) {
            Ok(SystemAdministration { of: self })
        } else {
            Err(Error::forbidden("this needs the system administrator role"))
        }
    }

    /// The organisation's groups (profiles and user groups) with their member counts.
    pub async fn groups(&self) -> Result<Vec<(Group, i64)>> {
        Ok(self.directory.store.groups(self.org()).await?)
    }

    pub async fn product_instances(&self) -> Result<Vec<ProductInstance>> {
        Ok(self.directory.store.product_instances(self.org()).await?)
    }

    /// Every user of the organisation (members of `group` when given; an unknown group has
    /// none), with the names of their groups.
    pub async fn everyone(&self, group: Option<&str>, direct_only: bool) -> Result<Vec<(User, Vec<String>)>> {
        Ok(self
            .directory
            .store
            .users_page(
                self.org(),
                &UsersQuery {
                    group,
                    direct_only,
                    after: None,
                    offset: 0,
                    limit: u32::MAX - 1,
                },
            )
            .await?
            .map(|(users, _)| users)
            .unwrap_or_default())
    }

    /// How `user`, one of [`Self::everyone`], holds each of their groups.
    pub async fn memberships(&self, user: &User) -> Result<Vec<Membership>> {
        if user.org_id != self.org() {
            return Err(Error::not_found(format!("no user {}", user.email)));
        }
        Ok(self.directory.store.memberships(&user.user_id).await?)
    }

    /// The group of that name (case-insensitively) and, for a profile, its product context.
    pub async fn group(&self, name: &str) -> Result<(Group, String)> {
        let group = self
            .directory
            .store
            .group(self.org(), name)
            .await?
            .ok_or_else(|| Error::not_found(format!("no group named {name:?}")))?;
        let context = match group.product_instance_id {
            Some(id) => self
                .product_instances()
                .await?
                .into_iter()
                .find(|i| i.id == id)
                .map(|i| i.product_context)
                .unwrap_or_default(),
            None => String::new(),
        };
        Ok((group, context))
    }

    /// The product profile of that name, if this administrator manages it.
    pub async fn managed_profile(&self, name: &str) -> Result<Group> {
        let (profile, context) = self.group(name).await?;
        if profile.kind != GroupKind::ProductProfile {
            return Err(Error::not_found(format!("{name:?} is not a product profile")));
        }
        if !self.admin.may_manage_profile(&profile, &context) {
            return Err(Error::forbidden("you do not administer this product profile"));
        }
        Ok(profile)
    }

    /// The user group of that name, if this administrator manages it.
    pub async fn managed_user_group(&self, name: &str) -> Result<Group> {
        let (group, _) = self.group(name).await?;
        if group.kind != GroupKind::UserGroup {
            return Err(Error::not_found(format!("{name:?} is not a user group")));
        }
        if !self.admin.may_manage_group(&group) {
            return Err(Error::forbidden("you do not administer this user group"));
        }
        Ok(group)
    }

    /// The groups linked to `group` (a profile's user groups, a user group's profiles).
    pub async fn linked(&self, group: &Group) -> Result<Vec<String>> {
        Ok(self.directory.store.linked(self.org(), &group.name).await?)
    }

    /// The technical accounts' credentials (client ids) holding `profile`.
    pub async fn profile_credentials(&self, profile: &Group) -> Result<Vec<String>> {
        Ok(self
            .directory
            .store
            .profile_credentials(self.org(), &profile.name)
            .await?)
    }

    /// Creates a product profile on the instance with id `instance_id`, which this administrator
    /// must administer the product of.
    pub async fn create_profile(
        &self,
        instance_id: &str,
        profile: ProfileSettings<'_>,
        ctx: &Context,
    ) -> Result<Group> {
        let instances = self.product_instances().await?;
        let instance = instances
            .iter()
            .find(|i| i.id.to_string() == instance_id)
            .ok_or_else(|| Error::invalid_request("choose a product instance"))?;
        if !self.admin.administers_product(&instance.product_context) {
            return Err(Error::forbidden(format!(
                "creating profiles of {} needs its product administrator role",
                instance.product_context
            )));
        }
        super::directory::create_product_profile(
            self.directory.store.as_ref(),
            instance,
            profile.name,
            profile.permissions,
            profile.license_quota,
            ctx,
        )
        .await
    }

    /// Changes the permission items and quota of `profile` (one of [`Self::managed_profile`]).
    pub async fn update_profile(
        &self,
        profile: &Group,
        settings: ProfileSettings<'_>,
        ctx: &Context,
    ) -> Result<()> {
        if profile.org_id != self.org() {
            return Err(Error::not_found(format!("no group named {:?}", profile.name)));
        }
        super::directory::update_product_profile(
            self.directory.store.as_ref(),
            profile,
            settings.permissions,
            settings.license_quota,
            ctx,
        )
        .await
    }
}

/// A product profile's name and settings, as a form states them.
#[derive(Debug)]
pub struct ProfileSettings<'s> {
    pub name: &'s str,
    pub permissions: Vec<String>,
    pub license_quota: Option<i64>,
}

impl<'a> SystemAdministration<'a> {
    pub fn administration(&self) -> Administration<'a> {
        self.of
    }

    /// The organisation's user with that email, unless removed.
    pub async fn user(&self, email: &str) -> Result<User> {
        self.of
            .directory
            .store
            .user_by_email(self.of.org(), email)
            .await?
            .filter(|u| u.status != UserStatus::Removed)
            .ok_or_else(|| Error::not_found(format!("no user {email}")))
    }

    /// The organisation's user with that email, whatever their status.
    pub async fn any_user(&self, email: &str) -> Result<User> {
        self.of
            .directory
            .store
            .user_by_email(self.of.org(), email)
            .await?
            .ok_or_else(|| Error::not_found(format!("no user {email}")))
    }

    pub async fn change_user(&self, user: &User, change: UserChange, ctx: &Context) -> Result<User> {
        self.check(user)?;
        people::change_user(self.of.directory.store.as_ref(), &user.user_id, change, ctx).await
    }

    /// A one-time link that lets `user` choose a new password, also mailed to them.
    pub async fn password_reset_link(&self, user: &User, ctx: &Context) -> Result<Secret> {
        self.check(user)?;
        let store = self.of.directory.store.as_ref();
        let org = store.org(&user.org_id).await?;
        let mailed = people::Mailed {
            base_url: &self.of.directory.tokens.settings().issuer,
            org_name: org.as_ref().map_or("", |o| o.name.as_str()),
        };
        people::password_link(store, user, LinkPurpose::Reset, Some(mailed), ctx).await
    }

    /// The person's latest invitation, if they were ever invited.
    pub async fn invitation(&self, user: &User) -> Result<Option<AccountLink>> {
        self.check(user)?;
        Ok(self.of.directory.store.latest_invitation(&user.user_id).await?)
    }

    /// Sends the person a new invitation naming the product instances they hold (the earlier
    /// links keep working until they expire or one is used).
    pub async fn resend_invitation(&self, user: &User, ctx: &Context) -> Result<()> {
        self.check(user)?;
        if !crate::invitations::invitable(user) {
            return Err(Error::invalid_request(
                "only an active Enterprise ID is invited; others sign in another way",
            ));
        }
        let facts = self.of.directory.mail_facts(&user.org_id).await?;
        self.of.directory.invite_again(user, &facts, ctx).await
    }

    pub async fn role_grants(&self, user: &User) -> Result<Vec<RoleGrant>> {
        self.check(user)?;
        Ok(self.of.directory.store.role_grants(&user.user_id).await?)
    }

    /// Grants (`held`) or revokes a role of `user`, with its audit line.
    pub async fn set_role(
        &self,
        user: &User,
        role: AdminRole,
        target: String,
        held: bool,
        ctx: &Context,
    ) -> Result<()> {
        self.check(user)?;
        let grant = RoleGrant {
            user_id: user.user_id.clone(),
            role,
            target,
        };
        let audit = ctx.event(
            if held { "role.grant" } else { "role.revoke" },
            &user.email,
            "success",
            json!({"role": role.as_str(), "target": grant.target}),
        );
        Ok(self
            .of
            .directory
            .store
            .set_role(&grant, held, ctx.now, &audit)
            .await?)
    }

    /// The newest lines of the audit log.
    pub async fn audit(&self, query: &AuditQuery) -> Result<Vec<AuditEvent>> {
        Ok(self.of.directory.store.audit(query).await?)
    }

    /// The organisation, with its settings.
    pub async fn organization(&self) -> Result<crate::model::Organization> {
        let org = self.of.org();
        self.of
            .directory
            .store
            .org(org)
            .await?
            .ok_or_else(|| Error::not_found(format!("organisation {org}")))
    }

    /// Requires (or stops requiring) one-time codes of every person of the organisation: those
    /// not enrolled enrol at their next sign-in.
    pub async fn set_require_totp(&self, required: bool, ctx: &Context) -> Result<()> {
        let org = self.of.org();
        let event = ctx.event("org.require_totp", org, "success", json!({"required": required}));
        self.of
            .directory
            .store
            .set_require_totp(org, required, &event)
            .await?;
        self.of.sign_in.forget_org_settings(org);
        Ok(())
    }

    /// The organisation's mail, newest first.
    pub async fn outbox(&self, offset: u32, limit: u32) -> Result<Vec<Mail>> {
        Ok(self
            .of
            .directory
            .store
            .outbox(self.of.org(), offset, limit)
            .await?)
    }

    /// Queues one of the organisation's messages again, due at once with its attempts counted
    /// afresh (after the server refused it, or for a person who lost it).
    pub async fn resend_mail(&self, mail_id: &str, ctx: &Context) -> Result<Mail> {
        let missing = || Error::not_found("no such message in this organisation");
        let store = &self.of.directory.store;
        let mail = store
            .mail(mail_id)
            .await?
            .filter(|m| m.org_id == self.of.org())
            .ok_or_else(missing)?;
        let audit = ctx.event(
            "mail.resend",
            &mail.mail_id,
            "success",
            json!({"to": mail.to, "kind": mail.kind.as_str()}),
        );
        if !store.resend_mail(&mail.mail_id, ctx.now, &audit).await? {
            return Err(missing());
        }
        Ok(mail)
    }

    fn check(&self, user: &User) -> Result<()> {
        if user.org_id == self.of.org() {
            Ok(())
        } else {
            Err(Error::not_found(format!("no user {}", user.email)))
        }
    }
}
