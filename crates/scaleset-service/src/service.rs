//! The per-scale-set service: obtains the scale set, holds its message session (GitHub's
//! lock — one holder per scale set, so replicas run active/standby), runs the first
//! reconciliation, then turns messages, empty polls and ticks into fleet work.
//!
//! It owns the session lifecycle and nothing else: scaling decisions belong to the fleet
//! (provisioner), VM decisions to the reconciler. Errors never end the loop except an
//! invalid GitHub configuration and credentials rejected before the scale set was ever
//! obtained. Later credential failures degrade the scale set (long backoff, recovers by
//! itself); everything else (rate limits, 5xx, timeouts) is retried. Every GitHub call is
//! raced against cancellation so shutdown never waits for GitHub.

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use backon::{BackoffBuilder, ExponentialBackoff, ExponentialBuilder};
use futures::FutureExt;
use runner_core::{
    Label, MessageQueue, MessageSession, NewScaleSet, RunnerSetting, ScaleSet, ScaleSetApi, ScaleSetError,
    ScaleSetMessage, Statistics,
};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, warn};

use crate::health::Phase;

/// Why handling a message or a reconciliation pass failed, in words for logs and `/readyz`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct WorkError(pub String);

/// What the service needs from the provisioner.
#[async_trait]
pub trait RunnerFleet: Send + Sync {
    /// New statistics without job messages (session creation, empty poll).
    async fn on_statistics(&self, statistics: Statistics);
    /// A message batch; `queue` is for acquiring offered jobs. Handling must be idempotent:
    /// after an error the same message is handled again (a bounded number of times).
    async fn handle_message(
        &self,
        message: &ScaleSetMessage,
        queue: &dyn MessageQueue,
    ) -> Result<(), WorkError>;
    /// The periodic resync: plan again and probe running runners.
    async fn tick(&self);
    /// Stop taking new work; let in-flight cleanups finish within `deadline`.
    async fn drain(&self, deadline: Duration);
}

/// What the service needs from the reconciler.
#[async_trait]
pub trait Sweeper: Send + Sync {
    /// One reconciliation pass over the VMs this scale set owns; an error means the pass
    /// could not look at the VMs (readiness waits for a pass that could).
    async fn sweep(&self) -> Result<(), WorkError>;
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

/// Longest sleep between two heartbeats while waiting to retry.
const HEARTBEAT_STEP: Duration = Duration::from_secs(30);

/// Longest wait between attempts while GitHub rejects the credentials at run time.
pub const CREDENTIALS_MAX_BACKOFF: Duration = Duration::from_secs(300);

/// Attempts at handling one message before it is logged, counted and acknowledged
/// unhandled, so that a message that always fails cannot block the scale set.
pub const MESSAGE_ATTEMPTS: u32 = 3;

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
    /// The settings an operator fixes when GitHub rejects the credentials at start-up
    /// (named in the fatal error), e.g. `GITHUB_PAT and GITHUB_URL`.
    pub credentials_settings: String,
}

/// Timings of the loop.
#[derive(Debug, Clone, Copy)]
pub struct ServiceTimings {
    /// First retry delay after an error; doubles up to `max_backoff`.
    pub min_backoff: Duration,
    /// Longest retry delay (credential failures use [`CREDENTIALS_MAX_BACKOFF`]).
    pub max_backoff: Duration,
    /// How often a standby asks for the session again (jittered between half and all of it).
    pub standby_retry: Duration,
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
    /// Called once per message acknowledged unhandled after [`MESSAGE_ATTEMPTS`] failures.
    pub poison_message: Arc<dyn Fn() + Send + Sync>,
}

/// Why a scale set cannot be served.
#[derive(Debug, thiserror::Error)]
#[error("scale set {scale_set} cannot be served: {source}{hint}")]
pub struct FatalError {
    /// The scale set.
    pub scale_set: String,
    /// What the operator should fix, as " — check …" (empty when nothing specific).
    pub hint: String,
    /// The cause.
    pub source: ScaleSetError,
}

/// What a failed GitHub call means for the loop.
enum Trouble {
    /// Retrying cannot help (invalid configuration, or credentials rejected before the
    /// scale set was ever obtained).
    Fatal(ScaleSetError),
    /// Credentials rejected at run time: degraded, retry with the long backoff.
    Credentials(String),
    /// Anything else: retry with the ordinary backoff.
    Transient(String),
}

fn classify(e: ScaleSetError, started: bool) -> Trouble {
    match e {
        ScaleSetError::Config(_) => Trouble::Fatal(e),
        ScaleSetError::Unauthorized { .. } | ScaleSetError::ScopeNotFound { .. } if !started => {
            Trouble::Fatal(e)
        }
        ScaleSetError::Unauthorized { .. } => Trouble::Credentials(e.to_string()),
        e => Trouble::Transient(e.to_string()),
    }
}

/// The per-scale-set loop's state between attempts.
struct Attempts<'a> {
    spec: &'a ScaleSetSpec,
    phase: &'a watch::Sender<Phase>,
    cancel: &'a CancellationToken,
    heartbeat: &'a (dyn Fn() + Send + Sync),
    backoff: Backoff,
    credentials_backoff: Backoff,
    /// A GitHub call for this scale set succeeded once: from then on rejected credentials
    /// degrade the scale set instead of ending the process.
    started: bool,
}

impl Attempts<'_> {
    /// Reports `e` (what was being done: `doing`) and waits before the next attempt.
    /// `Err` ends the loop: `Ok(())` on shutdown, the fatal error otherwise.
    async fn after_failure(&mut self, doing: &str, e: ScaleSetError) -> Result<(), Option<FatalError>> {
        let name = &self.spec.name;
        let waited = match classify(e, self.started) {
            Trouble::Fatal(source) => {
                let hint = match source {
                    ScaleSetError::Unauthorized { .. } => {
                        format!(" — check {}", self.spec.credentials_settings)
                    }
                    _ => String::new(),
                };
                return Err(Some(FatalError { scale_set: name.clone(), hint, source }));
            }
            Trouble::Credentials(reason) => {
                self.backoff.reset();
                let delay = self.credentials_backoff.next_delay();
                warn!(scale_set = %name, error = %reason, retry_in_s = delay.as_secs(), "{doing}: GitHub rejected the credentials; scale set degraded, retrying (nothing is deleted meanwhile)");
                self.phase.send_replace(Phase::Degraded(format!("{doing}: {reason}")));
                self.sleep(delay).await
            }
            Trouble::Transient(reason) => {
                self.credentials_backoff.reset();
                let delay = self.backoff.next_delay();
                warn!(scale_set = %name, error = %reason, retry_in_ms = delay.as_millis() as u64, "{doing} failed; retrying");
                self.phase.send_replace(Phase::Retrying(format!("{doing} failed: {reason}")));
                self.sleep(delay).await
            }
        };
        if waited { Ok(()) } else { Err(None) }
    }

    /// Sleeps `delay`, beating the heartbeat at least every [`HEARTBEAT_STEP`] (a
    /// degraded scale set waits longer than the liveness limit allows silence); false
    /// when cancelled meanwhile.
    async fn sleep(&self, delay: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + delay;
        loop {
            (self.heartbeat)();
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            if left.is_zero() {
                return true;
            }
            if !sleep_unless_cancelled(left.min(HEARTBEAT_STEP), self.cancel).await {
                return false;
            }
        }
    }

    fn succeeded(&mut self) {
        self.started = true;
        self.backoff.reset();
        self.credentials_backoff.reset();
    }
}

/// Runs `work` unless `cancel` fires first (then `None`: the work is dropped at its
/// current await, so no further request is sent).
async fn unless_cancelled<T>(cancel: &CancellationToken, work: impl Future<Output = T>) -> Option<T> {
    tokio::select! {
        biased;
        _ = cancel.cancelled() => None,
        out = work => Some(out),
    }
}

/// Runs the service until `cancel` fires (then exits cleanly: session deleted, fleet
/// drained, running jobs left running) or a fatal error.
///
/// Every GitHub call is raced against `cancel`; after it fires only the session delete
/// (bounded by [`DELETE_SESSION_TIMEOUT`]) and the fleet drain (`drain_deadline`) run.
pub async fn run_scale_set(
    spec: ScaleSetSpec,
    deps: ServiceDeps,
    timings: ServiceTimings,
    phase: watch::Sender<Phase>,
    cancel: CancellationToken,
) -> Result<(), FatalError> {
    let mut attempts = Attempts {
        spec: &spec,
        phase: &phase,
        cancel: &cancel,
        heartbeat: deps.heartbeat.as_ref(),
        backoff: Backoff::new(timings.min_backoff, timings.max_backoff),
        credentials_backoff: Backoff::new(timings.min_backoff, CREDENTIALS_MAX_BACKOFF),
        started: false,
    };
    let mut last_message_id = 0_i64;
    let mut fleet: Option<Arc<dyn RunnerFleet>> = None;
    let mut recreate = spec.manage_scale_set;
    // A session of ours that may still exist server-side (lost to a persistent queue 401):
    // deleted before a new one is created, or GitHub would answer 409 to ourselves.
    let mut stale_session: Option<MessageSession> = None;
    let result: Result<(), FatalError> = loop {
        (deps.heartbeat)();
        if cancel.is_cancelled() {
            break Ok(());
        }
        if std::mem::take(&mut recreate) {
            warn!(scale_set = %spec.name, "MANAGE_RUNNER_SCALE_SETS=true: deleting and recreating the scale set; runners of jobs still running cannot be adopted");
            if unless_cancelled(&cancel, delete_scale_set(&spec, deps.api.as_ref())).await.is_none() {
                break Ok(());
            }
        }
        let scale_set = match unless_cancelled(&cancel, ensure_scale_set(&spec, deps.api.as_ref())).await {
            None => break Ok(()),
            Some(Ok(s)) => s,
            Some(Err(e)) => match attempts.after_failure("resolving the scale set", e).await {
                Ok(()) => continue,
                Err(fatal) => break fatal.map_or(Ok(()), Err),
            },
        };
        attempts.started = true;
        if let Some(stale) = stale_session.take()
            && !delete_session(deps.api.as_ref(), &stale, &cancel).await
        {
            stale_session = Some(stale);
        }
        let session = match unless_cancelled(&cancel, deps.api.create_session(scale_set.id, &spec.owner_name))
            .await
        {
            None => break Ok(()),
            Some(Ok(session)) => session,
            Some(Err(ScaleSetError::SessionConflict)) if spec.recreate_on_conflict => {
                warn!(scale_set = %spec.name, "another process holds the message session; recreating the scale set (SESSION_CONFLICT_RECREATE_SCALE_SET=true)");
                phase.send_replace(Phase::Retrying(
                    "recreating the scale set after a session conflict".into(),
                ));
                recreate = true;
                let delay = attempts.backoff.next_delay();
                if !attempts.sleep(delay).await {
                    break Ok(());
                }
                continue;
            }
            Some(Err(ScaleSetError::SessionConflict)) => {
                attempts.succeeded();
                if phase.borrow().clone() != Phase::Standby {
                    info!(scale_set = %spec.name, "another process holds the message session; standing by");
                }
                phase.send_replace(Phase::Standby);
                // A short, jittered cadence: a released session is taken over within
                // seconds, and standbys do not ask in lock-step.
                let delay = timings.standby_retry.mul_f64(rand::random_range(0.5..=1.0));
                if !sleep_unless_cancelled(delay, &cancel).await {
                    break Ok(());
                }
                continue;
            }
            Some(Err(e)) => match attempts.after_failure("creating the message session", e).await {
                Ok(()) => continue,
                Err(fatal) => break fatal.map_or(Ok(()), Err),
            },
        };
        attempts.succeeded();
        info!(scale_set = %spec.name, session_id = %session.session_id, "message session acquired");
        let (current, sweeper) = deps.fleets.for_scale_set(scale_set.id);
        fleet = Some(current.clone());
        let queue = deps.queues.open(session.clone());
        let serving = Serving {
            fleet: current,
            sweeper,
            queue: queue.as_ref(),
            heartbeat: deps.heartbeat.as_ref(),
            poison_message: deps.poison_message.as_ref(),
        };
        let outcome = serve_session(&spec, serving, timings, &phase, &cancel, &mut last_message_id).await;
        let closing = queue.session();
        match outcome {
            SessionEnd::Shutdown => {
                delete_session(deps.api.as_ref(), &closing, &CancellationToken::new()).await;
                break Ok(());
            }
            SessionEnd::Lost(reason) => {
                warn!(scale_set = %spec.name, %reason, "message session lost; creating a new one");
                phase.send_replace(Phase::Retrying(reason));
            }
            SessionEnd::Rejected(e) => {
                warn!(scale_set = %spec.name, error = %e, "the queue token is still rejected after a session refresh; re-creating the session (the message cursor is kept)");
                stale_session = Some(closing);
                phase.send_replace(Phase::Retrying(format!("re-creating the message session: {e}")));
            }
        }
    };
    if result.is_ok() && spec.manage_scale_set {
        let bounded =
            tokio::time::timeout(DELETE_SESSION_TIMEOUT, delete_scale_set(&spec, deps.api.as_ref()));
        if bounded.await.is_err() {
            warn!(scale_set = %spec.name, "deleting the scale set timed out; keeping it");
        }
    }
    if let Some(fleet) = fleet {
        fleet.drain(timings.drain_deadline).await;
    }
    let reason = match &result {
        Ok(()) => "shut down".to_owned(),
        Err(e) => format!("fatal: {e}"),
    };
    phase.send_replace(Phase::Stopped(reason));
    result
}

/// How long deleting the session (and, with `MANAGE_RUNNER_SCALE_SETS`, the scale set)
/// may take at shutdown.
pub const DELETE_SESSION_TIMEOUT: Duration = Duration::from_secs(10);

enum SessionEnd {
    Shutdown,
    Lost(String),
    /// The queue token was rejected even after a session refresh.
    Rejected(ScaleSetError),
}

/// What serves one session.
struct Serving<'a> {
    fleet: Arc<dyn RunnerFleet>,
    sweeper: Arc<dyn Sweeper>,
    queue: &'a dyn MessageQueue,
    heartbeat: &'a (dyn Fn() + Send + Sync),
    poison_message: &'a (dyn Fn() + Send + Sync),
}

/// Serves one session. Background work (ticks, reconciliation passes) runs under a child
/// token of the session: when the session ends, for any reason, an in-flight pass is
/// dropped at its next await and no further pass starts.
async fn serve_session(
    spec: &ScaleSetSpec,
    serving: Serving<'_>,
    timings: ServiceTimings,
    phase: &watch::Sender<Phase>,
    cancel: &CancellationToken,
    last_message_id: &mut i64,
) -> SessionEnd {
    let Serving { fleet, sweeper, queue, heartbeat, poison_message } = serving;
    let session_cancel = cancel.child_token();
    let _stop_background = session_cancel.clone().drop_guard();
    let mut statistics = queue.session().statistics;
    if unless_cancelled(cancel, fleet.on_statistics(statistics)).await.is_none() {
        return SessionEnd::Shutdown;
    }

    if let Some(interval) = timings.reconcile_interval {
        phase.send_replace(Phase::Reconciling);
        let first = match unless_cancelled(cancel, sweeper.sweep()).await {
            None => return SessionEnd::Shutdown,
            Some(result) => result,
        };
        let reconciled = Arc::new(watch::Sender::new(first.is_ok()));
        match first {
            Ok(()) => {
                phase.send_replace(Phase::Serving);
            }
            Err(e) => {
                warn!(scale_set = %spec.name, error = %e, "the first reconciliation failed; serving jobs, not ready until a pass succeeds");
                phase.send_replace(Phase::ReconcileFailed(e.0));
            }
        }
        let phase_of_pass = phase.clone();
        tokio::spawn(periodic(interval, session_cancel.clone(), {
            let sweeper = sweeper.clone();
            move || {
                let sweeper = sweeper.clone();
                let phase = phase_of_pass.clone();
                let reconciled = reconciled.clone();
                async move {
                    let result = sweeper.sweep().await;
                    if result.is_ok() && !*reconciled.borrow() {
                        reconciled.send_replace(true);
                        phase.send_replace(Phase::Serving);
                    }
                }
            }
        }));
    } else {
        phase.send_replace(Phase::Serving);
    }
    tokio::spawn(periodic(timings.tick_interval, session_cancel.clone(), {
        let fleet = fleet.clone();
        move || {
            let fleet = fleet.clone();
            async move { fleet.tick().await }
        }
    }));

    let mut backoff = Backoff::new(timings.min_backoff, timings.max_backoff);
    loop {
        heartbeat();
        let polled =
            match unless_cancelled(cancel, queue.get_message(*last_message_id, spec.max_runners)).await {
                None => return SessionEnd::Shutdown,
                Some(polled) => polled,
            };
        match polled {
            Ok(Some(message)) => {
                backoff.reset();
                debug!(scale_set = %spec.name, message_id = message.message_id, jobs = message.job_messages.len(), "message");
                if message.message_type != runner_core::messages::JOB_MESSAGES_TYPE {
                    warn!(scale_set = %spec.name, message_type = %message.message_type, "unknown message type; acknowledging and skipping");
                } else {
                    statistics = message.statistics;
                    let handled = handle_with_retries(spec, fleet.as_ref(), &message, queue, timings, cancel);
                    match handled.await {
                        None => return SessionEnd::Shutdown,
                        Some(Ok(())) => {}
                        Some(Err(e)) => {
                            error!(scale_set = %spec.name, message_id = message.message_id, attempts = MESSAGE_ATTEMPTS, error = %e, message = ?message, "giving up on a message that failed every time; acknowledging it unhandled");
                            poison_message();
                        }
                    }
                }
                *last_message_id = message.message_id;
                match unless_cancelled(cancel, queue.delete_message(message.message_id)).await {
                    None => return SessionEnd::Shutdown,
                    Some(Ok(())) => {}
                    Some(Err(e)) => {
                        warn!(scale_set = %spec.name, message_id = message.message_id, error = &e as &dyn std::error::Error, "acknowledging the message failed; it may be redelivered")
                    }
                }
            }
            Ok(None) => {
                backoff.reset();
                if unless_cancelled(cancel, fleet.on_statistics(statistics)).await.is_none() {
                    return SessionEnd::Shutdown;
                }
            }
            Err(ScaleSetError::SessionNotFound | ScaleSetError::SessionExpired) => {
                return SessionEnd::Lost("the session no longer exists".into());
            }
            Err(ScaleSetError::ScaleSetNotFound) => {
                return SessionEnd::Lost("the scale set no longer exists".into());
            }
            Err(e @ ScaleSetError::Unauthorized { .. }) => return SessionEnd::Rejected(e),
            Err(e) => {
                warn!(scale_set = %spec.name, error = &e as &dyn std::error::Error, "polling failed; retrying");
                if !sleep_unless_cancelled(backoff.next_delay(), cancel).await {
                    return SessionEnd::Shutdown;
                }
            }
        }
    }
}

/// Handles `message` up to [`MESSAGE_ATTEMPTS`] times (a panic counts as a failure);
/// `None` when cancelled meanwhile, else the last error.
async fn handle_with_retries(
    spec: &ScaleSetSpec,
    fleet: &dyn RunnerFleet,
    message: &ScaleSetMessage,
    queue: &dyn MessageQueue,
    timings: ServiceTimings,
    cancel: &CancellationToken,
) -> Option<Result<(), WorkError>> {
    let mut backoff = Backoff::new(timings.min_backoff, timings.max_backoff);
    let mut attempt = 1;
    loop {
        let handling = AssertUnwindSafe(fleet.handle_message(message, queue)).catch_unwind();
        let error = match unless_cancelled(cancel, handling).await? {
            Ok(Ok(())) => return Some(Ok(())),
            Ok(Err(e)) => e,
            Err(panic) => WorkError(format!("handling panicked: {}", panic_text(panic.as_ref()))),
        };
        if attempt >= MESSAGE_ATTEMPTS {
            return Some(Err(error));
        }
        warn!(scale_set = %spec.name, message_id = message.message_id, attempt, error = %error, "handling a message failed; trying again");
        attempt += 1;
        if !sleep_unless_cancelled(backoff.next_delay(), cancel).await {
            return None;
        }
    }
}

fn panic_text(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "(no message)".into())
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

/// Deletes `session`, bounded by [`DELETE_SESSION_TIMEOUT`] and `cancel`; true when it is
/// gone (deleted now or already).
async fn delete_session(api: &dyn ScaleSetApi, session: &MessageSession, cancel: &CancellationToken) -> bool {
    let bounded = tokio::time::timeout(DELETE_SESSION_TIMEOUT, api.delete_session(session));
    match unless_cancelled(cancel, bounded).await {
        Some(Ok(Ok(()))) => {
            info!(session_id = %session.session_id, "message session deleted");
            true
        }
        Some(Ok(Err(ScaleSetError::SessionNotFound | ScaleSetError::SessionExpired))) => true,
        Some(Ok(Err(e))) => {
            warn!(error = &e as &dyn std::error::Error, "deleting the message session failed");
            false
        }
        Some(Err(_)) => {
            warn!("deleting the message session timed out");
            false
        }
        None => false,
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

/// Runs `activation` every `interval` until `cancel` fires; an activation in flight when
/// it fires is dropped at its next await.
async fn periodic<F, Fut>(interval: Duration, cancel: CancellationToken, mut activation: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = ()>,
{
    let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = ticker.tick() => {
                if unless_cancelled(&cancel, activation()).await.is_none() {
                    return;
                }
            }
        }
    }
}

/// Sleeps `delay`; false when cancelled meanwhile.
async fn sleep_unless_cancelled(delay: Duration, cancel: &CancellationToken) -> bool {
    unless_cancelled(cancel, tokio::time::sleep(delay)).await.is_some()
}

/// Exponential backoff with jitter (`backon`), on tokio time.
///
/// The n-th delay is uniform in `[d/2, d)` with `d = min · 2ⁿ` capped at `max`: backon
/// adds a jitter of up to the current delay, so the schedule is built from half the
/// configured delays.
struct Backoff {
    schedule: ExponentialBuilder,
    delays: ExponentialBackoff,
    max: Duration,
}

impl Backoff {
    fn new(min: Duration, max: Duration) -> Self {
        let schedule = ExponentialBuilder::new()
            .with_min_delay(min / 2)
            .with_max_delay(max / 2)
            .with_factor(2.0)
            .with_jitter()
            .without_max_times();
        Self { schedule, delays: schedule.build(), max }
    }

    fn reset(&mut self) {
        self.delays = self.schedule.build();
    }

    /// The delay before the next attempt; the step doubles up to `max`.
    fn next_delay(&mut self) -> Duration {
        // Unbounded schedule: it never runs dry, the fallback is only for the type.
        self.delays.next().unwrap_or(self.max)
    }
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod backoff_tests {
    use super::*;

    #[test]
    fn delays_double_from_min_to_max_with_jitter_in_the_upper_half() {
        let mut backoff = Backoff::new(Duration::from_secs(1), Duration::from_secs(30));
        for nominal in [1, 2, 4, 8, 16, 30, 30, 30].map(Duration::from_secs) {
            let delay = backoff.next_delay();
            assert!(delay >= nominal / 2 && delay <= nominal, "delay {delay:?}, nominal {nominal:?}");
        }
        backoff.reset();
        let delay = backoff.next_delay();
        assert!(delay <= Duration::from_secs(1), "a reset starts again at the minimum: {delay:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn a_cancelled_sleep_returns_false_at_once() {
        let cancel = CancellationToken::new();
        cancel.cancel();
        let started = tokio::time::Instant::now();
        assert!(!sleep_unless_cancelled(Duration::from_secs(30), &cancel).await);
        assert_eq!(started.elapsed(), Duration::ZERO);
    }
}
