//! The VM backend seam: how the rest of the controller talks to the VM provider (Orka).

use async_trait::async_trait;

use crate::{DeployRequest, Vm, VmBackendError};

/// List, inspect, deploy and delete VMs in one Orka namespace.
///
/// Implementations: the hyper-based Orka client (`orka-client`); mocks behind the `mocks`
/// feature; anything else a user wants to run runners on.
#[cfg_attr(any(test, feature = "mocks"), mockall::automock)]
#[async_trait]
pub trait VmBackend: Send + Sync {
    /// All VMs in the namespace (ours and foreign ones; callers filter by name).
    async fn list_vms(&self) -> Result<Vec<Vm>, VmBackendError>;

    /// One VM by name; `Ok(None)` when it does not exist.
    async fn get_vm(&self, name: &str) -> Result<Option<Vm>, VmBackendError>;

    /// Deploys a VM and waits until it is `Running`.
    ///
    /// On any failure or timeout the implementation deletes the VM by name before
    /// returning the error, so a failed deploy never leaves a VM. The returned VM's name
    /// is authoritative (it differs from the request when a name conflict forced a new
    /// suffix).
    async fn deploy_vm(&self, request: &DeployRequest) -> Result<Vm, VmBackendError>;

    /// Deletes a VM by name. Idempotent: a VM that does not exist is a success.
    async fn delete_vm(&self, name: &str) -> Result<(), VmBackendError>;
}
