//! The shipped examples load: `examples/.env.example` (the Go integration's shape) and the
//! multi-scale-set `examples/config.toml`.

use std::collections::BTreeMap;
use std::path::PathBuf;

use orka_runner_controller::config::{self, EnvFile, GitHubAuth, LogLevel, Sources};

fn example(name: &str) -> PathBuf {
    PathBuf::from(format!("{}/../../examples/{name}", env!("CARGO_MANIFEST_DIR")))
}

#[test]
fn the_example_env_file_loads() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("github-app.pem");
    // A real RSA key: the configuration checks the App key by signing with it.
    std::fs::write(&key, testkit::github::test_app_private_key_pem()).unwrap();
    // The example points at /secrets/github-app.pem; the environment wins over the file.
    let environment = BTreeMap::from([("GITHUB_APP_PRIVATE_KEY_PATH".to_owned(), key.display().to_string())]);
    let sources =
        Sources { environment, env_file: EnvFile::Required(example(".env.example")), config_file: None };
    let config = config::load(&sources).unwrap_or_else(|e| panic!("{e}"));
    assert!(matches!(config.github.auth, GitHubAuth::App { app_id: 123_456, .. }));
    assert_eq!(config.scale_sets.len(), 1);
    assert_eq!(config.scale_sets[0].name, "orka-macos");
    assert_eq!(config.scale_sets[0].max_runners, 20);
    assert!(config.http.metrics_enabled);
    assert!(config.warnings.is_empty(), "{:?}", config.warnings);
}

#[test]
fn the_example_config_file_declares_three_scale_sets() {
    let environment = BTreeMap::from([
        ("GITHUB_PAT".to_owned(), "ghp_example".to_owned()),
        ("ORKA_TOKEN".to_owned(), "orka-example".to_owned()),
    ]);
    let sources = Sources { environment, env_file: EnvFile::Skip, config_file: Some(example("config.toml")) };
    let config = config::load(&sources).unwrap_or_else(|e| panic!("{e}"));
    let names: Vec<&str> = config.scale_sets.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["macos-sonoma", "macos-sonoma-large", "macos-sequoia-beta"]);
    let large = &config.scale_sets[1];
    assert_eq!((large.vm_config.as_str(), large.namespace.as_str()), ("sonoma-large", "orka-ui-tests"));
    assert_eq!(config.scale_sets[2].vm_config, "sequoia-beta");
    assert_eq!(config.scale_sets[2].labels, ["macos-sequoia-beta", "macos"]);
    assert_eq!(config.scale_sets[2].max_runners, 2);
    assert_eq!(config.scale_sets[0].min_runners, 1);
    assert_eq!(config.logging.level, LogLevel::Info);
}
