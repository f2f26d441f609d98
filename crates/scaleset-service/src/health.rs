//! Liveness and readiness state behind `/healthz` and `/readyz`.
//!
//! Liveness: every loop that registered a [`Heartbeat`] has beaten within its allowed
//! silence, and none stopped without saying so. Readiness: at least one scale set is
//! known and every scale set holds its message session and has finished its first
//! reconciliation; otherwise each scale set's reason is reported (a standby replica
//! reports "waiting for session").
//!
//! All time is `tokio::time::Instant`, so paused-clock tests are honest. This module knows
//! nothing about HTTP (the binary serves these reports) or about how sessions are obtained.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::time::Instant;

/// Where one scale set stands: what its service reports on every transition and what
/// `/readyz` shows. One type for both, so readiness cannot drift from the session lifecycle.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Phase {
    /// Registered, or resolving or creating the scale set.
    Starting,
    /// Trying to create the message session (e.g. another replica holds it: standby).
    WaitingForSession(String),
    /// Session held; the first reconciliation has not finished.
    Reconciling,
    /// Session held and first reconciliation done: serving.
    Ready,
    /// Stopped serving after a fatal error.
    Failed(String),
    /// Shutting down.
    Stopping,
}

impl Phase {
    /// Ready = holding the session and past the first reconciliation.
    pub fn is_ready(&self) -> bool {
        matches!(self, Phase::Ready)
    }
}

impl fmt::Display for Phase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Phase::Starting => f.write_str("starting"),
            Phase::WaitingForSession(why) => write!(f, "waiting for session: {why}"),
            Phase::Reconciling => f.write_str("session held, first reconciliation running"),
            Phase::Ready => f.write_str("ready"),
            Phase::Failed(why) => write!(f, "failed: {why}"),
            Phase::Stopping => f.write_str("stopping"),
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

    /// `/readyz`: every scale set holds its session and finished its first reconciliation.
    pub fn readiness(&self) -> Report {
        let state = self.lock();
        if state.scale_sets.is_empty() {
            return Report { ok: false, lines: vec!["no scale set started yet".into()] };
        }
        let ok = state.scale_sets.values().all(|p| *p == Phase::Ready);
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

    /// Trying to get the session; `reason` says why it is not held yet.
    pub fn waiting_for_session(&self, reason: impl Into<String>) {
        self.set(Phase::WaitingForSession(reason.into()));
    }

    /// Session created; the first reconciliation starts.
    pub fn session_acquired(&self) {
        self.set(Phase::Reconciling);
    }

    /// First reconciliation finished (or reconciliation is disabled): serving.
    pub fn reconciled(&self) {
        self.set(Phase::Ready);
    }

    /// The session was lost; `reason` says why (back to waiting).
    pub fn session_lost(&self, reason: impl Into<String>) {
        self.set(Phase::WaitingForSession(reason.into()));
    }

    /// The scale set stopped after a fatal error.
    pub fn failed(&self, reason: impl Into<String>) {
        self.set(Phase::Failed(reason.into()));
    }

    /// Shutting down.
    pub fn stopping(&self) {
        self.set(Phase::Stopping);
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
    fn readiness_follows_session_and_first_reconciliation() {
        let health = Health::new();
        assert!(!health.readiness().ok, "no scale set yet");
        let mac = health.scale_set("mac");
        let large = health.scale_set("mac-large");
        assert!(!health.readiness().ok);
        mac.waiting_for_session("another replica holds the session (409)");
        large.session_acquired();
        let report = health.readiness();
        assert!(!report.ok);
        assert!(
            report
                .lines
                .contains(&"mac: waiting for session: another replica holds the session (409)".into())
        );
        assert!(report.lines.contains(&"mac-large: session held, first reconciliation running".into()));
        large.reconciled();
        assert!(!health.readiness().ok, "mac is still standby");
        mac.session_acquired();
        assert!(!health.readiness().ok, "mac has not reconciled yet");
        mac.reconciled();
        let report = health.readiness();
        assert!(report.ok, "{report}");
        assert_eq!(report.to_string(), "ok\nmac: ready\nmac-large: ready\n");
        mac.session_lost("session expired");
        assert!(!health.readiness().ok);
        mac.session_acquired();
        mac.reconciled();
        large.failed("scale set deleted");
        assert!(health.readiness().lines.contains(&"mac-large: failed: scale set deleted".into()));
        assert!(!health.readiness().ok);
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
