//! Loading tests: the Go `.env` shape, precedence, aggregation, secrets, the config file.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use secrecy::ExposeSecret;

use super::*;

/// A real RSA key in GitHub's PKCS#1 encoding (generated per test process by testkit): the
/// App key is checked by signing.
fn pem() -> &'static str {
    testkit::github::test_app_private_key_pkcs1_pem()
}

fn env(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
}

/// A valid PAT-based environment.
fn minimal() -> BTreeMap<String, String> {
    env(&[
        ("GITHUB_URL", "https://github.com/acme"),
        ("GITHUB_PAT", "ghp_patsecret0123456789"),
        ("ORKA_URL", "http://10.221.188.20"),
        ("ORKA_TOKEN", "orka-token-secret-value"),
        ("ORKA_VM_CONFIG", "sonoma-90gb"),
        ("RUNNERS", r#"[{"name":"orka-mac","id":1}]"#),
    ])
}

fn with(mut base: BTreeMap<String, String>, pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    base.extend(env(pairs));
    base
}

fn load_env(environment: BTreeMap<String, String>) -> Result<Config, ConfigError> {
    load(&Sources::environment_only(environment))
}

fn write(dir: &Path, name: &str, text: &str) -> std::path::PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn a_go_integration_env_file_parses_unchanged() {
    let dir = tempfile::tempdir().unwrap();
    let key = write(dir.path(), "github-app.pem", pem());
    // The shape of the Go integration's example `.env`, as operators fill it in.
    let dotenv = format!(
        r#"# GitHub App
GITHUB_APP_ID=123456
GITHUB_APP_INSTALLATION_ID=45678901
GITHUB_APP_PRIVATE_KEY_PATH={key}
GITHUB_URL=https://github.com/acme-mobile

# Orka
ORKA_URL=http://10.221.188.20/
ORKA_TOKEN=eyJhbGciOiJSUzI1NiIsImtpZCI6IkxqVjNHc0orka.token.signature
ORKA_NAMESPACE=orka-default
ORKA_VM_CONFIG=sonoma-90gb
ORKA_VM_USERNAME=admin
ORKA_VM_PASSWORD=admin
ORKA_VM_METADATA=team=ios,purpose=ci
ORKA_ENABLE_NODE_IP_MAPPING=false
ORKA_NODE_IP_MAPPING=

# Runners
RUNNERS=[{{"name":"orka-mac-runner","id":1}}]
GITHUB_RUNNER_VERSION="2.321.0"
RUNNER_DEREGISTRATION_TIMEOUT=30s
RUNNER_DEREGISTRATION_POLL_INTERVAL=2s
VM_TRACKER_INTERVAL=300s
MANAGE_RUNNER_SCALE_SETS=false
ENABLE_RECONCILIATION=true
MAX_RUNNERS=50

LOG_LEVEL=warning
ENABLE_METRICS=true
METRICS_ADDR=:8080
"#,
        key = key.display()
    );
    let env_path = write(dir.path(), ".env", &dotenv);
    let sources = Sources { environment: env(&[]), env_file: EnvFile::Optional(env_path), config_file: None };
    let config = load(&sources).unwrap_or_else(|e| panic!("{e}"));

    assert_eq!(config.github.scope, GitHubScope::Organization { org: "acme-mobile".into() });
    match &config.github.auth {
        GitHubAuth::App { app_id, installation_id, private_key } => {
            assert_eq!((*app_id, *installation_id), (123_456, 45_678_901));
            assert!(private_key.expose_secret().starts_with("-----BEGIN RSA PRIVATE KEY-----"));
        }
        GitHubAuth::Pat(_) => panic!("expected App auth"),
    }
    assert_eq!(config.github.runner_version, RunnerVersion::Pinned("2.321.0".into()));
    assert_eq!(
        config.github.runner_download_url_for("2.321.0", "arm64"),
        "https://github.com/actions/runner/releases/download/v2.321.0/actions-runner-osx-arm64-2.321.0.tar.gz"
    );
    assert!(!config.github.manage_scale_sets);
    assert_eq!(config.orka.url, "http://10.221.188.20");
    assert_eq!(config.orka.vm_username, "admin");
    assert_eq!(config.orka.vm_password.expose_secret(), "admin");
    assert!(config.orka.node_ip_mapping.is_none());
    let [set] = config.scale_sets.as_slice() else { panic!("one scale set expected") };
    assert_eq!(set.name, "orka-mac-runner");
    assert_eq!(set.runner_group_id, 1);
    assert_eq!(set.labels, vec!["orka-mac-runner"]);
    assert_eq!(set.vm_config, "sonoma-90gb");
    assert_eq!(set.namespace, "orka-default");
    assert_eq!(set.metadata.get("team").map(String::as_str), Some("ios"));
    assert_eq!((set.min_runners, set.max_runners), (0, 50));
    assert_eq!(config.runners.deregistration_timeout, Duration::from_secs(30));
    assert_eq!(config.runners.deregistration_poll_interval, Duration::from_secs(2));
    assert_eq!(config.reconcile.interval, Duration::from_secs(300));
    assert!(config.reconcile.enabled);
    assert_eq!(config.logging.level, LogLevel::Warn);
    assert!(config.http.metrics_enabled && config.http.server_enabled());
    assert_eq!(config.http.addr, "0.0.0.0:8080".parse().unwrap());
    assert!(config.warnings.is_empty(), "{:?}", config.warnings);
}

#[test]
fn defaults_are_the_go_integrations() {
    let config = load_env(minimal()).unwrap();
    let set = &config.scale_sets[0];
    assert_eq!(set.namespace, "orka-default");
    assert_eq!(set.max_runners, 9000);
    assert_eq!(set.min_runners, 0);
    assert_eq!(config.orka.vm_username, "admin");
    assert_eq!(config.orka.vm_password.expose_secret(), "admin");
    assert_eq!(config.github.runner_version, RunnerVersion::Latest);
    assert_eq!(config.github.runner_download_url, settings::DEFAULT_RUNNER_DOWNLOAD_URL);
    assert_eq!(config.runners.deregistration_timeout, Duration::from_secs(30));
    assert_eq!(config.reconcile.interval, Duration::from_secs(300));
    assert!(config.reconcile.enabled);
    assert_eq!(config.logging.level, LogLevel::Info);
    assert_eq!(config.logging.format, LogFormat::Json);
    assert!(!config.http.metrics_enabled && !config.http.server_enabled());
    assert_eq!(config.http.addr.port(), 8080);
    assert_eq!(config.http.metrics_poll_interval, Duration::from_secs(30));
    assert!(!config.github.manage_scale_sets && !config.github.session_conflict_recreate_scale_set);
    assert!(matches!(config.github.auth, GitHubAuth::Pat(_)));
}

#[test]
fn real_environment_wins_over_the_env_file() {
    let dir = tempfile::tempdir().unwrap();
    let env_path = write(dir.path(), ".env", "ORKA_VM_CONFIG=from-dotenv\nLOG_LEVEL=debug\n");
    let sources = Sources {
        environment: with(minimal(), &[("ORKA_VM_CONFIG", "from-env")]),
        env_file: EnvFile::Optional(env_path),
        config_file: None,
    };
    let config = load(&sources).unwrap();
    assert_eq!(config.scale_sets[0].vm_config, "from-env");
    assert_eq!(config.logging.level, LogLevel::Debug, "the .env still fills what the environment lacks");
}

#[test]
fn a_missing_default_env_file_is_fine_but_a_missing_explicit_one_is_not() {
    let dir = tempfile::tempdir().unwrap();
    let absent = dir.path().join(".env");
    let optional =
        Sources { environment: minimal(), env_file: EnvFile::Optional(absent.clone()), config_file: None };
    assert!(load(&optional).is_ok());
    let required = Sources { environment: minimal(), env_file: EnvFile::Required(absent), config_file: None };
    let err = load(&required).unwrap_err();
    assert_eq!(err.settings(), vec![format!("--env-file {}", dir.path().join(".env").display())]);
    assert!(err.to_string().contains("does not exist"), "{err}");
}

#[test]
fn empty_values_mean_unset() {
    let config = load_env(with(minimal(), &[("MAX_RUNNERS", ""), ("LOG_LEVEL", "  ")])).unwrap();
    assert_eq!(config.scale_sets[0].max_runners, 9000);
    assert_eq!(config.logging.level, LogLevel::Info);
}

#[test]
fn every_bad_value_is_reported_at_once_by_name() {
    let err = load_env(with(
        minimal(),
        &[
            ("VM_TRACKER_INTERVAL", "5 minutes"),
            ("RUNNER_DEREGISTRATION_TIMEOUT", "30"),
            ("ENABLE_METRICS", "yes"),
            ("MAX_RUNNERS", "lots"),
            ("LOG_LEVEL", "verbose"),
            ("METRICS_ADDR", "8080"),
            ("ORKA_URL", "10.0.0.1"),
            ("ORKA_VM_METADATA", "team ios"),
        ],
    ))
    .unwrap_err();
    let names = err.settings();
    for name in [
        "VM_TRACKER_INTERVAL",
        "RUNNER_DEREGISTRATION_TIMEOUT",
        "ENABLE_METRICS",
        "MAX_RUNNERS",
        "LOG_LEVEL",
        "METRICS_ADDR",
        "ORKA_URL",
        "ORKA_VM_METADATA",
    ] {
        assert!(names.contains(&name), "{name} missing from {err}");
    }
    assert_eq!(names.len(), 8, "{err}");
    let message = err.to_string();
    assert!(message.starts_with("invalid configuration (8 problems):"), "{message}");
    assert!(message.contains("VM_TRACKER_INTERVAL: has an unknown unit"), "{message}");
    assert!(message.contains(r#"(got "5 minutes")"#), "{message}");
    assert!(message.contains("RUNNER_DEREGISTRATION_TIMEOUT: is missing a unit"), "{message}");
}

#[test]
fn nothing_set_names_every_required_setting() {
    let err = load_env(env(&[])).unwrap_err();
    let names = err.settings();
    for name in ["GITHUB_URL", "GITHUB_PAT / GITHUB_APP_ID", "ORKA_URL", "ORKA_TOKEN", "RUNNERS"] {
        assert!(names.contains(&name), "{name} missing from {err}");
    }
    let err = load_env(with(minimal(), &[("ORKA_VM_CONFIG", "")])).unwrap_err();
    assert_eq!(err.settings(), vec!["ORKA_VM_CONFIG"]);
}

#[test]
fn secrets_never_appear_in_errors_or_debug() {
    let secrets = ["ghp_patsecret0123456789", "orka-token-secret-value", "vm-password-secret"];
    let environment =
        with(minimal(), &[("ORKA_VM_PASSWORD", "vm-password-secret"), ("GITHUB_TOKEN", "gh-lookup-secret")]);
    let config = load_env(environment.clone()).unwrap();
    let debug = format!("{config:?}");
    for secret in secrets.iter().chain(&["gh-lookup-secret"]) {
        assert!(!debug.contains(secret), "{secret} leaked into Debug");
    }
    // A bad config carrying the same secrets: the message names problems, never values.
    let err = load_env(with(environment, &[("ORKA_URL", "nope"), ("GITHUB_PAT_FILE", "/nonexistent/pat")]))
        .unwrap_err();
    let message = err.to_string();
    assert!(message.contains("GITHUB_PAT"), "{message}");
    for secret in secrets {
        assert!(!message.contains(secret), "{secret} leaked into {message}");
    }
    // An unparsable App key is rejected without echoing it.
    let err = load_env(env(&[
        ("GITHUB_URL", "https://github.com/acme"),
        ("GITHUB_APP_ID", "1"),
        ("GITHUB_APP_INSTALLATION_ID", "2"),
        ("GITHUB_APP_PRIVATE_KEY", "not-a-pem-but-secret"),
    ]))
    .unwrap_err();
    assert!(err.settings().contains(&"GITHUB_APP_PRIVATE_KEY"), "{err}");
    assert!(!err.to_string().contains("not-a-pem-but-secret"));
}

#[test]
fn env_file_parse_errors_do_not_echo_the_line() {
    let dir = tempfile::tempdir().unwrap();
    let env_path = write(dir.path(), ".env", "LOG_LEVEL=info\nORKA_TOKEN='unterminated-secret-token\n");
    let sources =
        Sources { environment: minimal(), env_file: EnvFile::Required(env_path), config_file: None };
    let err = load(&sources).unwrap_err();
    let message = err.to_string();
    assert!(!message.contains("unterminated-secret-token"), "{message}");
    assert!(message.contains("ORKA_TOKEN"), "the message names the variable: {message}");
}

#[test]
fn secrets_can_come_from_files() {
    let dir = tempfile::tempdir().unwrap();
    let token = write(dir.path(), "orka-token", "token-from-file\n");
    let password = write(dir.path(), "vm-password", "pw-from-file");
    let key = write(dir.path(), "app.pem", pem());
    let environment = with(minimal(), &[]);
    let mut environment: BTreeMap<_, _> =
        environment.into_iter().filter(|(k, _)| k != "ORKA_TOKEN" && k != "GITHUB_PAT").collect();
    environment.extend(env(&[
        ("ORKA_TOKEN_FILE", token.to_str().unwrap()),
        ("ORKA_VM_PASSWORD_FILE", password.to_str().unwrap()),
        ("GITHUB_APP_ID", "7"),
        ("GITHUB_APP_INSTALLATION_ID", "8"),
        ("GITHUB_APP_PRIVATE_KEY_FILE", key.to_str().unwrap()),
    ]));
    let config = load_env(environment.clone()).unwrap();
    assert_eq!(config.orka.token.expose_secret(), "token-from-file", "trailing newline trimmed");
    assert_eq!(config.orka.vm_password.expose_secret(), "pw-from-file");
    assert!(matches!(config.github.auth, GitHubAuth::App { app_id: 7, installation_id: 8, .. }));

    let both = with(environment.clone(), &[("ORKA_TOKEN", "inline")]);
    let err = load_env(both).unwrap_err();
    assert_eq!(err.settings(), vec!["ORKA_TOKEN"]);
    assert!(err.to_string().contains("not both"), "{err}");

    let missing = with(environment, &[("ORKA_TOKEN_FILE", "/nonexistent/orka-token")]);
    let err = load_env(missing).unwrap_err();
    assert_eq!(err.settings(), vec!["ORKA_TOKEN_FILE"]);
    assert!(err.to_string().contains("/nonexistent/orka-token"), "{err}");
}

#[test]
fn authentication_rules() {
    // PAT wins over App settings, with a warning.
    let config = load_env(with(minimal(), &[("GITHUB_APP_ID", "1")])).unwrap();
    assert!(matches!(config.github.auth, GitHubAuth::Pat(_)));
    assert!(config.warnings.iter().any(|w| w.contains("GITHUB_PAT")), "{:?}", config.warnings);
    // An incomplete App names each missing piece.
    let mut app = minimal();
    app.remove("GITHUB_PAT");
    app.insert("GITHUB_APP_ID".into(), "1".into());
    let err = load_env(app).unwrap_err();
    assert_eq!(err.settings(), vec!["GITHUB_APP_INSTALLATION_ID", "GITHUB_APP_PRIVATE_KEY"], "{err}");
    // Enterprise needs a PAT.
    let mut enterprise = with(minimal(), &[("GITHUB_URL", "https://github.com/enterprises/acme")]);
    assert!(matches!(
        load_env(enterprise.clone()).unwrap().github.scope,
        GitHubScope::Enterprise { ref slug } if slug == "acme"
    ));
    enterprise.remove("GITHUB_PAT");
    enterprise.insert("GITHUB_APP_ID".into(), "1".into());
    let err = load_env(enterprise).unwrap_err();
    assert!(err.settings().contains(&"GITHUB_URL"), "{err}");
}

#[test]
fn github_url_scopes() {
    let scope = |url: &str| load_env(with(minimal(), &[("GITHUB_URL", url)])).map(|c| c.github.scope);
    assert_eq!(
        scope("https://ghes.example.com/acme/app/").unwrap(),
        GitHubScope::Repository { owner: "acme".into(), repo: "app".into() }
    );
    assert_eq!(
        scope("http://127.0.0.1:3000/acme").unwrap(),
        GitHubScope::Organization { org: "acme".into() }
    );
    for bad in ["https://github.com", "https://github.com/a/b/c", "github.com/acme"] {
        assert!(scope(bad).is_err(), "{bad}");
    }
}

#[test]
fn node_ip_mapping_rules() {
    let err = load_env(with(minimal(), &[("ORKA_ENABLE_NODE_IP_MAPPING", "true")])).unwrap_err();
    assert_eq!(err.settings(), vec!["ORKA_NODE_IP_MAPPING"]);
    let config = load_env(with(
        minimal(),
        &[
            ("ORKA_ENABLE_NODE_IP_MAPPING", "TRUE"),
            ("ORKA_NODE_IP_MAPPING", r#"{"10.0.0.4":"198.51.100.4"}"#),
        ],
    ))
    .unwrap();
    assert_eq!(config.orka.node_ip_mapping.unwrap().map("10.0.0.4").unwrap(), "198.51.100.4");
    let config = load_env(with(minimal(), &[("ORKA_NODE_IP_MAPPING", r#"{"10.0.0.4":"x"}"#)])).unwrap();
    assert!(config.orka.node_ip_mapping.is_none());
    assert!(config.warnings.iter().any(|w| w.contains("ORKA_NODE_IP_MAPPING")));
}

#[test]
fn several_runners_entries_become_several_scale_sets() {
    let config = load_env(with(
        minimal(),
        &[("RUNNERS", r#"[{"name":"mac","id":2},{"name":"mac-large"}]"#), ("RUNNER_LABELS", "macos, arm64")],
    ))
    .unwrap();
    let names: Vec<_> = config.scale_sets.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, vec!["mac", "mac-large"]);
    assert_eq!(config.scale_sets[0].runner_group_id, 2);
    assert_eq!(config.scale_sets[1].labels, vec!["mac-large", "macos", "arm64"]);
    let err = load_env(with(minimal(), &[("RUNNERS", r#"[{"name":"mac"},{"name":"mac"}]"#)])).unwrap_err();
    assert!(err.to_string().contains("twice"), "{err}");
    let err = load_env(with(minimal(), &[("RUNNERS", r#"[{"name":"Mac_OS"}]"#)])).unwrap_err();
    assert!(err.settings()[0].starts_with("RUNNERS entry 0"), "{err}");
}

#[test]
fn min_runners_may_not_exceed_max_runners() {
    let err = load_env(with(minimal(), &[("MIN_RUNNERS", "5"), ("MAX_RUNNERS", "2")])).unwrap_err();
    assert!(err.to_string().contains("min_runners (5) must not exceed max_runners (2)"), "{err}");
}

#[test]
fn ignored_go_settings_produce_warnings() {
    let config = load_env(with(
        minimal(),
        &[("GITHUB_API_URL", "https://api.github.com"), ("ORKA_EMULATOR_CONFIGS", "pixel")],
    ))
    .unwrap();
    assert_eq!(config.warnings.len(), 2, "{:?}", config.warnings);
}

const TOML_FILE: &str = r#"
github_url = "https://github.com/acme"
orka_url = "http://10.221.188.20"
orka_vm_config = "sonoma-90gb"
max_runners = 20
runner_deregistration_poll_interval = "5s"
log_format = "pretty"

[[scale_sets]]
name = "mac"
runner_group_id = 3
labels = ["macos", "xcode-16"]
min_runners = 2

[[scale_sets]]
name = "mac-large"
vm_config = "sonoma-large"
max_runners = 4
metadata = { team = "ios" }
runner_idle_grace = "10m"
"#;

fn file_sources(dir: &Path, name: &str, text: &str, environment: BTreeMap<String, String>) -> Sources {
    Sources { environment, env_file: EnvFile::Skip, config_file: Some(write(dir, name, text)) }
}

fn secrets_only() -> BTreeMap<String, String> {
    env(&[("GITHUB_PAT", "ghp_x"), ("ORKA_TOKEN", "t")])
}

#[test]
fn a_config_file_declares_several_scale_sets() {
    let dir = tempfile::tempdir().unwrap();
    let config = load(&file_sources(dir.path(), "c.toml", TOML_FILE, secrets_only()))
        .unwrap_or_else(|e| panic!("{e}"));
    let [mac, large] = config.scale_sets.as_slice() else { panic!("two scale sets") };
    assert_eq!((mac.name.as_str(), mac.runner_group_id), ("mac", 3));
    assert_eq!(mac.labels, vec!["mac", "macos", "xcode-16"]);
    assert_eq!((mac.vm_config.as_str(), mac.min_runners, mac.max_runners), ("sonoma-90gb", 2, 20));
    assert_eq!(large.vm_config, "sonoma-large");
    assert_eq!(large.runner_group_id, 1);
    assert_eq!(large.max_runners, 4);
    assert_eq!(large.metadata.get("team").map(String::as_str), Some("ios"));
    assert_eq!(large.idle_grace, Duration::from_secs(600));
    assert_eq!(config.runners.deregistration_poll_interval, Duration::from_secs(5));
    assert_eq!(config.logging.format, LogFormat::Pretty);
}

#[test]
fn the_environment_overrides_the_file_without_separator_surprises() {
    // Underscores in variable names are part of the name: ORKA_VM_CONFIG overrides the
    // flat file key orka_vm_config (never a nested orka.vm.config), and so does a name with
    // four underscores.
    let dir = tempfile::tempdir().unwrap();
    let environment = with(
        secrets_only(),
        &[
            ("ORKA_VM_CONFIG", "from-env"),
            ("RUNNER_DEREGISTRATION_POLL_INTERVAL", "7s"),
            ("MAX_RUNNERS", "30"),
        ],
    );
    let config = load(&file_sources(dir.path(), "c.toml", TOML_FILE, environment)).unwrap();
    assert_eq!(config.scale_sets[0].vm_config, "from-env", "env overrides the file's top-level value");
    assert_eq!(config.scale_sets[1].vm_config, "sonoma-large", "a scale set's own value stays");
    assert_eq!(config.scale_sets[0].max_runners, 30);
    assert_eq!(config.runners.deregistration_poll_interval, Duration::from_secs(7));
}

#[test]
fn the_config_crate_separator_trap_is_pinned() {
    // Why sources.rs uses neither a prefix nor a separator: with a "__" separator the
    // prefix separator becomes "__" too, so APP_X is silently dropped.
    let source = env(&[("APP_X", "1"), ("APP__Y", "2")]);
    let trapped = config::Config::builder()
        .add_source(
            config::Environment::with_prefix("APP")
                .separator("__")
                .source(Some(source.into_iter().collect())),
        )
        .build()
        .unwrap();
    assert!(trapped.get_string("x").is_err(), "APP_X is ignored under a __ separator");
    assert_eq!(trapped.get_string("y").unwrap(), "2");
    // Our loader: a flat, lower-cased key per variable.
    let ours = config::Config::builder()
        .add_source(
            config::Environment::default()
                .source(Some(env(&[("ORKA_VM_CONFIG", "v")]).into_iter().collect())),
        )
        .build()
        .unwrap();
    assert_eq!(ours.get_string("orka_vm_config").unwrap(), "v");
}

#[test]
fn yaml_config_files_work_too() {
    let dir = tempfile::tempdir().unwrap();
    let yaml = "github_url: https://github.com/acme\norka_url: http://orka.local\nscale_sets:\n  - name: mac\n    vm_config: sonoma\n    max_runners: 3\n";
    let config =
        load(&file_sources(dir.path(), "c.yaml", yaml, secrets_only())).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(config.scale_sets[0].max_runners, 3);
}

#[test]
fn config_file_mistakes_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let text = "github_url = \"https://github.com/acme\"\norka_url = \"http://o\"\norka_vm_config = \"x\"\n\
                runners = '[{\"name\":\"mac\"}]'\norka_tokn = \"typo\"\nORKA_NAMESPACE = \"ns\"\n\
                max_runners = [1, 2]\n";
    let err = load(&file_sources(dir.path(), "c.toml", text, secrets_only())).unwrap_err();
    let names = err.settings();
    assert!(names.contains(&"orka_tokn (config file)"), "{err}");
    assert!(names.contains(&"ORKA_NAMESPACE (config file)"), "{err}");
    assert!(names.contains(&"max_runners (config file)"), "{err}");
    assert!(err.to_string().contains("write orka_namespace"), "{err}");

    let bad_set = "github_url = \"https://github.com/acme\"\norka_url = \"http://o\"\n\
                   [[scale_sets]]\nname = \"mac\"\nvm_config = \"x\"\nmin_runner = 1\n";
    let err = load(&file_sources(dir.path(), "d.toml", bad_set, secrets_only())).unwrap_err();
    assert!(err.to_string().contains("min_runner"), "{err}");

    let bad_value = "github_url = \"https://github.com/acme\"\norka_url = \"http://o\"\n\
                     [[scale_sets]]\nname = \"mac\"\nvm_config = \"x\"\nmin_runners = 9\nmax_runners = 2\n";
    let err = load(&file_sources(dir.path(), "e.toml", bad_value, secrets_only())).unwrap_err();
    assert!(err.settings()[0].starts_with("scale_sets[0] (config file"), "{err}");
}

#[test]
fn runners_from_the_environment_replace_file_scale_sets() {
    let dir = tempfile::tempdir().unwrap();
    let environment = with(secrets_only(), &[("RUNNERS", r#"[{"name":"only"}]"#)]);
    let config = load(&file_sources(dir.path(), "c.toml", TOML_FILE, environment)).unwrap();
    assert_eq!(config.scale_sets.len(), 1);
    assert_eq!(config.scale_sets[0].name, "only");
    assert!(config.warnings.iter().any(|w| w.contains("replaces")), "{:?}", config.warnings);
}

#[test]
fn logging_can_be_loaded_alone() {
    let logging = load_logging(&Sources::environment_only(env(&[("LOG_LEVEL", "warning")]))).unwrap();
    assert_eq!(logging.level, LogLevel::Warn);
    let err = load_logging(&Sources::environment_only(env(&[("LOG_FORMAT", "xml")]))).unwrap_err();
    assert_eq!(err.settings(), vec!["LOG_FORMAT"]);
}

#[test]
fn vm_user_names_cannot_break_the_runner_path() {
    let config = load_env(with(minimal(), &[("ORKA_VM_USERNAME", "ci.runner")])).unwrap();
    assert_eq!(config.orka.vm_username, "ci.runner");
    for bad in ["../root", "ci runner", "ci;rm", "-x"] {
        let err = load_env(with(minimal(), &[("ORKA_VM_USERNAME", bad)])).unwrap_err();
        assert_eq!(err.settings(), vec!["ORKA_VM_USERNAME"], "{bad}");
    }
}

#[test]
fn ca_bundles_must_hold_certificates() {
    let dir = tempfile::tempdir().unwrap();
    let good = write(dir.path(), "ca.pem", "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n");
    let bad = write(dir.path(), "not-ca.pem", "hello");
    let config = load_env(with(
        minimal(),
        &[("GITHUB_CA_BUNDLE", good.to_str().unwrap()), ("ORKA_CA_BUNDLE", good.to_str().unwrap())],
    ))
    .unwrap();
    assert_eq!(config.github.ca_bundle.as_deref(), Some(good.as_path()));
    assert_eq!(config.orka.ca_bundle.as_deref(), Some(good.as_path()));
    assert!(load_env(minimal()).unwrap().orka.ca_bundle.is_none());
    let err = load_env(with(
        minimal(),
        &[("GITHUB_CA_BUNDLE", bad.to_str().unwrap()), ("ORKA_CA_BUNDLE", "/nonexistent/ca.pem")],
    ))
    .unwrap_err();
    assert_eq!(err.settings(), vec!["GITHUB_CA_BUNDLE", "ORKA_CA_BUNDLE"], "{err}");
}

// ---- Hostile and careless input: each test below failed before its fix. ----

/// The minimal environment as `.env` lines.
fn minimal_dotenv() -> String {
    minimal().iter().map(|(k, v)| format!("{k}={v}\n")).collect()
}

fn app_env(key_setting: (&str, &str)) -> BTreeMap<String, String> {
    let mut environment: BTreeMap<_, _> = minimal().into_iter().filter(|(k, _)| k != "GITHUB_PAT").collect();
    environment.extend(env(&[("GITHUB_APP_ID", "7"), ("GITHUB_APP_INSTALLATION_ID", "8"), key_setting]));
    environment
}

fn app_key(config: &Config) -> &str {
    match &config.github.auth {
        GitHubAuth::App { private_key, .. } => private_key.expose_secret(),
        GitHubAuth::Pat(_) => panic!("expected App authentication"),
    }
}

fn env_file_sources(dir: &Path, text: &str, environment: BTreeMap<String, String>) -> Sources {
    let path = write(dir, ".env", text);
    Sources { environment, env_file: EnvFile::Optional(path), config_file: None }
}

#[test]
fn a_multi_line_app_key_in_double_quotes_round_trips_byte_for_byte() {
    let dir = tempfile::tempdir().unwrap();
    let text = format!(
        "GITHUB_APP_ID=7\nGITHUB_APP_INSTALLATION_ID=8\nGITHUB_APP_PRIVATE_KEY=\"{}\"\nLOG_LEVEL=debug\n",
        pem()
    );
    let environment: BTreeMap<_, _> = minimal().into_iter().filter(|(k, _)| k != "GITHUB_PAT").collect();
    let config = load(&env_file_sources(dir.path(), &text, environment)).unwrap();
    assert_eq!(app_key(&config), pem());
}

#[test]
fn a_value_ending_in_dashes_is_not_changed() {
    let dir = tempfile::tempdir().unwrap();
    let environment: BTreeMap<_, _> = minimal().into_iter().filter(|(k, _)| k != "ORKA_TOKEN").collect();
    let config =
        load(&env_file_sources(dir.path(), "ORKA_TOKEN=abc---\nLOG_LEVEL=warn\n", environment)).unwrap();
    assert_eq!(config.orka.token.expose_secret(), "abc---");
}

#[test]
fn a_byte_order_mark_in_the_env_file_is_tolerated() {
    let dir = tempfile::tempdir().unwrap();
    let text = format!("\u{feff}{}", minimal_dotenv());
    let config = load(&env_file_sources(dir.path(), &text, BTreeMap::new())).unwrap();
    assert_eq!(config.scale_sets[0].name, "orka-mac");
}

#[test]
fn env_file_read_errors_name_the_file_not_the_flag() {
    let dir = tempfile::tempdir().unwrap();
    let as_dir = dir.path().join(".env");
    std::fs::create_dir(&as_dir).unwrap();
    let sources =
        Sources { environment: minimal(), env_file: EnvFile::Optional(as_dir.clone()), config_file: None };
    let err = load(&sources).unwrap_err();
    assert_eq!(err.settings(), vec![format!(".env file {}", as_dir.display())]);
    assert!(err.to_string().contains("directory"), "{err}");
}

#[test]
fn a_dangling_env_file_symlink_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    let link = dir.path().join(".env");
    std::os::unix::fs::symlink(dir.path().join("gone.env"), &link).unwrap();
    let sources = Sources { environment: minimal(), env_file: EnvFile::Optional(link), config_file: None };
    let err = load(&sources).unwrap_err();
    assert!(err.to_string().contains("symlink") && err.to_string().contains("gone.env"), "{err}");
}

#[test]
fn one_bad_env_line_keeps_the_rest_and_adds_no_required_noise() {
    let dir = tempfile::tempdir().unwrap();
    let text = format!("{}this line is broken\nORKA_TOKEN='unclosed-s3cret\n", minimal_dotenv());
    let environment = BTreeMap::new();
    let err = load(&env_file_sources(dir.path(), &text, environment)).unwrap_err();
    let path = dir.path().join(".env");
    assert_eq!(
        err.settings(),
        vec![format!("{}:7", path.display()), format!("{}:8", path.display())],
        "only the two bad lines, by file:line, and no 'is required': {err}"
    );
    assert!(!err.to_string().contains("unclosed-s3cret"), "{err}");
    assert!(!err.to_string().contains("broken"), "the line is not echoed: {err}");
}

#[test]
fn an_unreadable_env_file_adds_no_required_noise() {
    let dir = tempfile::tempdir().unwrap();
    let link = dir.path().join(".env");
    std::os::unix::fs::symlink(dir.path().join("gone.env"), &link).unwrap();
    let sources =
        Sources { environment: BTreeMap::new(), env_file: EnvFile::Optional(link), config_file: None };
    let err = load(&sources).unwrap_err();
    assert_eq!(err.problems.len(), 1, "{err}");
}

#[test]
fn non_rsa_app_keys_are_configuration_errors() {
    for (pem, kind) in [
        (include_str!("fixtures/ec_key.pem"), "EC"),
        (include_str!("fixtures/ed25519_key.pem"), "Ed25519"),
        (&pem().replace("MIIE", "AAAA"), "RSA"),
    ] {
        let err = load_env(app_env(("GITHUB_APP_PRIVATE_KEY", pem))).unwrap_err();
        assert_eq!(err.settings(), vec!["GITHUB_APP_PRIVATE_KEY"], "{err}");
        assert!(err.to_string().contains(kind), "{err}");
        let body: String = pem.lines().nth(1).unwrap().to_owned();
        assert!(!err.to_string().contains(&body), "key material leaked: {err}");
    }
}

#[test]
fn app_keys_with_literal_newline_escapes_are_accepted() {
    let escaped = pem().trim_end().replace('\n', "\\n");
    let config = load_env(app_env(("GITHUB_APP_PRIVATE_KEY", &escaped))).unwrap();
    assert_eq!(app_key(&config), pem().trim_end());
}

#[test]
fn tokens_with_line_breaks_are_rejected_by_name() {
    for name in ["ORKA_TOKEN", "GITHUB_PAT", "GITHUB_TOKEN"] {
        let err = load_env(with(minimal(), &[(name, "first-half-s3cret\nsecond-half")])).unwrap_err();
        assert_eq!(err.settings(), vec![name], "{err}");
        assert!(!err.to_string().contains("s3cret"), "{err}");
    }
    let dir = tempfile::tempdir().unwrap();
    let token = write(dir.path(), "orka-token", "line-one-s3cret\nline-two\n");
    let environment: BTreeMap<_, _> = minimal().into_iter().filter(|(k, _)| k != "ORKA_TOKEN").collect();
    let err = load_env(with(environment, &[("ORKA_TOKEN_FILE", token.to_str().unwrap())])).unwrap_err();
    assert_eq!(err.settings(), vec!["ORKA_TOKEN_FILE"], "{err}");
    assert!(!err.to_string().contains("s3cret"), "{err}");
    // A multi-line password is the operator's business.
    assert!(load_env(with(minimal(), &[("ORKA_VM_PASSWORD", "a\nb")])).is_ok());
}

#[test]
fn config_file_parse_errors_do_not_print_the_secret_line() {
    let dir = tempfile::tempdir().unwrap();
    for (name, text) in [
        (
            "bad.toml",
            "github_url = \"https://github.com/acme\"\norka_token = \"tok-s3cret-value\" trailing\n",
        ),
        ("bad2.toml", "orka_token = \"tok-s3cret-value\n"),
        ("bad.yaml", "github_url: https://github.com/acme\norka_token: \"tok-s3cret-value\n  nope: [\n"),
        ("bad2.yaml", "orka_token: tok-s3cret-value\n- list\n"),
    ] {
        let err = load(&file_sources(dir.path(), name, text, BTreeMap::new())).unwrap_err();
        let message = err.to_string();
        assert!(message.contains("cannot read config file"), "{message}");
        assert!(!message.contains("tok-s3cret-value"), "{name}: {message}");
    }
}

#[test]
fn urls_with_credentials_are_rejected_without_echoing_them() {
    for (name, url) in [
        ("GITHUB_URL", "https://octo:gh-pw-s3cret@github.com/acme"),
        ("ORKA_URL", "http://admin:orka-pw-s3cret@10.221.188.20"),
        ("ORKA_URL", "http://orka-pw-s3cret@10.221.188.20"),
    ] {
        let err = load_env(with(minimal(), &[(name, url)])).unwrap_err();
        assert_eq!(err.settings(), vec![name], "{err}");
        let message = err.to_string();
        assert!(message.contains("user name or password"), "{message}");
        assert!(!message.contains("s3cret"), "{message}");
    }
    // The same through the config file, and as an unparsable URL.
    let dir = tempfile::tempdir().unwrap();
    let text = "orka_url = \"http://u:orka-pw-s3cret@o\"\n";
    let err = load(&file_sources(dir.path(), "c.toml", text, minimal_without("ORKA_URL"))).unwrap_err();
    assert!(!err.to_string().contains("s3cret"), "{err}");
    let err = load_env(with(minimal(), &[("GITHUB_RUNNER_DOWNLOAD_URL", "https://u:dl-s3cret@x/{bad}")]))
        .unwrap_err();
    assert!(!err.to_string().contains("s3cret"), "{err}");
}

fn minimal_without(name: &str) -> BTreeMap<String, String> {
    minimal().into_iter().filter(|(k, _)| k != name).collect()
}

#[test]
fn intervals_have_lower_bounds() {
    for name in [
        "VM_TRACKER_INTERVAL",
        "PROBE_INTERVAL",
        "PROBE_TIMEOUT",
        "METRICS_POLL_INTERVAL",
        "RUNNER_DEREGISTRATION_POLL_INTERVAL",
        "RUNNER_DEREGISTRATION_TIMEOUT",
        "ORKA_DEPLOY_TIMEOUT",
    ] {
        let err = load_env(with(minimal(), &[(name, "1ns")])).unwrap_err();
        assert_eq!(err.settings(), vec![name], "{err}");
        assert!(err.to_string().contains("must be at least"), "{err}");
    }
    // The fast values the test world uses stay valid.
    let fast = [
        ("VM_TRACKER_INTERVAL", "3s"),
        ("PROBE_INTERVAL", "1s"),
        ("RUNNER_DEREGISTRATION_POLL_INTERVAL", "200ms"),
        ("RUNNER_DEREGISTRATION_TIMEOUT", "3s"),
    ];
    assert!(load_env(with(minimal(), &fast)).is_ok());
}

/// Runs `load` on a thread and gives up after a generous bound (a blocked read would
/// otherwise hang the test run).
fn load_with_deadline(sources: Sources) -> Result<Config, ConfigError> {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(load(&sources));
    });
    rx.recv_timeout(Duration::from_secs(10)).expect("load blocked on a file")
}

#[test]
fn a_fifo_secret_file_is_refused_instead_of_blocking() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("orka-token");
    assert!(std::process::Command::new("mkfifo").arg(&fifo).status().unwrap().success());
    let environment = with(minimal_without("ORKA_TOKEN"), &[("ORKA_TOKEN_FILE", fifo.to_str().unwrap())]);
    let err = load_with_deadline(Sources::environment_only(environment)).unwrap_err();
    assert_eq!(err.settings(), vec!["ORKA_TOKEN_FILE"], "{err}");
    assert!(err.to_string().contains("not a regular file"), "{err}");
    // The same for the .env file and the config file.
    let sources =
        Sources { environment: minimal(), env_file: EnvFile::Required(fifo.clone()), config_file: None };
    assert!(load_with_deadline(sources).unwrap_err().to_string().contains("not a regular file"));
    let toml_fifo = dir.path().join("c.toml");
    assert!(std::process::Command::new("mkfifo").arg(&toml_fifo).status().unwrap().success());
    let sources = Sources { environment: minimal(), env_file: EnvFile::Skip, config_file: Some(toml_fifo) };
    assert!(load_with_deadline(sources).unwrap_err().to_string().contains("not a regular file"));
}

#[test]
fn warm_runner_max_age_defaults_to_four_hours_and_zero_turns_it_off() {
    let default = load_env(minimal()).unwrap();
    assert_eq!(default.runners.warm_runner_max_age, Some(Duration::from_secs(4 * 3600)));
    let set = load_env(with(minimal(), &[("WARM_RUNNER_MAX_AGE", "12h")])).unwrap();
    assert_eq!(set.runners.warm_runner_max_age, Some(Duration::from_secs(12 * 3600)));
    let off = load_env(with(minimal(), &[("WARM_RUNNER_MAX_AGE", "0")])).unwrap();
    assert_eq!(off.runners.warm_runner_max_age, None);
    let err = load_env(with(minimal(), &[("WARM_RUNNER_MAX_AGE", "soon")])).unwrap_err();
    assert!(err.to_string().contains("WARM_RUNNER_MAX_AGE"), "{err}");
}
