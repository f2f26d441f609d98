//! The two GitHub seams — scale-set administration ([`ScaleSetApi`]) and the session's
//! message queue ([`MessageQueue`]) — the data they exchange and their error.

mod api;
mod error;
mod types;

pub use api::{MessageQueue, ScaleSetApi};
#[cfg(any(test, feature = "mocks"))]
pub use api::{MockMessageQueue, MockScaleSetApi};
pub use error::ScaleSetError;
pub use types::{
    JitConfig, Label, MessageSession, NewScaleSet, RunnerGroup, RunnerRecord, RunnerSetting, RunnerState,
    ScaleSet, ScaleSetRef, Statistics,
};
