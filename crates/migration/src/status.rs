//! `ims migrate status`: per instance and per phase, what is done, in progress or blocked, from
//! the journal and the instance as it is now, with the reconciliation report.

use std::collections::BTreeMap;

use ims_wire::migration::{InstanceFacts, OperatorFacts};
use serde::Serialize;

use crate::journal::PlanProgress;
use crate::reconcile::Reconciliation;

#[derive(Clone, Debug, Serialize)]
pub struct PlanStatus {
    pub plan_id: String,
    pub phase: String,
    pub created_at: i64,
    pub applied_at: Option<i64>,
    pub done: usize,
    /// Begun and never recorded as ended: a run stopped there (resumed by the next apply).
    pub started: usize,
    pub failed: Vec<(String, String)>,
    /// The pilot wave the plan was limited to, described (none: everyone).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub wave: Option<String>,
}

impl PlanStatus {
    pub fn of(plan: PlanProgress) -> Self {
        PlanStatus {
            wave: plan.scope,
            plan_id: plan.plan_id,
            phase: plan.phase,
            created_at: plan.created_at.millis(),
            applied_at: plan.applied_at.map(|a| a.millis()),
            done: plan.done,
            started: plan.started,
            failed: plan
                .failed
                .into_iter()
                .map(|s| (format!("{} {}", s.key.action, s.key.operator), s.detail))
                .collect(),
        }
    }

    pub fn state(&self) -> &'static str {
        if self.applied_at.is_some() {
            "done"
        } else if !self.failed.is_empty() {
            "blocked"
        } else {
            "in progress"
        }
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct Status {
    pub instance: String,
    pub build: String,
    pub by_auth_type: BTreeMap<String, usize>,
    pub restrictions_on: bool,
    pub environment: String,
    pub staging_twin: Option<String>,
    /// When the migration was marked complete (and whether it was forced).
    pub completion: Option<ims_wire::migration::Completion>,
    pub plans: Vec<PlanStatus>,
    pub reconciliation: Option<Reconciliation>,
    /// With the IMS: the moved people's invitations and first sign-ins.
    pub people: Option<crate::people::PeopleProgress>,
}

impl Status {
    pub fn of(
        facts: &InstanceFacts,
        ops: &[OperatorFacts],
        plans: Vec<PlanStatus>,
        reconciliation: Option<Reconciliation>,
        people: Option<crate::people::PeopleProgress>,
    ) -> Self {
        let mut by_auth_type = BTreeMap::new();
        for op in ops {
            *by_auth_type.entry(op.auth_type.clone()).or_insert(0) += 1;
        }
        Status {
            instance: facts.name.clone(),
            build: facts.build.clone(),
            by_auth_type,
            restrictions_on: facts.restrictions.native_api_disabled
                && facts.restrictions.operator_management_restricted,
            environment: facts.environment.clone(),
            staging_twin: facts.staging_twin.clone().filter(|t| !t.is_empty()),
            completion: facts.migration_complete.clone(),
            plans,
            reconciliation,
            people,
        }
    }

    /// The human report.
    pub fn text(&self) -> String {
        let kinds: Vec<String> = self
            .by_auth_type
            .iter()
            .map(|(k, v)| format!("{k} {v}"))
            .collect();
        let mut out = format!(
            "instance {} (build {}): operators {}; lock-down {}\n",
            self.instance,
            self.build,
            kinds.join(", "),
            if self.restrictions_on { "on" } else { "off" }
        );
        match &self.completion {
            Some(c) => out.push_str(&format!(
                "migration complete{} by {}{}\n",
                if c.forced { " (forced)" } else { "" },
                c.by,
                if c.note.is_empty() {
                    String::new()
                } else {
                    format!(": {}", c.note)
                }
            )),
            None => out.push_str(&format!(
                "{} instance{}; migration not complete\n",
                self.environment,
                self.staging_twin
                    .as_ref()
                    .map(|t| format!(", staging twin {t}"))
                    .unwrap_or_default()
            )),
        }
        for phase in ["users", "technical", "finalize"] {
            let of_phase: Vec<&PlanStatus> = self.plans.iter().filter(|p| p.phase == phase).collect();
            if of_phase.is_empty() {
                out.push_str(&format!("phase {phase}: not started\n"));
            }
            for p in of_phase {
                out.push_str(&format!(
                    "phase {phase}: {} {}{} ({} steps done, {} begun and not ended, {} failed)\n",
                    p.plan_id,
                    p.state(),
                    p.wave
                        .as_ref()
                        .map(|w| format!(", wave: {w}"))
                        .unwrap_or_default(),
                    p.done,
                    p.started,
                    p.failed.len()
                ));
                for (step, why) in &p.failed {
                    out.push_str(&format!("  failed {step}: {why}\n"));
                }
            }
        }
        match &self.reconciliation {
            Some(r) => {
                out.push_str(&format!(
                    "reconciliation: {} linked operators, {} IMS users with access, {} matching, {} differences, {} not linked yet\n",
                    r.linked_operators,
                    r.ims_users_with_access,
                    r.matching,
                    r.differences.len(),
                    r.not_linked_yet.len()
                ));
                for d in &r.differences {
                    out.push_str(&format!(
                        "  differs {}: instance {} / IMS {}\n",
                        d.login,
                        d.instance.as_ref().map_or_else(
                            || "none".to_owned(),
                            |x| serde_json::to_string(x).unwrap_or_default()
                        ),
                        d.ims.as_ref().map_or_else(
                            || "no such user".to_owned(),
                            |x| serde_json::to_string(x).unwrap_or_default()
                        )
                    ));
                }
            }
            None => out.push_str("reconciliation: the IMS was not asked\n"),
        }
        if let Some(p) = &self.people {
            out.push_str(&p.text());
        }
        out
    }
}
