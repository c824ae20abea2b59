//! The User Management API's action language (`POST /v2/usermanagement/action/{org}`): parsing a
//! request and planning each entry's steps against a snapshot of the directory. Planning is pure:
//! an entry either yields every change it asks for, or an error naming its step and none of its
//! changes, so the store can apply an entry whole or not at all.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{json, Value};

use crate::directory::{check_group_name, Group, GroupKind};
use crate::links::AccountLink;
use crate::mail::Mail;
use crate::model::{IdentityType, User, UserStatus};
use ims_core::Now;

/// Most entries in one request, and steps in one entry (the vendor's limits).
pub const MAX_ENTRIES: usize = 10;
pub const MAX_STEPS: usize = 10;
/// Most group or user names one `add` or `remove` step lists.
pub const MAX_NAMES_PER_STEP: usize = 10;

/// What an entry acts on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    /// A user, by email.
    User(String),
    /// A user group, by name.
    UserGroup(String),
}

/// `option` of the create steps.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IfExists {
    Error,
    Ignore,
    Update,
}

/// `remove` of groups: some, or every direct membership.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Groups {
    Named(Vec<String>),
    All,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Step {
    CreateUser(NewUser),
    Update(UserUpdate),
    AddGroups(Vec<String>),
    RemoveGroups(Groups),
    RemoveFromOrg {
        delete_account: bool,
    },
    CreateUserGroup {
        option: IfExists,
        description: Option<String>,
    },
    UpdateUserGroup {
        name: Option<String>,
        description: Option<String>,
    },
    DeleteUserGroup,
    AddUsers(Vec<String>),
    RemoveUsers(Vec<String>),
    AddProfiles(Vec<String>),
    RemoveProfiles(Vec<String>),
    /// A step this API does not know, or knows with a shape it cannot take: the entry fails at
    /// this step with `code`.
    Invalid {
        code: ResultCode,
        message: String,
    },
}

/// `createEnterpriseID`, `createFederatedID`, `addAdobeID`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewUser {
    pub kind: IdentityType,
    pub email: String,
    pub option: IfExists,
    pub first_name: Option<String>,
    pub last_name: Option<String>,
    pub country: Option<String>,
    /// Whether a new Enterprise ID is sent an invitation (`"invite": false` opts out; the
    /// vendor's API has no such field, and its clients never send it).
    pub invite: bool,
}

/// `update`: what it names changes, the rest stays.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UserUpdate {
    pub email: Option<String>,
    pub username: Option<String>,
    pub first_name: Option<String>,
    pub last_name: Option<String>,
    pub country: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    pub target: Target,
    pub request_id: Option<String>,
    pub steps: Vec<Step>,
}

/// The codes the API answers with (`result`, and `errorCode` per failed step), as its clients
/// branch on them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ResultCode {
    /// A step of a known command with a shape it cannot take.
    CommandMalformed,
    /// A step this API does not know.
    CommandUnknown,
    /// The entry changed something another entry of the request changed meanwhile.
    EntryConflict,
    /// The group named is a user group where a product profile is needed.
    GroupNotAProductProfile,
    /// No group by that name.
    GroupNotFound,
    /// The product profile holds as many people as its licence quota allows.
    GroupQuotaExceeded,
    /// The request is not what the API reads.
    RequestMalformed,
    /// More entries than one request may carry.
    RequestTooManyEntries,
    /// More steps than one entry may carry.
    RequestTooManySteps,
    /// A username change, which this directory does not keep apart from the email.
    UsernameNotSupported,
    /// The email is taken.
    UserAlreadyExists,
    /// The email of the entry and of the step differ.
    UserEmailMismatch,
    /// Not a country code.
    UserInvalidCountry,
    /// Not an email address.
    UserInvalidEmail,
    /// No user with that email.
    UserNonexistent,
    /// The user group name is taken.
    UserGroupAlreadyExists,
    /// Not a name a user group may have.
    UserGroupInvalidName,
    /// The group named is a product profile where a user group is needed.
    UserGroupNotAUserGroup,
    /// No user group by that name.
    UserGroupNotFound,
    /// The body is larger than the API reads.
    RequestTooLarge,
    /// The product or product profile does not exist.
    ProductNotFound,
    /// The group name is taken.
    GroupExists,
    /// The server failed; nothing is said about why.
    Internal,
    /// The organisation in the path is not the caller's or does not exist.
    InvalidOrganization,
}

impl ResultCode {
    pub const fn as_str(self) -> &'static str {
        match self {
            ResultCode::CommandMalformed => "error.command.malformed",
            ResultCode::CommandUnknown => "error.command.unknown",
            ResultCode::EntryConflict => "error.entry.conflict",
            ResultCode::GroupNotAProductProfile => "error.group.not_a_product_profile",
            ResultCode::GroupNotFound => "error.group.not_found",
            ResultCode::GroupQuotaExceeded => "error.group.quota_exceeded",
            ResultCode::RequestMalformed => "error.request.malformed",
            ResultCode::RequestTooManyEntries => "error.request.too_many_entries",
            ResultCode::RequestTooManySteps => "error.request.too_many_steps",
            ResultCode::UsernameNotSupported => "error.update.username_not_supported",
            ResultCode::UserAlreadyExists => "error.user.already_exists",
            ResultCode::UserEmailMismatch => "error.user.email_mismatch",
            ResultCode::UserInvalidCountry => "error.user.invalid_country",
            ResultCode::UserInvalidEmail => "error.user.invalid_email",
            ResultCode::UserNonexistent => "error.user.nonexistent",
            ResultCode::UserGroupAlreadyExists => "error.usergroup.already_exists",
            ResultCode::UserGroupInvalidName => "error.usergroup.invalid_name",
            ResultCode::UserGroupNotAUserGroup => "error.usergroup.not_a_user_group",
            ResultCode::UserGroupNotFound => "error.usergroup.not_found",
            ResultCode::RequestTooLarge => "error.request.too_large",
            ResultCode::ProductNotFound => "error.product.not_found",
            ResultCode::GroupExists => "error.group.exists",
            ResultCode::Internal => "error.internal",
            ResultCode::InvalidOrganization => "error.organization.invalid_id",
        }
    }
}

impl std::fmt::Display for ResultCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A request the API refuses whole (HTTP 400), before any entry runs.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{code}: {message}")]
pub struct RequestError {
    pub code: ResultCode,
    pub message: String,
}

fn request_error(code: ResultCode, message: impl Into<String>) -> RequestError {
    RequestError {
        code,
        message: message.into(),
    }
}

fn text(v: &Value, key: &str) -> Result<Option<String>, String> {
    match v.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.trim().to_owned())),
        Some(_) => Err(format!("{key} must be a string")),
    }
}

fn names(v: &Value, key: &str) -> Result<Vec<String>, String> {
    match v.get(key) {
        Some(Value::Array(items)) => {
            let out: Vec<String> = items
                .iter()
                .map(|i| i.as_str().map(|s| s.trim().to_owned()).ok_or(()))
                .collect::<Result<_, _>>()
                .map_err(|()| format!("{key} must list strings"))?;
            if out.is_empty() {
                return Err(format!("{key} lists nothing"));
            }
            if out.len() > MAX_NAMES_PER_STEP {
                return Err(format!("{key} lists more than {MAX_NAMES_PER_STEP} names"));
            }
            Ok(out)
        }
        Some(Value::String(s)) => Ok(vec![s.trim().to_owned()]),
        _ => Err(format!("expected {{\"{key}\": [...]}}")),
    }
}

fn if_exists(v: &Value) -> Result<IfExists, String> {
    match text(v, "option")?.as_deref() {
        None | Some("errorIfAlreadyExists") => Ok(IfExists::Error),
        Some("ignoreIfAlreadyExists") => Ok(IfExists::Ignore),
        Some("updateIfAlreadyExists") => Ok(IfExists::Update),
        Some(other) => Err(format!("unknown option {other:?}")),
    }
}

fn parse_step(raw: &Value, user_entry: bool) -> Step {
    let invalid = |code: ResultCode, message: String| Step::Invalid { code, message };
    let Some(obj) = raw.as_object().filter(|o| o.len() == 1) else {
        return invalid(
            ResultCode::CommandMalformed,
            "a step is an object with one command".into(),
        );
    };
    let (command, args) = obj
        .iter()
        .next()
        .map(|(k, v)| (k.as_str(), v))
        .unwrap_or(("", &Value::Null));
    let parsed: Result<Step, String> = match (user_entry, command) {
        (true, "createEnterpriseID" | "createFederatedID" | "addAdobeID") => (|| {
            let kind = match command {
                "createEnterpriseID" => IdentityType::EnterpriseId,
                "createFederatedID" => IdentityType::FederatedId,
                _ => IdentityType::AdobeId,
            };
            Ok(Step::CreateUser(NewUser {
                kind,
                email: text(args, "email")?.ok_or("email is required")?,
                option: if_exists(args)?,
                first_name: text(args, "firstname")?,
                last_name: text(args, "lastname")?,
                country: text(args, "country")?,
                invite: match args.get("invite") {
                    None => true,
                    Some(Value::Bool(b)) => *b,
                    Some(_) => return Err("invite must be true or false".into()),
                },
            }))
        })(),
        (true, "update") => (|| {
            Ok(Step::Update(UserUpdate {
                email: text(args, "email")?,
                username: text(args, "username")?,
                first_name: text(args, "firstname")?,
                last_name: text(args, "lastname")?,
                country: text(args, "country")?,
            }))
        })(),
        (true, "add") => names(args, "group").map(Step::AddGroups),
        (true, "remove") if args.as_str() == Some("all") => Ok(Step::RemoveGroups(Groups::All)),
        (true, "remove") => names(args, "group").map(|g| Step::RemoveGroups(Groups::Named(g))),
        (true, "removeFromOrg") => match args.get("deleteAccount") {
            None => Ok(Step::RemoveFromOrg {
                delete_account: false,
            }),
            Some(Value::Bool(b)) => Ok(Step::RemoveFromOrg { delete_account: *b }),
            Some(_) => Err("deleteAccount must be true or false".into()),
        },
        (false, "createUserGroup") => (|| {
            Ok(Step::CreateUserGroup {
                option: if_exists(args)?,
                description: text(args, "description")?,
            })
        })(),
        (false, "updateUserGroup") => (|| {
            Ok(Step::UpdateUserGroup {
                name: text(args, "name")?,
                description: text(args, "description")?,
            })
        })(),
        (false, "deleteUserGroup") => Ok(Step::DeleteUserGroup),
        (false, "add" | "remove") => {
            let add = command == "add";
            if args.get("user").is_some() {
                names(args, "user").map(|u| {
                    if add {
                        Step::AddUsers(u)
                    } else {
                        Step::RemoveUsers(u)
                    }
                })
            } else {
                names(args, "productConfiguration").map(|p| {
                    if add {
                        Step::AddProfiles(p)
                    } else {
                        Step::RemoveProfiles(p)
                    }
                })
            }
        }
        _ => {
            return invalid(
                ResultCode::CommandUnknown,
                format!(
                    "unknown command {command:?} for a {} entry",
                    if user_entry { "user" } else { "user group" }
                ),
            )
        }
    };
    parsed.unwrap_or_else(|m| invalid(ResultCode::CommandMalformed, format!("{command}: {m}")))
}

/// Parses a request body. Structural problems refuse the whole request; a step that cannot be
/// understood fails its entry only, at that step.
pub fn parse_request(body: &[u8]) -> Result<Vec<Entry>, RequestError> {
    let v: Value = serde_json::from_slice(body)
        .map_err(|e| request_error(ResultCode::RequestMalformed, format!("the body is not JSON: {e}")))?;
    let Value::Array(items) = v else {
        return Err(request_error(
            ResultCode::RequestMalformed,
            "the body must be a JSON array of entries",
        ));
    };
    if items.is_empty() {
        return Err(request_error(
            ResultCode::RequestMalformed,
            "the request has no entries",
        ));
    }
    if items.len() > MAX_ENTRIES {
        return Err(request_error(
            ResultCode::RequestTooManyEntries,
            format!("at most {MAX_ENTRIES} entries per request, got {}", items.len()),
        ));
    }
    items
        .iter()
        .enumerate()
        .map(|(i, item)| {
            let obj = item.as_object().ok_or_else(|| {
                request_error(
                    ResultCode::RequestMalformed,
                    format!("entry {i} is not an object"),
                )
            })?;
            let request_id = obj.get("requestID").and_then(Value::as_str).map(str::to_owned);
            let (target, user_entry) = match (obj.get("user"), obj.get("usergroup")) {
                (Some(Value::String(u)), None) => (Target::User(u.trim().to_owned()), true),
                (None, Some(Value::String(g))) => (Target::UserGroup(g.trim().to_owned()), false),
                _ => {
                    return Err(request_error(
                        ResultCode::RequestMalformed,
                        format!("entry {i} names neither one user nor one usergroup"),
                    ))
                }
            };
            let Some(Value::Array(steps)) = obj.get("do") else {
                return Err(request_error(
                    ResultCode::RequestMalformed,
                    format!("entry {i} has no \"do\" list"),
                ));
            };
            if steps.len() > MAX_STEPS {
                return Err(request_error(
                    ResultCode::RequestTooManySteps,
                    format!("entry {i} has {} steps; at most {MAX_STEPS}", steps.len()),
                ));
            }
            Ok(Entry {
                target,
                request_id,
                steps: steps.iter().map(|s| parse_step(s, user_entry)).collect(),
            })
        })
        .collect()
}

/// A group as planning sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GroupState {
    pub group: Group,
    /// How many direct members it has in all (licence quotas count them).
    pub member_count: i64,
    /// Which of the users the request names are direct members (user ids).
    pub members: BTreeSet<String>,
    /// Linked product profiles (lower-cased names), for user groups.
    pub profiles: BTreeSet<String>,
}

/// The part of the directory a request can touch, and no more (a request's cost does not grow
/// with the organisation): the users it names, the groups it names or they belong to, each with
/// its member count and which named users are in it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Snapshot {
    pub org_id: String,
    /// By lower-cased email.
    pub users: BTreeMap<String, User>,
    /// By lower-cased name.
    pub groups: BTreeMap<String, GroupState>,
    /// Users a request brought back from removal (ids): an Enterprise ID among them with no
    /// password is invited like a new one.
    pub reactivated: BTreeSet<String>,
}

impl Snapshot {
    /// Lower-cased group names a request names (targets, groups and profiles in steps, new
    /// names), to load.
    pub fn groups_named(entries: &[Entry]) -> BTreeSet<String> {
        let mut out = BTreeSet::new();
        for e in entries {
            if let Target::UserGroup(g) = &e.target {
                out.insert(g.to_lowercase());
            }
            for s in &e.steps {
                match s {
                    Step::AddGroups(gs)
                    | Step::RemoveGroups(Groups::Named(gs))
                    | Step::AddProfiles(gs)
                    | Step::RemoveProfiles(gs) => out.extend(gs.iter().map(|g| g.to_lowercase())),
                    Step::UpdateUserGroup { name: Some(n), .. } => {
                        out.insert(n.to_lowercase());
                    }
                    _ => {}
                }
            }
        }
        out
    }

    /// Lower-cased emails a request names (entry users and users listed in steps), to load.
    pub fn emails_named(entries: &[Entry]) -> BTreeSet<String> {
        let mut out = BTreeSet::new();
        for e in entries {
            if let Target::User(u) = &e.target {
                out.insert(u.to_lowercase());
            }
            for s in &e.steps {
                match s {
                    Step::AddUsers(us) | Step::RemoveUsers(us) => {
                        out.extend(us.iter().map(|u| u.to_lowercase()));
                    }
                    Step::CreateUser(NewUser { email, .. }) => {
                        out.insert(email.to_lowercase());
                    }
                    Step::Update(UserUpdate {
                        email: Some(email), ..
                    }) => {
                        out.insert(email.to_lowercase());
                    }
                    _ => {}
                }
            }
        }
        out
    }
}

/// One change to store. Groups are named as they are at that point of the entry (a rename
/// comes before the changes that use the new name).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Change {
    CreateUser(User),
    /// The whole user as it becomes; `end_sessions` when it may no longer sign in.
    UpdateUser {
        user: User,
        end_sessions: bool,
    },
    AddMember {
        group: String,
        user_id: String,
    },
    RemoveMember {
        group: String,
        user_id: String,
    },
    CreateGroup(Group),
    /// `name`: the group's name before the change.
    UpdateGroup {
        name: String,
        group: Group,
    },
    DeleteGroup {
        name: String,
    },
    Link {
        user_group: String,
        profile: String,
    },
    Unlink {
        user_group: String,
        profile: String,
    },
    /// An invitation: the one-time link (its digest only) and the message that carries it.
    Invite {
        link: AccountLink,
        mail: Mail,
    },
    /// The person was given a product instance. The first time for this person and instance,
    /// `mail` ("you now have access") goes out; `None` when the person hears of it otherwise
    /// (their invitation names it).
    AccessNotice {
        user_id: String,
        product_instance_id: i64,
        mail: Option<Mail>,
    },
}

impl Change {
    /// One line for the audit log (user ids, never secrets).
    pub fn describe(&self) -> String {
        match self {
            Change::CreateUser(u) => {
                format!("create {} {} ({})", u.identity_type.as_str(), u.email, u.user_id)
            }
            Change::UpdateUser { user, end_sessions } => format!(
                "update {} ({}){}",
                user.email,
                user.status.as_str(),
                if *end_sessions { ", sessions ended" } else { "" }
            ),
            Change::AddMember { group, user_id } => format!("add {user_id} to {group}"),
            Change::RemoveMember { group, user_id } => format!("remove {user_id} from {group}"),
            Change::CreateGroup(g) => format!("create {} {}", g.kind.as_str(), g.name),
            Change::UpdateGroup { name, group } => format!("update {name} as {}", group.name),
            Change::DeleteGroup { name } => format!("delete {name}"),
            Change::Link { user_group, profile } => format!("link {user_group} to {profile}"),
            Change::Unlink { user_group, profile } => format!("unlink {user_group} from {profile}"),
            Change::Invite { link, mail } => format!("invite {} ({})", mail.to, link.user_id),
            Change::AccessNotice {
                user_id,
                product_instance_id,
                ..
            } => format!("access to product instance {product_instance_id} for {user_id}"),
        }
    }
}

/// Why an entry failed: at which step (0-based), with the API's error code.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StepError {
    pub step: usize,
    pub code: ResultCode,
    pub message: String,
}

/// The first step that failed; later steps did not run and earlier ones are undone.
type Planned = Result<Vec<Change>, StepError>;

struct Planner<'a> {
    snap: &'a mut Snapshot,
    now: Now,
    changes: Vec<Change>,
    step: usize,
}

impl Planner<'_> {
    fn fail(&self, code: ResultCode, message: impl Into<String>) -> StepError {
        StepError {
            step: self.step,
            code,
            message: message.into(),
        }
    }

    fn live_user(&self, email: &str) -> Option<&User> {
        self.snap
            .users
            .get(&email.to_lowercase())
            .filter(|u| u.status != UserStatus::Removed)
    }

    fn group(&self, name: &str) -> Result<&GroupState, StepError> {
        self.snap
            .groups
            .get(&name.to_lowercase())
            .ok_or_else(|| self.fail(ResultCode::GroupNotFound, format!("no group named {name:?}")))
    }

    fn add_member(&mut self, group: &str, user_id: &str) -> Result<(), StepError> {
        let state = self.group(group)?;
        if state.members.contains(user_id) {
            return Ok(());
        }
        if let Some(quota) = state.group.license_quota {
            if state.member_count >= quota {
                return Err(self.fail(
                    ResultCode::GroupQuotaExceeded,
                    format!("{group:?} has no licence left (quota {quota})"),
                ));
            }
        }
        let name = state.group.name.clone();
        if let Some(s) = self.snap.groups.get_mut(&group.to_lowercase()) {
            s.members.insert(user_id.to_owned());
            s.member_count += 1;
        }
        self.changes.push(Change::AddMember {
            group: name,
            user_id: user_id.to_owned(),
        });
        Ok(())
    }

    fn remove_member(&mut self, group: &str, user_id: &str) -> Result<(), StepError> {
        let name = self.group(group)?.group.name.clone();
        let removed = self.snap.groups.get_mut(&group.to_lowercase()).is_some_and(|s| {
            let was = s.members.remove(user_id);
            if was {
                s.member_count -= 1;
            }
            was
        });
        if removed {
            self.changes.push(Change::RemoveMember {
                group: name,
                user_id: user_id.to_owned(),
            });
        }
        Ok(())
    }

    fn user_entry(&mut self, email: &str, steps: &[Step]) -> Result<(), StepError> {
        for (i, step) in steps.iter().enumerate() {
            self.step = i;
            match step {
                Step::Invalid { code, message } => return Err(self.fail(*code, message.clone())),
                Step::CreateUser(new) => self.create_user(email, new)?,
                Step::Update(update) => self.update_user_step(email, update)?,
                Step::AddGroups(groups) => {
                    let u = self.existing(email)?;
                    for g in groups {
                        self.add_member(g, &u.user_id)?;
                    }
                }
                Step::RemoveGroups(which) => self.remove_groups(email, which)?,
                Step::RemoveFromOrg { delete_account } => self.remove_from_org(email, *delete_account)?,
                other => {
                    return Err(self.fail(
                        ResultCode::CommandUnknown,
                        format!("{other:?} applies to user groups, not users"),
                    ))
                }
            }
        }
        Ok(())
    }

    /// Creates `email`'s user, or (as the step's option says) refuses, ignores or updates an
    /// existing one.
    fn create_user(&mut self, email: &str, new: &NewUser) -> Result<(), StepError> {
        let NewUser {
            kind,
            email: new_email,
            option,
            first_name,
            last_name,
            country,
            invite: _,
        } = new;
        if !new_email.eq_ignore_ascii_case(email) {
            return Err(self.fail(
                ResultCode::UserEmailMismatch,
                format!("the step creates {new_email:?} in an entry for {email:?}"),
            ));
        }
        crate::people::check_email(new_email)
            .map_err(|e| self.fail(ResultCode::UserInvalidEmail, e.to_string()))?;
        let country = normalise_country(country.as_deref(), *kind)
            .map_err(|m| self.fail(ResultCode::UserInvalidCountry, m))?;
        if let Some(existing) = self.live_user(email).cloned() {
            match option {
                IfExists::Error => {
                    return Err(self.fail(ResultCode::UserAlreadyExists, format!("{email} already exists")))
                }
                IfExists::Ignore => return Ok(()),
                IfExists::Update => {
                    let mut u = existing;
                    if let Some(f) = first_name {
                        u.first_name = f.clone();
                    }
                    if let Some(l) = last_name {
                        u.last_name = l.clone();
                    }
                    if country.is_some() {
                        u.country = country;
                    }
                    self.update_user(u, false);
                    return Ok(());
                }
            }
        }
        // Someone removed from the organisation comes back as the same identity
        // (emails are unique in an organisation), active again with no groups.
        if let Some(removed) = self.snap.users.get(&email.to_lowercase()).cloned() {
            self.snap.reactivated.insert(removed.user_id.clone());
            let mut u = removed;
            u.status = UserStatus::Active;
            u.identity_type = *kind;
            u.first_name = first_name.clone().unwrap_or_default();
            u.last_name = last_name.clone().unwrap_or_default();
            u.country = country;
            self.update_user(u, false);
            return Ok(());
        }
        let mut u = User::new(
            &self.snap.org_id,
            new_email,
            first_name.as_deref().unwrap_or_default(),
            last_name.as_deref().unwrap_or_default(),
            self.now,
        );
        u.identity_type = *kind;
        u.country = country;
        self.snap.users.insert(email.to_lowercase(), u.clone());
        self.changes.push(Change::CreateUser(u));
        Ok(())
    }

    fn update_user_step(&mut self, email: &str, update: &UserUpdate) -> Result<(), StepError> {
        let UserUpdate {
            email: new_email,
            username,
            first_name,
            last_name,
            country,
        } = update;
        let mut u = self.existing(email)?;
        if let Some(n) = username.as_deref().filter(|n| !n.eq_ignore_ascii_case(&u.email)) {
            return Err(self.fail(
                ResultCode::UsernameNotSupported,
                format!("usernames are emails here; {n:?} is not {}", u.email),
            ));
        }
        if let Some(e) = new_email {
            crate::people::check_email(e)
                .map_err(|e| self.fail(ResultCode::UserInvalidEmail, e.to_string()))?;
            if !e.eq_ignore_ascii_case(&u.email) && self.live_user(e).is_some() {
                return Err(self.fail(
                    ResultCode::UserAlreadyExists,
                    format!("{e} is another user's email"),
                ));
            }
            u.email = e.clone();
        }
        if let Some(f) = first_name {
            u.first_name = f.clone();
        }
        if let Some(l) = last_name {
            u.last_name = l.clone();
        }
        if let Some(c) = country {
            u.country = normalise_country(Some(c), u.identity_type)
                .map_err(|m| self.fail(ResultCode::UserInvalidCountry, m))?;
        }
        self.update_user(u, false);
        Ok(())
    }

    fn remove_groups(&mut self, email: &str, which: &Groups) -> Result<(), StepError> {
        let u = self.existing(email)?;
        let names: Vec<String> = match which {
            Groups::Named(names) => names.clone(),
            Groups::All => self
                .snap
                .groups
                .values()
                .filter(|s| s.members.contains(&u.user_id))
                .map(|s| s.group.name.clone())
                .collect(),
        };
        for g in names {
            self.remove_member(&g, &u.user_id)?;
        }
        Ok(())
    }

    fn remove_from_org(&mut self, email: &str, delete_account: bool) -> Result<(), StepError> {
        let mut u = self.existing(email)?;
        let groups: Vec<String> = self
            .snap
            .groups
            .values()
            .filter(|s| s.members.contains(&u.user_id))
            .map(|s| s.group.name.clone())
            .collect();
        for g in groups {
            self.remove_member(&g, &u.user_id)?;
        }
        u.status = UserStatus::Removed;
        u.sessions_valid_after = self.now;
        if delete_account {
            // The account's secrets go with it; the row stays so its id is never
            // reused and the audit log keeps meaning.
            u.password_hash = None;
            u.totp_sealed = None;
            u.recovery_codes.clear();
        }
        self.update_user(u, true);
        Ok(())
    }

    fn existing(&self, email: &str) -> Result<User, StepError> {
        self.live_user(email)
            .cloned()
            .ok_or_else(|| self.fail(ResultCode::UserNonexistent, format!("no user {email}")))
    }

    fn update_user(&mut self, mut u: User, end_sessions: bool) {
        u.updated_at = self.now;
        let key = self
            .snap
            .users
            .iter()
            .find(|(_, v)| v.user_id == u.user_id)
            .map(|(k, _)| k.clone());
        if let Some(k) = key {
            self.snap.users.remove(&k);
        }
        self.snap.users.insert(u.email.to_lowercase(), u.clone());
        self.changes.push(Change::UpdateUser {
            user: u,
            end_sessions,
        });
    }

    fn user_group(&self, name: &str) -> Result<&GroupState, StepError> {
        let g = self.group(name).map_err(|_| {
            self.fail(
                ResultCode::UserGroupNotFound,
                format!("no user group named {name:?}"),
            )
        })?;
        if g.group.kind != GroupKind::UserGroup {
            return Err(self.fail(
                ResultCode::UserGroupNotAUserGroup,
                format!("{name:?} is a product profile, not a user group"),
            ));
        }
        Ok(g)
    }

    fn group_entry(&mut self, name: &str, steps: &[Step]) -> Result<(), StepError> {
        let mut current = name.to_owned();
        for (i, step) in steps.iter().enumerate() {
            self.step = i;
            match step {
                Step::Invalid { code, message } => return Err(self.fail(*code, message.clone())),
                Step::CreateUserGroup { option, description } => {
                    check_group_name(&current).map_err(|m| self.fail(ResultCode::UserGroupInvalidName, m))?;
                    if let Some(existing) = self.snap.groups.get(&current.to_lowercase()) {
                        if existing.group.kind != GroupKind::UserGroup {
                            return Err(self.fail(
                                ResultCode::UserGroupAlreadyExists,
                                format!("{current:?} is a product profile"),
                            ));
                        }
                        match option {
                            IfExists::Error => {
                                return Err(self.fail(
                                    ResultCode::UserGroupAlreadyExists,
                                    format!("{current:?} already exists"),
                                ))
                            }
                            IfExists::Ignore => continue,
                            IfExists::Update => {
                                let mut g = existing.group.clone();
                                if let Some(d) = description {
                                    g.description = d.clone();
                                }
                                self.update_group(&current, g);
                                continue;
                            }
                        }
                    }
                    let g = Group::user_group(
                        &self.snap.org_id,
                        &current,
                        description.as_deref().unwrap_or_default(),
                        self.now,
                    );
                    self.snap.groups.insert(
                        current.to_lowercase(),
                        GroupState {
                            group: g.clone(),
                            member_count: 0,
                            members: BTreeSet::new(),
                            profiles: BTreeSet::new(),
                        },
                    );
                    self.changes.push(Change::CreateGroup(g));
                }
                Step::UpdateUserGroup {
                    name: new_name,
                    description,
                } => {
                    let mut g = self.user_group(&current)?.group.clone();
                    if let Some(n) = new_name {
                        check_group_name(n).map_err(|m| self.fail(ResultCode::UserGroupInvalidName, m))?;
                        let taken = self.snap.groups.contains_key(&n.to_lowercase())
                            && !n.eq_ignore_ascii_case(&current);
                        if taken {
                            return Err(self.fail(
                                ResultCode::UserGroupAlreadyExists,
                                format!("{n:?} is another group's name"),
                            ));
                        }
                        g.name = n.clone();
                    }
                    if let Some(d) = description {
                        g.description = d.clone();
                    }
                    let old = current.clone();
                    current = g.name.clone();
                    self.update_group(&old, g);
                }
                Step::DeleteUserGroup => {
                    let g = self.user_group(&current)?.group.name.clone();
                    self.snap.groups.remove(&current.to_lowercase());
                    self.changes.push(Change::DeleteGroup { name: g });
                }
                Step::AddUsers(users) | Step::RemoveUsers(users) => {
                    let group = self.user_group(&current)?.group.name.clone();
                    let add = matches!(step, Step::AddUsers(_));
                    for email in users {
                        let u = self.existing(email)?;
                        if add {
                            self.add_member(&group, &u.user_id)?;
                        } else {
                            self.remove_member(&group, &u.user_id)?;
                        }
                    }
                }
                Step::AddProfiles(profiles) | Step::RemoveProfiles(profiles) => {
                    let group = self.user_group(&current)?.group.name.clone();
                    let add = matches!(step, Step::AddProfiles(_));
                    for p in profiles {
                        let profile = self.group(p)?;
                        if profile.group.kind != GroupKind::ProductProfile {
                            return Err(self.fail(
                                ResultCode::GroupNotAProductProfile,
                                format!("{p:?} is not a product profile"),
                            ));
                        }
                        let profile_name = profile.group.name.clone();
                        let state =
                            self.snap
                                .groups
                                .get_mut(&group.to_lowercase())
                                .ok_or_else(|| StepError {
                                    step: i,
                                    code: ResultCode::UserGroupNotFound,
                                    message: format!("no user group named {group:?}"),
                                })?;
                        let changed = if add {
                            state.profiles.insert(profile_name.to_lowercase())
                        } else {
                            state.profiles.remove(&profile_name.to_lowercase())
                        };
                        if changed {
                            self.changes.push(if add {
                                Change::Link {
                                    user_group: group.clone(),
                                    profile: profile_name,
                                }
                            } else {
                                Change::Unlink {
                                    user_group: group.clone(),
                                    profile: profile_name,
                                }
                            });
                        }
                    }
                }
                other => {
                    return Err(self.fail(
                        ResultCode::CommandUnknown,
                        format!("{other:?} applies to users, not user groups"),
                    ))
                }
            }
        }
        Ok(())
    }

    fn update_group(&mut self, old_name: &str, mut g: Group) {
        g.updated_at = self.now;
        if let Some(mut state) = self.snap.groups.remove(&old_name.to_lowercase()) {
            state.group = g.clone();
            self.snap.groups.insert(g.name.to_lowercase(), state);
        }
        // Links held by other user groups follow a renamed profile (none: only user groups are
        // renamed here), and members stay.
        self.changes.push(Change::UpdateGroup {
            name: old_name.to_owned(),
            group: g,
        });
    }
}

/// Plans one entry against `snap`. On success `snap` reflects the entry's changes; on failure it
/// is left as it was.
pub fn plan_entry(snap: &mut Snapshot, entry: &Entry, now: Now) -> Planned {
    let mut work = snap.clone();
    let mut planner = Planner {
        snap: &mut work,
        now,
        changes: Vec::new(),
        step: 0,
    };
    let outcome = match &entry.target {
        Target::User(email) => planner.user_entry(email, &entry.steps),
        Target::UserGroup(name) => planner.group_entry(name, &entry.steps),
    };
    outcome?;
    let changes = std::mem::take(&mut planner.changes);
    *snap = work;
    Ok(changes)
}

/// A country code as people's records take it; required for Federated IDs (the vendor's rule).
fn normalise_country(country: Option<&str>, kind: IdentityType) -> Result<Option<String>, String> {
    match crate::people::country_code(country).map_err(|e| e.to_string())? {
        None if kind == IdentityType::FederatedId => Err("a Federated ID needs a country".into()),
        other => Ok(other),
    }
}

/// What one entry did, for the response.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EntryOutcome {
    Done,
    Failed(StepError),
}

/// The action response body (`result`, counts, errors with integer `index` and `step`).
pub fn response(entries: &[Entry], outcomes: &[EntryOutcome], test_only: bool) -> Value {
    let ok = outcomes.iter().filter(|o| **o == EntryOutcome::Done).count();
    let failed = outcomes.len() - ok;
    let errors: Vec<Value> = entries
        .iter()
        .zip(outcomes)
        .enumerate()
        .filter_map(|(index, (entry, outcome))| match outcome {
            EntryOutcome::Done => None,
            EntryOutcome::Failed(e) => {
                let mut err = json!({
                    "index": index,
                    "step": e.step,
                    "errorCode": e.code.as_str(),
                    "message": e.message,
                });
                if let Some(r) = &entry.request_id {
                    err["requestID"] = json!(r);
                }
                match &entry.target {
                    Target::User(u) => err["user"] = json!(u),
                    Target::UserGroup(g) => err["usergroup"] = json!(g),
                }
                Some(err)
            }
        })
        .collect();
    let result = match (ok, failed) {
        (_, 0) => "success",
        (0, _) => "error",
        _ => "partial",
    };
    let mut body = json!({
        "result": result,
        "completed": if test_only { 0 } else { ok },
        "notCompleted": failed,
        "completedInTestMode": if test_only { ok } else { 0 },
    });
    if !errors.is_empty() {
        body["errors"] = Value::Array(errors);
    }
    body
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snap() -> Snapshot {
        let now = Now::from_millis(1);
        let mut s = Snapshot {
            org_id: "ORG@AdobeOrg".into(),
            ..Snapshot::default()
        };
        let mut profile = Group::user_group("ORG@AdobeOrg", "Campaign Users", "", now);
        profile.kind = GroupKind::ProductProfile;
        profile.license_quota = Some(1);
        s.groups.insert(
            "campaign users".into(),
            GroupState {
                group: profile,
                member_count: 0,
                members: BTreeSet::new(),
                profiles: BTreeSet::new(),
            },
        );
        s
    }

    fn entry(body: &str) -> Entry {
        parse_request(body.as_bytes()).unwrap().remove(0)
    }

    #[test]
    fn an_entry_applies_whole_or_not_at_all() {
        let mut s = snap();
        let ok = entry(
            r#"[{"user":"a@example.com","do":[{"addAdobeID":{"email":"a@example.com","option":"ignoreIfAlreadyExists"}},{"add":{"group":["Campaign Users"]}}]}]"#,
        );
        let changes = plan_entry(&mut s, &ok, Now::from_millis(2)).unwrap();
        assert_eq!(changes.len(), 2);
        let before = s.clone();
        let over_quota = entry(
            r#"[{"user":"b@example.com","do":[{"createEnterpriseID":{"email":"b@example.com"}},{"add":{"group":["campaign users"]}}]}]"#,
        );
        let e = plan_entry(&mut s, &over_quota, Now::from_millis(3)).unwrap_err();
        assert_eq!((e.step, e.code), (1, ResultCode::GroupQuotaExceeded));
        assert_eq!(s, before, "the created user is not kept");
    }

    #[test]
    fn someone_removed_comes_back_as_the_same_identity() {
        let mut s = snap();
        let add = entry(
            r#"[{"user":"a@example.com","do":[{"createEnterpriseID":{"email":"a@example.com"}},{"removeFromOrg":{}}]}]"#,
        );
        plan_entry(&mut s, &add, Now::from_millis(2)).unwrap();
        let id = s.users["a@example.com"].user_id.clone();
        let again = entry(
            r#"[{"user":"a@example.com","do":[{"createEnterpriseID":{"email":"a@example.com","option":"ignoreIfAlreadyExists"}}]}]"#,
        );
        let changes = plan_entry(&mut s, &again, Now::from_millis(3)).unwrap();
        assert!(
            matches!(&changes[..], [Change::UpdateUser { user, .. }] if user.user_id == id && user.status == UserStatus::Active)
        );
    }

    #[test]
    fn request_limits_and_unknown_steps() {
        let eleven = format!("[{}]", [r#"{"user":"a@example.com","do":[]}"#; 11].join(","));
        assert_eq!(
            parse_request(eleven.as_bytes()).unwrap_err().code,
            ResultCode::RequestTooManyEntries
        );
        let steps = [r#"{"removeFromOrg":{}}"#; 11].join(",");
        let long = format!(r#"[{{"user":"a@example.com","do":[{steps}]}}]"#);
        assert_eq!(
            parse_request(long.as_bytes()).unwrap_err().code,
            ResultCode::RequestTooManySteps
        );
        assert!(parse_request(b"{").is_err() && parse_request(b"{}").is_err());
        let mut s = snap();
        let e = plan_entry(
            &mut s,
            &entry(r#"[{"usergroup":"G","do":[{"createUserGroup":{}},{"fly":{}}]}]"#),
            Now::from_millis(1),
        )
        .unwrap_err();
        assert_eq!((e.step, e.code), (1, ResultCode::CommandUnknown));
        assert!(!s.groups.contains_key("g"));
    }
}
