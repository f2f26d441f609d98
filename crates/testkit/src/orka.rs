//! Fake Orka: the Orka 3 gateway REST API with a stateful cluster (spec: orka-api.md §11).

use async_trait::async_trait;

/// Supplies the SSH side of fake VMs, so the `ip`/`ssh` the fake Orka reports are really
/// connectable (an in-process SSH server from [`crate::vm`], a real sshd, or nothing).
///
/// The fake Orka calls [`VmProvider::boot`] when a VM finishes booting (before it reports
/// the VM `Running`) and [`VmProvider::destroy`] when the VM is deleted, vanishes or fails.
#[async_trait]
pub trait VmProvider: Send + Sync + 'static {
    /// Starts the VM's SSH endpoint and returns the `(ip, ssh_port)` to report.
    async fn boot(&self, vm_name: &str) -> anyhow::Result<(String, u16)>;
    /// Stops the VM's SSH endpoint and kills everything running "inside" the VM.
    async fn destroy(&self, vm_name: &str);
}
