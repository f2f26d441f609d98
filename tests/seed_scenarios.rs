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

use support::{PATIENCE, Scenario, eventually};
use testkit::github::JobState;

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
    eprintln!("{}", controller.log());
    s.world.check_invariants(&jobs, 1).map_err(|v| anyhow::anyhow!("{v:#?}\n{}", controller.log()))?;
    Ok(())
}
