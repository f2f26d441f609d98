//! The subcommand handlers `app` dispatches to, each taking the validated [`Config`].
//!
//! Each handler delegates to `wiring` (the concrete clients) or `demo`.

use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::check::{self, CheckReport, Outcome};
#[cfg(feature = "demo")]
use crate::cli::DemoArgs;
use crate::config::Config;
use crate::http::{self, Telemetry};
use crate::wiring;

/// How long `check` may take in total; an item still waiting for an answer then fails.
pub const CHECK_DEADLINE: Duration = Duration::from_secs(60);

/// `run`: serve every scale set until `shutdown` fires. The endpoint server runs for the
/// whole call when enabled.
///
/// Shutdown is bounded: once `shutdown` fires, the scale sets get `SHUTDOWN_DRAIN_TIMEOUT`
/// (default 30 s) to delete their sessions and finish cleanups; whatever is still running
/// then is abandoned (the next process adopts it) and the call returns.
pub async fn run(config: Config, telemetry: Telemetry, shutdown: CancellationToken) -> anyhow::Result<()> {
    let server = http::spawn(&config.http, telemetry.clone(), shutdown.child_token()).await?;
    for line in check::config_summary(&config) {
        tracing::info!("{line}");
    }
    let bound = config.shutdown_drain_timeout;
    let work = wiring::run(config, telemetry, shutdown.clone());
    tokio::pin!(work);
    let result = tokio::select! {
        result = &mut work => result,
        () = shutdown.cancelled() => match tokio::time::timeout(bound, &mut work).await {
            Ok(result) => result,
            Err(_) => {
                tracing::warn!(
                    bound_s = bound.as_secs(),
                    "shutdown did not finish within SHUTDOWN_DRAIN_TIMEOUT; exiting without the remaining cleanups (the next process adopts them)"
                );
                Ok(())
            }
        },
    };
    shutdown.cancel();
    if let Some(server) = server {
        server.task.await??;
    }
    result
}

/// `check`: the configuration report plus connectivity checks, all within
/// [`CHECK_DEADLINE`].
pub async fn check(config: &Config) -> anyhow::Result<CheckReport> {
    check_within(config, CHECK_DEADLINE).await
}

/// `check` with an explicit overall deadline: the items finished by then are reported and
/// one failing item says that the rest did not answer in time.
pub async fn check_within(config: &Config, deadline: Duration) -> anyhow::Result<CheckReport> {
    let mut report = CheckReport::default();
    report.push("configuration", Outcome::Pass(check::config_summary(config).join("; ")));
    let connectivity = tokio::time::timeout(deadline, wiring::check_connectivity(config, &mut report)).await;
    match connectivity {
        Ok(result) => result?,
        Err(_) => report.push(
            "deadline",
            Outcome::Fail(format!(
                "the checks did not finish within {}s: a service accepted the connection but did not answer",
                deadline.as_secs()
            )),
        ),
    }
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
