//! Errors of the GitHub client, with the service's named exceptions as variants
//! (docs/protocol/github-scaleset.md#exceptions).

use std::time::Duration;

/// Everything that can go wrong talking to GitHub.
///
/// `Display` never includes a token, key or JIT config.
#[derive(Debug, thiserror::Error)]
pub enum ScaleSetError {
    /// 409 `RunnerScaleSetSessionConflictException`: another listener holds the session.
    #[error("the scale set already has an active message session")]
    SessionConflict,
    /// 400 `RunnerScaleSetSessionExpiredException`: the session id is no longer valid.
    #[error("the message session has expired")]
    SessionExpired,
    /// Session refresh returned 404: the session is gone; create a new one.
    #[error("the message session no longer exists")]
    SessionNotFound,
    /// 404 `RunnerScaleSetNotFoundException`.
    #[error("the runner scale set does not exist")]
    ScaleSetNotFound,
    /// `AgentExistsException`: the runner name is taken.
    #[error("a runner with this name is already registered")]
    AgentExists,
    /// `AgentNotFoundException`.
    #[error("the runner is not registered")]
    AgentNotFound,
    /// `JobStillRunningException`: the runner is busy and cannot be removed yet.
    #[error("the runner is still running a job")]
    JobStillRunning,
    /// 401 (without rate-limit headers) / 403 that is not a rate limit, after the refresh
    /// rules; the message names the setting to check.
    #[error("GitHub rejected the credentials ({status}): {message}")]
    Unauthorized {
        /// HTTP status.
        status: u16,
        /// The server's message.
        message: String,
    },
    /// A primary or secondary rate limit (403/429) that outlasted the transport's waits.
    #[error("GitHub rate limit still reached after waiting{}", retry_hint(*retry_after))]
    RateLimited {
        /// The server's `Retry-After`, when given.
        retry_after: Option<Duration>,
    },
    /// 404 on the organization, repository or enterprise the config URL names.
    #[error(
        "GitHub has no organization, repository or enterprise at {url} that these credentials can see (404); check GITHUB_URL and the credentials' access"
    )]
    ScopeNotFound {
        /// The config URL.
        url: String,
    },
    /// Another 4xx / 5xx.
    #[error("GitHub returned {status}: {message}")]
    Http {
        /// HTTP status.
        status: u16,
        /// The exception type name, when the body had one.
        type_name: Option<String>,
        /// The server's message or raw body.
        message: String,
    },
    /// The request did not complete: connect, TLS, timeout or a broken connection.
    #[error("transport error talking to GitHub ({context})")]
    Transport {
        /// What was being done.
        context: String,
        /// The underlying error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// A response this client could not understand.
    #[error("unexpected response from GitHub ({context}): {message}")]
    Protocol {
        /// What was being parsed.
        context: String,
        /// What was wrong.
        message: String,
    },
    /// Invalid configuration (URL form, key, …).
    #[error("invalid GitHub configuration: {0}")]
    Config(String),
}

fn retry_hint(retry_after: Option<Duration>) -> String {
    retry_after.map(|d| format!("; it resets in {} s", d.as_secs())).unwrap_or_default()
}

impl ScaleSetError {
    /// A [`ScaleSetError::Protocol`].
    pub fn protocol(context: impl Into<String>, message: impl Into<String>) -> Self {
        ScaleSetError::Protocol { context: context.into(), message: message.into() }
    }

    /// Whether trying again later may succeed.
    pub fn is_retryable(&self) -> bool {
        match self {
            ScaleSetError::RateLimited { .. }
            | ScaleSetError::Transport { .. }
            | ScaleSetError::SessionConflict
            | ScaleSetError::JobStillRunning => true,
            ScaleSetError::Http { status, .. } => *status >= 500 && *status != 501,
            _ => false,
        }
    }
}
