//! Benchmark (not a test): probing N dead VMs concurrently costs about one timeout, not N.
//!
//! 100 black-hole endpoints (TCP accepted by the kernel's backlog, no SSH banner ever) are
//! probed at once with a step timeout T = 2 s, three rounds; then a mixed fleet of 50 black
//! holes and 50 healthy fake VMs (testkit's russh servers). Prints wall time per round.
//! Run: `cargo bench -p vm-probe --bench black_hole_probes`.

use std::time::Duration;

use tokio::task::JoinSet;
use tokio::time::Instant;
use vm_probe::{ShellError, Ssh2Shell, SshConfig, SshStep, SshTarget, VmShell};

const ENDPOINTS: usize = 100;
const STEP_TIMEOUT: Duration = Duration::from_secs(2);

fn black_holes(n: usize) -> (Vec<std::net::TcpListener>, Vec<SshTarget>) {
    let listeners: Vec<_> = (0..n).map(|_| std::net::TcpListener::bind("127.0.0.1:0").unwrap()).collect();
    let targets = listeners
        .iter()
        .map(|l| SshTarget { host: "127.0.0.1".into(), port: l.local_addr().unwrap().port() })
        .collect();
    (listeners, targets)
}

async fn probe_all(shell: &std::sync::Arc<Ssh2Shell>, targets: &[SshTarget]) -> (Duration, usize, usize) {
    let started = Instant::now();
    let mut set = JoinSet::new();
    for target in targets {
        let target = target.clone();
        let shell = std::sync::Arc::clone(shell);
        set.spawn(async move { shell.probe(&target).await });
    }
    let (mut ok, mut timed_out) = (0, 0);
    while let Some(result) = set.join_next().await {
        match result.expect("probe task") {
            Ok(_) => ok += 1,
            Err(ShellError::Timeout { step: SshStep::Handshake, .. }) => timed_out += 1,
            Err(e) => panic!("unexpected probe error: {e}"),
        }
    }
    (started.elapsed(), ok, timed_out)
}

fn main() {
    // `cargo test --benches` runs bench binaries with no `--bench` flag: stay quick then.
    if !std::env::args().any(|a| a == "--bench") {
        println!("black_hole_probes: run with `cargo bench` to measure");
        return;
    }
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    runtime.block_on(async {
        let mut config = SshConfig::admin_default().with_step_timeout(STEP_TIMEOUT);
        config.max_concurrent = 128;
        let shell = std::sync::Arc::new(Ssh2Shell::new(config).unwrap());

        println!("probing {ENDPOINTS} black-hole endpoints concurrently, step timeout T = {STEP_TIMEOUT:?}");
        for round in 1..=3 {
            let (_holes, targets) = black_holes(ENDPOINTS);
            let (elapsed, ok, timed_out) = probe_all(&shell, &targets).await;
            assert_eq!((ok, timed_out), (0, ENDPOINTS));
            println!(
                "  round {round}: {elapsed:.2?} wall = {:.2} T ({timed_out} handshake timeouts)",
                elapsed.as_secs_f64() / STEP_TIMEOUT.as_secs_f64()
            );
        }

        let host = testkit::vm::FakeVmHost::new().unwrap();
        let (_holes, mut targets) = black_holes(ENDPOINTS / 2);
        for i in 0..ENDPOINTS / 2 {
            let (h, port) = host.boot_vm(&format!("mac-b{i:04}")).await.unwrap();
            targets.push(SshTarget { host: h, port });
        }
        let (elapsed, ok, timed_out) = probe_all(&shell, &targets).await;
        assert_eq!((ok, timed_out), (ENDPOINTS / 2, ENDPOINTS / 2));
        println!(
            "mixed fleet: {} black holes + {} healthy fake VMs probed in {elapsed:.2?} = {:.2} T",
            ENDPOINTS / 2,
            ENDPOINTS / 2,
            elapsed.as_secs_f64() / STEP_TIMEOUT.as_secs_f64()
        );
    });
}
