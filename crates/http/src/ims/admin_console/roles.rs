//! Administrator roles: who holds which, granting and revoking.

use super::*;

struct RoleRow {
    email: String,
    role: &'static str,
    role_key: &'static str,
    target: String,
    target_key: String,
}

struct RoleChoice {
    key: &'static str,
    label: &'static str,
}

#[derive(Template)]
#[template(path = "admin/roles.html")]
struct RolesPage {
    shell: Shell,
    rows: Vec<RoleRow>,
    choices: Vec<RoleChoice>,
}

pub(super) async fn roles(
    State(app): State<AppState>,
    SystemAdministrator(who): SystemAdministrator,
    Query(q): Query<ListQuery>,
) -> Response {
    let people = or_page!(who.system(&app), who);
    let users = or_page!(people.administration().everyone(None, true).await, who);
    let groups = or_page!(people.administration().groups().await, who);
    let mut rows = Vec::new();
    for (u, _) in &users {
        if u.system_admin {
            rows.push(RoleRow {
                email: u.email.clone(),
                role: AdminRole::SystemAdmin.label(),
                role_key: "",
                target: "(the organisation's first administrator)".into(),
                target_key: String::new(),
            });
        }
        let grants = or_page!(people.role_grants(u).await, who);
        for g in grants {
            let target = match g.role {
                AdminRole::ProfileAdmin | AdminRole::UserGroupAdmin => groups
                    .iter()
                    .find(|(x, _)| x.id.to_string() == g.target)
                    .map_or_else(|| g.target.clone(), |(x, _)| x.name.clone()),
                _ => g.target.clone(),
            };
            rows.push(RoleRow {
                email: u.email.clone(),
                role: g.role.label(),
                role_key: g.role.as_str(),
                target,
                target_key: g.target,
            });
        }
    }
    render(
        StatusCode::OK,
        &RolesPage {
            shell: with_notice(who.shell(), &q),
            rows,
            choices: AdminRole::ALL
                .iter()
                .map(|r| RoleChoice {
                    key: r.as_str(),
                    label: r.label(),
                })
                .collect(),
        },
    )
}

pub(super) async fn role_change(
    State(app): State<AppState>,
    SystemAdministrator(who): SystemAdministrator,
    meta: Meta,
    body: bytes::Bytes,
) -> Response {
    let form = or_page!(who.form(&body), who);
    let outcome = async {
        let people = who.system(&app)?;
        let held = match form.text("action").as_str() {
            "grant" => true,
            "revoke" => false,
            other => return Err(Error::invalid_request(format!("unknown action {other:?}"))),
        };
        let role =
            AdminRole::parse(&form.text("role")).ok_or_else(|| Error::invalid_request("choose a role"))?;
        let user = people.user(form.text("email").trim()).await?;
        let raw_target = form.text("target").trim().to_owned();
        let target = match role {
            AdminRole::SystemAdmin | AdminRole::Developer => String::new(),
            AdminRole::ProductAdmin if raw_target.is_empty() => {
                return Err(Error::invalid_request(
                    "a product administrator needs a product context",
                ))
            }
            AdminRole::ProductAdmin => raw_target,
            AdminRole::ProfileAdmin | AdminRole::UserGroupAdmin if held => {
                let (g, _) = people.administration().group(&raw_target).await?;
                let kind = if role == AdminRole::ProfileAdmin {
                    GroupKind::ProductProfile
                } else {
                    GroupKind::UserGroup
                };
                if g.kind != kind {
                    return Err(Error::invalid_request(format!(
                        "{raw_target:?} is not a {}",
                        kind.as_str()
                    )));
                }
                g.id.to_string()
            }
            // Revoking names the stored target as listed.
            _ => raw_target,
        };
        people
            .set_role(&user, role, target, held, &who.context(&meta))
            .await?;
        Ok(if held { "Role granted." } else { "Role revoked." })
    };
    match outcome.await {
        Ok(n) => back("/admin/roles", n),
        Err(e) => error_page(Some(who.shell()), &e),
    }
}
