//! Deprecated runner versions, with `mockall` mocks of the three seams and of the release
//! lookup: a runner that exits 7 without a job marks the scale set outdated and holds new
//! VMs back until the retry interval; an ordinary exit without a job does not; an unpinned
//! version recovers with the next latest release.

mod common;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use common::*;
use provisioner::fakes::FakeQueue;
use provisioner::{Fleet, FleetDeps, RunnerStage, RunnerVersionSource, VersionSourceError};
use runner_core::{JitConfig, MockScaleSetApi, RunnerRecord};
use runner_core::{MockVmBackend, Vm, VmStatus};
use runner_core::{MockVmShell, ProbeReport, Tri};
use secrecy::SecretString;
use tokio::time::Instant;

const RETRY: Duration = Duration::from_secs(300);
const REFUSED: &str = "2.328.0";

mockall::mock! {
    Releases {}
    #[async_trait]
    impl RunnerVersionSource for Releases {
        async fn latest_version(&self) -> Result<String, VersionSourceError>;
    }
}

/// What the mocks saw: VMs that exist, deploys, and the version installed per SSH port.
#[derive(Default)]
struct Seen {
    vms: Mutex<Vec<Vm>>,
    deploys: Mutex<Vec<Instant>>,
    installed: Mutex<HashMap<u16, String>>,
    /// The version GitHub refuses (its runners exit right after they start).
    refused: Mutex<Option<String>>,
}

impl Seen {
    fn deploys(&self) -> usize {
        self.deploys.lock().unwrap().len()
    }
}

/// A fleet over mocks that behave like a cluster whose runners of `refused` exit with
/// `exit_code` and `log` right after they start; runners of other versions stay up.
fn fleet(refused: &str, exit_code: i32, log: &'static str) -> (Fleet, Arc<Seen>) {
    let seen = Arc::new(Seen::default());
    *seen.refused.lock().unwrap() = Some(refused.to_owned());
    let ports = Arc::new(AtomicU16::new(9000));
    let mut vms = MockVmBackend::new();
    let (s, p) = (seen.clone(), ports.clone());
    vms.expect_deploy_vm().returning(move |req| {
        let vm = Vm {
            name: req.name.to_string(),
            ip: Some("10.0.0.5".into()),
            ssh_port: Some(p.fetch_add(1, Ordering::SeqCst)),
            status: VmStatus::Running,
            node: None,
        };
        s.deploys.lock().unwrap().push(Instant::now());
        s.vms.lock().unwrap().push(vm.clone());
        Ok(vm)
    });
    let s = seen.clone();
    vms.expect_list_vms().returning(move || Ok(s.vms.lock().unwrap().clone()));
    let s = seen.clone();
    vms.expect_delete_vm().returning(move |name| {
        s.vms.lock().unwrap().retain(|vm| vm.name != name);
        Ok(())
    });

    let mut github = MockScaleSetApi::new();
    github.expect_generate_jit_config().returning(|_, name| {
        Ok(JitConfig {
            runner: RunnerRecord {
                id: 42,
                name: name.into(),
                runner_scale_set_id: SCALE_SET_ID,
                status: None,
                busy: None,
            },
            encoded_jit_config: SecretString::from("sekrit"),
        })
    });
    github.expect_get_runner_by_name().returning(|_| Ok(None));
    github.expect_remove_runner().returning(|_| Ok(()));

    let mut shell = MockVmShell::new();
    shell.expect_wait_ready().returning(|_| Ok(()));
    let s = seen.clone();
    shell.expect_install_and_start_runner().returning(move |target, install| {
        s.installed.lock().unwrap().insert(target.port, install.runner_version.clone());
        Ok(())
    });
    let s = seen.clone();
    shell.expect_probe().returning(move |target| {
        let version = s.installed.lock().unwrap().get(&target.port).cloned();
        let exited = version.is_some() && version == *s.refused.lock().unwrap();
        Ok(ProbeReport {
            setup_complete: Tri::Yes,
            run_complete: Tri::from_bool(exited),
            runner_alive: Tri::from_bool(!exited),
            exit_code: exited.then_some(exit_code),
        })
    });
    shell.expect_tail_log().returning(move |_, _| Ok(log.to_owned()));

    let mut config = config();
    config.outdated_retry_interval = RETRY;
    let deps = FleetDeps { vms: Arc::new(vms), github: Arc::new(github), shell: Arc::new(shell) };
    (Fleet::new(deps, config), seen)
}

const REFUSAL_LOG: &str = "Current runner version: '2.328.0'\n\
    2026-12-06T03:00:00Z: An error occurred: Runner version v2.328.0 is deprecated and cannot receive messages.\n";

async fn settle(fleet: &Fleet) {
    tokio::time::timeout(Duration::from_secs(3600), fleet.wait_settled()).await.expect("settles");
}

/// One tick (probe interval zero: every tick probes) and its cleanups.
async fn tick(fleet: &Fleet) {
    fleet.tick().await;
    settle(fleet).await;
}

#[tokio::test(start_paused = true)]
async fn exit_7_marks_the_scale_set_outdated_and_holds_deploys_back_until_the_retry() {
    let (fleet, seen) = fleet(REFUSED, 7, REFUSAL_LOG);
    let queue = FakeQueue::new();
    fleet.handle_message(&msg(1, stats(3, 0), vec![assigned("j1")]), &queue).await.unwrap();
    settle(&fleet).await;
    assert_eq!(seen.deploys(), 3, "three jobs, three runners, none refused yet");
    assert_eq!(fleet.runner_version_status().outdated, None);

    tick(&fleet).await;
    let status = fleet.runner_version_status();
    let outdated = status.outdated.expect("exit 7 without a job: outdated");
    assert_eq!(outdated.refused_version, REFUSED);
    assert_eq!(status.version, REFUSED, "pinned: nothing else to install");
    assert!(fleet.runners().is_empty(), "the refused runners are cleaned up: {:?}", fleet.runners());
    assert!(seen.vms.lock().unwrap().is_empty());

    // The jobs still wait; messages and ticks until just before the retry deploy nothing.
    for _ in 0..9 {
        tokio::time::advance(Duration::from_secs(30)).await;
        fleet.handle_message(&msg(2, stats(3, 0), vec![]), &queue).await.unwrap();
        tick(&fleet).await;
        assert!(Instant::now() < outdated.next_retry);
        assert_eq!(seen.deploys(), 3, "no VM while outdated, before the retry");
    }
    tokio::time::advance(outdated.next_retry - Instant::now()).await;
    tick(&fleet).await;
    assert_eq!(seen.deploys(), 4, "exactly one retry per interval, though three jobs wait");
    tick(&fleet).await;
    fleet.on_statistics(stats(3, 0)).await;
    settle(&fleet).await;
    assert_eq!(seen.deploys(), 4, "still refused: nothing more until the next interval");
    assert!(fleet.runner_version_status().outdated.is_some());
}

#[tokio::test(start_paused = true)]
async fn an_ordinary_exit_without_a_job_does_not_mark_the_scale_set_outdated() {
    let log = "Current runner version: '2.328.0'\n2026-12-06T03:00:00Z: Runner registration removed\n";
    let (fleet, seen) = fleet(REFUSED, 0, log);
    let queue = FakeQueue::new();
    fleet.handle_message(&msg(1, stats(1, 0), vec![assigned("j1")]), &queue).await.unwrap();
    settle(&fleet).await;
    tick(&fleet).await;
    assert_eq!(fleet.runner_version_status().outdated, None);
    // The job still waits: the next signal deploys a new runner at once.
    tick(&fleet).await;
    assert_eq!(seen.deploys(), 2);
    assert_eq!(fleet.runners().len(), 1);
}

#[tokio::test(start_paused = true)]
async fn a_failed_exit_without_the_message_is_not_a_refusal_either() {
    let (fleet, seen) = fleet(REFUSED, 1, "fake runner: credential rejected (401)\n");
    let queue = FakeQueue::new();
    fleet.handle_message(&msg(1, stats(1, 0), vec![assigned("j1")]), &queue).await.unwrap();
    settle(&fleet).await;
    tick(&fleet).await;
    tick(&fleet).await;
    assert_eq!(fleet.runner_version_status().outdated, None);
    assert_eq!(seen.deploys(), 2);
}

#[tokio::test(start_paused = true)]
async fn an_unpinned_version_resumes_with_the_next_latest_release() {
    let (fleet, seen) = fleet(REFUSED, 7, REFUSAL_LOG);
    let mut releases = MockReleases::new();
    let mut answers = vec!["v2.331.0".to_owned(), REFUSED.to_owned()];
    releases.expect_latest_version().times(2).returning(move || Ok(answers.pop().unwrap()));
    assert!(fleet.set_runner_version_source(Arc::new(releases)));
    let queue = FakeQueue::new();
    fleet.handle_message(&msg(1, stats(1, 0), vec![assigned("j1")]), &queue).await.unwrap();
    settle(&fleet).await;
    tick(&fleet).await;
    // Looked up at once: still the refused version, so the scale set stays outdated.
    let status = fleet.runner_version_status();
    assert_eq!(status.outdated.map(|o| o.refused_version).as_deref(), Some(REFUSED));
    tokio::time::advance(RETRY - Duration::from_secs(1)).await;
    tick(&fleet).await;
    assert_eq!(seen.deploys(), 1, "no lookup, no VM before the retry interval");

    tokio::time::advance(Duration::from_secs(1)).await;
    tick(&fleet).await;
    let status = fleet.runner_version_status();
    assert_eq!((status.version.as_str(), status.outdated), ("2.331.0", None), "resumed by itself");
    assert_eq!(seen.deploys(), 2);
    let installed: Vec<String> = seen.installed.lock().unwrap().values().cloned().collect();
    assert!(installed.contains(&"2.331.0".to_owned()), "{installed:?}");
    let runner = fleet.runners().pop().expect("a runner of the new version");
    assert_eq!(runner.stage, RunnerStage::Idle);

    // It takes the job; later ticks keep it and look nothing up again (times(2) above).
    fleet.handle_message(&msg(2, stats(1, 1), vec![started("j1", &runner.name)]), &queue).await.unwrap();
    tick(&fleet).await;
    tokio::time::advance(RETRY * 2).await;
    tick(&fleet).await;
    assert_eq!(fleet.runners()[0].stage, RunnerStage::Busy);
    assert_eq!(seen.deploys(), 2);
}

#[tokio::test(start_paused = true)]
async fn a_retry_runner_that_takes_a_job_clears_the_state() {
    // Pinned, and GitHub accepts the version again by the time of the retry.
    let (fleet, seen) = fleet(REFUSED, 7, REFUSAL_LOG);
    let queue = FakeQueue::new();
    fleet.handle_message(&msg(1, stats(1, 0), vec![assigned("j1")]), &queue).await.unwrap();
    settle(&fleet).await;
    tick(&fleet).await;
    assert!(fleet.runner_version_status().outdated.is_some());
    *seen.refused.lock().unwrap() = None;
    tokio::time::advance(RETRY).await;
    tick(&fleet).await;
    assert_eq!(seen.deploys(), 2, "the retry");
    let runner = fleet.runners().pop().expect("the retry runner");
    assert!(fleet.runner_version_status().outdated.is_some(), "online alone proves nothing");
    fleet.handle_message(&msg(2, stats(1, 1), vec![started("j1", &runner.name)]), &queue).await.unwrap();
    assert_eq!(fleet.runner_version_status().outdated, None, "a job started on it: accepted");
    // Deploys are no longer held back.
    fleet.on_statistics(stats(3, 1)).await;
    settle(&fleet).await;
    assert_eq!(seen.deploys(), 4);
}
