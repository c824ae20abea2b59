//! Getting the instance and the IMS ready, through their APIs: what `prepare` decides, done.
//! Every step is checked whole against the live state before anything is written, and run
//! again it writes nothing new.

use ims_wire::migration::{
    EmailAssignment, EmailOutcome, GroupOutcome, GroupRequest, InstanceFacts, OperatorFacts, MAX_EMAILS,
};
use serde::Serialize;

use crate::client::{Error, ImsClient, InstanceClient};
use crate::prepare::{mask_for, profiles_for, right_groups, ProfileSpec};

/// What `prepare --profiles` did (or would do) per profile.
#[derive(Debug, Default, Serialize)]
pub struct ProfilesReport {
    pub dry_run: bool,
    pub mask: String,
    pub created: Vec<ProfileSpec>,
    pub present: Vec<ProfileSpec>,
    /// Present with other permission items: left as they are, said here.
    pub different: Vec<(ProfileSpec, Vec<String>)>,
    /// Groups the mask cannot name.
    pub unnamed: Vec<String>,
}

/// One product profile per operator group (the profile of a group that already exists is
/// left as it is), in the instance's product instance of the configured product context.
pub async fn create_profiles(
    ims: &ImsClient,
    facts: &InstanceFacts,
    dry_run: bool,
) -> Result<ProfilesReport, Error> {
    let account = facts.ims_account.as_ref();
    let mask = mask_for(&facts.name, account.map(|a| a.association_mask.as_str()));
    let context = account.map_or("dma_campaign_classic", |a| a.product_context.as_str());
    let (specs, unnamed) = profiles_for(&facts.name, &facts.kind, &mask, &facts.groups);
    let mut report = ProfilesReport {
        dry_run,
        mask,
        unnamed,
        ..ProfilesReport::default()
    };
    for spec in specs {
        match ims.profile(&spec.name).await? {
            Some(p) => {
                let mut have = p.permissions.clone();
                let mut want = spec.permissions.clone();
                have.sort();
                want.sort();
                if have == want {
                    report.present.push(spec);
                } else {
                    report.different.push((spec, p.permissions));
                }
            }
            None => {
                if !dry_run {
                    ims.create_profile(&spec.name, context, &facts.name, &spec.permissions)
                        .await?;
                }
                report.created.push(spec);
            }
        }
    }
    Ok(report)
}

/// Checks every batch against the live state, then (unless `dry_run`) writes them: a problem
/// anywhere stops the whole file before anything is written.
pub async fn set_emails(
    instance: &InstanceClient,
    assignments: &[EmailAssignment],
    dry_run: bool,
) -> Result<EmailOutcome, Error> {
    let mut checked = EmailOutcome {
        dry_run,
        ..EmailOutcome::default()
    };
    for batch in assignments.chunks(MAX_EMAILS) {
        let o = instance.set_emails(batch, true).await?;
        checked.changed.extend(o.changed);
        checked.unchanged.extend(o.unchanged);
        checked.problems.extend(o.problems);
    }
    if dry_run || !checked.problems.is_empty() {
        return Ok(checked);
    }
    let mut done = EmailOutcome::default();
    for batch in assignments.chunks(MAX_EMAILS) {
        let o = instance.set_emails(batch, false).await?;
        done.changed.extend(o.changed);
        done.unchanged.extend(o.unchanged);
        // A batch refused whole (changed meanwhile) ends the write: what follows stays as it
        // is, so that the file can be run again once fixed.
        let refused = !o.problems.is_empty();
        done.problems.extend(o.problems);
        if refused {
            break;
        }
    }
    Ok(done)
}

/// Operator groups for the rights people hold directly beyond their groups, with those people
/// as members: checked by the instance first, written (unless `dry_run`) when nothing stands in
/// the way. Returns what was asked and the answer.
pub async fn create_right_groups(
    instance: &InstanceClient,
    facts: &InstanceFacts,
    ops: &[OperatorFacts],
    dry_run: bool,
) -> Result<(GroupRequest, GroupOutcome), Error> {
    let req = right_groups(facts, ops);
    let mut outcome = instance.groups(&req, true).await?;
    if !dry_run && outcome.problems.is_empty() {
        outcome = instance.groups(&req, false).await?;
    }
    Ok((req, outcome))
}
