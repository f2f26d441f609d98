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
mod error;
pub mod messages;
mod types;

pub use api::{MessageQueue, ScaleSetApi};
#[cfg(any(test, feature = "mocks"))]
pub use api::{MockMessageQueue, MockScaleSetApi};
pub use error::ScaleSetError;
pub use messages::{
    JobAvailable, JobCompleted, JobInfo, JobMessage, JobResult, JobStarted, ScaleSetMessage, parse_message,
};
pub use types::{
    JitConfig, Label, MessageSession, NewScaleSet, RunnerGroup, RunnerRecord, RunnerSetting, RunnerState,
    ScaleSet, ScaleSetRef, Statistics,
};
