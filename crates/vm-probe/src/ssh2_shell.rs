//! [`Ssh2Shell`]: the [`VmShell`] seam on ssh2, in two phases per operation:
//!
//! 1. **dial** (async, `dial`): TCP connect and wait for the server's SSH banner, up to
//!    [`SshConfig::max_dialing`] at once. No thread and no CPU: a pass over hundreds of
//!    black holes costs one banner deadline and nothing else.
//! 2. **session** (on one of the shell's SSH threads, `threads`): key exchange and
//!    authentication under [`SshConfig::max_handshakes`] (what the cores can handshake in
//!    time), then the command, at most [`SshConfig::max_concurrent`] sessions at once.
//!
//! Each phase's deadlines start when the operation gets its slot, so a reachable VM
//! queued behind others for a handshake slot is never timed out for the wait. The SSH
//! threads are the shell's own pool, not tokio's blocking pool of the process: hundreds of
//! sessions stuck on slow VMs cannot starve DNS resolution or file I/O elsewhere. No session
//! outlives its operation and none is held across an `.await`. What the scripts say lives
//! in `script`; the wire in `session`.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use secrecy::{ExposeSecret, SecretString};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, oneshot};
use tokio::time::Instant;
use tracing::{debug, warn};

use crate::config::SshConfig;
use crate::session::{Credentials, Exec, HostKeyPins, Login, login};
use crate::threads::SshThreads;
use crate::{
    ProbeReport, RunnerInstall, ScriptOutput, ShellError, SshStep, SshTarget, VmShell, dial, script,
};

/// The production [`VmShell`]: ssh2 over blocking sockets, each session on one of the
/// shell's (reused) SSH threads.
pub struct Ssh2Shell {
    inner: Arc<Inner>,
    slots: Slots,
    threads: SshThreads,
}

struct Inner {
    config: SshConfig,
    credentials: Credentials,
    pins: HostKeyPins,
}

/// The three caps an operation passes through, in order.
struct Slots {
    dialing: Arc<Semaphore>,
    sessions: Arc<Semaphore>,
    handshakes: Arc<Semaphore>,
}

impl std::fmt::Debug for Ssh2Shell {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ssh2Shell").field("config", &self.inner.config).finish_non_exhaustive()
    }
}

impl Ssh2Shell {
    /// Builds the shell; reads the private key file now (a missing key is a
    /// [`ShellError::Config`] at startup, not at the first VM).
    pub fn new(config: SshConfig) -> Result<Self, ShellError> {
        for (name, value) in [
            ("max_dialing", config.max_dialing),
            ("max_handshakes", config.max_handshakes),
            ("max_concurrent", config.max_concurrent),
        ] {
            if value == 0 {
                return Err(ShellError::Config(format!("{name} must be at least 1")));
            }
        }
        let credentials = Credentials::load(&config.auth)?;
        let slots = Slots {
            dialing: Arc::new(Semaphore::new(config.max_dialing)),
            sessions: Arc::new(Semaphore::new(config.max_concurrent)),
            handshakes: Arc::new(Semaphore::new(config.max_handshakes)),
        };
        let threads = SshThreads::new(config.max_concurrent)
            .map_err(|e| ShellError::Config(format!("cannot start the SSH threads: {e}")))?;
        Ok(Ssh2Shell {
            inner: Arc::new(Inner { config, credentials, pins: HostKeyPins::default() }),
            slots,
            threads,
        })
    }

    /// The settings in use.
    pub fn config(&self) -> &SshConfig {
        &self.inner.config
    }

    /// Forgets the host key pinned for a target (call when its VM is deleted, since Orka
    /// reuses node IPs and ports). No-op under `HostKeyPolicy::AcceptAny`.
    pub fn forget_host_key(&self, target: &SshTarget) {
        self.inner.pins.forget(&target.to_string());
    }

    /// Connects, authenticates once and disconnects (no command).
    pub async fn check_login(&self, target: &SshTarget) -> Result<(), ShellError> {
        self.session(target, |_login| Ok(())).await
    }

    /// Phase 1 alone: the VM accepts TCP and its SSH server sends its banner. No key
    /// exchange, no login and no thread: readiness costs the controller no handshake, and
    /// the install that follows is the VM's first login.
    async fn answers(&self, target: &SshTarget) -> Result<(), ShellError> {
        let config = &self.inner.config;
        let _dialing = acquire(&self.slots.dialing, target, config.queue_timeout).await?;
        dial::dial(target, config.connect_timeout, config.io_timeout).await.map(drop)
    }

    /// Logs in and runs one command under `budget`.
    async fn exec(
        &self,
        target: &SshTarget,
        command: String,
        stdin: Option<SecretString>,
        budget: Duration,
    ) -> Result<ScriptOutput, ShellError> {
        self.session(target, move |login| {
            login.exec(&Exec { command: &command, stdin: stdin.as_ref(), budget })
        })
        .await
    }

    /// Phase 1 on this task, then phase 2 and `work` on a dedicated SSH thread.
    async fn session<T, F>(&self, target: &SshTarget, work: F) -> Result<T, ShellError>
    where
        T: Send + 'static,
        F: FnOnce(&Login) -> Result<T, ShellError> + Send + 'static,
    {
        let config = &self.inner.config;
        let tcp = {
            let _dialing = acquire(&self.slots.dialing, target, config.queue_timeout).await?;
            dial::dial(target, config.connect_timeout, config.io_timeout).await?
        };
        // One queue deadline for both waits: a thread, then a handshake slot.
        let queued = Instant::now();
        let session_slot = acquire(&self.slots.sessions, target, config.queue_timeout).await?;
        let left = config.queue_timeout.saturating_sub(queued.elapsed());
        let handshake_slot = acquire(&self.slots.handshakes, target, left).await.map_err(|e| match e {
            ShellError::Timeout { target, step, .. } => {
                ShellError::Timeout { target, step, after: config.queue_timeout }
            }
            other => other,
        })?;

        let inner = Arc::clone(&self.inner);
        let owned_target = target.clone();
        let (done, result) = oneshot::channel();
        self.threads.run(move || {
            let _session_slot = session_slot;
            let login = login(tcp, &owned_target, &inner.config, &inner.credentials, &inner.pins);
            drop(handshake_slot);
            let _ = done.send(login.and_then(|login| work(&login)));
        });
        result.await.map_err(|_| ShellError::Failed {
            target: target.to_string(),
            step: SshStep::Exec,
            source: "the SSH thread ended without an answer".into(),
        })?
    }
}

/// Waits up to `wait` for a slot of `cap`.
async fn acquire(
    cap: &Arc<Semaphore>,
    target: &SshTarget,
    wait: Duration,
) -> Result<OwnedSemaphorePermit, ShellError> {
    tokio::time::timeout(wait, Arc::clone(cap).acquire_owned())
        .await
        .map_err(|_| ShellError::Timeout { target: target.to_string(), step: SshStep::Queue, after: wait })?
        .map_err(|e| ShellError::Failed {
            target: target.to_string(),
            step: SshStep::Queue,
            source: e.into(),
        })
}

fn require_success(target: &SshTarget, output: ScriptOutput) -> Result<ScriptOutput, ShellError> {
    if output.exit_status == 0 {
        Ok(output)
    } else {
        Err(ShellError::RemoteFailed {
            target: target.to_string(),
            exit_status: output.exit_status,
            stderr_tail: tail_lines(&output.stderr, 20),
        })
    }
}

fn tail_lines(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// A version string safe to put in a path and a URL.
fn valid_version(version: &str) -> bool {
    !version.is_empty()
        && version.len() <= 64
        && version.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '+' | '_'))
}

#[async_trait]
impl VmShell for Ssh2Shell {
    async fn wait_ready(&self, target: &SshTarget) -> Result<(), ShellError> {
        let config = &self.inner.config;
        let deadline = Instant::now() + config.ready_timeout;
        let mut attempt = 0u32;
        loop {
            attempt += 1;
            match self.answers(target).await {
                Ok(()) => {
                    debug!(%target, attempt, "SSH ready");
                    return Ok(());
                }
                Err(e) if !e.is_retryable() => return Err(e),
                Err(e) => {
                    if Instant::now() + config.ready_interval >= deadline {
                        warn!(%target, attempt, error = &e as &dyn std::error::Error, "SSH never became ready");
                        return Err(e);
                    }
                    debug!(%target, attempt, error = &e as &dyn std::error::Error, "SSH not ready yet");
                    tokio::time::sleep(config.ready_interval).await;
                }
            }
        }
    }

    async fn probe(&self, target: &SshTarget) -> Result<ProbeReport, ShellError> {
        let config = &self.inner.config;
        let command = script::wrap(&script::probe(&config.layout));
        let output = self.exec(target, command, None, config.command_timeout).await?;
        let output = require_success(target, output)?;
        script::parse_probe(&output.stdout).ok_or_else(|| ShellError::Failed {
            target: target.to_string(),
            step: SshStep::Io,
            source: "the probe printed no answer line".into(),
        })
    }

    async fn install_and_start_runner(
        &self,
        target: &SshTarget,
        install: &RunnerInstall,
    ) -> Result<(), ShellError> {
        if !valid_version(&install.runner_version) {
            return Err(ShellError::Config(format!("invalid runner version {:?}", install.runner_version)));
        }
        let jit = install.jit_config.expose_secret();
        if jit.is_empty() || jit.contains(['\n', '\r']) {
            // Sent as one line on stdin; never echo it.
            return Err(ShellError::Config("the JIT config must be one non-empty line".into()));
        }
        let config = &self.inner.config;
        let command = script::wrap(&script::install_and_start(
            &config.layout,
            &install.runner_version,
            &install.download_url_template,
        ));
        let output =
            self.exec(target, command, Some(install.jit_config.clone()), config.install_timeout).await?;
        let output = require_success(target, output)?;
        debug!(%target, output = %output.stdout.trim_end(), "runner started");
        Ok(())
    }

    async fn stop_runner(&self, target: &SshTarget) -> Result<(), ShellError> {
        let config = &self.inner.config;
        let command = script::wrap(&script::stop(&config.layout));
        let output = self.exec(target, command, None, config.command_timeout).await?;
        require_success(target, output).map(drop)
    }

    async fn tail_log(&self, target: &SshTarget, lines: u32) -> Result<String, ShellError> {
        let config = &self.inner.config;
        let command = script::wrap(&script::tail_log(&config.layout, lines));
        let output = self.exec(target, command, None, config.command_timeout).await?;
        Ok(require_success(target, output)?.stdout)
    }

    async fn run_script(&self, target: &SshTarget, script_text: &str) -> Result<ScriptOutput, ShellError> {
        let config = &self.inner.config;
        self.exec(target, script::wrap(script_text), None, config.script_timeout).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_are_checked_before_reaching_a_shell() {
        assert!(valid_version("2.328.0"));
        assert!(!valid_version("2.3; rm -rf /"));
        assert!(!valid_version(""));
    }

    #[test]
    fn stderr_tail_keeps_the_last_lines() {
        assert_eq!(tail_lines("a\nb\nc\n", 2), "b\nc");
    }

    #[tokio::test]
    async fn a_multi_line_jit_config_is_refused_without_echoing_it() {
        let shell = Ssh2Shell::new(SshConfig::admin_default()).unwrap();
        let install = RunnerInstall {
            runner_version: "2.328.0".into(),
            download_url_template: "http://127.0.0.1:9/{version}/{arch}".into(),
            jit_config: SecretString::from("secret-line-1\nsecret-line-2"),
        };
        let target = SshTarget { host: "127.0.0.1".into(), port: 9 };
        let err = shell.install_and_start_runner(&target, &install).await.unwrap_err();
        assert!(matches!(err, ShellError::Config(_)));
        assert!(!err.to_string().contains("secret-line"));
    }

    #[tokio::test]
    async fn zero_concurrency_is_a_configuration_error() {
        let mut config = SshConfig::admin_default();
        config.max_concurrent = 0;
        assert!(matches!(Ssh2Shell::new(config), Err(ShellError::Config(_))));
    }
}
