//! The VM backend seam ([`VmBackend`]), the VMs it deals in and its error.

mod backend;
mod error;
mod types;

#[cfg(any(test, feature = "mocks"))]
pub use backend::MockVmBackend;
pub use backend::VmBackend;
pub use error::VmBackendError;
pub use types::{DeployRequest, Vm, VmStatus};
