//! Scenario `warm`: the warm pool (`MIN_RUNNERS`). With the pool online, jobs arrive one at
//! a time; for each: JobAssigned → JobStarted (the job finds a warm runner), JobAssigned →
//! the replacement VM requested from Orka (refill start), and JobAssigned → the pool back
//! to `MIN_RUNNERS` idle runners (refill done: deploy + install). Job states and VMs are
//! sampled every few milliseconds, so figures carry that much granularity.

use std::time::Duration;

use anyhow::Result;
use testkit::github::{JobState, RunnerStatus};
use tokio::time::Instant;

use crate::harness::{Controller, WorldSpec, eventually, secs, start_world};

/// Parameters of the scenario.
#[derive(Debug, Clone)]
pub struct Params {
    /// `MIN_RUNNERS`.
    pub pool: usize,
    /// Jobs sent one after another.
    pub samples: usize,
    /// Fake Orka deploy latency.
    pub deploy_latency: Duration,
}

const SAMPLE_EVERY: Duration = Duration::from_millis(5);

struct Sample {
    assigned_to_started: Duration,
    refill_started: Duration,
    refill_done: Duration,
}

pub async fn run(params: &Params) -> Result<()> {
    let spec = WorldSpec {
        capacity: params.pool + params.samples + 2,
        deploy_latency: params.deploy_latency,
        ..WorldSpec::default()
    };
    let world = start_world(&spec).await?;
    let dir = tempfile::tempdir()?;
    let pool = params.pool.to_string();
    let max = (params.pool + params.samples + 1).to_string();
    let env = [("MIN_RUNNERS", pool.as_str()), ("MAX_RUNNERS", max.as_str()), ("LOG_LEVEL", "info")];
    let mut controller = Controller::spawn(&world, dir.path(), "warm.log", &["run"], &env, false)?;
    let idle_runners =
        || world.github.state().runners.iter().filter(|r| r.status == RunnerStatus::Idle).count();
    eventually("the warm pool is online", Duration::from_secs(300), Duration::from_millis(20), || {
        (idle_runners() >= params.pool).then_some(())
    })
    .await
    .map_err(|e| anyhow::anyhow!("{e}\n{}", controller.log()))?;

    let mut samples = Vec::new();
    for _ in 0..params.samples {
        let vms_before = world.orka.vms().len();
        // Long jobs: their VMs stay, so a new VM can only be a replacement.
        let job = world.enqueue_jobs(1, Duration::from_secs(3600))[0];
        let state_of = || world.github.state().job(job).map(|j| j.state);
        eventually("the job is assigned", Duration::from_secs(60), SAMPLE_EVERY, || {
            matches!(state_of(), Some(JobState::Assigned | JobState::Running)).then_some(())
        })
        .await?;
        let assigned = Instant::now();
        let limit = Duration::from_secs(120);
        let mut started = None;
        let mut refill_started = None;
        let refill_done = loop {
            let elapsed = assigned.elapsed();
            if started.is_none() && state_of() == Some(JobState::Running) {
                started = Some(elapsed);
            }
            if refill_started.is_none() && world.orka.vms().len() > vms_before {
                refill_started = Some(elapsed);
            }
            if let (Some(_), Some(_)) = (started, refill_started)
                && idle_runners() >= params.pool
            {
                break elapsed;
            }
            anyhow::ensure!(elapsed < limit, "sample not finished within {limit:?}\n{}", controller.log());
            tokio::time::sleep(SAMPLE_EVERY).await;
        };
        samples.push(Sample {
            assigned_to_started: started.expect("set before the loop ends"),
            refill_started: refill_started.expect("set before the loop ends"),
            refill_done,
        });
    }
    controller.stop(Duration::from_secs(30)).await?;

    let median = |pick: fn(&Sample) -> Duration| {
        let mut values: Vec<Duration> = samples.iter().map(pick).collect();
        values.sort();
        values[values.len() / 2]
    };
    let worst = |pick: fn(&Sample) -> Duration| samples.iter().map(pick).max().unwrap_or_default();
    println!(
        "\n## warm pool — MIN_RUNNERS = {}, {} jobs one at a time, deploy latency {}",
        params.pool,
        params.samples,
        secs(params.deploy_latency)
    );
    println!("| figure | p50 | max | target | met | Go integration |");
    println!("|---|---|---|---|---|---|");
    let p50 = median(|s| s.assigned_to_started);
    println!(
        "| JobAssigned → JobStarted (warm runner) | {} | {} | ≤ 1 s | {} | no warm pool: a cold start each job |",
        secs(p50),
        secs(worst(|s| s.assigned_to_started)),
        if p50 <= Duration::from_secs(1) { "yes" } else { "**no**" }
    );
    println!(
        "| JobAssigned → replacement VM requested | {} | {} | at once (no tick) | — | — |",
        secs(median(|s| s.refill_started)),
        secs(worst(|s| s.refill_started))
    );
    println!(
        "| JobAssigned → pool back to MIN_RUNNERS idle | {} | {} | deploy + install | — | — |",
        secs(median(|s| s.refill_done)),
        secs(worst(|s| s.refill_done))
    );
    Ok(())
}
