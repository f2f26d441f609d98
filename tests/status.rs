//! `status` end to end: the real binary against the simulated world explains why jobs
//! wait, on `/status` and through the `status` subcommand.
//!
//! | Scenario | Reason asserted |
//! |---|---|
//! | three long jobs, `MAX_RUNNERS=1` | `MAX_RUNNERS reached` (JSON and the subcommand's text); the busy VM names its job |
//! | Orka answers every deploy "not enough capacity" | `Orka out of capacity` |
//! | a second replica of the same scale set | `session held elsewhere` on the standby |

#[path = "support/mod.rs"]
mod support;

use std::net::SocketAddr;
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, Result, ensure};
use serde_json::Value;
use support::{PATIENCE, Scenario, eventually, explained, stop};
use testkit::orka::Fault;

/// A loopback address whose port was free a moment ago.
fn free_addr() -> SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap()
}

/// `/status` of the controller at `addr`, `None` while it does not answer.
async fn status_json(addr: SocketAddr) -> Option<Value> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.ok()?;
    let request = format!("GET /status HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.ok()?;
    let mut raw = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut raw)).await.ok()?.ok()?;
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (_, body) = text.split_once("\r\n\r\n")?;
    serde_json::from_str(body).ok()
}

/// The reasons `/status` gives for scale set `mac`'s waiting jobs.
async fn reasons(addr: SocketAddr) -> Vec<String> {
    let Some(status) = status_json(addr).await else { return Vec::new() };
    status["scale_sets"]
        .as_array()
        .and_then(|sets| sets.iter().find(|s| s["name"] == "mac"))
        .and_then(|mac| mac["waiting"].as_array())
        .map(|waiting| waiting.iter().filter_map(|w| w["reason"].as_str().map(str::to_owned)).collect())
        .unwrap_or_default()
}

/// Runs `orka-runner-controller status` with `args` and returns its stdout.
async fn status_command(args: &[&str]) -> Result<String> {
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_orka-runner-controller"));
    command
        .arg("status")
        .args(args)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .stdin(Stdio::null())
        .kill_on_drop(true);
    let output = tokio::time::timeout(Duration::from_secs(30), command.output())
        .await
        .context("status did not finish")??;
    ensure!(output.status.success(), "status failed: {}", String::from_utf8_lossy(&output.stderr));
    Ok(String::from_utf8(output.stdout)?)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn more_jobs_than_max_runners_wait_for_max_runners() -> Result<()> {
    let s = Scenario::start().await?;
    let addr = free_addr();
    let mut controller = s.controller(
        "controller.log",
        &[
            ("MAX_RUNNERS", "1"),
            ("METRICS_ADDR", &addr.to_string()),
            ("ENABLE_HEALTH_ENDPOINTS", "true"),
            ("LOG_LEVEL", "warn"),
        ],
    )?;
    let _jobs = s.world.enqueue_jobs(3, Duration::from_secs(60));
    explained(&[controller.log_path()], async {
        eventually("status says MAX_RUNNERS is reached while a job runs", PATIENCE, || async {
            let status = status_json(addr).await?;
            let busy = status["scale_sets"][0]["vms"][0]["state"] == "busy";
            let reasons = reasons(addr).await;
            (busy && reasons.iter().filter(|r| *r == "MAX_RUNNERS reached").count() >= 2).then_some(())
        })
        .await?;
        let json: Value =
            serde_json::from_str(&status_command(&["--addr", &addr.to_string(), "--json"]).await?)?;
        let mac = &json["scale_sets"][0];
        ensure!(mac["role"] == "active", "{mac}");
        ensure!(mac["max_runners"] == 1, "{mac}");
        ensure!(mac["vms"].as_array().is_some_and(|vms| vms.len() == 1), "one VM at MAX_RUNNERS=1: {mac}");
        // Orka's nodes API answers for the namespace (the world has four nodes).
        ensure!(mac["orka_nodes"]["total"] == 4, "{mac}");
        // Job traceability: the busy VM names its job as the job messages did.
        let job = &mac["vms"][0]["job"];
        ensure!(
            job["name"] == "build" && job["repository"].as_str().is_some_and(|r| r.contains('/')),
            "{mac}"
        );
        ensure!(job["run_id"].as_i64().is_some_and(|id| id != 0), "{mac}");
        let text = status_command(&["--addr", &addr.to_string()]).await?;
        ensure!(text.contains("scale set mac: active, serving"), "{text}");
        ensure!(text.contains("× MAX_RUNNERS reached"), "{text}");
        stop(&mut controller).await
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_orka_cluster_is_named_as_the_reason() -> Result<()> {
    let s = Scenario::start().await?;
    s.world.orka.inject_times(Fault::CapacityExhaustedFast { status: 500 }, 10_000);
    let addr = free_addr();
    let mut controller = s.controller(
        "controller.log",
        &[
            ("MAX_RUNNERS", "2"),
            ("METRICS_ADDR", &addr.to_string()),
            ("ENABLE_HEALTH_ENDPOINTS", "true"),
            ("LOG_LEVEL", "warn"),
        ],
    )?;
    let _jobs = s.world.enqueue_jobs(1, Duration::from_secs(5));
    explained(&[controller.log_path()], async {
        eventually("status says Orka is out of capacity", PATIENCE, || async {
            reasons(addr).await.iter().any(|r| r == "Orka out of capacity").then_some(())
        })
        .await?;
        let status = status_json(addr).await.context("status")?;
        ensure!(status["scale_sets"][0]["orka_capacity_waits"].as_u64() >= Some(1), "{status}");
        stop(&mut controller).await
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_standby_replica_says_the_session_is_held_elsewhere() -> Result<()> {
    let s = Scenario::start().await?;
    let (first_addr, second_addr) = (free_addr(), free_addr());
    let mut first = s.controller(
        "first.log",
        &[("METRICS_ADDR", &first_addr.to_string()), ("ENABLE_HEALTH_ENDPOINTS", "true")],
    )?;
    let logs = [first.log_path(), s.dir.path().join("second.log")];
    explained(&logs, async {
        eventually("the first replica is active", PATIENCE, || async {
            let status = status_json(first_addr).await?;
            (status["scale_sets"][0]["role"] == "active").then_some(())
        })
        .await?;
        let mut second = s.controller(
            "second.log",
            &[("METRICS_ADDR", &second_addr.to_string()), ("ENABLE_HEALTH_ENDPOINTS", "true")],
        )?;
        eventually("the second replica says the session is held elsewhere", PATIENCE, || async {
            let reasons = reasons(second_addr).await;
            (reasons == ["session held elsewhere"]).then_some(())
        })
        .await?;
        let standby = status_json(second_addr).await.context("status")?;
        ensure!(standby["scale_sets"][0]["role"] == "standby", "{standby}");
        ensure!(reasons(first_addr).await.is_empty(), "nothing waits on the active replica");
        stop(&mut second).await?;
        stop(&mut first).await
    })
    .await
}
