//! GitHub's JSON shapes (request and response bodies) and their mapping to the crate's
//! types, plus the error-body parsing in docs/protocol/github-scaleset.md#error-bodies and
//! docs/protocol/github-scaleset.md#exceptions.
//!
//! Owns: field names, casing tolerance (`RunnerSetting` / `runnerSetting`), BOM stripping,
//! and the mapping of exception type names to [`ScaleSetError`] variants. Does not own:
//! HTTP or retries.

use secrecy::SecretString;
use serde::{Deserialize, Serialize, de::DeserializeOwned};

use crate::{
    JitConfig, Label, MessageSession, NewScaleSet, RunnerGroup, RunnerRecord, RunnerSetting, ScaleSet,
    ScaleSetError, ScaleSetRef, Statistics, messages::strip_bom, ratelimit, transport::HttpResponse,
};

/// The Go zero time the clients send in `createdOn`.
pub(crate) const ZERO_TIME: &str = "0001-01-01T00:00:00Z";

/// Parses a JSON body leniently (BOM stripped). The error never quotes the body's values
/// (a success body holds tokens).
pub(crate) fn parse_json<T: DeserializeOwned>(context: &str, body: &[u8]) -> Result<T, ScaleSetError> {
    serde_json::from_slice(strip_bom(body)).map_err(|e| ScaleSetError::protocol(context, without_values(&e)))
}

/// serde_json's message with quoted input values (`"…"`, `` `…` ``) blanked out.
fn without_values(e: &serde_json::Error) -> String {
    let text = e.to_string();
    let mut out = String::with_capacity(text.len());
    let mut quote = None;
    for c in text.chars() {
        match quote {
            Some(q) if c == q => {
                out.push('…');
                out.push(c);
                quote = None;
            }
            Some(_) => {}
            // Field names after "missing field"/"unknown field" are ours, not the input's,
            // but blanking them costs little; variants and strings are the input's.
            None if c == '"' || c == '`' => {
                out.push(c);
                quote = Some(c);
            }
            None => out.push(c),
        }
    }
    out
}

/// `{"count":N,"value":[…]}`.
#[derive(Deserialize)]
pub(crate) struct ListResponse<T> {
    #[serde(default)]
    pub(crate) count: Option<usize>,
    #[serde(default = "Vec::new")]
    pub(crate) value: Vec<T>,
}

impl<T> ListResponse<T> {
    /// Zero or one item; more is a protocol error (the clients trust `count`).
    pub(crate) fn at_most_one(self, context: &str) -> Result<Option<T>, ScaleSetError> {
        let count = self.count.unwrap_or(self.value.len());
        match count {
            0 => Ok(None),
            1 => Ok(self.value.into_iter().next()),
            n => Err(ScaleSetError::protocol(context, format!("expected at most one item, got {n}"))),
        }
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct RunnerGroupWire {
    id: i64,
    #[serde(default)]
    name: String,
    #[serde(default)]
    is_default_group: bool,
}

impl From<RunnerGroupWire> for RunnerGroup {
    fn from(w: RunnerGroupWire) -> Self {
        RunnerGroup { id: w.id, name: w.name, is_default_group: w.is_default_group }
    }
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
pub(crate) struct ScaleSetWire {
    id: i64,
    name: String,
    runner_group_id: i64,
    runner_group_name: Option<String>,
    labels: Option<Vec<Label>>,
    #[serde(alias = "RunnerSetting")]
    runner_setting: Option<RunnerSetting>,
    statistics: Option<Statistics>,
}

impl From<ScaleSetWire> for ScaleSet {
    fn from(w: ScaleSetWire) -> Self {
        ScaleSet {
            id: w.id,
            name: w.name,
            runner_group_id: w.runner_group_id,
            runner_group_name: w.runner_group_name.filter(|n| !n.is_empty()),
            labels: w.labels.unwrap_or_default(),
            runner_setting: w.runner_setting.unwrap_or_default(),
            statistics: w.statistics,
        }
    }
}

/// Create request: exactly what the Go clients send.
#[derive(Serialize)]
pub(crate) struct NewScaleSetWire<'a> {
    name: &'a str,
    #[serde(rename = "runnerGroupId")]
    runner_group_id: i64,
    labels: &'a [Label],
    #[serde(rename = "RunnerSetting")]
    runner_setting: RunnerSettingWire,
    #[serde(rename = "createdOn")]
    created_on: &'static str,
}

#[derive(Serialize, Default)]
#[serde(rename_all = "camelCase")]
pub(crate) struct RunnerSettingWire {
    #[serde(skip_serializing_if = "Option::is_none")]
    disable_update: Option<bool>,
}

impl<'a> From<&'a NewScaleSet> for NewScaleSetWire<'a> {
    fn from(n: &'a NewScaleSet) -> Self {
        NewScaleSetWire {
            name: &n.name,
            runner_group_id: n.runner_group_id,
            labels: &n.labels,
            runner_setting: RunnerSettingWire { disable_update: Some(n.runner_setting.disable_update) },
            created_on: ZERO_TIME,
        }
    }
}

/// What to change in a scale set; `None` fields are left as they are.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ScaleSetUpdate {
    /// New name.
    pub name: Option<String>,
    /// New runner group.
    pub runner_group_id: Option<i64>,
    /// New labels.
    pub labels: Option<Vec<Label>>,
    /// New runner settings.
    pub runner_setting: Option<RunnerSetting>,
}

/// Update request (partial object; an empty `RunnerSetting` must not reset settings).
#[derive(Serialize)]
pub(crate) struct ScaleSetUpdateWire<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<&'a str>,
    #[serde(rename = "runnerGroupId", skip_serializing_if = "Option::is_none")]
    runner_group_id: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    labels: Option<&'a [Label]>,
    #[serde(rename = "RunnerSetting")]
    runner_setting: RunnerSettingWire,
    #[serde(rename = "createdOn")]
    created_on: &'static str,
}

impl<'a> From<&'a ScaleSetUpdate> for ScaleSetUpdateWire<'a> {
    fn from(u: &'a ScaleSetUpdate) -> Self {
        ScaleSetUpdateWire {
            name: u.name.as_deref(),
            runner_group_id: u.runner_group_id,
            labels: u.labels.as_deref(),
            runner_setting: RunnerSettingWire {
                disable_update: u.runner_setting.as_ref().map(|s| s.disable_update),
            },
            created_on: ZERO_TIME,
        }
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct NewSessionWire<'a> {
    pub(crate) session_id: &'static str,
    pub(crate) owner_name: &'a str,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
struct ScaleSetRefWire {
    id: i64,
    name: String,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
pub(crate) struct SessionWire {
    session_id: Option<String>,
    owner_name: String,
    runner_scale_set: Option<ScaleSetRefWire>,
    message_queue_url: String,
    message_queue_access_token: String,
    statistics: Option<Statistics>,
}

impl SessionWire {
    /// Converts, filling gaps from `fallback` (a refresh that omits fields keeps the old
    /// values). A missing token or session id is a protocol error.
    pub(crate) fn into_session(
        self,
        scale_set_id: i64,
        fallback: Option<&MessageSession>,
    ) -> Result<MessageSession, ScaleSetError> {
        let session_id = self
            .session_id
            .filter(|s| !s.is_empty())
            .or_else(|| fallback.map(|f| f.session_id.clone()))
            .ok_or_else(|| ScaleSetError::protocol("message session", "sessionId missing"))?;
        if self.message_queue_access_token.is_empty() {
            return Err(ScaleSetError::protocol("message session", "messageQueueAccessToken missing"));
        }
        let scale_set = match self.runner_scale_set {
            Some(r) if r.id != 0 => ScaleSetRef { id: r.id, name: r.name },
            _ => fallback
                .map(|f| f.scale_set.clone())
                .unwrap_or(ScaleSetRef { id: scale_set_id, name: String::new() }),
        };
        let statistics = match self.statistics {
            Some(s) => s,
            None => {
                tracing::warn!(scale_set_id, "message session without statistics; assuming zeros");
                fallback.map(|f| f.statistics).unwrap_or_default()
            }
        };
        Ok(MessageSession {
            session_id,
            owner_name: if self.owner_name.is_empty() {
                fallback.map(|f| f.owner_name.clone()).unwrap_or_default()
            } else {
                self.owner_name
            },
            scale_set,
            message_queue_url: self.message_queue_url,
            message_queue_access_token: SecretString::from(self.message_queue_access_token),
            statistics,
        })
    }
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
pub(crate) struct RunnerWire {
    id: i64,
    name: String,
    runner_scale_set_id: i64,
    status: Option<String>,
    busy: Option<bool>,
}

impl From<RunnerWire> for RunnerRecord {
    fn from(w: RunnerWire) -> Self {
        RunnerRecord {
            id: w.id,
            name: w.name,
            runner_scale_set_id: w.runner_scale_set_id,
            status: w.status,
            busy: w.busy,
        }
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct JitRequestWire<'a> {
    pub(crate) name: &'a str,
    pub(crate) work_folder: &'a str,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct JitResponseWire {
    runner: RunnerWire,
    #[serde(rename = "encodedJITConfig", alias = "encodedJitConfig")]
    encoded_jit_config: String,
}

impl JitResponseWire {
    pub(crate) fn into_config(self) -> Result<JitConfig, ScaleSetError> {
        if self.encoded_jit_config.is_empty() {
            return Err(ScaleSetError::protocol("JIT config", "encodedJITConfig is empty"));
        }
        Ok(JitConfig {
            runner: self.runner.into(),
            encoded_jit_config: SecretString::from(self.encoded_jit_config),
        })
    }
}

/// `{token, expires_at}` of access-token and registration-token responses.
#[derive(Deserialize)]
pub(crate) struct TokenWire {
    pub(crate) token: String,
}

#[derive(Serialize)]
pub(crate) struct RunnerRegistrationRequest<'a> {
    pub(crate) url: &'a str,
    pub(crate) runner_event: &'static str,
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub(crate) struct RunnerRegistrationResponse {
    pub(crate) url: String,
    pub(crate) token: String,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
struct ErrorBody {
    type_name: Option<String>,
    message: Option<String>,
}

const MAX_ERROR_TEXT: usize = 300;

fn clip(text: &str) -> String {
    let text = text.trim();
    match text.char_indices().nth(MAX_ERROR_TEXT) {
        Some((i, _)) => format!("{}…", &text[..i]),
        None => text.to_owned(),
    }
}

/// Maps a non-success response to a typed error. Rate limits come first: a 403
/// or 429 that is one is never reported as rejected credentials.
pub(crate) fn error_from_response(resp: &HttpResponse) -> ScaleSetError {
    if let Some(limit) = ratelimit::classify(resp.status, &resp.headers, &resp.body) {
        return ScaleSetError::RateLimited { retry_after: limit.lifts_in(std::time::SystemTime::now()) };
    }
    let body = strip_bom(&resp.body);
    let is_text = resp
        .headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.contains("text/plain"));
    let (type_name, message) = if body.iter().all(u8::is_ascii_whitespace) {
        (None, "unknown error".to_owned())
    } else if is_text {
        (None, clip(&String::from_utf8_lossy(body)))
    } else {
        match serde_json::from_slice::<ErrorBody>(body) {
            Ok(e) => {
                (e.type_name.filter(|t| !t.is_empty()), clip(e.message.as_deref().unwrap_or("no message")))
            }
            Err(_) => (None, clip(&String::from_utf8_lossy(body))),
        }
    };
    let status = resp.status.as_u16();
    if let Some(t) = type_name.as_deref() {
        let mapped = [
            ("AgentExistsException", ScaleSetError::AgentExists),
            ("AgentNotFoundException", ScaleSetError::AgentNotFound),
            ("JobStillRunningException", ScaleSetError::JobStillRunning),
            ("RunnerScaleSetSessionConflictException", ScaleSetError::SessionConflict),
            ("RunnerScaleSetSessionExpiredException", ScaleSetError::SessionExpired),
            ("RunnerScaleSetNotFoundException", ScaleSetError::ScaleSetNotFound),
        ]
        .into_iter()
        .find(|(name, _)| t.contains(name));
        if let Some((_, err)) = mapped {
            return err;
        }
    }
    let setting = resp.credential_setting;
    match status {
        401 => ScaleSetError::Unauthorized { status, message: format!("{message}; check {setting}") },
        403 => ScaleSetError::Unauthorized {
            status,
            message: format!(
                "{message}; the credential in {setting} lacks a permission (a PAT needs the admin:org, repo \
                 or manage_runners:enterprise scope; an App needs the self-hosted runners permission)"
            ),
        },
        _ => ScaleSetError::Http { status, type_name, message },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use http::{HeaderMap, HeaderValue, StatusCode};

    fn resp(status: u16, ct: Option<&'static str>, body: &[u8]) -> HttpResponse {
        let mut headers = HeaderMap::new();
        if let Some(ct) = ct {
            headers.insert(http::header::CONTENT_TYPE, HeaderValue::from_static(ct));
        }
        HttpResponse {
            status: StatusCode::from_u16(status).unwrap(),
            headers,
            body: Bytes::copy_from_slice(body),
            credential_setting: "GITHUB_PAT",
        }
    }

    #[test]
    fn exception_names_map_to_variants() {
        let e = error_from_response(&resp(
            409,
            Some("application/json"),
            br#"{"typeName":"GitHub.Actions.Runtime.WebApi.RunnerScaleSetSessionConflictException, GitHub.Actions.Runtime.WebApi","message":"x"}"#,
        ));
        assert!(matches!(e, ScaleSetError::SessionConflict));
        let e = error_from_response(&resp(
            404,
            None,
            b"\xEF\xBB\xBF{\"typeName\":\"RunnerScaleSetNotFoundException\"}",
        ));
        assert!(matches!(e, ScaleSetError::ScaleSetNotFound), "BOM stripped: {e:?}");
        for (t, ok) in [
            (
                "AgentExistsException",
                matches!(
                    error_from_response(&resp(409, None, br#"{"typeName":"X.AgentExistsException"}"#)),
                    ScaleSetError::AgentExists
                ),
            ),
            (
                "JobStillRunningException",
                matches!(
                    error_from_response(&resp(400, None, br#"{"typeName":"JobStillRunningException"}"#)),
                    ScaleSetError::JobStillRunning
                ),
            ),
            (
                "AgentNotFoundException",
                matches!(
                    error_from_response(&resp(404, None, br#"{"typeName":"AgentNotFoundException"}"#)),
                    ScaleSetError::AgentNotFound
                ),
            ),
            (
                "SessionExpired",
                matches!(
                    error_from_response(&resp(
                        400,
                        None,
                        br#"{"typeName":"RunnerScaleSetSessionExpiredException"}"#
                    )),
                    ScaleSetError::SessionExpired
                ),
            ),
        ] {
            assert!(ok, "{t}");
        }
    }

    #[test]
    fn text_empty_and_garbage_error_bodies() {
        match error_from_response(&resp(500, Some("text/plain; charset=utf-8"), b"broker on fire")) {
            ScaleSetError::Http { status: 500, message, type_name: None } => {
                assert_eq!(message, "broker on fire")
            }
            other => panic!("{other:?}"),
        }
        match error_from_response(&resp(502, None, b"")) {
            ScaleSetError::Http { message, .. } => assert_eq!(message, "unknown error"),
            other => panic!("{other:?}"),
        }
        match error_from_response(&resp(400, Some("application/json"), b"<html>")) {
            ScaleSetError::Http { message, .. } => assert_eq!(message, "<html>"),
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            error_from_response(&resp(401, None, b"")),
            ScaleSetError::Unauthorized { status: 401, .. }
        ));
        let long = "x".repeat(5000);
        match error_from_response(&resp(500, Some("text/plain"), long.as_bytes())) {
            ScaleSetError::Http { message, .. } => assert!(message.chars().count() <= MAX_ERROR_TEXT + 1),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn scale_set_accepts_both_setting_spellings_and_create_sends_capital_r() {
        let a: ScaleSetWire =
            parse_json("t", br#"{"id":1,"name":"mac","RunnerSetting":{"disableUpdate":true}}"#).unwrap();
        let b: ScaleSetWire =
            parse_json("t", br#"{"id":1,"name":"mac","runnerSetting":{"disableUpdate":true}}"#).unwrap();
        assert!(ScaleSet::from(a).runner_setting.disable_update);
        assert!(ScaleSet::from(b).runner_setting.disable_update);
        let new = NewScaleSet {
            name: "mac".into(),
            runner_group_id: 1,
            labels: vec![Label::system("mac")],
            runner_setting: RunnerSetting { disable_update: true },
        };
        let json = serde_json::to_value(NewScaleSetWire::from(&new)).unwrap();
        assert_eq!(json["RunnerSetting"]["disableUpdate"], true);
        assert_eq!(json["createdOn"], ZERO_TIME);
        assert_eq!(json["labels"][0]["type"], "System");
        let upd = serde_json::to_value(ScaleSetUpdateWire::from(&ScaleSetUpdate {
            runner_group_id: Some(2),
            ..Default::default()
        }))
        .unwrap();
        assert_eq!(upd["RunnerSetting"], serde_json::json!({}), "an empty setting must not reset anything");
        assert!(upd.get("name").is_none());
    }
}
