//! Every step is bounded: a black-hole listener (accepts TCP, never sends a banner), a
//! closed port, and the dialing cap's queue. No sshd needed.

use std::time::Duration;

use secrecy::SecretString;
use vm_probe::{ShellError, Ssh2Shell, SshConfig, SshStep, SshTarget, VmShell};

fn config(step_timeout: Duration) -> SshConfig {
    SshConfig::admin_default().with_step_timeout(step_timeout)
}

fn black_hole() -> (std::net::TcpListener, SshTarget) {
    // Never accepted: the kernel completes the TCP handshake from the backlog and no
    // byte is ever sent.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    (listener, SshTarget { host: "127.0.0.1".into(), port })
}

#[tokio::test]
async fn a_black_hole_times_out_at_the_handshake_naming_the_target() {
    let (_hole, target) = black_hole();
    let shell = Ssh2Shell::new(config(Duration::from_millis(400))).unwrap();
    let err = shell.probe(&target).await.unwrap_err();
    match &err {
        ShellError::Timeout { target: t, step, after } => {
            assert_eq!(*step, SshStep::Handshake);
            assert_eq!(t, &target.to_string());
            assert_eq!(*after, Duration::from_millis(400));
        }
        other => panic!("expected a handshake timeout, got {other:?}"),
    }
    assert!(err.is_retryable());
}

#[tokio::test]
async fn a_closed_port_fails_at_connect_and_is_retryable() {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let shell = Ssh2Shell::new(config(Duration::from_secs(2))).unwrap();
    let err = shell.run_script(&SshTarget { host: "127.0.0.1".into(), port }, "true").await.unwrap_err();
    assert!(matches!(err, ShellError::Failed { step: SshStep::Connect, .. }), "{err:?}");
    assert!(err.is_retryable());
}

#[tokio::test]
async fn the_dialing_cap_queues_and_the_queue_wait_is_bounded() {
    let (_hole, target) = black_hole();
    let mut config = config(Duration::from_millis(800));
    config.max_dialing = 1;
    config.queue_timeout = Duration::from_millis(100);
    let shell = Ssh2Shell::new(config).unwrap();
    let (first, second) = tokio::join!(shell.probe(&target), async {
        tokio::time::sleep(Duration::from_millis(50)).await;
        shell.probe(&target).await
    });
    assert_eq!(first.unwrap_err().step(), Some(SshStep::Handshake));
    assert!(matches!(second.unwrap_err(), ShellError::Timeout { step: SshStep::Queue, .. }));
}

#[tokio::test]
async fn an_unreadable_key_file_fails_at_construction() {
    let config = SshConfig::new(
        "admin",
        vm_probe::SshAuth::PrivateKey {
            path: "/nonexistent/id_ed25519".into(),
            passphrase: Some(SecretString::from("p")),
        },
    );
    let err = Ssh2Shell::new(config).unwrap_err();
    assert!(matches!(err, ShellError::Config(_)));
    assert!(err.to_string().contains("/nonexistent/id_ed25519"));
}

#[tokio::test]
async fn a_listener_dropping_syns_times_out_at_connect() {
    // A full accept backlog makes the kernel drop new SYNs: the TCP connect itself hangs,
    // like a VM whose network is not up yet.
    let (_hole, target) = black_hole();
    let mut filler = Vec::new();
    for _ in 0..512 {
        match std::net::TcpStream::connect_timeout(
            &format!("127.0.0.1:{}", target.port).parse().unwrap(),
            Duration::from_millis(200),
        ) {
            Ok(stream) => filler.push(stream),
            Err(_) => break,
        }
    }
    let mut config = config(Duration::from_secs(5));
    config.connect_timeout = Duration::from_millis(300);
    let err = Ssh2Shell::new(config).unwrap().probe(&target).await.unwrap_err();
    assert!(
        matches!(err, ShellError::Timeout { step: SshStep::Connect, after, .. } if after == Duration::from_millis(300)),
        "{err:?} after {} filler connections",
        filler.len()
    );
}
