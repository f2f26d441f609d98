//! Support for the end-to-end scenarios: the simulated world runs in the test process
//! (`testkit::world`), the controller under test runs as a separate OS process.

#![allow(dead_code)] // Each scenario file uses its own subset.

pub mod process;

use std::time::Duration;

use anyhow::Result;
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
