//! How an assessment is shown: a table for people, CSV for spreadsheets (JSON is the
//! assessment itself, serialised).

use std::fmt::Write as _;

use crate::assess::Assessment;

fn day(ms: Option<i64>) -> String {
    ms.map(|m| ims_core::time::iso8601(ims_core::Now::from_millis(m))[..10].to_owned())
        .unwrap_or_else(|| "-".into())
}

fn cut(s: &str, width: usize) -> String {
    if s.chars().count() <= width {
        s.to_owned()
    } else {
        let mut out: String = s.chars().take(width.saturating_sub(1)).collect();
        out.push('…');
        out
    }
}

/// The human table: one line per operator, then warnings and blockers.
pub fn table(a: &Assessment) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "instance {} ({})", a.instance, a.build_verdict);
    let counts: Vec<String> = a.counts.iter().map(|(k, v)| format!("{k}={v}")).collect();
    let _ = writeln!(out, "{}\n", counts.join("  "));
    let _ = writeln!(
        out,
        "{:<24} {:<10} {:<18} {:<5} {:<30} {:<10} {:<24} {:<10} {:<10} {:<10} {:<14} EVIDENCE",
        "LOGIN", "CLASS", "AUTH", "DIS", "EMAIL", "EMAIL?", "GROUPS", "NATIVE", "IMS", "API LAST", "GETS IN"
    );
    for o in &a.operators {
        let _ = writeln!(
            out,
            "{:<24} {:<10} {:<18} {:<5} {:<30} {:<10} {:<24} {:<10} {:<10} {:<10} {:<14} {}",
            cut(&o.login, 24),
            o.class.as_str(),
            o.auth_type,
            if o.disabled { "yes" } else { "" },
            cut(o.email.as_deref().unwrap_or("-"), 30),
            o.email_status.as_str(),
            cut(&o.groups.join(","), 24),
            day(o.last_native_sign_in),
            day(o.last_ims_sign_in),
            day(o.api.last_seen),
            o.access.as_ref().map_or_else(|| "-".to_owned(), |a| a.label()),
            o.evidence
        );
    }
    for w in &a.warnings {
        let _ = writeln!(out, "warning: {w}");
    }
    if a.blockers.is_empty() {
        let _ = writeln!(out, "no blockers");
    }
    for b in &a.blockers {
        let _ = writeln!(
            out,
            "blocker ({}): {}; fix: {}",
            b.phase.as_str(),
            b.problem,
            b.fix
        );
    }
    out
}

/// A cell a spreadsheet will not run: text that starts like a formula (`=`, `+`, `-`, `@`, or a
/// tab or carriage return before one) gets a leading `'`, which spreadsheets show as text.
/// Logins, labels and emails come from the instance, where anyone who can name an operator
/// could plant `=HYPERLINK(...)` for the administrator who opens the report.
pub fn csv_cell(text: String) -> String {
    if text.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        format!("'{text}")
    } else {
        text
    }
}

/// One CSV row per operator, lists joined with `;`, every cell through [`csv_cell`].
pub fn csv(a: &Assessment) -> Result<String, csv::Error> {
    let mut w = csv::Writer::from_writer(Vec::new());
    w.write_record([
        "login",
        "label",
        "class",
        "auth_type",
        "disabled",
        "email",
        "email_status",
        "groups",
        "rights",
        "rights_beyond_groups",
        "last_native_sign_in",
        "last_ims_sign_in",
        "api_calls",
        "api_actions",
        "api_sources",
        "api_clients",
        "api_last_seen",
        "evidence",
        "access",
    ])?;
    let time = |ms: Option<i64>| {
        ms.map(|m| ims_core::time::iso8601(ims_core::Now::from_millis(m)))
            .unwrap_or_default()
    };
    for o in &a.operators {
        w.write_record(
            [
                o.login.clone(),
                o.label.clone(),
                o.class.as_str().to_owned(),
                o.auth_type.clone(),
                o.disabled.to_string(),
                o.email.clone().unwrap_or_default(),
                o.email_status.as_str().to_owned(),
                o.groups.join(";"),
                o.rights.join(";"),
                o.rights_beyond_groups.join(";"),
                time(o.last_native_sign_in),
                time(o.last_ims_sign_in),
                o.api.calls.to_string(),
                o.api.actions.join(";"),
                o.api.sources.join(";"),
                o.api.clients.join(";"),
                time(o.api.last_seen),
                o.evidence.clone(),
                o.access.as_ref().map(|a| a.label()).unwrap_or_default(),
            ]
            .map(csv_cell),
        )?;
    }
    let bytes = w.into_inner().map_err(|e| e.into_error())?;
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}
