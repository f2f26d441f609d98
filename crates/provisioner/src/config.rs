//! Configuration of one scale set's fleet: scaling limits, step deadlines and retry
//! budgets, watch intervals and what to install in each VM.
//!
//! Owns plain data and its defaults only; parsing environment variables is the binary's job.

use std::collections::BTreeMap;
use std::time::Duration;

use backon::ExponentialBuilder;

use crate::planner::ScalingConfig;

/// Deadline and retry budget of one lifecycle step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StepPolicy {
    /// How long one attempt may take.
    pub deadline: Duration,
    /// Attempts in total (at least 1).
    pub attempts: u32,
    /// First backoff between attempts.
    pub min_backoff: Duration,
    /// Largest backoff between attempts.
    pub max_backoff: Duration,
}

impl StepPolicy {
    /// A policy with `attempts` attempts of at most `deadline` each, backing off from 1 s to 30 s.
    pub const fn new(deadline: Duration, attempts: u32) -> Self {
        Self { deadline, attempts, min_backoff: Duration::from_secs(1), max_backoff: Duration::from_secs(30) }
    }

    pub(crate) fn backoff(&self) -> ExponentialBuilder {
        ExponentialBuilder::new()
            .with_min_delay(self.min_backoff)
            .with_max_delay(self.max_backoff)
            .with_max_times(self.attempts.saturating_sub(1) as usize)
            .with_jitter()
    }
}

/// Which runner to install in each VM.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunnerInstallConfig {
    /// Runner version without a leading `v` (`GITHUB_RUNNER_VERSION`).
    pub version: String,
    /// Download URL template with `{version}` and `{arch}` (`GITHUB_RUNNER_DOWNLOAD_URL`).
    pub download_url_template: String,
}

/// Everything the fleet of one scale set needs to know.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FleetConfig {
    /// The scale set's id (JIT configs are created in it).
    pub scale_set_id: i64,
    /// The scale set's name: VM and runner names are `<name>-<5 chars>`.
    pub scale_set_name: String,
    /// `ORKA_VM_CONFIG`.
    pub vm_config: String,
    /// `ORKA_VM_METADATA`.
    pub metadata: BTreeMap<String, String>,
    /// `MAX_RUNNERS`, the warm pool and the idle grace.
    pub scaling: ScalingConfig,
    /// How many VM deploys may be in flight at the same time (from the deploy request to
    /// the VM running). It spares the VM backend's API; the SSH side has its own caps.
    pub provisioning_concurrency: usize,
    /// Deploying the VM. The deadline is also the deploy timeout handed to the backend.
    pub deploy: StepPolicy,
    /// Creating the JIT config.
    pub jit: StepPolicy,
    /// Waiting for SSH (the backend's own readiness budget runs inside each attempt).
    pub ssh_ready: StepPolicy,
    /// Installing and starting the runner. Only failures before anything ran are retried.
    pub install: StepPolicy,
    /// Each GitHub call of a deregistration (lookup, removal).
    pub github_call: StepPolicy,
    /// Deleting the VM.
    pub delete: StepPolicy,
    /// `RUNNER_DEREGISTRATION_TIMEOUT`: how long a finished runner may take to deregister
    /// itself before it is removed by force.
    pub deregistration_timeout: Duration,
    /// `RUNNER_DEREGISTRATION_POLL_INTERVAL`.
    pub deregistration_poll_interval: Duration,
    /// How often online runners are probed (by [`crate::Fleet::tick`]).
    pub probe_interval: Duration,
    /// Deadline of one probe.
    pub probe_timeout: Duration,
    /// Probes running at the same time.
    pub probe_concurrency: usize,
    /// Consecutive failed probes after which a runner GitHub does not report busy is retired.
    pub probe_strikes: u32,
    /// First pause before deploying again when Orka has no capacity (then doubling, with
    /// jitter). Waiting for capacity spends none of the deploy step's attempts.
    pub capacity_backoff_min: Duration,
    /// Longest pause between deploys while Orka has no capacity.
    pub capacity_backoff_max: Duration,
    /// A runner online this long without ever being given a job is recycled by the probe,
    /// retire first. A backstop: with a warm pool, set it well above
    /// `scaling.warm_max_age`, which replaces a stale runner before retiring it.
    pub max_idle: Duration,
    /// How long a failed cleanup waits before the next tick tries again.
    pub cleanup_retry_interval: Duration,
    /// How long a `JobAssigned` seen in a message body counts as waiting demand even if the
    /// statistics do not show it (they lag the body); afterwards the statistics decide.
    pub statistics_lag_window: Duration,
    /// How long finished jobs are remembered (so duplicates and late messages are harmless).
    pub job_retention: Duration,
    /// The runner to install.
    pub runner_install: RunnerInstallConfig,
    /// While GitHub refuses the runner version (the scale set is outdated), one runner is
    /// deployed per this interval to try again, and an unpinned version is looked up again.
    pub outdated_retry_interval: Duration,
}

impl FleetConfig {
    /// A configuration with the defaults of the Go integration where it had one.
    pub fn new(
        scale_set_id: i64,
        scale_set_name: impl Into<String>,
        vm_config: impl Into<String>,
        runner_install: RunnerInstallConfig,
    ) -> Self {
        let minutes = |m: u64| Duration::from_secs(m * 60);
        Self {
            scale_set_id,
            scale_set_name: scale_set_name.into(),
            vm_config: vm_config.into(),
            metadata: BTreeMap::new(),
            scaling: ScalingConfig {
                max_runners: 9000,
                min_idle_runners: 0,
                idle_grace: minutes(5),
                warm_max_age: Some(minutes(4 * 60)),
            },
            provisioning_concurrency: 8,
            deploy: StepPolicy::new(minutes(10), 3),
            jit: StepPolicy::new(Duration::from_secs(60), 4),
            ssh_ready: StepPolicy::new(minutes(5), 2),
            install: StepPolicy::new(minutes(10), 3),
            github_call: StepPolicy::new(Duration::from_secs(30), 4),
            delete: StepPolicy::new(Duration::from_secs(60), 5),
            deregistration_timeout: Duration::from_secs(30),
            deregistration_poll_interval: Duration::from_secs(2),
            probe_interval: Duration::from_secs(60),
            probe_timeout: Duration::from_secs(20),
            probe_concurrency: 32,
            probe_strikes: 3,
            capacity_backoff_min: Duration::from_secs(2),
            capacity_backoff_max: Duration::from_secs(60),
            // The warm-pool age plus half an hour for its replacement to come online.
            max_idle: minutes(4 * 60 + 30),
            cleanup_retry_interval: Duration::from_secs(30),
            statistics_lag_window: Duration::from_secs(120),
            job_retention: minutes(60),
            runner_install,
            outdated_retry_interval: minutes(5),
        }
    }
}
