//! User groups: list, create, members, linked profiles.

use super::*;

struct GroupRow {
    name: String,
    link: String,
    description: String,
    members: i64,
}

#[derive(Template)]
#[template(path = "admin/groups.html")]
struct GroupsPage {
    shell: Shell,
    rows: Vec<GroupRow>,
}

pub(super) async fn groups(
    State(app): State<AppState>,
    GroupAdministrator(who): GroupAdministrator,
    Query(q): Query<ListQuery>,
) -> Response {
    let groups = or_page!(who.administration(&app).groups().await, who);
    let rows = groups
        .iter()
        .filter(|(g, _)| g.kind == GroupKind::UserGroup && who.admin.may_manage_group(g))
        .map(|(g, n)| GroupRow {
            name: g.name.clone(),
            link: format!("/admin/groups/{}", enc(&g.name)),
            description: g.description.clone(),
            members: *n,
        })
        .collect();
    render(
        StatusCode::OK,
        &GroupsPage {
            shell: with_notice(who.shell(), &q),
            rows,
        },
    )
}

pub(super) async fn group_create(
    State(app): State<AppState>,
    SystemAdministrator(who): SystemAdministrator,
    meta: Meta,
    body: bytes::Bytes,
) -> Response {
    let form = or_page!(who.form(&body), who);
    let name = form.text("name").trim().to_owned();
    let entries =
        json!([{"usergroup": name, "do": [{"createUserGroup": {"description": form.text("description")}}]}]);
    match run_entry(&app, &who, &meta, entries, "User group created.").await {
        Ok(n) => back(&format!("/admin/groups/{}", enc(&name)), n),
        Err(e) => error_page(Some(who.shell()), &e),
    }
}

#[derive(Template)]
#[template(path = "admin/group.html")]
struct GroupPage {
    shell: Shell,
    name: String,
    action: String,
    description: String,
    members: Vec<MemberRow>,
    profiles: Vec<String>,
    all_profiles: Vec<String>,
}

pub(super) async fn group_page(
    State(app): State<AppState>,
    GroupAdministrator(who): GroupAdministrator,
    Path(name): Path<String>,
    Query(q): Query<ListQuery>,
) -> Response {
    let shell = with_notice(who.shell(), &q);
    let group = or_page!(who.administration(&app).managed_user_group(&name).await, who);
    let directory = who.administration(&app);
    let members = or_page!(directory.everyone(Some(&group.name), true).await, who);
    let profiles = or_page!(directory.linked(&group).await, who);
    let all_profiles = or_page!(directory.groups().await, who)
        .into_iter()
        .filter(|(g, _)| g.kind == GroupKind::ProductProfile)
        .map(|(g, _)| g.name)
        .collect();
    render(
        StatusCode::OK,
        &GroupPage {
            shell,
            action: format!("/admin/groups/{}", enc(&group.name)),
            description: group.description.clone(),
            name: group.name,
            members: members
                .into_iter()
                .map(|(u, _)| MemberRow {
                    link: format!("/admin/users/{}", enc(&u.email)),
                    email: u.email,
                    through: "direct".into(),
                })
                .collect(),
            profiles,
            all_profiles,
        },
    )
}

pub(super) async fn group_change(
    State(app): State<AppState>,
    GroupAdministrator(who): GroupAdministrator,
    meta: Meta,
    Path(name): Path<String>,
    body: bytes::Bytes,
) -> Response {
    let form = or_page!(who.form(&body), who);
    let group = or_page!(who.administration(&app).managed_user_group(&name).await, who);
    let here = format!("/admin/groups/{}", enc(&group.name));
    let step = match form.text("action").as_str() {
        "add_member" => json!({"add": {"user": [form.text("email").trim()]}}),
        "remove_member" => json!({"remove": {"user": [form.text("email").trim()]}}),
        // Linking a profile grants its access: the profile's administrators decide that.
        "link" | "unlink" if !who.admin.holds(AdminRole::SystemAdmin) => {
            return error_page(
                Some(who.shell()),
                &Error::forbidden("linking product profiles needs the system administrator role"),
            )
        }
        "link" => json!({"add": {"productConfiguration": [form.text("profile")]}}),
        "unlink" => json!({"remove": {"productConfiguration": [form.text("profile")]}}),
        "delete" if !who.admin.holds(AdminRole::SystemAdmin) => {
            return error_page(
                Some(who.shell()),
                &Error::forbidden("deleting user groups needs the system administrator role"),
            )
        }
        "delete" => {
            return match run_entry(
                &app,
                &who,
                &meta,
                json!([{"usergroup": group.name, "do": [{"deleteUserGroup": {}}]}]),
                "",
            )
            .await
            {
                Ok(_) => back("/admin/groups", "User group deleted."),
                Err(e) => error_page(Some(who.shell()), &e),
            }
        }
        other => {
            return error_page(
                Some(who.shell()),
                &Error::invalid_request(format!("unknown action {other:?}")),
            )
        }
    };
    match run_entry(
        &app,
        &who,
        &meta,
        json!([{"usergroup": group.name, "do": [step]}]),
        "Saved.",
    )
    .await
    {
        Ok(n) => back(&here, n),
        Err(e) => error_page(Some(who.shell()), &e),
    }
}
