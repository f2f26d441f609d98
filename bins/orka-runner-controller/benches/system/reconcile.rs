//! Scenario `reconcile`: wall time of one reconcile pass (`orka-runner-controller reconcile
//! --dry-run`, the real binary) over N owned VMs, each with a runner registration so it is
//! probed over SSH, a share of them black holes (TCP accepted, no SSH banner ever), at probe
//! timeout T. Prints the Go integration's serial model beside it.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use futures::StreamExt;
use github_scaleset::{Auth, GitHubClient, GitHubConfig, ScaleSetApi};
use orka_client::naming::VmName;
use secrecy::SecretString;
use testkit::orka::SeedVm;
use testkit::vm::VmBehaviour;
use testkit::world::World;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::time::Instant;
use vm_probe::{Ssh2Shell, SshAuth, SshConfig, SshTarget, VmShell};

use crate::harness::{Controller, WorldSpec, secs, start_world};

/// Parameters of the scenario.
#[derive(Debug, Clone)]
pub struct Params {
    /// VM counts.
    pub sizes: Vec<usize>,
    /// Percentages of black-hole VMs.
    pub unreachable: Vec<usize>,
    /// The `PROBE_TIMEOUT` the controller runs with.
    pub probe_timeout: Duration,
}

/// The Go integration's SSH timeout per unreachable VM.
const GO_SSH_TIMEOUT: Duration = Duration::from_secs(10);

pub async fn run(params: &Params) -> Result<()> {
    let t = params.probe_timeout;
    let target = t.mul_f64(1.5) + Duration::from_secs(2);
    let probe = serial_probe_time().await?;
    println!("\n## reconcile — one pass over N owned, registered VMs (probe timeout T = {})", secs(t));
    println!(
        "serial probe of one reachable VM (ssh2, connect + probe script): {:.1} ms (mean of 30, the Go model's probe time)",
        probe.as_secs_f64() * 1000.0
    );
    println!("target: ≤ 1.5·T + 2 s = {}", secs(target));
    println!(
        "| N | unreachable | pass wall time | process exit | black holes read as a failed probe | reachable VMs reported unreachable | target | met | Go serial model (N_unr·10 s + N·probe) | Go / ours |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|");
    for &n in &params.sizes {
        for &pct in &params.unreachable {
            let unreachable = n * pct / 100;
            let pass = one_pass(n, unreachable, t).await?;
            let wall = pass.wall;
            let go = GO_SSH_TIMEOUT * unreachable as u32 + probe * n as u32;
            println!(
                "| {n} | {pct} % ({unreachable}) | {} | {} | {} of {unreachable} | {} | {} | {} | {} | {:.1}× |",
                secs(wall),
                secs(pass.exited),
                pass.black_holes_failed,
                pass.reachable_misreported,
                secs(target),
                if wall <= target && pass.reachable_misreported == 0 { "yes" } else { "**no**" },
                secs(go),
                go.as_secs_f64() / wall.as_secs_f64()
            );
        }
    }
    Ok(())
}

/// Mean time of one SSH probe of a reachable fake VM, done one after another.
async fn serial_probe_time() -> Result<Duration> {
    let world = start_world(&WorldSpec::default()).await?;
    let mut targets = Vec::new();
    for _ in 0..3 {
        let name = VmName::generate("mac")?.to_string();
        let vm = world.orka.seed_vm(SeedVm::running(&name)).await?;
        targets.push(SshTarget {
            host: vm.ip.context("seeded VM has no ip")?,
            port: vm.ssh.context("seeded VM has no ssh port")?,
        });
    }
    let shell = Ssh2Shell::new(SshConfig::new("admin", SshAuth::Password(SecretString::from("admin"))))?;
    // Warm-up (first connection pays for lazy initialisation).
    shell.probe(&targets[0]).await?;
    let started = Instant::now();
    let rounds = 10;
    for _ in 0..rounds {
        for target in &targets {
            shell.probe(target).await?;
        }
    }
    Ok(started.elapsed() / (rounds * targets.len()) as u32)
}

/// What one pass measured.
struct Pass {
    /// Spawn of the binary to the decision table (the pass is over).
    wall: Duration,
    /// Spawn to process exit.
    exited: Duration,
    /// Black-hole VMs whose row shows a failed probe (`probe=unreachable`, the first strike
    /// of a dry run: `recheck` / `probe_failed`).
    black_holes_failed: usize,
    /// Reachable VMs whose row shows anything but a probe report: the figure that must be 0.
    reachable_misreported: usize,
}

/// Seeds `n` owned VMs (the first `unreachable` black holes), registers a runner for each,
/// times `reconcile --dry-run`; returns the wall time and, per kind of VM, how its rows
/// read: a black hole must show `probe=unreachable`, a reachable VM a probe report
/// (`probe=setup:…`).
async fn one_pass(n: usize, unreachable: usize, probe_timeout: Duration) -> Result<Pass> {
    let world = start_world(&WorldSpec { capacity: n, ..WorldSpec::default() }).await?;
    let scale_set_id = world.github.create_scale_set("mac", &["mac"]);
    let github = GitHubClient::new(GitHubConfig::new(
        world.github.config_url("my-org"),
        Auth::Pat(SecretString::from(world.github.pat())),
    ))?;
    let black_holes = seed(&world, &github, scale_set_id, n, unreachable).await?;
    let dir = tempfile::tempdir()?;
    let timeout = format!("{}ms", probe_timeout.as_millis());
    let mut controller = Controller::spawn(
        &world,
        dir.path(),
        "reconcile.log",
        &["reconcile", "--dry-run"],
        &[("PROBE_TIMEOUT", &timeout), ("LOG_LEVEL", "warn")],
        true,
    )?;
    let started = controller.started;
    let stdout = controller.take_stdout().context("stdout not captured")?;
    // The table is printed once the pass is over: its header line marks the end of the pass.
    let mut lines = BufReader::new(stdout).lines();
    let mut pass_done = None;
    let mut text = String::new();
    let reading = async {
        while let Some(line) = lines.next_line().await? {
            if pass_done.is_none() && line.starts_with("scale set ") {
                pass_done = Some(started.elapsed());
            }
            text.push_str(&line);
            text.push('\n');
        }
        anyhow::Ok(())
    };
    tokio::time::timeout(Duration::from_secs(900), reading).await.context("reconcile --dry-run hung")??;
    let status = controller.wait(Duration::from_secs(120)).await?;
    let exited = started.elapsed();
    if !status.success() {
        bail!("reconcile --dry-run failed: {status:?}\n{text}\n{}", controller.log());
    }
    let stdout = text;
    let wall = pass_done.context("no table printed")?;
    let rows: Vec<&str> = stdout.lines().filter(|l| l.starts_with("mac-")).collect();
    if rows.len() != n {
        bail!("expected {n} rows, got {}:\n{stdout}", rows.len());
    }
    let mut black_holes_failed = 0;
    let mut reachable_misreported = 0;
    for row in rows {
        let name = row.split_whitespace().next().unwrap_or_default();
        let reported = row.contains("probe=setup:");
        if black_holes.contains(name) {
            black_holes_failed += usize::from(row.contains("probe=unreachable"));
        } else if !reported {
            reachable_misreported += 1;
        }
    }
    Ok(Pass { wall, exited, black_holes_failed, reachable_misreported })
}

async fn seed(
    world: &World,
    github: &GitHubClient,
    scale_set_id: i64,
    n: usize,
    unreachable: usize,
) -> Result<HashSet<String>> {
    let github = Arc::new(github.clone());
    let mut names = Vec::with_capacity(n);
    let mut black_holes = HashSet::new();
    for i in 0..n {
        let name = VmName::generate("mac")?.to_string();
        if i < unreachable {
            world.vms.set_behaviour(&name, VmBehaviour::BlackHole);
            black_holes.insert(name.clone());
        }
        world.orka.seed_vm(SeedVm::running(&name)).await?;
        names.push(name);
    }
    let registrations = names.into_iter().map(|name| {
        let github = github.clone();
        async move { github.generate_jit_config(scale_set_id, &name).await }
    });
    let results: Vec<_> = futures::stream::iter(registrations).buffer_unordered(32).collect().await;
    for result in results {
        result?;
    }
    Ok(black_holes)
}
