//! Crash-point tests: `kill -9` the controller at each step of a runner's lifecycle,
//! start a new one, and require that nothing is lost.
//!
//! Each test holds the lifecycle at its step with a fault of the simulated world, kills the
//! controller there, lifts the fault and restarts. Then it asserts: the job completed
//! successfully (a running job was never killed), no VM and no runner registration is
//! left, and the number of VMs never exceeded `MAX_RUNNERS` (2).
//!
//! | Crash point | How the step is held | What the restarted controller must do |
//! |---|---|---|
//! | after the deploy request | the fake Orka boots the VM slowly | the VM nobody waits for any more becomes `Running` and is deleted (no runner); a new VM serves the job |
//! | after the deploy | the fake GitHub holds the JIT registration | delete the VM (no runner or setup incomplete); a new VM serves the job |
//! | after the JIT config | the VM's SSH comes up late | delete the VM (registered, setup never finished), remove its registration; a new VM serves the job |
//! | during setup | the runner download is held | delete the VM (setup incomplete); a new VM serves the job |
//! | while run.sh runs | the job just runs | adopt the VM; the job completes on it; then delete it |
//! | after completion, before deregistration | the fake GitHub holds the deregistration check | delete the finished VM and any registration |
//! | during VM deletion | the fake Orka holds the DELETE | finish the deletion |

#[path = "support/mod.rs"]
mod support;

use std::time::Duration;

use anyhow::{Result, bail};
use support::{PATIENCE, Scenario, eventually};
use testkit::github::{Endpoint, Fault as GitHubFault, JobState};
use testkit::orka::{FakeVmStatus, Fault as OrkaFault, Route};
use testkit::vm::{FakeVmConfig, VmBehaviour};

const MAX_RUNNERS: &str = "2";

/// Where the first controller is killed.
#[derive(Debug, Clone, Copy)]
enum CrashPoint {
    AfterDeployRequest,
    AfterDeploy,
    AfterJitConfig,
    DuringSetup,
    WhileRunShRuns,
    AfterCompletionBeforeDeregistration,
    DuringVmDeletion,
}

/// Runs one job through a crash at `point` and a restart; checks every invariant.
async fn crash_at(point: CrashPoint) -> Result<()> {
    let s = Scenario::start().await?;
    let job_duration = match point {
        CrashPoint::WhileRunShRuns => Duration::from_secs(10),
        _ => Duration::from_secs(2),
    };
    arm(&s, point);
    let mut first = s.controller("first.log", &[("MAX_RUNNERS", MAX_RUNNERS)])?;
    let jobs = s.world.enqueue_jobs(1, job_duration);
    let held = eventually(&format!("the controller reaches {point:?}"), PATIENCE, || async {
        reached(&s, point, jobs[0])
    })
    .await;
    if let Err(e) = held {
        bail!("{e}\n--- first controller ---\n{}", first.log());
    }
    first.kill9().await?;
    disarm(&s);

    let mut second = s.controller("second.log", &[("MAX_RUNNERS", MAX_RUNNERS)])?;
    let outcome = async {
        eventually("the job completes", PATIENCE, || async {
            s.world.snapshot().completed(jobs[0]).then_some(())
        })
        .await?;
        s.wait_clean().await?;
        second.sigterm()?;
        let status = second.wait_exit(Duration::from_secs(60)).await?;
        if !status.success() {
            bail!("the second controller exited with {status:?}");
        }
        let state = s.world.github.state();
        let job = state.job(jobs[0]).expect("job");
        if job.result.as_deref() != Some("succeeded") {
            bail!("the job did not succeed: {job:?}");
        }
        s.world.check_invariants(&jobs, 2).map_err(|v| anyhow::anyhow!("{v:#?}"))
    }
    .await;
    outcome.map_err(|e| {
        anyhow::anyhow!(
            "{e:#}\n--- first controller ---\n{}\n--- second controller ---\n{}",
            first.log(),
            second.log()
        )
    })
}

/// Arms the fault that holds the lifecycle at `point`.
fn arm(s: &Scenario, point: CrashPoint) {
    let world = &s.world;
    match point {
        CrashPoint::AfterDeployRequest => world.orka.inject(OrkaFault::SlowDeploy { delay_ms: 6_000 }),
        CrashPoint::AfterDeploy => world.github.inject(GitHubFault::Delay {
            endpoint: Endpoint::GenerateJitConfig,
            delay_ms: 6_000,
            times: 1,
        }),
        CrashPoint::AfterJitConfig => world.vms.set_config(FakeVmConfig {
            behaviour: VmBehaviour::SlowStart { ready_after: Duration::from_secs(8) },
            ..FakeVmConfig::default()
        }),
        CrashPoint::DuringSetup => world.downloads.delay_next(1, Duration::from_secs(8)),
        CrashPoint::WhileRunShRuns => {}
        CrashPoint::AfterCompletionBeforeDeregistration => world.github.inject(GitHubFault::Delay {
            endpoint: Endpoint::GetRunner,
            delay_ms: 6_000,
            times: 1,
        }),
        CrashPoint::DuringVmDeletion => {
            world.orka.inject(OrkaFault::Hang { route: Route::DeleteVm, delay_ms: 6_000 })
        }
    }
}

/// Lifts every fault (the restarted controller meets a healthy world).
fn disarm(s: &Scenario) {
    s.world.github.clear_faults();
    s.world.orka.clear_faults();
    s.world.vms.set_config(FakeVmConfig::default());
}

/// `Some` once the first controller is at `point` for `job`.
fn reached(s: &Scenario, point: CrashPoint, job: u64) -> Option<()> {
    let world = &s.world;
    let vms = world.orka.vms();
    let state = world.github.state();
    let registered = |name: &str| state.registered_runners().any(|r| r.name == name);
    let at = match point {
        CrashPoint::AfterDeployRequest => vms.iter().any(|vm| vm.status == FakeVmStatus::Pending),
        CrashPoint::AfterDeploy => vms.iter().any(|vm| vm.status == FakeVmStatus::Running),
        CrashPoint::AfterJitConfig => {
            vms.iter().any(|vm| vm.status == FakeVmStatus::Running && registered(&vm.name))
        }
        CrashPoint::DuringSetup => vms.iter().any(|vm| {
            let runner_dir = world.vms.host_path(&vm.name, "/Users/admin/actions-runner");
            let sentinel = world.vms.host_path(&vm.name, "/tmp/orka-runner-setup-complete");
            runner_dir.is_some_and(|d| d.exists()) && sentinel.is_some_and(|f| !f.exists())
        }),
        CrashPoint::WhileRunShRuns => state.job(job).is_some_and(|j| j.state == JobState::Running),
        CrashPoint::AfterCompletionBeforeDeregistration => {
            state.job(job).is_some_and(|j| j.state == JobState::Completed) && !vms.is_empty()
        }
        CrashPoint::DuringVmDeletion => world
            .orka
            .journal()
            .iter()
            .any(|e| e.method == "DELETE" && e.path.contains("/vms/") && e.status.is_none()),
    };
    at.then_some(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_after_the_deploy_request() -> Result<()> {
    crash_at(CrashPoint::AfterDeployRequest).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_after_the_deploy() -> Result<()> {
    crash_at(CrashPoint::AfterDeploy).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_after_the_jit_config() -> Result<()> {
    crash_at(CrashPoint::AfterJitConfig).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_during_setup() -> Result<()> {
    crash_at(CrashPoint::DuringSetup).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_while_run_sh_runs() -> Result<()> {
    crash_at(CrashPoint::WhileRunShRuns).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_after_completion_before_deregistration() -> Result<()> {
    crash_at(CrashPoint::AfterCompletionBeforeDeregistration).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_during_vm_deletion() -> Result<()> {
    crash_at(CrashPoint::DuringVmDeletion).await
}
