//! The Prometheus metrics of the controller and the small typed API that feeds them.
//!
//! Owns one explicit `prometheus-client` [`Registry`] (no global state, no process
//! collectors) holding:
//!
//! * the Go integration's seven gauges under the same names and label (`runner_name` =
//!   scale set name): `runner_scale_set_total_{available,acquired,assigned,running}_jobs`,
//!   `runner_scale_set_total_{registered,busy,idle}_runners`;
//! * actions-runner-controller's `gha_*` listener metrics (see the `arc` module), so ARC
//!   dashboards and alerts work unchanged;
//! * `orka_runner_controller_*`: runners by lifecycle state, VMs owned, session held,
//!   provisions and provisioning failures, reconcile decisions, API request latency and
//!   errors, and the per-stage latency histograms of a job's path.
//!
//! Label values are low-cardinality by construction (enums, scale-set names, endpoint
//! names chosen by the caller — never URLs, VM names or job ids). This module does not
//! serve HTTP (see `http`) and does not decide when to record.

mod arc;

use std::time::Duration;

use arc::ArcMetrics;
pub use arc::{RUNTIME_BUCKETS, ScaleSetIdentity};
use github_scaleset::{JobMessage, Statistics};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use provisioner::RunnerPhase;

/// Content type of [`Metrics::encode`]'s output.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Prefix of every metric that is not one of the Go integration's gauges.
pub const PREFIX: &str = "orka_runner_controller";

/// Seconds buckets of the stage histograms: half a second to eight hours.
const STAGE_BUCKETS: [f64; 20] = [
    0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 45.0, 60.0, 90.0, 120.0, 180.0, 300.0, 600.0, 900.0, 1800.0,
    3600.0, 7200.0, 14400.0, 28800.0,
];

/// Seconds buckets of API request latency (the long poll holds ~50 s).
const API_BUCKETS: [f64; 14] =
    [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0];

/// A milestone on a job's path; each stage histogram measures the time from the previous
/// milestone to this one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Stage {
    /// Job assigned → VM deployed (Orka reports it running with an SSH endpoint).
    VmDeployed,
    /// VM deployed → SSH reachable and authenticated.
    SshReady,
    /// SSH ready → runner installed, started and online in GitHub.
    RunnerOnline,
    /// Runner online → job started on it.
    JobStarted,
    /// Job started → job completed.
    JobCompleted,
    /// Job completed → runner deregistered and VM deleted.
    VmDeleted,
}

impl Stage {
    /// Every stage, in path order.
    pub const ALL: [Stage; 6] = [
        Stage::VmDeployed,
        Stage::SshReady,
        Stage::RunnerOnline,
        Stage::JobStarted,
        Stage::JobCompleted,
        Stage::VmDeleted,
    ];

    /// The `stage` label value.
    pub fn label(self) -> &'static str {
        match self {
            Stage::VmDeployed => "vm_deployed",
            Stage::SshReady => "ssh_ready",
            Stage::RunnerOnline => "runner_online",
            Stage::JobStarted => "job_started",
            Stage::JobCompleted => "job_completed",
            Stage::VmDeleted => "vm_deleted",
        }
    }
}

/// Why a provisioning attempt failed (the `reason` label).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ProvisionFailure {
    /// Orka refused or failed the deploy.
    Deploy,
    /// The deploy did not finish within `ORKA_DEPLOY_TIMEOUT`.
    DeployTimeout,
    /// GitHub refused the JIT config.
    JitConfig,
    /// SSH never became reachable or rejected the credentials.
    Ssh,
    /// The install or start script failed.
    Install,
    /// The runner never came online.
    RunnerOffline,
    /// Anything else.
    Other,
}

impl ProvisionFailure {
    fn label(self) -> &'static str {
        match self {
            ProvisionFailure::Deploy => "deploy",
            ProvisionFailure::DeployTimeout => "deploy_timeout",
            ProvisionFailure::JitConfig => "jit_config",
            ProvisionFailure::Ssh => "ssh",
            ProvisionFailure::Install => "install",
            ProvisionFailure::RunnerOffline => "runner_offline",
            ProvisionFailure::Other => "other",
        }
    }
}

/// Which remote API a request went to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Api {
    /// GitHub REST or the Actions service.
    GitHub,
    /// The Orka API.
    Orka,
}

/// How a request ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ApiStatus {
    /// An HTTP response with this status.
    Http(u16),
    /// No response: connection or TLS failure.
    Transport,
    /// No response within the deadline.
    Timeout,
}

impl ApiStatus {
    fn label(self) -> String {
        match self {
            ApiStatus::Http(code) => code.to_string(),
            ApiStatus::Transport => "transport".into(),
            ApiStatus::Timeout => "timeout".into(),
        }
    }

    fn is_error(self) -> bool {
        !matches!(self, ApiStatus::Http(code) if code < 400)
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RunnerName {
    runner_name: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ScaleSet {
    scale_set: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ScaleSetState {
    scale_set: String,
    state: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ScaleSetRole {
    scale_set: String,
    role: &'static str,
}

/// The roles of [`Metrics::set_role`], in the order they are exported.
pub const ROLES: [&str; 3] = ["active", "standby", "none"];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ScaleSetOutcome {
    scale_set: String,
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ScaleSetReason {
    scale_set: String,
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DecisionLabels {
    scale_set: String,
    action: String,
    reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ApiLabels {
    api: &'static str,
    endpoint: String,
    status: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RateLimitResource {
    resource: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RateLimitWait {
    endpoint: String,
    kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StageLabels {
    scale_set: String,
    stage: &'static str,
}

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

/// The controller's metrics. Cheap to share behind an `Arc`; every method takes `&self`.
pub struct Metrics {
    registry: Registry,
    available_jobs: Family<RunnerName, Gauge>,
    acquired_jobs: Family<RunnerName, Gauge>,
    assigned_jobs: Family<RunnerName, Gauge>,
    running_jobs: Family<RunnerName, Gauge>,
    registered_runners: Family<RunnerName, Gauge>,
    busy_runners: Family<RunnerName, Gauge>,
    idle_runners: Family<RunnerName, Gauge>,
    runners: Family<ScaleSetState, Gauge>,
    vms_owned: Family<ScaleSet, Gauge>,
    session_held: Family<ScaleSet, Gauge>,
    waiting_for_orka_capacity: Family<ScaleSet, Gauge>,
    role: Family<ScaleSetRole, Gauge>,
    poison_messages: Family<ScaleSet, Counter>,
    provisions: Family<ScaleSetOutcome, Counter>,
    provision_failures: Family<ScaleSetReason, Counter>,
    runners_retired: Family<ScaleSetReason, Counter>,
    reconcile_decisions: Family<DecisionLabels, Counter>,
    api_request_duration: HistogramFamily<ApiLabels>,
    api_errors: Family<ApiLabels, Counter>,
    stage_duration: HistogramFamily<StageLabels>,
    runner_version_outdated: Family<ScaleSet, Gauge>,
    github_rate_limit_remaining: Family<RateLimitResource, Gauge>,
    github_rate_limit_limit: Family<RateLimitResource, Gauge>,
    github_rate_limit_waits: Family<RateLimitWait, Counter>,
    arc: ArcMetrics,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

/// The GitHub client tells the metrics what it learns about rate limits.
impl github_scaleset::RateLimitObserver for Metrics {
    fn budget(&self, resource: &str, remaining: u64, limit: u64) {
        self.set_github_rate_limit(resource, remaining, limit);
    }

    fn waiting(&self, endpoint: &'static str, kind: github_scaleset::RateLimitKind, _wait: Duration) {
        self.github_rate_limit_wait(endpoint, kind.label());
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

fn stage_histogram() -> Histogram {
    Histogram::new(STAGE_BUCKETS)
}

fn api_histogram() -> Histogram {
    Histogram::new(API_BUCKETS)
}

/// `CamelCase` → `snake_case`, for enum variants rendered with `Debug`.
fn snake_case(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 4);
    for (i, c) in text.chars().enumerate() {
        if c.is_ascii_uppercase() {
            if i > 0 {
                out.push('_');
            }
            out.push(c.to_ascii_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

impl Metrics {
    /// A registry with every metric registered (families start empty).
    pub fn new() -> Self {
        let mut registry = Registry::default();
        let arc = ArcMetrics::register(&mut registry);
        let m = Self {
            available_jobs: Family::default(),
            acquired_jobs: Family::default(),
            assigned_jobs: Family::default(),
            running_jobs: Family::default(),
            registered_runners: Family::default(),
            busy_runners: Family::default(),
            idle_runners: Family::default(),
            runners: Family::default(),
            vms_owned: Family::default(),
            session_held: Family::default(),
            waiting_for_orka_capacity: Family::default(),
            role: Family::default(),
            poison_messages: Family::default(),
            provisions: Family::default(),
            provision_failures: Family::default(),
            runners_retired: Family::default(),
            reconcile_decisions: Family::default(),
            api_request_duration: Family::new_with_constructor(api_histogram as fn() -> Histogram),
            api_errors: Family::default(),
            stage_duration: Family::new_with_constructor(stage_histogram as fn() -> Histogram),
            runner_version_outdated: Family::default(),
            github_rate_limit_remaining: Family::default(),
            github_rate_limit_limit: Family::default(),
            github_rate_limit_waits: Family::default(),
            registry: Registry::default(),
            arc,
        };
        // The Go integration's gauges, same names and help texts in spirit.
        let go = [
            ("runner_scale_set_total_available_jobs", "Jobs available to the scale set", &m.available_jobs),
            ("runner_scale_set_total_acquired_jobs", "Jobs acquired by the scale set", &m.acquired_jobs),
            ("runner_scale_set_total_assigned_jobs", "Jobs assigned to the scale set", &m.assigned_jobs),
            ("runner_scale_set_total_running_jobs", "Jobs running on the scale set", &m.running_jobs),
            (
                "runner_scale_set_total_registered_runners",
                "Runners registered in the scale set",
                &m.registered_runners,
            ),
            (
                "runner_scale_set_total_busy_runners",
                "Runners of the scale set executing a job",
                &m.busy_runners,
            ),
            (
                "runner_scale_set_total_idle_runners",
                "Connected runners of the scale set without a job",
                &m.idle_runners,
            ),
        ];
        for (name, help, family) in go {
            registry.register(name, help, family.clone());
        }
        let ours = registry.sub_registry_with_prefix(PREFIX);
        ours.register("runners", "Runners of this process by lifecycle state", m.runners.clone());
        ours.register("vms_owned", "Orka VMs owned by the scale set (all states)", m.vms_owned.clone());
        ours.register(
            "session_held",
            "1 while this process holds the scale set's message session",
            m.session_held.clone(),
        );
        ours.register(
            "waiting_for_orka_capacity",
            "1 while runners of the scale set wait for Orka capacity",
            m.waiting_for_orka_capacity.clone(),
        );
        ours.register(
            "scale_set_role",
            "1 for this process's current role per scale set: active, standby or none",
            m.role.clone(),
        );
        ours.register(
            "poison_messages",
            "Messages acknowledged unhandled after failing every attempt",
            m.poison_messages.clone(),
        );
        ours.register("provisions", "Runner provisioning attempts by outcome", m.provisions.clone());
        ours.register(
            "provision_failures",
            "Failed runner provisioning attempts by reason",
            m.provision_failures.clone(),
        );
        ours.register(
            "runners_retired",
            "Runners gone (registration removed, VM deleted) by why they left",
            m.runners_retired.clone(),
        );
        ours.register(
            "reconcile_decisions",
            "Reconcile decisions by action and reason",
            m.reconcile_decisions.clone(),
        );
        ours.register(
            "api_request_duration_seconds",
            "Orka and GitHub API request latency by endpoint and status",
            m.api_request_duration.clone(),
        );
        ours.register(
            "api_errors",
            "Failed Orka and GitHub API requests by endpoint and status",
            m.api_errors.clone(),
        );
        ours.register(
            "stage_duration_seconds",
            "Time from the previous milestone of a job's path to this stage",
            m.stage_duration.clone(),
        );
        ours.register(
            "runner_version_outdated",
            "1 while GitHub refuses the scale set's runner version as deprecated",
            m.runner_version_outdated.clone(),
        );
        ours.register(
            "github_rate_limit_remaining",
            "Requests left in GitHub's rate-limit budget, by resource, as last reported",
            m.github_rate_limit_remaining.clone(),
        );
        ours.register(
            "github_rate_limit_limit",
            "Size of GitHub's rate-limit budget, by resource, as last reported",
            m.github_rate_limit_limit.clone(),
        );
        ours.register(
            "github_rate_limit_waits",
            "Requests that waited on a GitHub rate limit, by endpoint and kind (primary, secondary)",
            m.github_rate_limit_waits.clone(),
        );
        Self { registry, ..m }
    }

    /// Records GitHub's rate-limit budget of `resource`.
    pub fn set_github_rate_limit(&self, resource: &str, remaining: u64, limit: u64) {
        let labels = RateLimitResource { resource: resource.to_owned() };
        self.github_rate_limit_remaining
            .get_or_create(&labels)
            .set(i64::try_from(remaining).unwrap_or(i64::MAX));
        self.github_rate_limit_limit.get_or_create(&labels).set(i64::try_from(limit).unwrap_or(i64::MAX));
    }

    /// Counts a request to `endpoint` (the client's fixed request name, e.g. "registration
    /// token", recorded as `registration_token`) waiting on a GitHub rate limit of `kind`.
    pub fn github_rate_limit_wait(&self, endpoint: &str, kind: &'static str) {
        let endpoint = endpoint.to_ascii_lowercase().replace(' ', "_");
        self.github_rate_limit_waits.get_or_create(&RateLimitWait { endpoint, kind }).inc();
    }

    /// Describes a scale set for the `gha_*` metrics: its ARC labels and its runner
    /// limits (published as `gha_min_runners` and `gha_max_runners`). Call once per scale
    /// set before its statistics arrive; until then its `gha_*` series carry only `name`.
    pub fn describe_scale_set(&self, identity: ScaleSetIdentity, min_runners: u32, max_runners: u32) {
        self.arc.describe(identity, min_runners, max_runners);
    }

    /// Counts the started and completed jobs of a message (`gha_started_jobs_total`,
    /// `gha_completed_jobs_total`) and observes their startup and execution times.
    pub fn record_job_messages(&self, scale_set: &str, messages: &[JobMessage]) {
        self.arc.record_job_messages(scale_set, messages);
    }

    /// Sets the seven `runner_scale_set_*` gauges of `scale_set` from live statistics, and
    /// the `gha_*` gauges (jobs, runners, desired runners).
    pub fn record_statistics(&self, scale_set: &str, statistics: &Statistics) {
        self.arc.record_statistics(scale_set, statistics);
        let label = RunnerName { runner_name: scale_set.to_owned() };
        let pairs = [
            (&self.available_jobs, statistics.total_available_jobs),
            (&self.acquired_jobs, statistics.total_acquired_jobs),
            (&self.assigned_jobs, statistics.total_assigned_jobs),
            (&self.running_jobs, statistics.total_running_jobs),
            (&self.registered_runners, statistics.total_registered_runners),
            (&self.busy_runners, statistics.total_busy_runners),
            (&self.idle_runners, statistics.total_idle_runners),
        ];
        for (family, value) in pairs {
            family.get_or_create(&label).set(i64::from(value));
        }
    }

    /// Sets the runners-by-state gauge of `scale_set` from the phases of all its runners
    /// (states without a runner are set to zero).
    pub fn set_runner_phases<'a>(&self, scale_set: &str, phases: impl IntoIterator<Item = &'a RunnerPhase>) {
        let mut counts = [0i64; 4];
        for phase in phases {
            let index = match phase {
                RunnerPhase::Provisioning => 0,
                RunnerPhase::Idle { .. } => 1,
                RunnerPhase::Busy => 2,
                RunnerPhase::Finishing => 3,
            };
            counts[index] += 1;
        }
        for (state, count) in ["provisioning", "idle", "busy", "finishing"].into_iter().zip(counts) {
            self.runners.get_or_create(&ScaleSetState { scale_set: scale_set.to_owned(), state }).set(count);
        }
    }

    /// Sets how many Orka VMs `scale_set` owns.
    pub fn set_vms_owned(&self, scale_set: &str, count: u64) {
        self.vms_owned.get_or_create(&ScaleSet { scale_set: scale_set.to_owned() }).set(count as i64);
    }

    /// Records whether this process holds `scale_set`'s message session.
    pub fn set_session_held(&self, scale_set: &str, held: bool) {
        self.session_held.get_or_create(&ScaleSet { scale_set: scale_set.to_owned() }).set(i64::from(held));
    }

    /// Whether runners of `scale_set` are waiting for Orka capacity.
    pub fn set_waiting_for_orka_capacity(&self, scale_set: &str, waiting: bool) {
        let labels = ScaleSet { scale_set: scale_set.to_owned() };
        self.waiting_for_orka_capacity.get_or_create(&labels).set(i64::from(waiting));
    }

    /// Records this process's role for `scale_set` (one of [`ROLES`]); the other roles read 0.
    pub fn set_role(&self, scale_set: &str, role: &'static str) {
        for candidate in ROLES {
            let labels = ScaleSetRole { scale_set: scale_set.to_owned(), role: candidate };
            self.role.get_or_create(&labels).set(i64::from(candidate == role));
        }
    }

    /// Counts a message of `scale_set` acknowledged unhandled (a poison message).
    pub fn poison_message(&self, scale_set: &str) {
        self.poison_messages.get_or_create(&ScaleSet { scale_set: scale_set.to_owned() }).inc();
    }

    /// Counts a successful provisioning (runner online).
    pub fn provision_succeeded(&self, scale_set: &str) {
        let labels = ScaleSetOutcome { scale_set: scale_set.to_owned(), outcome: "succeeded" };
        self.provisions.get_or_create(&labels).inc();
    }

    /// Counts a failed provisioning attempt and its reason.
    pub fn provision_failed(&self, scale_set: &str, reason: ProvisionFailure) {
        let outcome = ScaleSetOutcome { scale_set: scale_set.to_owned(), outcome: "failed" };
        self.provisions.get_or_create(&outcome).inc();
        let labels = ScaleSetReason { scale_set: scale_set.to_owned(), reason: reason.label() };
        self.provision_failures.get_or_create(&labels).inc();
    }

    /// Counts a runner that is gone (registration removed, VM deleted) and why it left
    /// (`reason` is a fixed label such as `job_completed` or `unreachable`).
    pub fn runner_retired(&self, scale_set: &str, reason: &'static str) {
        let labels = ScaleSetReason { scale_set: scale_set.to_owned(), reason };
        self.runners_retired.get_or_create(&labels).inc();
    }

    /// Counts one reconcile decision (`action` and `reason` in snake_case).
    pub fn record_reconcile_decision(&self, scale_set: &str, decision: &reconciler::decision::Decision) {
        let labels = DecisionLabels {
            scale_set: scale_set.to_owned(),
            action: snake_case(&format!("{:?}", decision.action)),
            reason: snake_case(&format!("{:?}", decision.reason)),
        };
        self.reconcile_decisions.get_or_create(&labels).inc();
    }

    /// Records one API request. `endpoint` must be a fixed name (`get_message`,
    /// `deploy_vm`), never a URL. Statuses ≥ 400, transport failures and timeouts also
    /// count as errors.
    pub fn observe_api_request(&self, api: Api, endpoint: &str, status: ApiStatus, elapsed: Duration) {
        let labels = ApiLabels {
            api: match api {
                Api::GitHub => "github",
                Api::Orka => "orka",
            },
            endpoint: endpoint.to_owned(),
            status: status.label(),
        };
        self.api_request_duration.get_or_create(&labels).observe(elapsed.as_secs_f64());
        if status.is_error() {
            self.api_errors.get_or_create(&labels).inc();
        }
    }

    /// Records how long `stage` took for one runner of `scale_set`.
    pub fn observe_stage(&self, scale_set: &str, stage: Stage, elapsed: Duration) {
        let labels = StageLabels { scale_set: scale_set.to_owned(), stage: stage.label() };
        self.stage_duration.get_or_create(&labels).observe(elapsed.as_secs_f64());
    }

    /// Records whether GitHub refuses `scale_set`'s runner version (the scale set is outdated).
    pub fn set_runner_version_outdated(&self, scale_set: &str, outdated: bool) {
        let labels = ScaleSet { scale_set: scale_set.to_owned() };
        self.runner_version_outdated.get_or_create(&labels).set(i64::from(outdated));
    }

    /// The OpenMetrics text exposition of every metric.
    pub fn encode(&self) -> String {
        let mut text = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut text, &self.registry);
        text
    }
}

#[cfg(test)]
mod tests {
    use reconciler::decision::{Action, Decision, Reason};

    use super::*;

    /// The value of the sample line that starts with `prefix` (name and labels).
    pub(crate) fn sample(text: &str, prefix: &str) -> Option<f64> {
        text.lines().find(|l| l.starts_with(prefix))?.rsplit(' ').next()?.parse().ok()
    }

    #[test]
    fn the_seven_go_gauges_carry_the_statistics() {
        let metrics = Metrics::new();
        let stats = Statistics {
            total_available_jobs: 1,
            total_acquired_jobs: 2,
            total_assigned_jobs: 3,
            total_running_jobs: 4,
            total_registered_runners: 5,
            total_busy_runners: 6,
            total_idle_runners: 7,
        };
        metrics.record_statistics("mac", &stats);
        let text = metrics.encode();
        let expected = [
            ("runner_scale_set_total_available_jobs", 1.0),
            ("runner_scale_set_total_acquired_jobs", 2.0),
            ("runner_scale_set_total_assigned_jobs", 3.0),
            ("runner_scale_set_total_running_jobs", 4.0),
            ("runner_scale_set_total_registered_runners", 5.0),
            ("runner_scale_set_total_busy_runners", 6.0),
            ("runner_scale_set_total_idle_runners", 7.0),
        ];
        for (name, value) in expected {
            assert_eq!(
                sample(&text, &format!("{name}{{runner_name=\"mac\"}}")),
                Some(value),
                "{name}\n{text}"
            );
            assert!(text.contains(&format!("# TYPE {name} gauge")), "{name}");
        }
        // Newer statistics overwrite, they do not add up.
        metrics.record_statistics("mac", &Statistics { total_assigned_jobs: 9, ..stats });
        let text = metrics.encode();
        assert_eq!(sample(&text, "runner_scale_set_total_assigned_jobs{runner_name=\"mac\"}"), Some(9.0));
    }

    #[test]
    fn runners_by_state_include_zeroes() {
        let metrics = Metrics::new();
        let phases = [RunnerPhase::Busy, RunnerPhase::Busy, RunnerPhase::Idle { idle_for: Duration::ZERO }];
        metrics.set_runner_phases("mac", &phases);
        let text = metrics.encode();
        let value = |state: &str| {
            sample(&text, &format!("orka_runner_controller_runners{{scale_set=\"mac\",state=\"{state}\"}}"))
        };
        assert_eq!(value("busy"), Some(2.0));
        assert_eq!(value("idle"), Some(1.0));
        assert_eq!(value("provisioning"), Some(0.0));
        assert_eq!(value("finishing"), Some(0.0));
    }

    #[test]
    fn counters_and_histograms_are_labelled() {
        let metrics = Metrics::new();
        metrics.provision_succeeded("mac");
        metrics.provision_failed("mac", ProvisionFailure::DeployTimeout);
        metrics.record_reconcile_decision(
            "mac",
            &Decision { action: Action::Adopt, reason: Reason::BusyPerGithub },
        );
        metrics.observe_api_request(Api::Orka, "deploy_vm", ApiStatus::Http(500), Duration::from_millis(30));
        metrics.observe_api_request(
            Api::GitHub,
            "get_message",
            ApiStatus::Http(202),
            Duration::from_secs(50),
        );
        metrics.observe_api_request(Api::GitHub, "get_message", ApiStatus::Timeout, Duration::from_secs(70));
        metrics.set_vms_owned("mac", 4);
        metrics.set_session_held("mac", true);
        metrics.set_role("mac", "standby");
        metrics.set_role("mac", "active");
        metrics.poison_message("mac");
        metrics.runner_retired("mac", "unreachable");
        for stage in Stage::ALL {
            metrics.observe_stage("mac", stage, Duration::from_secs(12));
        }
        let text = metrics.encode();
        let p = "orka_runner_controller_";
        for (line, value) in [
            (format!("{p}provisions_total{{scale_set=\"mac\",outcome=\"succeeded\"}}"), 1.0),
            (format!("{p}provisions_total{{scale_set=\"mac\",outcome=\"failed\"}}"), 1.0),
            (format!("{p}provision_failures_total{{scale_set=\"mac\",reason=\"deploy_timeout\"}}"), 1.0),
            (
                format!(
                    "{p}reconcile_decisions_total{{scale_set=\"mac\",action=\"adopt\",reason=\"busy_per_github\"}}"
                ),
                1.0,
            ),
            (format!("{p}api_errors_total{{api=\"orka\",endpoint=\"deploy_vm\",status=\"500\"}}"), 1.0),
            (
                format!("{p}api_errors_total{{api=\"github\",endpoint=\"get_message\",status=\"timeout\"}}"),
                1.0,
            ),
            (
                format!(
                    "{p}api_request_duration_seconds_count{{api=\"github\",endpoint=\"get_message\",status=\"202\"}}"
                ),
                1.0,
            ),
            (format!("{p}vms_owned{{scale_set=\"mac\"}}"), 4.0),
            (format!("{p}runners_retired_total{{scale_set=\"mac\",reason=\"unreachable\"}}"), 1.0),
            (format!("{p}session_held{{scale_set=\"mac\"}}"), 1.0),
            (format!("{p}scale_set_role{{scale_set=\"mac\",role=\"active\"}}"), 1.0),
            (format!("{p}scale_set_role{{scale_set=\"mac\",role=\"standby\"}}"), 0.0),
            (format!("{p}scale_set_role{{scale_set=\"mac\",role=\"none\"}}"), 0.0),
            (format!("{p}poison_messages_total{{scale_set=\"mac\"}}"), 1.0),
        ] {
            assert_eq!(sample(&text, &line), Some(value), "{line}\n{text}");
        }
        assert!(!text.contains("status=\"202\"} 1\napi_errors"), "a 202 is not an error");
        assert!(
            sample(
                &text,
                &format!("{p}api_errors_total{{api=\"github\",endpoint=\"get_message\",status=\"202\"}}")
            )
            .is_none()
        );
        for stage in Stage::ALL {
            let count =
                format!("{p}stage_duration_seconds_count{{scale_set=\"mac\",stage=\"{}\"}}", stage.label());
            assert_eq!(sample(&text, &count), Some(1.0), "{count}");
            let sum =
                format!("{p}stage_duration_seconds_sum{{scale_set=\"mac\",stage=\"{}\"}}", stage.label());
            assert_eq!(sample(&text, &sum), Some(12.0), "{sum}");
        }
    }

    #[test]
    fn snake_case_of_variants() {
        assert_eq!(snake_case("RecheckLater"), "recheck_later");
        assert_eq!(snake_case("Adopt"), "adopt");
    }
}
