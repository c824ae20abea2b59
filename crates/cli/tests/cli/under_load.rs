//! Integrations and people keep working while the end-user phase runs.

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};
use tempfile::TempDir;

use crate::harness::*;

/// An integration's call: who, what, when (since the start), and why it failed.
type Call = (String, &'static str, Duration, Duration, Option<String>);

/// A person's sign-in: who, when, the password's outcome, then the IMS's if it was tried.
#[derive(Clone, Debug)]
struct Attempt {
    login: String,
    start: Duration,
    end: Duration,
    native: String,
    ims: Option<String>,
}

impl Attempt {
    fn ok(&self) -> bool {
        self.native == "ok" || self.ims.as_deref() == Some("ok")
    }
}

/// A person: login, email, password at the instance, password at the IMS.
type Person = (String, String, String, String);

/// An integration: login and password.
type Integration = (String, String);

/// The load running on the instance: what it records, and how to end it.
struct Load {
    t0: Instant,
    stop: Arc<AtomicBool>,
    calls: Arc<Mutex<Vec<Call>>>,
    attempts: Arc<Mutex<Vec<Attempt>>>,
    threads: Vec<thread::JoinHandle<()>>,
}

#[test]
fn technical_operators_and_people_keep_working_during_the_end_user_phase() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let d = dir.to_str().unwrap().to_owned();
    let (server, upj) = up(&dir, &[]);
    let url = upj["instances"][0]["url"].as_str().unwrap().to_owned();
    let ca = PathBuf::from(upj["ca_cert"].as_str().unwrap());
    run_ok(ims().args([
        "instance",
        "seed",
        "--data-dir",
        &d,
        "--instance",
        "marketing",
        "--operators",
        "300",
    ]));
    register_ims_sign_in(&d);
    let migrate = |args: &[&str]| run_ok(&mut migrate_cmd(&d, "marketing", args));
    let (people, integrations) = known_passwords_and_ims_accounts(&tmp, &d, &upj, &url, &ca);
    let Load {
        t0,
        stop,
        calls,
        attempts,
        threads,
    } = start_the_load(&url, &ca, &integrations, &people);
    wait_for(
        "every integration and person works natively before the migration",
        &|| {
            let (c, a) = (calls.lock().unwrap(), attempts.lock().unwrap());
            integrations
                .iter()
                .all(|(l, _)| c.iter().any(|c| &c.0 == l && c.4.is_none()))
                && people
                    .iter()
                    .all(|p| a.iter().any(|a| a.login == p.0 && a.native == "ok"))
        },
    );

    // The end-user phase, in small batches so that the load meets many of them.
    migrate(&["prepare", "--profiles"]);
    let plan_file = tmp.path().join("users.json");
    migrate(&["plan", "users", "--out", plan_file.to_str().unwrap()]);
    let plan: Value = serde_json::from_str(&std::fs::read_to_string(&plan_file).unwrap()).unwrap();
    let apply_start = t0.elapsed();
    let out = migrate(&["apply", plan_file.to_str().unwrap(), "--batch", "20"]);
    let apply_end = t0.elapsed();
    assert!(out.contains("failed 0, complete"), "{out}");
    wait_for("every person signs in through the IMS after the phase", &|| {
        let a = attempts.lock().unwrap();
        people.iter().all(|p| {
            a.iter()
                .any(|a| a.login == p.0 && a.start > apply_end && a.ims.as_deref() == Some("ok"))
        })
    });
    stop.store(true, Ordering::Relaxed);
    for t in threads {
        t.join().unwrap();
    }

    no_integration_call_failed(&calls.lock().unwrap(), apply_start, apply_end);
    each_person_moved_at_its_turn(&attempts.lock().unwrap(), &people, &plan, apply_start);
    server.stop();
}

/// Known passwords, set by the administrator through the API: the integrations', and those
/// of a few people spread over the population, who also have IMS accounts already.
fn known_passwords_and_ims_accounts(
    tmp: &TempDir,
    d: &str,
    upj: &Value,
    url: &str,
    ca: &Path,
) -> (Vec<Person>, Vec<Integration>) {
    // (Exit code 1: the demo's blockers, people without an email among them.)
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
    let assessed: Value = serde_json::from_slice(&assessed.stdout).unwrap();
    let generated: Vec<(String, String)> = assessed["operators"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|o| Some((o["login"].as_str()?.to_owned(), o["email"].as_str()?.to_owned())))
        .filter(|(_, e)| e.ends_with("@scale.example.com"))
        .collect();
    let people: Vec<(String, String, String, String)> = (0..6)
        .map(|i| {
            let (login, email) = generated[i * generated.len() / 6 + 7].clone();
            (
                login.clone(),
                email,
                format!("native {login} 1"),
                format!("ims {login} passphrase"),
            )
        })
        .collect();
    let integrations: Vec<(String, String)> = ["crm-sync", "web-forms", "bi-export"]
        .iter()
        .map(|l| ((*l).to_owned(), format!("{l} password 1")))
        .collect();
    let mut admin = Browser::new(ca);
    let s = admin
        .logon(
            url,
            "admin",
            upj["instances"][0]["admin_password"].as_str().unwrap(),
        )
        .unwrap();
    let pw_file = tmp.path().join("pw");
    for (login, password) in integrations
        .iter()
        .map(|(l, p)| (l, p))
        .chain(people.iter().map(|p| (&p.0, &p.2)))
    {
        let doc = format!(
            r#"<operator xtkschema="xtk:operator" _operation="update" _key="@name" name="{login}" password="{password}"/>"#
        );
        admin
            .soap(
                url,
                "xtk:persist|xtk:session#Write",
                &format!("<domDoc>{doc}</domDoc>"),
                Some(&s),
            )
            .unwrap();
    }
    for (_, email, _, ims_password) in &people {
        std::fs::write(&pw_file, ims_password).unwrap();
        run_ok(
            ims()
                .args([
                    "user",
                    "create",
                    "--data-dir",
                    d,
                    "--email",
                    email,
                    "--type",
                    "enterpriseID",
                ])
                .arg("--password-file")
                .arg(&pw_file),
        );
    }
    (people, integrations)
}

/// The load: per integration, a scheduled job (sign in, two calls, sign off, again) and a
/// connector keeping one session; people signing in to the console, the password first.
fn start_the_load(url: &str, ca: &Path, integrations: &[Integration], people: &[Person]) -> Load {
    let t0 = Instant::now();
    let stop = Arc::new(AtomicBool::new(false));
    let calls: Arc<Mutex<Vec<Call>>> = Arc::default();
    let attempts: Arc<Mutex<Vec<Attempt>>> = Arc::default();
    let mut threads = Vec::new();
    for (login, password) in integrations {
        for long in [false, true] {
            let (stop, calls, url, ca, login, password) = (
                Arc::clone(&stop),
                Arc::clone(&calls),
                url.to_owned(),
                ca.to_owned(),
                login.clone(),
                password.clone(),
            );
            threads.push(thread::spawn(move || {
                let mut b = Browser::new(&ca);
                let record = |what: &'static str, start: Duration, r: Result<String, String>| {
                    calls
                        .lock()
                        .unwrap()
                        .push((login.clone(), what, start, t0.elapsed(), r.err()));
                };
                let mut kept = None;
                while !stop.load(Ordering::Relaxed) {
                    let start = t0.elapsed();
                    let session = match kept.clone() {
                        Some(s) => s,
                        None => match b.logon(&url, &login, &password) {
                            Ok(s) => {
                                record("Logon", start, Ok(String::new()));
                                s
                            }
                            Err(e) => {
                                record("Logon", start, Err(e));
                                thread::sleep(Duration::from_millis(20));
                                continue;
                            }
                        },
                    };
                    let start = t0.elapsed();
                    let r = b.soap(&url, "xtk:session#GetServerTime", "", Some(&session));
                    record("GetServerTime", start, r);
                    let start = t0.elapsed();
                    let query = r#"<entity><queryDef schema="nms:recipient" operation="count"/></entity>"#;
                    let r = b
                        .soap(&url, "xtk:queryDef#ExecuteQuery", query, Some(&session))
                        .and_then(|t| if t.contains("count=") { Ok(t) } else { Err(t) });
                    record("ExecuteQuery", start, r);
                    if long {
                        kept = Some(session);
                    } else {
                        let start = t0.elapsed();
                        let r = b.soap(&url, "xtk:session#Logoff", "", Some(&session));
                        record("Logoff", start, r);
                    }
                    thread::sleep(Duration::from_millis(10));
                }
            }));
        }
    }
    for half in [0, 1] {
        let (stop, attempts, url, ca) = (
            Arc::clone(&stop),
            Arc::clone(&attempts),
            url.to_owned(),
            ca.to_owned(),
        );
        let mine: Vec<_> = people.iter().skip(half).step_by(2).cloned().collect();
        threads.push(thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                for (login, email, native_pw, ims_pw) in &mine {
                    let start = t0.elapsed();
                    let mut a = Attempt {
                        login: login.clone(),
                        start,
                        end: start,
                        native: String::new(),
                        ims: None,
                    };
                    a.native = native(&mut Browser::new(&ca), &url, login, native_pw)
                        .unwrap_or_else(|e| format!("error: {e}"));
                    if a.native == "refused" {
                        a.ims = Some(
                            through_ims(&mut Browser::new(&ca), &url, email, ims_pw, login)
                                .unwrap_or_else(|e| format!("error: {e}")),
                        );
                    }
                    a.end = t0.elapsed();
                    attempts.lock().unwrap().push(a);
                }
            }
        }));
    }
    Load {
        t0,
        stop,
        calls,
        attempts,
        threads,
    }
}

/// Waits for `done`, up to 30 seconds; `what` says what was awaited.
fn wait_for(what: &str, done: &dyn Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !done() {
        assert!(Instant::now() < deadline, "{what}");
        thread::sleep(Duration::from_millis(20));
    }
}

/// Not one integration call failed, and some were made while the phase ran (from `apply_start`
/// to `apply_end`).
fn no_integration_call_failed(calls: &[Call], apply_start: Duration, apply_end: Duration) {
    let failed: Vec<&Call> = calls.iter().filter(|c| c.4.is_some()).collect();
    assert!(
        failed.is_empty(),
        "{} of {} integration calls failed: {failed:?}",
        failed.len(),
        calls.len()
    );
    let during = calls
        .iter()
        .filter(|c| c.2 >= apply_start && c.3 <= apply_end)
        .count();
    assert!(
        during > 0,
        "no integration call fell inside the apply ({apply_start:?}..{apply_end:?})"
    );
}

/// Each person: the password worked until the move, the IMS from then on. A sign-in that
/// failed both ways counts only inside the window from the first refused password to the
/// first IMS success; after that success the password never works again.
fn each_person_moved_at_its_turn(
    attempts: &[Attempt],
    people: &[Person],
    plan: &Value,
    apply_start: Duration,
) {
    for (login, ..) in people {
        assert!(
            plan["people"]
                .as_array()
                .unwrap()
                .iter()
                .any(|p| p["login"] == login.as_str()),
            "{login} is in the plan"
        );
        let mine: Vec<&Attempt> = attempts.iter().filter(|a| &a.login == login).collect();
        let first_refused = mine.iter().find(|a| a.native != "ok").unwrap();
        let first_ims = mine.iter().find(|a| a.ims.as_deref() == Some("ok")).unwrap();
        assert!(
            first_refused.start >= apply_start,
            "{login}: the password was refused before the phase began: {first_refused:?}"
        );
        for a in &mine {
            let inside = a.start >= first_refused.start && a.end <= first_ims.end;
            assert!(
                a.ok() || inside,
                "{login}: a failed sign-in outside its window: {a:?}"
            );
            assert!(
                a.start < first_ims.end || a.native != "ok",
                "{login}: the password signed in after the person had moved: {a:?}"
            );
        }
    }
}
