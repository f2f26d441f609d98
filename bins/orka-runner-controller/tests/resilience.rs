//! Resilience end to end, the real binary against the simulated world: credentials revoked
//! at run time degrade the scale set and recover without a restart; SIGTERM against a
//! GitHub that never answers ends the process within the shutdown bound; `reconcile`
//! refuses to act while a controller holds the scale set's session.

#[path = "../../../tests/support/mod.rs"]
mod support;

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{Context, Result};
use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use support::{ControllerProcess, PATIENCE, Scenario, eventually};
use testkit::github::{Endpoint, Fault};

fn free_addr() -> SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap()
}

/// GET `path`; `None` while the server is not up.
async fn get(addr: SocketAddr, path: &str) -> Option<(u16, String)> {
    let client = Client::builder(TokioExecutor::new()).build_http::<Empty<Bytes>>();
    let uri = format!("http://{addr}{path}").parse().ok()?;
    let response = tokio::time::timeout(Duration::from_secs(10), client.get(uri)).await.ok()?.ok()?;
    let status = response.status().as_u16();
    let body = response.into_body().collect().await.ok()?.to_bytes();
    Some((status, String::from_utf8_lossy(&body).into_owned()))
}

fn controller(s: &Scenario, log: &str, addr: SocketAddr) -> Result<ControllerProcess> {
    let addr = addr.to_string();
    s.controller(log, &[("ENABLE_METRICS", "true"), ("METRICS_ADDR", addr.as_str())])
}

async fn readyz_until(addr: SocketAddr, what: &str, wanted: impl Fn(u16, &str) -> bool) -> Result<String> {
    eventually(what, PATIENCE, || async {
        get(addr, "/readyz").await.filter(|(status, body)| wanted(*status, body)).map(|(_, body)| body)
    })
    .await
}

fn explain(e: anyhow::Error, controllers: &[&ControllerProcess]) -> anyhow::Error {
    let logs: Vec<String> = controllers.iter().map(|c| c.log()).collect();
    anyhow::anyhow!("{e:#}\n--- controller logs ---\n{}", logs.join("\n---\n"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoked_then_restored_credentials_degrade_and_recover_without_a_restart() -> Result<()> {
    let s = Scenario::start().await?;
    let addr = free_addr();
    let mut controller = controller(&s, "controller.log", addr)?;
    let outcome = async {
        readyz_until(addr, "ready", |status, body| status == 200 && body.contains("active, serving")).await?;
        s.world.github.inject(Fault::RevokeCredentials);
        let body = readyz_until(addr, "/readyz reports the degradation", |status, body| {
            status == 503 && body.contains("degraded")
        })
        .await?;
        anyhow::ensure!(body.contains("rejected the credentials"), "the body names the problem: {body}");
        anyhow::ensure!(
            controller.log().contains("GitHub rejected the credentials; scale set degraded"),
            "the log says why"
        );
        tokio::time::sleep(Duration::from_secs(3)).await;
        anyhow::ensure!(
            tokio::time::timeout(Duration::from_millis(100), controller.wait_exit(Duration::from_millis(50)))
                .await
                .map_or(true, |exited| exited.is_err()),
            "the process keeps running while the credentials are rejected"
        );
        s.world.github.inject(Fault::RestoreCredentials);
        readyz_until(addr, "recovered by itself", |status, body| {
            status == 200 && body.contains("active, serving")
        })
        .await?;
        let jobs = s.world.enqueue_jobs(1, Duration::from_secs(1));
        eventually("a job is served after the recovery", PATIENCE, || async {
            s.world.snapshot().completed(jobs[0]).then_some(())
        })
        .await?;
        s.wait_clean().await?;
        controller.sigterm()?;
        let status = controller.wait_exit(Duration::from_secs(60)).await?;
        anyhow::ensure!(status.success(), "{status:?}");
        Ok(())
    }
    .await;
    outcome.map_err(|e| explain(e, &[&controller]))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_against_a_github_that_never_answers_exits_within_the_shutdown_bound() -> Result<()> {
    let s = Scenario::start().await?;
    // Every GitHub request is held for ten minutes: start-up hangs in its first call.
    s.world.github.inject(Fault::Delay { endpoint: Endpoint::Any, delay_ms: 600_000, times: 1_000 });
    let addr = free_addr();
    let mut controller = controller(&s, "controller.log", addr)?;
    let outcome = async {
        eventually("the endpoint server is up", PATIENCE, || async { get(addr, "/healthz").await }).await?;
        tokio::time::sleep(Duration::from_secs(2)).await;
        let (status, body) = get(addr, "/readyz").await.context("/readyz")?;
        anyhow::ensure!(status == 503, "not ready while GitHub does not answer: {body}");
        controller.sigterm()?;
        // SHUTDOWN_DRAIN_TIMEOUT is 10 s in the world's environment; the code enforces it,
        // the test only bounds its wait generously.
        let status = controller.wait_exit(Duration::from_secs(60)).await?;
        anyhow::ensure!(status.success(), "a clean exit: {status:?}");
        Ok(())
    }
    .await;
    outcome.map_err(|e| explain(e, &[&controller]))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconcile_refuses_to_act_while_a_controller_holds_the_session() -> Result<()> {
    let s = Scenario::start().await?;
    let addr = free_addr();
    let mut controller = controller(&s, "controller.log", addr)?;
    let outcome = async {
        readyz_until(addr, "ready", |status, body| status == 200 && body.contains("active, serving")).await?;
        let env = s.world.controller_env();
        let mut acting = ControllerProcess::spawn(s.dir.path(), "reconcile.log", &env, &["reconcile"])?;
        let status = acting.wait_exit(PATIENCE).await?;
        let log = acting.log();
        anyhow::ensure!(!status.success(), "reconcile must refuse: {status:?}\n{log}");
        anyhow::ensure!(log.contains("another process holds its message session"), "a clear message:\n{log}");
        anyhow::ensure!(!log.contains("reconciled VM"), "nothing was acted on:\n{log}");
        let mut looking =
            ControllerProcess::spawn(s.dir.path(), "dry-run.log", &env, &["reconcile", "--dry-run"])?;
        let status = looking.wait_exit(PATIENCE).await?;
        anyhow::ensure!(
            status.success(),
            "--dry-run only looks, so it may run: {status:?}\n{}",
            looking.log()
        );
        // The running controller was not disturbed.
        let (status, body) = get(addr, "/readyz").await.context("/readyz")?;
        anyhow::ensure!(status == 200 && body.contains("active, serving"), "{body}");
        controller.sigterm()?;
        let status = controller.wait_exit(Duration::from_secs(60)).await?;
        anyhow::ensure!(status.success(), "{status:?}");
        // Without a controller, reconcile takes the session, acts, and releases it.
        let mut alone = ControllerProcess::spawn(s.dir.path(), "alone.log", &env, &["reconcile"])?;
        let status = alone.wait_exit(PATIENCE).await?;
        anyhow::ensure!(status.success(), "reconcile alone succeeds: {status:?}\n{}", alone.log());
        Ok(())
    }
    .await;
    outcome.map_err(|e| explain(e, &[&controller]))
}
