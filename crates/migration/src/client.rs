//! How the engine reaches the two services: only through their public APIs, as a separately
//! deployed tool would. The instance through its SOAP API (`Logon`) and its migration API; the
//! IMS through its token endpoint and the User Management API.

use std::sync::Mutex;

use ims_wire::migration::{
    Completion, CopyAccessOutcome, CopyAccessRequest, EmailAssignment, EmailOutcome, EmailRequest,
    GroupOutcome, GroupRequest, InstanceFacts, JournalReport, LockdownRequest, Notice, OperatorFacts,
    OperatorPage, ProbeFacts, RowProblem, SwitchItem, SwitchRequest, SwitchResponse, VerifyRequest,
    BASE_PATH, MAX_PAGE,
};
use ims_wire::soap::{self, Limits};
use serde::de::DeserializeOwned;

/// Why a call to a service did not give what was asked.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{service} cannot be reached at {url}: {reason}")]
    Unreachable {
        service: &'static str,
        url: String,
        reason: String,
    },
    #[error("{service} refused {what}: {detail}")]
    Refused {
        service: &'static str,
        what: String,
        detail: String,
    },
    #[error("{service} answered {what} with something unexpected: {detail}")]
    Protocol {
        service: &'static str,
        what: String,
        detail: String,
    },
}

const INSTANCE: &str = "the instance";
const IMS: &str = "the IMS";

fn unreachable(service: &'static str, url: &str, e: &reqwest::Error) -> Error {
    // reqwest's message names the URL with its query; the cause says what went wrong.
    let reason = std::error::Error::source(e).map_or_else(|| e.to_string(), |s| s.to_string());
    Error::Unreachable {
        service,
        url: url.to_owned(),
        reason,
    }
}

/// The `detail` (problem JSON), `message` (UMAPI) or `error_description` of a refusal.
fn refusal_detail(status: reqwest::StatusCode, body: &str) -> String {
    let v: serde_json::Value = serde_json::from_str(body).unwrap_or_default();
    let text = ["detail", "message", "error_description", "error"]
        .iter()
        .find_map(|k| v[k].as_str())
        .map(str::to_owned);
    match text {
        Some(t) => format!("{status}: {t}"),
        None => format!("{status}"),
    }
}

async fn read_json<T: DeserializeOwned>(
    service: &'static str,
    what: &str,
    resp: reqwest::Response,
) -> Result<T, Error> {
    let status = resp.status();
    let body = resp.text().await.map_err(|e| Error::Protocol {
        service,
        what: what.to_owned(),
        detail: e.to_string(),
    })?;
    if !status.is_success() {
        return Err(Error::Refused {
            service,
            what: what.to_owned(),
            detail: refusal_detail(status, &body),
        });
    }
    serde_json::from_str(&body).map_err(|e| Error::Protocol {
        service,
        what: what.to_owned(),
        detail: e.to_string(),
    })
}

/// A signed-in administrator of an instance.
pub struct InstanceClient {
    http: reqwest::Client,
    base: String,
    login: String,
    session: String,
    security: String,
}

impl InstanceClient {
    /// Signs in with `xtk:session#Logon`, as the vendor's clients do.
    pub async fn sign_in(
        http: reqwest::Client,
        base: &str,
        login: &str,
        password: &str,
    ) -> Result<Self, Error> {
        let base = base.trim_end_matches('/').to_owned();
        let url = format!("{base}/nl/jsp/soaprouter.jsp");
        let envelope = format!(
            concat!(
                r#"<?xml version="1.0" encoding="UTF-8"?>"#,
                r#"<SOAP-ENV:Envelope xmlns:SOAP-ENV="http://schemas.xmlsoap.org/soap/envelope/" xmlns:ns="urn:xtk:session">"#,
                "<SOAP-ENV:Body><ns:Logon><ns:sessiontoken/><ns:strLogin>{}</ns:strLogin>",
                "<ns:strPassword>{}</ns:strPassword><ns:elemParameters/></ns:Logon></SOAP-ENV:Body></SOAP-ENV:Envelope>"
            ),
            soap::escape(login),
            soap::escape(password)
        );
        let resp = http
            .post(&url)
            .header("content-type", "text/xml; charset=utf-8")
            .header("soapaction", "xtk:session#Logon")
            .body(envelope)
            .send()
            .await
            .map_err(|e| unreachable(INSTANCE, &url, &e))?;
        let protocol = |detail: String| Error::Protocol {
            service: INSTANCE,
            what: "Logon".into(),
            detail,
        };
        let text = resp.text().await.map_err(|e| protocol(e.to_string()))?;
        let env = soap::parse_envelope(&text, Limits::default()).map_err(|e| protocol(e.0))?;
        if env.method.name == "Fault" {
            return Err(Error::Refused {
                service: INSTANCE,
                what: format!("the sign-in of {login}"),
                detail: env
                    .method
                    .element("faultstring")
                    .map(|e| e.text())
                    .unwrap_or_default(),
            });
        }
        let param = |name: &str| {
            env.method
                .element(name)
                .map(|e| e.text())
                .filter(|t| !t.is_empty())
                .ok_or_else(|| protocol(format!("no {name} in the answer")))
        };
        Ok(InstanceClient {
            login: login.to_owned(),
            session: param("pstrSessionToken")?,
            security: param("pstrSecurityToken")?,
            http,
            base,
        })
    }

    /// A call of the migration API with the session, answered whatever its status.
    async fn api_send(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&impl serde::Serialize>,
    ) -> Result<reqwest::Response, Error> {
        let url = format!("{}{BASE_PATH}{path}", self.base);
        let mut req = self
            .http
            .request(method, &url)
            .header("x-session-token", &self.session)
            .header("x-security-token", &self.security);
        if let Some(b) = body {
            req = req.json(b);
        }
        req.send().await.map_err(|e| unreachable(INSTANCE, &url, &e))
    }

    async fn get<T: DeserializeOwned>(&self, path: &str, what: &str) -> Result<T, Error> {
        let resp = self.api_send(reqwest::Method::GET, path, None::<&()>).await?;
        read_json(INSTANCE, what, resp).await
    }

    pub async fn facts(&self) -> Result<InstanceFacts, Error> {
        self.get("/instance", "the instance's facts").await
    }

    pub async fn operators_page(&self, after: i64, limit: u32) -> Result<OperatorPage, Error> {
        self.get(
            &format!("/operators?after={after}&limit={limit}"),
            "the operator list",
        )
        .await
    }

    /// A request the instance checks whole: its answer, or (422) the problems that stopped it.
    async fn post_checked<T: DeserializeOwned>(
        &self,
        path: &str,
        body: &impl serde::Serialize,
        what: &str,
    ) -> Result<Result<T, Vec<RowProblem>>, Error> {
        let resp = self.api_send(reqwest::Method::POST, path, Some(body)).await?;
        if resp.status() == reqwest::StatusCode::UNPROCESSABLE_ENTITY {
            #[derive(serde::Deserialize)]
            struct Refused {
                problems: Vec<RowProblem>,
            }
            let text = resp.text().await.unwrap_or_default();
            let refused: Refused = serde_json::from_str(&text).map_err(|e| Error::Protocol {
                service: INSTANCE,
                what: what.to_owned(),
                detail: e.to_string(),
            })?;
            return Ok(Err(refused.problems));
        }
        Ok(Ok(read_json(INSTANCE, what, resp).await?))
    }

    /// Gives operators their emails (or, with `dry_run`, checks that it could). Refused whole
    /// with the problems listed when any assignment cannot be made.
    pub async fn set_emails(&self, emails: &[EmailAssignment], dry_run: bool) -> Result<EmailOutcome, Error> {
        let body = EmailRequest {
            emails: emails.to_vec(),
        };
        Ok(self
            .post_checked(&format!("/emails?dry_run={dry_run}"), &body, "the emails")
            .await?
            .unwrap_or_else(|problems| EmailOutcome {
                dry_run,
                problems,
                ..EmailOutcome::default()
            }))
    }

    /// Creates groups carrying directly held rights and adds their members (or, with
    /// `dry_run`, checks that it could).
    pub async fn groups(&self, req: &GroupRequest, dry_run: bool) -> Result<GroupOutcome, Error> {
        Ok(self
            .post_checked(&format!("/groups?dry_run={dry_run}"), req, "the groups")
            .await?
            .unwrap_or_else(|problems| GroupOutcome {
                dry_run,
                problems,
                ..GroupOutcome::default()
            }))
    }

    async fn send_json<T: DeserializeOwned>(
        &self,
        method: reqwest::Method,
        path: &str,
        body: &impl serde::Serialize,
        what: &str,
    ) -> Result<T, Error> {
        let resp = self.api_send(method, path, Some(body)).await?;
        read_json(INSTANCE, what, resp).await
    }

    /// Configures how people sign in to the instance through the IMS; what was set comes back
    /// (the secret aside).
    pub async fn set_ims_account(
        &self,
        req: &ims_wire::migration::ImsAccountRequest,
    ) -> Result<serde_json::Value, Error> {
        self.send_json(reqwest::Method::PUT, "/ims-account", req, "the IMS configuration")
            .await
    }

    /// Switches both restrictions on (the allow-list replaced when `allow` names operators).
    pub async fn lock_down(&self, allow: &[String]) -> Result<InstanceFacts, Error> {
        let body = LockdownRequest {
            allow: allow.to_vec(),
        };
        self.send_json(reqwest::Method::POST, "/lockdown", &body, "the lock-down")
            .await
    }

    /// Runs the lock-down probes (a technical account's token for the bearer probe).
    pub async fn verify(&self, bearer_token: Option<String>) -> Result<Vec<ProbeFacts>, Error> {
        #[derive(serde::Deserialize)]
        struct Probes {
            probes: Vec<ProbeFacts>,
        }
        let body = VerifyRequest { bearer_token };
        let p: Probes = self
            .send_json(reqwest::Method::POST, "/verify", &body, "the verification probes")
            .await?;
        Ok(p.probes)
    }

    /// Sets (or, with an empty message, removes) the console's migration notice.
    pub async fn set_notice(&self, notice: &Notice) -> Result<(), Error> {
        self.send_empty(reqwest::Method::PUT, "/notice", notice, "the notice")
            .await
    }

    /// Hands the instance the engine's latest report of its journal (for its console page).
    pub async fn report_journal(&self, report: &JournalReport) -> Result<(), Error> {
        self.send_empty(reqwest::Method::PUT, "/journal", report, "the journal report")
            .await
    }

    async fn send_empty(
        &self,
        method: reqwest::Method,
        path: &str,
        body: &impl serde::Serialize,
        what: &str,
    ) -> Result<(), Error> {
        let resp = self.api_send(method, path, Some(body)).await?;
        if resp.status().is_success() {
            return Ok(());
        }
        let status = resp.status();
        let text = resp.text().await.unwrap_or_default();
        Err(Error::Refused {
            service: INSTANCE,
            what: what.to_owned(),
            detail: refusal_detail(status, &text),
        })
    }

    /// Marks the instance's migration complete.
    pub async fn complete(&self, c: &Completion) -> Result<InstanceFacts, Error> {
        self.send_json(reqwest::Method::PUT, "/completion", c, "the completion")
            .await
    }

    /// The operator the engine signed in as.
    pub fn login(&self) -> &str {
        &self.login
    }

    /// `xtk:session#Write` of one `xtk:operator` document, as the vendor's clients change
    /// operators (`_operation` update or delete).
    pub async fn write_operator(&self, doc: &str) -> Result<(), Error> {
        let envelope = format!(
            concat!(
                r#"<SOAP-ENV:Envelope xmlns:SOAP-ENV="http://schemas.xmlsoap.org/soap/envelope/" xmlns:ns="urn:xtk:session">"#,
                "<SOAP-ENV:Body><ns:Write><ns:sessiontoken/><ns:domDoc>{}</ns:domDoc></ns:Write></SOAP-ENV:Body></SOAP-ENV:Envelope>"
            ),
            doc
        );
        self.soap_call("xtk:session#Write", envelope, None, "an operator change")
            .await
    }

    /// A SOAP call with the session (or `bearer`); a fault is a refusal in its own words.
    async fn soap_call(
        &self,
        action: &str,
        envelope: String,
        bearer: Option<&str>,
        what: &str,
    ) -> Result<(), Error> {
        let url = format!("{}/nl/jsp/soaprouter.jsp", self.base);
        let mut req = self
            .http
            .post(&url)
            .header("content-type", "text/xml; charset=utf-8")
            .header("soapaction", action)
            .body(envelope);
        req = match bearer {
            Some(token) => req.bearer_auth(token),
            None => req
                .header("x-session-token", &self.session)
                .header("x-security-token", &self.security),
        };
        let resp = req.send().await.map_err(|e| unreachable(INSTANCE, &url, &e))?;
        let text = resp.text().await.unwrap_or_default();
        let env = soap::parse_envelope(&text, Limits::default()).map_err(|e| Error::Protocol {
            service: INSTANCE,
            what: action.to_owned(),
            detail: e.0,
        })?;
        if env.method.name == "Fault" {
            return Err(Error::Refused {
                service: INSTANCE,
                what: what.to_owned(),
                detail: env
                    .method
                    .element("faultstring")
                    .map(|e| e.text())
                    .unwrap_or_default(),
            });
        }
        Ok(())
    }

    /// The instance's base URL.
    pub fn base(&self) -> &str {
        &self.base
    }

    /// A real SOAP call with an access token (`GetUserInfo`): the instance creates a technical
    /// account's operator at its first call.
    pub async fn bearer_call(&self, token: &str) -> Result<(), Error> {
        let envelope = concat!(
            r#"<SOAP-ENV:Envelope xmlns:SOAP-ENV="http://schemas.xmlsoap.org/soap/envelope/" xmlns:ns="urn:xtk:session">"#,
            "<SOAP-ENV:Body><ns:GetUserInfo><ns:sessiontoken/></ns:GetUserInfo></SOAP-ENV:Body></SOAP-ENV:Envelope>"
        );
        self.soap_call(
            "xtk:session#GetUserInfo",
            envelope.to_owned(),
            Some(token),
            "a call with the new credential's token",
        )
        .await
    }

    /// Gives the technical account operator `to` the direct and folder rights of `from`.
    pub async fn copy_access(&self, from: &str, to: &str) -> Result<CopyAccessOutcome, Error> {
        let body = CopyAccessRequest {
            from: from.to_owned(),
            to: to.to_owned(),
        };
        self.send_json(reqwest::Method::POST, "/copy-access", &body, "the copy of rights")
            .await
    }

    /// Moves operators to `to` (`ims` or `native`), each only from the state it was planned in.
    pub async fn switch(&self, to: &str, operators: &[SwitchItem]) -> Result<SwitchResponse, Error> {
        let body = SwitchRequest {
            to: to.to_owned(),
            operators: operators.to_vec(),
        };
        self.send_json(reqwest::Method::POST, "/switch", &body, "the switch")
            .await
    }

    /// Every operator, page by page; `progress` is told how many were read so far.
    pub async fn operators(&self, mut progress: impl FnMut(usize)) -> Result<Vec<OperatorFacts>, Error> {
        let mut out = Vec::new();
        let mut after = 0;
        loop {
            let page = self.operators_page(after, MAX_PAGE).await?;
            out.extend(page.operators);
            progress(out.len());
            match page.next_after {
                Some(next) if next > after => after = next,
                _ => return Ok(out),
            }
        }
    }
}

/// The IMS as the engine uses it: an OAuth Server-to-Server credential of the organisation that
/// holds the User Management API (and the I/O Management API, for technical operators).
pub struct ImsClient {
    http: reqwest::Client,
    base: String,
    pub org_id: String,
    client_id: String,
    client_secret: String,
    token: Mutex<Option<String>>,
}

/// A product profile of the organisation, as the User Management API lists it.
#[derive(Clone, Debug, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
pub struct ProfileFacts {
    #[serde(rename = "groupName")]
    pub name: String,
    #[serde(rename = "productContext", default)]
    pub product_context: Option<String>,
    #[serde(rename = "memberCount", default)]
    pub members: i64,
}

/// An OAuth Server-to-Server credential the engine made, as the integration kit gives it.
#[derive(Clone, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
pub struct Credential {
    pub client_id: String,
    /// Known only when just shown (once) or read back from the kit.
    pub client_secret: Option<String>,
    pub technical_account_id: String,
    pub technical_account_email: String,
    pub org_id: String,
    /// The Developer Console project the credential sits in, as the IMS says.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub project_id: Option<String>,
}

// Session tokens and secrets stay out of debug output.
impl std::fmt::Debug for InstanceClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InstanceClient")
            .field("base", &self.base)
            .field("login", &self.login)
            .finish_non_exhaustive()
    }
}

impl std::fmt::Debug for ImsClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ImsClient")
            .field("base", &self.base)
            .field("org_id", &self.org_id)
            .field("client_id", &self.client_id)
            .finish_non_exhaustive()
    }
}

impl std::fmt::Debug for Credential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credential")
            .field("client_id", &self.client_id)
            .field("technical_account_email", &self.technical_account_email)
            .finish_non_exhaustive()
    }
}

/// A field the console's answer must carry.
fn field(v: &serde_json::Value, name: &str, what: &str) -> Result<String, Error> {
    v[name]
        .as_str()
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .ok_or_else(|| Error::Protocol {
            service: IMS,
            what: what.to_owned(),
            detail: format!("no {name} in the answer"),
        })
}

/// A person of the organisation, as the User Management API lists them.
#[derive(Clone, Debug, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
pub struct ImsUser {
    pub id: String,
    pub email: String,
    pub status: String,
    #[serde(default)]
    pub groups: Vec<String>,
}

/// Where a person's invitation stands and when they first signed in to an application (our
/// extension of the User Management API).
#[derive(Clone, Debug, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
pub struct ImsInvitation {
    pub id: String,
    pub email: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub status: String,
    #[serde(default)]
    pub invitation: Option<InvitationFacts>,
    #[serde(rename = "firstSignInAt", default)]
    pub first_sign_in_at: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
pub struct InvitationFacts {
    /// `invited`, `accepted` or `expired`.
    pub state: String,
    #[serde(rename = "sentAt")]
    pub sent_at: String,
    #[serde(rename = "acceptedAt", default)]
    pub accepted_at: Option<String>,
}

/// What a resend did: who was sent a new invitation, and who was skipped with why.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
pub struct Resent {
    pub sent: Vec<String>,
    pub skipped: Vec<ResendSkipped>,
}

#[derive(Clone, Debug, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
pub struct ResendSkipped {
    pub email: String,
    pub reason: String,
}

/// A product profile with what it grants (our extension of the User Management API).
#[derive(Clone, Debug, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
pub struct ProfileDetail {
    #[serde(rename = "groupName")]
    pub name: String,
    #[serde(rename = "productContext", default)]
    pub product_context: Option<String>,
    #[serde(default)]
    pub instance: Option<String>,
    #[serde(default)]
    pub permissions: Vec<String>,
}

/// A path segment, percent-encoded (profile names hold spaces).
fn encode(segment: &str) -> String {
    let mut out = String::with_capacity(segment.len());
    for b in segment.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

impl ImsClient {
    pub fn new(
        http: reqwest::Client,
        base: &str,
        org_id: &str,
        client_id: &str,
        client_secret: &str,
    ) -> Self {
        ImsClient {
            http,
            base: base.trim_end_matches('/').to_owned(),
            org_id: org_id.to_owned(),
            client_id: client_id.to_owned(),
            client_secret: client_secret.to_owned(),
            token: Mutex::new(None),
        }
    }

    pub fn base(&self) -> &str {
        &self.base
    }

    /// An access token of the credential (`client_credentials`, every scope it holds), kept for
    /// the run.
    pub async fn token(&self) -> Result<String, Error> {
        if let Some(t) = self.token.lock().ok().and_then(|t| t.clone()) {
            return Ok(t);
        }
        let url = format!("{}/ims/token/v3", self.base);
        let resp = self
            .http
            .post(&url)
            .form(&[
                ("grant_type", "client_credentials"),
                ("client_id", self.client_id.as_str()),
                ("client_secret", self.client_secret.as_str()),
            ])
            .send()
            .await
            .map_err(|e| unreachable(IMS, &url, &e))?;
        let token: ims_wire::TokenResponse = read_json(IMS, "the engine's credential", resp).await?;
        if let Ok(mut slot) = self.token.lock() {
            *slot = Some(token.access_token.clone());
        }
        Ok(token.access_token)
    }

    /// A User Management API call; a 429 or 503 is waited out (`Retry-After`, at most a minute
    /// each, five times) as the vendor's clients do.
    async fn umapi(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&serde_json::Value>,
    ) -> Result<reqwest::Response, Error> {
        let url = format!("{}/v2/usermanagement{path}", self.base);
        let token = self.token().await?;
        let mut attempt = 0;
        loop {
            let mut req = self
                .http
                .request(method.clone(), &url)
                .bearer_auth(&token)
                .header("x-api-key", &self.client_id)
                .header("accept", "application/json");
            if let Some(b) = body {
                req = req.json(b);
            }
            let resp = req.send().await.map_err(|e| unreachable(IMS, &url, &e))?;
            let status = resp.status();
            let busy = status == reqwest::StatusCode::TOO_MANY_REQUESTS
                || status == reqwest::StatusCode::SERVICE_UNAVAILABLE;
            if !busy || attempt == 5 {
                return Ok(resp);
            }
            attempt += 1;
            let wait = resp
                .headers()
                .get(reqwest::header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<u64>().ok())
                .unwrap_or(1)
                .clamp(1, 60);
            tokio::time::sleep(std::time::Duration::from_secs(wait)).await;
        }
    }

    async fn umapi_get(&self, path: &str, what: &str) -> Result<serde_json::Value, Error> {
        let resp = self.umapi(reqwest::Method::GET, path, None).await?;
        read_json(IMS, what, resp).await
    }

    /// A Developer Console API call (`/console/...`) with the engine's token.
    async fn console(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&serde_json::Value>,
        what: &str,
    ) -> Result<serde_json::Value, Error> {
        let url = format!("{}/console{path}", self.base);
        let mut req = self
            .http
            .request(method, &url)
            .bearer_auth(self.token().await?)
            .header("x-api-key", &self.client_id);
        if let Some(b) = body {
            req = req.json(b);
        }
        let resp = req.send().await.map_err(|e| unreachable(IMS, &url, &e))?;
        read_json(IMS, what, resp).await
    }

    /// The organisation's numeric id, which the console API names it by.
    async fn console_org(&self) -> Result<String, Error> {
        let orgs = self
            .console(reqwest::Method::GET, "/organizations", None, "the organisations")
            .await?;
        orgs.as_array()
            .into_iter()
            .flatten()
            .find(|o| o["code"] == self.org_id.as_str())
            .and_then(|o| o["id"].as_str())
            .map(str::to_owned)
            .ok_or_else(|| Error::Protocol {
                service: IMS,
                what: "the organisations".into(),
                detail: format!("{} is not among them", self.org_id),
            })
    }

    /// The credential named `name`, made (with its own project, the Campaign API holding
    /// `profiles` and the I/O Management API) unless an earlier run made it. Its secret comes
    /// with it unless `have_secret` (a kit holds it already): the first one, shown once, or a
    /// new one when that was shown before.
    /// The Developer Console project named `name` and its first workspace, created when there
    /// is none (the credentials of a wave or an instance may share one).
    pub async fn ensure_project(&self, name: &str, description: &str) -> Result<(String, String), Error> {
        use reqwest::Method;
        let org = self.console_org().await?;
        let listed = self
            .console(
                Method::GET,
                &format!("/organizations/{org}/projects"),
                None,
                "the projects",
            )
            .await?;
        let found = listed
            .as_array()
            .into_iter()
            .flatten()
            .find(|p| p["name"] == name)
            .map(|p| field(p, "id", "the projects"))
            .transpose()?;
        let Some(project) = found else {
            let body = serde_json::json!({"name": name, "title": name, "description": description, "type": "default"});
            let made = self
                .console(
                    Method::POST,
                    &format!("/organizations/{org}/projects"),
                    Some(&body),
                    "the new project",
                )
                .await?;
            return Ok((
                field(&made, "projectId", "the new project")?,
                field(&made, "workspaceId", "the new project")?,
            ));
        };
        let workspaces = self
            .console(
                Method::GET,
                &format!("/organizations/{org}/projects/{project}/workspaces"),
                None,
                "the project's workspaces",
            )
            .await?;
        let workspace = workspaces
            .as_array()
            .and_then(|w| w.first())
            .map(|w| field(w, "id", "the project's workspaces"))
            .transpose()?
            .ok_or_else(|| Error::Refused {
                service: IMS,
                what: format!("the project {name:?}"),
                detail: "it has no workspace".into(),
            })?;
        Ok((project, workspace))
    }

    /// The credential named `name`, found or created: in `placement` (a project and its
    /// workspace) when given, else in a project of its own.
    pub async fn ensure_credential(
        &self,
        name: &str,
        description: &str,
        profiles: &[String],
        have_secret: bool,
        placement: Option<&(String, String)>,
    ) -> Result<Credential, Error> {
        use reqwest::Method;
        let org = self.console_org().await?;
        let mut found = None;
        for page in 0.. {
            let listing = self
                .console(
                    Method::GET,
                    &format!("/organizations/{org}/integrations?page={page}&size=50"),
                    None,
                    "the credentials",
                )
                .await?;
            let content = listing["content"].as_array().cloned().unwrap_or_default();
            found = content.into_iter().find(|i| i["name"] == name);
            let pages = listing["pages"].as_u64().unwrap_or(0);
            if found.is_some() || page + 1 >= pages {
                break;
            }
        }
        let id = match found {
            Some(i) => field(&i, "id", "the credentials")?,
            None => {
                self.create_credential(&org, name, description, profiles, placement)
                    .await?
            }
        };
        // Where it sits, as the IMS says.
        let placed = self
            .console(
                Method::GET,
                &format!("/organizations/{org}/projects_workspaces/credentials/{id}"),
                None,
                "the credential's project",
            )
            .await?;
        let project_id = placed
            .as_array()
            .and_then(|p| p.first())
            .or(Some(&placed))
            .and_then(|p| p["projectId"].as_str())
            .map(str::to_owned);
        let detail = self
            .console(
                Method::GET,
                &format!("/organizations/{org}/integrations/{id}"),
                None,
                "the credential",
            )
            .await?;
        let mut cred = Credential {
            client_id: id.clone(),
            client_secret: None,
            technical_account_id: field(&detail, "technicalAccountId", "the credential")?,
            technical_account_email: field(&detail, "technicalAccountEmail", "the credential")?,
            org_id: self.org_id.clone(),
            project_id,
        };
        if !have_secret {
            let listed = self
                .console(
                    Method::GET,
                    &format!("/organizations/{org}/integrations/{id}/secrets"),
                    None,
                    "the credential's secrets",
                )
                .await?;
            cred.client_secret = listed["client_secrets"]
                .as_array()
                .into_iter()
                .flatten()
                .find_map(|s| s["client_secret"].as_str().map(str::to_owned));
            if cred.client_secret.is_none() {
                let added = self
                    .console(
                        Method::POST,
                        &format!("/organizations/{org}/credentials/{id}/secrets"),
                        None,
                        "a new secret",
                    )
                    .await?;
                cred.client_secret = Some(field(&added, "client_secret", "a new secret")?);
            }
        }
        Ok(cred)
    }

    /// A new credential subscribed to the Campaign API with `profiles` and to the I/O Management
    /// API: in `placement` when given (the credential, then its services), else through the
    /// console's one-call form, which makes a project of its own. Its id.
    async fn create_credential(
        &self,
        org: &str,
        name: &str,
        description: &str,
        profiles: &[String],
        placement: Option<&(String, String)>,
    ) -> Result<String, Error> {
        use reqwest::Method;
        let services = self
            .console(
                Method::GET,
                &format!("/organizations/{org}/services"),
                None,
                "the services",
            )
            .await?;
        let configs: Vec<serde_json::Value> = services
            .as_array()
            .into_iter()
            .flatten()
            .filter(|s| s["code"] == "CampaignSDK")
            .flat_map(|s| {
                s["properties"]["licenseConfigs"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default()
            })
            .filter(|c| profiles.iter().any(|p| c["name"] == p.as_str()))
            .map(|c| serde_json::json!({"id": c["id"], "productId": c["productId"], "op": "add"}))
            .collect();
        if configs.len() != profiles.len() {
            return Err(Error::Refused {
                service: IMS,
                what: format!("the credential {name:?}"),
                detail: format!(
                    "not every profile of [{}] is offered to the Campaign API",
                    profiles.join(", ")
                ),
            });
        }
        let services = serde_json::json!([
            {"sdkCode": "CampaignSDK", "licenseConfigs": configs},
            {"sdkCode": "AdobeIOManagementAPISDK"},
        ]);
        match placement {
            // In the given project: the credential, then its services.
            Some((project, workspace)) => {
                let at =
                    format!("/organizations/{org}/projects/{project}/workspaces/{workspace}/credentials");
                let body = serde_json::json!({"name": name, "description": description});
                let made = self
                    .console(
                        Method::POST,
                        &format!("{at}/oauth-server-to-server"),
                        Some(&body),
                        "the new credential",
                    )
                    .await?;
                let id = field(&made, "id", "the new credential")?;
                self.console(
                    Method::PUT,
                    &format!("{at}/oauth_server_to_server/{id}/services"),
                    Some(&services),
                    "the new credential's services",
                )
                .await?;
                Ok(id)
            }
            None => {
                let body =
                    serde_json::json!({"name": name, "description": description, "services": services});
                let made = self
                    .console(
                        Method::POST,
                        &format!("/organizations/{org}/credentials/oauth-server-to-server"),
                        Some(&body),
                        "the new credential",
                    )
                    .await?;
                field(&made, "id", "the new credential")
            }
        }
    }

    /// An access token of `cred` (`client_credentials`).
    pub async fn token_of(&self, cred: &Credential) -> Result<String, Error> {
        let url = format!("{}/ims/token/v3", self.base);
        let resp = self
            .http
            .post(&url)
            .form(&[
                ("grant_type", "client_credentials"),
                ("client_id", cred.client_id.as_str()),
                ("client_secret", cred.client_secret.as_deref().unwrap_or_default()),
            ])
            .send()
            .await
            .map_err(|e| unreachable(IMS, &url, &e))?;
        let token: ims_wire::TokenResponse =
            read_json(IMS, &format!("a token of {}", cred.client_id), resp).await?;
        Ok(token.access_token)
    }

    /// Every user of the organisation: email, id, status and every group it belongs to (profiles
    /// held through user groups included).
    pub async fn users(&self) -> Result<Vec<ImsUser>, Error> {
        let mut out = Vec::new();
        for page in 0.. {
            let v = self
                .umapi_get(
                    &format!("/users/{}/{page}?directOnly=False", self.org_id),
                    "the list of users",
                )
                .await?;
            for u in v["users"].as_array().into_iter().flatten() {
                out.push(serde_json::from_value(u.clone()).map_err(|e| Error::Protocol {
                    service: IMS,
                    what: "the list of users".into(),
                    detail: e.to_string(),
                })?);
            }
            if v["lastPage"].as_bool() != Some(false) {
                break;
            }
        }
        Ok(out)
    }

    /// Where every person's invitation stands (our extension of the User Management API).
    pub async fn invitations(&self) -> Result<Vec<ImsInvitation>, Error> {
        let mut out = Vec::new();
        for page in 0.. {
            let what = "the invitations";
            let v = self
                .umapi_get(&format!("/invitations/{}/{page}", self.org_id), what)
                .await?;
            for u in v["users"].as_array().into_iter().flatten() {
                out.push(serde_json::from_value(u.clone()).map_err(|e| Error::Protocol {
                    service: IMS,
                    what: what.into(),
                    detail: e.to_string(),
                })?);
            }
            if v["lastPage"].as_bool() != Some(false) {
                break;
            }
        }
        Ok(out)
    }

    /// Sends these people a new invitation each.
    pub async fn resend_invitations(&self, emails: &[String]) -> Result<Resent, Error> {
        let mut all = Resent::default();
        for chunk in emails.chunks(500) {
            let path = format!("/invitations/{}/resend", self.org_id);
            let body = serde_json::json!({ "users": chunk });
            let resp = self.umapi(reqwest::Method::POST, &path, Some(&body)).await?;
            let r: Resent = read_json(IMS, "the invitations sent again", resp).await?;
            all.sent.extend(r.sent);
            all.skipped.extend(r.skipped);
        }
        Ok(all)
    }

    /// Sends up to 10 action entries; the errors by entry index (an entry not named succeeded
    /// whole).
    pub async fn action(&self, entries: &[serde_json::Value]) -> Result<Vec<(usize, String)>, Error> {
        let body = serde_json::Value::Array(entries.to_vec());
        let path = format!("/action/{}", self.org_id);
        let resp = self.umapi(reqwest::Method::POST, &path, Some(&body)).await?;
        let v: serde_json::Value = read_json(IMS, "the user actions", resp).await?;
        let mut failed = Vec::new();
        for e in v["errors"].as_array().into_iter().flatten() {
            let index = e["index"].as_u64().and_then(|i| usize::try_from(i).ok());
            let Some(index) = index else {
                return Err(Error::Protocol {
                    service: IMS,
                    what: "the user actions".into(),
                    detail: format!("an error without an entry index: {e}"),
                });
            };
            failed.push((
                index,
                format!(
                    "{}: {}",
                    e["errorCode"].as_str().unwrap_or("error"),
                    e["message"].as_str().unwrap_or_default()
                ),
            ));
        }
        Ok(failed)
    }

    /// A product profile with its permission items; `None` when there is none of that name.
    pub async fn profile(&self, name: &str) -> Result<Option<ProfileDetail>, Error> {
        let path = format!("/profiles/{}/{}", self.org_id, encode(name));
        let resp = self.umapi(reqwest::Method::GET, &path, None).await?;
        if resp.status() == reqwest::StatusCode::NOT_FOUND {
            return Ok(None);
        }
        let v: serde_json::Value = read_json(IMS, "a product profile", resp).await?;
        serde_json::from_value(v["profile"].clone())
            .map(Some)
            .map_err(|e| Error::Protocol {
                service: IMS,
                what: "a product profile".into(),
                detail: e.to_string(),
            })
    }

    /// Creates a product profile of the product instance `instance` of `product_context`.
    pub async fn create_profile(
        &self,
        name: &str,
        product_context: &str,
        instance: &str,
        permissions: &[String],
    ) -> Result<ProfileDetail, Error> {
        let body = serde_json::json!({
            "name": name,
            "productContext": product_context,
            "instance": instance,
            "permissions": permissions,
        });
        let path = format!("/profiles/{}", self.org_id);
        let resp = self.umapi(reqwest::Method::POST, &path, Some(&body)).await?;
        let v: serde_json::Value = read_json(IMS, &format!("the profile {name:?}"), resp).await?;
        serde_json::from_value(v["profile"].clone()).map_err(|e| Error::Protocol {
            service: IMS,
            what: "a product profile".into(),
            detail: e.to_string(),
        })
    }

    /// The organisation's product profiles (user groups left out).
    pub async fn profiles(&self) -> Result<Vec<ProfileFacts>, Error> {
        let mut out = Vec::new();
        for page in 0.. {
            let v = self
                .umapi_get(
                    &format!("/groups/{}/{page}", self.org_id),
                    "the list of product profiles",
                )
                .await?;
            for g in v["groups"].as_array().into_iter().flatten() {
                if g["type"] == "PRODUCT_PROFILE" {
                    out.push(serde_json::from_value(g.clone()).map_err(|e| Error::Protocol {
                        service: IMS,
                        what: "the list of product profiles".into(),
                        detail: e.to_string(),
                    })?);
                }
            }
            if v["lastPage"].as_bool() != Some(false) {
                break;
            }
        }
        Ok(out)
    }
}
