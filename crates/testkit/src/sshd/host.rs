//! [`SshdVmHost`]: a [`VmProvider`] whose VMs are real OpenSSH sshds on loopback, so the
//! controller's real provisioning script runs in a real shell and its runner really
//! detaches.
//!
//! **Only one VM at a time.** These VMs share the host's real file system and use the
//! Go integration's in-VM layout verbatim (`/Users/<user>/actions-runner`,
//! `/tmp/orka-runner-setup-complete`, `/tmp/orka-runner-run-complete`,
//! `/tmp/orka-runner.pid`, `/tmp/orka-runner-exit-code`, `/tmp/orka-runner.log`), so two
//! of them would see each other's runner. [`VmProvider::boot`] waits (up to
//! [`SshdVmHost::SLOT_WAIT`]) for the previous VM to be destroyed, then fails; and an
//! [`SshdVmHost`] holds a [`HostLock`] (an exclusive `flock` on [`HOST_LOCK`]) for its
//! whole life, so hosts in concurrent test processes take turns. Within one process the
//! lock is shared: run one real-sshd world at a time there (one test function). Use them
//! with `MAX_RUNNERS=1` and a one-VM Orka; everything they touch is listed by [`vm_paths`].
//!
//! Destroying a VM kills its sshd, every process its sessions started (sshd tags them
//! with [`MARKER_VAR`] via `SetEnv`), the process group in the pid file, any process
//! running the VM's `run.sh`, and removes the VM's files.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Weak};
use std::time::Duration;

use anyhow::{Context as _, bail};
use async_trait::async_trait;
use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg};
use tokio::sync::Mutex;

use super::{Sshd, SshdOptions, current_user, keygen, sshd_installed};
use crate::orka::VmProvider;
use crate::vm::MARKER_VAR;
use crate::vm::process::kill_all;

/// The lock file every [`SshdVmHost`] holds exclusively while it exists.
pub const HOST_LOCK: &str = "/tmp/testkit-real-sshd-vms.lock";

/// The Go integration's runner directory for `user` (docs/compatibility.md#vm-layout).
fn runner_dir(user: &str) -> PathBuf {
    PathBuf::from(format!("/Users/{user}/actions-runner"))
}

/// The files of the Go integration's layout outside the runner directory, with the
/// `.tmp` files the launcher writes before renaming.
const TMP_FILES: [&str; 7] = [
    "/tmp/orka-runner-setup-complete",
    "/tmp/orka-runner-run-complete",
    "/tmp/orka-runner.pid",
    "/tmp/orka-runner.pid.tmp",
    "/tmp/orka-runner-exit-code",
    "/tmp/orka-runner-exit-code.tmp",
    "/tmp/orka-runner.log",
];

/// Every host path a real-sshd VM of `user` writes: the runner directory first, then the
/// sentinel, pid, exit-code and log files in `/tmp`.
pub fn vm_paths(user: &str) -> Vec<PathBuf> {
    std::iter::once(runner_dir(user)).chain(TMP_FILES.iter().map(PathBuf::from)).collect()
}

/// Kills any runner a real-sshd VM of `user` left (the process group in the pid file, any
/// process running its `run.sh`) and removes [`vm_paths`]. For tests, before and after.
pub fn clean_vm_files(user: &str) {
    kill_runner(user);
    for path in vm_paths(user) {
        let _ = if path.is_dir() { std::fs::remove_dir_all(&path) } else { std::fs::remove_file(&path) };
    }
}

/// SIGKILL to the process group of the pid in the pid file and to every process whose
/// command line runs the VM's `run.sh`.
fn kill_runner(user: &str) {
    if let Some(pid) =
        std::fs::read_to_string("/tmp/orka-runner.pid").ok().and_then(|s| s.trim().parse().ok())
    {
        if let Some(group) = process_group(pid).filter(|g| *g > 1) {
            let _ = std::process::Command::new("kill")
                .args(["-KILL", "--", &format!("-{group}")])
                .stderr(std::process::Stdio::null())
                .status();
        }
        kill_pids(&[pid]);
    }
    let run_sh = runner_dir(user).join("run.sh");
    kill_pids(&pids_running(&run_sh));
}

/// The process group of `pid` (Linux `/proc`; `None` elsewhere or when it is gone).
fn process_group(pid: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // After "pid (comm) ": state ppid pgrp …; comm may hold spaces and parentheses.
    stat.rsplit_once(')')?.1.split_whitespace().nth(2)?.parse().ok()
}

/// Processes with `path` as one of their arguments (Linux `/proc`).
fn pids_running(path: &Path) -> Vec<u32> {
    let needle = path.as_os_str().as_encoded_bytes();
    proc_pids()
        .into_iter()
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .map(|cmdline| cmdline.split(|b| *b == 0).any(|arg| arg == needle))
                .unwrap_or(false)
        })
        .collect()
}

/// Direct children of `parent` (Linux `/proc`).
pub(super) fn children_of(parent: u32) -> Vec<u32> {
    proc_pids().into_iter().filter(|pid| process_parent(*pid) == Some(parent)).collect()
}

fn process_parent(pid: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rsplit_once(')')?.1.split_whitespace().nth(1)?.parse().ok()
}

fn proc_pids() -> Vec<u32> {
    let me = std::process::id();
    let Ok(entries) = std::fs::read_dir("/proc") else { return Vec::new() };
    entries
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| *pid != me)
        .collect()
}

/// SIGKILL to `pids` (absent ones ignored).
pub(super) fn kill_pids(pids: &[u32]) {
    if pids.is_empty() {
        return;
    }
    let _ = std::process::Command::new("kill")
        .arg("-KILL")
        .args(pids.iter().map(u32::to_string))
        .stderr(std::process::Stdio::null())
        .status();
}

/// Exclusive use of this machine's real-sshd VM paths among processes: an exclusive
/// `flock` on [`HOST_LOCK`], released when the last clone in this process is dropped.
/// Within one process it is shared, not exclusive: [`HostLock::acquire`] returns the live
/// lock if there is one. Hold it around cleaning [`vm_paths`] in a test, so the cleaning
/// never hits another process's VM.
#[derive(Clone)]
pub struct HostLock {
    _flock: Arc<Flock<File>>,
}

impl std::fmt::Debug for HostLock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("HostLock")
    }
}

/// This process's live lock, if any.
static CURRENT_LOCK: std::sync::Mutex<Weak<Flock<File>>> = std::sync::Mutex::new(Weak::new());

impl HostLock {
    /// How long [`HostLock::acquire`] waits for another process to release the lock.
    pub const WAIT: Duration = Duration::from_secs(300);

    /// Takes the lock (or shares this process's), waiting up to [`HostLock::WAIT`] for
    /// another process to release it.
    pub async fn acquire() -> anyhow::Result<HostLock> {
        if let Some(live) = CURRENT_LOCK.lock().unwrap_or_else(|p| p.into_inner()).upgrade() {
            return Ok(HostLock { _flock: live });
        }
        let lock = Arc::new(lock_host(Self::WAIT).await?);
        *CURRENT_LOCK.lock().unwrap_or_else(|p| p.into_inner()) = Arc::downgrade(&lock);
        Ok(HostLock { _flock: lock })
    }
}

/// Takes the exclusive lock on [`HOST_LOCK`], polling until `wait` has passed.
async fn lock_host(wait: Duration) -> anyhow::Result<Flock<File>> {
    let deadline = tokio::time::Instant::now() + wait;
    let mut file = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(HOST_LOCK)
        .with_context(|| format!("opening {HOST_LOCK}"))?;
    loop {
        match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
            Ok(lock) => return Ok(lock),
            Err((back, Errno::EWOULDBLOCK)) if tokio::time::Instant::now() < deadline => file = back,
            Err((_, Errno::EWOULDBLOCK)) => {
                bail!("another real-sshd VM host held {HOST_LOCK} for more than {wait:?}")
            }
            Err((_, errno)) => bail!("locking {HOST_LOCK}: {errno}"),
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// One VM: its sshd, its session marker and the directories its boot created.
struct SshdVm {
    name: String,
    sshd: Sshd,
    marker: String,
    created_dirs: Vec<PathBuf>,
}

impl SshdVm {
    /// Kills everything the VM runs and removes its files (blocking).
    fn tear_down(mut self) {
        self.sshd.stop();
        kill_all(&self.marker, &[]);
        clean_vm_files(&self.sshd.user);
        for dir in self.created_dirs.iter().rev() {
            // Only if empty: never remove what someone else put there.
            let _ = std::fs::remove_dir(dir);
        }
    }
}

/// Boots VMs as real sshds on `127.0.0.1` that accept one client key for the current user
/// (see the module docs: one VM at a time). Dropping it destroys the VM still running.
pub struct SshdVmHost {
    _host_lock: HostLock,
    user: String,
    keys: tempfile::TempDir,
    key_path: PathBuf,
    public_key: String,
    vm: Mutex<Option<SshdVm>>,
}

impl std::fmt::Debug for SshdVmHost {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SshdVmHost")
            .field("user", &self.user)
            .field("keys", &self.keys.path())
            .finish_non_exhaustive()
    }
}

impl SshdVmHost {
    /// How long [`VmProvider::boot`] waits for the previous VM to be destroyed.
    pub const SLOT_WAIT: Duration = Duration::from_secs(30);

    /// A host for the current user, with a fresh client key pair, once no other process
    /// holds the [`HostLock`]. Fails when sshd is not installed or another process holds
    /// the lock longer than [`HostLock::WAIT`].
    pub async fn new() -> anyhow::Result<Self> {
        if !sshd_installed() {
            bail!("{} not found (install openssh-server)", super::SSHD);
        }
        let host_lock = HostLock::acquire().await?;
        let keys = tempfile::Builder::new().prefix("testkit-sshd-vms-").tempdir()?;
        let (key_path, public_key) = keygen(keys.path(), "vm_key")?;
        Ok(Self {
            _host_lock: host_lock,
            user: current_user(),
            keys,
            key_path,
            public_key,
            vm: Mutex::new(None),
        })
    }

    /// The login user of the VMs (the current user): `ORKA_VM_USERNAME`.
    pub fn username(&self) -> &str {
        &self.user
    }

    /// The private key every VM accepts: `ORKA_VM_SSH_KEY_PATH`.
    pub fn key_path(&self) -> &Path {
        &self.key_path
    }

    /// The name of the VM running now, if any.
    pub async fn running(&self) -> Option<String> {
        self.vm.lock().await.as_ref().map(|vm| vm.name.clone())
    }

    /// Creates `/Users/<user>` (a macOS VM has its home there); returns the directories
    /// it had to create, outermost first.
    fn create_home(&self) -> anyhow::Result<Vec<PathBuf>> {
        let mut created = Vec::new();
        for dir in [PathBuf::from("/Users"), PathBuf::from(format!("/Users/{}", self.user))] {
            if !dir.exists() {
                std::fs::create_dir(&dir)
                    .with_context(|| format!("creating {} (real-sshd VMs need it)", dir.display()))?;
                created.push(dir);
            }
        }
        Ok(created)
    }
}

#[async_trait]
impl VmProvider for SshdVmHost {
    async fn boot(&self, vm_name: &str) -> anyhow::Result<(String, u16)> {
        let deadline = tokio::time::Instant::now() + Self::SLOT_WAIT;
        let mut slot = loop {
            let slot = self.vm.lock().await;
            match slot.as_ref() {
                None => break slot,
                Some(vm) if vm.name == vm_name => bail!("VM {vm_name} is already booted"),
                Some(vm) if tokio::time::Instant::now() >= deadline => bail!(
                    "only one real-sshd VM may exist at a time (they share this host's files); {} still exists",
                    vm.name
                ),
                Some(_) => {}
            }
            drop(slot);
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        let user = self.user.clone();
        let marker = uuid::Uuid::new_v4().simple().to_string();
        let options = SshdOptions {
            authorized_keys: vec![self.public_key.clone()],
            set_env: vec![(MARKER_VAR.to_owned(), marker.clone())],
        };
        let created_dirs = self.create_home()?;
        let started = tokio::task::spawn_blocking(move || {
            // A fresh VM: nothing of an earlier one.
            clean_vm_files(&user);
            Sshd::try_start(options)
        })
        .await?;
        let sshd = match started {
            Ok(sshd) => sshd,
            Err(e) => {
                for dir in created_dirs.iter().rev() {
                    let _ = std::fs::remove_dir(dir);
                }
                return Err(e);
            }
        };
        let port = sshd.port;
        tracing::debug!(vm = vm_name, port, "real-sshd VM booted");
        *slot = Some(SshdVm { name: vm_name.to_owned(), sshd, marker, created_dirs });
        Ok(("127.0.0.1".to_owned(), port))
    }

    async fn destroy(&self, vm_name: &str) {
        let mut slot = self.vm.lock().await;
        if slot.as_ref().is_none_or(|vm| vm.name != vm_name) {
            return;
        }
        if let Some(vm) = slot.take() {
            // Killing processes and removing files is blocking work; the slot stays
            // locked meanwhile so the next boot starts on a clean host.
            let _ = tokio::task::spawn_blocking(move || vm.tear_down()).await;
            tracing::debug!(vm = vm_name, "real-sshd VM destroyed");
        }
    }
}

impl Drop for SshdVmHost {
    fn drop(&mut self) {
        if let Some(vm) = self.vm.get_mut().take() {
            vm.tear_down();
        }
    }
}
