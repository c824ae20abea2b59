//! What the instance is configured with: groups and named rights, the lock-down restrictions,
//! sign-in through the IMS.

use super::*;

struct GroupRow {
    name: String,
    label: String,
    rights: String,
}

#[derive(Template)]
#[template(path = "console/groups.html")]
struct GroupsPage {
    shell: Shell,
    rows: Vec<GroupRow>,
}

pub(super) async fn groups(State(st): State<InstanceState>, Administrator(who): Administrator) -> Response {
    let all = match operator_groups(&st, &who).await {
        Ok(g) => g,
        Err(f) => return fault_page(Shell::of(&st, &who), &f),
    };
    let rows = all
        .into_iter()
        .map(|g| GroupRow {
            rights: g
                .rights
                .iter()
                .map(|r| right_label(r))
                .collect::<Vec<_>>()
                .join(", "),
            name: g.name,
            label: g.label,
        })
        .collect();
    render(
        StatusCode::OK,
        &GroupsPage {
            shell: Shell::of(&st, &who),
            rows,
        },
    )
}

struct RightRow {
    name: &'static str,
    label: &'static str,
    groups: String,
}

#[derive(Template)]
#[template(path = "console/rights.html")]
struct RightsPage {
    shell: Shell,
    rows: Vec<RightRow>,
}

pub(super) async fn rights(State(st): State<InstanceState>, Administrator(who): Administrator) -> Response {
    let all = match operator_groups(&st, &who).await {
        Ok(g) => g,
        Err(f) => return fault_page(Shell::of(&st, &who), &f),
    };
    let rows = NAMED_RIGHTS
        .iter()
        .map(|r| RightRow {
            name: r.name,
            label: r.label,
            groups: all
                .iter()
                .filter(|g| g.rights.iter().any(|n| n == r.name))
                .map(|g| g.name.as_str())
                .collect::<Vec<_>>()
                .join(", "),
        })
        .collect();
    render(
        StatusCode::OK,
        &RightsPage {
            shell: Shell::of(&st, &who),
            rows,
        },
    )
}

#[derive(Template)]
#[template(path = "console/restrictions.html")]
struct RestrictionsPage {
    shell: Shell,
    operator_management: bool,
    native_api: bool,
    forced_by_build: bool,
    configured_operator_management: bool,
    configured_native_api: bool,
    allow_list: Vec<String>,
    blocks: Vec<String>,
}

/// The lock-down state: what is switched on, by the configuration or by the build, the
/// allow-list, and what it blocks.
#[derive(Template)]
#[template(path = "console/ims.html")]
struct ImsPage {
    shell: Shell,
    configured: Option<ImsSettings>,
    report: ims_campaign::diagnose::Report,
}

/// The configuration in effect, as the page shows it.
struct ImsSettings {
    url: String,
    org_id: String,
    client_id: String,
    callback_url: String,
    mask: String,
    product_context: String,
    scopes: String,
}

/// `GET /console/ims`: the IMS sign-in configuration in effect and the checklist run against
/// the IMS now (product profiles whose names contain "admin" are warned about).
pub(super) async fn ims_page(State(st): State<InstanceState>, Administrator(who): Administrator) -> Response {
    let name = st.instance.info().name.clone();
    let (configured, report) = match st.instance.connection() {
        Some(conn) => {
            let groups = match operator_groups(&st, &who).await {
                Ok(g) => g,
                Err(f) => return fault_page(Shell::of(&st, &who), &f),
            };
            let a = &conn.account;
            let settings = ImsSettings {
                url: a.url.clone(),
                org_id: a.org_id.clone(),
                client_id: conn.client_id.clone(),
                callback_url: a.callback_url.clone(),
                mask: a.mask.as_str().to_owned(),
                product_context: a.product_context.clone(),
                scopes: a.scopes.join(" "),
            };
            (
                Some(settings),
                ims_campaign::diagnose::diagnose(&conn, &name, &groups).await,
            )
        }
        None => (None, ims_campaign::diagnose::without_configuration(&name, None)),
    };
    render(
        StatusCode::OK,
        &ImsPage {
            shell: Shell::of(&st, &who),
            configured,
            report,
        },
    )
}

pub(super) async fn restrictions(
    State(st): State<InstanceState>,
    Administrator(who): Administrator,
) -> Response {
    let r = st.instance.restrictions();
    render(
        StatusCode::OK,
        &RestrictionsPage {
            shell: Shell::of(&st, &who),
            operator_management: r.operator_management,
            native_api: r.native_api,
            forced_by_build: r.forced_by_build,
            configured_operator_management: r.switches.operator_management_restricted,
            configured_native_api: r.switches.native_api_disabled,
            allow_list: r.allow_list.clone(),
            blocks: r.blocks(),
        },
    )
}
