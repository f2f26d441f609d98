//! The subcommand handlers `app` dispatches to, each taking the validated [`Config`].
//!
//! Each handler delegates to `wiring` (the concrete clients) or `demo`.

use tokio_util::sync::CancellationToken;

use crate::check::{self, CheckReport, Outcome};
#[cfg(feature = "demo")]
use crate::cli::DemoArgs;
use crate::config::Config;
use crate::http::{self, Telemetry};
use crate::wiring;

/// `run`: serve every scale set until `shutdown` fires. The endpoint server runs for the
/// whole call when enabled.
pub async fn run(config: Config, telemetry: Telemetry, shutdown: CancellationToken) -> anyhow::Result<()> {
    let server = http::spawn(&config.http, telemetry.clone(), shutdown.child_token()).await?;
    for line in check::config_summary(&config) {
        tracing::info!("{line}");
    }
    let result = wiring::run(config, telemetry, shutdown.clone()).await;
    shutdown.cancel();
    if let Some(server) = server {
        server.task.await??;
    }
    result
}

/// `check`: the configuration report plus connectivity checks.
pub async fn check(config: &Config) -> anyhow::Result<CheckReport> {
    let mut report = CheckReport::default();
    report.push("configuration", Outcome::Pass(check::config_summary(config).join("; ")));
    wiring::check_connectivity(config, &mut report).await?;
    Ok(report)
}

/// `reconcile [--dry-run]`: one reconciliation pass over the owned VMs.
pub async fn reconcile(config: &Config, dry_run: bool) -> anyhow::Result<()> {
    wiring::reconcile_once(config, dry_run).await
}

/// `demo`: the whole system on simulated GitHub and Orka.
#[cfg(feature = "demo")]
pub async fn demo(args: &DemoArgs, shutdown: CancellationToken) -> anyhow::Result<()> {
    crate::demo::run(args, shutdown).await
}
