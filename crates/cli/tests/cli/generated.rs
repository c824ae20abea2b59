//! Generated legacy populations through the end-user phase and its rollback.

use ims_campaign::store::{OperatorStore as _, UsageStore as _};
use ims_core::lockout::ThrottleStore as _;
use ims_store::instance::SqlInstanceStore;
use ims_wire::migration::OperatorFacts;
use proptest::test_runner::{Config, TestRunner};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use tempfile::TempDir;

use crate::harness::*;

/// One operator of a generated legacy population, before its case names it.
#[derive(Clone, Debug)]
struct Legacy {
    login: String,
    email: LegacyEmail,
    /// A space either side of the address, as imports leave them.
    padded: bool,
    disabled: bool,
    /// Indexes into the instance's groups.
    groups: Vec<usize>,
    /// Rights held directly: indexes into those its groups carry, or into every right on offer
    /// when `beyond` (some then none of its groups carries).
    rights: Vec<usize>,
    beyond: bool,
    /// Signs in and calls the API, never the console: a program, which the end-user phase
    /// leaves alone.
    program: bool,
}

#[derive(Clone, Debug)]
enum LegacyEmail {
    None,
    /// `local@` the case's domain: short locals collide now and then, as real ones do.
    Local(String),
    /// An earlier operator's address, upper-cased: the same person case-insensitively.
    CaseOf(usize),
    /// An earlier operator's very address.
    SameAs(usize),
    /// At the IMS's limits (a 64-byte local part, 254 bytes in all), or one byte over.
    Longest {
        fits: bool,
    },
    Invalid(&'static str),
}

fn legacy_population(groups: usize) -> impl proptest::strategy::Strategy<Value = Vec<Legacy>> {
    use proptest::prelude::*;
    let login = prop_oneof![
        "[a-z][a-z0-9._-]{0,12}",
        "\\p{L}{1,16}",
        "[a-zA-Z0-9]{64}",
        "\\p{L}{120,200}",
    ];
    let email = prop_oneof![
        2 => Just(LegacyEmail::None),
        6 => "[a-z]{1,2}".prop_map(LegacyEmail::Local),
        3 => "\\p{L}{1,8}".prop_map(LegacyEmail::Local),
        2 => (0..64usize).prop_map(LegacyEmail::CaseOf),
        1 => (0..64usize).prop_map(LegacyEmail::SameAs),
        1 => any::<bool>().prop_map(|fits| LegacyEmail::Longest { fits }),
        1 => prop_oneof![Just("no-at-sign"), Just("two words@example.com"), Just("a@nodot"), Just("@example.com")]
            .prop_map(LegacyEmail::Invalid),
    ];
    let one = (
        login,
        email,
        prop::bool::weighted(0.1),
        prop::bool::weighted(0.15),
        prop_oneof![1 => Just(BTreeSet::new()), 6 => prop::collection::btree_set(0..groups, 1..3)],
        prop::collection::btree_set(0..64usize, 0..3),
        prop::bool::weighted(0.2),
        prop::bool::weighted(0.15),
    )
        .prop_map(
            |(login, email, padded, disabled, groups, rights, beyond, program)| Legacy {
                login,
                email,
                padded,
                disabled,
                groups: groups.into_iter().collect(),
                rights: rights.into_iter().collect(),
                beyond,
                program,
            },
        );
    prop::collection::vec(one, 1..14)
}

/// An operator as a case creates it.
#[derive(Clone, Debug)]
struct Made {
    login: String,
    email: Option<String>,
    disabled: bool,
    groups: Vec<String>,
    rights: Vec<String>,
    program: bool,
}

/// The population of case `tag`, with logins and addresses no other case uses. `groups` are the
/// instance's, with the rights each carries; `rights`, every right on offer.
fn made(tag: u32, population: &[Legacy], groups: &[(String, Vec<String>)], rights: &[String]) -> Vec<Made> {
    let domain = format!("case{tag}.example.com");
    let mut emails: Vec<Option<String>> = Vec::new();
    let mut out = Vec::new();
    for (i, g) in population.iter().enumerate() {
        let mut login = format!("p{tag}x{i}-{}", g.login);
        if login.is_ascii() {
            // The longest login the instance accepts today.
            login.truncate(64);
        }
        let email = match &g.email {
            LegacyEmail::None => None,
            LegacyEmail::Local(l) => Some(format!("{l}@{domain}")),
            LegacyEmail::CaseOf(j) if i > 0 => emails[j % i].as_ref().map(|e: &String| e.to_uppercase()),
            LegacyEmail::SameAs(j) if i > 0 => emails[j % i].clone(),
            LegacyEmail::CaseOf(_) | LegacyEmail::SameAs(_) => None,
            LegacyEmail::Longest { fits } => {
                let local = format!("{i}{}", "l".repeat(63 - i.to_string().len()));
                let pad = 254 - local.len() - 1 - domain.len() - 1 + usize::from(!fits);
                Some(format!("{local}@{}.{domain}", "d".repeat(pad)))
            }
            LegacyEmail::Invalid(s) => Some(format!("{s}{tag}x{i}")),
        };
        emails.push(email.clone());
        let carried: Vec<&String> = g
            .groups
            .iter()
            .flat_map(|&k| &groups[k].1)
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        let offer: Vec<&String> = if g.beyond {
            rights.iter().collect()
        } else {
            carried
        };
        let mut held: Vec<String> = g
            .rights
            .iter()
            .filter(|_| !offer.is_empty())
            .map(|&k| offer[k % offer.len()].clone())
            .collect();
        held.sort();
        held.dedup();
        out.push(Made {
            login,
            email: email.map(|e| if g.padded { format!(" {e} ") } else { e }),
            disabled: g.disabled,
            groups: g.groups.iter().map(|&k| groups[k].0.clone()).collect(),
            rights: held,
            program: g.program,
        });
    }
    out
}

/// Property test over legacy populations: Unicode and extreme-length logins, addresses shared
/// exactly or case-insensitively, padded, at the IMS's length limits or invalid, disabled
/// operators, rights held directly (within and beyond their groups), programs among people.
/// Each case plans and applies the end-user phase, then rolls it back, and checks the
/// invariants each time: no operator lost or changed, exactly the eligible people moved, one
/// identity per address linked by one operator, no right widened, every person signing in as
/// before (through the IMS once moved), both sides reconciled. Cases share one `ims up`; each
/// uses logins and addresses of its own (`IMS_PROPTEST_CASES`, default 12).
#[test]
fn generated_populations_keep_the_invariants_through_the_end_user_phase_and_its_rollback() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let d = dir.to_str().unwrap().to_owned();
    let (server, upj) = up(&dir, &[]);
    let url = upj["instances"][0]["url"].as_str().unwrap().to_owned();
    let admin_pw = upj["instances"][0]["admin_password"].as_str().unwrap().to_owned();
    let ca = PathBuf::from(upj["ca_cert"].as_str().unwrap());
    register_ims_sign_in(&d);
    ok(migrate_cmd(&d, "marketing", &["prepare", "--profiles"])
        .output()
        .unwrap());
    let cred: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("migration-credential.json")).unwrap())
            .unwrap();
    let pw_file = tmp.path().join("ims-password");
    std::fs::write(&pw_file, IMS_PASSWORD).unwrap();

    // The legacy state is written straight into the instance's database, as older builds left
    // it: today's write rules (ASCII logins of 64 characters at most) would refuse some of it.
    let rt = tokio::runtime::Runtime::new().unwrap();
    let mut opts = ims_store::Options::new(format!(
        "sqlite://{}",
        dir.join("instance-marketing.db").display()
    ));
    opts.migrate = false;
    let store = rt
        .block_on(SqlInstanceStore::open(&opts, ims_core::Now::system()))
        .unwrap();
    let hash = rt
        .block_on(ims_core::password::hash(&ims_core::secret::Secret::new(PASSWORD)))
        .unwrap();
    let carried = carried_rights(&url, &ca, &admin_pw);
    let groups: Vec<(String, Vec<String>)> = carried
        .iter()
        .map(|(g, r)| (g.clone(), r.iter().cloned().collect()))
        .collect();
    let mut rights: Vec<String> = carried
        .values()
        .flatten()
        .cloned()
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    rights.extend(["export".to_owned(), "sql".to_owned()]);
    rights.sort();
    rights.dedup();
    let bench = Bench {
        tmp: &tmp,
        d: &d,
        upj: &upj,
        url: &url,
        admin_pw: &admin_pw,
        ca: &ca,
        cred: &cred,
        pw_file: &pw_file,
        rt: &rt,
        store: &store,
        hash: &hash,
        carried: &carried,
    };

    let cases = std::env::var("IMS_PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(12);
    let mut runner = TestRunner::new(Config {
        cases,
        max_shrink_iters: 16,
        failure_persistence: None,
        ..Config::default()
    });
    let tag = std::cell::Cell::new(0u32);
    let result = runner.run(&legacy_population(groups.len()), |population| {
        tag.set(tag.get() + 1);
        let made = made(tag.get(), &population, &groups, &rights);
        one_case(&bench, tag.get(), &made);
        Ok(())
    });
    if let Err(e) = result {
        panic!("{e}");
    }
    server.stop();
}

/// The password every generated operator has at the instance.
const PASSWORD: &str = "a legacy passphrase";
/// The password of every moved person at the IMS.
const IMS_PASSWORD: &str = "an ims passphrase";

/// The rights each of the instance's groups carries, by group.
type Carried = BTreeMap<String, BTreeSet<String>>;

/// What every case works with: the running `ims up`, the engine's credential, the IMS password
/// in a file, the instance's database opened directly with the legacy password's hash, and the
/// rights each of the instance's groups carries.
#[derive(Clone, Copy)]
struct Bench<'a> {
    tmp: &'a TempDir,
    d: &'a str,
    upj: &'a Value,
    url: &'a str,
    admin_pw: &'a str,
    ca: &'a Path,
    cred: &'a Value,
    pw_file: &'a Path,
    rt: &'a tokio::runtime::Runtime,
    store: &'a SqlInstanceStore,
    hash: &'a String,
    carried: &'a Carried,
}

/// The instance's groups with the rights each carries, read through its migration API.
fn carried_rights(url: &str, ca: &Path, admin_pw: &str) -> Carried {
    let mut admin = Browser::new(ca);
    let session = admin.logon(url, "admin", admin_pw).unwrap();
    let facts = migration_api(&mut admin, url, &session, "/instance");
    let carried: Carried = facts["groups"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| {
            let rights = g["rights"]
                .as_array()
                .unwrap()
                .iter()
                .map(|r| r.as_str().unwrap().to_owned());
            (g["name"].as_str().unwrap().to_owned(), rights.collect())
        })
        .collect();
    carried
}

/// The product profile the default mask names for group `g`.
fn mask(g: &str) -> String {
    format!("campaign - marketing - {g}")
}

/// An email address as the IMS matches it.
fn key(e: &str) -> String {
    e.trim().to_lowercase()
}

/// One case: the population `made` (case `tag`) written as older builds left it, the end-user
/// phase planned and applied, then rolled back, the invariants checked after each.
fn one_case(bench: &Bench<'_>, tag: u32, made: &[Made]) {
    let Bench {
        tmp,
        d,
        upj,
        url,
        admin_pw,
        ca,
        cred,
        ..
    } = *bench;
    let migrate = |args: &[&str]| migrate_cmd(d, "marketing", args).output().unwrap();
    // Every case signs in from 127.0.0.1 and leaves refusals behind (disabled people, moved
    // people trying their old password). Added up over the cases they would pass the address's
    // lock-out allowance, which stands for everyone behind one office address and is proven by
    // the lock-out tests; here each case is a population of its own, so it starts with the
    // address's counter clear, as a new office would.
    bench
        .rt
        .block_on(
            bench
                .store
                .clear_failures(ims_core::lockout::ADDRESS_SCOPE, "127.0.0.1"),
        )
        .unwrap();
    write_legacy(bench, made);
    // How each signs in before: people at the console, programs through the API.
    let was: Vec<String> = made.iter().map(|m| signs_in(ca, url, m)).collect();
    for (m, w) in made.iter().zip(&was) {
        if !m.program {
            assert_eq!(w, if m.disabled { "refused" } else { "ok" }, "{m:?}");
        }
    }
    let mut b = Browser::new(ca);
    let session = b.logon(url, "admin", admin_pw).unwrap();
    let before = all_operators(&mut b, url, &session);
    let users_before = org_users(upj, cred);

    let plan_file = tmp.path().join(format!("users-{tag}.json"));
    let p = plan_file.to_str().unwrap();
    ok(migrate(&["plan", "users", "--out", p]));
    let plan: Value = serde_json::from_str(&std::fs::read_to_string(&plan_file).unwrap()).unwrap();
    let planned = the_plan_follows_the_rules(bench, made, &before, &plan);
    ok(migrate(&["apply", p]));

    let now_ops = all_operators(&mut b, url, &session);
    same(&before, &now_ops, &planned);
    identities(upj, cred, &users_before, &now_ops);
    moved_people_sign_in_through_the_ims(bench, made, &was, &planned);

    // Rolled back: everyone as before, signing in as before, the profiles left.
    ok(migrate(&[
        "rollback",
        "--plan",
        plan["plan_id"].as_str().unwrap(),
    ]));
    let now_ops = all_operators(&mut b, url, &session);
    same(&before, &now_ops, &BTreeSet::new());
    identities(upj, cred, &users_before, &now_ops);
    for (m, w) in made.iter().zip(&was) {
        assert_eq!(&signs_in(ca, url, m), w, "{m:?} after the rollback");
    }
    let status: Value = serde_json::from_str(&ok(migrate(&["status", "--json"]))).unwrap();
    let r = &status["reconciliation"];
    let linked_before = before.iter().filter(|o| o.ims_id.is_some()).count() as u64;
    assert_eq!(
        (&r["differences"], r["linked_operators"].as_u64()),
        (&serde_json::json!([]), Some(linked_before)),
        "{r}"
    );
    let ours = made.iter().filter(|m| planned.contains(&m.login)).count();
    eprintln!(
        "case {}: {} operators, {ours} moved and back, {} in the plan",
        tag,
        made.len(),
        planned.len()
    );
}

/// The population written straight into the instance's database, with API usage recorded for
/// the programs.
fn write_legacy(bench: &Bench<'_>, made: &[Made]) {
    let Bench { rt, store, hash, .. } = *bench;
    let now = ims_core::Now::system();
    for m in made {
        let mut op = ims_campaign::model::Operator::native(
            &m.login,
            m.email.clone(),
            m.groups.clone(),
            Some(hash.clone()),
            now,
        );
        op.disabled = m.disabled;
        op.rights = m.rights.clone();
        let event = ims_core::audit::Context::new(now, "system:import").event(
            "operator.create",
            &m.login,
            "success",
            serde_json::json!({"reason": "legacy population"}),
        );
        let id = rt.block_on(store.create_operator(&op, &event)).unwrap();
        if m.program {
            let key = ims_campaign::usage::UsageKey {
                login: m.login.clone(),
                operator_id: Some(id),
                action: "xtk:queryDef#ExecuteQuery".into(),
                auth_path: ims_campaign::model::AuthPath::Native,
                source: "10.1.2.3".into(),
                client: "a nightly job".into(),
                outcome: "success".into(),
            };
            let counts = ims_campaign::usage::UsageCounts {
                calls: 12,
                first_at: now.plus_secs(-86_400),
                last_at: now.plus_secs(-60),
            };
            rt.block_on(store.add_usage(&[ims_campaign::usage::UsageSummary { key, counts }]))
                .unwrap();
        }
    }
}

/// How `m` signs in: a person at the console, a program through the API.
fn signs_in(ca: &Path, url: &str, m: &Made) -> String {
    let mut b = Browser::new(ca);
    if m.program {
        b.logon(url, &m.login, PASSWORD)
            .map(|_| "ok".to_owned())
            .unwrap_or_else(|e| e)
    } else {
        native(&mut b, url, &m.login, PASSWORD).unwrap()
    }
}

/// Who moves, by the rules and nothing else: people (not programs), enabled, with an address
/// the IMS takes that no other operator shares (among the operators `before`), in a group at
/// least (a profile is what lets a person in through the IMS), holding no right beyond their
/// groups. The plan moves exactly those and says why it leaves the other people; the logins it
/// moves.
fn the_plan_follows_the_rules(
    bench: &Bench<'_>,
    made: &[Made],
    before: &[OperatorFacts],
    plan: &Value,
) -> BTreeSet<String> {
    let carried = bench.carried;
    let mut holders: HashMap<String, usize> = HashMap::new();
    for o in before {
        if let Some(e) = o.email.as_deref().filter(|e| !e.trim().is_empty()) {
            *holders.entry(key(e)).or_default() += 1;
        }
    }
    let eligible = |m: &Made| {
        let from_groups: BTreeSet<&String> = m.groups.iter().flat_map(|g| &carried[g]).collect();
        !m.program
            && !m.disabled
            && m.email
                .as_deref()
                .is_some_and(|e| ims_identity::people::check_email(e.trim()).is_ok() && holders[&key(e)] == 1)
            && m.rights.iter().all(|r| from_groups.contains(r))
            && !m.groups.is_empty()
    };
    let planned: BTreeSet<String> = logins_in(&plan["people"]).into_iter().collect();
    let skipped: BTreeSet<String> = logins_in(&plan["skipped"]).into_iter().collect();
    for m in made {
        assert_eq!(planned.contains(&m.login), eligible(m), "{m:?}\n{plan}");
        assert_eq!(
            skipped.contains(&m.login),
            !m.program && !eligible(m),
            "{m:?}\n{plan}"
        );
    }
    planned
}

/// Nothing lost or changed but the way the `moved` people sign in: the operators `now` are
/// those `before`.
fn same(before: &[OperatorFacts], now: &[OperatorFacts], moved: &BTreeSet<String>) {
    let was: HashMap<&str, &OperatorFacts> = before.iter().map(|o| (o.login.as_str(), o)).collect();
    assert_eq!(now.len(), before.len(), "operators lost or added");
    for o in now {
        let w = was
            .get(o.login.as_str())
            .unwrap_or_else(|| panic!("{} appeared", o.login));
        assert_eq!(
            (&o.email, o.disabled, &o.groups, &o.rights),
            (&w.email, w.disabled, &w.groups, &w.rights),
            "{}",
            o.login
        );
        if moved.contains(&o.login) {
            assert!(o.auth_type == "ims" && o.ims_id.is_some(), "{o:?}");
        } else {
            assert_eq!(
                (&o.auth_type, &o.ims_id),
                (&w.auth_type, &w.ims_id),
                "{}",
                o.login
            );
        }
    }
}

/// One identity per address, each linked by one of the operators `now` and holding exactly the
/// profiles of its operator's groups; the others hold what they held (`users_before`).
fn identities(upj: &Value, cred: &Value, users_before: &[Value], now: &[OperatorFacts]) {
    let users = org_users(upj, cred);
    let mut seen = BTreeSet::new();
    for u in &users {
        assert!(
            seen.insert(key(u["email"].as_str().unwrap())),
            "two users for {u}"
        );
    }
    let of_instance = |u: &Value| -> BTreeSet<String> {
        u["groups"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|g| g.as_str())
            .filter(|g| g.starts_with("campaign - marketing - "))
            .map(str::to_owned)
            .collect()
    };
    let mut linked: HashMap<&str, &str> = HashMap::new();
    for o in now.iter().filter(|o| o.auth_type == "ims") {
        let id = o.ims_id.as_deref().unwrap();
        assert!(linked.insert(id, &o.login).is_none(), "{id} linked twice");
        let u = users
            .iter()
            .find(|u| u["id"] == id)
            .unwrap_or_else(|| panic!("{o:?}: no such user"));
        assert_eq!(
            key(u["email"].as_str().unwrap()),
            key(o.email.as_deref().unwrap()),
            "{o:?}"
        );
        let want: BTreeSet<String> = o.groups.iter().map(|g| mask(g)).collect();
        assert_eq!(of_instance(u), want, "{o:?}: {u}");
    }
    for u in users
        .iter()
        .filter(|u| !linked.contains_key(u["id"].as_str().unwrap()))
    {
        let w = users_before.iter().find(|w| w["id"] == u["id"]);
        assert_eq!(of_instance(u), w.map(of_instance).unwrap_or_default(), "{u}");
    }
}

/// The `planned` people get their IMS password; then every person signs in as before (`was`):
/// the moved ones through the IMS, and no longer with the password. Both sides agree.
fn moved_people_sign_in_through_the_ims(
    bench: &Bench<'_>,
    made: &[Made],
    was: &[String],
    planned: &BTreeSet<String>,
) {
    let Bench {
        d, url, ca, pw_file, ..
    } = *bench;
    for m in made.iter().filter(|m| planned.contains(&m.login)) {
        let email = m.email.as_deref().unwrap().trim();
        run_ok(
            ims()
                .args(["user", "set-password", "--data-dir", d, "--email", email])
                .arg("--password-file")
                .arg(pw_file),
        );
    }
    // Every person signs in as before: the moved ones through the IMS, and no longer with
    // the password.
    for (m, w) in made.iter().zip(was) {
        if planned.contains(&m.login) {
            let mut b = Browser::new(ca);
            let email = m.email.as_deref().unwrap().trim();
            assert_eq!(
                through_ims(&mut b, url, email, IMS_PASSWORD, &m.login).unwrap(),
                "ok",
                "{m:?}"
            );
            assert_eq!(
                native(&mut Browser::new(ca), url, &m.login, PASSWORD).unwrap(),
                "refused"
            );
        } else {
            assert_eq!(&signs_in(ca, url, m), w, "{m:?}");
        }
    }
    let status: Value = serde_json::from_str(&ok(migrate_cmd(d, "marketing", &["status", "--json"])
        .output()
        .unwrap()))
    .unwrap();
    let r = &status["reconciliation"];
    assert_eq!(
        (&r["differences"], &r["not_linked_yet"]),
        (&serde_json::json!([]), &serde_json::json!([])),
        "{r}"
    );
}
