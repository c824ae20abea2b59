//! The technical phase (programs to technical accounts) and the finalisation that locks an
//! instance down.

use serde_json::Value;
use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use crate::harness::*;

#[test]
fn programs_move_to_technical_accounts_with_their_rights_and_a_working_kit() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let d = dir.to_str().unwrap();
    let (server, upj) = up(&dir, &[]);
    migrate(d, &["prepare", "--rights"]);
    migrate(d, &["prepare", "--profiles"]);
    let plan = tmp.path().join("tech.json");
    let p = plan.to_str().unwrap();
    planned_and_applied(d, p);
    each_kit_works_as_its_technical_account(&dir, &upj);
    the_technical_accounts_hold_the_legacy_rights(d);

    // Applied again: nothing more happens anywhere.
    let before = ims_audit(d);
    assert_eq!(migrate(d, &["apply", p]).matches("done earlier").count(), 3);
    assert_eq!(ims_audit(d), before);

    watched_then_retired(d);
    server.stop();
}

/// `ims migrate <args>` on marketing, which must succeed: its output.
fn migrate(d: &str, args: &[&str]) -> String {
    let out = migrate_cmd(d, "marketing", args).output().unwrap();
    assert!(
        out.status.success(),
        "{args:?}: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&out.stdout)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// `ims migrate technical <args>` on marketing: its output, whatever the exit code.
fn retire(d: &str, args: &[&str]) -> Output {
    let mut c = ims();
    c.args(["migrate", "technical"])
        .args(args)
        .args(["--data-dir", d, "--instance", "marketing"]);
    c.output().unwrap()
}

/// The technical plan `p` names a credential for each program, all in one Developer Console
/// project; applied, each program is now a technical account.
fn planned_and_applied(d: &str, p: &str) {
    let summary = migrate(
        d,
        &[
            "plan",
            "technical",
            "--out",
            p,
            "--project",
            "marketing-integrations",
        ],
    );
    assert!(
        summary.contains("every credential in the Developer Console project \"marketing-integrations\""),
        "{summary}"
    );
    for login in ["crm-sync", "web-forms", "bi-export"] {
        assert!(
            summary.contains(&format!("  {login}: credential \"marketing {login}\"")),
            "{summary}"
        );
    }
    let out = migrate(d, &["apply", p]);
    assert_eq!(out.matches(": now ").count(), 3, "{out}");
}

/// Each program's technical account operator exists (made by its first call) and holds the
/// legacy operator's direct rights; the legacy operator still works until retired. The kit's
/// "after" sample answers as the technical account.
fn each_kit_works_as_its_technical_account(dir: &Path, upj: &Value) {
    let kits = dir.join("migration-kits").join("marketing");
    let mut projects = std::collections::BTreeSet::new();
    for login in ["crm-sync", "web-forms", "bi-export"] {
        let kit = kits.join(login);
        let cred: Value =
            serde_json::from_str(&std::fs::read_to_string(kit.join("credential.json")).unwrap()).unwrap();
        // The project the IMS places the credential in, named in the kit too.
        let project = cred["project_id"]
            .as_str()
            .expect("the credential's project")
            .to_owned();
        assert!(std::fs::read_to_string(kit.join("README.md"))
            .unwrap()
            .contains(&format!("- Developer Console project: `{project}`")));
        projects.insert(project);
        assert!(
            cred["client_secret"].as_str().unwrap().starts_with("imscs_"),
            "{cred}"
        );
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(kit.join("credential.json"))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        for f in [
            "README.md",
            "before.sh",
            "after.sh",
            "after.py",
            "After.java",
            "after.mjs",
        ] {
            assert!(kit.join(f).exists(), "{f}");
        }
        let readme = std::fs::read_to_string(kit.join("README.md")).unwrap();
        assert!(readme.contains(&format!(
            "{}/nl/jsp/soaprouter.jsp",
            upj["instances"][0]["url"].as_str().unwrap()
        )));
        // The kit's "after" sample runs as given and answers as the technical account.
        let run = Command::new("sh")
            .arg("after.sh")
            .current_dir(&kit)
            .env("CURL_CA_BUNDLE", upj["ca_cert"].as_str().unwrap())
            .output()
            .unwrap();
        let answer = String::from_utf8_lossy(&run.stdout);
        assert!(
            answer.contains("GetUserInfoResponse"),
            "{answer}\n{}",
            String::from_utf8_lossy(&run.stderr)
        );
        assert!(
            answer.contains(cred["technical_account_email"].as_str().unwrap()),
            "{answer}"
        );
    }
    assert_eq!(
        projects.len(),
        1,
        "the three credentials share one project: {projects:?}"
    );
}

/// The assessment lists the three technical accounts, each holding the legacy `export` right.
fn the_technical_accounts_hold_the_legacy_rights(d: &str) {
    let assessed = ims()
        .args([
            "migrate",
            "assess",
            "--json",
            "--data-dir",
            d,
            "--instance",
            "marketing",
        ])
        .output()
        .unwrap();
    let a: Value = serde_json::from_slice(&assessed.stdout).unwrap();
    let tas: Vec<&Value> = a["operators"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|o| o["auth_type"] == "technical_account")
        .collect();
    assert_eq!(tas.len(), 3);
    for ta in &tas {
        assert!(
            ta["rights"]
                .as_array()
                .unwrap()
                .contains(&Value::String("export".into())),
            "{ta}"
        );
    }
}

/// Watched: no native traffic since the move, but not for the whole period yet; the legacy
/// operators are disabled and deleted only once quiet (or forced, with a reason).
fn watched_then_retired(d: &str) {
    let watch = migrate(d, &["technical", "watch", "--quiet-after", "1d"]);
    assert_eq!(watch.matches(": watching (now ").count(), 3, "{watch}");
    let out = retire(d, &["disable", "--operator", "crm-sync", "--quiet-after", "1d"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not ready: crm-sync is watching"));
    assert_eq!(
        retire(d, &["disable", "--operator", "crm-sync", "--force"])
            .status
            .code(),
        Some(2),
        "a forced act needs a reason"
    );
    std::thread::sleep(Duration::from_millis(1100));
    assert_eq!(
        migrate(d, &["technical", "watch", "--quiet-after", "1s"])
            .matches(": quiet (now ")
            .count(),
        3
    );
    // Deleting needs the operator disabled first; then it goes.
    let out = retire(d, &["delete", "--operator", "crm-sync", "--quiet-after", "1s"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("crm-sync is quiet (disable it first)"));
    let out = retire(d, &["disable", "--operator", "crm-sync", "--quiet-after", "1s"]);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("crm-sync: disabled by"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = retire(d, &["delete", "--operator", "crm-sync", "--quiet-after", "1s"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    // Forced, the record says by whom, in what state, and why.
    let out = retire(
        d,
        &[
            "disable",
            "--operator",
            "web-forms",
            "--force",
            "--reason",
            "the vendor switched",
            "--quiet-after",
            "1d",
        ],
    );
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        said.contains("web-forms: disabled by")
            && said.contains("forced while watching")
            && said.contains("the vendor switched"),
        "{said}"
    );
    let watch = migrate(d, &["technical", "watch", "--quiet-after", "1d"]);
    assert!(
        watch.contains("crm-sync: deleted") && watch.contains("web-forms: disabled"),
        "{watch}"
    );
    let out = retire(d, &["disable", "--operator", "admin"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("no technical plan moved admin"));
}

#[test]
fn finalisation_locks_down_the_staging_twin_first_and_records_what_was_forced() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let d = dir.to_str().unwrap();
    let (server, upj) = up(&dir, &[]);
    let names: Vec<&str> = upj["instances"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["marketing", "mc", "marketing-stage"]);
    let migrate = |instance: &str, args: &[&str]| migrate_cmd(d, instance, args).output().unwrap();
    let plan = tmp.path().join("fin.json");
    let p = plan.to_str().unwrap();

    // Production waits for its staging twin; people and programs would lose native sign-in.
    let out = migrate("marketing", &["plan", "finalize", "--out", p]);
    assert_eq!(out.status.code(), Some(1), "{}", output_text(&out));
    let t = output_text(&out);
    assert!(
        t.contains("blocker: its staging twin marketing-stage has not finished its migration"),
        "{t}"
    );
    assert!(
        t.contains(
            "these programs still sign in natively and would stop working: crm-sync, web-forms, bi-export"
        ),
        "{t}"
    );
    // An unforced plan with blockers cannot be applied.
    let out = migrate("marketing", &["apply", p]);
    assert_eq!(out.status.code(), Some(1));
    assert!(output_text(&out).contains("--force"));

    // Staging moves its people first (signing them in through the IMS from now on).
    register_ims_sign_in_of(d, "marketing-stage");
    let users_plan = tmp.path().join("stage-users.json");
    for args in [
        vec!["prepare", "--profiles"],
        vec!["plan", "users", "--out", users_plan.to_str().unwrap()],
        vec!["apply", users_plan.to_str().unwrap()],
    ] {
        let out = migrate("marketing-stage", &args);
        assert!(out.status.success(), "{args:?}: {}", output_text(&out));
    }
    let moved_one = serde_json::from_str::<Value>(&std::fs::read_to_string(&users_plan).unwrap()).unwrap()
        ["people"][0]["login"]
        .as_str()
        .unwrap()
        .to_owned();

    // The rehearsal on staging, forced past its blockers: locked down, every probe passing,
    // complete, and the force recorded.
    let out = migrate("marketing-stage", &["plan", "finalize", "--out", p, "--force"]);
    assert!(out.status.success(), "{}", output_text(&out));
    assert!(output_text(&out).contains("forced past: these people still sign in natively"));
    let out = migrate("marketing-stage", &["apply", p]);
    assert!(out.status.success(), "{}", output_text(&out));
    let t = output_text(&out);
    assert!(!t.contains("FAIL "), "{t}");
    assert!(
        t.contains("PASS ") && t.contains("locked down true, complete true (forced)"),
        "{t}"
    );
    let status: Value =
        serde_json::from_slice(&migrate("marketing-stage", &["status", "--json"]).stdout).unwrap();
    assert_eq!(status["restrictions_on"], true);
    assert_eq!(status["completion"]["forced"], true);
    assert!(status["completion"]["note"]
        .as_str()
        .unwrap()
        .contains("would lose it"));
    let audit = || {
        run_ok(ims().args([
            "instance",
            "audit",
            "--data-dir",
            d,
            "--instance",
            "marketing-stage",
            "--limit",
            "5000",
        ]))
    };
    let before = audit();
    // Applied again: nothing more is written.
    assert!(migrate("marketing-stage", &["apply", p]).status.success());
    assert_eq!(audit(), before);
    // Locked down (the probes showed native sign-in refused outside the allow-list), the engine
    // still works through it as admin, who is on the allow-list.
    let out = migrate("marketing-stage", &["status"]);
    assert!(out.status.success(), "{}", output_text(&out));
    assert!(
        output_text(&out).contains("lock-down on")
            && output_text(&out).contains("migration complete (forced) by operator:admin"),
        "{}",
        output_text(&out)
    );

    // Locked down, nobody goes back, and the IMS is not touched trying.
    let ims_before = ims_audit(d);
    let out = migrate("marketing-stage", &["rollback", "--operator", &moved_one]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        output_text(&out).contains("the instance is locked down"),
        "{}",
        output_text(&out)
    );
    assert_eq!(ims_audit(d), ims_before);
    // A plan made for another instance is refused.
    let out = migrate("marketing", &["apply", p]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        output_text(&out).contains("the plan is for the instance marketing-stage, not marketing"),
        "{}",
        output_text(&out)
    );

    // Production no longer waits for its twin.
    let out = migrate("marketing", &["plan", "finalize", "--out", p]);
    assert!(
        !output_text(&out).contains("staging twin"),
        "{}",
        output_text(&out)
    );
    server.stop();
}
