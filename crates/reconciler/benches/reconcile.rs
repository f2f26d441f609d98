//! Reconcile pass cost vs number of VMs, against in-memory fakes (the controller's own
//! CPU; the wall time of dead VMs is bounded by the probe timeout and shown by the
//! paused-clock test instead).
#![allow(missing_docs)]

use std::sync::Arc;
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use provisioner::fakes::{FakeGitHub, FakeOrka, FakeShell, running_vm};
use provisioner::{Fleet, FleetConfig, FleetDeps, RunnerInstallConfig};
use reconciler::{Mode, Reconciler, ReconcilerConfig, ReconcilerDeps};

fn bench(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let mut group = c.benchmark_group("reconcile_dry_run");
    for n in [50usize, 200, 1000] {
        let orka = Arc::new(FakeOrka::new());
        let github = Arc::new(FakeGitHub::new());
        let shell = Arc::new(FakeShell::new());
        for i in 0..n {
            let name = format!("mac-{i:05}");
            orka.insert(running_vm(&name));
            // A mix: running (adopt), finished (clean up), unregistered (delete), foreign.
            match i % 4 {
                0 => {
                    github.register(&name, 7, true);
                    shell.set_running(&name);
                }
                1 => {
                    github.register(&name, 7, false);
                    shell.finish_run(&name);
                }
                2 => {}
                _ => orka.insert(running_vm(&format!("mac-large-{i:05}"))),
            }
        }
        let fleet = Arc::new(Fleet::new(
            FleetDeps { vms: orka.clone(), github: github.clone(), shell: shell.clone() },
            FleetConfig::new(
                7,
                "mac",
                "sonoma",
                RunnerInstallConfig { version: "1".into(), download_url_template: "x".into() },
            ),
        ));
        let reconciler = Reconciler::new(
            ReconcilerDeps { vms: orka, github, shell },
            fleet,
            ReconcilerConfig::new(7, "mac"),
        );
        group.bench_with_input(BenchmarkId::from_parameter(n), &n, |b, _| {
            b.iter(|| {
                let report = runtime.block_on(reconciler.reconcile_once(Mode::DryRun)).unwrap();
                assert_eq!(report.rows.len(), n);
            })
        });
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(20).measurement_time(Duration::from_secs(3)).warm_up_time(Duration::from_secs(1));
    targets = bench
}
criterion_main!(benches);
