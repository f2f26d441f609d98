//! The cleanup of one runner: deregister, then delete the VM.
//!
//! * `Finishing` (its job ended): wait up to `RUNNER_DEREGISTRATION_TIMEOUT` for the
//!   ephemeral runner to deregister itself, polling every `…_POLL_INTERVAL` (lookup errors
//!   are logged and polling goes on), then remove it by force.
//! * `Deregistering` (never ran a job, died, surplus, reconciler): remove it at once.
//! * `JobStillRunning` sends the runner back to `Busy`: a running job is never cut short.
//! * Any other failure after the step's retry budget leaves the runner in its stage with a
//!   retry time; the next tick tries again, so nothing is left behind and no loop is
//!   unbounded.

use std::sync::Arc;

use runner_core::ScaleSetError;
use tokio::time::Instant;

use crate::error::{Cause, ProvisionError, Step};
use crate::events::FleetEvent;
use crate::fleet::Shared;
use crate::lifecycle::{LifecycleEvent, RunnerStage};
use crate::retry::{is_retryable, run_step};

impl Shared {
    /// Runs the cleanup of a runner whose cleanup the caller claimed.
    pub(crate) async fn run_retire(self: &Arc<Self>, name: &str) {
        let Some((stage, runner_id, maybe_registered)) =
            self.lock().runners.get(name).map(|e| (e.stage, e.runner_id, e.maybe_registered))
        else {
            return;
        };
        if !stage.is_retiring() {
            // Defensive: only a retiring runner's VM may ever be deleted.
            if let Some(entry) = self.lock().runners.get_mut(name) {
                entry.retiring = false;
            }
            return;
        }
        if matches!(stage, RunnerStage::Finishing | RunnerStage::Deregistering) {
            let outcome = if maybe_registered {
                self.deregister(name, runner_id, stage == RunnerStage::Finishing).await
            } else {
                Ok(())
            };
            match outcome {
                Ok(()) => {
                    let mut st = self.lock();
                    self.apply(&mut st, name, LifecycleEvent::Deregistered, None);
                }
                Err(ProvisionError::JobStillRunning) => {
                    tracing::info!(runner = %name, "GitHub reports a job on the runner; keeping it");
                    let mut st = self.lock();
                    self.apply(&mut st, name, LifecycleEvent::JobStillRunning, None);
                    if let Some(entry) = st.runners.get_mut(name) {
                        entry.retiring = false;
                    }
                    return;
                }
                Err(error) => return self.cleanup_failed(name, error),
            }
        }
        let vms = Arc::clone(&self.deps.vms);
        let deleted =
            run_step(Step::DeleteVm, &self.config.delete, &self.shutdown, is_retryable, true, || {
                let vms = Arc::clone(&vms);
                let name = name.to_owned();
                async move { vms.delete_vm(&name).await.map_err(Cause::Orka) }
            })
            .await;
        match deleted {
            Ok(()) => {
                let mut st = self.lock();
                self.apply(&mut st, name, LifecycleEvent::VmDeleted, None);
            }
            Err(error) => self.cleanup_failed(name, error),
        }
    }

    fn cleanup_failed(&self, name: &str, error: ProvisionError) {
        tracing::warn!(runner = %name, error = &error as &dyn std::error::Error, "cleanup failed; will retry");
        let step = error.step().unwrap_or(Step::DeleteVm);
        let mut st = self.lock();
        *st.counters.failures.entry((step, error.reason())).or_default() += 1;
        if let Some(entry) = st.runners.get_mut(name) {
            entry.retiring = false;
            entry.retry_at = Some(Instant::now() + self.config.cleanup_retry_interval);
        }
        drop(st);
        self.emit(FleetEvent::StepFailed { runner: name.to_owned(), step, reason: error.reason() });
    }

    /// Removes the registration of `name`; `wait_for_self` first gives the runner the
    /// deregistration timeout to leave on its own.
    async fn deregister(
        self: &Arc<Self>,
        name: &str,
        known_id: Option<i64>,
        wait_for_self: bool,
    ) -> Result<(), ProvisionError> {
        let github = Arc::clone(&self.deps.github);
        let mut id = known_id;
        if wait_for_self {
            let deadline = Instant::now() + self.config.deregistration_timeout;
            loop {
                let lookup = tokio::select! {
                    biased;
                    () = self.shutdown.cancelled() => return Err(ProvisionError::Cancelled { step: Step::Deregister }),
                    lookup = tokio::time::timeout(self.config.github_call.deadline, github.get_runner_by_name(name)) => lookup,
                };
                match lookup {
                    Ok(Ok(None)) => return Ok(()),
                    Ok(Ok(Some(record))) => id = Some(record.id),
                    Ok(Err(e)) => {
                        tracing::debug!(runner = %name, error = &e as &dyn std::error::Error, "runner lookup failed while waiting for deregistration");
                    }
                    Err(_) => {
                        tracing::debug!(runner = %name, "runner lookup timed out while waiting for deregistration")
                    }
                }
                if Instant::now() >= deadline {
                    break;
                }
                tokio::time::sleep(self.config.deregistration_poll_interval).await;
            }
            tracing::info!(runner = %name, "runner did not deregister itself in time; removing it");
        }
        let id = match id {
            Some(id) => id,
            None => {
                let found = run_step(
                    Step::Deregister,
                    &self.config.github_call,
                    &self.shutdown,
                    is_retryable,
                    true,
                    || {
                        let github = Arc::clone(&github);
                        let name = name.to_owned();
                        async move { github.get_runner_by_name(&name).await.map_err(Cause::GitHub) }
                    },
                )
                .await?;
                match found {
                    Some(record) => record.id,
                    None => return Ok(()),
                }
            }
        };
        let removable = |cause: &Cause| {
            !matches!(cause, Cause::GitHub(ScaleSetError::JobStillRunning)) && is_retryable(cause)
        };
        let removed =
            run_step(Step::Deregister, &self.config.github_call, &self.shutdown, removable, true, || {
                let github = Arc::clone(&github);
                async move {
                    match github.remove_runner(id).await {
                        Ok(()) | Err(ScaleSetError::AgentNotFound) => Ok(()),
                        Err(e) => Err(Cause::GitHub(e)),
                    }
                }
            })
            .await;
        match removed {
            Err(ProvisionError::StepFailed {
                cause: Cause::GitHub(ScaleSetError::JobStillRunning), ..
            }) => Err(ProvisionError::JobStillRunning),
            other => other,
        }
    }
}
