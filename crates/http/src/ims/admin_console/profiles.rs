//! Product profiles: list, create, members, permission items, technical accounts.

use super::*;

struct ProfileRow {
    name: String,
    link: String,
    instance: String,
    permissions: String,
    quota: String,
    members: i64,
}

struct InstanceChoice {
    id: i64,
    label: String,
}

#[derive(Template)]
#[template(path = "admin/profiles.html")]
struct ProfilesPage {
    shell: Shell,
    rows: Vec<ProfileRow>,
    instances: Vec<InstanceChoice>,
    may_create: bool,
}

pub(super) async fn profiles(
    State(app): State<AppState>,
    ProfileAdministrator(who): ProfileAdministrator,
    Query(q): Query<ListQuery>,
) -> Response {
    let directory = who.administration(&app);
    let (instances, groups) = or_page!(
        tokio::try_join!(directory.product_instances(), directory.groups()),
        who
    );
    let context_of = |g: &Group| {
        instances
            .iter()
            .find(|i| Some(i.id) == g.product_instance_id)
            .map(|i| {
                (
                    i.product_context.clone(),
                    format!("{} ({})", i.label, i.product_context),
                )
            })
            .unwrap_or_default()
    };
    let rows = groups
        .iter()
        .filter(|(g, _)| {
            g.kind == GroupKind::ProductProfile && who.admin.may_manage_profile(g, &context_of(g).0)
        })
        .map(|(g, n)| ProfileRow {
            name: g.name.clone(),
            link: format!("/admin/profiles/{}", enc(&g.name)),
            instance: context_of(g).1,
            permissions: g.permissions.join(", "),
            quota: g
                .license_quota
                .map_or_else(|| "unlimited".to_owned(), |q| q.to_string()),
            members: *n,
        })
        .collect();
    let creatable: Vec<InstanceChoice> = instances
        .iter()
        .filter(|i| who.admin.administers_product(&i.product_context))
        .map(|i| InstanceChoice {
            id: i.id,
            label: format!("{} ({} / {})", i.label, i.product_context, i.name),
        })
        .collect();
    render(
        StatusCode::OK,
        &ProfilesPage {
            shell: with_notice(who.shell(), &q),
            may_create: !creatable.is_empty(),
            rows,
            instances: creatable,
        },
    )
}

fn permissions_of(form: &FormData) -> Vec<String> {
    let mut out: Vec<String> = form
        .text("permissions")
        .split([',', '\n', ' '])
        .map(|p| p.trim().to_owned())
        .filter(|p| !p.is_empty())
        .collect();
    out.sort();
    out.dedup();
    out
}

fn quota_of(form: &FormData) -> Result<Option<i64>, Error> {
    let raw = form.text("quota");
    let raw = raw.trim();
    if raw.is_empty() {
        return Ok(None);
    }
    raw.parse::<i64>()
        .map(Some)
        .map_err(|_| Error::invalid_request("the licence quota is a number (or empty for no limit)"))
}

pub(super) async fn profile_create(
    State(app): State<AppState>,
    ProfileAdministrator(who): ProfileAdministrator,
    meta: Meta,
    body: bytes::Bytes,
) -> Response {
    let form = or_page!(who.form(&body), who);
    let name = form.text("name").trim().to_owned();
    let created = match quota_of(&form) {
        Ok(license_quota) => {
            let settings = ProfileSettings {
                name: &name,
                permissions: permissions_of(&form),
                license_quota,
            };
            who.administration(&app)
                .create_profile(&form.text("instance"), settings, &who.context(&meta))
                .await
        }
        Err(e) => Err(e),
    };
    match created {
        Ok(_) => back(
            &format!("/admin/profiles/{}", enc(&name)),
            "Product profile created.",
        ),
        Err(e) => error_page(Some(who.shell()), &e),
    }
}

#[derive(Template)]
#[template(path = "admin/profile.html")]
struct ProfilePage {
    shell: Shell,
    name: String,
    action: String,
    instance: String,
    permissions: String,
    quota: String,
    members: Vec<MemberRow>,
    linked_groups: Vec<String>,
    /// Technical account credentials (client ids) holding the profile.
    credentials: Vec<String>,
}

pub(super) async fn profile_page(
    State(app): State<AppState>,
    ProfileAdministrator(who): ProfileAdministrator,
    Path(name): Path<String>,
    Query(q): Query<ListQuery>,
) -> Response {
    let shell = with_notice(who.shell(), &q);
    let profile = or_page!(who.administration(&app).managed_profile(&name).await, who);
    let directory = who.administration(&app);
    let members = or_page!(directory.everyone(Some(&profile.name), false).await, who);
    let mut rows = Vec::new();
    for (u, _) in members {
        let through = match directory.memberships(&u).await {
            Ok(ms) => ms
                .into_iter()
                .filter(|m| m.group == profile.name)
                .map(|m| m.through.unwrap_or_else(|| "direct".into()))
                .collect::<Vec<_>>()
                .join(", "),
            Err(e) => return error_page(Some(shell), &e),
        };
        rows.push(MemberRow {
            link: format!("/admin/users/{}", enc(&u.email)),
            email: u.email,
            through,
        });
    }
    let linked_groups = or_page!(directory.linked(&profile).await, who);
    let instance = match directory.product_instances().await {
        Ok(i) => i
            .into_iter()
            .find(|i| Some(i.id) == profile.product_instance_id)
            .map(|i| format!("{} ({} / {})", i.label, i.product_context, i.name))
            .unwrap_or_default(),
        Err(e) => return error_page(Some(shell), &e),
    };
    let credentials = or_page!(directory.profile_credentials(&profile).await, who);
    render(
        StatusCode::OK,
        &ProfilePage {
            shell,
            credentials,
            action: format!("/admin/profiles/{}", enc(&profile.name)),
            permissions: profile.permissions.join(" "),
            quota: profile.license_quota.map(|q| q.to_string()).unwrap_or_default(),
            name: profile.name,
            instance,
            members: rows,
            linked_groups,
        },
    )
}

pub(super) async fn profile_change(
    State(app): State<AppState>,
    ProfileAdministrator(who): ProfileAdministrator,
    meta: Meta,
    Path(name): Path<String>,
    body: bytes::Bytes,
) -> Response {
    let form = or_page!(who.form(&body), who);
    let profile = or_page!(who.administration(&app).managed_profile(&name).await, who);
    let here = format!("/admin/profiles/{}", enc(&profile.name));
    let member = form.text("email").trim().to_owned();
    let outcome = match form.text("action").as_str() {
        "permissions" => match quota_of(&form) {
            Ok(license_quota) => {
                let settings = ProfileSettings {
                    name: &profile.name,
                    permissions: permissions_of(&form),
                    license_quota,
                };
                who.administration(&app)
                    .update_profile(&profile, settings, &who.context(&meta))
                    .await
                    .map(|()| "Saved.")
            }
            Err(e) => Err(e),
        },
        "add_member" => {
            run_entry(
                &app,
                &who,
                &meta,
                json!([{"user": member, "do": [{"add": {"group": [profile.name]}}]}]),
                "Member added.",
            )
            .await
        }
        "remove_member" => {
            run_entry(
                &app,
                &who,
                &meta,
                json!([{"user": member, "do": [{"remove": {"group": [profile.name]}}]}]),
                "Member removed.",
            )
            .await
        }
        action @ ("add_credential" | "remove_credential") => app
            .ims
            .directory()
            .set_profile_credential(
                who.admin.org_id(),
                &profile,
                form.text("client_id").trim(),
                action == "add_credential",
                &who.context(&meta),
            )
            .await
            .map(|()| "Saved."),
        other => Err(Error::invalid_request(format!("unknown action {other:?}"))),
    };
    match outcome {
        Ok(notice) => back(&here, notice),
        Err(e) => error_page(Some(who.shell()), &e),
    }
}
