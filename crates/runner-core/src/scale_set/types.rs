//! Plain data exchanged with the Actions service.

use secrecy::SecretString;
use serde::{Deserialize, Serialize};

/// Job and runner counts the service attaches to sessions and messages
/// (docs/protocol/github-scaleset.md#statistics).
///
/// `total_assigned_jobs` is the scaling signal. The counts are not guaranteed to be
/// consistent with each other or with the message body they arrive with.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Statistics {
    /// Jobs offered to the scale set and not yet acquired (acquire flow).
    pub total_available_jobs: u32,
    /// Jobs acquired but not yet assigned (acquire flow).
    pub total_acquired_jobs: u32,
    /// Jobs assigned to the scale set, waiting for a runner or running.
    pub total_assigned_jobs: u32,
    /// Assigned jobs a runner has started.
    pub total_running_jobs: u32,
    /// Runners registered in the scale set, connected or not.
    pub total_registered_runners: u32,
    /// Runners executing a job.
    pub total_busy_runners: u32,
    /// Connected runners without a job.
    pub total_idle_runners: u32,
}

/// A runner label (`{"type":"System","name":"…"}`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Label {
    /// Label type; the clients always use `System`.
    #[serde(rename = "type", default = "system_label_type")]
    pub kind: String,
    /// The label text (`runs-on`).
    pub name: String,
}

fn system_label_type() -> String {
    "System".to_owned()
}

impl Label {
    /// A `System` label.
    pub fn system(name: impl Into<String>) -> Self {
        Self { kind: system_label_type(), name: name.into() }
    }
}

/// Runner settings of a scale set.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct RunnerSetting {
    /// Runners never self-update (true for every scale set we create).
    pub disable_update: bool,
}

/// A runner group (`id` 1 is the default group).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RunnerGroup {
    /// Group id.
    pub id: i64,
    /// Group name.
    pub name: String,
    /// Whether this is the default group.
    #[serde(default)]
    pub is_default_group: bool,
}

/// A scale set as the service returns it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScaleSet {
    /// Scale set id.
    pub id: i64,
    /// Name (also the first label and the `runs-on` target).
    pub name: String,
    /// Runner group id.
    pub runner_group_id: i64,
    /// Runner group name, when the service sends it.
    pub runner_group_name: Option<String>,
    /// The labels jobs use to target this scale set.
    pub labels: Vec<Label>,
    /// Runner settings.
    pub runner_setting: RunnerSetting,
    /// Statistics, when the service sends them.
    pub statistics: Option<Statistics>,
}

/// The minimal reference to a scale set carried by sessions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScaleSetRef {
    /// Scale set id.
    pub id: i64,
    /// Scale set name.
    pub name: String,
}

/// What to create.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewScaleSet {
    /// Name; must be unique in its runner group.
    pub name: String,
    /// Runner group id.
    pub runner_group_id: i64,
    /// Labels; the first is the name.
    pub labels: Vec<Label>,
    /// Runner settings.
    pub runner_setting: RunnerSetting,
}

/// A message session: the lock on a scale set's queue (one per scale set).
///
/// `Debug` prints no token.
#[derive(Clone)]
pub struct MessageSession {
    /// Session id (a UUID string).
    pub session_id: String,
    /// Who holds it (our hostname).
    pub owner_name: String,
    /// The scale set.
    pub scale_set: ScaleSetRef,
    /// Opaque long-poll URL.
    pub message_queue_url: String,
    /// Bearer token for the queue and acquirejobs.
    pub message_queue_access_token: SecretString,
    /// Statistics at session creation: the first scaling signal.
    pub statistics: Statistics,
}

impl std::fmt::Debug for MessageSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MessageSession")
            .field("session_id", &self.session_id)
            .field("owner_name", &self.owner_name)
            .field("scale_set", &self.scale_set)
            .field("message_queue_url", &self.message_queue_url)
            .field("message_queue_access_token", &"[redacted]")
            .field("statistics", &self.statistics)
            .finish()
    }
}

/// A just-in-time runner registration. `Debug` prints no JIT config.
#[derive(Clone)]
pub struct JitConfig {
    /// The registered runner.
    pub runner: RunnerRecord,
    /// Opaque base64 blob handed to `run.sh`; a secret.
    pub encoded_jit_config: SecretString,
}

impl std::fmt::Debug for JitConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JitConfig")
            .field("runner", &self.runner)
            .field("encoded_jit_config", &"[redacted]")
            .finish()
    }
}

/// A runner registration as the service reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunnerRecord {
    /// Runner (agent) id.
    pub id: i64,
    /// Runner name (= VM name for our runners).
    pub name: String,
    /// The scale set the runner belongs to (0 when unknown).
    pub runner_scale_set_id: i64,
    /// `online` / `offline`, when the service says.
    pub status: Option<String>,
    /// Whether the runner is executing a job, when the service says.
    pub busy: Option<bool>,
}

/// What a runner record tells about its runner.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RunnerState {
    /// Registered and connected, without a job.
    Idle,
    /// Executing a job.
    Busy,
    /// Registered but not connected (never connected, or gone).
    Offline,
    /// The record carries no status.
    Unknown,
}

impl RunnerRecord {
    /// Classifies the record.
    pub fn state(&self) -> RunnerState {
        match (self.busy, self.status.as_deref().map(str::to_ascii_lowercase).as_deref()) {
            (Some(true), _) => RunnerState::Busy,
            (_, Some("offline")) => RunnerState::Offline,
            (Some(false), Some("online")) => RunnerState::Idle,
            (None, Some("online")) => RunnerState::Idle,
            _ => RunnerState::Unknown,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use secrecy::SecretString;

    #[test]
    fn debug_of_session_and_jit_config_hides_secrets() {
        let session = MessageSession {
            session_id: "s".into(),
            owner_name: "host".into(),
            scale_set: ScaleSetRef { id: 1, name: "mac".into() },
            message_queue_url: "http://q".into(),
            message_queue_access_token: SecretString::from("queue-token-sekrit"),
            statistics: Statistics::default(),
        };
        let jit = JitConfig {
            runner: RunnerRecord {
                id: 1,
                name: "mac-abcde".into(),
                runner_scale_set_id: 1,
                status: None,
                busy: None,
            },
            encoded_jit_config: SecretString::from("jit-blob-sekrit"),
        };
        let printed = format!("{session:?} {jit:?}");
        assert!(!printed.contains("sekrit"), "{printed}");
        assert!(printed.contains("mac-abcde"));
    }

    #[test]
    fn runner_state_from_record() {
        let rec = |status: Option<&str>, busy| RunnerRecord {
            id: 1,
            name: "r".into(),
            runner_scale_set_id: 1,
            status: status.map(Into::into),
            busy,
        };
        assert_eq!(rec(Some("online"), Some(true)).state(), RunnerState::Busy);
        assert_eq!(rec(Some("online"), Some(false)).state(), RunnerState::Idle);
        assert_eq!(rec(Some("offline"), Some(false)).state(), RunnerState::Offline);
        assert_eq!(rec(None, None).state(), RunnerState::Unknown);
    }
}
