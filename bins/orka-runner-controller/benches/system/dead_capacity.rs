//! Scenario `dead`: dead capacity after a restart. A controller is killed while `busy`
//! jobs run; their VMs then stop answering SSH (the fake VM is destroyed, its runner's
//! polls are kept up by the benchmark, so GitHub still reports the job running), and
//! `dead` dead VMs appear: half without a runner registration, half registered (never
//! connected) but black holes. A second controller starts; measured from its spawn: when
//! the last VM without a registration is gone, when the last unreachable one is gone, and
//! whether the busy ones were left alone. Run once per `VM_TRACKER_INTERVAL`: the figures
//! must not depend on it.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use futures::StreamExt;
use github_scaleset::{Auth, GitHubClient, GitHubConfig, ScaleSetApi};
use orka_client::naming::VmName;
use secrecy::SecretString;
use testkit::github::JobState;
use testkit::orka::SeedVm;
use testkit::vm::VmBehaviour;

use crate::harness::{Controller, WorldSpec, eventually, secs, start_world};

/// Parameters of the scenario.
#[derive(Debug, Clone)]
pub struct Params {
    /// Dead VMs (half without a registration, half unreachable).
    pub dead: usize,
    /// Busy VMs whose SSH stops answering.
    pub busy: usize,
    /// The `PROBE_TIMEOUT` the controller runs with.
    pub probe_timeout: Duration,
    /// VM_TRACKER_INTERVAL values, one run each.
    pub intervals: Vec<Duration>,
}

struct Figures {
    unregistered_gone: Duration,
    unreachable_gone: Duration,
    busy_untouched: bool,
}

pub async fn run(params: &Params) -> Result<()> {
    let mut rows = Vec::new();
    for interval in &params.intervals {
        rows.push((*interval, one_run(params, *interval).await?));
    }
    let t = params.probe_timeout;
    println!(
        "\n## dead capacity — {} dead VMs ({} without a registration, {} idle and unreachable) + {} busy unreachable, PROBE_TIMEOUT = {}",
        params.dead,
        params.dead / 2,
        params.dead - params.dead / 2,
        params.busy,
        secs(t)
    );
    println!(
        "| VM_TRACKER_INTERVAL | no registration gone | target ≤ 2 s | unreachable gone | target ≤ 3.5 × PROBE_TIMEOUT = {} | busy untouched | Go integration |",
        secs(t.mul_f64(3.5))
    );
    println!("|---|---|---|---|---|---|---|");
    for (interval, f) in rows {
        println!(
            "| {} | {} | {} | {} | {} | {} | start only, serial 10 s per dead VM; orphans 2 × 300 s |",
            secs(interval),
            secs(f.unregistered_gone),
            if f.unregistered_gone <= Duration::from_secs(2) { "yes" } else { "**no**" },
            secs(f.unreachable_gone),
            if f.unreachable_gone <= t.mul_f64(3.5) { "yes" } else { "**no**" },
            if f.busy_untouched { "yes" } else { "**no**" },
        );
    }
    Ok(())
}

async fn one_run(params: &Params, interval: Duration) -> Result<Figures> {
    let world =
        start_world(&WorldSpec { capacity: params.dead + params.busy + 8, ..WorldSpec::default() }).await?;
    let scale_set_id = world.github.create_scale_set("mac", &["mac"]);
    let dir = tempfile::tempdir()?;
    let probe_timeout = format!("{}ms", params.probe_timeout.as_millis());
    let interval_text = format!("{}ms", interval.as_millis());
    let max_runners = params.busy.to_string();
    let env = [
        ("VM_TRACKER_INTERVAL", interval_text.as_str()),
        ("PROBE_TIMEOUT", probe_timeout.as_str()),
        ("PROBE_INTERVAL", "30s"),
        ("MAX_RUNNERS", max_runners.as_str()),
        ("LOG_LEVEL", "info"),
        ("LOG_FORMAT", "json"),
    ];

    // Busy runners, then the controller dies.
    let mut first = Controller::spawn(&world, dir.path(), "first.log", &["run"], &env, false)?;
    let jobs = world.enqueue_jobs(params.busy, Duration::from_secs(3600));
    let busy: Vec<String> =
        eventually("the jobs run", Duration::from_secs(180), Duration::from_millis(50), || {
            let state = world.github.state();
            let names: Vec<String> = jobs
                .iter()
                .filter_map(|j| state.job(*j).filter(|j| j.state == JobState::Running)?.runner_name.clone())
                .collect();
            (names.len() == jobs.len()).then_some(names)
        })
        .await
        .map_err(|e| anyhow::anyhow!("{e}\n{}", first.log()))?;
    first.kill9().await?;

    // Dead VMs: even ones without a registration, odd ones registered black holes.
    let github = Arc::new(GitHubClient::new(GitHubConfig::new(
        world.github.config_url("my-org"),
        Auth::Pat(SecretString::from(world.github.pat())),
    ))?);
    let mut unregistered = Vec::new();
    let mut unreachable = Vec::new();
    for i in 0..params.dead {
        let name = VmName::generate("mac")?.to_string();
        if i % 2 == 1 {
            world.vms.set_behaviour(&name, VmBehaviour::BlackHole);
            unreachable.push(name.clone());
        } else {
            unregistered.push(name.clone());
        }
        world.orka.seed_vm(SeedVm::running(&name)).await.context("seeding a dead VM")?;
    }
    let registrations = unreachable.iter().cloned().map(|name| {
        let github = github.clone();
        async move { github.generate_jit_config(scale_set_id, &name).await }
    });
    for result in futures::stream::iter(registrations).buffer_unordered(16).collect::<Vec<_>>().await {
        result?;
    }
    // The busy VMs stop answering SSH; their jobs keep running (the benchmark polls as
    // their runners, so GitHub keeps reporting them busy).
    for name in &busy {
        world.vms.destroy_vm(name);
    }
    let polling = Arc::new(AtomicBool::new(true));
    let poller = {
        let (github, busy, polling) = (world.github.clone(), busy.clone(), polling.clone());
        tokio::spawn(async move {
            while polling.load(Ordering::Relaxed) {
                for name in &busy {
                    github.poll_runner_named(name);
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        })
    };

    let mut second = Controller::spawn(&world, dir.path(), "second.log", &["run"], &env, false)?;
    let started = second.started;
    let mut unregistered_gone = None;
    let mut unreachable_gone = None;
    let mut busy_untouched = true;
    let limit = params.probe_timeout * 20 + Duration::from_secs(120);
    while unregistered_gone.is_none() || unreachable_gone.is_none() {
        if started.elapsed() > limit {
            bail!("dead VMs still there after {}\n{}", secs(limit), second.log());
        }
        let vms: std::collections::HashSet<String> = world.orka.vms().into_iter().map(|vm| vm.name).collect();
        if unregistered_gone.is_none() && unregistered.iter().all(|n| !vms.contains(n)) {
            unregistered_gone = Some(started.elapsed());
        }
        if unreachable_gone.is_none() && unreachable.iter().all(|n| !vms.contains(n)) {
            unreachable_gone = Some(started.elapsed());
        }
        let state = world.github.state();
        if busy.iter().any(|n| !vms.contains(n))
            || jobs.iter().any(|j| state.job(*j).is_none_or(|j| j.state != JobState::Running))
        {
            busy_untouched = false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    polling.store(false, Ordering::Relaxed);
    poller.await?;
    second.stop(Duration::from_secs(30)).await?;
    Ok(Figures {
        unregistered_gone: unregistered_gone.expect("loop ends when set"),
        unreachable_gone: unreachable_gone.expect("loop ends when set"),
        busy_untouched,
    })
}
