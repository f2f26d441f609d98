//! Shared helpers of the fleet tests: a lab of in-memory fakes, message builders and an
//! event recorder.
#![allow(dead_code)]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use provisioner::fakes::{FakeGitHub, FakeOrka, FakeQueue, FakeShell};
use provisioner::{
    Fleet, FleetConfig, FleetDeps, FleetEvent, FleetObserver, RunnerInstallConfig, RunnerStage,
    ScalingConfig, StepPolicy,
};
use runner_core::{JobAvailable, JobCompleted, JobInfo, JobMessage, JobStarted, ScaleSetMessage, Statistics};

pub const SCALE_SET: &str = "mac";
pub const SCALE_SET_ID: i64 = 7;

pub fn policy(attempts: u32) -> StepPolicy {
    StepPolicy {
        deadline: Duration::from_secs(30),
        attempts,
        min_backoff: Duration::from_millis(100),
        max_backoff: Duration::from_secs(1),
    }
}

pub fn config() -> FleetConfig {
    let mut config = FleetConfig::new(
        SCALE_SET_ID,
        SCALE_SET,
        "sonoma-ci",
        RunnerInstallConfig {
            version: "2.328.0".into(),
            download_url_template: "https://example.invalid/{version}/{arch}".into(),
        },
    );
    config.scaling = ScalingConfig {
        max_runners: 10,
        min_idle_runners: 0,
        idle_grace: Duration::from_secs(60),
        warm_max_age: None,
    };
    config.provisioning_concurrency = 4;
    config.deploy = policy(3);
    config.jit = policy(3);
    config.ssh_ready = policy(3);
    config.install = policy(3);
    config.github_call = policy(3);
    config.delete = policy(3);
    config.deregistration_timeout = Duration::from_secs(30);
    config.deregistration_poll_interval = Duration::from_secs(2);
    config.probe_interval = Duration::ZERO;
    config.probe_timeout = Duration::from_secs(10);
    config.probe_strikes = 3;
    config.max_idle = Duration::from_secs(3600);
    config.cleanup_retry_interval = Duration::from_secs(30);
    config
}

#[derive(Default)]
pub struct Recorder(Mutex<Vec<FleetEvent>>);

impl FleetObserver for Recorder {
    fn on_event(&self, event: &FleetEvent) {
        self.0.lock().unwrap().push(event.clone());
    }
}

impl Recorder {
    pub fn events(&self) -> Vec<FleetEvent> {
        self.0.lock().unwrap().clone()
    }

    /// The stages `runner` went through, in order.
    pub fn stages(&self, runner: &str) -> Vec<RunnerStage> {
        self.events()
            .into_iter()
            .filter_map(|e| match e {
                FleetEvent::Stage { runner: r, stage, .. } if r == runner => Some(stage),
                _ => None,
            })
            .collect()
    }
}

pub struct Lab {
    pub orka: Arc<FakeOrka>,
    pub github: Arc<FakeGitHub>,
    pub shell: Arc<FakeShell>,
    pub queue: FakeQueue,
    pub recorder: Arc<Recorder>,
    pub fleet: Fleet,
}

impl Lab {
    pub fn new(config: FleetConfig) -> Self {
        let orka = Arc::new(FakeOrka::new());
        let github = Arc::new(FakeGitHub::new());
        let shell = Arc::new(FakeShell::new());
        let recorder = Arc::new(Recorder::default());
        let deps = FleetDeps { vms: orka.clone(), github: github.clone(), shell: shell.clone() };
        let observer: Arc<dyn FleetObserver> = recorder.clone();
        let fleet = Fleet::with_observer(deps, config, Some(observer));
        Self { orka, github, shell, queue: FakeQueue::new(), recorder, fleet }
    }

    pub async fn deliver(&self, msg: &ScaleSetMessage) {
        self.fleet.handle_message(msg, &self.queue).await.expect("handle message");
    }

    pub async fn settle(&self) {
        tokio::time::timeout(Duration::from_secs(3600), self.fleet.wait_settled())
            .await
            .expect("the fleet settles");
    }

    /// Names of the fleet's runners.
    pub fn names(&self) -> Vec<String> {
        self.fleet.runners().into_iter().map(|r| r.name).collect()
    }

    pub fn only_runner(&self) -> String {
        let names = self.names();
        assert_eq!(names.len(), 1, "{names:?}");
        names[0].clone()
    }

    pub fn stage_of(&self, name: &str) -> Option<RunnerStage> {
        self.fleet.runners().into_iter().find(|r| r.name == name).map(|r| r.stage)
    }

    /// Nothing left behind: no runner tracked, no VM, no registration.
    pub fn assert_clean(&self) {
        assert!(self.fleet.runners().is_empty(), "runners: {:?}", self.fleet.runners());
        assert!(self.orka.names().is_empty(), "VMs left: {:?}", self.orka.names());
        assert!(self.github.names().is_empty(), "registrations left: {:?}", self.github.names());
    }
}

pub fn stats(assigned: u32, running: u32) -> Statistics {
    Statistics { total_assigned_jobs: assigned, total_running_jobs: running, ..Statistics::default() }
}

pub fn msg(id: i64, statistics: Statistics, job_messages: Vec<JobMessage>) -> ScaleSetMessage {
    ScaleSetMessage {
        message_id: id,
        message_type: "RunnerScaleSetJobMessages".into(),
        statistics,
        job_messages,
    }
}

pub fn info(job: &str) -> JobInfo {
    JobInfo { job_id: job.into(), ..JobInfo::default() }
}

pub fn assigned(job: &str) -> JobMessage {
    JobMessage::Assigned(info(job))
}

pub fn available(request_id: i64) -> JobMessage {
    JobMessage::Available(JobAvailable {
        job: JobInfo { runner_request_id: request_id, ..JobInfo::default() },
        acquire_job_url: String::new(),
    })
}

pub fn started(job: &str, runner: &str) -> JobMessage {
    JobMessage::Started(JobStarted { job: info(job), runner_id: 1, runner_name: runner.into() })
}

pub fn completed(job: &str, runner: &str, result: &str) -> JobMessage {
    JobMessage::Completed(JobCompleted {
        job: info(job),
        runner_id: if runner.is_empty() { 0 } else { 1 },
        runner_name: runner.into(),
        result: result.into(),
    })
}
