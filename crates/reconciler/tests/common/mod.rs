//! Shared helpers: the fleet and the reconciler over the provisioner's in-memory fakes.
#![allow(dead_code)]

use std::sync::Arc;
use std::time::Duration;

use provisioner::fakes::{FakeGitHub, FakeOrka, FakeQueue, FakeShell, running_vm};
use provisioner::{Fleet, FleetConfig, FleetDeps, RunnerInstallConfig, StepPolicy};
use reconciler::{Reconciler, ReconcilerConfig, ReconcilerDeps};
use runner_core::{JobCompleted, JobInfo, JobMessage, ScaleSetMessage, Statistics};
use runner_core::{Vm, VmStatus};

pub const SCALE_SET: &str = "mac";
pub const SCALE_SET_ID: i64 = 7;

pub fn fleet_config() -> FleetConfig {
    let mut config = FleetConfig::new(
        SCALE_SET_ID,
        SCALE_SET,
        "sonoma-ci",
        RunnerInstallConfig {
            version: "2.328.0".into(),
            download_url_template: "https://example.invalid/{version}".into(),
        },
    );
    let policy = StepPolicy {
        deadline: Duration::from_secs(30),
        attempts: 3,
        min_backoff: Duration::from_millis(100),
        max_backoff: Duration::from_secs(1),
    };
    config.deploy = policy;
    config.jit = policy;
    config.ssh_ready = policy;
    config.install = policy;
    config.github_call = policy;
    config.delete = policy;
    config.probe_interval = Duration::ZERO;
    config
}

pub fn reconciler_config() -> ReconcilerConfig {
    let mut config = ReconcilerConfig::new(SCALE_SET_ID, SCALE_SET);
    config.probe_timeout = Duration::from_secs(20);
    config.github_timeout = Duration::from_secs(10);
    config
}

pub struct Lab {
    pub orka: Arc<FakeOrka>,
    pub github: Arc<FakeGitHub>,
    pub shell: Arc<FakeShell>,
    pub fleet: Arc<Fleet>,
    pub reconciler: Reconciler,
    pub queue: FakeQueue,
}

impl Lab {
    pub fn new() -> Self {
        Self::with(reconciler_config())
    }

    pub fn with(config: ReconcilerConfig) -> Self {
        let orka = Arc::new(FakeOrka::new());
        let github = Arc::new(FakeGitHub::new());
        let shell = Arc::new(FakeShell::new());
        let fleet = Arc::new(Fleet::new(
            FleetDeps { vms: orka.clone(), github: github.clone(), shell: shell.clone() },
            fleet_config(),
        ));
        let reconciler = Reconciler::new(
            ReconcilerDeps { vms: orka.clone(), github: github.clone(), shell: shell.clone() },
            fleet.clone(),
            config,
        );
        Self { orka, github, shell, fleet, reconciler, queue: FakeQueue::new() }
    }

    /// A VM left by an earlier process: running, registered (busy or not), with the given
    /// state inside.
    pub fn leftover(&self, name: &str, registered: Option<bool>, inside: provisioner::fakes::VmInside) {
        self.orka.insert(running_vm(name));
        if let Some(busy) = registered {
            self.github.register(name, SCALE_SET_ID, busy);
        }
        self.shell.set(name, inside);
    }

    pub async fn settle(&self) {
        tokio::time::timeout(Duration::from_secs(3600), self.fleet.wait_settled()).await.expect("settles");
    }
}

pub fn vm_with_status(name: &str, status: VmStatus) -> Vm {
    let mut vm = running_vm(name);
    if status != VmStatus::Running {
        vm.ip = None;
        vm.ssh_port = None;
    }
    vm.status = status;
    vm
}

pub fn running() -> provisioner::fakes::VmInside {
    provisioner::fakes::VmInside { setup_complete: true, run_complete: false, alive: true }
}

pub fn finished() -> provisioner::fakes::VmInside {
    provisioner::fakes::VmInside { setup_complete: true, run_complete: true, alive: false }
}

pub fn crashed() -> provisioner::fakes::VmInside {
    provisioner::fakes::VmInside { setup_complete: true, run_complete: false, alive: false }
}

pub fn setup_incomplete() -> provisioner::fakes::VmInside {
    provisioner::fakes::VmInside::default()
}

pub fn completed_message(id: i64, job: &str, runner: &str, result: &str) -> ScaleSetMessage {
    ScaleSetMessage {
        message_id: id,
        message_type: "RunnerScaleSetJobMessages".into(),
        statistics: Statistics::default(),
        job_messages: vec![JobMessage::Completed(JobCompleted {
            job: JobInfo { job_id: job.into(), ..JobInfo::default() },
            runner_id: 1,
            runner_name: runner.into(),
            result: result.into(),
        })],
    }
}
