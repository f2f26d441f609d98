//! The latest actions/runner release, looked up through the client's own transport (its
//! proxy, CA bundle, body cap, rate-limit waits and secret scrubbing).
//!
//! Owns: one GET of a "latest release" endpoint and reading its tag. Does not own: which
//! version to install (the caller decides what a tag means).

use http::{HeaderMap, HeaderValue, Method, header};
use secrecy::{ExposeSecret, SecretString};
use url::Url;

use crate::{
    GitHubClient, ScaleSetError,
    auth::bearer,
    transport::{HttpRequest, Idempotency, body_cap},
    wire::{error_from_response, parse_json},
};

/// The GitHub API endpoint of the latest actions/runner release.
pub const LATEST_RUNNER_RELEASE_URL: &str = "https://api.github.com/repos/actions/runner/releases/latest";

impl GitHubClient {
    /// The `tag_name` of the release at `url` (a GitHub "latest release" endpoint, e.g.
    /// [`LATEST_RUNNER_RELEASE_URL`]), sent with `token` when given.
    pub async fn latest_release_tag(
        &self,
        url: &str,
        token: Option<&SecretString>,
    ) -> Result<String, ScaleSetError> {
        let url = Url::parse(url).map_err(|e| ScaleSetError::Config(format!("release URL: {e}")))?;
        let mut headers = HeaderMap::new();
        headers.insert(header::ACCEPT, HeaderValue::from_static("application/vnd.github+json"));
        if let Some(token) = token {
            self.inner.transport.secrets.remember(token);
            headers.insert(header::AUTHORIZATION, bearer(token.expose_secret())?);
        }
        let req = HttpRequest {
            method: Method::GET,
            url,
            headers,
            body: None,
            timeout: self.inner.config.timeouts.request,
            idempotency: Idempotency::Idempotent,
            context: "latest runner release",
            max_body: body_cap::RELEASE,
        };
        let mut resp = self.inner.transport.send(&req, &self.inner.config.retry).await?;
        // The lookup's own token, not the scale-set credential, is what a 401 is about.
        resp.credential_setting = "GITHUB_TOKEN";
        if !resp.status.is_success() {
            return Err(error_from_response(&resp));
        }
        #[derive(serde::Deserialize)]
        struct Release {
            tag_name: String,
        }
        let release: Release = parse_json("latest runner release", &resp.body)?;
        Ok(release.tag_name)
    }
}
