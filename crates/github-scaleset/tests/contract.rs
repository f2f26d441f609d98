//! Contract tests: the client against the fake GitHub over loopback HTTP — bootstrap in
//! every form, every endpoint, and a job's whole life in both service flavours.

mod support;

use std::time::Duration;

use github_scaleset::{
    Auth, GitHubClient, JobMessage, JobResult, MessageQueue, RunnerState, ScaleSetApi, ScaleSetError,
    ScaleSetUpdate,
};
use secrecy::{ExposeSecret, SecretString};
use support::*;
use testkit::github::{
    FakeGitHubConfig, FakeJitConfig, Flavour, JobSpec, JobState, RunnerPoll, RunnerStatus,
    test_app_private_key_pem, untrusted_app_private_key_pem,
};

#[tokio::test]
async fn pat_bootstrap_works_for_org_repo_and_enterprise_urls() {
    let fake = start(FakeGitHubConfig::default()).await;
    for scope in ["my-org", "my-org/my-repo", "enterprises/my-ent"] {
        let cfg = config_for(&fake, scope, Auth::Pat(SecretString::from(fake.pat())));
        let client = GitHubClient::connect(cfg).await.unwrap_or_else(|e| panic!("{scope}: {e}"));
        let tenant = client.tenant_url().await.unwrap();
        assert!(tenant.as_str().starts_with(&fake.url()), "{tenant}");
        assert_eq!(client.get_runner_group("default").await.unwrap().id, 1);
    }
    // GHES-style: the client went through /api/v3.
    assert!(fake.state().request_count(testkit::github::Endpoint::RegistrationToken) >= 3);
}

#[tokio::test]
async fn a_wrong_pat_is_unauthorized() {
    let fake = start(FakeGitHubConfig::default()).await;
    let cfg = config_for(&fake, "my-org", Auth::Pat(SecretString::from("ghp_wrong")));
    match GitHubClient::connect(cfg).await {
        Err(ScaleSetError::Unauthorized { status: 401, .. }) => {}
        other => panic!("expected 401, got {other:?}"),
    }
}

#[tokio::test]
async fn github_app_auth_mints_an_installation_token() {
    let fake = start(FakeGitHubConfig::default()).await;
    for app_id in ["12345", "Iv1.fake"] {
        let auth = Auth::App {
            app_id: app_id.into(),
            installation_id: 67890,
            private_key_pem: SecretString::from(test_app_private_key_pem()),
        };
        let client = GitHubClient::connect(config_for(&fake, "my-org", auth)).await.expect("app auth");
        assert_eq!(client.get_runner_group("default").await.unwrap().name, "default");
    }
    assert_eq!(fake.state().request_count(testkit::github::Endpoint::AccessToken), 2);

    let untrusted = Auth::App {
        app_id: "12345".into(),
        installation_id: 67890,
        private_key_pem: SecretString::from(untrusted_app_private_key_pem()),
    };
    assert!(matches!(
        GitHubClient::connect(config_for(&fake, "my-org", untrusted)).await,
        Err(ScaleSetError::Unauthorized { .. })
    ));
    let not_a_key =
        Auth::App { app_id: "1".into(), installation_id: 1, private_key_pem: SecretString::from("garbage") };
    assert!(matches!(
        GitHubClient::new(config_for(&fake, "my-org", not_a_key)),
        Err(ScaleSetError::Config(_))
    ));
}

#[tokio::test]
async fn scale_set_administration_round_trip() {
    let fake = start(FakeGitHubConfig::default()).await;
    let client = client(&fake).await;
    assert!(client.get_scale_set(1, "mac").await.unwrap().is_none());
    let created = client.create_scale_set(&new_scale_set("mac")).await.unwrap();
    assert_eq!(created.name, "mac");
    assert!(created.runner_setting.disable_update);
    assert_eq!(created.runner_group_name.as_deref(), Some("default"));
    let found = client.get_scale_set(1, "mac").await.unwrap().expect("found by name");
    assert_eq!(found.id, created.id);
    assert_eq!(client.get_scale_set_by_id(created.id).await.unwrap().labels[0].name, "mac");

    let updated = client
        .update_scale_set(
            created.id,
            &ScaleSetUpdate {
                labels: Some(vec![
                    github_scaleset::Label::system("mac"),
                    github_scaleset::Label::system("arm64"),
                ]),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(updated.labels.len(), 2);
    assert!(updated.runner_setting.disable_update, "an update without settings keeps them");

    client.delete_scale_set(created.id).await.unwrap();
    assert!(matches!(client.get_scale_set_by_id(created.id).await, Err(ScaleSetError::ScaleSetNotFound)));
    assert!(client.get_scale_set(1, "mac").await.unwrap().is_none());
    assert!(client.get_runner_group("nope").await.is_err());
}

#[tokio::test]
async fn a_job_runs_from_assignment_to_completion_assign_flavour() {
    let fake = start(FakeGitHubConfig::default()).await;
    let client = client(&fake).await;
    let (ss, queue) = scale_set_with_queue(&client, "mac").await;
    assert_eq!(queue.session().statistics.total_assigned_jobs, 0);

    let job = fake.enqueue_job(JobSpec::new(["mac"]).with_duration(Duration::from_millis(300)));
    let mut last = 0;
    let msgs = receive_until(queue.as_ref(), &mut last, 5, |m| count_type(m, is_assigned) == 1).await;
    let JobMessage::Assigned(assigned) = jobs(&msgs)[0] else { panic!() };
    assert_eq!(assigned.runner_request_id, 0, "assign flavour uses request id 0");
    assert!(!assigned.job_id.is_empty());
    assert_eq!(assigned.request_labels, vec!["mac".to_owned()]);
    assert!(assigned.scale_set_assign_time.is_some());
    assert_eq!(msgs.last().unwrap().statistics.total_assigned_jobs, 1);
    assert!(msgs[0].message_id >= 100_000_001);

    let jit = client.generate_jit_config(ss, "mac-abcde").await.unwrap();
    assert_eq!(jit.runner.name, "mac-abcde");
    let runner = client.get_runner_by_name("mac-abcde").await.unwrap().expect("registered");
    assert_eq!(runner.state(), RunnerState::Offline, "registered but not connected");
    let decoded = FakeJitConfig::decode(jit.encoded_jit_config.expose_secret()).expect("contract encoding");
    assert_eq!(decoded.runner_id, jit.runner.id);
    assert_eq!(decoded.server_url, fake.url());
    assert_eq!(fake.runner_poll(&decoded.credential), Some(RunnerPoll::Running));
    assert_eq!(client.get_runner(jit.runner.id).await.unwrap().unwrap().state(), RunnerState::Busy);
    assert!(matches!(client.remove_runner(jit.runner.id).await, Err(ScaleSetError::JobStillRunning)));

    let msgs = receive_until(queue.as_ref(), &mut last, 5, |m| count_type(m, is_completed) == 1).await;
    let started = jobs(&msgs).into_iter().find_map(|m| match m {
        JobMessage::Started(s) => Some(s.clone()),
        _ => None,
    });
    let started = started.expect("JobStarted");
    assert_eq!((started.runner_id, started.runner_name.as_str()), (jit.runner.id, "mac-abcde"));
    assert_eq!(started.job.job_id, assigned.job_id);
    let JobMessage::Completed(done) = jobs(&msgs).into_iter().find(|m| is_completed(m)).unwrap() else {
        panic!()
    };
    assert_eq!(done.outcome(), JobResult::Succeeded);
    assert_eq!(done.runner_name, "mac-abcde");

    // Ephemeral: the runner deregistered itself and tells run.sh it is done.
    assert_eq!(client.get_runner(jit.runner.id).await.unwrap(), None);
    assert_eq!(fake.runner_poll(&decoded.credential), Some(RunnerPoll::Done));
    let state = fake.state();
    assert_eq!(state.job(job).unwrap().state, JobState::Completed);
    assert_eq!(state.runner("mac-abcde").unwrap().status, RunnerStatus::Done);
    assert!(state.scale_sets[0].unacked_messages.is_empty(), "every message acknowledged");

    client.delete_session(&queue.session()).await.unwrap();
    assert!(fake.state().sessions.is_empty());
    client.remove_runner(jit.runner.id).await.expect("removing an absent runner succeeds");
}

#[tokio::test]
async fn acquire_flavour_offers_then_assigns_on_acquire() {
    let fake = start(FakeGitHubConfig { flavour: Flavour::Acquire, ..Default::default() }).await;
    let client = client(&fake).await;
    let (ss, queue) = scale_set_with_queue(&client, "mac").await;
    fake.enqueue_job(JobSpec::new(["mac"]));
    fake.enqueue_job(JobSpec::new(["mac"]));
    let mut last = 0;
    let msgs = receive_until(queue.as_ref(), &mut last, 5, |m| count_type(m, is_available) == 2).await;
    let ids: Vec<i64> = jobs(&msgs)
        .into_iter()
        .filter_map(|m| match m {
            JobMessage::Available(a) => Some(a.job.runner_request_id),
            _ => None,
        })
        .collect();
    assert!(ids.iter().all(|id| *id > 0), "acquire flavour uses positive request ids: {ids:?}");
    assert_eq!(client.acquirable_jobs(ss).await.unwrap().len(), 2);
    assert_eq!(msgs.last().unwrap().statistics.total_available_jobs, 2);

    let acquired = queue.acquire_jobs(&ids).await.unwrap();
    assert_eq!(acquired, ids);
    let msgs = receive_until(queue.as_ref(), &mut last, 5, |m| count_type(m, is_assigned) == 2).await;
    assert_eq!(msgs.last().unwrap().statistics.total_assigned_jobs, 2);
    assert!(client.acquirable_jobs(ss).await.unwrap().is_empty(), "204 = nothing to acquire");
    assert_eq!(queue.acquire_jobs(&ids).await.unwrap(), Vec::<i64>::new(), "acquiring twice gets nothing");
}

#[tokio::test]
async fn max_capacity_caps_assignment_and_zero_assigns_nothing() {
    let fake =
        start(FakeGitHubConfig { long_poll_hold: Duration::from_millis(200), ..Default::default() }).await;
    let client = client(&fake).await;
    let (_ss, queue) = scale_set_with_queue(&client, "mac").await;
    // The first poll advertises capacity 0: nothing is assigned.
    assert!(queue.get_message(0, 0).await.unwrap().is_none());
    for _ in 0..3 {
        fake.enqueue_job(JobSpec::new(["mac"]));
    }
    assert!(queue.get_message(0, 0).await.unwrap().is_none(), "capacity 0 ⇒ nothing assigned");
    assert!(fake.state().jobs.iter().all(|j| j.state == JobState::Queued));
    let mut last = 0;
    let msgs = receive_until(queue.as_ref(), &mut last, 2, |m| count_type(m, is_assigned) == 2).await;
    assert_eq!(msgs.last().unwrap().statistics.total_assigned_jobs, 2);
    assert!(queue.get_message(last, 2).await.unwrap().is_none(), "capacity 2 ⇒ the third job waits");
    assert_eq!(fake.state().jobs.iter().filter(|j| j.state == JobState::Queued).count(), 1);
}

#[tokio::test]
async fn batches_hold_at_most_fifty_job_messages() {
    let fake = start(FakeGitHubConfig::default()).await;
    let client = client(&fake).await;
    let (_ss, queue) = scale_set_with_queue(&client, "mac").await;
    fake.inject(testkit::github::Fault::PauseDelivery);
    assert!(queue.get_message(0, 1000).await.unwrap().is_none());
    for _ in 0..120 {
        fake.enqueue_job(JobSpec::new(["mac"]));
    }
    fake.inject(testkit::github::Fault::ResumeDelivery);
    let mut last = 0;
    let msgs = receive_until(queue.as_ref(), &mut last, 1000, |m| count_type(m, is_assigned) == 120).await;
    assert!(msgs.iter().all(|m| m.job_messages.len() <= 50));
    assert_eq!(msgs.len(), 3, "120 events in batches of 50, 50, 20");
    assert!(msgs.windows(2).all(|w| w[0].message_id < w[1].message_id), "ids increase");
}

#[tokio::test]
async fn jit_config_recovers_from_a_leftover_registration_of_our_scale_set() {
    let fake = start(FakeGitHubConfig::default()).await;
    let client = client(&fake).await;
    let ss = client.create_scale_set(&new_scale_set("mac")).await.unwrap().id;
    let other = client.create_scale_set(&new_scale_set("linux")).await.unwrap().id;
    let first = client.generate_jit_config(ss, "mac-aaaaa").await.unwrap();
    let second = client.generate_jit_config(ss, "mac-aaaaa").await.expect("leftover removed, re-registered");
    assert_ne!(first.runner.id, second.runner.id);
    assert_eq!(fake.state().registered_runners().count(), 1);
    // A runner of another scale set is never removed.
    client.generate_jit_config(other, "shared-name").await.unwrap();
    assert!(matches!(client.generate_jit_config(ss, "shared-name").await, Err(ScaleSetError::AgentExists)));
    assert_eq!(fake.state().registered_runners().count(), 2);
}

#[tokio::test]
async fn a_second_session_conflicts_until_the_first_is_deleted() {
    let fake = start(FakeGitHubConfig::default()).await;
    let client = client(&fake).await;
    let (ss, queue) = scale_set_with_queue(&client, "mac").await;
    assert!(matches!(client.create_session(ss, "other-host").await, Err(ScaleSetError::SessionConflict)));
    client.delete_session(&queue.session()).await.unwrap();
    let again = client.create_session(ss, "other-host").await.expect("free after delete");
    assert_eq!(fake.state().sessions[0].owner_name, "other-host");
    assert_eq!(again.scale_set.id, ss);
    assert!(matches!(client.create_session(9999, "h").await, Err(ScaleSetError::ScaleSetNotFound)));
}
