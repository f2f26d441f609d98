//! Scenarios `burst` and `steady`: the real controller binary serves a burst of jobs
//! delivered in one message (fake Orka deploy latency D); time until every runner is
//! online and the controller's CPU per runner. `steady` keeps the runners running and
//! samples the controller's CPU %, RSS, threads and TCP connections while it probes them
//! periodically, against the same figures with no runner.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::Result;
use orka_runner_controller::demo::summary::{SumCount, stage_latencies, stage_order};
use testkit::github::{Endpoint, Fault, JobState, RunnerStatus};
use testkit::world::World;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::Instant;

use crate::harness::{Controller, Profiler, WorldSpec, eventually, secs, start_world};
use crate::procfs::{self, Usage};

/// Parameters of a burst.
#[derive(Debug, Clone)]
pub struct Params {
    /// Jobs in the one message.
    pub jobs: usize,
    /// Fake Orka deploy latency D.
    pub deploy_latency: Duration,
    /// MAX_CONCURRENT_PROVISIONS values to run with.
    pub provisions: Vec<usize>,
    /// Fake runner poll interval (seconds).
    pub runner_poll: String,
    /// PROBE_INTERVAL of the controller.
    pub probe_interval: Duration,
    /// Steady state: how long to sample.
    pub window: Duration,
    /// Where to write `perf record` profiles of the controller (burst, steady window).
    pub perf_dir: Option<std::path::PathBuf>,
}

/// What one burst measured.
struct BurstOutcome {
    first_vm: Duration,
    all_online: Duration,
    all_running: Duration,
    controller_cpu: Duration,
    bench_cpu: Duration,
    machine_cpu: Duration,
    idle: Usage,
    /// Mean per stage over the burst's runners, from the controller's histograms.
    stages: String,
}

/// A controller serving a world, ready for a burst.
struct Served {
    world: World,
    controller: Controller,
    _dir: tempfile::TempDir,
    ticks: u64,
    /// Where the controller serves `/metrics`.
    metrics: std::net::SocketAddr,
}

/// Per-stage latency histograms (sum, count) the controller exports, by stage.
type Stages = BTreeMap<String, SumCount>;

/// The controller's own per-stage latency histograms, read from its `/metrics`.
async fn stages(addr: std::net::SocketAddr) -> Result<Stages> {
    let mut stream = tokio::net::TcpStream::connect(addr).await?;
    stream.write_all(b"GET /metrics HTTP/1.0\r\nHost: localhost\r\n\r\n").await?;
    let mut response = String::new();
    stream.read_to_string(&mut response).await?;
    Ok(stage_latencies(&response))
}

/// Mean of each stage over the observations made between `before` and `after`.
fn stage_means(before: &Stages, after: &Stages) -> String {
    stage_order()
        .filter_map(|stage| {
            let a = after.get(stage)?;
            let b = before.get(stage).copied().unwrap_or_default();
            let delta = SumCount { sum: a.sum - b.sum, count: a.count - b.count };
            Some(format!("{stage} {:.3} s", delta.mean()?))
        })
        .collect::<Vec<_>>()
        .join(", ")
}

async fn serve(params: &Params, provisions: usize) -> Result<Served> {
    let world = start_world(&WorldSpec {
        capacity: params.jobs,
        deploy_latency: params.deploy_latency,
        runner_poll: params.runner_poll.clone(),
        ..WorldSpec::default()
    })
    .await?;
    let dir = tempfile::tempdir()?;
    let max = params.jobs.to_string();
    let provisions = provisions.to_string();
    let metrics = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?;
    let metrics_addr = metrics.to_string();
    let probe_interval = format!("{}ms", params.probe_interval.as_millis());
    let controller = Controller::spawn(
        &world,
        dir.path(),
        "controller.log",
        &["run"],
        &[
            ("MAX_RUNNERS", &max),
            ("MAX_CONCURRENT_PROVISIONS", &provisions),
            ("PROBE_INTERVAL", &probe_interval),
            ("VM_TRACKER_INTERVAL", "300s"),
            ("RUNNER_IDLE_GRACE", "30m"),
            ("LOG_LEVEL", "warn"),
            ("ENABLE_METRICS", "true"),
            ("METRICS_ADDR", &metrics_addr),
        ],
        false,
    )?;
    eventually(
        "the controller polls for messages",
        Duration::from_secs(60),
        Duration::from_millis(20),
        || (world.github.state().request_count(Endpoint::GetMessage) > 0).then_some(()),
    )
    .await
    .map_err(|e| anyhow::anyhow!("{e}\n{}", controller.log()))?;
    Ok(Served { world, controller, _dir: dir, ticks: procfs::clock_ticks(), metrics })
}

async fn burst(served: &Served, params: &Params, provisions: usize) -> Result<BurstOutcome> {
    let world = &served.world;
    let ticks = served.ticks;
    // Let start-up work settle, then take the idle baseline.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let idle = served.controller.usage(ticks);
    let bench0 = procfs::usage("self", ticks).unwrap_or_default().cpu;
    let machine0 = procfs::machine_busy(ticks);
    let profiler = params.perf_dir.as_ref().and_then(|dir| {
        Profiler::start(
            served.controller.pid(),
            &dir.join(format!("burst-{}-{provisions}.data", params.jobs)),
        )
    });
    let stages_before = stages(served.metrics).await?;
    world.github.inject(Fault::PauseDelivery);
    let jobs = world.enqueue_jobs(params.jobs, Duration::from_secs(6 * 3600));
    let started = Instant::now();
    world.github.inject(Fault::ResumeDelivery);
    let first_vm =
        eventually("a VM is deployed", Duration::from_secs(120), Duration::from_millis(20), || {
            (!world.orka.vms().is_empty()).then(|| started.elapsed())
        })
        .await?;
    let limit = Duration::from_secs(60)
        + params.deploy_latency * 10
        + Duration::from_millis(400) * params.jobs as u32;
    let mut all_online = None;
    let all_running = eventually("every runner runs its job", limit, Duration::from_millis(100), || {
        let state = world.github.state();
        let online = state
            .runners
            .iter()
            .filter(|r| matches!(r.status, RunnerStatus::Idle | RunnerStatus::Busy))
            .count();
        if online >= params.jobs && all_online.is_none() {
            all_online = Some(started.elapsed());
        }
        let running =
            jobs.iter().filter(|j| state.job(**j).is_some_and(|j| j.state == JobState::Running)).count();
        (running == jobs.len() && all_online.is_some()).then(|| started.elapsed())
    })
    .await
    .map_err(|e| anyhow::anyhow!("{e}\n{}", served.controller.log()))?;
    let after = served.controller.usage(ticks);
    let stages = stage_means(&stages_before, &stages(served.metrics).await?);
    if let Some(profiler) = profiler {
        profiler.stop().await?;
    }
    Ok(BurstOutcome {
        first_vm,
        all_online: all_online.unwrap_or(all_running),
        all_running,
        controller_cpu: after.cpu.saturating_sub(idle.cpu),
        bench_cpu: procfs::usage("self", ticks).unwrap_or_default().cpu.saturating_sub(bench0),
        machine_cpu: procfs::machine_busy(ticks).saturating_sub(machine0),
        idle,
        stages,
    })
}

/// Controller CPU per runner a burst may cost (issue 15).
const CPU_PER_RUNNER_TARGET: Duration = Duration::from_millis(2);

fn print_burst(params: &Params, provisions: usize, single: &SingleRunner, o: &BurstOutcome) {
    let target = params.deploy_latency + single.install + Duration::from_secs(3);
    let per_runner = o.controller_cpu / params.jobs as u32;
    // What the rest of the machine (fake VMs' processes, in-process fakes) needed, spread
    // over every core: no controller could bring every runner online sooner than D plus this.
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as u32;
    let others_bound = o.machine_cpu.saturating_sub(o.controller_cpu) / cores;
    println!(
        "| {} | {} | {} | {} | {} | {} | {} | {} | {:.2} ms | {} | {} | {} | {} |",
        params.jobs,
        secs(params.deploy_latency),
        provisions,
        secs(o.first_vm),
        secs(o.all_online),
        secs(o.all_running),
        secs(target),
        if o.all_online <= target { "yes" } else { "**no**" },
        per_runner.as_secs_f64() * 1000.0,
        if per_runner < CPU_PER_RUNNER_TARGET { "yes" } else { "**no**" },
        secs(o.bench_cpu),
        secs(o.machine_cpu),
        secs(params.deploy_latency + others_bound),
    );
    println!("stage means over this burst (the controller's stage histograms): {}", o.stages);
}

fn burst_header(params: &Params, single: &SingleRunner) {
    println!(
        "\n## burst — {} jobs in one message, fake Orka deploy latency D = {}, fake runners poll every {} s",
        params.jobs,
        secs(params.deploy_latency),
        params.runner_poll
    );
    println!(
        "one job alone: runner online {} after the message (median of {}), so install = {} − D = {}",
        secs(single.online),
        SINGLE_RUNNER_SAMPLES,
        secs(single.online),
        secs(single.install)
    );
    println!(
        "targets: all online ≤ D + install + 3 s = {}; controller CPU < {} ms per runner",
        secs(params.deploy_latency + single.install + Duration::from_secs(3)),
        CPU_PER_RUNNER_TARGET.as_millis()
    );
    println!(
        "| jobs | D | MAX_CONCURRENT_PROVISIONS | first VM | all runners online | all jobs running | target | met | controller CPU / runner | met | fakes in bench process CPU | whole machine CPU | D + (machine CPU − controller CPU) / cores |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|---|");
}

/// Jobs sent one at a time to time a lone runner's start.
const SINGLE_RUNNER_SAMPLES: usize = 3;

/// How long one runner takes to come online when it is alone: the message to the runner
/// connected, and that minus the deploy latency (the install and the controller's own
/// steps: JIT config, SSH, the install script, the runner's first poll).
struct SingleRunner {
    online: Duration,
    install: Duration,
}

/// Serves [`SINGLE_RUNNER_SAMPLES`] jobs one after another on an otherwise idle world.
async fn single_runner(params: &Params) -> Result<SingleRunner> {
    let lone = Params { jobs: SINGLE_RUNNER_SAMPLES, perf_dir: None, ..params.clone() };
    let mut served = serve(&lone, 1).await?;
    let world = &served.world;
    let mut samples = Vec::new();
    for _ in 0..SINGLE_RUNNER_SAMPLES {
        let online_before = online_runners(world);
        let started = Instant::now();
        world.enqueue_jobs(1, Duration::from_secs(3600));
        let online =
            eventually("the runner is online", Duration::from_secs(120), Duration::from_millis(10), || {
                (online_runners(world) > online_before).then(|| started.elapsed())
            })
            .await
            .map_err(|e| anyhow::anyhow!("{e}\n{}", served.controller.log()))?;
        samples.push(online);
    }
    served.controller.stop(Duration::from_secs(30)).await?;
    samples.sort();
    let online = samples[samples.len() / 2];
    Ok(SingleRunner { online, install: online.saturating_sub(params.deploy_latency) })
}

/// Runners registered and connected (idle or busy) in the fake GitHub.
fn online_runners(world: &World) -> usize {
    world
        .github
        .state()
        .runners
        .iter()
        .filter(|r| matches!(r.status, RunnerStatus::Idle | RunnerStatus::Busy))
        .count()
}

pub async fn run_burst(params: &Params) -> Result<()> {
    let single = single_runner(params).await?;
    burst_header(params, &single);
    for &provisions in &params.provisions {
        let mut served = serve(params, provisions).await?;
        let outcome = burst(&served, params, provisions).await?;
        print_burst(params, provisions, &single, &outcome);
        served.controller.stop(Duration::from_secs(30)).await?;
    }
    Ok(())
}

/// One sample of the controller's footprint.
#[derive(Debug, Clone, Copy)]
struct Footprint {
    usage: Usage,
    tcp_established: usize,
    tcp_other: usize,
    fds: usize,
}

fn footprint(served: &Served) -> Footprint {
    let pid = served.controller.pid();
    let sockets = procfs::tcp_sockets(pid);
    let tcp_established = sockets.iter().filter(|(_, established)| *established).count();
    Footprint {
        usage: served.controller.usage(served.ticks),
        tcp_established,
        tcp_other: sockets.len() - tcp_established,
        fds: procfs::open_fds(pid),
    }
}

/// Established connections of the controller by peer: fake GitHub, fake Orka, runner
/// downloads, VM SSH (any other port).
fn connections_by_peer(served: &Served) -> String {
    let world = &served.world;
    let (github, orka, downloads) =
        (world.github.addr().port(), world.orka.addr().port(), world.downloads.addr().port());
    let mut counts = [0usize; 4];
    for (port, established) in procfs::tcp_sockets(served.controller.pid()) {
        if !established {
            continue;
        }
        let slot = match port {
            p if p == github => 0,
            p if p == orka => 1,
            p if p == downloads => 2,
            _ => 3,
        };
        counts[slot] += 1;
    }
    format!("GitHub {}, Orka {}, downloads {}, VM SSH {}", counts[0], counts[1], counts[2], counts[3])
}

pub async fn run_steady(params: &Params) -> Result<()> {
    let provisions = params.provisions.last().copied().unwrap_or(params.jobs);
    let mut served = serve(params, provisions).await?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let idle = sample_window(&served, params.window.min(Duration::from_secs(30))).await;
    let single = single_runner(params).await?;
    burst_header(params, &single);
    let outcome = burst(&served, params, provisions).await?;
    print_burst(params, provisions, &single, &outcome);
    // Let the burst's provisioning work end, then sample a window spanning probe rounds.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let peers_after_burst = connections_by_peer(&served);
    let profiler = params.perf_dir.as_ref().and_then(|dir| {
        Profiler::start(served.controller.pid(), &dir.join(format!("steady-{}.data", params.jobs)))
    });
    let busy = sample_window(&served, params.window).await;
    if let Some(profiler) = profiler {
        profiler.stop().await?;
    }
    let peers_end = connections_by_peer(&served);
    let still_running = served.world.snapshot().jobs_in(JobState::Running);
    println!(
        "\n## steady — {} running runners, PROBE_INTERVAL = {}, window {} (fake runners poll every {} s)",
        params.jobs,
        secs(params.probe_interval),
        secs(params.window),
        params.runner_poll
    );
    println!("jobs still running at the end of the window: {still_running}");
    println!(
        "| state | controller CPU | RSS | threads | established TCP (min–max over the window) | other TCP sockets | open fds (max) | fakes in bench process CPU | whole machine CPU |"
    );
    println!("|---|---|---|---|---|---|---|---|---|");
    for (label, w) in
        [("no runner (after start-up)", &idle), (&*format!("{} running runners", params.jobs), &busy)]
    {
        println!(
            "| {label} | {:.2} % of one core | {:.1} MB | {}–{} | {}–{} | {} | {} | {:.1} % | {:.1} % |",
            w.cpu_percent,
            w.rss_max_kib as f64 / 1024.0,
            w.threads_min,
            w.threads_max,
            w.tcp_min,
            w.tcp_max,
            w.tcp_other_max,
            w.fds_max,
            w.bench_percent,
            w.machine_percent,
        );
    }
    println!("targets: RSS < 50 MB, CPU < 5 % of one core; nothing held per running job (compare the rows)");
    println!(
        "established connections by peer: 5 s after the burst: {peers_after_burst}; end of the window: {peers_end}"
    );
    println!(
        "(controller idle before the burst: {:.1} MB RSS, {} threads)",
        outcome.idle.rss_kib as f64 / 1024.0,
        outcome.idle.threads
    );
    served.controller.stop(Duration::from_secs(30)).await?;
    Ok(())
}

/// What a sampling window saw.
struct Window {
    cpu_percent: f64,
    rss_max_kib: u64,
    threads_min: u64,
    threads_max: u64,
    tcp_min: usize,
    tcp_max: usize,
    tcp_other_max: usize,
    fds_max: usize,
    bench_percent: f64,
    machine_percent: f64,
}

async fn sample_window(served: &Served, window: Duration) -> Window {
    let ticks = served.ticks;
    let first = footprint(served);
    let bench0 = procfs::usage("self", ticks).unwrap_or_default().cpu;
    let machine0 = procfs::machine_busy(ticks);
    let started = Instant::now();
    let mut w = Window {
        cpu_percent: 0.0,
        rss_max_kib: first.usage.rss_kib,
        threads_min: first.usage.threads,
        threads_max: first.usage.threads,
        tcp_min: first.tcp_established,
        tcp_max: first.tcp_established,
        tcp_other_max: first.tcp_other,
        fds_max: first.fds,
        bench_percent: 0.0,
        machine_percent: 0.0,
    };
    let mut last = first;
    while started.elapsed() < window {
        tokio::time::sleep(Duration::from_millis(250)).await;
        let f = footprint(served);
        w.rss_max_kib = w.rss_max_kib.max(f.usage.rss_kib);
        w.threads_min = w.threads_min.min(f.usage.threads);
        w.threads_max = w.threads_max.max(f.usage.threads);
        w.tcp_min = w.tcp_min.min(f.tcp_established);
        w.tcp_max = w.tcp_max.max(f.tcp_established);
        w.tcp_other_max = w.tcp_other_max.max(f.tcp_other);
        w.fds_max = w.fds_max.max(f.fds);
        last = f;
    }
    let elapsed = started.elapsed().as_secs_f64();
    w.cpu_percent = last.usage.cpu.saturating_sub(first.usage.cpu).as_secs_f64() / elapsed * 100.0;
    w.bench_percent =
        procfs::usage("self", ticks).unwrap_or_default().cpu.saturating_sub(bench0).as_secs_f64() / elapsed
            * 100.0;
    w.machine_percent = procfs::machine_busy(ticks).saturating_sub(machine0).as_secs_f64() / elapsed * 100.0;
    w
}
