//! The `/_fake/…` HTTP control API (not part of GitHub's protocol) and the fake-runner
//! endpoint of the fake-runner contract.
//!
//! Routes:
//! - `POST /_fake/runner/poll` (Bearer = the JIT credential) → `{"state":"idle"|"running"|"done"|"removed"}`, 401 if unknown;
//!   403 `{"message":"Runner version v… is deprecated and cannot receive messages."}` when the
//!   runner's `X-Runner-Version` is one of the refused versions
//! - `POST /_fake/jobs` ([`JobSpec`] JSON) → `{"id":N}`
//! - `POST /_fake/jobs/{id}/cancel` → 204 / 409 (already ended) / 404
//! - `POST /_fake/jobs/{id}/finish` (`{"result":"failed"}`, default succeeded) → 204 / 409 (not running)
//! - `GET /_fake/state` → [`FakeState`](super::FakeState) JSON
//! - `POST /_fake/faults` ([`Fault`] JSON) → 204; `DELETE /_fake/faults` → 204
//! - `POST /_fake/scalesets` (`{"name":…,"labels":[…]}`) → `{"id":N}`
//! - `POST /_fake/clock` (`{"advance_ms":N}`) → 204: moves the token clock forward
//!
//! Owns: parsing those requests. Does not own: what they do (the handle methods).

use axum::{
    body::Bytes,
    http::{HeaderMap, Method},
};
use serde_json::{Value, json};

use super::{
    Shared,
    model::{Fault, JobSpec},
    server::{Reply, bearer},
};

pub(crate) async fn handle(
    shared: &Shared,
    method: &Method,
    segs: &[&str],
    headers: &HeaderMap,
    body: &Bytes,
) -> Reply {
    let bad = |m: String| Reply::json(400, json!({"message": m}));
    match (method.clone(), segs) {
        (Method::POST, ["runner", "poll"]) => {
            let mut st = shared.state.lock().expect("state");
            st.count("runner_poll");
            let Some(cred) = bearer(headers) else {
                return Reply::json(401, json!({"message": "no credential"}));
            };
            if let Some(refused) = refused_version(&st.cfg.refused_runner_versions, headers) {
                return Reply::json(403, json!({ "message": deprecated_message(&refused) }));
            }
            match st.runner_poll(&cred) {
                Some(state) => Reply::json(200, json!({"state": state})),
                None => Reply::json(401, json!({"message": "unknown credential"})),
            }
        }
        (Method::POST, ["jobs"]) => match serde_json::from_slice::<JobSpec>(body) {
            Ok(spec) => Reply::json(200, json!({"id": shared.state.lock().expect("state").enqueue(spec)})),
            Err(e) => bad(format!("job spec: {e}")),
        },
        (Method::POST, ["jobs", id, action]) => {
            let Ok(id) = id.parse::<u64>() else { return Reply::not_found() };
            let mut st = shared.state.lock().expect("state");
            if st.snapshot().job(id).is_none() {
                return Reply::not_found();
            }
            let done = match *action {
                "cancel" => st.cancel(id),
                "finish" => {
                    let result = serde_json::from_slice::<Value>(body)
                        .ok()
                        .and_then(|v| v.get("result").and_then(Value::as_str).map(str::to_owned))
                        .unwrap_or_else(|| "succeeded".into());
                    st.finish_job(id, &result)
                }
                _ => return Reply::not_found(),
            };
            if done {
                Reply::empty(204)
            } else {
                Reply::json(409, json!({"message": "job is not in a state for that"}))
            }
        }
        (Method::GET, ["state"]) => Reply::json(
            200,
            serde_json::to_value(shared.state.lock().expect("state").snapshot()).unwrap_or_default(),
        ),
        (Method::POST, ["faults"]) => match serde_json::from_slice::<Fault>(body) {
            Ok(f) => {
                super::apply_fault(shared, f);
                Reply::empty(204)
            }
            Err(e) => bad(format!("fault: {e}")),
        },
        (Method::DELETE, ["faults"]) => {
            shared.state.lock().expect("state").faults.clear();
            Reply::empty(204)
        }
        (Method::POST, ["clock"]) => {
            let v: Value = serde_json::from_slice(body).unwrap_or_default();
            let Some(ms) = v.get("advance_ms").and_then(Value::as_u64) else {
                return bad("advance_ms is required".into());
            };
            shared.state.lock().expect("state").clock_offset += std::time::Duration::from_millis(ms);
            Reply::empty(204)
        }
        (Method::POST, ["scalesets"]) => {
            let v: Value = serde_json::from_slice(body).unwrap_or_default();
            let Some(name) = v.get("name").and_then(Value::as_str) else {
                return bad("name is required".into());
            };
            let labels: Vec<String> =
                serde_json::from_value(v.get("labels").cloned().unwrap_or_default()).unwrap_or_default();
            match shared.state.lock().expect("state").create_scale_set(name, 1, labels, true) {
                Ok(id) => Reply::json(200, json!({"id": id})),
                Err(e) => Reply::service(e),
            }
        }
        _ => Reply::not_found(),
    }
}

/// The runner's version from `X-Runner-Version` when it is one GitHub refuses.
fn refused_version(refused: &std::collections::BTreeSet<String>, headers: &HeaderMap) -> Option<String> {
    let version = headers.get("x-runner-version")?.to_str().ok()?.trim().trim_start_matches('v');
    refused.contains(version).then(|| version.to_owned())
}

/// What GitHub tells a runner whose version it refuses (the runner prints it and exits 7).
pub(crate) fn deprecated_message(version: &str) -> String {
    format!("Runner version v{version} is deprecated and cannot receive messages.")
}
