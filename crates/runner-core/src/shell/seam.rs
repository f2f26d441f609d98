//! The VM shell seam.

use std::fmt;

use async_trait::async_trait;
use secrecy::SecretString;

use crate::{ProbeReport, ShellError};

/// Where to SSH to: the VM's (mapped) IP and its SSH node port.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SshTarget {
    /// Host or IP.
    pub host: String,
    /// The SSH port on `host`: for an Orka VM the node port mapped to its sshd, not 22.
    pub port: u16,
}

impl fmt::Display for SshTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.host, self.port)
    }
}

/// Output of a remote script.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScriptOutput {
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
    /// Exit status.
    pub exit_status: i32,
}

/// How to install and start a runner. `Debug` prints no JIT config.
#[derive(Clone)]
pub struct RunnerInstall {
    /// Runner version without a leading `v` (e.g. `2.328.0`).
    pub runner_version: String,
    /// Download URL template with `{version}` and `{arch}` (`x64` / `arm64`).
    pub download_url_template: String,
    /// The JIT config; reaches the runner over stdin, never argv or logs.
    pub jit_config: SecretString,
}

impl fmt::Debug for RunnerInstall {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RunnerInstall")
            .field("runner_version", &self.runner_version)
            .field("download_url_template", &self.download_url_template)
            .field("jit_config", &"[redacted]")
            .finish()
    }
}

/// Commands the controller runs inside VMs.
#[cfg_attr(any(test, feature = "mocks"), mockall::automock)]
#[async_trait]
pub trait VmShell: Send + Sync {
    /// Waits until the VM's SSH server answers (retrying within the implementation's
    /// readiness budget). The production shell waits for the server's SSH banner and does
    /// not log in: the command that follows is the first login, so wrong credentials
    /// surface there as a non-retryable [`ShellError::AuthFailed`]. An implementation may
    /// log in here instead; an auth failure must then end the wait at once.
    async fn wait_ready(&self, target: &SshTarget) -> Result<(), ShellError>;

    /// Reads setup sentinel, run sentinel and run.sh liveness in one round trip.
    async fn probe(&self, target: &SshTarget) -> Result<ProbeReport, ShellError>;

    /// Installs the runner (unless the right version is already there), writes the setup
    /// sentinel and starts run.sh detached from the SSH session with the JIT config.
    async fn install_and_start_runner(
        &self,
        target: &SshTarget,
        install: &RunnerInstall,
    ) -> Result<(), ShellError>;

    /// Stops a running run.sh (best effort; a missing runner is a success).
    async fn stop_runner(&self, target: &SshTarget) -> Result<(), ShellError>;

    /// The last `lines` lines of the runner's log on the VM.
    async fn tail_log(&self, target: &SshTarget, lines: u32) -> Result<String, ShellError>;

    /// Runs a script with `sh`; non-zero exit is returned in the output, not as an error.
    async fn run_script(&self, target: &SshTarget, script: &str) -> Result<ScriptOutput, ShellError>;
}
