//! The two phases of an SSH operation against testkit's fake VMs and hand-made faulty
//! endpoints: black holes (TCP up, never a banner), slow banners (a forwarder that holds
//! the server's first bytes back), stalled key exchanges (a banner, then silence) and
//! reachable VMs. What is checked: black holes never take a session thread or a handshake
//! slot; a reachable VM queued for a handshake slot is never timed out for the wait; the
//! SSH threads are the shell's own, so tokio's blocking pool stays free.

mod support;

use std::net::SocketAddr;
use std::time::Duration;

use secrecy::SecretString;
use support::quick_config;
use testkit::vm::{FakeVm, FakeVmConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;
use tokio::time::Instant;
use vm_probe::{ShellError, Ssh2Shell, SshAuth, SshConfig, SshStep, SshTarget, VmLayout, VmShell};

fn config() -> SshConfig {
    quick_config("admin", SshAuth::Password(SecretString::from("admin")), VmLayout::for_user("admin"))
}

async fn reachable_vm() -> (FakeVm, tempfile::TempDir, SshTarget) {
    let scratch = tempfile::tempdir().unwrap();
    let vm = FakeVm::start("mac-twoph", scratch.path().join("vm"), FakeVmConfig::default()).await.unwrap();
    let (host, port) = vm.ssh_addr();
    (vm, scratch, SshTarget { host, port })
}

/// A listener never accepted: the kernel completes TCP handshakes, no byte ever comes.
fn black_hole() -> (std::net::TcpListener, SshTarget) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    (listener, SshTarget { host: "127.0.0.1".into(), port })
}

/// Sends an SSH banner on every connection, then nothing (a VM whose sshd hangs after the
/// version exchange): the key exchange stalls, so such an operation holds a handshake slot
/// until its deadline.
async fn stalled_after_banner() -> (tokio::task::JoinHandle<()>, SshTarget) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((mut socket, _)) = listener.accept().await {
            let _ = socket.write_all(b"SSH-2.0-OpenSSH_9.6\r\n").await;
            held.push(socket);
        }
    });
    (server, SshTarget { host: "127.0.0.1".into(), port })
}

/// Forwards to `upstream`, holding the server's first bytes (its banner) back for `delay`.
async fn slow_banner(upstream: SshTarget, delay: Duration) -> (tokio::task::JoinHandle<()>, SshTarget) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let upstream: SocketAddr = format!("{}:{}", upstream.host, upstream.port).parse().unwrap();
    let server = tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            tokio::spawn(async move {
                let Ok(server) = TcpStream::connect(upstream).await else { return };
                let (mut client_read, mut client_write) = client.into_split();
                let (mut server_read, mut server_write) = server.into_split();
                let up =
                    tokio::spawn(async move { tokio::io::copy(&mut client_read, &mut server_write).await });
                tokio::time::sleep(delay).await;
                let mut buf = vec![0u8; 16 * 1024];
                while let Ok(n) = server_read.read(&mut buf).await {
                    if n == 0 || client_write.write_all(&buf[..n]).await.is_err() {
                        break;
                    }
                }
                up.abort();
            });
        }
    });
    (server, SshTarget { host: "127.0.0.1".into(), port })
}

#[tokio::test]
async fn a_slow_banner_within_the_deadline_is_reachable_and_one_past_it_times_out_at_the_handshake() {
    let (_vm, _dir, vm) = reachable_vm().await;
    let (_slow, slow) = slow_banner(vm.clone(), Duration::from_millis(600)).await;
    let (_slower, slower) = slow_banner(vm, Duration::from_secs(5)).await;
    let mut config = config();
    config.io_timeout = Duration::from_millis(1500);
    let shell = Ssh2Shell::new(config).unwrap();

    shell.probe(&slow).await.expect("a banner 600 ms late is within a 1.5 s deadline");
    let err = shell.probe(&slower).await.unwrap_err();
    assert!(
        matches!(err, ShellError::Timeout { step: SshStep::Handshake, after, .. } if after == Duration::from_millis(1500)),
        "{err:?}"
    );
    assert!(err.is_retryable());
}

#[tokio::test]
async fn black_holes_take_no_session_thread_or_handshake_slot() {
    let (_vm, _dir, vm) = reachable_vm().await;
    let holes: Vec<_> = (0..40).map(|_| black_hole()).collect();
    let mut config = config();
    config.io_timeout = Duration::from_secs(20);
    config.max_concurrent = 1;
    config.max_handshakes = 1;
    let shell = std::sync::Arc::new(Ssh2Shell::new(config).unwrap());

    let mut waiting = JoinSet::new();
    for (_, target) in &holes {
        let (shell, target) = (shell.clone(), target.clone());
        waiting.spawn(async move { shell.probe(&target).await });
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    // With one thread and one handshake slot, this only works if no black hole holds them.
    let report = tokio::time::timeout(Duration::from_secs(10), shell.probe(&vm)).await;
    assert!(matches!(report, Ok(Ok(_))), "{report:?}");
    assert_eq!(waiting.len(), 40, "the black holes are all still waiting for a banner");
    waiting.abort_all();
}

#[tokio::test]
async fn a_reachable_vm_queued_for_a_handshake_slot_is_never_timed_out_for_the_wait() {
    let (_vm, _dir, vm) = reachable_vm().await;
    let (_stalled, stalled) = stalled_after_banner().await;
    let mut config = config();
    let step = Duration::from_millis(800);
    config.connect_timeout = step;
    config.io_timeout = step;
    config.command_timeout = Duration::from_secs(10);
    config.max_handshakes = 1;
    let shell = std::sync::Arc::new(Ssh2Shell::new(config).unwrap());

    // Three stalled key exchanges take the only handshake slot one after the other, each
    // for a whole step deadline; then five reachable VMs queue behind them.
    let started = Instant::now();
    let mut stalls = JoinSet::new();
    for _ in 0..3 {
        let (shell, target) = (shell.clone(), stalled.clone());
        stalls.spawn(async move { shell.probe(&target).await });
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut probes = JoinSet::new();
    for _ in 0..5 {
        let (shell, target) = (shell.clone(), vm.clone());
        probes.spawn(async move { shell.probe(&target).await });
    }
    while let Some(result) = probes.join_next().await {
        let report = result.unwrap();
        assert!(report.is_ok(), "a reachable VM was reported as failing: {report:?}");
    }
    assert!(
        started.elapsed() >= step * 3,
        "the reachable VMs did wait behind three stalled handshakes (longer than any step deadline)"
    );
    while let Some(result) = stalls.join_next().await {
        let err = result.unwrap().unwrap_err();
        assert!(matches!(err, ShellError::Timeout { step: SshStep::Handshake, .. }), "{err:?}");
    }
}

#[tokio::test]
async fn the_handshake_queue_wait_is_bounded_too() {
    let (_stalled, stalled) = stalled_after_banner().await;
    let mut config = config();
    config.io_timeout = Duration::from_secs(3);
    config.max_handshakes = 1;
    config.queue_timeout = Duration::from_millis(300);
    let shell = Ssh2Shell::new(config).unwrap();
    let (first, second) = tokio::join!(shell.probe(&stalled), async {
        tokio::time::sleep(Duration::from_millis(100)).await;
        shell.probe(&stalled).await
    });
    assert_eq!(first.unwrap_err().step(), Some(SshStep::Handshake));
    let second = second.unwrap_err();
    assert!(
        matches!(second, ShellError::Timeout { step: SshStep::Queue, after, .. } if after == Duration::from_millis(300)),
        "{second:?}"
    );
}

/// Hundreds of SSH operations stuck on dead VMs — 150 black holes and 150 stalled key
/// exchanges (those hold SSH threads) — while the process resolves `localhost` (tokio runs
/// `getaddrinfo` on its blocking pool), makes a loopback HTTP request and runs a plain
/// `spawn_blocking` task. The runtime's blocking pool is capped at 16 threads here, so the
/// test fails if SSH work used that pool at all.
#[test]
fn ssh_operations_stuck_on_dead_vms_do_not_starve_the_blocking_pool() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .max_blocking_threads(16)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let holes: Vec<_> = (0..150).map(|_| black_hole()).collect();
        let (_stalled, stalled) = stalled_after_banner().await;
        let http = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let http_port = http.local_addr().unwrap().port();
        let app = axum::Router::new().route("/", axum::routing::get(|| async { "still serving" }));
        tokio::spawn(async move { axum::serve(http, app).await });

        let mut config = config();
        config.io_timeout = Duration::from_secs(30);
        config.max_concurrent = 300;
        config.max_handshakes = 300;
        let shell = std::sync::Arc::new(Ssh2Shell::new(config).unwrap());
        let mut stuck = JoinSet::new();
        let targets = holes.iter().map(|(_, t)| t.clone()).chain(std::iter::repeat_n(stalled, 150));
        for target in targets {
            let shell = shell.clone();
            stuck.spawn(async move { shell.probe(&target).await });
        }
        tokio::time::sleep(Duration::from_millis(500)).await;

        let bound = Duration::from_secs(10);
        let blocking = tokio::time::timeout(bound, tokio::task::spawn_blocking(|| 7)).await;
        assert!(matches!(blocking, Ok(Ok(7))), "spawn_blocking did not run: {blocking:?}");
        let body = tokio::time::timeout(bound, get_via_localhost(http_port)).await;
        let body = body.expect("the request through localhost finished").unwrap();
        assert!(body.ends_with("still serving"), "{body}");
        assert_eq!(stuck.len(), 300, "every SSH operation was still stuck meanwhile");
        stuck.abort_all();
    });
    // The stuck SSH threads end at their own deadlines; don't wait for them.
    runtime.shutdown_background();
}

/// `GET /` on `localhost:<port>`: a name resolution, then one HTTP/1.1 exchange.
async fn get_via_localhost(port: u16) -> std::io::Result<String> {
    let addr = tokio::net::lookup_host(("localhost", port))
        .await?
        .find(SocketAddr::is_ipv4)
        .ok_or_else(|| std::io::Error::other("localhost has no IPv4 address"))?;
    let mut stream = TcpStream::connect(addr).await?;
    stream.write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n").await?;
    let mut response = String::new();
    stream.read_to_string(&mut response).await?;
    Ok(response)
}
