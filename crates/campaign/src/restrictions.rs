//! The lock-down (the migration's last step): what the `imsConfig` switches of `serverConf.xml`
//! turn off once they take effect on a build. Every refusal that comes from the restrictions is
//! decided here, so the SOAP API, the console and the command line refuse the same things.
//!
//! The allow-list rule: each `allowOperator/@name` is trimmed, then split on `|`; every part is an
//! exact, case-sensitive operator login (`internal|monitoring` lets `internal` and `monitoring`
//! sign in, and nothing else). Empty parts and whitespace inside a part are configuration errors.
//! With no `allowOperator` element at all the default list applies.

use crate::config::ImsSwitches;
use crate::fault::Fault;
use crate::model::{AuthType, Operator};
use crate::version::{Build, NativeAuth};
use ims_wire::operators::{allow_listed, DEFAULT_ALLOW_LIST};

/// The restrictions in effect: the file's switches as the build applies them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Restrictions {
    /// Native operators can no longer be created, changed or deleted.
    pub operator_management: bool,
    /// Native sign-in and native sessions are refused outside the allow-list.
    pub native_api: bool,
    /// The build (8.6 and later) keeps both on whatever the file says.
    pub forced_by_build: bool,
    /// The allow-list in effect (the file's, or the default).
    pub allow_list: Vec<String>,
    /// What `serverConf.xml` says, shown beside the effect when the build overrides it.
    pub switches: ImsSwitches,
}

/// The stable code of every refusal that comes from the restrictions, so scripts can tell it
/// from a rights or validation problem.
pub const RESTRICTED_CODE: &str = crate::fault::FaultCode::Restricted.as_str();

impl Restrictions {
    pub fn effective(build: &Build, switches: &ImsSwitches) -> Self {
        let forced = build.native_auth() == NativeAuth::AllowListOnly;
        let allow_list = if switches.allow_list.is_empty() {
            DEFAULT_ALLOW_LIST.iter().map(|s| (*s).to_owned()).collect()
        } else {
            switches.allow_list.clone()
        };
        Restrictions {
            operator_management: forced || switches.operator_management_restricted,
            native_api: forced || switches.native_api_disabled,
            forced_by_build: forced,
            allow_list,
            switches: switches.clone(),
        }
    }

    /// Whether `login` may sign in natively (and keep a native session).
    pub fn allows_native(&self, login: &str) -> bool {
        !self.native_api || allow_listed(&self.allow_list, login)
    }

    /// Refuses a change to operators that the management restriction forbids: creating,
    /// changing or deleting a native operator, and turning an operator into a native one.
    /// `before` is the operator as stored (none on creation); `after_native` whether the
    /// operator signs in natively once the change is made.
    pub fn check_operator_change(&self, before: Option<&Operator>, after_native: bool) -> Result<(), Fault> {
        if !self.operator_management {
            return Ok(());
        }
        let what = match before {
            None if after_native => "native operators can no longer be created",
            Some(op) if op.auth_type == AuthType::Native => {
                "native operators can no longer be changed or deleted"
            }
            Some(_) if after_native => "operators can no longer be switched to native sign-in",
            _ => return Ok(()),
        };
        Err(Fault::restricted(format!(
            "{what}: operator management is restricted to the IMS on this instance (manage people in the Admin Console)"
        )))
    }

    /// What the restrictions block, one line each, for status pages and commands.
    pub fn blocks(&self) -> Vec<String> {
        let mut out = Vec::new();
        if self.operator_management {
            out.extend(
                [
                    "creating native operators",
                    "changing a native operator (name, password, label, email, groups, rights, XML source)",
                    "deleting, merging or duplicating native operators",
                    "switching an operator to native sign-in",
                    "password reset for native operators",
                ]
                .map(str::to_owned),
            );
        }
        if self.native_api {
            out.push(format!(
                "native sign-in (Logon, console) and existing native sessions, except for: {}",
                self.allow_list.join(", ")
            ));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::read_server_conf;
    use proptest::prelude::*;

    fn on(ui: bool, api: bool) -> ImsSwitches {
        ImsSwitches {
            operator_management_restricted: ui,
            native_api_disabled: api,
            allow_list: Vec::new(),
        }
    }

    fn native(login: &str) -> Operator {
        Operator::native(login, None, Vec::new(), None, ims_core::Now::from_millis(0))
    }

    #[test]
    fn builds_from_8_6_force_both_restrictions_and_keep_the_allow_list() {
        let b86: Build = "8.6.0".parse().unwrap();
        let r = Restrictions::effective(&b86, &on(false, false));
        assert!(r.operator_management && r.native_api && r.forced_by_build);
        assert!(r.allows_native("admin") && r.allows_native("monitoring"));
        assert!(!r.allows_native("jdoe"));
        let b741: Build = "7.4.1".parse().unwrap();
        let r = Restrictions::effective(&b741, &on(false, false));
        assert!(!r.operator_management && !r.native_api && !r.forced_by_build);
        assert!(r.allows_native("jdoe"));
        let r = Restrictions::effective(&b741, &on(true, false));
        assert!(r.operator_management && !r.native_api);
    }

    #[test]
    fn operator_changes_under_the_management_restriction() {
        let r = Restrictions::effective(&"8.5.2".parse().unwrap(), &on(true, false));
        let refused = r.check_operator_change(None, true).unwrap_err();
        assert_eq!(refused.code, RESTRICTED_CODE);
        assert!(r.check_operator_change(Some(&native("jdoe")), true).is_err());
        assert!(r.check_operator_change(Some(&native("jdoe")), false).is_err());
        let mut ims = native("ana");
        ims.auth_type = AuthType::Ims;
        assert!(r.check_operator_change(Some(&ims), false).is_ok());
        assert!(r.check_operator_change(Some(&ims), true).is_err());
        let off = Restrictions::effective(&"8.5.2".parse().unwrap(), &on(false, true));
        assert!(off.check_operator_change(None, true).is_ok());
    }

    fn conf(names: &[String]) -> String {
        let mut allow = String::new();
        for n in names {
            allow.push_str(&format!(
                "<allowOperator name=\"{}\"/>",
                ims_wire::soap::escape(n)
            ));
        }
        format!(
            "<serverConf><shared><imsConfig><nonIMSAuthnAPI disableAPI=\"true\">{allow}</nonIMSAuthnAPI></imsConfig></shared></serverConf>"
        )
    }

    proptest! {
        /// Entries are read as written (trimmed), split on `|`, and match exact logins only:
        /// never another case, never a part with its spaces, never an empty name.
        #[test]
        fn allow_list_entries(parts in prop::collection::vec("[a-zA-Z0-9 ._-]{0,8}", 1..4), pad in "[ ]{0,2}", probe in "[a-zA-Z0-9 ._-]{0,8}") {
            let entry = format!("{pad}{}{pad}", parts.join("|"));
            let build: Build = "7.4.1".parse().unwrap();
            let read = read_server_conf("serverConf.xml", &conf(std::slice::from_ref(&entry)), &build);
            let trimmed = entry.trim();
            let well_formed = ims_wire::operators::valid_allow_entry(trimmed);
            prop_assert_eq!(read.is_ok(), well_formed, "{:?}", read);
            if let Ok(switches) = read {
                let r = Restrictions::effective(&build, &switches);
                prop_assert_eq!(&r.allow_list, &vec![trimmed.to_owned()]);
                let names: Vec<&str> = trimmed.split('|').collect();
                prop_assert_eq!(r.allows_native(&probe), names.contains(&probe.as_str()));
                for n in &names {
                    prop_assert!(r.allows_native(n));
                    let upper = n.to_uppercase();
                    if upper != *n && !names.contains(&upper.as_str()) {
                        prop_assert!(!r.allows_native(&upper), "case matters: {}", upper);
                    }
                    let spaced = format!(" {n}");
                    prop_assert!(!r.allows_native(&spaced));
                }
                prop_assert!(!r.allows_native(""));
                prop_assert!(!r.allows_native(trimmed) || !trimmed.contains('|'));
            }
        }
    }
}
