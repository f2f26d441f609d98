//! Orka 3 REST client.
//!
//! This crate owns everything that knows Orka's wire format: the hyper-based
//! implementation ([`OrkaClient`]) of the [`VmBackend`] seam the controller deploys, lists
//! and deletes VMs through. The seam, the [`Vm`] vocabulary, the VM naming contract
//! ([`naming`]) and the error ([`OrkaError`], an alias of `runner_core::VmBackendError`)
//! live in `runner-core` and are re-exported here.
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

mod client;
mod config;
mod deploy;
mod transport;
mod wire;

pub use client::OrkaClient;
pub use config::{
    DEFAULT_NAMESPACE, NodeIpMap, OrkaConfig, RetryPolicy, normalize_base_url, parse_vm_metadata,
    validate_namespace,
};
/// The VM backend error under the name this crate has always used for it.
pub type OrkaError = runner_core::VmBackendError;
#[cfg(any(test, feature = "mocks"))]
pub use runner_core::MockVmBackend;
/// VM naming and ownership (defined with the seam in `runner-core`).
pub use runner_core::naming;
pub use runner_core::{DeployRequest, Vm, VmBackend, VmName, VmStatus};
pub use wire::{ClusterInfo, Image, Node, VmConfig, parse_vm_list};
