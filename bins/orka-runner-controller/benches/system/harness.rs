//! The pieces every scenario shares: a simulated world sized for a benchmark (fake GitHub,
//! fake Orka, fake VMs, runner downloads on loopback), the real controller binary as a
//! child process, and bounded waiting. Owns assembly and process control; no measurement
//! policy.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::OnceLock;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use testkit::vm::FakeVmConfig;
use testkit::world::{World, WorldConfig};
use tokio::process::{Child, Command};
use tokio::time::Instant;

use crate::procfs::{self, Usage};

/// Where controller logs go instead of each scenario's temporary directory
/// (`--keep-logs DIR`), so a run's timeline can be read afterwards.
static KEPT_LOGS: OnceLock<PathBuf> = OnceLock::new();

/// Keeps every controller log of this run in `dir` (created if missing), each named
/// `<scenario log name>-<pid of the benchmark>-<sequence>.log`.
pub fn keep_logs_in(dir: PathBuf) -> Result<()> {
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let _ = KEPT_LOGS.set(dir);
    Ok(())
}

/// The path of a controller log: in the scenario's directory, or the kept-logs one.
fn log_path(dir: &Path, log_name: &str) -> PathBuf {
    static SEQUENCE: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    match KEPT_LOGS.get() {
        Some(kept) => {
            let n = SEQUENCE.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let stem = log_name.trim_end_matches(".log");
            kept.join(format!("{stem}-{}-{n}.log", std::process::id()))
        }
        None => dir.join(log_name),
    }
}

/// VM slots per fake Orka node in benchmark worlds.
const VMS_PER_NODE: u32 = 8;

/// Shape of a benchmark world.
#[derive(Debug, Clone)]
pub struct WorldSpec {
    /// VM slots the fake Orka must offer.
    pub capacity: usize,
    /// Fake Orka deploy latency (the VM is `Running` this long after the deploy request).
    pub deploy_latency: Duration,
    /// `FAKE_RUNNER_POLL_INTERVAL` of the fake runners (seconds, as `sleep` takes it).
    pub runner_poll: String,
    /// A session without activity expires after this.
    pub session_idle_expiry: Duration,
}

impl Default for WorldSpec {
    fn default() -> Self {
        Self {
            capacity: 8,
            deploy_latency: Duration::from_millis(300),
            runner_poll: "0.2".into(),
            session_idle_expiry: Duration::from_secs(4),
        }
    }
}

/// Starts a world like `World::start`, with room for `spec.capacity` VMs, every job
/// message of a burst in one message (`max_batch` 1000), a runner lease well above the
/// fake runners' poll interval, and fake runners polling every `spec.runner_poll`.
pub async fn start_world(spec: &WorldSpec) -> Result<World> {
    let poll_secs: f64 = spec.runner_poll.parse().context("runner poll interval")?;
    let runner_lease = Duration::from_secs_f64((poll_secs * 6.0).max(5.0));
    let nodes = spec.capacity.div_ceil(VMS_PER_NODE as usize).max(1);
    let world = World::start(WorldConfig {
        nodes,
        vms_per_node: VMS_PER_NODE,
        boot_delay: spec.deploy_latency,
        long_poll_hold: Duration::from_millis(500),
        session_idle_expiry: spec.session_idle_expiry,
        runner_lease,
        ..WorldConfig::default()
    })
    .await?;
    world.github.set_max_batch(1000);
    world.vms.set_config(FakeVmConfig {
        env: vec![("FAKE_RUNNER_POLL_INTERVAL".into(), spec.runner_poll.clone())],
        ..FakeVmConfig::default()
    });
    Ok(world)
}

/// The controller binary under measurement, as a child process. Killed when dropped.
pub struct Controller {
    child: Child,
    pid: u32,
    log_path: PathBuf,
    /// When it was spawned.
    pub started: Instant,
}

impl Controller {
    /// Spawns `orka-runner-controller <args>` with the world's environment plus `extra`
    /// (later entries win), logging to `<dir>/<log_name>`; stdout is captured when
    /// `capture_stdout`.
    pub fn spawn(
        world: &World,
        dir: &Path,
        log_name: &str,
        args: &[&str],
        extra: &[(&str, &str)],
        capture_stdout: bool,
    ) -> Result<Self> {
        let mut env = world.controller_env();
        env.extend(extra.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())));
        let log_path = log_path(dir, log_name);
        let log = std::fs::File::create(&log_path).context("creating the controller log")?;
        let stdout = if capture_stdout { Stdio::piped() } else { Stdio::from(log.try_clone()?) };
        let started = Instant::now();
        let child = Command::new(env!("CARGO_BIN_EXE_orka-runner-controller"))
            .args(args)
            .current_dir(dir)
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .context("starting the controller binary")?;
        let pid = child.id().context("no pid")?;
        Ok(Self { child, pid, log_path, started })
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// CPU, RSS and threads now.
    pub fn usage(&self, ticks: u64) -> Usage {
        procfs::usage(&self.pid.to_string(), ticks).unwrap_or_default()
    }

    /// Sends `signal`.
    pub fn signal(&self, signal: Signal) -> Result<()> {
        kill(Pid::from_raw(i32::try_from(self.pid)?), signal).context("signalling the controller")
    }

    /// SIGKILL and reap.
    pub async fn kill9(&mut self) -> Result<()> {
        self.signal(Signal::SIGKILL)?;
        self.child.wait().await?;
        Ok(())
    }

    /// SIGTERM and wait up to `limit` for the exit.
    pub async fn stop(&mut self, limit: Duration) -> Result<()> {
        self.signal(Signal::SIGTERM)?;
        if tokio::time::timeout(limit, self.child.wait()).await.is_err() {
            self.kill9().await?;
        }
        Ok(())
    }

    /// The captured stdout (once; `None` unless spawned with `capture_stdout`).
    pub fn take_stdout(&mut self) -> Option<tokio::process::ChildStdout> {
        self.child.stdout.take()
    }

    /// Waits for the exit, failing after `limit`.
    pub async fn wait(&mut self, limit: Duration) -> Result<std::process::ExitStatus> {
        match tokio::time::timeout(limit, self.child.wait()).await {
            Ok(status) => Ok(status?),
            Err(_) => bail!("the controller did not exit within {limit:?}; log:\n{}", self.log()),
        }
    }

    /// Everything logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }
}

/// Polls `check` every `every` until it returns `Some`, failing after `limit`.
pub async fn eventually<T, F>(what: &str, limit: Duration, every: Duration, mut check: F) -> Result<T>
where
    F: FnMut() -> Option<T>,
{
    let deadline = Instant::now() + limit;
    loop {
        if let Some(value) = check() {
            return Ok(value);
        }
        if Instant::now() >= deadline {
            bail!("timed out after {limit:?} waiting for: {what}");
        }
        tokio::time::sleep(every).await;
    }
}

/// Seconds with millisecond precision, for tables.
pub fn secs(d: Duration) -> String {
    format!("{:.3} s", d.as_secs_f64())
}

/// `perf record` of the whole machine for a while (when asked for with `--perf DIR`).
/// Whole-machine, not `-p`: the controller's SSH threads are created during a burst, and
/// the fakes' share is part of the explanation. `perf report --pid <controller>` narrows it.
pub struct Profiler {
    child: Child,
}

impl Profiler {
    /// Starts sampling every CPU with call graphs into `path` (the controller's pid is
    /// printed, for `perf report --pid`); `None` (with a note) if `perf` cannot be started.
    pub fn start(pid: u32, path: &Path) -> Option<Self> {
        println!("(perf: recording the whole machine into {}; controller pid {pid})", path.display());
        let child = Command::new("perf")
            .args(["record", "-F", "499", "-g", "-a", "-o"])
            .arg(path)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn();
        match child {
            Ok(child) => Some(Self { child }),
            Err(e) => {
                println!("(perf not started: {e})");
                None
            }
        }
    }

    /// Stops sampling and writes the file.
    pub async fn stop(mut self) -> Result<()> {
        if let Some(id) = self.child.id() {
            kill(Pid::from_raw(i32::try_from(id)?), Signal::SIGINT)?;
        }
        let _ = tokio::time::timeout(Duration::from_secs(60), self.child.wait()).await;
        Ok(())
    }
}
