//! Configuration: what the operator set, validated into one typed [`Config`].
//!
//! Sources, highest first: the process environment, the `.env` file of the working
//! directory (or `--env-file`), the config file (`--config`, TOML or YAML; lower-case keys
//! plus `[[scale_sets]]`). Every variable of the Go integration keeps its name, meaning and
//! default; a malformed value is an error naming the variable, and all errors of one load
//! are reported together ([`ConfigError`]). Secrets are [`SecretString`]s, may come from
//! `<NAME>_FILE`, and never appear in errors or `Debug` output.
//!
//! This module is pure apart from reading the files it is told about: it never touches the
//! network and never mutates the process environment. Orka-specific value rules (base URL,
//! namespace, `ORKA_VM_METADATA`, `ORKA_NODE_IP_MAPPING`) are orka-client's validators, so
//! the client and the configuration cannot disagree.

mod app_key;
mod build;
pub mod dotenv;
mod error;
mod files;
mod redact;
pub mod settings;
mod sources;
pub mod values;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use secrecy::SecretString;

pub use error::{ConfigError, Problem};
pub use sources::{EnvFile, Sources};
pub use values::{LogFormat, LogLevel};

/// The validated configuration of one process.
#[derive(Debug, Clone)]
pub struct Config {
    /// GitHub registration, authentication and runner software.
    pub github: GitHubSettings,
    /// Orka API and VM access.
    pub orka: OrkaSettings,
    /// The scale sets this process serves (at least one).
    pub scale_sets: Vec<ScaleSetSettings>,
    /// Runner lifecycle timings and limits shared by all scale sets.
    pub runners: RunnerSettings,
    /// Reconciliation and probing.
    pub reconcile: ReconcileSettings,
    /// Log level and format.
    pub logging: LoggingSettings,
    /// HTTP endpoints (`/metrics`, `/healthz`, `/readyz`).
    pub http: HttpSettings,
    /// How long shutdown waits for in-flight cleanups.
    pub shutdown_drain_timeout: Duration,
    /// Accepted but noteworthy settings (ignored values, precedence surprises): log these.
    pub warnings: Vec<String>,
}

/// What the scale sets register with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GitHubScope {
    /// `https://host/<org>`.
    Organization {
        /// Organization login.
        org: String,
    },
    /// `https://host/<owner>/<repo>`.
    Repository {
        /// Owner login.
        owner: String,
        /// Repository name.
        repo: String,
    },
    /// `https://host/enterprises/<slug>` (needs a PAT).
    Enterprise {
        /// Enterprise slug.
        slug: String,
    },
}

/// How the controller authenticates to GitHub.
#[derive(Debug, Clone)]
pub enum GitHubAuth {
    /// Classic personal access token (`GITHUB_PAT`).
    Pat(SecretString),
    /// GitHub App installation.
    App {
        /// `GITHUB_APP_ID`.
        app_id: u64,
        /// `GITHUB_APP_INSTALLATION_ID`.
        installation_id: u64,
        /// PEM private key text.
        private_key: SecretString,
    },
}

/// Which actions/runner version to install.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RunnerVersion {
    /// Resolve the latest release at startup (the Go integration's default).
    Latest,
    /// This version (no leading `v`).
    Pinned(String),
}

/// GitHub settings.
#[derive(Debug, Clone)]
pub struct GitHubSettings {
    /// `GITHUB_URL` as given.
    pub url: url::Url,
    /// What `GITHUB_URL` points at.
    pub scope: GitHubScope,
    /// How to authenticate to GitHub (PAT or GitHub App).
    pub auth: GitHubAuth,
    /// `GITHUB_TOKEN`: github.com token for the latest-release lookup only.
    pub release_lookup_token: Option<SecretString>,
    /// `GITHUB_RUNNER_VERSION`.
    pub runner_version: RunnerVersion,
    /// `GITHUB_RUNNER_DOWNLOAD_URL` template with `{version}` and `{arch}`.
    pub runner_download_url: String,
    /// `GITHUB_RUNNER_RELEASE_URL`: the "latest release" endpoint read when not pinned.
    pub runner_release_url: String,
    /// `GITHUB_CA_BUNDLE`: extra CA certificates (PEM file) trusted for GitHub.
    pub ca_bundle: Option<PathBuf>,
    /// `MANAGE_RUNNER_SCALE_SETS`: recreate the scale set at start, delete it on exit.
    pub manage_scale_sets: bool,
    /// `SESSION_CONFLICT_RECREATE_SCALE_SET`: escape a 409 by recreating the scale set.
    pub session_conflict_recreate_scale_set: bool,
}

impl GitHubSettings {
    /// The runner tarball URL for `version` and `arch` (`x64` or `arm64`).
    pub fn runner_download_url_for(&self, version: &str, arch: &str) -> String {
        self.runner_download_url.replace("{version}", version).replace("{arch}", arch)
    }
}

/// Orka settings shared by every scale set.
#[derive(Debug, Clone)]
pub struct OrkaSettings {
    /// `ORKA_URL`, validated and without trailing slashes (as `OrkaConfig::new` takes it).
    pub url: String,
    /// `ORKA_TOKEN`.
    pub token: SecretString,
    /// `ORKA_VM_USERNAME`.
    pub vm_username: String,
    /// `ORKA_VM_PASSWORD` (default `admin`).
    pub vm_password: SecretString,
    /// `ORKA_VM_SSH_KEY_PATH`: key auth instead of the password when set.
    pub vm_ssh_key_path: Option<PathBuf>,
    /// Node IP → public address, when `ORKA_ENABLE_NODE_IP_MAPPING` is on.
    pub node_ip_mapping: Option<orka_client::NodeIpMap>,
    /// `ORKA_DEPLOY_TIMEOUT`.
    pub deploy_timeout: Duration,
    /// `ORKA_CA_BUNDLE`: extra CA certificates (PEM file) trusted for the Orka API.
    pub ca_bundle: Option<PathBuf>,
}

/// One scale set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScaleSetSettings {
    /// Name: scale set name, first `runs-on` label and VM name prefix.
    pub name: String,
    /// Runner group id.
    pub runner_group_id: u64,
    /// All labels, the name first, without duplicates.
    pub labels: Vec<String>,
    /// Orka VM config deployed for its runners.
    pub vm_config: String,
    /// Orka namespace of its VMs.
    pub namespace: String,
    /// VM metadata sent on deploy.
    pub metadata: BTreeMap<String, String>,
    /// Idle runners kept warm.
    pub min_runners: u32,
    /// Most VMs held at once (also the capacity announced to GitHub).
    pub max_runners: u32,
    /// How long a surplus idle runner stays.
    pub idle_grace: Duration,
}

/// Runner lifecycle settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunnerSettings {
    /// `RUNNER_DEREGISTRATION_TIMEOUT`.
    pub deregistration_timeout: Duration,
    /// `RUNNER_DEREGISTRATION_POLL_INTERVAL`.
    pub deregistration_poll_interval: Duration,
    /// `MAX_CONCURRENT_PROVISIONS`.
    pub max_concurrent_provisions: u32,
    /// `OUTDATED_RUNNER_RETRY_INTERVAL`: while GitHub refuses the runner version, one VM
    /// per this interval tries again (and an unpinned version is looked up again).
    pub outdated_retry_interval: Duration,
    /// `WARM_RUNNER_MAX_AGE`: idle runners whose VM is this old are recycled; `None` (0) never.
    pub warm_runner_max_age: Option<Duration>,
}

/// Reconciliation and probing settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReconcileSettings {
    /// `ENABLE_RECONCILIATION`.
    pub enabled: bool,
    /// `VM_TRACKER_INTERVAL`: period of the periodic reconciliation.
    pub interval: Duration,
    /// `PROBE_INTERVAL`.
    pub probe_interval: Duration,
    /// `PROBE_TIMEOUT`.
    pub probe_timeout: Duration,
    /// `RECONCILE_UNREACHABLE_STRIKES`.
    pub unreachable_strikes: u32,
    /// `SSH_MAX_HANDSHAKES`; unset: 4 per CPU core (at least 8).
    pub ssh_max_handshakes: Option<u32>,
}

/// Logging settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LoggingSettings {
    /// `LOG_LEVEL`.
    pub level: LogLevel,
    /// `LOG_FORMAT`.
    pub format: LogFormat,
}

/// HTTP endpoint settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpSettings {
    /// `ENABLE_METRICS`: serve `/metrics`.
    pub metrics_enabled: bool,
    /// `ENABLE_HEALTH_ENDPOINTS`: serve `/healthz` and `/readyz` even without metrics.
    pub health_enabled: bool,
    /// `METRICS_ADDR`.
    pub addr: SocketAddr,
    /// `METRICS_POLL_INTERVAL`.
    pub metrics_poll_interval: Duration,
}

impl HttpSettings {
    /// Whether the HTTP server runs at all (`/healthz` and `/readyz` are always on it).
    pub fn server_enabled(&self) -> bool {
        self.metrics_enabled || self.health_enabled
    }
}

/// Loads and validates the whole configuration.
pub fn load(sources: &Sources) -> Result<Config, ConfigError> {
    build::build(sources::read(sources))
}

/// Loads only the logging settings (for commands that need no other configuration).
pub fn load_logging(sources: &Sources) -> Result<LoggingSettings, ConfigError> {
    build::build_logging(sources::read(sources))
}

/// Where a running controller serves its endpoints, from `METRICS_ADDR` (environment,
/// `.env` or config file; `:8080` when unset), for the `status` client. An unspecified
/// host (`:8080`, `0.0.0.0`) means this machine.
pub fn endpoint_addr(sources: &Sources) -> Result<std::net::SocketAddr, String> {
    let layered = sources::read(sources);
    let mut addr = match layered.get("METRICS_ADDR") {
        Some((raw, _)) => values::parse_listen_addr(raw).map_err(|e| format!("METRICS_ADDR {e}"))?,
        None => std::net::SocketAddr::from(([127, 0, 0, 1], 8080)),
    };
    if addr.ip().is_unspecified() {
        addr.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
    }
    Ok(addr)
}

#[cfg(test)]
mod tests;
