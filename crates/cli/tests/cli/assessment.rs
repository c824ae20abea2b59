//! `ims migrate assess` and the preparation it leads to: emails and product profiles.

use serde_json::Value;
use std::path::Path;
use std::process::Output;
use tempfile::TempDir;

use crate::harness::*;

#[test]
fn migration_assessment_reads_both_services_through_their_apis() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let d = dir.to_str().unwrap();
    let (server, upj) = up(&dir, &[]);
    let audit_before = instance_audit(d);
    let a = the_demo_population_has_blockers(d);
    the_engine_credential_and_the_csv(&dir, d, &a);
    explicit_addresses_without_the_ims(&tmp, &upj, &a);

    // Reading changed nothing on the instance.
    assert_eq!(instance_audit(d), audit_before);

    emails_from_a_csv_file(&tmp, d, &audit_before);
    one_profile_per_operator_group(d);
    a_planted_label_stays_text(&tmp, d);
    server.stop();
}

/// The instance's audit log (its last 1000 lines).
fn instance_audit(d: &str) -> String {
    run_ok(ims().args([
        "instance",
        "audit",
        "--data-dir",
        d,
        "--instance",
        "marketing",
        "--limit",
        "1000",
    ]))
}

/// `ims migrate assess <extra>`: its output, whatever the exit code.
fn assess(extra: &[&str]) -> Output {
    let mut c = ims();
    c.args(["migrate", "assess"]).args(extra);
    c.output().unwrap()
}

/// The demo population: blockers (missing and case-variant duplicate emails) exit 1. The
/// assessment, as JSON.
fn the_demo_population_has_blockers(d: &str) -> Value {
    let out = assess(&["--data-dir", d, "--instance", "marketing", "--json"]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("7 blocker(s)"));
    let a: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(a["build"], "7.4.1");
    assert_eq!(a["counts"]["people_to_migrate"], 32);
    assert_eq!(a["counts"]["technical_to_migrate"], 3);
    assert_eq!(a["counts"]["builtin"], 6);
    let blocked: Vec<&str> = a["blockers"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|b| b["operator"].as_str())
        .collect();
    // The instance does not sign anyone in through the IMS yet: moving people would lock them out.
    assert!(a["blockers"]
        .to_string()
        .contains("does not sign people in through the IMS yet"));
    for login in ["bo.berg", "femi.costa", "jun.abe", "nina.berg", "pat.lee", "plee"] {
        assert!(blocked.contains(&login), "{login} not among {blocked:?}");
    }
    let find = |login: &str| {
        a["operators"]
            .as_array()
            .unwrap()
            .iter()
            .find(|o| o["login"] == login)
            .unwrap()
            .clone()
    };
    let crm = find("crm-sync");
    assert_eq!(crm["class"], "technical");
    assert_eq!(crm["api"]["sources"], serde_json::json!(["10.20.0.15"]));
    assert!(crm["api"]["clients"][0]
        .as_str()
        .unwrap()
        .contains("crm-sync/2.0"));
    assert_eq!(crm["rights_beyond_groups"], serde_json::json!(["export"]));
    assert!(crm["last_native_sign_in"].as_i64().is_some());
    assert_eq!(find("plee")["email_status"], "duplicate");
    // How each person will get in: invited (no IMS account yet), or blocked and why.
    assert_eq!(find("ana.abe")["access"], serde_json::json!({"way": "invited"}));
    assert_eq!(
        find("bo.berg")["access"],
        serde_json::json!({"way": "blocked", "why": "no email"})
    );
    assert!(find("crm-sync")["access"].is_null(), "a program is not invited");
    assert!(a["counts"]["access:invited"].as_u64().unwrap() > 20);
    assert_eq!(find("dara.abe")["disabled"], true);
    assert_eq!(find("monitoring")["class"], "builtin");
    assert_eq!(a["rights_no_group_carries"], serde_json::json!(["export", "sql"]));
    a
}

/// The engine's IMS credential is made once, kept owner-only, and used again; the CSV has one
/// row per operator of the assessment `a`.
fn the_engine_credential_and_the_csv(dir: &Path, d: &str, a: &Value) {
    let cred_file = dir.join("migration-credential.json");
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(&cred_file).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    let table = assess(&["--data-dir", d, "--instance", "marketing"]);
    let table = String::from_utf8(table.stdout).unwrap();
    assert!(
        table.contains("blocker (users): plee shares its email"),
        "{table}"
    );
    assert!(table.contains("crm-sync"));
    let creds = run_ok(ims().args(["credential", "list", "--data-dir", d, "--json"]));
    let engine: Vec<Value> = serde_json::from_str::<Vec<Value>>(&creds)
        .unwrap()
        .into_iter()
        .filter(|c| c["name"] == "ims migrate")
        .collect();
    assert_eq!(engine.len(), 1, "{creds}");

    // CSV, one row per operator.
    let csv =
        String::from_utf8(assess(&["--data-dir", d, "--instance", "marketing", "--csv"]).stdout).unwrap();
    assert!(csv.starts_with("login,label,class,auth_type,disabled,email,email_status"));
    assert_eq!(csv.lines().count(), 1 + a["operators"].as_array().unwrap().len());
}

/// Explicit addresses and an operator's password, without the IMS: profiles not checked; the
/// counts those of `a`.
fn explicit_addresses_without_the_ims(tmp: &TempDir, upj: &Value, a: &Value) {
    let inst = &upj["instances"][0];
    let pw = tmp.path().join("pw");
    std::fs::write(&pw, inst["admin_password"].as_str().unwrap()).unwrap();
    let explicit = [
        "--instance-url",
        inst["url"].as_str().unwrap(),
        "--login",
        "admin",
        "--password-file",
        pw.to_str().unwrap(),
        "--ca-cert",
        upj["ca_cert"].as_str().unwrap(),
        "--json",
    ];
    let out = assess(&explicit);
    assert_eq!(out.status.code(), Some(1));
    let b: Value = serde_json::from_slice(&out.stdout).unwrap();
    // The same counts, less how people get in (that takes the IMS's users).
    let mut counts = a["counts"].as_object().unwrap().clone();
    counts.retain(|k, _| !k.starts_with("access:"));
    assert_eq!(b["counts"], Value::Object(counts));
    assert!(b["warnings"].to_string().contains("the IMS was not asked"));

    // A wrong password is an error (exit 2) in the instance's words; a non-administrator is refused.
    std::fs::write(&pw, "not the password").unwrap();
    let out = assess(&explicit);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("XSV-350024"));
}

/// Emails from a CSV file: a file with a problem, or one clashing with another operator's
/// email (in another case), writes nothing; a good one sets them, once.
fn emails_from_a_csv_file(tmp: &TempDir, d: &str, audit_before: &str) {
    let csv_file = tmp.path().join("emails.csv");
    let prepare = |extra: &[&str]| {
        let mut c = ims();
        c.args([
            "migrate",
            "prepare",
            "--data-dir",
            d,
            "--instance",
            "marketing",
            "--emails",
        ])
        .arg(&csv_file)
        .args(extra);
        c.output().unwrap()
    };
    std::fs::write(
        &csv_file,
        "login,email\nbo.berg,bo@example.com\njun.abe,BO@example.com\n",
    )
    .unwrap();
    let out = prepare(&[]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains(":3: BO@example.com is already given on line 2"));
    std::fs::write(&csv_file, "login,email\nbo.berg,Ana.Abe@example.com\n").unwrap();
    let out = prepare(&[]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stdout)
        .contains("bo.berg: Ana.Abe@example.com would also be the email of ana.abe"));
    std::fs::write(
        &csv_file,
        "login,email\nbo.berg,bo.berg@example.com\nfemi.costa,femi.costa@example.com\njun.abe,jun.abe@example.com\nnina.berg,nina.berg@example.com\nplee,plee@example.com\n",
    )
    .unwrap();
    let out = prepare(&["--dry-run"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("would change 5, already set 0"));
    assert_eq!(instance_audit(d), audit_before, "a dry run writes nothing");
    let out = prepare(&["--json"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let done: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(done["changed"].as_array().unwrap().len(), 5);
    assert_eq!(
        done["changed"][4],
        serde_json::json!({"login": "plee", "before": "pat.lee@EXAMPLE.com", "after": "plee@example.com"})
    );
    // With sign-in through the IMS configured, every blocker is gone, and running the file
    // again changes nothing.
    register_ims_sign_in(d);
    let out = assess(&["--data-dir", d, "--instance", "marketing", "--json"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let out = prepare(&[]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("changed 0, already set 5"));
    let changes = run_ok(ims().args([
        "instance",
        "audit",
        "--data-dir",
        d,
        "--instance",
        "marketing",
        "--action",
        "operator.update",
    ]));
    assert_eq!(changes.matches("operator:admin").count(), 5, "{changes}");
}

/// One product profile per operator group, named by the default mask, with the group's
/// rights; an administrator's own version of one is left as it is.
fn one_profile_per_operator_group(d: &str) {
    run_ok(ims().args([
        "profile",
        "create",
        "--data-dir",
        d,
        "--instance",
        "marketing",
        "--name",
        "campaign - marketing - reportAccess",
        "--permission",
        "reports",
        "--permission",
        "export",
    ]));
    let profiles = |instance: &str, extra: &[&str]| {
        let mut c = ims();
        c.args([
            "migrate",
            "prepare",
            "--data-dir",
            d,
            "--instance",
            instance,
            "--profiles",
        ])
        .args(extra);
        let out = c.output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap()
    };
    let dry = profiles("marketing", &["--dry-run", "--json"]);
    let dry: Value = serde_json::from_str(&dry).unwrap();
    assert_eq!(dry["created"].as_array().unwrap().len(), 5, "{dry}");
    assert_eq!(
        dry["different"][0][0]["name"],
        "campaign - marketing - reportAccess"
    );
    let listed = || run_ok(ims().args(["profile", "list", "--data-dir", d, "--json"]));
    assert!(!listed().contains("campaign - marketing - deliveryOperators"));
    let made = profiles("marketing", &[]);
    assert!(made.contains("created \"campaign - marketing - deliveryOperators\" (group deliveryOperators, items prepareDelivery, startDelivery)"), "{made}");
    assert!(
        made.contains("warning: \"campaign - marketing - reportAccess\" exists with items [reports, export]"),
        "{made}"
    );
    assert!(listed().contains("campaign - marketing - deliveryOperators"));
    let again = profiles("marketing", &["--json"]);
    let again: Value = serde_json::from_str(&again).unwrap();
    assert_eq!(again["created"].as_array().unwrap().len(), 0);
    assert_eq!(again["present"].as_array().unwrap().len(), 5);
    // A Message Center instance also gets the vendor's fixed messagecenter profile.
    let mc = profiles("mc", &[]);
    assert!(
        mc.contains(
            "created \"campaign - mc - messagecenter\" (group messageCenterAgents, items messageCenter)"
        ),
        "{mc}"
    );
}

/// A label planted to run in the administrator's spreadsheet stays text.
fn a_planted_label_stays_text(tmp: &TempDir, d: &str) {
    let planted_pw = tmp.path().join("planted.pw");
    std::fs::write(&planted_pw, "planted password 1\n").unwrap();
    run_ok(ims().args([
        "instance",
        "--data-dir",
        d,
        "operator",
        "create",
        "--instance",
        "marketing",
        "--login",
        "planted",
        "--password-file",
        planted_pw.to_str().unwrap(),
        "--label",
        "=HYPERLINK(\"http://attacker.example\",\"open\")",
    ]));
    let csv =
        String::from_utf8(assess(&["--data-dir", d, "--instance", "marketing", "--csv"]).stdout).unwrap();
    let row = csv
        .lines()
        .find(|l| l.starts_with("planted,"))
        .expect("the planted operator");
    assert!(row.contains("\"'=HYPERLINK("), "{row}");
    assert!(!row.contains(",=") && !row.contains(",\"="), "{row}");
}
