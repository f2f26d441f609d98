//! The fake-only control surface: the operations behind [`super::FakeOrka`]'s methods
//! (seed VMs, out-of-band vanish / fail, token changes, snapshots) and the same
//! operations over HTTP under `/__fake/` for tests that drive a fake in another process.
//!
//! The control API needs no token and is never journaled.

use std::collections::BTreeMap;
use std::sync::Arc;

use anyhow::{Context, bail};
use axum::Router;
use axum::extract::{Path, State as AxumState};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::{Deserialize, Serialize};
use serde_json::json;
use tokio::sync::watch;

use super::config::{DEFAULT_NAMESPACE, TokenSpec};
use super::fault::{ArmedFault, Fault};
use super::lifecycle::Shared;
use super::state::{FakeVm, FakeVmStatus, JournalEntry, Placement, State, VmRecord};

/// A snapshot of the fake cluster, as `GET /__fake/state` returns it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FakeState {
    /// Every VM (all namespaces), by namespace then name.
    pub vms: Vec<FakeVm>,
    /// The most VMs that ever existed at once (deleting ones included).
    pub peak_vms: usize,
    /// Faults still armed.
    pub faults: Vec<ArmedFault>,
}

/// Body of `POST /__fake/faults`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FaultRequest {
    /// The fault.
    pub fault: Fault,
    /// How many matching requests it applies to (default 1).
    #[serde(default = "one")]
    pub times: usize,
}

fn one() -> usize {
    1
}

/// Body of `POST /__fake/vms/{ns}/{name}/fail`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct FailRequest {
    /// The VM's `errorMessage`.
    #[serde(default)]
    pub message: Option<String>,
}

pub(crate) fn snapshot(shared: &Shared) -> FakeState {
    let state = shared.lock();
    FakeState {
        vms: state.vms.values().map(|r| r.vm.clone()).collect(),
        peak_vms: state.peak_vms,
        faults: state.faults.clone(),
    }
}

pub(crate) fn arm(shared: &Shared, fault: Fault, times: usize) {
    if times > 0 {
        shared.lock().faults.push(ArmedFault { fault, remaining: times });
    }
}

/// Creates a VM directly (no deploy, no journal entry), holding node capacity.
pub(crate) async fn seed(shared: &Arc<Shared>, seed: super::SeedVm) -> anyhow::Result<FakeVm> {
    let ns = seed.namespace.clone().unwrap_or_else(|| DEFAULT_NAMESPACE.to_owned());
    let status = seed.status.unwrap_or(FakeVmStatus::Running);
    let key = (ns.clone(), seed.name.clone());
    let uid = {
        let mut state = shared.lock();
        if !state.namespaces.contains(&ns) {
            bail!("namespace {ns} does not exist in the fake");
        }
        if state.vms.contains_key(&key) {
            bail!("VM {} already exists in {ns}", seed.name);
        }
        let config = match &seed.vm_config {
            Some(name) => state.config.vm_configs.iter().find(|c| c.name == *name).cloned(),
            None => state.config.vm_configs.first().cloned(),
        };
        let cpu = config.as_ref().map_or(3, |c| c.cpu);
        let memory = config.as_ref().map_or(0.0, |c| c.memory_gb);
        let memory = if memory > 0.0 { memory } else { 2.0 * f64::from(cpu) };
        let uid = state.next_uid();
        let (tx, _) = watch::channel(status);
        let vm = FakeVm {
            name: seed.name.clone(),
            namespace: ns.clone(),
            node: None,
            status,
            ip: None,
            ssh: None,
            vnc: None,
            screenshare: None,
            cpu,
            memory_gb: memory,
            image: config.as_ref().map_or_else(|| "seeded.orkasi".to_owned(), |c| c.image.clone()),
            vm_config: config.map(|c| c.name),
            metadata: BTreeMap::new(),
            error_message: (status == FakeVmStatus::Failed).then(|| "seeded as Failed".to_owned()),
            deleting: false,
            seeded: true,
        };
        let placement = Placement { node: seed.node.clone(), ..Placement::default() };
        state.insert_vm(VmRecord {
            uid,
            vm,
            placement,
            unschedulable: false,
            phase: tx,
            task: None,
            allocated: false,
            ports: None,
        });
        // A seeded VM occupies its node like any other.
        let index = match &seed.node {
            Some(node) => state.node_index(&ns, node).with_context(|| format!("node {node} is not in {ns}")),
            None => Ok(usize::MAX),
        };
        let placed = match index {
            Ok(usize::MAX) => state.try_schedule(&key),
            Ok(i) => {
                state.allocate(i, &key, seed.ssh);
                true
            }
            Err(e) => {
                state.remove_vm(&key);
                return Err(e);
            }
        };
        if !placed {
            state.remove_vm(&key);
            bail!("no node in {ns} has room for seeded VM {}", seed.name);
        }
        uid
    };

    // The endpoint: explicit, from the provider for Running VMs, else the node's.
    let endpoint = match (&seed.ip, shared.provider(), status) {
        (Some(ip), _, _) => Some((ip.clone(), seed.ssh)),
        (None, Some(provider), FakeVmStatus::Running) => match provider.boot(&seed.name).await {
            Ok((ip, port)) => Some((ip, Some(port))),
            Err(e) => {
                shared.remove_now(&key);
                return Err(e.context(format!("provider could not boot seeded VM {}", seed.name)));
            }
        },
        _ => None,
    };
    let mut state = shared.lock();
    let node_ip = state.vms.get(&key).and_then(|r| r.vm.node.clone()).and_then(|n| state.node_ip(&n));
    let record = state.vm_mut(&key, uid).context("seeded VM disappeared")?;
    match endpoint {
        Some((ip, ssh)) => {
            record.vm.ip = Some(ip);
            if let Some(port) = ssh {
                record.vm.ssh = Some(port);
            }
        }
        None => record.vm.ip = node_ip,
    }
    Ok(record.vm.clone())
}

fn find_key(state: &State, name: &str) -> Option<(String, String)> {
    state.vms.keys().find(|(_, n)| n == name).cloned()
}

/// Out-of-band delete (the VM vanishes: GET 404, list omits it, SSH endpoint destroyed).
pub(crate) fn vanish(shared: &Arc<Shared>, name: &str) -> bool {
    let key = find_key(&shared.lock(), name);
    key.and_then(|k| shared.remove_now(&k)).is_some()
}

/// The VM turns `Failed` (its SSH endpoint is destroyed; it keeps its node until deleted).
pub(crate) fn fail(shared: &Arc<Shared>, name: &str, message: Option<String>) -> bool {
    let found = {
        let mut state = shared.lock();
        let Some(key) = find_key(&state, name) else { return false };
        let Some(record) = state.vms.get_mut(&key) else { return false };
        if let Some(task) = record.task.take() {
            task.abort();
        }
        record.vm.error_message = Some(message.unwrap_or_else(|| "VM stopped unexpectedly".to_owned()));
        State::set_phase(record, FakeVmStatus::Failed);
        true
    };
    shared.destroy_endpoint(name);
    found
}

pub(crate) fn expire_token(shared: &Shared, token: &str) {
    let mut state = shared.lock();
    let now = tokio::time::Instant::now();
    for t in state.tokens.iter_mut().filter(|t| t.spec.value == token) {
        t.expires_at = Some(now);
    }
}

/// The `/__fake/` routes.
pub(crate) fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route(
            "/__fake/state",
            get(|AxumState(s): AxumState<Arc<Shared>>| async move { axum::Json(snapshot(&s)) }),
        )
        .route(
            "/__fake/journal",
            get(|AxumState(s): AxumState<Arc<Shared>>| async move {
                let journal: Vec<JournalEntry> = s.lock().journal.clone();
                axum::Json(journal)
            })
            .delete(|AxumState(s): AxumState<Arc<Shared>>| async move {
                s.lock().journal.clear();
                StatusCode::NO_CONTENT
            }),
        )
        .route("/__fake/vms", post(seed_handler))
        .route(
            "/__fake/faults",
            post(
                |AxumState(s): AxumState<Arc<Shared>>, axum::Json(req): axum::Json<FaultRequest>| async move {
                    arm(&s, req.fault, req.times);
                    StatusCode::NO_CONTENT
                },
            )
            .delete(|AxumState(s): AxumState<Arc<Shared>>| async move {
                s.lock().faults.clear();
                StatusCode::NO_CONTENT
            }),
        )
        .route(
            "/__fake/vms/{name}/vanish",
            post(|AxumState(s): AxumState<Arc<Shared>>, Path(name): Path<String>| async move {
                found(vanish(&s, &name))
            }),
        )
        .route(
            "/__fake/vms/{name}/fail",
            post(
                |AxumState(s): AxumState<Arc<Shared>>,
                 Path(name): Path<String>,
                 body: Option<axum::Json<FailRequest>>| async move {
                    found(fail(&s, &name, body.and_then(|b| b.0.message)))
                },
            ),
        )
        .route(
            "/__fake/tokens",
            post(
                |AxumState(s): AxumState<Arc<Shared>>, axum::Json(spec): axum::Json<TokenSpec>| async move {
                    s.lock().add_token(spec);
                    StatusCode::NO_CONTENT
                },
            ),
        )
        .route(
            "/__fake/tokens/{token}/expire",
            post(|AxumState(s): AxumState<Arc<Shared>>, Path(token): Path<String>| async move {
                expire_token(&s, &token);
                StatusCode::NO_CONTENT
            }),
        )
        .with_state(shared)
}

fn found(ok: bool) -> StatusCode {
    if ok { StatusCode::NO_CONTENT } else { StatusCode::NOT_FOUND }
}

async fn seed_handler(
    AxumState(s): AxumState<Arc<Shared>>,
    axum::Json(seed_vm): axum::Json<super::SeedVm>,
) -> Response {
    match seed(&s, seed_vm).await {
        Ok(vm) => (StatusCode::CREATED, axum::Json(vm)).into_response(),
        Err(e) => {
            (StatusCode::BAD_REQUEST, axum::Json(json!({ "message": format!("{e:#}") }))).into_response()
        }
    }
}
