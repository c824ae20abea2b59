//! An instance's configuration from the CLI: its IMS sign-in and its restrictions, applied to the
//! running instance.

use serde_json::Value;
use std::path::Path;
use std::process::Output;

use crate::harness::*;

/// `ims migrate prepare --ims-connection`: the instance's IMS sign-in configured through its
/// migration API with a client the IMS's administrator registered; checked before anything is
/// written, in effect at once, the secret sealed in the instance's file.
#[test]
fn prepare_configures_the_instance_ims_sign_in_through_its_api() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let d = dir.to_str().unwrap();
    let (server, upj) = up(&dir, &[]);
    let instance_url = upj["instances"][0]["url"].as_str().unwrap().to_owned();
    let callback = format!("{instance_url}/console/ims/callback");
    let mut create = ims();
    create.args([
        "client",
        "create",
        "--data-dir",
        d,
        "--name",
        "Campaign marketing",
    ]);
    create.args(["--redirect-uri", &callback, "--first-party", "--json"]);
    for scope in [
        "openid",
        "AdobeID",
        "email",
        "profile",
        "additional_info.projectedProductContext",
    ] {
        create.args(["--scope", scope]);
    }
    let out = create.output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let client: Value = serde_json::from_slice(&out.stdout).unwrap();
    let secret_file = tmp.path().join("client.secret");
    std::fs::write(&secret_file, client["client_secret"].as_str().unwrap()).unwrap();
    let client_id = client["client_id"].as_str().unwrap();
    let prepare = |extra: &[&str]| {
        let mut c = ims();
        c.args([
            "migrate",
            "prepare",
            "--ims-connection",
            "--data-dir",
            d,
            "--instance",
            "marketing",
        ]);
        c.args(["--instance-client-id", client_id, "--instance-client-secret-file"])
            .arg(&secret_file)
            .args(extra);
        c.output().unwrap()
    };
    let conf = dir.join("conf/config-marketing.xml");
    let read_conf = || std::fs::read_to_string(&conf).unwrap_or_default();
    // A mask without its capture group is refused by the instance before anything is written.
    let out = prepare(&["--association-mask", "campaign - marketing - x"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("associationMask"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!read_conf().contains("<imsAccount"));

    let out = prepare(&["--json"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let set: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(set["client_id"], client_id);
    assert_eq!(set["callback_url"], callback.as_str());
    assert_eq!(set["association_mask"], "campaign - marketing - (.*)");
    assert!(set.get("file").is_none() && !out.stdout.windows(6).any(|w| w == b"secret"));
    let file = read_conf();
    assert!(
        file.contains("<imsAccount") && file.contains("clientSecret=\"enc:"),
        "{file}"
    );
    assert!(!file.contains(client["client_secret"].as_str().unwrap()));
    // In effect at once: the sign-in page offers the IMS.
    let page = no_redirect_client(&upj)
        .get(format!("{instance_url}/console/login"))
        .send()
        .unwrap()
        .text()
        .unwrap();
    assert!(page.contains("Connect with IMS"));
    // With the profiles prepared too, every rule of the IMS sign-in checklist holds.
    let out = ims()
        .args([
            "migrate",
            "prepare",
            "--profiles",
            "--data-dir",
            d,
            "--instance",
            "marketing",
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let out = ims()
        .args([
            "instance",
            "--data-dir",
            d,
            "ims-check",
            "--instance",
            "marketing",
            "--json",
        ])
        .output()
        .unwrap();
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    let failing: Vec<&Value> = report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["status"] == "fail")
        .collect();
    assert!(failing.is_empty(), "{failing:?}");
    server.stop();
}

/// `ims instance restrictions`: the switches are edited, the running instance reloads them on
/// the command's signal, the status and the probes report them, and a broken file keeps the
/// running state.
#[test]
fn restrictions_are_switched_reloaded_and_verified() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let d = dir.to_str().unwrap();
    let (server, upj) = up(&dir, &[]);
    let http = client(Some(Path::new(upj["ca_cert"].as_str().unwrap())));
    let instance_url = upj["instances"][0]["url"].as_str().unwrap().to_owned();
    let admin_password = upj["instances"][0]["admin_password"].as_str().unwrap().to_owned();
    let pw = tmp.path().join("jdoe.pw");
    std::fs::write(&pw, "jdoe's password 1\n").unwrap();
    let create_jdoe = |login: &str| {
        ims()
            .args([
                "instance",
                "--data-dir",
                d,
                "operator",
                "create",
                "--instance",
                "marketing",
            ])
            .args(["--login", login, "--password-file", pw.to_str().unwrap()])
            .output()
            .unwrap()
    };
    assert!(create_jdoe("jdoe").status.success());
    let cred = tmp.path().join("cred.json");
    std::fs::write(
        &cred,
        run_ok(ims().args([
            "credential",
            "create",
            "--data-dir",
            d,
            "--name",
            "probe",
            "--service",
            "campaign",
            "--json",
        ])),
    )
    .unwrap();
    let instance = |args: &[&str]| {
        let mut c = ims();
        c.args(["instance", "--data-dir", d]).args(args);
        c.output().unwrap()
    };
    let verify = || {
        instance(&[
            "restrictions",
            "verify",
            "--instance",
            "marketing",
            "--credential",
            cred.to_str().unwrap(),
        ])
    };
    let text = |o: &Output| {
        format!(
            "{}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        )
    };

    // Open: the probes fail (exit code 1) and say which.
    let open = verify();
    assert_eq!(open.status.code(), Some(1), "{}", text(&open));
    assert!(text(&open).contains("FAIL  native Logon, operator outside the allow-list"));

    let on = instance(&["restrictions", "enable", "--instance", "marketing"]);
    assert!(on.status.success(), "{}", text(&on));
    assert!(text(&on).contains("marketing: reloaded"), "{}", text(&on));
    assert!(
        soap_logon(&http, &instance_url, "jdoe", "jdoe's password 1").contains("XSV-350024"),
        "the running instance refuses jdoe at once"
    );
    assert!(soap_logon(&http, &instance_url, "admin", &admin_password).contains("pstrSessionToken"));
    let refused = create_jdoe("jdoe2");
    assert_eq!(refused.status.code(), Some(2));
    assert!(
        text(&refused).contains("native operators can no longer be created"),
        "{}",
        text(&refused)
    );

    let status = instance(&["restrictions", "status", "--json"]);
    let status: Value = serde_json::from_slice(&status.stdout).unwrap();
    assert_eq!(status[0]["instance"], "marketing");
    assert_eq!(status[0]["operator_management_restricted"], true);
    assert_eq!(status[0]["native_api_disabled"], true);
    assert_eq!(status[0]["running"], "running with these files");
    assert_eq!(status[1]["instance"], "mc");
    assert_eq!(
        status[1]["native_api_disabled"], false,
        "only marketing was locked"
    );

    let audit_before = run_ok(ims().args(["instance", "audit", "--data-dir", d, "--instance", "marketing"]));
    let locked = verify();
    assert_eq!(locked.status.code(), Some(0), "{}", text(&locked));
    assert!(text(&locked).contains("8 passed, 0 failed"), "{}", text(&locked));
    let audit_after = run_ok(ims().args(["instance", "audit", "--data-dir", d, "--instance", "marketing"]));
    assert_eq!(audit_before, audit_after, "the probes changed nothing");
    for action in ["instance.restrictions", "instance.config", "instance.reload"] {
        let a = run_ok(ims().args([
            "instance",
            "audit",
            "--data-dir",
            d,
            "--instance",
            "marketing",
            "--action",
            action,
        ]));
        assert!(a.contains(action), "{action} is audited");
    }

    // A file that does not read: the reload is refused and the running state stays.
    let conf = dir.join("conf").join("config-marketing.xml");
    let good = std::fs::read_to_string(&conf).unwrap();
    std::fs::write(&conf, good.replace("disableAPI=\"true\"", "disableAPI=\"maybe\"")).unwrap();
    let reload = instance(&["reload", "--instance", "marketing"]);
    assert_eq!(reload.status.code(), Some(2));
    assert!(
        text(&reload).contains("reload was refused") && text(&reload).contains("config-marketing.xml:"),
        "{}",
        text(&reload)
    );
    assert!(soap_logon(&http, &instance_url, "jdoe", "jdoe's password 1").contains("XSV-350024"));
    std::fs::write(&conf, &good).unwrap();

    let bad_allow = instance(&["restrictions", "enable", "--api", "--allow", "two words"]);
    assert_eq!(bad_allow.status.code(), Some(2));
    // Without --instance the shared serverConf.xml changes: mc, which sets nothing itself,
    // follows; marketing keeps what its own file says.
    let shared = instance(&["restrictions", "enable", "--api"]);
    assert!(
        text(&shared).contains("mc: reloaded") && text(&shared).contains("marketing: reloaded"),
        "{}",
        text(&shared)
    );
    let status: Value =
        serde_json::from_slice(&instance(&["restrictions", "status", "--json"]).stdout).unwrap();
    assert_eq!(status[1]["native_api_disabled"], true);
    let off = instance(&["restrictions", "disable", "--instance", "marketing"]);
    assert!(off.status.success(), "{}", text(&off));
    assert!(soap_logon(&http, &instance_url, "jdoe", "jdoe's password 1").contains("pstrSessionToken"));
    assert!(create_jdoe("jdoe2").status.success(), "creation is back");
    server.stop();

    // Not running: the change waits for the next start, which applies it.
    let later = instance(&[
        "restrictions",
        "enable",
        "--instance",
        "marketing",
        "--api",
        "--allow",
        "admin",
        "--allow",
        "jdoe|svc",
    ]);
    assert!(
        text(&later).contains("applies at its next start"),
        "{}",
        text(&later)
    );
    let (server, upj) = up(&dir, &[]);
    let instance_url = upj["instances"][0]["url"].as_str().unwrap().to_owned();
    assert!(
        soap_logon(&http, &instance_url, "jdoe", "jdoe's password 1").contains("pstrSessionToken"),
        "jdoe|svc lists jdoe"
    );
    assert!(soap_logon(&http, &instance_url, "jdoe2", "jdoe's password 1").contains("XSV-350024"));
    assert!(soap_logon(&http, &instance_url, "admin", &admin_password).contains("pstrSessionToken"));
    server.stop();
}

#[test]
fn ims_sign_in_is_configured_checked_and_reloaded() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let d = dir.to_str().unwrap();
    let (server, upj) = up(&dir, &[]);
    let instance_url = upj["instances"][0]["url"].as_str().unwrap().to_owned();
    let ims_url = upj["ims_url"].as_str().unwrap().to_owned();
    let instance = |args: &[&str]| {
        let mut c = ims();
        c.args(["instance", "--data-dir", d]).args(args);
        c.output().unwrap()
    };
    let check = || {
        let out = instance(&["ims-check", "--instance", "marketing", "--json"]);
        let report: Value = serde_json::from_slice(&out.stdout).unwrap();
        let failing: Vec<String> = report["checks"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|c| c["status"] == "fail")
            .map(|c| c["rule"].as_str().unwrap().to_owned())
            .collect();
        (out.status.code(), failing, report)
    };
    let http = no_redirect_client(&upj);
    let login_page = || {
        http.get(format!("{instance_url}/console/login"))
            .send()
            .unwrap()
            .text()
            .unwrap()
    };
    // Nothing configured: the checklist says so and how to fix it; no IMS sign-in offered.
    let (code, failing, report) = check();
    assert_eq!((code, failing), (Some(1), vec!["configuration".to_owned()]));
    assert!(report["checks"][0]["fix"]
        .as_str()
        .unwrap()
        .contains("--register"));
    assert!(!login_page().contains("Connect with IMS"));

    // Configured with a client registered at the IMS; the running instance reloads it.
    let out = instance(&["ims-config", "--instance", "marketing", "--register", "--json"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let set: Value =
        serde_json::from_slice(&out.stdout[..out.stdout.iter().rposition(|b| *b == b'}').unwrap() + 1])
            .unwrap();
    assert_eq!(
        set["callback_url"],
        format!("{instance_url}/console/ims/callback")
    );
    assert_eq!(set["association_mask"], "campaign - marketing - (.*)");
    let client_id = set["client_id"].as_str().unwrap().to_owned();
    let file = std::fs::read_to_string(dir.join("conf/config-marketing.xml")).unwrap();
    assert!(
        file.contains("<imsAccount") && file.contains("clientSecret=\"enc:"),
        "{file}"
    );
    assert!(login_page().contains("Connect with IMS"));
    // The button leads to the IMS, which accepts this client and callback.
    let resp = http
        .get(format!("{instance_url}/console/ims/login"))
        .send()
        .unwrap();
    assert_eq!(resp.status(), 303);
    let authorize = resp.headers()["location"].to_str().unwrap().to_owned();
    assert!(
        authorize.starts_with(&format!("{ims_url}/ims/authorize/v2?")),
        "{authorize}"
    );
    assert!(authorize.contains(&format!("client_id={client_id}")));
    let resp = http.get(&authorize).send().unwrap();
    assert_eq!(
        resp.status(),
        303,
        "the IMS sends the browser to its sign-in page"
    );
    assert!(resp.headers()["location"]
        .to_str()
        .unwrap()
        .contains("/ims/signin/"));

    // Only the mask fails until a profile names a group; then everything passes.
    let (code, failing, _) = check();
    assert_eq!((code, failing), (Some(1), vec!["mask".to_owned()]));
    run_ok(ims().args([
        "profile",
        "create",
        "--data-dir",
        d,
        "--instance",
        "marketing",
        "--name",
        "campaign - marketing - Administrator",
        "--permission",
        "admin",
    ]));
    let (code, failing, report) = check();
    assert_eq!((code, failing), (Some(0), Vec::<String>::new()), "{report}");
    assert_eq!(
        report["admin_profiles"][0],
        "campaign - marketing - Administrator"
    );
    let text = instance(&["ims-check", "--instance", "marketing"]);
    assert!(String::from_utf8_lossy(&text.stdout).contains("Control Panel"));
    // Registered again: a new client, the previous one disabled, the checklist still passing.
    let out = instance(&["ims-config", "--instance", "marketing", "--register"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains(&format!("({client_id}) is disabled")),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (code, failing, _) = check();
    assert_eq!((code, failing), (Some(0), Vec::<String>::new()));

    // A broken file is refused at reload and the configuration in effect stays.
    let good = std::fs::read_to_string(dir.join("conf/config-marketing.xml")).unwrap();
    std::fs::write(
        dir.join("conf/config-marketing.xml"),
        good.replace(
            "associationMask=\"campaign - marketing - (.*)\"",
            "associationMask=\"campaign - marketing - .*\"",
        ),
    )
    .unwrap();
    let out = instance(&["reload", "--instance", "marketing"]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("associationMask"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        login_page().contains("Connect with IMS"),
        "the previous configuration stays"
    );
    let (code, failing, _) = check();
    assert_eq!((code, failing), (Some(1), vec!["configuration".to_owned()]));
    std::fs::write(dir.join("conf/config-marketing.xml"), &good).unwrap();

    // Removed: the instance no longer offers it, and the audit log has each change.
    let out = instance(&["ims-config", "--instance", "marketing", "--remove"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(!login_page().contains("Connect with IMS"));
    let audit: Value = serde_json::from_slice(
        &instance(&[
            "audit",
            "--instance",
            "marketing",
            "--action",
            "instance.ims_account",
        ])
        .stdout,
    )
    .unwrap();
    assert_eq!(audit.as_array().unwrap().len(), 3, "{audit}");
    let text = audit.to_string();
    assert!(
        !text.contains("secret")
            && !text.contains("enc:")
            && audit[2]["details"]["after"]["client_id"] == client_id,
        "the change, and no secret, in the audit log: {audit}"
    );
    server.stop();
}
