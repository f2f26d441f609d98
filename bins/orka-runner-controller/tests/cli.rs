//! The real binary's exit codes and configuration errors, as an operator sees them.

use std::path::Path;
use std::process::Output;
use std::time::Duration;

use tokio::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_orka-runner-controller");

/// Runs the binary in `dir` with exactly `env` (nothing inherited), bounded in time.
async fn run(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    let child = Command::new(BIN)
        .args(args)
        .current_dir(dir)
        .env_clear()
        .envs(env.iter().copied())
        .kill_on_drop(true)
        .output();
    tokio::time::timeout(Duration::from_secs(30), child)
        .await
        .unwrap_or_else(|_| panic!("{args:?} did not exit within 30 s"))
        .unwrap()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

const VALID: &[(&str, &str)] = &[
    // Loopback only: these tests never reach a real service (they stop at configuration).
    ("GITHUB_URL", "http://127.0.0.1:9/acme"),
    ("GITHUB_PAT", "ghp_cli_secret_value_123"),
    ("ORKA_URL", "http://127.0.0.1:9"),
    ("ORKA_TOKEN", "orka_cli_secret_value_456"),
    ("ORKA_VM_CONFIG", "sonoma"),
    ("RUNNERS", r#"[{"name":"mac","id":1}]"#),
];

#[tokio::test]
async fn version_exits_zero() {
    let dir = tempfile::tempdir().unwrap();
    let output = run(dir.path(), &["--version"], &[]).await;
    assert_eq!(output.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&output.stdout).contains(env!("CARGO_PKG_VERSION")));
}

#[tokio::test]
async fn a_usage_error_exits_two() {
    let dir = tempfile::tempdir().unwrap();
    assert_eq!(run(dir.path(), &["serve"], &[]).await.status.code(), Some(2));
}

#[tokio::test]
async fn bad_values_exit_two_with_one_message_naming_each_variable() {
    let dir = tempfile::tempdir().unwrap();
    let mut env = VALID.to_vec();
    env.extend([
        ("VM_TRACKER_INTERVAL", "5min"),
        ("ENABLE_RECONCILIATION", "yes"),
        ("MAX_RUNNERS", "-1"),
        ("METRICS_ADDR", "localhost"),
        ("ORKA_VM_PASSWORD", "vm_cli_secret_789"),
    ]);
    for args in [&[][..], &["run"], &["check"], &["reconcile", "--dry-run"]] {
        let output = run(dir.path(), args, &env).await;
        assert_eq!(output.status.code(), Some(2), "{args:?}: {}", stderr(&output));
        let text = stderr(&output);
        assert!(text.starts_with("invalid configuration (4 problems):"), "{text}");
        for name in ["VM_TRACKER_INTERVAL", "ENABLE_RECONCILIATION", "MAX_RUNNERS", "METRICS_ADDR"] {
            assert!(text.contains(&format!("  - {name}: ")), "{name} not named: {text}");
        }
        for secret in ["ghp_cli_secret_value_123", "orka_cli_secret_value_456", "vm_cli_secret_789"] {
            assert!(!text.contains(secret), "secret leaked: {text}");
        }
        assert!(output.stdout.is_empty());
    }
}

#[tokio::test]
async fn the_env_file_of_the_working_directory_is_read() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join(".env"), "LOG_LEVEL=verbose\n").unwrap();
    let output = run(dir.path(), &["check"], VALID).await;
    assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
    assert!(
        stderr(&output).contains("LOG_LEVEL (from the .env file): must be one of"),
        "{}",
        stderr(&output)
    );
    // The real environment wins over the file: only the other bad value is reported.
    let mut env = VALID.to_vec();
    env.extend([("LOG_LEVEL", "warning"), ("MAX_RUNNERS", "many")]);
    let output = run(dir.path(), &["check"], &env).await;
    assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
    assert!(
        stderr(&output).starts_with("invalid configuration (1 problem):\n  - MAX_RUNNERS: "),
        "{}",
        stderr(&output)
    );
}

#[tokio::test]
async fn a_missing_explicit_env_file_or_config_file_exits_two() {
    let dir = tempfile::tempdir().unwrap();
    let output = run(dir.path(), &["--env-file", "nope.env", "check"], VALID).await;
    assert_eq!(output.status.code(), Some(2));
    assert!(stderr(&output).contains("--env-file"), "{}", stderr(&output));
    let output = run(dir.path(), &["--config", "nope.toml", "check"], VALID).await;
    assert_eq!(output.status.code(), Some(2));
    assert!(stderr(&output).contains("nope.toml"), "{}", stderr(&output));
}

#[tokio::test]
async fn status_needs_only_the_address_and_says_when_nothing_answers() {
    let dir = tempfile::tempdir().unwrap();
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().to_string();
    // No GitHub or Orka settings: `status` only talks to a running controller.
    let output = run(dir.path(), &["status"], &[("METRICS_ADDR", &closed)]).await;
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    assert!(
        stderr(&output).contains(&format!("cannot reach a controller at {closed}")),
        "{}",
        stderr(&output)
    );

    let output = run(dir.path(), &["status"], &[("METRICS_ADDR", "nonsense")]).await;
    assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
    assert!(stderr(&output).contains("METRICS_ADDR"), "{}", stderr(&output));
}
