//! Seed scenarios against VMs backed by a real OpenSSH sshd: the real controller binary
//! provisions each VM over real SSH, its provisioning script runs in a real `/bin/sh` on
//! this host, and the fake runner it installs detaches for real and talks to the fake
//! GitHub.
//!
//! | Scenario | What happens | What must hold |
//! |---|---|---|
//! | 1 initial run | start, one job | run.sh really runs from `/Users/<user>/actions-runner` with the setup sentinel written; the job completes, the VM is deleted, its files and processes are gone, no registration is left |
//! | 4 adopting VMs (kill -9) | kill -9 the controller while the job runs, start again | the same run.sh process keeps running, the same VM is kept, the job completes on it, then the VM is deleted |
//!
//! **Writes real host paths** (`/Users/<user>/actions-runner`, `/tmp/orka-runner-*`), so it
//! only runs with `CI=true` or `ORKA_E2E_REAL_SSHD=1` and skips loudly otherwise; under
//! `CI=true` a missing sshd fails it. The paths are cleaned before and after (a drop guard,
//! so also when it fails). Only one real-sshd VM may exist on a host at a time, so both
//! scenarios run one after the other in one test function, holding testkit's host lock
//! (concurrent runs in other processes wait their turn).

#[path = "support/mod.rs"]
mod support;

use std::time::Duration;

use anyhow::{Context, Result, bail};
use support::{PATIENCE, Scenario, eventually, explained, stop};
use testkit::github::{JobId, JobState};
use testkit::sshd::{
    HostLock, clean_vm_files, current_user, in_ci, is_root, skip_or_fail, sshd_installed, vm_paths,
};
use testkit::world::{VmBackendKind, WorldConfig};

/// Opt-in for local runs (CI=true also enables the test).
const OPT_IN: &str = "ORKA_E2E_REAL_SSHD";

/// Kills leftover runners and removes the VM paths when created and when dropped (hold the
/// [`HostLock`] meanwhile, so another process's VM is never hit).
struct HostCleanup {
    user: String,
}

impl HostCleanup {
    fn new(user: &str) -> Self {
        clean_vm_files(user);
        Self { user: user.to_owned() }
    }
}

impl Drop for HostCleanup {
    fn drop(&mut self) {
        clean_vm_files(&self.user);
    }
}

/// Whether this run may write the real VM paths; prints why not.
fn may_run() -> bool {
    let opted_in = std::env::var(OPT_IN).is_ok_and(|v| v == "1" || v == "true");
    if !in_ci() && !opted_in {
        eprintln!(
            "\n!!!!! SKIPPED real-sshd e2e test: it writes /Users/<user>/actions-runner and \
             /tmp/orka-runner-*; set {OPT_IN}=1 (or CI=true) to run it !!!!!\n"
        );
        return false;
    }
    if !sshd_installed() {
        skip_or_fail(&format!("{} not found", testkit::sshd::SSHD));
        return false;
    }
    if !is_root() && !std::path::Path::new("/Users").exists() {
        skip_or_fail("/Users does not exist and only root may create it");
        return false;
    }
    true
}

fn real_sshd_world() -> WorldConfig {
    WorldConfig { nodes: 1, vms_per_node: 1, vm_backend: VmBackendKind::RealSshd, ..WorldConfig::default() }
}

/// The pid of the real run.sh, when the pid file names a live process running
/// `/Users/<user>/actions-runner/run.sh`.
fn live_run_sh(user: &str) -> Option<u32> {
    let pid: u32 = std::fs::read_to_string("/tmp/orka-runner.pid").ok()?.trim().parse().ok()?;
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    let run_sh = format!("/Users/{user}/actions-runner/run.sh");
    cmdline.split(|b| *b == 0).any(|arg| arg == run_sh.as_bytes()).then_some(pid)
}

/// Whether `pid` exists and is not a zombie.
fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .is_ok_and(|stat| !stat.rsplit(')').next().unwrap_or_default().trim_start().starts_with('Z'))
}

/// Waits until `job` runs and the real run.sh serves it; returns (VM name, run.sh pid).
async fn running_for_real(s: &Scenario, job: JobId, user: &str) -> Result<(String, u32)> {
    let vm = eventually("the job runs on a runner", PATIENCE, || async {
        let state = s.world.github.state();
        let job = state.job(job)?;
        (job.state == JobState::Running).then(|| job.runner_name.clone()).flatten()
    })
    .await?;
    let pid =
        eventually("run.sh runs from the real runner directory", PATIENCE, || async { live_run_sh(user) })
            .await?;
    if !std::path::Path::new("/tmp/orka-runner-setup-complete").exists() {
        bail!("the provisioning script did not write /tmp/orka-runner-setup-complete");
    }
    let booted = s.world.sshd_vms.as_ref().context("real-sshd world")?.running().await;
    if booted.as_deref() != Some(vm.as_str()) {
        bail!("the job runs on {vm}, but the real-sshd VM is {booted:?}");
    }
    Ok((vm, pid))
}

/// Waits until the VM's files and its run.sh are gone from the host.
async fn host_clean(user: &str, run_sh_pid: u32) -> Result<()> {
    eventually("the VM's files and processes are gone from the host", PATIENCE, || async {
        (!alive(run_sh_pid) && vm_paths(user).iter().all(|p| !p.exists())).then_some(())
    })
    .await
}

async fn scenario_1_initial_run(user: &str) -> Result<()> {
    let s = Scenario::with(real_sshd_world()).await?;
    let mut controller = s.controller("controller.log", &[])?;
    let jobs = s.world.enqueue_jobs(1, Duration::from_secs(6));
    explained(&[controller.log_path()], async {
        let (_vm, pid) = running_for_real(&s, jobs[0], user).await?;
        eventually("the job completes", PATIENCE, || async {
            s.world.snapshot().completed(jobs[0]).then_some(())
        })
        .await?;
        s.wait_clean().await?;
        host_clean(user, pid).await?;
        stop(&mut controller).await?;
        let job = s.world.github.state().job(jobs[0]).cloned().context("job")?;
        if job.result.as_deref() != Some("succeeded") {
            bail!("the job must succeed: {job:?}");
        }
        s.world.check_invariants(&jobs, 1).map_err(|v| anyhow::anyhow!("{v:#?}"))
    })
    .await
    .context("scenario 1 (initial run) with a real sshd")
}

async fn scenario_4_adopting_after_kill_9(user: &str) -> Result<()> {
    let s = Scenario::with(real_sshd_world()).await?;
    let mut first = s.controller("first.log", &[])?;
    let jobs = s.world.enqueue_jobs(1, Duration::from_secs(12));
    let (vm, pid) = explained(&[first.log_path()], running_for_real(&s, jobs[0], user)).await?;
    first.kill9().await?;
    if !alive(pid) {
        bail!("run.sh (pid {pid}) died with the controller");
    }
    let mut second = s.controller("second.log", &[])?;
    explained(&[first.log_path(), second.log_path()], async {
        eventually("the job completes", PATIENCE, || async {
            let snapshot = s.world.snapshot();
            if snapshot.github.job(jobs[0])?.state != JobState::Completed {
                // While the job runs, its VM and its run.sh must stay.
                if s.world.orka.vm(&vm).is_none() {
                    return Some(Err(anyhow::anyhow!("VM {vm} deleted mid-job")));
                }
                if !alive(pid) {
                    return Some(Err(anyhow::anyhow!("run.sh (pid {pid}) killed mid-job")));
                }
                return None;
            }
            Some(Ok(()))
        })
        .await??;
        let job = s.world.github.state().job(jobs[0]).cloned().context("job")?;
        if job.runner_name.as_deref() != Some(vm.as_str()) || job.result.as_deref() != Some("succeeded") {
            bail!("the job must finish on {vm} with success: {job:?}");
        }
        s.wait_clean().await?;
        host_clean(user, pid).await?;
        stop(&mut second).await?;
        s.world.check_invariants(&jobs, 1).map_err(|v| anyhow::anyhow!("{v:#?}"))
    })
    .await
    .context("scenario 4 (adopting a VM after kill -9) with a real sshd")
}

/// Both scenarios in one function: they share the host's real VM paths.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seed_scenarios_1_and_4_kill_9_with_real_sshd_vms() -> Result<()> {
    if !may_run() {
        return Ok(());
    }
    let user = current_user();
    // Dropped in reverse: the cleanup runs while the lock is still held.
    let _lock = HostLock::acquire().await?;
    let _cleanup = HostCleanup::new(&user);
    scenario_1_initial_run(&user).await?;
    scenario_4_adopting_after_kill_9(&user).await?;
    Ok(())
}
