//! Burst: 50 jobs at once with `MAX_RUNNERS=8` on a cluster with room for only 6 VMs.
//! Never more VMs than allowed, every job served, nothing left behind.

#[path = "support/mod.rs"]
mod support;

use std::time::Duration;

use anyhow::{Result, bail};
use support::{Scenario, eventually};
use testkit::world::WorldConfig;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_jobs_eight_runners_six_slots() -> Result<()> {
    let s = Scenario::with(WorldConfig { nodes: 3, vms_per_node: 2, ..WorldConfig::default() }).await?;
    let mut controller = s.controller("controller.log", &[("MAX_RUNNERS", "8"), ("LOG_LEVEL", "warn")])?;
    let jobs = s.world.enqueue_jobs(50, Duration::from_millis(500));
    let outcome = async {
        eventually("all 50 jobs complete", Duration::from_secs(400), || async {
            let snapshot = s.world.snapshot();
            jobs.iter().all(|j| snapshot.completed(*j)).then_some(())
        })
        .await?;
        s.wait_clean().await?;
        controller.sigterm()?;
        if !controller.wait_exit(Duration::from_secs(60)).await?.success() {
            bail!("the controller did not exit cleanly");
        }
        // Six slots run VMs; deploys beyond them wait as `Pending` VMs, which count too:
        // never more than the eight the configuration allows.
        s.world.check_invariants(&jobs, 8).map_err(|v| anyhow::anyhow!("{v:#?}"))
    }
    .await;
    outcome.map_err(|e| anyhow::anyhow!("{e:#}\n{}", controller.log()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_runners_caps_vms_below_cluster_capacity() -> Result<()> {
    let s = Scenario::with(WorldConfig { nodes: 4, vms_per_node: 4, ..WorldConfig::default() }).await?;
    let mut controller = s.controller("controller.log", &[("MAX_RUNNERS", "3"), ("LOG_LEVEL", "warn")])?;
    let jobs = s.world.enqueue_jobs(12, Duration::from_millis(500));
    let outcome = async {
        eventually("all 12 jobs complete", Duration::from_secs(300), || async {
            let snapshot = s.world.snapshot();
            jobs.iter().all(|j| snapshot.completed(*j)).then_some(())
        })
        .await?;
        s.wait_clean().await?;
        controller.sigterm()?;
        controller.wait_exit(Duration::from_secs(60)).await?;
        // Sixteen slots in the cluster, three allowed: the configuration is the limit.
        s.world.check_invariants(&jobs, 3).map_err(|v| anyhow::anyhow!("{v:#?}"))
    }
    .await;
    outcome.map_err(|e| anyhow::anyhow!("{e:#}\n{}", controller.log()))
}
