//! A real OpenSSH sshd for tests: `/usr/sbin/sshd -D -e -f <temp config>` on a free
//! loopback port, host key / authorized_keys / pid file in a temp dir, killed by pid on
//! drop. Missing sshd: a loud skip, or a failure under `CI=true`.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

const SSHD: &str = "/usr/sbin/sshd";

/// A running sshd.
pub struct Sshd {
    child: Child,
    pub port: u16,
    pub dir: tempfile::TempDir,
    /// The user sshd runs commands as for key auth (the current user).
    pub user: String,
    /// Private key authorized for `user`.
    pub key_path: PathBuf,
}

fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

/// Skips (loudly) or, under CI=true, fails.
pub fn skip_or_fail(reason: &str) {
    if in_ci() {
        panic!("CI=true and the real-sshd test cannot run: {reason}");
    }
    eprintln!(
        "\n!!!!! SKIPPED real-sshd test: {reason} (set up openssh-server; CI=true makes this a failure) !!!!!\n"
    );
}

pub fn is_root() -> bool {
    current_user() == "root"
}

fn current_user() -> String {
    let out = Command::new("id").arg("-un").output().expect("id runs");
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

impl Sshd {
    /// Starts sshd, or returns `None` after a loud skip message when it is not installed
    /// (panics instead under CI=true).
    pub fn start() -> Option<Sshd> {
        if !Path::new(SSHD).exists() {
            skip_or_fail(&format!("{SSHD} not found"));
            return None;
        }
        let dir = tempfile::Builder::new().prefix("vm-probe-sshd-").tempdir().unwrap();
        let host_key = dir.path().join("host_key");
        let status = Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "", "-f"])
            .arg(&host_key)
            .status()
            .expect("ssh-keygen runs");
        assert!(status.success());
        let (key_path, public) = super::keygen(dir.path(), "client_key");
        std::fs::write(dir.path().join("authorized_keys"), format!("{public}\n")).unwrap();
        if is_root() {
            // OpenSSH's privilege-separation directory.
            let _ = std::fs::create_dir_all("/run/sshd");
        }
        for _attempt in 0..5 {
            let port = free_port();
            let config = dir.path().join("sshd_config");
            std::fs::write(
                &config,
                format!(
                    "Port {port}\nListenAddress 127.0.0.1\nHostKey {hk}\nPidFile {dir}/sshd.pid\n\
                     AuthorizedKeysFile {dir}/authorized_keys\nUsePAM no\nStrictModes no\n\
                     PasswordAuthentication yes\nPubkeyAuthentication yes\nKbdInteractiveAuthentication no\n\
                     PermitRootLogin yes\nMaxStartups 500:30:1000\nMaxSessions 100\nLogLevel ERROR\n",
                    hk = host_key.display(),
                    dir = dir.path().display(),
                ),
            )
            .unwrap();
            let log = std::fs::File::create(dir.path().join("sshd.log")).unwrap();
            let mut child = Command::new(SSHD)
                .args(["-D", "-e", "-f"])
                .arg(&config)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(log)
                .spawn()
                .expect("sshd starts");
            // Wait until it listens (or exits, e.g. when the port was taken meanwhile).
            for _ in 0..100 {
                if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                    return Some(Sshd { child, port, dir, user: current_user(), key_path });
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
        panic!("sshd did not start listening; its log:\n{log}");
    }

    pub fn target(&self) -> vm_probe::SshTarget {
        vm_probe::SshTarget { host: "127.0.0.1".into(), port: self.port }
    }

    /// sshd's own log (for failure messages).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("sshd.log")).unwrap_or_default()
    }
}

impl Drop for Sshd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
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
    let password = format!("pw-{}", uuid_like());
    let mut chpasswd = Command::new("chpasswd").stdin(Stdio::piped()).spawn().ok()?;
    {
        use std::io::Write;
        chpasswd.stdin.take()?.write_all(format!("{USER}:{password}\n").as_bytes()).ok()?;
    }
    chpasswd.wait().ok()?.success().then(|| (USER.to_owned(), password))
}

/// Locks the test user's password again.
pub fn lock_password_user() {
    let _ = Command::new("usermod").args(["-L", "orka-ssh-test"]).status();
}

fn uuid_like() -> String {
    use std::hash::{BuildHasher, Hasher};
    let mut out = String::new();
    for _ in 0..2 {
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u128(std::process::id() as u128);
        out.push_str(&format!("{:016x}", h.finish()));
    }
    out
}
