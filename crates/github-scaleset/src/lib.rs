//! GitHub runner scale set client.
//!
//! This crate owns everything that knows GitHub's wire format: the REST bootstrap (PAT or
//! GitHub App → registration token → Actions tenant URL and admin token), the Actions
//! service endpoints for scale sets, sessions, jobs and runners, and the message queue.
//! The rest of the controller sees only the [`ScaleSetApi`] and [`MessageQueue`] seams
//! and their vocabulary, which live in `runner-core` and are re-exported here.
//!
//! What it does not know: Orka, SSH, or how many runners to create.
//!
//! ```no_run
//! # async fn demo() -> Result<(), github_scaleset::ScaleSetError> {
//! use github_scaleset::{Auth, GitHubClient, GitHubConfig, MessageQueue, ScaleSetApi};
//! use secrecy::SecretString;
//!
//! let config = GitHubConfig::new("https://github.com/my-org", Auth::Pat(SecretString::from("ghp_…")));
//! let client = GitHubClient::connect(config).await?; // runs the REST bootstrap once
//! let scale_set = client.get_scale_set(1, "mac").await?.expect("registered");
//! let session = client.create_session(scale_set.id, "my-host").await?;
//! let queue = client.queue(session); // Arc<SessionQueue>: refreshes the session on 401
//! if let Some(message) = queue.get_message(0, 10).await? {
//!     queue.delete_message(message.message_id).await?;
//! }
//! # Ok(()) }
//! ```
//!
//! Transport rules (docs/protocol/github-scaleset.md#retries): transport errors, 429 and 5xx except
//! 501 are retried with
//! exponential backoff (`Retry-After` honoured, capped); POSTs that may have been committed
//! (create scale set, create session) are not repeated; TLS verification failures are not
//! retried. Admin-token calls re-run the bootstrap once on 401; queue calls refresh the
//! session once on 401. GitHub's primary and secondary rate limits (403/429, see
//! [`RateLimitPolicy`]) are waited out inside the request, never reported as rejected
//! credentials; budgets and waits go to a [`RateLimitObserver`]. Response bodies are
//! capped per endpoint, and error bodies are scrubbed of every secret the client holds.

mod auth;
mod client;
pub mod config;
mod proxy;
mod queue;
mod ratelimit;
pub mod release;
mod secrets;
mod transport;
mod wire;

pub use client::GitHubClient;
pub use config::{Auth, GitHubConfig, ProxyConfig, RetryPolicy, Timeouts};
pub use queue::SessionQueue;
pub use ratelimit::{ObserverSlot, RateLimitKind, RateLimitObserver, RateLimitPolicy};
/// The message envelope and its parsing (defined with the seam in `runner-core`).
pub use runner_core::messages;
pub use runner_core::{
    JitConfig, JobAvailable, JobCompleted, JobInfo, JobMessage, JobResult, JobStarted, Label, MessageQueue,
    MessageSession, NewScaleSet, RunnerGroup, RunnerRecord, RunnerSetting, RunnerState, ScaleSet,
    ScaleSetApi, ScaleSetError, ScaleSetMessage, ScaleSetRef, Statistics, parse_message,
};
#[cfg(any(test, feature = "mocks"))]
pub use runner_core::{MockMessageQueue, MockScaleSetApi};
pub use wire::ScaleSetUpdate;
