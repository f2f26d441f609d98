//! Drop-in compatibility end to end: a `.env` written in the Go integration's shape (only
//! its variable names, its quoting habits, `LOG_LEVEL=warning`) in the working directory
//! starts the real binary against the simulated world, and a job runs to completion.

#[path = "../../../tests/support/mod.rs"]
mod support;

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::Result;
use support::{ControllerProcess, PATIENCE, Scenario, eventually};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_go_integration_env_file_runs_a_job_unchanged() -> Result<()> {
    let s = Scenario::start().await?;
    let world: BTreeMap<String, String> = s.world.controller_env().into_iter().collect();
    let dotenv = format!(
        r#"# Written for macstadium/orka-github-actions-integration
GITHUB_URL={github_url}
GITHUB_PAT={pat}

ORKA_URL={orka_url}
ORKA_TOKEN="{orka_token}"
ORKA_NAMESPACE=orka-default
ORKA_VM_CONFIG={vm_config}
ORKA_VM_USERNAME=admin
ORKA_VM_PASSWORD=admin
ORKA_ENABLE_NODE_IP_MAPPING=false

RUNNERS={runners}
GITHUB_RUNNER_VERSION={version}
RUNNER_DEREGISTRATION_TIMEOUT=30s
RUNNER_DEREGISTRATION_POLL_INTERVAL=2s
VM_TRACKER_INTERVAL=300s
MANAGE_RUNNER_SCALE_SETS=false
ENABLE_RECONCILIATION=true

LOG_LEVEL=warning
ENABLE_METRICS=false
METRICS_ADDR=:8080
"#,
        github_url = world["GITHUB_URL"],
        pat = world["GITHUB_PAT"],
        orka_url = world["ORKA_URL"],
        orka_token = world["ORKA_TOKEN"],
        vm_config = world["ORKA_VM_CONFIG"],
        runners = world["RUNNERS"],
        version = world["GITHUB_RUNNER_VERSION"],
    );
    std::fs::write(s.dir.path().join(".env"), dotenv)?;
    // The only addition, in the real environment: the runner mirror (no github.com here).
    let env = vec![("GITHUB_RUNNER_DOWNLOAD_URL".to_owned(), world["GITHUB_RUNNER_DOWNLOAD_URL"].clone())];
    let mut controller = ControllerProcess::spawn(s.dir.path(), "controller.log", &env, &["run"])?;

    let jobs = s.world.enqueue_jobs(1, Duration::from_secs(2));
    let outcome = async {
        eventually("the job completes", PATIENCE, || async {
            s.world.snapshot().completed(jobs[0]).then_some(())
        })
        .await?;
        s.wait_clean().await?;
        controller.sigterm()?;
        let status = controller.wait_exit(Duration::from_secs(60)).await?;
        anyhow::ensure!(status.success(), "SIGTERM ends the controller with 0: {status:?}");
        Ok(())
    }
    .await;
    outcome.map_err(|e| anyhow::anyhow!("{e:#}\n--- controller log ---\n{}", controller.log()))?;
    let log = controller.log();
    // LOG_LEVEL=warning means warn (the Go integration silently fell back to info).
    anyhow::ensure!(!log.contains(r#""level":"INFO""#), "info lines logged at LOG_LEVEL=warning:\n{log}");
    anyhow::ensure!(
        log.lines().all(|l| l.starts_with('{')),
        "JSON lines by default, like the Go integration:\n{log}"
    );
    Ok(())
}
