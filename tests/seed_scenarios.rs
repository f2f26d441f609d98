//! The seed's manual test plan, automated: the real controller binary as a separate
//! process against the simulated GitHub, Orka and VMs on loopback.
//!
//! | Scenario | What happens | What must hold |
//! |---|---|---|
//! | 1 initial run | start, one job | the job completes, its VM is deleted |
//! | 2 interrupted run | start, a job, kill -9 the moment its VM is provisioned, start again | the old VM is deleted, a new one runs the job, then is deleted |
//! | 3 initial request | jobs queued while the controller is down, then start | as many runners as jobs, all complete, VMs deleted |
//! | 4 adopting VMs | restart while a job runs (SIGTERM, kill -9) | the same VM is kept, the job completes, the VM is deleted afterwards |
//! | 5 cancelling an adopted job | as 4, then cancel the run | the VM is deleted |

#[path = "support/mod.rs"]
mod support;

use std::time::Duration;

use anyhow::{Context, Result, bail};
use support::{ControllerProcess, PATIENCE, Scenario, eventually, explained, running_on, stop};
use testkit::github::{Endpoint, Fault, JobState};
use testkit::orka::FakeVmStatus;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scenario_1_initial_run() -> anyhow::Result<()> {
    let s = Scenario::start().await?;
    let mut controller = s.controller("controller.log", &[])?;
    let jobs = s.world.enqueue_jobs(1, Duration::from_secs(2));
    let outcome = async {
        eventually("the job completes", PATIENCE, || async {
            s.world.snapshot().completed(jobs[0]).then_some(())
        })
        .await?;
        s.wait_clean().await
    }
    .await;
    if let Err(e) = outcome {
        anyhow::bail!("{e}\ncontroller log:\n{}", controller.log());
    }
    controller.sigterm()?;
    let status = controller.wait_exit(Duration::from_secs(60)).await?;
    assert!(status.success(), "SIGTERM must end the controller with 0: {status:?}\n{}", controller.log());
    assert_eq!(s.world.snapshot().jobs_in(JobState::Completed), 1);
    s.world.check_invariants(&jobs, 1).map_err(|v| anyhow::anyhow!("{v:#?}\n{}", controller.log()))?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scenario_2_interrupted_run() -> Result<()> {
    let s = Scenario::start().await?;
    // Hold the JIT registration so the controller is caught right after its VM is deployed.
    s.world.github.inject(Fault::Delay { endpoint: Endpoint::GenerateJitConfig, delay_ms: 5_000, times: 1 });
    let mut first = s.controller("first.log", &[])?;
    let jobs = s.world.enqueue_jobs(1, Duration::from_secs(2));
    let old_vm = explained(&[first.log_path()], async {
        eventually("a VM is deployed", PATIENCE, || async {
            s.world.orka.vms().into_iter().find(|vm| vm.status == FakeVmStatus::Running).map(|vm| vm.name)
        })
        .await
    })
    .await?;
    first.kill9().await?;

    let mut second = s.controller("second.log", &[])?;
    explained(&[first.log_path(), second.log_path()], async {
        let runner = running_on(&s, jobs[0]).await?;
        if runner == old_vm {
            bail!("the job ran on the VM of the killed controller ({old_vm}); it should have been replaced");
        }
        eventually("the old VM is deleted", PATIENCE, || async {
            s.world.orka.vm(&old_vm).is_none().then_some(())
        })
        .await?;
        eventually("the job completes", PATIENCE, || async {
            s.world.snapshot().completed(jobs[0]).then_some(())
        })
        .await?;
        s.wait_clean().await?;
        stop(&mut second).await?;
        s.world.check_invariants(&jobs, 2).map_err(|v| anyhow::anyhow!("{v:#?}"))
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scenario_3_initial_request() -> Result<()> {
    let s = Scenario::start().await?;
    // Queued while no controller runs: the scale set exists, nobody listens.
    s.world.github.create_scale_set("mac", &["mac"]);
    let jobs = s.world.enqueue_jobs(3, Duration::from_secs(2));
    let mut controller = s.controller("controller.log", &[])?;
    explained(&[controller.log_path()], async {
        eventually("all three jobs complete", PATIENCE, || async {
            let snapshot = s.world.snapshot();
            jobs.iter().all(|j| snapshot.completed(*j)).then_some(())
        })
        .await?;
        s.wait_clean().await?;
        stop(&mut controller).await?;
        let served_by: std::collections::BTreeSet<_> =
            s.world.github.state().jobs.iter().filter_map(|j| j.runner_name.clone()).collect();
        if served_by.len() != 3 {
            bail!("expected one runner per job, got {served_by:?}");
        }
        s.world.check_invariants(&jobs, 3).map_err(|v| anyhow::anyhow!("{v:#?}"))
    })
    .await
}

/// Scenario 4 with either stop: the same VM keeps the job through a restart.
async fn adopt_across_restart(kill_hard: bool) -> Result<()> {
    let s = Scenario::start().await?;
    let mut first = s.controller("first.log", &[])?;
    let jobs = s.world.enqueue_jobs(1, Duration::from_secs(12));
    let vm = explained(&[first.log_path()], running_on(&s, jobs[0])).await?;
    if kill_hard {
        first.kill9().await?;
    } else {
        stop(&mut first).await?;
        if s.world.orka.vm(&vm).is_none() {
            bail!("SIGTERM deleted the VM {vm} of a running job");
        }
    }
    let mut second = s.controller("second.log", &[])?;
    explained(&[first.log_path(), second.log_path()], async {
        eventually("the job completes", PATIENCE, || async {
            let snapshot = s.world.snapshot();
            if snapshot.github.job(jobs[0])?.state != JobState::Completed {
                // While the job runs, its VM must stay.
                return s
                    .world
                    .orka
                    .vm(&vm)
                    .is_none()
                    .then(|| Err(anyhow::anyhow!("VM {vm} deleted mid-job")));
            }
            Some(Ok(()))
        })
        .await??;
        let job = s.world.github.state().job(jobs[0]).cloned().context("job")?;
        if job.runner_name.as_deref() != Some(vm.as_str()) || job.result.as_deref() != Some("succeeded") {
            bail!("the job must finish on {vm} with success: {job:?}");
        }
        s.wait_clean().await?;
        stop(&mut second).await?;
        s.world.check_invariants(&jobs, 1).map_err(|v| anyhow::anyhow!("{v:#?}"))
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scenario_4_adopting_vms_after_sigterm() -> Result<()> {
    adopt_across_restart(false).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scenario_4_adopting_vms_after_kill_9() -> Result<()> {
    adopt_across_restart(true).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scenario_5_cancelling_an_adopted_job() -> Result<()> {
    let s = Scenario::start().await?;
    let mut first = s.controller("first.log", &[])?;
    let jobs = s.world.enqueue_jobs(1, Duration::from_secs(600));
    let vm = explained(&[first.log_path()], running_on(&s, jobs[0])).await?;
    stop(&mut first).await?;
    let mut second = s.controller("second.log", &[])?;
    explained(&[first.log_path(), second.log_path()], async {
        // Adopted: the second controller holds the session and the VM is still there.
        eventually("the second controller holds the session", PATIENCE, || async {
            (!s.world.github.state().sessions.is_empty()).then_some(())
        })
        .await?;
        tokio::time::sleep(Duration::from_secs(2)).await;
        if s.world.orka.vm(&vm).is_none() {
            bail!("the adopted VM {vm} was deleted while its job ran");
        }
        if !s.world.github.cancel_job(jobs[0]) {
            bail!("the job had already ended");
        }
        eventually("the adopted VM is deleted", PATIENCE, || async {
            s.world.orka.vm(&vm).is_none().then_some(())
        })
        .await?;
        s.wait_clean().await?;
        stop(&mut second).await?;
        s.world.check_invariants(&jobs, 1).map_err(|v| anyhow::anyhow!("{v:#?}"))
    })
    .await
}

/// The README's first command: `orka-runner-controller demo` exits 0 and says every
/// invariant held.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_passes() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let mut demo = ControllerProcess::spawn(dir.path(), "demo.log", &[], &["demo"])?;
    let status = demo.wait_exit(Duration::from_secs(300)).await?;
    let output = demo.log();
    if !status.success() || !output.contains("PASS: every invariant held") {
        bail!("the demo failed ({status:?}):\n{output}");
    }
    for expected in ["adopt ", "delete ", "jobs served           8"] {
        if !output.contains(expected) {
            bail!("the demo summary lacks {expected:?}:\n{output}");
        }
    }
    Ok(())
}
