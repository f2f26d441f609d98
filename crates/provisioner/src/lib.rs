//! Runner lifecycle and scaling decisions.
//!
//! This crate decides how many runners should exist ([`planner`], a pure function of the
//! latest statistics and the controller's own view of its runners) and drives each
//! runner through its lifecycle (deploy VM → JIT config → provision over SSH → online →
//! busy → finishing → deregistering → VM deleted) through the `VmBackend`, `ScaleSetApi`
//! and `VmShell` seams.
//!
//! What it does not know: HTTP, JSON or SSH details; it does I/O only through traits.

pub mod planner;

pub use planner::{Demand, Plan, RunnerPhase, RunnerView, ScalingConfig, plan_runner_gap};
