//! The migration API's switch: moving operators to IMS sign-in and back, each only if it is
//! still as the migration planned it.

use std::collections::{HashMap, HashSet};

use ims_core::audit::Context;
use ims_core::Now;
use ims_wire::migration::{
    state_digest, Access, OperatorFacts, SwitchItem, SwitchOutcome, SwitchRequest, SwitchResponse, MAX_SWITCH,
};

use crate::fault::Fault;
use crate::migration::Migration;
use crate::migration::{context_of, facts_of};
use crate::model::{AuthPath, AuthType, Operator};
use crate::service::Caller;
use crate::store::SwitchStep;

/// What one item of a request comes to before anything is written: an answer already, or a
/// switch to make (with the operator's state once switched).
enum Decision {
    Answered(SwitchOutcome),
    Switch(Box<SwitchStep>, String),
}

/// What the decisions need to know besides the item and its operator.
struct Rules<'a> {
    to: AuthType,
    /// Operators can no longer be managed natively (the instance is locked down).
    locked: bool,
    /// The operator groups that exist now (for access given back).
    existing: &'a HashSet<String>,
    ctx: &'a Context,
}

impl Migration {
    /// Moves operators to IMS sign-in (linked to their identity; native sessions end) or back
    /// to native sign-in (link cleared; IMS sessions end). Each operator decided alone (the
    /// request's switches share transactions, not outcomes), only if it is still in the state
    /// the migration planned from (`state`) and still was when read here (compare-and-set on
    /// its modification time); one already where it is asked to go is left alone. Going back is
    /// refused once native operators can no longer be managed (the instance is locked down).
    pub async fn migration_switch(
        &self,
        actor: &Operator,
        req: &SwitchRequest,
        now: Now,
        caller: &Caller,
    ) -> Result<SwitchResponse, Fault> {
        self.require_administration(actor).await?;
        let to = match req.to.as_str() {
            "ims" => AuthType::Ims,
            "native" => AuthType::Native,
            other => return Err(Fault::bad_request(format!("to is ims or native, not {other:?}"))),
        };
        if req.operators.len() > MAX_SWITCH {
            return Err(Fault::bad_request(format!(
                "at most {MAX_SWITCH} operators per request"
            )));
        }
        let ctx = context_of(actor, now, caller);
        let logins: Vec<String> = req.operators.iter().map(|i| i.login.clone()).collect();
        let mut found: HashMap<String, Operator> = self
            .operators
            .operators_by_logins(&logins)
            .await?
            .into_iter()
            .map(|op| (op.login.clone(), op))
            .collect();
        // Groups given back on the way to native sign-in must still exist: one deleted meanwhile
        // is left out (and said in the audit line).
        let existing: HashSet<String> = if req.operators.iter().any(|i| i.restore.is_some()) {
            self.operators
                .groups()
                .await?
                .into_iter()
                .map(|g| g.name)
                .collect()
        } else {
            HashSet::new()
        };
        let rules = Rules {
            to,
            locked: self.shared.restrictions().operator_management,
            existing: &existing,
            ctx: &ctx,
        };
        let mut out = Vec::with_capacity(req.operators.len());
        // The switches to make, with their answer's place and its state once switched.
        let mut steps = Vec::new();
        let mut pending = Vec::new();
        let mut named = HashSet::new();
        for item in &req.operators {
            let decision = if !named.insert(item.login.as_str()) {
                Decision::Answered(outcome(
                    item,
                    "refused",
                    "named twice in this request".into(),
                    String::new(),
                ))
            } else {
                match found.remove(&item.login) {
                    None => Decision::Answered(outcome(
                        item,
                        "missing",
                        "no operator has this login".into(),
                        String::new(),
                    )),
                    Some(op) => decide(item, op, &rules),
                }
            };
            match decision {
                Decision::Answered(o) => out.push(o),
                Decision::Switch(step, switched_state) => {
                    pending.push((out.len(), switched_state));
                    out.push(outcome(item, "conflict", String::new(), item.state.clone()));
                    steps.push(*step);
                }
            }
        }
        let done = self.operators.switch_operators(&steps).await?;
        for ((at, switched_state), done) in pending.into_iter().zip(done) {
            let o = &mut out[at];
            if done {
                o.outcome = "switched".into();
                o.state = switched_state;
            } else {
                o.detail =
                    "changed while being switched, or the identity is linked to another operator".into();
            }
        }
        Ok(SwitchResponse { operators: out })
    }
}

fn outcome(item: &SwitchItem, outcome: &str, detail: String, state: String) -> SwitchOutcome {
    SwitchOutcome {
        login: item.login.clone(),
        outcome: outcome.to_owned(),
        detail,
        state,
    }
}

/// Decides one item against its operator as read now.
fn decide(item: &SwitchItem, op: Operator, rules: &Rules<'_>) -> Decision {
    let to = rules.to;
    let read_at = op.modified_at;
    let (id, from) = (op.id, op.auth_type);
    let mut facts = facts_of(op, Vec::new());
    let state = state_digest(&facts);
    let link = match to {
        AuthType::Ims => item.ims_id.clone(),
        _ => None,
    };
    if from == to && facts.ims_id == link {
        return Decision::Answered(outcome(item, "already", String::new(), state));
    }
    if state != item.state {
        return Decision::Answered(outcome(item, "drifted", drift(&facts), state));
    }
    let refusal = match (from, to, &link) {
        (AuthType::Native, AuthType::Ims, None) => {
            Some("switching to IMS sign-in needs the identity to link".to_owned())
        }
        (AuthType::Native, AuthType::Ims, Some(_)) => None,
        (AuthType::Ims, AuthType::Native, _) if rules.locked => {
            Some("the instance is locked down: operators can no longer go back to native sign-in".to_owned())
        }
        (AuthType::Ims, AuthType::Native, _) => None,
        _ => Some(format!(
            "a {} operator is not moved by the migration",
            facts.auth_type
        )),
    };
    if let Some(r) = refusal {
        return Decision::Answered(outcome(item, "refused", r, state));
    }
    let end_path = match to {
        AuthType::Ims => AuthPath::Native,
        _ => AuthPath::Ims,
    };
    let mut details =
        serde_json::json!({"from": from.as_str(), "to": to.as_str(), "ims_id": link, "before": facts.ims_id});
    let access = match (to, &item.restore) {
        (AuthType::Native, Some(given)) => Some(restored(given, &facts, rules.existing, &mut details)),
        _ => None,
    };
    let audit = rules
        .ctx
        .event("operator.migrate", &facts.login, "success", details);
    let step = SwitchStep {
        id,
        read_at,
        from,
        to,
        link: link.clone(),
        end_path,
        reset_password: to == AuthType::Native && item.reset_password,
        access: access.clone(),
        audit,
    };
    // Only the type, the link and the access given back change: the state once switched needs
    // no reading.
    facts.auth_type = to.as_str().to_owned();
    facts.ims_id = link;
    if let Some(a) = access {
        facts.groups = a.groups;
        facts.rights = a.rights;
    }
    Decision::Switch(Box::new(step), state_digest(&facts))
}

/// How an operator changed since the migration planned it.
fn drift(facts: &OperatorFacts) -> String {
    format!(
        "changed since planned: type {}, email {}, groups [{}], rights [{}], {}",
        facts.auth_type,
        facts.email.as_deref().unwrap_or("none"),
        facts.groups.join(", "),
        facts.rights.join(", "),
        if facts.disabled { "disabled" } else { "enabled" }
    )
}

/// The access given back on the way to native sign-in (groups deleted meanwhile left out),
/// noted in the audit line's `details` when it differs from what the operator holds.
fn restored(
    given: &Access,
    facts: &OperatorFacts,
    existing: &HashSet<String>,
    details: &mut serde_json::Value,
) -> Access {
    let (mut groups, gone): (Vec<String>, Vec<String>) =
        given.groups.iter().cloned().partition(|g| existing.contains(g));
    groups.sort();
    groups.dedup();
    let mut rights = given.rights.clone();
    rights.sort();
    rights.dedup();
    let access = Access { groups, rights };
    if (&access.groups, &access.rights) != (&facts.groups, &facts.rights) {
        details["restored"] = serde_json::json!({
            "groups": access.groups, "rights": access.rights,
            "had": {"groups": facts.groups, "rights": facts.rights},
            "groups_gone": gone,
        });
    }
    access
}
