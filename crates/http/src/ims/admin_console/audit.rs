//! The audit log, newest first.

use super::*;

struct AuditRow {
    at: String,
    actor: String,
    action: String,
    target: String,
    outcome: String,
    source: String,
    request_id: String,
    details: String,
}

#[derive(Template)]
#[template(path = "admin/audit.html")]
struct AuditPage {
    shell: Shell,
    action: String,
    rows: Vec<AuditRow>,
}

pub(super) async fn audit(
    State(app): State<AppState>,
    SystemAdministrator(who): SystemAdministrator,
    Query(q): Query<ListQuery>,
) -> Response {
    let action = q.action.clone().unwrap_or_default().trim().to_owned();
    let query = AuditQuery {
        action_prefix: (!action.is_empty()).then(|| action.clone()),
        limit: 200,
    };
    let events = match who.system(&app) {
        Ok(people) => people.audit(&query).await,
        Err(e) => Err(e),
    };
    let events = or_page!(events, who);
    render(
        StatusCode::OK,
        &AuditPage {
            shell: with_notice(who.shell(), &q),
            action,
            rows: events
                .into_iter()
                .map(|e| AuditRow {
                    at: ims_core::time::iso8601(e.at),
                    actor: e.actor,
                    action: e.action,
                    target: e.target,
                    outcome: e.outcome,
                    source: e.source.unwrap_or_default(),
                    request_id: e.request_id.unwrap_or_default(),
                    details: e.details.to_string(),
                })
                .collect(),
        },
    )
}
