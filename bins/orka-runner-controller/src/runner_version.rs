//! Which actions/runner version the VMs install: `GITHUB_RUNNER_VERSION`, or — like the Go
//! integration — the latest release on github.com, looked up once at startup.
//!
//! Owns reading that lookup's answer; the request itself goes through the GitHub client's
//! transport (its proxy settings, CA bundle, body cap and rate-limit waits), and the
//! install is vm-probe's.

use anyhow::{Context, bail};
use github_scaleset::GitHubClient;
use secrecy::SecretString;

use crate::config::{Config, RunnerVersion};

/// The version to install (no leading `v`).
pub async fn resolve(config: &Config, github: &GitHubClient) -> anyhow::Result<String> {
    match &config.github.runner_version {
        RunnerVersion::Pinned(version) => Ok(version.clone()),
        RunnerVersion::Latest => latest(
            github,
            &config.github.runner_release_url,
            config.github.release_lookup_token.as_ref(),
        )
        .await
        .context(
            "looking up the latest actions/runner release (set GITHUB_RUNNER_VERSION to skip the lookup)",
        ),
    }
}

/// Fetches `url` (a GitHub "latest release" endpoint) with `GITHUB_TOKEN` when set and
/// returns its tag without `v`. Rejects major versions above 2, as the Go integration does.
pub async fn latest(
    github: &GitHubClient,
    url: &str,
    token: Option<&SecretString>,
) -> anyhow::Result<String> {
    let tag = github.latest_release_tag(url, token).await?;
    parse_tag(&tag)
}

fn parse_tag(tag: &str) -> anyhow::Result<String> {
    let version = tag.trim_start_matches('v').to_owned();
    let major: u32 =
        version.split('.').next().unwrap_or_default().parse().context("unexpected release tag")?;
    if major > 2 {
        bail!("latest runner release {version} has major version {major}; pin GITHUB_RUNNER_VERSION");
    }
    Ok(version)
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use github_scaleset::{Auth, GitHubConfig, ProxyConfig};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    #[test]
    fn release_tags_are_parsed_and_unknown_majors_refused() {
        assert_eq!(parse_tag("v2.330.0").unwrap(), "2.330.0");
        assert!(parse_tag("v3.0.0").is_err());
        assert!(parse_tag("latest").is_err());
    }

    /// A minimal `CONNECT` proxy on loopback that records the targets it tunnelled to.
    async fn connect_proxy() -> (String, Arc<Mutex<Vec<String>>>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let seen = Arc::new(Mutex::new(Vec::new()));
        let record = seen.clone();
        tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                let record = record.clone();
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
                    record.lock().unwrap().push(target.clone());
                    let Ok(mut upstream) = tokio::net::TcpStream::connect(&target).await else { return };
                    if client.write_all(b"HTTP/1.1 200 Connection established\r\n\r\n").await.is_ok() {
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
                    }
                });
            }
        });
        (url, seen)
    }

    #[tokio::test]
    async fn the_lookup_uses_the_github_clients_transport_and_proxy() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let app = axum::Router::new().route(
            "/latest",
            axum::routing::get(|headers: axum::http::HeaderMap| async move {
                let auth = headers.get("authorization").map(|v| v.to_str().unwrap_or("").to_owned());
                if auth.as_deref() != Some("Bearer t0k-123456") {
                    return Err(axum::http::StatusCode::UNAUTHORIZED);
                }
                Ok(axum::Json(serde_json::json!({"tag_name": "v2.331.0"})))
            }),
        );
        tokio::spawn(async move { axum::serve(listener, app).await });
        let (proxy, seen) = connect_proxy().await;
        let mut config = GitHubConfig::new(
            format!("http://{addr}/my-org"),
            Auth::Pat(SecretString::from("ghp_unused123")),
        );
        config.proxy =
            ProxyConfig::Explicit { https: Some(proxy.clone()), http: Some(proxy), no_proxy: String::new() };
        let github = GitHubClient::new(config).unwrap();
        let token = SecretString::from("t0k-123456");
        let version = latest(&github, &format!("http://{addr}/latest"), Some(&token)).await.unwrap();
        assert_eq!(version, "2.331.0");
        assert_eq!(*seen.lock().unwrap(), [addr.to_string()], "the lookup went through the proxy");
        let err = latest(&github, &format!("http://{addr}/latest"), None).await.unwrap_err();
        assert!(format!("{err:#}").contains("401"), "{err:#}");
    }
}
