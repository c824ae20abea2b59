//! The technical-operator phase: each program that signs in with a password gets an OAuth
//! Server-to-Server credential (Developer Console API: its own project, the Campaign API with the
//! profiles of the operator's groups, the I/O Management API), which is proved by a token and a
//! real SOAP call (the instance creates the technical account operator at that first call); the
//! new operator is given the legacy operator's direct and folder rights, and the integrator an
//! integration kit. The legacy operator keeps working until it is watched quiet and retired.

use std::collections::{BTreeSet, HashSet};
use std::path::{Path, PathBuf};

use ims_core::Now;
use ims_wire::migration::{state_digest, InstanceFacts, OperatorFacts};
use serde::{Deserialize, Serialize};

use crate::assess::{classify, Class};
use crate::client::Credential;
use crate::journal::StepState;
use crate::prepare::{mask_for, profile_name};
use crate::run::{ApplyError, ApplyOptions, Engine, Run, Skipped};
use crate::run::{Checked, Phase, Plan};
use crate::wave::Wave;

pub const CREDENTIAL: &str = "credential";
pub const FIRST_CALL: &str = "first-call";
pub const ACCESS: &str = "access";
pub const KIT: &str = "kit";

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProgramStep {
    pub login: String,
    pub label: String,
    pub groups: Vec<String>,
    pub rights: Vec<String>,
    pub profiles: Vec<String>,
    /// The credential's (and its project's) name.
    pub credential_name: String,
    /// Where its native traffic comes from, and with which client.
    pub sources: Vec<String>,
    pub clients: Vec<String>,
    pub state: String,
}

/// The technical phase's plan (in its envelope, `Plan<Technical>`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Technical {
    pub programs: Vec<ProgramStep>,
    pub skipped: Vec<Skipped>,
    /// The pilot wave the plan is limited to (none: every program).
    #[serde(default, skip_serializing_if = "Wave::is_everyone")]
    pub wave: Wave,
    /// Programs left out because they are outside the wave.
    #[serde(default)]
    pub outside_wave: usize,
    /// The Developer Console project every credential goes into (found or created); none, a
    /// project of its own for each.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub project: Option<String>,
}

/// What `plan technical` is told.
#[derive(Clone, Debug, Default)]
pub struct TechnicalArgs {
    pub wave: Wave,
    pub project: Option<String>,
}

pub type TechnicalPlan = Plan<Technical>;

fn summary(plan: &TechnicalPlan) -> String {
    let body = &plan.body;
    let mut out = format!(
        "plan {} (technical operators of {}{}): {} to move, {} left as they are{}\n",
        plan.plan_id,
        plan.instance,
        body.wave.scope(),
        body.programs.len(),
        body.skipped.len(),
        body.wave.left_out(body.outside_wave)
    );
    if let Some(project) = &body.project {
        out.push_str(&format!(
            "  every credential in the Developer Console project {project:?} (found, or created)\n"
        ));
    }
    for p in &body.programs {
        out.push_str(&format!(
            "  {}: credential {:?} (Campaign API with [{}], I/O Management API); token and a SOAP call create its technical account operator, which gets its rights [{}] and folder rights; kit written; {} keeps working until retired (calls from {})\n",
            p.login,
            p.credential_name,
            p.profiles.join(", "),
            p.rights.join(", "),
            p.login,
            p.sources.join(", ")
        ));
    }
    for s in &body.skipped {
        out.push_str(&format!("  {}: left as it is: {}\n", s.login, s.reason));
    }
    out
}

/// Plans the technical phase: every native program (classified from its usage) whose groups
/// all have a profile at the IMS.
pub fn plan_technical(
    facts: &InstanceFacts,
    ops: &[OperatorFacts],
    profiles: &[String],
    args: TechnicalArgs,
    now: Now,
) -> TechnicalPlan {
    let TechnicalArgs { wave, project } = args;
    let mask = mask_for(
        &facts.name,
        facts.ims_account.as_ref().map(|a| a.association_mask.as_str()),
    );
    let known: HashSet<&str> = profiles.iter().map(String::as_str).collect();
    let mut programs = Vec::new();
    let mut skipped = Vec::new();
    let mut outside_wave = 0;
    for op in ops {
        if classify(op).0 != Class::Technical || op.auth_type != "native" || op.disabled {
            continue;
        }
        if !wave.takes(op) {
            outside_wave += 1;
            continue;
        }
        // A technical account's rights come from its profiles (a copy alone does not last where
        // the instance reads them): rights beyond its groups need a group first.
        let from_groups: BTreeSet<&str> = facts
            .groups
            .iter()
            .filter(|g| op.groups.contains(&g.name))
            .flat_map(|g| g.rights.iter().map(String::as_str))
            .collect();
        let beyond: Vec<&str> = op
            .rights
            .iter()
            .map(String::as_str)
            .filter(|r| !from_groups.contains(r))
            .collect();
        if !beyond.is_empty() {
            skipped.push(Skipped {
                login: op.login.clone(),
                reason: format!(
                    "holds rights none of its groups carries ({}): run `ims migrate prepare --rights`, then `--profiles`",
                    beyond.join(", ")
                ),
            });
            continue;
        }
        let mut names = Vec::new();
        let mut missing = Vec::new();
        for g in &op.groups {
            match profile_name(&mask, g) {
                Some(n) if known.contains(n.as_str()) => names.push(n),
                Some(n) => missing.push(n),
                None => missing.push(format!("(the mask names no profile for {g})")),
            }
        }
        if !missing.is_empty() {
            skipped.push(Skipped {
                login: op.login.clone(),
                reason: format!(
                    "no profile for its groups at the IMS: {} (run `ims migrate prepare --profiles`)",
                    missing.join(", ")
                ),
            });
            continue;
        }
        let set = |f: fn(&ims_wire::migration::UsageFacts) -> &str| -> Vec<String> {
            op.usage
                .iter()
                .map(f)
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect::<BTreeSet<_>>()
                .into_iter()
                .collect()
        };
        programs.push(ProgramStep {
            login: op.login.clone(),
            label: op.label.clone(),
            groups: op.groups.clone(),
            rights: op.rights.clone(),
            profiles: names,
            credential_name: format!("{} {}", facts.name, op.login),
            sources: set(|u| u.source.as_str()),
            clients: set(|u| u.client.as_str()),
            state: state_digest(op),
        });
    }
    Plan::new(
        &facts.name,
        now,
        Technical {
            programs,
            skipped,
            wave,
            outside_wave,
            project,
        },
    )
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct TechnicalReport {
    pub plan_id: String,
    pub dry_run: bool,
    /// `(legacy login, technical account operator, kit directory)`.
    pub moved: Vec<(String, String, String)>,
    pub already: Vec<String>,
    /// With `dry_run`: the programs a run would move now.
    pub would_move: Vec<String>,
    pub failed: Vec<Skipped>,
    pub complete: bool,
}

impl TechnicalReport {
    fn new(plan: &TechnicalPlan, opts: &ApplyOptions) -> Self {
        TechnicalReport {
            plan_id: plan.plan_id.clone(),
            dry_run: opts.dry_run,
            ..TechnicalReport::default()
        }
    }
}

/// Kits go under `kit_dir/<instance>/<login>/`, readable by the owner only.
impl Phase for Technical {
    const NAME: &'static str = "technical";
    const NEEDS_IMS: bool = true;
    type Args = TechnicalArgs;
    type Work = ();
    type Report = TechnicalReport;

    async fn plan(engine: &Engine<'_>, args: TechnicalArgs, now: Now) -> Result<TechnicalPlan, ApplyError> {
        let facts = engine.instance.facts().await?;
        let ops = engine.operators().await?;
        args.wave.check(&facts, &ops).map_err(ApplyError::Wave)?;
        let profiles = engine.profile_names().await?;
        Ok(plan_technical(&facts, &ops, &profiles, args, now))
    }

    fn summary(plan: &TechnicalPlan) -> String {
        summary(plan)
    }

    fn scope(plan: &TechnicalPlan) -> Option<String> {
        plan.body.wave.described()
    }

    fn finished(plan: &TechnicalPlan, opts: &ApplyOptions) -> TechnicalReport {
        TechnicalReport {
            already: plan.body.programs.iter().map(|p| p.login.clone()).collect(),
            complete: true,
            ..TechnicalReport::new(plan, opts)
        }
    }

    /// Drift: every program not moved yet must be as planned.
    async fn check(plan: &TechnicalPlan, run: &Run<'_>) -> Result<Checked<Self>, ApplyError> {
        let current = run.operators_by_login().await?;
        let drifted: Vec<Skipped> = plan
            .body
            .programs
            .iter()
            .filter(|p| !run.is_done(KIT, &p.login))
            .filter_map(|p| match current.get(&p.login) {
                None => Some(Skipped {
                    login: p.login.clone(),
                    reason: "no longer exists".into(),
                }),
                Some(op) if state_digest(op) != p.state => Some(Skipped {
                    login: p.login.clone(),
                    reason: format!(
                        "now type {}, groups [{}], rights [{}]{}",
                        op.auth_type,
                        op.groups.join(", "),
                        op.rights.join(", "),
                        if op.disabled { ", disabled" } else { "" }
                    ),
                }),
                Some(_) => None,
            })
            .collect();
        if drifted.is_empty() {
            Ok(Checked::Work(()))
        } else {
            Err(ApplyError::Drift(drifted))
        }
    }

    fn preview(plan: &TechnicalPlan, (): (), run: &Run<'_>) -> TechnicalReport {
        let mut report = TechnicalReport::new(plan, run.opts);
        for p in &plan.body.programs {
            if run.is_done(KIT, &p.login) {
                report.already.push(p.login.clone());
            } else {
                report.would_move.push(p.login.clone());
            }
        }
        report
    }

    /// One program after the other; a service's refusal fails that program alone.
    async fn apply(plan: &TechnicalPlan, (): (), run: &Run<'_>) -> Result<TechnicalReport, ApplyError> {
        let mut report = TechnicalReport::new(plan, run.opts);
        // Access is copied on marketing instances only (see `move_program`).
        let copies_access = run.facts.kind != "message_center";
        // One project for every credential, when the plan names one and a credential is still
        // to be made.
        let to_move = plan.body.programs.iter().any(|p| !run.is_done(KIT, &p.login));
        let placement = match &plan.body.project {
            Some(name) if to_move => Some(
                run.engine
                    .ims()?
                    .ensure_project(name, &format!("Technical accounts of {}", plan.instance))
                    .await?,
            ),
            _ => None,
        };
        for p in &plan.body.programs {
            if run.is_done(KIT, &p.login) {
                report.already.push(p.login.clone());
                continue;
            }
            let dir = run.opts.kit_dir.join(&plan.instance).join(&p.login);
            match move_program(p, &dir, copies_access, placement.as_ref(), run).await {
                Ok(ta) => report
                    .moved
                    .push((p.login.clone(), ta, dir.display().to_string())),
                Err(ApplyError::Service(e)) => report.failed.push(Skipped {
                    login: p.login.clone(),
                    reason: e.to_string(),
                }),
                Err(e) => return Err(e),
            }
        }
        report.complete = report.failed.is_empty();
        Ok(report)
    }

    fn complete(report: &TechnicalReport) -> bool {
        report.complete
    }
}

/// Moves one program, each step journaled: its credential, proved by a token and a real call
/// (which creates the technical account operator), its access copied (on a marketing instance;
/// on a Message Center instance the account's rights come from its product profile, as the
/// vendor documents), its kit written. Returns the technical account's email.
async fn move_program(
    p: &ProgramStep,
    dir: &Path,
    copies_access: bool,
    placement: Option<&(String, String)>,
    run: &Run<'_>,
) -> Result<String, ApplyError> {
    let ims = run.engine.ims()?;
    let instance = run.engine.instance;
    // The credential: found by name when an earlier run made it.
    run.begin_one(CREDENTIAL, &p.login).await?;
    // The kit's secret is used again only for that very credential.
    let kept = read_credential(dir).ok();
    let found = ims
        .ensure_credential(
            &p.credential_name,
            &describe(p),
            &p.profiles,
            kept.is_some(),
            placement,
        )
        .await?;
    let cred = match kept {
        Some(k) if k.client_id != found.client_id => {
            ims.ensure_credential(&p.credential_name, &describe(p), &p.profiles, false, placement)
                .await?
        }
        _ => found,
    };
    let detail = match &cred.project_id {
        Some(project) => format!(
            "{} {} in project {project}",
            cred.client_id, cred.technical_account_email
        ),
        None => format!("{} {}", cred.client_id, cred.technical_account_email),
    };
    run.end_one(CREDENTIAL, &p.login, StepState::Done, detail).await?;
    let cred = match cred.client_secret {
        Some(_) => {
            write_private(
                dir,
                "credential.json",
                &serde_json::to_vec_pretty(&cred).unwrap_or_default(),
            )
            .map_err(|e| ApplyError::Kit(e.to_string()))?;
            cred
        }
        None => read_credential(dir).map_err(|e| ApplyError::Kit(e.to_string()))?,
    };
    // Proved by a token and a real call, which creates the technical account operator.
    run.begin_one(FIRST_CALL, &p.login).await?;
    let token = ims.token_of(&cred).await?;
    instance.bearer_call(&token).await?;
    run.end_one(FIRST_CALL, &p.login, StepState::Done, String::new())
        .await?;
    run.begin_one(ACCESS, &p.login).await?;
    let detail = if copies_access {
        let copied = instance
            .copy_access(&p.login, &cred.technical_account_email)
            .await?;
        format!(
            "{} rights, {} folder rights",
            copied.rights_added, copied.folder_rights_added
        )
    } else {
        "not copied: on a Message Center instance the rights come from the product profile".to_owned()
    };
    run.end_one(ACCESS, &p.login, StepState::Done, detail).await?;
    run.begin_one(KIT, &p.login).await?;
    for (name, text) in kit(p, &cred, ims.base(), instance.base()) {
        write_private(dir, &name, text.as_bytes()).map_err(|e| ApplyError::Kit(e.to_string()))?;
    }
    run.end_one(KIT, &p.login, StepState::Done, dir.display().to_string())
        .await?;
    Ok(cred.technical_account_email)
}

fn describe(p: &ProgramStep) -> String {
    format!("Replaces the native operator {} ({})", p.login, p.label)
}

fn write_private(dir: &Path, name: &str, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _};
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)?;
    let path: PathBuf = dir.join(name);
    let tmp = path.with_extension("tmp");
    let _ = std::fs::remove_file(&tmp);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    std::fs::rename(&tmp, &path)
}

fn read_credential(dir: &Path) -> std::io::Result<Credential> {
    let text = std::fs::read_to_string(dir.join("credential.json"))?;
    serde_json::from_str(&text).map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))
}

/// The integration kit: the credential's details (once, in `credential.json`, owner-only), and
/// the calls before and after for curl, Python, Java and Node, with the exact SOAP endpoint.
pub fn kit(p: &ProgramStep, c: &Credential, ims_url: &str, instance_url: &str) -> Vec<(String, String)> {
    let soap = format!("{}/nl/jsp/soaprouter.jsp", instance_url.trim_end_matches('/'));
    let token_url = format!("{}/ims/token/v3", ims_url.trim_end_matches('/'));
    let envelope = r#"<SOAP-ENV:Envelope xmlns:SOAP-ENV="http://schemas.xmlsoap.org/soap/envelope/"><SOAP-ENV:Body><m:GetUserInfo xmlns:m="urn:xtk:session"><sessiontoken/></m:GetUserInfo></SOAP-ENV:Body></SOAP-ENV:Envelope>"#;
    let readme = format!(
        "# {login}: from a password to an access token\n\n\
The native operator `{login}` ({label}) is replaced by the technical account `{ta}`.\n\n\
- client id: `{client}`\n- client secret: in `credential.json` beside this file (kept by the owner only)\n\
- technical account id: `{taid}`\n- technical account email: `{ta}`\n- organisation: `{org}`\n\
- token endpoint: `{token_url}` (`grant_type=client_credentials`; the token lasts 24 hours: fetch a new one before it ends)\n\
- SOAP endpoint: `{soap}`\n- profiles: {profiles}\n{project}\n\
Before (`before.sh`): sign in with `xtk:session#Logon` and the operator's password; later calls send\n\
the session and security tokens it returns.\n\
After: fetch a token with the credential and send it as `Authorization: Bearer <token>` on every call;\n\
no `Logon`. The legacy operator keeps working until it is retired; its traffic is watched.\n\n\
Samples: `before.sh`/`after.sh` (curl), `after.py` (Python), `After.java` (Java 11+), `after.mjs` (Node, @adobe/acc-js-sdk).\n",
        login = p.login,
        label = p.label,
        ta = c.technical_account_email,
        taid = c.technical_account_id,
        client = c.client_id,
        org = c.org_id,
        profiles = p.profiles.join(", "),
        project = c
            .project_id
            .as_ref()
            .map(|id| format!("- Developer Console project: `{id}`\n"))
            .unwrap_or_default(),
    );
    let before = format!(
        "#!/bin/sh\n# The legacy way: a password, a session.\ncurl -s -X POST '{soap}' -H 'SOAPAction: xtk:session#Logon' -H 'Content-Type: text/xml' \\\n  --data '<SOAP-ENV:Envelope xmlns:SOAP-ENV=\"http://schemas.xmlsoap.org/soap/envelope/\"><SOAP-ENV:Body><m:Logon xmlns:m=\"urn:xtk:session\"><sessiontoken/><login>{login}</login><password>'\"$PASSWORD\"'</password><parameters/></m:Logon></SOAP-ENV:Body></SOAP-ENV:Envelope>'\n",
        login = p.login
    );
    let after = format!(
        "#!/bin/sh\n# The new way: a token from the credential, sent on every call.\nset -e\nSECRET=$(python3 -c 'import json;print(json.load(open(\"credential.json\"))[\"client_secret\"])')\n\
TOKEN=$(curl -s -X POST '{token_url}' -d grant_type=client_credentials -d client_id={client} -d \"client_secret=$SECRET\" | python3 -c 'import json,sys;print(json.load(sys.stdin)[\"access_token\"])')\n\
curl -s -X POST '{soap}' -H \"Authorization: Bearer $TOKEN\" -H 'SOAPAction: xtk:session#GetUserInfo' -H 'Content-Type: text/xml' --data '{envelope}'\n",
        client = c.client_id
    );
    let python = format!(
        "import json, requests\n\ncred = json.load(open(\"credential.json\"))\n\
token = requests.post(\"{token_url}\", data={{\"grant_type\": \"client_credentials\", \"client_id\": cred[\"client_id\"], \"client_secret\": cred[\"client_secret\"]}}).json()[\"access_token\"]\n\
r = requests.post(\"{soap}\", headers={{\"Authorization\": \"Bearer \" + token, \"SOAPAction\": \"xtk:session#GetUserInfo\", \"Content-Type\": \"text/xml\"}}, data='{envelope}')\nprint(r.text)\n"
    );
    let java = format!(
        "import java.net.URI;\nimport java.net.URLEncoder;\nimport java.net.http.*;\nimport java.nio.charset.StandardCharsets;\n\n\
public class After {{\n  public static void main(String[] args) throws Exception {{\n\
    HttpClient http = HttpClient.newHttpClient();\n\
    String secret = System.getenv(\"CLIENT_SECRET\"); // from credential.json\n\
    String form = \"grant_type=client_credentials&client_id={client}&client_secret=\" + URLEncoder.encode(secret, StandardCharsets.UTF_8);\n\
    String tokenJson = http.send(HttpRequest.newBuilder(URI.create(\"{token_url}\")).header(\"Content-Type\", \"application/x-www-form-urlencoded\").POST(HttpRequest.BodyPublishers.ofString(form)).build(), HttpResponse.BodyHandlers.ofString()).body();\n\
    String token = tokenJson.replaceAll(\".*\\\"access_token\\\"\\\\s*:\\\\s*\\\"([^\\\"]+)\\\".*\", \"$1\");\n\
    String envelope = \"{envelope_java}\";\n\
    HttpResponse<String> r = http.send(HttpRequest.newBuilder(URI.create(\"{soap}\")).header(\"Authorization\", \"Bearer \" + token).header(\"SOAPAction\", \"xtk:session#GetUserInfo\").header(\"Content-Type\", \"text/xml\").POST(HttpRequest.BodyPublishers.ofString(envelope)).build(), HttpResponse.BodyHandlers.ofString());\n\
    System.out.println(r.body());\n  }}\n}}\n",
        client = c.client_id,
        envelope_java = envelope.replace('"', "\\\"")
    );
    let node = format!(
        "// npm install @adobe/acc-js-sdk\nimport sdk from '@adobe/acc-js-sdk'\nimport {{ readFileSync }} from 'node:fs'\n\n\
const cred = JSON.parse(readFileSync('credential.json', 'utf8'))\n\
const res = await fetch('{token_url}', {{ method: 'POST', body: new URLSearchParams({{ grant_type: 'client_credentials', client_id: cred.client_id, client_secret: cred.client_secret }}) }})\n\
const {{ access_token }} = await res.json()\n\
const client = await sdk.init(sdk.ConnectionParameters.ofBearerToken('{instance}', access_token))\n\
await client.logon()\nconsole.log(await client.NLWS.xtkSession.getUserInfo())\n",
        instance = instance_url.trim_end_matches('/')
    );
    vec![
        ("README.md".into(), readme),
        ("before.sh".into(), before),
        ("after.sh".into(), after),
        ("after.py".into(), python),
        ("After.java".into(), java),
        ("after.mjs".into(), node),
    ]
}
