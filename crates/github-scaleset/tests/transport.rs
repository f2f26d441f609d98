//! Transport: HTTPS against a GHES-style host with a private CA (extra CA bundle), and
//! HTTP(S) proxies through a `CONNECT` tunnel, all on loopback.

mod support;

use std::{
    path::PathBuf,
    sync::{Arc, Mutex},
};

use github_scaleset::{Auth, GitHubClient, ProxyConfig, ScaleSetApi, ScaleSetError};
use secrecy::SecretString;
use support::*;
use testkit::github::{Endpoint, FakeGitHub, FakeGitHubConfig};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
};

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name)
}

/// Terminates TLS with the fixture server certificate (signed by the fixture CA) and
/// forwards the plaintext to the fake. Returns the TLS port and a connection counter.
async fn tls_front(fake: &FakeGitHub) -> (u16, Arc<Mutex<u32>>) {
    let certs: Vec<_> = rustls_pemfile::certs(&mut std::fs::read(fixture("server.pem")).unwrap().as_slice())
        .collect::<Result<_, _>>()
        .unwrap();
    let key = rustls_pemfile::private_key(&mut std::fs::read(fixture("server.key")).unwrap().as_slice())
        .unwrap()
        .unwrap();
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let tls = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(tls));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let backend = fake.addr();
    let accepted = Arc::new(Mutex::new(0));
    let counter = accepted.clone();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            *counter.lock().unwrap() += 1;
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(tcp).await else { return };
                let Ok(mut plain) = TcpStream::connect(backend).await else { return };
                let _ = tokio::io::copy_bidirectional(&mut tls, &mut plain).await;
            });
        }
    });
    (port, accepted)
}

fn https_config(fake: &FakeGitHub, port: u16) -> github_scaleset::GitHubConfig {
    let mut cfg = pat_config(fake);
    cfg.config_url = format!("https://127.0.0.1:{port}/my-org");
    cfg
}

#[tokio::test]
async fn https_with_a_private_ca_bundle() {
    let fake = start(FakeGitHubConfig::default()).await;
    let (port, accepted) = tls_front(&fake).await;

    let untrusted = GitHubClient::connect(https_config(&fake, port)).await;
    assert!(matches!(untrusted, Err(ScaleSetError::Transport { .. })), "unknown CA must fail: {untrusted:?}");
    assert_eq!(fake.state().request_count(Endpoint::RegistrationToken), 0);
    assert_eq!(*accepted.lock().unwrap(), 1, "a certificate failure is not retried");

    let mut cfg = https_config(&fake, port);
    cfg.extra_ca = Some(fixture("ca.pem"));
    let client = GitHubClient::connect(cfg).await.expect("trusted through the extra CA bundle");
    assert_eq!(client.get_runner_group("default").await.unwrap().id, 1);
    assert_eq!(fake.state().request_count(Endpoint::RegistrationToken), 1);
}

#[tokio::test]
async fn a_bad_extra_ca_bundle_is_a_config_error() {
    let fake = start(FakeGitHubConfig::default()).await;
    let mut cfg = pat_config(&fake);
    cfg.extra_ca = Some(fixture("does-not-exist.pem"));
    assert!(matches!(GitHubClient::new(cfg.clone()), Err(ScaleSetError::Config(_))));
    cfg.extra_ca = Some(fixture("server.key"));
    assert!(matches!(GitHubClient::new(cfg), Err(ScaleSetError::Config(_))), "a key is not a certificate");
}

/// A minimal `CONNECT` proxy that records the targets it tunnelled to.
async fn connect_proxy() -> (String, Arc<Mutex<Vec<String>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    tokio::spawn(async move {
        while let Ok((mut client, _)) = listener.accept().await {
            let log = log.clone();
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut byte = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n") {
                    if client.read(&mut byte).await.unwrap_or(0) == 0 {
                        return;
                    }
                    head.push(byte[0]);
                }
                let head = String::from_utf8_lossy(&head).to_string();
                let target = head.split_whitespace().nth(1).unwrap_or_default().to_owned();
                if !head.starts_with("CONNECT ") {
                    let _ = client.write_all(b"HTTP/1.1 405 Method Not Allowed\r\n\r\n").await;
                    return;
                }
                log.lock().unwrap().push(target.clone());
                let Ok(mut upstream) = TcpStream::connect(&target).await else { return };
                let _ = client.write_all(b"HTTP/1.1 200 Connection Established\r\n\r\n").await;
                let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
            });
        }
    });
    (url, seen)
}

#[tokio::test]
async fn requests_tunnel_through_the_configured_proxy_unless_no_proxy_matches() {
    let fake = start(FakeGitHubConfig::default()).await;
    let (proxy, seen) = connect_proxy().await;
    let mut cfg = config_for(&fake, "my-org", Auth::Pat(SecretString::from(fake.pat())));
    cfg.proxy = ProxyConfig::Explicit {
        https: Some(proxy.clone()),
        http: Some(proxy.clone()),
        no_proxy: String::new(),
    };
    let client = GitHubClient::connect(cfg.clone()).await.expect("through the proxy");
    client.get_runner_group("default").await.unwrap();
    let targets = seen.lock().unwrap().clone();
    assert!(!targets.is_empty());
    assert!(targets.iter().all(|t| *t == fake.addr().to_string()), "{targets:?}");

    seen.lock().unwrap().clear();
    cfg.proxy =
        ProxyConfig::Explicit { https: Some(proxy.clone()), http: Some(proxy), no_proxy: "127.0.0.1".into() };
    let direct = GitHubClient::connect(cfg).await.expect("direct");
    direct.get_runner_group("default").await.unwrap();
    assert!(seen.lock().unwrap().is_empty(), "NO_PROXY bypasses the proxy");
}

#[tokio::test]
async fn proxy_credentials_never_show_in_debug() {
    let cfg = ProxyConfig::Explicit {
        https: Some("http://user:hunter2@proxy:3128".into()),
        http: None,
        no_proxy: "localhost".into(),
    };
    assert!(!format!("{cfg:?}").contains("hunter2"));
}
