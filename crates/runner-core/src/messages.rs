//! The message envelope and the job messages inside it (docs/protocol/github-scaleset.md#messages).
//!
//! The envelope's `body` is a JSON *string* holding a JSON array of job messages, so it is
//! parsed twice. Parsing is lenient where the service is known to be sloppy: a UTF-8 BOM
//! is stripped, an empty body means no job messages, unknown inner message types are kept
//! as [`JobMessage::Unknown`], unset timestamps (`0001-01-01T00:00:00Z`) become `None`.

use serde::{Deserialize, Deserializer};
use time::OffsetDateTime;

use crate::{ScaleSetError, Statistics};

/// The only envelope type the service sends today.
pub const JOB_MESSAGES_TYPE: &str = "RunnerScaleSetJobMessages";

/// One message from the scale set's queue.
#[derive(Debug, Clone, PartialEq)]
pub struct ScaleSetMessage {
    /// Monotonically increasing id; acknowledge with it.
    pub message_id: i64,
    /// Envelope type; anything but [`JOB_MESSAGES_TYPE`] is reported, not fatal.
    pub message_type: String,
    /// Statistics at delivery time.
    pub statistics: Statistics,
    /// The job messages of the batch, in wire order.
    pub job_messages: Vec<JobMessage>,
}

/// Fields common to every job message.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct JobInfo {
    /// Job request id: positive in the acquire flow, 0 on github.com's broker.
    pub runner_request_id: i64,
    /// Job id: a new UUID per assignment attempt on the broker.
    pub job_id: String,
    /// Repository name without owner.
    pub repository_name: String,
    /// Owner (org or user).
    pub owner_name: String,
    /// `owner/repo/.github/workflows/<file>@<ref>`.
    pub job_workflow_ref: String,
    /// Job name as shown in the UI.
    pub job_display_name: String,
    /// Workflow run id.
    pub workflow_run_id: i64,
    /// Triggering event.
    pub event_name: String,
    /// `runs-on` labels.
    pub request_labels: Vec<String>,
    /// When the job was queued.
    #[serde(deserialize_with = "lenient_time")]
    pub queue_time: Option<OffsetDateTime>,
    /// When the job was assigned to the scale set.
    #[serde(deserialize_with = "lenient_time")]
    pub scale_set_assign_time: Option<OffsetDateTime>,
    /// When a runner took the job.
    #[serde(deserialize_with = "lenient_time")]
    pub runner_assign_time: Option<OffsetDateTime>,
    /// When the job finished.
    #[serde(deserialize_with = "lenient_time")]
    pub finish_time: Option<OffsetDateTime>,
}

/// `JobAvailable`: a job offered to the scale set (acquire flow).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct JobAvailable {
    /// Common fields.
    #[serde(flatten)]
    pub job: JobInfo,
    /// Where to acquire it (informational; we use the acquirejobs endpoint).
    pub acquire_job_url: String,
}

/// `JobStarted`: a runner of the scale set started a job.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct JobStarted {
    /// Common fields.
    #[serde(flatten)]
    pub job: JobInfo,
    /// Runner id.
    pub runner_id: i64,
    /// Runner name (= our VM name).
    pub runner_name: String,
}

/// `JobCompleted`: a job finished, or an assignment was cancelled before reaching a runner
/// (`runner_id` 0, empty `runner_name`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct JobCompleted {
    /// Common fields.
    #[serde(flatten)]
    pub job: JobInfo,
    /// Runner id, 0 when no runner took the job.
    pub runner_id: i64,
    /// Runner name, empty when no runner took the job.
    pub runner_name: String,
    /// Raw result text (`succeeded`, `failed`, `canceled`, …).
    pub result: String,
}

impl JobCompleted {
    /// The result, classified.
    pub fn outcome(&self) -> JobResult {
        JobResult::parse(&self.result)
    }
}

/// Classified job result.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum JobResult {
    /// `succeeded`.
    Succeeded,
    /// `failed`.
    Failed,
    /// `canceled` / `cancelled`.
    Canceled,
    /// `ignored`.
    Ignored,
    /// `abandoned`.
    Abandoned,
    /// Anything else (e.g. `skipped`).
    Other,
}

impl JobResult {
    /// Parses a result string, case-insensitively.
    pub fn parse(raw: &str) -> Self {
        match raw.to_ascii_lowercase().as_str() {
            "succeeded" => JobResult::Succeeded,
            "failed" => JobResult::Failed,
            "canceled" | "cancelled" => JobResult::Canceled,
            "ignored" => JobResult::Ignored,
            "abandoned" => JobResult::Abandoned,
            _ => JobResult::Other,
        }
    }

    /// Whether the job was withdrawn rather than run to an end (stops provisioning tied to it).
    pub fn is_withdrawn(self) -> bool {
        matches!(self, JobResult::Canceled | JobResult::Ignored | JobResult::Abandoned)
    }
}

/// One job message of a batch.
#[derive(Debug, Clone, PartialEq)]
pub enum JobMessage {
    /// A job is offered (acquire flow).
    Available(JobAvailable),
    /// A job is assigned to the scale set.
    Assigned(JobInfo),
    /// A runner started a job.
    Started(JobStarted),
    /// A job completed or was cancelled.
    Completed(JobCompleted),
    /// A type this client does not know; kept for logging, otherwise ignored.
    Unknown {
        /// The `messageType` value.
        message_type: String,
        /// The raw JSON object.
        raw: serde_json::Value,
    },
}

impl JobMessage {
    /// The common fields, when the type is known.
    pub fn job(&self) -> Option<&JobInfo> {
        match self {
            JobMessage::Available(m) => Some(&m.job),
            JobMessage::Assigned(job) => Some(job),
            JobMessage::Started(m) => Some(&m.job),
            JobMessage::Completed(m) => Some(&m.job),
            JobMessage::Unknown { .. } => None,
        }
    }

    fn from_value(value: serde_json::Value) -> Result<Self, serde_json::Error> {
        let message_type =
            value.get("messageType").and_then(serde_json::Value::as_str).unwrap_or_default().to_owned();
        Ok(match message_type.as_str() {
            "JobAvailable" => JobMessage::Available(serde_json::from_value(value)?),
            "JobAssigned" => JobMessage::Assigned(serde_json::from_value(value)?),
            "JobStarted" => JobMessage::Started(serde_json::from_value(value)?),
            "JobCompleted" => JobMessage::Completed(serde_json::from_value(value)?),
            _ => JobMessage::Unknown { message_type, raw: value },
        })
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Envelope {
    message_id: i64,
    #[serde(default)]
    message_type: String,
    #[serde(default)]
    body: Option<String>,
    statistics: Option<Statistics>,
}

/// Strips a leading UTF-8 byte-order mark.
pub fn strip_bom(bytes: &[u8]) -> &[u8] {
    bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes)
}

/// Parses a get-message 200 body. `Ok(None)` for an empty body (observed from the
/// service; treated as "no message").
pub fn parse_message(bytes: &[u8]) -> Result<Option<ScaleSetMessage>, ScaleSetError> {
    let bytes = strip_bom(bytes);
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(None);
    }
    let envelope: Envelope = serde_json::from_slice(bytes)
        .map_err(|e| ScaleSetError::protocol("message envelope", e.to_string()))?;
    let statistics = envelope
        .statistics
        .ok_or_else(|| ScaleSetError::protocol("message envelope", "statistics missing"))?;
    let job_messages = match envelope.body.as_deref().map(str::trim) {
        None | Some("") => Vec::new(),
        Some(body) => parse_job_messages(body)?,
    };
    Ok(Some(ScaleSetMessage {
        message_id: envelope.message_id,
        message_type: envelope.message_type,
        statistics,
        job_messages,
    }))
}

/// Parses the inner job-message array of an envelope's `body`.
pub fn parse_job_messages(body: &str) -> Result<Vec<JobMessage>, ScaleSetError> {
    let body = body.strip_prefix('\u{feff}').unwrap_or(body);
    let values: Vec<serde_json::Value> =
        serde_json::from_str(body).map_err(|e| ScaleSetError::protocol("message body", e.to_string()))?;
    values
        .into_iter()
        .map(JobMessage::from_value)
        .collect::<Result<_, _>>()
        .map_err(|e| ScaleSetError::protocol("job message", e.to_string()))
}

fn lenient_time<'de, D: Deserializer<'de>>(d: D) -> Result<Option<OffsetDateTime>, D::Error> {
    let raw: Option<String> = Option::deserialize(d)?;
    Ok(raw
        .and_then(|s| OffsetDateTime::parse(&s, &time::format_description::well_known::Rfc3339).ok())
        .filter(|t| t.year() > 1))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn envelope(body: &str) -> String {
        serde_json::json!({
            "messageId": 100000012,
            "messageType": "RunnerScaleSetJobMessages",
            "body": body,
            "statistics": {"totalAssignedJobs": 1, "totalRunningJobs": 0}
        })
        .to_string()
    }

    #[test]
    fn body_is_a_json_string_holding_the_job_array() {
        let body = r#"[{"messageType":"JobAssigned","runnerRequestId":0,"jobId":"6b1f0e2a","ownerName":"org","repositoryName":"app","requestLabels":["mac"],"scaleSetAssignTime":"2026-08-24T21:57:32.38632275Z","runnerAssignTime":"0001-01-01T00:00:00Z","workflowRunId":7},
            {"messageType":"JobStarted","jobId":"6b1f0e2a","runnerId":12,"runnerName":"mac-x7k2p"},
            {"messageType":"JobCompleted","jobId":"6b1f0e2a","runnerId":12,"runnerName":"mac-x7k2p","result":"succeeded"}]"#;
        let msg = parse_message(envelope(body).as_bytes()).unwrap().unwrap();
        assert_eq!(msg.message_id, 100000012);
        assert_eq!(msg.statistics.total_assigned_jobs, 1);
        assert_eq!(msg.job_messages.len(), 3);
        let JobMessage::Assigned(job) = &msg.job_messages[0] else { panic!("{:?}", msg.job_messages[0]) };
        assert_eq!(job.job_id, "6b1f0e2a");
        assert_eq!(job.request_labels, vec!["mac".to_owned()]);
        assert!(job.scale_set_assign_time.is_some());
        assert_eq!(job.runner_assign_time, None, "the zero time means unset");
        let JobMessage::Started(started) = &msg.job_messages[1] else { panic!() };
        assert_eq!((started.runner_id, started.runner_name.as_str()), (12, "mac-x7k2p"));
        let JobMessage::Completed(done) = &msg.job_messages[2] else { panic!() };
        assert_eq!(done.outcome(), JobResult::Succeeded);
    }

    #[test]
    fn unknown_inner_types_are_kept() {
        let body = r#"[{"messageType":"JobRerouted","jobId":"x","extra":1}]"#;
        let msg = parse_message(envelope(body).as_bytes()).unwrap().unwrap();
        match &msg.job_messages[0] {
            JobMessage::Unknown { message_type, raw } => {
                assert_eq!(message_type, "JobRerouted");
                assert_eq!(raw["extra"], 1);
            }
            other => panic!("expected Unknown, got {other:?}"),
        }
    }

    #[test]
    fn bom_is_tolerated_on_envelope_and_body() {
        let mut bytes = b"\xEF\xBB\xBF".to_vec();
        bytes.extend_from_slice(
            envelope("\u{feff}[{\"messageType\":\"JobAssigned\",\"jobId\":\"a\"}]").as_bytes(),
        );
        let msg = parse_message(&bytes).unwrap().unwrap();
        assert_eq!(msg.job_messages.len(), 1);
    }

    #[test]
    fn empty_body_means_no_job_messages_and_empty_response_means_no_message() {
        let msg = parse_message(envelope("").as_bytes()).unwrap().unwrap();
        assert!(msg.job_messages.is_empty());
        let no_body = r#"{"messageId":5,"messageType":"RunnerScaleSetJobMessages","statistics":{}}"#;
        assert!(parse_message(no_body.as_bytes()).unwrap().unwrap().job_messages.is_empty());
        assert_eq!(parse_message(b"").unwrap(), None);
        assert_eq!(parse_message(b"\xEF\xBB\xBF \n").unwrap(), None);
    }

    #[test]
    fn malformed_bodies_are_errors_not_panics() {
        assert!(parse_message(envelope("{}").as_bytes()).is_err(), "a non-array body is an error");
        assert!(parse_message(b"{\"messageId\":1}").is_err(), "statistics are required");
        assert!(parse_message(b"not json").is_err());
    }

    #[test]
    fn cancelled_assignment_has_no_runner() {
        let body = r#"[{"messageType":"JobCompleted","jobId":"j","runnerId":0,"runnerName":"","result":"canceled"}]"#;
        let msg = parse_message(envelope(body).as_bytes()).unwrap().unwrap();
        let JobMessage::Completed(done) = &msg.job_messages[0] else { panic!() };
        assert!(done.outcome().is_withdrawn());
        assert!(done.runner_name.is_empty());
    }
}
