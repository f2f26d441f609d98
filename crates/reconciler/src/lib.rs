//! Startup and periodic reconciliation of the VMs a controller owns.
//!
//! After a crash or restart, the VMs a previous process left behind are found in Orka and
//! each is deleted, cleaned up or adopted, from evidence: the Orka status, the GitHub
//! runner record and an SSH probe of the VM. The per-VM choice is the pure function
//! [`decide`]; see its module for the decision table.
//!
//! What it does not know: HTTP, JSON or SSH details; it does I/O only through traits.

pub mod decision;

pub use decision::{
    Action, Decision, Evidence, OrkaEvidence, ProbeEvidence, Reason, ReconcilePolicy, RunnerEvidence, decide,
};
