//! Deprecated runner versions end to end: the real binary against the simulated world whose
//! GitHub refuses a runner version (the fake runner prints GitHub's message and exits 7).
//!
//! | Scenario | What must hold |
//! |---|---|
//! | pinned refused version | one ERROR line; VMs are not churned (at most one retry per interval); `/metrics` and `/readyz` say outdated; the job waits |
//! | unpinned, the latest release is refused, then a new one appears | the controller picks the new release up by itself and serves the job; nothing is left behind |

#[path = "support/mod.rs"]
mod support;

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{Result, ensure};
use support::{PATIENCE, Scenario, eventually, explained, stop};
use testkit::github::JobState;
use testkit::world::RUNNER_VERSION;

/// How the ERROR line starts (the version follows).
const REFUSED_LINE: &str = "GitHub refuses runner version";

/// A loopback address whose port was free a moment ago.
fn free_addr() -> SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap()
}

/// The body of `GET path`, `None` while the server is not up.
async fn get(addr: SocketAddr, path: &str) -> Option<String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.ok()?;
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.ok()?;
    let mut raw = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut raw)).await.ok()?.ok()?;
    let text = String::from_utf8_lossy(&raw).into_owned();
    text.split_once("\r\n\r\n").map(|(_, body)| body.to_owned())
}

/// VM deploys Orka has seen so far.
fn deploys(s: &Scenario) -> usize {
    s.world.orka.journal().iter().filter(|e| e.method == "POST" && e.path.ends_with("/vms")).count()
}

fn refused_lines(log: &str, version: &str) -> usize {
    let needle = format!("{REFUSED_LINE} {version} as deprecated");
    log.lines().filter(|line| line.contains(&needle)).count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_pinned_version_churns_no_vms_and_says_so_once() -> Result<()> {
    let s = Scenario::start().await?;
    s.world.github.refuse_runner_versions([RUNNER_VERSION]);
    let addr = free_addr().to_string();
    let retry = Duration::from_secs(5);
    let mut controller = s.controller(
        "controller.log",
        &[("OUTDATED_RUNNER_RETRY_INTERVAL", "5s"), ("ENABLE_METRICS", "true"), ("METRICS_ADDR", &addr)],
    )?;
    let addr: SocketAddr = addr.parse()?;
    let jobs = s.world.enqueue_jobs(2, Duration::from_secs(1));
    explained(&[controller.log_path()], async {
        eventually("the controller says the runner version is refused", PATIENCE, || async {
            (refused_lines(&controller.log(), RUNNER_VERSION) > 0).then_some(())
        })
        .await?;
        let before = deploys(&s);
        let window = retry * 3;
        tokio::time::sleep(window).await;
        let during = deploys(&s) - before;
        // Without the outdated state every refused runner is replaced at once: a VM per job
        // per probe interval (1 s). With it: one retry per 5 s interval at most.
        ensure!(during <= 4, "{during} VMs deployed in {window:?} while the version is refused");
        let log = controller.log();
        ensure!(refused_lines(&log, RUNNER_VERSION) == 1, "the ERROR line must appear exactly once");
        let line = log.lines().find(|l| l.contains(REFUSED_LINE)).unwrap_or_default();
        ensure!(line.contains("ERROR") && line.contains("GITHUB_RUNNER_VERSION"), "{line}");

        let metrics = get(addr, "/metrics").await.unwrap_or_default();
        ensure!(
            metrics.contains(r#"orka_runner_controller_runner_version_outdated{scale_set="mac"} 1"#),
            "{metrics}"
        );
        let readyz = get(addr, "/readyz").await.unwrap_or_default();
        ensure!(readyz.contains(&format!("outdated: {REFUSED_LINE} {RUNNER_VERSION}")), "{readyz}");
        let snapshot = s.world.snapshot();
        ensure!(jobs.iter().all(|j| !snapshot.completed(*j)), "no job can run on a refused runner");
        ensure!(snapshot.jobs_in(JobState::Assigned) == 2, "the jobs keep waiting");
        stop(&mut controller).await
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unpinned_version_resumes_with_the_next_latest_release() -> Result<()> {
    const OLD: &str = "2.300.0";
    const NEW: &str = "2.331.0";
    let s = Scenario::start().await?;
    s.world.github.refuse_runner_versions([OLD]);
    s.world.downloads.set_latest_release(Some(OLD));
    let mut controller = s.controller(
        "controller.log",
        &[("GITHUB_RUNNER_VERSION", ""), ("OUTDATED_RUNNER_RETRY_INTERVAL", "3s")],
    )?;
    let jobs = s.world.enqueue_jobs(1, Duration::from_secs(1));
    explained(&[controller.log_path()], async {
        eventually("the controller says the latest release is refused", PATIENCE, || async {
            (refused_lines(&controller.log(), OLD) > 0).then_some(())
        })
        .await?;
        ensure!(!s.world.snapshot().completed(jobs[0]));
        s.world.downloads.set_latest_release(Some(NEW));
        eventually("the job completes on a runner of the new release", PATIENCE, || async {
            s.world.snapshot().completed(jobs[0]).then_some(())
        })
        .await?;
        let log = controller.log();
        ensure!(log.contains("new latest runner release"), "the resumption is logged");
        ensure!(refused_lines(&log, OLD) == 1, "the ERROR line must appear exactly once");
        s.wait_clean().await?;
        stop(&mut controller).await?;
        s.world.check_invariants(&jobs, 2).map_err(|v| anyhow::anyhow!("{v:#?}"))
    })
    .await
}
