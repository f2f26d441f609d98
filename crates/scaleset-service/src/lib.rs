//! One GitHub runner scale set served end to end, as a library.
//!
//! [`run_scale_set`] obtains the scale set (creating it when absent), holds its message
//! session — GitHub's lock: one holder per scale set, so replicas run active/standby
//! (409 → stand by with backoff, never delete the scale set) — runs the first
//! reconciliation, then long-polls messages, hands them to the fleet and acknowledges them
//! after handling; empty polls and a periodic tick resync the fleet, a periodic sweep runs
//! the reconciler while the session is held, and a lost session is re-created with the
//! message cursor kept.
//!
//! It talks to GitHub through the `runner-core` seams ([`ScaleSetApi`](runner_core::ScaleSetApi),
//! [`MessageQueue`](runner_core::MessageQueue)) and to the fleet and reconciler through three
//! small traits ([`RunnerFleet`], [`Sweeper`], [`FleetFactory`]) plus [`QueueOpener`], so it
//! links no HTTP or SSH library and is unit-tested with mocks. Every transition is
//! published as a [`Phase`] on a `watch` channel; [`health`] turns phases and loop
//! heartbeats into the liveness and readiness reports a binary serves over HTTP.
//!
//! What it does not own: configuration, concrete clients, HTTP endpoints, signals (the
//! caller cancels the token), scaling decisions (the fleet) or VM decisions (the
//! reconciler).

pub mod health;
mod service;

pub use health::Phase;
pub use service::{
    CREDENTIALS_MAX_BACKOFF, DELETE_SESSION_TIMEOUT, FatalError, FleetFactory, MESSAGE_ATTEMPTS, QueueOpener,
    RunnerFleet, ScaleSetSpec, ServiceDeps, ServiceTimings, Sweeper, WorkError, run_scale_set,
};
