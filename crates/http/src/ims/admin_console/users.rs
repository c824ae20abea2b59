//! The people of the organisation: list, create, change, remove, reset links.

use super::*;
use ims_core::time::iso8601;
use ims_core::Now;
use ims_identity::links::InvitationState;

struct UserRow {
    email: String,
    link: String,
    name: String,
    kind: &'static str,
    status: &'static str,
    groups: String,
}

#[derive(Template)]
#[template(path = "admin/users.html")]
struct UsersPage {
    shell: Shell,
    search: String,
    rows: Vec<UserRow>,
    page: u32,
    previous: Option<u32>,
    next: Option<u32>,
    /// Groups and profiles a new user can be put in at once (an invitation then names the
    /// product instances and leads to the first one's console).
    groups: Vec<String>,
}

const PAGE: u32 = 50;

pub(super) async fn users(
    State(app): State<AppState>,
    SystemAdministrator(who): SystemAdministrator,
    Query(q): Query<ListQuery>,
) -> Response {
    let page = q.page.unwrap_or(0);
    let search = q.q.clone().unwrap_or_default().trim().to_lowercase();
    // Search filters the organisation's users by email or name.
    let all = or_page!(who.administration(&app).everyone(None, true).await, who);
    let matching: Vec<_> = all
        .into_iter()
        .filter(|(u, _)| {
            search.is_empty()
                || u.email.to_lowercase().contains(&search)
                || format!("{} {}", u.first_name, u.last_name)
                    .to_lowercase()
                    .contains(&search)
        })
        .collect();
    let groups = or_page!(who.administration(&app).groups().await, who)
        .into_iter()
        .map(|(g, _)| g.name)
        .collect();
    let total = matching.len() as u32;
    let rows = matching
        .into_iter()
        .skip((page * PAGE) as usize)
        .take(PAGE as usize)
        .map(|(u, g)| UserRow {
            link: format!("/admin/users/{}", enc(&u.email)),
            name: format!("{} {}", u.first_name, u.last_name).trim().to_owned(),
            kind: u.identity_type.as_str(),
            status: u.status.as_str(),
            groups: g.join(", "),
            email: u.email,
        })
        .collect();
    render(
        StatusCode::OK,
        &UsersPage {
            shell: with_notice(who.shell(), &q),
            search: q.q.unwrap_or_default(),
            rows,
            page,
            previous: page.checked_sub(1),
            next: ((page + 1) * PAGE < total).then_some(page + 1),
            groups,
        },
    )
}

pub(super) async fn user_create(
    State(app): State<AppState>,
    SystemAdministrator(who): SystemAdministrator,
    meta: Meta,
    body: bytes::Bytes,
) -> Response {
    let form = or_page!(who.form(&body), who);
    let email = form.text("email").trim().to_owned();
    let command = match form.text("type").as_str() {
        "adobeID" => "addAdobeID",
        "federatedID" => "createFederatedID",
        _ => "createEnterpriseID",
    };
    let mut args =
        json!({"email": email, "firstname": form.text("firstname"), "lastname": form.text("lastname")});
    if command == "createEnterpriseID" && !form.checked("invite") {
        args["invite"] = json!(false);
    }
    if !form.text("country").trim().is_empty() {
        args["country"] = json!(form.text("country"));
    }
    let mut steps = vec![json!({ command: args })];
    let groups: Vec<String> = form.all("group").into_iter().filter(|g| !g.is_empty()).collect();
    if !groups.is_empty() {
        steps.push(json!({"add": {"group": groups}}));
    }
    match act(&app, &who, &meta, json!([{"user": email, "do": steps}]), false).await {
        Ok(r) => match first_error(&r) {
            None => back(&format!("/admin/users/{}", enc(&email)), "User created."),
            Some(e) => error_page(Some(who.shell()), &Error::invalid_request(e)),
        },
        Err(e) => error_page(Some(who.shell()), &e),
    }
}

struct MembershipRow {
    group: String,
    kind: &'static str,
    through: String,
}

#[derive(Template)]
#[template(path = "admin/user.html")]
struct UserPage {
    shell: Shell,
    email: String,
    action: String,
    first_name: String,
    last_name: String,
    country: String,
    kind: &'static str,
    status: &'static str,
    active: bool,
    user_id: String,
    memberships: Vec<MembershipRow>,
    groups: Vec<String>,
    reset_link: Option<String>,
    /// The latest invitation's state and when it was sent.
    invitation: Option<(&'static str, String)>,
    /// An active Enterprise ID that has not accepted an invitation can be sent one.
    invitable: bool,
}

pub(super) async fn user_page(
    State(app): State<AppState>,
    SystemAdministrator(who): SystemAdministrator,
    Path(email): Path<String>,
    Query(q): Query<ListQuery>,
) -> Response {
    user_view(&app, &who, &email, with_notice(who.shell(), &q), None).await
}

pub(super) async fn user_view(
    app: &AppState,
    who: &Signed,
    email: &str,
    shell: Shell,
    reset_link: Option<String>,
) -> Response {
    let people = or_page!(who.system(app), who);
    let user = match people.user(email).await {
        Ok(u) => u,
        Err(e) => return error_page(Some(shell), &e),
    };
    let directory = people.administration();
    let memberships = or_page!(directory.memberships(&user).await, who);
    let groups = match directory.groups().await {
        Ok(g) => g.into_iter().map(|(g, _)| g.name).collect(),
        Err(e) => return error_page(Some(shell), &e),
    };
    let invitation = or_page!(people.invitation(&user).await, who);
    let state = invitation.as_ref().map(|i| i.invitation_state(Now::system()));
    let invitable = ims_identity::invitations::invitable(&user) && state != Some(InvitationState::Accepted);
    render(
        StatusCode::OK,
        &UserPage {
            shell,
            action: format!("/admin/users/{}", enc(&user.email)),
            email: user.email.clone(),
            first_name: user.first_name.clone(),
            last_name: user.last_name.clone(),
            country: user.country.clone().unwrap_or_default(),
            kind: user.identity_type.as_str(),
            status: user.status.as_str(),
            active: user.status == UserStatus::Active,
            user_id: user.user_id.clone(),
            memberships: memberships
                .into_iter()
                .map(|m| MembershipRow {
                    kind: m.kind.as_str(),
                    through: m.through.unwrap_or_default(),
                    group: m.group,
                })
                .collect(),
            groups,
            reset_link,
            invitation: invitation
                .zip(state)
                .map(|(i, s)| (s.as_str(), iso8601(i.created_at))),
            invitable,
        },
    )
}

pub(super) async fn user_change(
    State(app): State<AppState>,
    SystemAdministrator(who): SystemAdministrator,
    meta: Meta,
    Path(email): Path<String>,
    body: bytes::Bytes,
) -> Response {
    let form = or_page!(who.form(&body), who);
    let here = format!("/admin/users/{}", enc(&email));
    let people = or_page!(who.system(&app), who);
    let user = match people.any_user(&email).await {
        Ok(u) => u,
        Err(e) => return error_page(Some(who.shell()), &e),
    };
    let ctx = who.context(&meta);
    let entry = |steps: Value| json!([{"user": email, "do": steps}]);
    let outcome: Result<&str, Error> = match form.text("action").as_str() {
        "update" => {
            let mut args = json!({"firstname": form.text("firstname"), "lastname": form.text("lastname")});
            if !form.text("country").trim().is_empty() {
                args["country"] = json!(form.text("country"));
            }
            run_entry(&app, &who, &meta, entry(json!([{"update": args}])), "Saved.").await
        }
        "add_group" => {
            run_entry(
                &app,
                &who,
                &meta,
                entry(json!([{"add": {"group": [form.text("group")]}}])),
                "Added.",
            )
            .await
        }
        "remove_group" => {
            run_entry(
                &app,
                &who,
                &meta,
                entry(json!([{"remove": {"group": [form.text("group")]}}])),
                "Removed from the group.",
            )
            .await
        }
        "remove" => {
            return match run_entry(
                &app,
                &who,
                &meta,
                entry(json!([{"removeFromOrg": {"deleteAccount": false}}])),
                "",
            )
            .await
            {
                Ok(_) => back("/admin/users", &format!("{email} removed from the organisation.")),
                Err(e) => error_page(Some(who.shell()), &e),
            }
        }
        "disable" | "enable" => {
            let status = if form.text("action") == "disable" {
                UserStatus::Disabled
            } else {
                UserStatus::Active
            };
            people
                .change_user(&user, UserChange::SetStatus(status), &ctx)
                .await
                .map(|_| "Saved.")
        }
        "end_sessions" => people
            .change_user(&user, UserChange::EndSessions, &ctx)
            .await
            .map(|_| "Sessions ended."),
        "reset" => {
            return match people.password_reset_link(&user, &ctx).await {
                Ok(token) => {
                    let link = format!("{}/ims/reset/{}", app.ims.settings().issuer, token.expose());
                    let mut shell = who.shell();
                    shell.notice = Some("Reset link created and mailed to the person; it works once.".into());
                    user_view(&app, &who, &email, shell, Some(link)).await
                }
                Err(e) => error_page(Some(who.shell()), &e),
            }
        }
        "invite" => people
            .resend_invitation(&user, &ctx)
            .await
            .map(|_| "Invitation sent."),
        other => Err(Error::invalid_request(format!("unknown action {other:?}"))),
    };
    match outcome {
        Ok(notice) => back(&here, notice),
        Err(e) => error_page(Some(who.shell()), &e),
    }
}
