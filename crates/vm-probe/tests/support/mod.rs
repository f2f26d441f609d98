//! Shared test support: quick SSH settings, key generation, bounded polling, the poll stub
//! and the real-sshd fixture (testkit's, with its [`SshTarget`]).
#![allow(dead_code)]

pub mod poll_stub;
pub use testkit::sshd;

use std::future::Future;
use std::path::{Path, PathBuf};
use std::time::Duration;

use vm_probe::{SshAuth, SshConfig, SshTarget, VmLayout};

/// Where the real-sshd fixture listens, as a vm-probe target.
pub trait SshdTarget {
    /// `127.0.0.1:<port>` of the sshd.
    fn target(&self) -> SshTarget;
}

impl SshdTarget for sshd::Sshd {
    fn target(&self) -> SshTarget {
        SshTarget { host: "127.0.0.1".into(), port: self.port }
    }
}

/// Settings with short budgets (tests bound their waits; they assert no speed).
pub fn quick_config(username: &str, auth: SshAuth, layout: VmLayout) -> SshConfig {
    let mut config = SshConfig::new(username, auth);
    config.connect_timeout = Duration::from_secs(3);
    config.io_timeout = Duration::from_secs(10);
    config.command_timeout = Duration::from_secs(30);
    config.install_timeout = Duration::from_secs(60);
    config.ready_timeout = Duration::from_secs(20);
    config.ready_interval = Duration::from_millis(200);
    config.layout = layout;
    config
}

/// Generates an ed25519 key pair with ssh-keygen; returns (private key path, public key line).
pub fn keygen(dir: &Path, name: &str) -> (PathBuf, String) {
    sshd::keygen(dir, name).expect("ssh-keygen generates a key pair")
}

/// Polls `check` every 100 ms until it yields `Some`, failing the test after `within`.
pub async fn eventually<T, F, Fut>(within: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + within;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(tokio::time::Instant::now() < deadline, "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Whether a process exists (and is not a zombie) on this host.
pub fn process_alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => !stat.rsplit(')').next().unwrap_or_default().trim_start().starts_with('Z'),
        Err(_) => false,
    }
}

/// `ps -eo args` of the whole host.
pub fn ps_all() -> String {
    let out = std::process::Command::new("ps").args(["-eww", "-o", "args"]).output().expect("ps runs");
    String::from_utf8_lossy(&out.stdout).into_owned()
}
