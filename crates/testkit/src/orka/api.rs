//! The Orka 3 gateway API of the fake (docs/protocol/orka.md#endpoints,
//! docs/protocol/orka.md#fake): routes, auth,
//! request validation, blocking deploy, and the middleware that journals every call and
//! applies armed faults.
//!
//! JSON field names are matched case-insensitively, unknown fields are ignored, errors
//! are Kubernetes `Status` objects. State changes go through `state` / `lifecycle`.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Path, Request, State as AxumState};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use rand::Rng;
use serde_json::{Map, Value, json};
use tokio::sync::watch;

use super::config::CapacityMode;
use super::fault::{self, ErrorBody, Fault, Malformed, Route};
use super::lifecycle::{BootPlan, Shared};
use super::state::{AuthError, FakeVm, FakeVmStatus, JournalEntry, Placement, VmRecord};

type Shr = AxumState<Arc<Shared>>;

/// The Orka API routes, with journaling and fault injection.
pub(crate) fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/api/v1/cluster-info", get(cluster_info))
        .route("/api/v1/namespaces/{ns}/vms", get(list_vms).post(deploy))
        .route("/api/v1/namespaces/{ns}/vms/{name}", get(get_vm).delete(delete_vm))
        .route("/api/v1/namespaces/{ns}/nodes", get(list_nodes))
        .route("/api/v1/namespaces/{ns}/vmconfigs", get(list_vm_configs))
        .route("/api/v1/namespaces/{ns}/images", get(list_images))
        .fallback(|| async {
            status_error(
                StatusCode::NOT_FOUND,
                "NotFound",
                "the server could not find the requested resource",
            )
        })
        .layer(middleware::from_fn_with_state(Arc::clone(&shared), journal_and_faults))
        .with_state(shared)
}

/// A Kubernetes `Status` error response.
pub(crate) fn status_error(code: StatusCode, reason: &str, message: &str) -> Response {
    let body = json!({
        "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "message": message, "reason": reason, "code": code.as_u16(),
    });
    (code, axum::Json(body)).into_response()
}

fn auth_error(e: AuthError, ns: &str) -> Response {
    match e {
        AuthError::Unauthorized => status_error(StatusCode::UNAUTHORIZED, "Unauthorized", "Unauthorized"),
        AuthError::Forbidden => status_error(
            StatusCode::FORBIDDEN,
            "Forbidden",
            &format!("access to namespace \"{ns}\" is forbidden for this token"),
        ),
    }
}

#[allow(clippy::result_large_err)] // the error is the response itself, returned at once
fn authorize(shared: &Shared, headers: &HeaderMap, ns: Option<&str>) -> Result<(), Response> {
    let state = shared.lock();
    let auth = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok());
    state.authorize(auth, ns).map_err(|e| auth_error(e, ns.unwrap_or("")))?;
    if let Some(ns) = ns
        && !state.namespaces.contains(ns)
    {
        return Err(status_error(
            StatusCode::NOT_FOUND,
            "NotFound",
            &format!("namespaces \"{ns}\" not found"),
        ));
    }
    Ok(())
}

/// The VM as the gateway renders it.
pub(crate) fn vm_json(vm: &FakeVm) -> Value {
    let mut obj = json!({
        "name": vm.name,
        "namespace": vm.namespace,
        "node": vm.node,
        "ip": vm.ip,
        "ssh": vm.ssh,
        "vnc": vm.vnc,
        "screenshare": vm.screenshare,
        "cpu": vm.cpu,
        "memory": format!("{}G", vm.memory_gb),
        "image": vm.image,
        "status": vm.status.as_str(),
        "portWarnings": "",
    });
    if let Some(error) = &vm.error_message {
        obj["errorMessage"] = json!(error);
    }
    if vm.status == FakeVmStatus::Pending {
        // Pending VMs have no address or ports yet, even once scheduled.
        for key in ["ip", "ssh", "vnc", "screenshare"] {
            obj[key] = Value::Null;
        }
    }
    obj
}

async fn cluster_info() -> Response {
    axum::Json(json!({
        "apiDomain": "fake-orka.local",
        "apiEndpoint": "https://127.0.0.1:6443",
        "appClientId": "fake-orka",
        "baseOauthEndpoint": "https://127.0.0.1/oauth",
        "certData": "",
        "gpuPassthroughEnabled": false,
    }))
    .into_response()
}

async fn list_vms(AxumState(shared): Shr, Path(ns): Path<String>, headers: HeaderMap) -> Response {
    if let Err(r) = authorize(&shared, &headers, Some(&ns)) {
        return r;
    }
    let state = shared.lock();
    let items: Vec<Value> =
        state.vms.values().filter(|r| r.vm.namespace == ns).map(|r| vm_json(&r.vm)).collect();
    axum::Json(json!({ "items": items })).into_response()
}

async fn get_vm(
    AxumState(shared): Shr,
    Path((ns, name)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    if let Err(r) = authorize(&shared, &headers, Some(&ns)) {
        return r;
    }
    match shared.lock().vms.get(&(ns, name.clone())) {
        Some(record) => axum::Json(vm_json(&record.vm)).into_response(),
        None => not_found_vm(&name),
    }
}

fn not_found_vm(name: &str) -> Response {
    status_error(
        StatusCode::NOT_FOUND,
        "NotFound",
        &format!("virtualmachineinstances.orka.macstadium.com \"{name}\" not found"),
    )
}

async fn delete_vm(
    AxumState(shared): Shr,
    Path((ns, name)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    if let Err(r) = authorize(&shared, &headers, Some(&ns)) {
        return r;
    }
    let key = (ns, name.clone());
    let (lag, json_body) = {
        let mut state = shared.lock();
        let (lag, json_body) = (state.config.delete_lag, state.config.delete_json_body);
        match state.vms.get_mut(&key) {
            None => return not_found_vm(&name),
            Some(record) if !lag.is_zero() => {
                record.vm.deleting = true;
                if let Some(task) = record.task.take() {
                    task.abort();
                }
            }
            Some(_) => {}
        }
        (lag, json_body)
    };
    if lag.is_zero() {
        shared.remove_now(&key);
    } else {
        let shared = Arc::clone(&shared);
        tokio::spawn(async move {
            tokio::time::sleep(lag).await;
            shared.remove_now(&key);
        });
    }
    if json_body {
        let body = json!({"kind":"Status","apiVersion":"v1","metadata":{},"status":"Success",
            "details":{"name": name, "kind":"virtualmachineinstances"}});
        (StatusCode::OK, axum::Json(body)).into_response()
    } else {
        StatusCode::OK.into_response()
    }
}

async fn list_nodes(AxumState(shared): Shr, Path(ns): Path<String>, headers: HeaderMap) -> Response {
    if let Err(r) = authorize(&shared, &headers, Some(&ns)) {
        return r;
    }
    let state = shared.lock();
    let items: Vec<Value> = state
        .nodes
        .iter()
        .filter(|n| n.namespace == ns)
        .map(|n| {
            json!({
                "name": n.spec.name, "nodeIP": n.spec.ip, "namespace": n.namespace,
                "allocatableCpu": n.spec.cpu, "availableCpu": n.spec.cpu - n.used_cpu,
                "allocatableMemory": format!("{}G", n.spec.memory_gb),
                "availableMemory": format!("{}G", n.spec.memory_gb - n.used_memory),
                "phase": if n.spec.ready { "READY" } else { "NOT READY" },
                "tags": n.spec.tags, "nodeType": "WORKER", "arch": n.spec.arch,
                "maxVms": n.spec.max_vms, "vmCount": n.vms,
            })
        })
        .collect();
    axum::Json(json!({ "items": items })).into_response()
}

async fn list_vm_configs(AxumState(shared): Shr, headers: HeaderMap) -> Response {
    if let Err(r) = authorize(&shared, &headers, None) {
        return r;
    }
    let state = shared.lock();
    let items: Vec<Value> = state
        .config
        .vm_configs
        .iter()
        .map(|c| json!({"name": c.name, "image": c.image, "cpu": c.cpu, "memory": c.memory_gb, "type": "arm64"}))
        .collect();
    axum::Json(json!({ "items": items })).into_response()
}

async fn list_images(AxumState(shared): Shr, headers: HeaderMap) -> Response {
    if let Err(r) = authorize(&shared, &headers, None) {
        return r;
    }
    let state = shared.lock();
    let items: Vec<Value> = state
        .config
        .images
        .iter()
        .map(|i| json!({"name": i.name, "description": "", "type": i.arch}))
        .collect();
    axum::Json(json!({ "items": items })).into_response()
}

/// Request body fields, looked up case-insensitively.
struct Fields(Map<String, Value>);

impl Fields {
    fn get(&self, key: &str) -> Option<&Value> {
        self.0.iter().find(|(k, _)| k.eq_ignore_ascii_case(key)).map(|(_, v)| v)
    }
    fn str(&self, key: &str) -> Option<String> {
        self.get(key).and_then(Value::as_str).map(str::to_owned).filter(|s| !s.is_empty())
    }
    fn bool(&self, key: &str) -> bool {
        self.get(key).and_then(Value::as_bool).unwrap_or(false)
    }
    fn num(&self, key: &str) -> Option<f64> {
        match self.get(key)? {
            Value::Number(n) => n.as_f64(),
            Value::String(s) => s.parse().ok(),
            _ => None,
        }
    }
}

fn valid_name(name: &str) -> bool {
    let b = name.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && b[0].is_ascii_lowercase()
        && (b[b.len() - 1].is_ascii_lowercase() || b[b.len() - 1].is_ascii_digit())
        && b.iter().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
}

fn random_suffix() -> String {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    let mut rng = rand::rng();
    (0..5).map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char).collect()
}

fn bad_request(message: &str) -> Response {
    status_error(StatusCode::BAD_REQUEST, "BadRequest", message)
}

fn capacity_error(status: u16) -> Response {
    let code = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    status_error(code, "Unschedulable", "Not enough CPU available")
}

/// `POST …/vms`: validates, creates the `Pending` VM, and blocks until it is `Running`,
/// `Failed`, deleted, or the server-side timeout passes (leaving it `Pending`).
async fn deploy(AxumState(shared): Shr, Path(ns): Path<String>, headers: HeaderMap, body: Bytes) -> Response {
    if let Err(r) = authorize(&shared, &headers, Some(&ns)) {
        return r;
    }
    let fields = match serde_json::from_slice::<Value>(&body) {
        Ok(Value::Object(map)) => Fields(map),
        _ => return bad_request("request body must be a JSON object"),
    };
    // `shouldGenerateName` appends `-xxxxx`; without a name the prefix is `vm` (unconfirmed).
    let name = match (fields.str("name"), fields.bool("shouldGenerateName")) {
        (Some(name), false) => name,
        (Some(prefix), true) => format!("{prefix}-{}", random_suffix()),
        (None, _) => format!("vm-{}", random_suffix()),
    };
    if !valid_name(&name) {
        return status_error(
            StatusCode::UNPROCESSABLE_ENTITY,
            "Invalid",
            &format!(
                "VM name \"{name}\" is invalid: lowercase letters, digits and '-', start with a letter, at most 63 characters"
            ),
        );
    }
    let metadata: BTreeMap<String, String> = fields
        .get("customVMMetadata")
        .or_else(|| fields.get("metadata"))
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .map(|(k, v)| (k.clone(), v.as_str().map_or_else(|| v.to_string(), str::to_owned)))
                .collect()
        })
        .unwrap_or_default();
    let placement = Placement {
        node: fields.str("node"),
        tag: fields.str("tag"),
        tag_required: fields.bool("tagRequired"),
        most_allocated: fields.str("scheduler").as_deref() == Some("most-allocated"),
    };

    let key = (ns.clone(), name.clone());
    let (plan, early, uid, mut phase, timeout, deploy_status) = {
        let mut state = shared.lock();
        let vm_config = fields.str("vmConfig");
        let config = match &vm_config {
            Some(c) => match state.config.vm_configs.iter().find(|x| x.name == *c) {
                Some(found) => Some(found.clone()),
                None => {
                    return status_error(
                        StatusCode::NOT_FOUND,
                        "NotFound",
                        &format!("vmconfig \"{c}\" does not exist"),
                    );
                }
            },
            None => None,
        };
        let Some(image) = fields.str("image").or_else(|| config.as_ref().map(|c| c.image.clone())) else {
            return bad_request("either vmConfig or image is required");
        };
        let is_oci = image.contains('/') || image.contains(':');
        if !is_oci && !state.config.images.iter().any(|i| i.name == image) {
            return status_error(StatusCode::NOT_FOUND, "NotFound", &format!("image \"{image}\" not found"));
        }
        let cpu = fields.num("cpu").map(|c| c as u32).or(config.as_ref().map(|c| c.cpu)).unwrap_or(3);
        if cpu < 1 {
            return status_error(StatusCode::UNPROCESSABLE_ENTITY, "Invalid", "cpu must be at least 1");
        }
        let memory =
            fields.num("memory").filter(|m| *m > 0.0).or(config.as_ref().map(|c| c.memory_gb)).unwrap_or(0.0);
        let memory = if memory > 0.0 { memory } else { 2.0 * f64::from(cpu) };

        // Deploy faults.
        let mut plan = BootPlan::default();
        let mut unschedulable = false;
        let mut early = false;
        while let Some(f) = fault::take(&mut state.faults, Route::Deploy, Fault::is_deploy_behaviour) {
            match f {
                Fault::CapacityExhaustedFast { status } => return capacity_error(status),
                Fault::SlowDeploy { delay_ms } => plan.extra_delay += Duration::from_millis(delay_ms),
                Fault::DeployFailure { message } => plan.fail_with = Some(message),
                Fault::CapacityExhaustedSlow => unschedulable = true,
                Fault::RespondBeforeRunning => early = true,
                _ => {}
            }
        }
        if state.vms.contains_key(&key) {
            let code = StatusCode::from_u16(state.config.conflict_status).unwrap_or(StatusCode::CONFLICT);
            return status_error(
                code,
                "AlreadyExists",
                &format!("VM with name \"{name}\" already exists in namespace \"{ns}\""),
            );
        }
        if let CapacityMode::Reject { status } = state.config.capacity_mode
            && !unschedulable
            && !state.has_room(&ns, cpu, memory, &placement)
        {
            return capacity_error(status);
        }
        let minutes = fields
            .num("timeout")
            .filter(|t| *t > 0.0)
            .map_or(state.config.default_timeout_minutes, |t| t as u64);
        let timeout = state.config.minute * u32::try_from(minutes).unwrap_or(u32::MAX);
        let uid = state.next_uid();
        let (tx, rx) = watch::channel(FakeVmStatus::Pending);
        let vm = FakeVm {
            name: name.clone(),
            namespace: ns.clone(),
            node: None,
            status: FakeVmStatus::Pending,
            ip: None,
            ssh: None,
            vnc: None,
            screenshare: None,
            cpu,
            memory_gb: memory,
            image,
            vm_config,
            metadata,
            error_message: None,
            deleting: false,
            seeded: false,
        };
        state.insert_vm(VmRecord {
            uid,
            vm,
            placement,
            unschedulable,
            phase: tx,
            task: None,
            allocated: false,
            ports: None,
        });
        // Schedule under the same lock, so parallel deploys race fairly for the last slot.
        state.try_schedule(&key);
        (plan, early, uid, rx, timeout, state.config.deploy_status)
    };
    shared.spawn_lifecycle(key.clone(), uid, plan);
    let ok_status = StatusCode::from_u16(deploy_status).unwrap_or(StatusCode::OK);
    if early {
        let vm = shared.lock().vms.get(&key).map(|r| vm_json(&r.vm));
        return (ok_status, axum::Json(vm.unwrap_or(Value::Null))).into_response();
    }

    let timed_out =
        tokio::time::timeout(timeout, phase.wait_for(|p| *p != FakeVmStatus::Pending)).await.is_err();
    let state = shared.lock();
    match state.vms.get(&key).filter(|r| r.uid == uid).map(|r| r.vm.clone()) {
        Some(vm) if vm.status == FakeVmStatus::Running => {
            (ok_status, axum::Json(vm_json(&vm))).into_response()
        }
        Some(vm) if vm.status == FakeVmStatus::Failed => status_error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "InternalError",
            &format!(
                "VM \"{name}\" failed: {}",
                vm.error_message.unwrap_or_else(|| "unknown error".to_owned())
            ),
        ),
        Some(_) if timed_out => status_error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "Timeout",
            &format!("timed out waiting for VM \"{name}\" to be ready"),
        ),
        _ => status_error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "InternalError",
            &format!("VM \"{name}\" was deleted during deployment"),
        ),
    }
}

/// Journals every API call and applies armed faults around the handler.
async fn journal_and_faults(AxumState(shared): Shr, request: Request, next: Next) -> Response {
    let (parts, body) = request.into_parts();
    let bytes = axum::body::to_bytes(body, 4 * 1024 * 1024).await.unwrap_or_default();
    let route = Route::classify(&parts.method, parts.uri.path());
    let (seq, pre) = {
        let mut state = shared.lock();
        let seq = state.journal.len() as u64;
        let body = if bytes.is_empty() {
            None
        } else {
            Some(
                serde_json::from_slice(&bytes)
                    .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned())),
            )
        };
        let entry = JournalEntry {
            seq,
            at_ms: state.elapsed_ms(),
            method: parts.method.to_string(),
            path: parts.uri.path().to_owned(),
            body,
            authorization: parts
                .headers
                .get(header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned),
            status: None,
        };
        state.journal.push(entry);
        let pre = route.and_then(|r| fault::take(&mut state.faults, r, Fault::is_pre_handler));
        (seq, pre)
    };

    let response = match pre {
        Some(Fault::HttpError { status, body, .. }) => injected_error(status, body),
        Some(Fault::RateLimited { retry_after_secs, .. }) => {
            let mut r = status_error(StatusCode::TOO_MANY_REQUESTS, "TooManyRequests", "rate limit exceeded");
            if let Some(secs) = retry_after_secs {
                r.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(secs));
            }
            r
        }
        Some(Fault::Unavailable { retry_after_secs, .. }) => {
            let mut r = injected_error(503, ErrorBody::Html);
            if let Some(secs) = retry_after_secs {
                r.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(secs));
            }
            r
        }
        other => {
            // Like a Go API server, a request once received is carried out even if the
            // client goes away (a deploy still creates its VM): run it detached.
            let shared = Arc::clone(&shared);
            let handled = tokio::spawn(async move {
                if let Some(Fault::Hang { delay_ms, .. }) = other {
                    tokio::time::sleep(Duration::from_millis(delay_ms)).await;
                }
                let response = next.run(Request::from_parts(parts, Body::from(bytes))).await;
                let malformed = match route {
                    Some(r) if response.status().is_success() => {
                        fault::take(&mut shared.lock().faults, r, |f| {
                            matches!(f, Fault::MalformedSuccess { .. })
                        })
                    }
                    _ => None,
                };
                let response = match malformed {
                    Some(Fault::MalformedSuccess { shape, .. }) => corrupt(response, shape).await,
                    _ => response,
                };
                if let Some(entry) = shared.lock().journal.get_mut(seq as usize) {
                    entry.status = Some(response.status().as_u16());
                }
                response
            });
            return handled.await.unwrap_or_else(|_| {
                status_error(StatusCode::INTERNAL_SERVER_ERROR, "InternalError", "fake Orka handler failed")
            });
        }
    };
    if let Some(entry) = shared.lock().journal.get_mut(seq as usize) {
        entry.status = Some(response.status().as_u16());
    }
    response
}

fn injected_error(status: u16, body: ErrorBody) -> Response {
    let code = StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_GATEWAY);
    match body {
        ErrorBody::Json => status_error(code, "InternalError", "injected server error"),
        ErrorBody::Html => (
            code,
            [(header::CONTENT_TYPE, "text/html")],
            format!(
                "<html>\r\n<head><title>{status} {reason}</title></head>\r\n<body>\r\n<center><h1>{status} {reason}</h1></center>\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n",
                reason = code.canonical_reason().unwrap_or("")
            ),
        )
            .into_response(),
        ErrorBody::Empty => code.into_response(),
    }
}

async fn corrupt(response: Response, shape: Malformed) -> Response {
    let (mut parts, body) = response.into_parts();
    let bytes = axum::body::to_bytes(body, 16 * 1024 * 1024).await.unwrap_or_default();
    parts.headers.remove(header::CONTENT_LENGTH);
    let new_body = match shape {
        Malformed::NotJson => {
            parts.headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
            Bytes::from_static(b"OK")
        }
        Malformed::Empty => Bytes::new(),
        _ => {
            let mut value: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
            let mut edit = |vm: &mut Value| {
                let Some(obj) = vm.as_object_mut() else { return };
                match shape {
                    Malformed::MissingSsh => {
                        obj.remove("ssh");
                    }
                    Malformed::PortsAsStrings => {
                        for key in ["ssh", "vnc", "screenshare"] {
                            if let Some(Value::Number(n)) = obj.get(key).cloned() {
                                obj.insert(key.to_owned(), Value::String(n.to_string()));
                            }
                        }
                    }
                    _ => {
                        obj.insert("futureField".into(), json!({"nested": [1, "two", null], "flag": true}));
                        obj.insert("owner".into(), json!("someone@example.com"));
                        obj.insert("deployDate".into(), json!("2026-01-01T00:00:00Z"));
                        obj.insert("reservedPorts".into(), json!([{"hostPort": 9000, "guestPort": 4000}]));
                    }
                }
            };
            match value.get_mut("items").and_then(Value::as_array_mut) {
                Some(items) => items.iter_mut().for_each(&mut edit),
                None => edit(&mut value),
            }
            if shape == Malformed::ExtraFields
                && let Some(obj) = value.as_object_mut()
            {
                obj.insert("apiVersion".into(), json!("v1"));
            }
            Bytes::from(serde_json::to_vec(&value).unwrap_or_default())
        }
    };
    Response::from_parts(parts, Body::from(new_body))
}
