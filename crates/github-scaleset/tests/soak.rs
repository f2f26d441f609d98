//! Soak under an accelerated clock: the fake's token clock advances 30 s every 75 ms of
//! wall time, so with the real service's 30-second queue-token lifetime an hour of
//! simulated time passes in about ten seconds (one queue-token expiry per step), while
//! admin tokens also expire in simulated time and 5xx, resets and revocations are
//! injected. A listener serves a stream of jobs meanwhile. Nothing may be lost or
//! duplicated: every job is assigned, started and completed exactly once.

mod support;

use std::{
    collections::{BTreeMap, BTreeSet},
    sync::{
        Arc,
        atomic::{AtomicU32, Ordering},
    },
    time::Duration,
};

use github_scaleset::{GitHubClient, JobMessage, MessageQueue, ScaleSetApi, ScaleSetError};
use secrecy::ExposeSecret;
use support::*;
use testkit::github::{
    Endpoint, ErrorBodyKind, FakeGitHub, FakeGitHubConfig, FakeJitConfig, Fault, JobSpec, JobState,
    RunnerPoll,
};

const JOBS: u64 = 60;
/// Clock steps of 30 s: 120 = one simulated hour.
const STEPS: u32 = 120;

/// Runs a call until it succeeds, tolerating only a second 401 in a row: with 30 s of
/// simulated time passing every 75 ms, a freshly refreshed token can expire before the
/// retry reaches the fake (the client, like the Go clients, retries once; its caller
/// polls again). Anything else fails the soak.
async fn persist<T>(races: &mut u32, mut call: impl AsyncFnMut() -> Result<T, ScaleSetError>) -> T {
    loop {
        match call().await {
            Ok(v) => return v,
            Err(ScaleSetError::Unauthorized { .. }) if *races < STEPS / 4 => *races += 1,
            Err(e) => panic!("the loop never breaks: {e}"),
        }
    }
}

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
        admin_token_lifetime: Duration::from_secs(15 * 60),
        queue_token_lifetime: Duration::from_secs(30),
        runner_lease: Duration::from_secs(10),
        ..Default::default()
    })
    .await;
    let client = GitHubClient::connect(pat_config(&fake)).await.unwrap();
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
    // The accelerated clock, plus chaos: 5xx and resets on the queue, revoked tokens.
    let steps = Arc::new(AtomicU32::new(0));
    let chaos = tokio::spawn({
        let fake = fake.clone();
        let steps = steps.clone();
        async move {
            for i in 0u32.. {
                tokio::time::sleep(Duration::from_millis(75)).await;
                fake.advance_clock(Duration::from_secs(30));
                steps.fetch_add(1, Ordering::SeqCst);
                match i % 40 {
                    0 => fake.inject(Fault::HttpError {
                        endpoint: Endpoint::GetMessage,
                        status: 503,
                        retry_after: None,
                        body: ErrorBodyKind::Empty,
                        times: 1,
                        after_commit: false,
                    }),
                    10 => fake.inject(Fault::ResetConnection { endpoint: Endpoint::DeleteMessage, times: 1 }),
                    20 => fake.inject(Fault::ExpireAdminTokens),
                    30 => fake.inject(Fault::ExpireQueueTokens),
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
    let mut races = 0u32;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(90);
    while completed.len() < JOBS as usize || steps.load(Ordering::SeqCst) < STEPS {
        assert!(tokio::time::Instant::now() < deadline, "soak timed out: {} completed", completed.len());
        let Some(msg) = persist(&mut races, async || queue.get_message(last, 20).await).await else {
            continue;
        };
        assert!(msg.message_id > last, "message ids increase");
        assert!(seen_ids.insert(msg.message_id), "message {} delivered twice", msg.message_id);
        last = msg.message_id;
        persist(&mut races, async || queue.delete_message(msg.message_id).await).await;
        for job in &msg.job_messages {
            match job {
                JobMessage::Assigned(j) => {
                    assert!(assigned.insert(j.job_id.clone()), "JobAssigned {} twice", j.job_id);
                    let name = format!("mac-{:05}", runners.len());
                    let jit = persist(&mut races, async || client.generate_jit_config(ss, &name).await).await;
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
    // Every 30-s step expires the queue token: roughly one refresh per step.
    assert!(refreshes >= u64::from(STEPS) / 2, "expected a refresh per expiry, got {refreshes}");
    assert!(bootstraps >= 3, "admin tokens expire in simulated time too, got {bootstraps}");
    client.delete_session(&queue.session()).await.unwrap();
    eprintln!(
        "soak: {JOBS} jobs, {} messages, {} simulated minutes, {refreshes} session refreshes, \
         {bootstraps} admin bootstraps, {races} double-401 races",
        seen_ids.len(),
        steps.load(Ordering::SeqCst) / 2
    );
}
