//! What the end-to-end tests share: running the `ims` binary and `ims up`, HTTP clients that
//! trust its CA, the SOAP calls and a browser for the instance's console.

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

const IMS: &str = env!("CARGO_BIN_EXE_ims");

/// `ims serve` on `database_url` with the master key in `master_key`.
pub(crate) fn ims_serve(database_url: &str, master_key: &Path) -> Command {
    let mut c = ims();
    c.arg("serve")
        .env("IMS_DATABASE_URL", database_url)
        .env("IMS_MASTER_KEY_FILE", master_key);
    c
}

pub(crate) fn ims() -> Command {
    let mut c = Command::new(IMS);
    // Tests choose their configuration; nothing leaks in from the environment running them.
    for (k, _) in std::env::vars() {
        if k.starts_with("IMS_") {
            c.env_remove(k);
        }
    }
    c
}

pub(crate) fn run_ok(cmd: &mut Command) -> String {
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

pub(crate) struct Server {
    pub(crate) child: Child,
    pub(crate) log: PathBuf,
}

impl Server {
    pub(crate) fn stop(mut self) -> String {
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

pub(crate) fn spawn(mut cmd: Command, log: &Path) -> Server {
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
pub(crate) fn up(dir: &Path, extra_env: &[(&str, &str)]) -> (Server, Value) {
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
pub(crate) fn ok(out: Output) -> String {
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
pub(crate) fn register_ims_sign_in(data_dir: &str) {
    register_ims_sign_in_of(data_dir, "marketing");
}

/// `ims instance ims-config --register` for `instance`: it signs people in through the IMS.
pub(crate) fn register_ims_sign_in_of(data_dir: &str, instance: &str) {
    run_ok(ims().args([
        "instance",
        "--data-dir",
        data_dir,
        "ims-config",
        "--instance",
        instance,
        "--register",
    ]));
}

/// The logins of a plan's list (`people`, `skipped`).
pub(crate) fn logins_in(list: &Value) -> Vec<String> {
    list.as_array()
        .unwrap()
        .iter()
        .map(|p| p["login"].as_str().unwrap().to_owned())
        .collect()
}

fn rand_u32() -> u32 {
    u32::from_str_radix(&ims_core::secret::random_hex(4), 16).unwrap()
}

pub(crate) fn client(ca: Option<&Path>) -> reqwest::blocking::Client {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let mut b = reqwest::blocking::Client::builder().timeout(Duration::from_secs(20));
    if let Some(ca) = ca {
        let pem = std::fs::read(ca).unwrap();
        b = b.add_root_certificate(reqwest::Certificate::from_pem(&pem).unwrap());
    }
    b.build().unwrap()
}

/// A client trusting `ims up`'s CA that does not follow redirects (to read `Location`).
pub(crate) fn no_redirect_client(upj: &Value) -> reqwest::blocking::Client {
    let pem = std::fs::read(upj["ca_cert"].as_str().unwrap()).unwrap();
    reqwest::blocking::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(&pem).unwrap())
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

/// An authorization request of the code flow for `client_id` (redirect `https://app.example/cb`).
pub(crate) fn authorize(
    http: &reqwest::blocking::Client,
    base: &str,
    client_id: &str,
) -> reqwest::blocking::Response {
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

pub(crate) fn wait_ready(http: &reqwest::blocking::Client, base: &str) {
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

pub(crate) fn token(http: &reqwest::blocking::Client, base: &str, cred: &Value) -> String {
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

pub(crate) fn introspect(http: &reqwest::blocking::Client, base: &str, cred: &Value, token: &str) -> Value {
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
pub(crate) fn http_client_for(upj: &Value) -> reqwest::blocking::Client {
    client(Some(Path::new(upj["ca_cert"].as_str().unwrap())))
}

/// `xtk:session#Logon` on an instance; the raw answer.
pub(crate) fn soap_logon(
    http: &reqwest::blocking::Client,
    instance_url: &str,
    login: &str,
    password: &str,
) -> String {
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
pub(crate) fn soap_set_password(
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

pub(crate) fn json_of(out: &str) -> Value {
    serde_json::from_str(out).unwrap()
}

pub(crate) fn base64_url(s: &str) -> Vec<u8> {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(s)
        .unwrap()
}

pub(crate) fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A browser: cookies per origin, each redirect read by hand, and the bench's deadline on
/// every call (an integration's client gives up after 5 s).
pub(crate) struct Browser {
    http: reqwest::blocking::Client,
    jar: std::collections::HashMap<String, std::collections::HashMap<String, String>>,
}
impl Browser {
    pub(crate) fn new(ca: &Path) -> Self {
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
    pub(crate) fn send(
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
    pub(crate) fn soap(
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

    pub(crate) fn logon(
        &mut self,
        base: &str,
        login: &str,
        password: &str,
    ) -> Result<(String, String), String> {
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
pub(crate) fn native(b: &mut Browser, url: &str, login: &str, password: &str) -> Result<String, String> {
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
pub(crate) fn through_ims(
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

/// A GET on the instance's migration API as its administrator.
pub(crate) fn migration_api(b: &mut Browser, url: &str, session: &(String, String), path: &str) -> Value {
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

pub(crate) fn all_operators(
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
pub(crate) fn org_users(upj: &Value, cred: &Value) -> Vec<Value> {
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

/// `ims instance --data-dir <d> <args>`: its output, whatever the exit code.
pub(crate) fn instance_cmd(d: &str, args: &[&str]) -> Output {
    let mut c = ims();
    c.args(["instance", "--data-dir", d]).args(args);
    c.output().unwrap()
}

/// `ims migrate <args>` on the instance `instance` of the data directory `d`, to run.
pub(crate) fn migrate_cmd(d: &str, instance: &str, args: &[&str]) -> Command {
    let mut c = ims();
    c.arg("migrate")
        .args(args)
        .args(["--data-dir", d, "--instance", instance]);
    c
}

/// A command's standard output then its standard error, as text.
pub(crate) fn output_text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// The IMS's audit log (its last 5000 lines), as `ims audit` prints it.
pub(crate) fn ims_audit(d: &str) -> String {
    run_ok(ims().args(["audit", "--data-dir", d, "--limit", "5000"]))
}

/// The links to `path` (`/ims/invitation/`, `/ims/reset/`) in the messages to `to` written
/// under `mail_dir`, oldest message first.
pub(crate) fn mailed_links(mail_dir: &Path, to: &str, path: &str) -> Vec<String> {
    let mut found: Vec<(std::time::SystemTime, String)> = Vec::new();
    for entry in std::fs::read_dir(mail_dir).into_iter().flatten().flatten() {
        let Ok(text) = std::fs::read_to_string(entry.path()) else {
            continue;
        };
        // Quoted-printable soft line breaks would cut a link in two.
        let text = text.replace("=\r\n", "").replace("=\n", "");
        if !text.lines().any(|l| l.eq_ignore_ascii_case(&format!("To: {to}"))) {
            continue;
        }
        let link = text
            .split(|c: char| c.is_whitespace() || c == '"' || c == '<' || c == '>')
            .find(|w| w.starts_with("https://") && w.contains(path));
        if let Some(link) = link {
            let at = entry
                .metadata()
                .and_then(|m| m.modified())
                .unwrap_or(std::time::UNIX_EPOCH);
            found.push((at, link.to_owned()));
        }
    }
    found.sort();
    found.into_iter().map(|(_, l)| l).collect()
}

/// Opens an invitation link and chooses `password`: where the IMS sends the person next.
pub(crate) fn accept_invitation(b: &mut Browser, link: &str, password: &str) -> Result<String, String> {
    let (status, _, page) = b.send(link, None, &[], None)?;
    if status != 200 {
        return Err(format!("GET the invitation: {status}: {page}"));
    }
    let form = [
        ("csrf", csrf(&page)?),
        ("password", password),
        ("confirm", password),
    ];
    let (status, location, text) = b.send(link, Some(&form), &[], None)?;
    if status != 303 {
        return Err(format!("POST the invitation: {status}: {text}"));
    }
    Ok(location)
}

/// "Connect with IMS" for a browser that holds an IMS session already: no form on the way;
/// "ok" once the console's home opens as `login`.
pub(crate) fn connect_signed_in(b: &mut Browser, url: &str, login: &str) -> Result<String, String> {
    let (status, authorize, text) = b.send(&format!("{url}/console/ims/login"), None, &[], None)?;
    if status != 303 {
        return Err(format!("Connect with IMS: {status}: {text}"));
    }
    let (status, callback, text) = b.send(&authorize, None, &[], None)?;
    if status != 303 || !callback.contains("/console/ims/callback") {
        return Err(format!("the IMS asked again: {status} {callback}: {text}"));
    }
    let (status, home, text) = b.send(&callback, None, &[], None)?;
    if status != 303 {
        return Err(format!("the callback: {status}: {text}"));
    }
    let (status, _, page) = b.send(&home, None, &[], None)?;
    if status == 200 && page.contains(login) {
        Ok("ok".into())
    } else {
        Err(format!("GET /console/ answered {status}"))
    }
}

/// The PostgreSQL database of the suite, `None` (said loudly) when it is to be skipped.
pub(crate) fn postgres_url(what: &str) -> Option<String> {
    let url = std::env::var("TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into());
    if url == "skip" {
        eprintln!("!!! SKIPPED: {what} (TEST_POSTGRES_URL=skip)");
        return None;
    }
    Some(url)
}

/// Sends `signal` (`-HUP`, `-TERM`) to `child`.
pub(crate) fn signal(child: &Child, signal: &str) {
    let pid = child.id().to_string();
    assert!(Command::new("kill")
        .args([signal, &pid])
        .status()
        .unwrap()
        .success());
}

/// Sends SIGHUP to `child` and waits, 10 s at most, until its log at `log` says `text`.
pub(crate) fn hang_up_until_logged(child: &Child, log: &Path, text: &str) {
    signal(child, "-HUP");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !std::fs::read_to_string(log).unwrap_or_default().contains(text) {
        assert!(Instant::now() < deadline, "{text:?} never logged after SIGHUP");
        std::thread::sleep(Duration::from_millis(100));
    }
}
