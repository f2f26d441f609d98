//! The three seams bundled: what the fleet and the reconciler of one scale set do their
//! I/O through.

use std::sync::Arc;

use crate::{ScaleSetApi, VmBackend, VmShell};

/// The I/O seams of one scale set's fleet and reconciler (they share one value).
#[derive(Clone)]
pub struct Seams {
    /// The VM backend (Orka): list, deploy and delete VMs.
    pub vms: Arc<dyn VmBackend>,
    /// GitHub's scale-set API (admin token): JIT configs and runner registrations.
    pub github: Arc<dyn ScaleSetApi>,
    /// Commands inside VMs (SSH).
    pub shell: Arc<dyn VmShell>,
}
