//! Scenario `startup`: from spawning the real binary (`run`) to its first message poll
//! reaching the fake GitHub (configuration, runner version, scale set lookup, session,
//! start-up reconcile pass over an empty fleet, first long poll).

use std::time::Duration;

use anyhow::Result;
use testkit::github::Endpoint;

use crate::harness::{Controller, WorldSpec, eventually, secs, start_world};

pub async fn run(runs: usize) -> Result<()> {
    let world = start_world(&WorldSpec::default()).await?;
    let dir = tempfile::tempdir()?;
    let mut times = Vec::with_capacity(runs);
    for i in 0..runs {
        let before = world.github.state().request_count(Endpoint::GetMessage);
        let mut controller = Controller::spawn(
            &world,
            dir.path(),
            &format!("startup-{i}.log"),
            &["run"],
            &[("LOG_LEVEL", "warn")],
            false,
        )?;
        let started = controller.started;
        let took = eventually("the first poll", Duration::from_secs(60), Duration::from_millis(1), || {
            (world.github.state().request_count(Endpoint::GetMessage) > before).then(|| started.elapsed())
        })
        .await
        .map_err(|e| anyhow::anyhow!("{e}\n{}", controller.log()))?;
        times.push(took);
        // SIGTERM deletes the session so the next run can open one at once.
        controller.stop(Duration::from_secs(30)).await?;
    }
    times.sort();
    let median = times[times.len() / 2];
    let max = times[times.len() - 1];
    println!("\n## startup — spawn of `orka-runner-controller run` to its first message poll ({runs} runs)");
    println!("| min | median | max | target | met |");
    println!("|---|---|---|---|---|");
    println!(
        "| {} | {} | {} | < 0.500 s | {} |",
        secs(times[0]),
        secs(median),
        secs(max),
        if max < Duration::from_millis(500) { "yes" } else { "**no** (max)" }
    );
    Ok(())
}
