//! The seams of the runner controller and the vocabulary they speak.
//!
//! Everything that does I/O in this workspace does it through one of four traits, defined
//! here so that the crates deciding things (`provisioner`, `reconciler`,
//! `scaleset-service`) and anyone implementing a seam depend on this small crate only, not
//! on HTTP, TLS or SSH libraries:
//!
//! - [`VmBackend`]: list, deploy and delete VMs ([`Vm`], [`VmStatus`], [`DeployRequest`],
//!   [`VmBackendError`]); implemented for Orka by `orka-client`.
//! - [`ScaleSetApi`] and [`MessageQueue`]: GitHub's scale-set administration and the
//!   session's long-poll queue ([`ScaleSet`], [`MessageSession`], [`ScaleSetMessage`],
//!   [`Statistics`], [`RunnerRecord`], [`JitConfig`], [`ScaleSetError`]); implemented by
//!   `github-scaleset`.
//! - [`VmShell`]: commands inside a VM ([`SshTarget`], [`ProbeReport`], [`RunnerInstall`],
//!   [`ScriptOutput`], [`ShellError`]); implemented over SSH by `vm-probe`.
//!
//! Plus what the reconciler needs from the fleet ([`FleetControl`], [`RetireReason`]), the
//! bundle of seams both use ([`Seams`]), VM naming and ownership ([`naming`]) and the
//! parsing of the message envelope ([`messages`]), which are pure.
//!
//! Each seam returns its own typed error whose variants are the failures a caller branches
//! on, each marked retryable or not (`is_retryable`); see `docs/ARCHITECTURE.md`.
//!
//! With the `mocks` feature, `mockall` mocks of every trait are exported (`MockVmBackend`,
//! `MockScaleSetApi`, `MockMessageQueue`, `MockVmShell`, `MockFleetControl`).

mod fleet;
pub mod messages;
pub mod naming;
mod scale_set;
mod seams;
mod shell;
mod vm;

#[cfg(any(test, feature = "mocks"))]
pub use fleet::MockFleetControl;
pub use fleet::{FleetControl, RetireReason};
pub use messages::{
    JobAvailable, JobCompleted, JobInfo, JobMessage, JobResult, JobStarted, ScaleSetMessage, parse_message,
};
pub use naming::VmName;
pub use scale_set::{
    JitConfig, Label, MessageQueue, MessageSession, NewScaleSet, RunnerGroup, RunnerRecord, RunnerSetting,
    RunnerState, ScaleSet, ScaleSetApi, ScaleSetError, ScaleSetRef, Statistics,
};
#[cfg(any(test, feature = "mocks"))]
pub use scale_set::{MockMessageQueue, MockScaleSetApi};
pub use seams::Seams;
#[cfg(any(test, feature = "mocks"))]
pub use shell::MockVmShell;
pub use shell::{ProbeReport, RunnerInstall, ScriptOutput, ShellError, SshStep, SshTarget, Tri, VmShell};
#[cfg(any(test, feature = "mocks"))]
pub use vm::MockVmBackend;
pub use vm::{DeployRequest, Vm, VmBackend, VmBackendError, VmStatus};
