//! Decorators of the three remote seams that record every call's latency and outcome in
//! the API metrics (`api_request_duration_seconds`, `api_errors`), by fixed endpoint name.
//!
//! A call is one logical operation as the controller sees it (a client's internal
//! retries included). Errors are labelled with the HTTP status they stand for, or
//! `transport` / `timeout` when no usable response came.

use std::sync::Arc;

use async_trait::async_trait;
use github_scaleset::{
    JitConfig, MessageQueue, MessageSession, NewScaleSet, RunnerGroup, RunnerRecord, ScaleSet, ScaleSetApi,
    ScaleSetError, ScaleSetMessage,
};
use orka_client::{DeployRequest, OrkaError, Vm, VmBackend};
use tokio::time::Instant;

use crate::metrics::{Api, ApiStatus, Metrics};

/// Times `call` and records it under `endpoint`.
async fn metered<T, E>(
    metrics: &Metrics,
    api: Api,
    endpoint: &str,
    status_of: fn(&E) -> ApiStatus,
    call: impl Future<Output = Result<T, E>>,
) -> Result<T, E> {
    let started = Instant::now();
    let result = call.await;
    let status = match &result {
        Ok(_) => ApiStatus::Http(200),
        Err(e) => status_of(e),
    };
    metrics.observe_api_request(api, endpoint, status, started.elapsed());
    result
}

/// The HTTP status an Orka error stands for.
pub(super) fn orka_status(e: &OrkaError) -> ApiStatus {
    match e {
        OrkaError::Unauthorized { .. } => ApiStatus::Http(401),
        OrkaError::Forbidden { .. } => ApiStatus::Http(403),
        OrkaError::NotFound { .. } => ApiStatus::Http(404),
        OrkaError::NameConflict { .. } => ApiStatus::Http(409),
        OrkaError::RateLimited { .. } => ApiStatus::Http(429),
        OrkaError::Invalid { status, .. } | OrkaError::Server { status, .. } => ApiStatus::Http(*status),
        OrkaError::CapacityExhausted { .. } | OrkaError::DeployFailed { .. } => ApiStatus::Http(500),
        OrkaError::DeployTimedOut { .. } => ApiStatus::Timeout,
        OrkaError::Transport { .. }
        | OrkaError::Protocol { .. }
        | OrkaError::Config(_)
        | OrkaError::UnmappedNodeIp { .. } => ApiStatus::Transport,
    }
}

/// The HTTP status a GitHub error stands for.
pub(super) fn github_status(e: &ScaleSetError) -> ApiStatus {
    match e {
        ScaleSetError::SessionConflict | ScaleSetError::AgentExists => ApiStatus::Http(409),
        ScaleSetError::SessionExpired | ScaleSetError::JobStillRunning => ApiStatus::Http(400),
        ScaleSetError::SessionNotFound
        | ScaleSetError::ScaleSetNotFound
        | ScaleSetError::AgentNotFound
        | ScaleSetError::ScopeNotFound { .. } => ApiStatus::Http(404),
        ScaleSetError::Unauthorized { status, .. } | ScaleSetError::Http { status, .. } => {
            ApiStatus::Http(*status)
        }
        ScaleSetError::RateLimited { .. } => ApiStatus::Http(429),
        ScaleSetError::Transport { .. } | ScaleSetError::Protocol { .. } | ScaleSetError::Config(_) => {
            ApiStatus::Transport
        }
    }
}

/// A [`VmBackend`] that records its calls.
pub(super) struct MeteredVms {
    pub(super) inner: Arc<dyn VmBackend>,
    pub(super) metrics: Arc<Metrics>,
}

#[async_trait]
impl VmBackend for MeteredVms {
    async fn list_vms(&self) -> Result<Vec<Vm>, OrkaError> {
        metered(&self.metrics, Api::Orka, "list_vms", orka_status, self.inner.list_vms()).await
    }

    async fn get_vm(&self, name: &str) -> Result<Option<Vm>, OrkaError> {
        metered(&self.metrics, Api::Orka, "get_vm", orka_status, self.inner.get_vm(name)).await
    }

    async fn deploy_vm(&self, request: &DeployRequest) -> Result<Vm, OrkaError> {
        metered(&self.metrics, Api::Orka, "deploy_vm", orka_status, self.inner.deploy_vm(request)).await
    }

    async fn delete_vm(&self, name: &str) -> Result<(), OrkaError> {
        metered(&self.metrics, Api::Orka, "delete_vm", orka_status, self.inner.delete_vm(name)).await
    }
}

/// A [`ScaleSetApi`] that records its calls.
pub(super) struct MeteredGitHub {
    pub(super) inner: Arc<dyn ScaleSetApi>,
    pub(super) metrics: Arc<Metrics>,
}

impl MeteredGitHub {
    async fn call<T>(
        &self,
        endpoint: &str,
        call: impl Future<Output = Result<T, ScaleSetError>>,
    ) -> Result<T, ScaleSetError> {
        metered(&self.metrics, Api::GitHub, endpoint, github_status, call).await
    }
}

#[async_trait]
impl ScaleSetApi for MeteredGitHub {
    async fn get_runner_group(&self, name: &str) -> Result<RunnerGroup, ScaleSetError> {
        self.call("get_runner_group", self.inner.get_runner_group(name)).await
    }
    async fn get_scale_set(
        &self,
        runner_group_id: i64,
        name: &str,
    ) -> Result<Option<ScaleSet>, ScaleSetError> {
        self.call("get_scale_set", self.inner.get_scale_set(runner_group_id, name)).await
    }
    async fn get_scale_set_by_id(&self, id: i64) -> Result<ScaleSet, ScaleSetError> {
        self.call("get_scale_set", self.inner.get_scale_set_by_id(id)).await
    }
    async fn create_scale_set(&self, scale_set: &NewScaleSet) -> Result<ScaleSet, ScaleSetError> {
        self.call("create_scale_set", self.inner.create_scale_set(scale_set)).await
    }
    async fn delete_scale_set(&self, id: i64) -> Result<(), ScaleSetError> {
        self.call("delete_scale_set", self.inner.delete_scale_set(id)).await
    }
    async fn generate_jit_config(
        &self,
        scale_set_id: i64,
        runner_name: &str,
    ) -> Result<JitConfig, ScaleSetError> {
        self.call("generate_jit_config", self.inner.generate_jit_config(scale_set_id, runner_name)).await
    }
    async fn get_runner_by_name(&self, name: &str) -> Result<Option<RunnerRecord>, ScaleSetError> {
        self.call("get_runner", self.inner.get_runner_by_name(name)).await
    }
    async fn get_runner(&self, id: i64) -> Result<Option<RunnerRecord>, ScaleSetError> {
        self.call("get_runner", self.inner.get_runner(id)).await
    }
    async fn remove_runner(&self, id: i64) -> Result<(), ScaleSetError> {
        self.call("remove_runner", self.inner.remove_runner(id)).await
    }
    async fn create_session(
        &self,
        scale_set_id: i64,
        owner_name: &str,
    ) -> Result<MessageSession, ScaleSetError> {
        self.call("create_session", self.inner.create_session(scale_set_id, owner_name)).await
    }
    async fn refresh_session(&self, session: &MessageSession) -> Result<MessageSession, ScaleSetError> {
        self.call("refresh_session", self.inner.refresh_session(session)).await
    }
    async fn delete_session(&self, session: &MessageSession) -> Result<(), ScaleSetError> {
        self.call("delete_session", self.inner.delete_session(session)).await
    }
}

/// A [`MessageQueue`] that records its calls (the long poll's latency includes the hold).
pub(super) struct MeteredQueue {
    pub(super) inner: Arc<dyn MessageQueue>,
    pub(super) metrics: Arc<Metrics>,
}

#[async_trait]
impl MessageQueue for MeteredQueue {
    async fn get_message(
        &self,
        last_message_id: i64,
        max_capacity: u32,
    ) -> Result<Option<ScaleSetMessage>, ScaleSetError> {
        let call = self.inner.get_message(last_message_id, max_capacity);
        metered(&self.metrics, Api::GitHub, "get_message", github_status, call).await
    }
    async fn delete_message(&self, message_id: i64) -> Result<(), ScaleSetError> {
        let call = self.inner.delete_message(message_id);
        metered(&self.metrics, Api::GitHub, "delete_message", github_status, call).await
    }
    async fn acquire_jobs(&self, request_ids: &[i64]) -> Result<Vec<i64>, ScaleSetError> {
        let call = self.inner.acquire_jobs(request_ids);
        metered(&self.metrics, Api::GitHub, "acquire_jobs", github_status, call).await
    }
    fn session(&self) -> MessageSession {
        self.inner.session()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use orka_client::MockVmBackend;

    #[tokio::test]
    async fn calls_are_recorded_with_their_status_and_errors_counted() {
        let metrics = Arc::new(Metrics::new());
        let mut inner = MockVmBackend::new();
        inner.expect_list_vms().returning(|| Ok(vec![]));
        inner
            .expect_delete_vm()
            .returning(|_| Err(OrkaError::Server { status: 503, message: "busy".into() }));
        let vms = MeteredVms { inner: Arc::new(inner), metrics: metrics.clone() };
        vms.list_vms().await.unwrap();
        assert!(vms.delete_vm("mac-abcde").await.is_err());
        let text = metrics.encode();
        let count = |needle: &str| text.lines().filter(|l| l.contains(needle)).count();
        assert_eq!(
            count(r#"api_request_duration_seconds_count{api="orka",endpoint="list_vms",status="200"}"#),
            1
        );
        assert_eq!(count(r#"api_errors_total{api="orka",endpoint="delete_vm",status="503"}"#), 1);
        assert_eq!(count(r#"api_errors_total{api="orka",endpoint="list_vms""#), 0, "a success is no error");
    }

    #[test]
    fn error_kinds_map_to_the_status_they_stand_for() {
        assert_eq!(github_status(&ScaleSetError::SessionConflict), ApiStatus::Http(409));
        assert_eq!(github_status(&ScaleSetError::RateLimited { retry_after: None }), ApiStatus::Http(429));
        assert_eq!(orka_status(&OrkaError::Unauthorized { message: String::new() }), ApiStatus::Http(401));
        let timed_out = OrkaError::DeployTimedOut { name: "mac-abcde".into(), after: Duration::from_secs(1) };
        assert_eq!(orka_status(&timed_out), ApiStatus::Timeout);
    }
}
