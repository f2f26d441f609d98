//! Which actions/runner version the VMs install: `GITHUB_RUNNER_VERSION`, or — like the Go
//! integration — the latest release on github.com, looked up once at startup.
//!
//! Owns that lookup only (one HTTPS GET); the install itself is vm-probe's.

use std::time::Duration;

use anyhow::{Context, bail};
use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use secrecy::ExposeSecret;

use crate::config::{Config, RunnerVersion};

/// The GitHub API endpoint of the latest runner release.
pub const LATEST_RELEASE_URL: &str = "https://api.github.com/repos/actions/runner/releases/latest";

/// The version to install (no leading `v`).
pub async fn resolve(config: &Config) -> anyhow::Result<String> {
    match &config.github.runner_version {
        RunnerVersion::Pinned(version) => Ok(version.clone()),
        RunnerVersion::Latest => {
            let token = config.github.release_lookup_token.as_ref().map(|t| t.expose_secret().to_owned());
            latest(&config.github.runner_release_url, token.as_deref()).await.context(
                "looking up the latest actions/runner release (set GITHUB_RUNNER_VERSION to skip the lookup)",
            )
        }
    }
}

/// Fetches `url` (a GitHub "latest release" endpoint) and returns its tag without `v`.
/// Rejects major versions above 2, as the Go integration does.
pub async fn latest(url: &str, token: Option<&str>) -> anyhow::Result<String> {
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_native_roots()
        .context("loading the system's TLS roots")?
        .https_or_http()
        .enable_http1()
        .build();
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build::<_, Empty<Bytes>>(https);
    let mut request = hyper::Request::get(url)
        .header("Accept", "application/vnd.github+json")
        .header("User-Agent", concat!("orka-runner-controller/", env!("CARGO_PKG_VERSION")));
    if let Some(token) = token {
        request = request.header("Authorization", format!("Bearer {token}"));
    }
    let request = request.body(Empty::new())?;
    let response = tokio::time::timeout(Duration::from_secs(15), client.request(request))
        .await
        .context("timed out")?
        .context("request failed")?;
    let status = response.status();
    let body = tokio::time::timeout(Duration::from_secs(15), response.into_body().collect())
        .await
        .context("timed out reading the response")??
        .to_bytes();
    if !status.is_success() {
        bail!("GitHub answered {status}");
    }
    parse_release(&body)
}

fn parse_release(body: &[u8]) -> anyhow::Result<String> {
    #[derive(serde::Deserialize)]
    struct Release {
        tag_name: String,
    }
    let release: Release = serde_json::from_slice(body).context("unexpected release JSON")?;
    let version = release.tag_name.trim_start_matches('v').to_owned();
    let major: u32 =
        version.split('.').next().unwrap_or_default().parse().context("unexpected release tag")?;
    if major > 2 {
        bail!("latest runner release {version} has major version {major}; pin GITHUB_RUNNER_VERSION");
    }
    Ok(version)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn release_tags_are_parsed_and_unknown_majors_refused() {
        assert_eq!(parse_release(br#"{"tag_name":"v2.330.0","name":"x"}"#).unwrap(), "2.330.0");
        assert!(parse_release(br#"{"tag_name":"v3.0.0"}"#).is_err());
        assert!(parse_release(br#"{"name":"no tag"}"#).is_err());
    }

    #[tokio::test]
    async fn lookup_reads_the_tag_from_a_loopback_server() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let app = axum::Router::new().route(
            "/latest",
            axum::routing::get(|headers: axum::http::HeaderMap| async move {
                let auth = headers.get("authorization").map(|v| v.to_str().unwrap_or("").to_owned());
                assert_eq!(auth.as_deref(), Some("Bearer t0k"));
                axum::Json(serde_json::json!({"tag_name": "v2.331.0"}))
            }),
        );
        tokio::spawn(async move { axum::serve(listener, app).await });
        let version = latest(&format!("http://{addr}/latest"), Some("t0k")).await.unwrap();
        assert_eq!(version, "2.331.0");
    }
}
