//! Client cost per message: parsing a full 50-job batch, and a whole long-poll round trip
//! (get + ack) against the fake GitHub over loopback HTTP.
#![allow(missing_docs)]

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use github_scaleset::{
    Auth, GitHubClient, GitHubConfig, Label, MessageQueue, NewScaleSet, ProxyConfig, RunnerSetting,
    ScaleSetApi, parse_message,
};
use secrecy::SecretString;
use testkit::github::{FakeGitHub, FakeGitHubConfig, JobSpec};

fn batch_of_50() -> Vec<u8> {
    let job = serde_json::json!({
        "messageType": "JobAssigned", "repositoryName": "app", "ownerName": "my-org",
        "jobWorkflowRef": "my-org/app/.github/workflows/ci.yml@refs/heads/main", "requestLabels": ["mac"],
        "scaleSetAssignTime": "2026-08-24T21:57:32.38632275Z", "jobId": "6b1f0e2a-4c3d-5e8f-9a7b-0c1d2e3f4a5b",
        "runnerAssignTime": "0001-01-01T00:00:00Z", "finishTime": "0001-01-01T00:00:00Z",
        "jobDisplayName": "build", "workflowRunId": 7, "eventName": "push",
        "queueTime": "0001-01-01T00:00:00Z", "runnerRequestId": 0
    });
    let body = serde_json::Value::Array(vec![job; 50]).to_string();
    serde_json::json!({
        "messageId": 100000012, "messageType": "RunnerScaleSetJobMessages", "body": body,
        "statistics": {"totalAssignedJobs": 50}
    })
    .to_string()
    .into_bytes()
}

fn parse(c: &mut Criterion) {
    let bytes = batch_of_50();
    c.bench_function("parse_message/50 jobs", |b| b.iter(|| parse_message(black_box(&bytes)).unwrap()));
}

fn round_trip(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let (fake, queue) = rt.block_on(async {
        let fake = FakeGitHub::start(FakeGitHubConfig::default()).await.unwrap();
        let mut cfg = GitHubConfig::new(fake.config_url("my-org"), Auth::Pat(SecretString::from(fake.pat())));
        cfg.proxy = ProxyConfig::None;
        let client = GitHubClient::connect(cfg).await.unwrap();
        let ss = client
            .create_scale_set(&NewScaleSet {
                name: "mac".into(),
                runner_group_id: 1,
                labels: vec![Label::system("mac")],
                runner_setting: RunnerSetting { disable_update: true },
            })
            .await
            .unwrap();
        let session = client.create_session(ss.id, "bench").await.unwrap();
        (fake, client.queue(session))
    });
    let mut last = 0;
    c.bench_function("get_message + delete_message (loopback fake)", |b| {
        b.iter(|| {
            fake.enqueue_job(JobSpec::new(["mac"]));
            rt.block_on(async {
                let msg = queue.get_message(last, 1_000_000).await.unwrap().expect("message");
                last = msg.message_id;
                queue.delete_message(msg.message_id).await.unwrap();
            })
        })
    });
}

criterion_group!(benches, parse, round_trip);
criterion_main!(benches);
