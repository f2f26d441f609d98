//! Runner lifecycle and scaling decisions.
//!
//! This crate decides how many runners should exist ([`planner`], a pure function of the
//! latest statistics and the controller's own view of its runners) and drives each
//! runner through its lifecycle ([`lifecycle`]: deploy VM → JIT config → provision over
//! SSH → online → busy → finishing → deregistering → VM deleted) through the `VmBackend`,
//! `ScaleSetApi` and `VmShell` seams. [`Fleet`] is the per-scale-set entry point the
//! binary calls: on every message, every empty poll, every tick.
//!
//! Decisions where the protocol leaves room:
//!
//! * **Runner ↔ job binding is nominal.** Any idle runner of the scale set may take any
//!   job, so runners are not created "for" a job. A `JobCompleted` with `canceled` /
//!   `ignored` / `abandoned` removes that job's demand from the [`jobs`] book; the next
//!   plan then stops as many provisioning runners as no demand needs any more, least
//!   advanced first ([`planner::surplus_provisioning`]). A runner already online stays
//!   for the idle grace (the service often re-assigns a withdrawn job with a new id).
//! * **Nothing is held per running job.** Provisioning tasks end when run.sh runs;
//!   cleanup tasks end when the VM is deleted. In between a runner is a map entry, moved by
//!   `JobStarted` / `JobCompleted` and by the periodic probe of [`Fleet::tick`] (which also
//!   catches a `JobCompleted` consumed by a process that died: the run sentinel).
//! * **Adopted runners** enter the same state machine as `Idle` or `Busy`.
//! * **A refused runner version holds new VMs back.** A runner that exits without a job
//!   with code 7 or GitHub's deprecation message marks the scale set outdated: one VM per
//!   retry interval at most, and a new latest release (when not pinned) resumes it
//!   ([`outdated`]).
//!
//! With the `fakes` feature, the `fakes` module offers stateful in-memory implementations of the
//! three seams (used by this crate's and the reconciler's tests and benchmarks).
//!
//! What it does not know: HTTP, JSON or SSH details (I/O only through the three traits),
//! the message session, and reconciliation decisions.

mod capacity;
pub mod config;
mod error;
pub mod events;
#[cfg(feature = "fakes")]
pub mod fakes;
mod fleet;
pub mod jobs;
pub mod lifecycle;
pub mod outdated;
pub mod planner;
mod provision;
mod retire;
mod retry;
pub mod trace;
mod watch;

pub use config::{FleetConfig, RunnerInstallConfig, StepPolicy};
pub use error::{Cause, ProvisionError, Step};
pub use events::{FleetCounters, FleetEvent, FleetObserver, JobEventKind, RetireReason};
pub use fleet::{Fleet, FleetDeps, RunnerSnapshot};
pub use lifecycle::{LifecycleEvent, RunnerStage, Transition, transition};
pub use outdated::{Outdated, RunnerVersionSource, RunnerVersionStatus, VersionSourceError};
pub use planner::{
    Demand, Plan, RunnerPhase, RunnerView, ScalingConfig, plan_runner_gap, surplus_provisioning,
};
pub use trace::JobTrace;
