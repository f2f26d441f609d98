//! Proof of extension: runner VMs from a provider other than Orka, served end to end.
//!
//! Part 1 is what you write to run GitHub Actions jobs on your own VM provider (Tart,
//! Proxmox, Anka, …): one implementation of `runner_core::VmBackend`. Part 2 wires it to
//! the real, unchanged fleet (`provisioner`), reconciler and scale-set service, with the
//! shipped GitHub client and SSH shell (`vm-probe`) doing the work inside the VMs.
//!
//! The "local VMs" here are loopback SSH hosts started per deploy (testkit's fake VMs:
//! a real SSH server per VM whose commands run in a per-VM scratch directory), and GitHub
//! is testkit's fake over loopback HTTP, so the example runs anywhere:
//!
//! ```text
//! cargo run -p extension-example --example local_vms
//! ```
//!
//! It enqueues one job, waits (bounded) until the job completed and neither a VM nor a
//! runner registration is left, stops the service, and exits 0 only if all of that held.

use std::collections::BTreeMap;
use std::process::ExitCode;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use runner_core::{DeployRequest, Vm, VmBackend, VmBackendError, VmStatus};
use testkit::orka::VmProvider;
use testkit::vm::FakeVmHost;

// ─── Part 1: the VM provider ──────────────────────────────────────────────────────────────

/// VMs that live on this machine: `deploy_vm` boots one (its SSH server is listening when
/// `boot` returns) and `delete_vm` destroys it, killing everything that ran inside. For Tart, `host.boot` is `tart clone` + `tart run` + `tart ip`
/// and `host.destroy` is `tart stop` + `tart delete`; for Proxmox, a clone-and-start and a
/// stop-and-destroy call to its API.
pub struct LocalVms {
    host: FakeVmHost,
    vms: Mutex<BTreeMap<String, Vm>>,
}

#[async_trait]
impl VmBackend for LocalVms {
    async fn list_vms(&self) -> Result<Vec<Vm>, VmBackendError> {
        Ok(self.vms().values().cloned().collect())
    }

    async fn get_vm(&self, name: &str) -> Result<Option<Vm>, VmBackendError> {
        Ok(self.vms().get(name).cloned())
    }

    async fn deploy_vm(&self, request: &DeployRequest) -> Result<Vm, VmBackendError> {
        let name = request.name.to_string();
        if self.vms().contains_key(&name) {
            return Err(VmBackendError::NameConflict { name });
        }
        // The contract: a failed or timed-out deploy leaves no VM behind.
        let (ip, port) = match tokio::time::timeout(request.timeout, self.host.boot(&name)).await {
            Ok(Ok(ssh)) => ssh,
            Ok(Err(e)) => {
                self.host.destroy(&name).await;
                return Err(VmBackendError::DeployFailed { name, message: format!("{e:#}") });
            }
            Err(_) => {
                self.host.destroy(&name).await;
                return Err(VmBackendError::DeployTimedOut { name, after: request.timeout });
            }
        };
        let vm = Vm { name, ip: Some(ip), ssh_port: Some(port), status: VmStatus::Running, node: None };
        self.vms().insert(vm.name.clone(), vm.clone());
        Ok(vm)
    }

    async fn delete_vm(&self, name: &str) -> Result<(), VmBackendError> {
        self.host.destroy(name).await;
        self.vms().remove(name);
        Ok(())
    }
}

impl LocalVms {
    /// A provider with no VMs yet.
    pub fn new() -> std::io::Result<Self> {
        Ok(Self { host: FakeVmHost::new()?, vms: Mutex::new(BTreeMap::new()) })
    }

    fn vms(&self) -> MutexGuard<'_, BTreeMap<String, Vm>> {
        self.vms.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

// ─── Part 2: wiring ───────────────────────────────────────────────────────────────────────

mod wiring {
    //! The real fleet, reconciler and scale-set service on top of any `VmBackend`, plus
    //! the adapters the service asks for (a binary embedding the crates writes the same).

    use std::sync::{Arc, Mutex, PoisonError};
    use std::time::Duration;

    use async_trait::async_trait;
    use github_scaleset::GitHubClient;
    use provisioner::{Fleet, FleetConfig, RunnerInstallConfig};
    use reconciler::{Mode, Reconciler, ReconcilerConfig};
    use runner_core::{FleetControl, MessageQueue, MessageSession, ScaleSetMessage, Seams, Statistics};
    use scaleset_service::{FleetFactory, QueueOpener, RunnerFleet, Sweeper, WorkError};

    /// One scale set's fleet and reconciler, seen by the service as `RunnerFleet` and
    /// `Sweeper`.
    pub struct ScaleSetRuntime {
        fleet: Arc<Fleet>,
        reconciler: Reconciler,
    }

    #[async_trait]
    impl RunnerFleet for ScaleSetRuntime {
        async fn on_statistics(&self, statistics: Statistics) {
            self.fleet.on_statistics(statistics).await;
        }

        /// A failure goes back to the service, which retries the message a few times and
        /// then acknowledges it unhandled (a poison message) rather than blocking the queue.
        async fn handle_message(
            &self,
            message: &ScaleSetMessage,
            queue: &dyn MessageQueue,
        ) -> Result<(), WorkError> {
            self.fleet.handle_message(message, queue).await.map_err(|e| WorkError(e.to_string()))
        }

        async fn tick(&self) {
            self.fleet.tick().await;
        }

        async fn drain(&self, deadline: Duration) {
            self.fleet.drain(deadline).await;
        }
    }

    #[async_trait]
    impl Sweeper for ScaleSetRuntime {
        /// A failed pass is reported to the service, which retries it next period.
        async fn sweep(&self) -> Result<(), WorkError> {
            let report = self
                .reconciler
                .reconcile_once(Mode::Act)
                .await
                .map_err(|e| WorkError(format!("reconciliation failed: {e}")))?;
            tracing::info!(vms = report.rows.len(), "reconcile pass");
            Ok(())
        }
    }

    /// Builds the runtime once the service knows the scale set's id (again if the scale
    /// set is re-created with a new id).
    pub struct OneScaleSet {
        /// The seams the fleet and the reconciler share.
        pub seams: Seams,
        /// The scale set's name (the `runs-on` label and the VM name prefix).
        pub name: String,
        /// At most this many runners at once.
        pub max_runners: u32,
        /// Which runner build the VMs download.
        pub runner_install: RunnerInstallConfig,
        /// The runtime of the current scale set id.
        pub current: Mutex<Option<(i64, Arc<ScaleSetRuntime>)>>,
    }

    impl FleetFactory for OneScaleSet {
        fn for_scale_set(&self, scale_set_id: i64) -> (Arc<dyn RunnerFleet>, Arc<dyn Sweeper>) {
            let mut current = self.current.lock().unwrap_or_else(PoisonError::into_inner);
            let runtime = match current.as_ref() {
                Some((id, runtime)) if *id == scale_set_id => runtime.clone(),
                _ => {
                    let runtime = Arc::new(self.build(scale_set_id));
                    *current = Some((scale_set_id, runtime.clone()));
                    runtime
                }
            };
            (runtime.clone(), runtime)
        }
    }

    impl OneScaleSet {
        fn build(&self, scale_set_id: i64) -> ScaleSetRuntime {
            let mut config =
                FleetConfig::new(scale_set_id, &self.name, "local-macos", self.runner_install.clone());
            config.scaling.max_runners = self.max_runners;
            // Timings for a loopback world where everything answers within milliseconds.
            config.deregistration_timeout = Duration::from_secs(3);
            config.deregistration_poll_interval = Duration::from_millis(200);
            config.probe_interval = Duration::from_secs(1);
            config.probe_timeout = Duration::from_secs(5);
            let fleet = Arc::new(Fleet::new(self.seams.clone(), config));
            let reconciler = Reconciler::new(
                self.seams.clone(),
                fleet.clone() as Arc<dyn FleetControl>,
                ReconcilerConfig::new(scale_set_id, &self.name),
            );
            ScaleSetRuntime { fleet, reconciler }
        }
    }

    /// Opens session queues on the shipped GitHub client.
    pub struct GitHubQueues(pub GitHubClient);

    impl QueueOpener for GitHubQueues {
        fn open(&self, session: MessageSession) -> Arc<dyn MessageQueue> {
            self.0.queue(session)
        }
    }
}

/// How long the whole run may take before the example gives up (and fails).
const RUN_DEADLINE: Duration = Duration::from_secs(120);

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,russh=warn".into()),
        )
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stdout()))
        .init();
    match serve_one_job().await {
        Ok(()) => {
            println!("extension example: the job completed on a local VM; no VM and no registration left");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("extension example failed: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Starts fake GitHub, serves scale set `local` with [`LocalVms`], enqueues one job and
/// checks the end state.
async fn serve_one_job() -> anyhow::Result<()> {
    use anyhow::{Context, bail, ensure};
    use github_scaleset::{Auth, GitHubClient, GitHubConfig};
    use provisioner::RunnerInstallConfig;
    use runner_core::{ScaleSetApi, Seams};
    use scaleset_service::{Phase, ScaleSetSpec, ServiceDeps, ServiceTimings, run_scale_set};
    use secrecy::SecretString;
    use testkit::github::{FakeGitHub, FakeGitHubConfig, JobSpec, JobState};
    use testkit::vm::FakeRunnerDownloads;
    use tokio_util::sync::CancellationToken;
    use vm_probe::{Ssh2Shell, SshAuth, SshConfig};

    const SCALE_SET: &str = "local";

    // The outside world: GitHub and the runner download server (fakes on loopback).
    let fake_github = FakeGitHub::start(FakeGitHubConfig {
        long_poll_hold: Duration::from_millis(500),
        ..FakeGitHubConfig::default()
    })
    .await?;
    let downloads = FakeRunnerDownloads::start().await?;

    // The shipped clients for GitHub and SSH, and our VM provider.
    let github = GitHubClient::new(GitHubConfig::new(
        fake_github.config_url("my-org"),
        Auth::Pat(SecretString::from(fake_github.pat())),
    ))?;
    let shell = Ssh2Shell::new(SshConfig::new("admin", SshAuth::Password(SecretString::from("admin"))))?;
    let vms = Arc::new(LocalVms::new()?);
    let api: Arc<dyn ScaleSetApi> = Arc::new(github.clone());
    let seams = Seams { vms: vms.clone(), github: api.clone(), shell: Arc::new(shell) };

    let deps = ServiceDeps {
        api,
        queues: Arc::new(wiring::GitHubQueues(github)),
        fleets: Arc::new(wiring::OneScaleSet {
            seams,
            name: SCALE_SET.into(),
            max_runners: 2,
            runner_install: RunnerInstallConfig {
                version: testkit::world::RUNNER_VERSION.into(),
                download_url_template: downloads.url_template(),
            },
            current: Mutex::new(None),
        }),
        heartbeat: Arc::new(|| {}),
        poison_message: Arc::new(|| tracing::warn!("a message was acknowledged unhandled")),
    };
    let spec = ScaleSetSpec {
        name: SCALE_SET.into(),
        runner_group_id: 1,
        extra_labels: Vec::new(),
        max_runners: 2,
        owner_name: "extension-example".into(),
        manage_scale_set: false,
        recreate_on_conflict: false,
        credentials_settings: "the fake GitHub's token".into(),
    };
    let timings = ServiceTimings {
        min_backoff: Duration::from_millis(200),
        max_backoff: Duration::from_secs(2),
        standby_retry: Duration::from_secs(1),
        tick_interval: Duration::from_secs(1),
        reconcile_interval: Some(Duration::from_secs(3)),
        drain_deadline: Duration::from_secs(10),
    };
    let (phase_tx, mut phase) = tokio::sync::watch::channel(Phase::Starting);
    let cancel = CancellationToken::new();
    let service = tokio::spawn(run_scale_set(spec, deps, timings, phase_tx, cancel.clone()));

    // Serve one job: wait until the session is held, enqueue, wait for a clean end state.
    let served = tokio::time::timeout(RUN_DEADLINE, async {
        phase.wait_for(|p| *p == Phase::Serving).await.context("the service stopped before it was ready")?;
        let job = fake_github.enqueue_job(JobSpec::new([SCALE_SET]).with_duration(Duration::from_secs(1)));
        tracing::info!(?job, "enqueued one job");
        loop {
            let state = fake_github.state();
            let completed = state.job(job).is_some_and(|j| j.state == JobState::Completed);
            if completed && vms.list_vms().await?.is_empty() && state.registered_runners().next().is_none() {
                return anyhow::Ok(job);
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    })
    .await;

    cancel.cancel();
    let stopped = tokio::time::timeout(Duration::from_secs(30), service).await;
    let job = match served {
        Ok(job) => job?,
        Err(_) => bail!("the job was not served cleanly within {RUN_DEADLINE:?}"),
    };
    match stopped {
        Ok(joined) => joined.context("the service panicked")?.context("the service failed")?,
        Err(_) => bail!("the service did not stop within 30 s of cancellation"),
    }

    // The end state, checked again after shutdown.
    let state = fake_github.state();
    let job_state = state.job(job).map(|j| j.state);
    ensure!(job_state == Some(JobState::Completed), "job ended {job_state:?}, not completed");
    let left = vms.list_vms().await?;
    ensure!(left.is_empty(), "VM(s) left behind: {:?}", left.iter().map(|vm| &vm.name).collect::<Vec<_>>());
    let registered: Vec<&str> = state.registered_runners().map(|r| r.name.as_str()).collect();
    ensure!(registered.is_empty(), "runner registration(s) left behind: {registered:?}");
    Ok(())
}
