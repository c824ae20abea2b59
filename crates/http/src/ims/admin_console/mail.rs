//! The organisation's mail: what was queued, sent or refused (with the server's answer), and a
//! resend for each message.

use super::*;

struct MailRow {
    id: String,
    at: String,
    to: String,
    kind: &'static str,
    subject: String,
    status: &'static str,
    attempts: u32,
    answer: String,
}

#[derive(Template)]
#[template(path = "admin/mail.html")]
struct MailPage {
    shell: Shell,
    rows: Vec<MailRow>,
}

/// Messages per page.
const PAGE: u32 = 100;

pub(super) async fn mail(
    State(app): State<AppState>,
    SystemAdministrator(who): SystemAdministrator,
    Query(q): Query<ListQuery>,
) -> Response {
    let page = q.page.unwrap_or(0);
    let messages = match who.system(&app) {
        Ok(people) => people.outbox(page.saturating_mul(PAGE), PAGE).await,
        Err(e) => Err(e),
    };
    let messages = or_page!(messages, who);
    render(
        StatusCode::OK,
        &MailPage {
            shell: with_notice(who.shell(), &q),
            rows: messages
                .into_iter()
                .map(|m| MailRow {
                    at: ims_core::time::iso8601(m.created_at),
                    to: m.to,
                    kind: m.kind.as_str(),
                    subject: m.subject,
                    status: m.status.as_str(),
                    attempts: m.attempts,
                    answer: m.last_error.unwrap_or_default(),
                    id: m.mail_id,
                })
                .collect(),
        },
    )
}

pub(super) async fn mail_resend(
    State(app): State<AppState>,
    SystemAdministrator(who): SystemAdministrator,
    meta: Meta,
    body: bytes::Bytes,
) -> Response {
    let form = or_page!(who.form(&body), who);
    let outcome = async {
        let people = who.system(&app)?;
        people
            .resend_mail(form.text("mail_id").trim(), &who.context(&meta))
            .await
    };
    match outcome.await {
        Ok(m) => back(
            "/admin/mail",
            &format!("The message to {} is queued again.", m.to),
        ),
        Err(e) => error_page(Some(who.shell()), &e),
    }
}
