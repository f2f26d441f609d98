//! The reconciler's error type.

use runner_core::VmBackendError;

/// What can stop a reconcile pass. Per-VM failures never do: they become evidence
/// ("lookup error", "unreachable") and the decision table handles them.
#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    /// Listing the VMs failed, so nothing can be decided this pass.
    #[error("listing VMs failed")]
    ListVms(#[source] VmBackendError),
    /// Listing the VMs did not answer in time.
    #[error("listing VMs timed out")]
    ListTimedOut,
}
