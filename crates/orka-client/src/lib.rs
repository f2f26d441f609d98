//! Orka 3 REST client.
//!
//! This crate owns everything that knows Orka's wire format: the [`VmBackend`] seam the
//! controller deploys, lists and deletes VMs through, the [`Vm`] vocabulary, the VM naming
//! contract ([`naming`]) and the hyper-based implementation of the backend ([`OrkaClient`]).
//!
//! What it does not know: GitHub, SSH, or why a VM exists. Callers own retries across
//! attempts; this crate owns the cleanup of a single failed deploy (a failed deploy never
//! leaves a VM behind).

mod backend;
mod client;
mod config;
mod deploy;
mod error;
pub mod naming;
mod transport;
mod vm;
mod wire;

#[cfg(any(test, feature = "mocks"))]
pub use backend::MockVmBackend;
pub use backend::VmBackend;
pub use client::OrkaClient;
pub use config::{
    DEFAULT_NAMESPACE, NodeIpMap, OrkaConfig, RetryPolicy, normalize_base_url, parse_vm_metadata,
    validate_namespace,
};
pub use error::OrkaError;
pub use naming::VmName;
pub use vm::{DeployRequest, Vm, VmStatus};
pub use wire::{ClusterInfo, Image, Node, VmConfig};
