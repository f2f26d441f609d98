//! Response bodies are capped: an endless body fails the request with a clear error as
//! soon as the cap is passed, without reading (or buffering) the rest.

mod support;

use std::time::Duration;

use github_scaleset::{Auth, GitHubClient, ProxyConfig, ScaleSetError};
use secrecy::SecretString;
use support::raw::{Answer, serve};

#[tokio::test]
async fn an_endless_chunked_body_fails_the_request_with_a_protocol_error() {
    let url = serve(|_| Answer::Endless { status: 201 }).await;
    let mut cfg = github_scaleset::GitHubConfig::new(
        format!("{url}/my-org"),
        Auth::Pat(SecretString::from("ghp_x123456789")),
    );
    cfg.retry = support::fast_retry();
    cfg.proxy = ProxyConfig::None;
    // A generous bound: the request must end by the cap, not by this timeout or the
    // client's own 30 s one.
    let err = tokio::time::timeout(Duration::from_secs(25), GitHubClient::connect(cfg))
        .await
        .expect("the cap ends the request")
        .unwrap_err();
    match &err {
        ScaleSetError::Protocol { context, message } => {
            assert_eq!(context, "registration token");
            assert!(message.contains("larger than 64 KiB"), "{err}");
        }
        other => panic!("{other:?}"),
    }
    assert!(!err.is_retryable());
}

#[tokio::test]
async fn the_release_lookup_is_capped_too_and_reads_a_normal_tag() {
    let url = serve(|seen| {
        if seen.path.ends_with("/endless") {
            Answer::Endless { status: 200 }
        } else {
            Answer::json(200, r#"{"tag_name":"v2.330.0","assets":[]}"#)
        }
    })
    .await;
    let mut cfg = github_scaleset::GitHubConfig::new(
        format!("{url}/my-org"),
        Auth::Pat(SecretString::from("ghp_x123456789")),
    );
    cfg.proxy = ProxyConfig::None;
    let client = GitHubClient::new(cfg).unwrap();
    assert_eq!(client.latest_release_tag(&format!("{url}/latest"), None).await.unwrap(), "v2.330.0");
    let err = client.latest_release_tag(&format!("{url}/endless"), None).await.unwrap_err();
    assert!(
        matches!(&err, ScaleSetError::Protocol { message, .. } if message.contains("larger than")),
        "{err}"
    );
}
