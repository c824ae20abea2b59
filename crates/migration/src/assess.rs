//! Assessment: who the migration touches and what stands in its way, computed from what the
//! instance reports (operators with their recorded usage, build, groups) and the IMS's product
//! profiles. Pure: no I/O, the time passed in.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use ims_wire::email::email_key;
use ims_wire::migration::{InstanceFacts, OperatorFacts, UsageFacts};
use ims_wire::names::CONSOLE_IMS_LOGON;
use ims_wire::names::CONSOLE_LOGON;
use ims_wire::operators::BUILTIN_OPERATORS;
use serde::{Deserialize, Serialize};

/// What an operator is, for the migration.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Class {
    /// A person: migrated to IMS sign-in in the end-user phase.
    Person,
    /// A program signing in with a password: migrated to a technical account.
    Technical,
    /// Installed with the instance; stays native (the allow-list).
    #[serde(rename = "builtin")]
    BuiltIn,
}

impl Class {
    pub fn as_str(self) -> &'static str {
        match self {
            Class::Person => "person",
            Class::Technical => "technical",
            Class::BuiltIn => "builtin",
        }
    }
}

/// Whether an operator's email can become its IMS identity.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EmailStatus {
    Ok,
    Missing,
    Invalid,
    /// Another operator has the same email, compared case-insensitively.
    Duplicate,
}

impl EmailStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            EmailStatus::Ok => "ok",
            EmailStatus::Missing => "missing",
            EmailStatus::Invalid => "invalid",
            EmailStatus::Duplicate => "duplicate",
        }
    }
}

/// The phases of a migration, in order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    Users,
    Technical,
    Finalize,
}

impl Phase {
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Users => "users",
            Phase::Technical => "technical",
            Phase::Finalize => "finalize",
        }
    }
}

/// API usage of an operator: what it called, from where, with which client.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiUsage {
    pub calls: i64,
    pub actions: Vec<String>,
    pub sources: Vec<String>,
    pub clients: Vec<String>,
    pub last_seen: Option<i64>,
}

/// One operator as the assessment sees it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OperatorAssessment {
    pub login: String,
    pub label: String,
    pub email: Option<String>,
    pub email_status: EmailStatus,
    pub auth_type: String,
    pub disabled: bool,
    pub groups: Vec<String>,
    pub rights: Vec<String>,
    /// Direct rights that none of the operator's groups carries.
    pub rights_beyond_groups: Vec<String>,
    pub last_native_sign_in: Option<i64>,
    pub last_ims_sign_in: Option<i64>,
    pub api: ApiUsage,
    pub class: Class,
    /// Why it is classified so, in words.
    pub evidence: String,
    /// Already moved off native sign-in (IMS or technical account).
    pub migrated: bool,
    /// For a person not moved yet, with the IMS asked: how they will get in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access: Option<crate::people::Access>,
}

/// Something that stops a phase until it is fixed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Blocker {
    pub phase: Phase,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operator: Option<String>,
    pub problem: String,
    pub fix: String,
}

/// The whole assessment of an instance.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Assessment {
    pub instance: String,
    pub build: String,
    /// Phases the build can carry, and the builds that carry the others.
    pub build_verdict: String,
    pub counts: BTreeMap<String, usize>,
    pub operators: Vec<OperatorAssessment>,
    /// Product profile names containing "admin" (they grant more than Campaign rights in the
    /// vendor's world).
    pub admin_profiles: Vec<String>,
    /// Direct named rights that no operator group carries: no profile of a group can give them.
    pub rights_no_group_carries: Vec<String>,
    pub blockers: Vec<Blocker>,
    pub warnings: Vec<String>,
    pub assessed_at: i64,
}

/// Sign-in actions of the instance's native API and console.
const NATIVE_SIGN_INS: &[&str] = &["xtk:session#Logon", CONSOLE_LOGON];

fn is_success(u: &UsageFacts) -> bool {
    u.outcome == "success"
}

/// Calls made through the API (anything but the console's own sign-ins).
fn is_api(u: &UsageFacts) -> bool {
    !u.action.starts_with("console#") && !u.action.starts_with("migration#")
}

/// Classifies an operator from its type and its recorded usage: console sign-ins make a person,
/// API sign-ins and calls without console sign-ins make a program, no evidence at all a person
/// (someone who has not signed in yet).
pub fn classify(op: &OperatorFacts) -> (Class, String) {
    if op.builtin || BUILTIN_OPERATORS.iter().any(|(l, _)| *l == op.login) {
        return (Class::BuiltIn, "installed with the instance".into());
    }
    match op.auth_type.as_str() {
        "technical_account" => {
            return (
                Class::Technical,
                "a technical account (signs in with IMS access tokens)".into(),
            )
        }
        "ims" => return (Class::Person, "signs in through the IMS".into()),
        _ => {}
    }
    let ok: Vec<&UsageFacts> = op.usage.iter().filter(|u| is_success(u)).collect();
    let console: i64 = ok
        .iter()
        .filter(|u| u.action == CONSOLE_LOGON || u.action == CONSOLE_IMS_LOGON)
        .map(|u| u.count)
        .sum();
    let api: Vec<&&UsageFacts> = ok.iter().filter(|u| is_api(u)).collect();
    let api_calls: i64 = api.iter().map(|u| u.count).sum();
    let sources: BTreeSet<&str> = api
        .iter()
        .map(|u| u.source.as_str())
        .filter(|s| !s.is_empty())
        .collect();
    let sources = sources.into_iter().collect::<Vec<_>>().join(", ");
    match (console, api_calls) {
        (0, 0) => (Class::Person, "no sign-in or call recorded".into()),
        (c, 0) => (Class::Person, format!("{c} console sign-in(s), no API call")),
        (0, n) => (
            Class::Technical,
            format!("{n} API sign-in(s) and call(s) from {sources}, never the console"),
        ),
        (c, n) => (
            Class::Person,
            format!("{c} console sign-in(s); also {n} API call(s) from {sources}"),
        ),
    }
}

fn last_of(usage: &[UsageFacts], pick: impl Fn(&UsageFacts) -> bool) -> Option<i64> {
    usage
        .iter()
        .filter(|u| is_success(u) && pick(u))
        .map(|u| u.last_at)
        .max()
}

fn api_usage(usage: &[UsageFacts]) -> ApiUsage {
    let api: Vec<&UsageFacts> = usage.iter().filter(|u| is_success(u) && is_api(u)).collect();
    let set = |f: fn(&UsageFacts) -> &str| -> Vec<String> {
        api.iter()
            .map(|u| f(u))
            .filter(|s| !s.is_empty())
            .collect::<BTreeSet<_>>()
            .into_iter()
            .map(str::to_owned)
            .collect()
    };
    ApiUsage {
        calls: api.iter().map(|u| u.count).sum(),
        actions: set(|u| u.action.as_str()),
        sources: set(|u| u.source.as_str()),
        clients: set(|u| u.client.as_str()),
        last_seen: api.iter().map(|u| u.last_at).max(),
    }
}

/// Whether `email` can name an IMS identity (the IMS's own rule).
pub fn email_syntax_ok(email: &str) -> bool {
    ims_wire::email::is_email(email.trim())
}

/// Each operator's email status; duplicates are counted over every operator, whatever its type.
pub fn email_statuses(ops: &[OperatorFacts]) -> Vec<EmailStatus> {
    let mut seen: HashMap<String, usize> = HashMap::new();
    for op in ops {
        if let Some(e) = op.email.as_deref().filter(|e| !e.trim().is_empty()) {
            *seen.entry(email_key(e)).or_default() += 1;
        }
    }
    ops.iter()
        .map(|op| match op.email.as_deref().map(str::trim) {
            None | Some("") => EmailStatus::Missing,
            Some(e) if !email_syntax_ok(e) => EmailStatus::Invalid,
            Some(e) if seen.get(&email_key(e)).copied().unwrap_or(0) > 1 => EmailStatus::Duplicate,
            Some(_) => EmailStatus::Ok,
        })
        .collect()
}

/// Assesses an instance. `profiles` are the organisation's product profile names, when the IMS
/// could be asked.
pub fn assess(
    facts: &InstanceFacts,
    ops: &[OperatorFacts],
    profiles: Option<&[String]>,
    now: i64,
) -> Assessment {
    let group_rights: HashMap<&str, &[String]> = facts
        .groups
        .iter()
        .map(|g| (g.name.as_str(), g.rights.as_slice()))
        .collect();
    let carried: BTreeSet<&str> = facts
        .groups
        .iter()
        .flat_map(|g| g.rights.iter().map(String::as_str))
        .collect();
    let statuses = email_statuses(ops);
    let mut blockers = Vec::new();
    let mut warnings = Vec::new();
    let mut rights_no_group_carries = BTreeSet::new();
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    let mut out = Vec::with_capacity(ops.len());
    for (op, status) in ops.iter().zip(statuses) {
        let (class, evidence) = classify(op);
        let migrated = op.auth_type != "native";
        let from_groups: BTreeSet<&str> = op
            .groups
            .iter()
            .filter_map(|g| group_rights.get(g.as_str()))
            .flat_map(|r| r.iter().map(String::as_str))
            .collect();
        let beyond: Vec<String> = op
            .rights
            .iter()
            .filter(|r| !from_groups.contains(r.as_str()))
            .cloned()
            .collect();
        for r in &op.rights {
            if !carried.contains(r.as_str()) {
                rights_no_group_carries.insert(r.clone());
            }
        }
        *counts.entry(class.as_str().to_owned()).or_default() += 1;
        *counts.entry(format!("auth_type:{}", op.auth_type)).or_default() += 1;
        if op.disabled {
            *counts.entry("disabled".into()).or_default() += 1;
        }
        if !migrated && class == Class::Person {
            person_findings(op, status, &mut counts, &mut blockers, &mut warnings);
        }
        if !migrated && class == Class::Technical {
            *counts.entry("technical_to_migrate".into()).or_default() += 1;
        }
        if class == Class::Person && !migrated && op.usage.iter().any(|u| is_success(u) && is_api(u)) {
            warnings.push(format!(
                "{} signs in to the console and also calls the API: scripts using its password stop at its migration",
                op.login
            ));
        }
        out.push(OperatorAssessment {
            login: op.login.clone(),
            label: op.label.clone(),
            email: op.email.clone(),
            email_status: status,
            auth_type: op.auth_type.clone(),
            disabled: op.disabled,
            groups: op.groups.clone(),
            rights: op.rights.clone(),
            rights_beyond_groups: beyond,
            last_native_sign_in: last_of(&op.usage, |u| {
                u.auth_path == "native" && NATIVE_SIGN_INS.contains(&u.action.as_str())
            }),
            last_ims_sign_in: last_of(&op.usage, |u| {
                u.action == CONSOLE_IMS_LOGON || u.action == "xtk:session#BearerTokenLogon"
            }),
            api: api_usage(&op.usage),
            class,
            evidence,
            migrated,
            access: None,
        });
    }
    let build_verdict = build_verdict(facts, &mut blockers, &counts);
    if let Some(b) = no_way_in(facts, &counts) {
        blockers.push(b);
    }
    let admin_profiles = profile_warnings(profiles, &rights_no_group_carries, &mut warnings);
    Assessment {
        instance: facts.name.clone(),
        build: facts.build.clone(),
        build_verdict,
        counts,
        operators: out,
        admin_profiles,
        rights_no_group_carries: rights_no_group_carries.into_iter().collect(),
        blockers,
        warnings,
        assessed_at: now,
    }
}

/// What a person still to migrate needs first: an email of its own (a blocker otherwise) and,
/// unless disabled, an operator group.
fn person_findings(
    op: &OperatorFacts,
    status: EmailStatus,
    counts: &mut BTreeMap<String, usize>,
    blockers: &mut Vec<Blocker>,
    warnings: &mut Vec<String>,
) {
    *counts.entry("people_to_migrate".into()).or_default() += 1;
    if status != EmailStatus::Ok {
        *counts.entry(format!("email_{}", status.as_str())).or_default() += 1;
        let (problem, fix) = match status {
            EmailStatus::Missing => ("has no email", "give it one"),
            EmailStatus::Invalid => ("has an email that is not an address", "correct it"),
            _ => (
                "shares its email with another operator (compared case-insensitively)",
                "give each operator its own (or delete the spare account)",
            ),
        };
        blockers.push(Blocker {
            phase: Phase::Users,
            operator: Some(op.login.clone()),
            problem: format!("{} {problem}", op.login),
            fix: format!("{fix}: `ims migrate prepare --emails FILE.csv`"),
        });
    }
    if op.disabled {
        warnings.push(format!(
            "{} is disabled: the end-user phase leaves it native and unable to sign in",
            op.login
        ));
    } else if op.groups.is_empty() {
        blockers.push(Blocker {
            phase: Phase::Users,
            operator: Some(op.login.clone()),
            problem: format!("{} belongs to no operator group", op.login),
            fix: "add it to one: a product profile, one per group, is what lets a person in through the IMS"
                .into(),
        });
    }
}

/// Warnings about product profiles and rights: profiles named with "admin", an IMS that was not
/// asked, direct rights no group carries. Returns the "admin" profiles.
fn profile_warnings(
    profiles: Option<&[String]>,
    rights_no_group_carries: &BTreeSet<String>,
    warnings: &mut Vec<String>,
) -> Vec<String> {
    let admin_profiles: Vec<String> = profiles
        .unwrap_or_default()
        .iter()
        .filter(|p| p.to_lowercase().contains("admin"))
        .cloned()
        .collect();
    if !admin_profiles.is_empty() {
        warnings.push(format!(
            "product profiles named with \"admin\" grant console administration in the vendor's world; check who holds: {}",
            admin_profiles.join(", ")
        ));
    }
    if profiles.is_none() {
        warnings.push("the IMS was not asked: product profiles were not checked".into());
    }
    if !rights_no_group_carries.is_empty() {
        warnings.push(format!(
            "direct named rights that no operator group carries (prepare proposes a profile for each): {}",
            rights_no_group_carries
                .iter()
                .cloned()
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    admin_profiles
}

/// What the build allows, with a blocker for each phase it cannot carry.
/// People moved before the instance signs anyone in through the IMS would be locked out.
fn no_way_in(facts: &InstanceFacts, counts: &BTreeMap<String, usize>) -> Option<Blocker> {
    let waiting = counts.get("people_to_migrate").copied().unwrap_or(0);
    (facts.accepts_ims_signin && facts.ims_account.is_none() && waiting > 0).then(|| Blocker {
        phase: Phase::Users,
        operator: None,
        problem: "the instance does not sign people in through the IMS yet: people moved now could not get in".into(),
        fix: "configure it first: `ims migrate prepare --ims-connection` (or `ims instance ims-config --register` on `ims up`)".into(),
    })
}

/// The builds that carry the end-user phase as the instance named them, or as this engine knows
/// them when it named none.
pub(crate) fn builds(named: &str) -> &str {
    if named.is_empty() {
        ims_wire::migration::PEOPLE_BUILDS
    } else {
        named
    }
}

fn build_verdict(
    facts: &InstanceFacts,
    blockers: &mut Vec<Blocker>,
    counts: &BTreeMap<String, usize>,
) -> String {
    let mut missing = Vec::new();
    if !facts.accepts_ims_signin {
        missing.push("the end-user phase");
        blockers.push(Blocker {
            phase: Phase::Users,
            operator: None,
            problem: format!(
                "build {} cannot move people to sign-in through the IMS",
                facts.build
            ),
            fix: format!("upgrade to one of: {}", builds(&facts.people_builds)),
        });
    }
    if !facts.accepts_bearer_tokens {
        missing.push("technical accounts");
        if counts.get("technical_to_migrate").copied().unwrap_or(0) > 0 {
            blockers.push(Blocker {
                phase: Phase::Technical,
                operator: None,
                problem: format!("build {} accepts no IMS access tokens", facts.build),
                fix: format!("upgrade to one of: {}", facts.bearer_builds),
            });
        }
    }
    if !facts.supports_restrictions {
        missing.push("the lock-down switches");
        blockers.push(Blocker {
            phase: Phase::Finalize,
            operator: None,
            problem: format!("build {} cannot switch native sign-in off", facts.build),
            fix: format!("upgrade to one of: {}", facts.restriction_builds),
        });
    }
    if missing.is_empty() {
        format!("build {} carries every phase", facts.build)
    } else {
        // The end-user phase asks the most of a build: what carries it carries every phase.
        format!(
            "build {} lacks {}; builds that carry every phase: {}",
            facts.build,
            missing.join(", "),
            builds(&facts.people_builds)
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn facts(build: &str, bearer: bool, restrictions: bool) -> InstanceFacts {
        let mut f = crate::testing::facts(&[
            ("admin", &["admin"]),
            ("deliveryOperators", &["prepareDelivery", "startDelivery"]),
        ]);
        f.build = build.into();
        f.accepts_bearer_tokens = bearer;
        f.supports_restrictions = restrictions;
        // Signing people in through the IMS, as an instance ready for its people is.
        f.ims_account = Some(ims_wire::migration::ImsAccountFacts {
            ims_url: "https://ims.test".into(),
            org_id: "O@AdobeOrg".into(),
            client_id: "c".into(),
            association_mask: String::new(),
            product_context: "dma_campaign_classic".into(),
        });
        f
    }

    #[test]
    fn people_wait_until_the_instance_signs_them_in_through_the_ims() {
        let mut f = facts("7.4.1", true, true);
        f.ims_account = None;
        let a = assess(&f, &[op("ana", Some("ana@example.com"))], Some(&[]), 0);
        let b = a
            .blockers
            .iter()
            .find(|b| b.problem.contains("does not sign people in through the IMS yet"))
            .expect("a blocker");
        assert_eq!((b.phase, b.operator.as_deref()), (Phase::Users, None));
        assert!(b.fix.contains("--ims-connection"));
        // Nobody left to move: nothing to block.
        let a = assess(&f, &[], Some(&[]), 0);
        assert!(a.blockers.is_empty(), "{:?}", a.blockers);
    }

    fn op(login: &str, email: Option<&str>) -> OperatorFacts {
        OperatorFacts {
            email: email.map(str::to_owned),
            groups: vec!["deliveryOperators".into()],
            ..crate::testing::operator(login)
        }
    }

    fn used(action: &str, count: i64, source: &str, last_at: i64) -> UsageFacts {
        UsageFacts {
            action: action.into(),
            auth_path: "native".into(),
            source: source.into(),
            client: String::new(),
            outcome: "success".into(),
            count,
            first_at: 1,
            last_at,
        }
    }

    #[test]
    fn evidence_decides_person_or_program() {
        let mut console = op("ana", Some("ana@example.com"));
        console.usage = vec![used(CONSOLE_LOGON, 3, "10.0.0.1", 50)];
        assert_eq!(classify(&console).0, Class::Person);

        let mut api = op("crm-sync", None);
        api.usage = vec![
            used("xtk:session#Logon", 5, "10.20.0.15", 40),
            used("xtk:queryDef#ExecuteQuery", 1200, "10.20.0.15", 90),
        ];
        let (class, evidence) = classify(&api);
        assert_eq!(class, Class::Technical);
        assert!(
            evidence.contains("1205") && evidence.contains("10.20.0.15"),
            "{evidence}"
        );

        // Refused attempts are not evidence of use.
        let mut refused = op("guess", None);
        refused.usage = vec![UsageFacts {
            outcome: "refused".into(),
            ..used("xtk:session#Logon", 9, "1.2.3.4", 10)
        }];
        assert_eq!(
            classify(&refused),
            (Class::Person, "no sign-in or call recorded".into())
        );

        // Both: a person who also scripts, warned about.
        let mut both = op("kim", Some("kim@example.com"));
        both.usage = vec![
            used(CONSOLE_LOGON, 1, "10.0.0.2", 10),
            used("xtk:queryDef#ExecuteQuery", 7, "10.0.0.2", 20),
        ];
        assert_eq!(classify(&both).0, Class::Person);

        let mut builtin = op("monitoring", None);
        builtin.usage = api.usage.clone();
        assert_eq!(classify(&builtin).0, Class::BuiltIn);
        let mut ta = op("ta@techacct.example.com", None);
        ta.auth_type = "technical_account".into();
        assert_eq!(classify(&ta).0, Class::Technical);

        let a = assess(
            &facts("7.4.1", true, true),
            &[console, api, both, builtin],
            Some(&[]),
            100,
        );
        assert_eq!(a.counts["technical_to_migrate"], 1);
        assert_eq!(a.counts["people_to_migrate"], 2);
        assert!(
            a.warnings.iter().any(|w| w.starts_with("kim ")),
            "{:?}",
            a.warnings
        );
        let crm = &a.operators[1];
        assert_eq!(crm.api.calls, 1205);
        assert_eq!(crm.api.last_seen, Some(90));
        assert_eq!(crm.last_native_sign_in, Some(40));
        assert_eq!(
            crm.api.actions,
            ["xtk:queryDef#ExecuteQuery", "xtk:session#Logon"]
        );
    }

    #[test]
    fn emails_missing_invalid_and_case_variant_duplicates_block_people_only() {
        let ops = vec![
            op("pat.lee", Some("Pat.Lee@example.com")),
            op("plee", Some("pat.lee@EXAMPLE.com")),
            op("nomail", None),
            op("blank", Some("  ")),
            op("bad", Some("not an address")),
            op("nodot", Some("x@localhost")),
            op("fine", Some("fine@example.com")),
        ];
        let statuses = email_statuses(&ops);
        use EmailStatus::*;
        assert_eq!(
            statuses,
            [Duplicate, Duplicate, Missing, Missing, Invalid, Invalid, Ok]
        );
        let a = assess(&facts("7.4.1", true, true), &ops, Some(&[]), 0);
        let blocked: Vec<&str> = a.blockers.iter().filter_map(|b| b.operator.as_deref()).collect();
        assert_eq!(blocked, ["pat.lee", "plee", "nomail", "blank", "bad", "nodot"]);
        assert!(a.blockers.iter().all(|b| b.phase == Phase::Users));

        // A program or a built-in operator without email blocks nothing.
        let mut program = op("crm-sync", None);
        program.usage = vec![used("xtk:session#Logon", 1, "10.0.0.9", 1)];
        let mut admin = op("admin", None);
        admin.builtin = true;
        let a = assess(&facts("7.4.1", true, true), &[program, admin], Some(&[]), 0);
        assert!(a.blockers.is_empty(), "{:?}", a.blockers);
    }

    #[test]
    fn builds_block_the_phases_they_cannot_carry_and_say_which_can() {
        let mut program = op("crm-sync", None);
        program.usage = vec![used("xtk:session#Logon", 1, "10.0.0.9", 1)];
        let ops = [program];
        let mut old = facts("7.3.1", false, false);
        old.accepts_ims_signin = false;
        let a = assess(&old, &ops, Some(&[]), 0);
        let phases: Vec<Phase> = a.blockers.iter().map(|b| b.phase).collect();
        assert_eq!(phases, [Phase::Users, Phase::Technical, Phase::Finalize]);
        assert!(a.blockers[0].fix.contains("8.5.2"), "{:?}", a.blockers[0]);
        assert!(a.blockers[1].fix.contains("7.3.2.IMS"), "{:?}", a.blockers[1]);
        assert!(a.build_verdict.contains("lacks"), "{}", a.build_verdict);
        // 7.3.5 carries technical accounts, not people.
        let mut technical_only = facts("7.3.5", true, false);
        technical_only.accepts_ims_signin = false;
        let a = assess(&technical_only, &ops, Some(&[]), 0);
        let phases: Vec<Phase> = a.blockers.iter().map(|b| b.phase).collect();
        assert_eq!(phases, [Phase::Users, Phase::Finalize]);
        let a = assess(&facts("7.4.1", true, true), &ops, Some(&[]), 0);
        assert!(a.blockers.is_empty());
        assert_eq!(a.build_verdict, "build 7.4.1 carries every phase");
    }

    #[test]
    fn rights_beyond_groups_and_admin_profiles_are_reported() {
        let mut o = op("ana", Some("ana@example.com"));
        o.rights = vec!["export".into(), "prepareDelivery".into()];
        let profiles = vec![
            "campaign - prod - deliveryOperators".to_owned(),
            "Campaign Admins".to_owned(),
        ];
        let a = assess(&facts("7.4.1", true, true), &[o], Some(&profiles), 0);
        assert_eq!(a.operators[0].rights_beyond_groups, ["export"]);
        assert_eq!(a.rights_no_group_carries, ["export"]);
        assert_eq!(a.admin_profiles, ["Campaign Admins"]);
        let a = assess(&facts("7.4.1", true, true), &[], None, 0);
        assert!(a.warnings.iter().any(|w| w.contains("not asked")));
    }

    #[test]
    fn a_person_in_no_group_blocks_and_a_disabled_one_is_only_a_warning() {
        let mut alone = op("solo", Some("solo@example.com"));
        alone.groups.clear();
        let mut off = op("off", Some("off@example.com"));
        off.groups.clear();
        off.disabled = true;
        let a = assess(&facts("7.4.1", true, true), &[alone, off], Some(&[]), 0);
        let who: Vec<Option<&str>> = a.blockers.iter().map(|b| b.operator.as_deref()).collect();
        assert_eq!(who, [Some("solo")]);
        assert!(a.blockers[0].problem.contains("belongs to no operator group"));
        assert!(a.warnings.iter().any(|w| w.starts_with("off is disabled")));
    }

    fn population() -> impl Strategy<Value = Vec<OperatorFacts>> {
        let login = prop_oneof![
            "[a-z]{1,8}",
            "\\PC{1,64}",
            "[a-zA-Z0-9._-]{200,300}",
            "[=+@-][a-zA-Z0-9(|!' ]{0,20}"
        ];
        let email = prop_oneof![
            Just(None),
            "[a-z]{1,6}@[a-z]{1,4}\\.com".prop_map(Some),
            "[a-zA-Z]{1,3}@EXAMPLE\\.com".prop_map(Some),
            "\\PC{0,80}".prop_map(Some),
        ];
        proptest::collection::vec((login, email, any::<bool>(), any::<bool>()), 0..40).prop_map(|v| {
            v.into_iter()
                .enumerate()
                .map(|(i, (login, email, disabled, direct))| OperatorFacts {
                    id: i as i64 + 1,
                    disabled,
                    rights: if direct { vec!["export".into()] } else { vec![] },
                    ..op(&format!("{login}{i}"), email.as_deref())
                })
                .collect()
        })
    }

    proptest! {
        #[test]
        fn every_operator_is_assessed_once_and_duplicates_are_symmetric(ops in population()) {
            let a = assess(&facts("7.4.1", true, true), &ops, Some(&[]), 0);
            prop_assert_eq!(a.operators.len(), ops.len());
            for (o, got) in ops.iter().zip(&a.operators) {
                prop_assert_eq!(&o.login, &got.login);
            }
            // An email shared case-insensitively marks every holder, and each holder blocks.
            for (i, x) in a.operators.iter().enumerate() {
                if x.email_status != EmailStatus::Ok {
                    prop_assert!(a.blockers.iter().any(|b| b.operator.as_deref() == Some(x.login.as_str())));
                }
                for y in &a.operators[i + 1..] {
                    let same = match (&x.email, &y.email) {
                        (Some(ex), Some(ey)) => email_syntax_ok(ex) && email_key(ex) == email_key(ey),
                        _ => false,
                    };
                    if same {
                        prop_assert_eq!(x.email_status, EmailStatus::Duplicate);
                        prop_assert_eq!(y.email_status, EmailStatus::Duplicate);
                    }
                }
            }
            // No two people left with Ok status share an email.
            let ok: Vec<String> = a.operators.iter().filter(|o| o.email_status == EmailStatus::Ok)
                .filter_map(|o| o.email.as_deref().map(email_key)).collect();
            let unique: BTreeSet<&String> = ok.iter().collect();
            prop_assert_eq!(unique.len(), ok.len());
            let text = crate::report::csv(&a).unwrap();
            for row in csv::Reader::from_reader(text.as_bytes()).records() {
                for cell in row.unwrap().iter() {
                    prop_assert!(!cell.starts_with(['=', '+', '-', '@', '\t', '\r']), "{cell:?}");
                }
            }
            prop_assert!(crate::report::table(&a).contains("instance prod"));
        }
    }
}
