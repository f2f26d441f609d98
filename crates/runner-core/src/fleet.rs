//! What the reconciler needs from the fleet: the seam between the two.
//!
//! The reconciler decides, per VM it owns, whether to adopt, clean up or delete it, and
//! hands the decision to whatever drives the runners' lifecycles (in this workspace,
//! `provisioner::Fleet`). It never takes the concrete fleet, so either side can be
//! replaced or mocked.

use async_trait::async_trait;

use crate::{RunnerRecord, Vm};

/// The operations the reconciler performs on the runners of one scale set.
#[cfg_attr(any(test, feature = "mocks"), mockall::automock)]
#[async_trait]
pub trait FleetControl: Send + Sync {
    /// Whether the fleet tracks a runner (provisioning, online or being cleaned up) called
    /// `name`; the reconciler leaves such VMs alone.
    fn owns(&self, name: &str) -> bool;

    /// Tracks a runner found running exactly like one this process started (`busy` →
    /// busy, otherwise idle). False when the name is already tracked or not owned by the
    /// scale set.
    async fn adopt(&self, vm: Vm, runner: RunnerRecord, busy: bool) -> bool;

    /// Retires a VM: deregisters its runner, then deletes the VM. Never retires a busy
    /// tracked runner or a VM the scale set does not own. Returns whether a cleanup was
    /// scheduled or already runs.
    async fn retire_vm(&self, vm_name: &str, reason: RetireReason) -> bool;

    /// Runner names job messages mentioned that the fleet does not track (candidates for
    /// the reconciler's sweep of registrations whose VM is gone), sorted.
    fn seen_runner_names(&self) -> Vec<String>;

    /// Drops `name` from [`FleetControl::seen_runner_names`] once its registration is settled.
    fn forget_seen_runner(&self, name: &str);

    /// Whether job messages say a job runs on the runner `name` (a `JobStarted` named it
    /// and the job's `JobCompleted` has not arrived): busy evidence of the controller's own,
    /// since GitHub's runner list reports scale-set runners idle while they run a job.
    fn job_running_on(&self, name: &str) -> bool;
}

/// Why a runner left.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RetireReason {
    /// Its job completed (`JobCompleted`).
    JobCompleted,
    /// The probe found the run sentinel (the job ended; the message may have been lost).
    RunComplete,
    /// run.sh died without a run sentinel.
    RunnerCrashed,
    /// The VM stopped answering probes and GitHub does not report it busy.
    Unreachable,
    /// The VM vanished from Orka or failed.
    VmVanished,
    /// Surplus idle runner past the idle grace.
    Surplus,
    /// Online too long without a job.
    IdleTooLong,
    /// Provisioning was stopped because the demand went away, or for shutdown.
    Cancelled,
    /// A provisioning step failed.
    ProvisioningFailed,
    /// The reconciler decided so (deregister, then delete).
    Reconciler,
}

impl RetireReason {
    /// A short stable label (logs, metrics).
    pub fn as_str(self) -> &'static str {
        match self {
            RetireReason::JobCompleted => "job_completed",
            RetireReason::RunComplete => "run_complete",
            RetireReason::RunnerCrashed => "runner_crashed",
            RetireReason::Unreachable => "unreachable",
            RetireReason::VmVanished => "vm_vanished",
            RetireReason::Surplus => "surplus",
            RetireReason::IdleTooLong => "idle_too_long",
            RetireReason::Cancelled => "cancelled",
            RetireReason::ProvisioningFailed => "provisioning_failed",
            RetireReason::Reconciler => "reconciler",
        }
    }
}
