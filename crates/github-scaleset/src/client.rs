//! [`GitHubClient`]: the Actions-service endpoints of docs/protocol/github-scaleset.md#endpoints
//! behind [`ScaleSetApi`].
//!
//! Owns: URL construction under the tenant base (docs/protocol/github-scaleset.md#url-rules), the
//! admin-token header, status
//! handling per endpoint, and the AgentExists recovery of generate-JIT-config. Does not
//! own: the message queue (see [`crate::SessionQueue`]) or retry timing (transport).

use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use secrecy::ExposeSecret;
use url::Url;

use crate::{
    JitConfig, JobAvailable, MessageSession, NewScaleSet, RunnerGroup, RunnerRecord, ScaleSet, ScaleSetApi,
    ScaleSetError, SessionQueue,
    auth::{Bootstrap, Tenant, bearer},
    config::GitHubConfig,
    transport::{HttpRequest, HttpResponse, Idempotency, Transport, body_cap},
    wire::{
        JitRequestWire, JitResponseWire, ListResponse, NewScaleSetWire, NewSessionWire, RunnerGroupWire,
        RunnerWire, ScaleSetUpdate, ScaleSetUpdateWire, ScaleSetWire, SessionWire, error_from_response,
        parse_json,
    },
};

/// The Actions API version every Actions-service call carries.
pub(crate) const API_VERSION: &str = "6.0-preview";

pub(crate) struct Inner {
    pub(crate) transport: Transport,
    pub(crate) bootstrap: Bootstrap,
    pub(crate) config: GitHubConfig,
}

/// The GitHub client: bootstrap, Actions service and (via [`GitHubClient::queue`]) the
/// message queue. Cheap to clone.
#[derive(Clone)]
pub struct GitHubClient {
    pub(crate) inner: Arc<Inner>,
}

impl std::fmt::Debug for GitHubClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GitHubClient")
            .field("config_url", &self.inner.config.config_url)
            .finish_non_exhaustive()
    }
}

/// Builds `tenant_base + path` with duplicate slashes collapsed, the base's query kept,
/// `query` appended and `api-version` added when absent
/// (docs/protocol/github-scaleset.md#url-rules).
pub(crate) fn actions_url(base: &Url, path: &str, query: &[(&str, &str)]) -> Url {
    let mut url = base.clone();
    let mut joined = format!("{}/{}", base.path().trim_end_matches('/'), path);
    while joined.contains("//") {
        joined = joined.replace("//", "/");
    }
    url.set_path(&joined);
    let has_version =
        url.query_pairs().any(|(k, _)| k == "api-version") || query.iter().any(|(k, _)| *k == "api-version");
    {
        let mut pairs = url.query_pairs_mut();
        for (k, v) in query {
            pairs.append_pair(k, v);
        }
        if !has_version {
            pairs.append_pair("api-version", API_VERSION);
        }
    }
    url
}

impl GitHubClient {
    /// Builds the client without any I/O (the bootstrap runs on first use).
    pub fn new(config: GitHubConfig) -> Result<Self, ScaleSetError> {
        let transport = Transport::new(&config)?;
        let bootstrap = Bootstrap::new(&config)?;
        Ok(Self { inner: Arc::new(Inner { transport, bootstrap, config }) })
    }

    /// Builds the client and runs the bootstrap chain once, so bad credentials or an
    /// unreachable GitHub fail here.
    pub async fn connect(config: GitHubConfig) -> Result<Self, ScaleSetError> {
        let client = Self::new(config)?;
        client.inner.bootstrap.tenant(&client.inner.transport).await?;
        Ok(client)
    }

    /// The Actions-service tenant URL currently in use (runs the bootstrap if needed).
    pub async fn tenant_url(&self) -> Result<Url, ScaleSetError> {
        Ok(self.inner.bootstrap.tenant(&self.inner.transport).await?.base.clone())
    }

    /// The message queue bound to `session`; it refreshes the session as needed.
    pub fn queue(&self, session: MessageSession) -> Arc<SessionQueue> {
        Arc::new(SessionQueue::new(self.clone(), session))
    }

    /// Updates a scale set (`PATCH`); `None` fields are left unchanged.
    pub async fn update_scale_set(
        &self,
        id: i64,
        update: &ScaleSetUpdate,
    ) -> Result<ScaleSet, ScaleSetError> {
        let body = serde_json::to_vec(&ScaleSetUpdateWire::from(update)).expect("serialisable");
        let resp = self
            .actions(
                Call::new(Method::PATCH, format!("_apis/runtime/runnerscalesets/{id}"), "update scale set")
                    .body(body),
            )
            .await?;
        let wire: ScaleSetWire = expect_json(&resp, &[StatusCode::OK], "update scale set")?;
        Ok(wire.into())
    }

    /// Jobs currently offered to the scale set (acquire flow; empty on 204).
    pub async fn acquirable_jobs(&self, scale_set_id: i64) -> Result<Vec<JobAvailable>, ScaleSetError> {
        let resp = self
            .actions(
                Call::new(
                    Method::GET,
                    format!("_apis/runtime/runnerscalesets/{scale_set_id}/acquirablejobs"),
                    "acquirable jobs",
                )
                .max_body(body_cap::MESSAGES),
            )
            .await?;
        if resp.status == StatusCode::NO_CONTENT || crate::messages::strip_bom(&resp.body).is_empty() {
            return ensure_ok(&resp, &[StatusCode::OK, StatusCode::NO_CONTENT]).map(|_| Vec::new());
        }
        let list: ListResponse<JobAvailable> = expect_json(&resp, &[StatusCode::OK], "acquirable jobs")?;
        Ok(list.value)
    }

    /// Sends an Actions-service request with the admin token. A 401 re-runs the
    /// bootstrap once (new registration token → new admin token) and sends it again.
    pub(crate) async fn actions(&self, call: Call<'_>) -> Result<HttpResponse, ScaleSetError> {
        let build = |tenant: &Tenant| -> Result<HttpRequest, ScaleSetError> {
            let mut headers = HeaderMap::new();
            headers.insert(header::AUTHORIZATION, bearer(tenant.token.expose_secret())?);
            headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
            Ok(HttpRequest {
                method: call.method.clone(),
                url: actions_url(&tenant.base, &call.path, call.query),
                headers,
                body: call.body.clone(),
                timeout: self.inner.config.timeouts.request,
                idempotency: call.idempotency,
                context: call.context,
                max_body: call.max_body,
            })
        };
        let bootstrap = &self.inner.bootstrap;
        let transport = &self.inner.transport;
        let tenant = bootstrap.tenant(transport).await?;
        let resp = transport.send(&build(&tenant)?, &self.inner.config.retry).await?;
        if resp.status != StatusCode::UNAUTHORIZED {
            return Ok(resp);
        }
        // The Go clients have no reactive refresh; one re-bootstrap is cheap insurance
        // against a token revoked before its `exp`.
        tracing::debug!(context = call.context, "admin token rejected; re-running the bootstrap once");
        bootstrap.invalidate(&tenant);
        let tenant = bootstrap.tenant(transport).await?;
        transport.send(&build(&tenant)?, &self.inner.config.retry).await
    }

    async fn generate_once(&self, scale_set_id: i64, runner_name: &str) -> Result<JitConfig, ScaleSetError> {
        let body =
            serde_json::to_vec(&JitRequestWire { name: runner_name, work_folder: "" }).expect("serialisable");
        // A duplicate caused by a retry after the server committed surfaces as AgentExists,
        // which `generate_jit_config` recovers from; so transport retries are safe here.
        let resp = self
            .actions(
                Call::new(
                    Method::POST,
                    format!("_apis/runtime/runnerscalesets/{scale_set_id}/generatejitconfig"),
                    "generate JIT config",
                )
                .body(body),
            )
            .await?;
        let wire: JitResponseWire =
            expect_json(&resp, &[StatusCode::OK, StatusCode::CREATED], "generate JIT config")?;
        let config = wire.into_config()?;
        self.inner.transport.secrets.remember(&config.encoded_jit_config);
        Ok(config)
    }
}

/// One Actions-service call: what [`GitHubClient::actions`] sends under the tenant base.
pub(crate) struct Call<'a> {
    method: Method,
    path: String,
    query: &'a [(&'a str, &'a str)],
    body: Option<Bytes>,
    idempotency: Idempotency,
    context: &'static str,
    max_body: usize,
}

impl<'a> Call<'a> {
    /// An idempotent call without query or body, answered by at most
    /// [`body_cap::SERVICE`] bytes.
    pub(crate) fn new(method: Method, path: impl Into<String>, context: &'static str) -> Self {
        Self {
            method,
            path: path.into(),
            query: &[],
            body: None,
            idempotency: Idempotency::Idempotent,
            context,
            max_body: body_cap::SERVICE,
        }
    }

    fn query(mut self, query: &'a [(&'a str, &'a str)]) -> Self {
        self.query = query;
        self
    }

    fn body(mut self, body: impl Into<Bytes>) -> Self {
        self.body = Some(body.into());
        self
    }

    /// A POST that must not be repeated once it may have reached the server.
    fn not_idempotent(mut self) -> Self {
        self.idempotency = Idempotency::NonIdempotent;
        self
    }

    fn max_body(mut self, max_body: usize) -> Self {
        self.max_body = max_body;
        self
    }
}

fn ensure_ok(resp: &HttpResponse, ok: &[StatusCode]) -> Result<(), ScaleSetError> {
    if ok.contains(&resp.status) { Ok(()) } else { Err(error_from_response(resp)) }
}

fn expect_json<T: serde::de::DeserializeOwned>(
    resp: &HttpResponse,
    ok: &[StatusCode],
    context: &str,
) -> Result<T, ScaleSetError> {
    ensure_ok(resp, ok)?;
    parse_json(context, &resp.body)
}

#[async_trait]
impl ScaleSetApi for GitHubClient {
    async fn get_runner_group(&self, name: &str) -> Result<RunnerGroup, ScaleSetError> {
        let resp = self
            .actions(
                Call::new(Method::GET, "_apis/runtime/runnergroups/", "get runner group")
                    .query(&[("groupName", name)]),
            )
            .await?;
        let list: ListResponse<RunnerGroupWire> = expect_json(&resp, &[StatusCode::OK], "get runner group")?;
        match list.at_most_one("get runner group")? {
            Some(g) => Ok(g.into()),
            None => Err(ScaleSetError::Http {
                status: 404,
                type_name: None,
                message: format!("no runner group named {name:?}"),
            }),
        }
    }

    async fn get_scale_set(
        &self,
        runner_group_id: i64,
        name: &str,
    ) -> Result<Option<ScaleSet>, ScaleSetError> {
        let gid = runner_group_id.to_string();
        let resp = self
            .actions(
                Call::new(Method::GET, "_apis/runtime/runnerscalesets", "get scale set")
                    .query(&[("runnerGroupId", &gid), ("name", name)]),
            )
            .await?;
        let list: ListResponse<ScaleSetWire> = expect_json(&resp, &[StatusCode::OK], "get scale set")?;
        Ok(list.at_most_one("get scale set")?.map(Into::into))
    }

    async fn get_scale_set_by_id(&self, id: i64) -> Result<ScaleSet, ScaleSetError> {
        let resp = self
            .actions(Call::new(
                Method::GET,
                format!("_apis/runtime/runnerscalesets/{id}"),
                "get scale set by id",
            ))
            .await?;
        let wire: ScaleSetWire = expect_json(&resp, &[StatusCode::OK], "get scale set by id")?;
        Ok(wire.into())
    }

    async fn create_scale_set(&self, scale_set: &NewScaleSet) -> Result<ScaleSet, ScaleSetError> {
        let body = serde_json::to_vec(&NewScaleSetWire::from(scale_set)).expect("serialisable");
        let resp = self
            .actions(
                Call::new(Method::POST, "_apis/runtime/runnerscalesets", "create scale set")
                    .body(body)
                    .not_idempotent(),
            )
            .await?;
        let wire: ScaleSetWire =
            expect_json(&resp, &[StatusCode::OK, StatusCode::CREATED], "create scale set")?;
        Ok(wire.into())
    }

    async fn delete_scale_set(&self, id: i64) -> Result<(), ScaleSetError> {
        let resp = self
            .actions(Call::new(
                Method::DELETE,
                format!("_apis/runtime/runnerscalesets/{id}"),
                "delete scale set",
            ))
            .await?;
        ensure_ok(&resp, &[StatusCode::NO_CONTENT, StatusCode::OK])
    }

    async fn generate_jit_config(
        &self,
        scale_set_id: i64,
        runner_name: &str,
    ) -> Result<JitConfig, ScaleSetError> {
        match self.generate_once(scale_set_id, runner_name).await {
            Err(ScaleSetError::AgentExists) => {}
            other => return other,
        }
        // The name is taken: if the registration is ours (a leftover, or our own earlier
        // attempt whose response was lost), remove it and try once more.
        let existing = self.get_runner_by_name(runner_name).await?;
        match existing {
            Some(r) if r.runner_scale_set_id == scale_set_id => {
                tracing::info!(
                    runner = runner_name,
                    runner_id = r.id,
                    "runner name taken in our scale set; re-registering"
                );
                self.remove_runner(r.id).await?;
                self.generate_once(scale_set_id, runner_name).await
            }
            _ => Err(ScaleSetError::AgentExists),
        }
    }

    async fn get_runner_by_name(&self, name: &str) -> Result<Option<RunnerRecord>, ScaleSetError> {
        let resp = self
            .actions(
                Call::new(Method::GET, "_apis/distributedtask/pools/0/agents", "get runner by name")
                    .query(&[("agentName", name)]),
            )
            .await?;
        let list: ListResponse<RunnerWire> = expect_json(&resp, &[StatusCode::OK], "get runner by name")?;
        Ok(list.at_most_one("get runner by name")?.map(Into::into))
    }

    async fn get_runner(&self, id: i64) -> Result<Option<RunnerRecord>, ScaleSetError> {
        let resp = self
            .actions(Call::new(
                Method::GET,
                format!("_apis/distributedtask/pools/0/agents/{id}"),
                "get runner",
            ))
            .await?;
        if resp.status == StatusCode::NOT_FOUND {
            return match error_from_response(&resp) {
                // Only the typed answer means "absent": a bare 404 (wrong tenant, proxy)
                // must not make a live runner look gone.
                ScaleSetError::AgentNotFound => Ok(None),
                other => Err(other),
            };
        }
        let wire: RunnerWire = expect_json(&resp, &[StatusCode::OK], "get runner")?;
        Ok(Some(wire.into()))
    }

    async fn remove_runner(&self, id: i64) -> Result<(), ScaleSetError> {
        let resp = self
            .actions(Call::new(
                Method::DELETE,
                format!("_apis/distributedtask/pools/0/agents/{id}"),
                "remove runner",
            ))
            .await?;
        if resp.status == StatusCode::NOT_FOUND {
            return match error_from_response(&resp) {
                ScaleSetError::AgentNotFound => Ok(()),
                other => Err(other),
            };
        }
        ensure_ok(&resp, &[StatusCode::NO_CONTENT, StatusCode::OK])
    }

    async fn create_session(
        &self,
        scale_set_id: i64,
        owner_name: &str,
    ) -> Result<MessageSession, ScaleSetError> {
        let body = serde_json::to_vec(&NewSessionWire {
            session_id: "00000000-0000-0000-0000-000000000000",
            owner_name,
        })
        .expect("serialisable");
        let resp = self
            .actions(
                Call::new(
                    Method::POST,
                    format!("_apis/runtime/runnerscalesets/{scale_set_id}/sessions"),
                    "create session",
                )
                .body(body)
                .not_idempotent(),
            )
            .await?;
        let wire: SessionWire = expect_json(&resp, &[StatusCode::OK, StatusCode::CREATED], "create session")?;
        let session = wire.into_session(scale_set_id, None)?;
        self.inner.transport.secrets.remember(&session.message_queue_access_token);
        if !session.message_queue_url.is_empty() {
            return Ok(session);
        }
        // Observed degradation (ARC#4370): a session without a queue URL. Ask again once;
        // failing that, give the session back so the scale set is not locked by it.
        tracing::warn!(scale_set_id, "session created without a message queue URL; refreshing it");
        match self.refresh_session(&session).await {
            Ok(s) if !s.message_queue_url.is_empty() => Ok(s),
            _ => {
                if let Err(e) = self.delete_session(&session).await {
                    tracing::warn!(
                        error = &e as &dyn std::error::Error,
                        "could not delete the unusable session"
                    );
                }
                Err(ScaleSetError::protocol(
                    "create session",
                    "the service returned an empty messageQueueUrl",
                ))
            }
        }
    }

    async fn refresh_session(&self, session: &MessageSession) -> Result<MessageSession, ScaleSetError> {
        let resp = self
            .actions(Call::new(
                Method::PATCH,
                format!(
                    "_apis/runtime/runnerscalesets/{}/sessions/{}",
                    session.scale_set.id, session.session_id
                ),
                "refresh session",
            ))
            .await?;
        if resp.status == StatusCode::NOT_FOUND {
            return Err(match error_from_response(&resp) {
                ScaleSetError::ScaleSetNotFound => ScaleSetError::ScaleSetNotFound,
                _ => ScaleSetError::SessionNotFound,
            });
        }
        let wire: SessionWire = expect_json(&resp, &[StatusCode::OK], "refresh session")?;
        let fresh = wire.into_session(session.scale_set.id, Some(session))?;
        self.inner.transport.secrets.remember(&fresh.message_queue_access_token);
        Ok(fresh)
    }

    async fn delete_session(&self, session: &MessageSession) -> Result<(), ScaleSetError> {
        let resp = self
            .actions(Call::new(
                Method::DELETE,
                format!(
                    "_apis/runtime/runnerscalesets/{}/sessions/{}",
                    session.scale_set.id, session.session_id
                ),
                "delete session",
            ))
            .await?;
        ensure_ok(&resp, &[StatusCode::NO_CONTENT, StatusCode::OK])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn actions_urls_follow_the_go_rules() {
        let base = Url::parse("https://broker.example/rest/").unwrap();
        assert_eq!(
            actions_url(&base, "_apis/runtime/runnergroups/", &[("groupName", "my group")]).as_str(),
            "https://broker.example/rest/_apis/runtime/runnergroups/?groupName=my+group&api-version=6.0-preview"
        );
        let base = Url::parse("https://p.example/tenant//x/?foo=1").unwrap();
        assert_eq!(
            actions_url(&base, "/_apis/runtime/runnerscalesets/1", &[]).as_str(),
            "https://p.example/tenant/x/_apis/runtime/runnerscalesets/1?foo=1&api-version=6.0-preview"
        );
        let base = Url::parse("https://p.example/t?api-version=7.0").unwrap();
        assert_eq!(
            actions_url(&base, "_apis/a", &[]).as_str(),
            "https://p.example/t/_apis/a?api-version=7.0"
        );
    }
}
