//! A scale set's fleet and reconciler built from the concrete clients, and their
//! adaptation to the service's seams (`RunnerFleet`, `Sweeper`, `FleetFactory`).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use github_scaleset::{MessageQueue, ScaleSetApi, ScaleSetMessage, Statistics};
use orka_client::VmBackend;
use provisioner::{
    Fleet, FleetConfig, FleetDeps, FleetObserver, RunnerInstallConfig, RunnerPhase, RunnerStage,
    ScalingConfig,
};
use reconciler::{Mode, ReconcilePolicy, Reconciler, ReconcilerConfig, ReconcilerDeps};
use tokio::time::Instant;
use vm_probe::VmShell;

use crate::config::{Config, GitHubScope, ScaleSetSettings};
use crate::metrics::{Metrics, ScaleSetIdentity};
use crate::status::StatusBoard;
use scaleset_service::{FleetFactory, RunnerFleet, Sweeper, WorkError};

use super::observer::MetricsObserver;
use super::outdated::{LatestRelease, VersionReport};
use crate::health::ScaleSetHealth;

/// The clients one scale set uses.
#[derive(Clone)]
pub(super) struct ClientSet {
    pub(super) vms: Arc<dyn VmBackend>,
    pub(super) github: Arc<dyn ScaleSetApi>,
    pub(super) shell: Arc<dyn VmShell>,
    pub(super) probe_shell: Arc<dyn VmShell>,
    /// The concrete GitHub client, for the latest-release lookup (same transport).
    pub(super) releases: Arc<github_scaleset::GitHubClient>,
}

/// Builds (and keeps) the fleet and reconciler of one scale set.
pub(super) struct FleetBuilder {
    clients: ClientSet,
    /// Shared by every scale set's builder: one copy per process, not per scale set.
    config: Arc<Config>,
    scale_set: ScaleSetSettings,
    runner_version: String,
    metrics: Arc<Metrics>,
    health: ScaleSetHealth,
    current: Mutex<Option<(i64, Arc<FleetRuntime>)>>,
    /// Where `status` finds the scale set's current fleet.
    status: Option<StatusBoard>,
}

impl FleetBuilder {
    /// A builder for `scale_set`; nothing is built until the scale set's id is known.
    pub(super) fn new(
        clients: ClientSet,
        config: Arc<Config>,
        scale_set: ScaleSetSettings,
        runner_version: String,
        metrics: Arc<Metrics>,
        health: ScaleSetHealth,
    ) -> Self {
        metrics.describe_scale_set(
            identity(&config, &scale_set),
            scale_set.min_runners,
            scale_set.max_runners,
        );
        Self {
            clients,
            config,
            scale_set,
            runner_version,
            metrics,
            health,
            current: Mutex::new(None),
            status: None,
        }
    }

    /// Shows every fleet this builder builds on `board`.
    pub(super) fn with_status(mut self, board: StatusBoard) -> Self {
        board.register(&self.scale_set.name, self.scale_set.min_runners, self.scale_set.max_runners);
        self.status = Some(board);
        self
    }
}

/// The ARC labels of `scale_set`: its name, its Orka namespace and what `GITHUB_URL`
/// registers it with.
fn identity(config: &Config, scale_set: &ScaleSetSettings) -> ScaleSetIdentity {
    let mut identity = ScaleSetIdentity {
        name: scale_set.name.clone(),
        namespace: scale_set.namespace.clone(),
        ..ScaleSetIdentity::default()
    };
    match &config.github.scope {
        GitHubScope::Organization { org } => identity.organization = org.clone(),
        GitHubScope::Repository { owner, repo } => {
            identity.organization = owner.clone();
            identity.repository = repo.clone();
        }
        GitHubScope::Enterprise { slug } => identity.enterprise = slug.clone(),
    }
    identity
}

impl FleetFactory for FleetBuilder {
    fn for_scale_set(&self, scale_set_id: i64) -> (Arc<dyn RunnerFleet>, Arc<dyn Sweeper>) {
        let mut current = self.current.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((id, runtime)) = current.as_ref()
            && *id == scale_set_id
        {
            return (runtime.clone(), runtime.clone());
        }
        let mut runtime = build_runtime(
            &self.clients,
            &self.config,
            &self.scale_set,
            scale_set_id,
            &self.runner_version,
            Some(self.metrics.clone()),
        );
        if let Some(source) = LatestRelease::for_config(&self.config, &self.clients.releases) {
            runtime.fleet.set_runner_version_source(source);
        }
        let report =
            VersionReport::new(self.scale_set.name.clone(), self.metrics.clone(), self.health.clone());
        runtime.version_report = Some(report);
        let runtime = Arc::new(runtime);
        if let Some(board) = &self.status {
            board.attach_fleet(&self.scale_set.name, runtime.fleet.clone());
        }
        if let Some((_, old)) = current.replace((scale_set_id, runtime.clone())) {
            // The scale set was re-created: the old fleet's runners belong to a scale set
            // that no longer exists; the reconciler deletes their VMs.
            let old = old.clone();
            tokio::spawn(async move { old.fleet.drain(Duration::from_secs(30)).await });
        }
        (runtime.clone(), runtime)
    }
}

/// A scale set's fleet and reconciler, adapted to the service's seams.
pub(super) struct FleetRuntime {
    name: String,
    pub(super) fleet: Arc<Fleet>,
    pub(super) reconciler: Reconciler,
    metrics: Option<Arc<Metrics>>,
    /// Where the runner-version state goes (a serving process; not one-shot commands).
    version_report: Option<VersionReport>,
}

pub(super) fn build_runtime(
    clients: &ClientSet,
    config: &Config,
    scale_set: &ScaleSetSettings,
    scale_set_id: i64,
    runner_version: &str,
    metrics: Option<Arc<Metrics>>,
) -> FleetRuntime {
    let vms = clients.vms.clone();
    let github = clients.github.clone();
    let shell = clients.shell.clone();
    let fleet_config = fleet_config(config, scale_set, scale_set_id, runner_version);
    let observer = metrics.clone().map(|metrics| {
        Arc::new(MetricsObserver::new(metrics, scale_set.name.clone())) as Arc<dyn FleetObserver>
    });
    let fleet = Arc::new(Fleet::with_observer(
        FleetDeps { vms: vms.clone(), github: github.clone(), shell: shell.clone() },
        fleet_config,
        observer,
    ));
    let mut reconciler_config = ReconcilerConfig::new(scale_set_id, scale_set.name.clone());
    reconciler_config.policy = ReconcilePolicy {
        deploy_deadline: config.orka.deploy_timeout + Duration::from_secs(120),
        unreachable_strikes: config.reconcile.unreachable_strikes,
    };
    reconciler_config.probe_timeout = super::probe_backstop(config);
    reconciler_config.concurrency = super::PROBE_SLOTS;
    reconciler_config.strike_spacing = config.reconcile.probe_timeout;
    let reconciler = Reconciler::new(
        ReconcilerDeps { vms, github, shell: clients.probe_shell.clone() },
        fleet.clone(),
        reconciler_config,
    );
    FleetRuntime { name: scale_set.name.clone(), fleet, reconciler, metrics, version_report: None }
}

fn fleet_config(config: &Config, scale_set: &ScaleSetSettings, id: i64, runner_version: &str) -> FleetConfig {
    let install = RunnerInstallConfig {
        version: runner_version.to_owned(),
        download_url_template: config.github.runner_download_url.clone(),
    };
    let mut fleet = FleetConfig::new(id, scale_set.name.clone(), scale_set.vm_config.clone(), install);
    fleet.metadata = scale_set.metadata.clone();
    fleet.scaling = ScalingConfig {
        max_runners: scale_set.max_runners,
        min_idle_runners: scale_set.min_runners,
        idle_grace: scale_set.idle_grace,
        warm_max_age: config.runners.warm_runner_max_age,
    };
    // The probe's retire-first recycling stays a backstop behind the planner's
    // replace-then-retire: it acts only if no replacement came up for half an hour.
    fleet.max_idle = config
        .runners
        .warm_runner_max_age
        .map_or(Duration::MAX, |age| age.saturating_add(Duration::from_secs(30 * 60)));
    fleet.provisioning_concurrency = config.runners.max_concurrent_provisions.max(1) as usize;
    fleet.deploy.deadline = config.orka.deploy_timeout + Duration::from_secs(120);
    fleet.deregistration_timeout = config.runners.deregistration_timeout;
    fleet.deregistration_poll_interval = config.runners.deregistration_poll_interval;
    fleet.probe_interval = config.reconcile.probe_interval;
    fleet.probe_timeout = config.reconcile.probe_timeout;
    fleet.probe_strikes = config.reconcile.unreachable_strikes;
    fleet.outdated_retry_interval = config.runners.outdated_retry_interval;
    fleet
}

#[async_trait]
impl RunnerFleet for FleetRuntime {
    async fn on_statistics(&self, statistics: Statistics) {
        if let Some(metrics) = &self.metrics {
            metrics.record_statistics(&self.name, &statistics);
        }
        self.fleet.on_statistics(statistics).await;
    }

    async fn handle_message(
        &self,
        message: &ScaleSetMessage,
        queue: &dyn MessageQueue,
    ) -> Result<(), WorkError> {
        if let Some(metrics) = &self.metrics {
            metrics.record_statistics(&self.name, &message.statistics);
            metrics.record_job_messages(&self.name, &message.job_messages);
        }
        // The fleet's bookkeeping is applied even when this fails, and handling the same
        // message again is harmless, so the service may retry it.
        self.fleet.handle_message(message, queue).await.map_err(|e| WorkError(error_chain(&e)))
    }

    async fn tick(&self) {
        self.fleet.tick().await;
        if let Some(metrics) = &self.metrics {
            let runners = self.fleet.runners();
            let now = Instant::now();
            let phases: Vec<RunnerPhase> = runners
                .iter()
                .map(|r| match r.stage {
                    RunnerStage::Idle => {
                        RunnerPhase::Idle { idle_for: now.saturating_duration_since(r.since) }
                    }
                    RunnerStage::Busy => RunnerPhase::Busy,
                    stage if stage.is_provisioning() => RunnerPhase::Provisioning,
                    _ => RunnerPhase::Finishing,
                })
                .collect();
            metrics.set_runner_phases(&self.name, &phases);
            metrics.set_vms_owned(&self.name, runners.len() as u64);
        }
        if let Some(report) = &self.version_report {
            report.report(&self.fleet.runner_version_status());
        }
    }

    async fn drain(&self, deadline: Duration) {
        self.fleet.drain(deadline).await;
    }
}

#[async_trait]
impl Sweeper for FleetRuntime {
    async fn sweep(&self) -> Result<(), WorkError> {
        match self.reconciler.reconcile_once(Mode::Act).await {
            Ok(report) => {
                for row in &report.rows {
                    if let (Some(decision), Some(metrics)) = (&row.decision, &self.metrics) {
                        metrics.record_reconcile_decision(&self.name, decision);
                    }
                    if row.applied {
                        tracing::info!(scale_set = %self.name, vm = %row.vm, action = row.action_label(), reason = row.reason_label(), "reconciled VM");
                    }
                }
                tracing::info!(
                    scale_set = %self.name,
                    vms = report.rows.len(),
                    registrations_removed = report.registrations_removed.len(),
                    "reconcile pass"
                );
                Ok(())
            }
            Err(e) => {
                tracing::warn!(scale_set = %self.name, error = &e as &dyn std::error::Error, "reconcile pass failed");
                Err(WorkError(format!("reconciliation failed: {}", error_chain(&e))))
            }
        }
    }
}

/// `e` and its sources on one line.
pub(super) fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
