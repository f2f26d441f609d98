//! VM lifecycle of the fake Orka: the shared server state, and one background task per
//! VM that waits for a node with room, boots for the configured delay, asks the
//! [`VmProvider`] for a real SSH endpoint and marks the VM `Running` (or `Failed`).
//!
//! The task runs independently of the deploy request, like the real cluster: a client
//! that gives up does not stop the VM from booting. Deleting the VM aborts the task.
//! HTTP lives in `api` / `control`.

use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::time::Duration;

use tokio::sync::Notify;

use super::VmProvider;
use super::state::{FakeVmStatus, State, VmRecord};

/// State shared by the HTTP handlers, the lifecycle tasks and the [`super::FakeOrka`] handle.
pub(crate) struct Shared {
    state: Mutex<State>,
    /// Woken whenever node capacity is freed.
    pub capacity: Notify,
    provider: RwLock<Option<Arc<dyn VmProvider>>>,
}

/// How a VM's boot deviates from the normal path (from deploy faults).
#[derive(Debug, Clone, Default)]
pub(crate) struct BootPlan {
    pub extra_delay: Duration,
    pub fail_with: Option<String>,
}

impl Shared {
    pub fn new(state: State) -> Arc<Self> {
        Arc::new(Self { state: Mutex::new(state), capacity: Notify::new(), provider: RwLock::new(None) })
    }

    /// The state lock. Never held across an `.await`.
    pub fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub fn provider(&self) -> Option<Arc<dyn VmProvider>> {
        self.provider.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    pub fn set_provider(&self, provider: Option<Arc<dyn VmProvider>>) {
        *self.provider.write().unwrap_or_else(|p| p.into_inner()) = provider;
    }

    /// Removes a VM now: frees its node, wakes waiting deploys, tears down its endpoint.
    pub fn remove_now(self: &Arc<Self>, key: &(String, String)) -> Option<VmRecord> {
        let removed = self.lock().remove_vm(key);
        if removed.is_some() {
            self.capacity.notify_waiters();
            self.destroy_endpoint(&key.1);
        }
        removed
    }

    /// Asks the provider (if any) to stop the VM's SSH endpoint, in the background.
    pub fn destroy_endpoint(&self, name: &str) {
        if let Some(provider) = self.provider() {
            let name = name.to_owned();
            tokio::spawn(async move { provider.destroy(&name).await });
        }
    }

    /// Starts the lifecycle task of the `Pending` VM `key` (incarnation `uid`).
    pub fn spawn_lifecycle(self: &Arc<Self>, key: (String, String), uid: u64, plan: BootPlan) {
        let shared = Arc::clone(self);
        let task_key = key.clone();
        let handle = tokio::spawn(async move { run(shared, task_key, uid, plan).await }).abort_handle();
        let mut state = self.lock();
        match state.vm_mut(&key, uid) {
            Some(record) => record.task = Some(handle),
            None => handle.abort(),
        }
    }
}

async fn run(shared: Arc<Shared>, key: (String, String), uid: u64, plan: BootPlan) {
    // 1. Wait for a node with room (registered before checking: no lost wake-ups).
    loop {
        let notified = shared.capacity.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        {
            let mut state = shared.lock();
            if state.vm_mut(&key, uid).is_none() {
                return;
            }
            if state.try_schedule(&key) {
                break;
            }
        }
        notified.await;
    }

    // 2. Boot.
    let boot_delay = shared.lock().config.boot_delay;
    tokio::time::sleep(boot_delay + plan.extra_delay).await;
    if let Some(message) = plan.fail_with {
        let mut state = shared.lock();
        if let Some(record) = state.vm_mut(&key, uid) {
            record.vm.error_message = Some(message);
            State::set_phase(record, FakeVmStatus::Failed);
        }
        return;
    }

    // 3. The endpoint: from the provider, or the node's IP and allocated port.
    let endpoint = match shared.provider() {
        Some(provider) => provider.boot(&key.1).await.map_err(|e| format!("VM failed to boot: {e:#}")),
        None => {
            let state = shared.lock();
            let vm = state.vms.get(&key).map(|r| r.vm.clone());
            match vm {
                Some(vm) => {
                    let ip = vm.node.as_deref().and_then(|n| state.node_ip(n)).unwrap_or_default();
                    Ok((ip, vm.ssh.unwrap_or_default()))
                }
                None => return,
            }
        }
    };
    let mut state = shared.lock();
    let Some(record) = state.vm_mut(&key, uid) else {
        drop(state);
        // Deleted while the provider was booting it.
        shared.destroy_endpoint(&key.1);
        return;
    };
    match endpoint {
        Ok((ip, ssh)) => {
            record.vm.ip = Some(ip);
            record.vm.ssh = Some(ssh);
            State::set_phase(record, FakeVmStatus::Running);
        }
        Err(message) => {
            record.vm.error_message = Some(message);
            State::set_phase(record, FakeVmStatus::Failed);
        }
    }
}
