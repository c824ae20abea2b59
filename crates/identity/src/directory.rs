//! Who may use which product instance: product instances (a product context such as
//! `dma_campaign_classic` and its instances), product profiles (belong to one product instance,
//! carry permission items and a licence quota), user groups (linked to product profiles), direct
//! and inherited memberships, and administrator roles.

use serde::{Deserialize, Serialize};

use ims_core::Now;

/// The product context of the Campaign instances (a wire value clients check).
pub const CAMPAIGN_PRODUCT_CONTEXT: &str = ims_wire::names::CAMPAIGN_PRODUCT_CONTEXT;

/// A product's instance that profiles grant access to.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProductInstance {
    pub id: i64,
    pub org_id: String,
    /// `dma_campaign_classic`.
    pub product_context: String,
    /// The instance's name, e.g. `marketing`.
    pub name: String,
    pub label: String,
    /// Where the instance answers (its SOAP router is `{url}/nl/jsp/soaprouter.jsp`); empty
    /// when it has not said.
    pub url: String,
    pub created_at: Now,
}

/// The two kinds of group the User Management API lists together.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum GroupKind {
    /// Grants access to a product instance, with permission items.
    #[serde(rename = "PRODUCT_PROFILE")]
    ProductProfile,
    /// A set of users, linked to product profiles.
    #[serde(rename = "USER_GROUP")]
    UserGroup,
}

impl GroupKind {
    pub fn as_str(self) -> &'static str {
        match self {
            GroupKind::ProductProfile => "PRODUCT_PROFILE",
            GroupKind::UserGroup => "USER_GROUP",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "PRODUCT_PROFILE" => Some(GroupKind::ProductProfile),
            "USER_GROUP" => Some(GroupKind::UserGroup),
            _ => None,
        }
    }
}

/// A product profile or a user group. Names are unique case-insensitively within the
/// organisation, across both kinds (the API names groups of either kind the same way).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Group {
    /// The numeric `groupId`.
    pub id: i64,
    pub org_id: String,
    pub name: String,
    pub kind: GroupKind,
    pub description: String,
    /// Profiles only: the product instance they grant.
    pub product_instance_id: Option<i64>,
    /// Profiles only: how many members at most (`None`: no limit).
    pub license_quota: Option<i64>,
    /// Profiles only: permission items (for Campaign, named rights).
    pub permissions: Vec<String>,
    pub created_at: Now,
    pub updated_at: Now,
}

impl Group {
    /// Whether the profile may carry ADMINISTRATION on its product instance: a permission item
    /// `admin`, or "admin" anywhere in its name (a profile named after an instance's
    /// Administrator group grants ADMINISTRATION through the group, and the vendor treats any
    /// profile whose name holds "admin" as administrative). Checked case-insensitively; only a
    /// system administrator attaches such a profile to a credential.
    pub fn carries_administration(&self) -> bool {
        self.permissions.iter().any(|p| p.eq_ignore_ascii_case("admin"))
            || self.name.to_lowercase().contains("admin")
    }

    pub fn user_group(org_id: &str, name: &str, description: &str, now: Now) -> Self {
        Group {
            id: 0,
            org_id: org_id.to_owned(),
            name: name.to_owned(),
            kind: GroupKind::UserGroup,
            description: description.to_owned(),
            product_instance_id: None,
            license_quota: None,
            permissions: Vec::new(),
            created_at: now,
            updated_at: now,
        }
    }

    pub fn product_profile(org_id: &str, name: &str, instance: &ProductInstance, now: Now) -> Self {
        Group {
            kind: GroupKind::ProductProfile,
            product_instance_id: Some(instance.id),
            ..Group::user_group(org_id, name, "", now)
        }
    }
}

/// Longest group name (the reference client refuses longer ones too).
pub const MAX_GROUP_NAME: usize = 255;

/// A group name: 1 to 255 characters, not starting with `_` (reserved for system groups), no
/// control characters, no leading or trailing space.
pub fn check_group_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.chars().count() <= MAX_GROUP_NAME
        && !name.starts_with('_')
        && name.trim() == name
        && !name.chars().any(char::is_control);
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{name:?} is not a group name (1 to {MAX_GROUP_NAME} characters, not starting with _, no control characters or surrounding spaces)"
        ))
    }
}

/// What an administrator may administer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AdminRole {
    /// Everything in the organisation.
    SystemAdmin,
    /// The profiles of one product context (the grant's target).
    ProductAdmin,
    /// The members of one product profile (target: the profile's id).
    ProfileAdmin,
    /// The members of one user group (target: the group's id).
    UserGroupAdmin,
    /// Developer Console projects and credentials.
    Developer,
}

impl AdminRole {
    pub const ALL: [AdminRole; 5] = [
        AdminRole::SystemAdmin,
        AdminRole::ProductAdmin,
        AdminRole::ProfileAdmin,
        AdminRole::UserGroupAdmin,
        AdminRole::Developer,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            AdminRole::SystemAdmin => "system_admin",
            AdminRole::ProductAdmin => "product_admin",
            AdminRole::ProfileAdmin => "profile_admin",
            AdminRole::UserGroupAdmin => "user_group_admin",
            AdminRole::Developer => "developer",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        AdminRole::ALL.into_iter().find(|r| r.as_str() == s)
    }

    pub fn label(self) -> &'static str {
        match self {
            AdminRole::SystemAdmin => "System administrator",
            AdminRole::ProductAdmin => "Product administrator",
            AdminRole::ProfileAdmin => "Product profile administrator",
            AdminRole::UserGroupAdmin => "User group administrator",
            AdminRole::Developer => "Developer",
        }
    }

    /// Whether the role is held for one thing (a product context, a group) rather than the
    /// whole organisation.
    pub fn targeted(self) -> bool {
        matches!(
            self,
            AdminRole::ProductAdmin | AdminRole::ProfileAdmin | AdminRole::UserGroupAdmin
        )
    }
}

/// One role held by one person.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct RoleGrant {
    pub user_id: String,
    pub role: AdminRole,
    /// Empty for organisation-wide roles; a product context or a group id otherwise.
    pub target: String,
}

/// A user's membership of a group, and how it comes about.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Membership {
    pub group: String,
    pub kind: GroupKind,
    /// `None`: direct; `Some(user group)`: through that user group's link to the profile.
    pub through: Option<String>,
}

/// A product profile a user holds for a product context, as instances read it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeldProfile {
    pub product_context: String,
    /// The product instance's name.
    pub instance: String,
    pub profile: String,
    pub permissions: Vec<String>,
    /// The user groups it comes through (empty: a direct member).
    pub through: Vec<String>,
}
