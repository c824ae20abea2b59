//! Action requests of the User Management API against a reference model.

use http::StatusCode;
use ims_identity::service::directory::UMAPI_SCOPE;
use proptest::prelude::*;
use serde_json::{json, Value};

use crate::harness::*;

const EMAILS: [&str; 3] = ["u0@acme.test", "u1@acme.test", "u2@acme.test"];
const GROUPS: [&str; 2] = ["G0", "G1"];
/// A product profile with room for two members.
const PROFILE: &str = "P0";

#[derive(Clone, Debug)]
enum Op {
    Create(u8),
    AddGroup(usize),
    RemoveGroup(usize),
    RemoveAll,
    RemoveFromOrg,
    CreateGroup(u8),
    DeleteGroup,
    AddUser(usize),
    RemoveUser(usize),
    LinkProfile,
    Unknown,
}

#[derive(Clone, Debug)]
struct GenEntry {
    user: bool,
    target: usize,
    ops: Vec<Op>,
}

fn entry_strategy() -> impl Strategy<Value = GenEntry> {
    let user_op = prop_oneof![
        (0u8..3).prop_map(Op::Create),
        (0usize..3).prop_map(Op::AddGroup),
        (0usize..3).prop_map(Op::RemoveGroup),
        Just(Op::RemoveAll),
        Just(Op::RemoveFromOrg),
        Just(Op::Unknown),
    ];
    let group_op = prop_oneof![
        (0u8..3).prop_map(Op::CreateGroup),
        Just(Op::DeleteGroup),
        (0usize..3).prop_map(Op::AddUser),
        (0usize..3).prop_map(Op::RemoveUser),
        Just(Op::LinkProfile),
        Just(Op::Unknown),
    ];
    prop_oneof![
        (0usize..3, prop::collection::vec(user_op, 1..4)).prop_map(|(target, ops)| GenEntry {
            user: true,
            target,
            ops
        }),
        (0usize..2, prop::collection::vec(group_op, 1..4)).prop_map(|(target, ops)| GenEntry {
            user: false,
            target,
            ops
        }),
    ]
}

/// Groups a user op names: the two user groups and the profile.
fn group_name(i: usize) -> &'static str {
    [GROUPS[0], GROUPS[1], PROFILE][i]
}

fn option(o: u8) -> Value {
    match o {
        0 => json!({}),
        1 => json!({"option": "ignoreIfAlreadyExists"}),
        _ => json!({"option": "updateIfAlreadyExists"}),
    }
}

fn wire(e: &GenEntry) -> Value {
    let steps: Vec<Value> = e
        .ops
        .iter()
        .map(|op| match op {
            Op::Create(o) => {
                let mut args = option(*o);
                args["email"] = json!(EMAILS[e.target]);
                json!({ "createEnterpriseID": args })
            }
            Op::AddGroup(g) => json!({"add": {"group": [group_name(*g)]}}),
            Op::RemoveGroup(g) => json!({"remove": {"group": [group_name(*g)]}}),
            Op::RemoveAll => json!({"remove": "all"}),
            Op::RemoveFromOrg => json!({"removeFromOrg": {"deleteAccount": false}}),
            Op::CreateGroup(o) => json!({ "createUserGroup": option(*o) }),
            Op::DeleteGroup => json!({"deleteUserGroup": {}}),
            Op::AddUser(u) => json!({"add": {"user": [EMAILS[*u]]}}),
            Op::RemoveUser(u) => json!({"remove": {"user": [EMAILS[*u]]}}),
            Op::LinkProfile => json!({"add": {"productConfiguration": [PROFILE]}}),
            Op::Unknown => json!({"teleport": {}}),
        })
        .collect();
    if e.user {
        json!({"user": EMAILS[e.target], "do": steps})
    } else {
        json!({"usergroup": GROUPS[e.target], "do": steps})
    }
}

/// The reference: what the API's documentation says each step does, written plainly.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
struct Model {
    active: std::collections::BTreeSet<usize>,
    /// Group name -> members (email indexes); user groups present only while they exist.
    groups: std::collections::BTreeMap<&'static str, std::collections::BTreeSet<usize>>,
}

impl Model {
    fn new() -> Self {
        let mut m = Model::default();
        m.groups.insert(PROFILE, Default::default());
        m
    }

    /// Runs one entry: `Err(step)` at the first step that fails, nothing kept.
    fn run(&mut self, e: &GenEntry) -> Result<(), usize> {
        let mut next = self.clone();
        for (i, op) in e.ops.iter().enumerate() {
            let u = e.target;
            let ok = match op {
                Op::Create(o) => {
                    if next.active.contains(&u) {
                        *o != 0
                    } else {
                        next.active.insert(u);
                        true
                    }
                }
                Op::AddGroup(g) => {
                    let name = group_name(*g);
                    let full = name == PROFILE
                        && next
                            .groups
                            .get(name)
                            .is_some_and(|m| m.len() >= 2 && !m.contains(&u));
                    if !next.active.contains(&u) || !next.groups.contains_key(name) || full {
                        false
                    } else {
                        next.groups.get_mut(name).unwrap().insert(u);
                        true
                    }
                }
                Op::RemoveGroup(g) => {
                    let name = group_name(*g);
                    if !next.active.contains(&u) || !next.groups.contains_key(name) {
                        false
                    } else {
                        next.groups.get_mut(name).unwrap().remove(&u);
                        true
                    }
                }
                Op::RemoveAll | Op::RemoveFromOrg => {
                    if !next.active.contains(&u) {
                        false
                    } else {
                        next.groups.values_mut().for_each(|m| {
                            m.remove(&u);
                        });
                        if matches!(op, Op::RemoveFromOrg) {
                            next.active.remove(&u);
                        }
                        true
                    }
                }
                Op::CreateGroup(o) => {
                    let name = GROUPS[e.target];
                    if next.groups.contains_key(name) {
                        *o != 0
                    } else {
                        next.groups.insert(name, Default::default());
                        true
                    }
                }
                Op::DeleteGroup => next.groups.remove(GROUPS[e.target]).is_some(),
                Op::AddUser(x) | Op::RemoveUser(x) => {
                    let name = GROUPS[e.target];
                    if !next.groups.contains_key(name) || !next.active.contains(x) {
                        false
                    } else {
                        let members = next.groups.get_mut(name).unwrap();
                        if matches!(op, Op::AddUser(_)) {
                            members.insert(*x);
                        } else {
                            members.remove(x);
                        }
                        true
                    }
                }
                Op::LinkProfile => next.groups.contains_key(GROUPS[e.target]),
                Op::Unknown => false,
            };
            if !ok {
                return Err(i);
            }
        }
        *self = next;
        Ok(())
    }
}

/// Who is in which group, as the API lists it.
async fn observed(h: &Harness, token: &str, id: &str) -> Model {
    let mut m = Model::default();
    let (_, _, out) = h
        .call(req(
            "GET",
            &format!("/v2/usermanagement/groups/{}/0", h.org_id),
            Some(token),
            Some(id),
            None,
        ))
        .await;
    for g in out["groups"].as_array().unwrap() {
        let name = [GROUPS[0], GROUPS[1], PROFILE]
            .into_iter()
            .find(|n| *n == g["groupName"])
            .unwrap();
        m.groups.insert(name, Default::default());
    }
    let (_, _, out) = h
        .call(req(
            "GET",
            &format!("/v2/usermanagement/users/{}/0", h.org_id),
            Some(token),
            Some(id),
            None,
        ))
        .await;
    for u in out["users"].as_array().unwrap() {
        let Some(i) = EMAILS.iter().position(|e| *e == u["email"]) else {
            continue;
        };
        m.active.insert(i);
        for g in u["groups"].as_array().unwrap() {
            if let Some(members) = m.groups.iter_mut().find(|(n, _)| **n == g).map(|(_, v)| v) {
                members.insert(i);
            }
        }
    }
    m
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 16, ..ProptestConfig::default() })]
    /// Batches of valid and invalid entries: `testOnly` changes nothing and reports what the
    /// real run then does; results and the resulting directory match the reference model.
    #[test]
    fn action_batches_match_the_reference_model(batches in prop::collection::vec(prop::collection::vec(entry_strategy(), 1..6), 1..4)) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async {
            let h = harness().await;
            let um = h.credential(&["openid", UMAPI_SCOPE]).await;
            let token = h.token(&um, UMAPI_SCOPE).await;
            let id = um.client.client_id.clone();
            marketing(&h, Some((PROFILE, vec!["admin".into()], Some(2)))).await;
            let mut model = Model::new();
            for batch in &batches {
                let body = Value::Array(batch.iter().map(wire).collect()).to_string();
                let path = format!("/v2/usermanagement/action/{}", h.org_id);
                let before = observed(&h, &token, &id).await;
                let (status, _, dry) = h.call(req("POST", &format!("{path}?testOnly=true"), Some(&token), Some(&id), Some(&body))).await;
                assert_eq!(status, StatusCode::OK, "{dry}");
                assert_eq!(observed(&h, &token, &id).await, before, "testOnly changed something");
                let (status, _, real) = h.call(req("POST", &path, Some(&token), Some(&id), Some(&body))).await;
                assert_eq!(status, StatusCode::OK, "{real}");
                let expected: Vec<Result<(), usize>> = batch.iter().map(|e| model.run(e)).collect();
                let failures = |out: &Value| -> Vec<(u64, u64)> {
                    out["errors"].as_array().map(|a| a.iter().map(|e| (e["index"].as_u64().unwrap(), e["step"].as_u64().unwrap())).collect()).unwrap_or_default()
                };
                let want: Vec<(u64, u64)> = expected.iter().enumerate().filter_map(|(i, r)| r.err().map(|s| (i as u64, s as u64))).collect();
                assert_eq!(failures(&real), want, "{body}\n{real}");
                assert_eq!(failures(&dry), want, "testOnly reports what the run does: {dry}");
                let ok = expected.iter().filter(|r| r.is_ok()).count() as u64;
                assert_eq!((real["completed"].as_u64(), dry["completedInTestMode"].as_u64(), dry["completed"].as_u64()), (Some(ok), Some(ok), Some(0)));
                assert_eq!(observed(&h, &token, &id).await, model, "{body}");
            }
        });
    }
}
