//! [`SessionQueue`]: the long-poll message queue of one session
//! (docs/protocol/github-scaleset.md#message-queue, docs/protocol/github-scaleset.md#acquire,
//! docs/protocol/github-scaleset.md#queue-token).
//!
//! Owns: the session currently held (swapped on refresh), the queue-token header, the
//! proactive refresh from the token's `exp`, and the reactive rule "401 → refresh the
//! session → retry once". Does not own: what to do with a message.

use std::{sync::Mutex, time::SystemTime};

use async_trait::async_trait;
use http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use secrecy::ExposeSecret;
use url::Url;

use crate::{
    GitHubClient, MessageQueue, MessageSession, ScaleSetApi, ScaleSetError, ScaleSetMessage,
    auth::{bearer, jwt_expiry},
    client::actions_url,
    messages::parse_message,
    transport::{HttpRequest, HttpResponse, Idempotency, body_cap},
    wire::{ListResponse, error_from_response, parse_json},
};

/// The message queue of one session. Create it with [`GitHubClient::queue`].
pub struct SessionQueue {
    client: GitHubClient,
    session: Mutex<MessageSession>,
    refresh: tokio::sync::Mutex<()>,
}

impl std::fmt::Debug for SessionQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionQueue").field("session", &self.session()).finish_non_exhaustive()
    }
}

impl SessionQueue {
    pub(crate) fn new(client: GitHubClient, session: MessageSession) -> Self {
        Self { client, session: Mutex::new(session), refresh: tokio::sync::Mutex::new(()) }
    }

    /// Refreshes the session unless someone already replaced the one `seen` was from.
    async fn refresh_from(&self, seen: &MessageSession) -> Result<(), ScaleSetError> {
        let _one_at_a_time = self.refresh.lock().await;
        let current = self.session();
        if current.message_queue_access_token.expose_secret()
            != seen.message_queue_access_token.expose_secret()
            || current.message_queue_url != seen.message_queue_url
        {
            return Ok(());
        }
        let fresh = self.client.refresh_session(&current).await?;
        tracing::debug!(session_id = %fresh.session_id, "message session refreshed");
        *self.session.lock().expect("session lock") = fresh;
        Ok(())
    }

    /// Refreshes ahead of the queue token's `exp` (a 401 would also do, one round trip later).
    async fn refresh_if_expiring(&self) -> Result<(), ScaleSetError> {
        let margin = self.client.inner.config.queue_token_refresh_margin;
        let seen = self.session();
        let expiring = !margin.is_zero()
            && jwt_expiry(seen.message_queue_access_token.expose_secret())
                .is_some_and(|exp| SystemTime::now() + margin >= exp);
        if !expiring && !seen.message_queue_url.is_empty() {
            return Ok(());
        }
        match self.refresh_from(&seen).await {
            Err(e @ (ScaleSetError::SessionNotFound | ScaleSetError::ScaleSetNotFound)) => Err(e),
            Err(e) => {
                tracing::warn!(
                    error = &e as &dyn std::error::Error,
                    "proactive session refresh failed; trying the current token"
                );
                Ok(())
            }
            Ok(()) => Ok(()),
        }
    }

    /// Sends a queue-token request built from the current session; on 401 refreshes the
    /// session and sends it once more.
    async fn with_queue_token(
        &self,
        build: impl Fn(&MessageSession) -> Result<HttpRequest, ScaleSetError>,
    ) -> Result<HttpResponse, ScaleSetError> {
        let seen = self.session();
        let resp = self.send(build(&seen)?).await?;
        if resp.status != StatusCode::UNAUTHORIZED {
            return Ok(resp);
        }
        tracing::debug!("queue token rejected; refreshing the session");
        self.refresh_from(&seen).await?;
        let resp = self.send(build(&self.session())?).await?;
        if resp.status == StatusCode::UNAUTHORIZED {
            return Err(error_from_response(&resp));
        }
        Ok(resp)
    }

    async fn send(&self, req: HttpRequest) -> Result<HttpResponse, ScaleSetError> {
        self.client.inner.transport.send(&req, &self.client.inner.config.retry).await
    }

    fn queue_url(session: &MessageSession) -> Result<Url, ScaleSetError> {
        if session.message_queue_url.trim().is_empty() {
            return Err(ScaleSetError::protocol("message queue", "the session has an empty messageQueueUrl"));
        }
        Url::parse(&session.message_queue_url)
            .map_err(|e| ScaleSetError::protocol("message queue", format!("messageQueueUrl: {e}")))
    }

    fn queue_headers(session: &MessageSession) -> Result<HeaderMap, ScaleSetError> {
        let mut headers = HeaderMap::new();
        headers.insert(header::AUTHORIZATION, bearer(session.message_queue_access_token.expose_secret())?);
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
        Ok(headers)
    }
}

#[async_trait]
impl MessageQueue for SessionQueue {
    async fn get_message(
        &self,
        last_message_id: i64,
        max_capacity: u32,
    ) -> Result<Option<ScaleSetMessage>, ScaleSetError> {
        self.refresh_if_expiring().await?;
        let timeout = self.client.inner.config.timeouts.long_poll;
        let capacity = HeaderValue::from(max_capacity.min(i32::MAX as u32));
        let resp = self
            .with_queue_token(|session| {
                let mut url = Self::queue_url(session)?;
                if last_message_id > 0 {
                    url.query_pairs_mut().append_pair("lastMessageId", &last_message_id.to_string());
                }
                let mut headers = Self::queue_headers(session)?;
                headers.remove(header::CONTENT_TYPE);
                headers.insert(
                    header::ACCEPT,
                    HeaderValue::from_static("application/json; api-version=6.0-preview"),
                );
                headers.insert("X-ScaleSetMaxCapacity", capacity.clone());
                Ok(HttpRequest {
                    method: Method::GET,
                    url,
                    headers,
                    body: None,
                    timeout,
                    idempotency: Idempotency::Idempotent,
                    context: "get message",
                    max_body: body_cap::MESSAGES,
                })
            })
            .await?;
        match resp.status {
            StatusCode::OK => parse_message(&resp.body),
            StatusCode::ACCEPTED | StatusCode::NO_CONTENT => Ok(None),
            _ => Err(error_from_response(&resp)),
        }
    }

    async fn delete_message(&self, message_id: i64) -> Result<(), ScaleSetError> {
        self.refresh_if_expiring().await?;
        let timeout = self.client.inner.config.timeouts.request;
        let resp = self
            .with_queue_token(|session| {
                let mut url = Self::queue_url(session)?;
                let path = format!("{}/{message_id}", url.path().trim_end_matches('/'));
                url.set_path(&path);
                Ok(HttpRequest {
                    method: Method::DELETE,
                    url,
                    headers: Self::queue_headers(session)?,
                    body: None,
                    timeout,
                    idempotency: Idempotency::Idempotent,
                    context: "delete message",
                    max_body: body_cap::SERVICE,
                })
            })
            .await?;
        match resp.status {
            StatusCode::NO_CONTENT | StatusCode::OK => Ok(()),
            StatusCode::NOT_FOUND => {
                tracing::debug!(message_id, "message already deleted");
                Ok(())
            }
            _ => Err(error_from_response(&resp)),
        }
    }

    async fn acquire_jobs(&self, request_ids: &[i64]) -> Result<Vec<i64>, ScaleSetError> {
        if request_ids.is_empty() {
            return Ok(Vec::new());
        }
        self.refresh_if_expiring().await?;
        let tenant = self.client.inner.bootstrap.tenant(&self.client.inner.transport).await?;
        let timeout = self.client.inner.config.timeouts.request;
        let body = bytes::Bytes::from(serde_json::to_vec(request_ids).expect("serialisable"));
        let resp = self
            .with_queue_token(|session| {
                Ok(HttpRequest {
                    method: Method::POST,
                    url: actions_url(
                        &tenant.base,
                        &format!("_apis/runtime/runnerscalesets/{}/acquirejobs", session.scale_set.id),
                        &[],
                    ),
                    headers: Self::queue_headers(session)?,
                    body: Some(body.clone()),
                    timeout,
                    // Acquiring an id twice is harmless: the second answer is a subset.
                    idempotency: Idempotency::Idempotent,
                    context: "acquire jobs",
                    max_body: body_cap::MESSAGES,
                })
            })
            .await?;
        if resp.status != StatusCode::OK {
            return Err(error_from_response(&resp));
        }
        let list: ListResponse<i64> = parse_json("acquire jobs", &resp.body)?;
        Ok(list.value)
    }

    fn session(&self) -> MessageSession {
        self.session.lock().expect("session lock").clone()
    }
}
