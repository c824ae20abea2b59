//! Bulk import of people from CSV, previewed in test mode before it applies.

use super::*;

struct ImportRow {
    line: u64,
    email: String,
    outcome: String,
    ok: bool,
}

#[derive(Template)]
#[template(path = "admin/import.html")]
struct ImportPage {
    shell: Shell,
    csv: String,
    rows: Vec<ImportRow>,
    applied: bool,
    ready: bool,
    /// Whether new Enterprise IDs are sent an invitation.
    invite: bool,
}

pub(super) async fn import_page(SystemAdministrator(who): SystemAdministrator) -> Response {
    render(
        StatusCode::OK,
        &ImportPage {
            shell: who.shell(),
            csv: "email,firstname,lastname,country,type,groups\n".into(),
            rows: Vec::new(),
            applied: false,
            ready: false,
            invite: true,
        },
    )
}

pub(super) async fn import_run(
    State(app): State<AppState>,
    SystemAdministrator(who): SystemAdministrator,
    meta: Meta,
    body: bytes::Bytes,
) -> Response {
    let form = or_page!(who.form(&body), who);
    let csv = form.text("csv");
    let apply = form.text("apply") == "1";
    let invite = form.checked("invite");
    let mut entries = or_page!(ims_identity::import::parse_users_csv(&csv), who);
    if !invite {
        for row in &mut entries {
            for step in row.entry["do"].as_array_mut().into_iter().flatten() {
                if let Some(create) = step.get_mut("createEnterpriseID") {
                    create["invite"] = Value::Bool(false);
                }
            }
        }
    }
    let mut rows = Vec::new();
    // Ten entries per request, as the API takes them; the preview runs in test mode.
    for chunk in entries.chunks(ims_identity::umapi::MAX_ENTRIES) {
        let batch = Value::Array(chunk.iter().map(|r| r.entry.clone()).collect());
        let result = or_page!(act(&app, &who, &meta, batch, !apply).await, who);
        let errors = result["errors"].as_array().cloned().unwrap_or_default();
        for (i, row) in chunk.iter().enumerate() {
            let error = errors.iter().find(|e| e["index"].as_u64() == Some(i as u64));
            rows.push(ImportRow {
                line: row.line,
                email: row.email.clone(),
                ok: error.is_none(),
                outcome: match error {
                    None if apply => "imported".into(),
                    None => "will be imported".into(),
                    Some(e) => format!(
                        "{} ({})",
                        e["message"].as_str().unwrap_or_default(),
                        e["errorCode"].as_str().unwrap_or_default()
                    ),
                },
            });
        }
    }
    let mut shell = who.shell();
    let failed = rows.iter().filter(|r| !r.ok).count();
    shell.notice = Some(if apply {
        format!("{} row(s) imported, {failed} refused.", rows.len() - failed)
    } else {
        format!(
            "Preview: nothing was changed. {} row(s) would be imported, {failed} refused.",
            rows.len() - failed
        )
    });
    render(
        StatusCode::OK,
        &ImportPage {
            shell,
            ready: !apply && failed < rows.len(),
            csv,
            rows,
            applied: apply,
            invite,
        },
    )
}
