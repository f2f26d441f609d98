//! Scenario `cleanup`: (1) a runner adopted by a restarted controller whose
//! `JobCompleted` never reaches it (consumed by the killed process; modelled by pausing
//! message delivery): time from the job's completion to its VM's deletion, found by
//! periodic probing. (2) an orphan VM (owned name, no runner) created while the
//! controller runs: time until the periodic reconcile deletes it.

use std::time::Duration;

use anyhow::{Context, Result};
use orka_client::naming::VmName;
use testkit::github::{Fault, JobState};
use testkit::orka::SeedVm;
use tokio::time::Instant;

use crate::harness::{Controller, WorldSpec, eventually, secs, start_world};

/// Parameters of the scenario.
#[derive(Debug, Clone)]
pub struct Params {
    /// The `PROBE_INTERVAL` the controller runs with.
    pub probe_interval: Duration,
    /// VM_TRACKER_INTERVAL (the reconcile interval).
    pub reconcile_interval: Duration,
    /// Orphans created one after another.
    pub orphans: usize,
}

/// The Go integration's orphan check period; it deletes on the second strike.
const GO_ORPHAN_PERIOD: Duration = Duration::from_secs(300);

pub async fn run(params: &Params) -> Result<()> {
    let world = start_world(&WorldSpec::default()).await?;
    let dir = tempfile::tempdir()?;
    let probe_interval = format!("{}ms", params.probe_interval.as_millis());
    let reconcile_interval = format!("{}ms", params.reconcile_interval.as_millis());
    let env = [
        ("PROBE_INTERVAL", probe_interval.as_str()),
        ("VM_TRACKER_INTERVAL", reconcile_interval.as_str()),
        ("MAX_RUNNERS", "2"),
        ("LOG_LEVEL", "info"),
        ("LOG_FORMAT", "json"),
    ];
    let mut first = Controller::spawn(&world, dir.path(), "first.log", &["run"], &env, false)?;
    let jobs = world.enqueue_jobs(1, Duration::from_secs(3600));
    let runner = eventually("the job runs", Duration::from_secs(120), Duration::from_millis(50), || {
        let state = world.github.state();
        let job = state.job(jobs[0])?;
        (job.state == JobState::Running).then(|| job.runner_name.clone()).flatten()
    })
    .await
    .map_err(|e| anyhow::anyhow!("{e}\n{}", first.log()))?;
    first.kill9().await?;

    let mut second = Controller::spawn(&world, dir.path(), "second.log", &["run"], &env, false)?;
    eventually(
        "the restarted controller adopts the runner",
        Duration::from_secs(120),
        Duration::from_millis(50),
        || {
            let log = second.log();
            log.lines().any(|l| l.contains("adopted runner") && l.contains(&runner)).then_some(())
        },
    )
    .await
    .map_err(|e| anyhow::anyhow!("{e}\n{}", second.log()))?;
    // From here on no message reaches the new controller: its JobCompleted is "consumed".
    world.github.inject(Fault::PauseDelivery);
    let completed = Instant::now();
    world.github.finish_job(jobs[0], "succeeded");
    let cleanup = eventually(
        "the adopted runner's VM is deleted",
        Duration::from_secs(600),
        Duration::from_millis(50),
        || world.orka.vm(&runner).is_none().then(|| completed.elapsed()),
    )
    .await
    .map_err(|e| anyhow::anyhow!("{e}\n{}", second.log()))?;
    world.github.inject(Fault::ResumeDelivery);

    println!(
        "\n## cleanup — adopted runner whose JobCompleted never arrives (PROBE_INTERVAL = {})",
        secs(params.probe_interval)
    );
    println!(
        "| job completed → VM deleted | target (≤ one probe interval) | met | Go integration (orphan check, 2 strikes × 300 s) |"
    );
    println!("|---|---|---|---|");
    println!(
        "| {} | {} | {} | up to {} |",
        secs(cleanup),
        secs(params.probe_interval),
        if cleanup <= params.probe_interval { "yes" } else { "**no**" },
        secs(GO_ORPHAN_PERIOD * 2)
    );

    let mut orphan_times = Vec::new();
    for i in 0..params.orphans {
        // Stagger creation against the reconcile period.
        tokio::time::sleep(
            params.reconcile_interval.mul_f64(0.37 * i as f64 % 1.0) + Duration::from_millis(100),
        )
        .await;
        let name = VmName::generate("mac")?.to_string();
        world.orka.seed_vm(SeedVm::running(&name)).await.context("seeding the orphan")?;
        let created = Instant::now();
        let took =
            eventually("the orphan is deleted", Duration::from_secs(900), Duration::from_millis(50), || {
                world.orka.vm(&name).is_none().then(|| created.elapsed())
            })
            .await
            .map_err(|e| anyhow::anyhow!("{e}\n{}", second.log()))?;
        orphan_times.push(took);
    }
    second.stop(Duration::from_secs(30)).await?;
    println!(
        "\n## orphan — owned VM without a runner created at run time (VM_TRACKER_INTERVAL = {})",
        secs(params.reconcile_interval)
    );
    println!(
        "| orphan | created → deleted | target (≤ one reconcile interval) | met | Go integration (300 s period, 2 strikes) |"
    );
    println!("|---|---|---|---|---|");
    for (i, took) in orphan_times.iter().enumerate() {
        println!(
            "| {} | {} | {} | {} | 300–600 s |",
            i + 1,
            secs(*took),
            secs(params.reconcile_interval),
            if *took <= params.reconcile_interval { "yes" } else { "**no**" },
        );
    }
    Ok(())
}
