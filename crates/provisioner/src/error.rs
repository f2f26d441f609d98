//! The provisioner's error type: which lifecycle step failed and why.

use std::fmt;
use std::time::Duration;

use runner_core::ScaleSetError;
use runner_core::ShellError;
use runner_core::VmBackendError;

/// A lifecycle step with a deadline and a retry budget.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Step {
    /// Deploying the VM in Orka.
    DeployVm,
    /// Registering the JIT runner with GitHub.
    CreateJitConfig,
    /// Waiting until the VM accepts SSH.
    WaitSsh,
    /// Installing and starting the runner over SSH.
    InstallRunner,
    /// Removing the runner registration.
    Deregister,
    /// Deleting the VM.
    DeleteVm,
}

impl Step {
    /// A short stable label (logs, metrics).
    pub fn as_str(self) -> &'static str {
        match self {
            Step::DeployVm => "deploy_vm",
            Step::CreateJitConfig => "create_jit_config",
            Step::WaitSsh => "wait_ssh",
            Step::InstallRunner => "install_runner",
            Step::Deregister => "deregister",
            Step::DeleteVm => "delete_vm",
        }
    }
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The underlying failure of a step.
#[derive(Debug, thiserror::Error)]
pub enum Cause {
    /// Orka failed.
    #[error("Orka call failed")]
    Orka(#[source] VmBackendError),
    /// GitHub failed.
    #[error("GitHub call failed")]
    GitHub(#[source] ScaleSetError),
    /// SSH failed.
    #[error("SSH failed")]
    Shell(#[source] ShellError),
    /// The VM has no SSH endpoint (no IP or port).
    #[error("the VM has no SSH endpoint")]
    NoSshEndpoint,
}

/// Everything that can go wrong in the provisioner.
#[derive(Debug, thiserror::Error)]
pub enum ProvisionError {
    /// A step failed after its retry budget (or with an error retrying cannot fix).
    #[error("{step} failed after {attempts} attempt(s)")]
    StepFailed {
        /// The step.
        step: Step,
        /// Attempts made.
        attempts: u32,
        /// The last failure.
        #[source]
        cause: Cause,
    },
    /// A step's attempts all ran out of time.
    #[error("{step} timed out ({attempts} attempt(s) of {deadline:?})")]
    TimedOut {
        /// The step.
        step: Step,
        /// Attempts made.
        attempts: u32,
        /// Deadline of one attempt.
        deadline: Duration,
    },
    /// The work was cancelled (demand gone, or shutdown).
    #[error("{step} cancelled")]
    Cancelled {
        /// The step that was running.
        step: Step,
    },
    /// GitHub still reports a job on the runner, so it was not removed.
    #[error("the runner is still running a job")]
    JobStillRunning,
    /// The fleet no longer tracks the runner (it was retired meanwhile).
    #[error("runner {name} is not tracked")]
    NotTracked {
        /// Runner name.
        name: String,
    },
    /// The scale-set name cannot prefix VM names.
    #[error("invalid configuration")]
    Config(#[source] VmBackendError),
    /// Acquiring offered jobs failed; the jobs stay offered and are acquired again later.
    #[error("acquiring jobs failed")]
    Acquire(#[source] ScaleSetError),
}

impl ProvisionError {
    /// The step the error belongs to, when there is one.
    pub fn step(&self) -> Option<Step> {
        match self {
            ProvisionError::StepFailed { step, .. }
            | ProvisionError::TimedOut { step, .. }
            | ProvisionError::Cancelled { step } => Some(*step),
            ProvisionError::JobStillRunning => Some(Step::Deregister),
            _ => None,
        }
    }

    /// A short stable label of the failure reason (metrics).
    pub fn reason(&self) -> &'static str {
        match self {
            ProvisionError::StepFailed { .. } => "failed",
            ProvisionError::TimedOut { .. } => "timed_out",
            ProvisionError::Cancelled { .. } => "cancelled",
            ProvisionError::JobStillRunning => "job_still_running",
            ProvisionError::NotTracked { .. } => "not_tracked",
            ProvisionError::Config(_) => "config",
            ProvisionError::Acquire(_) => "acquire",
        }
    }
}
