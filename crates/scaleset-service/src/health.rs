//! Liveness and readiness state behind `/healthz` and `/readyz`.
//!
//! Liveness: every loop that registered a [`Heartbeat`] has beaten within its allowed
//! silence, and none stopped without saying so. Readiness means "this process is healthy
//! and can serve": at least one scale set is known and every scale set is either active
//! (holds its message session and finished its first reconciliation) or correctly
//! standing by (another process holds the session). Each scale set's line names its role
//! (`active`, `standby`, `none`) and its current problem, so replicas that share scale sets
//! are all Ready and a `RollingUpdate` can proceed.
//!
//! All time is `tokio::time::Instant`, so paused-clock tests are honest. This module knows
//! nothing about HTTP (the binary serves these reports) or about how sessions are obtained.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::time::Instant;

/// Where one scale set stands: what its service reports on every transition, what
/// `/readyz` shows and what the role metric follows. One type for all three, so readiness
/// cannot drift from the session lifecycle.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Phase {
    /// Registered, or resolving or creating the scale set; nothing obtained yet.
    Starting,
    /// Another process holds the session: this one stands by and takes over when it is
    /// released. Ready: standing by is what a healthy replica of a shared scale set does.
    Standby,
    /// GitHub calls fail for a reason expected to pass (unreachable, 5xx, rate limit);
    /// retrying. The text is the current problem.
    Retrying(String),
    /// GitHub rejects the credentials at run time: retrying with backoff (up to
    /// [`CREDENTIALS_MAX_BACKOFF`](crate::CREDENTIALS_MAX_BACKOFF)), nothing
    /// deleted because of it, recovering by itself.
    Degraded(String),
    /// Session held; the first reconciliation has not finished.
    Reconciling,
    /// Session held but the first reconciliation failed (retried every reconcile period);
    /// jobs are served meanwhile.
    ReconcileFailed(String),
    /// Session held and first reconciliation done: serving jobs (active).
    Serving,
    /// Stopped: `shut down`, or `fatal: …` after an error that ends this scale set.
    Stopped(String),
}

impl Phase {
    /// Whether this phase counts as ready: active and reconciled, or standing by.
    pub fn is_ready(&self) -> bool {
        matches!(self, Phase::Serving | Phase::Standby)
    }

    /// Holding the session and past the first reconciliation.
    pub fn is_serving(&self) -> bool {
        matches!(self, Phase::Serving)
    }

    /// Whether this process holds the scale set's session.
    pub fn holds_session(&self) -> bool {
        matches!(self, Phase::Reconciling | Phase::ReconcileFailed(_) | Phase::Serving)
    }

    /// The replica's role for this scale set: `active` (holds the session), `standby`
    /// (another process holds it) or `none` (neither, e.g. while GitHub fails).
    pub fn role(&self) -> &'static str {
        match self {
            _ if self.holds_session() => "active",
            Phase::Standby => "standby",
            _ => "none",
        }
    }
}

impl fmt::Display for Phase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Phase::Starting => f.write_str("none, starting"),
            Phase::Standby => f.write_str("standby, another process holds the session"),
            Phase::Retrying(why) => write!(f, "none, retrying: {why}"),
            Phase::Degraded(why) => write!(f, "none, degraded: {why}"),
            Phase::Reconciling => f.write_str("active, first reconciliation running"),
            Phase::ReconcileFailed(why) => write!(f, "active, first reconciliation failed: {why}"),
            Phase::Serving => f.write_str("active, serving"),
            Phase::Stopped(why) => write!(f, "none, stopped: {why}"),
        }
    }
}

#[derive(Debug)]
struct Beat {
    last: Instant,
    max_silence: Duration,
    stopped_unexpectedly: bool,
}

#[derive(Debug, Default)]
struct State {
    beats: BTreeMap<String, Beat>,
    scale_sets: BTreeMap<String, Phase>,
    /// A condition shown after a scale set's phase whatever the phase (e.g. outdated
    /// runner version); it does not change whether the probe passes.
    conditions: BTreeMap<String, String>,
}

/// Shared health state; clones share it.
#[derive(Debug, Clone, Default)]
pub struct Health {
    state: Arc<Mutex<State>>,
}

/// The answer of a probe.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    /// Whether the probe passes (HTTP 200) or not (503).
    pub ok: bool,
    /// One line per loop or scale set.
    pub lines: Vec<String>,
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "{}", if self.ok { "ok" } else { "not ok" })?;
        for line in &self.lines {
            writeln!(f, "{line}")?;
        }
        Ok(())
    }
}

impl Health {
    /// Empty state: alive, not ready.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding this lock leaves plain data behind; keep serving it.
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Registers a loop that must beat at least every `max_silence`.
    pub fn heartbeat(&self, name: impl Into<String>, max_silence: Duration) -> Heartbeat {
        let name = name.into();
        let beat = Beat { last: Instant::now(), max_silence, stopped_unexpectedly: false };
        self.lock().beats.insert(name.clone(), beat);
        Heartbeat { health: self.clone(), name, finished: false }
    }

    /// The readiness handle of `scale_set` (registers it as [`Phase::Starting`]).
    pub fn scale_set(&self, name: impl Into<String>) -> ScaleSetHealth {
        let name = name.into();
        self.lock().scale_sets.insert(name.clone(), Phase::Starting);
        ScaleSetHealth { health: self.clone(), name }
    }

    /// The current phase of `scale_set`.
    pub fn phase(&self, scale_set: &str) -> Option<Phase> {
        self.lock().scale_sets.get(scale_set).cloned()
    }

    /// `/healthz`: every registered loop is turning.
    pub fn liveness(&self) -> Report {
        let now = Instant::now();
        let state = self.lock();
        let mut ok = true;
        let mut lines = Vec::new();
        for (name, beat) in &state.beats {
            let silent = now.saturating_duration_since(beat.last);
            if beat.stopped_unexpectedly {
                ok = false;
                lines.push(format!("{name}: stopped"));
            } else if silent > beat.max_silence {
                ok = false;
                lines.push(format!(
                    "{name}: stalled, no heartbeat for {}s (limit {}s)",
                    silent.as_secs(),
                    beat.max_silence.as_secs()
                ));
            } else {
                lines.push(format!("{name}: turning"));
            }
        }
        Report { ok, lines }
    }

    /// `/readyz`: this process is healthy and can serve — every scale set is either active
    /// and reconciled or correctly standing by. One line per scale set: role and problem.
    pub fn readiness(&self) -> Report {
        let state = self.lock();
        if state.scale_sets.is_empty() {
            return Report { ok: false, lines: vec!["no scale set started yet".into()] };
        }
        let ok = state.scale_sets.values().all(Phase::is_ready);
        let lines = state
            .scale_sets
            .iter()
            .map(|(name, phase)| match state.conditions.get(name) {
                Some(condition) => format!("{name}: {phase}; {condition}"),
                None => format!("{name}: {phase}"),
            })
            .collect();
        Report { ok, lines }
    }
}

/// A loop's heartbeat. Call [`Heartbeat::beat`] on every turn and [`Heartbeat::finish`]
/// when the loop ends on purpose; dropping it unfinished marks the loop as stopped.
#[derive(Debug)]
pub struct Heartbeat {
    health: Health,
    name: String,
    finished: bool,
}

impl Heartbeat {
    /// The loop turned.
    pub fn beat(&self) {
        if let Some(beat) = self.health.lock().beats.get_mut(&self.name) {
            beat.last = Instant::now();
        }
    }

    /// The loop ended on purpose (shutdown): it no longer counts.
    pub fn finish(mut self) {
        self.finished = true;
        self.health.lock().beats.remove(&self.name);
    }
}

impl Drop for Heartbeat {
    fn drop(&mut self) {
        if !self.finished
            && let Some(beat) = self.health.lock().beats.get_mut(&self.name)
        {
            beat.stopped_unexpectedly = true;
        }
    }
}

/// One scale set's readiness handle.
#[derive(Debug, Clone)]
pub struct ScaleSetHealth {
    health: Health,
    name: String,
}

impl ScaleSetHealth {
    /// Sets the phase directly (the named methods below are shorthands).
    pub fn set(&self, phase: Phase) {
        self.health.lock().scale_sets.insert(self.name.clone(), phase);
    }

    /// Another process holds the session: standing by (ready).
    pub fn standby(&self) {
        self.set(Phase::Standby);
    }

    /// GitHub calls fail and are retried; `reason` is the current problem.
    pub fn retrying(&self, reason: impl Into<String>) {
        self.set(Phase::Retrying(reason.into()));
    }

    /// GitHub rejects the credentials; `reason` says which call and how.
    pub fn degraded(&self, reason: impl Into<String>) {
        self.set(Phase::Degraded(reason.into()));
    }

    /// Session created; the first reconciliation starts.
    pub fn session_acquired(&self) {
        self.set(Phase::Reconciling);
    }

    /// First reconciliation finished (or reconciliation is disabled): serving.
    pub fn reconciled(&self) {
        self.set(Phase::Serving);
    }

    /// Stopped; `reason` is `shut down` or `fatal: …`.
    pub fn stopped(&self, reason: impl Into<String>) {
        self.set(Phase::Stopped(reason.into()));
    }

    /// Shows `condition` after the phase on this scale set's `/readyz` line (`None` clears it).
    pub fn set_condition(&self, condition: Option<String>) {
        let mut state = self.health.lock();
        match condition {
            Some(condition) => state.conditions.insert(self.name.clone(), condition),
            None => state.conditions.remove(&self.name),
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ready_means_active_and_reconciled_or_standing_by() {
        let health = Health::new();
        assert!(!health.readiness().ok, "no scale set yet");
        let mac = health.scale_set("mac");
        let large = health.scale_set("mac-large");
        let report = health.readiness();
        assert!(!report.ok);
        assert!(report.lines.contains(&"mac: none, starting".into()), "{report}");
        mac.standby();
        large.session_acquired();
        let report = health.readiness();
        assert!(!report.ok, "mac-large has not reconciled yet: {report}");
        assert!(report.lines.contains(&"mac: standby, another process holds the session".into()));
        assert!(report.lines.contains(&"mac-large: active, first reconciliation running".into()));
        large.reconciled();
        let report = health.readiness();
        assert!(report.ok, "a standby is a healthy replica: {report}");
        assert_eq!(
            report.to_string(),
            "ok\nmac: standby, another process holds the session\nmac-large: active, serving\n"
        );

        large.set(Phase::ReconcileFailed("Orka: 503".into()));
        let report = health.readiness();
        assert!(!report.ok, "a failed first reconciliation is not ready");
        assert!(report.lines.contains(&"mac-large: active, first reconciliation failed: Orka: 503".into()));
        large.reconciled();
        mac.degraded("creating the message session: GitHub rejected the credentials (401)");
        let report = health.readiness();
        assert!(!report.ok, "degraded by credentials is not ready");
        assert!(report.to_string().contains("mac: none, degraded: creating the message session"), "{report}");
        mac.retrying("resolving the scale set failed: transport error");
        assert!(!health.readiness().ok, "a scale set that cannot be obtained is not ready");
        mac.session_acquired();
        mac.reconciled();
        assert!(health.readiness().ok);
        large.stopped("fatal: scale set deleted");
        assert!(
            health.readiness().lines.contains(&"mac-large: none, stopped: fatal: scale set deleted".into())
        );
        assert!(!health.readiness().ok);
    }

    #[test]
    fn roles_follow_the_phase() {
        assert_eq!(Phase::Serving.role(), "active");
        assert_eq!(Phase::Reconciling.role(), "active");
        assert_eq!(Phase::ReconcileFailed("x".into()).role(), "active");
        assert_eq!(Phase::Standby.role(), "standby");
        assert_eq!(Phase::Degraded("x".into()).role(), "none");
        assert_eq!(Phase::Retrying("x".into()).role(), "none");
        assert_eq!(Phase::Starting.role(), "none");
        assert_eq!(Phase::Stopped("shut down".into()).role(), "none");
    }

    #[tokio::test(start_paused = true)]
    async fn liveness_needs_every_loop_turning() {
        let health = Health::new();
        assert!(health.liveness().ok, "nothing registered: alive");
        let poll = health.heartbeat("message-loop mac", Duration::from_secs(120));
        let reconcile = health.heartbeat("reconciler mac", Duration::from_secs(600));
        tokio::time::advance(Duration::from_secs(100)).await;
        poll.beat();
        tokio::time::advance(Duration::from_secs(100)).await;
        assert!(health.liveness().ok, "{}", health.liveness());
        tokio::time::advance(Duration::from_secs(30)).await;
        let report = health.liveness();
        assert!(!report.ok, "the poll loop has been silent 130s");
        assert!(report.lines.iter().any(|l| l.starts_with("message-loop mac: stalled")), "{report}");
        poll.beat();
        assert!(health.liveness().ok);
        drop(reconcile);
        let report = health.liveness();
        assert!(!report.ok, "a loop that vanished is not turning");
        assert!(report.lines.contains(&"reconciler mac: stopped".into()));
        let other = health.heartbeat("reconciler mac", Duration::from_secs(600));
        other.finish();
        poll.finish();
        assert!(health.liveness().ok, "finished loops no longer count");
    }
}
