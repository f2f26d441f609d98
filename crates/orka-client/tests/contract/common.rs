//! Shared helpers: a fake + client pair with test-scale timings, deploy requests, a
//! loopback TCP `VmProvider`, and bounded waits.

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use orka_client::{DeployRequest, OrkaClient, OrkaConfig, RetryPolicy, VmName};
use secrecy::SecretString;
use testkit::orka::{FakeOrka, FakeOrkaConfig, FakeVm, JournalEntry, VmProvider};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// Scale set used for our VM names.
pub const SCALE_SET: &str = "mac";

/// Fake with a 50 ms boot.
pub fn fake_config() -> FakeOrkaConfig {
    FakeOrkaConfig::default().boot_delay(Duration::from_millis(50))
}

/// Client configuration with test-scale timings for `fake`.
pub fn client_config(fake: &FakeOrka) -> OrkaConfig {
    let mut config = OrkaConfig::new(fake.url(), SecretString::from(fake.token()));
    config.deploy_margin = Duration::from_millis(500);
    config.poll_interval = Duration::from_millis(20);
    config.request_timeout = Duration::from_secs(10);
    config.ping_timeout = Duration::from_secs(2);
    config.cleanup_recheck = Duration::from_millis(300);
    // Throttling answers asking for longer than this reach the caller.
    config.max_retry_after = Duration::from_secs(2);
    config.delete_retry = RetryPolicy {
        min_delay: Duration::from_millis(10),
        max_delay: Duration::from_millis(50),
        max_retries: 5,
    };
    config
}

/// A started fake and a client for it.
pub async fn start(config: FakeOrkaConfig) -> (FakeOrka, OrkaClient) {
    let fake = FakeOrka::start(config).await.expect("fake Orka starts");
    let client = OrkaClient::new(client_config(&fake)).expect("client config is valid");
    (fake, client)
}

/// A deploy request for a fresh `mac-xxxxx` name from the default config, 60 s budget.
pub fn request() -> DeployRequest {
    DeployRequest {
        name: VmName::generate(SCALE_SET).unwrap(),
        vm_config: testkit::orka::DEFAULT_VM_CONFIG.to_owned(),
        metadata: BTreeMap::new(),
        timeout: Duration::from_secs(60),
    }
}

/// Journal entries of `method` on paths ending with `suffix`.
pub fn calls(fake: &FakeOrka, method: &str, suffix: &str) -> Vec<JournalEntry> {
    fake.journal().into_iter().filter(|e| e.is(method, suffix)).collect()
}

/// Deploy POSTs in the journal.
pub fn deploys(fake: &FakeOrka) -> Vec<JournalEntry> {
    calls(fake, "POST", "/vms")
}

/// Asserts the fake holds no VM at all.
pub fn assert_no_vms(fake: &FakeOrka) {
    let vms = fake.vms();
    assert!(vms.is_empty(), "a failed deploy must leave no VM, found {vms:#?}");
}

/// Polls `check` every 10 ms until it holds; panics after 10 s.
pub async fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    for _ in 0..1000 {
        if check() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("timed out waiting for: {what}");
}

/// Runs `fut` with a generous bound so a regression fails instead of hanging.
pub async fn bounded<T>(fut: impl Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(30), fut).await.expect("operation did not finish within 30 s")
}

/// Waits until the fake shows `name` in status Pending.
pub async fn wait_pending(fake: &FakeOrka, name: &str) -> FakeVm {
    let mut found = None;
    eventually("VM visible as Pending", || {
        found = fake.vm(name).filter(|vm| vm.status == testkit::orka::FakeVmStatus::Pending);
        found.is_some()
    })
    .await;
    found.unwrap()
}

/// A `VmProvider` whose VMs are real TCP listeners on 127.0.0.1 (accepting and closing).
#[derive(Default)]
pub struct TcpProvider {
    endpoints: Mutex<BTreeMap<String, JoinHandle<()>>>,
    pub destroyed: Mutex<BTreeSet<String>>,
}

#[async_trait::async_trait]
impl VmProvider for TcpProvider {
    async fn boot(&self, vm_name: &str) -> anyhow::Result<(String, u16)> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let port = listener.local_addr()?.port();
        let task = tokio::spawn(async move {
            while let Ok((socket, _)) = listener.accept().await {
                drop(socket);
            }
        });
        self.endpoints.lock().unwrap().insert(vm_name.to_owned(), task);
        Ok(("127.0.0.1".to_owned(), port))
    }

    async fn destroy(&self, vm_name: &str) {
        if let Some(task) = self.endpoints.lock().unwrap().remove(vm_name) {
            task.abort();
        }
        self.destroyed.lock().unwrap().insert(vm_name.to_owned());
    }
}

impl TcpProvider {
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    pub fn live(&self) -> usize {
        self.endpoints.lock().unwrap().len()
    }
}
