//! Support for the end-to-end scenarios: the simulated world runs in the test process
//! (`testkit::world`), the controller under test runs as a separate OS process.

#![allow(dead_code)] // Each scenario file uses its own subset.

pub mod process;

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Result, bail};
use testkit::github::{JobId, JobState};
use testkit::world::{World, WorldConfig};

pub use process::{ControllerProcess, eventually};

/// Generous bound for anything the simulation should reach; a hang fails, nothing is timed.
pub const PATIENCE: Duration = Duration::from_secs(120);

/// A world plus a scratch directory for the controller's working directory and logs.
pub struct Scenario {
    /// The simulated services.
    pub world: World,
    /// Working directory of the controller processes.
    pub dir: tempfile::TempDir,
}

impl Scenario {
    /// Starts a world with the defaults tuned for end-to-end runs.
    pub async fn start() -> Result<Self> {
        Self::with(WorldConfig::default()).await
    }

    /// Starts a world with `config`.
    pub async fn with(config: WorldConfig) -> Result<Self> {
        Ok(Self { world: World::start(config).await?, dir: tempfile::tempdir()? })
    }

    /// Starts a controller (`run`) against the world with `extra` environment on top.
    pub fn controller(&self, log_name: &str, extra: &[(&str, &str)]) -> Result<ControllerProcess> {
        let mut env = self.world.controller_env();
        env.extend(extra.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())));
        ControllerProcess::spawn(self.dir.path(), log_name, &env, &["run"])
    }

    /// Waits until the world has no VM and no runner registration left.
    pub async fn wait_clean(&self) -> Result<()> {
        eventually("no VM and no runner registration left", PATIENCE, || async {
            let snapshot = self.world.snapshot();
            (snapshot.vms == 0 && snapshot.github.registered_runners().next().is_none()).then_some(())
        })
        .await
    }
}

/// Runs `body`; on failure appends every controller log to the error.
pub async fn explained<T>(logs: &[PathBuf], body: impl std::future::Future<Output = Result<T>>) -> Result<T> {
    body.await.map_err(|e| {
        let logs: Vec<String> = logs.iter().map(|p| std::fs::read_to_string(p).unwrap_or_default()).collect();
        anyhow::anyhow!("{e:#}\n--- controller logs ---\n{}", logs.join("\n---\n"))
    })
}

/// Waits until `job` runs and returns the name of the runner (= VM) running it.
pub async fn running_on(s: &Scenario, job: JobId) -> Result<String> {
    eventually("the job runs on a runner", PATIENCE, || async {
        let state = s.world.github.state();
        let job = state.job(job)?;
        (job.state == JobState::Running).then(|| job.runner_name.clone()).flatten()
    })
    .await
}

/// SIGTERM, then require a clean exit 0.
pub async fn stop(controller: &mut ControllerProcess) -> Result<()> {
    controller.sigterm()?;
    let status = controller.wait_exit(Duration::from_secs(60)).await?;
    if !status.success() {
        bail!("SIGTERM must end the controller with 0, got {status:?}");
    }
    Ok(())
}
