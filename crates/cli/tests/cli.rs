//! The `ims` binary end to end: `up` and its contract file, the administration commands, restarts,
//! two nodes on one PostgreSQL database, configuration refusals, and logs free of secrets.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

const IMS: &str = env!("CARGO_BIN_EXE_ims");

fn ims() -> Command {
    let mut c = Command::new(IMS);
    // Tests choose their configuration; nothing leaks in from the environment running them.
    for (k, _) in std::env::vars() {
        if k.starts_with("IMS_") {
            c.env_remove(k);
        }
    }
    c
}

fn run_ok(cmd: &mut Command) -> String {
    let out: Output = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{:?} failed: {}\n{}",
        cmd,
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&out.stdout)
    );
    String::from_utf8(out.stdout).unwrap()
}

struct Server {
    child: Child,
    log: PathBuf,
}

impl Server {
    fn stop(mut self) -> String {
        // SIGTERM: the server shuts down gracefully.
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            if self.child.try_wait().unwrap().is_some() {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn spawn(mut cmd: Command, log: &Path) -> Server {
    let file = std::fs::File::create(log).unwrap();
    let child = cmd
        .stdout(Stdio::from(file.try_clone().unwrap()))
        .stderr(Stdio::from(file))
        .spawn()
        .unwrap();
    Server {
        child,
        log: log.to_owned(),
    }
}

/// Starts `ims up` and waits for the up.json this process wrote.
fn up(dir: &Path, extra_env: &[(&str, &str)]) -> (Server, Value) {
    let mut cmd = ims();
    cmd.args(["up", "--data-dir", dir.to_str().unwrap(), "--port", "0"]);
    for (k, v) in extra_env {
        cmd.env(k, v);
    }
    let log = dir.with_extension(format!("log{}", std::process::id() ^ rand_u32()));
    let server = spawn(cmd, &log);
    let pid = server.child.id();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(text) = std::fs::read_to_string(dir.join("up.json")) {
            if let Ok(v) = serde_json::from_str::<Value>(&text) {
                if v["pid"] == pid {
                    wait_ready(
                        &client(Some(Path::new(v["ca_cert"].as_str().unwrap()))),
                        v["ims_url"].as_str().unwrap(),
                    );
                    return (server, v);
                }
            }
        }
        assert!(
            Instant::now() < deadline,
            "ims up did not start: {}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The standard output of a command that must have succeeded (else its output is the failure).
fn ok(out: Output) -> String {
    assert!(
        out.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&out.stdout)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Registers the `marketing` instance's IMS sign-in (its client at the IMS, the instance's
/// configuration, reloaded): "Connect with IMS" works from then on.
fn register_ims_sign_in(data_dir: &str) {
    run_ok(ims().args([
        "instance",
        "--data-dir",
        data_dir,
        "ims-config",
        "--instance",
        "marketing",
        "--register",
    ]));
}

/// The logins of a plan's list (`people`, `skipped`).
fn logins_in(list: &Value) -> Vec<String> {
    list.as_array()
        .unwrap()
        .iter()
        .map(|p| p["login"].as_str().unwrap().to_owned())
        .collect()
}

fn rand_u32() -> u32 {
    u32::from_str_radix(&ims_core::secret::random_hex(4), 16).unwrap()
}

fn client(ca: Option<&Path>) -> reqwest::blocking::Client {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let mut b = reqwest::blocking::Client::builder().timeout(Duration::from_secs(20));
    if let Some(ca) = ca {
        let pem = std::fs::read(ca).unwrap();
        b = b.add_root_certificate(reqwest::Certificate::from_pem(&pem).unwrap());
    }
    b.build().unwrap()
}

/// A client trusting `ims up`'s CA that does not follow redirects (to read `Location`).
fn no_redirect_client(upj: &Value) -> reqwest::blocking::Client {
    let pem = std::fs::read(upj["ca_cert"].as_str().unwrap()).unwrap();
    reqwest::blocking::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(&pem).unwrap())
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

/// An authorization request of the code flow for `client_id` (redirect `https://app.example/cb`).
fn authorize(http: &reqwest::blocking::Client, base: &str, client_id: &str) -> reqwest::blocking::Response {
    http.get(format!("{base}/ims/authorize/v2"))
        .query(&[
            ("client_id", client_id),
            ("redirect_uri", "https://app.example/cb"),
            ("response_type", "code"),
            ("scope", "openid"),
            ("code_challenge", "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"),
            ("code_challenge_method", "S256"),
        ])
        .send()
        .unwrap()
}

fn wait_ready(http: &reqwest::blocking::Client, base: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(r) = http.get(format!("{base}/health/ready")).send() {
            if r.status().is_success() {
                return;
            }
        }
        assert!(Instant::now() < deadline, "{base} never became ready");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn token(http: &reqwest::blocking::Client, base: &str, cred: &Value) -> String {
    let r = http
        .post(format!("{base}/ims/token/v3"))
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", cred["client_id"].as_str().unwrap()),
            ("client_secret", cred["client_secret"].as_str().unwrap()),
        ])
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    r.json::<Value>().unwrap()["access_token"]
        .as_str()
        .unwrap()
        .to_owned()
}

fn introspect(http: &reqwest::blocking::Client, base: &str, cred: &Value, token: &str) -> Value {
    http.post(format!("{base}/ims/introspect/v1"))
        .basic_auth(
            cred["client_id"].as_str().unwrap(),
            cred["client_secret"].as_str(),
        )
        .form(&[("token", token)])
        .send()
        .unwrap()
        .json()
        .unwrap()
}

/// A client trusting the CA of an `ims up`.
fn http_client_for(upj: &Value) -> reqwest::blocking::Client {
    client(Some(Path::new(upj["ca_cert"].as_str().unwrap())))
}

/// `xtk:session#Logon` on an instance; the raw answer.
fn soap_logon(http: &reqwest::blocking::Client, instance_url: &str, login: &str, password: &str) -> String {
    let body = format!(
        r#"<SOAP-ENV:Envelope xmlns:SOAP-ENV="http://schemas.xmlsoap.org/soap/envelope/"><SOAP-ENV:Body><m:Logon xmlns:m="urn:xtk:session"><sessiontoken/><login>{login}</login><password>{password}</password><parameters/></m:Logon></SOAP-ENV:Body></SOAP-ENV:Envelope>"#
    );
    http.post(format!("{instance_url}/nl/jsp/soaprouter.jsp"))
        .header("SOAPAction", "xtk:session#Logon")
        .body(body)
        .send()
        .unwrap()
        .text()
        .unwrap()
}

/// An administrator sets `login`'s password through `xtk:session#Write`; the raw answer.
fn soap_set_password(
    http: &reqwest::blocking::Client,
    instance_url: &str,
    admin_password: &str,
    login: &str,
    password: &str,
) -> String {
    let answer = soap_logon(http, instance_url, "admin", admin_password);
    let token = |name: &str| {
        answer
            .split(&format!("<{name}"))
            .nth(1)
            .and_then(|t| t.split_once('>'))
            .and_then(|(_, t)| t.split('<').next())
            .unwrap_or_else(|| panic!("no {name} in {answer}"))
            .to_owned()
    };
    let doc = format!(
        r#"<operator xtkschema="xtk:operator" _operation="update" _key="@name" name="{login}" password="{password}"/>"#
    );
    let body = format!(
        r#"<SOAP-ENV:Envelope xmlns:SOAP-ENV="http://schemas.xmlsoap.org/soap/envelope/"><SOAP-ENV:Body><m:Write xmlns:m="urn:xtk:session"><sessiontoken/><domDoc>{doc}</domDoc></m:Write></SOAP-ENV:Body></SOAP-ENV:Envelope>"#
    );
    http.post(format!("{instance_url}/nl/jsp/soaprouter.jsp"))
        .header("SOAPAction", "xtk:persist|xtk:session#Write")
        .header("X-Session-Token", token("pstrSessionToken"))
        .header("X-Security-Token", token("pstrSecurityToken"))
        .body(body)
        .send()
        .unwrap()
        .text()
        .unwrap()
}

fn json_of(out: &str) -> Value {
    serde_json::from_str(out).unwrap()
}

#[test]
fn up_writes_its_contract_and_tokens_survive_a_restart() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let (server, upj) = up(&dir, &[]);
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
    use std::os::unix::fs::PermissionsExt as _;
    assert_eq!(
        std::fs::metadata(dir.join("up.json"))
            .unwrap()
            .permissions()
            .mode()
            & 0o777,
        0o600
    );

    // The CLI works against the running service.
    let d = dir.to_str().unwrap();
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
    let t = token(&http, &base, &cred);
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
            .bearer_auth(token(&http, &base, cred))
            .header("x-api-key", cred["client_id"].as_str().unwrap())
            .send()
            .unwrap()
    };
    let orgs: Value = console(&io).json().unwrap();
    assert_eq!(orgs[0]["code"], upj["org_id"]);
    assert_eq!(console(&cred).status(), 403);

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

    // The legacy population: technical operators with recorded API usage.
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

    // People and their applications, created from the CLI while the IMS runs.
    let base = upj2["ims_url"].as_str().unwrap().to_owned();
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
    // The running IMS knows the new client at once.
    let no_redirect = no_redirect_client(&upj);
    let authorize = authorize(&no_redirect, &base, web["client_id"].as_str().unwrap());
    assert_eq!(authorize.status(), 303);
    assert!(authorize.headers()["location"]
        .to_str()
        .unwrap()
        .starts_with("/ims/signin/"));

    // A native operator created from the CLI signs in to the running instance, and the sign-in is
    // recorded as usage evidence.
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
    let instance_url = upj2["instances"][0]["url"].as_str().unwrap().to_owned();
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

    // The same administration through the running IMS's API, on the operations listener
    // (loopback) only: the public port does not serve it.
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
    token(&http, &base, &remote);
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

    // Rotation from the CLI: a second secret works beside the first, then the first is removed.
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
    token(&http, &base, &added);
    token(&http, &base, &cred);
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
    assert_eq!(introspect(&http, &base, &observer, &t)["active"], true);
    run_ok(ims().args([
        "credential",
        "disable",
        "--data-dir",
        d,
        "--client-id",
        cred["client_id"].as_str().unwrap(),
    ]));
    assert_eq!(
        introspect(&http, &base, &observer, &t)["active"],
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
    server.stop();

    // The instance's own IMS credential, in the vendor's syntax: stored sealed, never in clear.
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

    // A configuration error stops the start and names file, line and key.
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
    let (server, upj_r) = up(&dir, &[]);
    assert!(
        soap_logon(&http, &instance_url, "jdoe", "jdoe's password 1").contains("XSV-350024"),
        "disableAPI refuses jdoe"
    );
    assert!(
        soap_logon(
            &http,
            &instance_url,
            "admin",
            upj_r["instances"][0]["admin_password"].as_str().unwrap()
        )
        .contains("pstrSessionToken"),
        "the allow-list still signs in"
    );
    server.stop();
    std::fs::write(&server_conf, &original).unwrap();

    // Upgrades move forward only, say what changes, and apply at the next start: on 8.6 native
    // sign-in is refused outside the allow-list.
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
    let (server, upj3) = up(&dir, &[]);
    assert_eq!(upj3["instances"][0]["build"], "8.6.0");
    assert!(
        soap_logon(&http, &instance_url, "jdoe", "jdoe's password 1").contains("XSV-350024"),
        "jdoe is not on the allow-list"
    );
    assert!(
        soap_logon(
            &http,
            &instance_url,
            "admin",
            upj3["instances"][0]["admin_password"].as_str().unwrap()
        )
        .contains("pstrSessionToken"),
        "admin is"
    );
    server.stop();
}

/// In `ims up` each instance runs on a runtime of its own: an instance wedged for good (every
/// worker of its runtime blocked) leaves the IMS and the other instances answering, its own
/// listener silent, and the process still stops on SIGTERM.
#[test]
fn a_wedged_instance_does_not_stop_the_ims_or_the_others() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let (mut server, upj) = up(&dir, &[("IMS_WEDGE_INSTANCE", "mc")]);
    let ca = upj["ca_cert"].as_str().unwrap();
    let pem = std::fs::read(ca).unwrap();
    let quick = reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(3))
        .add_root_certificate(reqwest::Certificate::from_pem(&pem).unwrap())
        .build()
        .unwrap();
    let url_of = |name: &str| {
        upj["instances"]
            .as_array()
            .unwrap()
            .iter()
            .find(|i| i["name"] == name)
            .unwrap()["url"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    let ims_url = upj["ims_url"].as_str().unwrap();
    for _ in 0..5 {
        for url in [
            format!("{ims_url}/health/ready"),
            format!("{ims_url}/.well-known/openid-configuration"),
            format!("{}/r/test", url_of("marketing")),
            format!("{}/r/test", url_of("marketing-stage")),
        ] {
            let resp = quick.get(&url).send().unwrap_or_else(|e| panic!("{url}: {e}"));
            assert!(resp.status().is_success(), "{url}: {}", resp.status());
        }
        // A password sign-in runs through the IMS's own work too.
        let logon = soap_logon(
            &quick,
            &url_of("marketing"),
            "admin",
            upj["instances"][0]["admin_password"].as_str().unwrap(),
        );
        assert!(logon.contains("pstrSessionToken"), "{logon}");
    }
    let wedged = quick.get(format!("{}/r/test", url_of("mc"))).send();
    assert!(wedged.is_err(), "the wedged instance answers nothing: {wedged:?}");
    let pid = server.child.id().to_string();
    assert!(Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap()
        .success());
    let deadline = Instant::now() + Duration::from_secs(40);
    loop {
        if let Some(status) = server.child.try_wait().unwrap() {
            assert!(status.success(), "{status:?}");
            break;
        }
        assert!(Instant::now() < deadline, "ims up did not stop on SIGTERM");
        std::thread::sleep(Duration::from_millis(100));
    }
    // Instance requests have their access log lines, like the IMS's.
    let raw = std::fs::read_to_string(&server.log).unwrap();
    // (Colour escapes aside: the text format still writes them off a terminal.)
    let mut log = String::with_capacity(raw.len());
    let mut rest = raw.as_str();
    while let Some(at) = rest.find('\u{1b}') {
        log.push_str(&rest[..at]);
        rest = rest[at..].split_once('m').map_or("", |(_, after)| after);
    }
    log.push_str(rest);
    assert!(
        log.lines().any(|l| l.contains("ims::access")
            && l.contains("instance=marketing")
            && l.contains("path=/r/test")),
        "{log}"
    );
}

#[test]
fn logs_hold_no_secrets() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let (server, upj) = up(&dir, &[("IMS_LOG", "trace")]);
    let base = upj["ims_url"].as_str().unwrap().to_owned();
    let d = dir.to_str().unwrap();
    let cred = json_of(&run_ok(ims().args([
        "credential",
        "create",
        "--data-dir",
        d,
        "--name",
        "planted",
        "--json",
    ])));
    let http = client(Some(Path::new(upj["ca_cert"].as_str().unwrap())));
    let t = token(&http, &base, &cred);
    let planted = "imscs_PLANTEDsecretVALUE0000000000000000000000";
    let id = cred["client_id"].as_str().unwrap();
    // Secrets in bodies, query strings, Basic headers and bearer tokens, good and bad.
    let _ = http
        .post(format!("{base}/ims/token/v3"))
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", id),
            ("client_secret", planted),
        ])
        .send();
    let _ = http
        .post(format!(
            "{base}/ims/token/v3?client_secret={planted}&client_id={id}&grant_type=client_credentials"
        ))
        .send();
    let _ = http
        .post(format!("{base}/ims/token/v3"))
        .basic_auth(id, Some(planted))
        .form(&[("grant_type", "client_credentials")])
        .send();
    let _ = http
        .get(format!("{base}/ims/organizations/v6"))
        .bearer_auth(&t)
        .send();
    let _ = http
        .get(format!("{base}/ims/organizations/v6?access_token={t}"))
        .send();
    let _ = http
        .get(format!("{base}/ims/organizations/v6"))
        .bearer_auth(format!("{t}x"))
        .send();
    let _ = http
        .post(format!("{base}/ims/revoke/v1"))
        .basic_auth(id, cred["client_secret"].as_str())
        .form(&[("token", &t)])
        .send();
    // People: a password posted to the sign-in page, a reset link and a sign-in flow in paths.
    let pw = tmp.path().join("pw");
    std::fs::write(&pw, "a person's planted passphrase\n").unwrap();
    run_ok(ims().args([
        "user",
        "create",
        "--data-dir",
        d,
        "--email",
        "p@example.com",
        "--password-file",
        pw.to_str().unwrap(),
    ]));
    let reset = run_ok(ims().args(["user", "reset-link", "--data-dir", d, "--email", "p@example.com"]));
    let reset = reset.trim().to_owned();
    let _ = http.get(&reset).send();
    let app = json_of(&run_ok(ims().args([
        "client",
        "create",
        "--data-dir",
        d,
        "--name",
        "a",
        "--first-party",
        "--redirect-uri",
        "https://app.example/cb",
        "--json",
    ])));
    let no_redirect = no_redirect_client(&upj);
    let authorize = authorize(&no_redirect, &base, app["client_id"].as_str().unwrap());
    let flow = authorize.headers()["location"].to_str().unwrap().to_owned();
    let browser = authorize.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_owned();
    let page = no_redirect
        .get(format!("{base}{flow}"))
        .header("cookie", &browser)
        .send()
        .unwrap()
        .text()
        .unwrap();
    let csrf = page
        .split(r#"name="csrf" value=""#)
        .nth(1)
        .unwrap()
        .split('"')
        .next()
        .unwrap()
        .to_owned();
    let _ = no_redirect
        .post(format!("{base}{flow}"))
        .header("cookie", &browser)
        .form(&[("csrf", csrf.as_str()), ("email", "p@example.com")])
        .send();
    let _ = no_redirect
        .post(format!("{base}{flow}"))
        .header("cookie", &browser)
        .form(&[
            ("csrf", csrf.as_str()),
            ("password", "a person's planted passphrase"),
        ])
        .send();
    let logs = server.stop();
    assert!(logs.contains("request"), "the server did log requests: {logs}");
    assert!(
        logs.contains("/ims/signin/{flow}"),
        "routes are logged by their template"
    );
    let reset_token = reset.rsplit('/').next().unwrap();
    let flow_token = flow.rsplit('/').next().unwrap();
    for (what, secret) in [
        ("reset link", reset_token),
        ("sign-in flow", flow_token),
        ("person's password", "planted passphrase"),
    ] {
        assert!(!logs.contains(secret), "the log holds the {what}");
    }
    let admin_password = upj["admin_password"].as_str().unwrap();
    let audit = run_ok(ims().args(["audit", "--data-dir", d, "--json"]));
    for (what, secret) in [
        ("planted secret", planted),
        ("client secret", cred["client_secret"].as_str().unwrap()),
        ("access token", &t),
        ("admin password", admin_password),
    ] {
        assert!(!logs.contains(secret), "the log holds the {what}");
        assert!(!audit.contains(secret), "the audit log holds the {what}");
    }
    // Not even the signature part of the token.
    assert!(!logs.contains(t.rsplit('.').next().unwrap()));
}

#[test]
fn configuration_is_validated() {
    let out = ims()
        .args(["credential", "list"])
        .env("IMS_LISTNE", "x")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("IMS_LISTNE"));
    // Plain HTTP off loopback is refused.
    let tmp = tempfile::tempdir().unwrap();
    let key = tmp.path().join("mk");
    std::fs::write(&key, ims_core::keys::MasterKey::generate().to_base64()).unwrap();
    let out = ims()
        .arg("serve")
        .env(
            "IMS_DATABASE_URL",
            format!("sqlite://{}", tmp.path().join("x.db").display()),
        )
        .env("IMS_MASTER_KEY_FILE", &key)
        .env("IMS_TLS", "false")
        .env("IMS_LISTEN", "0.0.0.0:0")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("loopback"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // No master key, no start.
    let out = ims()
        .arg("serve")
        .env(
            "IMS_DATABASE_URL",
            format!("sqlite://{}", tmp.path().join("y.db").display()),
        )
        .env("IMS_TLS", "false")
        .env("IMS_LISTEN", "127.0.0.1:0")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("master_key"));
}

/// Two `ims serve` nodes on one PostgreSQL database.
#[test]
fn two_nodes_share_one_postgres_database() {
    let url = std::env::var("TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into());
    if url == "skip" {
        eprintln!("!!! SKIPPED: two nodes on PostgreSQL (TEST_POSTGRES_URL=skip)");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let schema = format!("n_{}", ims_core::secret::random_hex(8));
    let key = tmp.path().join("master.key");
    std::fs::write(&key, ims_core::keys::MasterKey::generate().to_base64()).unwrap();
    let ports = [free_port(), free_port()];
    let issuer = "http://ims.cluster.test";
    let node = |i: usize| {
        let mut cmd = ims();
        cmd.arg("serve")
            .env("IMS_DATABASE_URL", &url)
            .env("IMS_DATABASE_SCHEMA", &schema)
            .env("IMS_MASTER_KEY_FILE", &key)
            .env("IMS_TLS", "false")
            .env("IMS_LISTEN", format!("127.0.0.1:{}", ports[i]))
            .env("IMS_PUBLIC_URL", issuer)
            .env("IMS_SIGNING_ALG", "ES256")
            .env("IMS_KEY_REFRESH_SECS", "2");
        spawn(cmd, &tmp.path().join(format!("node{i}.log")))
    };
    let a = node(0);
    let http = client(None);
    let base_a = format!("http://127.0.0.1:{}", ports[0]);
    let base_b = format!("http://127.0.0.1:{}", ports[1]);
    wait_ready(&http, &base_a);
    let b = node(1);
    wait_ready(&http, &base_b);
    let target = [
        "--database-url",
        url.as_str(),
        "--database-schema",
        schema.as_str(),
    ];
    let cred = json_of(&run_ok(
        ims()
            .args(["credential", "create", "--name", "n", "--json"])
            .args(target),
    ));
    let observer = json_of(&run_ok(
        ims()
            .args(["credential", "create", "--name", "o", "--json"])
            .args(target),
    ));

    // Issued on A, valid on B.
    let t = token(&http, &base_a, &cred);
    assert_eq!(introspect(&http, &base_b, &observer, &t)["active"], true);
    // Revoked on A, dead on B.
    let r = http
        .post(format!("{base_a}/ims/revoke/v1"))
        .basic_auth(
            cred["client_id"].as_str().unwrap(),
            cred["client_secret"].as_str(),
        )
        .form(&[("token", &t)])
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(introspect(&http, &base_b, &observer, &t)["active"], false);
    // A rotation made from the CLI: A starts signing with the new key at its next reread of the key
    // table; B, which has not reread yet, learns the kid when it first meets it.
    let rotated = run_ok(
        ims()
            .args(["keys", "rotate", "--immediate"])
            .args(target)
            .env("IMS_MASTER_KEY_FILE", &key)
            .env("IMS_SIGNING_ALG", "ES256"),
    );
    let kid = rotated.trim().rsplit(' ').next().unwrap().to_owned();
    let deadline = Instant::now() + Duration::from_secs(45);
    let fresh = loop {
        let t = token(&http, &base_a, &cred);
        if t.split('.')
            .next()
            .map(|h| String::from_utf8(base64_url(h)).unwrap().contains(&kid))
            .unwrap_or(false)
        {
            break t;
        }
        assert!(Instant::now() < deadline, "node A never signed with {kid}");
        std::thread::sleep(Duration::from_millis(500));
    };
    assert_eq!(introspect(&http, &base_b, &observer, &fresh)["active"], true);
    let jwks: Value = http
        .get(format!("{base_b}/ims/keys"))
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert!(jwks.to_string().contains(&kid));
    a.stop();
    b.stop();
    let _ = Command::new("psql")
        .args([
            url.as_str(),
            "-qc",
            &format!("DROP SCHEMA IF EXISTS {schema} CASCADE"),
        ])
        .output();
}

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

/// `ims up` on PostgreSQL: the IMS and each instance in a schema of their own, the data
/// directory's commands finding them through up.json, and the end-user phase moving people with
/// both sides agreeing afterwards. Restarted, it finds everything where it left it.
#[test]
fn up_runs_on_postgres_and_migrates_people() {
    let url = std::env::var("TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into());
    if url == "skip" {
        eprintln!("!!! SKIPPED: ims up on PostgreSQL (TEST_POSTGRES_URL=skip)");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let d = dir.to_str().unwrap();
    let schema = format!("n_{}", ims_core::secret::random_hex(8));
    let env = [
        ("IMS_DATABASE_URL", url.as_str()),
        ("IMS_DATABASE_SCHEMA", schema.as_str()),
    ];
    let (server, upj) = up(&dir, &env);
    assert_eq!(upj["database_url"].as_str(), Some(url.as_str()));
    assert_eq!(upj["database_schema"].as_str(), Some(schema.as_str()));
    assert!(!dir.join("ims.db").exists() && !dir.join("instance-marketing.db").exists());
    let run = |args: &[&str]| {
        let out = ims().args(args).output().unwrap();
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        out.stdout
    };
    run(&[
        "instance",
        "seed",
        "--data-dir",
        d,
        "--instance",
        "marketing",
        "--operators",
        "40",
    ]);
    let m = ["--data-dir", d, "--instance", "marketing"];
    for args in [&["prepare", "--rights"][..], &["prepare", "--profiles"]] {
        run(&[&["migrate"][..], args, &m].concat());
    }
    let plan = tmp.path().join("users.json");
    let p = plan.to_str().unwrap();
    run(&[&["migrate", "plan", "users", "--out", p][..], &m].concat());
    let people = serde_json::from_str::<Value>(&std::fs::read_to_string(&plan).unwrap()).unwrap()["people"]
        .as_array()
        .unwrap()
        .len();
    assert!(people >= 40, "{people}");
    run(&[&["migrate", "apply", p][..], &m].concat());
    let status: Value =
        serde_json::from_slice(&run(&[&["migrate", "status", "--json"][..], &m].concat())).unwrap();
    let r = &status["reconciliation"];
    assert_eq!(r["matching"].as_u64(), Some(people as u64), "{r}");
    assert_eq!(r["differences"], serde_json::json!([]));
    // Its own schemas on the database, one per service.
    let listed = Command::new("psql")
        .args([
            url.as_str(),
            "-Atc",
            &format!("SELECT schema_name FROM information_schema.schemata WHERE schema_name LIKE '{schema}%' ORDER BY 1"),
        ])
        .output()
        .unwrap();
    let names: Vec<String> = String::from_utf8_lossy(&listed.stdout)
        .lines()
        .map(String::from)
        .collect();
    assert_eq!(
        names,
        [
            schema.clone(),
            format!("{schema}_marketing"),
            format!("{schema}_marketing_stage"),
            format!("{schema}_mc")
        ]
    );
    server.stop();
    // Started again: the same organisation and the moved people where they were.
    let (server, again) = up(&dir, &env);
    assert_eq!(again["org_id"], upj["org_id"]);
    let status: Value =
        serde_json::from_slice(&run(&[&["migrate", "status", "--json"][..], &m].concat())).unwrap();
    assert_eq!(status["reconciliation"]["matching"].as_u64(), Some(people as u64));
    server.stop();
    for name in names {
        let _ = Command::new("psql")
            .args([
                url.as_str(),
                "-qc",
                &format!("DROP SCHEMA IF EXISTS {name} CASCADE"),
            ])
            .output();
    }
}

fn base64_url(s: &str) -> Vec<u8> {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(s)
        .unwrap()
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
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

#[test]
fn migration_assessment_reads_both_services_through_their_apis() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let d = dir.to_str().unwrap();
    let (server, upj) = up(&dir, &[]);
    let audit = || {
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
    };
    let audit_before = audit();
    let assess = |extra: &[&str]| {
        let mut c = ims();
        c.args(["migrate", "assess"]).args(extra);
        c.output().unwrap()
    };

    // The demo population: blockers (missing and case-variant duplicate emails) exit 1.
    let out = assess(&["--data-dir", d, "--instance", "marketing", "--json"]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("6 blocker(s)"));
    let a: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(a["build"], "7.4.1");
    assert_eq!(a["counts"]["people_to_migrate"], 32);
    assert_eq!(a["counts"]["technical_to_migrate"], 3);
    assert_eq!(a["counts"]["builtin"], 6);
    let blocked: Vec<&str> = a["blockers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["operator"].as_str().unwrap())
        .collect();
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
    assert_eq!(find("dara.abe")["disabled"], true);
    assert_eq!(find("monitoring")["class"], "builtin");
    assert_eq!(a["rights_no_group_carries"], serde_json::json!(["export", "sql"]));

    // The engine's IMS credential is made once, kept owner-only, and used again.
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

    // Explicit addresses and an operator's password, without the IMS: profiles not checked.
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
    assert_eq!(b["counts"], a["counts"]);
    assert!(b["warnings"].to_string().contains("the IMS was not asked"));

    // A wrong password is an error (exit 2) in the instance's words; a non-administrator is refused.
    std::fs::write(&pw, "not the password").unwrap();
    let out = assess(&explicit);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("XSV-350024"));

    // Reading changed nothing on the instance.
    assert_eq!(audit(), audit_before);

    // Emails from a CSV file: a file with a problem, or one clashing with another operator's
    // email (in another case), writes nothing.
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
    assert_eq!(audit(), audit_before, "a dry run writes nothing");
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
    // Every blocker is gone, and running the file again changes nothing.
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

    // One product profile per operator group, named by the default mask, with the group's
    // rights; an administrator's own version of one is left as it is.
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
    // A label planted to run in the administrator's spreadsheet stays text.
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
    server.stop();
}

#[test]
fn end_users_move_by_plan_and_apply_resuming_after_a_crash() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let d = dir.to_str().unwrap();
    let (server, upj) = up(&dir, &[]);
    let ims_url = upj["ims_url"].as_str().unwrap().to_owned();
    let migrate = |args: &[&str], env: &[(&str, &str)]| {
        let mut c = ims();
        c.arg("migrate")
            .args(args)
            .args(["--data-dir", d, "--instance", "marketing"]);
        for (k, v) in env {
            c.env(k, v);
        }
        c.output().unwrap()
    };
    ok(migrate(&["prepare", "--profiles"], &[]));
    let plan_file = tmp.path().join("users.json");
    let p = plan_file.to_str().unwrap();
    let summary = ok(migrate(&["plan", "users", "--out", p], &[]));
    let plan: Value = serde_json::from_str(&std::fs::read_to_string(&plan_file).unwrap()).unwrap();
    let people = logins_in(&plan["people"]);
    // Left as they are, each with its reason: no email, a shared email, disabled, rights no
    // group carries; the programs and built-in operators are not in the plan at all.
    let skipped = |login: &str| {
        plan["skipped"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["login"] == login)
            .map(|s| s["reason"].as_str().unwrap().to_owned())
            .unwrap_or_default()
    };
    assert!(skipped("bo.berg").contains("its email is missing"), "{summary}");
    assert!(skipped("plee").contains("duplicate"));
    assert!(skipped("dara.abe").starts_with("disabled"));
    assert!(plan["skipped"]
        .to_string()
        .contains("holds rights none of its groups carries (export, sql)"));
    for login in ["crm-sync", "admin", "monitoring"] {
        assert!(!people.contains(&login.to_owned()) && skipped(login).is_empty());
    }
    assert!(people.contains(&"ana.abe".to_owned()));
    assert!(summary.contains("ana.abe: IMS user ana.abe@example.com (created) added to [campaign - marketing - campaignManagers]"), "{summary}");

    // Rights held beyond groups get a group of their own, with a profile, so they come back.
    let rights = ok(migrate(&["prepare", "--rights"], &[]));
    assert!(
        rights.contains("created group rights-export-sql (Direct rights: EXPORT, SQL SCRIPT EXECUTION) for"),
        "{rights}"
    );
    assert!(
        ok(migrate(&["prepare", "--rights"], &[])).contains("no one holds named rights beyond their groups")
    );
    assert!(ok(migrate(&["prepare", "--profiles"], &[]))
        .contains("created \"campaign - marketing - rights-export-sql\""));

    // A change after the plan (an email) is caught: nothing is applied.
    let csv = tmp.path().join("e.csv");
    std::fs::write(&csv, "login,email\nana.dahl,ana.d@example.com\n").unwrap();
    ok(migrate(&["prepare", "--emails", csv.to_str().unwrap()], &[]));
    let audit = |what: &[&str]| run_ok(ims().args(what).args(["--data-dir", d]));
    let instance_audit = || audit(&["instance", "audit", "--instance", "marketing", "--limit", "5000"]);
    let before = instance_audit();
    let out = migrate(&["apply", p], &[]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr)
        .contains("drifted: ana.dahl: now type native, email ana.d@example.com"));
    assert_eq!(instance_audit(), before);
    ok(migrate(&["plan", "users", "--out", p], &[]));
    let plan: Value = serde_json::from_str(&std::fs::read_to_string(&plan_file).unwrap()).unwrap();
    let people = plan["people"].as_array().unwrap().len();
    assert!(people > 20, "{plan}");
    assert!(!plan["skipped"].to_string().contains("holds rights"), "{plan}");

    // Stopped dead right after the instance switched the first batch, before the journal
    // recorded it; the next run finishes without doing anything twice.
    let out = migrate(
        &["apply", p, "--batch", "10"],
        &[("IMS_MIGRATE_FAIL_AT", "switch-acted:1")],
    );
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("fail point switch-acted reached"),
        "{}\n{}",
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&out.stdout)
    );
    let out = ok(migrate(&["apply", p, "--batch", "10", "--json"], &[]));
    let report: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(report["complete"], true, "{report}");
    assert_eq!(
        report["switched"].as_u64().unwrap() + report["already"].as_u64().unwrap(),
        people as u64
    );
    assert_eq!(
        report["already"], 10,
        "the batch the crash cut off was found done"
    );
    let migrated = audit(&[
        "instance",
        "audit",
        "--instance",
        "marketing",
        "--action",
        "operator.migrate",
        "--limit",
        "5000",
    ]);
    assert_eq!(
        migrated
            .lines()
            .filter(|l| l.contains("operator.migrate"))
            .count(),
        people,
        "{migrated}"
    );

    // Both sides agree: each moved operator is linked to the IMS user of its email, which holds
    // the profiles of its groups.
    let a: Value = serde_json::from_slice(&migrate(&["assess", "--json"], &[]).stdout).unwrap();
    let cred: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("migration-credential.json")).unwrap())
            .unwrap();
    let http = client(Some(Path::new(upj["ca_cert"].as_str().unwrap())));
    let t = token(&http, &ims_url, &cred);
    let users = org_users(&upj, &cred);
    let moved: Vec<&Value> = a["operators"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|o| o["auth_type"] == "ims")
        .collect();
    assert_eq!(moved.len(), people);
    for o in &moved {
        let user = users
            .iter()
            .find(|u| {
                u["email"]
                    .as_str()
                    .unwrap()
                    .eq_ignore_ascii_case(o["email"].as_str().unwrap())
            })
            .unwrap_or_else(|| panic!("no IMS user for {o}"));
        for g in o["groups"].as_array().unwrap() {
            let profile = format!("campaign - marketing - {}", g.as_str().unwrap());
            assert!(
                user["groups"]
                    .as_array()
                    .unwrap()
                    .contains(&Value::String(profile)),
                "{user}"
            );
        }
    }

    // The window was announced in the console, and is now over.
    let login_page = http_client_for(&upj)
        .get(format!(
            "{}/console/login",
            upj["instances"][0]["url"].as_str().unwrap()
        ))
        .send()
        .unwrap()
        .text()
        .unwrap();
    assert!(
        login_page.contains("Sign-in has moved to the IMS"),
        "{login_page}"
    );

    // Status: the phase is done and both sides agree, operator by operator.
    let status: Value = serde_json::from_str(&ok(migrate(&["status", "--json"], &[]))).unwrap();
    assert!(status["plans"][0]["applied_at"].is_i64(), "{status}");
    assert_eq!(status["by_auth_type"]["ims"], people);
    let r = &status["reconciliation"];
    assert_eq!(
        (r["linked_operators"].as_u64(), r["matching"].as_u64()),
        (Some(people as u64), Some(people as u64)),
        "{r}"
    );
    assert_eq!(r["differences"], serde_json::json!([]));
    let text = ok(migrate(&["status"], &[]));
    assert!(
        text.contains("phase users: users-marketing-") && text.contains(" done ("),
        "{text}"
    );
    assert!(text.contains("phase technical: not started"));

    // A finished plan applied again writes nothing anywhere.
    let (instance_before, ims_before) = (instance_audit(), audit(&["audit", "--limit", "5000"]));
    let out = ok(migrate(&["apply", p], &[]));
    assert!(out.contains("switched 0"), "{out}");
    assert_eq!(instance_audit(), instance_before);
    assert_eq!(audit(&["audit", "--limit", "5000"]), ims_before);

    // One person put back to native sign-in: unlinked, out of the instance's profiles; again:
    // nothing to do. Everyone else still agrees on both sides.
    let back = moved[1]["login"].as_str().unwrap().to_owned();
    let out = ok(migrate(&["rollback", "--operator", &back], &[]));
    assert!(
        out.contains(&format!("put back {back} to native sign-in")),
        "{out}"
    );
    // Its password did not change meanwhile: kept, not cleared.
    assert!(!out.contains("changed meanwhile"), "{out}");
    assert!(ok(migrate(&["rollback", "--operator", &back], &[]))
        .contains(&format!("{back} signs in natively already")));
    let out = migrate(&["rollback", "--operator", "crm-sync"], &[]);
    assert_eq!(out.status.code(), Some(1));
    // Moved again by a new plan, with its password set by an administrator after that plan was
    // made: put back, the password is cleared (a forced reset), since its person may not know
    // it; neither it nor any other signs in until an administrator sets a new one.
    let again = tmp.path().join("again.json");
    let again = again.to_str().unwrap();
    ok(migrate(&["plan", "users", "--out", again], &[]));
    let inst = &upj["instances"][0];
    let (inst_url, admin_pw) = (
        inst["url"].as_str().unwrap(),
        inst["admin_password"].as_str().unwrap(),
    );
    let soap = http_client_for(&upj);
    let written = soap_set_password(&soap, inst_url, admin_pw, &back, "set meanwhile 1");
    assert!(!written.contains("Fault"), "{written}");
    assert!(ok(migrate(&["apply", again], &[])).contains("switched 1"));
    let out = ok(migrate(&["rollback", "--operator", &back], &[]));
    assert!(
        out.contains(&format!(
            "put back {back} to native sign-in; its password changed meanwhile"
        )),
        "{out}"
    );
    assert!(soap_logon(&soap, inst_url, &back, "set meanwhile 1").contains("XSV-350024"));
    soap_set_password(&soap, inst_url, admin_pw, &back, "chosen anew 1");
    assert!(soap_logon(&soap, inst_url, &back, "chosen anew 1").contains("pstrSessionToken"));
    let status: Value = serde_json::from_str(&ok(migrate(&["status", "--json"], &[]))).unwrap();
    let r = &status["reconciliation"];
    assert_eq!(r["linked_operators"].as_u64(), Some(people as u64 - 1), "{r}");
    assert_eq!(r["differences"], serde_json::json!([]));
    assert_eq!(
        r["not_linked_yet"],
        serde_json::json!([]),
        "the person left the profiles too"
    );
    let a2: Value = serde_json::from_slice(&migrate(&["assess", "--json"], &[]).stdout).unwrap();
    let op = a2["operators"]
        .as_array()
        .unwrap()
        .iter()
        .find(|o| o["login"] == back.as_str())
        .unwrap();
    assert_eq!(op["auth_type"], "native");

    // A profile taken away at the IMS shows as a difference (exit 1), named.
    let first = moved[0]["email"].as_str().unwrap().to_owned();
    let group = moved[0]["groups"][0].as_str().unwrap().to_owned();
    let body = serde_json::json!([{"user": first, "do": [{"remove": {"group": [format!("campaign - marketing - {group}")]}}]}]);
    let r = http
        .post(format!(
            "{ims_url}/v2/usermanagement/action/{}",
            upj["org_id"].as_str().unwrap()
        ))
        .bearer_auth(&t)
        .header("x-api-key", cred["client_id"].as_str().unwrap())
        .json(&body)
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    let out = migrate(&["status"], &[]);
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("1 differences")
            && text.contains(&format!("differs {}", moved[0]["login"].as_str().unwrap())),
        "{text}"
    );
    server.stop();
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
    let migrate = |instance: &str, args: &[&str]| {
        let mut c = ims();
        c.arg("migrate")
            .args(args)
            .args(["--data-dir", d, "--instance", instance]);
        c.output().unwrap()
    };
    let text = |o: &Output| {
        format!(
            "{}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        )
    };
    let plan = tmp.path().join("fin.json");
    let p = plan.to_str().unwrap();

    // Production waits for its staging twin; people and programs would lose native sign-in.
    let out = migrate("marketing", &["plan", "finalize", "--out", p]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let t = text(&out);
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
    assert!(text(&out).contains("--force"));

    // Staging moves its people first.
    let users_plan = tmp.path().join("stage-users.json");
    for args in [
        vec!["prepare", "--profiles"],
        vec!["plan", "users", "--out", users_plan.to_str().unwrap()],
        vec!["apply", users_plan.to_str().unwrap()],
    ] {
        let out = migrate("marketing-stage", &args);
        assert!(out.status.success(), "{args:?}: {}", text(&out));
    }
    let moved_one = serde_json::from_str::<Value>(&std::fs::read_to_string(&users_plan).unwrap()).unwrap()
        ["people"][0]["login"]
        .as_str()
        .unwrap()
        .to_owned();

    // The rehearsal on staging, forced past its blockers: locked down, every probe passing,
    // complete, and the force recorded.
    let out = migrate("marketing-stage", &["plan", "finalize", "--out", p, "--force"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("forced past: these people still sign in natively"));
    let out = migrate("marketing-stage", &["apply", p]);
    assert!(out.status.success(), "{}", text(&out));
    let t = text(&out);
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
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("lock-down on")
            && text(&out).contains("migration complete (forced) by operator:admin"),
        "{}",
        text(&out)
    );

    // Locked down, nobody goes back, and the IMS is not touched trying.
    let ims_audit = || run_ok(ims().args(["audit", "--data-dir", d, "--limit", "5000"]));
    let ims_before = ims_audit();
    let out = migrate("marketing-stage", &["rollback", "--operator", &moved_one]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out).contains("the instance is locked down"),
        "{}",
        text(&out)
    );
    assert_eq!(ims_audit(), ims_before);
    // A plan made for another instance is refused.
    let out = migrate("marketing", &["apply", p]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out).contains("the plan is for the instance marketing-stage, not marketing"),
        "{}",
        text(&out)
    );

    // Production no longer waits for its twin.
    let out = migrate("marketing", &["plan", "finalize", "--out", p]);
    assert!(!text(&out).contains("staging twin"), "{}", text(&out));
    server.stop();
}

#[test]
fn programs_move_to_technical_accounts_with_their_rights_and_a_working_kit() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let d = dir.to_str().unwrap();
    let (server, upj) = up(&dir, &[]);
    let migrate = |args: &[&str]| {
        let mut c = ims();
        c.arg("migrate")
            .args(args)
            .args(["--data-dir", d, "--instance", "marketing"]);
        let out = c.output().unwrap();
        assert!(
            out.status.success(),
            "{args:?}: {}\n{}",
            String::from_utf8_lossy(&out.stderr),
            String::from_utf8_lossy(&out.stdout)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    migrate(&["prepare", "--rights"]);
    migrate(&["prepare", "--profiles"]);
    let plan = tmp.path().join("tech.json");
    let p = plan.to_str().unwrap();
    let summary = migrate(&["plan", "technical", "--out", p]);
    for login in ["crm-sync", "web-forms", "bi-export"] {
        assert!(
            summary.contains(&format!("  {login}: credential \"marketing {login}\"")),
            "{summary}"
        );
    }
    let out = migrate(&["apply", p]);
    assert_eq!(out.matches(": now ").count(), 3, "{out}");

    // Each program's technical account operator exists (made by its first call) and holds the
    // legacy operator's direct rights; the legacy operator still works until retired.
    let kits = dir.join("migration-kits").join("marketing");
    for login in ["crm-sync", "web-forms", "bi-export"] {
        let kit = kits.join(login);
        let cred: Value =
            serde_json::from_str(&std::fs::read_to_string(kit.join("credential.json")).unwrap()).unwrap();
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
    // Applied again: nothing more happens anywhere.
    let audit = || run_ok(ims().args(["audit", "--data-dir", d, "--limit", "5000"]));
    let before = audit();
    assert_eq!(migrate(&["apply", p]).matches("done earlier").count(), 3);
    assert_eq!(audit(), before);

    // Watched: no native traffic since the move, but not for the whole period yet.
    let watch = migrate(&["technical", "watch", "--quiet-after", "1d"]);
    assert_eq!(watch.matches(": watching (now ").count(), 3, "{watch}");
    let retire = |args: &[&str]| {
        let mut c = ims();
        c.args(["migrate", "technical"])
            .args(args)
            .args(["--data-dir", d, "--instance", "marketing"]);
        c.output().unwrap()
    };
    let out = retire(&["disable", "--operator", "crm-sync", "--quiet-after", "1d"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not ready: crm-sync is watching"));
    assert_eq!(
        retire(&["disable", "--operator", "crm-sync", "--force"])
            .status
            .code(),
        Some(2),
        "a forced act needs a reason"
    );
    std::thread::sleep(Duration::from_millis(1100));
    assert_eq!(
        migrate(&["technical", "watch", "--quiet-after", "1s"])
            .matches(": quiet (now ")
            .count(),
        3
    );
    // Deleting needs the operator disabled first; then it goes.
    let out = retire(&["delete", "--operator", "crm-sync", "--quiet-after", "1s"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("crm-sync is quiet (disable it first)"));
    let out = retire(&["disable", "--operator", "crm-sync", "--quiet-after", "1s"]);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("crm-sync: disabled by"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = retire(&["delete", "--operator", "crm-sync", "--quiet-after", "1s"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    // Forced, the record says by whom, in what state, and why.
    let out = retire(&[
        "disable",
        "--operator",
        "web-forms",
        "--force",
        "--reason",
        "the vendor switched",
        "--quiet-after",
        "1d",
    ]);
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        said.contains("web-forms: disabled by")
            && said.contains("forced while watching")
            && said.contains("the vendor switched"),
        "{said}"
    );
    let watch = migrate(&["technical", "watch", "--quiet-after", "1d"]);
    assert!(
        watch.contains("crm-sync: deleted") && watch.contains("web-forms: disabled"),
        "{watch}"
    );
    let out = retire(&["disable", "--operator", "admin"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("no technical plan moved admin"));
    server.stop();
}

/// The crash matrix, small: one run stopped dead at every step boundary of the end-user phase in
/// turn (each resuming the last), then the invariants: no operator lost, no identity twice, no
/// right widened, every moved person reachable through the IMS, both sides agreeing.
#[test]
fn an_end_user_phase_stopped_at_every_boundary_resumes_without_loss() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let d = dir.to_str().unwrap();
    let (server, _upj) = up(&dir, &[]);
    let migrate = |args: &[&str], fail_at: Option<&str>| {
        let mut c = ims();
        c.arg("migrate")
            .args(args)
            .args(["--data-dir", d, "--instance", "marketing"]);
        if let Some(f) = fail_at {
            c.env("IMS_MIGRATE_FAIL_AT", f);
        }
        c.output().unwrap()
    };
    for args in [["prepare", "--rights"], ["prepare", "--profiles"]] {
        assert!(migrate(&args, None).status.success());
    }
    let before: Value = serde_json::from_slice(&migrate(&["assess", "--json"], None).stdout).unwrap();
    let plan = tmp.path().join("users.json");
    let p = plan.to_str().unwrap();
    assert!(migrate(&["plan", "users", "--out", p], None).status.success());
    let people = logins_in(
        &serde_json::from_str::<Value>(&std::fs::read_to_string(&plan).unwrap()).unwrap()["people"],
    );
    for boundary in [
        "plan-stored",
        "identity-begun",
        "identity-acted",
        "identity-ended",
        "users-read",
        "switch-begun",
        "switch-acted",
        "switch-ended",
    ] {
        let out = migrate(&["apply", p, "--batch", "10"], Some(&format!("{boundary}:1")));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{boundary}: the run went through");
        assert!(
            err.contains(&format!("fail point {boundary} reached")),
            "{boundary}: {err}"
        );
    }
    let out = migrate(&["apply", p, "--batch", "10", "--json"], None);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["complete"], true, "{report}");

    let after: Value = serde_json::from_slice(&migrate(&["assess", "--json"], None).stdout).unwrap();
    let by_login = |a: &Value| -> std::collections::HashMap<String, Value> {
        a["operators"]
            .as_array()
            .unwrap()
            .iter()
            .map(|o| (o["login"].as_str().unwrap().to_owned(), o.clone()))
            .collect()
    };
    let (was, now) = (by_login(&before), by_login(&after));
    // No operator lost or added; exactly the planned people moved.
    assert_eq!(was.len(), now.len());
    let moved: Vec<&String> = now.keys().filter(|l| now[*l]["auth_type"] == "ims").collect();
    assert_eq!(moved.len(), people.len());
    for (login, o) in &now {
        let w = &was[login];
        // No right widened, no group gained, nothing else touched.
        assert_eq!(o["groups"], w["groups"], "{login}");
        assert_eq!(o["rights"], w["rights"], "{login}");
        assert_eq!(o["email"], w["email"], "{login}");
        assert_eq!(o["disabled"], w["disabled"], "{login}");
    }
    // Each moved person linked to its own identity, and both sides agree on each.
    let status: Value = serde_json::from_slice(&migrate(&["status", "--json"], None).stdout).unwrap();
    let r = &status["reconciliation"];
    assert_eq!(r["linked_operators"].as_u64(), Some(people.len() as u64), "{r}");
    assert_eq!(r["matching"].as_u64(), Some(people.len() as u64), "{r}");
    assert_eq!(r["differences"], serde_json::json!([]));
    assert_eq!(
        r["not_linked_yet"],
        serde_json::json!([]),
        "no identity without its operator"
    );
    let digests: std::collections::HashSet<&str> = r["digests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d[0].as_str().unwrap())
        .collect();
    assert_eq!(digests.len(), people.len(), "one record per operator");
    // Each person moved once.
    let migrated = run_ok(ims().args([
        "instance",
        "audit",
        "--data-dir",
        d,
        "--instance",
        "marketing",
        "--action",
        "operator.migrate",
        "--limit",
        "5000",
    ]));
    assert_eq!(
        migrated.matches("\"action\": \"operator.migrate\"").count(),
        people.len(),
        "{migrated}"
    );

    // A rollback stopped dead between the IMS and the instance is finished by running it again,
    // under its own id: one rollback in the journal, done, everyone back as they were.
    let plan_id = serde_json::from_str::<Value>(&std::fs::read_to_string(&plan).unwrap()).unwrap()["plan_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let out = migrate(&["rollback", "--plan", &plan_id], Some("unassign-ended:1"));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("fail point unassign-ended reached"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = migrate(&["rollback", "--plan", &plan_id], None);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let status: Value = serde_json::from_slice(&migrate(&["status", "--json"], None).stdout).unwrap();
    let rollbacks: Vec<&Value> = status["plans"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["phase"] == "rollback")
        .collect();
    assert_eq!(rollbacks.len(), 1, "{status}");
    assert!(rollbacks[0]["applied_at"].is_i64(), "{status}");
    let back: Value = serde_json::from_slice(&migrate(&["assess", "--json"], None).stdout).unwrap();
    let back = by_login(&back);
    for (login, o) in &back {
        let w = &was[login];
        for field in ["auth_type", "groups", "rights", "email", "disabled"] {
            assert_eq!(o[field], w[field], "{login}: {field}");
        }
    }

    // An apply stopped after its first batch of identities (profiles given, nobody switched),
    // then rolled back: those users leave the profiles too, or an IMS sign-in would make them a
    // second operator. Run again, the rollback writes nothing at the IMS.
    let again = tmp.path().join("again.json");
    let a = again.to_str().unwrap();
    assert!(migrate(&["plan", "users", "--out", a], None).status.success());
    let out = migrate(&["apply", a, "--batch", "10"], Some("identity-ended:1"));
    assert!(String::from_utf8_lossy(&out.stderr).contains("fail point identity-ended reached"));
    let again_id = serde_json::from_str::<Value>(&std::fs::read_to_string(&again).unwrap()).unwrap()
        ["plan_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let status: Value = serde_json::from_slice(&migrate(&["status", "--json"], None).stdout).unwrap();
    assert_eq!(
        status["reconciliation"]["not_linked_yet"]
            .as_array()
            .unwrap()
            .len(),
        10,
        "{status}"
    );
    let out = migrate(&["rollback", "--plan", &again_id], None);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let status: Value = serde_json::from_slice(&migrate(&["status", "--json"], None).stdout).unwrap();
    assert_eq!(
        status["reconciliation"]["not_linked_yet"],
        serde_json::json!([]),
        "{status}"
    );
    let ims_audit = || run_ok(ims().args(["audit", "--data-dir", d, "--limit", "5000"]));
    let before_again = ims_audit();
    assert!(migrate(&["rollback", "--plan", &again_id], None).status.success());
    assert_eq!(ims_audit(), before_again);
    server.stop();
}

/// A browser: cookies per origin, each redirect read by hand, and the bench's deadline on
/// every call (an integration's client gives up after 5 s).
struct Browser {
    http: reqwest::blocking::Client,
    jar: std::collections::HashMap<String, std::collections::HashMap<String, String>>,
}
impl Browser {
    fn new(ca: &Path) -> Self {
        let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
        let pem = std::fs::read(ca).unwrap();
        let http = reqwest::blocking::Client::builder()
            .add_root_certificate(reqwest::Certificate::from_pem(&pem).unwrap())
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(5))
            .build()
            .unwrap();
        Browser {
            http,
            jar: Default::default(),
        }
    }

    /// Status, `Location` made absolute, body.
    fn send(
        &mut self,
        url: &str,
        form: Option<&[(&str, &str)]>,
        headers: &[(&str, &str)],
        body: Option<String>,
    ) -> Result<(u16, String, String), String> {
        let url = reqwest::Url::parse(url).map_err(|e| format!("{url}: {e}"))?;
        let origin = url.origin().ascii_serialization();
        let jar = self.jar.entry(origin).or_default();
        let mut req = match (form, &body) {
            (None, None) => self.http.get(url.clone()),
            _ => self.http.post(url.clone()),
        };
        if !jar.is_empty() {
            let cookies: Vec<String> = jar.iter().map(|(k, v)| format!("{k}={v}")).collect();
            req = req.header("cookie", cookies.join("; "));
        }
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        if let Some(f) = form {
            req = req.form(f);
        }
        if let Some(b) = body {
            req = req.body(b);
        }
        let resp = req.send().map_err(|e| format!("{}: {e}", url.path()))?;
        for line in resp.headers().get_all("set-cookie") {
            let line = line.to_str().unwrap_or_default();
            let first = line.split(';').next().unwrap_or_default();
            if let Some((k, v)) = first.split_once('=') {
                if v.is_empty() || line.contains("Max-Age=0") {
                    jar.remove(k.trim());
                } else {
                    jar.insert(k.trim().to_owned(), v.to_owned());
                }
            }
        }
        let status = resp.status().as_u16();
        let location = resp
            .headers()
            .get("location")
            .and_then(|l| l.to_str().ok())
            .and_then(|l| url.join(l).ok())
            .map(|l| l.to_string())
            .unwrap_or_default();
        let text = resp.text().map_err(|e| format!("{}: {e}", url.path()))?;
        Ok((status, location, text))
    }

    /// One SOAP call on the instance, with a session when given; a fault is an error.
    fn soap(
        &mut self,
        base: &str,
        action: &str,
        params: &str,
        session: Option<&(String, String)>,
    ) -> Result<String, String> {
        let (ns, method) = action.rsplit_once('#').unwrap();
        let ns = ns.rsplit('|').next().unwrap();
        let envelope = format!(
            r#"<SOAP-ENV:Envelope xmlns:SOAP-ENV="http://schemas.xmlsoap.org/soap/envelope/"><SOAP-ENV:Body><m:{method} xmlns:m="urn:{ns}"><sessiontoken/>{params}</m:{method}></SOAP-ENV:Body></SOAP-ENV:Envelope>"#
        );
        let mut headers = vec![
            ("SOAPAction", action),
            ("content-type", "text/xml; charset=utf-8"),
        ];
        if let Some((s, sec)) = session {
            headers.extend([
                ("X-Session-Token", s.as_str()),
                ("X-Security-Token", sec.as_str()),
            ]);
        }
        let (status, _, text) = self.send(
            &format!("{base}/nl/jsp/soaprouter.jsp"),
            None,
            &headers,
            Some(envelope),
        )?;
        if status != 200 || text.contains("Fault>") {
            return Err(format!("{action}: HTTP {status}: {text}"));
        }
        Ok(text)
    }

    fn logon(&mut self, base: &str, login: &str, password: &str) -> Result<(String, String), String> {
        let text = self.soap(
            base,
            "xtk:session#Logon",
            &format!("<login>{login}</login><password>{password}</password><parameters/>"),
            None,
        )?;
        let token = |name: &str| {
            text.split(&format!("<{name}"))
                .nth(1)
                .and_then(|t| t.split_once('>'))
                .and_then(|(_, t)| t.split('<').next())
                .map(str::to_owned)
                .ok_or_else(|| format!("Logon: no {name}: {text}"))
        };
        Ok((token("pstrSessionToken")?, token("pstrSecurityToken")?))
    }
}
fn csrf(page: &str) -> Result<&str, String> {
    page.split(r#"name="csrf" value=""#)
        .nth(1)
        .and_then(|t| t.split('"').next())
        .ok_or_else(|| "no csrf field".to_owned())
}
/// The console's sign-in form: "ok" once the home page opens with the session, "refused"
/// when the password is refused or its session does not open the console.
fn native(b: &mut Browser, url: &str, login: &str, password: &str) -> Result<String, String> {
    let (_, _, page) = b.send(&format!("{url}/console/login"), None, &[], None)?;
    let form = [("csrf", csrf(&page)?), ("login", login), ("password", password)];
    let (status, location, text) = b.send(&format!("{url}/console/login"), Some(&form), &[], None)?;
    match status {
        401 => return Ok("refused".into()),
        303 if location.ends_with("/console/") => {}
        _ => return Err(format!("POST /console/login: {status}: {text}")),
    }
    let (status, _, home) = b.send(&location, None, &[], None)?;
    Ok(match status {
        200 if home.contains(login) => "ok".into(),
        303 => "refused".into(),
        _ => return Err(format!("GET /console/: {status}")),
    })
}
/// "Connect with IMS": to the IMS's sign-in form and back to the instance's callback.
fn through_ims(
    b: &mut Browser,
    url: &str,
    email: &str,
    password: &str,
    login: &str,
) -> Result<String, String> {
    let (_, authorize, _) = b.send(&format!("{url}/console/ims/login"), None, &[], None)?;
    let (_, page_url, _) = b.send(&authorize, None, &[], None)?;
    let mut next = String::new();
    for (field, value) in [("email", email), ("password", password)] {
        let (status, _, page) = b.send(&page_url, None, &[], None)?;
        let form = [
            ("csrf", csrf(&page).map_err(|e| format!("{status} {e}: {page}"))?),
            (field, value),
        ];
        let (status, location, text) = b.send(&page_url, Some(&form), &[], None)?;
        if status != 303 {
            return Err(format!("the IMS's sign-in ({field}): {status}: {text}"));
        }
        next = location;
    }
    let (status, location, text) = b.send(&next, None, &[], None)?;
    match status {
        403 => {
            return Ok(format!(
                "refused: {}",
                text.split("role=\"alert\">").nth(1).unwrap_or(&text)
            ))
        }
        303 if location.ends_with("/console/") => {}
        _ => return Err(format!("the callback: {status}: {text}")),
    }
    let (status, _, home) = b.send(&location, None, &[], None)?;
    if status == 200 && home.contains(login) {
        Ok("ok".into())
    } else {
        Err(format!(
            "signed in through the IMS, but GET /console/ answered {status}"
        ))
    }
}

#[test]
fn technical_operators_and_people_keep_working_during_the_end_user_phase() {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::{Arc, Mutex};
    use std::thread;

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
    let migrate = |args: &[&str]| {
        run_ok(
            ims()
                .arg("migrate")
                .args(args)
                .args(["--data-dir", &d, "--instance", "marketing"]),
        )
    };

    // Known passwords, set by the administrator through the API: the integrations', and those
    // of a few people spread over the population, who also have IMS accounts already.
    // (Exit code 1: the demo's blockers, people without an email among them.)
    let assessed = ims()
        .args([
            "migrate",
            "assess",
            "--json",
            "--data-dir",
            &d,
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
    let mut admin = Browser::new(&ca);
    let s = admin
        .logon(
            &url,
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
                &url,
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
                    &d,
                    "--email",
                    email,
                    "--type",
                    "enterpriseID",
                ])
                .arg("--password-file")
                .arg(&pw_file),
        );
    }

    // The load: per integration, a scheduled job (sign in, two calls, sign off, again) and a
    // connector keeping one session; people signing in to the console, the password first.
    let t0 = Instant::now();
    let stop = Arc::new(AtomicBool::new(false));
    let calls: Arc<Mutex<Vec<Call>>> = Arc::default();
    let attempts: Arc<Mutex<Vec<Attempt>>> = Arc::default();
    let mut threads = Vec::new();
    for (login, password) in integrations.clone() {
        for long in [false, true] {
            let (stop, calls, url, ca, login, password) = (
                stop.clone(),
                calls.clone(),
                url.clone(),
                ca.clone(),
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
        let (stop, attempts, url, ca) = (stop.clone(), attempts.clone(), url.clone(), ca.clone());
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
    let wait_for = |what: &str, done: &dyn Fn() -> bool| {
        let deadline = Instant::now() + Duration::from_secs(30);
        while !done() {
            assert!(Instant::now() < deadline, "{what}");
            thread::sleep(Duration::from_millis(20));
        }
    };
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

    // Not one integration call failed, and some were made while the phase ran.
    let calls = calls.lock().unwrap();
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

    // Each person: the password worked until the move, the IMS from then on. A sign-in that
    // failed both ways counts only inside the window from the first refused password to the
    // first IMS success; after that success the password never works again.
    let attempts = attempts.lock().unwrap();
    for (login, ..) in &people {
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
    server.stop();
}

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
        prop_oneof![1 => Just(std::collections::BTreeSet::new()), 6 => prop::collection::btree_set(0..groups, 1..3)],
        prop::collection::btree_set(0..64usize, 0..3),
        prop::bool::weighted(0.2),
        prop::bool::weighted(0.15),
    )
        .prop_map(|(login, email, padded, disabled, groups, rights, beyond, program)| Legacy {
            login,
            email,
            padded,
            disabled,
            groups: groups.into_iter().collect(),
            rights: rights.into_iter().collect(),
            beyond,
            program,
        });
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
            .collect::<std::collections::BTreeSet<_>>()
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

/// A GET on the instance's migration API as its administrator.
fn migration_api(b: &mut Browser, url: &str, session: &(String, String), path: &str) -> Value {
    let (status, _, text) = b
        .send(
            &format!("{url}/nl/migration/v1{path}"),
            None,
            &[
                ("X-Session-Token", session.0.as_str()),
                ("X-Security-Token", session.1.as_str()),
            ],
            None,
        )
        .unwrap();
    assert_eq!(status, 200, "GET {path}: {text}");
    serde_json::from_str(&text).unwrap()
}

fn all_operators(
    b: &mut Browser,
    url: &str,
    session: &(String, String),
) -> Vec<ims_wire::migration::OperatorFacts> {
    let mut out = Vec::new();
    let mut after = 0;
    loop {
        let page: ims_wire::migration::OperatorPage = serde_json::from_value(migration_api(
            b,
            url,
            session,
            &format!("/operators?after={after}&limit=5000"),
        ))
        .unwrap();
        out.extend(page.operators);
        match page.next_after {
            Some(next) if next > after => after = next,
            _ => return out,
        }
    }
}

/// Every user of the organisation, through the User Management API.
fn org_users(upj: &Value, cred: &Value) -> Vec<Value> {
    let http = http_client_for(upj);
    let ims_url = upj["ims_url"].as_str().unwrap();
    let t = token(&http, ims_url, cred);
    let mut users = Vec::new();
    for page in 0.. {
        let v: Value = http
            .get(format!(
                "{ims_url}/v2/usermanagement/users/{}/{page}",
                upj["org_id"].as_str().unwrap()
            ))
            .bearer_auth(&t)
            .header("x-api-key", cred["client_id"].as_str().unwrap())
            .send()
            .unwrap()
            .json()
            .unwrap();
        users.extend(v["users"].as_array().cloned().unwrap_or_default());
        if v["lastPage"] != false {
            break;
        }
    }
    users
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
    use ims_campaign::store::{OperatorStore as _, UsageStore as _};
    use proptest::test_runner::{Config, TestRunner};
    use std::collections::{BTreeSet, HashMap};

    const PASSWORD: &str = "a legacy passphrase";
    const IMS_PASSWORD: &str = "an ims passphrase";
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let d = dir.to_str().unwrap().to_owned();
    let (server, upj) = up(&dir, &[]);
    let url = upj["instances"][0]["url"].as_str().unwrap().to_owned();
    let admin_pw = upj["instances"][0]["admin_password"].as_str().unwrap().to_owned();
    let ca = PathBuf::from(upj["ca_cert"].as_str().unwrap());
    register_ims_sign_in(&d);
    let migrate = |args: &[&str]| {
        ims()
            .arg("migrate")
            .args(args)
            .args(["--data-dir", &d, "--instance", "marketing"])
            .output()
            .unwrap()
    };
    ok(migrate(&["prepare", "--profiles"]));
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
        .block_on(ims_store::instance::SqlInstanceStore::open(
            &opts,
            ims_core::Now::system(),
        ))
        .unwrap();
    let hash = rt
        .block_on(ims_core::password::hash(&ims_core::secret::Secret::new(PASSWORD)))
        .unwrap();

    let mut admin = Browser::new(&ca);
    let session = admin.logon(&url, "admin", &admin_pw).unwrap();
    let facts = migration_api(&mut admin, &url, &session, "/instance");
    let carried: std::collections::BTreeMap<String, BTreeSet<String>> = facts["groups"]
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
    let mask = |g: &str| format!("campaign - marketing - {g}");
    let key = |e: &str| e.trim().to_lowercase();

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
        let now = ims_core::Now::system();
        for m in &made {
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
        // How each signs in before: people at the console, programs through the API.
        let signs_in = |m: &Made| -> String {
            let mut b = Browser::new(&ca);
            if m.program {
                b.logon(&url, &m.login, PASSWORD)
                    .map(|_| "ok".to_owned())
                    .unwrap_or_else(|e| e)
            } else {
                native(&mut b, &url, &m.login, PASSWORD).unwrap()
            }
        };
        let was: Vec<String> = made.iter().map(signs_in).collect();
        for (m, w) in made.iter().zip(&was) {
            if !m.program {
                assert_eq!(w, if m.disabled { "refused" } else { "ok" }, "{m:?}");
            }
        }
        let mut b = Browser::new(&ca);
        let session = b.logon(&url, "admin", &admin_pw).unwrap();
        let before = all_operators(&mut b, &url, &session);
        let users_before = org_users(&upj, &cred);

        // Who moves, by the rules and nothing else: people (not programs), enabled, with an
        // address the IMS takes that no other operator shares, in a group at least (a profile
        // is what lets a person in through the IMS), holding no right beyond their groups.
        let mut holders: HashMap<String, usize> = HashMap::new();
        for o in &before {
            if let Some(e) = o.email.as_deref().filter(|e| !e.trim().is_empty()) {
                *holders.entry(key(e)).or_default() += 1;
            }
        }
        let eligible = |m: &Made| {
            let from_groups: BTreeSet<&String> = m.groups.iter().flat_map(|g| &carried[g]).collect();
            !m.program
                && !m.disabled
                && m.email.as_deref().is_some_and(|e| {
                    ims_identity::people::check_email(e.trim()).is_ok() && holders[&key(e)] == 1
                })
                && m.rights.iter().all(|r| from_groups.contains(r))
                && !m.groups.is_empty()
        };
        let plan_file = tmp.path().join(format!("users-{}.json", tag.get()));
        let p = plan_file.to_str().unwrap();
        ok(migrate(&["plan", "users", "--out", p]));
        let plan: Value = serde_json::from_str(&std::fs::read_to_string(&plan_file).unwrap()).unwrap();
        let planned: BTreeSet<String> = logins_in(&plan["people"]).into_iter().collect();
        let skipped: BTreeSet<String> = logins_in(&plan["skipped"]).into_iter().collect();
        for m in &made {
            assert_eq!(planned.contains(&m.login), eligible(m), "{m:?}\n{plan}");
            assert_eq!(
                skipped.contains(&m.login),
                !m.program && !eligible(m),
                "{m:?}\n{plan}"
            );
        }
        ok(migrate(&["apply", p]));

        // Nothing lost or changed but the way the planned people sign in.
        let same = |now: &[ims_wire::migration::OperatorFacts], moved: &BTreeSet<String>| {
            let was: HashMap<&str, &ims_wire::migration::OperatorFacts> =
                before.iter().map(|o| (o.login.as_str(), o)).collect();
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
        };
        // One identity per address, each linked by one operator and holding exactly the profiles
        // of its operator's groups; the others hold what they held.
        let identities = |now: &[ims_wire::migration::OperatorFacts]| {
            let users = org_users(&upj, &cred);
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
        };
        let now_ops = all_operators(&mut b, &url, &session);
        same(&now_ops, &planned);
        identities(&now_ops);
        for m in made.iter().filter(|m| planned.contains(&m.login)) {
            let email = m.email.as_deref().unwrap().trim();
            run_ok(
                ims()
                    .args(["user", "set-password", "--data-dir", &d, "--email", email])
                    .arg("--password-file")
                    .arg(&pw_file),
            );
        }
        // Every person signs in as before: the moved ones through the IMS, and no longer with
        // the password.
        for (m, w) in made.iter().zip(&was) {
            if planned.contains(&m.login) {
                let mut b = Browser::new(&ca);
                let email = m.email.as_deref().unwrap().trim();
                assert_eq!(
                    through_ims(&mut b, &url, email, IMS_PASSWORD, &m.login).unwrap(),
                    "ok",
                    "{m:?}"
                );
                assert_eq!(
                    native(&mut Browser::new(&ca), &url, &m.login, PASSWORD).unwrap(),
                    "refused"
                );
            } else {
                assert_eq!(&signs_in(m), w, "{m:?}");
            }
        }
        let status: Value = serde_json::from_str(&ok(migrate(&["status", "--json"]))).unwrap();
        let r = &status["reconciliation"];
        assert_eq!(
            (&r["differences"], &r["not_linked_yet"]),
            (&serde_json::json!([]), &serde_json::json!([])),
            "{r}"
        );

        // Rolled back: everyone as before, signing in as before, the profiles left.
        ok(migrate(&[
            "rollback",
            "--plan",
            plan["plan_id"].as_str().unwrap(),
        ]));
        let now_ops = all_operators(&mut b, &url, &session);
        same(&now_ops, &BTreeSet::new());
        identities(&now_ops);
        for (m, w) in made.iter().zip(&was) {
            assert_eq!(&signs_in(m), w, "{m:?} after the rollback");
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
            tag.get(),
            made.len(),
            planned.len()
        );
        Ok(())
    });
    if let Err(e) = result {
        panic!("{e}");
    }
    server.stop();
}
