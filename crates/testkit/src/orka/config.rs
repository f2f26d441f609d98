//! Configuration of the fake Orka: the cluster it starts with (namespaces, nodes, VM
//! configs, images, tokens) and the behaviours the Orka API leaves unconfirmed (marked *unconfirmed* in
//! docs/protocol/orka.md), each a knob with a realistic default.
//!
//! It holds plain data only; the running state lives in `state`.

use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// The token the default configuration accepts.
pub const DEFAULT_TOKEN: &str = "fake-orka-token";
/// The namespace every fake cluster has.
pub const DEFAULT_NAMESPACE: &str = "orka-default";
/// The VM config the default configuration offers.
pub const DEFAULT_VM_CONFIG: &str = "ci-sonoma";
/// The image behind [`DEFAULT_VM_CONFIG`].
pub const DEFAULT_IMAGE: &str = "sonoma-90gb.orkasi";

/// How the fake starts.
#[derive(Debug, Clone)]
pub struct FakeOrkaConfig {
    /// Address to listen on (a loopback address; port chosen by the OS).
    pub bind: IpAddr,
    /// Namespaces and their nodes.
    pub namespaces: Vec<NamespaceSpec>,
    /// VM configs (cluster-wide).
    pub vm_configs: Vec<VmConfigSpec>,
    /// Local images (cluster-wide). OCI references (with `/` or `:`) deploy without being listed.
    pub images: Vec<ImageSpec>,
    /// Accepted bearer tokens. The first one is [`crate::orka::FakeOrka::token`].
    pub tokens: Vec<TokenSpec>,
    /// Time from scheduling to `Running` (the VM is `Pending` meanwhile).
    pub boot_delay: Duration,
    /// Length of one "minute" of the deploy `timeout` field (test scale, e.g. 100 ms).
    pub minute: Duration,
    /// Server-side deploy timeout when the request sends none (minutes).
    pub default_timeout_minutes: u64,
    /// What a deploy does when no node has room.
    pub capacity_mode: CapacityMode,
    /// Status of a deploy whose name is taken (409 in Kubernetes; unconfirmed, see
    /// docs/protocol/orka.md#status-codes).
    pub conflict_status: u16,
    /// Status of a successful deploy (200 or 201; unconfirmed, see
    /// docs/protocol/orka.md#conventions).
    pub deploy_status: u16,
    /// Whether a successful DELETE answers with a JSON `Status` instead of an empty body.
    pub delete_json_body: bool,
    /// How long a deleted VM keeps appearing in list/GET (and holding its node) (unconfirmed, see
    /// docs/protocol/orka.md#delete).
    pub delete_lag: Duration,
}

impl Default for FakeOrkaConfig {
    /// `orka-default` with two Apple-silicon nodes (`mini-1` at 127.0.0.2, `mini-2` at
    /// 127.0.0.3; 12 cores, 64 GiB, 2 VMs each), config `ci-sonoma` (3 cores), token
    /// `fake-orka-token` for every namespace, 200 ms boot, real-length minutes, capacity
    /// waits (`Pending` until room frees or the timeout), 409 on duplicate names.
    fn default() -> Self {
        Self {
            bind: IpAddr::V4(Ipv4Addr::LOCALHOST),
            namespaces: vec![NamespaceSpec {
                name: DEFAULT_NAMESPACE.to_owned(),
                nodes: vec![NodeSpec::new("mini-1", "127.0.0.2"), NodeSpec::new("mini-2", "127.0.0.3")],
            }],
            vm_configs: vec![VmConfigSpec {
                name: DEFAULT_VM_CONFIG.to_owned(),
                image: DEFAULT_IMAGE.to_owned(),
                cpu: 3,
                memory_gb: 0.0,
            }],
            images: vec![ImageSpec { name: DEFAULT_IMAGE.to_owned(), arch: "arm64".to_owned() }],
            tokens: vec![TokenSpec::new(DEFAULT_TOKEN)],
            boot_delay: Duration::from_millis(200),
            minute: Duration::from_secs(60),
            default_timeout_minutes: 10,
            capacity_mode: CapacityMode::Wait,
            conflict_status: 409,
            deploy_status: 200,
            delete_json_body: false,
            delete_lag: Duration::ZERO,
        }
    }
}

impl FakeOrkaConfig {
    /// The default cluster with `nodes` nodes in `orka-default` holding `vms_per_node`
    /// VMs each (capacity = `nodes × vms_per_node`). Node `i` (from 1) is `mini-i` at
    /// `127.0.0.(i+1)`.
    pub fn with_capacity(nodes: usize, vms_per_node: u32) -> Self {
        let mut config = Self::default();
        config.namespaces[0].nodes = (1..=nodes)
            .map(|i| {
                let mut node = NodeSpec::new(&format!("mini-{i}"), &format!("127.0.0.{}", (i % 250) + 1));
                node.max_vms = vms_per_node;
                node.cpu = node.cpu.max(3 * vms_per_node);
                node.memory_gb = node.memory_gb.max(6.0 * f64::from(vms_per_node));
                node
            })
            .collect();
        config
    }

    /// Sets the boot delay.
    pub fn boot_delay(mut self, delay: Duration) -> Self {
        self.boot_delay = delay;
        self
    }

    /// Sets the length of a deploy-timeout minute.
    pub fn minute(mut self, minute: Duration) -> Self {
        self.minute = minute;
        self
    }
}

/// A namespace and the nodes assigned to it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NamespaceSpec {
    /// `orka-…`.
    pub name: String,
    /// Nodes that run this namespace's VMs (a namespace without nodes cannot run VMs).
    pub nodes: Vec<NodeSpec>,
}

/// One Orka node.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NodeSpec {
    /// Node name.
    pub name: String,
    /// The node IP reported as the VM `ip` (use a loopback address, or a private one with
    /// client-side node-IP mapping).
    pub ip: String,
    /// Cores allocatable to VMs.
    pub cpu: u32,
    /// GiB allocatable to VMs.
    pub memory_gb: f64,
    /// Most VMs at once (2 on Apple silicon).
    pub max_vms: u32,
    /// Node tags (for `tag` / `tagRequired`).
    pub tags: Vec<String>,
    /// `arm64` or `amd64`.
    pub arch: String,
    /// Whether the node is `READY`.
    pub ready: bool,
}

impl NodeSpec {
    /// A ready arm64 node with 12 cores, 64 GiB and room for 2 VMs.
    pub fn new(name: &str, ip: &str) -> Self {
        Self {
            name: name.to_owned(),
            ip: ip.to_owned(),
            cpu: 12,
            memory_gb: 64.0,
            max_vms: 2,
            tags: Vec::new(),
            arch: "arm64".to_owned(),
            ready: true,
        }
    }
}

/// A VM config (template).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct VmConfigSpec {
    /// Config name.
    pub name: String,
    /// Image it deploys.
    pub image: String,
    /// CPU cores a VM deployed from this config holds.
    pub cpu: u32,
    /// GiB (0 = automatic: 2 GiB per core).
    pub memory_gb: f64,
}

/// A local image.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ImageSpec {
    /// Image name.
    pub name: String,
    /// `arm64` or `amd64` (the API's `type`).
    pub arch: String,
}

/// An accepted token.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TokenSpec {
    /// The bearer value.
    pub value: String,
    /// Lifetime from server start (or from being added); `None` = never expires.
    pub expires_after_ms: Option<u64>,
    /// Namespaces it may use; `None` = all.
    pub namespaces: Option<Vec<String>>,
}

impl TokenSpec {
    /// A token for every namespace that never expires.
    pub fn new(value: &str) -> Self {
        Self { value: value.to_owned(), expires_after_ms: None, namespaces: None }
    }
}

/// What a deploy does when no node has room for the VM.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum CapacityMode {
    /// Kubernetes-like: the VM stays `Pending` until room frees up (then boots) or the
    /// deploy timeout passes (then the POST fails and the `Pending` VM stays behind).
    Wait,
    /// Fail fast with "Not enough CPU available" and this status; no VM is created.
    Reject {
        /// 500, 400 or 409 (unconfirmed, see docs/protocol/orka.md#capacity).
        status: u16,
    },
}
