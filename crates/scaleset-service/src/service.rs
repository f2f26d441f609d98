//! The per-scale-set service: obtains the scale set, holds its message session (GitHub's
//! lock — one holder per scale set, so replicas run active/standby), runs the first
//! reconciliation, then turns messages, empty polls and ticks into fleet work.
//!
//! It owns the session lifecycle and nothing else: scaling decisions belong to the fleet
//! (provisioner), VM decisions to the reconciler. Errors never end the loop except those
//! that mean the scale set cannot be served at all (bad credentials, missing runner group).

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use backon::{BackoffBuilder, ExponentialBackoff, ExponentialBuilder};
use runner_core::{
    Label, MessageQueue, MessageSession, NewScaleSet, RunnerSetting, ScaleSet, ScaleSetApi, ScaleSetError,
    ScaleSetMessage, Statistics,
};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::health::Phase;

/// What the service needs from the provisioner.
#[async_trait]
pub trait RunnerFleet: Send + Sync {
    /// New statistics without job messages (session creation, empty poll).
    async fn on_statistics(&self, statistics: Statistics);
    /// A message batch; `queue` is for acquiring offered jobs.
    async fn handle_message(&self, message: &ScaleSetMessage, queue: &dyn MessageQueue);
    /// The periodic resync: plan again and probe running runners.
    async fn tick(&self);
    /// Stop taking new work; let in-flight cleanups finish within `deadline`.
    async fn drain(&self, deadline: Duration);
}

/// What the service needs from the reconciler.
#[async_trait]
pub trait Sweeper: Send + Sync {
    /// One reconciliation pass over the VMs this scale set owns.
    async fn sweep(&self);
}

/// Builds the fleet and sweeper of a scale set once its id is known (again when the scale
/// set was re-created with a new id).
pub trait FleetFactory: Send + Sync {
    /// The fleet and sweeper serving scale set `scale_set_id`.
    fn for_scale_set(&self, scale_set_id: i64) -> (Arc<dyn RunnerFleet>, Arc<dyn Sweeper>);
}

/// Opens the long-poll queue of a session (the concrete GitHub client does this).
pub trait QueueOpener: Send + Sync {
    /// A queue bound to `session`.
    fn open(&self, session: MessageSession) -> Arc<dyn MessageQueue>;
}

/// The scale set this service serves.
#[derive(Debug, Clone)]
pub struct ScaleSetSpec {
    /// Scale set name (= `runs-on` label and VM name prefix).
    pub name: String,
    /// Runner group id (`RUNNERS[].id`); 1 is the default group.
    pub runner_group_id: i64,
    /// Extra labels beyond the name.
    pub extra_labels: Vec<String>,
    /// Advertised capacity (`X-ScaleSetMaxCapacity`).
    pub max_runners: u32,
    /// Session owner name (hostname).
    pub owner_name: String,
    /// `MANAGE_RUNNER_SCALE_SETS`: delete and recreate the scale set at start (once per
    /// process) and delete it on orderly exit, like the Go integration.
    pub manage_scale_set: bool,
    /// `SESSION_CONFLICT_RECREATE_SCALE_SET`: on a session conflict, delete and recreate the
    /// scale set instead of standing by (the Go integration's escape; off by default).
    pub recreate_on_conflict: bool,
}

/// Timings of the loop.
#[derive(Debug, Clone, Copy)]
pub struct ServiceTimings {
    /// First retry delay after an error; doubles up to `max_backoff`.
    pub min_backoff: Duration,
    /// Longest retry delay.
    pub max_backoff: Duration,
    /// Fleet resync period.
    pub tick_interval: Duration,
    /// Reconciliation period (`VM_TRACKER_INTERVAL`); `None` disables reconciliation.
    pub reconcile_interval: Option<Duration>,
    /// How long shutdown waits for in-flight cleanups.
    pub drain_deadline: Duration,
}

/// The collaborators.
#[derive(Clone)]
pub struct ServiceDeps {
    /// Admin-token API.
    pub api: Arc<dyn ScaleSetApi>,
    /// Opens session queues.
    pub queues: Arc<dyn QueueOpener>,
    /// Builds the provisioner and reconciler of the scale set.
    pub fleets: Arc<dyn FleetFactory>,
    /// Called on every turn of the loops (liveness).
    pub heartbeat: Arc<dyn Fn() + Send + Sync>,
}

/// Why a scale set cannot be served.
#[derive(Debug, thiserror::Error)]
#[error("scale set {scale_set} cannot be served")]
pub struct FatalError {
    /// The scale set.
    pub scale_set: String,
    /// The cause.
    #[source]
    pub source: ScaleSetError,
}

/// Runs the service until `cancel` fires (then exits cleanly: session deleted, fleet
/// drained, running jobs left running) or a fatal error.
pub async fn run_scale_set(
    spec: ScaleSetSpec,
    deps: ServiceDeps,
    timings: ServiceTimings,
    phase: watch::Sender<Phase>,
    cancel: CancellationToken,
) -> Result<(), FatalError> {
    let fatal = |source| FatalError { scale_set: spec.name.clone(), source };
    let mut backoff = Backoff::new(timings);
    let mut last_message_id = 0_i64;
    let mut fleet: Option<Arc<dyn RunnerFleet>> = None;
    let mut recreate = spec.manage_scale_set;
    let result = loop {
        (deps.heartbeat)();
        if cancel.is_cancelled() {
            break Ok(());
        }
        phase.send_replace(Phase::Starting);
        if std::mem::take(&mut recreate) {
            warn!(scale_set = %spec.name, "MANAGE_RUNNER_SCALE_SETS=true: deleting and recreating the scale set; runners of jobs still running cannot be adopted");
            delete_scale_set(&spec, deps.api.as_ref()).await;
        }
        let scale_set = match ensure_scale_set(&spec, deps.api.as_ref()).await {
            Ok(s) => s,
            Err(e) if is_fatal(&e) => break Err(fatal(e)),
            Err(e) => {
                warn!(scale_set = %spec.name, error = &e as &dyn std::error::Error, "cannot resolve scale set; retrying");
                phase.send_replace(Phase::WaitingForSession(format!("scale set lookup failed: {e}")));
                if !backoff.wait(&cancel).await {
                    break Ok(());
                }
                continue;
            }
        };
        let session = match deps.api.create_session(scale_set.id, &spec.owner_name).await {
            Ok(session) => session,
            Err(ScaleSetError::SessionConflict) if spec.recreate_on_conflict => {
                warn!(scale_set = %spec.name, "another process holds the message session; recreating the scale set (SESSION_CONFLICT_RECREATE_SCALE_SET=true)");
                phase.send_replace(Phase::WaitingForSession(
                    "recreating the scale set after a session conflict".into(),
                ));
                recreate = true;
                if !backoff.wait(&cancel).await {
                    break Ok(());
                }
                continue;
            }
            Err(ScaleSetError::SessionConflict) => {
                info!(scale_set = %spec.name, "another process holds the message session; standing by");
                phase.send_replace(Phase::WaitingForSession("another process holds the session".into()));
                if !backoff.wait(&cancel).await {
                    break Ok(());
                }
                continue;
            }
            Err(e) if is_fatal(&e) => break Err(fatal(e)),
            Err(e) => {
                warn!(scale_set = %spec.name, error = &e as &dyn std::error::Error, "session creation failed; retrying");
                phase.send_replace(Phase::WaitingForSession(format!("session creation failed: {e}")));
                if !backoff.wait(&cancel).await {
                    break Ok(());
                }
                continue;
            }
        };
        backoff.reset();
        info!(scale_set = %spec.name, session_id = %session.session_id, "message session acquired");
        let (current, sweeper) = deps.fleets.for_scale_set(scale_set.id);
        fleet = Some(current.clone());
        let queue = deps.queues.open(session.clone());
        let serving =
            Serving { fleet: current, sweeper, queue: queue.as_ref(), heartbeat: deps.heartbeat.as_ref() };
        let outcome = serve_session(&spec, serving, timings, &phase, &cancel, &mut last_message_id).await;
        let closing = queue.session();
        match outcome {
            SessionEnd::Shutdown => {
                delete_session(deps.api.as_ref(), &closing).await;
                break Ok(());
            }
            SessionEnd::Lost(reason) => {
                warn!(scale_set = %spec.name, %reason, "message session lost; creating a new one");
                phase.send_replace(Phase::WaitingForSession(reason));
            }
            SessionEnd::Fatal(e) => {
                delete_session(deps.api.as_ref(), &closing).await;
                break Err(fatal(e));
            }
        }
    };
    if result.is_ok() && spec.manage_scale_set {
        delete_scale_set(&spec, deps.api.as_ref()).await;
    }
    if let Some(fleet) = fleet {
        fleet.drain(timings.drain_deadline).await;
    }
    phase.send_replace(match &result {
        Ok(()) => Phase::Stopping,
        Err(e) => Phase::Failed(format!("fatal: {}", e.source)),
    });
    result
}

enum SessionEnd {
    Shutdown,
    Lost(String),
    Fatal(ScaleSetError),
}

/// What serves one session.
struct Serving<'a> {
    fleet: Arc<dyn RunnerFleet>,
    sweeper: Arc<dyn Sweeper>,
    queue: &'a dyn MessageQueue,
    heartbeat: &'a (dyn Fn() + Send + Sync),
}

async fn serve_session(
    spec: &ScaleSetSpec,
    serving: Serving<'_>,
    timings: ServiceTimings,
    phase: &watch::Sender<Phase>,
    cancel: &CancellationToken,
    last_message_id: &mut i64,
) -> SessionEnd {
    let Serving { fleet, sweeper, queue, heartbeat } = serving;
    let session_cancel = cancel.child_token();
    let _stop_background = session_cancel.clone().drop_guard();
    let mut statistics = queue.session().statistics;
    fleet.on_statistics(statistics).await;

    if let Some(interval) = timings.reconcile_interval {
        phase.send_replace(Phase::Reconciling);
        sweeper.sweep().await;
        tokio::spawn(periodic(interval, session_cancel.clone(), {
            let sweeper = sweeper.clone();
            move || {
                let sweeper = sweeper.clone();
                async move { sweeper.sweep().await }
            }
        }));
    }
    tokio::spawn(periodic(timings.tick_interval, session_cancel.clone(), {
        let fleet = fleet.clone();
        move || {
            let fleet = fleet.clone();
            async move { fleet.tick().await }
        }
    }));
    phase.send_replace(Phase::Ready);

    let mut backoff = Backoff::new(timings);
    loop {
        heartbeat();
        let polled = tokio::select! {
            _ = cancel.cancelled() => return SessionEnd::Shutdown,
            polled = queue.get_message(*last_message_id, spec.max_runners) => polled,
        };
        match polled {
            Ok(Some(message)) => {
                backoff.reset();
                debug!(scale_set = %spec.name, message_id = message.message_id, jobs = message.job_messages.len(), "message");
                if message.message_type != runner_core::messages::JOB_MESSAGES_TYPE {
                    warn!(scale_set = %spec.name, message_type = %message.message_type, "unknown message type; acknowledging and skipping");
                } else {
                    statistics = message.statistics;
                    fleet.handle_message(&message, queue).await;
                }
                *last_message_id = message.message_id;
                if let Err(e) = queue.delete_message(message.message_id).await {
                    warn!(scale_set = %spec.name, message_id = message.message_id, error = &e as &dyn std::error::Error, "acknowledging the message failed; it may be redelivered");
                }
            }
            Ok(None) => {
                backoff.reset();
                fleet.on_statistics(statistics).await;
            }
            Err(ScaleSetError::SessionNotFound | ScaleSetError::SessionExpired) => {
                return SessionEnd::Lost("the session no longer exists".into());
            }
            Err(ScaleSetError::ScaleSetNotFound) => {
                return SessionEnd::Lost("the scale set no longer exists".into());
            }
            Err(e) if is_fatal(&e) => return SessionEnd::Fatal(e),
            Err(e) => {
                warn!(scale_set = %spec.name, error = &e as &dyn std::error::Error, "polling failed; retrying");
                if !backoff.wait(cancel).await {
                    return SessionEnd::Shutdown;
                }
            }
        }
    }
}

/// Errors after which retrying cannot help: the operator must fix credentials or config.
/// A rate limit (`RateLimited`) is never one: the client waits it out and says so.
fn is_fatal(e: &ScaleSetError) -> bool {
    matches!(
        e,
        ScaleSetError::Unauthorized { .. } | ScaleSetError::ScopeNotFound { .. } | ScaleSetError::Config(_)
    )
}

async fn ensure_scale_set(spec: &ScaleSetSpec, api: &dyn ScaleSetApi) -> Result<ScaleSet, ScaleSetError> {
    if let Some(existing) = api.get_scale_set(spec.runner_group_id, &spec.name).await? {
        return Ok(existing);
    }
    let labels =
        std::iter::once(spec.name.clone()).chain(spec.extra_labels.iter().cloned()).map(Label::system);
    let created = api
        .create_scale_set(&NewScaleSet {
            name: spec.name.clone(),
            runner_group_id: spec.runner_group_id,
            labels: labels.collect(),
            runner_setting: RunnerSetting { disable_update: true },
        })
        .await?;
    info!(scale_set = %spec.name, id = created.id, "created runner scale set");
    Ok(created)
}

async fn delete_session(api: &dyn ScaleSetApi, session: &MessageSession) {
    match tokio::time::timeout(Duration::from_secs(10), api.delete_session(session)).await {
        Ok(Ok(())) => info!(session_id = %session.session_id, "message session deleted"),
        Ok(Err(e)) => warn!(error = &e as &dyn std::error::Error, "deleting the message session failed"),
        Err(_) => warn!("deleting the message session timed out"),
    }
}

async fn delete_scale_set(spec: &ScaleSetSpec, api: &dyn ScaleSetApi) {
    let result = async {
        if let Some(scale_set) = api.get_scale_set(spec.runner_group_id, &spec.name).await? {
            api.delete_scale_set(scale_set.id).await?;
        }
        Ok::<_, ScaleSetError>(())
    };
    if let Err(e) = result.await {
        warn!(scale_set = %spec.name, error = &e as &dyn std::error::Error, "deleting the scale set failed; keeping it");
    }
}

async fn periodic<F, Fut>(interval: Duration, cancel: CancellationToken, mut activation: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = ticker.tick() => activation().await,
        }
    }
}

/// Exponential backoff with jitter (`backon`), waiting on tokio time and cancellation.
///
/// The n-th wait is uniform in `[d/2, d)` with `d = min_backoff · 2ⁿ` capped at
/// `max_backoff`: backon adds a jitter of up to the current delay, so the schedule is built
/// from half the configured delays.
struct Backoff {
    schedule: ExponentialBuilder,
    delays: ExponentialBackoff,
    max: Duration,
}

impl Backoff {
    fn new(timings: ServiceTimings) -> Self {
        let schedule = ExponentialBuilder::new()
            .with_min_delay(timings.min_backoff / 2)
            .with_max_delay(timings.max_backoff / 2)
            .with_factor(2.0)
            .with_jitter()
            .without_max_times();
        Self { schedule, delays: schedule.build(), max: timings.max_backoff }
    }

    fn reset(&mut self) {
        self.delays = self.schedule.build();
    }

    /// Sleeps; false when cancelled meanwhile.
    async fn wait(&mut self, cancel: &CancellationToken) -> bool {
        // Unbounded schedule: it never runs dry, the fallback is only for the type.
        let delay = self.delays.next().unwrap_or(self.max);
        tokio::select! {
            _ = cancel.cancelled() => false,
            _ = tokio::time::sleep(delay) => true,
        }
    }
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod backoff_tests {
    use super::*;

    fn timings() -> ServiceTimings {
        ServiceTimings {
            min_backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(30),
            tick_interval: Duration::from_secs(5),
            reconcile_interval: None,
            drain_deadline: Duration::from_secs(1),
        }
    }

    async fn timed_wait(backoff: &mut Backoff) -> Duration {
        let started = tokio::time::Instant::now();
        assert!(backoff.wait(&CancellationToken::new()).await);
        started.elapsed()
    }

    #[tokio::test(start_paused = true)]
    async fn waits_double_from_min_to_max_with_jitter_in_the_upper_half() {
        let mut backoff = Backoff::new(timings());
        for nominal in [1, 2, 4, 8, 16, 30, 30, 30].map(Duration::from_secs) {
            let waited = timed_wait(&mut backoff).await;
            assert!(waited >= nominal / 2 && waited <= nominal, "waited {waited:?}, nominal {nominal:?}");
        }
        backoff.reset();
        let waited = timed_wait(&mut backoff).await;
        assert!(waited <= Duration::from_secs(1), "a reset starts again at the minimum: {waited:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn a_cancelled_wait_returns_false_at_once() {
        let mut backoff = Backoff::new(timings());
        let cancel = CancellationToken::new();
        cancel.cancel();
        let started = tokio::time::Instant::now();
        assert!(!backoff.wait(&cancel).await);
        assert_eq!(started.elapsed(), Duration::ZERO);
    }
}
