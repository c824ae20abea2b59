//! `ims migrate assess` and `ims migrate status`: where the instance stands, read only.

use anyhow::Result;

use ims_core::Now;
use ims_migration::status::Status;
use ims_migration::{inspect, report};

use super::progress::Display;
use crate::config::Config;
use crate::context::{connect, Blocked, MigrationTarget};

pub async fn assess(target: &MigrationTarget, config: &Config, json: bool, csv: bool) -> Result<()> {
    let services = connect(target, config).await?;
    let display = Display::new();
    let progress = |s: &str, d, t| display.show(s, d, t);
    let a = inspect::assessment(
        &services.instance,
        services.ims.as_ref(),
        &progress,
        Now::system().millis(),
    )
    .await?;
    display.end_count();
    if json {
        println!("{}", serde_json::to_string_pretty(&a)?);
    } else if csv {
        print!("{}", report::csv(&a)?);
    } else {
        print!("{}", report::table(&a));
    }
    if a.blockers.is_empty() {
        return Ok(());
    }
    Err(Blocked(format!(
        "{} blocker(s): fix them before migrating (see the report)",
        a.blockers.len()
    ))
    .into())
}

pub async fn status(target: &MigrationTarget, config: &Config, json: bool, after_days: i64) -> Result<()> {
    let services = connect(target, config).await?;
    let journal = target.journal();
    let display = Display::new();
    let progress = |s: &str, d, t| display.show(s, d, t);
    let engine = services.engine(&journal, &progress);
    let status = inspect::status(&engine, after_days).await;
    // The console's migration page shows the same counts of people.
    if let Ok(Status {
        people: Some(people),
        instance,
        ..
    }) = &status
    {
        if let Err(e) = inspect::report_with_people(&engine, instance, Some(people)).await {
            eprintln!("{e}");
        }
    }
    journal.close().await;
    let status = status?;
    if json {
        println!("{}", serde_json::to_string_pretty(&status)?);
    } else {
        print!("{}", status.text());
    }
    match &status.reconciliation {
        Some(r) if !r.differences.is_empty() => Err(Blocked(format!(
            "{} operator(s) differ between the instance and the IMS",
            r.differences.len()
        ))
        .into()),
        _ => Ok(()),
    }
}

pub async fn remind(
    target: &MigrationTarget,
    config: &Config,
    after_days: i64,
    dry_run: bool,
    json: bool,
) -> Result<()> {
    let services = connect(target, config).await?;
    let Some(ims) = services.ims.as_ref() else {
        return Err(anyhow::anyhow!(
            "reminding people needs the IMS: give its credential (see `ims migrate --help`)"
        ));
    };
    let display = Display::new();
    let ops = services
        .instance
        .operators(|n| display.show("operators read", n, 0))
        .await?;
    display.end_count();
    let people = inspect::people_progress(ims, &ops, Now::system().millis(), after_days).await?;
    let emails = people.to_remind();
    let resent = if dry_run || emails.is_empty() {
        ims_migration::client::Resent::default()
    } else {
        ims.resend_invitations(&emails).await?
    };
    if json {
        let v = serde_json::json!({
            "after_days": after_days,
            "dry_run": dry_run,
            "to_remind": emails,
            "sent": resent.sent,
            "skipped": resent.skipped,
        });
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(());
    }
    if emails.is_empty() {
        println!(
            "nobody to remind: every person invited {after_days} or more day(s) ago has come in or accepted"
        );
        return Ok(());
    }
    if dry_run {
        println!("would invite again ({}): {}", emails.len(), emails.join(", "));
        return Ok(());
    }
    println!(
        "invited again ({}): {}",
        resent.sent.len(),
        resent.sent.join(", ")
    );
    for s in &resent.skipped {
        println!("  skipped {}: {}", s.email, s.reason);
    }
    Ok(())
}
