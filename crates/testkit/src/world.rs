//! A whole simulated world: fake GitHub, fake Orka whose VMs are fake VMs with real SSH
//! endpoints, and the fake runner download server — started together and wired to each
//! other, with the environment a controller needs to serve it.
//!
//! Used by the `demo`, the end-to-end scenarios and the benchmarks. Owns the assembly and
//! the end-of-run invariants; each fake owns its own behaviour.
//!
//! The VMs are in-process fake SSH servers by default ([`VmBackendKind::FakeSsh`]), or real
//! OpenSSH sshds ([`VmBackendKind::RealSshd`], [`crate::sshd::SshdVmHost`]): then only one
//! VM may exist at a time on the host (they share its real files), so the controller
//! environment says `MAX_RUNNERS=1`; run one such world at a time.

use std::sync::Arc;
use std::time::Duration;

use crate::github::{FakeGitHub, FakeGitHubConfig, FakeState as GitHubState, JobId, JobSpec, JobState};
use crate::orka::{DEFAULT_VM_CONFIG, FakeOrka, FakeOrkaConfig, VmProvider};
use crate::sshd::SshdVmHost;
use crate::vm::{FakeRunnerDownloads, FakeVmHost};

/// Runner version the controller is pointed at, and the latest release the fake downloads
/// server announces at first ([`FakeRunnerDownloads::set_latest_release`] changes it).
pub const RUNNER_VERSION: &str = "2.330.0";

/// What the fake Orka's VMs are.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum VmBackendKind {
    /// In-process fake SSH servers ([`FakeVmHost`]): no root, no sshd, many VMs at once.
    #[default]
    FakeSsh,
    /// Real OpenSSH sshds running the real provisioning script in a real shell
    /// ([`SshdVmHost`]): needs `/usr/sbin/sshd` and a writable `/Users`; one VM at a time.
    RealSshd,
}

/// Shape and timings of a world.
#[derive(Debug, Clone)]
pub struct WorldConfig {
    /// The scale set the controller serves (and the label jobs ask for).
    pub scale_set: String,
    /// Orka nodes.
    pub nodes: usize,
    /// VMs per node (capacity = nodes × vms_per_node).
    pub vms_per_node: u32,
    /// How long a fake VM takes to boot.
    pub boot_delay: Duration,
    /// How long the fake GitHub holds an empty long poll.
    pub long_poll_hold: Duration,
    /// A session without activity expires after this (what a killed controller leaves).
    pub session_idle_expiry: Duration,
    /// A runner running a job that stops polling for this long fails its job.
    pub runner_lease: Duration,
    /// What the VMs are.
    pub vm_backend: VmBackendKind,
}

impl Default for WorldConfig {
    fn default() -> Self {
        Self {
            scale_set: "mac".into(),
            nodes: 4,
            vms_per_node: 2,
            boot_delay: Duration::from_millis(300),
            long_poll_hold: Duration::from_millis(500),
            session_idle_expiry: Duration::from_secs(4),
            runner_lease: Duration::from_secs(5),
            vm_backend: VmBackendKind::FakeSsh,
        }
    }
}

/// The running world. Dropping it stops every fake and kills every fake VM.
pub struct World {
    /// The configuration it was started with.
    pub config: WorldConfig,
    /// Fake GitHub.
    pub github: FakeGitHub,
    /// Fake Orka.
    pub orka: FakeOrka,
    /// The fake VMs behind the fake Orka (unused with [`VmBackendKind::RealSshd`]).
    pub vms: Arc<FakeVmHost>,
    /// The real-sshd VMs behind the fake Orka, with [`VmBackendKind::RealSshd`].
    pub sshd_vms: Option<Arc<SshdVmHost>>,
    /// The fake runner tarball server.
    pub downloads: FakeRunnerDownloads,
}

impl World {
    /// Starts every fake on loopback and wires them together.
    pub async fn start(config: WorldConfig) -> anyhow::Result<Self> {
        let github = FakeGitHub::start(FakeGitHubConfig {
            long_poll_hold: config.long_poll_hold,
            session_idle_expiry: config.session_idle_expiry,
            runner_lease: config.runner_lease,
            ..FakeGitHubConfig::default()
        })
        .await?;
        let orka = FakeOrka::start(
            FakeOrkaConfig::with_capacity(config.nodes, config.vms_per_node).boot_delay(config.boot_delay),
        )
        .await?;
        let vms = Arc::new(FakeVmHost::new()?);
        let sshd_vms = match config.vm_backend {
            VmBackendKind::FakeSsh => {
                orka.set_provider(vms.clone() as Arc<dyn VmProvider>);
                None
            }
            VmBackendKind::RealSshd => {
                let host = Arc::new(SshdVmHost::new().await?);
                orka.set_provider(host.clone() as Arc<dyn VmProvider>);
                Some(host)
            }
        };
        let downloads = FakeRunnerDownloads::start().await?;
        downloads.set_latest_release(Some(RUNNER_VERSION));
        Ok(Self { config, github, orka, vms, sshd_vms, downloads })
    }

    /// The environment (Go-integration variable names plus our new settings) that points a
    /// controller at this world, with timings scaled for a fast simulation. With real-sshd
    /// VMs also the VM user, its key and `MAX_RUNNERS=1`.
    pub fn controller_env(&self) -> Vec<(String, String)> {
        let runners = format!(r#"[{{"name":"{}","id":1}}]"#, self.config.scale_set);
        let real_sshd = self.sshd_vms.as_ref().map(|host| {
            [
                ("ORKA_VM_USERNAME", host.username().to_owned()),
                ("ORKA_VM_SSH_KEY_PATH", host.key_path().display().to_string()),
                ("MAX_RUNNERS", "1".to_owned()),
            ]
        });
        [
            ("GITHUB_URL", self.github.config_url("my-org")),
            ("GITHUB_PAT", self.github.pat()),
            ("ORKA_URL", self.orka.url()),
            ("ORKA_TOKEN", self.orka.token()),
            ("ORKA_VM_CONFIG", DEFAULT_VM_CONFIG.to_owned()),
            ("RUNNERS", runners),
            ("GITHUB_RUNNER_VERSION", RUNNER_VERSION.to_owned()),
            ("GITHUB_RUNNER_DOWNLOAD_URL", self.downloads.url_template()),
            ("GITHUB_RUNNER_RELEASE_URL", self.downloads.latest_release_url()),
            ("RUNNER_DEREGISTRATION_TIMEOUT", "3s".to_owned()),
            ("RUNNER_DEREGISTRATION_POLL_INTERVAL", "200ms".to_owned()),
            ("VM_TRACKER_INTERVAL", "3s".to_owned()),
            ("PROBE_INTERVAL", "1s".to_owned()),
            ("PROBE_TIMEOUT", "5s".to_owned()),
            ("RUNNER_IDLE_GRACE", "30s".to_owned()),
            ("SHUTDOWN_DRAIN_TIMEOUT", "10s".to_owned()),
            ("LOG_LEVEL", "info".to_owned()),
            ("LOG_FORMAT", "pretty".to_owned()),
        ]
        .into_iter()
        .chain(real_sshd.into_iter().flatten())
        .map(|(k, v)| (k.to_owned(), v))
        .collect()
    }

    /// Enqueues `count` jobs for the world's scale set, each running `duration`.
    pub fn enqueue_jobs(&self, count: usize, duration: Duration) -> Vec<JobId> {
        (0..count)
            .map(|_| {
                self.github
                    .enqueue_job(JobSpec::new([self.config.scale_set.as_str()]).with_duration(duration))
            })
            .collect()
    }

    /// Where things stand.
    pub fn snapshot(&self) -> WorldSnapshot {
        WorldSnapshot::from_parts(self.github.state(), self.orka.vms().len(), self.orka.peak_vms())
    }

    /// Checks the end-of-run invariants: every job in `jobs` completed (or was cancelled),
    /// no VM is left, no runner registration is left, and at most `max_vms` VMs ever
    /// existed at once. Returns every violation.
    pub fn check_invariants(&self, jobs: &[JobId], max_vms: usize) -> Result<(), Vec<String>> {
        let snapshot = self.snapshot();
        let mut violations = Vec::new();
        for id in jobs {
            match snapshot.github.job(*id) {
                Some(job) if job.state == JobState::Completed => {}
                Some(job) => violations.push(format!("job {id:?} ended {:?}, not completed", job.state)),
                None => violations.push(format!("job {id:?} is unknown to the fake GitHub")),
            }
        }
        if snapshot.vms != 0 {
            let names: Vec<String> = self.orka.vms().into_iter().map(|vm| vm.name).collect();
            violations.push(format!("{} VM(s) left behind: {names:?}", snapshot.vms));
        }
        let registered: Vec<&str> = snapshot.github.registered_runners().map(|r| r.name.as_str()).collect();
        if !registered.is_empty() {
            violations.push(format!("runner registration(s) left behind: {registered:?}"));
        }
        if snapshot.peak_vms > max_vms {
            violations
                .push(format!("{} VMs existed at once, more than the maximum {max_vms}", snapshot.peak_vms));
        }
        if violations.is_empty() { Ok(()) } else { Err(violations) }
    }
}

/// A consistent-enough view of the world at one moment.
#[derive(Debug, Clone)]
pub struct WorldSnapshot {
    /// The fake GitHub's state.
    pub github: GitHubState,
    /// VMs existing in Orka now.
    pub vms: usize,
    /// The most VMs that ever existed at once.
    pub peak_vms: usize,
}

impl WorldSnapshot {
    fn from_parts(github: GitHubState, vms: usize, peak_vms: usize) -> Self {
        Self { github, vms, peak_vms }
    }

    /// Jobs in `state`.
    pub fn jobs_in(&self, state: JobState) -> usize {
        self.github.jobs.iter().filter(|j| j.state == state).count()
    }

    /// Whether the job completed with `result` (`None` = any result).
    pub fn completed(&self, id: JobId) -> bool {
        self.github.job(id).is_some_and(|j| j.state == JobState::Completed)
    }
}
