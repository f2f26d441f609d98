//! Shared helpers of the contract tests: a fake GitHub, a client configured for it with
//! short retry delays, and a tiny listener loop that acknowledges what it receives.

#![allow(dead_code, missing_docs)]

pub mod raw;

use std::time::Duration;

use github_scaleset::{
    Auth, GitHubClient, GitHubConfig, JobMessage, Label, MessageQueue, NewScaleSet, ProxyConfig, RetryPolicy,
    RunnerSetting, ScaleSetApi, ScaleSetMessage, SessionQueue, Timeouts,
};
use secrecy::SecretString;
use std::sync::Arc;
use testkit::github::{FakeGitHub, FakeGitHubConfig};

pub const WAIT: Duration = Duration::from_secs(20);

pub fn fast_retry() -> RetryPolicy {
    RetryPolicy {
        max_retries: 4,
        min_delay: Duration::from_millis(20),
        max_delay: Duration::from_millis(200),
        max_retry_after: Duration::from_secs(3),
    }
}

pub fn config_for(fake: &FakeGitHub, scope: &str, auth: Auth) -> GitHubConfig {
    let mut c = GitHubConfig::new(fake.config_url(scope), auth);
    c.retry = fast_retry();
    c.registration_retry = fast_retry();
    c.timeouts = Timeouts { request: Duration::from_secs(5), long_poll: Duration::from_secs(10) };
    c.proxy = ProxyConfig::None;
    c
}

pub fn pat_config(fake: &FakeGitHub) -> GitHubConfig {
    config_for(fake, "my-org", Auth::Pat(SecretString::from(fake.pat())))
}

pub async fn start(cfg: FakeGitHubConfig) -> FakeGitHub {
    FakeGitHub::start(cfg).await.expect("fake GitHub starts")
}

pub async fn client(fake: &FakeGitHub) -> GitHubClient {
    GitHubClient::connect(pat_config(fake)).await.expect("client connects")
}

pub fn new_scale_set(name: &str) -> NewScaleSet {
    NewScaleSet {
        name: name.into(),
        runner_group_id: 1,
        labels: vec![Label::system(name)],
        runner_setting: RunnerSetting { disable_update: true },
    }
}

/// Creates scale set `name` and a session on it.
pub async fn scale_set_with_queue(client: &GitHubClient, name: &str) -> (i64, Arc<SessionQueue>) {
    let ss = client.create_scale_set(&new_scale_set(name)).await.expect("create scale set");
    let session = client.create_session(ss.id, "test-host").await.expect("create session");
    (ss.id, client.queue(session))
}

/// Receives messages (acknowledging each) until `done` holds for everything received so
/// far, or `WAIT` passes. Returns all messages.
pub async fn receive_until(
    queue: &dyn MessageQueue,
    last: &mut i64,
    capacity: u32,
    done: impl Fn(&[ScaleSetMessage]) -> bool,
) -> Vec<ScaleSetMessage> {
    let deadline = tokio::time::Instant::now() + WAIT;
    let mut got = Vec::new();
    while !done(&got) {
        assert!(tokio::time::Instant::now() < deadline, "timed out; received so far: {got:#?}");
        if let Some(msg) = queue.get_message(*last, capacity).await.expect("get message") {
            *last = msg.message_id;
            queue.delete_message(msg.message_id).await.expect("delete message");
            got.push(msg);
        }
    }
    got
}

pub fn jobs(msgs: &[ScaleSetMessage]) -> Vec<&JobMessage> {
    msgs.iter().flat_map(|m| m.job_messages.iter()).collect()
}

pub fn count_type(msgs: &[ScaleSetMessage], pred: impl Fn(&JobMessage) -> bool) -> usize {
    jobs(msgs).into_iter().filter(|m| pred(m)).count()
}

pub fn is_assigned(m: &JobMessage) -> bool {
    matches!(m, JobMessage::Assigned(_))
}
pub fn is_started(m: &JobMessage) -> bool {
    matches!(m, JobMessage::Started(_))
}
pub fn is_completed(m: &JobMessage) -> bool {
    matches!(m, JobMessage::Completed(_))
}
pub fn is_available(m: &JobMessage) -> bool {
    matches!(m, JobMessage::Available(_))
}
