//! `status`: a per-scale-set snapshot of what this process knows — its role, the jobs,
//! its runners and VMs, Orka capacity, the runner version, GitHub's rate limit — and, for
//! every job still waiting, the reason ([`reasons`]).
//!
//! Built on request from state the process already keeps (the scale sets' phases in
//! `health`, the fleets, the rate-limit waits); served as JSON on `/status` and printed by
//! the `status` subcommand ([`render`]).

pub mod client;
pub mod reasons;
pub mod render;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use provisioner::Fleet;
use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use crate::metrics::Metrics;
use reasons::{Role, WaitInputs, WaitingJob, explain_waiting};
use scaleset_service::Phase;
use scaleset_service::health::Health;

/// The whole answer of `/status`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusReport {
    /// The controller's version.
    pub version: String,
    /// One entry per configured scale set, by name.
    pub scale_sets: Vec<ScaleSetStatus>,
}

/// One scale set as this process sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScaleSetStatus {
    /// Scale-set name.
    pub name: String,
    /// `active` (this process holds the session), `standby` (another process holds it) or
    /// `none`.
    pub role: String,
    /// The phase as `/readyz` words it.
    pub phase: String,
    /// `MIN_RUNNERS`.
    pub min_runners: u32,
    /// `MAX_RUNNERS`.
    pub max_runners: u32,
    /// Jobs and runners per GitHub's latest statistics (only while this process holds the
    /// session).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jobs: Option<JobCounts>,
    /// This process's runners, counted by stage.
    pub runners_by_state: BTreeMap<String, u32>,
    /// This process's runners (one VM each), by name.
    pub vms: Vec<VmEntry>,
    /// Runners waiting for Orka capacity now.
    pub orka_capacity_waits: u32,
    /// Orka's nodes of the scale set's namespace, asked when `/status` is read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub orka_nodes: Option<OrkaNodes>,
    /// Why Orka's nodes could not be read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub orka_nodes_error: Option<String>,
    /// The runner version new runners install.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runner_version: Option<String>,
    /// The runner version GitHub refuses, while it does.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refused_runner_version: Option<String>,
    /// A GitHub request is waiting out a rate limit now.
    pub github_rate_limited: bool,
    /// One entry per waiting job (a single entry when this process cannot see the jobs).
    pub waiting: Vec<WaitingJob>,
}

/// GitHub's job and runner counts for the scale set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobCounts {
    /// Jobs assigned to the scale set (running ones included).
    pub assigned: u32,
    /// Jobs running.
    pub running: u32,
    /// Runners registered.
    pub registered_runners: u32,
    /// Runners busy.
    pub busy_runners: u32,
    /// Runners idle.
    pub idle_runners: u32,
}

/// What Orka's nodes API says about room for more VMs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrkaNodes {
    /// Nodes reporting `READY`.
    pub ready: u32,
    /// Nodes in all.
    pub total: u32,
    /// CPU cores still free on ready nodes.
    pub available_cpu: u32,
}

/// Reads Orka's nodes for one namespace (the binary's Orka client).
#[async_trait::async_trait]
pub trait NodeSource: Send + Sync {
    /// The nodes' readiness and free CPU; the error text is shown as is.
    async fn nodes(&self) -> Result<OrkaNodes, String>;
}

/// The longest `/status` waits for Orka's nodes.
const NODES_TIMEOUT: Duration = Duration::from_secs(3);

/// One runner and its VM.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VmEntry {
    /// Runner and VM name.
    pub name: String,
    /// Lifecycle stage (`deploying_vm`, `idle`, `busy`, …).
    pub state: String,
    /// Seconds since the fleet started tracking it.
    pub age_seconds: u64,
    /// Seconds in the current stage.
    pub in_state_seconds: u64,
    /// Adopted from an earlier process rather than started by this one.
    pub adopted: bool,
    /// The job it runs, when a `JobStarted` named it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job: Option<VmJob>,
}

/// The job a runner runs, as the job messages named it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct VmJob {
    /// Job id.
    pub id: String,
    /// Workflow run id (0 when unknown).
    #[serde(default)]
    pub run_id: i64,
    /// `owner/repository`.
    #[serde(default)]
    pub repository: String,
    /// Workflow file and ref.
    #[serde(default)]
    pub workflow: String,
    /// Job name as GitHub's UI shows it.
    #[serde(default)]
    pub name: String,
}

impl VmJob {
    fn of(id: Option<String>, trace: Option<provisioner::JobTrace>) -> Option<Self> {
        match (id, trace) {
            (_, Some(t)) => Some(Self {
                id: t.job_id,
                run_id: t.run_id,
                repository: t.repository,
                workflow: t.workflow,
                name: t.job_name,
            }),
            (Some(id), None) => Some(Self { id, ..Self::default() }),
            (None, None) => None,
        }
    }
}

#[derive(Default)]
struct Board {
    scale_sets: BTreeMap<String, Registered>,
    rate_limited_until: Option<Instant>,
}

struct Registered {
    min_runners: u32,
    max_runners: u32,
    fleet: Option<Arc<Fleet>>,
    nodes: Option<Arc<dyn NodeSource>>,
}

/// Where the serving code leaves what `status` reads: the scale sets and their current
/// fleets, and GitHub's rate-limit waits. Clones share it.
#[derive(Clone, Default)]
pub struct StatusBoard {
    inner: Arc<Mutex<Board>>,
}

impl std::fmt::Debug for StatusBoard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StatusBoard").finish_non_exhaustive()
    }
}

impl StatusBoard {
    fn lock(&self) -> MutexGuard<'_, Board> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Lists a configured scale set (before it has a fleet).
    pub fn register(&self, name: &str, min_runners: u32, max_runners: u32) {
        self.lock()
            .scale_sets
            .insert(name.to_owned(), Registered { min_runners, max_runners, fleet: None, nodes: None });
    }

    /// The fleet now serving `name` (a re-created scale set gets a new one).
    pub fn attach_fleet(&self, name: &str, fleet: Arc<Fleet>) {
        if let Some(registered) = self.lock().scale_sets.get_mut(name) {
            registered.fleet = Some(fleet);
        }
    }

    /// Where `status` reads Orka's nodes for `name`.
    pub fn attach_nodes(&self, name: &str, nodes: Arc<dyn NodeSource>) {
        if let Some(registered) = self.lock().scale_sets.get_mut(name) {
            registered.nodes = Some(nodes);
        }
    }

    /// [`StatusBoard::snapshot`] plus Orka's nodes, asked for every scale set at once and
    /// bounded in time.
    pub async fn snapshot_with_nodes(&self, health: &Health) -> StatusReport {
        let mut report = self.snapshot(health);
        let sources: Vec<_> = {
            let board = self.lock();
            report
                .scale_sets
                .iter()
                .map(|s| board.scale_sets.get(&s.name).and_then(|r| r.nodes.clone()))
                .collect()
        };
        let mut asked = tokio::task::JoinSet::new();
        for (index, source) in sources.into_iter().enumerate() {
            let Some(source) = source else { continue };
            asked.spawn(async move {
                let answer = match tokio::time::timeout(NODES_TIMEOUT, source.nodes()).await {
                    Ok(answer) => answer,
                    Err(_) => Err(format!("Orka did not answer within {NODES_TIMEOUT:?}")),
                };
                (index, answer)
            });
        }
        while let Some(joined) = asked.join_next().await {
            let Ok((index, answer)) = joined else { continue };
            let status = &mut report.scale_sets[index];
            match answer {
                Ok(nodes) => status.orka_nodes = Some(nodes),
                Err(e) => status.orka_nodes_error = Some(e),
            }
        }
        report
    }

    /// A GitHub request waits `wait` on a rate limit.
    pub fn rate_limit_wait(&self, wait: Duration) {
        let until = Instant::now() + wait;
        let mut board = self.lock();
        board.rate_limited_until = Some(board.rate_limited_until.map_or(until, |u| u.max(until)));
    }

    /// The snapshot of every registered scale set, phases read from `health`.
    pub fn snapshot(&self, health: &Health) -> StatusReport {
        let now = Instant::now();
        let board = self.lock();
        let rate_limited = board.rate_limited_until.is_some_and(|until| until > now);
        let scale_sets = board
            .scale_sets
            .iter()
            .map(|(name, registered)| {
                let phase = health.phase(name).unwrap_or(Phase::Starting);
                scale_set_status(name, registered, &phase, rate_limited, now)
            })
            .collect();
        StatusReport { version: env!("CARGO_PKG_VERSION").to_owned(), scale_sets }
    }
}

fn role_of(phase: &Phase) -> Role {
    match phase.role() {
        "active" => Role::Active,
        "standby" => Role::Standby,
        _ => Role::None,
    }
}

fn scale_set_status(
    name: &str,
    registered: &Registered,
    phase: &Phase,
    rate_limited: bool,
    now: Instant,
) -> ScaleSetStatus {
    let role = role_of(phase);
    let mut status = ScaleSetStatus {
        name: name.to_owned(),
        role: phase.role().to_owned(),
        phase: phase.to_string(),
        min_runners: registered.min_runners,
        max_runners: registered.max_runners,
        jobs: None,
        runners_by_state: BTreeMap::new(),
        vms: Vec::new(),
        orka_capacity_waits: 0,
        orka_nodes: None,
        orka_nodes_error: None,
        runner_version: None,
        refused_runner_version: None,
        github_rate_limited: rate_limited,
        waiting: Vec::new(),
    };
    let mut stages = Vec::new();
    let mut waiting_jobs = 0;
    let mut version_refused = false;
    if let Some(fleet) = &registered.fleet {
        for runner in fleet.runners() {
            *status.runners_by_state.entry(runner.stage.as_str().to_owned()).or_default() += 1;
            status.vms.push(VmEntry {
                name: runner.name.clone(),
                state: runner.stage.as_str().to_owned(),
                age_seconds: now.saturating_duration_since(runner.created).as_secs(),
                in_state_seconds: now.saturating_duration_since(runner.since).as_secs(),
                adopted: runner.adopted,
                job: VmJob::of(runner.job.clone(), runner.trace.clone()),
            });
            stages.push((runner.name, runner.stage));
        }
        status.orka_capacity_waits = u32::try_from(fleet.capacity_waiting()).unwrap_or(u32::MAX);
        let version = fleet.runner_version_status();
        version_refused = version.outdated.is_some();
        status.refused_runner_version = version.outdated.map(|o| o.refused_version);
        status.runner_version = Some(version.version);
        if role == Role::Active {
            let stats = fleet.statistics();
            let jobs = JobCounts {
                assigned: clamp(stats.total_assigned_jobs),
                running: clamp(stats.total_running_jobs),
                registered_runners: clamp(stats.total_registered_runners),
                busy_runners: clamp(stats.total_busy_runners),
                idle_runners: clamp(stats.total_idle_runners),
            };
            waiting_jobs = jobs.assigned.saturating_sub(jobs.running);
            status.jobs = Some(jobs);
        }
    }
    status.waiting = explain_waiting(&WaitInputs {
        role,
        waiting_jobs,
        runners: &stages,
        max_runners: registered.max_runners,
        capacity_waiting: status.orka_capacity_waits as usize,
        version_refused,
        rate_limited,
    });
    status
}

fn clamp<T: TryInto<u32>>(n: T) -> u32 {
    n.try_into().unwrap_or(0)
}

/// Tells the metrics and the status board about GitHub's rate limits.
pub struct RateLimitTee {
    /// The metrics (budgets and wait counters).
    pub metrics: Arc<Metrics>,
    /// The status board (whether a wait runs now).
    pub board: StatusBoard,
}

impl github_scaleset::RateLimitObserver for RateLimitTee {
    fn budget(&self, resource: &str, remaining: u64, limit: u64) {
        self.metrics.budget(resource, remaining, limit);
    }

    fn waiting(&self, endpoint: &'static str, kind: github_scaleset::RateLimitKind, wait: Duration) {
        self.metrics.waiting(endpoint, kind, wait);
        self.board.rate_limit_wait(wait);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use reasons::WaitReason;

    #[tokio::test(start_paused = true)]
    async fn a_scale_set_without_a_fleet_explains_by_its_phase() {
        let board = StatusBoard::default();
        let health = Health::new();
        board.register("mac", 0, 4);
        board.register("arm", 1, 2);
        health.scale_set("mac").standby();
        let report = board.snapshot(&health);
        let names: Vec<_> = report.scale_sets.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["arm", "mac"]);
        let mac = &report.scale_sets[1];
        assert_eq!(mac.role, "standby");
        assert_eq!(mac.waiting[0].reason, WaitReason::SessionElsewhere);
        assert_eq!(mac.jobs, None);
        let arm = &report.scale_sets[0];
        assert_eq!((arm.role.as_str(), arm.waiting[0].reason), ("none", WaitReason::NoSession));
        assert!(!arm.github_rate_limited);
    }

    #[tokio::test(start_paused = true)]
    async fn a_rate_limit_wait_shows_until_it_ends() {
        let board = StatusBoard::default();
        let health = Health::new();
        board.register("mac", 0, 4);
        health.scale_set("mac").retrying("GitHub rate limit");
        board.rate_limit_wait(Duration::from_secs(60));
        let mac = board.snapshot(&health).scale_sets.remove(0);
        assert!(mac.github_rate_limited);
        assert_eq!(mac.waiting[0].reason, WaitReason::GitHubRateLimit);
        tokio::time::advance(Duration::from_secs(61)).await;
        let mac = board.snapshot(&health).scale_sets.remove(0);
        assert!(!mac.github_rate_limited);
        assert_eq!(mac.waiting[0].reason, WaitReason::NoSession);
    }

    struct Nodes(Result<OrkaNodes, String>);

    #[async_trait::async_trait]
    impl NodeSource for Nodes {
        async fn nodes(&self) -> Result<OrkaNodes, String> {
            self.0.clone()
        }
    }

    struct Silent;

    #[async_trait::async_trait]
    impl NodeSource for Silent {
        async fn nodes(&self) -> Result<OrkaNodes, String> {
            std::future::pending().await
        }
    }

    #[tokio::test(start_paused = true)]
    async fn orka_nodes_are_asked_for_and_failures_shown() {
        let board = StatusBoard::default();
        let health = Health::new();
        for name in ["a", "b", "c", "d"] {
            board.register(name, 0, 1);
        }
        let room = OrkaNodes { ready: 1, total: 2, available_cpu: 8 };
        board.attach_nodes("a", Arc::new(Nodes(Ok(room))));
        board.attach_nodes("b", Arc::new(Nodes(Err("Orka returned 503".into()))));
        board.attach_nodes("c", Arc::new(Silent));
        let report = board.snapshot_with_nodes(&health).await;
        let s = &report.scale_sets;
        assert_eq!((s[0].orka_nodes, s[0].orka_nodes_error.as_deref()), (Some(room), None));
        assert_eq!((s[1].orka_nodes, s[1].orka_nodes_error.as_deref()), (None, Some("Orka returned 503")));
        assert!(s[2].orka_nodes_error.as_deref().is_some_and(|e| e.contains("did not answer")), "{:?}", s[2]);
        assert_eq!(
            (s[3].orka_nodes, s[3].orka_nodes_error.as_deref()),
            (None, None),
            "no source, nothing said"
        );
    }

    #[test]
    fn the_report_round_trips_through_json() {
        let report = StatusReport {
            version: "1.0.0".into(),
            scale_sets: vec![ScaleSetStatus {
                name: "mac".into(),
                role: "active".into(),
                phase: "active, serving".into(),
                min_runners: 0,
                max_runners: 1,
                jobs: Some(JobCounts {
                    assigned: 2,
                    running: 1,
                    registered_runners: 1,
                    busy_runners: 1,
                    idle_runners: 0,
                }),
                runners_by_state: BTreeMap::from([("busy".to_owned(), 1)]),
                vms: vec![VmEntry {
                    name: "mac-ab12c".into(),
                    state: "busy".into(),
                    age_seconds: 90,
                    in_state_seconds: 30,
                    adopted: false,
                    job: Some(VmJob {
                        id: "j1".into(),
                        run_id: 7,
                        repository: "acme/app".into(),
                        workflow: "acme/app/.github/workflows/ci.yml@refs/heads/main".into(),
                        name: "build".into(),
                    }),
                }],
                orka_capacity_waits: 0,
                orka_nodes: Some(OrkaNodes { ready: 2, total: 3, available_cpu: 12 }),
                orka_nodes_error: None,
                runner_version: Some("2.330.0".into()),
                refused_runner_version: None,
                github_rate_limited: false,
                waiting: vec![WaitingJob { reason: WaitReason::MaxRunnersReached, runner: None }],
            }],
        };
        let json = serde_json::to_string(&report).unwrap();
        assert!(json.contains(r#""reason":"MAX_RUNNERS reached""#), "{json}");
        assert_eq!(serde_json::from_str::<StatusReport>(&json).unwrap(), report);
    }
}
