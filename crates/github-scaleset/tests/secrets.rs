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
