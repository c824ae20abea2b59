//! What the instance tells and does for the migration engine (`/nl/migration/v1`), an
//! administrator's API: the engine signs in as an operator holding ADMINISTRATION, like any
//! other tool that works through the instance's API.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::{Arc, RwLock};

use serde::Serialize;

use ims_core::audit::AuditStore;
use ims_core::Now;
use ims_wire::migration::{
    Completion, CopyAccessOutcome, CopyAccessRequest, EmailAssignment, EmailChange, EmailOutcome, GroupFacts,
    GroupOutcome, GroupRequest, ImsAccountFacts, ImsAccountRequest, InstanceFacts, JournalReport, Notice,
    OperatorFacts, OperatorPage, ProbeFacts, RestrictionFacts, RowProblem, UsageFacts, MAX_EMAILS, MAX_PAGE,
};

use crate::fault::Fault;
use crate::migration_emails::{email_blockers, is_console_sign_in, is_native_api_call, EmailStatus};
use crate::model::{AuthType, Operator, OperatorGroup};
use crate::operators::{OperatorEdit, OperatorKey, WriteMode};
use crate::service::{effective_rights, holds, Caller, Configuration, InstanceKind, Shared, ADMINISTRATION};
use crate::store::{OperatorStore, SettingsStore, UsageStore};
use crate::usage::UsageSummary;
use crate::version::{Build, NativeAuth};
use ims_wire::email::email_key;

/// The instance's environment (`staging`, `production`), its staging twin, and when its
/// migration was marked complete: instance settings.
pub const ENVIRONMENT_SETTING: &str = "environment";
pub const STAGING_TWIN_SETTING: &str = "staging_twin";
pub const COMPLETE_SETTING: &str = "migration.complete";

/// Writes the instance's configuration files. The process running the instance provides it;
/// without one, locking down through the API is refused.
#[async_trait::async_trait]
pub trait ConfigFiles: Send + Sync {
    /// Switches both restrictions on in the instance's own configuration file (the allow-list
    /// replaced when `allow` names operators), then has `instance` read it again.
    async fn lock_down(&self, instance: &Configuration, allow: &[String]) -> Result<(), String>;
    /// Writes the instance's IMS configuration (its client secret sealed), checked by the rules
    /// a start applies, then has `instance` read it again. Returns what was set, secret aside.
    async fn set_ims_account(
        &self,
        instance: &Configuration,
        req: &ImsAccountRequest,
    ) -> Result<serde_json::Value, String>;
}

/// The migration API's use cases and the console's migration page: facts about the instance and
/// its operators, the changes the engine asks for (emails, groups, access, switches), the
/// lock-down and its verification, the window's notice and the engine's report.
pub struct Migration {
    pub(crate) shared: Arc<Shared>,
    pub(crate) operators: Arc<dyn OperatorStore>,
    pub(crate) settings: Arc<dyn SettingsStore>,
    pub(crate) usage: Arc<dyn UsageStore>,
    pub(crate) audit: Arc<dyn AuditStore>,
    /// Runs the lock-down probes over the instance's data (read only).
    verifier: crate::probe::Verifier,
    /// The lock-down and the IMS configuration are written to the instance's files, then read
    /// again through it.
    pub(crate) configuration: Configuration,
    /// Who writes the instance's configuration files, when the process that runs it does.
    pub(crate) config_files: Option<Arc<dyn ConfigFiles>>,
    /// The migration window's notice, as stored (read on every console page).
    notice: RwLock<Option<Notice>>,
}

/// The stores the migration reads and writes.
pub(crate) struct MigrationStores {
    pub(crate) operators: Arc<dyn OperatorStore>,
    pub(crate) settings: Arc<dyn SettingsStore>,
    pub(crate) usage: Arc<dyn UsageStore>,
    pub(crate) audit: Arc<dyn AuditStore>,
}

impl Migration {
    pub(crate) fn new(
        stores: MigrationStores,
        verifier: crate::probe::Verifier,
        configuration: Configuration,
    ) -> Self {
        Migration {
            shared: Arc::clone(&configuration.shared),
            operators: stores.operators,
            settings: stores.settings,
            usage: stores.usage,
            audit: stores.audit,
            verifier,
            configuration,
            config_files: None,
            notice: RwLock::new(None),
        }
    }
}

impl Migration {
    /// Locks the instance down: both restrictions on, through its configuration file, in effect
    /// at once.
    pub async fn migration_lock_down(
        &self,
        actor: &Operator,
        allow: &[String],
        now: Now,
    ) -> Result<InstanceFacts, Fault> {
        self.require_administration(actor).await?;
        if let Some(bad) = allow.iter().find(|a| !ims_wire::operators::valid_allow_entry(a)) {
            return Err(Fault::bad_request(format!(
                "{bad:?} is not an allow-list entry (an operator name, or names separated by |)"
            )));
        }
        if !self.shared.info.build.supports_restrictions() {
            return Err(Fault::bad_request(format!(
                "build {} has no lock-down switches; builds that have them: {}",
                self.shared.info.build,
                Build::RESTRICTION_BUILDS
            )));
        }
        let files = self
            .config_files
            .clone()
            .ok_or_else(|| Fault::unavailable("this instance's configuration files are not written by the process serving it; lock it down with `ims instance restrictions enable`"))?;
        files.lock_down(&self.configuration, allow).await.map_err(|e| {
            tracing::error!(error = %e, "lock-down not written");
            Fault::unavailable(format!("the lock-down could not be written: {e}"))
        })?;
        // The file's own audit line names the process that wrote it; this one, who asked.
        let audit = ims_core::audit::Context::new(now, format!("operator:{}", actor.login)).event(
            "instance.lockdown",
            &self.shared.info.name,
            "success",
            serde_json::json!({"allow_list": allow}),
        );
        self.audit.append_audit(&audit).await?;
        self.migration_facts(actor, now).await
    }

    /// Configures how people sign in to the instance through the IMS (the migration's
    /// `prepare`), through its configuration file like `ims instance ims-config`, in effect at
    /// once. Everything the instance can check alone is checked before anything is written.
    pub async fn migration_set_ims_account(
        &self,
        actor: &Operator,
        req: &ImsAccountRequest,
        now: Now,
    ) -> Result<serde_json::Value, Fault> {
        use crate::connect::{
            check_account, ImsAccount, CALLBACK_PATH, DEFAULT_PRODUCT_CONTEXT, DEFAULT_SCOPES,
        };
        use ims_wire::association::AssociationMask;
        self.require_administration(actor).await?;
        if req.client_id.trim().is_empty() || req.client_secret.is_empty() {
            return Err(Fault::bad_request("the client id and its secret are both needed"));
        }
        let name = self.shared.info.name.clone();
        let mask = req
            .association_mask
            .clone()
            .unwrap_or_else(|| format!("campaign - {name} - (.*)"));
        let checked = ImsAccount {
            url: req.ims_url.clone(),
            org_id: req.org_id.clone(),
            client_id: Some(req.client_id.clone()),
            sealed_secret: Some("enc:unchecked".into()),
            // Left out, the callback is the instance's own address, which the file writer
            // knows; a well-formed stand-in lets the other rules be checked here.
            callback_url: req
                .callback_url
                .clone()
                .unwrap_or_else(|| format!("https://localhost{CALLBACK_PATH}")),
            mask: AssociationMask::parse(&mask)
                .map_err(|e| Fault::bad_request(format!("associationMask: {e}")))?,
            product_context: req
                .product_context
                .clone()
                .unwrap_or_else(|| DEFAULT_PRODUCT_CONTEXT.to_owned()),
            scopes: if req.scopes.is_empty() {
                DEFAULT_SCOPES.iter().map(|s| s.to_string()).collect()
            } else {
                req.scopes.clone()
            },
        };
        check_account(&checked).map_err(|(key, m)| Fault::bad_request(format!("{key}: {m}")))?;
        let files = self
            .config_files
            .clone()
            .ok_or_else(|| Fault::unavailable("this instance's configuration files are not written by the process serving it; configure it with `ims instance ims-config`"))?;
        let set = files
            .set_ims_account(&self.configuration, req)
            .await
            .map_err(|e| {
                tracing::error!(error = %e, "IMS configuration not written");
                Fault::unavailable(format!("the IMS configuration could not be written: {e}"))
            })?;
        // The reload's audit line names the process; this one, who asked (no secret in it).
        let audit = ims_core::audit::Context::new(now, format!("operator:{}", actor.login)).event(
            "instance.ims_account",
            &name,
            "success",
            set.clone(),
        );
        self.audit.append_audit(&audit).await?;
        Ok(set)
    }

    /// Runs the lock-down probes against the instance as it is (nothing is written).
    pub async fn migration_verify(
        &self,
        actor: &Operator,
        bearer_token: Option<String>,
    ) -> Result<Vec<ProbeFacts>, Fault> {
        self.require_administration(actor).await?;
        let bearer = match (self.shared.bearer.clone(), bearer_token) {
            (Some(issuer), Some(token)) => Some((issuer, ims_core::secret::Secret::new(token))),
            _ => None,
        };
        let input = crate::probe::ProbeInput {
            info: self.shared.info.clone(),
            switches: self.shared.restrictions().switches.clone(),
            bearer,
        };
        Ok(self
            .verifier
            .verify(input)
            .await
            .into_iter()
            .map(|r| ProbeFacts {
                probe: r.probe,
                expected: r.expected,
                observed: r.observed,
                passed: r.passed,
            })
            .collect())
    }

    /// Marks the migration complete; only a locked-down instance can be.
    pub async fn migration_complete(
        &self,
        actor: &Operator,
        req: &Completion,
        now: Now,
        caller: &Caller,
    ) -> Result<InstanceFacts, Fault> {
        self.require_administration(actor).await?;
        let r = self.shared.restrictions();
        if !(r.operator_management && r.native_api) {
            return Err(Fault::bad_request(
                "the instance is not locked down: switch the restrictions on first",
            ));
        }
        let done = Completion {
            at: now.millis(),
            by: format!("operator:{}", actor.login),
            forced: req.forced,
            note: req.note.clone(),
        };
        let ctx = ims_core::audit::Context {
            now,
            actor: done.by.clone(),
            source: caller.source.clone(),
            request_id: None,
        };
        let audit = ctx.event(
            "instance.migration_complete",
            &self.shared.info.name,
            "success",
            serde_json::json!({"forced": req.forced, "note": req.note}),
        );
        let value = serde_json::to_string(&done).map_err(|_| Fault::internal())?;
        self.settings
            .set_setting(COMPLETE_SETTING, &value, &audit)
            .await?;
        self.migration_facts(actor, now).await
    }

    /// The migration API's one rule of access; its handlers apply it before reading a body, so
    /// that a caller without the right learns nothing from how its request would be read.
    pub async fn require_administration(&self, actor: &Operator) -> Result<(), Fault> {
        if holds(
            &effective_rights(self.operators.as_ref(), actor).await?,
            ADMINISTRATION,
        ) {
            Ok(())
        } else {
            Err(Fault::forbidden(
                "the migration API needs the ADMINISTRATION right",
            ))
        }
    }

    /// The instance as a whole: build and what it allows, restrictions, IMS configuration,
    /// groups with their rights.
    pub async fn migration_facts(&self, actor: &Operator, now: Now) -> Result<InstanceFacts, Fault> {
        self.require_administration(actor).await?;
        let build = self.shared.info.build;
        let restrictions = self.shared.restrictions();
        let groups = self
            .operators
            .groups()
            .await?
            .into_iter()
            .map(|g| GroupFacts {
                name: g.name,
                label: g.label,
                rights: g.rights,
            })
            .collect();
        Ok(InstanceFacts {
            name: self.shared.info.name.clone(),
            kind: match self.shared.info.kind {
                InstanceKind::Marketing => "marketing",
                InstanceKind::MessageCenter => "message_center",
            }
            .to_owned(),
            build: build.to_string(),
            accepts_ims_signin: build.accepts_ims_signin(),
            accepts_bearer_tokens: build.accepts_bearer_tokens(),
            supports_restrictions: build.supports_restrictions(),
            native_auth: match build.native_auth() {
                NativeAuth::AllowListOnly => "allow_list_only",
                NativeAuth::Allowed if build.supports_restrictions() => "until_switched_off",
                NativeAuth::Allowed => "allowed",
            }
            .to_owned(),
            bearer_builds: Build::BEARER_BUILDS.to_owned(),
            restriction_builds: Build::RESTRICTION_BUILDS.to_owned(),
            people_builds: Build::PEOPLE_BUILDS.to_owned(),
            restrictions: RestrictionFacts {
                operator_management_restricted: restrictions.operator_management,
                native_api_disabled: restrictions.native_api,
                allow_list: restrictions.allow_list.clone(),
            },
            ims_account: self.shared.connection().map(|c| ImsAccountFacts {
                ims_url: c.account.url.clone(),
                org_id: c.account.org_id.clone(),
                client_id: c.client_id.clone(),
                association_mask: c.account.mask.as_str().to_owned(),
                product_context: c.account.product_context.clone(),
            }),
            groups,
            operator_count: self.operators.operator_count().await?,
            now: now.millis(),
            environment: self
                .settings
                .setting(ENVIRONMENT_SETTING)
                .await?
                .unwrap_or_else(|| "production".into()),
            staging_twin: self.settings.setting(STAGING_TWIN_SETTING).await?,
            migration_complete: self
                .settings
                .setting(COMPLETE_SETTING)
                .await?
                .and_then(|v| serde_json::from_str(&v).ok()),
        })
    }

    /// Operators with ids above `after`, in id order, each with its recorded usage.
    pub async fn migration_operators(
        &self,
        actor: &Operator,
        after: i64,
        limit: u32,
    ) -> Result<OperatorPage, Fault> {
        self.require_administration(actor).await?;
        let limit = limit.clamp(1, MAX_PAGE);
        let page = self.operators.operators_after(after, limit).await?;
        let (Some(first), Some(last)) = (page.first(), page.last()) else {
            return Ok(OperatorPage {
                operators: Vec::new(),
                next_after: None,
            });
        };
        let mut usage: HashMap<i64, Vec<UsageFacts>> = HashMap::new();
        for row in self.usage.usage_of_operators(first.id, last.id).await? {
            if let Some(id) = row.key.operator_id {
                usage.entry(id).or_default().push(usage_facts(row));
            }
        }
        let next_after = (page.len() == limit as usize).then_some(last.id);
        Ok(OperatorPage {
            operators: page
                .into_iter()
                .map(|op| {
                    let used = usage.remove(&op.id).unwrap_or_default();
                    facts_of(op, used)
                })
                .collect(),
            next_after,
        })
    }
}

impl Migration {
    /// Gives operators their emails. Every assignment is checked first (the operator exists and
    /// is not a technical account, the address reads as one, no two operators end up sharing an
    /// email, compared case-insensitively); with any problem nothing is written. Each change is
    /// then written through the operators' one write path (restrictions, audit line), so a run
    /// cut short is finished by running it again: what is already set is reported unchanged.
    pub async fn migration_set_emails(
        &self,
        actor: &Operator,
        assignments: &[EmailAssignment],
        dry_run: bool,
        now: Now,
        caller: &Caller,
    ) -> Result<EmailOutcome, Fault> {
        self.require_administration(actor).await?;
        if assignments.len() > MAX_EMAILS {
            return Err(Fault::bad_request(format!(
                "at most {MAX_EMAILS} emails per request"
            )));
        }
        let mut out = EmailOutcome {
            dry_run,
            ..EmailOutcome::default()
        };
        let problem = |login: &str, problem: String| RowProblem {
            login: login.to_owned(),
            problem,
        };
        // Who holds each email once the request is applied: its current holders that the
        // request does not move away from it, plus those it gives it to.
        let mut targets: Vec<(Operator, String)> = Vec::new();
        let mut logins = HashSet::new();
        for a in assignments {
            let email = a.email.trim().to_owned();
            if !logins.insert(a.login.as_str()) {
                out.problems
                    .push(problem(&a.login, "named twice in the request".into()));
                continue;
            }
            if let Err(f) = crate::operators::check_email(&email) {
                out.problems.push(problem(&a.login, f.message));
                continue;
            }
            match self.operators.operator_by_login(&a.login).await? {
                None => out
                    .problems
                    .push(problem(&a.login, "no operator has this login".into())),
                Some(op) if op.auth_type == AuthType::TechnicalAccount => out.problems.push(problem(
                    &a.login,
                    "a technical account's email is its technical account's".into(),
                )),
                Some(op) => match self
                    .shared
                    .restrictions()
                    .check_operator_change(Some(&op), op.auth_type == AuthType::Native)
                {
                    Err(f) => out.problems.push(problem(&a.login, f.message)),
                    Ok(()) => targets.push((op, email)),
                },
            }
        }
        let new_key: HashMap<i64, String> = targets.iter().map(|(op, e)| (op.id, email_key(e))).collect();
        let mut holders: HashMap<String, Vec<String>> = HashMap::new();
        for (op, email) in &targets {
            let key = email_key(email);
            if !holders.contains_key(&key) {
                let stay = self
                    .operators
                    .operators_by_email(email)
                    .await?
                    .into_iter()
                    .filter(|o| new_key.get(&o.id).is_none_or(|k| *k == key))
                    .map(|o| o.login);
                holders.insert(key.clone(), stay.collect());
            }
            let entry = holders.entry(key).or_default();
            if !entry.contains(&op.login) {
                entry.push(op.login.clone());
            }
        }
        for (op, email) in &targets {
            let others: Vec<&String> = holders[&email_key(email)]
                .iter()
                .filter(|l| **l != op.login)
                .collect();
            if !others.is_empty() {
                let names: Vec<&str> = others.iter().map(|s| s.as_str()).collect();
                out.problems.push(problem(
                    &op.login,
                    format!("{email} would also be the email of {}", names.join(", ")),
                ));
            }
        }
        if !out.problems.is_empty() {
            return Ok(out);
        }
        let ctx = context_of(actor, now, caller);
        let restrictions = self.shared.restrictions();
        for (op, email) in targets {
            if op.email.as_deref() == Some(email.as_str()) {
                out.unchanged.push(op.login);
                continue;
            }
            if !dry_run {
                let edit = OperatorEdit {
                    email: Some(Some(email.clone())),
                    ..OperatorEdit::default()
                };
                crate::operators::save(
                    self.operators.as_ref(),
                    &restrictions,
                    &OperatorKey::Id(op.id),
                    WriteMode::Update,
                    edit,
                    &ctx,
                )
                .await?;
            }
            out.changed.push(EmailChange {
                login: op.login,
                before: op.email,
                after: email,
            });
        }
        Ok(out)
    }
}

impl Migration {
    /// Creates operator groups carrying named rights that operators hold directly, and adds
    /// those operators to them (their other groups stay). Everything is checked first (a name of
    /// letters, digits, `-` and `_`; known rights; a group of that name, if any, carrying exactly
    /// those rights; members that exist and are not technical accounts); with any problem
    /// nothing is written. Run again, it finds what is done and adds what is missing.
    pub async fn migration_groups(
        &self,
        actor: &Operator,
        req: &GroupRequest,
        dry_run: bool,
        now: Now,
        caller: &Caller,
    ) -> Result<GroupOutcome, Fault> {
        self.require_administration(actor).await?;
        if req.groups.len() > 100 || req.groups.iter().map(|g| g.members.len()).sum::<usize>() > MAX_EMAILS {
            return Err(Fault::bad_request(format!(
                "at most 100 groups and {MAX_EMAILS} members per request"
            )));
        }
        let existing = self.operators.groups().await?;
        let mut out = GroupOutcome {
            dry_run,
            ..GroupOutcome::default()
        };
        let problem = |who: &str, problem: String| RowProblem {
            login: who.to_owned(),
            problem,
        };
        let mut members: Vec<(Operator, String)> = Vec::new();
        let mut named = HashSet::new();
        for g in &req.groups {
            if !named.insert(g.name.as_str()) {
                out.problems
                    .push(problem(&g.name, "named twice in the request".into()));
                continue;
            }
            let name_ok = !g.name.is_empty()
                && g.name.len() <= 64
                && g.name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
            if !name_ok {
                out.problems.push(problem(
                    &g.name,
                    "a group name is 1 to 64 letters, digits, - or _".into(),
                ));
                continue;
            }
            if let Some(r) = g.rights.iter().find(|r| ims_wire::rights::right(r).is_none()) {
                out.problems
                    .push(problem(&g.name, format!("{r:?} is not a named right")));
                continue;
            }
            let mut want = g.rights.clone();
            want.sort();
            want.dedup();
            if let Some(e) = existing.iter().find(|e| e.name == g.name) {
                let mut have = e.rights.clone();
                have.sort();
                if have != want {
                    out.problems.push(problem(
                        &g.name,
                        format!("exists with other rights: [{}]", have.join(", ")),
                    ));
                    continue;
                }
            }
            for login in &g.members {
                match self.operators.operator_by_login(login).await? {
                    None => out
                        .problems
                        .push(problem(login, "no operator has this login".into())),
                    Some(op) if op.auth_type == AuthType::TechnicalAccount => out.problems.push(problem(
                        login,
                        "a technical account's groups come from its credential's profiles".into(),
                    )),
                    Some(op) => members.push((op, g.name.clone())),
                }
            }
        }
        if !out.problems.is_empty() {
            return Ok(out);
        }
        let ctx = context_of(actor, now, caller);
        for g in &req.groups {
            if existing.iter().any(|e| e.name == g.name) {
                out.present.push(g.name.clone());
                continue;
            }
            if !dry_run {
                let mut rights = g.rights.clone();
                rights.sort();
                rights.dedup();
                let group = OperatorGroup {
                    id: 0,
                    name: g.name.clone(),
                    label: g.label.clone(),
                    rights,
                };
                let audit = ctx.event(
                    "group.create",
                    &g.name,
                    "success",
                    serde_json::json!({"label": g.label, "rights": g.rights}),
                );
                if !self.operators.create_group(&group, &audit).await? {
                    out.present.push(g.name.clone());
                    continue;
                }
            }
            out.created.push(g.name.clone());
        }
        let restrictions = self.shared.restrictions();
        // Memberships one operator at a time; re-read so two groups for one operator add up.
        for (op, group) in members {
            let current = self.operators.operator(op.id).await?.unwrap_or(op);
            if current.groups.contains(&group) {
                continue;
            }
            if !dry_run {
                let mut groups = current.groups.clone();
                groups.push(group.clone());
                let edit = OperatorEdit {
                    groups: Some(groups),
                    ..OperatorEdit::default()
                };
                crate::operators::save(
                    self.operators.as_ref(),
                    &restrictions,
                    &OperatorKey::Id(current.id),
                    WriteMode::Update,
                    edit,
                    &ctx,
                )
                .await?;
            }
            out.added.push((current.login, group));
        }
        Ok(out)
    }
}

impl Migration {
    /// Gives a technical account operator what the native operator it replaces holds directly:
    /// named rights and folder rights (adding only; run again, it adds nothing).
    pub async fn migration_copy_access(
        &self,
        actor: &Operator,
        req: &CopyAccessRequest,
        now: Now,
        caller: &Caller,
    ) -> Result<CopyAccessOutcome, Fault> {
        self.require_administration(actor).await?;
        // The vendor copies a technical operator's access on marketing instances only: on a
        // Message Center instance the technical account's rights come from its product profile.
        if self.shared.info.kind == InstanceKind::MessageCenter {
            return Err(Fault::bad_request(
                "access is copied on marketing instances only: on a Message Center instance the technical account's rights come from its product profile (campaign - <marketing instance> - messagecenter)",
            ));
        }
        let from = self
            .operators
            .operator_by_login(&req.from)
            .await?
            .ok_or_else(|| Fault::not_found(format!("no operator {:?}", req.from)))?;
        let to = self.operators.operator_by_login(&req.to).await?.ok_or_else(|| {
            Fault::not_found(format!(
                "no operator {:?} (has the technical account made its first call?)",
                req.to
            ))
        })?;
        if to.auth_type != AuthType::TechnicalAccount {
            return Err(Fault::bad_request(format!(
                "{} is not a technical account operator",
                to.login
            )));
        }
        let ctx = context_of(actor, now, caller);
        let audit = ctx.event(
            "operator.copy_access",
            &to.login,
            "success",
            serde_json::json!({"from": from.login, "rights": from.rights}),
        );
        let (rights_added, folder_rights_added) = self
            .operators
            .copy_operator_access(from.id, to.id, &audit)
            .await?;
        Ok(CopyAccessOutcome {
            rights_added,
            folder_rights_added,
        })
    }
}

pub const NOTICE_SETTING: &str = "migration.notice";
pub const REPORT_SETTING: &str = "migration.report";

/// How long without native API traffic makes a legacy credential quiet on the console's page.
pub const QUIET_AFTER_MS: i64 = 7 * 86_400_000;

impl Migration {
    /// Reads the stored notice into memory (at start).
    pub async fn load_notice(&self) -> Result<(), Fault> {
        let stored = self
            .settings
            .setting(NOTICE_SETTING)
            .await?
            .and_then(|v| serde_json::from_str::<Notice>(&v).ok())
            .filter(|n| !n.message.is_empty());
        *self.notice.write().unwrap_or_else(|e| e.into_inner()) = stored;
        Ok(())
    }

    /// The notice the console shows now, if any.
    pub fn notice(&self, now: Now) -> Option<String> {
        let n = self.notice.read().unwrap_or_else(|e| e.into_inner()).clone()?;
        n.until.is_none_or(|u| u > now.millis()).then_some(n.message)
    }

    /// Sets (or, with an empty message, removes) the migration window's notice.
    pub async fn migration_set_notice(
        &self,
        actor: &Operator,
        notice: &Notice,
        now: Now,
        caller: &Caller,
    ) -> Result<(), Fault> {
        self.require_administration(actor).await?;
        if notice.message.chars().count() > 500 {
            return Err(Fault::bad_request("a notice is at most 500 characters"));
        }
        let current = self.notice.read().unwrap_or_else(|e| e.into_inner()).clone();
        if current.as_ref() == Some(notice) || (current.is_none() && notice.message.is_empty()) {
            return Ok(());
        }
        let ctx = context_of(actor, now, caller);
        let audit = ctx.event(
            "instance.notice",
            &self.shared.info.name,
            "success",
            serde_json::json!({"message": notice.message, "until": notice.until}),
        );
        let value = serde_json::to_string(notice).map_err(|_| Fault::internal())?;
        self.settings.set_setting(NOTICE_SETTING, &value, &audit).await?;
        *self.notice.write().unwrap_or_else(|e| e.into_inner()) =
            Some(notice.clone()).filter(|n| !n.message.is_empty());
        Ok(())
    }

    /// Keeps the engine's latest report of its journal, for the console's page.
    pub async fn migration_set_report(
        &self,
        actor: &Operator,
        report: &JournalReport,
        now: Now,
    ) -> Result<(), Fault> {
        self.require_administration(actor).await?;
        // The same plans in the same states: nothing to write (a run that changes nothing
        // writes nothing).
        let stored: Option<JournalReport> = self
            .settings
            .setting(REPORT_SETTING)
            .await?
            .and_then(|v| serde_json::from_str(&v).ok());
        // A report without people keeps the people last reported.
        let mut report = report.clone();
        if report.people.is_none() {
            report.people = stored.as_ref().and_then(|s| s.people.clone());
        }
        if let Some(p) = &mut report.people {
            p.waiting.truncate(ims_wire::migration::MAX_REPORTED_WAITING);
        }
        let unchanged = match &stored {
            Some(s) => s.plans == report.plans && s.people == report.people,
            None => report.plans.is_empty() && report.people.is_none(),
        };
        if unchanged {
            return Ok(());
        }
        let audit = ims_core::audit::Context::new(now, format!("operator:{}", actor.login)).event(
            "instance.migration_report",
            &self.shared.info.name,
            "success",
            serde_json::json!({"plans": report.plans.len()}),
        );
        let value = serde_json::to_string(&report).map_err(|_| Fault::internal())?;
        self.settings.set_setting(REPORT_SETTING, &value, &audit).await?;
        Ok(())
    }

    /// Every operator, read page by page in id order.
    pub(crate) async fn all_operators(&self) -> Result<Vec<Operator>, Fault> {
        let mut ops = Vec::new();
        let mut after = 0;
        loop {
            let page = self.operators.operators_after(after, MAX_PAGE).await?;
            let Some(last) = page.last() else { break };
            after = last.id;
            ops.extend(page);
        }
        Ok(ops)
    }

    /// What the console's migration page shows.
    pub async fn migration_dashboard(&self, actor: &Operator, now: Now) -> Result<Dashboard, Fault> {
        self.require_administration(actor).await?;
        let ops = self.all_operators().await?;
        let mut by_type: BTreeMap<String, i64> = BTreeMap::new();
        for op in &ops {
            *by_type.entry(op.auth_type.as_str().to_owned()).or_default() += 1;
        }
        let mut legacy = Vec::new();
        // Everyone's recorded usage in one reading, not one per operator.
        let usage = match (ops.first(), ops.last()) {
            (Some(first), Some(last)) => self.usage.usage_of_operators(first.id, last.id).await?,
            _ => Vec::new(),
        };
        // The people an email keeps from moving, by the rule the emails page applies; and those
        // in no group, whom no product profile would let in.
        let mut blockers: Vec<String> = email_blockers(&ops, &usage)
            .into_iter()
            .map(|b| match b.status {
                EmailStatus::Missing => format!("{} has no email", b.login),
                EmailStatus::Invalid => format!(
                    "{} has an email the IMS does not take: {}",
                    b.login,
                    b.email.unwrap_or_default()
                ),
                EmailStatus::Shared => format!(
                    "{} shares its email {} with another operator",
                    b.login,
                    b.email.unwrap_or_default().trim()
                ),
            })
            .collect();
        let mut usage_by: HashMap<i64, Vec<UsageSummary>> = HashMap::new();
        for row in usage {
            if let Some(id) = row.key.operator_id {
                usage_by.entry(id).or_default().push(row);
            }
        }
        for op in ops
            .iter()
            .filter(|o| o.auth_type == AuthType::Native && !o.builtin && !o.disabled)
        {
            let usage = usage_by.remove(&op.id).unwrap_or_default();
            let api: Vec<&UsageSummary> = usage.iter().filter(|u| is_native_api_call(u)).collect();
            if !api.is_empty() && !usage.iter().any(is_console_sign_in) {
                let last = api.iter().map(|u| u.counts.last_at.millis()).max().unwrap_or(0);
                let sources: BTreeSet<&str> = api
                    .iter()
                    .map(|u| u.key.source.as_str())
                    .filter(|s| !s.is_empty())
                    .collect();
                legacy.push(LegacyCredential {
                    login: op.login.clone(),
                    last_native: last,
                    sources: sources.into_iter().collect::<Vec<_>>().join(", "),
                    quiet: now.millis() - last >= QUIET_AFTER_MS,
                });
                continue;
            }
            if op.groups.is_empty() {
                blockers.push(format!("{} belongs to no operator group", op.login));
            }
        }
        let history = self.history(&ops, &by_type, now).await?;
        let report = self
            .settings
            .setting(REPORT_SETTING)
            .await?
            .and_then(|v| serde_json::from_str(&v).ok());
        let completion = self
            .settings
            .setting(COMPLETE_SETTING)
            .await?
            .and_then(|v| serde_json::from_str(&v).ok());
        Ok(Dashboard {
            by_type,
            history,
            blockers,
            legacy,
            report,
            completion,
        })
    }

    /// Operators by authentication type after each change of type, newest last, worked back
    /// from today's counts through the audit log (moves between native and IMS, technical
    /// accounts made at their first call).
    async fn history(
        &self,
        ops: &[Operator],
        now_counts: &BTreeMap<String, i64>,
        now: Now,
    ) -> Result<Vec<(i64, i64, i64, i64)>, Fault> {
        use ims_core::audit::AuditQuery;
        let technical: HashSet<&str> = ops
            .iter()
            .filter(|o| o.auth_type == AuthType::TechnicalAccount)
            .map(|o| o.login.as_str())
            .collect();
        let mut events: Vec<(i64, &str, i64)> = Vec::new();
        let moves = self
            .audit
            .audit(&AuditQuery {
                action_prefix: Some("operator.migrate".into()),
                limit: 10_000,
            })
            .await?;
        for e in &moves {
            let to_ims = e.details.get("to").and_then(|v| v.as_str()) == Some("ims");
            events.push((e.at.millis(), if to_ims { "to_ims" } else { "to_native" }, 1));
        }
        let made = self
            .audit
            .audit(&AuditQuery {
                action_prefix: Some("operator.create".into()),
                limit: 10_000,
            })
            .await?;
        for e in made.iter().filter(|e| technical.contains(e.target.as_str())) {
            events.push((e.at.millis(), "technical", 1));
        }
        events.sort();
        let count = |k: &str| now_counts.get(k).copied().unwrap_or(0);
        let (mut native, mut ims, mut ta) = (count("native"), count("ims"), count("technical_account"));
        let today = (now.millis(), native, ims, ta);
        // Worked back from today: the counts right after each event, newest first.
        let mut after = Vec::with_capacity(events.len());
        for (at, kind, n) in events.iter().rev() {
            after.push((*at, native, ims, ta));
            match *kind {
                "to_ims" => {
                    ims -= n;
                    native += n;
                }
                "to_native" => {
                    native -= n;
                    ims += n;
                }
                _ => ta -= n,
            }
        }
        after.reverse();
        let start = events.first().map_or(now.millis(), |e| e.0);
        let mut out = vec![(start, native, ims, ta)];
        out.extend(after);
        out.push(today);
        Ok(out)
    }
}

/// A native operator calling the API without signing in to the console: a credential to
/// replace, quiet once it has not been used natively for a week.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct LegacyCredential {
    pub login: String,
    pub last_native: i64,
    pub sources: String,
    pub quiet: bool,
}

/// The console's migration page.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Dashboard {
    pub by_type: BTreeMap<String, i64>,
    /// `(time, native, ims, technical account)`, oldest first.
    pub history: Vec<(i64, i64, i64, i64)>,
    pub blockers: Vec<String>,
    pub legacy: Vec<LegacyCredential>,
    pub report: Option<JournalReport>,
    pub completion: Option<Completion>,
}

/// Who asks, when and from where, for the audit lines.
pub(crate) fn context_of(actor: &Operator, now: Now, caller: &Caller) -> ims_core::audit::Context {
    ims_core::audit::Context {
        now,
        actor: format!("operator:{}", actor.login),
        source: caller.source.clone(),
        request_id: None,
    }
}

pub(crate) fn facts_of(op: Operator, usage: Vec<UsageFacts>) -> OperatorFacts {
    let credential = op
        .password_hash
        .as_deref()
        .map(|h| ims_core::secret::digest_hex(h)[..16].to_owned());
    OperatorFacts {
        usage,
        credential,
        id: op.id,
        login: op.login,
        label: op.label,
        email: op.email,
        auth_type: op.auth_type.as_str().to_owned(),
        disabled: op.disabled,
        builtin: op.builtin,
        groups: op.groups,
        rights: op.rights,
        ims_id: op.ims_id,
    }
}

fn usage_facts(row: UsageSummary) -> UsageFacts {
    UsageFacts {
        action: row.key.action,
        auth_path: row.key.auth_path.as_str().to_owned(),
        source: row.key.source,
        client: row.key.client,
        outcome: row.key.outcome,
        count: row.counts.calls,
        first_at: row.counts.first_at.millis(),
        last_at: row.counts.last_at.millis(),
    }
}
