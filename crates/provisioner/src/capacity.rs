//! Waiting for Orka capacity. When Orka answers a deploy with "not enough capacity", the
//! runner keeps its provisioning slot and deploys again with exponential backoff
//! (`backon`, up to [`crate::FleetConfig::capacity_backoff_max`]) until it succeeds, the
//! demand goes away (the runner is cancelled) or the fleet shuts down — it does not fail
//! and get replaced by a new runner that asks again at once.
//!
//! The fleet says so once per wait episode, not once per attempt: one WARN line and a
//! [`FleetEvent::CapacityWait`] when the first runner starts waiting, one INFO line and the
//! closing event when the last one stops. Owns only the count of waiting runners.

use std::sync::{Arc, Mutex};

use runner_core::VmBackendError;
use tokio::time::Instant;

use crate::error::{Cause, ProvisionError};
use crate::events::FleetEvent;
use crate::fleet::Shared;

/// Runners waiting for capacity now, and since when the episode runs.
#[derive(Default)]
pub(crate) struct CapacityWaits {
    state: Mutex<Episode>,
}

#[derive(Default)]
struct Episode {
    waiting: usize,
    since: Option<Instant>,
}

/// Whether a deploy failed because the cluster is full.
pub(crate) fn is_capacity(error: &ProvisionError) -> bool {
    matches!(
        error,
        ProvisionError::StepFailed { cause: Cause::Orka(VmBackendError::CapacityExhausted { .. }), .. }
    )
}

/// One runner's part in a wait episode; leaving (also by being dropped on cancellation)
/// may end the episode.
pub(crate) struct Waiter {
    shared: Arc<Shared>,
}

impl crate::Fleet {
    /// How many runners wait for Orka capacity now (0 when no wait episode runs).
    pub fn capacity_waiting(&self) -> usize {
        self.shared.capacity.state.lock().unwrap_or_else(|p| p.into_inner()).waiting
    }
}

impl Shared {
    /// Counts `runner` as waiting for capacity; the first waiter opens an episode.
    pub(crate) fn start_capacity_wait(self: &Arc<Self>, runner: &str) -> Waiter {
        let opened = {
            let mut episode = self.capacity.state.lock().unwrap_or_else(|p| p.into_inner());
            episode.waiting += 1;
            if episode.since.is_none() {
                episode.since = Some(Instant::now());
                true
            } else {
                false
            }
        };
        if opened {
            tracing::warn!(
                scale_set = %self.config.scale_set_name,
                %runner,
                max_backoff = ?self.config.capacity_backoff_max,
                "waiting for Orka capacity: the cluster has no room for another VM; deploys are retried with backoff"
            );
            self.emit(FleetEvent::CapacityWait { waiting: true });
        }
        Waiter { shared: Arc::clone(self) }
    }
}

impl Drop for Waiter {
    fn drop(&mut self) {
        let closed = {
            let mut episode = self.shared.capacity.state.lock().unwrap_or_else(|p| p.into_inner());
            episode.waiting = episode.waiting.saturating_sub(1);
            if episode.waiting == 0 { episode.since.take() } else { None }
        };
        if let Some(since) = closed {
            tracing::info!(
                scale_set = %self.shared.config.scale_set_name,
                waited = ?since.elapsed(),
                "no longer waiting for Orka capacity"
            );
            self.shared.emit(FleetEvent::CapacityWait { waiting: false });
        }
    }
}
