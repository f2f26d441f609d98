//! The fake GitHub's public vocabulary: job specs, faults, and state snapshots.
//!
//! Owns: the types tests and the `/_fake/…` control API exchange (all serde, so the same
//! values travel in-process and over HTTP). Does not own: any behaviour.

use std::{collections::BTreeMap, time::Duration};

use serde::{Deserialize, Serialize};

/// Identifies a job in the fake (not GitHub's `jobId`, which changes per assignment).
pub type JobId = u64;

/// Which service generation the fake imitates (docs/protocol/github-scaleset.md#flavours).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Flavour {
    /// github.com broker: `JobAssigned` directly, `runnerRequestId` 0, a UUID `jobId` per assignment.
    #[default]
    Assign,
    /// GHES / older github.com: `JobAvailable` → `acquirejobs` → `JobAssigned`, positive
    /// request ids.
    Acquire,
}

/// A job to enqueue.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct JobSpec {
    /// `runs-on` labels; the job goes to the first scale set whose labels include them all.
    pub labels: Vec<String>,
    /// How long the job runs once a runner took it (then it completes with `result`).
    #[serde(rename = "duration_ms", with = "millis")]
    pub duration: Duration,
    /// Result reported when the job runs to its end.
    pub result: String,
    /// Repository name.
    pub repository: String,
    /// The repository's owner (user or organisation).
    pub owner: String,
    /// Workflow ref.
    pub workflow_ref: String,
    /// Display name.
    pub display_name: String,
    /// Workflow run id.
    pub workflow_run_id: i64,
    /// Triggering event.
    pub event_name: String,
}

impl Default for JobSpec {
    fn default() -> Self {
        Self {
            labels: Vec::new(),
            duration: Duration::from_secs(1),
            result: "succeeded".into(),
            repository: "app".into(),
            owner: "my-org".into(),
            workflow_ref: "my-org/app/.github/workflows/ci.yml@refs/heads/main".into(),
            display_name: "build".into(),
            workflow_run_id: 1,
            event_name: "push".into(),
        }
    }
}

impl JobSpec {
    /// A job for `labels` with the defaults.
    pub fn new<S: Into<String>>(labels: impl IntoIterator<Item = S>) -> Self {
        Self { labels: labels.into_iter().map(Into::into).collect(), ..Self::default() }
    }

    /// Sets the run time.
    pub fn with_duration(mut self, duration: Duration) -> Self {
        self.duration = duration;
        self
    }

    /// Sets the result reported at the end.
    pub fn with_result(mut self, result: impl Into<String>) -> Self {
        self.result = result.into();
        self
    }
}

mod millis {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(d.as_millis() as u64)
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        Ok(Duration::from_millis(u64::deserialize(d)?))
    }
}

/// The statistics object (docs/protocol/github-scaleset.md#statistics), as the fake computes or
/// injects it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct FakeStatistics {
    /// Offered, not acquired.
    pub total_available_jobs: u32,
    /// Acquired, not assigned.
    pub total_acquired_jobs: u32,
    /// Assigned to the scale set (waiting or running).
    pub total_assigned_jobs: u32,
    /// Jobs currently running on a runner of the scale set.
    pub total_running_jobs: u32,
    /// Registered runners (connected or not).
    pub total_registered_runners: u32,
    /// Runners with a job.
    pub total_busy_runners: u32,
    /// Connected runners without a job.
    pub total_idle_runners: u32,
}

/// Which endpoint a fault applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Endpoint {
    /// Every endpoint except the `/_fake/…` control API.
    Any,
    /// `POST /app/installations/{id}/access_tokens`.
    AccessToken,
    /// `POST …/actions/runners/registration-token`.
    RegistrationToken,
    /// `POST /actions/runner-registration`.
    RunnerRegistration,
    /// `GET _apis/runtime/runnergroups/`.
    RunnerGroups,
    /// `GET _apis/runtime/runnerscalesets` (by name) and `GET …/{id}`.
    GetScaleSet,
    /// `POST _apis/runtime/runnerscalesets`.
    CreateScaleSet,
    /// `PATCH _apis/runtime/runnerscalesets/{id}`.
    UpdateScaleSet,
    /// `DELETE _apis/runtime/runnerscalesets/{id}`.
    DeleteScaleSet,
    /// `POST …/{id}/sessions`.
    CreateSession,
    /// `PATCH …/{id}/sessions/{sid}`.
    RefreshSession,
    /// `DELETE …/{id}/sessions/{sid}`.
    DeleteSession,
    /// `GET {messageQueueUrl}`.
    GetMessage,
    /// `DELETE {messageQueueUrl}/{id}`.
    DeleteMessage,
    /// `POST …/{id}/acquirejobs`.
    AcquireJobs,
    /// `GET …/{id}/acquirablejobs`.
    AcquirableJobs,
    /// `POST …/{id}/generatejitconfig`.
    GenerateJitConfig,
    /// `GET …/agents/{id}` and `GET …/agents?agentName=`.
    GetRunner,
    /// `DELETE …/agents/{id}`.
    RemoveRunner,
}

impl Endpoint {
    /// Whether a fault for `self` applies to a request to `actual`.
    pub fn matches(self, actual: Endpoint) -> bool {
        self == Endpoint::Any || self == actual
    }
}

/// `Retry-After` in either of its forms.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RetryAfter {
    /// `Retry-After: <seconds>`.
    Seconds(u64),
    /// `Retry-After: <HTTP-date>` this many seconds from now.
    HttpDate(u64),
}

/// Shape of an injected error body (docs/protocol/github-scaleset.md#error-bodies, fault F13 of
/// docs/protocol/github-scaleset.md#fault-cases).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorBodyKind {
    /// `{"typeName":…,"message":…}` JSON.
    #[default]
    Json,
    /// `text/plain`.
    Text,
    /// No body.
    Empty,
}

/// A fault to inject (docs/protocol/github-scaleset.md#fault-cases). Counted faults apply to the
/// next `times` matching events.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Fault {
    /// F1: every current queue token becomes invalid now; held polls end with 401.
    ExpireQueueTokens,
    /// F1 variant: the next `times` session refreshes answer 404 `RunnerAdminException`
    /// ("session … doesn't exist in redis") and the session is dropped.
    RefreshSessionNotFound {
        /// How many refreshes.
        times: u32,
    },
    /// F2: every admin token issued so far becomes invalid (401 on Actions calls).
    ExpireAdminTokens,
    /// The operator's credentials stop working (PAT revoked, App uninstalled): from now
    /// until [`Fault::RestoreCredentials`] the registration-token and installation-token
    /// calls answer 401 "Bad credentials", and every admin and queue token issued so far
    /// becomes invalid, as the tokens derived from revoked credentials do.
    RevokeCredentials,
    /// Ends [`Fault::RevokeCredentials`]: the credentials work again (tokens revoked
    /// meanwhile stay invalid; new ones are issued).
    RestoreCredentials,
    /// F2 variant: runner-registration answers `status` (401/403) `times` times.
    RegistrationDenied {
        /// 401 or 403.
        status: u16,
        /// How many times.
        times: u32,
    },
    /// F2 variant: the next runner-registration returns a new tenant URL; the old one
    /// answers 404 from then on.
    ChangeTenantUrl,
    /// F3: the next `times` polls answer 200 with an empty body.
    EmptyPollResponse {
        /// How many polls.
        times: u32,
    },
    /// F4: every session expires now (as after the idle period).
    ExpireSessions,
    /// F4: the next `times` session deletes answer 400 `RunnerScaleSetSessionExpiredException`.
    SessionExpiredOnDelete {
        /// How many deletes.
        times: u32,
    },
    /// F5: the scale set is deleted server-side (404 `RunnerScaleSetNotFoundException`).
    DeleteScaleSet {
        /// The id of the scale set to delete.
        scale_set_id: i64,
    },
    /// F6: the next `times` batches are also delivered again in a later message.
    DuplicateBatches {
        /// How many batches.
        times: u32,
    },
    /// F7 (merged events): no new message is formed until [`Fault::ResumeDelivery`];
    /// events pile up and then arrive together.
    PauseDelivery,
    /// Ends [`Fault::PauseDelivery`].
    ResumeDelivery,
    /// F7 (out of order): the next `times` batches are delivered in reverse order.
    ReverseBatches {
        /// How many batches.
        times: u32,
    },
    /// F7 / F17: raw job messages appended to a scale set's next batch (e.g. a
    /// `JobStarted` for an unknown runner, an unknown `messageType`).
    InjectJobMessages {
        /// Which scale set.
        scale_set_id: i64,
        /// The raw job-message objects.
        messages: Vec<serde_json::Value>,
    },
    /// F8: the job's current assignment is cancelled (`JobCompleted` canceled, runner 0)
    /// and the job assigned again with a new `jobId`.
    Reassign {
        /// Which job.
        job: JobId,
    },
    /// F9: the next `times` statistics objects (sessions and messages) are these.
    StaleStatistics {
        /// Values to report.
        statistics: FakeStatistics,
        /// How many times.
        times: u32,
    },
    /// F10: `JobCompleted` (succeeded) is emitted while the job keeps running.
    PrematureCompletion {
        /// Which job.
        job: JobId,
    },
    /// F11 / F13: the next `times` requests to `endpoint` answer `status`.
    HttpError {
        /// Which endpoint.
        endpoint: Endpoint,
        /// Status code (500, 502, 503, 429, …).
        status: u16,
        /// Optional `Retry-After`.
        #[serde(default)]
        retry_after: Option<RetryAfter>,
        /// Body shape.
        #[serde(default)]
        body: ErrorBodyKind,
        /// How many requests.
        times: u32,
        /// Process the request first, then answer the error (a committed POST whose
        /// response is lost).
        #[serde(default)]
        after_commit: bool,
    },
    /// F12: the next `times` requests to `endpoint` are held this long first.
    Delay {
        /// Which endpoint.
        endpoint: Endpoint,
        /// Delay in milliseconds.
        delay_ms: u64,
        /// How many requests.
        times: u32,
    },
    /// F12: the next `times` responses of `endpoint` break off mid-body.
    ResetConnection {
        /// Which endpoint.
        endpoint: Endpoint,
        /// How many responses.
        times: u32,
    },
    /// F13: the next `times` JSON responses of `endpoint` start with a UTF-8 BOM.
    Bom {
        /// Which endpoint.
        endpoint: Endpoint,
        /// How many responses.
        times: u32,
    },
    /// F14: the next `times` session creates/refreshes return `messageQueueUrl: ""`.
    EmptyQueueUrl {
        /// How many.
        times: u32,
    },
    /// F16: the next `times` acquirejobs calls find every job taken by another scale
    /// set (they answer an empty subset; the jobs leave this scale set).
    AcquireTakenElsewhere {
        /// How many calls.
        times: u32,
    },
    /// F17: the next `times` messages carry an unknown envelope `messageType`.
    UnknownEnvelopeType {
        /// How many messages.
        times: u32,
    },
    /// GitHub's primary rate limit: for the next `for_ms` (rounded up to the whole second
    /// GitHub reports), every request to `endpoint` answers `status` (403 or 429) with
    /// `X-RateLimit-Limit/Remaining: 0/Reset/Used/Resource` and the body
    /// `{"message":"API rate limit exceeded for installation ID …","documentation_url":…}`.
    PrimaryRateLimit {
        /// Which endpoint.
        endpoint: Endpoint,
        /// 403 (what GitHub usually sends) or 429.
        status: u16,
        /// How long the budget stays spent, in milliseconds.
        for_ms: u64,
    },
    /// GitHub's secondary rate limit: the next `times` requests to `endpoint` answer
    /// `status` (403 or 429) with "You have exceeded a secondary rate limit…", the usual
    /// `X-RateLimit-*` headers (budget left) and `Retry-After` when given.
    SecondaryRateLimit {
        /// Which endpoint.
        endpoint: Endpoint,
        /// 403 or 429.
        status: u16,
        /// `Retry-After` in seconds, if sent.
        #[serde(default)]
        retry_after_secs: Option<u64>,
        /// How many requests.
        times: u32,
    },
    /// The next `times` queue-token requests (poll, delete message, acquire) answer 401
    /// whatever their token, fresh or not: a queue token the service keeps refusing.
    RejectQueueTokens {
        /// How many requests.
        times: u32,
    },
}

/// Lifecycle state of a job.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobState {
    /// Waiting for a scale set (no match, or capacity reached).
    Queued,
    /// Offered to a scale set (acquire flavour).
    Available,
    /// Acquired by the scale set, about to be assigned (acquire flavour).
    Acquired,
    /// Assigned to a scale set, waiting for a runner.
    Assigned,
    /// A runner runs it.
    Running,
    /// Finished (or cancelled).
    Completed,
    /// Taken by "another scale set" (acquire flavour fault).
    Elsewhere,
}

/// Lifecycle state of a runner registration.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunnerStatus {
    /// JIT-registered, never connected.
    Registered,
    /// Connected, no job.
    Idle,
    /// Running a job.
    Busy,
    /// Stopped polling (or lost its job to the heartbeat lease).
    Offline,
    /// Deregistered after its one job.
    Done,
    /// Registration removed (or its job cancelled).
    Removed,
}

impl RunnerStatus {
    /// Whether the registration still exists on the service.
    pub fn is_registered(self) -> bool {
        !matches!(self, RunnerStatus::Done | RunnerStatus::Removed)
    }
}

/// A session in a [`FakeState`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionSnapshot {
    /// Session id.
    pub session_id: String,
    /// Scale set.
    pub scale_set_id: i64,
    /// Owner name sent by the client.
    pub owner_name: String,
}

/// A scale set in a [`FakeState`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScaleSetSnapshot {
    /// The scale set's id, as the service assigned it.
    pub id: i64,
    /// The scale set's name (unique per runner group).
    pub name: String,
    /// Runner group.
    pub runner_group_id: i64,
    /// Label names.
    pub labels: Vec<String>,
    /// `RunnerSetting.disableUpdate`.
    pub disable_update: bool,
    /// The last `X-ScaleSetMaxCapacity` seen (None before the first poll).
    pub max_capacity: Option<u32>,
    /// Ids of delivered-or-formed messages not yet deleted.
    pub unacked_messages: Vec<i64>,
    /// Job messages waiting to be formed into a message.
    pub pending_events: usize,
    /// Statistics computed from state now.
    pub statistics: FakeStatistics,
}

/// A job in a [`FakeState`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobSnapshot {
    /// Fake job id.
    pub id: JobId,
    /// Where the job is in its lifecycle.
    pub state: JobState,
    /// The labels the job asks for.
    pub labels: Vec<String>,
    /// Scale set it is offered/assigned to.
    pub scale_set_id: Option<i64>,
    /// Current GitHub `jobId` (a new UUID per assignment; empty before the first).
    pub job_uuid: String,
    /// `runnerRequestId` (positive in the acquire flavour, 0 in the assign flavour).
    pub request_id: i64,
    /// Assignment attempts so far.
    pub attempts: u32,
    /// Runner that took it.
    pub runner_id: Option<i64>,
    /// Runner name.
    pub runner_name: Option<String>,
    /// Final result.
    pub result: Option<String>,
}

/// A runner in a [`FakeState`] (deregistered ones included, with their final status).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunnerSnapshot {
    /// Runner id.
    pub id: i64,
    /// The runner's registered name.
    pub name: String,
    /// Scale set.
    pub scale_set_id: i64,
    /// Where the runner is in its lifecycle: registered, idle, busy or offline.
    pub status: RunnerStatus,
    /// The job it took.
    pub job: Option<JobId>,
}

/// A consistent snapshot of the whole fake.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FakeState {
    /// Active sessions.
    pub sessions: Vec<SessionSnapshot>,
    /// Existing scale sets.
    pub scale_sets: Vec<ScaleSetSnapshot>,
    /// Every job ever enqueued.
    pub jobs: Vec<JobSnapshot>,
    /// Every runner ever registered.
    pub runners: Vec<RunnerSnapshot>,
    /// Requests served per endpoint (snake_case endpoint names, plus `runner_poll`).
    pub requests: BTreeMap<String, u64>,
}

impl FakeState {
    /// A job by id.
    pub fn job(&self, id: JobId) -> Option<&JobSnapshot> {
        self.jobs.iter().find(|j| j.id == id)
    }

    /// A runner by name.
    pub fn runner(&self, name: &str) -> Option<&RunnerSnapshot> {
        self.runners.iter().find(|r| r.name == name)
    }

    /// Runners whose registration still exists.
    pub fn registered_runners(&self) -> impl Iterator<Item = &RunnerSnapshot> {
        self.runners.iter().filter(|r| r.status.is_registered())
    }

    /// A scale set by name.
    pub fn scale_set(&self, name: &str) -> Option<&ScaleSetSnapshot> {
        self.scale_sets.iter().find(|s| s.name == name)
    }

    /// Requests served to `endpoint` (0 if none).
    pub fn request_count(&self, endpoint: Endpoint) -> u64 {
        self.requests.get(&endpoint_name(endpoint)).copied().unwrap_or(0)
    }
}

/// The snake_case name of an endpoint (the key of [`FakeState::requests`]).
pub fn endpoint_name(endpoint: Endpoint) -> String {
    serde_json::to_value(endpoint).ok().and_then(|v| v.as_str().map(str::to_owned)).unwrap_or_default()
}

/// What `POST /_fake/runner/poll` tells a fake runner (the fake-runner contract; see
/// `control.rs`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunnerPoll {
    /// Connected, no job yet.
    Idle,
    /// A job runs on this runner.
    Running,
    /// The job completed; the runner is deregistered.
    Done,
    /// The registration was removed or the job cancelled.
    Removed,
}

/// The decoded `encodedJITConfig` of the fake: under the fake-runner contract the JIT config
/// a fake runner receives decodes to this (see `control.rs`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FakeJitConfig {
    /// The fake GitHub's base URL.
    pub server_url: String,
    /// Runner id.
    pub runner_id: i64,
    /// Runner name.
    pub runner_name: String,
    /// Per-runner secret for `/_fake/runner/poll`.
    pub credential: String,
}

impl FakeJitConfig {
    /// Decodes an `encodedJITConfig` issued by the fake.
    pub fn decode(encoded: &str) -> Option<Self> {
        use base64::Engine as _;
        let bytes = base64::engine::general_purpose::STANDARD.decode(encoded.trim()).ok()?;
        serde_json::from_slice(&bytes).ok()
    }

    /// Encodes exactly as the contract says: keys in order, no whitespace, standard base64.
    pub fn encode(&self) -> String {
        use base64::Engine as _;
        let json = format!(
            r#"{{"server_url":{},"runner_id":{},"runner_name":{},"credential":{}}}"#,
            serde_json::Value::from(self.server_url.as_str()),
            self.runner_id,
            serde_json::Value::from(self.runner_name.as_str()),
            serde_json::Value::from(self.credential.as_str()),
        );
        base64::engine::general_purpose::STANDARD.encode(json)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jit_config_encoding_follows_the_contract() {
        let cfg = FakeJitConfig {
            server_url: "http://127.0.0.1:8080".into(),
            runner_id: 123,
            runner_name: "mac-x7k2p".into(),
            credential: "c0ffee".into(),
        };
        use base64::Engine as _;
        let raw = base64::engine::general_purpose::STANDARD.decode(cfg.encode()).unwrap();
        assert_eq!(
            String::from_utf8(raw).unwrap(),
            r#"{"server_url":"http://127.0.0.1:8080","runner_id":123,"runner_name":"mac-x7k2p","credential":"c0ffee"}"#
        );
        assert_eq!(FakeJitConfig::decode(&cfg.encode()), Some(cfg));
    }

    #[test]
    fn faults_and_specs_round_trip_as_json() {
        let f = Fault::HttpError {
            endpoint: Endpoint::GetMessage,
            status: 429,
            retry_after: Some(RetryAfter::HttpDate(2)),
            body: ErrorBodyKind::Text,
            times: 1,
            after_commit: false,
        };
        let json = serde_json::to_string(&f).unwrap();
        assert!(json.contains(r#""kind":"http_error""#), "{json}");
        assert_eq!(serde_json::from_str::<Fault>(&json).unwrap(), f);
        let spec: JobSpec = serde_json::from_str(r#"{"labels":["mac"],"duration_ms":250}"#).unwrap();
        assert_eq!(spec.duration, Duration::from_millis(250));
        assert_eq!(spec.result, "succeeded");
        assert_eq!(endpoint_name(Endpoint::GenerateJitConfig), "generate_jit_config");
    }
}
