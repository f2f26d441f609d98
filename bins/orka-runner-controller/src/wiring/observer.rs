//! Turns the provisioner's fleet events into the per-stage latency histograms and
//! provisioning and retirement counters of `/metrics`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use provisioner::{FleetEvent, FleetObserver, RunnerStage};
use tokio::time::Instant;

use crate::metrics::{Metrics, ProvisionFailure, Stage};

/// Turns fleet events into per-stage latency histograms and provisioning counters.
pub(super) struct MetricsObserver {
    metrics: Arc<Metrics>,
    scale_set: String,
    /// Per runner: when it passed its last milestone and which milestones it passed.
    paths: Mutex<HashMap<String, RunnerPath>>,
}

/// Where one runner is on the path job assigned → … → VM deleted.
struct RunnerPath {
    last: Instant,
    passed: Vec<Stage>,
}

impl MetricsObserver {
    /// An observer reporting `scale_set`'s events into `metrics`.
    pub(super) fn new(metrics: Arc<Metrics>, scale_set: String) -> Self {
        Self { metrics, scale_set, paths: Mutex::default() }
    }

    /// Records `stage` for `runner` (time since its previous milestone) once.
    fn milestone(&self, runner: &str, stage: Stage) {
        let now = Instant::now();
        let mut paths = self.paths.lock().unwrap_or_else(|p| p.into_inner());
        let Some(path) = paths.get_mut(runner) else { return };
        if !path.passed.contains(&stage) {
            self.metrics.observe_stage(&self.scale_set, stage, now.saturating_duration_since(path.last));
            path.passed.push(stage);
        }
        path.last = now;
    }

    /// Starts (or, for an adopted runner, joins midway) the path of `runner`.
    fn begin(&self, runner: &str, already_passed: &[Stage]) {
        let mut paths = self.paths.lock().unwrap_or_else(|p| p.into_inner());
        paths
            .entry(runner.to_owned())
            .or_insert_with(|| RunnerPath { last: Instant::now(), passed: already_passed.to_vec() });
    }

    fn has_passed(&self, runner: &str, stage: Stage) -> bool {
        let paths = self.paths.lock().unwrap_or_else(|p| p.into_inner());
        paths.get(runner).is_some_and(|p| p.passed.contains(&stage))
    }
}

impl FleetObserver for MetricsObserver {
    fn on_event(&self, event: &FleetEvent) {
        use Stage::*;
        match event {
            FleetEvent::Stage { runner, stage, adopted, .. } => match stage {
                RunnerStage::Queued | RunnerStage::DeployingVm => self.begin(runner, &[]),
                RunnerStage::CreatingJitConfig => self.milestone(runner, VmDeployed),
                // Adopted runners join the path where they were found; earlier stages
                // happened under another process and are not timed.
                RunnerStage::Idle | RunnerStage::Busy if *adopted => {
                    self.begin(runner, &[VmDeployed, SshReady, RunnerOnline]);
                    if *stage == RunnerStage::Busy {
                        self.begin(runner, &[JobStarted]);
                    }
                }
                RunnerStage::Idle => {
                    self.metrics.provision_succeeded(&self.scale_set);
                    self.milestone(runner, RunnerOnline);
                }
                RunnerStage::Busy => {
                    // A runner may take its job before the fleet saw it idle: it came
                    // online at the latest now, and took its job at once.
                    if !self.has_passed(runner, RunnerOnline) {
                        self.metrics.provision_succeeded(&self.scale_set);
                        self.milestone(runner, RunnerOnline);
                    }
                    self.milestone(runner, JobStarted);
                }
                RunnerStage::Finishing => self.milestone(runner, JobCompleted),
                _ => {}
            },
            FleetEvent::SshReady { runner, .. } => self.milestone(runner, SshReady),
            FleetEvent::Gone { runner, reason, .. } => {
                self.metrics.runner_retired(&self.scale_set, reason.as_str());
                self.milestone(runner, VmDeleted);
                self.paths.lock().unwrap_or_else(|p| p.into_inner()).remove(runner);
            }
            FleetEvent::StepFailed { step, reason, .. } => {
                self.metrics.provision_failed(&self.scale_set, failure_of(*step, reason));
            }
            FleetEvent::CapacityWait { waiting } => {
                self.metrics.set_waiting_for_orka_capacity(&self.scale_set, *waiting);
            }
            FleetEvent::Job { .. } | FleetEvent::Planned { .. } => {}
        }
    }
}

fn failure_of(step: provisioner::Step, reason: &str) -> ProvisionFailure {
    use provisioner::Step;
    match step {
        Step::DeployVm if reason.contains("timeout") || reason.contains("timed_out") => {
            ProvisionFailure::DeployTimeout
        }
        Step::DeployVm => ProvisionFailure::Deploy,
        Step::CreateJitConfig => ProvisionFailure::JitConfig,
        Step::WaitSsh => ProvisionFailure::Ssh,
        Step::InstallRunner => ProvisionFailure::Install,
        Step::Deregister | Step::DeleteVm => ProvisionFailure::Other,
    }
}
