//! https endpoints: normal certificate verification, and an extra CA bundle for clusters
//! with a private CA (docs/protocol/orka.md#base-url). A minimal TLS server on loopback stands in
//! for Orka.

use std::sync::Arc;
use std::time::Duration;

use orka_client::{OrkaClient, OrkaConfig, OrkaError};
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use secrecy::SecretString;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use crate::common::bounded;

struct TestPki {
    ca_pem: String,
    leaf: CertificateDer<'static>,
    leaf_key: Vec<u8>,
}

fn pki() -> TestPki {
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.distinguished_name.push(DnType::CommonName, "orka test CA");
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let leaf_key = KeyPair::generate().unwrap();
    let leaf = CertificateParams::new(vec!["127.0.0.1".to_owned()])
        .unwrap()
        .signed_by(&leaf_key, &ca, &ca_key)
        .unwrap();
    TestPki { ca_pem: ca.pem(), leaf: leaf.der().clone(), leaf_key: leaf_key.serialize_der() }
}

/// Serves `GET /api/v1/cluster-info` over TLS until the test ends; returns the base URL.
async fn tls_orka(pki: &TestPki) -> String {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(
            vec![pki.leaf.clone()],
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(pki.leaf_key.clone())),
        )
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("https://127.0.0.1:{}", listener.local_addr().unwrap().port());
    tokio::spawn(async move {
        while let Ok((socket, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(socket).await else { return };
                let mut request = Vec::new();
                let mut buf = [0u8; 1024];
                while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                    match tls.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => request.extend_from_slice(&buf[..n]),
                    }
                }
                let body = r#"{"apiDomain":"tls.orka.local","gpuPassthroughEnabled":false}"#;
                let response = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = tls.write_all(response.as_bytes()).await;
                let _ = tls.shutdown().await;
            });
        }
    });
    url
}

fn config(url: &str) -> OrkaConfig {
    let mut config = OrkaConfig::new(url, SecretString::from("tls-token"));
    config.ping_timeout = Duration::from_secs(10);
    config
}

#[tokio::test]
async fn an_unknown_ca_is_rejected_and_an_extra_ca_bundle_is_trusted() {
    let pki = pki();
    let url = tls_orka(&pki).await;

    let strict = OrkaClient::new(config(&url)).unwrap();
    let err = bounded(strict.ping()).await.unwrap_err();
    assert!(matches!(err, OrkaError::Transport { .. }), "a private CA is not trusted by default: {err}");

    let mut with_ca = config(&url);
    with_ca.extra_ca = Some(pki.ca_pem.clone().into_bytes());
    let client = OrkaClient::new(with_ca).unwrap();
    let info = bounded(client.ping()).await.expect("the extra CA makes the cluster trusted");
    assert_eq!(info.api_domain.as_deref(), Some("tls.orka.local"));
}

#[test]
fn an_extra_ca_bundle_without_certificates_is_a_config_error() {
    let mut bad = config("https://127.0.0.1:1");
    bad.extra_ca = Some(b"-----BEGIN NOTHING-----".to_vec());
    assert!(matches!(OrkaClient::new(bad), Err(OrkaError::Config(_))));
}
