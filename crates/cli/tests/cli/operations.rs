//! Running the services: isolation between instances, logs free of secrets, configuration
//! refusals, and PostgreSQL shared by two nodes or by `ims up`.

use serde_json::Value;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::harness::*;

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
    signal(&server.child, "-TERM");
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
    // A wrong value of one of ours stops every command, naming it.
    let out = ims()
        .args(["credential", "list"])
        .env("IMS_TLS", "maybe")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("IMS_TLS"));
    // A variable that is none of ours (a platform's, a typo) is warned about and changes nothing:
    // the command ends as it does without it.
    let plain = ims().args(["credential", "list"]).output().unwrap();
    let out = ims()
        .args(["credential", "list"])
        .env("IMS_LISTNE", "x")
        .env("IMS_PORT", "tcp://10.0.0.7:443")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), plain.status.code());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("IMS_LISTNE") && stderr.contains("did you mean IMS_LISTEN?"),
        "{stderr}"
    );
    assert!(stderr.contains("IMS_PORT"), "{stderr}");
    assert!(
        !stderr.contains('\u{1b}'),
        "no colour escapes when not on a terminal: {stderr}"
    );
    // `ims serve` refusing to start: exit code 2, and the message names what to set.
    let tmp = tempfile::tempdir().unwrap();
    let key = tmp.path().join("mk");
    std::fs::write(&key, ims_core::keys::MasterKey::generate().to_base64()).unwrap();
    let refused = |env: &[(&str, &str)], says: &[&str]| {
        let mut cmd = ims_serve(&format!("sqlite://{}", tmp.path().join("x.db").display()), &key);
        cmd.env("IMS_TLS", "false");
        // An empty value leaves the variable out.
        for (k, v) in env {
            if v.is_empty() {
                cmd.env_remove(k);
            } else {
                cmd.env(k, v);
            }
        }
        let out = cmd.output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{env:?}: {stderr}");
        for word in says {
            assert!(stderr.contains(word), "{env:?}: {stderr}");
        }
    };
    // Plain HTTP off loopback without proxies in front.
    refused(&[("IMS_LISTEN", "0.0.0.0:0")], &["loopback", "trusted_proxies"]);
    // Behind a proxy: the URLs it issues must come from configuration.
    let behind = [("IMS_LISTEN", "0.0.0.0:0"), ("IMS_TRUSTED_PROXIES", "10.0.0.0/8")];
    refused(&behind, &["public_url"]);
    refused(
        &[
            ("IMS_LISTEN", "0.0.0.0:0"),
            ("IMS_TRUSTED_PROXIES", "10.0.0.0/33"),
        ],
        &["trusted_proxies", "10.0.0.0/33"],
    );
    refused(
        &[("IMS_LISTEN", "127.0.0.1:0"), ("IMS_PROXY_PROTOCOL", "true")],
        &["proxy_protocol needs trusted_proxies"],
    );
    // An operations listener off loopback names who may reach it.
    refused(
        &[("IMS_LISTEN", "127.0.0.1:0"), ("IMS_OPS_LISTEN", "0.0.0.0:0")],
        &["ops_allow"],
    );
    // The same for an instance served alone.
    let out = ims()
        .args(["instance", "serve", "--name", "solo", "--data-dir"])
        .arg(tmp.path().join("solo"))
        .env("IMS_TLS", "false")
        .env("IMS_LISTEN", "0.0.0.0:0")
        .env("IMS_TRUSTED_PROXIES", "10.0.0.0/8")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.code() == Some(2) && stderr.contains("public_url"),
        "{stderr}"
    );
    // No master key, no start.
    refused(
        &[("IMS_LISTEN", "127.0.0.1:0"), ("IMS_MASTER_KEY_FILE", "")],
        &["master_key"],
    );
}

/// Two `ims serve` nodes on one PostgreSQL database.
#[test]
fn two_nodes_share_one_postgres_database() {
    let Some(url) = postgres_url("two nodes on PostgreSQL") else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let schema = format!("n_{}", ims_core::secret::random_hex(8));
    let key = tmp.path().join("master.key");
    std::fs::write(&key, ims_core::keys::MasterKey::generate().to_base64()).unwrap();
    let ports = [free_port(), free_port()];
    let issuer = "http://ims.cluster.test";
    let node = |i: usize| {
        let mut cmd = ims_serve(&url, &key);
        cmd.env("IMS_DATABASE_SCHEMA", &schema)
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

/// `ims up` on PostgreSQL: the IMS and each instance in a schema of their own, the data
/// directory's commands finding them through up.json, and the end-user phase moving people with
/// both sides agreeing afterwards. Restarted, it finds everything where it left it.
#[test]
fn up_runs_on_postgres_and_migrates_people() {
    let Some(url) = postgres_url("ims up on PostgreSQL") else {
        return;
    };
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
    register_ims_sign_in(d);
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

/// `ims serve` takes up a renewed certificate without a restart (on SIGHUP here), and keeps the
/// one in use when the new files cannot be read.
#[test]
fn the_tls_certificate_is_reloaded_without_a_restart() {
    let tmp = tempfile::tempdir().unwrap();
    let key = tmp.path().join("mk");
    std::fs::write(&key, ims_core::keys::MasterKey::generate().to_base64()).unwrap();
    // Two certificates for the same address, each its own authority.
    let issue = |name: &str| {
        let made = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_owned()]).unwrap();
        let cert = tmp.path().join(format!("{name}.pem"));
        std::fs::write(&cert, made.cert.pem()).unwrap();
        std::fs::write(
            tmp.path().join(format!("{name}.key")),
            made.signing_key.serialize_pem(),
        )
        .unwrap();
        cert
    };
    let (first, second) = (issue("first"), issue("second"));
    let live_cert = tmp.path().join("server.pem");
    let live_key = tmp.path().join("server.key");
    let install = |name: &str| {
        std::fs::copy(tmp.path().join(format!("{name}.pem")), &live_cert).unwrap();
        std::fs::copy(tmp.path().join(format!("{name}.key")), &live_key).unwrap();
    };
    install("first");
    let port = free_port();
    let mut cmd = ims_serve(&format!("sqlite://{}", tmp.path().join("ims.db").display()), &key);
    cmd.env("IMS_LISTEN", format!("127.0.0.1:{port}"))
        .env("IMS_TLS_CERT", &live_cert)
        .env("IMS_TLS_KEY", &live_key);
    let server = spawn(cmd, &tmp.path().join("serve.log"));
    let base = format!("https://127.0.0.1:{port}");
    // A new client each time: a new connection, a new handshake.
    let trusted_by = |ca: &Path| client(Some(ca)).get(format!("{base}/health/live")).send().is_ok();
    wait_ready(&client(Some(&first)), &base);
    assert!(trusted_by(&first) && !trusted_by(&second));

    install("second");
    signal(&server.child, "-HUP");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !trusted_by(&second) {
        assert!(Instant::now() < deadline, "the new certificate was not taken up");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(!trusted_by(&first), "the old certificate is still presented");

    // A broken renewal: reported, and the certificate in use stays.
    std::fs::write(&live_cert, "not a certificate").unwrap();
    hang_up_until_logged(
        &server.child,
        &tmp.path().join("serve.log"),
        "TLS certificate not reloaded",
    );
    assert!(trusted_by(&second));
    let log = server.stop();
    assert!(log.contains("TLS certificate reloaded"), "{log}");
}

/// What a package installs, laid out by `scripts/dist` from the built binary: completions that
/// the shell reads, a manual page, and systemd units that `systemd-analyze verify` accepts with
/// that binary and that manual page in place.
#[test]
fn packaging_lays_out_completions_a_manual_page_and_units_that_verify() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("dist");
    let laid = Command::new(root.join("scripts/dist"))
        .arg(env!("CARGO_BIN_EXE_ims"))
        .arg(&out)
        .output()
        .unwrap();
    assert!(laid.status.success(), "{}", String::from_utf8_lossy(&laid.stderr));
    let bash = out.join("share/bash-completion/completions/ims");
    let checked = Command::new("bash").arg("-n").arg(&bash).output().unwrap();
    assert!(
        checked.status.success(),
        "{}",
        String::from_utf8_lossy(&checked.stderr)
    );
    let completions = std::fs::read_to_string(&bash).unwrap();
    for word in ["serve", "migrate", "credential", "--data-dir"] {
        assert!(completions.contains(word), "bash completion lacks {word}");
    }
    assert!(std::fs::read_to_string(out.join("share/zsh/site-functions/_ims"))
        .unwrap()
        .starts_with("#compdef ims"));
    assert!(
        std::fs::read_to_string(out.join("share/fish/vendor_completions.d/ims.fish"))
            .unwrap()
            .contains("complete -c ims")
    );
    let manual = std::fs::read_to_string(out.join("share/man/man1/ims.1")).unwrap();
    assert!(
        manual.contains(".TH ims 1") && manual.contains("serve"),
        "{manual}"
    );

    // The units as installed, their ExecStart pointed at this build: the IMS's, and one
    // instance of the instances' template.
    let units = tmp.path().join("units");
    std::fs::create_dir_all(&units).unwrap();
    for (file, verify) in [
        ("ims.service", "ims.service"),
        ("ims-instance@.service", "ims-instance@marketing.service"),
    ] {
        let unit = std::fs::read_to_string(out.join("lib/systemd/system").join(file))
            .unwrap()
            .replace("/usr/local/bin/ims", &out.join("bin/ims").display().to_string());
        std::fs::write(units.join(file), unit).unwrap();
        let verified = Command::new("systemd-analyze")
            .args(["verify", verify])
            .current_dir(&units)
            .env("MANPATH", out.join("share/man"))
            .output()
            .expect("systemd-analyze (Debian's systemd package; the test command installs it)");
        let said = String::from_utf8_lossy(&verified.stderr).into_owned();
        assert!(
            verified.status.success() && said.trim().is_empty(),
            "{verify}: {said}"
        );
    }
    // And it is not a check that passes anything: a unit naming a missing program fails.
    std::fs::write(
        units.join("broken.service"),
        "[Service]\nExecStart=/nonexistent/ims serve\n",
    )
    .unwrap();
    let broken = Command::new("systemd-analyze")
        .args(["verify", "broken.service"])
        .current_dir(&units)
        .output()
        .unwrap();
    assert!(!broken.status.success());
}

/// The text of the first `<tag ...>text</tag>` in `xml`.
fn element<'a>(xml: &'a str, tag: &str) -> Option<&'a str> {
    let start = xml.find(&format!("<{tag}"))?;
    let open_end = start + xml[start..].find('>')? + 1;
    let close = open_end + xml[open_end..].find(&format!("</{tag}>"))?;
    Some(&xml[open_end..close])
}

/// `ims instance serve`: one instance as a service of its own, two nodes sharing its PostgreSQL
/// schema. The first node creates it (and its `admin` operator); a session opened on one node
/// works on the other; SIGHUP reads the configuration files again without a restart, and so does
/// an administrator's call on the operations listener, which also serves health and metrics.
#[test]
fn an_instance_runs_alone_on_two_nodes_sharing_postgres() {
    let Some(url) = postgres_url("instance nodes on PostgreSQL") else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let base_schema = format!("n_{}", ims_core::secret::random_hex(8));
    let ports = [free_port(), free_port()];
    let ops_port = free_port();
    let node = |i: usize| {
        let mut cmd = ims();
        cmd.args(["instance", "serve", "--name", "solo", "--data-dir"])
            .arg(tmp.path().join(format!("node{i}")))
            .env("IMS_DATABASE_URL", &url)
            .env("IMS_DATABASE_SCHEMA", &base_schema)
            .env("IMS_TLS", "false")
            .env("IMS_LISTEN", format!("127.0.0.1:{}", ports[i]));
        if i == 1 {
            cmd.env("IMS_OPS_LISTEN", format!("127.0.0.1:{ops_port}"));
        }
        spawn(cmd, &tmp.path().join(format!("node{i}.log")))
    };
    let http = client(None);
    let a = node(0);
    let base_a = format!("http://127.0.0.1:{}", ports[0]);
    let base_b = format!("http://127.0.0.1:{}", ports[1]);
    let deadline = Instant::now() + Duration::from_secs(30);
    while http.get(format!("{base_a}/r/test")).send().is_err() {
        assert!(Instant::now() < deadline, "node A did not start");
        std::thread::sleep(Duration::from_millis(100));
    }
    let b = node(1);
    while http.get(format!("{base_b}/r/test")).send().is_err() {
        assert!(Instant::now() < deadline, "node B did not start");
        std::thread::sleep(Duration::from_millis(100));
    }
    let started_a = std::fs::read_to_string(tmp.path().join("node0.log")).unwrap();
    let password = started_a
        .lines()
        .find_map(|l| l.split("password (shown once): ").nth(1))
        .expect("the first node shows the admin password")
        .trim()
        .to_owned();

    let logon = soap_logon(&http, &base_a, "admin", &password);
    let session = element(&logon, "pstrSessionToken").expect(&logon).to_owned();
    let security = element(&logon, "pstrSecurityToken").expect(&logon).to_owned();
    let info = http
        .post(format!("{base_b}/nl/jsp/soaprouter.jsp"))
        .header("SOAPAction", "xtk:session#GetUserInfo")
        .header("X-Session-Token", &session)
        .header("X-Security-Token", &security)
        .body(r#"<SOAP-ENV:Envelope xmlns:SOAP-ENV="http://schemas.xmlsoap.org/soap/envelope/"><SOAP-ENV:Body><m:GetUserInfo xmlns:m="urn:xtk:session"><sessiontoken/></m:GetUserInfo></SOAP-ENV:Body></SOAP-ENV:Envelope>"#)
        .send()
        .unwrap()
        .text()
        .unwrap();
    assert!(
        !info.contains("Fault>") && info.contains("login=\"admin\""),
        "the session of node A on node B: {info}"
    );

    hang_up_until_logged(&b.child, &tmp.path().join("node1.log"), "configuration reloaded");
    assert!(http
        .get(format!("{base_b}/r/test"))
        .send()
        .unwrap()
        .status()
        .is_success());

    // Node B's operations listener: readiness from its database, metrics of its routes and pool.
    let ops = format!("http://127.0.0.1:{ops_port}");
    for base in [&ops, &base_b] {
        let ready = http.get(format!("{base}/health/ready")).send().unwrap();
        assert_eq!(ready.status().as_u16(), 200, "{base}");
        assert!(ready.text().unwrap().contains("\"ready\""));
    }
    let metrics = http.get(format!("{ops}/metrics")).send().unwrap().text().unwrap();
    for series in [
        "ims_http_requests_total{route=\"/nl/jsp/soaprouter.jsp\",method=\"POST\",status=\"200\"}",
        "ims_db_connections_max ",
        "process_resident_memory_bytes ",
        "ims_build_info{",
    ] {
        assert!(metrics.contains(series), "{series} missing from:\n{metrics}");
    }
    // The reload call: only there, only for an administrator, and it says when the files did not
    // apply.
    let reload = |session: Option<(&str, &str)>, base: &str| {
        let mut req = http.post(format!("{base}/admin/v1/reload"));
        if let Some((s, t)) = session {
            req = req.header("X-Session-Token", s).header("X-Security-Token", t);
        }
        let resp = req.send().unwrap();
        (resp.status().as_u16(), resp.text().unwrap())
    };
    assert_eq!(
        reload(Some((&session, &security)), &base_b).0,
        404,
        "not on the public port"
    );
    let (status, body) = reload(None, &ops);
    assert_eq!(status, 401, "{body}");
    assert!(body.contains("\"status\":401"), "problem details: {body}");
    let (status, body) = reload(Some((&session, &security)), &ops);
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("reloaded"), "{body}");
    let conf = tmp.path().join("node1/conf/config-solo.xml");
    let good = std::fs::read_to_string(&conf).ok();
    std::fs::write(&conf, "<serverconf><broken").unwrap();
    let (status, body) = reload(Some((&session, &security)), &ops);
    assert_eq!(status, 500, "{body}");
    assert!(body.contains("not applied"), "{body}");
    match good {
        Some(text) => std::fs::write(&conf, text).unwrap(),
        None => std::fs::remove_file(&conf).unwrap(),
    }
    assert_eq!(reload(Some((&session, &security)), &ops).0, 200);
    a.stop();
    b.stop();
    let _ = Command::new("psql")
        .args([
            url.as_str(),
            "-qc",
            &format!("DROP SCHEMA IF EXISTS {base_schema}_solo CASCADE"),
        ])
        .output();
}
