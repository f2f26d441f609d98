//! Startup and periodic reconciliation of the VMs a controller owns.
//!
//! After a crash or restart, the VMs a previous process left behind are found in Orka and
//! each is deleted, cleaned up or adopted, from evidence: the Orka status, the GitHub
//! runner record and an SSH probe of the VM. The per-VM choice is the pure function
//! [`decide`]; see its module for the decision table.
//!
//! [`Reconciler`] runs the passes: the startup sweep is the first activation of
//! [`Reconciler::run_periodic`] (one code path), VMs are examined in parallel with a
//! per-VM deadline, probe strikes are remembered across passes, and decisions are
//! executed through the fleet's [`runner_core::FleetControl`] seam (adopt → the runner
//! lifecycle; clean up / delete → deregister, then delete the VM). [`Mode::DryRun`]
//! returns the table without acting (`reconcile --dry-run`).
//!
//! What it does not know: HTTP, JSON or SSH details; it does I/O only through traits. It
//! does not decide when it may run: the scale-set service runs it only while holding the scale set's
//! message session, and not at all with `ENABLE_RECONCILIATION=false`.

pub mod decision;
mod error;
mod evidence;
mod reconciler;

pub use decision::{
    Action, Decision, Evidence, OrkaEvidence, ProbeEvidence, Reason, ReconcilePolicy, RunnerEvidence, decide,
};
pub use error::ReconcileError;
pub use reconciler::{DecisionRow, Mode, ReconcileReport, Reconciler, ReconcilerConfig, ReconcilerDeps};
