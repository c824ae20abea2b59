//! The operator pages: list, create, show, change and delete operators.

use super::*;
use ims_campaign::operator_admin::OperatorAdmin;

struct OperatorRow {
    id: i64,
    login: String,
    label: String,
    email: String,
    auth_type: &'static str,
    disabled: bool,
    builtin: bool,
    groups: String,
}

#[derive(Template)]
#[template(path = "console/operators.html")]
struct OperatorsPage {
    shell: Shell,
    /// New operators would be native: the restriction forbids creating them.
    creation_restricted: bool,
    search: String,
    total: i64,
    rows: Vec<OperatorRow>,
    page: u32,
    pages: u32,
    previous: Option<u32>,
    next: Option<u32>,
}

#[derive(Debug, Deserialize)]
pub(super) struct ListQuery {
    q: Option<String>,
    page: Option<u32>,
    deleted: Option<String>,
}

pub(super) async fn operators(
    State(st): State<InstanceState>,
    Administrator(who): Administrator,
    Query(q): Query<ListQuery>,
) -> Response {
    let search = q.q.unwrap_or_default().trim().to_owned();
    let page = q.page.unwrap_or(1).max(1);
    let offset = (page - 1).saturating_mul(PAGE_SIZE);
    let found = match st.instance.operators().operator_admin(&who.op).await {
        Ok(admin) => {
            admin
                .operators_page((!search.is_empty()).then_some(search.as_str()), offset, PAGE_SIZE)
                .await
        }
        Err(f) => Err(f),
    };
    let (ops, total) = match found {
        Ok(r) => r,
        Err(e) => return fault_page(Shell::of(&st, &who), &e),
    };
    let pages = u32::try_from(
        u64::try_from(total.max(1))
            .unwrap_or(1)
            .div_ceil(u64::from(PAGE_SIZE)),
    )
    .unwrap_or(u32::MAX);
    let notice = q.deleted.map(|login| format!("Operator {login} deleted."));
    render(
        StatusCode::OK,
        &OperatorsPage {
            creation_restricted: st.instance.restrictions().operator_management,
            shell: Shell::of(&st, &who).with_notice(notice.as_deref()),
            search,
            total,
            rows: ops
                .into_iter()
                .map(|o| OperatorRow {
                    id: o.id,
                    login: o.login,
                    label: o.label,
                    email: o.email.unwrap_or_default(),
                    auth_type: o.auth_type.label(),
                    disabled: o.disabled,
                    builtin: o.builtin,
                    groups: o.groups.join(", "),
                })
                .collect(),
            page,
            pages,
            previous: (page > 1).then(|| page - 1),
            next: (page < pages).then(|| page + 1),
        },
    )
}

struct Choice {
    name: String,
    label: String,
    checked: bool,
}

#[derive(Template)]
#[template(path = "console/operator.html")]
struct OperatorPage {
    shell: Shell,
    id: Option<i64>,
    login: String,
    label: String,
    email: String,
    auth_type: &'static str,
    ims_id: String,
    native: bool,
    builtin: bool,
    disabled: bool,
    forbid_rich_client: bool,
    trusted_ip_mask: String,
    security_zone: String,
    groups: Vec<Choice>,
    rights: Vec<Choice>,
    created: String,
    modified: String,
    error: Option<String>,
    /// The restriction forbids changing this operator (or creating one): the form is shown
    /// read-only with the reason.
    locked: bool,
    /// The build, not the configuration, keeps the restrictions on.
    forced_by_build: bool,
}

/// The operator form: from the stored operator, or (after a refused change) from what was sent.
async fn operator_form(
    st: &InstanceState,
    admin: &OperatorAdmin<'_>,
    shell: Shell,
    stored: Option<&Operator>,
    sent: Option<&FormData>,
    error: Option<String>,
) -> Response {
    let all_groups = match admin.groups().await {
        Ok(g) => g,
        Err(f) => return fault_page(shell, &f),
    };
    let blank = Operator::native("", None, Vec::new(), None, Now::from_millis(0));
    let restrictions = st.instance.restrictions();
    let op = stored.unwrap_or(&blank);
    let text = |field: &str, stored: String| sent.map_or(stored, |f| f.text(field));
    let checked = |field: &str, stored: bool| sent.map_or(stored, |f| f.checked(field));
    let chosen = |field: &str, stored: &[String]| sent.map_or_else(|| stored.to_vec(), |f| f.all(field));
    let groups_on = chosen("group", &op.groups);
    let rights_on = chosen("right", &op.rights);
    let status = if error.is_some() {
        StatusCode::UNPROCESSABLE_ENTITY
    } else {
        StatusCode::OK
    };
    render(
        status,
        &OperatorPage {
            shell,
            id: stored.map(|o| o.id),
            login: text("login", op.login.clone()),
            label: text("label", op.label.clone()),
            email: text("email", op.email.clone().unwrap_or_default()),
            auth_type: op.auth_type.label(),
            ims_id: op.ims_id.clone().unwrap_or_default(),
            native: op.auth_type == AuthType::Native,
            builtin: op.builtin,
            disabled: checked("disabled", op.disabled),
            forbid_rich_client: checked("forbidRichClient", op.forbid_rich_client),
            trusted_ip_mask: text("trustedIpMask", op.trusted_ip_mask.clone().unwrap_or_default()),
            security_zone: text("securityZone", op.security_zone.clone().unwrap_or_default()),
            groups: all_groups
                .iter()
                .map(|g| Choice {
                    name: g.name.clone(),
                    label: g.label.clone(),
                    checked: groups_on.contains(&g.name),
                })
                .collect(),
            rights: NAMED_RIGHTS
                .iter()
                .map(|r| Choice {
                    name: r.name.into(),
                    label: r.label.into(),
                    checked: rights_on.iter().any(|n| n == r.name),
                })
                .collect(),
            created: ims_core::time::iso8601(op.created_at),
            modified: ims_core::time::iso8601(op.modified_at),
            error,
            locked: restrictions
                .check_operator_change(stored, op.auth_type == AuthType::Native)
                .is_err(),
            forced_by_build: restrictions.forced_by_build,
        },
    )
    .into_response()
}

/// The change a submitted operator form asks for: every field of the form, as it stands.
fn edit_from(form: &FormData, native: bool) -> OperatorEdit {
    let password = form.text("password");
    OperatorEdit {
        login: Some(form.text("login")),
        label: Some(form.text("label")),
        email: Some(Some(form.text("email"))),
        password: (native && !password.is_empty()).then(|| Secret::new(password)),
        disabled: Some(form.checked("disabled")),
        forbid_rich_client: Some(form.checked("forbidRichClient")),
        trusted_ip_mask: Some(Some(form.text("trustedIpMask"))),
        security_zone: Some(Some(form.text("securityZone"))),
        groups: Some(form.all("group")),
        rights: Some(form.all("right")),
    }
}

pub(super) async fn operator_new(
    State(st): State<InstanceState>,
    Administrator(who): Administrator,
) -> Response {
    let admin = match admin_of(&st, &who).await {
        Ok(a) => a,
        Err(resp) => return resp,
    };
    operator_form(&st, &admin, Shell::of(&st, &who), None, None, None).await
}

pub(super) async fn operator_create(
    State(st): State<InstanceState>,
    Administrator(who): Administrator,
    meta: Meta,
    headers: HeaderMap,
    body: bytes::Bytes,
) -> Response {
    let form = FormData::parse(&body);
    if let Err(f) = who.check_form(&form) {
        return fault_page(Shell::of(&st, &who), &f);
    }
    let admin = match admin_of(&st, &who).await {
        Ok(a) => a,
        Err(resp) => return resp,
    };
    let login = form.text("login").trim().to_owned();
    let result = admin
        .change(
            &OperatorKey::Login(login),
            Some(WriteMode::Insert),
            edit_from(&form, true),
            meta.now,
            &caller(&meta, &headers),
        )
        .await;
    match result {
        Ok(Written::Created(id)) => see_other(&format!("/console/operators/{id}?saved=1"), vec![]),
        Ok(_) => see_other("/console/operators", vec![]),
        Err(f) if f.client && !matches!(f.code, FaultCode::Forbidden | FaultCode::Restricted) => {
            operator_form(
                &st,
                &admin,
                Shell::of(&st, &who),
                None,
                Some(&form),
                Some(f.message),
            )
            .await
        }
        Err(f) => fault_page(Shell::of(&st, &who), &f),
    }
}

#[derive(Debug, Deserialize)]
pub(super) struct ShowQuery {
    saved: Option<String>,
}

/// Operator management for the signed-in administrator, read once per request; the fault page
/// when the rights in the store no longer carry ADMINISTRATION.
async fn admin_of<'a>(st: &'a InstanceState, who: &'a SignedIn) -> Result<OperatorAdmin<'a>, Response> {
    st.instance
        .operators()
        .operator_admin(&who.op)
        .await
        .map_err(|f| fault_page(Shell::of(st, who), &f))
}

async fn stored_operator(
    st: &InstanceState,
    who: &SignedIn,
    admin: &OperatorAdmin<'_>,
    id: i64,
) -> Result<Operator, Response> {
    match admin.operator(id).await {
        Ok(Some(op)) => Ok(op),
        Ok(None) => Err(fault_page(
            Shell::of(st, who),
            &Fault::not_found(format!("There is no operator {id}.")),
        )),
        Err(f) => Err(fault_page(Shell::of(st, who), &f)),
    }
}

pub(super) async fn operator_show(
    State(st): State<InstanceState>,
    Administrator(who): Administrator,
    Path(id): Path<i64>,
    Query(q): Query<ShowQuery>,
) -> Response {
    let admin = match admin_of(&st, &who).await {
        Ok(a) => a,
        Err(resp) => return resp,
    };
    let op = match stored_operator(&st, &who, &admin, id).await {
        Ok(op) => op,
        Err(resp) => return resp,
    };
    let shell = Shell::of(&st, &who).with_notice(q.saved.is_some().then_some("Saved."));
    operator_form(&st, &admin, shell, Some(&op), None, None).await
}

pub(super) async fn operator_update(
    State(st): State<InstanceState>,
    Administrator(who): Administrator,
    Path(id): Path<i64>,
    meta: Meta,
    headers: HeaderMap,
    body: bytes::Bytes,
) -> Response {
    let form = FormData::parse(&body);
    if let Err(f) = who.check_form(&form) {
        return fault_page(Shell::of(&st, &who), &f);
    }
    let admin = match admin_of(&st, &who).await {
        Ok(a) => a,
        Err(resp) => return resp,
    };
    let op = match stored_operator(&st, &who, &admin, id).await {
        Ok(op) => op,
        Err(resp) => return resp,
    };
    let result = admin
        .change(
            &OperatorKey::Id(id),
            Some(WriteMode::Update),
            edit_from(&form, op.auth_type == AuthType::Native),
            meta.now,
            &caller(&meta, &headers),
        )
        .await;
    match result {
        Ok(_) => see_other(&format!("/console/operators/{id}?saved=1"), vec![]),
        Err(f) if f.client && !matches!(f.code, FaultCode::Forbidden | FaultCode::Restricted) => {
            operator_form(
                &st,
                &admin,
                Shell::of(&st, &who),
                Some(&op),
                Some(&form),
                Some(f.message),
            )
            .await
        }
        Err(f) => fault_page(Shell::of(&st, &who), &f),
    }
}

pub(super) async fn operator_delete(
    State(st): State<InstanceState>,
    Administrator(who): Administrator,
    Path(id): Path<i64>,
    meta: Meta,
    headers: HeaderMap,
    body: bytes::Bytes,
) -> Response {
    if let Err(f) = who.check_form(&FormData::parse(&body)) {
        return fault_page(Shell::of(&st, &who), &f);
    }
    let admin = match admin_of(&st, &who).await {
        Ok(a) => a,
        Err(resp) => return resp,
    };
    let op = match stored_operator(&st, &who, &admin, id).await {
        Ok(op) => op,
        Err(resp) => return resp,
    };
    let result = admin
        .change(
            &OperatorKey::Id(id),
            None,
            OperatorEdit::default(),
            meta.now,
            &caller(&meta, &headers),
        )
        .await;
    match result {
        Ok(_) => {
            let login: String = url::form_urlencoded::byte_serialize(op.login.as_bytes()).collect();
            see_other(&format!("/console/operators?deleted={login}"), vec![])
        }
        Err(f) => fault_page(Shell::of(&st, &who), &f),
    }
}
