//! SSH errors, naming the step that failed.

use std::fmt;
use std::time::Duration;

/// The step of an SSH operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SshStep {
    /// Waiting for a slot under the concurrency cap.
    Queue,
    /// TCP connect.
    Connect,
    /// SSH banner exchange and key exchange.
    Handshake,
    /// Host-key check (when pinning).
    HostKey,
    /// Password or key authentication.
    Auth,
    /// Opening the channel and starting the command.
    Exec,
    /// Writing stdin / reading output.
    Io,
    /// Waiting for the exit status.
    Exit,
}

impl fmt::Display for SshStep {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = match self {
            SshStep::Queue => "queue",
            SshStep::Connect => "connect",
            SshStep::Handshake => "handshake",
            SshStep::HostKey => "host key",
            SshStep::Auth => "auth",
            SshStep::Exec => "exec",
            SshStep::Io => "io",
            SshStep::Exit => "exit status",
        };
        f.write_str(name)
    }
}

/// What went wrong in an SSH operation. Never contains passwords or JIT configs.
#[derive(Debug, thiserror::Error)]
pub enum ShellError {
    /// A step did not finish in time.
    #[error("SSH to {target} timed out at {step} after {after:?}")]
    Timeout {
        /// `host:port`.
        target: String,
        /// The step that timed out.
        step: SshStep,
        /// The budget that ran out.
        after: Duration,
    },
    /// Authentication was rejected; retrying with the same credentials will not help.
    #[error("SSH authentication to {target} as {username} was rejected")]
    AuthFailed {
        /// `host:port`.
        target: String,
        /// The user name tried.
        username: String,
    },
    /// The host key changed while pinned.
    #[error("SSH host key of {target} changed")]
    HostKeyMismatch {
        /// `host:port`.
        target: String,
    },
    /// Another failure at a given step.
    #[error("SSH to {target} failed at {step}")]
    Failed {
        /// `host:port`.
        target: String,
        /// The step that failed.
        step: SshStep,
        /// The underlying error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// A remote script exited non-zero where success was required.
    #[error("remote command on {target} exited with {exit_status}")]
    RemoteFailed {
        /// `host:port`.
        target: String,
        /// The exit status.
        exit_status: i32,
        /// The last lines of stderr (never containing secrets we sent).
        stderr_tail: String,
    },
    /// Local configuration is unusable (key file unreadable, …).
    #[error("SSH configuration error: {0}")]
    Config(String),
}

impl ShellError {
    /// Whether trying again may help (connect and handshake failures while a VM boots).
    pub fn is_retryable(&self) -> bool {
        !matches!(
            self,
            ShellError::AuthFailed { .. } | ShellError::HostKeyMismatch { .. } | ShellError::Config(_)
        )
    }

    /// The step that failed, when it is known.
    pub fn step(&self) -> Option<SshStep> {
        match self {
            ShellError::Timeout { step, .. } | ShellError::Failed { step, .. } => Some(*step),
            ShellError::AuthFailed { .. } => Some(SshStep::Auth),
            ShellError::HostKeyMismatch { .. } => Some(SshStep::HostKey),
            ShellError::RemoteFailed { .. } => Some(SshStep::Exit),
            ShellError::Config(_) => None,
        }
    }
}
