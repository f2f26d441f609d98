//! Controller cost at hundreds of runners: the planner, one message, one tick (VM listing
//! plus a probe of every online runner), all against in-memory fakes so only the
//! controller's own CPU is measured.
#![allow(missing_docs)]

use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use provisioner::fakes::{FakeGitHub, FakeOrka, FakeQueue, FakeShell, running_vm};
use provisioner::{
    Demand, Fleet, FleetConfig, FleetDeps, RunnerInstallConfig, RunnerPhase, RunnerView, ScalingConfig,
    plan_runner_gap,
};
use runner_core::{JobCompleted, JobInfo, JobMessage, JobStarted, ScaleSetMessage, Statistics};

fn config() -> FleetConfig {
    let mut config = FleetConfig::new(
        7,
        "mac",
        "sonoma",
        RunnerInstallConfig { version: "2.328.0".into(), download_url_template: "x".into() },
    );
    config.scaling.max_runners = 10_000;
    config.probe_interval = Duration::ZERO;
    config.probe_concurrency = 64;
    config
}

/// A fleet with `n` adopted runners, half busy.
fn fleet(runtime: &tokio::runtime::Runtime, n: usize) -> (Fleet, Arc<FakeShell>) {
    let orka = Arc::new(FakeOrka::new());
    let github = Arc::new(FakeGitHub::new());
    let shell = Arc::new(FakeShell::new());
    let fleet =
        Fleet::new(FleetDeps { vms: orka.clone(), github: github.clone(), shell: shell.clone() }, config());
    runtime.block_on(async {
        for i in 0..n {
            let name = format!("mac-{i:05}");
            orka.insert(running_vm(&name));
            shell.set_running(&name);
            let record = github.register(&name, 7, i % 2 == 0);
            fleet.adopt(running_vm(&name), record, i % 2 == 0).await;
        }
        let busy = n.div_ceil(2) as u32;
        fleet
            .on_statistics(Statistics {
                total_assigned_jobs: busy,
                total_running_jobs: busy,
                ..Statistics::default()
            })
            .await;
    });
    (fleet, shell)
}

fn bench(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();

    let mut group = c.benchmark_group("planner");
    for n in [10usize, 100, 1000] {
        let runners: Vec<RunnerView> = (0..n)
            .map(|i| RunnerView {
                name: format!("mac-{i:05}"),
                phase: if i % 3 == 0 {
                    RunnerPhase::Idle { idle_for: Duration::from_secs(i as u64) }
                } else {
                    RunnerPhase::Busy
                },
                age: Duration::from_secs(i as u64),
            })
            .collect();
        let demand = Demand {
            statistics: Statistics {
                total_assigned_jobs: n as u32,
                total_running_jobs: (n / 2) as u32,
                ..Statistics::default()
            },
            known_waiting_jobs: 3,
        };
        let config = ScalingConfig {
            max_runners: 5000,
            min_idle_runners: 2,
            idle_grace: Duration::from_secs(60),
            warm_max_age: None,
        };
        group.bench_with_input(BenchmarkId::from_parameter(n), &n, |b, _| {
            b.iter(|| plan_runner_gap(black_box(&demand), black_box(&runners), black_box(&config)))
        });
    }
    group.finish();

    let mut group = c.benchmark_group("fleet");
    for n in [100usize, 500] {
        let (fleet, _shell) = fleet(&runtime, n);
        let queue = FakeQueue::new();
        // A batch that starts and completes a job on runners the fleet does not track
        // (bookkeeping only, no I/O), with statistics that ask for nothing new.
        let busy = n.div_ceil(2) as u32;
        let message = ScaleSetMessage {
            message_id: 1,
            message_type: "RunnerScaleSetJobMessages".into(),
            statistics: Statistics {
                total_assigned_jobs: busy,
                total_running_jobs: busy,
                ..Statistics::default()
            },
            job_messages: vec![
                JobMessage::Started(JobStarted {
                    job: JobInfo { job_id: "x".into(), ..JobInfo::default() },
                    runner_id: 1,
                    runner_name: "other-00000".into(),
                }),
                JobMessage::Completed(JobCompleted {
                    job: JobInfo { job_id: "x".into(), ..JobInfo::default() },
                    runner_id: 1,
                    runner_name: "other-00000".into(),
                    result: "succeeded".into(),
                }),
            ],
        };
        group.bench_with_input(BenchmarkId::new("handle_message", n), &n, |b, _| {
            b.iter(|| runtime.block_on(fleet.handle_message(&message, &queue)).unwrap())
        });
        group.bench_with_input(BenchmarkId::new("tick_probe_all", n), &n, |b, _| {
            b.iter(|| runtime.block_on(fleet.tick()))
        });
        assert_eq!(fleet.runners().len(), n, "the benchmark must not change the fleet");
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(20).measurement_time(Duration::from_secs(3)).warm_up_time(Duration::from_secs(1));
    targets = bench
}
criterion_main!(benches);
