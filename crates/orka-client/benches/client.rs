//! Throughput of the Orka client against the fake Orka over loopback (no boot delay, so
//! the numbers are the client + HTTP + fake overhead a burst adds on top of Orka itself).
//!
//! Run: `cargo bench -p orka-client --bench client`. Prints one line per measurement.

use std::collections::BTreeMap;
use std::time::Duration;

use orka_client::{DeployRequest, OrkaClient, OrkaConfig, VmBackend, VmName};
use secrecy::SecretString;
use testkit::orka::{DEFAULT_VM_CONFIG, FakeOrka, FakeOrkaConfig, SeedVm};
use tokio::time::Instant;

const BURST: usize = 200;
const LISTED: usize = 1000;

fn client(fake: &FakeOrka) -> OrkaClient {
    let mut config = OrkaConfig::new(fake.url(), SecretString::from(fake.token()));
    config.poll_interval = Duration::from_millis(20);
    OrkaClient::new(config).expect("valid config")
}

fn request() -> DeployRequest {
    DeployRequest {
        name: VmName::generate("bench").expect("valid scale set"),
        vm_config: DEFAULT_VM_CONFIG.to_owned(),
        metadata: BTreeMap::new(),
        timeout: Duration::from_secs(600),
    }
}

async fn burst() {
    let fake = FakeOrka::start(FakeOrkaConfig::with_capacity(BURST / 2, 2).boot_delay(Duration::ZERO))
        .await
        .expect("fake starts");
    let client = client(&fake);
    let started = Instant::now();
    let deploys: Vec<_> = (0..BURST)
        .map(|_| {
            let client = client.clone();
            tokio::spawn(async move { client.deploy_vm(&request()).await })
        })
        .collect();
    let mut names = Vec::with_capacity(BURST);
    for deploy in deploys {
        names.push(deploy.await.expect("task").expect("deploy").name);
    }
    let deployed = started.elapsed();
    let started = Instant::now();
    let deletes: Vec<_> = names
        .into_iter()
        .map(|name| {
            let client = client.clone();
            tokio::spawn(async move { client.delete_vm(&name).await })
        })
        .collect();
    for delete in deletes {
        delete.await.expect("task").expect("delete");
    }
    let deleted = started.elapsed();
    println!(
        "burst: {BURST} concurrent deploys in {deployed:?} ({:?}/VM), {BURST} deletes in {deleted:?}",
        deployed / BURST as u32
    );
}

async fn list() {
    let fake = FakeOrka::start(FakeOrkaConfig::with_capacity(LISTED / 10, 10)).await.expect("fake starts");
    for i in 0..LISTED {
        fake.seed_vm(SeedVm::running(&format!("vm-{i:05}"))).await.expect("seed");
    }
    let client = client(&fake);
    let rounds = 50;
    let started = Instant::now();
    for _ in 0..rounds {
        assert_eq!(client.list_vms().await.expect("list").len(), LISTED);
    }
    println!("list: {LISTED} VMs per call, {:?}/call over {rounds} calls", started.elapsed() / rounds);
}

fn main() {
    // A test runner probing for test cases (`--list`) gets none: this is not a test.
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("runtime");
    runtime.block_on(async {
        burst().await;
        list().await;
    });
}
