//! Soak under an accelerated clock: second-scale token lifetimes (admin ≈ 2 s effective,
//! queue 3 s) so the client refreshes dozens of times, plus injected token revocations,
//! 5xx and resets, while a listener serves a stream of jobs. Nothing may be lost or
//! duplicated: every job is assigned, started and completed exactly once.

mod support;

use std::{
    collections::{BTreeMap, BTreeSet},
    time::Duration,
};

use github_scaleset::{GitHubClient, JobMessage, MessageQueue, ScaleSetApi};
use secrecy::ExposeSecret;
use support::*;
use testkit::github::{
    Endpoint, ErrorBodyKind, FakeGitHub, FakeGitHubConfig, FakeJitConfig, Fault, JobSpec, JobState,
    RunnerPoll,
};

const JOBS: u64 = 60;

/// A fake runner process: polls until its job is done.
async fn fake_runner(fake: FakeGitHub, credential: String) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while tokio::time::Instant::now() < deadline {
        match fake.runner_poll(&credential) {
            Some(RunnerPoll::Done | RunnerPoll::Removed) | None => return,
            _ => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn soak_with_short_token_lifetimes_loses_and_duplicates_nothing() {
    let fake = start(FakeGitHubConfig {
        long_poll_hold: Duration::from_millis(400),
        admin_token_lifetime: Duration::from_secs(62),
        queue_token_lifetime: Duration::from_secs(3),
        runner_lease: Duration::from_secs(10),
        ..Default::default()
    })
    .await;
    let mut cfg = pat_config(&fake);
    cfg.queue_token_refresh_margin = Duration::from_secs(1);
    let client = GitHubClient::connect(cfg).await.unwrap();
    let (ss, queue) = scale_set_with_queue(&client, "mac").await;

    // Producer: a steady trickle of jobs.
    let producer = tokio::spawn({
        let fake = fake.clone();
        async move {
            for i in 0..JOBS {
                let ms = 100 + (i * 37) % 300;
                fake.enqueue_job(JobSpec::new(["mac"]).with_duration(Duration::from_millis(ms)));
                tokio::time::sleep(Duration::from_millis(150)).await;
            }
        }
    });
    // Chaos: revoked queue and admin tokens, 5xx and resets on the queue.
    let chaos = tokio::spawn({
        let fake = fake.clone();
        async move {
            for i in 0u32.. {
                tokio::time::sleep(Duration::from_millis(700)).await;
                fake.inject(Fault::ExpireQueueTokens);
                match i % 4 {
                    0 => fake.inject(Fault::HttpError {
                        endpoint: Endpoint::GetMessage,
                        status: 503,
                        retry_after: None,
                        body: ErrorBodyKind::Empty,
                        times: 1,
                        after_commit: false,
                    }),
                    1 => fake.inject(Fault::ResetConnection { endpoint: Endpoint::DeleteMessage, times: 1 }),
                    2 => fake.inject(Fault::ExpireAdminTokens),
                    _ => {}
                }
            }
        }
    });

    // Listener: poll, ack, start a runner per assignment.
    let mut last = 0i64;
    let mut seen_ids = BTreeSet::new();
    let mut assigned = BTreeSet::new();
    let mut started: BTreeMap<String, u32> = BTreeMap::new();
    let mut completed: BTreeMap<String, u32> = BTreeMap::new();
    let mut runners = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(90);
    while completed.len() < JOBS as usize {
        assert!(tokio::time::Instant::now() < deadline, "soak timed out: {} completed", completed.len());
        let Some(msg) = queue.get_message(last, 20).await.expect("the loop never breaks") else { continue };
        assert!(msg.message_id > last, "message ids increase");
        assert!(seen_ids.insert(msg.message_id), "message {} delivered twice", msg.message_id);
        last = msg.message_id;
        queue.delete_message(msg.message_id).await.expect("ack");
        for job in &msg.job_messages {
            match job {
                JobMessage::Assigned(j) => {
                    assert!(assigned.insert(j.job_id.clone()), "JobAssigned {} twice", j.job_id);
                    let name = format!("mac-{:05}", runners.len());
                    let jit = client.generate_jit_config(ss, &name).await.expect("register runner");
                    let cred =
                        FakeJitConfig::decode(jit.encoded_jit_config.expose_secret()).unwrap().credential;
                    runners.push(tokio::spawn(fake_runner(fake.clone(), cred)));
                }
                JobMessage::Started(j) => *started.entry(j.job.job_id.clone()).or_default() += 1,
                JobMessage::Completed(j) => {
                    assert_eq!(j.result, "succeeded", "{j:?}");
                    *completed.entry(j.job.job_id.clone()).or_default() += 1;
                }
                other => panic!("unexpected {other:?}"),
            }
        }
    }
    producer.await.unwrap();
    chaos.abort();
    for r in runners {
        r.await.unwrap();
    }

    assert_eq!(assigned.len(), JOBS as usize);
    assert!(started.values().all(|n| *n == 1) && started.len() == JOBS as usize, "{started:?}");
    assert!(completed.values().all(|n| *n == 1), "{completed:?}");
    assert_eq!(completed.keys().collect::<BTreeSet<_>>(), assigned.iter().collect::<BTreeSet<_>>());
    let state = fake.state();
    assert!(
        state.jobs.iter().all(|j| j.state == JobState::Completed && j.result.as_deref() == Some("succeeded"))
    );
    assert_eq!(state.registered_runners().count(), 0, "every ephemeral runner deregistered");
    assert!(state.scale_sets[0].unacked_messages.is_empty());
    let refreshes = state.request_count(Endpoint::RefreshSession);
    let bootstraps = state.request_count(Endpoint::RunnerRegistration);
    assert!(refreshes >= 10, "expected many session refreshes, got {refreshes}");
    assert!(bootstraps >= 5, "expected many admin refreshes, got {bootstraps}");
    client.delete_session(&queue.session()).await.unwrap();
    eprintln!(
        "soak: {JOBS} jobs, {} messages, {refreshes} session refreshes, {bootstraps} admin bootstraps",
        seen_ids.len()
    );
}
