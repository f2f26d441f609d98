//! The client against every fault case of docs/protocol/github-scaleset.md#fault-cases (cases
//! F1–F17), by name, over
//! loopback HTTP against the fake GitHub.

mod support;

use std::time::Duration;

use github_scaleset::{
    GitHubClient, JobMessage, MessageQueue, ScaleSetApi, ScaleSetError, Timeouts, messages::JOB_MESSAGES_TYPE,
};
use secrecy::ExposeSecret;
use support::*;
use testkit::github::{
    Endpoint, ErrorBodyKind, FakeGitHubConfig, FakeJitConfig, FakeStatistics, Fault, Flavour, JobSpec,
    JobState, RetryAfter, RunnerPoll,
};

fn http_error(endpoint: Endpoint, status: u16, times: u32) -> Fault {
    Fault::HttpError {
        endpoint,
        status,
        retry_after: None,
        body: ErrorBodyKind::Json,
        times,
        after_commit: false,
    }
}

// ---- F1 queue token expiry ------------------------------------------------------------

#[tokio::test]
async fn queue_token_expiry_mid_poll_refreshes_the_session_and_retries_once() {
    let fake = start(FakeGitHubConfig { long_poll_hold: Duration::from_secs(3), ..Default::default() }).await;
    let client = client(&fake).await;
    let (_ss, queue) = scale_set_with_queue(&client, "mac").await;
    let old_session = queue.session();
    let poll = tokio::spawn({
        let queue = queue.clone();
        async move { queue.get_message(0, 5).await }
    });
    fake.wait_until(WAIT, |s| s.request_count(Endpoint::GetMessage) == 1).await.expect("poll in flight");
    tokio::time::sleep(Duration::from_millis(100)).await;
    fake.inject(Fault::ExpireQueueTokens);
    fake.enqueue_job(JobSpec::new(["mac"]));
    let msg = tokio::time::timeout(WAIT, poll).await.unwrap().unwrap().expect("poll survives the expiry");
    assert!(msg.is_some_and(|m| m.job_messages.iter().any(is_assigned)));
    let state = fake.state();
    assert_eq!(state.request_count(Endpoint::RefreshSession), 1);
    assert_eq!(state.request_count(Endpoint::GetMessage), 2, "one 401, one retry");
    let new_session = queue.session();
    assert_eq!(new_session.session_id, old_session.session_id);
    assert_ne!(
        new_session.message_queue_access_token.expose_secret(),
        old_session.message_queue_access_token.expose_secret()
    );
}

#[tokio::test]
async fn queue_token_expiry_on_delete_and_acquire_refreshes_too() {
    let fake = start(FakeGitHubConfig { flavour: Flavour::Acquire, ..Default::default() }).await;
    let client = client(&fake).await;
    let (_ss, queue) = scale_set_with_queue(&client, "mac").await;
    fake.enqueue_job(JobSpec::new(["mac"]));
    let msg = queue.get_message(0, 5).await.unwrap().expect("JobAvailable");
    let JobMessage::Available(offer) = &msg.job_messages[0] else { panic!("{msg:?}") };
    fake.inject(Fault::ExpireQueueTokens);
    queue.delete_message(msg.message_id).await.expect("delete after refresh");
    fake.inject(Fault::ExpireQueueTokens);
    let got = queue.acquire_jobs(&[offer.job.runner_request_id]).await.expect("acquire after refresh");
    assert_eq!(got, vec![offer.job.runner_request_id]);
    assert_eq!(fake.state().request_count(Endpoint::RefreshSession), 2);
    assert!(fake.state().scale_sets[0].unacked_messages.is_empty());
}

#[tokio::test]
async fn refresh_404_surfaces_session_not_found_and_a_new_session_gets_the_undelivered_messages() {
    let fake = start(FakeGitHubConfig::default()).await;
    let client = client(&fake).await;
    let (ss, queue) = scale_set_with_queue(&client, "mac").await;
    fake.enqueue_job(JobSpec::new(["mac"]));
    let first = queue.get_message(0, 5).await.unwrap().expect("delivered, not acked");
    fake.inject(Fault::ExpireQueueTokens);
    fake.inject(Fault::RefreshSessionNotFound { times: 1 });
    match queue.get_message(first.message_id, 5).await {
        Err(ScaleSetError::SessionNotFound) => {}
        other => panic!("expected SessionNotFound, got {other:?}"),
    }
    let session = client.create_session(ss, "test-host").await.expect("the old session is gone");
    let queue = client.queue(session);
    let again = queue.get_message(0, 5).await.unwrap().expect("redelivered");
    assert_eq!(again.message_id, first.message_id, "not acked ⇒ redelivered to the new session");
}

#[tokio::test]
async fn the_queue_token_is_refreshed_ahead_of_its_exp_without_a_401() {
    let fake = start(FakeGitHubConfig {
        queue_token_lifetime: Duration::from_secs(62),
        long_poll_hold: Duration::from_millis(100),
        ..Default::default()
    })
    .await;
    let mut cfg = pat_config(&fake);
    cfg.queue_token_refresh_margin = Duration::from_secs(60);
    let client = GitHubClient::connect(cfg).await.unwrap();
    let (_ss, queue) = scale_set_with_queue(&client, "mac").await;
    assert!(queue.get_message(0, 5).await.unwrap().is_none());
    assert_eq!(fake.state().request_count(Endpoint::RefreshSession), 0, "fresh token used as is");
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert!(queue.get_message(0, 5).await.unwrap().is_none());
    let s = fake.state();
    assert_eq!(s.request_count(Endpoint::RefreshSession), 1, "refreshed proactively");
    assert_eq!(s.request_count(Endpoint::GetMessage), 2, "no 401 round trip");
}

// ---- F2 admin token expiry ------------------------------------------------------------

#[tokio::test]
async fn admin_token_is_refreshed_before_its_exp() {
    let fake =
        start(FakeGitHubConfig { admin_token_lifetime: Duration::from_secs(62), ..Default::default() }).await;
    let client = client(&fake).await;
    client.get_runner_group("default").await.unwrap();
    assert_eq!(fake.state().request_count(Endpoint::RunnerRegistration), 1, "fresh token reused");
    // 62 s lifetime − 60 s margin: after ~2 s the client must refresh before calling.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    client.get_runner_group("default").await.unwrap();
    assert_eq!(fake.state().request_count(Endpoint::RunnerRegistration), 2);
}

#[tokio::test]
async fn concurrent_calls_share_one_admin_refresh() {
    let fake = start(FakeGitHubConfig::default()).await;
    let client = GitHubClient::new(pat_config(&fake)).unwrap();
    let calls = (0..8).map(|_| {
        let c = client.clone();
        tokio::spawn(async move { c.get_runner_group("default").await })
    });
    for c in calls {
        c.await.unwrap().unwrap();
    }
    assert_eq!(fake.state().request_count(Endpoint::RunnerRegistration), 1);
}

#[tokio::test]
async fn a_revoked_admin_token_is_replaced_once() {
    let fake = start(FakeGitHubConfig::default()).await;
    let client = client(&fake).await;
    fake.inject(Fault::ExpireAdminTokens);
    client.get_runner_group("default").await.expect("re-bootstrapped after 401");
    assert_eq!(fake.state().request_count(Endpoint::RunnerRegistration), 2);
}

#[tokio::test]
async fn runner_registration_401_and_403_are_retried() {
    let fake = start(FakeGitHubConfig::default()).await;
    fake.inject(Fault::RegistrationDenied { status: 401, times: 2 });
    fake.inject(Fault::RegistrationDenied { status: 403, times: 1 });
    GitHubClient::connect(pat_config(&fake)).await.expect("propagation delay is waited out");
    assert_eq!(fake.state().request_count(Endpoint::RunnerRegistration), 4);

    fake.inject(Fault::RegistrationDenied { status: 403, times: 50 });
    match GitHubClient::connect(pat_config(&fake)).await {
        Err(ScaleSetError::Unauthorized { status: 403, .. }) => {}
        other => panic!("expected 403 after the retries, got {other:?}"),
    }
}

#[tokio::test]
async fn the_tenant_url_may_change_on_refresh() {
    let fake = start(FakeGitHubConfig::default()).await;
    let client = client(&fake).await;
    let before = client.tenant_url().await.unwrap();
    fake.inject(Fault::ChangeTenantUrl);
    fake.inject(Fault::ExpireAdminTokens);
    client.get_runner_group("default").await.expect("follows the new tenant");
    let after = client.tenant_url().await.unwrap();
    assert_ne!(before, after);
}

// ---- F3 empty polls -------------------------------------------------------------------

#[tokio::test]
async fn empty_polls_202_and_200_with_an_empty_body_mean_no_message() {
    let fake =
        start(FakeGitHubConfig { long_poll_hold: Duration::from_millis(100), ..Default::default() }).await;
    let client = client(&fake).await;
    let (_ss, queue) = scale_set_with_queue(&client, "mac").await;
    for _ in 0..3 {
        assert!(queue.get_message(0, 5).await.unwrap().is_none(), "202");
    }
    fake.inject(Fault::EmptyPollResponse { times: 2 });
    fake.enqueue_job(JobSpec::new(["mac"]));
    assert!(queue.get_message(0, 5).await.unwrap().is_none(), "200 + empty body");
    assert!(queue.get_message(0, 5).await.unwrap().is_none(), "200 + empty body");
    assert!(queue.get_message(0, 5).await.unwrap().is_some(), "the message is still there");
}

// ---- F4 session conflict, expiry ------------------------------------------------------

#[tokio::test]
async fn a_stale_session_expires_after_the_idle_period() {
    let fake =
        start(FakeGitHubConfig { session_idle_expiry: Duration::from_millis(800), ..Default::default() })
            .await;
    let client = client(&fake).await;
    let (ss, _abandoned) = scale_set_with_queue(&client, "mac").await;
    assert!(matches!(client.create_session(ss, "b").await, Err(ScaleSetError::SessionConflict)));
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        match client.create_session(ss, "b").await {
            Ok(s) => {
                assert_eq!(s.owner_name, "b");
                break;
            }
            Err(ScaleSetError::SessionConflict) => {}
            Err(e) => panic!("{e}"),
        }
        assert!(tokio::time::Instant::now() < deadline, "stale session never expired");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn a_polling_session_does_not_expire() {
    let fake = start(FakeGitHubConfig {
        session_idle_expiry: Duration::from_millis(500),
        long_poll_hold: Duration::from_millis(300),
        ..Default::default()
    })
    .await;
    let client = client(&fake).await;
    let (ss, queue) = scale_set_with_queue(&client, "mac").await;
    for _ in 0..5 {
        assert!(queue.get_message(0, 5).await.unwrap().is_none());
    }
    assert!(matches!(client.create_session(ss, "b").await, Err(ScaleSetError::SessionConflict)));
}

#[tokio::test]
async fn session_expired_on_delete_is_a_typed_error() {
    let fake = start(FakeGitHubConfig::default()).await;
    let client = client(&fake).await;
    let (_ss, queue) = scale_set_with_queue(&client, "mac").await;
    fake.inject(Fault::SessionExpiredOnDelete { times: 1 });
    assert!(matches!(client.delete_session(&queue.session()).await, Err(ScaleSetError::SessionExpired)));
    assert!(matches!(client.delete_session(&queue.session()).await, Err(ScaleSetError::SessionExpired)));
}

// ---- F5 scale set deleted -------------------------------------------------------------

#[tokio::test]
async fn scale_set_deleted_server_side_is_scale_set_not_found() {
    let fake = start(FakeGitHubConfig::default()).await;
    let client = client(&fake).await;
    let (ss, queue) = scale_set_with_queue(&client, "mac").await;
    fake.inject(Fault::DeleteScaleSet { scale_set_id: ss });
    assert!(matches!(client.get_scale_set_by_id(ss).await, Err(ScaleSetError::ScaleSetNotFound)));
    assert!(matches!(client.create_session(ss, "h").await, Err(ScaleSetError::ScaleSetNotFound)));
    match queue.get_message(0, 5).await {
        Err(ScaleSetError::SessionNotFound | ScaleSetError::ScaleSetNotFound) => {}
        other => panic!("the old queue must say its session is gone, got {other:?}"),
    }
}

// ---- F6 duplicate delivery ------------------------------------------------------------

#[tokio::test]
async fn unacknowledged_messages_are_redelivered_after_a_restart_with_last_id_zero() {
    let fake =
        start(FakeGitHubConfig { long_poll_hold: Duration::from_millis(100), ..Default::default() }).await;
    let client = client(&fake).await;
    let (_ss, queue) = scale_set_with_queue(&client, "mac").await;
    fake.enqueue_job(JobSpec::new(["mac"]));
    let m1 = queue.get_message(0, 5).await.unwrap().unwrap();
    assert!(queue.get_message(m1.message_id, 5).await.unwrap().is_none(), "lastMessageId skips it");
    let again = queue.get_message(0, 5).await.unwrap().unwrap();
    assert_eq!(again, m1);
    queue.delete_message(m1.message_id).await.unwrap();
    assert!(queue.get_message(0, 5).await.unwrap().is_none(), "acked ⇒ gone");
}

#[tokio::test]
async fn the_same_job_in_two_messages() {
    let fake = start(FakeGitHubConfig::default()).await;
    let client = client(&fake).await;
    let (_ss, queue) = scale_set_with_queue(&client, "mac").await;
    fake.inject(Fault::DuplicateBatches { times: 1 });
    fake.enqueue_job(JobSpec::new(["mac"]));
    let mut last = 0;
    let msgs = receive_until(queue.as_ref(), &mut last, 5, |m| count_type(m, is_assigned) == 2).await;
    assert_eq!(msgs.len(), 2);
    assert_ne!(msgs[0].message_id, msgs[1].message_id);
    assert_eq!(msgs[0].job_messages, msgs[1].job_messages, "same JobAssigned, same jobId");
}

// ---- F7 out-of-order / merged events --------------------------------------------------

async fn run_job_on_a_runner(fake: &testkit::github::FakeGitHub, client: &GitHubClient, ss: i64, name: &str) {
    let jit = client.generate_jit_config(ss, name).await.unwrap();
    let cred = FakeJitConfig::decode(jit.encoded_jit_config.expose_secret()).unwrap().credential;
    assert_eq!(fake.runner_poll(&cred), Some(RunnerPoll::Running));
}

#[tokio::test]
async fn started_and_completed_arrive_merged_in_one_batch() {
    let fake = start(FakeGitHubConfig::default()).await;
    let client = client(&fake).await;
    let (ss, queue) = scale_set_with_queue(&client, "mac").await;
    fake.inject(Fault::PauseDelivery);
    let job = fake.enqueue_job(JobSpec::new(["mac"]).with_duration(Duration::from_secs(60)));
    run_job_on_a_runner(&fake, &client, ss, "mac-aaaaa").await;
    assert!(fake.finish_job(job, "failed"));
    fake.inject(Fault::ResumeDelivery);
    let msg = queue.get_message(0, 5).await.unwrap().unwrap();
    let kinds: Vec<bool> = msg
        .job_messages
        .iter()
        .map(|m| (is_assigned(m), is_started(m), is_completed(m)))
        .map(|t| t.0 || t.1 || t.2)
        .collect();
    assert_eq!(msg.job_messages.len(), 3, "{msg:#?}");
    assert!(kinds.iter().all(|k| *k));
    let JobMessage::Completed(c) = &msg.job_messages[2] else { panic!() };
    assert_eq!(c.result, "failed");
}

#[tokio::test]
async fn completed_may_arrive_before_started() {
    let fake = start(FakeGitHubConfig::default()).await;
    let client = client(&fake).await;
    let (ss, queue) = scale_set_with_queue(&client, "mac").await;
    let job = fake.enqueue_job(JobSpec::new(["mac"]).with_duration(Duration::from_secs(60)));
    let mut last = 0;
    receive_until(queue.as_ref(), &mut last, 5, |m| count_type(m, is_assigned) == 1).await;
    fake.inject(Fault::PauseDelivery);
    run_job_on_a_runner(&fake, &client, ss, "mac-bbbbb").await;
    fake.finish_job(job, "succeeded");
    fake.inject(Fault::ReverseBatches { times: 1 });
    fake.inject(Fault::ResumeDelivery);
    let msg = queue.get_message(last, 5).await.unwrap().unwrap();
    assert!(is_completed(&msg.job_messages[0]) && is_started(&msg.job_messages[1]), "{msg:#?}");
}

#[tokio::test]
async fn assigned_and_cancelled_in_one_batch_and_foreign_or_unknown_job_messages() {
    let fake = start(FakeGitHubConfig::default()).await;
    let client = client(&fake).await;
    let (ss, queue) = scale_set_with_queue(&client, "mac").await;
    fake.inject(Fault::PauseDelivery);
    let job = fake.enqueue_job(JobSpec::new(["mac"]));
    assert!(fake.cancel_job(job));
    fake.inject(Fault::InjectJobMessages {
        scale_set_id: ss,
        messages: vec![
            serde_json::json!({"messageType":"JobStarted","jobId":"x","runnerId":77,"runnerName":"stranger"}),
            serde_json::json!({"messageType":"JobRerouted","jobId":"x"}),
        ],
    });
    fake.inject(Fault::ResumeDelivery);
    let msg = queue.get_message(0, 5).await.unwrap().unwrap();
    assert_eq!(msg.job_messages.len(), 4, "{msg:#?}");
    let JobMessage::Completed(c) = &msg.job_messages[1] else { panic!("{msg:#?}") };
    assert!(c.outcome().is_withdrawn());
    assert_eq!((c.runner_id, c.runner_name.as_str()), (0, ""));
    let JobMessage::Started(s) = &msg.job_messages[2] else { panic!() };
    assert_eq!(s.runner_name, "stranger");
    assert!(
        matches!(&msg.job_messages[3], JobMessage::Unknown { message_type, .. } if message_type == "JobRerouted")
    );
}

// ---- F8 reassignment ------------------------------------------------------------------

#[tokio::test]
async fn reassignment_cycle_gives_new_job_ids_then_sticks() {
    let fake = start(FakeGitHubConfig {
        assignment_lease: Some(Duration::from_millis(300)),
        max_assignment_attempts: 3,
        ..Default::default()
    })
    .await;
    let client = client(&fake).await;
    let (_ss, queue) = scale_set_with_queue(&client, "mac").await;
    let job = fake.enqueue_job(JobSpec::new(["mac"]));
    let mut last = 0;
    let msgs = receive_until(queue.as_ref(), &mut last, 5, |m| count_type(m, is_assigned) == 3).await;
    let ids: std::collections::BTreeSet<String> =
        jobs(&msgs).into_iter().filter(|m| is_assigned(m)).map(|m| m.job().unwrap().job_id.clone()).collect();
    assert_eq!(ids.len(), 3, "a new jobId per assignment");
    assert_eq!(count_type(&msgs, is_completed), 2, "two cancelled assignments");
    tokio::time::sleep(Duration::from_millis(700)).await;
    let s = fake.state();
    assert_eq!((s.job(job).unwrap().state, s.job(job).unwrap().attempts), (JobState::Assigned, 3), "sticky");
    fake.inject(Fault::Reassign { job });
    let msgs = receive_until(queue.as_ref(), &mut last, 5, |m| count_type(m, is_assigned) == 1).await;
    assert_eq!(count_type(&msgs, is_completed), 1);
}

// ---- F9 stale statistics --------------------------------------------------------------

#[tokio::test]
async fn stale_statistics_are_delivered_as_sent() {
    let fake = start(FakeGitHubConfig::default()).await;
    let client = client(&fake).await;
    let (_ss, queue) = scale_set_with_queue(&client, "mac").await;
    fake.inject(Fault::StaleStatistics { statistics: FakeStatistics::default(), times: 1 });
    fake.enqueue_job(JobSpec::new(["mac"]));
    let msg = queue.get_message(0, 5).await.unwrap().unwrap();
    assert!(msg.job_messages.iter().any(is_assigned));
    assert_eq!(msg.statistics.total_assigned_jobs, 0, "lagging statistics reach the caller unchanged");
    fake.enqueue_job(JobSpec::new(["mac"]));
    queue.delete_message(msg.message_id).await.unwrap();
    let msg = queue.get_message(msg.message_id, 5).await.unwrap().unwrap();
    assert_eq!(msg.statistics.total_assigned_jobs, 2);
}

// ---- F10 premature JobCompleted -------------------------------------------------------

#[tokio::test]
async fn premature_job_completed_while_the_runner_is_still_busy() {
    let fake = start(FakeGitHubConfig::default()).await;
    let client = client(&fake).await;
    let (ss, queue) = scale_set_with_queue(&client, "mac").await;
    let job = fake.enqueue_job(JobSpec::new(["mac"]).with_duration(Duration::from_secs(60)));
    run_job_on_a_runner(&fake, &client, ss, "mac-ccccc").await;
    fake.inject(Fault::PrematureCompletion { job });
    let mut last = 0;
    receive_until(queue.as_ref(), &mut last, 5, |m| count_type(m, is_completed) == 1).await;
    let runner = client.get_runner_by_name("mac-ccccc").await.unwrap().unwrap();
    assert_eq!(runner.busy, Some(true), "the runner still runs the job");
    assert!(matches!(client.remove_runner(runner.id).await, Err(ScaleSetError::JobStillRunning)));
    assert_eq!(fake.state().job(job).unwrap().state, JobState::Running);
}

// ---- F11 5xx / 429 --------------------------------------------------------------------

#[tokio::test]
async fn transient_5xx_is_retried_on_idempotent_calls() {
    let fake = start(FakeGitHubConfig::default()).await;
    let client = client(&fake).await;
    let before = fake.state().request_count(Endpoint::RunnerGroups);
    fake.inject(http_error(Endpoint::RunnerGroups, 502, 1));
    fake.inject(http_error(Endpoint::RunnerGroups, 500, 1));
    client.get_runner_group("default").await.expect("third attempt succeeds");
    assert_eq!(fake.state().request_count(Endpoint::RunnerGroups) - before, 3);
}

#[tokio::test]
async fn persistent_5xx_gives_up_after_five_attempts_and_501_is_not_retried() {
    let fake = start(FakeGitHubConfig::default()).await;
    let client = client(&fake).await;
    fake.inject(http_error(Endpoint::RunnerGroups, 503, 100));
    match client.get_runner_group("default").await {
        Err(ScaleSetError::Http { status: 503, .. }) => {}
        other => panic!("{other:?}"),
    }
    assert_eq!(fake.state().request_count(Endpoint::RunnerGroups), 5);
    fake.clear_faults();
    fake.inject(http_error(Endpoint::RunnerGroups, 501, 1));
    assert!(matches!(client.get_runner_group("default").await, Err(ScaleSetError::Http { status: 501, .. })));
    assert_eq!(fake.state().request_count(Endpoint::RunnerGroups), 6);
}

#[tokio::test]
async fn non_idempotent_posts_are_not_blindly_repeated_on_5xx() {
    let fake = start(FakeGitHubConfig::default()).await;
    let client = client(&fake).await;
    fake.inject(http_error(Endpoint::CreateScaleSet, 500, 1));
    assert!(matches!(
        client.create_scale_set(&new_scale_set("mac")).await,
        Err(ScaleSetError::Http { status: 500, .. })
    ));
    assert_eq!(fake.state().request_count(Endpoint::CreateScaleSet), 1);
    // 429 means "not processed": safe to repeat even for a POST.
    fake.inject(Fault::HttpError {
        endpoint: Endpoint::CreateScaleSet,
        status: 429,
        retry_after: Some(RetryAfter::Seconds(0)),
        body: ErrorBodyKind::Json,
        times: 1,
        after_commit: false,
    });
    client.create_scale_set(&new_scale_set("mac")).await.expect("retried after 429");
    assert_eq!(fake.state().request_count(Endpoint::CreateScaleSet), 3);
}

#[tokio::test]
async fn retry_after_in_seconds_and_http_date_forms_is_honoured() {
    let fake = start(FakeGitHubConfig::default()).await;
    let client = client(&fake).await;
    for ra in [RetryAfter::Seconds(1), RetryAfter::HttpDate(2)] {
        fake.inject(Fault::HttpError {
            endpoint: Endpoint::RunnerGroups,
            status: 429,
            retry_after: Some(ra),
            body: ErrorBodyKind::Empty,
            times: 1,
            after_commit: false,
        });
        let started = tokio::time::Instant::now();
        client.get_runner_group("default").await.expect("retried after Retry-After");
        // The backoff alone would be 20 ms; a wait of most of a second proves the header was read.
        assert!(started.elapsed() >= Duration::from_millis(900), "{ra:?}: waited {:?}", started.elapsed());
    }
}

#[tokio::test]
async fn retry_after_is_capped() {
    let fake = start(FakeGitHubConfig::default()).await;
    let mut cfg = pat_config(&fake);
    cfg.retry.max_retry_after = Duration::from_millis(100);
    let client = GitHubClient::connect(cfg).await.unwrap();
    fake.inject(Fault::HttpError {
        endpoint: Endpoint::RunnerGroups,
        status: 503,
        retry_after: Some(RetryAfter::Seconds(3600)),
        body: ErrorBodyKind::Json,
        times: 1,
        after_commit: false,
    });
    tokio::time::timeout(Duration::from_secs(10), client.get_runner_group("default"))
        .await
        .expect("an hour-long Retry-After is capped")
        .unwrap();
}

#[tokio::test]
async fn rate_limited_after_retries_is_typed() {
    let fake = start(FakeGitHubConfig::default()).await;
    let client = client(&fake).await;
    fake.inject(Fault::HttpError {
        endpoint: Endpoint::RunnerGroups,
        status: 429,
        retry_after: Some(RetryAfter::Seconds(0)),
        body: ErrorBodyKind::Text,
        times: 10,
        after_commit: false,
    });
    assert!(matches!(client.get_runner_group("default").await, Err(ScaleSetError::RateLimited { .. })));
}

#[tokio::test]
async fn a_5xx_after_a_committed_jit_post_recovers_through_agent_exists() {
    let fake = start(FakeGitHubConfig::default()).await;
    let client = client(&fake).await;
    let ss = client.create_scale_set(&new_scale_set("mac")).await.unwrap().id;
    fake.inject(Fault::HttpError {
        endpoint: Endpoint::GenerateJitConfig,
        status: 502,
        retry_after: None,
        body: ErrorBodyKind::Json,
        times: 1,
        after_commit: true,
    });
    let jit = client.generate_jit_config(ss, "mac-ddddd").await.expect("recovered");
    let state = fake.state();
    assert_eq!(state.registered_runners().count(), 1, "exactly one registration remains");
    assert_eq!(state.registered_runners().next().unwrap().id, jit.runner.id);
    assert_eq!(state.request_count(Endpoint::GenerateJitConfig), 3, "committed, AgentExists, retry");
}

#[tokio::test]
async fn an_untyped_404_never_makes_a_runner_look_absent() {
    let fake = start(FakeGitHubConfig::default()).await;
    let client = client(&fake).await;
    let ss = client.create_scale_set(&new_scale_set("mac")).await.unwrap().id;
    let jit = client.generate_jit_config(ss, "mac-fffff").await.unwrap();
    fake.inject(http_error(Endpoint::GetRunner, 404, 1));
    assert!(matches!(client.get_runner(jit.runner.id).await, Err(ScaleSetError::Http { status: 404, .. })));
    fake.inject(http_error(Endpoint::RemoveRunner, 404, 1));
    assert!(client.remove_runner(jit.runner.id).await.is_err());
    assert!(client.get_runner(jit.runner.id).await.unwrap().is_some(), "still registered");
    client.remove_runner(jit.runner.id).await.unwrap();
    assert_eq!(client.get_runner(jit.runner.id).await.unwrap(), None, "AgentNotFoundException = absent");
}

// ---- F12 slow responses and resets ----------------------------------------------------

#[tokio::test]
async fn slow_responses_past_the_timeout_are_retried_when_idempotent() {
    let fake = start(FakeGitHubConfig::default()).await;
    let mut cfg = pat_config(&fake);
    cfg.timeouts = Timeouts { request: Duration::from_millis(400), long_poll: Duration::from_secs(10) };
    let client = GitHubClient::connect(cfg).await.unwrap();
    fake.inject(Fault::Delay { endpoint: Endpoint::RunnerGroups, delay_ms: 1500, times: 1 });
    client.get_runner_group("default").await.expect("the retry is fast");
    fake.inject(Fault::Delay { endpoint: Endpoint::CreateScaleSet, delay_ms: 1500, times: 1 });
    match client.create_scale_set(&new_scale_set("mac")).await {
        Err(e @ ScaleSetError::Transport { .. }) => assert!(e.is_retryable()),
        other => panic!("a timed-out POST is not repeated blindly: {other:?}"),
    }
    assert_eq!(fake.state().request_count(Endpoint::CreateScaleSet), 1);
}

#[tokio::test]
async fn a_connection_reset_mid_body_is_retried() {
    let fake = start(FakeGitHubConfig::default()).await;
    let client = client(&fake).await;
    let (_ss, queue) = scale_set_with_queue(&client, "mac").await;
    fake.enqueue_job(JobSpec::new(["mac"]));
    fake.inject(Fault::ResetConnection { endpoint: Endpoint::GetMessage, times: 1 });
    let msg = queue.get_message(0, 5).await.expect("retried").expect("message");
    assert!(msg.job_messages.iter().any(is_assigned));
    assert_eq!(fake.state().request_count(Endpoint::GetMessage), 2);
}

// ---- F13 BOM, text/plain and empty error bodies ---------------------------------------

#[tokio::test]
async fn bom_prefixed_bodies_parse() {
    let fake = start(FakeGitHubConfig::default()).await;
    fake.inject(Fault::Bom { endpoint: Endpoint::Any, times: 1000 });
    let client = client(&fake).await;
    let (_ss, queue) = scale_set_with_queue(&client, "mac").await;
    fake.enqueue_job(JobSpec::new(["mac"]));
    let msg = queue.get_message(0, 5).await.unwrap().unwrap();
    assert!(msg.job_messages.iter().any(is_assigned));
}

#[tokio::test]
async fn text_plain_and_empty_error_bodies_become_messages() {
    let fake = start(FakeGitHubConfig::default()).await;
    let client = client(&fake).await;
    fake.inject(Fault::HttpError {
        endpoint: Endpoint::RunnerGroups,
        status: 400,
        retry_after: None,
        body: ErrorBodyKind::Text,
        times: 1,
        after_commit: false,
    });
    match client.get_runner_group("default").await {
        Err(ScaleSetError::Http { status: 400, message, type_name: None }) => {
            assert_eq!(message, "injected failure (400)")
        }
        other => panic!("{other:?}"),
    }
    fake.inject(Fault::HttpError {
        endpoint: Endpoint::RunnerGroups,
        status: 404,
        retry_after: None,
        body: ErrorBodyKind::Empty,
        times: 1,
        after_commit: false,
    });
    match client.get_runner_group("default").await {
        Err(ScaleSetError::Http { status: 404, message, .. }) => assert_eq!(message, "unknown error"),
        other => panic!("{other:?}"),
    }
}

// ---- F14 empty queue URL --------------------------------------------------------------

#[tokio::test]
async fn an_empty_queue_url_is_repaired_by_a_refresh_or_the_session_is_given_back() {
    let fake = start(FakeGitHubConfig::default()).await;
    let client = client(&fake).await;
    let ss = client.create_scale_set(&new_scale_set("mac")).await.unwrap().id;
    fake.inject(Fault::EmptyQueueUrl { times: 1 });
    let session = client.create_session(ss, "h").await.expect("refreshed into a usable session");
    assert!(!session.message_queue_url.is_empty());
    client.delete_session(&session).await.unwrap();

    fake.inject(Fault::EmptyQueueUrl { times: 2 });
    assert!(matches!(client.create_session(ss, "h").await, Err(ScaleSetError::Protocol { .. })));
    assert!(fake.state().sessions.is_empty(), "the unusable session does not lock the scale set");
}

// ---- F15 capacity lowered mid-run -----------------------------------------------------

#[tokio::test]
async fn capacity_lowered_mid_run_stops_new_assignments() {
    let fake =
        start(FakeGitHubConfig { long_poll_hold: Duration::from_millis(150), ..Default::default() }).await;
    let client = client(&fake).await;
    let (_ss, queue) = scale_set_with_queue(&client, "mac").await;
    let mut last = 0;
    fake.enqueue_job(JobSpec::new(["mac"]));
    receive_until(queue.as_ref(), &mut last, 5, |m| count_type(m, is_assigned) == 1).await;
    assert!(queue.get_message(last, 1).await.unwrap().is_none());
    fake.enqueue_job(JobSpec::new(["mac"]));
    assert!(queue.get_message(last, 1).await.unwrap().is_none(), "capacity 1 is used up");
    let msgs = receive_until(queue.as_ref(), &mut last, 2, |m| count_type(m, is_assigned) == 1).await;
    assert_eq!(msgs.last().unwrap().statistics.total_assigned_jobs, 2);
}

// ---- F16 acquire flow: a strict subset ------------------------------------------------

#[tokio::test]
async fn acquire_returns_a_strict_subset_when_jobs_went_elsewhere_or_were_cancelled() {
    let fake = start(FakeGitHubConfig { flavour: Flavour::Acquire, ..Default::default() }).await;
    let client = client(&fake).await;
    let (_ss, queue) = scale_set_with_queue(&client, "mac").await;
    let a = fake.enqueue_job(JobSpec::new(["mac"]));
    let _b = fake.enqueue_job(JobSpec::new(["mac"]));
    let mut last = 0;
    let msgs = receive_until(queue.as_ref(), &mut last, 5, |m| count_type(m, is_available) == 2).await;
    let ids: Vec<i64> =
        jobs(&msgs).into_iter().filter_map(|m| m.job()).map(|j| j.runner_request_id).collect();
    assert!(fake.cancel_job(a));
    let got = queue.acquire_jobs(&ids).await.unwrap();
    assert_eq!(got.len(), 1, "the cancelled one is not acquired");
    let c = fake.enqueue_job(JobSpec::new(["mac"]));
    let msgs = receive_until(queue.as_ref(), &mut last, 5, |m| count_type(m, is_available) >= 1).await;
    let id = jobs(&msgs)
        .into_iter()
        .filter(|m| is_available(m))
        .map(|m| m.job().unwrap().runner_request_id)
        .next_back();
    fake.inject(Fault::AcquireTakenElsewhere { times: 1 });
    assert_eq!(queue.acquire_jobs(&[id.unwrap()]).await.unwrap(), Vec::<i64>::new());
    assert_eq!(fake.state().job(c).unwrap().state, JobState::Elsewhere);
}

// ---- F17 unknown envelope type --------------------------------------------------------

#[tokio::test]
async fn an_unknown_envelope_type_is_reported_not_fatal() {
    let fake = start(FakeGitHubConfig::default()).await;
    let client = client(&fake).await;
    let (_ss, queue) = scale_set_with_queue(&client, "mac").await;
    fake.inject(Fault::UnknownEnvelopeType { times: 1 });
    fake.enqueue_job(JobSpec::new(["mac"]));
    let msg = queue.get_message(0, 5).await.expect("not fatal").unwrap();
    assert_ne!(msg.message_type, JOB_MESSAGES_TYPE);
    queue.delete_message(msg.message_id).await.unwrap();
}

// ---- fake-runner contract: heartbeat lease -------------------------------------------------

#[tokio::test]
async fn a_runner_that_stops_polling_fails_its_job() {
    let fake =
        start(FakeGitHubConfig { runner_lease: Duration::from_millis(300), ..Default::default() }).await;
    let client = client(&fake).await;
    let (ss, queue) = scale_set_with_queue(&client, "mac").await;
    let job = fake.enqueue_job(JobSpec::new(["mac"]).with_duration(Duration::from_secs(60)));
    run_job_on_a_runner(&fake, &client, ss, "mac-eeeee").await;
    let mut last = 0;
    let msgs = receive_until(queue.as_ref(), &mut last, 5, |m| count_type(m, is_completed) == 1).await;
    let JobMessage::Completed(c) = jobs(&msgs).into_iter().find(|m| is_completed(m)).unwrap() else {
        panic!()
    };
    assert_eq!(c.result, "failed");
    assert_eq!(fake.state().job(job).unwrap().result.as_deref(), Some("failed"));
    assert_eq!(fake.poll_runner_named("mac-eeeee"), Some(RunnerPoll::Removed));
    let r = client.get_runner_by_name("mac-eeeee").await.unwrap().expect("registration lingers");
    assert_eq!(r.status.as_deref(), Some("offline"));
    client.remove_runner(r.id).await.unwrap();
    assert!(client.get_runner_by_name("mac-eeeee").await.unwrap().is_none());
}
