//! Settings of the ssh2 shell: credentials, timeouts, concurrency cap, host-key policy and
//! the in-VM layout. It owns defaults; it does not read the environment (the binary does).

use std::path::PathBuf;
use std::time::Duration;

use secrecy::SecretString;

use crate::layout::VmLayout;

/// How to authenticate to a VM. `Debug` never prints a secret.
#[derive(Debug, Clone)]
pub enum SshAuth {
    /// Password authentication (`ORKA_VM_PASSWORD`, default `admin`).
    Password(SecretString),
    /// Private-key authentication from a PEM / OpenSSH key file (read once, at
    /// [`crate::Ssh2Shell::new`]).
    PrivateKey {
        /// Path of the private key file.
        path: PathBuf,
        /// Passphrase of an encrypted key.
        passphrase: Option<SecretString>,
    },
}

/// What to do with a VM's SSH host key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum HostKeyPolicy {
    /// Accept any host key (what every Orka integration does: VMs are fresh clones).
    #[default]
    AcceptAny,
    /// Trust on first use, per target, until [`crate::Ssh2Shell::forget_host_key`] is called
    /// (when the VM is deleted): a changed key fails with `HostKeyMismatch`.
    PinPerVm,
}

/// Settings of [`crate::Ssh2Shell`].
#[derive(Debug, Clone)]
pub struct SshConfig {
    /// VM user (`ORKA_VM_USERNAME`, default `admin`).
    pub username: String,
    /// How the probe authenticates as `username` (key or password).
    pub auth: SshAuth,
    /// TCP connect timeout (phase 1).
    pub connect_timeout: Duration,
    /// Budget of each protocol step — the wait for the server's banner (phase 1), key
    /// exchange and auth (phase 2), channel open — and the socket read/write timeout.
    pub io_timeout: Duration,
    /// Budget of a short command (probe, stop, log tail), from exec to exit status.
    pub command_timeout: Duration,
    /// Budget of installing and starting the runner (includes the download).
    pub install_timeout: Duration,
    /// Budget of [`crate::VmShell::run_script`].
    pub script_timeout: Duration,
    /// How long [`crate::VmShell::wait_ready`] keeps trying.
    pub ready_timeout: Duration,
    /// Pause between readiness attempts.
    pub ready_interval: Duration,
    /// Phase 1 (TCP connect + waiting for the SSH banner, async, no thread) of at most this
    /// many operations at once. A black hole only ever holds one of these.
    pub max_dialing: usize,
    /// Phase 2 (key exchange + authentication, the CPU-heavy part) of at most this many
    /// operations at once: what the controller's cores can handshake without every
    /// handshake missing its deadline.
    pub max_handshakes: usize,
    /// At most this many logged-in sessions at once, each on its own SSH thread (not
    /// tokio's blocking pool) from key exchange to exit status.
    pub max_concurrent: usize,
    /// How long an operation whose banner arrived may wait for a thread and a handshake
    /// slot. The deadlines of phase 2 start only once it has both.
    pub queue_timeout: Duration,
    /// Host-key policy.
    pub host_key_policy: HostKeyPolicy,
    /// Where things live inside the VM.
    pub layout: VmLayout,
}

impl SshConfig {
    /// Defaults for a user and credentials: the Go integration's layout for that user,
    /// 10 s connect, 20 s per protocol step, 60 s per short command, 15 min install,
    /// 5 min readiness polled every 3 s; 1024 dialing, four per core (at least eight) key
    /// exchanges and 128 sessions at once.
    pub fn new(username: impl Into<String>, auth: SshAuth) -> Self {
        let username = username.into();
        let layout = VmLayout::for_user(&username);
        SshConfig {
            username,
            auth,
            connect_timeout: Duration::from_secs(10),
            io_timeout: Duration::from_secs(20),
            command_timeout: Duration::from_secs(60),
            install_timeout: Duration::from_secs(15 * 60),
            script_timeout: Duration::from_secs(10 * 60),
            ready_timeout: Duration::from_secs(5 * 60),
            ready_interval: Duration::from_secs(3),
            max_dialing: 1024,
            max_handshakes: default_max_handshakes(),
            max_concurrent: 128,
            queue_timeout: Duration::from_secs(5 * 60),
            host_key_policy: HostKeyPolicy::AcceptAny,
            layout,
        }
    }

    /// `admin` / `admin`, the Go integration's defaults.
    pub fn admin_default() -> Self {
        SshConfig::new("admin", SshAuth::Password(SecretString::from("admin")))
    }

    /// The longest one operation whose command has `command_budget` can take, queueing
    /// included: connect, banner, queue, key exchange, auth and the command. A caller's
    /// own deadline around a whole operation must be at least this long, or a reachable
    /// VM that waited its turn for a key-exchange slot would be cut off for the wait.
    pub fn longest_operation(&self, command_budget: Duration) -> Duration {
        self.connect_timeout + self.io_timeout + self.queue_timeout + self.io_timeout * 2 + command_budget
    }

    /// Sets every step budget at once (connect, each protocol step, short commands) —
    /// handy for probes with a per-VM deadline.
    pub fn with_step_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self.io_timeout = timeout;
        self.command_timeout = timeout;
        self
    }
}

/// Key exchanges at once by default: four per core (at least eight). A handshake is a
/// few milliseconds of CPU; more at once only makes every one of them slower.
pub fn default_max_handshakes() -> usize {
    let cores = std::thread::available_parallelism().map_or(2, usize::from);
    (cores * 4).max(8)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_prints_the_password_or_passphrase() {
        let config = SshConfig::new("admin", SshAuth::Password(SecretString::from("hunter2-pw")));
        assert!(!format!("{config:?}").contains("hunter2-pw"));
        let auth =
            SshAuth::PrivateKey { path: "/k".into(), passphrase: Some(SecretString::from("hunter2-pass")) };
        assert!(!format!("{auth:?}").contains("hunter2-pass"));
    }

    #[test]
    fn defaults_follow_the_go_integration() {
        let config = SshConfig::admin_default();
        assert_eq!(config.username, "admin");
        assert_eq!(config.layout.runner_dir, "/Users/admin/actions-runner");
        assert_eq!(config.host_key_policy, HostKeyPolicy::AcceptAny);
    }
}
