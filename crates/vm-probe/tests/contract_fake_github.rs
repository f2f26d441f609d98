//! The fake-runner contract end to end: the real provisioning script (Ssh2Shell) starts the
//! fake runner (testkit's tarball) inside a fake VM, and the runner serves a job of the
//! fake GitHub (testkit::github) — two independent readings of the contract checked
//! against each other.

mod support;

use std::time::Duration;

use secrecy::SecretString;
use serde_json::{Value, json};
use support::quick_config;
use testkit::github::{FakeGitHub, FakeGitHubConfig, JobSpec, JobState};
use testkit::vm::{FakeRunnerDownloads, FakeVmHost};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use vm_probe::{RunnerInstall, Ssh2Shell, SshAuth, SshTarget, Tri, VmLayout, VmShell};

/// One HTTP/1.1 exchange on a fresh connection; (status, JSON body or Null).
async fn http(
    addr: std::net::SocketAddr,
    method: &str,
    path: &str,
    auth: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: {auth}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).await.unwrap();
    let text = String::from_utf8_lossy(&raw).into_owned();
    let status = text.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or_default();
    (status, serde_json::from_str(body).unwrap_or(Value::Null))
}

/// Registers a JIT runner as the controller would: registration token → tenant admin
/// token → generatejitconfig. Returns the encoded JIT config.
async fn jit_config(github: &FakeGitHub, scale_set: i64, runner_name: &str) -> String {
    let addr = github.addr();
    let pat = format!("Bearer {}", github.pat());
    let (status, registration) =
        http(addr, "POST", "/api/v3/orgs/o/actions/runners/registration-token", &pat, None).await;
    assert!((200..300).contains(&status), "{status} {registration}");
    let remote_auth = format!("RemoteAuth {}", registration["token"].as_str().unwrap());
    let body = json!({"url": github.config_url("o"), "runner_event": "register"});
    let (status, tenant) = http(addr, "POST", "/actions/runner-registration", &remote_auth, Some(body)).await;
    assert!((200..300).contains(&status), "{status} {tenant}");
    let base = tenant["url"].as_str().unwrap().trim_start_matches(&github.url()).to_owned();
    let admin = format!("Bearer {}", tenant["token"].as_str().unwrap());
    let path =
        format!("{base}_apis/runtime/runnerscalesets/{scale_set}/generatejitconfig?api-version=6.0-preview");
    let (status, jit) =
        http(addr, "POST", &path, &admin, Some(json!({"name": runner_name, "workFolder": ""}))).await;
    assert!((200..300).contains(&status), "{status} {jit}");
    jit["encodedJITConfig"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn the_fake_runner_serves_a_fake_github_job_and_exits_when_it_is_done() {
    let github = FakeGitHub::start(FakeGitHubConfig::default()).await.unwrap();
    let scale_set = github.create_scale_set("mac", &[]);
    let vms = FakeVmHost::new().unwrap();
    let downloads = FakeRunnerDownloads::start().await.unwrap();
    let (host, port) = vms.boot_vm("mac-k3x9q").await.unwrap();
    let target = SshTarget { host, port };
    let shell = Ssh2Shell::new(quick_config(
        "admin",
        SshAuth::Password(SecretString::from("admin")),
        VmLayout::for_user("admin"),
    ))
    .unwrap();

    let job = github.enqueue_job(JobSpec::new(["mac"]).with_duration(Duration::from_millis(800)));
    let jit = jit_config(&github, scale_set, "mac-k3x9q").await;
    shell.wait_ready(&target).await.unwrap();
    let install = RunnerInstall {
        runner_version: "2.328.0".into(),
        download_url_template: downloads.url_template(),
        jit_config: SecretString::from(jit.clone()),
    };
    shell.install_and_start_runner(&target, &install).await.unwrap();

    let done = github
        .wait_until(Duration::from_secs(30), |s| s.job(job).is_some_and(|j| j.state == JobState::Completed))
        .await
        .expect("the runner inside the fake VM ran the job to completion");
    assert_eq!(done.job(job).unwrap().runner_name.as_deref(), Some("mac-k3x9q"));

    let report = support::eventually(Duration::from_secs(20), "run.sh to exit after its job", || async {
        let report = shell.probe(&target).await.ok()?;
        (report.run_complete == Tri::Yes).then_some(report)
    })
    .await;
    assert_eq!((report.runner_alive, report.exit_code), (Tri::No, Some(0)));
    let log = shell.tail_log(&target, 20).await.unwrap();
    assert!(log.contains("Running job") && log.contains("Job completed"), "{log}");
    assert!(!log.contains(&jit));
}

/// GitHub refuses outdated runners: a fake runner whose version the fake GitHub refuses
/// prints GitHub's message, never takes the waiting job, and exits with code 7.
#[tokio::test]
async fn a_refused_runner_version_prints_the_deprecation_message_and_exits_7() {
    let github = FakeGitHub::start(FakeGitHubConfig::default()).await.unwrap();
    github.refuse_runner_versions(["2.300.0"]);
    let scale_set = github.create_scale_set("mac", &[]);
    let vms = FakeVmHost::new().unwrap();
    let downloads = FakeRunnerDownloads::start().await.unwrap();
    let (host, port) = vms.boot_vm("mac-r7fus").await.unwrap();
    let target = SshTarget { host, port };
    let shell = Ssh2Shell::new(quick_config(
        "admin",
        SshAuth::Password(SecretString::from("admin")),
        VmLayout::for_user("admin"),
    ))
    .unwrap();

    let job = github.enqueue_job(JobSpec::new(["mac"]).with_duration(Duration::from_millis(500)));
    let jit = jit_config(&github, scale_set, "mac-r7fus").await;
    shell.wait_ready(&target).await.unwrap();
    let install = RunnerInstall {
        runner_version: "2.300.0".into(),
        download_url_template: downloads.url_template(),
        jit_config: SecretString::from(jit),
    };
    shell.install_and_start_runner(&target, &install).await.unwrap();

    let report = support::eventually(Duration::from_secs(20), "the refused run.sh to exit", || async {
        let report = shell.probe(&target).await.ok()?;
        (report.run_complete == Tri::Yes).then_some(report)
    })
    .await;
    assert_eq!((report.runner_alive, report.exit_code), (Tri::No, Some(7)));
    let log = shell.tail_log(&target, 20).await.unwrap();
    assert!(log.contains("Runner version v2.300.0 is deprecated and cannot receive messages"), "{log}");
    let state = github.state();
    assert_eq!(state.job(job).unwrap().state, JobState::Assigned, "a refused runner takes no job");
}
