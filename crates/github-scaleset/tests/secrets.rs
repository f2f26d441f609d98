//! Secrets (PAT, App key, installation/registration/admin/queue tokens, JIT configs) never
//! reach logs, `Debug`, `Display` or error messages — checked on captured TRACE logs of a
//! full flow with both auth kinds and with failures.

mod support;

use std::{
    io::Write,
    sync::{Arc, Mutex},
    time::Duration,
};

use github_scaleset::{Auth, GitHubClient, MessageQueue, ScaleSetApi, ScaleSetError};
use secrecy::{ExposeSecret, SecretString};
use support::*;
use testkit::github::{
    Endpoint, ErrorBodyKind, FakeGitHubConfig, FakeJitConfig, Fault, JobSpec, test_app_private_key_pem,
};

#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<u8>>>);

impl Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Capture {
    type Writer = Capture;
    fn make_writer(&'a self) -> Capture {
        self.clone()
    }
}

fn assert_clean(text: &str, secrets: &[String]) {
    for s in secrets {
        assert!(!s.is_empty());
        assert!(!text.contains(s.as_str()), "secret {:.6}… leaked into:\n{text}", s);
    }
    // Every token the fake issues is a JWT (eyJ…) or a ghs_ installation token.
    assert!(!text.contains("eyJ"), "a JWT leaked into:\n{text}");
    assert!(!text.contains("ghs_"), "an installation token leaked into:\n{text}");
    assert!(!text.contains("RemoteAuth "), "a registration token header leaked into:\n{text}");
}

#[tokio::test]
async fn no_secret_appears_in_trace_logs_debug_or_errors() {
    let capture = Capture::default();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(capture.clone())
        .with_ansi(false)
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let fake =
        start(FakeGitHubConfig { long_poll_hold: Duration::from_millis(200), ..Default::default() }).await;
    let key_line = test_app_private_key_pem().lines().nth(3).unwrap().to_owned();
    let app = Auth::App {
        app_id: "12345".into(),
        installation_id: 67890,
        private_key_pem: SecretString::from(test_app_private_key_pem()),
    };
    let mut secrets = vec![fake.pat(), key_line];
    let mut printed = String::new();

    for auth in [Auth::Pat(SecretString::from(fake.pat())), app] {
        let cfg = config_for(&fake, "my-org", auth);
        printed += &format!("{cfg:?}\n");
        let client = GitHubClient::connect(cfg).await.unwrap();
        printed += &format!("{client:?}\n");
        let name = format!("mac{}", secrets.len());
        let (ss, queue) = scale_set_with_queue(&client, &name).await;
        let session = queue.session();
        secrets.push(session.message_queue_access_token.expose_secret().to_owned());
        printed += &format!("{session:?} {queue:?}\n");

        fake.enqueue_job(JobSpec::new([name.as_str()]));
        // Revocations force refreshes and retries through the logging paths.
        fake.inject(Fault::ExpireQueueTokens);
        fake.inject(Fault::ExpireAdminTokens);
        fake.inject(Fault::HttpError {
            endpoint: Endpoint::GetMessage,
            status: 502,
            retry_after: None,
            body: ErrorBodyKind::Text,
            times: 1,
            after_commit: false,
        });
        let msg = queue.get_message(0, 5).await.unwrap().expect("message");
        queue.delete_message(msg.message_id).await.unwrap();
        secrets.push(queue.session().message_queue_access_token.expose_secret().to_owned());

        let jit = client.generate_jit_config(ss, &format!("{name}-abcde")).await.unwrap();
        let encoded = jit.encoded_jit_config.expose_secret().to_owned();
        secrets.push(FakeJitConfig::decode(&encoded).unwrap().credential);
        secrets.push(encoded);
        printed += &format!("{jit:?}\n");

        // Failures: their Display and Debug must be clean too.
        fake.inject(Fault::RefreshSessionNotFound { times: 1 });
        fake.inject(Fault::ExpireQueueTokens);
        let err = queue.get_message(0, 5).await.unwrap_err();
        assert!(matches!(err, ScaleSetError::SessionNotFound));
        printed += &format!("{err} {err:?}\n");
        fake.inject(Fault::ExpireAdminTokens);
        fake.inject(Fault::RegistrationDenied { status: 401, times: 100 });
        let err = client.get_runner_group("default").await.unwrap_err();
        printed += &format!("{err} {err:?}\n");
        fake.clear_faults();
    }
    let wrong = config_for(&fake, "my-org", Auth::Pat(SecretString::from("ghp_wrongwrongwrong")));
    let err = GitHubClient::connect(wrong).await.unwrap_err();
    printed += &format!("{err} {err:?}\n");
    secrets.push("ghp_wrongwrongwrong".into());

    drop(_guard);
    let logs = String::from_utf8(capture.0.lock().unwrap().clone()).unwrap();
    assert!(logs.contains("message session refreshed"), "the capture works: {logs}");
    assert!(logs.contains("GitHub admin token refreshed"));
    assert_clean(&logs, &secrets);
    assert_clean(&printed, &secrets);
}

/// Every secret of a full bootstrap, session and JIT flow, served by a loopback server
/// that then echoes all of them (and the request's `Authorization`) in its error bodies.
#[tokio::test]
async fn secrets_echoed_in_error_bodies_never_reach_errors_or_logs() {
    use support::raw::{Answer, serve};
    let capture = Capture::default();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(capture.clone())
        .with_ansi(false)
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    const PAT: &str = "ghp_echoedPAT0123456789";
    const REGISTRATION: &str = "AREGISTRATIONTOKEN0123";
    const ADMIN: &str = "admin-token-0123456789";
    const QUEUE: &str = "queue-token-0123456789";
    const JIT: &str = "eW91ciBqaXQgY29uZmlnIGlzIGhlcmU=";
    let echo_all = format!("{PAT} {REGISTRATION} {ADMIN} {QUEUE} {JIT}");
    let base = Arc::new(Mutex::new(String::new()));
    let url = {
        let base = base.clone();
        serve(move |seen| {
            let base = base.lock().unwrap().clone();
            let echo = format!("you sent {} and we know {echo_all}", seen.authorization);
            let echoed = Answer::json(400, serde_json::json!({ "message": echo }).to_string());
            match (seen.method.as_str(), seen.path.split('?').next().unwrap_or_default()) {
                ("POST", "/api/v3/orgs/my-org/actions/runners/registration-token") => {
                    Answer::json(201, format!(r#"{{"token":"{REGISTRATION}"}}"#))
                }
                ("POST", "/api/v3/actions/runner-registration") => {
                    Answer::json(201, format!(r#"{{"url":"{base}/tenant/","token":"{ADMIN}"}}"#))
                }
                ("POST", "/tenant/_apis/runtime/runnerscalesets/1/sessions") => Answer::json(
                    201,
                    format!(
                        r#"{{"sessionId":"s1","ownerName":"h","runnerScaleSet":{{"id":1,"name":"mac"}},"messageQueueUrl":"{base}/queue","messageQueueAccessToken":"{QUEUE}","statistics":{{}}}}"#
                    ),
                ),
                ("POST", "/tenant/_apis/runtime/runnerscalesets/1/generatejitconfig") => Answer::json(
                    201,
                    format!(r#"{{"runner":{{"id":7,"name":"r"}},"encodedJITConfig":"{JIT}"}}"#),
                ),
                ("GET", "/tenant/_apis/runtime/runnerscalesets/1") => {
                    // A success body whose values have the wrong type: the parse error must
                    // not quote them either.
                    Answer::json(200, format!(r#"{{"id":"{ADMIN}","name":"{QUEUE}"}}"#))
                }
                _ => echoed,
            }
        })
        .await
    };
    *base.lock().unwrap() = url.clone();
    let mut cfg =
        github_scaleset::GitHubConfig::new(format!("{url}/my-org"), Auth::Pat(SecretString::from(PAT)));
    cfg.retry = support::fast_retry();
    cfg.registration_retry = support::fast_retry();
    cfg.proxy = github_scaleset::ProxyConfig::None;
    let client = GitHubClient::connect(cfg).await.expect("bootstrap");
    let session = client.create_session(1, "h").await.expect("session");
    client.generate_jit_config(1, "r").await.expect("jit");
    let queue = client.queue(session);
    let mut errors = Vec::new();
    errors.push(client.get_runner_group("default").await.unwrap_err());
    errors.push(client.get_scale_set_by_id(1).await.unwrap_err());
    errors.push(queue.get_message(0, 1).await.unwrap_err());
    errors.push(queue.delete_message(5).await.unwrap_err());
    let mut printed = String::new();
    for e in &errors {
        printed += &format!("{e}\n{e:?}\n");
        tracing::warn!(error = e as &dyn std::error::Error, "captured");
    }
    assert!(printed.contains("[REDACTED]"), "the echo is there, scrubbed:\n{printed}");
    let logs = String::from_utf8(capture.0.lock().unwrap().clone()).unwrap();
    for text in [&printed, &logs] {
        for secret in [PAT, REGISTRATION, ADMIN, QUEUE, JIT] {
            assert!(!text.contains(secret), "{secret} leaked into:\n{text}");
        }
    }
}
