//! The `gha_*` metrics of actions-runner-controller's listener, so dashboards and alerts
//! written for ARC scale sets work on ours.
//!
//! Names, help texts' meaning, histogram buckets and label names follow ARC's listener.
//! Two deliberate differences, both about the labels:
//!
//! * ARC serves one scale set per endpoint and so leaves `name` and `namespace` off the
//!   job metrics; one controller here serves several scale sets, so every `gha_*` series
//!   carries `name` and `namespace` (the scale set's name and its Orka namespace).
//! * ARC's `job_name` label (the job's display name, which embeds matrix values) is left
//!   out: its values are not bounded. `job_result` is the classified result (`succeeded`,
//!   `failed`, `canceled`, `ignored`, `abandoned`, `other`), never the raw server text.

use std::collections::HashMap;
use std::sync::Mutex;

use github_scaleset::{JobCompleted, JobInfo, JobMessage, JobResult, JobStarted, Statistics};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use time::OffsetDateTime;

/// ARC's buckets for job startup and execution time, in seconds (10 ms to one hour).
pub const RUNTIME_BUCKETS: [f64; 45] = [
    0.01, 0.05, 0.1, 0.5, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0, 10.0, 12.0, 15.0, 18.0, 20.0, 25.0,
    30.0, 40.0, 50.0, 60.0, 70.0, 80.0, 90.0, 100.0, 110.0, 120.0, 150.0, 180.0, 210.0, 240.0, 300.0, 360.0,
    420.0, 480.0, 540.0, 600.0, 900.0, 1200.0, 1800.0, 2400.0, 3000.0, 3600.0,
];

/// Who a scale set belongs to, as ARC labels it. Empty strings for the parts the
/// registration URL does not name.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct ScaleSetIdentity {
    /// Scale set name (`name`).
    pub name: String,
    /// Orka namespace of its VMs (`namespace`).
    pub namespace: String,
    /// Enterprise slug of an enterprise-level registration (`enterprise`).
    pub enterprise: String,
    /// Organization (or repository owner) it registers with (`organization`).
    pub organization: String,
    /// Repository of a repository-level registration (`repository`).
    pub repository: String,
}

impl ScaleSetIdentity {
    /// An identity naming only the scale set (used until it is described).
    fn named(name: &str) -> Self {
        Self { name: name.to_owned(), ..Self::default() }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ScaleSetLabels {
    name: String,
    namespace: String,
    enterprise: String,
    organization: String,
    repository: String,
}

impl From<&ScaleSetIdentity> for ScaleSetLabels {
    fn from(id: &ScaleSetIdentity) -> Self {
        Self {
            name: id.name.clone(),
            namespace: id.namespace.clone(),
            enterprise: id.enterprise.clone(),
            organization: id.organization.clone(),
            repository: id.repository.clone(),
        }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct JobLabels {
    name: String,
    namespace: String,
    enterprise: String,
    organization: String,
    repository: String,
    event_name: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CompletedJobLabels {
    name: String,
    namespace: String,
    enterprise: String,
    organization: String,
    repository: String,
    event_name: String,
    job_result: &'static str,
}

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

fn runtime_histogram() -> Histogram {
    Histogram::new(RUNTIME_BUCKETS)
}

/// The `job_result` label of a classified result.
fn result_label(result: JobResult) -> &'static str {
    match result {
        JobResult::Succeeded => "succeeded",
        JobResult::Failed => "failed",
        JobResult::Canceled => "canceled",
        JobResult::Ignored => "ignored",
        JobResult::Abandoned => "abandoned",
        JobResult::Other => "other",
    }
}

/// Seconds from `from` to `to` when both are known (never negative: clocks of different
/// services may disagree by a little).
fn seconds_between(from: Option<OffsetDateTime>, to: Option<OffsetDateTime>) -> Option<f64> {
    let (from, to) = (from?, to?);
    Some((to - from).as_seconds_f64().max(0.0))
}

/// A described scale set: its labels and runner limits.
#[derive(Debug, Clone)]
struct Described {
    identity: ScaleSetIdentity,
    min_runners: u32,
    max_runners: u32,
}

/// The ARC-compatible families.
pub(super) struct ArcMetrics {
    assigned_jobs: Family<ScaleSetLabels, Gauge>,
    running_jobs: Family<ScaleSetLabels, Gauge>,
    registered_runners: Family<ScaleSetLabels, Gauge>,
    busy_runners: Family<ScaleSetLabels, Gauge>,
    idle_runners: Family<ScaleSetLabels, Gauge>,
    min_runners: Family<ScaleSetLabels, Gauge>,
    max_runners: Family<ScaleSetLabels, Gauge>,
    desired_runners: Family<ScaleSetLabels, Gauge>,
    started_jobs: Family<JobLabels, Counter>,
    completed_jobs: Family<CompletedJobLabels, Counter>,
    job_startup_duration: HistogramFamily<JobLabels>,
    job_execution_duration: HistogramFamily<CompletedJobLabels>,
    /// Scale set name → labels and limits, from [`ArcMetrics::describe`].
    described: Mutex<HashMap<String, Described>>,
}

impl ArcMetrics {
    /// Creates the families and registers them in `registry` under ARC's names.
    pub(super) fn register(registry: &mut Registry) -> Self {
        let m = Self {
            assigned_jobs: Family::default(),
            running_jobs: Family::default(),
            registered_runners: Family::default(),
            busy_runners: Family::default(),
            idle_runners: Family::default(),
            min_runners: Family::default(),
            max_runners: Family::default(),
            desired_runners: Family::default(),
            started_jobs: Family::default(),
            completed_jobs: Family::default(),
            job_startup_duration: Family::new_with_constructor(runtime_histogram as fn() -> Histogram),
            job_execution_duration: Family::new_with_constructor(runtime_histogram as fn() -> Histogram),
            described: Mutex::default(),
        };
        let gauges = [
            ("gha_assigned_jobs", "Number of jobs assigned to this scale set", &m.assigned_jobs),
            ("gha_running_jobs", "Number of jobs running (or about to be run)", &m.running_jobs),
            (
                "gha_registered_runners",
                "Number of runners registered by the scale set",
                &m.registered_runners,
            ),
            ("gha_busy_runners", "Number of registered runners running a job", &m.busy_runners),
            ("gha_idle_runners", "Number of registered runners not running a job", &m.idle_runners),
            ("gha_min_runners", "Minimum number of runners", &m.min_runners),
            ("gha_max_runners", "Maximum number of runners", &m.max_runners),
            ("gha_desired_runners", "Number of runners desired by the scale set", &m.desired_runners),
        ];
        for (name, help, family) in gauges {
            registry.register(name, help, family.clone());
        }
        // prometheus-client appends `_total` to counters.
        registry.register("gha_started_jobs", "Total number of jobs started", m.started_jobs.clone());
        registry.register("gha_completed_jobs", "Total number of jobs completed", m.completed_jobs.clone());
        registry.register(
            "gha_job_startup_duration_seconds",
            "Time from the job's assignment to the scale set until a runner of it took the job",
            m.job_startup_duration.clone(),
        );
        registry.register(
            "gha_job_execution_duration_seconds",
            "Time spent executing workflow jobs by the scale set",
            m.job_execution_duration.clone(),
        );
        m
    }

    /// Records a scale set's labels and limits, and publishes `gha_min_runners` and
    /// `gha_max_runners`.
    pub(super) fn describe(&self, identity: ScaleSetIdentity, min_runners: u32, max_runners: u32) {
        let labels = ScaleSetLabels::from(&identity);
        self.min_runners.get_or_create(&labels).set(i64::from(min_runners));
        self.max_runners.get_or_create(&labels).set(i64::from(max_runners));
        let mut described = self.described.lock().unwrap_or_else(|p| p.into_inner());
        described.insert(identity.name.clone(), Described { identity, min_runners, max_runners });
    }

    fn described(&self, scale_set: &str) -> Option<Described> {
        self.described.lock().unwrap_or_else(|p| p.into_inner()).get(scale_set).cloned()
    }

    /// Sets the statistics gauges and `gha_desired_runners` (ARC's count: the minimum
    /// plus the assigned jobs, capped at the maximum).
    pub(super) fn record_statistics(&self, scale_set: &str, statistics: &Statistics) {
        let described = self.described(scale_set);
        let identity =
            described.as_ref().map_or_else(|| ScaleSetIdentity::named(scale_set), |d| d.identity.clone());
        let labels = ScaleSetLabels::from(&identity);
        let pairs = [
            (&self.assigned_jobs, statistics.total_assigned_jobs),
            (&self.running_jobs, statistics.total_running_jobs),
            (&self.registered_runners, statistics.total_registered_runners),
            (&self.busy_runners, statistics.total_busy_runners),
            (&self.idle_runners, statistics.total_idle_runners),
        ];
        for (family, value) in pairs {
            family.get_or_create(&labels).set(i64::from(value));
        }
        if let Some(d) = described {
            let desired = d.min_runners.saturating_add(statistics.total_assigned_jobs).min(d.max_runners);
            self.desired_runners.get_or_create(&labels).set(i64::from(desired));
        }
    }

    /// Counts started and completed jobs and observes their startup and execution times.
    pub(super) fn record_job_messages(&self, scale_set: &str, messages: &[JobMessage]) {
        let identity =
            self.described(scale_set).map_or_else(|| ScaleSetIdentity::named(scale_set), |d| d.identity);
        for message in messages {
            match message {
                JobMessage::Started(started) => self.job_started(&identity, started),
                JobMessage::Completed(completed) => self.job_completed(&identity, completed),
                _ => {}
            }
        }
    }

    fn job_started(&self, identity: &ScaleSetIdentity, started: &JobStarted) {
        let labels = job_labels(identity, &started.job);
        self.started_jobs.get_or_create(&labels).inc();
        if let Some(seconds) =
            seconds_between(started.job.scale_set_assign_time, started.job.runner_assign_time)
        {
            self.job_startup_duration.get_or_create(&labels).observe(seconds);
        }
    }

    fn job_completed(&self, identity: &ScaleSetIdentity, completed: &JobCompleted) {
        let job = job_labels(identity, &completed.job);
        let labels = CompletedJobLabels {
            name: job.name,
            namespace: job.namespace,
            enterprise: job.enterprise,
            organization: job.organization,
            repository: job.repository,
            event_name: job.event_name,
            job_result: result_label(completed.outcome()),
        };
        self.completed_jobs.get_or_create(&labels).inc();
        // A job withdrawn before any runner took it has no execution to time.
        if let Some(seconds) = seconds_between(completed.job.runner_assign_time, completed.job.finish_time) {
            self.job_execution_duration.get_or_create(&labels).observe(seconds);
        }
    }
}

/// Job labels: the scale set's name, namespace and enterprise; the job's owner,
/// repository and event.
fn job_labels(identity: &ScaleSetIdentity, job: &JobInfo) -> JobLabels {
    JobLabels {
        name: identity.name.clone(),
        namespace: identity.namespace.clone(),
        enterprise: identity.enterprise.clone(),
        organization: job.owner_name.clone(),
        repository: job.repository_name.clone(),
        event_name: job.event_name.clone(),
    }
}

#[cfg(test)]
mod tests {
    use github_scaleset::{JobCompleted, JobInfo, JobMessage, JobStarted, Statistics};
    use time::macros::datetime;

    use crate::metrics::Metrics;

    use super::ScaleSetIdentity;

    /// The value of the sample line that starts with `prefix` (name and labels).
    fn sample(text: &str, prefix: &str) -> Option<f64> {
        text.lines().find(|l| l.starts_with(prefix))?.rsplit(' ').next()?.parse().ok()
    }

    fn identity() -> ScaleSetIdentity {
        ScaleSetIdentity {
            name: "mac".into(),
            namespace: "orka-default".into(),
            enterprise: String::new(),
            organization: "acme".into(),
            repository: String::new(),
        }
    }

    const SCALE_SET: &str =
        "name=\"mac\",namespace=\"orka-default\",enterprise=\"\",organization=\"acme\",repository=\"\"";

    fn job(repository: &str) -> JobInfo {
        JobInfo {
            job_id: "j1".into(),
            repository_name: repository.into(),
            owner_name: "acme".into(),
            job_display_name: "build (macos-15, 3.12)".into(),
            event_name: "push".into(),
            scale_set_assign_time: Some(datetime!(2026-01-01 10:00:00 UTC)),
            runner_assign_time: Some(datetime!(2026-01-01 10:01:30 UTC)),
            finish_time: Some(datetime!(2026-01-01 10:11:30 UTC)),
            ..JobInfo::default()
        }
    }

    #[test]
    fn scale_set_gauges_carry_arc_labels_and_the_desired_count() {
        let metrics = Metrics::new();
        metrics.describe_scale_set(identity(), 2, 10);
        let stats = Statistics {
            total_assigned_jobs: 5,
            total_running_jobs: 3,
            total_registered_runners: 6,
            total_busy_runners: 3,
            total_idle_runners: 2,
            ..Statistics::default()
        };
        metrics.record_statistics("mac", &stats);
        let text = metrics.encode();
        for (name, value) in [
            ("gha_assigned_jobs", 5.0),
            ("gha_running_jobs", 3.0),
            ("gha_registered_runners", 6.0),
            ("gha_busy_runners", 3.0),
            ("gha_idle_runners", 2.0),
            ("gha_min_runners", 2.0),
            ("gha_max_runners", 10.0),
            ("gha_desired_runners", 7.0),
        ] {
            assert_eq!(sample(&text, &format!("{name}{{{SCALE_SET}}}")), Some(value), "{name}\n{text}");
            assert!(text.contains(&format!("# TYPE {name} gauge")), "{name}");
        }
        // Desired is capped at the maximum.
        metrics.record_statistics("mac", &Statistics { total_assigned_jobs: 30, ..stats });
        let text = metrics.encode();
        assert_eq!(sample(&text, &format!("gha_desired_runners{{{SCALE_SET}}}")), Some(10.0));
    }

    #[test]
    fn job_messages_count_and_time_jobs_by_repository_and_result() {
        let metrics = Metrics::new();
        metrics.describe_scale_set(identity(), 0, 4);
        let started = JobStarted { job: job("app"), runner_id: 7, runner_name: "mac-abcde".into() };
        let completed = |result: &str, job: JobInfo| JobCompleted {
            job,
            runner_id: 7,
            runner_name: "mac-abcde".into(),
            result: result.into(),
        };
        // A job withdrawn before a runner took it: counted, not timed.
        let withdrawn =
            JobInfo { runner_assign_time: None, finish_time: None, job_id: "j2".into(), ..job("app") };
        metrics.record_job_messages(
            "mac",
            &[
                JobMessage::Assigned(job("app")),
                JobMessage::Started(started),
                JobMessage::Completed(completed("Succeeded", job("app"))),
                JobMessage::Completed(completed("canceled", withdrawn)),
                JobMessage::Completed(completed("some-new-result", job("lib"))),
            ],
        );
        let text = metrics.encode();
        let labels = |repo: &str| {
            format!(
                "name=\"mac\",namespace=\"orka-default\",enterprise=\"\",organization=\"acme\",repository=\"{repo}\",event_name=\"push\""
            )
        };
        let app = labels("app");
        for (line, value) in [
            (format!("gha_started_jobs_total{{{app}}}"), 1.0),
            (format!("gha_job_startup_duration_seconds_count{{{app}}}"), 1.0),
            (format!("gha_job_startup_duration_seconds_sum{{{app}}}"), 90.0),
            (format!("gha_completed_jobs_total{{{app},job_result=\"succeeded\"}}"), 1.0),
            (format!("gha_completed_jobs_total{{{app},job_result=\"canceled\"}}"), 1.0),
            (format!("gha_job_execution_duration_seconds_count{{{app},job_result=\"succeeded\"}}"), 1.0),
            (format!("gha_job_execution_duration_seconds_sum{{{app},job_result=\"succeeded\"}}"), 600.0),
            (format!("gha_completed_jobs_total{{{},job_result=\"other\"}}", labels("lib")), 1.0),
        ] {
            assert_eq!(sample(&text, &line), Some(value), "{line}\n{text}");
        }
        assert_eq!(
            sample(
                &text,
                &format!("gha_job_execution_duration_seconds_count{{{app},job_result=\"canceled\"}}")
            ),
            None,
            "a withdrawn job has no execution time"
        );
        // ARC's buckets, and no unbounded label.
        assert!(
            text.contains(&format!("gha_job_startup_duration_seconds_bucket{{le=\"3600.0\",{app}}} 1")),
            "{text}"
        );
        assert!(!text.contains("job_name") && !text.contains("build (macos"), "{text}");
        assert!(!text.contains("some-new-result"), "raw results never become label values");
    }

    #[test]
    fn an_undescribed_scale_set_is_labelled_by_name_and_has_no_desired_count() {
        let metrics = Metrics::new();
        metrics.record_statistics("other", &Statistics { total_assigned_jobs: 2, ..Statistics::default() });
        let text = metrics.encode();
        let labels = "name=\"other\",namespace=\"\",enterprise=\"\",organization=\"\",repository=\"\"";
        assert_eq!(sample(&text, &format!("gha_assigned_jobs{{{labels}}}")), Some(2.0), "{text}");
        assert!(!text.contains("gha_desired_runners{"), "{text}");
    }
}
