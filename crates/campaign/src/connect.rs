//! "Connect with IMS": the instance as an OpenID Connect relying party of the IMS. Its IMS
//! configuration (the vendor's IMS external account), the association mask that turns product
//! profile names into operator groups, and the rules that decide which operator a person signing
//! in through the IMS becomes. Pure: the HTTP exchanges go through [`ImsHttp`].

use async_trait::async_trait;
use serde_json::Value;

use crate::model::{AuthType, Operator, OperatorGroup};
use ims_wire::association::{group_named, AssociationMask};
use ims_wire::email::email_key;
use ims_wire::rights::right_named;

/// Where the IMS sends people back after signing in: the instance serves it at this path.
pub const CALLBACK_PATH: &str = "/console/ims/callback";

/// Where the IMS tells the instance that a person signed out (back-channel logout).
pub const BACKCHANNEL_LOGOUT_PATH: &str = "/console/ims/backchannel-logout";

/// The product context of the instance's product profiles, unless the configuration says otherwise.
pub const DEFAULT_PRODUCT_CONTEXT: &str = ims_wire::names::CAMPAIGN_PRODUCT_CONTEXT;

/// Scopes asked for at sign-in unless the configuration says otherwise: the ID token with the
/// email (and whether it is verified), and the product profiles.
pub const DEFAULT_SCOPES: &[&str] = &[
    "openid",
    "AdobeID",
    "email",
    "profile",
    "additional_info.projectedProductContext",
];

/// The vendor's refusal when none of a person's product profiles matches the association mask;
/// kept word for word because administrators search their documentation for it.
pub const NO_MATCHING_RIGHT: &str = "Login does not have any right matching the expression";

/// The instance's IMS configuration as its file states it (`imsAccount` in
/// `config-<instance>.xml`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImsAccount {
    /// The IMS's base URL, which is also its issuer.
    pub url: String,
    pub org_id: String,
    /// The instance's own IMS client; when absent, the `-setimsoauth` credential's.
    pub client_id: Option<String>,
    /// Sealed under the master key (`enc:...`); absent with `client_id`.
    pub sealed_secret: Option<String>,
    pub callback_url: String,
    pub mask: AssociationMask,
    pub product_context: String,
    pub scopes: Vec<String>,
}

/// Checks what can be checked without asking the IMS; the message names the attribute.
pub fn check_account(a: &ImsAccount) -> Result<(), (&'static str, String)> {
    check_base_url(&a.url).map_err(|m| ("url", m))?;
    if !a.org_id.ends_with("@AdobeOrg") {
        return Err(("orgId", "an organisation id ends with @AdobeOrg".into()));
    }
    if a.client_id.is_some() != a.sealed_secret.is_some() {
        return Err((
            "clientSecret",
            "give clientId and clientSecret together (or neither, to use the -setimsoauth credential)".into(),
        ));
    }
    if a.sealed_secret.as_deref().is_some_and(|s| !s.starts_with("enc:")) {
        return Err((
            "clientSecret",
            "the secret must be stored sealed (set it with `ims instance ims-config`)".into(),
        ));
    }
    check_callback(&a.callback_url).map_err(|m| ("callbackUrl", m))?;
    if a.product_context.is_empty()
        || !a
            .product_context
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
    {
        return Err((
            "productContext",
            "a product context is lower-case letters, digits and _ (dma_campaign_classic)".into(),
        ));
    }
    if !a.scopes.iter().any(|s| s == "openid") {
        return Err(("scopes", "the scopes must include openid".into()));
    }
    if let Some(bad) = a
        .scopes
        .iter()
        .find(|s| s.is_empty() || !s.chars().all(|c| c.is_ascii_graphic() && c != ','))
    {
        return Err(("scopes", format!("{bad:?} is not a scope")));
    }
    Ok(())
}

fn parse_url(u: &str) -> Result<url::Url, String> {
    url::Url::parse(u).map_err(|e| format!("{u:?} is not an absolute URL: {e}"))
}

fn https_or_loopback(u: &url::Url) -> Result<(), String> {
    let loopback = u.host().as_ref().is_some_and(ims_core::net::is_loopback_host);
    match u.scheme() {
        "https" => Ok(()),
        "http" if loopback => Ok(()),
        _ => Err(format!("{u} must use https (http only on a loopback address)")),
    }
}

fn check_base_url(u: &str) -> Result<(), String> {
    let parsed = parse_url(u)?;
    https_or_loopback(&parsed)?;
    if parsed.query().is_some() || parsed.fragment().is_some() || u.ends_with('/') {
        return Err(format!(
            "{u:?}: give the IMS's base URL, without a trailing slash, query or fragment"
        ));
    }
    Ok(())
}

/// The callback URL: https (http on loopback), at [`CALLBACK_PATH`], nothing else.
pub fn check_callback(u: &str) -> Result<(), String> {
    let parsed = parse_url(u)?;
    https_or_loopback(&parsed)?;
    if parsed.path() != CALLBACK_PATH || parsed.query().is_some() || parsed.fragment().is_some() {
        return Err(format!(
            "{u:?}: the instance receives sign-ins at {CALLBACK_PATH} (https://<instance host>{CALLBACK_PATH})"
        ));
    }
    Ok(())
}

/// A product profile a person or a technical account holds, as the IMS describes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HeldProfile {
    pub name: String,
    pub permissions: Vec<String>,
}

/// The profiles of `product_context` in an `/ims/profile/v1` answer (`projectedProductContext`).
pub fn held_profiles(profile: &Value, product_context: &str) -> Vec<HeldProfile> {
    let Some(entries) = profile.get("projectedProductContext").and_then(Value::as_array) else {
        return Vec::new();
    };
    let mut out: Vec<HeldProfile> = Vec::new();
    for ctx in entries.iter().filter_map(|e| e.get("prodCtx")) {
        if ctx.get("serviceCode").and_then(Value::as_str) != Some(product_context) {
            continue;
        }
        let Some(name) = ctx.get("label").and_then(Value::as_str) else {
            continue;
        };
        let permissions = ctx
            .get("permissions")
            .and_then(Value::as_array)
            .map(|p| p.iter().filter_map(Value::as_str).map(str::to_owned).collect())
            .unwrap_or_default();
        // Held directly and through a user group: one profile.
        if !out.iter().any(|h| h.name == name) {
            out.push(HeldProfile {
                name: name.to_owned(),
                permissions,
            });
        }
    }
    out
}

/// What the matching profiles grant on this instance.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Mapping {
    /// Names of the profiles the mask matched.
    pub matched: Vec<String>,
    /// Operator groups (internal names), sorted.
    pub groups: Vec<String>,
    /// Named rights from the matching profiles' permission items that none of `groups`
    /// carries (those the operator holds directly), sorted.
    pub rights: Vec<String>,
    /// Matching profiles whose captured name is no operator group here: (profile, captured).
    pub unknown_groups: Vec<(String, String)>,
    /// Permission items that are no named right.
    pub unknown_rights: Vec<String>,
}

pub fn map_profiles(mask: &AssociationMask, profiles: &[HeldProfile], groups: &[OperatorGroup]) -> Mapping {
    let mut m = Mapping::default();
    for p in profiles {
        let Some(captured) = mask.captured(&p.name) else {
            continue;
        };
        m.matched.push(p.name.clone());
        match group_named(captured, groups) {
            Some(g) => m.groups.push(g.name.clone()),
            None => m.unknown_groups.push((p.name.clone(), captured.to_owned())),
        }
        for item in &p.permissions {
            match right_named(item) {
                Some(r) => m.rights.push(r.to_owned()),
                None => m.unknown_rights.push(item.clone()),
            }
        }
    }
    for v in [&mut m.groups, &mut m.rights, &mut m.unknown_rights] {
        v.sort();
        v.dedup();
    }
    // A right a mapped group carries is not held directly as well: the operator's rights are
    // the same either way, and a profile made from a group (its rights as items) then maps to
    // the group alone, so a moved person's first sign-in changes nothing, and neither does a
    // sign-in after a rollback gave back what it held.
    let carried: std::collections::HashSet<&str> = groups
        .iter()
        .filter(|g| m.groups.contains(&g.name))
        .flat_map(|g| g.rights.iter().map(String::as_str))
        .collect();
    m.rights.retain(|r| !carried.contains(r.as_str()));
    m
}

/// Who the IMS says signed in, from a verified ID token.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Identity {
    pub user_id: String,
    pub email: Option<String>,
    pub email_verified: bool,
    pub name: Option<String>,
}

/// Which operator an identity signs in as.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Resolution {
    /// The operator already linked to the identity.
    Linked(Operator),
    /// An IMS operator with the same (verified) email, not linked yet: linked now.
    ByEmail(Operator),
    /// No operator: one is created, authentication type IMS.
    Create,
    /// Refused: the message for the person (the audit line says the same).
    Refused(String),
}

/// Decides which operator `who` becomes. `linked` is the operator linked to the identity;
/// `same_email` the operators whose email equals the identity's, case-insensitively. An email
/// links only when the IMS marks it verified, to exactly one operator that signs in through the
/// IMS and is linked to no other identity: never an automatic merge otherwise.
pub fn resolve(who: &Identity, linked: Option<Operator>, same_email: Vec<Operator>) -> Resolution {
    if let Some(op) = linked {
        return match op.auth_type {
            AuthType::Ims => Resolution::Linked(op),
            _ => Resolution::Refused(format!(
                "The operator {} is linked to this identity but signs in with its login and password \
                 until it is moved to IMS sign-in.",
                op.login
            )),
        };
    }
    let Some(email) = who.email.as_deref().filter(|e| !e.trim().is_empty()) else {
        return Resolution::Create;
    };
    let key = email_key(email);
    let same: Vec<Operator> = same_email
        .into_iter()
        .filter(|o| o.email.as_deref().map(email_key).as_deref() == Some(key.as_str()))
        .collect();
    match same.as_slice() {
        [] => Resolution::Create,
        _ if !who.email_verified => Resolution::Refused(format!(
            "An operator already uses {email}, and the identity service does not mark it verified: \
             it is not linked, and no other operator is made for it."
        )),
        [op] => {
            if op.ims_id.as_deref().is_some_and(|id| id != who.user_id) {
                Resolution::Refused(format!(
                    "The operator using {email} is linked to another identity; it is not taken over."
                ))
            } else if op.auth_type != AuthType::Ims {
                Resolution::Refused(format!(
                    "The operator {} using {email} signs in with its login and password until it \
                     is moved to IMS sign-in.",
                    op.login
                ))
            } else {
                Resolution::ByEmail(op.clone())
            }
        }
        _ => Resolution::Refused(format!("Several operators use {email}: none is linked by guess.")),
    }
}

/// HTTP as the instance needs it to talk to the IMS (implemented over HTTPS by the server, and
/// in-process by tests). Bodies that are not JSON come back as `Value::Null`.
#[async_trait]
pub trait ImsHttp: Send + Sync {
    async fn get(&self, url: &str, bearer: Option<&str>) -> Result<(u16, Value), String>;
    /// A GET authenticated as a client (HTTP Basic).
    async fn get_basic(&self, url: &str, client_id: &str, secret: &str) -> Result<(u16, Value), String>;
    async fn post_form(
        &self,
        url: &str,
        basic: Option<(&str, &str)>,
        form: &[(&str, &str)],
    ) -> Result<(u16, Value), String>;
}

/// Reads the IMS's published keys through [`ImsHttp`].
pub struct HttpKeys {
    pub http: std::sync::Arc<dyn ImsHttp>,
    pub url: String,
}

#[async_trait]
impl crate::bearer::JwksSource for HttpKeys {
    async fn fetch(&self) -> Result<Value, String> {
        match self.http.get(&self.url, None).await? {
            (200, v) => Ok(v),
            (status, _) => Err(format!("{} answered {status}", self.url)),
        }
    }
}

/// The IMS endpoints, at the vendor's paths under the base URL.
pub fn endpoint(base: &str, which: Endpoint) -> String {
    let path = match which {
        Endpoint::Authorize => "/ims/authorize/v2",
        Endpoint::Token => "/ims/token/v3",
        Endpoint::Keys => "/ims/keys",
        Endpoint::Profile => "/ims/profile/v1",
        Endpoint::Logout => "/ims/logout/v1",
        Endpoint::Discovery => "/.well-known/openid-configuration",
        Endpoint::Client => "/ims/client/v1",
    };
    format!("{base}{path}")
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Endpoint {
    Authorize,
    Token,
    Keys,
    Profile,
    Logout,
    Discovery,
    Client,
}

#[cfg(test)]
mod tests {
    use super::*;
    use ims_core::Now;

    fn groups() -> Vec<OperatorGroup> {
        ims_wire::rights::DEFAULT_GROUPS
            .iter()
            .enumerate()
            .map(|(i, g)| OperatorGroup {
                id: i as i64,
                name: g.name.into(),
                label: g.label.into(),
                rights: g.rights.iter().map(|r| r.to_string()).collect(),
            })
            .collect()
    }

    fn profile(name: &str, perms: &[&str]) -> HeldProfile {
        HeldProfile {
            name: name.into(),
            permissions: perms.iter().map(|p| p.to_string()).collect(),
        }
    }

    #[test]
    fn the_mask_matches_whole_names_and_needs_one_capture() {
        let m = AssociationMask::parse("campaign - marketing - (.*)").unwrap();
        assert_eq!(
            m.captured("campaign - marketing - Administrator"),
            Some("Administrator")
        );
        assert_eq!(m.captured("xcampaign - marketing - Administrator"), None);
        assert_eq!(m.captured("campaign - marketing2 - Administrator"), None);
        assert_eq!(
            m.captured("campaign - marketing - "),
            None,
            "an empty capture names nothing"
        );
        assert!(AssociationMask::parse("campaign - marketing - .*").is_err());
        assert!(AssociationMask::parse("(a)-(b)").is_err());
        assert!(AssociationMask::parse("campaign - (").is_err());
        assert!(AssociationMask::parse("  ").is_err());
        // Non-capturing groups are allowed beside the one capture.
        let m = AssociationMask::parse("(?:campaign|acc) - mc - (.+)").unwrap();
        assert_eq!(m.captured("acc - mc - messagecenter"), Some("messagecenter"));
    }

    #[test]
    fn profiles_map_to_groups_and_rights() {
        let mask = AssociationMask::parse("campaign - marketing - (.*)").unwrap();
        let held = vec![
            profile("campaign - marketing - Administrator", &["admin"]),
            profile("campaign - marketing - deliveryoperators", &["EXPORT", "bogus"]),
            profile("campaign - marketing - ghosts", &[]),
            profile("campaign - mc - Administrator", &["admin"]),
            profile("Analytics - admin", &[]),
        ];
        let m = map_profiles(&mask, &held, &groups());
        assert_eq!(m.groups, vec!["admin", "deliveryOperators"]);
        // `admin` comes with the admin group; `export` no mapped group carries: held directly.
        assert_eq!(m.rights, vec!["export"]);
        let own = map_profiles(
            &mask,
            &[profile(
                "campaign - marketing - reportAccess",
                &["admin", "reports"],
            )],
            &groups(),
        );
        assert_eq!(
            own.rights,
            vec!["admin"],
            "an item the profile's own group does not carry is held directly"
        );
        assert_eq!(m.matched.len(), 3);
        assert_eq!(
            m.unknown_groups,
            vec![("campaign - marketing - ghosts".to_owned(), "ghosts".to_owned())]
        );
        assert_eq!(m.unknown_rights, vec!["bogus"]);
        let mc = AssociationMask::parse("campaign - mc - (.*)").unwrap();
        let m = map_profiles(&mc, &[profile("campaign - mc - messagecenter", &[])], &groups());
        assert_eq!(
            m.groups,
            vec!["messageCenterAgents"],
            "the vendor's fixed Message Center profile"
        );
    }

    #[test]
    fn held_profiles_read_the_profile_answer() {
        let v = serde_json::json!({"projectedProductContext": [
            {"prodCtx": {"serviceCode": "dma_campaign_classic", "label": "campaign - m - admin", "permissions": ["admin"]}},
            {"prodCtx": {"serviceCode": "dma_campaign_classic", "label": "campaign - m - admin", "permissions": ["admin"], "through": "group"}},
            {"prodCtx": {"serviceCode": "other", "label": "campaign - m - x"}},
            {"nothing": 1}
        ]});
        assert_eq!(
            held_profiles(&v, "dma_campaign_classic"),
            vec![profile("campaign - m - admin", &["admin"])]
        );
        assert!(held_profiles(&Value::Null, "dma_campaign_classic").is_empty());
    }

    fn op(login: &str, email: &str, auth: AuthType, ims_id: Option<&str>) -> Operator {
        Operator {
            auth_type: auth,
            ims_id: ims_id.map(str::to_owned),
            ..Operator::native(login, Some(email.into()), vec![], None, Now::from_millis(0))
        }
    }

    fn who(email: &str, verified: bool) -> Identity {
        Identity {
            user_id: "U1@AdobeID".into(),
            email: Some(email.into()),
            email_verified: verified,
            name: None,
        }
    }

    #[test]
    fn email_matching_rules() {
        let ims_op = op("jane", "Jane.Doe@Example.com", AuthType::Ims, None);
        // Case variants match.
        assert_eq!(
            resolve(&who("jane.doe@example.COM", true), None, vec![ims_op.clone()]),
            Resolution::ByEmail(ims_op.clone())
        );
        // An unverified email never links.
        assert!(matches!(
            resolve(&who("jane.doe@example.com", false), None, vec![ims_op.clone()]),
            Resolution::Refused(_)
        ));
        // An operator linked to another identity is never taken over.
        let taken = op(
            "jane",
            "jane.doe@example.com",
            AuthType::Ims,
            Some("OTHER@AdobeID"),
        );
        assert!(matches!(
            resolve(&who("jane.doe@example.com", true), None, vec![taken]),
            Resolution::Refused(_)
        ));
        // A native operator is not switched by a sign-in.
        let native = op("jdoe", "jane.doe@example.com", AuthType::Native, None);
        assert!(matches!(
            resolve(&who("jane.doe@example.com", true), None, vec![native]),
            Resolution::Refused(_)
        ));
        // Two operators with the email: no guess.
        assert!(matches!(
            resolve(
                &who("jane.doe@example.com", true),
                None,
                vec![
                    ims_op.clone(),
                    op("j2", "JANE.doe@example.com", AuthType::Ims, None)
                ]
            ),
            Resolution::Refused(_)
        ));
        // Nobody with the email, verified or not: created.
        assert_eq!(
            resolve(&who("new@example.com", false), None, vec![]),
            Resolution::Create
        );
        // The link wins over the email.
        let linked = op("jane", "old@example.com", AuthType::Ims, Some("U1@AdobeID"));
        assert_eq!(
            resolve(
                &who("jane.doe@example.com", true),
                Some(linked.clone()),
                vec![ims_op]
            ),
            Resolution::Linked(linked)
        );
        // A candidate the store returned whose email differs is not a match.
        assert_eq!(
            resolve(
                &who("a@example.com", true),
                None,
                vec![op("b", "b@example.com", AuthType::Ims, None)]
            ),
            Resolution::Create
        );
    }

    #[test]
    fn account_checks_name_the_attribute() {
        let good = ImsAccount {
            url: "https://ims.example.com".into(),
            org_id: "ABC@AdobeOrg".into(),
            client_id: Some("cid".into()),
            sealed_secret: Some("enc:x".into()),
            callback_url: "https://acc.example.com/console/ims/callback".into(),
            mask: AssociationMask::parse("campaign - acc - (.*)").unwrap(),
            product_context: DEFAULT_PRODUCT_CONTEXT.into(),
            scopes: DEFAULT_SCOPES.iter().map(|s| s.to_string()).collect(),
        };
        assert_eq!(check_account(&good), Ok(()));
        let with = |f: &dyn Fn(&mut ImsAccount)| {
            let mut a = good.clone();
            f(&mut a);
            check_account(&a).unwrap_err().0
        };
        assert_eq!(with(&|a| a.url = "http://ims.example.com".into()), "url");
        assert_eq!(with(&|a| a.url = "https://ims.example.com/".into()), "url");
        assert_eq!(with(&|a| a.org_id = "ABC".into()), "orgId");
        assert_eq!(with(&|a| a.sealed_secret = None), "clientSecret");
        assert_eq!(with(&|a| a.sealed_secret = Some("plain".into())), "clientSecret");
        assert_eq!(
            with(&|a| a.callback_url = "http://acc.example.com/console/ims/callback".into()),
            "callbackUrl"
        );
        assert_eq!(
            with(&|a| a.callback_url = "https://acc.example.com/elsewhere".into()),
            "callbackUrl"
        );
        assert_eq!(with(&|a| a.product_context = "Campaign".into()), "productContext");
        assert_eq!(with(&|a| a.scopes = vec!["email".into()]), "scopes");
        let mut loopback = good.clone();
        loopback.url = "http://127.0.0.1:8443".into();
        loopback.callback_url = "http://127.0.0.1:8444/console/ims/callback".into();
        loopback.client_id = None;
        loopback.sealed_secret = None;
        assert_eq!(
            check_account(&loopback),
            Ok(()),
            "http on loopback, -setimsoauth's client"
        );
    }
}
