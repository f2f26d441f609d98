//! The token never appears in `Debug`, error messages or logs — checked with a log
//! capture across success, failed-deploy cleanup and 401 paths. Its own test binary:
//! `tracing`'s per-thread subscriber is only reliable when no other test runs alongside.

use std::io::Write;
use std::sync::{Arc, Mutex};

use orka_client::{OrkaClient, VmBackend};
use secrecy::SecretString;
use testkit::orka::{FakeOrka, Fault, TokenSpec};

#[allow(dead_code)]
#[path = "contract/common.rs"]
mod common;

use common::*;

/// A `tracing` writer collecting everything into a buffer.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[test]
fn the_token_never_appears_in_debug_errors_or_logs() {
    let secret = "tok-SUPER-secret-4711";
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let mut texts = Vec::new();
    runtime.block_on(async {
        let mut config = fake_config();
        config.tokens = vec![TokenSpec::new(secret)];
        let fake = FakeOrka::start(config).await.unwrap();
        let mut client_config = client_config(&fake);
        texts.push(format!("{client_config:?}"));
        client_config.token = SecretString::from(secret);
        let client = OrkaClient::new(client_config).unwrap();
        texts.push(format!("{client:?}"));

        // Success, failure with cleanup, and auth errors all log and format errors.
        let vm = bounded(client.deploy_vm(&request())).await.unwrap();
        fake.inject(Fault::DeployFailure { message: "broken".into() });
        let err = bounded(client.deploy_vm(&request())).await.unwrap_err();
        texts.push(format!("{err} {err:?}"));
        fake.expire_token(secret);
        for err in [
            bounded(client.list_vms()).await.unwrap_err(),
            bounded(client.deploy_vm(&request())).await.unwrap_err(),
            bounded(client.delete_vm(&vm.name)).await.unwrap_err(),
        ] {
            texts.push(format!("{err} {err:?}"));
        }
        assert_eq!(
            fake.journal().last().unwrap().authorization.as_deref(),
            Some(&*format!("Bearer {secret}"))
        );
    });
    let logs = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    assert!(logs.contains("deploy failed"), "logging was captured: {logs}");
    texts.push(logs);
    for text in texts {
        assert!(!text.contains(secret), "token leaked into: {text}");
    }
}
