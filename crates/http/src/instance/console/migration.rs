//! Following a migration to the IMS, and giving people the emails it needs.

use super::*;

#[derive(Template)]
#[template(path = "console/migration.html")]
struct MigrationPage {
    shell: Shell,
    by_type: Vec<(String, i64)>,
    /// The chart: one polyline per authentication type, in a 600 x 200 box.
    lines: Vec<(&'static str, &'static str, String)>,
    first: String,
    last: String,
    max: i64,
    blockers: Vec<String>,
    legacy: Vec<(String, String, String, bool)>,
    plans: Vec<ims_wire::migration::ReportedPlan>,
    reported_at: Option<String>,
    /// How the moved people are coming in, as the engine last reported it.
    people: Option<ims_wire::migration::PeopleReport>,
    completion: Option<String>,
}

/// Polyline points of one series over the history, scaled into 600 x 200.
fn points(history: &[(i64, i64, i64, i64)], pick: fn(&(i64, i64, i64, i64)) -> i64, max: i64) -> String {
    let n = history.len().max(2) - 1;
    history
        .iter()
        .enumerate()
        .map(|(i, h)| {
            let x = 600 * i as i64 / n as i64;
            let y = 200 - 200 * pick(h) / max.max(1);
            format!("{x},{y}")
        })
        .collect::<Vec<_>>()
        .join(" ")
}

pub(super) async fn migration_page(
    State(st): State<InstanceState>,
    meta: Meta,
    Administrator(who): Administrator,
) -> Response {
    let d = match st
        .instance
        .migration()
        .migration_dashboard(&who.op, meta.now)
        .await
    {
        Ok(d) => d,
        Err(f) => return fault_page(Shell::of(&st, &who), &f),
    };
    let max = d.history.iter().map(|h| h.1.max(h.2).max(h.3)).max().unwrap_or(1);
    let day = |ms: i64| {
        ims_core::time::iso8601(Now::from_millis(ms))
            .chars()
            .take(16)
            .collect::<String>()
            .replace('T', " ")
    };
    render(
        StatusCode::OK,
        &MigrationPage {
            shell: Shell::of(&st, &who),
            by_type: d.by_type.into_iter().collect(),
            lines: vec![
                ("native", "#b03a2e", points(&d.history, |h| h.1, max)),
                ("ims", "#1f618d", points(&d.history, |h| h.2, max)),
                ("technical_account", "#1e8449", points(&d.history, |h| h.3, max)),
            ],
            first: d.history.first().map(|h| day(h.0)).unwrap_or_default(),
            last: d.history.last().map(|h| day(h.0)).unwrap_or_default(),
            max,
            blockers: d.blockers,
            legacy: d
                .legacy
                .into_iter()
                .map(|l| (l.login, day(l.last_native), l.sources, l.quiet))
                .collect(),
            plans: d.report.as_ref().map(|r| r.plans.clone()).unwrap_or_default(),
            reported_at: d.report.as_ref().map(|r| day(r.at)),
            people: d.report.as_ref().and_then(|r| r.people.clone()),
            completion: d.completion.map(|c| {
                format!(
                    "complete since {} ({}{})",
                    day(c.at),
                    c.by,
                    if c.forced {
                        format!(", forced: {}", c.note)
                    } else {
                        String::new()
                    }
                )
            }),
        },
    )
}

/// Most rows the emails page shows at once: a form that reads, and always posts whole (the
/// migration API takes at most `MAX_EMAILS` rows).
const EMAIL_ROWS: usize = 200;

struct EmailRow {
    login: String,
    label: String,
    email: String,
    status: String,
    /// What was typed, kept when nothing was written.
    entered: String,
    problems: Vec<String>,
}

#[derive(Template)]
#[template(path = "console/migration_emails.html")]
struct EmailsPage {
    shell: Shell,
    rows: Vec<EmailRow>,
    /// Blockers beyond the rows shown.
    more: usize,
    error: Option<String>,
    /// Problems of operators the page does not list (changed meanwhile, or a forged row).
    other_problems: Vec<String>,
    /// `(login, before, after)`: written, or what saving would write.
    changes: Vec<(String, String, String)>,
    unchanged: Vec<String>,
    saved: bool,
}

/// What a submission gives the page to show beside the blockers.
#[derive(Default)]
struct EmailsShown {
    entered: Vec<(String, String)>,
    problems: Vec<ims_wire::migration::RowProblem>,
    error: Option<String>,
    changes: Vec<(String, String, String)>,
    unchanged: Vec<String>,
    saved: bool,
}

/// The emails page: the people whose email blocks their move, read now, with a submission's
/// values and problems beside their rows.
async fn emails_page(
    st: &InstanceState,
    who: &SignedIn,
    shell: Shell,
    status: StatusCode,
    shown: EmailsShown,
) -> Response {
    let blockers = match st.instance.migration().migration_email_blockers(&who.op).await {
        Ok(b) => b,
        Err(f) => return fault_page(shell, &f),
    };
    let more = blockers.len().saturating_sub(EMAIL_ROWS);
    let mut problems = shown.problems;
    let rows: Vec<EmailRow> = blockers
        .into_iter()
        .take(EMAIL_ROWS)
        .map(|b| {
            let (mine, rest): (Vec<_>, Vec<_>) = problems.drain(..).partition(|p| p.login == b.login);
            problems = rest;
            let status = if b.shared_with.is_empty() {
                b.status.as_str().to_owned()
            } else {
                format!("{} with {}", b.status.as_str(), b.shared_with.join(", "))
            };
            EmailRow {
                entered: shown
                    .entered
                    .iter()
                    .find(|(l, _)| *l == b.login)
                    .map(|(_, e)| e.clone())
                    .unwrap_or_default(),
                problems: mine.into_iter().map(|p| p.problem).collect(),
                login: b.login,
                label: b.label,
                email: b.email.unwrap_or_default(),
                status,
            }
        })
        .collect();
    render(
        status,
        &EmailsPage {
            shell,
            rows,
            more,
            error: shown.error,
            other_problems: problems
                .into_iter()
                .map(|p| format!("{}: {}", p.login, p.problem))
                .collect(),
            changes: shown.changes,
            unchanged: shown.unchanged,
            saved: shown.saved,
        },
    )
}

/// `GET /console/migration/emails`.
pub(super) async fn migration_emails(
    State(st): State<InstanceState>,
    Administrator(who): Administrator,
) -> Response {
    let shell = Shell::of(&st, &who);
    emails_page(&st, &who, shell, StatusCode::OK, EmailsShown::default()).await
}

/// `POST /console/migration/emails` (fields `login` and `email` in pairs, one per row, and
/// `action`: `save` writes, anything else checks): the migration API's own check and write
/// path, whole or not at all.
pub(super) async fn migration_emails_submit(
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
    let (logins, emails) = (form.all("login"), form.all("email"));
    if logins.len() != emails.len() {
        return fault_page(
            Shell::of(&st, &who),
            &Fault::bad_request("each operator of the form comes with one email field"),
        );
    }
    // Anything but an explicit save only checks: a stray submission writes nothing.
    let save = form.get("action") == Some("save");
    let entered: Vec<(String, String)> = logins.into_iter().zip(emails).collect();
    let assignments: Vec<EmailAssignment> = entered
        .iter()
        .filter(|(_, e)| !e.trim().is_empty())
        .map(|(login, email)| EmailAssignment {
            login: login.clone(),
            email: email.clone(),
        })
        .collect();
    let shell = Shell::of(&st, &who);
    if assignments.is_empty() {
        let shell = shell.with_notice(Some("Nothing to do: every new email is empty."));
        return emails_page(&st, &who, shell, StatusCode::OK, EmailsShown::default()).await;
    }
    let outcome = st
        .instance
        .migration()
        .migration_set_emails_checked(&who.op, &assignments, !save, meta.now, &caller(&meta, &headers))
        .await;
    let mut shown = EmailsShown {
        entered,
        ..EmailsShown::default()
    };
    match outcome {
        Ok(o) if o.problems.is_empty() => {
            let n = o.changed.len();
            shown.changes = o
                .changed
                .into_iter()
                .map(|c| (c.login, c.before.unwrap_or_default(), c.after))
                .collect();
            shown.unchanged = o.unchanged;
            let notice = if save {
                shown.entered.clear();
                shown.saved = true;
                format!("Saved: {n} email(s) changed.")
            } else {
                format!("Checked: nothing is wrong; saving would change {n} email(s). Nothing was written.")
            };
            emails_page(&st, &who, shell.with_notice(Some(&notice)), StatusCode::OK, shown).await
        }
        Ok(o) => {
            shown.error = Some(format!("{} problem(s): nothing was written.", o.problems.len()));
            shown.problems = o.problems;
            emails_page(&st, &who, shell, StatusCode::UNPROCESSABLE_ENTITY, shown).await
        }
        Err(f) if f.client && !matches!(f.code, FaultCode::Forbidden | FaultCode::Restricted) => {
            shown.error = Some(format!("{} Nothing was written.", f.message));
            emails_page(&st, &who, shell, StatusCode::UNPROCESSABLE_ENTITY, shown).await
        }
        Err(f) => fault_page(shell, &f),
    }
}
