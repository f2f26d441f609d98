//! `orka-runner-controller demo`: the whole controller, in this process, against the
//! simulated GitHub, Orka and macOS VMs of `testkit` on loopback — no network, no root, no
//! sshd. Three acts:
//!
//! 1. **Serve**: six jobs arrive with `MAX_RUNNERS=4`; VMs are deployed, runners installed
//!    over SSH, jobs run, VMs deleted; never more than four VMs at once.
//! 2. **Crash**: while one job runs and another runner's VM is still booting (its SSH not up,
//!    so setup never finishes), the controller crashes (its runtime is torn down: no session
//!    deletion, no cleanup — what `kill -9` leaves).
//! 3. **Restart**: a new controller waits for the dead one's session to expire, reconciles
//!    — adopting the VM that still runs a job and deleting the one whose setup never
//!    finished — serves the stranded job on a fresh VM and cleans everything up.
//!
//! It ends with a summary and exits 0 only if every invariant held.

mod controller;
mod progress;
pub mod summary;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use testkit::github::{JobId, JobState};
use testkit::orka::FakeVmStatus;
use testkit::vm::{FakeVmConfig, VmBehaviour};
use testkit::world::{World, WorldConfig};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::cli::DemoArgs;
use crate::config::{self, Config, Sources};
use crate::http::Telemetry;
use controller::InProcessController;
use progress::Progress;

/// At most this many VMs at once in the demo.
const MAX_RUNNERS: usize = 4;

/// Runs the demo; `Err` when an invariant broke or the demo was interrupted.
pub async fn run(_args: &DemoArgs, shutdown: CancellationToken) -> anyhow::Result<()> {
    let started = Instant::now();
    println!("orka-runner-controller demo: simulated GitHub, Orka and macOS VMs on loopback\n");
    let world = Arc::new(
        World::start(WorldConfig {
            nodes: 4,
            vms_per_node: 2,
            boot_delay: Duration::from_millis(800),
            ..WorldConfig::default()
        })
        .await?,
    );
    println!("  fake GitHub   {}", world.github.url());
    println!("  fake Orka     {} (8 VM slots; MAX_RUNNERS={MAX_RUNNERS})", world.orka.url());
    println!(
        "  fake VMs      SSH servers on 127.0.0.1, scratch roots under {}",
        world.vms.base_dir().display()
    );
    println!("  runner        {}\n", world.downloads.url_template());
    let config = demo_config(&world)?;
    let telemetry = Telemetry::new();
    let waiter = Waiter { world: world.clone(), shutdown: shutdown.clone() };
    let mut violations = Vec::new();

    // Act 1.
    println!("Act 1 — serve: six jobs, at most {MAX_RUNNERS} VMs at once");
    let progress = Progress::start(world.clone(), started);
    let controller = InProcessController::start(config.clone(), telemetry.clone())?;
    let burst: Vec<JobId> = (0..6)
        .map(|i| {
            let duration = Duration::from_millis(2_000 + 500 * i);
            world.github.enqueue_job(testkit::github::JobSpec::new(["mac"]).with_duration(duration))
        })
        .collect();
    waiter
        .until("the six jobs complete and their VMs are deleted", 180, |w| w.all_done(&burst) && w.clean())
        .await?;
    progress.finish().await;
    println!("  ✓ six jobs served; peak {} VMs; nothing left behind\n", world.snapshot().peak_vms);

    // Act 2.
    println!("Act 2 — crash: one job running, one runner's VM still booting");
    let progress = Progress::start(world.clone(), started);
    let long_job = world.enqueue_jobs(1, Duration::from_secs(20))[0];
    let adopted_vm = waiter.running_on(long_job).await?;
    // The next VM's SSH comes up late, so its setup cannot finish before the crash.
    world.vms.set_config(FakeVmConfig {
        behaviour: VmBehaviour::SlowStart { ready_after: Duration::from_secs(6) },
        ..FakeVmConfig::default()
    });
    let stranded_job = world.enqueue_jobs(1, Duration::from_secs(3))[0];
    let half_vm = waiter
        .value("a second VM is deployed and its runner registered", 120, |w| {
            let state = w.github.state();
            w.orka
                .vms()
                .into_iter()
                .filter(|vm| vm.status == FakeVmStatus::Running && vm.name != adopted_vm)
                .find(|vm| state.registered_runners().any(|r| r.name == vm.name))
                .map(|vm| vm.name)
        })
        .await?;
    controller.crash().await?;
    progress.finish().await;
    println!("  ✗ controller crashed: {adopted_vm} runs a job, {half_vm} never finished setup\n");
    world.vms.set_config(FakeVmConfig::default());

    // Act 3.
    println!("Act 3 — restart: wait for the dead session to expire, reconcile, finish the work");
    let progress = Progress::start(world.clone(), started);
    let controller = InProcessController::start(config, telemetry.clone())?;
    let mut adopted_vm_survived = true;
    waiter
        .until("both jobs complete and every VM is deleted", 180, |w| {
            let snapshot = w.snapshot();
            if !snapshot.completed(long_job) && w.orka.vm(&adopted_vm).is_none() {
                adopted_vm_survived = false;
            }
            w.all_done(&[long_job, stranded_job]) && w.clean()
        })
        .await?;
    controller.stop().await?;
    progress.finish().await;

    // Invariants.
    let all_jobs: Vec<JobId> = burst.iter().copied().chain([long_job, stranded_job]).collect();
    if let Err(found) = world.check_invariants(&all_jobs, MAX_RUNNERS) {
        violations.extend(found);
    }
    let state = world.github.state();
    let long = state.job(long_job).context("the long job")?;
    if long.runner_name.as_deref() != Some(adopted_vm.as_str()) || long.result.as_deref() != Some("succeeded")
    {
        violations.push(format!("the running job did not finish on its adopted VM {adopted_vm}: {long:?}"));
    }
    if !adopted_vm_survived {
        violations.push(format!("the adopted VM {adopted_vm} was deleted while its job ran"));
    }
    let stranded = state.job(stranded_job).context("the stranded job")?;
    if stranded.runner_name.as_deref() == Some(half_vm.as_str()) {
        violations.push(format!("the stranded job ran on {half_vm}, whose setup had never finished"));
    }
    let exposition = telemetry.metrics.encode();
    let decisions = summary::reconcile_decisions(&exposition);
    let decided =
        |action: &str| decisions.iter().filter(|((a, _), _)| a == action).map(|(_, n)| *n).sum::<f64>();
    if decided("adopt") < 1.0 {
        violations.push("reconciliation adopted nothing".into());
    }
    if decided("delete") < 1.0 {
        violations.push("reconciliation deleted nothing".into());
    }

    print_summary(&world, &exposition, &decisions, started, all_jobs.len());
    if violations.is_empty() {
        println!("\nPASS: every invariant held");
        Ok(())
    } else {
        for violation in &violations {
            println!("  ✗ {violation}");
        }
        bail!("{} invariant(s) broken", violations.len())
    }
}

fn demo_config(world: &World) -> anyhow::Result<Config> {
    let mut env: BTreeMap<String, String> = world.controller_env().into_iter().collect();
    env.insert("MAX_RUNNERS".into(), MAX_RUNNERS.to_string());
    env.insert("LOG_FORMAT".into(), "pretty".into());
    config::load(&Sources::environment_only(env)).context("the demo's own configuration is invalid")
}

fn print_summary(
    world: &World,
    exposition: &str,
    decisions: &BTreeMap<(String, String), f64>,
    started: Instant,
    jobs: usize,
) {
    let journal = world.orka.journal();
    let successful = |method: &str| {
        journal
            .iter()
            .filter(|e| e.method == method && e.path.contains("/vms") && e.status.is_some_and(|s| s < 300))
            .count()
    };
    println!("\nSummary ({:.1} s)", started.elapsed().as_secs_f64());
    println!("  jobs served           {jobs}");
    println!("  VMs created           {}", successful("POST"));
    println!("  VMs deleted           {}", successful("DELETE"));
    println!("  peak VMs at once      {} (limit {MAX_RUNNERS})", world.snapshot().peak_vms);
    println!("  reconcile decisions");
    for ((action, reason), count) in decisions {
        println!("    {action:<14} {reason:<22} {count}");
    }
    println!("  per-stage latency (mean over runners)");
    let stages = summary::stage_latencies(exposition);
    for stage in summary::stage_order() {
        match stages.get(stage).and_then(|s| s.mean().map(|m| (m, s.count))) {
            Some((mean, count)) => println!("    {stage:<14} {:>8.0} ms  (n={count})", mean * 1000.0),
            None => println!("    {stage:<14}        -"),
        }
    }
}

/// Waits on the world, giving up on interruption or after a generous bound.
struct Waiter {
    world: Arc<World>,
    shutdown: CancellationToken,
}

impl Waiter {
    async fn until(
        &self,
        what: &str,
        limit_secs: u64,
        mut done: impl FnMut(&World) -> bool,
    ) -> anyhow::Result<()> {
        self.value(what, limit_secs, |w| done(w).then_some(())).await
    }

    async fn value<T>(
        &self,
        what: &str,
        limit_secs: u64,
        mut found: impl FnMut(&World) -> Option<T>,
    ) -> anyhow::Result<T> {
        let deadline = Instant::now() + Duration::from_secs(limit_secs);
        loop {
            if let Some(value) = found(&self.world) {
                return Ok(value);
            }
            if Instant::now() >= deadline {
                bail!("gave up after {limit_secs} s waiting until {what}");
            }
            tokio::select! {
                _ = self.shutdown.cancelled() => bail!("interrupted while waiting until {what}"),
                _ = tokio::time::sleep(Duration::from_millis(100)) => {}
            }
        }
    }

    async fn running_on(&self, job: JobId) -> anyhow::Result<String> {
        self.value("the job runs", 120, |w| {
            let state = w.github.state();
            let job = state.job(job)?;
            (job.state == JobState::Running).then(|| job.runner_name.clone()).flatten()
        })
        .await
    }
}

/// Small conveniences over the world for the acts above.
trait WorldExt {
    fn all_done(&self, jobs: &[JobId]) -> bool;
    fn clean(&self) -> bool;
}

impl WorldExt for World {
    fn all_done(&self, jobs: &[JobId]) -> bool {
        let snapshot = self.snapshot();
        jobs.iter().all(|j| snapshot.completed(*j))
    }

    fn clean(&self) -> bool {
        let snapshot = self.snapshot();
        snapshot.vms == 0 && snapshot.github.registered_runners().next().is_none()
    }
}
