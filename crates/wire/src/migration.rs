//! The instance's migration API (`/nl/migration/v1`): what the migration engine reads from and
//! asks of an instance. Times are milliseconds since the Unix epoch.

use serde::{Deserialize, Serialize};

/// The builds that carry the end-user phase (the vendor's end-user migration), as an instance
/// names them in its facts.
pub const PEOPLE_BUILDS: &str = "7.4.1 and later 7.x, 8.5.2 and later";

/// The path prefix of the API on an instance.
pub const BASE_PATH: &str = "/nl/migration/v1";

/// `GET /nl/migration/v1/instance`: the instance as a whole.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstanceFacts {
    pub name: String,
    /// `marketing` or `message_center`.
    pub kind: String,
    pub build: String,
    /// The end-user phase is supported (people's operators moved to sign-in through the IMS).
    pub accepts_ims_signin: bool,
    pub accepts_bearer_tokens: bool,
    pub supports_restrictions: bool,
    /// Whether the build still lets native operators sign in (`allowed`, `until_switched_off`,
    /// `allow_list_only`).
    pub native_auth: String,
    /// Builds that carry each phase, for the refusal message.
    pub bearer_builds: String,
    pub restriction_builds: String,
    /// Builds that carry the end-user phase (empty from an instance that does not say).
    #[serde(default)]
    pub people_builds: String,
    pub restrictions: RestrictionFacts,
    /// The IMS configuration in effect, if any (no secret).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ims_account: Option<ImsAccountFacts>,
    pub groups: Vec<GroupFacts>,
    pub operator_count: i64,
    pub now: i64,
    /// `staging` or `production` (none declared: `production`).
    #[serde(default = "production")]
    pub environment: String,
    /// A production instance's staging twin, which finishes its migration first.
    #[serde(default)]
    pub staging_twin: Option<String>,
    /// When the migration was marked complete, by whom, and whether it was forced.
    #[serde(default)]
    pub migration_complete: Option<Completion>,
}

fn production() -> String {
    "production".into()
}

/// `PUT /nl/migration/v1/completion`, and what the instance keeps of it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Completion {
    #[serde(default)]
    pub at: i64,
    #[serde(default)]
    pub by: String,
    /// Finalised although its staging twin was not: the administrator's decision, recorded.
    pub forced: bool,
    #[serde(default)]
    pub note: String,
}

/// `PUT /nl/migration/v1/ims-account`: how people sign in to the instance through the IMS
/// (the vendor's IMS external account). What is left out takes the instance's defaults: the
/// callback at the instance's own address, the mask `campaign - <instance> - (.*)`, the
/// Campaign product context and the default scopes.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImsAccountRequest {
    pub ims_url: String,
    pub org_id: String,
    /// The instance's client at the IMS and its secret (sealed by the instance when stored).
    pub client_id: String,
    pub client_secret: String,
    #[serde(default)]
    pub callback_url: Option<String>,
    #[serde(default)]
    pub association_mask: Option<String>,
    #[serde(default)]
    pub product_context: Option<String>,
    #[serde(default)]
    pub scopes: Vec<String>,
}

impl std::fmt::Debug for ImsAccountRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ImsAccountRequest")
            .field("ims_url", &self.ims_url)
            .field("org_id", &self.org_id)
            .field("client_id", &self.client_id)
            .field("client_secret", &"[redacted]")
            .finish_non_exhaustive()
    }
}

/// `POST /nl/migration/v1/lockdown`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LockdownRequest {
    /// Replaces the allow-list (empty: the instance's stays).
    #[serde(default)]
    pub allow: Vec<String>,
}

/// `POST /nl/migration/v1/verify`: the lock-down probes, with a technical account's token for
/// the bearer probe.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct VerifyRequest {
    #[serde(default)]
    pub bearer_token: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProbeFacts {
    pub probe: String,
    pub expected: String,
    pub observed: String,
    pub passed: bool,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RestrictionFacts {
    /// Native operators can no longer be managed in the console.
    pub operator_management_restricted: bool,
    /// Native sign-in and API access refused outside the allow-list.
    pub native_api_disabled: bool,
    pub allow_list: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImsAccountFacts {
    pub ims_url: String,
    pub org_id: String,
    pub client_id: String,
    pub association_mask: String,
    pub product_context: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupFacts {
    pub name: String,
    pub label: String,
    pub rights: Vec<String>,
}

impl crate::association::NamedGroup for GroupFacts {
    fn name(&self) -> &str {
        &self.name
    }
    fn label(&self) -> &str {
        &self.label
    }
}

/// `GET /nl/migration/v1/operators?after=ID&limit=N`: operators in id order, with the evidence
/// of how each signs in and calls.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OperatorPage {
    pub operators: Vec<OperatorFacts>,
    /// Pass as `after` for the next page; absent on the last one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_after: Option<i64>,
}

/// Most operators one page holds.
pub const MAX_PAGE: u32 = 5_000;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OperatorFacts {
    pub id: i64,
    pub login: String,
    pub label: String,
    #[serde(default)]
    pub email: Option<String>,
    /// `native`, `ims` or `technical_account`.
    pub auth_type: String,
    pub disabled: bool,
    pub builtin: bool,
    pub groups: Vec<String>,
    /// Named rights held directly.
    pub rights: Vec<String>,
    #[serde(default)]
    pub ims_id: Option<String>,
    /// A fingerprint of the operator's native credential (a digest of its stored password
    /// hash, which it reveals nothing of), `None` without one: a rollback tells from it whether
    /// the password changed while the operator signed in through the IMS.
    #[serde(default)]
    pub credential: Option<String>,
    /// Sign-ins and calls, summed per action, path, source and client.
    pub usage: Vec<UsageFacts>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UsageFacts {
    /// `xtk:session#Logon`, `console#Logon`, `xtk:queryDef#ExecuteQuery`, ...
    pub action: String,
    /// `native`, `bearer` or `ims`.
    pub auth_path: String,
    pub source: String,
    pub client: String,
    pub outcome: String,
    pub count: i64,
    pub first_at: i64,
    pub last_at: i64,
}

/// `POST /nl/migration/v1/emails[?dry_run=true]`: give operators their emails, all checked
/// before any is written.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EmailRequest {
    pub emails: Vec<EmailAssignment>,
}

/// Most assignments one request carries.
pub const MAX_EMAILS: usize = 1_000;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EmailAssignment {
    pub login: String,
    pub email: String,
}

/// The answer: what changed (or would, in a dry run), what already had that email, and the
/// problems that stopped everything (HTTP 422 then; nothing is written).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EmailOutcome {
    pub dry_run: bool,
    pub changed: Vec<EmailChange>,
    pub unchanged: Vec<String>,
    pub problems: Vec<RowProblem>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EmailChange {
    pub login: String,
    #[serde(default)]
    pub before: Option<String>,
    pub after: String,
}

/// Why one row of a request cannot be carried out; `login` names the operator (or the group)
/// it concerns.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RowProblem {
    pub login: String,
    pub problem: String,
}

/// `POST /nl/migration/v1/switch`: operators moved to IMS sign-in (linked to their identity,
/// native sessions ended) or, until the instance is locked down, back to native sign-in.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SwitchRequest {
    /// `ims` or `native`.
    pub to: String,
    pub operators: Vec<SwitchItem>,
}

/// Most operators one switch request carries.
pub const MAX_SWITCH: usize = 1_000;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SwitchItem {
    pub login: String,
    /// The identity to link (to `ims`); the one expected to be linked now (to `native`).
    #[serde(default)]
    pub ims_id: Option<String>,
    /// The operator's state digest when the change was planned: any other state is drift.
    pub state: String,
    /// Going back to native sign-in: the stored password is cleared too, so that an
    /// administrator sets a new one (its credential changed while it signed in through the IMS).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub reset_password: bool,
    /// Going back to native sign-in: the groups and direct named rights it held before it
    /// moved, which it holds again. What its product profiles gave it meanwhile (an IMS sign-in
    /// writes them onto the operator) would otherwise stay with it for good.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restore: Option<Access>,
}

/// An operator's groups (internal names) and direct named rights.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Access {
    pub groups: Vec<String>,
    pub rights: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SwitchOutcome {
    pub login: String,
    /// `switched`, `already` (nothing to do), `drifted`, `conflict` (the identity is another
    /// operator's), `missing`, `refused`.
    pub outcome: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub detail: String,
    /// The operator's state digest now.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub state: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SwitchResponse {
    pub operators: Vec<SwitchOutcome>,
}

/// The digest of what the migration compares of an operator (type, link, email, disabled,
/// groups, direct rights): equal digests, same operator state.
pub fn state_digest(op: &OperatorFacts) -> String {
    let mut groups = op.groups.clone();
    groups.sort();
    let mut rights = op.rights.clone();
    rights.sort();
    let canonical = serde_json::json!([op.auth_type, op.ims_id, op.email, op.disabled, groups, rights]);
    fnv_hex(canonical.to_string().as_bytes())
}

/// FNV-1a, 64 bits: a change detector, not a security boundary (both sides compute it from
/// data the caller may read anyway).
fn fnv_hex(bytes: &[u8]) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    format!("{h:016x}")
}

/// `POST /nl/migration/v1/groups[?dry_run=true]`: operator groups that carry named rights
/// operators hold directly, so that product profiles can give them back after the move.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupRequest {
    pub groups: Vec<NewGroup>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewGroup {
    pub name: String,
    pub label: String,
    pub rights: Vec<String>,
    /// Operators added to the group (their other groups stay).
    pub members: Vec<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupOutcome {
    pub dry_run: bool,
    pub created: Vec<String>,
    pub present: Vec<String>,
    /// `(login, group)` memberships added.
    pub added: Vec<(String, String)>,
    /// Problems that stopped everything (HTTP 422 then; nothing is written).
    pub problems: Vec<RowProblem>,
}

/// `POST /nl/migration/v1/copy-access`: a technical account operator given the direct named
/// rights and folder rights of the native operator it replaces.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CopyAccessRequest {
    pub from: String,
    pub to: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CopyAccessOutcome {
    pub rights_added: u64,
    pub folder_rights_added: u64,
}

/// `PUT /nl/migration/v1/notice`: what the instance's console tells everyone during a
/// migration window (an empty message removes it).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Notice {
    pub message: String,
    /// Shown until then (milliseconds since the epoch); none: until removed.
    #[serde(default)]
    pub until: Option<i64>,
}

/// `PUT /nl/migration/v1/journal`: the engine's record as it last reported it, for the
/// console's migration page.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct JournalReport {
    pub at: i64,
    pub plans: Vec<ReportedPlan>,
    /// How the moved people are coming in, when the engine asked the IMS (`status`, `remind`);
    /// absent, the instance keeps what it was told last.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub people: Option<PeopleReport>,
}

/// The moved people's progress in total, and who has not come in.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeopleReport {
    pub moved: usize,
    pub invited: usize,
    pub accepted: usize,
    pub expired: usize,
    pub signed_in: usize,
    pub after_days: i64,
    /// Logins of people not in `after_days` after their invitation (at most
    /// [`MAX_REPORTED_WAITING`]; `waiting_count` says how many in all).
    pub waiting: Vec<String>,
    pub waiting_count: usize,
}

/// Names of people waiting a report carries at most: the engine's `status` lists them all.
pub const MAX_REPORTED_WAITING: usize = 200;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReportedPlan {
    pub plan_id: String,
    pub phase: String,
    /// `done`, `in progress`, `blocked`.
    pub state: String,
    pub done: usize,
    pub started: usize,
    pub failed: Vec<(String, String)>,
}
