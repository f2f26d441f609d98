//! Startup and periodic reconciliation of the VMs a controller owns.
//!
//! After a crash or restart, the VMs a previous process left behind are found in Orka and
//! each is deleted, cleaned up or adopted, from evidence: the Orka status, the GitHub
//! runner record and an SSH probe of the VM. The per-VM choice is the pure function
//! [`decide`]; see its module for the decision table.
//!
//! [`Reconciler`] runs the passes: the startup sweep is the first activation of
//! [`Reconciler::run_periodic`] (one code path). In a pass every VM is examined on its own,
//! in parallel, with a deadline per lookup and per probe, and its decision is executed as
//! soon as its own evidence is complete (a VM needing no probe does not wait for the
//! slowest probe). A VM whose probe failed is probed again within the same pass — *quick
//! strikes*, each at least `strike_spacing` (`PROBE_TIMEOUT`) after the previous — until
//! it answers, its evidence changes or it strikes out, so deleting an unreachable VM takes
//! about N × `PROBE_TIMEOUT` whatever the reconcile interval. Before each strike and
//! before acting the safety rules are checked again: tracked by the fleet, busy per GitHub
//! or per a job message, GitHub lookup error. Strikes are remembered across passes.
//! Decisions are executed through the fleet's [`runner_core::FleetControl`] seam (adopt →
//! the runner lifecycle; clean up / delete → deregister, then delete the VM). The pass's table
//! ([`ReconcileReport`]) is returned at the end; [`Mode::DryRun`] returns it without acting
//! (`reconcile --dry-run`).
//!
//! Busy evidence: GitHub's runner list reports scale-set runners idle while they run a job,
//! so `busy: false` is never evidence of idleness. A job message (`JobStarted` without its
//! `JobCompleted`, see `FleetControl::job_running_on`) counts as busy like GitHub's `busy: true`;
//! see the decision table.
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
