//! The Developer Console's model: projects with their workspaces, the services (APIs) a
//! credential can be subscribed to, and what a subscription gives. A credential is the token
//! service's technical account itself (an OAuth client), placed in a workspace: there is no
//! second model of it.

use serde::{Deserialize, Serialize};

use ims_core::clock::Now;
use ims_core::error::{Error, Result};

/// The Campaign API: its credentials' technical accounts call instances with bearer tokens;
/// what they may do comes from the product profiles they hold ("license configs").
pub const CAMPAIGN_SERVICE: &str = "CampaignSDK";
/// The I/O Management API: the Developer Console API itself, for technical accounts.
pub const IO_MANAGEMENT_SERVICE: &str = "AdobeIOManagementAPISDK";
/// The User Management API.
pub const USER_MANAGEMENT_SERVICE: &str = "UserMgmtSDK";

/// The scope that admits a technical account to the Developer Console API.
pub const CONSOLE_API_SCOPE: &str = "adobeio_api";
/// The scope a technical account needs to read its organisation's client secrets.
pub const READ_SECRETS_SCOPE: &str = "read_client_secret";
/// The scope a technical account needs to add or remove client secrets.
pub const MANAGE_SECRETS_SCOPE: &str = "manage_client_secrets";

/// The name of the workspace every project starts with.
pub const DEFAULT_WORKSPACE: &str = "Production";

/// A service (API) a credential can be subscribed to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Service {
    /// The `sdkCode` the API names it by.
    pub code: &'static str,
    pub name: &'static str,
    /// The short name the CLI takes (`ims credential create --service`).
    pub cli_name: &'static str,
    pub description: &'static str,
    /// Scopes a subscribed credential may request.
    pub scopes: &'static [&'static str],
    /// Its license configs are the product profiles of this product context.
    pub product_context: Option<&'static str>,
    /// Only a system administrator may subscribe a credential to it: the API it opens
    /// administers the whole organisation.
    pub system_admin_only: bool,
}

impl Service {
    pub const ALL: [Service; 3] = [
        Service {
            code: CAMPAIGN_SERVICE,
            name: "Campaign API",
            cli_name: "campaign",
            description: "Call Campaign instances (SOAP) with an access token; rights come from the product profiles the credential holds.",
            scopes: &["openid", "AdobeID", "additional_info.projectedProductContext"],
            product_context: Some(crate::directory::CAMPAIGN_PRODUCT_CONTEXT),
            system_admin_only: false,
        },
        Service {
            code: IO_MANAGEMENT_SERVICE,
            name: "I/O Management API",
            cli_name: "io-management",
            description: "Manage Developer Console projects, workspaces and credentials from code.",
            scopes: &[
                "openid",
                "AdobeID",
                "read_organizations",
                "additional_info.projectedProductContext",
                "additional_info.roles",
                CONSOLE_API_SCOPE,
                READ_SECRETS_SCOPE,
                MANAGE_SECRETS_SCOPE,
            ],
            product_context: None,
            system_admin_only: false,
        },
        Service {
            code: USER_MANAGEMENT_SERVICE,
            name: "User Management API",
            cli_name: "user-management",
            description: "Manage the organisation's users, user groups and product profile memberships.",
            scopes: &["openid", "AdobeID", crate::service::directory::UMAPI_SCOPE],
            product_context: None,
            system_admin_only: true,
        },
    ];

    pub fn by_code(code: &str) -> Option<Service> {
        Service::ALL.into_iter().find(|s| s.code == code)
    }

    pub fn by_cli_name(name: &str) -> Option<Service> {
        Service::ALL.into_iter().find(|s| s.cli_name == name)
    }
}

/// The scopes a credential subscribed to `services` may request, in a stable order, each once,
/// after the ones it already had.
pub fn scopes_with(existing: &[String], services: &[Service]) -> Vec<String> {
    let mut out = existing.to_vec();
    for scope in services.iter().flat_map(|s| s.scopes.iter()) {
        if !out.iter().any(|have| have == scope) {
            out.push((*scope).to_owned());
        }
    }
    out
}

/// A project: a named container of workspaces in one organisation.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Project {
    /// A numeric string, as the vendor's ids are.
    pub id: String,
    pub org_id: String,
    /// Unique in the organisation; letters, digits, `-` and `_`.
    pub name: String,
    pub title: String,
    pub description: String,
    /// `default` (or `jaeger` for the vendor's application projects, kept as given).
    pub project_type: String,
    pub who_created: String,
    pub created_at: Now,
}

/// A workspace of a project: credentials live in workspaces.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Workspace {
    pub id: String,
    pub project_id: String,
    pub name: String,
    pub title: String,
    pub description: String,
    pub created_at: Now,
}

/// Where a credential made in the Developer Console sits.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Placement {
    pub project_id: String,
    pub workspace_id: String,
    pub description: String,
}

/// How long a new credential's first secret waits to be shown; past it, it never is (add a new
/// secret instead).
pub const UNSHOWN_SECRET_SECS: i64 = 24 * 3600;

/// A new numeric id: 18 digits, never starting with 0.
pub fn new_id() -> String {
    let n = u64::from_be_bytes(ims_core::secret::random_bytes::<8>());
    (100_000_000_000_000_000 + n % 900_000_000_000_000_000).to_string()
}

/// A project or workspace name: 3 to 45 characters, letters, digits, `-` and `_`, starting
/// with a letter or digit (the vendor's rule, so names move between the two unchanged).
pub fn check_name(what: &str, name: &str) -> Result<()> {
    let ok_len = (3..=45).contains(&name.chars().count());
    let ok_chars = name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    let ok_start = name.chars().next().is_some_and(|c| c.is_ascii_alphanumeric());
    if ok_len && ok_chars && ok_start {
        Ok(())
    } else {
        Err(Error::invalid_request(format!(
            "{what} name {:?} must be 3 to 45 letters, digits, '-' or '_', starting with a letter or digit",
            name.chars().take(64).collect::<String>()
        )))
    }
}

/// Checks a project's or workspace's name, title and description; answers the title to keep
/// (the name when none is given).
fn checked<'a>(what: &str, name: &'a str, title: &'a str, description: &str) -> Result<&'a str> {
    check_name(what, name)?;
    let title = if title.trim().is_empty() {
        name
    } else {
        title.trim()
    };
    check_text(&format!("a {what} title"), title, 45)?;
    check_text(&format!("a {what} description"), description, 1000)?;
    Ok(title)
}

/// A title or description: printable, bounded.
pub fn check_text(what: &str, text: &str, max: usize) -> Result<()> {
    if text.chars().count() > max || text.chars().any(|c| c.is_control() && c != '\n') {
        return Err(Error::invalid_request(format!(
            "{what} must be at most {max} printable characters"
        )));
    }
    Ok(())
}

impl Project {
    pub fn new(
        org_id: &str,
        name: &str,
        title: &str,
        description: &str,
        project_type: &str,
        who_created: &str,
        now: Now,
    ) -> Result<Self> {
        let title = checked("project", name, title, description)?;
        let project_type = match project_type {
            "" | "default" => "default",
            "jaeger" => "jaeger",
            other => {
                return Err(Error::invalid_request(format!(
                    "project type {:?} is not default or jaeger",
                    other.chars().take(32).collect::<String>()
                )))
            }
        };
        Ok(Project {
            id: new_id(),
            org_id: org_id.to_owned(),
            name: name.to_owned(),
            title: title.to_owned(),
            description: description.to_owned(),
            project_type: project_type.to_owned(),
            who_created: who_created.to_owned(),
            created_at: now,
        })
    }
}

impl Project {
    /// The project renamed (name and title; the description too when given), checked as a new
    /// one is.
    pub fn renamed(&self, name: &str, title: &str, description: Option<&str>) -> Result<Project> {
        let description = description.unwrap_or(&self.description);
        let title = checked("project", name, title, description)?;
        Ok(Project {
            name: name.to_owned(),
            title: title.to_owned(),
            description: description.to_owned(),
            ..self.clone()
        })
    }
}

impl Workspace {
    pub fn new(project_id: &str, name: &str, title: &str, description: &str, now: Now) -> Result<Self> {
        let title = checked("workspace", name, title, description)?;
        Ok(Workspace {
            id: new_id(),
            project_id: project_id.to_owned(),
            name: name.to_owned(),
            title: title.to_owned(),
            description: description.to_owned(),
            created_at: now,
        })
    }
}

/// A product profile to give (`add`) or take (`remove`) in a subscription request.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct LicenseConfigOp {
    /// The profile's numeric id, as a string (`getServicesForOrg` lists them).
    pub id: String,
    /// The product instance's id, when given it must match the profile's.
    #[serde(default, rename = "productId")]
    pub product_id: Option<String>,
    #[serde(default)]
    pub op: Option<String>,
    /// The console's own form of the operation: `false` takes the profile.
    #[serde(default)]
    pub selected: Option<bool>,
}

impl LicenseConfigOp {
    /// `true` to give the profile, `false` to take it.
    pub fn adds(&self) -> Result<bool> {
        match self.op.as_deref() {
            None if self.selected == Some(false) => Ok(false),
            None | Some("add") => Ok(true),
            Some("remove") => Ok(false),
            Some(other) => Err(Error::invalid_request(format!(
                "license config op {:?} is not add or remove",
                other.chars().take(32).collect::<String>()
            ))),
        }
    }
}

/// One service of a subscription request (`[{sdkCode, licenseConfigs, roles}]`).
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct ServiceRequest {
    #[serde(rename = "sdkCode")]
    pub sdk_code: String,
    #[serde(default, rename = "licenseConfigs")]
    pub license_configs: Option<Vec<LicenseConfigOp>>,
}

impl ServiceRequest {
    /// The service it names, or a clear error.
    pub fn service(&self) -> Result<Service> {
        Service::by_code(&self.sdk_code).ok_or_else(|| {
            Error::invalid_request(format!(
                "unknown service {:?}; known: {}",
                self.sdk_code.chars().take(64).collect::<String>(),
                Service::ALL.map(|s| s.code).join(", ")
            ))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn subscribing_adds_each_scope_once_after_the_existing_ones() {
        let campaign = Service::by_code(CAMPAIGN_SERVICE).unwrap();
        let io = Service::by_code(IO_MANAGEMENT_SERVICE).unwrap();
        let scopes = scopes_with(
            &["openid".to_owned(), "custom".to_owned()],
            &[campaign, io, campaign],
        );
        assert_eq!(&scopes[..2], ["openid", "custom"]);
        let mut sorted = scopes.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(sorted.len(), scopes.len(), "no scope twice: {scopes:?}");
        assert!(scopes.iter().any(|s| s == CONSOLE_API_SCOPE));
        assert!(!scopes.iter().any(|s| s == crate::service::directory::UMAPI_SCOPE));
    }

    #[test]
    fn only_the_user_management_api_needs_a_system_administrator() {
        let needing: Vec<_> = Service::ALL
            .iter()
            .filter(|s| s.system_admin_only)
            .map(|s| s.code)
            .collect();
        assert_eq!(needing, [USER_MANAGEMENT_SERVICE]);
        for s in Service::ALL {
            assert_eq!(Service::by_cli_name(s.cli_name), Some(s));
        }
    }

    #[test]
    fn names_follow_the_vendor_rule() {
        for good in ["abc", "campaign-integration_1", "A23", &"x".repeat(45)] {
            check_name("project", good).unwrap();
        }
        for bad in ["", "ab", "-abc", "has space", "é-name", &"x".repeat(46), "a/b"] {
            assert!(check_name("project", bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn a_project_takes_its_name_as_title_and_refuses_unknown_types() {
        let p = Project::new(
            "O@AdobeOrg",
            "sync-job",
            " ",
            "",
            "default",
            "me",
            Now::from_millis(1),
        )
        .unwrap();
        assert_eq!(p.title, "sync-job");
        assert_eq!(p.id.len(), 18);
        assert!(Project::new(
            "O@AdobeOrg",
            "sync-job",
            "",
            "",
            "other",
            "me",
            Now::from_millis(1)
        )
        .is_err());
    }

    #[test]
    fn license_config_ops_are_add_or_remove() {
        let op: LicenseConfigOp = serde_json::from_str(r#"{"id":"7","productId":"3","op":"add"}"#).unwrap();
        assert!(op.adds().unwrap());
        let op: LicenseConfigOp = serde_json::from_str(r#"{"id":"7","op":"remove"}"#).unwrap();
        assert!(!op.adds().unwrap());
        let op: LicenseConfigOp = serde_json::from_str(r#"{"id":"7","selected":false}"#).unwrap();
        assert!(!op.adds().unwrap());
        let op: LicenseConfigOp = serde_json::from_str(r#"{"id":"7","op":"grant"}"#).unwrap();
        assert!(op.adds().is_err());
    }

    proptest! {
        #[test]
        fn new_ids_are_eighteen_digits(_seed in 0u8..50) {
            let id = new_id();
            prop_assert_eq!(id.len(), 18);
            prop_assert!(id.chars().all(|c| c.is_ascii_digit()));
            prop_assert!(!id.starts_with('0'));
        }
    }
}
