//! What the engine reads to say where an instance stands: the assessment's evidence, the
//! status from the journal, the reconciliation of both sides. Reading only, except the journal's
//! report handed to the instance for its console.

use std::collections::HashMap;

use ims_wire::association::AssociationMask;
use ims_wire::migration::{InstanceFacts, JournalReport, OperatorFacts, ReportedPlan};

use crate::assess::Assessment;
use crate::client::{Error, ImsClient, InstanceClient};
use crate::prepare::mask_for;
use crate::reconcile::Reconciliation;
use crate::run::{ApplyError, Engine, Progress};
use crate::status::{PlanStatus, Status};

/// Assesses the instance as it is now; with the IMS, its product profiles are taken into
/// account.
pub async fn assessment(
    instance: &InstanceClient,
    ims: Option<&ImsClient>,
    progress: Progress<'_>,
    now: i64,
) -> Result<Assessment, Error> {
    let facts = instance.facts().await?;
    let ops = instance.operators(|n| progress("operators read", n, 0)).await?;
    let profiles = match ims {
        Some(ims) => Some(
            ims.profiles()
                .await?
                .into_iter()
                .map(|p| p.name)
                .collect::<Vec<_>>(),
        ),
        None => None,
    };
    let mut assessment = crate::assess::assess(&facts, &ops, profiles.as_deref(), now);
    if let Some(ims) = ims {
        let users = ims.users().await?;
        let by_email = crate::people::users_by_email(&users);
        for op in &mut assessment.operators {
            if op.class == crate::assess::Class::Person && !op.migrated {
                let access = crate::people::access(op, &by_email);
                let key = match &access {
                    crate::people::Access::Invited => "access:invited",
                    crate::people::Access::HasAccount => "access:has_account",
                    crate::people::Access::Blocked(_) => "access:blocked",
                };
                *assessment.counts.entry(key.into()).or_default() += 1;
                op.access = Some(access);
            }
        }
    }
    Ok(assessment)
}

/// Both sides of every linked operator, compared (the instance's profiles found by its mask).
pub async fn reconciliation(
    ims: &ImsClient,
    facts: &InstanceFacts,
    ops: &[OperatorFacts],
) -> Result<Reconciliation, ApplyError> {
    let mask_text = mask_for(
        &facts.name,
        facts.ims_account.as_ref().map(|a| a.association_mask.as_str()),
    );
    let mask = AssociationMask::parse(&mask_text).map_err(|e| ApplyError::Mask(mask_text.clone(), e))?;
    let mut profiles = HashMap::new();
    for p in ims.profiles().await? {
        if mask.captured(&p.name).is_some() {
            if let Some(detail) = ims.profile(&p.name).await? {
                profiles.insert(p.name.clone(), detail);
            }
        }
    }
    let users = ims.users().await?;
    Ok(crate::reconcile::reconcile(facts, ops, &users, &profiles, &mask))
}

/// Per phase what is done, in progress or blocked (from the journal), the operators by
/// authentication type, and, with the IMS, the reconciliation of both sides.
/// `after_days`: from how many days after their invitation a person who has not come in is
/// named.
pub async fn status(engine: &Engine<'_>, after_days: i64) -> Result<Status, ApplyError> {
    let facts = engine.instance.facts().await?;
    let ops = engine.operators().await?;
    let plans: Vec<PlanStatus> = engine
        .journal
        .progress(&facts.name)
        .await?
        .into_iter()
        .map(PlanStatus::of)
        .collect();
    let reconciliation = match engine.ims {
        Some(ims) => Some(reconciliation(ims, &facts, &ops).await?),
        None => None,
    };
    let people = match engine.ims {
        Some(ims) => Some(people_progress(ims, &ops, (engine.now)().millis(), after_days).await?),
        None => None,
    };
    Ok(Status::of(&facts, &ops, plans, reconciliation, people))
}

/// Where the people moved to IMS sign-in stand: invited, accepted, signed in.
pub async fn people_progress(
    ims: &ImsClient,
    ops: &[OperatorFacts],
    now: i64,
    after_days: i64,
) -> Result<crate::people::PeopleProgress, Error> {
    let invitations = ims.invitations().await?;
    Ok(crate::people::progress(ops, &invitations, now, after_days))
}

/// Hands the instance the journal's state of its plans, for its console's migration page.
/// The caller says a failure rather than stopping on it: the journal stays the record.
pub async fn report_journal(engine: &Engine<'_>, instance: &str) -> Result<(), String> {
    report_with_people(engine, instance, None).await
}

/// As [`report_journal`], with the moved people's progress (`status` and `remind` have it).
pub async fn report_with_people(
    engine: &Engine<'_>,
    instance: &str,
    people: Option<&crate::people::PeopleProgress>,
) -> Result<(), String> {
    let listed = engine
        .journal
        .progress(instance)
        .await
        .map_err(|e| format!("the journal could not be read for the console's report: {e}"))?;
    let plans = listed
        .into_iter()
        .map(|p| {
            let st = PlanStatus::of(p);
            ReportedPlan {
                state: st.state().to_owned(),
                plan_id: st.plan_id,
                phase: st.phase,
                done: st.done,
                started: st.started,
                failed: st.failed,
            }
        })
        .collect();
    let report = JournalReport {
        at: (engine.now)().millis(),
        plans,
        people: people.map(crate::people::PeopleProgress::report),
    };
    engine
        .instance
        .report_journal(&report)
        .await
        .map_err(|e| format!("the console's migration page was not updated: {e}"))
}
