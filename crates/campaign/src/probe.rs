//! Verification probes of the lock-down: each effect of the restrictions is tried through the
//! instance's own code paths (native `Logon`, session checks, bearer tokens, the operator write
//! path) against its real data, with every write held in memory by [`ProbeStore`], so a probe
//! that finds a hole cannot change anything either.

use async_trait::async_trait;
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, PoisonError};

use ims_core::audit::AuditEvent;
use ims_core::audit::{AuditQuery, AuditStore};
use ims_core::error::StoreError;
use ims_core::secret::{self, Secret};
use ims_core::Now;
use ims_core::StoreResult;

use crate::config::ImsSwitches;
use crate::model::{AuthPath, AuthType, Operator, OperatorGroup, Recipient, Session, UsageEvent};
use crate::operators::{OperatorEdit, OperatorKey, WriteMode};
use crate::query::Sql;
use crate::restrictions::RESTRICTED_CODE;
use crate::service::{Caller, Instance, InstanceInfo};
use crate::store::*;
use crate::usage::UsageSummary;
use ims_wire::operators::allow_listed;

/// Writes a probe made, kept here and dropped with it.
#[derive(Default)]
struct Overlay {
    operators: HashMap<i64, Operator>,
    deleted: HashSet<i64>,
    sessions: HashMap<String, Session>,
    next_id: i64,
}

/// An instance store that reads through to the real one and keeps every write in memory.
pub struct ProbeStore {
    inner: Arc<dyn InstanceStore>,
    overlay: Mutex<Overlay>,
}

impl ProbeStore {
    pub fn new(inner: Arc<dyn InstanceStore>) -> Self {
        ProbeStore {
            inner,
            overlay: Mutex::new(Overlay::default()),
        }
    }

    fn overlay(&self) -> std::sync::MutexGuard<'_, Overlay> {
        self.overlay.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The stored operator as the probe's writes left it.
    fn seen(&self, found: Option<Operator>) -> Option<Operator> {
        let o = self.overlay();
        let op = found?;
        if o.deleted.contains(&op.id) {
            return None;
        }
        Some(o.operators.get(&op.id).cloned().unwrap_or(op))
    }

    fn own(&self, pick: impl Fn(&Operator) -> bool) -> Option<Operator> {
        let o = self.overlay();
        o.operators
            .values()
            .find(|op| !o.deleted.contains(&op.id) && pick(op))
            .cloned()
    }

    fn refuse<T>(what: &str) -> StoreResult<T> {
        Err(StoreError::Backend(format!(
            "{what}: a verification probe never writes"
        )))
    }
}

#[async_trait]
impl OperatorStore for ProbeStore {
    async fn operator_by_login(&self, login: &str) -> StoreResult<Option<Operator>> {
        if let Some(op) = self.own(|op| op.login == login) {
            return Ok(Some(op));
        }
        let found = self.seen(self.inner.operator_by_login(login).await?);
        // Renamed by the probe: no longer found under the old name.
        Ok(found.filter(|op| op.login == login))
    }
    async fn operator(&self, id: i64) -> StoreResult<Option<Operator>> {
        if let Some(op) = self.own(|op| op.id == id) {
            return Ok(Some(op));
        }
        Ok(self.seen(self.inner.operator(id).await?))
    }
    async fn operator_by_ims_id(&self, ims_id: &str) -> StoreResult<Option<Operator>> {
        if let Some(op) = self.own(|op| op.ims_id.as_deref() == Some(ims_id)) {
            return Ok(Some(op));
        }
        Ok(self.seen(self.inner.operator_by_ims_id(ims_id).await?))
    }
    async fn operators_by_email(&self, email: &str) -> StoreResult<Vec<Operator>> {
        let key = ims_wire::email::email_key(email);
        let stored = self.inner.operators_by_email(email).await?;
        let o = self.overlay();
        // The probe's own versions (created or changed) replace the stored ones.
        let mut out: Vec<Operator> = stored
            .into_iter()
            .filter(|op| !o.deleted.contains(&op.id) && !o.operators.contains_key(&op.id))
            .collect();
        out.extend(
            o.operators
                .values()
                .filter(|op| {
                    !o.deleted.contains(&op.id)
                        && op.email.as_deref().map(ims_wire::email::email_key) == Some(key.clone())
                })
                .cloned(),
        );
        Ok(out)
    }
    async fn create_operator(&self, op: &Operator, _audit: &AuditEvent) -> StoreResult<i64> {
        if self.operator_by_login(&op.login).await?.is_some() {
            return Err(StoreError::Conflict(format!("{} exists", op.login)));
        }
        let mut o = self.overlay();
        // Negative ids never meet a stored operator's.
        o.next_id -= 1;
        let id = o.next_id;
        o.operators.insert(id, Operator { id, ..op.clone() });
        Ok(id)
    }
    async fn update_operator(
        &self,
        op: &Operator,
        end_sessions: bool,
        _audit: &AuditEvent,
    ) -> StoreResult<()> {
        let mut o = self.overlay();
        if end_sessions {
            o.sessions.retain(|_, s| s.operator_id != op.id);
        }
        o.operators.insert(op.id, op.clone());
        Ok(())
    }
    async fn set_operator_access(
        &self,
        _id: i64,
        _groups: &[String],
        _rights: &[String],
        _link: Option<&str>,
        _end_ims_sessions: bool,
        _audit: &AuditEvent,
    ) -> StoreResult<Operator> {
        Self::refuse("synchronising an operator from product profiles")
    }
    async fn switch_operator(&self, _step: &SwitchStep) -> StoreResult<bool> {
        Self::refuse("switching an operator's authentication type")
    }
    async fn copy_operator_access(
        &self,
        _from: i64,
        _to: i64,
        _audit: &AuditEvent,
    ) -> StoreResult<(u64, u64)> {
        Self::refuse("copying an operator's rights")
    }
    async fn delete_operator(&self, id: i64, _audit: &AuditEvent) -> StoreResult<()> {
        let mut o = self.overlay();
        o.sessions.retain(|_, s| s.operator_id != id);
        o.deleted.insert(id);
        Ok(())
    }
    async fn operators_page(
        &self,
        search: Option<&str>,
        offset: u32,
        limit: u32,
    ) -> StoreResult<(Vec<Operator>, i64)> {
        self.inner.operators_page(search, offset, limit).await
    }
    async fn operators_after(&self, after: i64, limit: u32) -> StoreResult<Vec<Operator>> {
        self.inner.operators_after(after, limit).await
    }
    async fn operator_count(&self) -> StoreResult<i64> {
        self.inner.operator_count().await
    }
    async fn groups(&self) -> StoreResult<Vec<OperatorGroup>> {
        self.inner.groups().await
    }
    async fn ensure_group(&self, _name: &str, _label: &str, _rights: &[&str]) -> StoreResult<()> {
        Self::refuse("ensure_group")
    }
    async fn create_group(&self, _group: &OperatorGroup, _audit: &AuditEvent) -> StoreResult<bool> {
        Self::refuse("create_group")
    }
}

#[async_trait]
impl SessionStore for ProbeStore {
    async fn insert_session(&self, session: &Session) -> StoreResult<()> {
        self.overlay()
            .sessions
            .insert(session.session_digest.clone(), session.clone());
        Ok(())
    }
    async fn session(&self, digest: &str) -> StoreResult<Option<Session>> {
        Ok(self.overlay().sessions.get(digest).cloned())
    }
    async fn delete_session(&self, digest: &str) -> StoreResult<bool> {
        Ok(self.overlay().sessions.remove(digest).is_some())
    }
    async fn delete_operator_sessions(&self, _operator_id: i64, _path: AuthPath) -> StoreResult<u64> {
        Self::refuse("ending an operator's sessions")
    }
    async fn purge_sessions(&self, _now: Now) -> StoreResult<u64> {
        Ok(0)
    }
}

/// A probe's sign-in counts nowhere: it must neither lock nor unlock anyone.
#[async_trait]
impl ims_core::lockout::ThrottleStore for ProbeStore {
    async fn admit_attempt(
        &self,
        _scope: &str,
        _key: &str,
        _now: Now,
        _reset_secs: i64,
        _lock_ms: &[i64],
        _attempt_id: &str,
    ) -> StoreResult<(bool, u32)> {
        Ok((true, 0))
    }
    async fn failures(&self, _scope: &str, _key: &str) -> StoreResult<Option<(u32, Now, Now)>> {
        Ok(None)
    }
    async fn clear_failures(&self, _scope: &str, _key: &str) -> StoreResult<()> {
        Ok(())
    }
    async fn forgive_attempt(&self, _scope: &str, _key: &str, _free: u32) -> StoreResult<()> {
        Ok(())
    }
}

#[async_trait]
impl UsageStore for ProbeStore {
    /// Probes are not usage: nothing is recorded.
    async fn record_usage(&self, _event: &UsageEvent) -> StoreResult<()> {
        Ok(())
    }
    async fn usage(&self, login: Option<&str>, limit: u32) -> StoreResult<Vec<UsageEvent>> {
        self.inner.usage(login, limit).await
    }
    async fn add_usage(&self, _rows: &[UsageSummary]) -> StoreResult<()> {
        Ok(())
    }
    async fn usage_summary(&self, login: Option<&str>, limit: u32) -> StoreResult<Vec<UsageSummary>> {
        self.inner.usage_summary(login, limit).await
    }
    async fn usage_of_operators(&self, first: i64, last: i64) -> StoreResult<Vec<UsageSummary>> {
        self.inner.usage_of_operators(first, last).await
    }
}

#[async_trait]
impl QueryStore for ProbeStore {
    async fn select(
        &self,
        table: &'static str,
        columns: &[&'static str],
        filter: Option<&Sql>,
        order: &[(&'static str, bool)],
        limit: Option<u32>,
        offset: u32,
    ) -> StoreResult<Vec<Vec<Option<String>>>> {
        self.inner
            .select(table, columns, filter, order, limit, offset)
            .await
    }
    async fn count(&self, table: &'static str, filter: Option<&Sql>) -> StoreResult<i64> {
        self.inner.count(table, filter).await
    }
}

#[async_trait]
impl RecipientStore for ProbeStore {
    async fn ensure_folder(&self, _name: &str, _label: &str) -> StoreResult<i64> {
        Self::refuse("ensure_folder")
    }
    async fn grant_folder_to_group(
        &self,
        _f: i64,
        _g: &str,
        _r: bool,
        _w: bool,
        _a: &AuditEvent,
    ) -> StoreResult<()> {
        Self::refuse("grant_folder_to_group")
    }
    async fn readable_folders(&self, operator_id: i64) -> StoreResult<Vec<i64>> {
        self.inner.readable_folders(operator_id).await
    }
    async fn create_recipient(&self, _r: &Recipient) -> StoreResult<i64> {
        Self::refuse("create_recipient")
    }
    async fn writable_folders(&self, operator_id: i64) -> StoreResult<Vec<i64>> {
        self.inner.writable_folders(operator_id).await
    }
    async fn folder_by_name(&self, name: &str) -> StoreResult<Option<i64>> {
        self.inner.folder_by_name(name).await
    }
    async fn recipient_by(&self, key: RecipientKey, value: &str) -> StoreResult<Option<Recipient>> {
        self.inner.recipient_by(key, value).await
    }
    async fn update_recipient(&self, _r: &Recipient) -> StoreResult<()> {
        Self::refuse("update_recipient")
    }
    async fn delete_recipient(&self, _id: i64) -> StoreResult<()> {
        Self::refuse("delete_recipient")
    }
}

#[async_trait]
impl SettingsStore for ProbeStore {
    async fn setting(&self, key: &str) -> StoreResult<Option<String>> {
        self.inner.setting(key).await
    }
    async fn set_setting(&self, _key: &str, _value: &str, _audit: &AuditEvent) -> StoreResult<()> {
        Self::refuse("set_setting")
    }
}

#[async_trait]
impl EventStore for ProbeStore {
    async fn push_event(
        &self,
        _t: &str,
        _e: Option<&str>,
        _c: &str,
        _by: i64,
        _now: Now,
    ) -> StoreResult<i64> {
        Self::refuse("push_event")
    }
    async fn pending_events(&self) -> StoreResult<i64> {
        self.inner.pending_events().await
    }
}

#[async_trait]
impl AuditStore for ProbeStore {
    /// What a probe would have audited did not happen.
    async fn append_audit(&self, _event: &AuditEvent) -> StoreResult<()> {
        Ok(())
    }
    async fn audit(&self, query: &AuditQuery) -> StoreResult<Vec<AuditEvent>> {
        self.inner.audit(query).await
    }
}

/// One probe's outcome.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct ProbeResult {
    pub probe: String,
    pub expected: String,
    pub observed: String,
    pub passed: bool,
}

/// What the probes need besides the instance's data.
pub struct ProbeInput {
    pub info: InstanceInfo,
    pub switches: ImsSwitches,
    /// Checks bearer tokens as the instance does; `None` skips the bearer probe.
    pub bearer: Option<(Arc<crate::bearer::TrustedIssuer>, Secret)>,
}

/// "accepted", or "refused (CODE)".
fn outcome<T>(r: &Result<T, crate::fault::Fault>) -> String {
    match r {
        Ok(_) => "accepted".to_owned(),
        Err(f) => format!("refused ({})", f.code),
    }
}

/// A login for the probes' own native operator, unlikely to exist and never allow-listed.
const PROBE_LOGIN: &str = "ims-restrictions-probe";

/// Runs the probes over an instance's data. The probes drive a whole instance (sign-in,
/// sessions, operator changes) over a [`ProbeStore`], which reads through to every part of the
/// real store: this is the one holder of the whole store besides the process that opened it,
/// and all it can do with it is read.
pub struct Verifier {
    store: Arc<dyn InstanceStore>,
}

impl Verifier {
    pub(crate) fn new(store: Arc<dyn InstanceStore>) -> Self {
        Verifier { store }
    }

    /// Runs every probe (read only) with the restrictions `input` describes.
    pub async fn verify(&self, input: ProbeInput) -> Vec<ProbeResult> {
        verify(Arc::clone(&self.store), input).await
    }
}

/// Runs every probe against `store` (read only) with the restrictions `input` describes.
pub async fn verify(store: Arc<dyn InstanceStore>, input: ProbeInput) -> Vec<ProbeResult> {
    let probe_store = Arc::new(ProbeStore::new(store));
    let mut instance =
        Instance::new(Arc::<ProbeStore>::clone(&probe_store), input.info).with_switches(&input.switches);
    let bearer_token = match input.bearer {
        Some((issuer, token)) => {
            instance = instance.with_bearer(issuer);
            Some(token)
        }
        None => None,
    };
    let now = Now::system();
    let password = secret::generate("probe-");
    let hash = match ims_core::password::hash(&password).await {
        Ok(h) => h,
        Err(e) => {
            return vec![ProbeResult {
                probe: "set up".into(),
                expected: "a probe password".into(),
                observed: e.to_string(),
                passed: false,
            }]
        }
    };
    let mut probe = Probe {
        restrictions: instance.restrictions(),
        instance,
        store: probe_store,
        password,
        hash,
        now,
        caller: Caller {
            source: Some("verification probe".into()),
            client: None,
        },
        ctx: ims_core::audit::Context::new(now, "system:probe"),
        out: Vec::new(),
    };
    let outsider = probe.native_outsider().await;
    if let Ok(id) = outsider {
        probe.outsider_session(id).await;
    }
    let allowed = probe.allow_listed_operator().await;
    probe.bearer(bearer_token.as_ref()).await;
    probe.management(allowed, outsider.ok()).await;
    probe.out
}

/// The probes' instance (over the probe store) and what they record.
struct Probe {
    instance: Instance,
    restrictions: Arc<crate::restrictions::Restrictions>,
    store: Arc<ProbeStore>,
    /// A password only the probes know, and its hash.
    password: Secret,
    hash: String,
    now: Now,
    caller: Caller,
    ctx: ims_core::audit::Context,
    out: Vec<ProbeResult>,
}

impl Probe {
    fn record(&mut self, probe: &str, expected: &str, observed: String, passed: bool) {
        self.out.push(ProbeResult {
            probe: probe.into(),
            expected: expected.into(),
            observed,
            passed,
        });
    }

    /// A native operator outside the allow-list, known only to the probe, cannot sign in; its
    /// id, when it could be made.
    async fn native_outsider(&mut self) -> Result<i64, String> {
        let now = self.now;
        let outsider = if allow_listed(&self.restrictions.allow_list, PROBE_LOGIN) {
            Err(format!("not probed: {PROBE_LOGIN} is on the allow-list"))
        } else {
            let op = Operator::native(PROBE_LOGIN, None, Vec::new(), Some(self.hash.clone()), now);
            self.store
                .create_operator(
                    &op,
                    &self
                        .ctx
                        .event("probe", PROBE_LOGIN, "success", serde_json::json!({})),
                )
                .await
                .map_err(|e| format!("not probed: {e}"))
        };
        let observed = match &outsider {
            Ok(_) => outcome(
                &self
                    .instance
                    .sessions()
                    .logon(PROBE_LOGIN, &self.password, false, now, &self.caller)
                    .await,
            ),
            Err(why) => why.clone(),
        };
        let refused_it = observed.starts_with("refused");
        self.record(
            "native Logon, operator outside the allow-list",
            "refused",
            observed,
            refused_it,
        );
        outsider
    }

    /// An existing native session of that operator stops working.
    async fn outsider_session(&mut self, id: i64) {
        let now = self.now;
        let token = secret::generate(crate::service::SESSION_PREFIX);
        let session = Session {
            session_digest: secret::digest_hex(token.expose()),
            security_digest: secret::digest_hex("none"),
            operator_id: id,
            auth_path: AuthPath::Native,
            created_at: now,
            expires_at: now.plus_secs(3600),
        };
        let _ = self.store.insert_session(&session).await;
        let r = self
            .instance
            .sessions()
            .session_operator(token.expose(), None, None, now)
            .await;
        self.record(
            "existing native session, operator outside the allow-list",
            "refused",
            outcome(&r),
            r.is_err(),
        );
    }

    /// An allow-listed operator still signs in: the first that exists, signs in natively and
    /// is enabled, with a password only the probe knows. That operator, when there is one.
    async fn allow_listed_operator(&mut self) -> Option<Operator> {
        let mut allowed = None;
        for name in self.restrictions.allow_list.iter().flat_map(|e| e.split('|')) {
            if let Ok(Some(op)) = self.store.operator_by_login(name).await {
                if op.auth_type == AuthType::Native && !op.disabled {
                    allowed = Some(op);
                    break;
                }
            }
        }
        let Some(op) = &allowed else {
            self.record(
                "native Logon, allow-listed operator",
                "signed in",
                "no enabled native operator of the allow-list exists".into(),
                false,
            );
            return None;
        };
        let with_probe_password = Operator {
            password_hash: Some(self.hash.clone()),
            ..op.clone()
        };
        let _ = self
            .store
            .update_operator(
                &with_probe_password,
                false,
                &self
                    .ctx
                    .event("probe", &op.login, "success", serde_json::json!({})),
            )
            .await;
        let r = self
            .instance
            .sessions()
            .logon(&op.login, &self.password, false, self.now, &self.caller)
            .await;
        let observed = if r.is_ok() {
            "signed in".into()
        } else {
            outcome(&r)
        };
        self.record(
            &format!("native Logon, allow-listed operator {}", op.login),
            "signed in",
            observed,
            r.is_ok(),
        );
        allowed
    }

    /// Bearer tokens keep working.
    async fn bearer(&mut self, token: Option<&Secret>) {
        let Some(token) = token else {
            self.record(
                "IMS access token (Authorization: Bearer)",
                "accepted",
                "not probed: no credential given".into(),
                false,
            );
            return;
        };
        let r = self
            .instance
            .sessions()
            .bearer_operator(token.expose(), "xtk:session#GetUserInfo", self.now, &self.caller)
            .await;
        let observed = match &r {
            Ok(op) => format!("accepted as {}", op.login),
            Err(f) => format!("refused ({} {})", f.code, f.message),
        };
        self.record(
            "IMS access token (Authorization: Bearer)",
            "accepted",
            observed,
            r.is_ok(),
        );
    }

    /// Operator management, as an administrator would try it: the allow-listed operator, else
    /// `admin`; the outsider is the one edited and deleted, when there is one.
    async fn management(&mut self, allowed: Option<Operator>, outsider: Option<i64>) {
        let actor = match allowed {
            Some(op) => Some(op),
            None => self.store.operator_by_login("admin").await.ok().flatten(),
        };
        let Some(actor) = actor else {
            self.record(
                "operator management",
                "refused",
                "not probed: no administrator operator exists".into(),
                false,
            );
            return;
        };
        let create = OperatorEdit {
            password: Some(secret::generate("probe-")),
            ..OperatorEdit::default()
        };
        let new_login = OperatorKey::Login(format!("{PROBE_LOGIN}-new"));
        self.restricted_change(
            &actor,
            "create a native operator",
            &new_login,
            Some(WriteMode::Insert),
            create,
        )
        .await;
        let target = OperatorKey::Id(outsider.unwrap_or(actor.id));
        let edit = OperatorEdit {
            label: Some("changed by a probe".into()),
            ..OperatorEdit::default()
        };
        self.restricted_change(
            &actor,
            "edit a native operator",
            &target,
            Some(WriteMode::Update),
            edit,
        )
        .await;
        self.restricted_change(
            &actor,
            "delete a native operator",
            &target,
            None,
            OperatorEdit::default(),
        )
        .await;
    }

    /// One operator change that the restrictions must refuse.
    async fn restricted_change(
        &mut self,
        actor: &Operator,
        probe: &str,
        key: &OperatorKey,
        mode: Option<WriteMode>,
        edit: OperatorEdit,
    ) {
        let r = self
            .instance
            .operators()
            .change_operator(actor, key, mode, edit, self.now, &self.caller)
            .await;
        let restricted = matches!(&r, Err(f) if f.code == RESTRICTED_CODE);
        self.record(
            probe,
            &format!("refused ({RESTRICTED_CODE})"),
            outcome(&r),
            restricted,
        );
    }
}
