//! GitHub's rate limits and credential failures against the fake's real headers and
//! bodies: rate limits are waited out (never "credentials rejected"), the budget reaches
//! the observer, revoked credentials say which setting to fix and recover once restored.

mod support;

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use github_scaleset::{
    Auth, GitHubClient, RateLimitKind, RateLimitObserver, RateLimitPolicy, ScaleSetApi, ScaleSetError,
};
use secrecy::SecretString;
use support::*;
use testkit::github::{Endpoint, FakeGitHubConfig, Fault, test_app_private_key_pem};

#[derive(Default)]
struct Recorder {
    budgets: Mutex<Vec<(String, u64, u64)>>,
    waits: Mutex<Vec<(&'static str, RateLimitKind, Duration)>>,
}

impl RateLimitObserver for Recorder {
    fn budget(&self, resource: &str, remaining: u64, limit: u64) {
        self.budgets.lock().unwrap().push((resource.to_owned(), remaining, limit));
    }
    fn waiting(&self, endpoint: &'static str, kind: RateLimitKind, wait: Duration) {
        self.waits.lock().unwrap().push((endpoint, kind, wait));
    }
}

fn observed(cfg: &mut github_scaleset::GitHubConfig) -> Arc<Recorder> {
    let recorder = Arc::new(Recorder::default());
    cfg.rate_limit_observer.0 = Some(recorder.clone());
    recorder
}

#[tokio::test]
async fn a_primary_limit_at_start_up_is_waited_out_until_its_reset() {
    let fake = start(FakeGitHubConfig::default()).await;
    for status in [403, 429] {
        fake.inject(Fault::PrimaryRateLimit { endpoint: Endpoint::RegistrationToken, status, for_ms: 1500 });
        let mut cfg = pat_config(&fake);
        let recorder = observed(&mut cfg);
        let before = fake.state().request_count(Endpoint::RegistrationToken);
        let client = tokio::time::timeout(WAIT, GitHubClient::connect(cfg))
            .await
            .expect("bounded")
            .unwrap_or_else(|e| panic!("{status}: the limit resets, so connect succeeds: {e}"));
        assert!(client.get_scale_set(1, "nope").await.unwrap().is_none());
        let waits = recorder.waits.lock().unwrap().clone();
        assert_eq!(waits.len(), 1, "{status}: one wait until the reset: {waits:?}");
        assert_eq!((waits[0].0, waits[0].1), ("registration token", RateLimitKind::Primary));
        assert!(waits[0].2 <= Duration::from_secs(4), "{waits:?}");
        let sent = fake.state().request_count(Endpoint::RegistrationToken) - before;
        assert_eq!(sent, 2, "{status}: one refused request, one after the reset");
        let budgets = recorder.budgets.lock().unwrap().clone();
        assert!(budgets.contains(&("core".into(), 0, 5000)), "{budgets:?}");
    }
}

#[tokio::test]
async fn a_primary_limit_on_the_actions_service_holds_other_requests_back() {
    let fake = start(FakeGitHubConfig::default()).await;
    let mut cfg = pat_config(&fake);
    let recorder = observed(&mut cfg);
    let client = GitHubClient::connect(cfg).await.unwrap();
    fake.inject(Fault::PrimaryRateLimit { endpoint: Endpoint::Any, status: 403, for_ms: 1500 });
    let spawn = |client: GitHubClient| tokio::spawn(async move { client.get_runner_group("default").await });
    let first = spawn(client.clone());
    fake.wait_until(WAIT, |s| s.request_count(Endpoint::RunnerGroups) == 1).await.expect("first refused");
    let second = spawn(client.clone());
    for call in [first, second] {
        let group = tokio::time::timeout(WAIT, call).await.expect("bounded").unwrap();
        assert_eq!(group.expect("served after the reset").id, 1);
    }
    assert_eq!(
        fake.state().request_count(Endpoint::RunnerGroups),
        3,
        "the first was refused and sent again; the second held back until the reset and was sent once"
    );
    let waits = recorder.waits.lock().unwrap().clone();
    assert_eq!(waits.len(), 1, "{waits:?}");
}

#[tokio::test]
async fn a_secondary_limit_waits_retry_after_and_a_non_idempotent_post_is_sent_once_more() {
    let fake = start(FakeGitHubConfig::default()).await;
    let mut cfg = pat_config(&fake);
    let recorder = observed(&mut cfg);
    let client = GitHubClient::connect(cfg).await.unwrap();
    let ss = client.create_scale_set(&new_scale_set("mac")).await.unwrap();
    fake.inject(Fault::SecondaryRateLimit {
        endpoint: Endpoint::CreateSession,
        status: 403,
        retry_after_secs: Some(1),
        times: 1,
    });
    let session = client.create_session(ss.id, "host").await.expect("created after the wait");
    assert_eq!(fake.state().sessions.len(), 1, "the rate-limited POST was not processed; one session exists");
    client.delete_session(&session).await.unwrap();
    let waits = recorder.waits.lock().unwrap().clone();
    assert_eq!(waits, [("create session", RateLimitKind::Secondary, Duration::from_secs(1))]);
}

#[tokio::test]
async fn a_secondary_limit_without_retry_after_backs_off_exponentially() {
    let fake = start(FakeGitHubConfig::default()).await;
    let mut cfg = pat_config(&fake);
    cfg.rate_limit =
        RateLimitPolicy { secondary_backoff: Duration::from_millis(50), ..RateLimitPolicy::default() };
    let recorder = observed(&mut cfg);
    let client = GitHubClient::connect(cfg).await.unwrap();
    fake.inject(Fault::SecondaryRateLimit {
        endpoint: Endpoint::RunnerGroups,
        status: 429,
        retry_after_secs: None,
        times: 3,
    });
    client.get_runner_group("default").await.expect("served after three waits");
    let waits: Vec<_> = recorder.waits.lock().unwrap().iter().map(|w| w.2.as_millis()).collect();
    assert_eq!(waits, [50, 100, 200]);
}

#[tokio::test]
async fn a_limit_that_outlasts_every_wait_is_rate_limited_never_unauthorized() {
    let fake = start(FakeGitHubConfig::default()).await;
    let mut cfg = pat_config(&fake);
    cfg.rate_limit = RateLimitPolicy { max_waits: 1, ..RateLimitPolicy::default() };
    let client = GitHubClient::connect(cfg).await.unwrap();
    fake.inject(Fault::SecondaryRateLimit {
        endpoint: Endpoint::GetScaleSet,
        status: 403,
        retry_after_secs: Some(0),
        times: 5,
    });
    let err = client.get_scale_set(1, "mac").await.unwrap_err();
    assert!(matches!(err, ScaleSetError::RateLimited { retry_after: Some(d) } if d.is_zero()), "{err:?}");
    assert!(err.is_retryable());
    assert!(!err.to_string().contains("credentials"), "{err}");
    fake.inject(Fault::PrimaryRateLimit { endpoint: Endpoint::GetScaleSet, status: 403, for_ms: 60_000 });
    let mut cfg = pat_config(&fake);
    cfg.rate_limit = RateLimitPolicy { max_waits: 0, ..RateLimitPolicy::default() };
    let client = GitHubClient::connect(cfg).await.unwrap();
    let err = client.get_scale_set(1, "mac").await.unwrap_err();
    match &err {
        ScaleSetError::RateLimited { retry_after: Some(d) } => {
            assert!(*d <= Duration::from_secs(62), "{d:?}")
        }
        other => panic!("{other:?}"),
    }
    assert!(err.to_string().contains("resets in"), "{err}");
}

#[tokio::test]
async fn revoked_credentials_name_the_setting_and_recover_once_restored() {
    let fake = start(FakeGitHubConfig::default()).await;
    let client = client(&fake).await;
    fake.inject(Fault::RevokeCredentials);
    let err = client.get_runner_group("default").await.unwrap_err();
    match &err {
        ScaleSetError::Unauthorized { status: 401, message } => {
            assert!(message.contains("GITHUB_PAT"), "{err}")
        }
        other => panic!("{other:?}"),
    }
    assert!(!err.is_retryable());
    fake.inject(Fault::RestoreCredentials);
    assert_eq!(client.get_runner_group("default").await.expect("the same client recovers").id, 1);

    let app = Auth::App {
        app_id: "12345".into(),
        installation_id: 67890,
        private_key_pem: SecretString::from(test_app_private_key_pem()),
    };
    fake.inject(Fault::RevokeCredentials);
    let err = GitHubClient::connect(config_for(&fake, "my-org", app)).await.unwrap_err();
    assert!(err.to_string().contains("GITHUB_APP_ID"), "{err}");
    fake.inject(Fault::RestoreCredentials);
}

#[tokio::test]
async fn a_wrong_installation_or_scope_names_the_setting_to_fix() {
    let fake =
        start(FakeGitHubConfig { missing_owners: vec!["no-such-org".into()], ..Default::default() }).await;
    let app = Auth::App {
        app_id: "12345".into(),
        installation_id: 1,
        private_key_pem: SecretString::from(test_app_private_key_pem()),
    };
    let err = GitHubClient::connect(config_for(&fake, "my-org", app)).await.unwrap_err();
    assert!(matches!(err, ScaleSetError::Unauthorized { status: 404, .. }), "{err:?}");
    assert!(err.to_string().contains("GITHUB_APP_INSTALLATION_ID"), "{err}");

    let pat = Auth::Pat(SecretString::from(fake.pat()));
    let err = GitHubClient::connect(config_for(&fake, "no-such-org", pat)).await.unwrap_err();
    assert!(matches!(&err, ScaleSetError::ScopeNotFound { url } if url.ends_with("/no-such-org")), "{err:?}");
    assert!(err.to_string().contains("GITHUB_URL"), "{err}");
}

/// A queue token refused once is healed by a session refresh; refused again after the
/// refresh it is a typed 401 that names the credential settings (the service decides what
/// to do with the session then).
#[tokio::test]
async fn a_queue_token_refused_after_a_refresh_is_a_typed_401() {
    use github_scaleset::MessageQueue;
    let fake =
        start(FakeGitHubConfig { long_poll_hold: Duration::from_millis(100), ..Default::default() }).await;
    let client = client(&fake).await;
    let (_ss, queue) = scale_set_with_queue(&client, "mac").await;
    fake.inject(Fault::RejectQueueTokens { times: 1 });
    assert!(queue.get_message(0, 5).await.is_ok(), "one refusal is healed by the refresh");
    assert_eq!(fake.state().request_count(Endpoint::RefreshSession), 1);
    fake.inject(Fault::RejectQueueTokens { times: 2 });
    let err = queue.get_message(0, 5).await.unwrap_err();
    assert!(
        matches!(&err, ScaleSetError::Unauthorized { status: 401, message } if message.contains("GITHUB_PAT")),
        "{err:?}"
    );
    assert_eq!(fake.state().request_count(Endpoint::RefreshSession), 2, "one refresh was tried first");
}

/// A limit longer than one request's budget: the request gives up after its budget with
/// the time left, and the next request holds back until the limit lifts, then succeeds —
/// so a caller that reports liveness between requests keeps doing so.
#[tokio::test]
async fn a_long_limit_is_waited_out_in_slices_of_the_request_budget() {
    let fake = start(FakeGitHubConfig::default()).await;
    let mut cfg = pat_config(&fake);
    cfg.rate_limit =
        RateLimitPolicy { request_budget: Duration::from_millis(500), ..RateLimitPolicy::default() };
    let client = GitHubClient::connect(cfg).await.unwrap();
    fake.inject(Fault::PrimaryRateLimit { endpoint: Endpoint::RunnerGroups, status: 403, for_ms: 2_000 });
    let mut slices = 0;
    let group = loop {
        match client.get_runner_group("default").await {
            Ok(group) => break group,
            Err(ScaleSetError::RateLimited { retry_after: Some(left) }) => {
                assert!(left <= Duration::from_secs(4), "{left:?}");
                slices += 1;
                assert!(slices < 20, "bounded");
            }
            Err(e) => panic!("{e:?}"),
        }
    };
    assert_eq!(group.id, 1);
    assert!(slices >= 2, "a 2 s limit takes several 0.5 s slices: {slices}");
    assert_eq!(fake.state().request_count(Endpoint::RunnerGroups), 2, "one refused, one after the reset");
}
