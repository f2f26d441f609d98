//! Tests of the fake GitHub's control surfaces over real HTTP: the `/_fake/…` API (as an
//! e2e test in another process would drive it) and the fake-runner contract (as `run.sh`
//! with curl would).

use std::time::Duration;

use base64::Engine as _;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::*;

/// A minimal HTTP/1.1 exchange, like `curl` does it. Returns (status, JSON body or Null).
async fn http(
    fake: &FakeGitHub,
    method: &str,
    path: &str,
    auth: Option<&str>,
    body: Option<Value>,
) -> (u16, Value) {
    let mut s = tokio::net::TcpStream::connect(fake.addr()).await.unwrap();
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    let auth = auth.map(|a| format!("Authorization: Bearer {a}\r\n")).unwrap_or_default();
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {}\r\n{auth}Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        fake.addr(),
        body.len()
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).await.unwrap();
    let text = String::from_utf8_lossy(&raw).to_string();
    let status: u16 = text.split(' ').nth(1).unwrap().parse().unwrap();
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or_default();
    (status, serde_json::from_str(body).unwrap_or(Value::Null))
}

/// The REST bootstrap by hand: (tenant path, admin token).
async fn admin(fake: &FakeGitHub) -> (String, String) {
    let (s, reg) =
        http(fake, "POST", "/api/v3/orgs/o/actions/runners/registration-token", Some(&fake.pat()), None)
            .await;
    assert_eq!(s, 201);
    let mut stream = tokio::net::TcpStream::connect(fake.addr()).await.unwrap();
    let body = json!({"url": fake.config_url("o"), "runner_event": "register"}).to_string();
    let req = format!(
        "POST /actions/runner-registration HTTP/1.1\r\nHost: x\r\nAuthorization: RemoteAuth {}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        reg["token"].as_str().unwrap(),
        body.len()
    );
    stream.write_all(req.as_bytes()).await.unwrap();
    let mut raw = String::new();
    stream.read_to_string(&mut raw).await.unwrap();
    let tenant: Value = serde_json::from_str(raw.split_once("\r\n\r\n").unwrap().1).unwrap();
    let base = tenant["url"].as_str().unwrap().trim_start_matches(&fake.url()).to_owned();
    (base, tenant["token"].as_str().unwrap().to_owned())
}

/// Registers a runner the way the client would (bootstrap → admin token → generatejitconfig).
async fn register_runner(fake: &FakeGitHub, ss: i64, name: &str) -> FakeJitConfig {
    let (base, admin) = admin(fake).await;
    let (s, jit) = http(
        fake,
        "POST",
        &format!("{base}_apis/runtime/runnerscalesets/{ss}/generatejitconfig?api-version=6.0-preview"),
        Some(&admin),
        Some(json!({"name": name, "workFolder": ""})),
    )
    .await;
    assert_eq!(s, 200, "{jit}");
    FakeJitConfig::decode(jit["encodedJITConfig"].as_str().unwrap()).unwrap()
}

#[tokio::test]
async fn control_api_over_http_enqueues_cancels_finishes_and_reports_state() {
    let fake = FakeGitHub::start(FakeGitHubConfig::default()).await.unwrap();
    let (s, v) =
        http(&fake, "POST", "/_fake/scalesets", None, Some(json!({"name": "mac", "labels": ["arm64"]})))
            .await;
    assert_eq!(s, 200);
    let ss = v["id"].as_i64().unwrap();
    let (s, v) =
        http(&fake, "POST", "/_fake/jobs", None, Some(json!({"labels": ["mac"], "duration_ms": 60000})))
            .await;
    assert_eq!(s, 200);
    let a = v["id"].as_u64().unwrap();
    let (_, v) = http(&fake, "POST", "/_fake/jobs", None, Some(json!({"labels": ["mac", "arm64"]}))).await;
    let b = v["id"].as_u64().unwrap();
    let (s, _) = http(&fake, "POST", "/_fake/jobs", None, Some(json!({"labels": 7}))).await;
    assert_eq!(s, 400, "a malformed spec is rejected");

    let (s, state) = http(&fake, "GET", "/_fake/state", None, None).await;
    assert_eq!(s, 200);
    let state: FakeState = serde_json::from_value(state).unwrap();
    assert_eq!(state.job(a).unwrap().state, JobState::Assigned);
    assert_eq!(state.job(a).unwrap().scale_set_id, Some(ss));
    assert_eq!(state.scale_set("mac").unwrap().statistics.total_assigned_jobs, 2);

    let jit = register_runner(&fake, ss, "mac-aaaaa").await;
    let (s, v) = http(&fake, "POST", "/_fake/runner/poll", Some(&jit.credential), None).await;
    assert_eq!((s, v["state"].as_str()), (200, Some("running")));
    let (s, _) =
        http(&fake, "POST", &format!("/_fake/jobs/{a}/finish"), None, Some(json!({"result": "failed"})))
            .await;
    assert_eq!(s, 204);
    let (_, v) = http(&fake, "POST", "/_fake/runner/poll", Some(&jit.credential), None).await;
    assert_eq!(v["state"], "done");
    assert_eq!(fake.state().job(a).unwrap().result.as_deref(), Some("failed"));

    let (s, _) = http(&fake, "POST", &format!("/_fake/jobs/{b}/cancel"), None, None).await;
    assert_eq!(s, 204);
    let (s, _) = http(&fake, "POST", &format!("/_fake/jobs/{b}/cancel"), None, None).await;
    assert_eq!(s, 409, "already ended");
    let (s, _) = http(&fake, "POST", "/_fake/jobs/999/cancel", None, None).await;
    assert_eq!(s, 404);

    let fault = json!({"kind": "http_error", "endpoint": "runner_groups", "status": 503, "times": 1});
    assert_eq!(http(&fake, "POST", "/_fake/faults", None, Some(fault)).await.0, 204);
    assert_eq!(http(&fake, "DELETE", "/_fake/faults", None, None).await.0, 204);
    assert_eq!(http(&fake, "POST", "/_fake/faults", None, Some(json!({"kind": "nope"}))).await.0, 400);

    // Advancing the token clock past the admin token's exp makes it invalid.
    let (base, token) = admin(&fake).await;
    let groups = format!("{base}_apis/runtime/runnergroups/?api-version=6.0-preview");
    assert_eq!(http(&fake, "GET", &groups, Some(&token), None).await.0, 200);
    assert_eq!(
        http(&fake, "POST", "/_fake/clock", None, Some(json!({"advance_ms": 7_200_000}))).await.0,
        204
    );
    assert_eq!(http(&fake, "GET", &groups, Some(&token), None).await.0, 401);
}

#[tokio::test]
async fn fake_runner_contract_connect_run_done_and_unknown_credential() {
    let fake = FakeGitHub::start(FakeGitHubConfig::default()).await.unwrap();
    let ss = fake.create_scale_set("mac", &[]);
    let jit = register_runner(&fake, ss, "mac-bbbbb").await;
    assert_eq!(jit.server_url, fake.url());
    assert_eq!(fake.state().runner("mac-bbbbb").unwrap().status, RunnerStatus::Registered);

    // The JIT config is plain base64 of one JSON line a shell can pick apart.
    let raw = base64::engine::general_purpose::STANDARD.decode(jit.encode()).unwrap();
    assert!(String::from_utf8(raw).unwrap().starts_with(r#"{"server_url":"http://127.0.0.1:"#));

    let (_, v) = http(&fake, "POST", "/_fake/runner/poll", Some(&jit.credential), None).await;
    assert_eq!(v["state"], "idle", "connected, no job yet");
    assert_eq!(fake.state().runner("mac-bbbbb").unwrap().status, RunnerStatus::Idle);
    let job = fake.enqueue_job(JobSpec::new(["mac"]).with_duration(Duration::from_millis(200)));
    let (_, v) = http(&fake, "POST", "/_fake/runner/poll", Some(&jit.credential), None).await;
    assert_eq!(v["state"], "running");
    assert_eq!(fake.state().job(job).unwrap().runner_name.as_deref(), Some("mac-bbbbb"));
    let done = fake
        .wait_until(Duration::from_secs(10), |s| s.job(job).is_some_and(|j| j.state == JobState::Completed))
        .await
        .expect("the fake completes the job after its duration");
    assert_eq!(done.job(job).unwrap().result.as_deref(), Some("succeeded"));
    let (_, v) = http(&fake, "POST", "/_fake/runner/poll", Some(&jit.credential), None).await;
    assert_eq!(v["state"], "done");
    assert_eq!(http(&fake, "POST", "/_fake/runner/poll", Some("nope"), None).await.0, 401);
    assert_eq!(http(&fake, "POST", "/_fake/runner/poll", None, None).await.0, 401);
}

#[tokio::test]
async fn cancelling_a_running_job_tells_its_runner_removed() {
    let fake = FakeGitHub::start(FakeGitHubConfig::default()).await.unwrap();
    let ss = fake.create_scale_set("mac", &[]);
    let jit = register_runner(&fake, ss, "mac-ccccc").await;
    let job = fake.enqueue_job(JobSpec::new(["mac"]).with_duration(Duration::from_secs(60)));
    assert_eq!(fake.runner_poll(&jit.credential), Some(RunnerPoll::Running));
    assert!(fake.cancel_job(job));
    assert_eq!(fake.runner_poll(&jit.credential), Some(RunnerPoll::Removed));
    let s = fake.state();
    assert_eq!(s.job(job).unwrap().result.as_deref(), Some("canceled"));
    assert_eq!(s.registered_runners().count(), 0);
}

#[tokio::test]
async fn an_idle_runner_that_stops_polling_goes_offline() {
    let fake = FakeGitHub::start(FakeGitHubConfig {
        runner_lease: Duration::from_millis(200),
        ..Default::default()
    })
    .await
    .unwrap();
    let ss = fake.create_scale_set("mac", &[]);
    let jit = register_runner(&fake, ss, "mac-ddddd").await;
    assert_eq!(fake.runner_poll(&jit.credential), Some(RunnerPoll::Idle));
    fake.wait_until(Duration::from_secs(10), |s| {
        s.runner("mac-ddddd").unwrap().status == RunnerStatus::Offline
    })
    .await
    .expect("offline after the lease");
    assert_eq!(fake.runner_poll(&jit.credential), Some(RunnerPoll::Idle), "a poll reconnects it");
}

#[tokio::test]
async fn statistics_follow_state_and_registered_counts_unconnected_runners() {
    let fake = FakeGitHub::start(FakeGitHubConfig::default()).await.unwrap();
    let ss = fake.create_scale_set("mac", &[]);
    let a = register_runner(&fake, ss, "mac-00001").await;
    let _b = register_runner(&fake, ss, "mac-00002").await;
    fake.enqueue_job(JobSpec::new(["mac"]).with_duration(Duration::from_secs(60)));
    fake.enqueue_job(JobSpec::new(["linux"]));
    fake.runner_poll(&a.credential);
    let st = fake.state().scale_set("mac").unwrap().statistics;
    assert_eq!(
        st,
        FakeStatistics {
            total_assigned_jobs: 1,
            total_running_jobs: 1,
            total_registered_runners: 2,
            total_busy_runners: 1,
            total_idle_runners: 0,
            ..Default::default()
        }
    );
    assert_eq!(fake.state().jobs[1].state, JobState::Queued, "no scale set has the label");
}

#[tokio::test]
async fn rest_is_served_with_and_without_api_v3_and_bad_credentials_are_refused() {
    let fake = FakeGitHub::start(FakeGitHubConfig::default()).await.unwrap();
    for path in
        ["/orgs/o/actions/runners/registration-token", "/api/v3/repos/o/r/actions/runners/registration-token"]
    {
        let (s, v) = http(&fake, "POST", path, Some(&fake.pat()), None).await;
        assert_eq!(s, 201, "{path}");
        assert!(v["token"].as_str().is_some_and(|t| !t.is_empty()));
        assert_eq!(http(&fake, "POST", path, Some("ghp_bad"), None).await.0, 401);
    }
    assert_eq!(http(&fake, "GET", "/nothing/here", None, None).await.0, 404);
    let (s, _) =
        http(&fake, "GET", "/_services/pipelines/t1/_apis/runtime/runnergroups/", Some("not-a-jwt"), None)
            .await;
    assert_eq!(s, 401, "Actions calls need the admin token");
}

#[test]
fn acquire_flavour_moves_available_to_acquired_to_assigned_with_statistics() {
    let mut st = state::State::new(
        FakeGitHubConfig { flavour: Flavour::Acquire, ..Default::default() },
        "http://127.0.0.1:1".into(),
    );
    let ss = st.create_scale_set("mac", 1, vec![], true).unwrap();
    let job = st.enqueue(JobSpec::new(["mac"]));
    let rid = st.snapshot().job(job).unwrap().request_id;
    assert!(rid > 0);
    assert_eq!(st.statistics(ss).total_available_jobs, 1);
    assert_eq!(st.acquire(ss, &[rid, 424242]), vec![rid], "unknown ids are not acquired");
    let s = st.statistics(ss);
    assert_eq!((s.total_available_jobs, s.total_acquired_jobs, s.total_assigned_jobs), (0, 1, 0));
    st.schedule();
    let s = st.statistics(ss);
    assert_eq!((s.total_acquired_jobs, s.total_assigned_jobs), (0, 1));
    let (_, events) = st.next_message(ss, 0).unwrap();
    let types: Vec<&str> = events.iter().map(|e| e["messageType"].as_str().unwrap()).collect();
    assert_eq!(types, ["JobAvailable", "JobAssigned"]);
    assert_eq!(events[1]["runnerRequestId"], rid);
}

#[tokio::test]
async fn strict_headers_reject_actions_calls_without_the_api_version() {
    let fake = FakeGitHub::start(FakeGitHubConfig::default()).await.unwrap();
    let (base, token) = admin(&fake).await;
    let path = format!("{base}_apis/runtime/runnergroups/?groupName=default");
    let (s, v) = http(&fake, "GET", &path, Some(&token), None).await;
    assert_eq!(s, 400, "{v}");
    assert!(v["typeName"].as_str().unwrap().contains("VssVersionNotSpecifiedException"));
    let (s, v) = http(&fake, "GET", &format!("{path}&api-version=6.0-preview"), Some(&token), None).await;
    assert_eq!((s, v["count"].as_i64()), (200, Some(1)));
}

#[tokio::test]
async fn max_batch_can_be_raised_at_run_time_to_deliver_a_burst_in_one_message() {
    let fake = FakeGitHub::start(FakeGitHubConfig::default()).await.unwrap();
    let ss = fake.create_scale_set("mac", &["mac"]);
    for _ in 0..120 {
        fake.enqueue_job(JobSpec::new(["mac"]));
    }
    let (first, events) = fake.lock().next_message(ss, 0).unwrap();
    assert_eq!(events.len(), 50, "the default batch is 50 job messages");
    fake.set_max_batch(1000);
    let (_, events) = fake.lock().next_message(ss, first).unwrap();
    assert_eq!(events.len(), 70, "the rest arrives together once the batch is raised");
    assert!(events.iter().all(|e| e["messageType"] == "JobAssigned"));
}

#[tokio::test]
async fn revoked_credentials_answer_bad_credentials_until_restored_and_void_derived_tokens() {
    let fake = FakeGitHub::start(FakeGitHubConfig::default()).await.unwrap();
    let (base, old_admin) = admin(&fake).await;
    let groups = format!("{base}_apis/runtime/runnergroups/?api-version=6.0-preview");
    assert_eq!(http(&fake, "GET", &groups, Some(&old_admin), None).await.0, 200);

    fake.inject(Fault::RevokeCredentials);
    let path = "/api/v3/orgs/o/actions/runners/registration-token";
    let (status, body) = http(&fake, "POST", path, Some(&fake.pat()), None).await;
    assert_eq!((status, body["message"].as_str()), (401, Some("Bad credentials")), "{body}");
    assert_eq!(http(&fake, "GET", &groups, Some(&old_admin), None).await.0, 401, "derived tokens die too");

    fake.inject(Fault::RestoreCredentials);
    let (base, new_admin) = admin(&fake).await;
    let groups = format!("{base}_apis/runtime/runnergroups/?api-version=6.0-preview");
    assert_eq!(http(&fake, "GET", &groups, Some(&new_admin), None).await.0, 200, "new tokens work again");
    assert_eq!(
        http(&fake, "GET", &groups, Some(&old_admin), None).await.0,
        401,
        "revoked tokens stay revoked"
    );
}
