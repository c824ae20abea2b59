//! An instance's configuration from the CLI: its IMS sign-in and its restrictions, applied to the
//! running instance.

use reqwest::blocking::Client;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Output;
use tempfile::TempDir;

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
    let r = Restrictions::new(&tmp, d, &upj);

    // Open: the probes fail (exit code 1) and say which.
    let open = r.verify();
    assert_eq!(open.status.code(), Some(1), "{}", output_text(&open));
    assert!(output_text(&open).contains("FAIL  native Logon, operator outside the allow-list"));
    switched_on_at_once_and_verified(&r);
    a_broken_file_keeps_the_running_state(&r, &dir);
    the_shared_file_and_switching_off(&r);
    server.stop();

    // Not running: the change waits for the next start, which applies it.
    let later = r.instance(&[
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
        output_text(&later).contains("applies at its next start"),
        "{}",
        output_text(&later)
    );
    let (server, upj) = up(&dir, &[]);
    let instance_url = upj["instances"][0]["url"].as_str().unwrap().to_owned();
    assert!(
        soap_logon(&r.http, &instance_url, "jdoe", "jdoe's password 1").contains("pstrSessionToken"),
        "jdoe|svc lists jdoe"
    );
    assert!(soap_logon(&r.http, &instance_url, "jdoe2", "jdoe's password 1").contains("XSV-350024"));
    assert!(soap_logon(&r.http, &instance_url, "admin", &r.admin_password).contains("pstrSessionToken"));
    server.stop();
}

/// The marketing instance of a running `ims up`, as the restrictions test drives it.
struct Restrictions<'a> {
    d: &'a str,
    http: Client,
    instance_url: String,
    admin_password: String,
    /// jdoe's password, in a file for `operator create`.
    pw: PathBuf,
    /// A credential subscribed to Campaign, in a file for the probes.
    cred: PathBuf,
}

impl<'a> Restrictions<'a> {
    /// The instance with jdoe, a native operator, and a credential for the probes.
    fn new(tmp: &TempDir, d: &'a str, upj: &Value) -> Self {
        let http = client(Some(Path::new(upj["ca_cert"].as_str().unwrap())));
        let instance_url = upj["instances"][0]["url"].as_str().unwrap().to_owned();
        let admin_password = upj["instances"][0]["admin_password"].as_str().unwrap().to_owned();
        let pw = tmp.path().join("jdoe.pw");
        std::fs::write(&pw, "jdoe's password 1\n").unwrap();
        let cred = tmp.path().join("cred.json");
        let r = Restrictions {
            d,
            http,
            instance_url,
            admin_password,
            pw,
            cred,
        };
        assert!(r.create_jdoe("jdoe").status.success());
        std::fs::write(
            &r.cred,
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
        r
    }

    fn instance(&self, args: &[&str]) -> Output {
        instance_cmd(self.d, args)
    }

    /// Creates a native operator with jdoe's password.
    fn create_jdoe(&self, login: &str) -> Output {
        ims()
            .args([
                "instance",
                "--data-dir",
                self.d,
                "operator",
                "create",
                "--instance",
                "marketing",
            ])
            .args(["--login", login, "--password-file", self.pw.to_str().unwrap()])
            .output()
            .unwrap()
    }

    /// `restrictions verify`: the probes, with the credential.
    fn verify(&self) -> Output {
        self.instance(&[
            "restrictions",
            "verify",
            "--instance",
            "marketing",
            "--credential",
            self.cred.to_str().unwrap(),
        ])
    }
}

/// Switched on, the running instance applies the restrictions at once; the status and the
/// probes report them, and the probes change nothing.
fn switched_on_at_once_and_verified(r: &Restrictions<'_>) {
    let on = r.instance(&["restrictions", "enable", "--instance", "marketing"]);
    assert!(on.status.success(), "{}", output_text(&on));
    assert!(
        output_text(&on).contains("marketing: reloaded"),
        "{}",
        output_text(&on)
    );
    assert!(
        soap_logon(&r.http, &r.instance_url, "jdoe", "jdoe's password 1").contains("XSV-350024"),
        "the running instance refuses jdoe at once"
    );
    assert!(soap_logon(&r.http, &r.instance_url, "admin", &r.admin_password).contains("pstrSessionToken"));
    let refused = r.create_jdoe("jdoe2");
    assert_eq!(refused.status.code(), Some(2));
    assert!(
        output_text(&refused).contains("native operators can no longer be created"),
        "{}",
        output_text(&refused)
    );

    let status = r.instance(&["restrictions", "status", "--json"]);
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

    let audit_before =
        run_ok(ims().args(["instance", "audit", "--data-dir", r.d, "--instance", "marketing"]));
    let locked = r.verify();
    assert_eq!(locked.status.code(), Some(0), "{}", output_text(&locked));
    assert!(
        output_text(&locked).contains("8 passed, 0 failed"),
        "{}",
        output_text(&locked)
    );
    let audit_after = run_ok(ims().args(["instance", "audit", "--data-dir", r.d, "--instance", "marketing"]));
    assert_eq!(audit_before, audit_after, "the probes changed nothing");
    for action in ["instance.restrictions", "instance.config", "instance.reload"] {
        let a = run_ok(ims().args([
            "instance",
            "audit",
            "--data-dir",
            r.d,
            "--instance",
            "marketing",
            "--action",
            action,
        ]));
        assert!(a.contains(action), "{action} is audited");
    }
}

/// A file that does not read: the reload is refused and the running state stays.
fn a_broken_file_keeps_the_running_state(r: &Restrictions<'_>, dir: &Path) {
    let conf = dir.join("conf").join("config-marketing.xml");
    let good = std::fs::read_to_string(&conf).unwrap();
    std::fs::write(&conf, good.replace("disableAPI=\"true\"", "disableAPI=\"maybe\"")).unwrap();
    let reload = r.instance(&["reload", "--instance", "marketing"]);
    assert_eq!(reload.status.code(), Some(2));
    assert!(
        output_text(&reload).contains("reload was refused")
            && output_text(&reload).contains("config-marketing.xml:"),
        "{}",
        output_text(&reload)
    );
    assert!(soap_logon(&r.http, &r.instance_url, "jdoe", "jdoe's password 1").contains("XSV-350024"));
    std::fs::write(&conf, &good).unwrap();
}

/// Without --instance the shared serverConf.xml changes; switched off, native sign-in and
/// operator creation are back.
fn the_shared_file_and_switching_off(r: &Restrictions<'_>) {
    let bad_allow = r.instance(&["restrictions", "enable", "--api", "--allow", "two words"]);
    assert_eq!(bad_allow.status.code(), Some(2));
    // The shared file as an installation of the vendor's has it, with sections of its own: they
    // are kept when the switches are written.
    let file = Path::new(r.d).join("conf").join("serverConf.xml");
    let text = std::fs::read_to_string(&file)
        .unwrap()
        .replacen(
            "<shared>",
            "<shared>\n    <dataStore hosts=\"*\" lang=\"en_US\"><dataSource name=\"default\"/></dataStore>",
            1,
        )
        .replacen(
            "</serverConf>",
            "  <web httpAllowed=\"false\"/>\n  <mta _autoStart=\"true\"/>\n</serverConf>",
            1,
        );
    std::fs::write(&file, &text).unwrap();
    // Without --instance the shared serverConf.xml changes: mc, which sets nothing itself,
    // follows; marketing keeps what its own file says.
    let shared = r.instance(&["restrictions", "enable", "--api"]);
    let written = std::fs::read_to_string(&file).unwrap();
    assert!(
        written.contains("<dataSource name=\"default\"/></dataStore>")
            && written.contains("<mta _autoStart=\"true\"/>"),
        "{written}"
    );
    assert!(
        output_text(&shared).contains("mc: reloaded") && output_text(&shared).contains("marketing: reloaded"),
        "{}",
        output_text(&shared)
    );
    let status: Value =
        serde_json::from_slice(&r.instance(&["restrictions", "status", "--json"]).stdout).unwrap();
    assert_eq!(status[1]["native_api_disabled"], true);
    let off = r.instance(&["restrictions", "disable", "--instance", "marketing"]);
    assert!(off.status.success(), "{}", output_text(&off));
    assert!(soap_logon(&r.http, &r.instance_url, "jdoe", "jdoe's password 1").contains("pstrSessionToken"));
    assert!(r.create_jdoe("jdoe2").status.success(), "creation is back");
}

#[test]
fn ims_sign_in_is_configured_checked_and_reloaded() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let d = dir.to_str().unwrap();
    let (server, upj) = up(&dir, &[]);
    let instance_url = upj["instances"][0]["url"].as_str().unwrap().to_owned();
    let ims_url = upj["ims_url"].as_str().unwrap().to_owned();
    let http = no_redirect_client(&upj);
    // Nothing configured: the checklist says so and how to fix it; no IMS sign-in offered.
    let (code, failing, report) = ims_check(d);
    assert_eq!((code, failing), (Some(1), vec!["configuration".to_owned()]));
    assert!(report["checks"][0]["fix"]
        .as_str()
        .unwrap()
        .contains("--register"));
    assert!(!login_page(&http, &instance_url).contains("Connect with IMS"));

    let client_id = registered_at_the_ims_and_reloaded(d, &dir, &http, &instance_url, &ims_url);
    the_checklist_passes_once_a_profile_names_a_group(d, &client_id);
    a_broken_file_keeps_the_configuration_in_effect(d, &dir, &http, &instance_url);

    // Removed: the instance no longer offers it, and the audit log has each change.
    let out = instance_cmd(d, &["ims-config", "--instance", "marketing", "--remove"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(!login_page(&http, &instance_url).contains("Connect with IMS"));
    let audit: Value = serde_json::from_slice(
        &instance_cmd(
            d,
            &[
                "audit",
                "--instance",
                "marketing",
                "--action",
                "instance.ims_account",
            ],
        )
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

/// `ims-check` on the marketing instance: its exit code, the rules that fail, the report.
fn ims_check(d: &str) -> (Option<i32>, Vec<String>, Value) {
    let out = instance_cmd(d, &["ims-check", "--instance", "marketing", "--json"]);
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    let failing: Vec<String> = report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["status"] == "fail")
        .map(|c| c["rule"].as_str().unwrap().to_owned())
        .collect();
    (out.status.code(), failing, report)
}

/// The instance's console sign-in page.
fn login_page(http: &Client, instance_url: &str) -> String {
    http.get(format!("{instance_url}/console/login"))
        .send()
        .unwrap()
        .text()
        .unwrap()
}

/// Configured with a client registered at the IMS; the running instance reloads it, and its
/// button leads to the IMS. The client's id.
fn registered_at_the_ims_and_reloaded(
    d: &str,
    dir: &Path,
    http: &Client,
    instance_url: &str,
    ims_url: &str,
) -> String {
    let out = instance_cmd(
        d,
        &["ims-config", "--instance", "marketing", "--register", "--json"],
    );
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
    assert!(login_page(http, instance_url).contains("Connect with IMS"));
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
    client_id
}

/// Only the mask fails until a profile names a group; then everything passes, and a second
/// registration disables the client `client_id` of the first.
fn the_checklist_passes_once_a_profile_names_a_group(d: &str, client_id: &str) {
    let (code, failing, _) = ims_check(d);
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
    let (code, failing, report) = ims_check(d);
    assert_eq!((code, failing), (Some(0), Vec::<String>::new()), "{report}");
    assert_eq!(
        report["admin_profiles"][0],
        "campaign - marketing - Administrator"
    );
    let text = instance_cmd(d, &["ims-check", "--instance", "marketing"]);
    assert!(String::from_utf8_lossy(&text.stdout).contains("Control Panel"));
    // Registered again: a new client, the previous one disabled, the checklist still passing.
    let out = instance_cmd(d, &["ims-config", "--instance", "marketing", "--register"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains(&format!("({client_id}) is disabled")),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (code, failing, _) = ims_check(d);
    assert_eq!((code, failing), (Some(0), Vec::<String>::new()));
}

/// A broken file is refused at reload and the configuration in effect stays.
fn a_broken_file_keeps_the_configuration_in_effect(d: &str, dir: &Path, http: &Client, instance_url: &str) {
    let good = std::fs::read_to_string(dir.join("conf/config-marketing.xml")).unwrap();
    std::fs::write(
        dir.join("conf/config-marketing.xml"),
        good.replace(
            "associationMask=\"campaign - marketing - (.*)\"",
            "associationMask=\"campaign - marketing - .*\"",
        ),
    )
    .unwrap();
    let out = instance_cmd(d, &["reload", "--instance", "marketing"]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("associationMask"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        login_page(http, instance_url).contains("Connect with IMS"),
        "the previous configuration stays"
    );
    let (code, failing, _) = ims_check(d);
    assert_eq!((code, failing), (Some(1), vec!["configuration".to_owned()]));
    std::fs::write(dir.join("conf/config-marketing.xml"), &good).unwrap();
}
