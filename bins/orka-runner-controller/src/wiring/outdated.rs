//! Deprecated runner versions, wired: the latest-release lookup the fleet calls when GitHub
//! refuses the version it installs (only when `GITHUB_RUNNER_VERSION` is unset), and the
//! report of the fleet's runner-version state to `/metrics` and the `/readyz` body.
//!
//! The decisions (what counts as a refusal, when to retry, when to resume) are the
//! provisioner's; this module only adapts.

use std::sync::Arc;

use async_trait::async_trait;
use github_scaleset::GitHubClient;
use provisioner::{RunnerVersionSource, RunnerVersionStatus, VersionSourceError};

use crate::config::{Config, RunnerVersion};
use crate::health::ScaleSetHealth;
use crate::metrics::Metrics;
use crate::runner_version;

/// The latest actions/runner release, looked up as at startup.
pub(super) struct LatestRelease {
    config: Config,
    github: Arc<GitHubClient>,
}

impl LatestRelease {
    /// The lookup for `config`, or `None` when the version is pinned (nothing to look up).
    pub(super) fn for_config(
        config: &Config,
        github: &Arc<GitHubClient>,
    ) -> Option<Arc<dyn RunnerVersionSource>> {
        match config.github.runner_version {
            RunnerVersion::Pinned(_) => None,
            RunnerVersion::Latest => Some(Arc::new(Self { config: config.clone(), github: github.clone() })),
        }
    }
}

#[async_trait]
impl RunnerVersionSource for LatestRelease {
    async fn latest_version(&self) -> Result<String, VersionSourceError> {
        runner_version::resolve(&self.config, &self.github).await.map_err(|e| format!("{e:#}").into())
    }
}

/// Reports one scale set's runner-version state: the `runner_version_outdated` gauge and a
/// condition on its `/readyz` line.
pub(super) struct VersionReport {
    scale_set: String,
    metrics: Arc<Metrics>,
    health: ScaleSetHealth,
}

impl VersionReport {
    pub(super) fn new(scale_set: String, metrics: Arc<Metrics>, health: ScaleSetHealth) -> Self {
        Self { scale_set, metrics, health }
    }

    pub(super) fn report(&self, status: &RunnerVersionStatus) {
        self.metrics.set_runner_version_outdated(&self.scale_set, status.outdated.is_some());
        self.health.set_condition(condition(status));
    }
}

/// The `/readyz` condition text while outdated.
fn condition(status: &RunnerVersionStatus) -> Option<String> {
    status.outdated.as_ref().map(|outdated| {
        format!(
            "outdated: GitHub refuses runner version {} as deprecated; set GITHUB_RUNNER_VERSION to a current release, or unset it",
            outdated.refused_version
        )
    })
}

#[cfg(test)]
mod tests {
    use provisioner::Outdated;
    use tokio::time::Instant;

    use super::*;
    use crate::health::Health;

    #[test]
    fn an_outdated_scale_set_shows_on_metrics_and_readyz() {
        let metrics = Arc::new(Metrics::new());
        let health = Health::new();
        let handle = health.scale_set("mac");
        handle.reconciled();
        let report = VersionReport::new("mac".into(), metrics.clone(), handle);
        let now = Instant::now();
        let outdated = Outdated { refused_version: "2.300.0".into(), since: now, next_retry: now };
        report.report(&RunnerVersionStatus { version: "2.300.0".into(), outdated: Some(outdated) });
        let text = metrics.encode();
        assert!(
            text.contains("orka_runner_controller_runner_version_outdated{scale_set=\"mac\"} 1"),
            "{text}"
        );
        let readiness = health.readiness();
        assert!(
            readiness
                .lines
                .iter()
                .any(|l| l
                    .starts_with("mac: active, serving; outdated: GitHub refuses runner version 2.300.0")),
            "{readiness}"
        );

        report.report(&RunnerVersionStatus { version: "2.331.0".into(), outdated: None });
        assert!(
            metrics.encode().contains("orka_runner_controller_runner_version_outdated{scale_set=\"mac\"} 0")
        );
        assert_eq!(health.readiness().to_string(), "ok\nmac: active, serving\n");
    }
}
