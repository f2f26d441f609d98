//! The `orka-runner-controller` binary's library half: configuration, CLI, logging,
//! metrics and health endpoints, and the command handlers `main` dispatches to.
//!
//! This is the only crate that picks concrete implementations of the trait seams. What it
//! does not own: scaling decisions (`provisioner`), reconcile decisions (`reconciler`), the
//! scale set's session lifecycle and health signals (`scaleset-service`) and any wire
//! format (`github-scaleset`, `orka-client`, `vm-probe`).

pub mod app;
pub mod check;
pub mod cli;
pub mod commands;
pub mod config;
#[cfg(feature = "demo")]
pub mod demo;
/// Liveness and readiness state behind `/healthz` and `/readyz` (from `scaleset-service`).
pub use scaleset_service::health;
pub mod http;
pub mod logging;
pub mod metrics;
pub mod runner_version;
/// The per-scale-set service (the `scaleset-service` crate).
pub use scaleset_service as service;
pub mod shutdown;
pub mod status;
pub mod wiring;
