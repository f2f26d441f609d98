//! The periodic cheap check of online runners (run by [`crate::Fleet::tick`]): one VM
//! listing for the whole fleet, then one bounded-time probe per online runner, in parallel
//! under a concurrency cap. Nothing is held between checks.
//!
//! | Finding | Event |
//! |---|---|
//! | VM missing from Orka, or `Failed` | `VmVanished` → deregister (delete is a no-op) |
//! | run sentinel present | `RunCompleteSeen` → finishing (covers a `JobCompleted` consumed by a dead process); an idle runner's exit code and log tail are read first ([`crate::outdated`]) |
//! | setup done, run.sh dead, no run sentinel | `RunnerDied` → deregister + delete |
//! | probe failed or could not tell, `probe_strikes` times in a row, no job on it per job messages (stage not `Busy`), GitHub not reporting it busy | `RunnerDied` (unreachable) |
//! | idle (no job) longer than `max_idle` | `Retire` (recycled) |
//! | anything else | strikes reset |

use std::collections::HashMap;
use std::sync::Arc;

use futures::StreamExt;
use runner_core::RunnerState;
use runner_core::{ProbeReport, SshTarget, Tri};
use runner_core::{Vm, VmStatus};
use tokio::time::Instant;

use crate::events::RetireReason;
use crate::fleet::Shared;
use crate::lifecycle::{LifecycleEvent, RunnerStage};

enum Finding {
    Healthy,
    /// run.sh exited, with this exit code when it recorded one.
    RunComplete(Option<i32>),
    Crashed,
    ProbeFailed,
}

fn classify(report: &ProbeReport) -> Finding {
    match (report.run_complete, report.runner_alive) {
        (Tri::Yes, _) => Finding::RunComplete(report.exit_code),
        (Tri::No, Tri::Yes) => Finding::Healthy,
        (Tri::No, Tri::No) if report.setup_complete == Tri::Yes => Finding::Crashed,
        _ => Finding::ProbeFailed,
    }
}

impl Shared {
    pub(crate) async fn watch(self: &Arc<Self>) {
        let now = Instant::now();
        let online: Vec<(String, RunnerStage, Option<SshTarget>, Instant)> = self
            .lock()
            .runners
            .iter()
            .filter(|(_, e)| e.stage.is_online() && !e.retiring)
            .map(|(name, e)| {
                let target =
                    e.vm.as_ref()
                        .and_then(|vm| vm.ssh_endpoint())
                        .map(|(host, port)| SshTarget { host, port });
                (name.clone(), e.stage, target, e.since)
            })
            .collect();
        if online.is_empty() {
            return;
        }

        let listing = tokio::time::timeout(self.config.probe_timeout, self.deps.vms.list_vms()).await;
        let existing: Option<HashMap<String, Vm>> = match listing {
            Ok(Ok(vms)) => Some(
                vms.into_iter()
                    .filter(|vm| vm.status != VmStatus::Failed)
                    .map(|vm| (vm.name.clone(), vm))
                    .collect(),
            ),
            Ok(Err(e)) => {
                tracing::warn!(
                    error = &e as &dyn std::error::Error,
                    "listing VMs failed; skipping the vanished-VM check"
                );
                None
            }
            Err(_) => {
                tracing::warn!("listing VMs timed out; skipping the vanished-VM check");
                None
            }
        };

        let mut to_probe = Vec::new();
        for (name, stage, mut target, since) in online {
            if existing.as_ref().is_some_and(|vms| !vms.contains_key(&name)) {
                self.runner_event(&name, LifecycleEvent::VmVanished, RetireReason::VmVanished);
                continue;
            }
            // A runner tracked without its VM (found by name) learns its endpoint here.
            if target.is_none()
                && let Some(vm) = existing.as_ref().and_then(|vms| vms.get(&name))
            {
                target = vm.ssh_endpoint().map(|(host, port)| SshTarget { host, port });
                if let Some(entry) = self.lock().runners.get_mut(&name) {
                    entry.vm = Some(vm.clone());
                }
            }
            if stage == RunnerStage::Idle && now.saturating_duration_since(since) >= self.config.max_idle {
                tracing::info!(runner = %name, "idle too long without a job; recycling");
                self.runner_event(&name, LifecycleEvent::Retire, RetireReason::IdleTooLong);
                continue;
            }
            to_probe.push((name, target));
        }

        let timeout = self.config.probe_timeout;
        let results: Vec<(String, Finding)> = futures::stream::iter(to_probe)
            .map(|(name, target)| {
                let shell = Arc::clone(&self.deps.shell);
                async move {
                    let finding = match target {
                        None => Finding::ProbeFailed,
                        Some(target) => match tokio::time::timeout(timeout, shell.probe(&target)).await {
                            Ok(Ok(report)) => classify(&report),
                            Ok(Err(e)) => {
                                tracing::debug!(runner = %name, error = &e as &dyn std::error::Error, "probe failed");
                                Finding::ProbeFailed
                            }
                            Err(_) => Finding::ProbeFailed,
                        },
                    };
                    (name, finding)
                }
            })
            .buffer_unordered(self.config.probe_concurrency.max(1))
            .collect()
            .await;

        for (name, finding) in results {
            match finding {
                Finding::Healthy => {
                    if let Some(entry) = self.lock().runners.get_mut(&name) {
                        entry.probe_failures = 0;
                    }
                }
                Finding::RunComplete(exit_code) => {
                    self.inspect_exit(&name, exit_code).await;
                    self.runner_event(&name, LifecycleEvent::RunCompleteSeen, RetireReason::RunComplete)
                }
                Finding::Crashed => {
                    self.runner_event(&name, LifecycleEvent::RunnerDied, RetireReason::RunnerCrashed)
                }
                Finding::ProbeFailed => self.probe_failed(&name).await,
            }
        }
    }

    async fn probe_failed(self: &Arc<Self>, name: &str) {
        let (strikes, stage) = {
            let mut st = self.lock();
            let Some(entry) = st.runners.get_mut(name) else { return };
            entry.probe_failures += 1;
            (entry.probe_failures, entry.stage)
        };
        if strikes < self.config.probe_strikes {
            return;
        }
        if stage == RunnerStage::Busy {
            // A job message said a job runs on it. GitHub's runner list reports scale-set
            // runners idle while they run a job, so its `busy: false` cannot overrule that:
            // the job's end (a message, the run sentinel) or the VM vanishing lets it go.
            if strikes == self.config.probe_strikes {
                tracing::warn!(runner = %name, strikes, "probe keeps failing but a job runs on the runner; keeping it until the job ends");
            }
            return;
        }
        let lookup =
            tokio::time::timeout(self.config.github_call.deadline, self.deps.github.get_runner_by_name(name))
                .await;
        match lookup {
            Ok(Ok(Some(record))) if record.state() == RunnerState::Busy => {
                tracing::info!(runner = %name, strikes, "probe keeps failing but GitHub reports the runner busy; keeping it");
            }
            Ok(Ok(_)) => {
                tracing::warn!(runner = %name, strikes, "runner unreachable; retiring it");
                self.runner_event(name, LifecycleEvent::RunnerDied, RetireReason::Unreachable);
            }
            Ok(Err(e)) => {
                tracing::warn!(runner = %name, error = &e as &dyn std::error::Error, "runner unreachable and GitHub lookup failed; keeping it for now");
            }
            Err(_) => {
                tracing::warn!(runner = %name, "runner unreachable and GitHub lookup timed out; keeping it for now")
            }
        }
    }

    /// Applies an event to a runner and starts its cleanup if the event retired it.
    pub(crate) fn runner_event(self: &Arc<Self>, name: &str, event: LifecycleEvent, reason: RetireReason) {
        let spawn = {
            let mut st = self.lock();
            self.apply(&mut st, name, event, Some(reason));
            self.claim_retire(&mut st, name)
        };
        if spawn {
            self.spawn_retire(name.to_owned());
        }
    }
}
