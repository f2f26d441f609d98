//! The VM vocabulary shared by the backend seam and its callers.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use crate::naming::VmName;

/// Phase of an Orka VM as reported by the API (`status`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum VmStatus {
    /// Created but not yet running: scheduling, image pull or boot.
    Pending,
    /// Running, with an IP and forwarded ports.
    Running,
    /// The VM failed and will not heal; it must be deleted.
    Failed,
    /// A status string this client does not know, kept verbatim.
    Other(String),
}

impl VmStatus {
    /// Parses Orka's status string; comparison is case-insensitive.
    pub fn parse(raw: &str) -> Self {
        match raw.to_ascii_lowercase().as_str() {
            "pending" => VmStatus::Pending,
            "running" => VmStatus::Running,
            "failed" => VmStatus::Failed,
            _ => VmStatus::Other(raw.to_owned()),
        }
    }
}

impl fmt::Display for VmStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            VmStatus::Pending => f.write_str("Pending"),
            VmStatus::Running => f.write_str("Running"),
            VmStatus::Failed => f.write_str("Failed"),
            VmStatus::Other(s) => f.write_str(s),
        }
    }
}

/// An Orka VM as the controller sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Vm {
    /// The VM name (for our VMs, also the GitHub runner name).
    pub name: String,
    /// Address to SSH to, after node-IP mapping; `None` while pending.
    pub ip: Option<String>,
    /// Node port forwarded to the VM's port 22; `None` while pending.
    pub ssh_port: Option<u16>,
    /// Current phase.
    pub status: VmStatus,
    /// The node the VM runs on, when known.
    pub node: Option<String>,
}

impl Vm {
    /// The `host:port` SSH endpoint, if the VM has both an address and an SSH port.
    pub fn ssh_endpoint(&self) -> Option<(String, u16)> {
        Some((self.ip.clone()?, self.ssh_port?))
    }
}

/// What to deploy. The name is chosen by the controller so that a failed deploy can
/// always be deleted by name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeployRequest {
    /// The VM name to ask for; on a name conflict the backend may regenerate the suffix once.
    pub name: VmName,
    /// The VM config (template) to deploy from (`ORKA_VM_CONFIG`).
    pub vm_config: String,
    /// Custom metadata passed to the VM (`ORKA_VM_METADATA`).
    pub metadata: BTreeMap<String, String>,
    /// How long the deploy may take before it is abandoned (and the VM deleted).
    pub timeout: Duration,
}
