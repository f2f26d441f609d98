//! Fake Orka: the Orka 3 gateway REST API with a stateful cluster (docs/protocol/orka.md#fake).
//!
//! [`FakeOrka::start`] serves the API on a loopback port: namespaces, nodes with CPU /
//! memory / VM-count capacity and per-node SSH ports from 8822, VM configs, images and
//! tokens with expiry and namespace access. Deploys block until the VM boots (visible as
//! `Pending` meanwhile) or the server-side timeout passes; every fault of
//! docs/protocol/orka.md#fault-cases can be
//! armed ([`Fault`]); every call is journaled ([`JournalEntry`]); the peak number of
//! VMs is recorded. The same control operations are served over HTTP under `/__fake/`.
//!
//! With a [`VmProvider`] attached, a VM's reported `ip`/`ssh` come from
//! [`VmProvider::boot`], so they are really connectable.
//!
//! It does not depend on the Orka client: the client's contract tests check two
//! independent readings of docs/protocol/orka.md against each other.
//!
//! ```no_run
//! use std::time::Duration;
//! use testkit::orka::{ErrorBody, FakeOrka, FakeOrkaConfig, Fault, Route, SeedVm};
//!
//! # async fn example() -> anyhow::Result<()> {
//! // Two nodes × 2 VMs, 50 ms boots.
//! let fake = FakeOrka::start(FakeOrkaConfig::with_capacity(2, 2).boot_delay(Duration::from_millis(50))).await?;
//! let (url, token) = (fake.url(), fake.token()); // ORKA_URL / ORKA_TOKEN for the code under test
//! fake.seed_vm(SeedVm::running("someone-elses-vm")).await?;
//! fake.inject_times(Fault::HttpError { route: Route::ListVms, status: 502, body: ErrorBody::Html }, 3);
//! // … run the code under test …
//! assert!(fake.peak_vms() <= 4);
//! assert!(!fake.journal().iter().any(|call| call.is("DELETE", "/vms/someone-elses-vm")));
//! # let _ = (url, token);
//! # Ok(())
//! # }
//! ```

mod api;
mod config;
mod control;
mod fault;
mod lifecycle;
mod state;
#[cfg(test)]
mod tests;

use std::net::SocketAddr;
use std::sync::Arc;

use async_trait::async_trait;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub use config::{
    CapacityMode, DEFAULT_IMAGE, DEFAULT_NAMESPACE, DEFAULT_TOKEN, DEFAULT_VM_CONFIG, FakeOrkaConfig,
    ImageSpec, NamespaceSpec, NodeSpec, TokenSpec, VmConfigSpec,
};
pub use control::{FailRequest, FakeState, FaultRequest};
pub use fault::{ArmedFault, ErrorBody, Fault, Malformed, Route};
pub use state::{FakeVm, FakeVmStatus, JournalEntry, SSH_PORT_BASE, SeedVm};

use lifecycle::Shared;
use state::State;

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

/// A running fake Orka. Dropping it stops the server and every VM lifecycle task.
pub struct FakeOrka {
    shared: Arc<Shared>,
    addr: SocketAddr,
    token: String,
    shutdown: CancellationToken,
    server: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for FakeOrka {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FakeOrka").field("addr", &self.addr).finish_non_exhaustive()
    }
}

impl FakeOrka {
    /// Binds `config.bind:0` and serves the Orka API plus `/__fake/`.
    pub async fn start(config: FakeOrkaConfig) -> anyhow::Result<Self> {
        let token = config.tokens.first().map(|t| t.value.clone()).unwrap_or_default();
        let listener = tokio::net::TcpListener::bind((config.bind, 0)).await?;
        let addr = listener.local_addr()?;
        let shared = Shared::new(State::new(config));
        let app = api::router(Arc::clone(&shared)).merge(control::router(Arc::clone(&shared)));
        let shutdown = CancellationToken::new();
        let signal = shutdown.clone();
        let server = tokio::spawn(async move {
            let serve = axum::serve(listener, app).with_graceful_shutdown(signal.cancelled_owned());
            if let Err(e) = serve.await {
                tracing::warn!(error = &e as &dyn std::error::Error, "fake Orka server stopped");
            }
        });
        Ok(Self { shared, addr, token, shutdown, server: Some(server) })
    }

    /// Base URL, e.g. `http://127.0.0.1:41234` (no trailing slash).
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The listening address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The first configured token (default [`DEFAULT_TOKEN`]).
    pub fn token(&self) -> String {
        self.token.clone()
    }

    /// Creates a VM directly, e.g. a foreign VM or one left by an earlier controller. It
    /// holds node capacity; a `Running` seed gets its endpoint from the provider when one
    /// is attached (unless `ip` is given).
    pub async fn seed_vm(&self, seed: SeedVm) -> anyhow::Result<FakeVm> {
        control::seed(&self.shared, seed).await
    }

    /// Every VM, all namespaces.
    pub fn vms(&self) -> Vec<FakeVm> {
        self.state().vms
    }

    /// The VM called `name` (any namespace).
    pub fn vm(&self, name: &str) -> Option<FakeVm> {
        self.vms().into_iter().find(|vm| vm.name == name)
    }

    /// A snapshot: VMs, peak VM count, armed faults.
    pub fn state(&self) -> FakeState {
        control::snapshot(&self.shared)
    }

    /// The most VMs that ever existed at once.
    pub fn peak_vms(&self) -> usize {
        self.shared.lock().peak_vms
    }

    /// Restarts peak tracking from the current number of VMs.
    pub fn reset_peak(&self) {
        let mut state = self.shared.lock();
        state.peak_vms = state.vms.len();
    }

    /// Every API call so far, in arrival order.
    pub fn journal(&self) -> Vec<JournalEntry> {
        self.shared.lock().journal.clone()
    }

    /// Forgets the journal.
    pub fn clear_journal(&self) {
        self.shared.lock().journal.clear();
    }

    /// Arms `fault` for the next matching request.
    pub fn inject(&self, fault: Fault) {
        control::arm(&self.shared, fault, 1);
    }

    /// Arms `fault` for the next `times` matching requests.
    pub fn inject_times(&self, fault: Fault, times: usize) {
        control::arm(&self.shared, fault, times);
    }

    /// Disarms every fault.
    pub fn clear_faults(&self) {
        self.shared.lock().faults.clear();
    }

    /// Attaches the SSH side of VMs booted from now on.
    pub fn set_provider(&self, provider: Arc<dyn VmProvider>) {
        self.shared.set_provider(Some(provider));
    }

    /// The VM disappears out of band (GET 404, list omits it, endpoint destroyed, node
    /// capacity freed). `false` if there is no such VM.
    pub fn vanish(&self, name: &str) -> bool {
        control::vanish(&self.shared, name)
    }

    /// The VM turns `Failed` with `errorMessage` = `message` (endpoint destroyed).
    pub fn fail(&self, name: &str, message: &str) -> bool {
        control::fail(&self.shared, name, Some(message.to_owned()))
    }

    /// Adds (or replaces) a token; its expiry counts from now.
    pub fn add_token(&self, spec: TokenSpec) {
        self.shared.lock().add_token(spec);
    }

    /// The token expires now: every later call with it gets 401.
    pub fn expire_token(&self, token: &str) {
        control::expire_token(&self.shared, token);
    }

    /// Changes the boot delay of VMs scheduled from now on.
    pub fn set_boot_delay(&self, delay: std::time::Duration) {
        self.shared.lock().config.boot_delay = delay;
    }

    /// Stops listening (the API becomes unreachable); state stays readable.
    pub async fn stop(&mut self) {
        self.shutdown.cancel();
        if let Some(server) = self.server.take() {
            // In-flight blocking deploys would hold graceful shutdown; bound the wait.
            let abort = server.abort_handle();
            if tokio::time::timeout(std::time::Duration::from_secs(2), server).await.is_err() {
                abort.abort();
            }
        }
    }
}

impl Drop for FakeOrka {
    /// Stops the server and every lifecycle task, and (best effort, when a runtime is
    /// still running) asks the provider to destroy the endpoints of the remaining VMs.
    fn drop(&mut self) {
        self.shutdown.cancel();
        if let Some(server) = self.server.take() {
            server.abort();
        }
        let names: Vec<String> = {
            let mut state = self.shared.lock();
            for record in state.vms.values_mut() {
                if let Some(task) = record.task.take() {
                    task.abort();
                }
            }
            state.vms.keys().map(|(_, name)| name.clone()).collect()
        };
        if tokio::runtime::Handle::try_current().is_ok() {
            for name in names {
                self.shared.destroy_endpoint(&name);
            }
        }
    }
}
