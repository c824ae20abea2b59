//! The IMS sign-in checklist, made automatic: each rule an administrator would otherwise check by
//! hand when people cannot sign in through the IMS, tested against the IMS itself, with what
//! fails and how to fix it. `ims instance ims-check` and the console's IMS page show it.

use serde::Serialize;
use serde_json::Value;

use crate::connect::{self, endpoint, Endpoint};
use crate::model::OperatorGroup;
use crate::signin::Connection;

/// One rule of the checklist.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Check {
    /// Stable name (`issuer`, `client`, ...).
    pub rule: &'static str,
    /// What the rule says, for people.
    pub title: &'static str,
    pub status: Status,
    /// What was found.
    pub detail: String,
    /// How to fix it, when it fails.
    pub fix: Option<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Pass,
    Fail,
    /// Not checked: an earlier rule it depends on failed.
    Skipped,
}

/// The checklist's outcome.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Report {
    pub checks: Vec<Check>,
    /// Product profiles of the product context whose name contains "admin": in the vendor's
    /// world they grant access to its Control Panel, which is rarely meant.
    pub admin_profiles: Vec<String>,
}

impl Report {
    pub fn passed(&self) -> bool {
        self.checks.iter().all(|c| c.status == Status::Pass)
    }
}

const RULES: &[(&str, &str)] = &[
    ("configuration", "Exactly one IMS configuration"),
    ("issuer", "The IMS answers at its URL with that issuer"),
    (
        "client",
        "The client id is known to the IMS and its secret accepted",
    ),
    ("product_context", "The product context is the same on both sides"),
    (
        "callback",
        "The callback URL is registered for this instance and uses https",
    ),
    ("scopes", "The scopes are ones the client may ask for"),
    (
        "mask",
        "The association mask matches product profiles whose groups exist here",
    ),
];

fn check(rule: &'static str, ok: bool, detail: impl Into<String>, fix: Option<String>) -> Check {
    let title = RULES.iter().find(|(r, _)| *r == rule).map_or(rule, |(_, t)| *t);
    Check {
        rule,
        title,
        status: if ok { Status::Pass } else { Status::Fail },
        detail: detail.into(),
        fix: if ok { None } else { fix },
    }
}

/// The report when there is no configuration to test (none, or one that does not read).
pub fn without_configuration(instance: &str, why: Option<String>) -> Report {
    let (detail, fix) = match why {
        Some(error) => (
            error,
            "correct the file named above, then `ims instance reload`".to_owned(),
        ),
        None => (
            format!("instance {instance} has no IMS configuration (imsAccount)"),
            format!("ims instance ims-config --instance {instance} --register"),
        ),
    };
    let mut checks = vec![check("configuration", false, detail, Some(fix))];
    checks.extend(RULES[1..].iter().map(|(rule, title)| Check {
        rule,
        title,
        status: Status::Skipped,
        detail: "not checked without a configuration".into(),
        fix: None,
    }));
    Report {
        checks,
        admin_profiles: Vec::new(),
    }
}

fn skip_rest(checks: &mut Vec<Check>, why: &str) {
    let done = checks.len();
    checks.extend(RULES[done..].iter().map(|(rule, title)| Check {
        rule,
        title,
        status: Status::Skipped,
        detail: format!("not checked: {why}"),
        fix: None,
    }));
}

/// Runs the checklist for the configuration in effect; `instance` is this instance's name,
/// `groups` its operator groups. Each step adds its checks; a step that fails in a way that
/// makes the later ones meaningless marks them skipped and ends the run.
pub async fn diagnose(conn: &Connection, instance: &str, groups: &[OperatorGroup]) -> Report {
    let mut checks = vec![check("configuration", true, "one imsAccount", None)];
    let registration = match reach(conn, &mut checks).await {
        Some(reg) => reg,
        None => {
            return Report {
                checks,
                admin_profiles: Vec::new(),
            }
        }
    };
    let here = product_context(conn, instance, &registration, &mut checks);
    callback_and_scopes(conn, &registration, &mut checks);
    let admin_profiles = mask(conn, &registration, here.as_deref(), groups, &mut checks);
    Report {
        checks,
        admin_profiles,
    }
}

/// The IMS and its issuer, then the client and its secret: the client's registration, or
/// `None` once a failure made the rest skipped.
async fn reach(conn: &Connection, checks: &mut Vec<Check>) -> Option<Value> {
    let a = &conn.account;
    let http = conn.http();
    // The IMS and its issuer.
    let discovery = endpoint(&a.url, Endpoint::Discovery);
    match http.get(&discovery, None).await {
        Ok((200, doc)) => {
            let issuer = doc.get("issuer").and_then(Value::as_str).unwrap_or_default();
            let ok = issuer == a.url;
            checks.push(check(
                "issuer",
                ok,
                format!("{discovery} names the issuer {issuer:?}"),
                Some(format!(
                    "set the IMS URL to {issuer:?} (ims instance ims-config --ims-url)"
                )),
            ));
            if !ok {
                skip_rest(checks, "the IMS URL is not the issuer");
                return None;
            }
        }
        other => {
            let found = match other {
                Ok((status, _)) => format!("{discovery} answered {status}"),
                Err(e) => format!("{discovery} cannot be reached: {e}"),
            };
            checks.push(check(
                "issuer",
                false,
                found,
                Some("check the IMS URL, the network between the instance and the IMS, and the CA the instance trusts".into()),
            ));
            skip_rest(checks, "the IMS cannot be reached");
            return None;
        }
    }

    // The client and its secret.
    let registration_url = format!(
        "{}?product_context={}",
        endpoint(&a.url, Endpoint::Client),
        url::form_urlencoded::byte_serialize(a.product_context.as_bytes()).collect::<String>()
    );
    match http
        .get_basic(&registration_url, &conn.client_id, conn.secret().expose())
        .await
    {
        Ok((200, reg)) => {
            checks.push(check(
                "client",
                true,
                format!("client {} accepted", conn.client_id),
                None,
            ));
            Some(reg)
        }
        other => {
            let found = match other {
                Ok((401, _)) => format!("the IMS refuses client {} with this secret", conn.client_id),
                Ok((status, _)) => format!("the IMS answered {status} for client {}", conn.client_id),
                Err(e) => format!("the IMS cannot be reached: {e}"),
            };
            checks.push(check(
                "client",
                false,
                found,
                Some("check the client id and set its current secret (ims instance ims-config --client-id ... --client-secret-file ...)".into()),
            ));
            skip_rest(checks, "the client is not accepted");
            None
        }
    }
}

/// Whether the IMS knows this instance as a product instance of its product context; the name
/// it knows it by.
fn product_context(
    conn: &Connection,
    instance: &str,
    registration: &Value,
    checks: &mut Vec<Check>,
) -> Option<String> {
    let a = &conn.account;
    // The product context.
    let profiles = registration.get("product_profiles").and_then(Value::as_array);
    let instances: Vec<(String, String)> = registration
        .get("product_instances")
        .and_then(Value::as_array)
        .map(|v| {
            v.iter()
                .map(|i| {
                    let s = |k: &str| i.get(k).and_then(Value::as_str).unwrap_or_default().to_owned();
                    (s("name"), s("url"))
                })
                .collect()
        })
        .unwrap_or_default();
    let origin = |u: &str| url::Url::parse(u).ok().map(|u| u.origin().ascii_serialization());
    let here = instances
        .iter()
        .find(|(name, url)| name == instance || (!url.is_empty() && origin(url) == origin(&a.callback_url)));
    match (profiles, here) {
        (None, _) => checks.push(check(
            "product_context",
            false,
            format!("client {} is not one of the IMS's own applications: it cannot read product profiles", conn.client_id),
            Some("register the instance's client as a first-party application (ims instance ims-config --register)".into()),
        )),
        (Some(_), None) => checks.push(check(
            "product_context",
            false,
            format!(
                "the IMS has no product instance {instance:?} of product context {:?} (it has: {})",
                a.product_context,
                if instances.is_empty() {
                    "none".to_owned()
                } else {
                    instances.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>().join(", ")
                }
            ),
            Some(format!(
                "set the product context the IMS uses for this instance (ims instance ims-config --product-context), or register the instance at the IMS under {:?}",
                a.product_context
            )),
        )),
        (Some(_), Some((name, _))) => checks.push(check(
            "product_context",
            true,
            format!("product instance {name:?} of {:?}", a.product_context),
            None,
        )),
    }
    here.map(|(name, _)| name.clone())
}

/// The callback URL is registered and safe; the client may ask for the scopes configured.
fn callback_and_scopes(conn: &Connection, registration: &Value, checks: &mut Vec<Check>) {
    let a = &conn.account;
    let listed = |k: &str| -> Vec<String> {
        registration
            .get(k)
            .and_then(Value::as_array)
            .map(|v| v.iter().filter_map(Value::as_str).map(str::to_owned).collect())
            .unwrap_or_default()
    };
    // The callback URL.
    let redirects = listed("redirect_uris");
    let registered = redirects.iter().any(|r| r == &a.callback_url);
    let secure = connect::check_callback(&a.callback_url);
    checks.push(check(
        "callback",
        registered && secure.is_ok(),
        match (&secure, registered) {
            (Err(e), _) => e.clone(),
            (Ok(()), true) => format!("{} is registered", a.callback_url),
            (Ok(()), false) => format!(
                "{} is not among the client's redirect URIs ({})",
                a.callback_url,
                redirects.join(", ")
            ),
        },
        Some(format!(
            "register {} as a redirect URI of client {} at the IMS",
            a.callback_url, conn.client_id
        )),
    ));

    // The scopes.
    let allowed: Vec<&str> = registration
        .get("scope")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .split(' ')
        .collect();
    let missing: Vec<&str> = a
        .scopes
        .iter()
        .map(String::as_str)
        .filter(|s| !allowed.contains(s))
        .collect();
    checks.push(check(
        "scopes",
        missing.is_empty(),
        if missing.is_empty() {
            format!("{} allowed", a.scopes.join(" "))
        } else {
            format!("the client may not ask for: {}", missing.join(" "))
        },
        Some("remove those scopes (ims instance ims-config --scope ...) or allow them for the client at the IMS".into()),
    ));
}

/// The association mask matches profiles that name operator groups here; the profiles to warn
/// about (this instance's whose name says "admin").
fn mask(
    conn: &Connection,
    registration: &Value,
    here: Option<&str>,
    groups: &[OperatorGroup],
    checks: &mut Vec<Check>,
) -> Vec<String> {
    let a = &conn.account;
    let profiles = registration.get("product_profiles").and_then(Value::as_array);
    // The association mask.
    let names: Vec<String> = profiles
        .map(|p| {
            p.iter()
                .filter_map(|p| p.get("name").and_then(Value::as_str).map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    // Warned about: this instance's profiles (by the IMS's product instance, or by the mask).
    let this_instance = here;
    let admin_profiles = profiles
        .into_iter()
        .flatten()
        .filter_map(|p| {
            let name = p.get("name").and_then(Value::as_str)?;
            let of_here =
                p.get("instance").and_then(Value::as_str) == this_instance || a.mask.captured(name).is_some();
            (of_here && name.to_lowercase().contains("admin")).then(|| name.to_owned())
        })
        .collect();
    let matched: Vec<(&String, &str)> = names
        .iter()
        .filter_map(|n| a.mask.captured(n).map(|c| (n, c)))
        .collect();
    let unmapped: Vec<String> = matched
        .iter()
        .filter(|(_, captured)| ims_wire::association::group_named(captured, groups).is_none())
        .map(|(n, c)| format!("{n:?} names group {c:?}"))
        .collect();
    checks.push(check(
        "mask",
        !matched.is_empty() && unmapped.is_empty(),
        if matched.is_empty() {
            format!("no product profile matches {:?} (profiles: {})", a.mask.as_str(), if names.is_empty() { "none".to_owned() } else { names.join(", ") })
        } else if unmapped.is_empty() {
            format!(
                "{} profile(s) match: {}",
                matched.len(),
                matched.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>().join(", ")
            )
        } else {
            format!("no such operator group here: {}", unmapped.join("; "))
        },
        Some(if matched.is_empty() {
            format!("create product profiles named like {:?} (one per operator group) in the Admin Console, or change the mask", a.mask.as_str())
        } else {
            "create those operator groups in the instance, or rename the profiles".to_owned()
        }),
    ));
    admin_profiles
}
