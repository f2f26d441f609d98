//! The runner state machine, as a pure transition function.
//!
//! ```text
//! Queued → DeployingVm → CreatingJitConfig → Installing → Idle ⇄ Busy
//!    │          │               │                 │        │      │
//!    │          └──── failure / cancel ───────────┴──┐     │      │ JobCompleted /
//!    ▼                                               ▼     ▼      ▼ run sentinel
//!  Gone                                      Deregistering     Finishing
//!                                                   │              │ (waits for the runner
//!                                                   ▼              ▼  to deregister itself)
//!                                               DeletingVm  ←──────┘
//!                                                   │
//!                                                   ▼
//!                                                 Gone
//! ```
//!
//! * `Finishing` waits up to `RUNNER_DEREGISTRATION_TIMEOUT` for the ephemeral runner to
//!   deregister itself, then removes it by force; `Deregistering` removes it at once (the
//!   runner never ran a job, or it died). Either goes back to `Busy` when GitHub answers
//!   `JobStillRunning`: a running job is never cut short.
//! * A busy runner is never retired; only its job's end, its run sentinel, its death or its
//!   VM vanishing lead it out of `Busy`.
//! * Stale and duplicate events are ignored ([`Transition::Ignore`]): a `JobStarted` after
//!   `JobCompleted`, a second `JobCompleted`, progress reports of a provisioning task whose
//!   runner already moved on.
//!
//! Owns the transitions only; the fleet applies them and runs the effects.

use crate::planner::RunnerPhase;
use std::time::Duration;

/// Where a runner is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RunnerStage {
    /// Waiting for a provisioning slot.
    Queued,
    /// The VM is being deployed.
    DeployingVm,
    /// The VM exists; the JIT runner is being registered.
    CreatingJitConfig,
    /// The runner is being installed and started over SSH.
    Installing,
    /// run.sh runs; no job yet.
    Idle,
    /// A job runs on it.
    Busy,
    /// The job ended; waiting for the runner to deregister itself.
    Finishing,
    /// The registration is being removed (by force).
    Deregistering,
    /// The VM is being deleted.
    DeletingVm,
}

impl RunnerStage {
    /// All stages, in lifecycle order.
    pub const ALL: [RunnerStage; 9] = [
        RunnerStage::Queued,
        RunnerStage::DeployingVm,
        RunnerStage::CreatingJitConfig,
        RunnerStage::Installing,
        RunnerStage::Idle,
        RunnerStage::Busy,
        RunnerStage::Finishing,
        RunnerStage::Deregistering,
        RunnerStage::DeletingVm,
    ];

    /// Whether a provisioning task owns the runner.
    pub fn is_provisioning(self) -> bool {
        matches!(
            self,
            RunnerStage::Queued
                | RunnerStage::DeployingVm
                | RunnerStage::CreatingJitConfig
                | RunnerStage::Installing
        )
    }

    /// Whether the runner is online (Idle or Busy): watched by the periodic probe.
    pub fn is_online(self) -> bool {
        matches!(self, RunnerStage::Idle | RunnerStage::Busy)
    }

    /// Whether the runner is on its way out.
    pub fn is_retiring(self) -> bool {
        matches!(self, RunnerStage::Finishing | RunnerStage::Deregistering | RunnerStage::DeletingVm)
    }

    /// What the planner sees.
    pub fn phase(self, in_stage_for: Duration) -> RunnerPhase {
        match self {
            s if s.is_provisioning() => RunnerPhase::Provisioning,
            RunnerStage::Idle => RunnerPhase::Idle { idle_for: in_stage_for },
            RunnerStage::Busy => RunnerPhase::Busy,
            _ => RunnerPhase::Finishing,
        }
    }

    /// A short stable label (logs, metrics).
    pub fn as_str(self) -> &'static str {
        match self {
            RunnerStage::Queued => "queued",
            RunnerStage::DeployingVm => "deploying_vm",
            RunnerStage::CreatingJitConfig => "creating_jit_config",
            RunnerStage::Installing => "installing",
            RunnerStage::Idle => "idle",
            RunnerStage::Busy => "busy",
            RunnerStage::Finishing => "finishing",
            RunnerStage::Deregistering => "deregistering",
            RunnerStage::DeletingVm => "deleting_vm",
        }
    }
}

/// Something that happened to a runner.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LifecycleEvent {
    /// A provisioning slot was granted.
    SlotAcquired,
    /// The VM is running.
    VmDeployed,
    /// The JIT runner is registered.
    JitConfigCreated,
    /// run.sh was started.
    RunnerStarted,
    /// A provisioning step failed for good, or provisioning was cancelled.
    ProvisioningFailed,
    /// `JobStarted` named this runner.
    JobStarted,
    /// `JobCompleted` named this runner.
    JobCompleted,
    /// The probe found the run sentinel (run.sh exited; the job is over).
    RunCompleteSeen,
    /// The probe found run.sh dead without a run sentinel, or the VM stopped answering.
    RunnerDied,
    /// The VM no longer exists (or Orka reports it failed).
    VmVanished,
    /// Retire an idle runner (surplus, recycled, reconciler) or stop a provisioning one.
    Retire,
    /// The registration is gone.
    Deregistered,
    /// GitHub refused the removal: a job is still running on the runner.
    JobStillRunning,
    /// The VM is deleted.
    VmDeleted,
}

/// The outcome of an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transition {
    /// Stale, duplicate or not applicable here: nothing changes.
    Ignore,
    /// Move to this stage.
    To(RunnerStage),
    /// The runner is gone (forget it).
    Gone,
}

/// The state machine. Pure.
pub fn transition(stage: RunnerStage, event: LifecycleEvent) -> Transition {
    use LifecycleEvent as E;
    use RunnerStage as S;
    use Transition::{Gone, Ignore, To};
    match (stage, event) {
        (S::Queued, E::SlotAcquired) => To(S::DeployingVm),
        (S::DeployingVm, E::VmDeployed) => To(S::CreatingJitConfig),
        (S::CreatingJitConfig, E::JitConfigCreated) => To(S::Installing),
        (S::Installing, E::RunnerStarted) => To(S::Idle),
        // Nothing exists yet for a queued runner.
        (S::Queued, E::ProvisioningFailed | E::Retire) => Gone,
        (s, E::ProvisioningFailed | E::Retire) if s.is_provisioning() => To(S::Deregistering),
        // run.sh may take a job before the install call returns.
        (S::Installing | S::Idle, E::JobStarted) => To(S::Busy),
        (S::Installing | S::Idle | S::Busy, E::JobCompleted) => To(S::Finishing),
        (S::Idle | S::Busy, E::RunCompleteSeen) => To(S::Finishing),
        (S::Idle | S::Busy, E::RunnerDied | E::VmVanished) => To(S::Deregistering),
        (S::Idle, E::Retire) => To(S::Deregistering),
        (S::Finishing | S::Deregistering, E::Deregistered) => To(S::DeletingVm),
        (S::Finishing | S::Deregistering, E::JobStillRunning) => To(S::Busy),
        (S::DeletingVm, E::VmDeleted) => Gone,
        _ => Ignore,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use LifecycleEvent as E;
    use RunnerStage as S;
    use Transition::{Gone, Ignore, To};

    #[test]
    fn every_transition() {
        let table = [
            (S::Queued, E::SlotAcquired, To(S::DeployingVm)),
            (S::DeployingVm, E::VmDeployed, To(S::CreatingJitConfig)),
            (S::CreatingJitConfig, E::JitConfigCreated, To(S::Installing)),
            (S::Installing, E::RunnerStarted, To(S::Idle)),
            (S::Queued, E::ProvisioningFailed, Gone),
            (S::Queued, E::Retire, Gone),
            (S::DeployingVm, E::ProvisioningFailed, To(S::Deregistering)),
            (S::CreatingJitConfig, E::ProvisioningFailed, To(S::Deregistering)),
            (S::Installing, E::ProvisioningFailed, To(S::Deregistering)),
            (S::DeployingVm, E::Retire, To(S::Deregistering)),
            (S::Installing, E::JobStarted, To(S::Busy)),
            (S::Idle, E::JobStarted, To(S::Busy)),
            (S::Installing, E::JobCompleted, To(S::Finishing)),
            (S::Idle, E::JobCompleted, To(S::Finishing)),
            (S::Busy, E::JobCompleted, To(S::Finishing)),
            (S::Idle, E::RunCompleteSeen, To(S::Finishing)),
            (S::Busy, E::RunCompleteSeen, To(S::Finishing)),
            (S::Busy, E::RunnerDied, To(S::Deregistering)),
            (S::Idle, E::VmVanished, To(S::Deregistering)),
            (S::Busy, E::VmVanished, To(S::Deregistering)),
            (S::Idle, E::Retire, To(S::Deregistering)),
            (S::Finishing, E::Deregistered, To(S::DeletingVm)),
            (S::Deregistering, E::Deregistered, To(S::DeletingVm)),
            (S::Finishing, E::JobStillRunning, To(S::Busy)),
            (S::Deregistering, E::JobStillRunning, To(S::Busy)),
            (S::DeletingVm, E::VmDeleted, Gone),
        ];
        for (stage, event, expected) in table {
            assert_eq!(transition(stage, event), expected, "{stage:?} + {event:?}");
        }
    }

    #[test]
    fn busy_runners_are_never_retired_and_stale_events_are_ignored() {
        let ignored = [
            (S::Busy, E::Retire),
            (S::Busy, E::ProvisioningFailed),
            (S::Busy, E::JobStarted),
            (S::Finishing, E::JobStarted),
            (S::Finishing, E::JobCompleted),
            (S::DeletingVm, E::JobStillRunning),
            (S::Deregistering, E::Retire),
            (S::Idle, E::RunnerStarted),
            (S::Busy, E::RunnerStarted),
            (S::DeployingVm, E::JobStarted),
            (S::CreatingJitConfig, E::JobCompleted),
            (S::Finishing, E::VmDeployed),
        ];
        for (stage, event) in ignored {
            assert_eq!(transition(stage, event), Ignore, "{stage:?} + {event:?}");
        }
    }

    #[test]
    fn every_stage_has_a_way_out() {
        // From any stage some sequence of events reaches Gone: nothing can be stranded.
        for start in S::ALL {
            let mut stage = start;
            let mut gone = false;
            let path = [E::ProvisioningFailed, E::JobCompleted, E::RunnerDied, E::Deregistered, E::VmDeleted];
            for event in path {
                match transition(stage, event) {
                    To(next) => stage = next,
                    Gone => {
                        gone = true;
                        break;
                    }
                    Ignore => {}
                }
            }
            assert!(gone, "{start:?} got stuck at {stage:?}");
        }
    }

    #[test]
    fn planner_phases() {
        let d = Duration::from_secs(7);
        assert_eq!(S::Installing.phase(d), RunnerPhase::Provisioning);
        assert_eq!(S::Idle.phase(d), RunnerPhase::Idle { idle_for: d });
        assert_eq!(S::Busy.phase(d), RunnerPhase::Busy);
        assert_eq!(S::DeletingVm.phase(d), RunnerPhase::Finishing);
    }
}
