//! A restart among dead, idle and busy VMs, with the default reconcile settings
//! (`VM_TRACKER_INTERVAL`, `PROBE_TIMEOUT`, `PROBE_INTERVAL`, `RECONCILE_UNREACHABLE_STRIKES`
//! not set): a controller is killed while two jobs run and two warm runners wait; meanwhile
//! dead VMs appear — some with no runner registration, some registered but never answering
//! SSH. The next controller's startup sweep deletes the dead ones (the unreachable ones
//! after their quick strikes, without waiting for a periodic pass), and leaves the busy
//! and idle ones running; the jobs finish on the VMs they started on.

mod support;

use std::time::Duration;

use anyhow::{Context, Result, bail};
use github_scaleset::{Auth, GitHubClient, GitHubConfig, ScaleSetApi};
use orka_client::naming::VmName;
use secrecy::SecretString;
use support::{PATIENCE, Scenario, eventually, explained, running_on, stop};
use testkit::github::JobState;
use testkit::orka::SeedVm;
use testkit::vm::VmBehaviour;
use testkit::world::WorldConfig;

/// Settings the world's environment tunes for speed; left out here so the defaults apply.
const TUNED_RECONCILE_SETTINGS: [&str; 4] =
    ["VM_TRACKER_INTERVAL", "PROBE_TIMEOUT", "PROBE_INTERVAL", "RECONCILE_UNREACHABLE_STRIKES"];

/// Generous bound for the unreachable VMs: several default probe timeouts per strike.
const STRIKE_OUT_PATIENCE: Duration = Duration::from_secs(300);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_deletes_dead_vms_and_keeps_busy_and_idle_ones_with_the_default_settings() -> Result<()> {
    let s = Scenario::with(WorldConfig { nodes: 8, ..WorldConfig::default() }).await?;
    let scale_set_id = s.world.github.create_scale_set("mac", &["mac"]);
    let scale = [("MIN_RUNNERS", "2"), ("MAX_RUNNERS", "6")];

    // First controller: two jobs running, two warm runners waiting.
    let mut first = s.controller("first.log", &scale)?;
    let jobs = s.world.enqueue_jobs(2, Duration::from_secs(900));
    let (busy, idle) = explained(&[first.log_path()], async {
        let busy = vec![running_on(&s, jobs[0]).await?, running_on(&s, jobs[1]).await?];
        let idle = eventually("two warm runners wait for jobs", PATIENCE, || async {
            let state = s.world.github.state();
            let idle: Vec<String> = state
                .registered_runners()
                .filter(|r| r.status == testkit::github::RunnerStatus::Idle)
                .map(|r| r.name.clone())
                .collect();
            (idle.len() == 2).then_some(idle)
        })
        .await?;
        anyhow::Ok((busy, idle))
    })
    .await?;
    first.kill9().await?;

    // Dead VMs left behind: three without a registration, three registered but black holes.
    let github = GitHubClient::new(GitHubConfig::new(
        s.world.github.config_url("my-org"),
        Auth::Pat(SecretString::from(s.world.github.pat())),
    ))?;
    let mut unregistered = Vec::new();
    let mut unreachable = Vec::new();
    for i in 0..6 {
        let name = VmName::generate("mac")?.to_string();
        if i % 2 == 1 {
            s.world.vms.set_behaviour(&name, VmBehaviour::BlackHole);
        }
        s.world.orka.seed_vm(SeedVm::running(&name)).await?;
        if i % 2 == 1 {
            github.generate_jit_config(scale_set_id, &name).await.context("registering a dead runner")?;
            unreachable.push(name);
        } else {
            unregistered.push(name);
        }
    }

    // Second controller, default reconcile settings.
    let mut env = s.world.controller_env();
    env.retain(|(name, _)| !TUNED_RECONCILE_SETTINGS.contains(&name.as_str()));
    env.extend(scale.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())));
    let mut second = support::ControllerProcess::spawn(s.dir.path(), "second.log", &env, &["run"])?;
    explained(&[first.log_path(), second.log_path()], async {
        let untouched = |phase: &str| -> Result<()> {
            let state = s.world.github.state();
            for (job, vm) in jobs.iter().zip(&busy) {
                let job = state.job(*job).context("job")?;
                if s.world.orka.vm(vm).is_none() || job.state != JobState::Running {
                    bail!("{phase}: busy VM {vm} touched (job {:?})", job.state);
                }
            }
            for vm in &idle {
                if s.world.orka.vm(vm).is_none() {
                    bail!("{phase}: idle VM {vm} deleted");
                }
            }
            Ok(())
        };
        eventually("the VMs without a registration are deleted", PATIENCE, || async {
            unregistered.iter().all(|vm| s.world.orka.vm(vm).is_none()).then_some(())
        })
        .await?;
        untouched("after the unregistered VMs went")?;
        eventually(
            "the unreachable VMs and their registrations are deleted",
            STRIKE_OUT_PATIENCE,
            || async {
                if let Err(e) = untouched("while striking") {
                    return Some(Err(e));
                }
                let state = s.world.github.state();
                let gone = unreachable.iter().all(|vm| {
                    s.world.orka.vm(vm).is_none() && state.registered_runners().all(|r| &r.name != vm)
                });
                gone.then_some(Ok(()))
            },
        )
        .await??;
        untouched("after the unreachable VMs went")?;

        // The jobs end on the VMs they started on; their VMs go afterwards.
        for job in &jobs {
            s.world.github.finish_job(*job, "succeeded");
        }
        eventually("the busy VMs are deleted after their jobs", PATIENCE, || async {
            busy.iter().all(|vm| s.world.orka.vm(vm).is_none()).then_some(())
        })
        .await?;
        let state = s.world.github.state();
        for (job, vm) in jobs.iter().zip(&busy) {
            let job = state.job(*job).context("job")?;
            if job.runner_name.as_deref() != Some(vm.as_str()) || job.result.as_deref() != Some("succeeded") {
                bail!("job must finish on {vm} with success: {job:?}");
            }
        }
        let log = std::fs::read_to_string(second.log_path())?;
        if !log.contains("probing again") {
            bail!("the unreachable VMs were not struck within the startup pass");
        }
        stop(&mut second).await
    })
    .await
}
