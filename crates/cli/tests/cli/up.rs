//! `ims up`: its contract file, the administration commands against the running services, restarts,
//! configuration errors and upgrades.

use reqwest::blocking::Client;
use serde_json::Value;
use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;
use tempfile::TempDir;

use crate::harness::*;

#[test]
fn up_writes_its_contract_and_tokens_survive_a_restart() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let (server, upj) = up(&dir, &[]);
    let base = the_contract_file(&dir, &upj);
    let d = dir.to_str().unwrap();
    let (cred, http, t) = credentials_from_the_cli(d, &upj, &base);

    // Restart: same port, same keys, the token still validates.
    server.stop();
    let (server, upj2) = up(&dir, &[]);
    assert_eq!(upj2["ims_url"], upj["ims_url"]);
    assert_eq!(upj2["admin_password"], upj["admin_password"]);
    assert_eq!(
        upj2["instances"], upj["instances"],
        "the instance keeps its port and admin password"
    );
    assert_eq!(introspect(&http, &base, &cred, &t)["active"], true);

    the_legacy_population(d);
    // People and their applications, created from the CLI while the IMS runs.
    let base = upj2["ims_url"].as_str().unwrap().to_owned();
    people_from_the_cli(&tmp, d);
    clients_and_reset_links_from_the_cli(d, &upj, &base);
    let instance_url = upj2["instances"][0]["url"].as_str().unwrap().to_owned();
    a_native_operator_signs_in_and_is_recorded(&tmp, d, &http, &instance_url);
    administration_through_the_operations_listener(d, &upj, &http, &base);
    rotation_and_disabling_from_the_cli(d, &http, &base, &cred, &t);
    server.stop();

    the_instance_credential_is_stored_sealed(&dir, d, &upj);
    configuration_errors_and_the_api_restriction(&dir, d, &http, &instance_url);
    upgrades_move_forward_and_apply_at_the_next_start(&dir, d, &http, &instance_url);
}

/// up.json names what was started, readable by its owner only; the IMS's address.
fn the_contract_file(dir: &Path, upj: &Value) -> String {
    for key in ["ims_url", "org_id", "admin_email", "admin_password", "ca_cert"] {
        assert!(
            upj[key].as_str().is_some_and(|s| !s.is_empty()),
            "up.json lacks {key}: {upj}"
        );
    }
    let base = upj["ims_url"].as_str().unwrap().to_owned();
    assert!(base.starts_with("https://127.0.0.1:"));
    assert!(upj["org_id"].as_str().unwrap().ends_with("@AdobeOrg"));
    let inst = &upj["instances"][0];
    assert_eq!(
        (
            inst["name"].as_str(),
            inst["build"].as_str(),
            inst["admin_login"].as_str()
        ),
        (Some("marketing"), Some("7.4.1"), Some("admin"))
    );
    assert!(inst["url"].as_str().unwrap().starts_with("https://127.0.0.1:"));
    assert!(!inst["admin_password"].as_str().unwrap().is_empty());
    assert!(Path::new(upj["ca_cert"].as_str().unwrap()).is_absolute());
    assert_eq!(
        std::fs::metadata(dir.join("up.json"))
            .unwrap()
            .permissions()
            .mode()
            & 0o777,
        0o600
    );
    base
}

/// The CLI works against the running service: a credential, its token (with the HTTP client
/// that got it) and the listing.
fn credentials_from_the_cli(d: &str, upj: &Value, base: &str) -> (Value, Client, String) {
    let cred = json_of(&run_ok(ims().args([
        "credential",
        "create",
        "--data-dir",
        d,
        "--name",
        "CRM sync",
        "--scope",
        "openid",
        "--json",
    ])));
    for key in [
        "client_id",
        "client_secret",
        "technical_account_id",
        "technical_account_email",
        "org_id",
    ] {
        assert!(cred[key].as_str().is_some_and(|s| !s.is_empty()), "{key}: {cred}");
    }
    assert_eq!(cred["org_id"], upj["org_id"]);
    let http = client(Some(Path::new(upj["ca_cert"].as_str().unwrap())));
    let t = token(&http, base, &cred);
    let listed = json_of(&run_ok(ims().args([
        "credential",
        "list",
        "--data-dir",
        d,
        "--json",
    ])));
    assert_eq!(listed[0]["client_id"], cred["client_id"]);
    assert!(
        !listed
            .to_string()
            .contains(cred["client_secret"].as_str().unwrap()),
        "listings never show a secret"
    );

    // A credential subscribed to the I/O Management API drives the Developer Console API; the
    // bare one above does not.
    let io = json_of(&run_ok(ims().args([
        "credential",
        "create",
        "--data-dir",
        d,
        "--name",
        "Console automation",
        "--service",
        "io-management",
        "--json",
    ])));
    let console = |cred: &Value| {
        http.get(format!("{base}/console/organizations"))
            .bearer_auth(token(&http, base, cred))
            .header("x-api-key", cred["client_id"].as_str().unwrap())
            .send()
            .unwrap()
    };
    let orgs: Value = console(&io).json().unwrap();
    assert_eq!(orgs[0]["code"], upj["org_id"]);
    assert_eq!(console(&cred).status(), 403);
    (cred, http, t)
}

/// The legacy population: technical operators with recorded API usage.
fn the_legacy_population(d: &str) {
    let crm = json_of(&run_ok(ims().args([
        "instance",
        "usage",
        "--calls",
        "--data-dir",
        d,
        "--instance",
        "marketing",
        "--login",
        "crm-sync",
        "--json",
    ])));
    assert!(crm[0]["calls"].as_i64().unwrap() >= 1_000, "{crm}");
    assert_eq!(crm[0]["source"], "10.20.0.15");
    let logons = json_of(&run_ok(ims().args([
        "instance",
        "usage",
        "--data-dir",
        d,
        "--instance",
        "marketing",
        "--login",
        "crm-sync",
        "--json",
    ])));
    assert_eq!(logons.as_array().unwrap().len(), 5);

    // A generated population for scale tests.
    let seeded = run_ok(ims().args([
        "instance",
        "seed",
        "--data-dir",
        d,
        "--instance",
        "marketing",
        "--operators",
        "200",
    ]));
    assert!(seeded.contains("200 operators added"), "{seeded}");
}

/// People created from the CLI; an email twice (in another case) or a common password refused.
fn people_from_the_cli(tmp: &TempDir, d: &str) {
    let ppw = tmp.path().join("person-pw");
    std::fs::write(&ppw, "a person's long passphrase\n").unwrap();
    let person = json_of(&run_ok(ims().args([
        "user",
        "create",
        "--data-dir",
        d,
        "--email",
        "Ana.Lima@Example.com",
        "--password-file",
        ppw.to_str().unwrap(),
        "--first-name",
        "Ana",
        "--json",
    ])));
    assert!(
        person["user_id"].as_str().unwrap().ends_with("@AdobeID"),
        "{person}"
    );
    assert_eq!(person["email"], "Ana.Lima@Example.com");
    let twice = ims()
        .args([
            "user",
            "create",
            "--data-dir",
            d,
            "--email",
            "ana.lima@example.com",
        ])
        .output()
        .unwrap();
    assert_eq!(
        twice.status.code(),
        Some(2),
        "an email is unique whatever its case"
    );
    assert!(String::from_utf8_lossy(&twice.stderr).contains("exists"));
    std::fs::write(tmp.path().join("weak"), "password1\n").unwrap();
    let weak = ims()
        .args([
            "user",
            "create",
            "--data-dir",
            d,
            "--email",
            "b@example.com",
            "--password-file",
        ])
        .arg(tmp.path().join("weak"))
        .output()
        .unwrap();
    assert_eq!(weak.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&weak.stderr).contains("common"),
        "{}",
        String::from_utf8_lossy(&weak.stderr)
    );
}

/// Applications registered from the CLI, a reset link, and the running IMS knowing the new
/// client at once.
fn clients_and_reset_links_from_the_cli(d: &str, upj: &Value, base: &str) {
    let web = json_of(&run_ok(ims().args([
        "client",
        "create",
        "--data-dir",
        d,
        "--name",
        "Web app",
        "--redirect-uri",
        "https://app.example/cb",
        "--json",
    ])));
    assert!(
        web["client_secret"].as_str().unwrap().starts_with("imscs_"),
        "{web}"
    );
    let spa = json_of(&run_ok(ims().args([
        "client",
        "create",
        "--data-dir",
        d,
        "--name",
        "SPA",
        "--public",
        "--redirect-uri",
        "http://127.0.0.1/cb",
        "--json",
    ])));
    assert!(spa.get("client_secret").is_none(), "{spa}");
    let bad_uri = ims()
        .args([
            "client",
            "create",
            "--data-dir",
            d,
            "--name",
            "x",
            "--redirect-uri",
            "http://app.example/cb",
        ])
        .output()
        .unwrap();
    assert_eq!(
        bad_uri.status.code(),
        Some(2),
        "plain http off loopback is refused"
    );
    let reset = run_ok(ims().args([
        "user",
        "reset-link",
        "--data-dir",
        d,
        "--email",
        "ana.lima@example.com",
    ]));
    assert!(
        reset.trim().starts_with(&format!("{base}/ims/reset/imspr_")),
        "{reset}"
    );
    // ... and mailed: the running IMS writes the message where up.json says.
    let mail_dir = Path::new(upj["mail_dir"].as_str().unwrap());
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let found = loop {
        let found = std::fs::read_dir(mail_dir)
            .unwrap()
            .filter_map(Result::ok)
            .filter_map(|e| std::fs::read_to_string(e.path()).ok())
            .find(|eml| eml.to_lowercase().contains("to: ana.lima@example.com"));
        if found.is_some() || std::time::Instant::now() > deadline {
            break found;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    };
    let eml = found.expect("the reset link was not mailed");
    // The text part is quoted-printable: long lines are folded with a soft break (`=` at the end).
    let unfolded = eml.replace("=\r\n", "").replace("=\n", "");
    assert!(unfolded.contains(reset.trim()), "{eml}");
    // The running IMS knows the new client at once.
    let no_redirect = no_redirect_client(upj);
    let authorize = authorize(&no_redirect, base, web["client_id"].as_str().unwrap());
    assert_eq!(authorize.status(), 303);
    assert!(authorize.headers()["location"]
        .to_str()
        .unwrap()
        .starts_with("/ims/signin/"));
}

/// A native operator created from the CLI signs in to the running instance, and the sign-in is
/// recorded as usage evidence.
fn a_native_operator_signs_in_and_is_recorded(tmp: &TempDir, d: &str, http: &Client, instance_url: &str) {
    let pw = tmp.path().join("pw");
    std::fs::write(&pw, "jdoe's password 1\n").unwrap();
    let created = json_of(&run_ok(ims().args([
        "instance",
        "operator",
        "create",
        "--data-dir",
        d,
        "--instance",
        "marketing",
        "--login",
        "jdoe",
        "--password-file",
        pw.to_str().unwrap(),
        "--group",
        "deliveryOperators",
        "--email",
        "jdoe@example.com",
        "--json",
    ])));
    assert_eq!(created["login"], "jdoe");
    let bad = ims()
        .args([
            "instance",
            "operator",
            "create",
            "--data-dir",
            d,
            "--instance",
            "marketing",
            "--login",
            "x",
            "--password-file",
            pw.to_str().unwrap(),
            "--group",
            "noSuchGroup",
        ])
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(2));
    let logon = r#"<SOAP-ENV:Envelope xmlns:SOAP-ENV="http://schemas.xmlsoap.org/soap/envelope/"><SOAP-ENV:Body><m:Logon xmlns:m="urn:xtk:session"><sessiontoken/><login>jdoe</login><password>jdoe's password 1</password><parameters/></m:Logon></SOAP-ENV:Body></SOAP-ENV:Envelope>"#;
    let answer = http
        .post(format!("{instance_url}/nl/jsp/soaprouter.jsp"))
        .header("SOAPAction", "xtk:session#Logon")
        .header("Content-Type", "text/xml; charset=utf-8")
        .header("ACC-SDK-Auth", "UserPassword jdoe")
        .body(logon)
        .send()
        .unwrap()
        .text()
        .unwrap();
    assert!(answer.contains("pstrSessionToken"), "{answer}");
    let usage = json_of(&run_ok(ims().args([
        "instance",
        "usage",
        "--data-dir",
        d,
        "--instance",
        "marketing",
        "--login",
        "jdoe",
        "--json",
    ])));
    assert_eq!(usage[0]["action"], "xtk:session#Logon");
    assert_eq!(usage[0]["outcome"], "success");
    assert!(usage[0]["client"].as_str().unwrap().contains("UserPassword jdoe"));
}

/// The same administration through the running IMS's API, on the operations listener
/// (loopback) only: the public port does not serve it.
fn administration_through_the_operations_listener(d: &str, upj: &Value, http: &Client, base: &str) {
    let ops = upj["ops_url"].as_str().unwrap().to_owned();
    assert!(ops.starts_with("http://127.0.0.1:"), "{ops}");
    let public_admin = http
        .get(format!("{base}/admin/v1/credentials"))
        .basic_auth(
            upj["admin_email"].as_str().unwrap(),
            upj["admin_password"].as_str(),
        )
        .send()
        .unwrap();
    assert_eq!(public_admin.status().as_u16(), 404);
    let remote = json_of(&run_ok(ims().args([
        "credential",
        "create",
        "--url",
        &ops,
        "--data-dir",
        d,
        "--name",
        "via API",
        "--scope",
        "openid",
        "--json",
    ])));
    token(http, base, &remote);
    let listed = run_ok(ims().args(["credential", "list", "--url", &ops, "--data-dir", d, "--json"]));
    assert!(listed.contains(remote["client_id"].as_str().unwrap()));
    let out = ims()
        .args([
            "credential",
            "list",
            "--url",
            &ops,
            "--ca-cert",
            upj["ca_cert"].as_str().unwrap(),
        ])
        .env("IMS_ADMIN_PASSWORD", "wrong")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("401"));
}

/// Rotation from the CLI: a second secret works beside the first, then the first is removed;
/// disabling the credential ends its tokens, and the audit log names the CLI.
fn rotation_and_disabling_from_the_cli(d: &str, http: &Client, base: &str, cred: &Value, t: &str) {
    let added = json_of(&run_ok(ims().args([
        "credential",
        "secret",
        "add",
        "--data-dir",
        d,
        "--client-id",
        cred["client_id"].as_str().unwrap(),
        "--json",
    ])));
    token(http, base, &added);
    token(http, base, cred);
    run_ok(ims().args([
        "credential",
        "secret",
        "remove",
        "--data-dir",
        d,
        "--client-id",
        cred["client_id"].as_str().unwrap(),
        "--secret-id",
        cred["secret_id"].as_str().unwrap(),
    ]));
    let r = http
        .post(format!("{base}/ims/token/v3"))
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", cred["client_id"].as_str().unwrap()),
            ("client_secret", cred["client_secret"].as_str().unwrap()),
        ])
        .send()
        .unwrap();
    assert_eq!(r.status(), 401);
    let observer = json_of(&run_ok(ims().args([
        "credential",
        "create",
        "--data-dir",
        d,
        "--name",
        "observer",
        "--json",
    ])));
    assert_eq!(introspect(http, base, &observer, t)["active"], true);
    run_ok(ims().args([
        "credential",
        "disable",
        "--data-dir",
        d,
        "--client-id",
        cred["client_id"].as_str().unwrap(),
    ]));
    assert_eq!(
        introspect(http, base, &observer, t)["active"],
        false,
        "a disabled credential's tokens die at once"
    );
    let audit = run_ok(ims().args(["audit", "--data-dir", d, "--json"]));
    for action in [
        "credential.create",
        "credential.secret.add",
        "credential.secret.remove",
        "credential.disable",
        "org.bootstrap",
    ] {
        assert!(audit.contains(action), "audit lacks {action}");
    }
    assert!(audit.contains("cli:"), "the CLI is named as the actor");
}

/// The instance's own IMS credential, in the vendor's syntax: stored sealed, never in clear.
fn the_instance_credential_is_stored_sealed(dir: &Path, d: &str, upj: &Value) {
    run_ok(ims().args([
        "instance",
        "--data-dir",
        d,
        "config",
        "-instance:marketing",
        &format!(
            "-setimsoauth:{}/cid123/TA1@techacct.ims.local/planted-secret-xyz",
            upj["org_id"].as_str().unwrap()
        ),
    ]));
    let conf = dir.join("conf").join("config-marketing.xml");
    let text = std::fs::read_to_string(&conf).unwrap();
    assert!(
        text.contains("clientId=\"cid123\"")
            && text.contains("clientSecret=\"enc:")
            && !text.contains("planted-secret-xyz"),
        "{text}"
    );
    assert_eq!(
        std::fs::metadata(&conf).unwrap().permissions().mode() & 0o777,
        0o600
    );
    for action in ["instance.config", "operator.create", "instance.build"] {
        let audit = run_ok(ims().args([
            "instance",
            "audit",
            "--data-dir",
            d,
            "--instance",
            "marketing",
            "--action",
            action,
        ]));
        assert!(audit.contains(action), "the instance audit log lacks {action}");
        assert!(!audit.contains("planted-secret-xyz"));
    }
    let bad = ims()
        .args([
            "instance",
            "--data-dir",
            d,
            "config",
            "-instance:marketing",
            "-setimsoauth:not-an-org/c/t/s",
        ])
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(2));
}

/// A configuration error stops the start and names file, line and key; the API restriction
/// switched on leaves native sign-in to the allow-list.
fn configuration_errors_and_the_api_restriction(dir: &Path, d: &str, http: &Client, instance_url: &str) {
    let server_conf = dir.join("conf").join("serverConf.xml");
    let original = std::fs::read_to_string(&server_conf).unwrap();
    std::fs::write(
        &server_conf,
        original.replace("disableAPI=\"false\"", "disableApi=\"false\""),
    )
    .unwrap();
    let refused = ims()
        .args(["up", "--data-dir", d, "--port", "0"])
        .output()
        .unwrap();
    assert_eq!(refused.status.code(), Some(2));
    let message = String::from_utf8_lossy(&refused.stderr);
    assert!(
        message.contains("serverConf.xml:5") && message.contains("nonIMSAuthnAPI/@disableApi"),
        "{message}"
    );
    // The API restriction switched on: native sign-in for the allow-list only.
    std::fs::write(
        &server_conf,
        original.replace("disableAPI=\"false\"", "disableAPI=\"true\""),
    )
    .unwrap();
    let (server, upj_r) = up(dir, &[]);
    assert!(
        soap_logon(http, instance_url, "jdoe", "jdoe's password 1").contains("XSV-350024"),
        "disableAPI refuses jdoe"
    );
    assert!(
        soap_logon(
            http,
            instance_url,
            "admin",
            upj_r["instances"][0]["admin_password"].as_str().unwrap()
        )
        .contains("pstrSessionToken"),
        "the allow-list still signs in"
    );
    server.stop();
    std::fs::write(&server_conf, &original).unwrap();
}

/// Upgrades move forward only, say what changes, and apply at the next start: on 8.6 native
/// sign-in is refused outside the allow-list.
fn upgrades_move_forward_and_apply_at_the_next_start(dir: &Path, d: &str, http: &Client, instance_url: &str) {
    let back = ims()
        .args([
            "instance",
            "upgrade",
            "--data-dir",
            d,
            "--instance",
            "marketing",
            "--to",
            "7.3.1",
        ])
        .output()
        .unwrap();
    assert_eq!(back.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&back.stderr).contains("only moves forward"));
    let said = run_ok(ims().args([
        "instance",
        "upgrade",
        "--data-dir",
        d,
        "--instance",
        "marketing",
        "--to",
        "8.6.0",
    ]));
    assert!(
        said.contains("7.4.1 -> 8.6.0") && said.contains("allow-list"),
        "{said}"
    );
    let (server, upj3) = up(dir, &[]);
    assert_eq!(upj3["instances"][0]["build"], "8.6.0");
    assert!(
        soap_logon(http, instance_url, "jdoe", "jdoe's password 1").contains("XSV-350024"),
        "jdoe is not on the allow-list"
    );
    assert!(
        soap_logon(
            http,
            instance_url,
            "admin",
            upj3["instances"][0]["admin_password"].as_str().unwrap()
        )
        .contains("pstrSessionToken"),
        "admin is"
    );
    server.stop();
}
