//! Fixtures of the unit tests.

use ims_wire::migration::{GroupFacts, InstanceFacts, OperatorFacts, RestrictionFacts};

/// A 7.4.1 marketing instance named `prod` with these groups (`name`, rights).
pub fn facts(groups: &[(&str, &[&str])]) -> InstanceFacts {
    InstanceFacts {
        name: "prod".into(),
        kind: "marketing".into(),
        build: "7.4.1".into(),
        accepts_ims_signin: true,
        accepts_bearer_tokens: true,
        supports_restrictions: true,
        native_auth: "until_switched_off".into(),
        bearer_builds: "7.3.2.IMS and later".into(),
        restriction_builds: "7.4.1 and later".into(),
        people_builds: ims_wire::migration::PEOPLE_BUILDS.into(),
        restrictions: RestrictionFacts {
            operator_management_restricted: false,
            native_api_disabled: false,
            allow_list: vec!["admin".into()],
        },
        ims_account: None,
        groups: groups
            .iter()
            .map(|(name, rights)| GroupFacts {
                name: (*name).into(),
                label: (*name).into(),
                rights: rights.iter().map(|r| (*r).to_owned()).collect(),
            })
            .collect(),
        operator_count: 0,
        now: 0,
        environment: "production".into(),
        staging_twin: None,
        migration_complete: None,
    }
}

/// A native operator of no group, without email, rights or usage.
pub fn operator(login: &str) -> OperatorFacts {
    OperatorFacts {
        id: 0,
        login: login.into(),
        label: login.into(),
        email: None,
        auth_type: "native".into(),
        disabled: false,
        builtin: false,
        groups: vec![],
        rights: vec![],
        ims_id: None,
        credential: None,
        usage: vec![],
    }
}
