//! The fake cluster's state model (docs/protocol/orka.md#fake): namespaces, nodes with CPU /
//! memory / VM-count capacity and per-node port allocators, VMs, tokens, armed faults,
//! the request journal and the peak VM count.
//!
//! Pure bookkeeping under one lock: no I/O, no waiting. The VM lifecycle (boot, timers,
//! the SSH provider) lives in `lifecycle`; HTTP in `api` and `control`.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use tokio::task::AbortHandle;
use tokio::time::Instant;

use super::config::{FakeOrkaConfig, NodeSpec, TokenSpec};
use super::fault::ArmedFault;

/// First SSH / VNC / Screen Sharing port handed out on each node.
pub const SSH_PORT_BASE: u16 = 8822;
const VNC_PORT_BASE: u16 = 5999;
const SCREENSHARE_PORT_BASE: u16 = 5900;

/// Phase of a fake VM.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum FakeVmStatus {
    /// Created, waiting for a node or booting.
    Pending,
    /// Running with an address and ports.
    Running,
    /// Failed; will not heal.
    Failed,
}

impl FakeVmStatus {
    /// Orka's spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            FakeVmStatus::Pending => "Pending",
            FakeVmStatus::Running => "Running",
            FakeVmStatus::Failed => "Failed",
        }
    }
}

/// A snapshot of one fake VM.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FakeVm {
    /// VM name.
    pub name: String,
    /// The namespace the VM was deployed in.
    pub namespace: String,
    /// Node it was scheduled on.
    pub node: Option<String>,
    /// Lifecycle phase as the gateway reports it.
    pub status: FakeVmStatus,
    /// Reported address (node IP, or the provider's address).
    pub ip: Option<String>,
    /// Reported SSH port.
    pub ssh: Option<u16>,
    /// Reported VNC port.
    pub vnc: Option<u16>,
    /// Reported Screen Sharing port.
    pub screenshare: Option<u16>,
    /// CPU cores the VM holds on its node.
    pub cpu: u32,
    /// Memory the VM holds on its node, in GiB.
    pub memory_gb: f64,
    /// The image the VM was deployed from.
    pub image: String,
    /// The config it was deployed from.
    pub vm_config: Option<String>,
    /// Custom metadata sent on deploy.
    pub metadata: BTreeMap<String, String>,
    /// `errorMessage` of a `Failed` VM.
    pub error_message: Option<String>,
    /// Deleted but still visible (delete lag).
    pub deleting: bool,
    /// Created through the control API rather than a deploy.
    pub seeded: bool,
}

/// A VM to create directly, bypassing deploy (e.g. a foreign VM, or one left by a
/// previous controller run).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SeedVm {
    /// VM name.
    pub name: String,
    /// Namespace; default `orka-default`.
    #[serde(default)]
    pub namespace: Option<String>,
    /// Phase; default `Running`.
    #[serde(default)]
    pub status: Option<FakeVmStatus>,
    /// Node; default the first with room.
    #[serde(default)]
    pub node: Option<String>,
    /// Config; default the first configured one.
    #[serde(default)]
    pub vm_config: Option<String>,
    /// Reported address; default from the provider (when attached) or the node.
    #[serde(default)]
    pub ip: Option<String>,
    /// Reported SSH port; default from the provider or the node's allocator.
    #[serde(default)]
    pub ssh: Option<u16>,
}

impl SeedVm {
    /// A `Running` VM called `name` in `orka-default` with everything else defaulted.
    pub fn running(name: &str) -> Self {
        Self {
            name: name.to_owned(),
            namespace: None,
            status: None,
            node: None,
            vm_config: None,
            ip: None,
            ssh: None,
        }
    }

    /// The same VM with another phase.
    pub fn with_status(mut self, status: FakeVmStatus) -> Self {
        self.status = Some(status);
        self
    }
}

/// One request the fake received (control API calls are not journaled).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JournalEntry {
    /// Order of arrival, from 0.
    pub seq: u64,
    /// Milliseconds since the fake started.
    pub at_ms: u64,
    /// HTTP method.
    pub method: String,
    /// Path without the query.
    pub path: String,
    /// Body parsed as JSON, or as a JSON string when it is not JSON; `None` when empty.
    pub body: Option<serde_json::Value>,
    /// The `Authorization` header as sent.
    pub authorization: Option<String>,
    /// Response status; `None` while the request is in flight. Requests are carried out
    /// even when the client hangs up (like a Go API server), so they all get one.
    pub status: Option<u16>,
}

impl JournalEntry {
    /// Whether this is `method` on a path ending with `suffix`.
    pub fn is(&self, method: &str, suffix: &str) -> bool {
        self.method == method && self.path.ends_with(suffix)
    }
}

pub(crate) struct NodeState {
    pub spec: NodeSpec,
    pub namespace: String,
    pub used_cpu: u32,
    pub used_memory: f64,
    pub vms: usize,
    pub ssh_ports: BTreeSet<u16>,
    pub vnc_ports: BTreeSet<u16>,
    pub screenshare_ports: BTreeSet<u16>,
}

impl NodeState {
    fn fits(&self, cpu: u32, memory: f64) -> bool {
        self.spec.ready
            && self.vms < self.spec.max_vms as usize
            && self.used_cpu + cpu <= self.spec.cpu
            && self.used_memory + memory <= self.spec.memory_gb + 1e-9
    }
}

/// Placement wishes of a deploy.
#[derive(Debug, Clone, Default)]
pub(crate) struct Placement {
    pub node: Option<String>,
    pub tag: Option<String>,
    pub tag_required: bool,
    pub most_allocated: bool,
}

pub(crate) struct VmRecord {
    pub uid: u64,
    pub vm: FakeVm,
    pub placement: Placement,
    /// Never schedulable (capacity-exhausted-slow fault).
    pub unschedulable: bool,
    pub phase: watch::Sender<FakeVmStatus>,
    pub task: Option<AbortHandle>,
    /// Holds node resources.
    pub allocated: bool,
    /// The node ports allocated to it (ssh, vnc, screenshare); the reported `ssh` may
    /// differ when a provider supplies the endpoint.
    pub ports: Option<(u16, u16, u16)>,
}

pub(crate) struct TokenState {
    pub spec: TokenSpec,
    pub expires_at: Option<Instant>,
}

pub(crate) struct State {
    pub config: FakeOrkaConfig,
    pub started: Instant,
    pub nodes: Vec<NodeState>,
    pub namespaces: BTreeSet<String>,
    pub vms: BTreeMap<(String, String), VmRecord>,
    pub tokens: Vec<TokenState>,
    pub faults: Vec<ArmedFault>,
    pub journal: Vec<JournalEntry>,
    pub peak_vms: usize,
    pub next_uid: u64,
}

/// Why a request may not use a namespace.
pub(crate) enum AuthError {
    Unauthorized,
    Forbidden,
}

impl State {
    pub fn new(config: FakeOrkaConfig) -> Self {
        let started = Instant::now();
        let mut nodes = Vec::new();
        let mut namespaces = BTreeSet::new();
        for ns in &config.namespaces {
            namespaces.insert(ns.name.clone());
            for spec in &ns.nodes {
                nodes.push(NodeState {
                    spec: spec.clone(),
                    namespace: ns.name.clone(),
                    used_cpu: 0,
                    used_memory: 0.0,
                    vms: 0,
                    ssh_ports: BTreeSet::new(),
                    vnc_ports: BTreeSet::new(),
                    screenshare_ports: BTreeSet::new(),
                });
            }
        }
        let tokens = config.tokens.iter().map(|spec| token_state(spec.clone(), started)).collect();
        Self {
            config,
            started,
            nodes,
            namespaces,
            vms: BTreeMap::new(),
            tokens,
            faults: Vec::new(),
            journal: Vec::new(),
            peak_vms: 0,
            next_uid: 1,
        }
    }

    pub fn add_token(&mut self, spec: TokenSpec) {
        self.tokens.retain(|t| t.spec.value != spec.value);
        let state = token_state(spec, Instant::now());
        self.tokens.push(state);
    }

    /// Checks a bearer header against the tokens; `namespace` `None` = any valid token.
    pub fn authorize(&self, header: Option<&str>, namespace: Option<&str>) -> Result<(), AuthError> {
        let value =
            header.and_then(|h| h.strip_prefix("Bearer ")).map(str::trim).ok_or(AuthError::Unauthorized)?;
        let token = self.tokens.iter().find(|t| t.spec.value == value).ok_or(AuthError::Unauthorized)?;
        if token.expires_at.is_some_and(|at| Instant::now() >= at) {
            return Err(AuthError::Unauthorized);
        }
        match (namespace, &token.spec.namespaces) {
            (Some(ns), Some(allowed)) if !allowed.iter().any(|a| a == ns) => Err(AuthError::Forbidden),
            _ => Ok(()),
        }
    }

    pub fn insert_vm(&mut self, record: VmRecord) {
        let key = (record.vm.namespace.clone(), record.vm.name.clone());
        self.vms.insert(key, record);
        self.peak_vms = self.peak_vms.max(self.vms.len());
    }

    pub fn next_uid(&mut self) -> u64 {
        self.next_uid += 1;
        self.next_uid
    }

    /// Whether some node of `namespace` could take the VM right now.
    pub fn has_room(&self, namespace: &str, cpu: u32, memory: f64, placement: &Placement) -> bool {
        self.candidates(namespace, cpu, memory, placement).next().is_some()
    }

    fn candidates<'a>(
        &'a self,
        namespace: &'a str,
        cpu: u32,
        memory: f64,
        placement: &'a Placement,
    ) -> impl Iterator<Item = usize> + 'a {
        self.nodes.iter().enumerate().filter_map(move |(i, n)| {
            let pinned = placement.node.as_ref().is_none_or(|want| *want == n.spec.name);
            let tagged = !placement.tag_required
                || placement.tag.as_ref().is_none_or(|tag| n.spec.tags.iter().any(|t| t == tag));
            (n.namespace == namespace && pinned && tagged && n.fits(cpu, memory)).then_some(i)
        })
    }

    /// Places the VM `key` on a node and allocates its ports; `false` when nothing fits.
    pub fn try_schedule(&mut self, key: &(String, String)) -> bool {
        let Some(record) = self.vms.get(key) else { return false };
        if record.unschedulable || record.allocated {
            return record.allocated;
        }
        let (cpu, memory, placement) = (record.vm.cpu, record.vm.memory_gb, record.placement.clone());
        let candidates: Vec<usize> = self.candidates(&key.0, cpu, memory, &placement).collect();
        let score = |i: &usize| {
            let n = &self.nodes[*i];
            let tag_bonus = placement.tag.as_ref().is_some_and(|t| n.spec.tags.contains(t));
            (tag_bonus, n.vms, n.used_cpu)
        };
        let chosen = if placement.most_allocated {
            candidates.iter().copied().max_by_key(|i| {
                let (t, vms, cpu) = score(i);
                (t, vms, cpu, std::cmp::Reverse(*i))
            })
        } else {
            candidates.iter().copied().min_by_key(|i| {
                let (t, vms, cpu) = score(i);
                (!t, vms, cpu, *i)
            })
        };
        let Some(index) = chosen else { return false };
        self.allocate(index, key, None);
        true
    }

    /// Allocates node `index` resources to VM `key`; `ssh` forces a port when free.
    pub fn allocate(&mut self, index: usize, key: &(String, String), ssh: Option<u16>) {
        let node = &mut self.nodes[index];
        let Some(record) = self.vms.get_mut(key) else { return };
        node.used_cpu += record.vm.cpu;
        node.used_memory += record.vm.memory_gb;
        node.vms += 1;
        let ssh = match ssh {
            Some(port) if node.ssh_ports.insert(port) => port,
            _ => lowest_free(&mut node.ssh_ports, SSH_PORT_BASE),
        };
        let vnc = lowest_free(&mut node.vnc_ports, VNC_PORT_BASE);
        let screenshare = lowest_free(&mut node.screenshare_ports, SCREENSHARE_PORT_BASE);
        record.allocated = true;
        record.ports = Some((ssh, vnc, screenshare));
        record.vm.node = Some(node.spec.name.clone());
        record.vm.ssh = Some(ssh);
        record.vm.vnc = Some(vnc);
        record.vm.screenshare = Some(screenshare);
    }

    /// The node's IP for a scheduled VM.
    pub fn node_ip(&self, node: &str) -> Option<String> {
        self.nodes.iter().find(|n| n.spec.name == node).map(|n| n.spec.ip.clone())
    }

    pub fn node_index(&self, namespace: &str, name: &str) -> Option<usize> {
        self.nodes.iter().position(|n| n.namespace == namespace && n.spec.name == name)
    }

    /// Removes a VM, frees its node resources and ports; returns it.
    pub fn remove_vm(&mut self, key: &(String, String)) -> Option<VmRecord> {
        let record = self.vms.remove(key)?;
        if let Some(task) = &record.task {
            task.abort();
        }
        if record.allocated
            && let Some(node) =
                record.vm.node.as_ref().and_then(|n| self.nodes.iter_mut().find(|x| x.spec.name == *n))
        {
            node.used_cpu = node.used_cpu.saturating_sub(record.vm.cpu);
            node.used_memory = (node.used_memory - record.vm.memory_gb).max(0.0);
            node.vms = node.vms.saturating_sub(1);
            if let Some((ssh, vnc, screenshare)) = record.ports {
                node.ssh_ports.remove(&ssh);
                node.vnc_ports.remove(&vnc);
                node.screenshare_ports.remove(&screenshare);
            }
        }
        Some(record)
    }

    /// The record `key` if it is still the incarnation `uid`.
    pub fn vm_mut(&mut self, key: &(String, String), uid: u64) -> Option<&mut VmRecord> {
        self.vms.get_mut(key).filter(|r| r.uid == uid)
    }

    pub fn elapsed_ms(&self) -> u64 {
        u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// Sets a VM's phase and wakes deploys waiting on it.
    pub fn set_phase(record: &mut VmRecord, status: FakeVmStatus) {
        record.vm.status = status;
        record.phase.send_replace(status);
    }
}

fn token_state(spec: TokenSpec, from: Instant) -> TokenState {
    let expires_at = spec.expires_after_ms.map(|ms| from + Duration::from_millis(ms));
    TokenState { spec, expires_at }
}

fn lowest_free(used: &mut BTreeSet<u16>, base: u16) -> u16 {
    let mut port = base;
    while used.contains(&port) {
        port += 1;
    }
    used.insert(port);
    port
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_are_allocated_per_node_from_8822_and_reused() {
        let mut used = BTreeSet::new();
        assert_eq!(lowest_free(&mut used, SSH_PORT_BASE), 8822);
        assert_eq!(lowest_free(&mut used, SSH_PORT_BASE), 8823);
        used.remove(&8822);
        assert_eq!(lowest_free(&mut used, SSH_PORT_BASE), 8822);
    }
}
