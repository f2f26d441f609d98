//! The two seams the controller uses: scale-set administration and the message queue.

use async_trait::async_trait;

use crate::{
    JitConfig, MessageSession, NewScaleSet, RunnerGroup, RunnerRecord, ScaleSet, ScaleSetError,
    ScaleSetMessage,
};

/// Actions-service operations authenticated with the admin token.
#[cfg_attr(any(test, feature = "mocks"), mockall::automock)]
#[async_trait]
pub trait ScaleSetApi: Send + Sync {
    /// Looks up a runner group by name (`default` is id 1).
    async fn get_runner_group(&self, name: &str) -> Result<RunnerGroup, ScaleSetError>;
    /// A scale set by name within a runner group; `Ok(None)` if absent.
    async fn get_scale_set(
        &self,
        runner_group_id: i64,
        name: &str,
    ) -> Result<Option<ScaleSet>, ScaleSetError>;
    /// A scale set by id ([`ScaleSetError::ScaleSetNotFound`] if absent).
    async fn get_scale_set_by_id(&self, id: i64) -> Result<ScaleSet, ScaleSetError>;
    /// Creates a scale set.
    async fn create_scale_set(&self, scale_set: &NewScaleSet) -> Result<ScaleSet, ScaleSetError>;
    /// Deletes a scale set.
    async fn delete_scale_set(&self, id: i64) -> Result<(), ScaleSetError>;
    /// Registers a JIT runner called `runner_name` in the scale set.
    async fn generate_jit_config(
        &self,
        scale_set_id: i64,
        runner_name: &str,
    ) -> Result<JitConfig, ScaleSetError>;
    /// A runner by name; `Ok(None)` if not registered.
    async fn get_runner_by_name(&self, name: &str) -> Result<Option<RunnerRecord>, ScaleSetError>;
    /// A runner by id; `Ok(None)` if not registered.
    async fn get_runner(&self, id: i64) -> Result<Option<RunnerRecord>, ScaleSetError>;
    /// Removes a runner registration; absent runners are a success,
    /// [`ScaleSetError::JobStillRunning`] means "not yet".
    async fn remove_runner(&self, id: i64) -> Result<(), ScaleSetError>;
    /// Creates the scale set's message session ([`ScaleSetError::SessionConflict`] while
    /// another process holds it).
    async fn create_session(
        &self,
        scale_set_id: i64,
        owner_name: &str,
    ) -> Result<MessageSession, ScaleSetError>;
    /// Refreshes the session's queue token ([`ScaleSetError::SessionNotFound`] when the
    /// session is gone and a new one must be created).
    async fn refresh_session(&self, session: &MessageSession) -> Result<MessageSession, ScaleSetError>;
    /// Deletes the session (orderly shutdown).
    async fn delete_session(&self, session: &MessageSession) -> Result<(), ScaleSetError>;
}

/// The long-poll message queue of one session, authenticated with the queue token.
///
/// Implementations refresh the session on a 401 and retry once; a refresh that finds the
/// session gone surfaces as [`ScaleSetError::SessionNotFound`].
#[cfg_attr(any(test, feature = "mocks"), mockall::automock)]
#[async_trait]
pub trait MessageQueue: Send + Sync {
    /// Long-polls for the next message after `last_message_id` (0 = from the start),
    /// advertising `max_capacity` runners. `Ok(None)` when the poll ended empty.
    async fn get_message(
        &self,
        last_message_id: i64,
        max_capacity: u32,
    ) -> Result<Option<ScaleSetMessage>, ScaleSetError>;
    /// Acknowledges (deletes) a message.
    async fn delete_message(&self, message_id: i64) -> Result<(), ScaleSetError>;
    /// Acquires offered jobs by request id; returns the ids actually acquired.
    async fn acquire_jobs(&self, request_ids: &[i64]) -> Result<Vec<i64>, ScaleSetError>;
    /// The session as currently held (after any refresh).
    fn session(&self) -> MessageSession;
}
