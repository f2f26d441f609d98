//! Orka 3 REST client.
//!
//! This crate owns everything that knows Orka's wire format: the [`VmBackend`] seam the
//! controller deploys, lists and deletes VMs through, the [`Vm`] vocabulary, the VM naming
//! contract ([`naming`]) and the hyper-based implementation of the backend ([`OrkaClient`]).
//!
//! What it does not know: GitHub, SSH, or why a VM exists. Callers own retries across
//! attempts; this crate owns the cleanup of a single failed deploy (a failed deploy never
//! leaves a VM behind).
//!
//! ```no_run
//! use std::time::Duration;
//! use orka_client::{DeployRequest, OrkaClient, OrkaConfig, OrkaError, VmBackend, VmName};
//!
//! # async fn example() -> Result<(), OrkaError> {
//! let mut config = OrkaConfig::new("http://10.221.188.20", "service-account-token".into());
//! config.metadata = orka_client::parse_vm_metadata("team=ios")?;
//! let client = OrkaClient::new(config)?;
//! client.ping().await?; // reachable? (no token, 1 s)
//! client.check_token().await?; // token valid for the namespace?
//! let request = DeployRequest {
//!     name: VmName::generate("mac")?,
//!     vm_config: "ci-sonoma".into(),
//!     metadata: Default::default(),
//!     timeout: Duration::from_secs(15 * 60),
//! };
//! match client.deploy_vm(&request).await {
//!     Ok(vm) => println!("{} at {:?}", vm.name, vm.ssh_endpoint()),
//!     Err(e) if e.is_retryable() => { /* back off and try again; no VM was left */ }
//!     Err(e) => return Err(e),
//! }
//! # Ok(())
//! # }
//! ```

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
pub use wire::{ClusterInfo, Image, Node, VmConfig, parse_vm_list};
