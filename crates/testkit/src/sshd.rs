//! A real OpenSSH sshd for tests: `/usr/sbin/sshd -D -e -f <temp config>` on a free
//! loopback port, with key auth for the current user, its host key / `authorized_keys` /
//! pid file / log in a temp dir, killed on drop ([`Sshd`]). And [`SshdVmHost`], a
//! [`crate::orka::VmProvider`] whose VMs are such sshds, so the real provisioning script
//! runs in a real shell.
//!
//! Where sshd is missing, tests skip loudly ([`skip_or_fail`]); under `CI=true` that is a
//! failure instead, so CI never silently stops exercising the real thing.
//!
//! Not here: the in-process SSH servers of the fake VMs ([`crate::vm`]), or any SSH client.

mod host;
#[cfg(test)]
mod tests;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{Context as _, bail};

pub use host::{HOST_LOCK, HostLock, SshdVmHost, clean_vm_files, vm_paths};

/// Where OpenSSH's server is expected.
pub const SSHD: &str = "/usr/sbin/sshd";

/// What an [`Sshd`] accepts and sets up beyond its defaults.
#[derive(Debug, Clone, Default)]
pub struct SshdOptions {
    /// Public keys (OpenSSH one-line format) authorized besides the fixture's own client key.
    pub authorized_keys: Vec<String>,
    /// Environment variables sshd sets in every session it starts (`SetEnv`).
    pub set_env: Vec<(String, String)>,
}

/// A running sshd, killed (with its session processes) when dropped.
pub struct Sshd {
    child: Child,
    /// The loopback port it listens on (`127.0.0.1`).
    pub port: u16,
    /// Its scratch directory: config, host key, client key, `authorized_keys`, log.
    pub dir: tempfile::TempDir,
    /// The user sshd runs commands as for key auth (the current user).
    pub user: String,
    /// A private key (no passphrase) authorized for `user`.
    pub key_path: PathBuf,
}

impl std::fmt::Debug for Sshd {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sshd").field("port", &self.port).field("user", &self.user).finish_non_exhaustive()
    }
}

/// Whether the tests run under CI (`CI=true` or `CI=1`): skipping is then a failure.
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

/// Skips (loudly, on stderr) or, under `CI=true`, panics with `reason`.
pub fn skip_or_fail(reason: &str) {
    if in_ci() {
        panic!("CI=true and the real-sshd test cannot run: {reason}");
    }
    eprintln!(
        "\n!!!!! SKIPPED real-sshd test: {reason} (set up openssh-server; CI=true makes this a failure) !!!!!\n"
    );
}

/// Whether OpenSSH's server is installed at [`SSHD`].
pub fn sshd_installed() -> bool {
    Path::new(SSHD).exists()
}

/// Whether the tests run as root.
pub fn is_root() -> bool {
    current_user() == "root"
}

/// The current user's name (`id -un`).
pub fn current_user() -> String {
    let out = Command::new("id").arg("-un").output().expect("`id -un` runs");
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// Generates an ed25519 key pair without passphrase with `ssh-keygen` as `dir/name`;
/// returns (private key path, public key line).
pub fn keygen(dir: &Path, name: &str) -> anyhow::Result<(PathBuf, String)> {
    let path = dir.join(name);
    let status = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", "testkit-sshd", "-f"])
        .arg(&path)
        .stdin(Stdio::null())
        .status()
        .context("running ssh-keygen")?;
    if !status.success() {
        bail!("ssh-keygen failed: {status}");
    }
    let public = std::fs::read_to_string(path.with_extension("pub")).context("reading the public key")?;
    Ok((path, public.trim().to_owned()))
}

fn free_port() -> std::io::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

impl Sshd {
    /// Starts sshd with the defaults, or returns `None` after a loud skip message when it
    /// is not installed (panics instead under `CI=true`). Panics when it cannot start.
    pub fn start() -> Option<Sshd> {
        Self::start_with(SshdOptions::default())
    }

    /// [`Sshd::start`] with `options`.
    pub fn start_with(options: SshdOptions) -> Option<Sshd> {
        if !sshd_installed() {
            skip_or_fail(&format!("{SSHD} not found"));
            return None;
        }
        Some(Self::try_start(options).unwrap_or_else(|e| panic!("{e:#}")))
    }

    /// Starts sshd (blocking until it listens, a few seconds at most); an error when it is
    /// not installed or does not come up (with its log).
    pub fn try_start(options: SshdOptions) -> anyhow::Result<Sshd> {
        if !sshd_installed() {
            bail!("{SSHD} not found (install openssh-server)");
        }
        let dir = tempfile::Builder::new().prefix("testkit-sshd-").tempdir()?;
        let host_key = dir.path().join("host_key");
        let status = Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "", "-f"])
            .arg(&host_key)
            .stdin(Stdio::null())
            .status()
            .context("running ssh-keygen")?;
        if !status.success() {
            bail!("ssh-keygen (host key) failed: {status}");
        }
        let (key_path, public) = keygen(dir.path(), "client_key")?;
        let mut authorized = vec![public];
        authorized.extend(options.authorized_keys.iter().cloned());
        std::fs::write(dir.path().join("authorized_keys"), authorized.join("\n") + "\n")?;
        if is_root() {
            // OpenSSH's privilege-separation directory.
            let _ = std::fs::create_dir_all("/run/sshd");
        }
        let set_env: String = options.set_env.iter().map(|(k, v)| format!("SetEnv {k}=\"{v}\"\n")).collect();
        for _attempt in 0..5 {
            let port = free_port()?;
            let config = dir.path().join("sshd_config");
            std::fs::write(
                &config,
                format!(
                    "Port {port}\nListenAddress 127.0.0.1\nHostKey {hk}\nPidFile {dir}/sshd.pid\n\
                     AuthorizedKeysFile {dir}/authorized_keys\nUsePAM no\nStrictModes no\n\
                     PasswordAuthentication yes\nPubkeyAuthentication yes\nKbdInteractiveAuthentication no\n\
                     PermitRootLogin yes\nMaxStartups 500:30:1000\nMaxSessions 100\nLogLevel ERROR\n{set_env}",
                    hk = host_key.display(),
                    dir = dir.path().display(),
                ),
            )?;
            let log = std::fs::File::create(dir.path().join("sshd.log"))?;
            let mut child = Command::new(SSHD)
                .args(["-D", "-e", "-f"])
                .arg(&config)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(log)
                .spawn()
                .context("starting sshd")?;
            // Wait until it listens (or exits, e.g. when the port was taken meanwhile).
            for _ in 0..100 {
                if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                    return Ok(Sshd { child, port, dir, user: current_user(), key_path });
                }
                if child.try_wait().ok().flatten().is_some() {
                    break;
                }
                std::thread::park_timeout(Duration::from_millis(50));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        let log = std::fs::read_to_string(dir.path().join("sshd.log")).unwrap_or_default();
        bail!("sshd did not start listening; its log:\n{log}")
    }

    /// The listener's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// sshd's own log (for failure messages).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("sshd.log")).unwrap_or_default()
    }

    /// Kills the per-connection sshd processes (and so closes every session), then the
    /// listener. Processes started in sessions that detached from them survive this.
    pub fn stop(&mut self) {
        let children = host::children_of(self.child.id());
        host::kill_pids(&children);
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Sshd {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A local user with a password, for password auth (root only; `None` = cannot here).
pub fn password_user() -> Option<(String, String)> {
    if !is_root() {
        return None;
    }
    const USER: &str = "orka-ssh-test";
    let exists =
        Command::new("id").arg(USER).stdout(Stdio::null()).stderr(Stdio::null()).status().ok()?.success();
    if !exists {
        let status = Command::new("useradd").args(["-M", "-d", "/", "-s", "/bin/sh", USER]).status().ok()?;
        if !status.success() {
            return None;
        }
    }
    let password = format!("pw-{}", uuid::Uuid::new_v4().simple());
    let mut chpasswd = Command::new("chpasswd").stdin(Stdio::piped()).spawn().ok()?;
    {
        use std::io::Write;
        chpasswd.stdin.take()?.write_all(format!("{USER}:{password}\n").as_bytes()).ok()?;
    }
    chpasswd.wait().ok()?.success().then(|| (USER.to_owned(), password))
}

/// Locks the password of [`password_user`]'s user again.
pub fn lock_password_user() {
    let _ = Command::new("usermod").args(["-L", "orka-ssh-test"]).status();
}
