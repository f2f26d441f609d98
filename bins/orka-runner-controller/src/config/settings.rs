//! The catalogue of settings the binary accepts: names, defaults and a one-line meaning.
//!
//! This table is the single list of names: the environment snapshot is filtered through
//! it, the config file is checked against it (lower-case keys), and a test checks that
//! `docs/configuration.md` documents every entry. It holds no parsing logic.

/// Where a setting comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// Same name, meaning and default as in the Go integration.
    Go,
    /// New in this controller.
    New,
    /// Known from the Go integration, accepted and ignored with a warning.
    GoIgnored,
}

/// One accepted setting.
#[derive(Debug, Clone, Copy)]
pub struct Setting {
    /// Environment variable name; the config-file key is its lower-case form.
    pub name: &'static str,
    /// Default as written in the reference (`required` or `unset` when there is none).
    pub default: &'static str,
    /// Whether the value is a secret (never echoed; a `<NAME>_FILE` variant exists).
    pub secret: bool,
    /// Where the setting comes from.
    pub origin: Origin,
    /// One-line meaning.
    pub meaning: &'static str,
}

const fn go(name: &'static str, default: &'static str, meaning: &'static str) -> Setting {
    Setting { name, default, secret: false, origin: Origin::Go, meaning }
}

const fn go_secret(name: &'static str, default: &'static str, meaning: &'static str) -> Setting {
    Setting { name, default, secret: true, origin: Origin::Go, meaning }
}

const fn new(name: &'static str, default: &'static str, meaning: &'static str) -> Setting {
    Setting { name, default, secret: false, origin: Origin::New, meaning }
}

const fn ignored(name: &'static str, meaning: &'static str) -> Setting {
    Setting { name, default: "unset", secret: false, origin: Origin::GoIgnored, meaning }
}

/// The github.com release URL of the runner tarball (the Go integration's source).
pub const DEFAULT_RUNNER_DOWNLOAD_URL: &str = "https://github.com/actions/runner/releases/download/v{version}/actions-runner-osx-{arch}-{version}.tar.gz";

/// GitHub's API endpoint of the latest actions/runner release (the Go integration's source).
pub const DEFAULT_RUNNER_RELEASE_URL: &str = "https://api.github.com/repos/actions/runner/releases/latest";

/// Every setting, in reference order.
pub const SETTINGS: &[Setting] = &[
    // GitHub.
    go("GITHUB_URL", "required", "Organization, repository or enterprise URL the scale sets register with"),
    go_secret("GITHUB_PAT", "unset", "Classic personal access token; wins over GitHub App credentials"),
    go("GITHUB_APP_ID", "unset", "GitHub App id (App authentication)"),
    go("GITHUB_APP_INSTALLATION_ID", "unset", "GitHub App installation id (App authentication)"),
    go_secret("GITHUB_APP_PRIVATE_KEY", "unset", "GitHub App private key, PEM text"),
    go("GITHUB_APP_PRIVATE_KEY_PATH", "unset", "Path of the GitHub App private key PEM file"),
    go_secret("GITHUB_TOKEN", "unset", "github.com token used only to look up the latest runner release"),
    go("GITHUB_RUNNER_VERSION", "latest release", "actions/runner version installed in each VM"),
    new(
        "GITHUB_RUNNER_DOWNLOAD_URL",
        DEFAULT_RUNNER_DOWNLOAD_URL,
        "Runner tarball URL template with {version} and {arch} (x64 or arm64)",
    ),
    new(
        "GITHUB_RUNNER_RELEASE_URL",
        DEFAULT_RUNNER_RELEASE_URL,
        "GitHub API endpoint of the latest actions/runner release, read when GITHUB_RUNNER_VERSION is unset",
    ),
    new(
        "GITHUB_CA_BUNDLE",
        "unset",
        "PEM file of extra CA certificates trusted for GitHub (GHES with a private CA)",
    ),
    ignored("GITHUB_API_URL", "Ignored: the API URL is derived from GITHUB_URL"),
    // Orka.
    go("ORKA_URL", "required", "Orka API base URL"),
    go_secret("ORKA_TOKEN", "required", "Orka service-account token"),
    go("ORKA_NAMESPACE", "orka-default", "Orka namespace of every VM"),
    go("ORKA_VM_CONFIG", "required", "VM config (template) deployed for each runner"),
    go("ORKA_VM_USERNAME", "admin", "SSH user inside the VM"),
    go_secret("ORKA_VM_PASSWORD", "admin", "SSH password inside the VM"),
    new(
        "ORKA_VM_SSH_KEY_PATH",
        "unset",
        "Private key file for SSH into the VM (used instead of the password)",
    ),
    go("ORKA_VM_METADATA", "unset", "Custom VM metadata, key=value[,key=value]"),
    go("ORKA_ENABLE_NODE_IP_MAPPING", "false", "Translate node IPs to public IPs for SSH"),
    go("ORKA_NODE_IP_MAPPING", "unset", "JSON object {\"<node ip>\":\"<public address>\"}"),
    new("ORKA_CA_BUNDLE", "unset", "PEM file of extra CA certificates trusted for an https ORKA_URL"),
    new("ORKA_DEPLOY_TIMEOUT", "10m", "How long one VM deploy may take before it is abandoned and deleted"),
    ignored("ORKA_EMULATOR_CONFIGS", "Ignored: Android emulator pairing is not supported"),
    ignored("ORKA_EMULATOR_DEPLOY_TIMEOUT", "Ignored: Android emulator pairing is not supported"),
    // Scale sets and runners.
    go("RUNNERS", "required", "JSON array [{\"name\":…,\"id\":…}]: scale set names and runner group ids"),
    new(
        "RUNNER_LABELS",
        "unset",
        "Extra labels for every scale set, comma separated (the name is always one)",
    ),
    go(
        "MAX_RUNNERS",
        "9000",
        "Most VMs per scale set (provisioning ones included); sent to GitHub as capacity",
    ),
    new("MIN_RUNNERS", "0", "Idle runners kept warm per scale set"),
    new("RUNNER_IDLE_GRACE", "5m", "How long a surplus idle runner stays before it is retired"),
    new("WARM_RUNNER_MAX_AGE", "4h", "Idle runners with a VM this old are replaced, then retired (0: never)"),
    go("RUNNER_DEREGISTRATION_TIMEOUT", "30s", "Wait for a runner to deregister before removing it by force"),
    go("RUNNER_DEREGISTRATION_POLL_INTERVAL", "2s", "Poll period while waiting for deregistration"),
    new(
        "MAX_CONCURRENT_PROVISIONS",
        "100",
        "VM deploys in flight at the same time (the slot is released once the VM runs)",
    ),
    new(
        "OUTDATED_RUNNER_RETRY_INTERVAL",
        "5m",
        "While GitHub refuses the runner version: one VM per this interval to try again",
    ),
    go(
        "MANAGE_RUNNER_SCALE_SETS",
        "false",
        "true: delete and recreate the scale set at start, delete it on exit",
    ),
    new(
        "SESSION_CONFLICT_RECREATE_SCALE_SET",
        "false",
        "true: on a session conflict (409) delete and recreate the scale set, like the Go integration",
    ),
    // Reconciliation and probing.
    go("ENABLE_RECONCILIATION", "true", "Reconcile owned VMs at start and periodically"),
    go("VM_TRACKER_INTERVAL", "300s", "Period of the periodic reconciliation"),
    new("PROBE_INTERVAL", "30s", "Period of the cheap SSH probe of each running runner"),
    new("PROBE_TIMEOUT", "10s", "Deadline of one SSH probe of one VM"),
    new("RECONCILE_UNREACHABLE_STRIKES", "3", "Failed probes before an unreachable idle VM is deleted"),
    new("SSH_MAX_HANDSHAKES", "4 per CPU core (at least 8)", "SSH key exchanges at the same time"),
    // Process.
    go("LOG_LEVEL", "info", "trace, debug, info, warn (or warning), error"),
    new("LOG_FORMAT", "json", "json or pretty"),
    go("ENABLE_METRICS", "false", "Serve Prometheus metrics on /metrics"),
    go("METRICS_ADDR", ":8080", "Listen address of the HTTP endpoints"),
    go(
        "METRICS_POLL_INTERVAL",
        "30s",
        "The Go integration's statistics poll period (gauges follow every message)",
    ),
    new("ENABLE_HEALTH_ENDPOINTS", "false", "Serve /healthz and /readyz even when metrics are off"),
    new("SHUTDOWN_DRAIN_TIMEOUT", "30s", "How long shutdown waits for in-flight cleanups"),
];

/// Suffix of the variants that read a secret from a file.
pub const FILE_SUFFIX: &str = "_FILE";

/// The setting called `name`, if any.
pub fn find(name: &str) -> Option<&'static Setting> {
    SETTINGS.iter().find(|s| s.name == name)
}

/// Every variable name the binary reads from the environment, `*_FILE` variants included.
pub fn known_variable_names() -> Vec<String> {
    let mut names: Vec<String> = SETTINGS.iter().map(|s| s.name.to_owned()).collect();
    names.extend(SETTINGS.iter().filter(|s| s.secret).map(|s| format!("{}{FILE_SUFFIX}", s.name)));
    names
}

/// Whether the environment variable `name` is read by the binary.
pub fn is_known_variable(name: &str) -> bool {
    find(name).is_some() || name.strip_suffix(FILE_SUFFIX).and_then(find).is_some_and(|s| s.secret)
}

/// Keys a `[[scale_sets]]` entry of the config file accepts.
pub const SCALE_SET_KEYS: &[&str] = &[
    "name",
    "runner_group_id",
    "labels",
    "vm_config",
    "orka_namespace",
    "metadata",
    "min_runners",
    "max_runners",
    "runner_idle_grace",
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_upper_snake_case() {
        let names = known_variable_names();
        let mut sorted = names.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(sorted.len(), names.len(), "duplicate setting name");
        for name in names {
            assert!(
                name.bytes().all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_'),
                "{name}"
            );
        }
    }

    #[test]
    fn every_go_variable_of_the_compatibility_contract_is_accepted() {
        // Every Go variable listed in docs/compatibility.md#settings.
        for name in [
            "GITHUB_URL",
            "GITHUB_APP_ID",
            "GITHUB_APP_INSTALLATION_ID",
            "GITHUB_APP_PRIVATE_KEY",
            "GITHUB_APP_PRIVATE_KEY_PATH",
            "GITHUB_PAT",
            "ORKA_URL",
            "ORKA_TOKEN",
            "ORKA_NAMESPACE",
            "ORKA_VM_CONFIG",
            "ORKA_VM_USERNAME",
            "ORKA_VM_PASSWORD",
            "ORKA_VM_METADATA",
            "ORKA_ENABLE_NODE_IP_MAPPING",
            "ORKA_NODE_IP_MAPPING",
            "RUNNERS",
            "GITHUB_RUNNER_VERSION",
            "RUNNER_DEREGISTRATION_TIMEOUT",
            "RUNNER_DEREGISTRATION_POLL_INTERVAL",
            "VM_TRACKER_INTERVAL",
            "LOG_LEVEL",
            "ENABLE_METRICS",
            "METRICS_ADDR",
            "MANAGE_RUNNER_SCALE_SETS",
            "ENABLE_RECONCILIATION",
            "MAX_RUNNERS",
        ] {
            let setting = find(name).unwrap_or_else(|| panic!("{name} is not accepted"));
            assert_eq!(setting.origin, Origin::Go, "{name}");
        }
    }

    #[test]
    fn file_variants_exist_only_for_secrets() {
        assert!(is_known_variable("ORKA_TOKEN_FILE"));
        assert!(is_known_variable("GITHUB_APP_PRIVATE_KEY_FILE"));
        assert!(!is_known_variable("ORKA_URL_FILE"));
        assert!(!is_known_variable("PATH"));
    }
}
