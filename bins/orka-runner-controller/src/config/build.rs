//! Turns layered raw values into a [`Config`], collecting every problem.
//!
//! Owns defaults, cross-setting rules (authentication choice, scale-set list, min ≤ max)
//! and the wording of problems. Reads only the secret and key files the settings name.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use secrecy::SecretString;

use super::error::{ConfigError, Problem};
use super::settings::{
    self, DEFAULT_RUNNER_DOWNLOAD_URL, DEFAULT_RUNNER_RELEASE_URL, FILE_SUFFIX, Origin, SETTINGS,
};
use super::sources::{Layered, Provenance, RawMetadata, RawScaleSet};
use super::values::{self, LogFormat, LogLevel};
use super::{
    Config, GitHubAuth, GitHubScope, GitHubSettings, HttpSettings, LoggingSettings, OrkaSettings,
    ReconcileSettings, RunnerSettings, RunnerVersion, ScaleSetSettings,
};
use super::{app_key, files, redact};

const MAX_RUNNERS_LIMIT: u32 = 1_000_000;

/// Lower bounds of the timing settings: below them a loop would spin or every attempt
/// would time out at once. Generous enough for the test world (which polls fast), far
/// below any production value; docs/configuration.md lists them.
pub mod min {
    use std::time::Duration;

    /// `RUNNER_DEREGISTRATION_TIMEOUT`.
    pub const DEREGISTRATION_TIMEOUT: Duration = Duration::from_secs(1);
    /// `RUNNER_DEREGISTRATION_POLL_INTERVAL`.
    pub const DEREGISTRATION_POLL_INTERVAL: Duration = Duration::from_millis(100);
    /// `VM_TRACKER_INTERVAL`.
    pub const VM_TRACKER_INTERVAL: Duration = Duration::from_secs(1);
    /// `PROBE_INTERVAL`.
    pub const PROBE_INTERVAL: Duration = Duration::from_secs(1);
    /// `PROBE_TIMEOUT`.
    pub const PROBE_TIMEOUT: Duration = Duration::from_secs(1);
    /// `METRICS_POLL_INTERVAL`.
    pub const METRICS_POLL_INTERVAL: Duration = Duration::from_secs(1);
    /// `ORKA_DEPLOY_TIMEOUT`.
    pub const ORKA_DEPLOY_TIMEOUT: Duration = Duration::from_secs(1);
    /// `OUTDATED_RUNNER_RETRY_INTERVAL`.
    pub const OUTDATED_RUNNER_RETRY_INTERVAL: Duration = Duration::from_secs(1);
}
const ECHO_LIMIT: usize = 80;

struct Builder {
    layered: Layered,
    problems: Vec<Problem>,
    warnings: Vec<String>,
}

impl Builder {
    fn new(mut layered: Layered) -> Self {
        let problems = std::mem::take(&mut layered.problems);
        let warnings = std::mem::take(&mut layered.notes);
        Self { layered, problems, warnings }
    }

    fn raw(&self, name: &str) -> Option<&str> {
        self.layered.get(name).map(|(value, _)| value)
    }

    /// Removes "is required" problems that a `.env` read or parse error already explains:
    /// the variable may well be in the file, on the line that could not be parsed.
    fn drop_explained_required_problems(&mut self) {
        let (unreadable, unparsed) = (self.layered.env_file_unreadable, &self.layered.unparsed);
        self.problems.retain(|p| {
            let required =
                p.reason.starts_with("is required") || p.reason.starts_with("no GitHub credentials");
            let explained = unreadable || p.setting.split(" / ").any(|name| unparsed.contains(name));
            !(required && explained)
        });
    }

    fn is_set(&self, name: &str) -> bool {
        self.raw(name).is_some()
    }

    fn problem(&mut self, name: &str, reason: impl Into<String>) {
        let mut reason = reason.into();
        let secret = settings::find(name).is_none_or(|s| s.secret);
        if let (false, Some(value)) = (secret, self.raw(name)) {
            let shown: String = value.chars().take(ECHO_LIMIT).collect();
            let ellipsis = if value.chars().count() > ECHO_LIMIT { "…" } else { "" };
            reason = format!("{reason} (got {shown:?}{ellipsis})");
        }
        let label = self.layered.label(name);
        self.problems.push(Problem::new(label, reason));
    }

    fn optional<T>(&mut self, name: &str, parse: impl FnOnce(&str) -> Result<T, String>) -> Option<T> {
        let raw = self.raw(name)?.to_owned();
        match parse(&raw) {
            Ok(value) => Some(value),
            Err(reason) => {
                self.problem(name, reason);
                None
            }
        }
    }

    /// Like [`Builder::optional`] for orka-client validators, whose messages already
    /// quote the (non-secret) value.
    fn optional_orka<T>(
        &mut self,
        name: &str,
        parse: impl FnOnce(&str) -> Result<T, orka_client::OrkaError>,
    ) -> Option<T> {
        let raw = self.raw(name)?.to_owned();
        match parse(raw.trim()) {
            Ok(value) => Some(value),
            Err(e) => {
                let label = self.layered.label(name);
                self.problems.push(Problem::new(label, orka_reason(e)));
                None
            }
        }
    }

    fn or_default<T>(&mut self, name: &str, default: T, parse: impl FnOnce(&str) -> Result<T, String>) -> T {
        self.optional(name, parse).unwrap_or(default)
    }

    fn required<T>(&mut self, name: &str, parse: impl FnOnce(&str) -> Result<T, String>) -> Option<T> {
        if !self.is_set(name) {
            self.problems.push(Problem::new(name, "is required"));
            return None;
        }
        self.optional(name, parse)
    }

    /// A duration of at least `min` (zero allowed when `min` is zero).
    fn duration(&mut self, name: &str, default: Duration, min: Duration) -> Duration {
        self.or_default(name, default, |raw| values::parse_go_duration_at_least(raw, min))
    }

    fn boolean(&mut self, name: &str, default: bool) -> bool {
        self.or_default(name, default, values::parse_bool)
    }

    /// A secret from `NAME` or `NAME_FILE` (both set is a problem).
    fn secret(&mut self, name: &str) -> Option<SecretString> {
        let file_name = format!("{name}{FILE_SUFFIX}");
        let file = self.raw(&file_name).map(|p| PathBuf::from(p.trim()));
        match (self.raw(name).map(str::to_owned), file) {
            (Some(_), Some(_)) => {
                let label = self.layered.label(name);
                self.problems.push(Problem::new(label, format!("set {name} or {file_name}, not both")));
                None
            }
            (Some(value), None) => self.one_line_token(name, name, SecretString::from(value)),
            (None, Some(path)) => {
                let secret = self.read_secret_file(&file_name, &path)?;
                self.one_line_token(name, &file_name, secret)
            }
            (None, None) => None,
        }
    }

    /// Tokens travel in an HTTP header: a line break (or other control character) in one
    /// would fail every request later with a message naming nothing. Multi-line secrets
    /// (the App key, passwords) pass unchanged.
    fn one_line_token(&mut self, name: &str, setting: &str, secret: SecretString) -> Option<SecretString> {
        use secrecy::ExposeSecret;
        if !ONE_LINE_TOKENS.contains(&name) || !secret.expose_secret().chars().any(char::is_control) {
            return Some(secret);
        }
        let label = self.layered.label(setting);
        self.problems.push(Problem::new(
            label,
            "contains a line break or another control character; a token is one line (the value is not shown)",
        ));
        None
    }

    fn read_secret_file(&mut self, setting: &str, path: &Path) -> Option<SecretString> {
        match files::read_regular_file(path) {
            Ok(text) => {
                let text = text.trim_end_matches(['\n', '\r']);
                if text.trim().is_empty() {
                    self.problem(setting, format!("file {} is empty", path.display()));
                    None
                } else {
                    Some(SecretString::from(text.to_owned()))
                }
            }
            Err(reason) => {
                self.problem(setting, reason);
                None
            }
        }
    }
}

/// Secrets sent as one HTTP header value.
const ONE_LINE_TOKENS: [&str; 3] = ["GITHUB_PAT", "GITHUB_TOKEN", "ORKA_TOKEN"];

fn orka_reason(e: orka_client::OrkaError) -> String {
    match e {
        orka_client::OrkaError::Config(reason) => reason,
        other => other.to_string(),
    }
}

/// Builds the whole configuration.
pub fn build(layered: Layered) -> Result<Config, ConfigError> {
    let mut b = Builder::new(layered);
    for setting in SETTINGS.iter().filter(|s| s.origin == Origin::GoIgnored) {
        if b.is_set(setting.name) {
            let meaning = setting.meaning.trim_start_matches("Ignored: ");
            b.warnings.push(format!("{} is set but ignored: {meaning}", setting.name));
        }
    }
    let github = github(&mut b);
    let orka = orka(&mut b);
    let scale_sets = scale_sets(&mut b);
    let runners = RunnerSettings {
        deregistration_timeout: b.duration(
            "RUNNER_DEREGISTRATION_TIMEOUT",
            Duration::from_secs(30),
            min::DEREGISTRATION_TIMEOUT,
        ),
        deregistration_poll_interval: b.duration(
            "RUNNER_DEREGISTRATION_POLL_INTERVAL",
            Duration::from_secs(2),
            min::DEREGISTRATION_POLL_INTERVAL,
        ),
        max_concurrent_provisions: b
            .or_default("MAX_CONCURRENT_PROVISIONS", 100, |raw| values::parse_u32_in(raw, 1, 10_000)),
        outdated_retry_interval: b.duration(
            "OUTDATED_RUNNER_RETRY_INTERVAL",
            Duration::from_secs(300),
            min::OUTDATED_RUNNER_RETRY_INTERVAL,
        ),
        warm_runner_max_age: Some(b.duration(
            "WARM_RUNNER_MAX_AGE",
            Duration::from_secs(4 * 3600),
            Duration::ZERO,
        ))
        .filter(|age| !age.is_zero()),
    };
    let reconcile = ReconcileSettings {
        enabled: b.boolean("ENABLE_RECONCILIATION", true),
        interval: b.duration("VM_TRACKER_INTERVAL", Duration::from_secs(300), min::VM_TRACKER_INTERVAL),
        probe_interval: b.duration("PROBE_INTERVAL", Duration::from_secs(30), min::PROBE_INTERVAL),
        probe_timeout: b.duration("PROBE_TIMEOUT", Duration::from_secs(10), min::PROBE_TIMEOUT),
        unreachable_strikes: b
            .or_default("RECONCILE_UNREACHABLE_STRIKES", 3, |raw| values::parse_u32_in(raw, 1, 1000)),
        ssh_max_handshakes: b.optional("SSH_MAX_HANDSHAKES", |raw| values::parse_u32_in(raw, 1, 10_000)),
    };
    let logging = logging(&mut b);
    let http = HttpSettings {
        metrics_enabled: b.boolean("ENABLE_METRICS", false),
        health_enabled: b.boolean("ENABLE_HEALTH_ENDPOINTS", false),
        addr: b.or_default("METRICS_ADDR", ([0, 0, 0, 0], 8080).into(), values::parse_listen_addr),
        metrics_poll_interval: b.duration(
            "METRICS_POLL_INTERVAL",
            Duration::from_secs(30),
            min::METRICS_POLL_INTERVAL,
        ),
    };
    let shutdown_drain_timeout =
        b.duration("SHUTDOWN_DRAIN_TIMEOUT", Duration::from_secs(30), Duration::ZERO);

    b.drop_explained_required_problems();
    for problem in &mut b.problems {
        problem.setting = redact::url_userinfo(&problem.setting);
        problem.reason = redact::url_userinfo(&problem.reason);
    }
    match (b.problems.is_empty(), github, orka, scale_sets) {
        (true, Some(github), Some(orka), Some(scale_sets)) => Ok(Config {
            github,
            orka,
            scale_sets,
            runners,
            reconcile,
            logging,
            http,
            shutdown_drain_timeout,
            warnings: b.warnings,
        }),
        _ => Err(ConfigError { problems: b.problems }),
    }
}

/// Builds only the logging settings.
pub fn build_logging(layered: Layered) -> Result<LoggingSettings, ConfigError> {
    let mut b = Builder::new(layered);
    let logging = logging(&mut b);
    if b.problems.is_empty() { Ok(logging) } else { Err(ConfigError { problems: b.problems }) }
}

fn logging(b: &mut Builder) -> LoggingSettings {
    LoggingSettings {
        level: b.or_default("LOG_LEVEL", LogLevel::Info, values::parse_log_level),
        format: b.or_default("LOG_FORMAT", LogFormat::Json, values::parse_log_format),
    }
}

/// The scope of a config URL, by github-scaleset's own parser (so the client accepts
/// exactly what the configuration accepts).
/// A readable PEM file holding at least one certificate.
fn ca_bundle(raw: &str) -> Result<PathBuf, String> {
    let path = PathBuf::from(raw.trim());
    let text = files::read_regular_file(&path)?;
    if text.contains("-----BEGIN CERTIFICATE-----") {
        Ok(path)
    } else {
        Err("holds no PEM certificate (-----BEGIN CERTIFICATE-----)".into())
    }
}

fn github_scope(raw: &str) -> Result<GitHubScope, String> {
    use github_scaleset::config::{ConfigUrl, Scope};
    let parsed = ConfigUrl::parse(raw, false).map_err(|e| match e {
        github_scaleset::ScaleSetError::Config(reason) => reason,
        other => other.to_string(),
    })?;
    Ok(match parsed.scope {
        Scope::Organization(org) => GitHubScope::Organization { org },
        Scope::Repository { owner, repo } => GitHubScope::Repository { owner, repo },
        Scope::Enterprise(slug) => GitHubScope::Enterprise { slug },
    })
}

fn github(b: &mut Builder) -> Option<GitHubSettings> {
    let parsed = b.required("GITHUB_URL", |raw| {
        let url = values::parse_http_url(raw)?;
        values::reject_userinfo(&url)?;
        let scope = github_scope(raw)?;
        Ok((url, scope))
    });
    let auth = github_auth(b, parsed.as_ref().map(|(_, scope)| scope));
    let release_lookup_token = b.secret("GITHUB_TOKEN");
    let runner_version = b
        .optional("GITHUB_RUNNER_VERSION", values::parse_runner_version)
        .map_or(RunnerVersion::Latest, RunnerVersion::Pinned);
    let runner_download_url = b.or_default(
        "GITHUB_RUNNER_DOWNLOAD_URL",
        DEFAULT_RUNNER_DOWNLOAD_URL.to_owned(),
        values::parse_download_template,
    );
    let runner_release_url =
        b.or_default("GITHUB_RUNNER_RELEASE_URL", DEFAULT_RUNNER_RELEASE_URL.to_owned(), |raw| {
            values::parse_http_url(raw).map(|_| raw.trim().to_owned())
        });
    let ca_bundle = b.optional("GITHUB_CA_BUNDLE", ca_bundle);
    let manage_scale_sets = b.boolean("MANAGE_RUNNER_SCALE_SETS", false);
    let session_conflict_recreate_scale_set = b.boolean("SESSION_CONFLICT_RECREATE_SCALE_SET", false);
    let (url, scope) = parsed?;
    Some(GitHubSettings {
        url,
        scope,
        auth: auth?,
        release_lookup_token,
        runner_version,
        runner_download_url,
        runner_release_url,
        ca_bundle,
        manage_scale_sets,
        session_conflict_recreate_scale_set,
    })
}

const APP_SETTINGS: [&str; 5] = [
    "GITHUB_APP_ID",
    "GITHUB_APP_INSTALLATION_ID",
    "GITHUB_APP_PRIVATE_KEY",
    "GITHUB_APP_PRIVATE_KEY_FILE",
    "GITHUB_APP_PRIVATE_KEY_PATH",
];

fn github_auth(b: &mut Builder, scope: Option<&GitHubScope>) -> Option<GitHubAuth> {
    let pat = b.secret("GITHUB_PAT");
    let app_configured = APP_SETTINGS.iter().any(|name| b.is_set(name));
    if let Some(pat) = pat {
        if app_configured {
            b.warnings.push("GITHUB_PAT is set: it is used and the GITHUB_APP_* settings are ignored".into());
        }
        return Some(GitHubAuth::Pat(pat));
    }
    if b.is_set("GITHUB_PAT") || b.is_set("GITHUB_PAT_FILE") {
        return None; // the PAT's problem is already reported
    }
    if matches!(scope, Some(GitHubScope::Enterprise { .. })) {
        b.problem(
            "GITHUB_URL",
            "is an enterprise URL, which needs GITHUB_PAT (a GitHub App cannot register enterprise runners)",
        );
        return None;
    }
    if !app_configured {
        b.problems.push(Problem::new(
            "GITHUB_PAT / GITHUB_APP_ID",
            "no GitHub credentials: set GITHUB_PAT, or GITHUB_APP_ID, GITHUB_APP_INSTALLATION_ID and \
             GITHUB_APP_PRIVATE_KEY (or GITHUB_APP_PRIVATE_KEY_PATH)",
        ));
        return None;
    }
    let app_id = b.required("GITHUB_APP_ID", values::parse_id);
    let installation_id = b.required("GITHUB_APP_INSTALLATION_ID", values::parse_id);
    let private_key = app_private_key(b);
    Some(GitHubAuth::App { app_id: app_id?, installation_id: installation_id?, private_key: private_key? })
}

fn app_private_key(b: &mut Builder) -> Option<SecretString> {
    let inline = b.is_set("GITHUB_APP_PRIVATE_KEY") || b.is_set("GITHUB_APP_PRIVATE_KEY_FILE");
    let path = b.raw("GITHUB_APP_PRIVATE_KEY_PATH").map(|p| PathBuf::from(p.trim()));
    let (setting, key) = match (inline, path) {
        (true, Some(_)) => {
            b.problems.push(Problem::new(
                "GITHUB_APP_PRIVATE_KEY_PATH",
                "set only one of GITHUB_APP_PRIVATE_KEY, GITHUB_APP_PRIVATE_KEY_FILE, GITHUB_APP_PRIVATE_KEY_PATH",
            ));
            return None;
        }
        (true, None) => ("GITHUB_APP_PRIVATE_KEY", b.secret("GITHUB_APP_PRIVATE_KEY")?),
        (false, Some(path)) => {
            ("GITHUB_APP_PRIVATE_KEY_PATH", b.read_secret_file("GITHUB_APP_PRIVATE_KEY_PATH", &path)?)
        }
        (false, None) => {
            b.problems.push(Problem::new(
                "GITHUB_APP_PRIVATE_KEY",
                "is required for GitHub App authentication (or GITHUB_APP_PRIVATE_KEY_PATH)",
            ));
            return None;
        }
    };
    use secrecy::ExposeSecret;
    match app_key::check(key.expose_secret()) {
        Ok(key) => Some(key),
        Err(reason) => {
            let label = b.layered.label(setting);
            b.problems.push(Problem::new(label, reason));
            None
        }
    }
}

fn namespace(raw: &str) -> Result<String, String> {
    let ns = raw.trim();
    orka_client::validate_namespace(ns).map(|()| ns.to_owned()).map_err(orka_reason)
}

fn orka(b: &mut Builder) -> Option<OrkaSettings> {
    if !b.is_set("ORKA_URL") {
        b.problems.push(Problem::new("ORKA_URL", "is required"));
    }
    let url = b.optional("ORKA_URL", |raw| {
        values::reject_userinfo(&values::parse_http_url(raw)?)?;
        orka_client::normalize_base_url(raw.trim()).map_err(orka_reason)
    });
    let token = b.secret("ORKA_TOKEN");
    if !b.is_set("ORKA_TOKEN") && !b.is_set("ORKA_TOKEN_FILE") {
        b.problems.push(Problem::new("ORKA_TOKEN", "is required (or ORKA_TOKEN_FILE)"));
    }
    // The runner lives in /Users/<user>/actions-runner: a macOS short name, nothing a shell
    // or a path would reinterpret.
    let vm_username = b.or_default("ORKA_VM_USERNAME", "admin".to_owned(), |raw| {
        let user = raw.trim();
        let ok = !user.starts_with('-')
            && user.bytes().all(|c| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'_' | b'-'));
        if ok {
            Ok(user.to_owned())
        } else {
            Err("must be a macOS short user name (letters, digits, . _ -)".into())
        }
    });
    let vm_password = b.secret("ORKA_VM_PASSWORD").unwrap_or_else(|| SecretString::from("admin"));
    let vm_ssh_key_path = b.optional("ORKA_VM_SSH_KEY_PATH", |raw| {
        let path = PathBuf::from(raw.trim());
        match std::fs::metadata(&path) {
            Ok(meta) if meta.is_file() => Ok(path),
            Ok(_) => Err("is not a file".into()),
            Err(e) => Err(format!("cannot be read: {e}")),
        }
    });
    let mapping_enabled = b.boolean("ORKA_ENABLE_NODE_IP_MAPPING", false);
    let node_ip_mapping = match (mapping_enabled, b.is_set("ORKA_NODE_IP_MAPPING")) {
        (true, false) => {
            b.problems.push(Problem::new(
                "ORKA_NODE_IP_MAPPING",
                "is required when ORKA_ENABLE_NODE_IP_MAPPING is true",
            ));
            None
        }
        (true, true) => b.optional_orka("ORKA_NODE_IP_MAPPING", orka_client::NodeIpMap::from_json),
        (false, true) => {
            b.warnings.push(
                "ORKA_NODE_IP_MAPPING is set but ignored: ORKA_ENABLE_NODE_IP_MAPPING is not true".into(),
            );
            None
        }
        (false, false) => None,
    };
    let deploy_timeout =
        b.duration("ORKA_DEPLOY_TIMEOUT", Duration::from_secs(600), min::ORKA_DEPLOY_TIMEOUT);
    let ca_bundle = b.optional("ORKA_CA_BUNDLE", ca_bundle);
    Some(OrkaSettings {
        url: url?,
        token: token?,
        vm_username,
        vm_password,
        vm_ssh_key_path,
        node_ip_mapping,
        deploy_timeout,
        ca_bundle,
    })
}

/// Defaults every scale set inherits unless it sets its own value.
struct ScaleSetDefaults {
    vm_config: Option<String>,
    namespace: String,
    metadata: BTreeMap<String, String>,
    labels: Vec<String>,
    min_runners: u32,
    max_runners: u32,
    idle_grace: Duration,
}

fn scale_sets(b: &mut Builder) -> Option<Vec<ScaleSetSettings>> {
    let defaults = ScaleSetDefaults {
        vm_config: b.raw("ORKA_VM_CONFIG").map(|v| v.trim().to_owned()),
        namespace: b
            .optional_orka("ORKA_NAMESPACE", |raw| {
                orka_client::validate_namespace(raw).map(|()| raw.to_owned())
            })
            .unwrap_or_else(|| orka_client::DEFAULT_NAMESPACE.to_owned()),
        metadata: b.optional_orka("ORKA_VM_METADATA", orka_client::parse_vm_metadata).unwrap_or_default(),
        labels: b.or_default("RUNNER_LABELS", Vec::new(), values::parse_label_list),
        min_runners: b.or_default("MIN_RUNNERS", 0, |raw| values::parse_u32_in(raw, 0, MAX_RUNNERS_LIMIT)),
        max_runners: b.or_default("MAX_RUNNERS", 9000, |raw| values::parse_u32_in(raw, 1, MAX_RUNNERS_LIMIT)),
        idle_grace: b.duration("RUNNER_IDLE_GRACE", Duration::from_secs(300), Duration::ZERO),
    };
    let runners_from_env =
        matches!(b.layered.get("RUNNERS"), Some((_, Provenance::Environment | Provenance::EnvFile)));
    let file_sets = b.layered.scale_sets.take();
    let mut from_file = false;
    let declared: Vec<RawScaleSet> = match (runners_from_env, file_sets) {
        (false, Some(sets)) if b.is_set("RUNNERS") => {
            b.problems.push(Problem::new(
                "runners (config file)",
                "set either runners or [[scale_sets]] in the config file, not both",
            ));
            drop(sets);
            return None;
        }
        (false, Some(sets)) => {
            if sets.is_empty() {
                b.problems.push(Problem::new("scale_sets (config file)", "declares no scale set"));
                return None;
            }
            from_file = true;
            sets
        }
        (from_env, file_sets) => {
            if from_env && file_sets.is_some() {
                b.warnings
                    .push("RUNNERS from the environment replaces the config file's [[scale_sets]]".into());
            }
            if !b.is_set("RUNNERS") {
                b.problems.push(Problem::new(
                    "RUNNERS",
                    "is required (a JSON array like [{\"name\":\"macos\",\"id\":1}], or [[scale_sets]] in the config file)",
                ));
                return None;
            }
            let entries = b.optional("RUNNERS", values::parse_runners)?;
            entries
                .into_iter()
                .map(|e| RawScaleSet {
                    name: e.name,
                    runner_group_id: Some(e.runner_group_id),
                    labels: None,
                    vm_config: None,
                    orka_namespace: None,
                    metadata: None,
                    min_runners: None,
                    max_runners: None,
                    runner_idle_grace: None,
                })
                .collect()
        }
    };
    let mut result = Vec::new();
    let mut ok = true;
    for (index, raw) in declared.into_iter().enumerate() {
        let label = if from_file {
            format!("scale_sets[{index}] (config file, name {:?})", raw.name)
        } else {
            format!("{} entry {index} (name {:?})", b.layered.label("RUNNERS"), raw.name)
        };
        match scale_set(b, raw, &defaults, &label) {
            Some(set) if result.iter().any(|s: &ScaleSetSettings| s.name == set.name) => {
                b.problems.push(Problem::new(label, "declares a scale set name twice"));
                ok = false;
            }
            Some(set) => result.push(set),
            None => ok = false,
        }
    }
    ok.then_some(result)
}

fn scale_set(
    b: &mut Builder,
    raw: RawScaleSet,
    d: &ScaleSetDefaults,
    label: &str,
) -> Option<ScaleSetSettings> {
    let before = b.problems.len();
    let bad = |b: &mut Builder, reason: String| b.problems.push(Problem::new(label, reason));
    let name = raw.name.trim().to_owned();
    if let Err(e) = orka_client::naming::validate_scale_set_name(&name) {
        let reason = match e {
            orka_client::OrkaError::Config(reason) => reason,
            other => other.to_string(),
        };
        bad(b, reason);
    }
    let vm_config = match raw.vm_config.map(|v| v.trim().to_owned()).filter(|v| !v.is_empty()) {
        Some(v) => Some(v),
        None if d.vm_config.is_some() => d.vm_config.clone(),
        None => {
            let missing = b.problems.iter().any(|p| p.setting == "ORKA_VM_CONFIG");
            if !missing {
                b.problems
                    .push(Problem::new("ORKA_VM_CONFIG", "is required (or vm_config on every scale set)"));
            }
            None
        }
    };
    let namespace = match raw.orka_namespace {
        Some(ns) => namespace(&ns).map_err(|e| bad(b, format!("orka_namespace: {e}"))).ok(),
        None => Some(d.namespace.clone()),
    };
    let metadata = match raw.metadata {
        None => Some(d.metadata.clone()),
        Some(RawMetadata::Text(text)) => orka_client::parse_vm_metadata(text.trim())
            .map_err(|e| bad(b, format!("metadata: {}", orka_reason(e))))
            .ok(),
        Some(RawMetadata::Table(table)) => values::check_metadata_table(&table)
            .map(|()| table)
            .map_err(|e| bad(b, format!("metadata {e}")))
            .ok(),
    };
    let mut labels = vec![name.clone()];
    for extra in raw.labels.unwrap_or_else(|| d.labels.clone()) {
        let extra = extra.trim().to_owned();
        if extra.is_empty() {
            bad(b, "labels has an empty label".into());
        } else if !labels.contains(&extra) {
            labels.push(extra);
        }
    }
    if raw.runner_group_id.is_some_and(|id| id == 0 || id > values::MAX_ID) {
        bad(b, "runner_group_id must be a positive runner group id".into());
    }
    let min_runners = raw.min_runners.unwrap_or(d.min_runners);
    let max_runners = raw.max_runners.unwrap_or(d.max_runners);
    if max_runners == 0 || max_runners > MAX_RUNNERS_LIMIT {
        bad(b, format!("max_runners must be between 1 and {MAX_RUNNERS_LIMIT}"));
    } else if min_runners > max_runners {
        bad(b, format!("min_runners ({min_runners}) must not exceed max_runners ({max_runners})"));
    }
    let idle_grace = match raw.runner_idle_grace {
        Some(text) => {
            values::parse_go_duration(&text).map_err(|e| bad(b, format!("runner_idle_grace {e}"))).ok()
        }
        None => Some(d.idle_grace),
    };
    if b.problems.len() != before {
        return None;
    }
    Some(ScaleSetSettings {
        name,
        runner_group_id: raw.runner_group_id.unwrap_or(values::DEFAULT_RUNNER_GROUP_ID),
        labels,
        vm_config: vm_config?,
        namespace: namespace?,
        metadata: metadata?,
        min_runners,
        max_runners,
        idle_grace: idle_grace?,
    })
}
