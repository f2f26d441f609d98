//! The fleet of one scale set: its runners by name, the job book, the latest statistics,
//! and the public API the binary's per-scale-set loop calls.
//!
//! Every signal — a message, an empty poll's statistics, a periodic tick — ends in the same
//! level-triggered step: plan from the current view ([`crate::planner`]) and act (queue new
//! runners, retire surplus idle ones, stop provisioning nobody needs). A runner is an entry
//! in a map advanced by the pure state machine ([`crate::lifecycle`]). Provisioning tasks
//! end when the runner is online and cleanup tasks end when the VM is deleted; in between,
//! nothing is held per runner: job messages and the periodic probe move it on.
//!
//! What it does not own: the message session, polling and acknowledging messages,
//! shutdown signals (the binary calls in), and reconciliation decisions (the reconciler
//! calls [`Fleet::adopt`] and [`Fleet::retire_vm`]).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use runner_core::{FleetControl, Vm, VmName, naming};
use runner_core::{JobMessage, MessageQueue, RunnerRecord, ScaleSetMessage, Statistics};
use tokio::sync::{Notify, Semaphore};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::FleetConfig;
use crate::error::ProvisionError;
use crate::events::{FleetCounters, FleetEvent, FleetObserver, JobEventKind, RetireReason};
use crate::jobs::{JobBook, JobState, job_key};
use crate::lifecycle::{LifecycleEvent, RunnerStage, Transition, transition};
use crate::outdated::VersionGate;
use crate::planner::{Demand, RunnerView, plan_runner_gap, surplus_provisioning};
use crate::trace::{self, JobTrace};

/// The three seams the fleet does its I/O through: the same bundle the reconciler of the
/// scale set uses ([`runner_core::Seams`]).
pub type FleetDeps = runner_core::Seams;

/// One runner as the fleet sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunnerSnapshot {
    /// Runner (= VM) name.
    pub name: String,
    /// Its stage.
    pub stage: RunnerStage,
    /// When it entered the stage.
    pub since: Instant,
    /// When the fleet started tracking it (queued or adopted).
    pub created: Instant,
    /// Whether it was adopted rather than started by this process.
    pub adopted: bool,
    /// The job it runs, when `JobStarted` named it.
    pub job: Option<String>,
    /// Repository, workflow, job name and run of that job.
    pub trace: Option<JobTrace>,
}

/// The runners of one scale set and everything that moves them.
///
/// Cheap to clone (a handle). Methods never hold a lock across an await.
#[derive(Clone)]
pub struct Fleet {
    pub(crate) shared: Arc<Shared>,
}

pub(crate) struct Shared {
    pub(crate) deps: FleetDeps,
    pub(crate) config: FleetConfig,
    state: Mutex<State>,
    observer: Option<Arc<dyn FleetObserver>>,
    tracker: TaskTracker,
    /// Cancelled when a drain runs out of time: cleanup steps stop.
    pub(crate) shutdown: CancellationToken,
    pub(crate) slots: Arc<Semaphore>,
    settled: Notify,
    tick_lock: tokio::sync::Mutex<()>,
    pub(crate) capacity: crate::capacity::CapacityWaits,
    /// The runner version to install, and whether GitHub refuses it.
    pub(crate) version_gate: VersionGate,
}

pub(crate) struct State {
    pub(crate) runners: HashMap<String, Entry>,
    jobs: JobBook,
    statistics: Statistics,
    last_message_id: i64,
    draining: bool,
    pub(crate) counters: FleetCounters,
    seen_runner_names: HashMap<String, Instant>,
    tasks: usize,
    pub(crate) last_probe: Option<Instant>,
}

pub(crate) struct Entry {
    pub(crate) stage: RunnerStage,
    pub(crate) created: Instant,
    pub(crate) since: Instant,
    pub(crate) vm: Option<Vm>,
    pub(crate) runner_id: Option<i64>,
    /// A registration may exist (JIT requested, adopted, or found by the reconciler).
    pub(crate) maybe_registered: bool,
    pub(crate) job: Option<String>,
    pub(crate) trace: Option<JobTrace>,
    pub(crate) adopted: bool,
    pub(crate) cancel: CancellationToken,
    pub(crate) cancelled: bool,
    /// A task is running this runner's cleanup.
    pub(crate) retiring: bool,
    pub(crate) retry_at: Option<Instant>,
    pub(crate) probe_failures: u32,
    pub(crate) reason: Option<RetireReason>,
    /// The runner version installed in its VM (unknown for adopted runners).
    pub(crate) runner_version: Option<String>,
}

impl Entry {
    fn new(stage: RunnerStage, now: Instant) -> Self {
        Self {
            stage,
            created: now,
            since: now,
            vm: None,
            runner_id: None,
            maybe_registered: false,
            job: None,
            trace: None,
            adopted: false,
            cancel: CancellationToken::new(),
            cancelled: false,
            retiring: false,
            retry_at: None,
            probe_failures: 0,
            reason: None,
            runner_version: None,
        }
    }
}

impl Fleet {
    /// A fleet with no runners.
    pub fn new(deps: FleetDeps, config: FleetConfig) -> Self {
        Self::with_observer(deps, config, None)
    }

    /// A fleet that reports its events to `observer`.
    pub fn with_observer(
        deps: FleetDeps,
        config: FleetConfig,
        observer: Option<Arc<dyn FleetObserver>>,
    ) -> Self {
        let slots = Arc::new(Semaphore::new(config.provisioning_concurrency.max(1)));
        let version_gate =
            VersionGate::new(config.runner_install.version.clone(), config.outdated_retry_interval);
        let state = State {
            runners: HashMap::new(),
            jobs: JobBook::new(),
            statistics: Statistics::default(),
            last_message_id: 0,
            draining: false,
            counters: FleetCounters::default(),
            seen_runner_names: HashMap::new(),
            tasks: 0,
            last_probe: None,
        };
        Self {
            shared: Arc::new(Shared {
                deps,
                config,
                state: Mutex::new(state),
                observer,
                tracker: TaskTracker::new(),
                shutdown: CancellationToken::new(),
                slots,
                settled: Notify::new(),
                tick_lock: tokio::sync::Mutex::new(()),
                capacity: crate::capacity::CapacityWaits::default(),
                version_gate,
            }),
        }
    }

    /// The configuration.
    pub fn config(&self) -> &FleetConfig {
        &self.shared.config
    }

    /// Handles one message: records its statistics and job messages (idempotently by job
    /// id and runner name), acquires offered jobs within capacity, then plans and acts.
    ///
    /// The bookkeeping is applied even when acquiring fails; the error only tells the
    /// caller that offered jobs were not acquired (they stay offered). Redelivering the same
    /// message is harmless.
    pub async fn handle_message(
        &self,
        msg: &ScaleSetMessage,
        queue: &dyn MessageQueue,
    ) -> Result<(), ProvisionError> {
        let shared = &self.shared;
        let (to_acquire, retire) = {
            let mut st = shared.lock();
            shared.record_message(&mut st, msg)
        };
        shared.spawn_retires(retire);
        let mut result = Ok(());
        if !to_acquire.is_empty() {
            match queue.acquire_jobs(&to_acquire).await {
                Ok(acquired) => {
                    let mut st = shared.lock();
                    st.jobs.mark_acquired(&to_acquire, Instant::now());
                    st.counters.jobs_acquired += acquired.len() as u64;
                    drop(st);
                    for id in &acquired {
                        shared.emit(FleetEvent::Job {
                            job: format!("request-{id}"),
                            kind: JobEventKind::Acquired,
                        });
                    }
                    tracing::info!(requested = to_acquire.len(), acquired = acquired.len(), "acquired jobs");
                }
                Err(e) => {
                    tracing::warn!(error = &e as &dyn std::error::Error, "acquiring jobs failed");
                    result = Err(ProvisionError::Acquire(e));
                }
            }
        }
        shared.plan_and_act();
        result
    }

    /// New statistics (from a new session or an empty poll): plan and act.
    ///
    /// Within a run of messages, statistics of a message older than the newest one seen
    /// are ignored (a redelivery must not roll them back); these statistics restart that
    /// order, because a new session's queue may number its messages afresh.
    pub async fn on_statistics(&self, statistics: Statistics) {
        {
            let mut st = self.shared.lock();
            st.statistics = statistics;
            st.last_message_id = 0;
        }
        self.shared.plan_and_act();
    }

    /// The periodic resync: forget old jobs, plan and act, retry failed cleanups, and —
    /// every `probe_interval` — check that online runners' VMs still exist and probe them
    /// (run sentinel → finish; run.sh dead → retire; unreachable N times, no job on it per
    /// job messages and not busy on GitHub → retire; idle longer than `max_idle` → recycle).
    /// Overlapping calls return at once.
    pub async fn tick(&self) {
        let Ok(_guard) = self.shared.tick_lock.try_lock() else { return };
        let now = Instant::now();
        let probe_due = {
            let mut st = self.shared.lock();
            let retention = self.shared.config.job_retention;
            st.jobs.forget_older_than(now, retention);
            st.seen_runner_names.retain(|_, at| now.saturating_duration_since(*at) < retention);
            st.last_probe
                .is_none_or(|at| now.saturating_duration_since(at) >= self.shared.config.probe_interval)
        };
        self.shared.refresh_runner_version().await;
        self.shared.plan_and_act();
        self.shared.retry_failed_cleanups();
        if probe_due {
            self.shared.lock().last_probe = Some(now);
            self.shared.watch().await;
        }
    }

    /// Tracks a runner found running (by the reconciler) exactly like one this process
    /// started: `busy` → `Busy`, otherwise `Idle`. Returns false when the name is already
    /// tracked or not owned by this scale set.
    pub async fn adopt(&self, vm: Vm, runner: RunnerRecord, busy: bool) -> bool {
        let shared = &self.shared;
        if !naming::is_owned_by(&shared.config.scale_set_name, &vm.name) {
            return false;
        }
        {
            let mut st = shared.lock();
            if st.runners.contains_key(&vm.name) {
                return false;
            }
            let now = Instant::now();
            let stage = if busy { RunnerStage::Busy } else { RunnerStage::Idle };
            let mut entry = Entry::new(stage, now);
            entry.adopted = true;
            entry.runner_id = Some(runner.id);
            entry.maybe_registered = true;
            let name = vm.name.clone();
            entry.vm = Some(vm);
            st.runners.insert(name.clone(), entry);
            st.seen_runner_names.remove(&name);
            st.counters.adopted += 1;
            drop(st);
            tracing::info!(runner = %name, stage = stage.as_str(), "adopted runner");
            shared.emit(FleetEvent::Stage {
                runner: name,
                stage,
                since_created: Duration::ZERO,
                since_previous: Duration::ZERO,
                adopted: true,
            });
        }
        shared.plan_and_act();
        true
    }

    /// Retires a VM: deregisters its runner, then deletes it. `RetireReason::RunComplete`
    /// first waits for the runner to deregister itself (its job ended); any other reason
    /// removes the registration at once. A busy tracked runner is never retired (returns
    /// false), nor is a VM this scale set does not own. Untracked VMs are tracked for the
    /// duration of their cleanup. Returns whether a cleanup was scheduled or already runs.
    pub async fn retire_vm(&self, vm_name: &str, reason: RetireReason) -> bool {
        let shared = &self.shared;
        if !naming::is_owned_by(&shared.config.scale_set_name, vm_name) {
            return false;
        }
        let event = match reason {
            RetireReason::RunComplete | RetireReason::JobCompleted => LifecycleEvent::RunCompleteSeen,
            RetireReason::RunnerCrashed | RetireReason::Unreachable => LifecycleEvent::RunnerDied,
            RetireReason::VmVanished => LifecycleEvent::VmVanished,
            _ => LifecycleEvent::Retire,
        };
        let spawn = {
            let mut st = shared.lock();
            if !st.runners.contains_key(vm_name) {
                let now = Instant::now();
                let stage = if event == LifecycleEvent::RunCompleteSeen {
                    RunnerStage::Finishing
                } else {
                    RunnerStage::Deregistering
                };
                let mut entry = Entry::new(stage, now);
                entry.adopted = true;
                entry.maybe_registered = true;
                entry.reason = Some(reason);
                st.runners.insert(vm_name.to_owned(), entry);
                st.seen_runner_names.remove(vm_name);
                drop(st);
                shared.emit(FleetEvent::Stage {
                    runner: vm_name.to_owned(),
                    stage,
                    since_created: Duration::ZERO,
                    since_previous: Duration::ZERO,
                    adopted: true,
                });
                let mut st = shared.lock();
                shared.claim_retire(&mut st, vm_name)
            } else {
                match shared.apply(&mut st, vm_name, event, Some(reason)) {
                    Transition::Ignore => {
                        let entry = &st.runners[vm_name];
                        if !entry.stage.is_retiring() {
                            return false;
                        }
                        shared.claim_retire(&mut st, vm_name)
                    }
                    _ => shared.claim_retire(&mut st, vm_name),
                }
            }
        };
        if spawn {
            shared.spawn_retire(vm_name.to_owned());
        }
        true
    }

    /// The runners, sorted by name.
    pub fn runners(&self) -> Vec<RunnerSnapshot> {
        let st = self.shared.lock();
        let mut out: Vec<_> = st
            .runners
            .iter()
            .map(|(name, e)| RunnerSnapshot {
                name: name.clone(),
                stage: e.stage,
                since: e.since,
                created: e.created,
                adopted: e.adopted,
                job: e.job.clone(),
                trace: e.trace.clone(),
            })
            .collect();
        out.sort_by(|a, b| a.name.cmp(&b.name));
        out
    }

    /// Whether the fleet tracks a runner (or VM) of this name.
    pub fn owns(&self, name: &str) -> bool {
        self.shared.lock().runners.contains_key(name)
    }

    /// Runner names of this scale set that job messages mentioned but the fleet does not
    /// track (candidates for the reconciler's registration sweep).
    pub fn seen_runner_names(&self) -> Vec<String> {
        let st = self.shared.lock();
        let mut names: Vec<_> = st.seen_runner_names.keys().cloned().collect();
        names.sort();
        names
    }

    /// Whether job messages say a job runs on the runner `name`: a `JobStarted` named it
    /// and the same job's `JobCompleted` has not arrived (within the job retention). This,
    /// not the `busy` flag of GitHub's runner list (which reports scale-set runners idle
    /// while they run a job), is the controller's own evidence of a busy runner it does not track.
    pub fn job_running_on(&self, name: &str) -> bool {
        self.shared.lock().jobs.running_on(name)
    }

    /// Forgets a name returned by [`Fleet::seen_runner_names`] (its registration is handled).
    pub fn forget_seen_runner(&self, name: &str) {
        self.shared.lock().seen_runner_names.remove(name);
    }

    /// The latest statistics.
    pub fn statistics(&self) -> Statistics {
        self.shared.lock().statistics
    }

    /// Counters since creation.
    pub fn counters(&self) -> FleetCounters {
        self.shared.lock().counters.clone()
    }

    /// Waits until no provisioning or cleanup task runs.
    pub async fn wait_settled(&self) {
        loop {
            let notified = self.shared.settled.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.shared.lock().tasks == 0 {
                return;
            }
            notified.await;
        }
    }

    /// Shutdown: stop taking new work, stop provisioning (cleaning up what it created), let
    /// running cleanups finish until `deadline`, then stop them. Online runners — idle or
    /// running a job — are left alone: the next process adopts them.
    pub async fn drain(&self, deadline: Duration) {
        let shared = &self.shared;
        {
            let mut st = shared.lock();
            st.draining = true;
            for entry in st.runners.values_mut() {
                if entry.stage.is_provisioning() {
                    entry.cancelled = true;
                    entry.reason.get_or_insert(RetireReason::Cancelled);
                    entry.cancel.cancel();
                }
            }
        }
        if tokio::time::timeout(deadline, self.wait_settled()).await.is_err() {
            tracing::warn!(?deadline, "drain deadline passed; stopping cleanups");
            shared.shutdown.cancel();
            let _ = tokio::time::timeout(Duration::from_secs(5), self.wait_settled()).await;
        }
        shared.tracker.close();
    }
}

/// The reconciler acts on the fleet through this seam; each method is the inherent one.
#[async_trait::async_trait]
impl FleetControl for Fleet {
    fn owns(&self, name: &str) -> bool {
        Fleet::owns(self, name)
    }

    async fn adopt(&self, vm: Vm, runner: RunnerRecord, busy: bool) -> bool {
        Fleet::adopt(self, vm, runner, busy).await
    }

    async fn retire_vm(&self, vm_name: &str, reason: RetireReason) -> bool {
        Fleet::retire_vm(self, vm_name, reason).await
    }

    fn seen_runner_names(&self) -> Vec<String> {
        Fleet::seen_runner_names(self)
    }

    fn forget_seen_runner(&self, name: &str) {
        Fleet::forget_seen_runner(self, name)
    }

    fn job_running_on(&self, name: &str) -> bool {
        Fleet::job_running_on(self, name)
    }
}

impl Shared {
    pub(crate) fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub(crate) fn emit(&self, event: FleetEvent) {
        if let Some(observer) = &self.observer {
            observer.on_event(&event);
        }
    }

    /// Applies a lifecycle event to a tracked runner and reports the stage change.
    pub(crate) fn apply(
        &self,
        st: &mut State,
        name: &str,
        event: LifecycleEvent,
        reason: Option<RetireReason>,
    ) -> Transition {
        let Some(entry) = st.runners.get_mut(name) else { return Transition::Ignore };
        let now = Instant::now();
        let result = transition(entry.stage, event);
        match result {
            Transition::Ignore => {}
            Transition::To(stage) => {
                let since_previous = now.saturating_duration_since(entry.since);
                entry.stage = stage;
                entry.since = now;
                if stage.is_retiring() && entry.reason.is_none() {
                    entry.reason = reason;
                }
                if stage == RunnerStage::Busy {
                    // Back from a refused removal: a job runs after all.
                    entry.reason = None;
                    entry.retry_at = None;
                    self.version_gate.accepted(entry.runner_version.as_deref());
                }
                if stage.is_retiring() {
                    entry.cancel.cancel();
                }
                let event = FleetEvent::Stage {
                    runner: name.to_owned(),
                    stage,
                    since_created: now.saturating_duration_since(entry.created),
                    since_previous,
                    adopted: entry.adopted,
                };
                tracing::debug!(runner = %name, stage = stage.as_str(), "runner stage");
                self.emit(event);
            }
            Transition::Gone => {
                let entry = st.runners.remove(name).expect("checked above");
                let reason = entry.reason.or(reason).unwrap_or(RetireReason::Cancelled);
                *st.counters.retired.entry(reason).or_default() += 1;
                tracing::info!(runner = %name, reason = reason.as_str(), "runner gone");
                self.emit(FleetEvent::Gone {
                    runner: name.to_owned(),
                    reason,
                    since_created: now.saturating_duration_since(entry.created),
                });
            }
        }
        result
    }

    /// Marks a retiring runner's cleanup as taken; true when the caller must run it.
    pub(crate) fn claim_retire(&self, st: &mut State, name: &str) -> bool {
        match st.runners.get_mut(name) {
            Some(entry) if entry.stage.is_retiring() && !entry.retiring => {
                entry.retiring = true;
                entry.retry_at = None;
                true
            }
            _ => false,
        }
    }

    fn record_message(&self, st: &mut State, msg: &ScaleSetMessage) -> (Vec<i64>, Vec<String>) {
        let now = Instant::now();
        if msg.message_id >= st.last_message_id {
            st.statistics = msg.statistics;
            st.last_message_id = msg.message_id;
        }
        let mut offered = Vec::new();
        let mut retire = Vec::new();
        for job_message in &msg.job_messages {
            let key = job_message.job().and_then(job_key);
            match job_message {
                JobMessage::Available(available) => offered.push(available.job.runner_request_id),
                JobMessage::Assigned(_) => {
                    if let Some(key) = key
                        && st.jobs.record(&key, JobState::Assigned, now)
                    {
                        self.emit(FleetEvent::Job { job: key, kind: JobEventKind::Assigned });
                    }
                }
                JobMessage::Started(started) => {
                    let runner = started.runner_name.clone();
                    let trace = key.as_deref().map(|k| JobTrace::of(k, &started.job));
                    if let Some(key) = &key
                        && st.jobs.record(key, JobState::Started { runner: runner.clone() }, now)
                    {
                        if let Some(trace) = &trace {
                            trace::log_started(&self.config.scale_set_name, &runner, trace);
                        }
                        self.emit(FleetEvent::Job {
                            job: key.clone(),
                            kind: JobEventKind::Started { runner: runner.clone() },
                        });
                    }
                    if st.runners.contains_key(&runner) {
                        if self.apply(st, &runner, LifecycleEvent::JobStarted, None) != Transition::Ignore
                            && let Some(entry) = st.runners.get_mut(&runner)
                        {
                            entry.job = key.clone();
                            entry.trace = trace;
                        }
                    } else {
                        self.note_foreign(st, &runner, now);
                    }
                }
                JobMessage::Completed(completed) => {
                    let runner = completed.runner_name.clone();
                    if let Some(key) = &key
                        && st.jobs.record(key, JobState::Completed { result: completed.outcome() }, now)
                    {
                        let trace = JobTrace::of(key, &completed.job);
                        trace::log_completed(
                            &self.config.scale_set_name,
                            &runner,
                            &trace,
                            completed.outcome(),
                        );
                        self.emit(FleetEvent::Job {
                            job: key.clone(),
                            kind: JobEventKind::Completed {
                                result: completed.outcome(),
                                runner: runner.clone(),
                            },
                        });
                    }
                    if runner.is_empty() {
                        // A withdrawn assignment: its demand leaves the book; the plan below
                        // stops provisioning nobody needs any more.
                        continue;
                    }
                    if st.runners.contains_key(&runner) {
                        self.apply(
                            st,
                            &runner,
                            LifecycleEvent::JobCompleted,
                            Some(RetireReason::JobCompleted),
                        );
                        if self.claim_retire(st, &runner) {
                            retire.push(runner);
                        }
                    } else {
                        self.note_foreign(st, &runner, now);
                    }
                }
                JobMessage::Unknown { message_type, .. } => {
                    tracing::debug!(%message_type, "ignoring unknown job message type");
                }
            }
        }
        let mut to_acquire = Vec::new();
        if !st.draining {
            let fresh = st.jobs.fresh_requests(&offered);
            let stats = st.statistics;
            let committed = stats.total_assigned_jobs.saturating_add(stats.total_acquired_jobs);
            let capacity = self.config.scaling.max_runners.saturating_sub(committed) as usize;
            to_acquire = fresh.into_iter().take(capacity).collect();
        }
        (to_acquire, retire)
    }

    fn note_foreign(&self, st: &mut State, runner: &str, now: Instant) {
        if naming::is_owned_by(&self.config.scale_set_name, runner) {
            st.seen_runner_names.insert(runner.to_owned(), now);
        }
    }

    /// The level-triggered step: plan from the current view and act on it.
    pub(crate) fn plan_and_act(self: &Arc<Self>) {
        let mut provision = Vec::new();
        let mut retire = Vec::new();
        {
            let mut st = self.lock();
            if st.draining {
                return;
            }
            let now = Instant::now();
            let demand = Demand {
                statistics: st.statistics,
                known_waiting_jobs: st.jobs.known_waiting(now, self.config.statistics_lag_window),
            };
            let views: Vec<RunnerView> = st
                .runners
                .iter()
                .map(|(name, e)| RunnerView {
                    name: name.clone(),
                    phase: if e.cancelled {
                        crate::planner::RunnerPhase::Finishing
                    } else {
                        e.stage.phase(now.saturating_duration_since(e.since))
                    },
                    age: now.saturating_duration_since(e.created),
                })
                .collect();
            let plan = plan_runner_gap(&demand, &views, &self.config.scaling);
            let cancel = surplus_provisioning(&demand, &views, &self.config.scaling, &plan);
            // GitHub refusing the runner version holds new runners back (see `outdated`).
            let create = self.version_gate.permit_creates(plan.create, now);
            if create == 0 && plan.retire.is_empty() && plan.recycle.is_empty() && cancel == 0 {
                return;
            }
            tracing::info!(
                create,
                retire = plan.retire.len(),
                recycle = plan.recycle.len(),
                cancel,
                assigned = demand.statistics.total_assigned_jobs,
                running = demand.statistics.total_running_jobs,
                known_waiting = demand.known_waiting_jobs,
                "runner plan"
            );
            for _ in 0..create {
                let name = match self.fresh_name(&st) {
                    Ok(name) => name,
                    Err(e) => {
                        tracing::error!(error = &e as &dyn std::error::Error, "cannot name VMs");
                        break;
                    }
                };
                st.runners.insert(name.clone(), Entry::new(RunnerStage::Queued, now));
                st.counters.provisions_started += 1;
                self.emit(FleetEvent::Stage {
                    runner: name.clone(),
                    stage: RunnerStage::Queued,
                    since_created: Duration::ZERO,
                    since_previous: Duration::ZERO,
                    adopted: false,
                });
                provision.push(name);
            }
            let surplus = plan.retire.iter().map(|name| (name, RetireReason::Surplus));
            for name in &plan.recycle {
                tracing::info!(runner = %name, "old warm runner replaced; retiring it");
            }
            let stale = plan.recycle.iter().map(|name| (name, RetireReason::IdleTooLong));
            for (name, reason) in surplus.chain(stale) {
                self.apply(&mut st, name, LifecycleEvent::Retire, Some(reason));
                if self.claim_retire(&mut st, name) {
                    retire.push(name.clone());
                }
            }
            let mut candidates: Vec<(RunnerStage, Instant, String)> = st
                .runners
                .iter()
                .filter(|(_, e)| e.stage.is_provisioning() && !e.cancelled)
                .map(|(name, e)| (e.stage, e.created, name.clone()))
                .collect();
            // Least advanced first; among equals the youngest.
            candidates.sort_by(|a, b| a.0.cmp(&b.0).then(b.1.cmp(&a.1)).then(a.2.cmp(&b.2)));
            for (_, _, name) in candidates.into_iter().take(cancel as usize) {
                let entry = st.runners.get_mut(&name).expect("listed above");
                entry.cancelled = true;
                entry.reason = Some(RetireReason::Cancelled);
                entry.cancel.cancel();
                tracing::info!(runner = %name, "stopping provisioning: no demand for it");
            }
            self.emit(FleetEvent::Planned {
                create,
                retire: (plan.retire.len() + plan.recycle.len()) as u32,
                cancel,
            });
        }
        for name in provision {
            self.spawn_provision(name);
        }
        self.spawn_retires(retire);
    }

    fn fresh_name(&self, st: &State) -> Result<String, runner_core::VmBackendError> {
        let mut name = VmName::generate(&self.config.scale_set_name)?;
        while st.runners.contains_key(&name.to_string()) {
            name = name.regenerate();
        }
        Ok(name.to_string())
    }

    pub(crate) fn spawn_retires(self: &Arc<Self>, names: Vec<String>) {
        for name in names {
            self.spawn_retire(name);
        }
    }

    pub(crate) fn spawn_retire(self: &Arc<Self>, name: String) {
        let shared = Arc::clone(self);
        self.spawn_task(async move { shared.run_retire(&name).await });
    }

    fn spawn_provision(self: &Arc<Self>, name: String) {
        let shared = Arc::clone(self);
        self.spawn_task(async move { shared.provision(name).await });
    }

    fn spawn_task(self: &Arc<Self>, task: impl std::future::Future<Output = ()> + Send + 'static) {
        self.lock().tasks += 1;
        let guard = TaskGuard(Arc::clone(self));
        self.tracker.spawn(async move {
            let _guard = guard;
            task.await;
        });
    }

    fn retry_failed_cleanups(self: &Arc<Self>) {
        let now = Instant::now();
        let names: Vec<String> = {
            let mut st = self.lock();
            let due: Vec<String> = st
                .runners
                .iter()
                .filter(|(_, e)| {
                    e.stage.is_retiring() && !e.retiring && e.retry_at.is_none_or(|at| at <= now)
                })
                .map(|(name, _)| name.clone())
                .collect();
            due.into_iter().filter(|name| self.claim_retire(&mut st, name)).collect()
        };
        self.spawn_retires(names);
    }
}

struct TaskGuard(Arc<Shared>);

impl Drop for TaskGuard {
    fn drop(&mut self) {
        self.0.lock().tasks -= 1;
        self.0.settled.notify_waiters();
    }
}
