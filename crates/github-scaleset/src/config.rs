//! Client configuration and the GitHub config URL (docs/protocol/github-scaleset.md#config-url).
//!
//! Owns: what the binary hands the client (URL, credentials, CA bundle, timeouts, retry
//! policy) and the pure derivation of the registration scope and REST API base from the
//! config URL. Does not own: any I/O.

use std::{path::PathBuf, time::Duration};

use secrecy::SecretString;
use url::Url;

use crate::{
    ScaleSetError,
    ratelimit::{ObserverSlot, RateLimitPolicy},
};

/// How the client authenticates against the GitHub REST API.
///
/// `Debug` never prints the PAT or the private key.
#[derive(Clone)]
pub enum Auth {
    /// A personal access token (`Authorization: Bearer <PAT>`).
    Pat(SecretString),
    /// A GitHub App installation: an RS256 JWT is exchanged for an installation token.
    App {
        /// The App's client id (`Iv1.…`) or numeric App id, used as the JWT `iss`.
        app_id: String,
        /// The installation id.
        installation_id: i64,
        /// The App's private key (PEM, PKCS#1 or PKCS#8).
        private_key_pem: SecretString,
    },
}

impl Auth {
    /// The settings (environment variables of the controller and the Go integration) that
    /// hold this credential; credential errors name them.
    pub fn settings(&self) -> &'static str {
        match self {
            Auth::Pat(_) => "GITHUB_PAT",
            Auth::App { .. } => "GITHUB_APP_ID, GITHUB_APP_INSTALLATION_ID and GITHUB_APP_PRIVATE_KEY",
        }
    }
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Auth::Pat(_) => f.write_str("Pat([redacted])"),
            Auth::App { app_id, installation_id, .. } => f
                .debug_struct("App")
                .field("app_id", app_id)
                .field("installation_id", installation_id)
                .field("private_key_pem", &"[redacted]")
                .finish(),
        }
    }
}

/// Per-request deadlines.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// Every request except the long poll.
    pub request: Duration,
    /// The message-queue long poll (the service holds it ~50 s; must be > 60 s).
    pub long_poll: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Self { request: Duration::from_secs(30), long_poll: Duration::from_secs(90) }
    }
}

/// Transport retry policy (docs/protocol/github-scaleset.md#retries): transport errors, 429 and 5xx
/// except 501.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Retries after the first attempt (4 → 5 attempts).
    pub max_retries: usize,
    /// First backoff delay (doubles each retry).
    pub min_delay: Duration,
    /// Backoff cap.
    pub max_delay: Duration,
    /// Cap on a server's `Retry-After` (the Go clients have none; a hostile or broken
    /// server must not park us for hours).
    pub max_retry_after: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_retries: 4,
            min_delay: Duration::from_secs(1),
            max_delay: Duration::from_secs(30),
            max_retry_after: Duration::from_secs(120),
        }
    }
}

/// Everything [`GitHubClient::connect`](crate::GitHubClient::connect) needs.
#[derive(Debug, Clone)]
pub struct GitHubConfig {
    /// The GitHub config URL: org, repo or `/enterprises/<slug>` on github.com, `*.ghe.com`
    /// or a GHES host.
    pub config_url: String,
    /// The credentials that obtain registration and admin tokens (PAT or GitHub App).
    pub auth: Auth,
    /// Extra PEM CA bundle trusted in addition to the system roots (GHES with a private CA).
    pub extra_ca: Option<PathBuf>,
    /// `User-Agent` sent on every request.
    pub user_agent: String,
    /// Per-request deadlines.
    pub timeouts: Timeouts,
    /// Retry policy for transport errors, 429 and 5xx.
    pub retry: RetryPolicy,
    /// Retry policy for 401/403 on runner-registration (registration token propagation).
    pub registration_retry: RetryPolicy,
    /// The admin token is refreshed this long before its JWT `exp` (GitHub clients: 60 s).
    pub admin_token_refresh_margin: Duration,
    /// The queue token is refreshed proactively this long before its JWT `exp`; a 401
    /// still triggers a reactive refresh. Zero disables the proactive refresh.
    pub queue_token_refresh_margin: Duration,
    /// Treat every host as GHES (`GITHUB_ACTIONS_FORCE_GHES`).
    pub force_ghes: bool,
    /// Which HTTP(S) proxy to use.
    pub proxy: ProxyConfig,
    /// How long requests wait on GitHub's rate limits (see docs/operations.md).
    pub rate_limit: RateLimitPolicy,
    /// Told about rate-limit budgets and waits (the binary's metrics).
    pub rate_limit_observer: ObserverSlot,
}

/// Proxy selection. Proxied requests go through an HTTP `CONNECT` tunnel.
#[derive(Clone, PartialEq, Eq, Default)]
pub enum ProxyConfig {
    /// `HTTPS_PROXY` / `HTTP_PROXY` / `ALL_PROXY` / `NO_PROXY` (either case) from the environment.
    #[default]
    Env,
    /// Never use a proxy.
    None,
    /// Explicit settings (same syntax as the environment variables).
    Explicit {
        /// Proxy for `https://` targets.
        https: Option<String>,
        /// Proxy for `http://` targets.
        http: Option<String>,
        /// Comma-separated hosts/domains/CIDRs that bypass the proxy.
        no_proxy: String,
    },
}

impl std::fmt::Debug for ProxyConfig {
    // A proxy URL may carry `user:password@`; print only the shape.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ProxyConfig::Env => f.write_str("Env"),
            ProxyConfig::None => f.write_str("None"),
            ProxyConfig::Explicit { https, http, no_proxy } => f
                .debug_struct("Explicit")
                .field("https", &https.as_ref().map(|_| "[set]"))
                .field("http", &http.as_ref().map(|_| "[set]"))
                .field("no_proxy", no_proxy)
                .finish(),
        }
    }
}

impl GitHubConfig {
    /// A configuration with the defaults of the Go clients.
    pub fn new(config_url: impl Into<String>, auth: Auth) -> Self {
        Self {
            config_url: config_url.into(),
            auth,
            extra_ca: None,
            user_agent: concat!("orka-runner-controller/", env!("CARGO_PKG_VERSION")).to_owned(),
            timeouts: Timeouts::default(),
            retry: RetryPolicy::default(),
            registration_retry: RetryPolicy {
                max_retries: 4,
                min_delay: Duration::from_secs(1),
                max_delay: Duration::from_secs(30),
                max_retry_after: Duration::from_secs(30),
            },
            admin_token_refresh_margin: Duration::from_secs(60),
            queue_token_refresh_margin: Duration::from_secs(60),
            force_ghes: false,
            proxy: ProxyConfig::Env,
            rate_limit: RateLimitPolicy::default(),
            rate_limit_observer: ObserverSlot::default(),
        }
    }
}

/// The registration scope named by a config URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    /// `https://github.com/<org>`.
    Organization(String),
    /// `https://github.com/<owner>/<repo>`.
    Repository {
        /// The user or organisation that owns the repository.
        owner: String,
        /// The repository name, without the owner.
        repo: String,
    },
    /// `https://github.com/enterprises/<slug>`.
    Enterprise(String),
}

impl Scope {
    /// The REST path of the registration-token endpoint for this scope.
    pub fn registration_token_path(&self) -> String {
        match self {
            Scope::Organization(org) => format!("orgs/{org}/actions/runners/registration-token"),
            Scope::Repository { owner, repo } => {
                format!("repos/{owner}/{repo}/actions/runners/registration-token")
            }
            Scope::Enterprise(ent) => format!("enterprises/{ent}/actions/runners/registration-token"),
        }
    }
}

/// A parsed config URL: the trimmed URL string, its scope and the REST API base.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigUrl {
    /// The config URL with leading/trailing `/` trimmed (sent to runner-registration).
    pub url: String,
    /// Registration scope.
    pub scope: Scope,
    /// REST API base, always ending in `/` (`https://api.github.com/`,
    /// `https://ghes.example/api/v3/`).
    pub api_base: Url,
}

impl ConfigUrl {
    /// Parses a config URL and derives the REST API base
    /// (docs/protocol/github-scaleset.md#config-url).
    pub fn parse(raw: &str, force_ghes: bool) -> Result<Self, ScaleSetError> {
        let trimmed = raw.trim().trim_matches('/');
        let url = Url::parse(trimmed).map_err(|e| ScaleSetError::Config(format!("config URL: {e}")))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(ScaleSetError::Config("config URL must be http or https".into()));
        }
        let host = url.host_str().ok_or_else(|| ScaleSetError::Config("config URL has no host".into()))?;
        let segments: Vec<&str> = url.path().split('/').filter(|s| !s.is_empty()).collect();
        let scope = match segments.as_slice() {
            [org] => Scope::Organization((*org).to_owned()),
            [first, ent] if first.eq_ignore_ascii_case("enterprises") => Scope::Enterprise((*ent).to_owned()),
            [owner, repo] => Scope::Repository { owner: (*owner).to_owned(), repo: (*repo).to_owned() },
            _ => {
                return Err(ScaleSetError::Config(
                    "invalid config URL, should point to an enterprise, org, or repository".into(),
                ));
            }
        };
        let host_lc = host.to_ascii_lowercase();
        let hosted = !force_ghes
            && (matches!(host_lc.as_str(), "github.com" | "www.github.com" | "github.localhost")
                || host_lc.ends_with(".ghe.com"));
        let port = url.port().map(|p| format!(":{p}")).unwrap_or_default();
        let api = if hosted {
            let bare = host_lc.strip_prefix("www.").unwrap_or(&host_lc);
            format!("{}://api.{bare}{port}/", url.scheme())
        } else {
            format!("{}://{host}{port}/api/v3/", url.scheme())
        };
        let api_base = Url::parse(&api).map_err(|e| ScaleSetError::Config(format!("API URL: {e}")))?;
        Ok(Self { url: trimmed.to_owned(), scope, api_base })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> ConfigUrl {
        ConfigUrl::parse(s, false).unwrap()
    }

    #[test]
    fn scopes_from_path_segments() {
        assert_eq!(parse("https://github.com/my-org").scope, Scope::Organization("my-org".into()));
        assert_eq!(
            parse("https://github.com/my-org/my-repo/").scope,
            Scope::Repository { owner: "my-org".into(), repo: "my-repo".into() }
        );
        assert_eq!(parse("https://github.com/Enterprises/big").scope, Scope::Enterprise("big".into()));
        for bad in ["https://github.com", "https://github.com/a/b/c", "ftp://x/y", "not a url"] {
            assert!(matches!(ConfigUrl::parse(bad, false), Err(ScaleSetError::Config(_))), "{bad}");
        }
    }

    #[test]
    fn api_base_for_hosted_and_ghes() {
        assert_eq!(parse("https://github.com/o").api_base.as_str(), "https://api.github.com/");
        assert_eq!(parse("https://www.github.com/o").api_base.as_str(), "https://api.github.com/");
        assert_eq!(parse("https://acme.ghe.com/o/r").api_base.as_str(), "https://api.acme.ghe.com/");
        assert_eq!(parse("https://ghes.corp/o").api_base.as_str(), "https://ghes.corp/api/v3/");
        assert_eq!(parse("http://127.0.0.1:8080/my-org").api_base.as_str(), "http://127.0.0.1:8080/api/v3/");
        assert_eq!(
            ConfigUrl::parse("https://github.com/o", true).unwrap().api_base.as_str(),
            "https://github.com/api/v3/"
        );
        assert_eq!(parse("https://github.com/o/").url, "https://github.com/o");
    }

    #[test]
    fn registration_token_paths() {
        assert_eq!(
            Scope::Organization("o".into()).registration_token_path(),
            "orgs/o/actions/runners/registration-token"
        );
        assert_eq!(
            Scope::Repository { owner: "o".into(), repo: "r".into() }.registration_token_path(),
            "repos/o/r/actions/runners/registration-token"
        );
        assert_eq!(
            Scope::Enterprise("e".into()).registration_token_path(),
            "enterprises/e/actions/runners/registration-token"
        );
    }

    #[test]
    fn debug_of_auth_hides_secrets() {
        let pat = Auth::Pat(SecretString::from("ghp_sekrit"));
        let app = Auth::App {
            app_id: "123".into(),
            installation_id: 9,
            private_key_pem: SecretString::from("-----BEGIN sekrit"),
        };
        let printed = format!("{pat:?} {app:?} {:?}", GitHubConfig::new("https://github.com/o", app.clone()));
        assert!(!printed.contains("sekrit"), "{printed}");
        assert!(printed.contains("123"));
    }
}
