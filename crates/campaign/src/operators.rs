//! Changing operators: one write path for the SOAP API (`xtk:operator` documents), the instance
//! console and the command line, so every rule (validation, built-in operators, rights, and the
//! lock-down restrictions that come later) is decided in one place.

use ims_core::audit::Context;
use ims_core::secret::Secret;

use crate::fault::Fault;
use crate::model::{AuthType, Operator};
use crate::restrictions::Restrictions;
use crate::store::OperatorStore;
use ims_wire::rights;

/// Which operator a change is about.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OperatorKey {
    Id(i64),
    Login(String),
}

/// What a write does when the key finds, or does not find, an operator (`_operation`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WriteMode {
    Insert,
    Update,
    InsertOrUpdate,
}

/// A change to one operator. `None` leaves a field as it is (or at its default on creation);
/// `Some(None)` clears an optional field.
#[derive(Clone, Debug, Default)]
pub struct OperatorEdit {
    pub login: Option<String>,
    pub label: Option<String>,
    pub email: Option<Option<String>>,
    /// A new password (native operators only); hashed, never stored as given.
    pub password: Option<Secret>,
    pub disabled: Option<bool>,
    pub forbid_rich_client: Option<bool>,
    pub trusted_ip_mask: Option<Option<String>>,
    pub security_zone: Option<Option<String>>,
    /// Replaces the operator's groups.
    pub groups: Option<Vec<String>>,
    /// Replaces the operator's direct named rights.
    pub rights: Option<Vec<String>>,
}

/// What a write did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Written {
    Created(i64),
    Updated(i64),
    Deleted(i64),
}

pub const MAX_LOGIN: usize = 64;
pub const MIN_PASSWORD: usize = 8;
pub const MAX_PASSWORD: usize = 1024;

/// A login: 1 to 64 letters, digits and `.`, `_`, `-`, `@`, `+`. No `|`, which separates names
/// in the native sign-in allow-list, and nothing a console or log would render ambiguously.
pub fn check_login(login: &str) -> Result<(), Fault> {
    let ok = !login.is_empty()
        && login.len() <= MAX_LOGIN
        && login
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '@' | '+'));
    if ok {
        Ok(())
    } else {
        Err(Fault::bad_request(format!(
            "a login is 1 to {MAX_LOGIN} letters, digits or . _ - @ +"
        )))
    }
}

/// An email address as operators carry it: one `@` with text either side, no spaces.
pub fn check_email(email: &str) -> Result<(), Fault> {
    let ok = email.len() <= 320
        && !email.chars().any(|c| c.is_whitespace() || c.is_control())
        && email
            .split_once('@')
            .is_some_and(|(local, domain)| !local.is_empty() && !domain.is_empty() && !domain.contains('@'));
    if ok {
        Ok(())
    } else {
        Err(Fault::bad_request(format!("{email:?} is not an email address")))
    }
}

pub fn check_password(password: &Secret) -> Result<(), Fault> {
    let n = password.expose().chars().count();
    if (MIN_PASSWORD..=MAX_PASSWORD).contains(&n) {
        Ok(())
    } else {
        Err(Fault::bad_request(format!(
            "a password has {MIN_PASSWORD} to {MAX_PASSWORD} characters"
        )))
    }
}

fn check_text(field: &str, value: &str, max: usize) -> Result<(), Fault> {
    if value.chars().count() > max || value.chars().any(char::is_control) {
        return Err(Fault::bad_request(format!(
            "{field} has at most {max} characters and no control characters"
        )));
    }
    Ok(())
}

/// Empty text clears an optional field.
fn optional(value: Option<String>) -> Option<String> {
    value.map(|v| v.trim().to_owned()).filter(|v| !v.is_empty())
}

impl OperatorEdit {
    /// Checks every given field on its own (rights and groups against what exists come later).
    fn check(&self) -> Result<(), Fault> {
        if let Some(login) = &self.login {
            check_login(login)?;
        }
        if let Some(label) = &self.label {
            check_text("label", label, 255)?;
        }
        if let Some(Some(email)) = &self.email {
            check_email(email)?;
        }
        if let Some(p) = &self.password {
            check_password(p)?;
        }
        if let Some(Some(mask)) = &self.trusted_ip_mask {
            check_text("trustedIpMask", mask, 1024)?;
            // Enforced at every sign-in and call: one that does not read would lock the
            // operator out, so it is refused here with the reason.
            if crate::zones::parse_mask_list(mask).is_none() {
                return Err(Fault::bad_request(format!(
                    "trustedIpMask {mask:?}: give addresses or CIDR blocks separated by commas"
                )));
            }
        }
        if let Some(Some(zone)) = &self.security_zone {
            check_text("securityZone", zone, 64)?;
            let known = crate::zones::default_tree().names();
            if !known.contains(&zone.trim()) {
                return Err(Fault::bad_request(format!(
                    "securityZone {zone:?} is not a security zone of this instance ({})",
                    known.join(", ")
                )));
            }
        }
        for right in self.rights.iter().flatten() {
            if rights::right(right).is_none() {
                return Err(Fault::bad_request(format!("no named right {right:?}")));
            }
        }
        Ok(())
    }

    /// Normalises: trims text, turns empty optional values into `None`, sorts and dedups sets.
    fn normalised(mut self) -> Self {
        self.login = self.login.map(|l| l.trim().to_owned());
        self.email = self.email.map(optional);
        self.trusted_ip_mask = self.trusted_ip_mask.map(optional);
        self.security_zone = self.security_zone.map(optional);
        for set in [&mut self.groups, &mut self.rights].into_iter().flatten() {
            set.iter_mut().for_each(|s| *s = s.trim().to_owned());
            set.retain(|s| !s.is_empty());
            set.sort_unstable();
            set.dedup();
        }
        self
    }

    /// Fields that changed, by name, for the audit line (never the password itself).
    fn changed_fields(&self) -> Vec<&'static str> {
        let mut out = Vec::new();
        let mut note = |set: bool, name| {
            if set {
                out.push(name)
            }
        };
        note(self.login.is_some(), "login");
        note(self.label.is_some(), "label");
        note(self.email.is_some(), "email");
        note(self.password.is_some(), "password");
        note(self.disabled.is_some(), "disabled");
        note(self.forbid_rich_client.is_some(), "forbidRichClient");
        note(self.trusted_ip_mask.is_some(), "trustedIpMask");
        note(self.security_zone.is_some(), "securityZone");
        note(self.groups.is_some(), "groups");
        note(self.rights.is_some(), "rights");
        out
    }
}

async fn find(store: &dyn OperatorStore, key: &OperatorKey) -> Result<Option<Operator>, Fault> {
    Ok(match key {
        OperatorKey::Id(id) => store.operator(*id).await?,
        OperatorKey::Login(login) => store.operator_by_login(login).await?,
    })
}

async fn check_groups(store: &dyn OperatorStore, groups: &[String]) -> Result<(), Fault> {
    if groups.is_empty() {
        return Ok(());
    }
    let known = store.groups().await?;
    for g in groups {
        if !known.iter().any(|k| &k.name == g) {
            return Err(Fault::bad_request(format!("no operator group {g:?}")));
        }
    }
    Ok(())
}

/// Creates or changes an operator as `ctx.actor`. The caller has decided the actor may manage
/// operators; this decides whether the change itself is allowed, the lock-down restrictions
/// first.
pub async fn save(
    store: &dyn OperatorStore,
    restrictions: &Restrictions,
    key: &OperatorKey,
    mode: WriteMode,
    edit: OperatorEdit,
    ctx: &Context,
) -> Result<Written, Fault> {
    let edit = edit.normalised();
    let existing = find(store, key).await?;
    // An update of nobody is "not found", whatever the restrictions.
    if existing.is_some() || mode != WriteMode::Update {
        // Writes change no operator's authentication type; only creation makes native ones.
        let after_native = existing
            .as_ref()
            .is_none_or(|op| op.auth_type == AuthType::Native);
        restrictions.check_operator_change(existing.as_ref(), after_native)?;
    }
    edit.check()?;
    if let Some(groups) = &edit.groups {
        check_groups(store, groups).await?;
    }
    match (mode, existing) {
        (WriteMode::Insert, Some(op)) => Err(Fault::bad_request(format!(
            "an operator named {:?} already exists",
            op.login
        ))),
        (WriteMode::Update, None) => Err(Fault::not_found("No operator matches the key")),
        (_, Some(op)) => update(store, op, edit, ctx).await,
        (_, None) => create(store, key, edit, ctx).await,
    }
}

async fn create(
    store: &dyn OperatorStore,
    key: &OperatorKey,
    edit: OperatorEdit,
    ctx: &Context,
) -> Result<Written, Fault> {
    let login = match (&edit.login, key) {
        (Some(l), _) => l.clone(),
        (None, OperatorKey::Login(l)) => {
            check_login(l)?;
            l.clone()
        }
        (None, OperatorKey::Id(_)) => {
            return Err(Fault::bad_request("a new operator needs a name"));
        }
    };
    let password = edit
        .password
        .as_ref()
        .ok_or_else(|| Fault::bad_request("a new operator needs a password"))?;
    let hash = ims_core::password::hash(password)
        .await
        .map_err(|_| Fault::internal())?;
    let mut op = Operator::native(
        &login,
        edit.email.clone().flatten(),
        edit.groups.clone().unwrap_or_default(),
        Some(hash),
        ctx.now,
    );
    op.label = edit.label.clone().unwrap_or_else(|| login.clone());
    op.disabled = edit.disabled.unwrap_or(false);
    op.forbid_rich_client = edit.forbid_rich_client.unwrap_or(false);
    op.trusted_ip_mask = edit.trusted_ip_mask.clone().flatten();
    op.security_zone = edit.security_zone.clone().flatten();
    op.rights = edit.rights.clone().unwrap_or_default();
    let audit = ctx.event(
        "operator.create",
        &op.login,
        "success",
        serde_json::json!({"auth_type": "native", "groups": op.groups, "rights": op.rights, "email": op.email}),
    );
    match store.create_operator(&op, &audit).await {
        Ok(id) => Ok(Written::Created(id)),
        Err(ims_core::error::StoreError::Conflict(_)) => Err(Fault::bad_request(format!(
            "an operator named {:?} already exists",
            op.login
        ))),
        Err(e) => Err(e.into()),
    }
}

async fn update(
    store: &dyn OperatorStore,
    mut op: Operator,
    edit: OperatorEdit,
    ctx: &Context,
) -> Result<Written, Fault> {
    if let Some(login) = &edit.login {
        if login != &op.login {
            if op.builtin {
                return Err(Fault::forbidden(format!(
                    "{} is a built-in operator and keeps its name",
                    op.login
                )));
            }
            if store.operator_by_login(login).await?.is_some() {
                return Err(Fault::bad_request(format!(
                    "an operator named {login:?} already exists"
                )));
            }
        }
    }
    if edit.password.is_some() && op.auth_type != AuthType::Native {
        return Err(Fault::bad_request(format!(
            "{} signs in through the IMS and has no password here",
            op.login
        )));
    }
    let fields = edit.changed_fields();
    let target = op.login.clone();
    let new_hash = match &edit.password {
        Some(p) => Some(ims_core::password::hash(p).await.map_err(|_| Fault::internal())?),
        None => None,
    };
    // Sessions end when what they were opened on no longer holds.
    let end_sessions = new_hash.is_some() || edit.disabled == Some(true);
    let OperatorEdit {
        login,
        label,
        email,
        disabled,
        forbid_rich_client,
        trusted_ip_mask,
        security_zone,
        groups,
        rights,
        ..
    } = edit;
    if let Some(v) = login {
        op.login = v;
    }
    if let Some(v) = label {
        op.label = v;
    }
    if let Some(v) = email {
        op.email = v;
    }
    if let Some(v) = new_hash {
        op.password_hash = Some(v);
    }
    if let Some(v) = disabled {
        op.disabled = v;
    }
    if let Some(v) = forbid_rich_client {
        op.forbid_rich_client = v;
    }
    if let Some(v) = trusted_ip_mask {
        op.trusted_ip_mask = v;
    }
    if let Some(v) = security_zone {
        op.security_zone = v;
    }
    if let Some(v) = groups {
        op.groups = v;
    }
    if let Some(v) = rights {
        op.rights = v;
    }
    op.modified_at = ctx.now;
    let audit = ctx.event(
        "operator.update",
        &target,
        "success",
        serde_json::json!({"fields": fields, "login": op.login, "groups": op.groups, "rights": op.rights, "disabled": op.disabled}),
    );
    match store.update_operator(&op, end_sessions, &audit).await {
        Ok(()) => Ok(Written::Updated(op.id)),
        Err(ims_core::error::StoreError::Conflict(m)) => Err(Fault::bad_request(m)),
        Err(e) => Err(e.into()),
    }
}

/// Deletes an operator and everything that is only its (memberships, rights, sessions). Built-in
/// operators and the actor itself cannot be deleted.
pub async fn delete(
    store: &dyn OperatorStore,
    restrictions: &Restrictions,
    key: &OperatorKey,
    actor_id: Option<i64>,
    ctx: &Context,
) -> Result<Written, Fault> {
    let op = find(store, key)
        .await?
        .ok_or_else(|| Fault::not_found("No operator matches the key"))?;
    restrictions.check_operator_change(Some(&op), false)?;
    if op.builtin {
        return Err(Fault::forbidden(format!(
            "{} is a built-in operator and cannot be deleted",
            op.login
        )));
    }
    if actor_id == Some(op.id) {
        return Err(Fault::forbidden("an operator cannot delete itself"));
    }
    let audit = ctx.event(
        "operator.delete",
        &op.login,
        "success",
        serde_json::json!({"auth_type": op.auth_type.as_str(), "groups": op.groups}),
    );
    store.delete_operator(op.id, &audit).await?;
    Ok(Written::Deleted(op.id))
}

fn flag(doc: &ims_wire::soap::Element, name: &str) -> Result<Option<bool>, Fault> {
    match doc.attr(name) {
        None => Ok(None),
        Some("true" | "1") => Ok(Some(true)),
        Some("false" | "0") => Ok(Some(false)),
        Some(other) => Err(Fault::bad_request(format!(
            "{name} is true or false, not {other:?}"
        ))),
    }
}

/// A write of an `xtk:operator` document, as the SOAP API receives it.
#[derive(Clone, Debug)]
pub struct OperatorDocument {
    pub key: OperatorKey,
    /// `None`: delete.
    pub mode: Option<WriteMode>,
    pub edit: OperatorEdit,
}

/// Reads `<operator xtkschema="xtk:operator" _operation=".." _key="@name|@id" name=".." label=".."
/// email=".." password=".." disabled=".." forbidRichClient=".." trustedIpMask=".."
/// securityZone=".."><group name=".."/><right name=".."/></operator>`. Any `group` (or `right`)
/// child replaces the whole set; `<groups/>` or `<rights/>` alone empty it.
pub fn parse_document(doc: &ims_wire::soap::Element) -> Result<OperatorDocument, Fault> {
    let key = match doc.attr("_key").unwrap_or("@name") {
        "@name" => OperatorKey::Login(
            doc.attr("name")
                .map(|n| n.trim().to_owned())
                .ok_or_else(|| Fault::bad_request("the operator has no name"))?,
        ),
        "@id" => OperatorKey::Id(
            doc.attr("id")
                .and_then(|i| i.trim().parse().ok())
                .ok_or_else(|| Fault::bad_request("_key @id needs a numeric id"))?,
        ),
        other => return Err(Fault::bad_request(format!("_key {other:?}: use @name or @id"))),
    };
    let mode = match doc.attr("_operation").unwrap_or("insertOrUpdate") {
        "insert" => Some(WriteMode::Insert),
        "update" => Some(WriteMode::Update),
        "insertOrUpdate" => Some(WriteMode::InsertOrUpdate),
        "delete" => None,
        other => return Err(Fault::bad_request(format!("unsupported _operation {other:?}"))),
    };
    let mut groups: Option<Vec<String>> = None;
    let mut rights: Option<Vec<String>> = None;
    for child in doc.elements() {
        let set = match child.name.as_str() {
            "group" => &mut groups,
            "right" => &mut rights,
            "groups" => {
                groups.get_or_insert_with(Vec::new);
                continue;
            }
            "rights" => {
                rights.get_or_insert_with(Vec::new);
                continue;
            }
            other => {
                return Err(Fault::bad_request(format!(
                    "an operator has no element {other:?}"
                )))
            }
        };
        let name = child
            .attr("name")
            .ok_or_else(|| Fault::bad_request(format!("<{}> needs a name", child.name)))?;
        set.get_or_insert_with(Vec::new).push(name.to_owned());
    }
    const KNOWN: &[&str] = &[
        "xtkschema",
        "_operation",
        "_key",
        "id",
        "name",
        "label",
        "email",
        "password",
        "disabled",
        "forbidRichClient",
        "trustedIpMask",
        "securityZone",
    ];
    if let Some((k, _)) = doc.attrs.iter().find(|(k, _)| !KNOWN.contains(&k.as_str())) {
        return Err(Fault::bad_request(format!("an operator has no attribute {k:?}")));
    }
    let text = |name: &str| doc.attr(name).map(str::to_owned);
    let edit = OperatorEdit {
        login: text("name"),
        label: text("label"),
        email: text("email").map(Some),
        password: doc.attr("password").map(Secret::new),
        disabled: flag(doc, "disabled")?,
        forbid_rich_client: flag(doc, "forbidRichClient")?,
        trusted_ip_mask: text("trustedIpMask").map(Some),
        security_zone: text("securityZone").map(Some),
        groups,
        rights,
    };
    Ok(OperatorDocument { key, mode, edit })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc(xml: &str) -> ims_wire::soap::Element {
        ims_wire::soap::parse_document(xml, ims_wire::soap::Limits::default()).unwrap()
    }

    #[test]
    fn logins_emails_and_passwords_are_checked() {
        for good in ["jdoe", "j.doe@example.com", "a_b-c+d", "x"] {
            assert!(check_login(good).is_ok(), "{good}");
        }
        let long = "a".repeat(65);
        for bad in ["", "a b", "internal|monitoring", "é", "<x>", long.as_str()] {
            assert!(check_login(bad).is_err(), "{bad}");
        }
        assert!(check_email("a@b").is_ok());
        for bad in ["a", "@b", "a@", "a @b", "a@b@c"] {
            assert!(check_email(bad).is_err(), "{bad}");
        }
        assert!(check_password(&Secret::new("12345678")).is_ok());
        assert!(check_password(&Secret::new("1234567")).is_err());
    }

    #[test]
    fn masks_and_zones_that_would_lock_an_operator_out_are_refused() {
        let with = |mask: Option<&str>, zone: Option<&str>| OperatorEdit {
            trusted_ip_mask: mask.map(|m| Some(m.to_owned())),
            security_zone: zone.map(|z| Some(z.to_owned())),
            ..OperatorEdit::default()
        };
        assert!(with(Some("10.99.0.0/16, 127.0.0.1"), Some("lan")).check().is_ok());
        assert!(with(None, Some("public")).check().is_ok());
        for (mask, zone) in [
            (Some("10.99.0.0/40"), None),
            (Some("intranet"), None),
            (None, Some("moon")),
        ] {
            let e = with(mask, zone).check().unwrap_err();
            assert!(
                e.message.contains("trustedIpMask") || e.message.contains("securityZone"),
                "{e}"
            );
        }
    }

    #[test]
    fn documents_read_key_mode_fields_and_sets() {
        let d = parse_document(&doc(
            r#"<operator xtkschema="xtk:operator" _operation="insert" name=" jdoe " email="" disabled="1"><group name="admin"/><group name="reportAccess"/></operator>"#,
        ))
        .unwrap();
        assert_eq!(d.key, OperatorKey::Login("jdoe".into()));
        assert_eq!(d.mode, Some(WriteMode::Insert));
        assert_eq!(d.edit.disabled, Some(true));
        assert_eq!(
            d.edit.groups.as_deref(),
            Some(&["admin".to_owned(), "reportAccess".to_owned()][..])
        );
        assert_eq!(d.edit.rights, None);
        let e = d.edit.normalised();
        assert_eq!(e.email, Some(None), "an empty email clears it");

        let d = parse_document(&doc(
            r#"<operator _key="@id" id="7" _operation="delete"><rights/></operator>"#,
        ))
        .unwrap();
        assert_eq!(d.key, OperatorKey::Id(7));
        assert_eq!(d.mode, None);
        assert_eq!(d.edit.rights, Some(vec![]));

        for bad in [
            r#"<operator _operation="merge" name="a"/>"#,
            r#"<operator _key="@email" name="a"/>"#,
            r#"<operator _key="@id" id="x"/>"#,
            r#"<operator name="a" disabled="yes"/>"#,
            r#"<operator name="a" authType="ims"/>"#,
            r#"<operator name="a"><password/></operator>"#,
            r#"<operator label="no name"/>"#,
        ] {
            assert!(parse_document(&doc(bad)).is_err(), "{bad}");
        }
    }
}
