//! GitHub runner scale set client.
//!
//! This crate owns everything that knows GitHub's wire format: the REST bootstrap (PAT or
//! GitHub App → registration token → Actions tenant URL and admin token), the Actions
//! service endpoints for scale sets, sessions, jobs and runners, and the message queue.
//! The rest of the controller sees only the [`ScaleSetApi`] and [`MessageQueue`] seams
//! and the vocabulary below.
//!
//! What it does not know: Orka, SSH, or how many runners to create.

mod api;
mod auth;
mod client;
pub mod config;
mod error;
pub mod messages;
mod proxy;
mod queue;
mod transport;
mod types;
mod wire;

pub use api::{MessageQueue, ScaleSetApi};
#[cfg(any(test, feature = "mocks"))]
pub use api::{MockMessageQueue, MockScaleSetApi};
pub use client::GitHubClient;
pub use config::{Auth, GitHubConfig, ProxyConfig, RetryPolicy, Timeouts};
pub use error::ScaleSetError;
pub use messages::{
    JobAvailable, JobCompleted, JobInfo, JobMessage, JobResult, JobStarted, ScaleSetMessage, parse_message,
};
pub use queue::SessionQueue;
pub use types::{
    JitConfig, Label, MessageSession, NewScaleSet, RunnerGroup, RunnerRecord, RunnerSetting, RunnerState,
    ScaleSet, ScaleSetRef, Statistics,
};
pub use wire::ScaleSetUpdate;
