//! The controller under test as a separate OS process: start it with an environment,
//! stop it politely (SIGTERM) or brutally (SIGKILL), read what it logged.

use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use tokio::process::{Child, Command};

/// A running controller process. Killed with SIGKILL when dropped.
pub struct ControllerProcess {
    child: Child,
    log_path: PathBuf,
}

impl ControllerProcess {
    /// Starts the controller binary with exactly `env` (plus `PATH`), in `workdir`, with
    /// `args`; stdout and stderr go to `<workdir>/<log_name>`.
    pub fn spawn(workdir: &Path, log_name: &str, env: &[(String, String)], args: &[&str]) -> Result<Self> {
        let log_path = workdir.join(log_name);
        let log = std::fs::File::create(&log_path).context("creating the controller log")?;
        let log_err = log.try_clone()?;
        let mut command = Command::new(env!("CARGO_BIN_EXE_orka-runner-controller"));
        command
            .args(args)
            .current_dir(workdir)
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_err)
            .kill_on_drop(true);
        let child = command.spawn().context("starting the controller binary")?;
        Ok(Self { child, log_path })
    }

    fn pid(&self) -> Result<Pid> {
        let id = self.child.id().context("the controller has already exited")?;
        Ok(Pid::from_raw(i32::try_from(id)?))
    }

    /// Sends SIGTERM.
    pub fn sigterm(&self) -> Result<()> {
        kill(self.pid()?, Signal::SIGTERM).context("sending SIGTERM")
    }

    /// Sends SIGKILL and reaps the process.
    pub async fn kill9(&mut self) -> Result<()> {
        kill(self.pid()?, Signal::SIGKILL).context("sending SIGKILL")?;
        self.child.wait().await?;
        Ok(())
    }

    /// Waits for the process to exit, failing after `limit`.
    pub async fn wait_exit(&mut self, limit: Duration) -> Result<ExitStatus> {
        match tokio::time::timeout(limit, self.child.wait()).await {
            Ok(status) => Ok(status?),
            Err(_) => bail!("the controller did not exit within {limit:?}; log:\n{}", self.log()),
        }
    }

    /// Where the process logs.
    pub fn log_path(&self) -> PathBuf {
        self.log_path.clone()
    }

    /// Everything the process has logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }
}

/// Polls `check` every 100 ms until it returns `Some`, failing after `limit` with `what`.
pub async fn eventually<T, F, Fut>(what: &str, limit: Duration, mut check: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if let Some(value) = check().await {
            return Ok(value);
        }
        if tokio::time::Instant::now() >= deadline {
            bail!("timed out after {limit:?} waiting for: {what}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
