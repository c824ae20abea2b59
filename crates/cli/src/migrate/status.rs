//! `ims migrate assess` and `ims migrate status`: where the instance stands, read only.

use anyhow::Result;

use ims_core::Now;
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

pub async fn status(target: &MigrationTarget, config: &Config, json: bool) -> Result<()> {
    let services = connect(target, config).await?;
    let journal = target.journal();
    let display = Display::new();
    let progress = |s: &str, d, t| display.show(s, d, t);
    let status = inspect::status(&services.engine(&journal, &progress)).await;
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
