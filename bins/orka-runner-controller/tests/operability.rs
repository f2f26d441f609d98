//! Operability end to end: the real binary against the simulated world, observed only
//! through its HTTP endpoints — the seven gauges follow live statistics, every stage
//! histogram gets samples from one job's path, and readiness tells the standby from the
//! active replica (and follows a failover).

#[path = "../../../tests/support/mod.rs"]
mod support;

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{Context, Result};
use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use orka_runner_controller::metrics::Stage;
use support::{ControllerProcess, PATIENCE, Scenario, eventually};

/// `N` distinct loopback addresses whose ports were free a moment ago.
fn free_addrs<const N: usize>() -> [SocketAddr; N] {
    let listeners: Vec<_> = (0..N).map(|_| std::net::TcpListener::bind("127.0.0.1:0").unwrap()).collect();
    std::array::from_fn(|i| listeners[i].local_addr().unwrap())
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

/// The value of the sample whose line starts with `prefix`.
fn sample(text: &str, prefix: &str) -> Option<f64> {
    text.lines().find(|l| l.starts_with(prefix))?.rsplit(' ').next()?.parse().ok()
}

fn controller(s: &Scenario, log: &str, addr: SocketAddr) -> Result<ControllerProcess> {
    let addr = addr.to_string();
    s.controller(log, &[("ENABLE_METRICS", "true"), ("METRICS_ADDR", addr.as_str()), ("LOG_FORMAT", "json")])
}

/// Every log line is a JSON object with the basics; returns them.
fn json_lines(log: &str) -> Result<Vec<serde_json::Value>> {
    log.lines()
        .map(|line| {
            let value: serde_json::Value =
                serde_json::from_str(line).with_context(|| format!("not a JSON log line: {line}"))?;
            for key in ["timestamp", "level", "target", "message"] {
                anyhow::ensure!(value.get(key).is_some(), "{key} missing in {line}");
            }
            Ok(value)
        })
        .collect()
}

/// Fails with the controller logs attached.
fn explain(e: anyhow::Error, controllers: &[&ControllerProcess]) -> anyhow::Error {
    let logs: Vec<String> = controllers.iter().map(|c| c.log()).collect();
    anyhow::anyhow!("{e:#}\n--- controller logs ---\n{}", logs.join("\n---\n"))
}

/// Waits until the seven gauges of `scale_set` read `expected` (Go order).
async fn gauges_read(addr: SocketAddr, scale_set: &str, expected: [f64; 7]) -> Result<()> {
    let names = [
        "runner_scale_set_total_available_jobs",
        "runner_scale_set_total_acquired_jobs",
        "runner_scale_set_total_assigned_jobs",
        "runner_scale_set_total_running_jobs",
        "runner_scale_set_total_registered_runners",
        "runner_scale_set_total_busy_runners",
        "runner_scale_set_total_idle_runners",
    ];
    let what = format!("gauges of {scale_set} read {expected:?}");
    eventually(&what, PATIENCE, || async {
        let (_, text) = get(addr, "/metrics").await?;
        let values: Vec<f64> = names
            .iter()
            .map(|n| sample(&text, &format!("{n}{{runner_name=\"{scale_set}\"}}")).unwrap_or(-1.0))
            .collect();
        (values == expected).then_some(())
    })
    .await
}

/// The value of the `name` sample whose labels include every pair of `labels`.
fn labelled(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    text.lines().find_map(|line| {
        let rest = line.strip_prefix(name)?.strip_prefix('{')?;
        let (set, value) = rest.split_once("} ")?;
        let pairs: Vec<&str> = set.split(',').collect();
        labels
            .iter()
            .all(|(k, v)| pairs.contains(&format!("{k}=\"{v}\"").as_str()))
            .then(|| value.parse().ok())?
    })
}

/// After one succeeded job of the world's default repository (`my-org/app`, `push`): the
/// ARC metrics carry the scale set's and the job's labels.
fn gha_metrics_carry_arc_labels(text: &str, scale_set: &str) -> Result<()> {
    let scale_set_labels =
        [("name", scale_set), ("organization", "my-org"), ("enterprise", ""), ("repository", "")];
    let job =
        [("name", scale_set), ("organization", "my-org"), ("repository", "app"), ("event_name", "push")];
    let succeeded = [job.as_slice(), &[("job_result", "succeeded")]].concat();
    let max = labelled(text, "gha_max_runners", &scale_set_labels);
    anyhow::ensure!(max.is_some_and(|m| m >= 1.0), "gha_max_runners: {max:?}\n{text}");
    type Labels<'a> = &'a [(&'a str, &'a str)];
    let expectations: [(&str, Labels<'_>, f64); 7] = [
        ("gha_started_jobs_total", &job, 1.0),
        ("gha_completed_jobs_total", &succeeded, 1.0),
        ("gha_job_startup_duration_seconds_count", &job, 1.0),
        ("gha_job_execution_duration_seconds_count", &succeeded, 1.0),
        ("gha_min_runners", &scale_set_labels, 0.0),
        ("gha_assigned_jobs", &scale_set_labels, 0.0),
        ("gha_desired_runners", &scale_set_labels, 0.0),
    ];
    for (name, labels, expected) in expectations {
        let value = labelled(text, name, labels);
        anyhow::ensure!(value == Some(expected), "{name} {labels:?}: {value:?}, expected {expected}\n{text}");
    }
    anyhow::ensure!(
        text.lines()
            .filter(|l| l.starts_with("gha_"))
            .all(|l| l.contains("namespace=\"") && !l.contains("job_name")),
        "every gha_* series has a namespace and none a job_name:\n{text}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_job_fills_every_stage_histogram_and_the_gauges_follow_statistics() -> Result<()> {
    let s = Scenario::start().await?;
    let [addr] = free_addrs();
    let controller = controller(&s, "controller.log", addr)?;
    let scale_set = s.world.config.scale_set.clone();
    let outcome = async {
        eventually("/readyz says ready", PATIENCE, || async {
            get(addr, "/readyz").await.filter(|(status, _)| *status == 200).map(|_| ())
        })
        .await?;
        let jobs = s.world.enqueue_jobs(1, Duration::from_secs(8));
        // While the job runs on its runner: assigned 1, running 1, registered 1, busy 1.
        gauges_read(addr, &scale_set, [0.0, 0.0, 1.0, 1.0, 1.0, 1.0, 0.0]).await?;
        eventually("the job completes", PATIENCE, || async { s.world.snapshot().completed(jobs[0]).then_some(()) })
            .await?;
        s.wait_clean().await?;
        gauges_read(addr, &scale_set, [0.0; 7]).await?;
        let counts = |text: &str| -> Vec<(&'static str, f64)> {
            Stage::ALL
                .iter()
                .map(|stage| {
                    let count = format!(
                        "orka_runner_controller_stage_duration_seconds_count{{scale_set=\"{scale_set}\",stage=\"{}\"}}",
                        stage.label()
                    );
                    (stage.label(), sample(text, &count).unwrap_or(0.0))
                })
                .collect()
        };
        let filled = eventually("every stage histogram has a sample", PATIENCE, || async {
            let (_, text) = get(addr, "/metrics").await?;
            counts(&text).iter().all(|(_, n)| *n >= 1.0).then_some(text)
        })
        .await;
        let text = match filled {
            Ok(text) => text,
            Err(e) => {
                let (_, text) = get(addr, "/metrics").await.unwrap_or_default();
                anyhow::bail!("{e:#}: stage sample counts {:?}", counts(&text));
            }
        };
        let succeeded = format!("orka_runner_controller_provisions_total{{scale_set=\"{scale_set}\",outcome=\"succeeded\"}}");
        anyhow::ensure!(sample(&text, &succeeded) == Some(1.0), "one successful provisioning expected:\n{text}");
        gha_metrics_carry_arc_labels(&text, &scale_set)?;
        let held = format!("orka_runner_controller_session_held{{scale_set=\"{scale_set}\"}}");
        anyhow::ensure!(sample(&text, &held) == Some(1.0), "the active replica holds the session:\n{text}");
        // Logs: JSON lines carrying the scale set and the VM name as fields.
        let lines = json_lines(&controller.log())?;
        anyhow::ensure!(lines.iter().any(|l| l["scale_set"] == scale_set.as_str()), "no line with scale_set");
        let vm_prefix = format!("{scale_set}-");
        anyhow::ensure!(
            lines.iter().any(|l| l["vm"].as_str().is_some_and(|vm| vm.starts_with(&vm_prefix))),
            "no line with the VM name as a field"
        );
        Ok(())
    }
    .await;
    outcome.map_err(|e: anyhow::Error| explain(e, &[&controller]))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_standby_is_ready_as_standby_and_takes_over_on_sigterm() -> Result<()> {
    let s = Scenario::start().await?;
    let [addr_a, addr_b] = free_addrs();
    let mut active = controller(&s, "active.log", addr_a)?;
    let ready = |addr: SocketAddr| async move {
        eventually("/readyz says ready", PATIENCE, || async {
            get(addr, "/readyz").await.filter(|(status, _)| *status == 200)
        })
        .await
    };
    let (_, body) = ready(addr_a).await.map_err(|e| explain(e, &[&active]))?;
    anyhow::ensure!(body.contains(": active, serving"), "{body}");

    let standby = controller(&s, "standby.log", addr_b)?;
    let outcome = async {
        // A standby is a healthy replica: Ready, with its role in the body.
        eventually("the standby reports standing by", PATIENCE, || async {
            get(addr_b, "/readyz").await.filter(|(status, body)| *status == 200 && body.contains(": standby"))
        })
        .await?;
        let (status, _) = get(addr_b, "/healthz").await.context("standby /healthz")?;
        anyhow::ensure!(status == 200, "a standby is alive");
        let (_, metrics) = get(addr_b, "/metrics").await.context("standby /metrics")?;
        let held =
            format!("orka_runner_controller_session_held{{scale_set=\"{}\"}}", s.world.config.scale_set);
        anyhow::ensure!(
            sample(&metrics, &held).unwrap_or(0.0) == 0.0,
            "a standby does not claim the session:\n{metrics}"
        );
        let role = |role: &str| {
            format!(
                "orka_runner_controller_scale_set_role{{scale_set=\"{}\",role=\"{role}\"}}",
                s.world.config.scale_set
            )
        };
        anyhow::ensure!(
            sample(&metrics, &role("standby")) == Some(1.0),
            "role metric says standby:\n{metrics}"
        );
        // The active replica leaves (SIGTERM closes its session): the standby takes over.
        active.sigterm()?;
        let status = active.wait_exit(Duration::from_secs(60)).await?;
        anyhow::ensure!(status.success(), "SIGTERM ends the active replica with 0: {status:?}");
        eventually("the standby becomes active", PATIENCE, || async {
            get(addr_b, "/readyz")
                .await
                .filter(|(status, body)| *status == 200 && body.contains(": active, serving"))
        })
        .await?;
        let (_, metrics) = get(addr_b, "/metrics").await.context("new active /metrics")?;
        anyhow::ensure!(
            sample(&metrics, &role("active")) == Some(1.0),
            "role metric says active:\n{metrics}"
        );
        Ok(())
    }
    .await;
    outcome.map_err(|e| explain(e, &[&active, &standby]))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_active_is_replaced_once_its_session_expires_and_the_standby_never_acts_before() -> Result<()>
{
    let s = Scenario::start().await?;
    let [addr_a, addr_b] = free_addrs();
    let mut active = controller(&s, "active.log", addr_a)?;
    // The standby starts only once the first replica holds the session.
    eventually("the first replica is ready", PATIENCE, || async {
        get(addr_a, "/readyz").await.filter(|(status, _)| *status == 200)
    })
    .await
    .map_err(|e| explain(e, &[&active]))?;
    let standby = controller(&s, "standby.log", addr_b)?;
    let outcome = async {
        // A job served by the active replica while the standby waits.
        let first = s.world.enqueue_jobs(1, Duration::from_secs(1));
        eventually("the first job completes", PATIENCE, || async {
            s.world.snapshot().completed(first[0]).then_some(())
        })
        .await?;
        s.wait_clean().await?;
        let (status, body) = get(addr_b, "/readyz").await.context("standby /readyz")?;
        anyhow::ensure!(status == 200 && body.contains(": standby"), "{status} {body}");
        let quiet = standby.log();
        for acted in ["reconcile pass", "VM deployed", "runner plan"] {
            anyhow::ensure!(
                !quiet.contains(acted),
                "the standby acted ({acted}) without the session:\n{quiet}"
            );
        }

        active.kill9().await?;
        eventually("the standby takes over after the session expires", PATIENCE, || async {
            get(addr_b, "/readyz")
                .await
                .filter(|(status, body)| *status == 200 && body.contains(": active, serving"))
        })
        .await?;
        let second = s.world.enqueue_jobs(1, Duration::from_secs(1));
        eventually("the next job completes on the new active", PATIENCE, || async {
            s.world.snapshot().completed(second[0]).then_some(())
        })
        .await?;
        s.wait_clean().await
    }
    .await;
    outcome.map_err(|e| explain(e, &[&active, &standby]))
}
