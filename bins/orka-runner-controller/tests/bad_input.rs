//! Keeps the "Bad input" table of docs/operations.md true: every row is run against the
//! real binary, which must exit with the row's code, print the row's message fragments and
//! print none of the secrets it was given. Every row has a case and every case a row.

use std::path::Path;
use std::process::Output;
use std::time::Duration;

use tokio::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_orka-runner-controller");

/// Secrets the cases hand to the binary; none may appear on its stdout or stderr.
const SECRETS: &[&str] = &[
    "ghp_table_secret_value_123",
    "orka_table_secret_value_456",
    "url-pw-s3cret",
    "unclosed-s3cret",
    "toml-line-s3cret",
    "line-break-s3cret",
    "MHcCAQEEIDnoBEpzjsxAcI5CHjQTmUOCA3V31nSoSu1f5fLF5rQfoAoGCCqGSM49",
];

const EC_KEY: &str = include_str!("../src/config/fixtures/ec_key.pem");

fn valid() -> Vec<(String, String)> {
    [
        // Loopback only: the cases stop at configuration.
        ("GITHUB_URL", "http://127.0.0.1:9/acme"),
        ("GITHUB_PAT", "ghp_table_secret_value_123"),
        ("ORKA_URL", "http://127.0.0.1:9"),
        ("ORKA_TOKEN", "orka_table_secret_value_456"),
        ("ORKA_VM_CONFIG", "sonoma"),
        ("RUNNERS", r#"[{"name":"mac","id":1}]"#),
    ]
    .iter()
    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
    .collect()
}

/// One bad input: what to change in a valid setup.
struct Case {
    args: Vec<String>,
    env: Vec<(String, String)>,
}

impl Case {
    fn new() -> Self {
        Self { args: vec!["check".to_owned()], env: valid() }
    }
    fn set(mut self, name: &str, value: &str) -> Self {
        self.env.retain(|(k, _)| k != name);
        self.env.push((name.to_owned(), value.to_owned()));
        self
    }
    fn unset(mut self, name: &str) -> Self {
        self.env.retain(|(k, _)| k != name);
        self
    }
    fn args(mut self, args: &[&str]) -> Self {
        self.args = args.iter().map(|a| (*a).to_owned()).collect();
        self
    }
}

fn mkfifo(path: &Path) {
    let status = std::process::Command::new("mkfifo").arg(path).status().unwrap();
    assert!(status.success(), "mkfifo {}", path.display());
}

/// The case for `class`, with any files it needs created in `dir`.
fn case(class: &str, dir: &Path) -> Case {
    let path = |name: &str| dir.join(name).display().to_string();
    match class {
        "malformed-value" => Case::new().set("VM_TRACKER_INTERVAL", "5min"),
        "interval-too-short" => Case::new().set("PROBE_INTERVAL", "1ns"),
        "missing-setting" => Case::new().unset("ORKA_URL"),
        "env-file-bad-line" => {
            std::fs::write(dir.join(".env"), "this is not a statement\nLOG_LEVEL=info\n").unwrap();
            Case::new()
        }
        "env-file-unclosed-quote" => {
            std::fs::write(dir.join(".env"), "LOG_LEVEL=info\nORKA_TOKEN=\"unclosed-s3cret\n").unwrap();
            Case::new().unset("ORKA_TOKEN")
        }
        "env-file-dangling-symlink" => {
            std::os::unix::fs::symlink(dir.join("gone.env"), dir.join(".env")).unwrap();
            Case::new()
        }
        "secret-file-fifo" => {
            mkfifo(&dir.join("token-fifo"));
            Case::new().unset("ORKA_TOKEN").set("ORKA_TOKEN_FILE", &path("token-fifo"))
        }
        "secret-file-missing" => Case::new().unset("ORKA_TOKEN").set("ORKA_TOKEN_FILE", "/nonexistent"),
        "token-with-line-break" => Case::new().set("ORKA_TOKEN", "line-break-s3cret\nsecond-line"),
        "app-key-not-rsa" => Case::new()
            .unset("GITHUB_PAT")
            .set("GITHUB_APP_ID", "1")
            .set("GITHUB_APP_INSTALLATION_ID", "2")
            .set("GITHUB_APP_PRIVATE_KEY", EC_KEY),
        "app-key-not-pem" => Case::new()
            .unset("GITHUB_PAT")
            .set("GITHUB_APP_ID", "1")
            .set("GITHUB_APP_INSTALLATION_ID", "2")
            .set("GITHUB_APP_PRIVATE_KEY", "not-a-key"),
        "url-with-credentials" => Case::new().set("GITHUB_URL", "https://user:url-pw-s3cret@github.com/acme"),
        "config-file-syntax" => {
            std::fs::write(dir.join("c.toml"), "orka_vm_config = \"toml-line-s3cret\" junk\n").unwrap();
            Case::new().args(&["--config", &path("c.toml"), "check"])
        }
        "config-file-unknown-key" => {
            std::fs::write(dir.join("c.toml"), "orka_tokn = \"x\"\n").unwrap();
            Case::new().args(&["--config", &path("c.toml"), "check"])
        }
        "config-file-fifo" => {
            mkfifo(&dir.join("c.toml"));
            Case::new().args(&["--config", &path("c.toml"), "check"])
        }
        "usage-error" => Case::new().args(&["serve"]),
        other => {
            panic!("docs/operations.md lists bad-input class {other:?} but this test has no case for it")
        }
    }
}

/// Runs the binary in `dir` with exactly `env`, bounded in time (a blocked read fails).
async fn run(dir: &Path, case: &Case) -> Output {
    let child = Command::new(BIN)
        .args(&case.args)
        .current_dir(dir)
        .env_clear()
        .envs(case.env.iter().map(|(k, v)| (k, v)))
        .kill_on_drop(true)
        .output();
    tokio::time::timeout(Duration::from_secs(30), child).await.expect("exited within 30 s").unwrap()
}

/// The table rows: (class, exit code, message fragments).
fn table_rows() -> Vec<(String, i32, Vec<String>)> {
    let path = format!("{}/../../docs/operations.md", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(path).unwrap();
    let section = text.split("## Bad input").nth(1).expect("a Bad input section");
    let section = section.split("\n## ").next().unwrap();
    section
        .lines()
        .filter(|l| l.starts_with("| `"))
        .map(|line| {
            let cells: Vec<&str> = line.trim_matches('|').split(" | ").map(str::trim).collect();
            assert_eq!(cells.len(), 4, "row {line:?}");
            let class = cells[0].trim_matches('`').to_owned();
            let exit = cells[2].parse().unwrap_or_else(|_| panic!("exit code of {line:?}"));
            let fragments = cells[3].split('`').skip(1).step_by(2).map(str::to_owned).collect();
            (class, exit, fragments)
        })
        .collect()
}

#[tokio::test]
async fn every_bad_input_class_behaves_as_documented() {
    let rows = table_rows();
    assert!(rows.len() >= 10, "the table lost rows: {}", rows.len());
    let mut failures = Vec::new();
    for (class, exit, fragments) in rows {
        let dir = tempfile::tempdir().unwrap();
        let case = case(&class, dir.path());
        let output = run(dir.path(), &case).await;
        let text =
            format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
        if output.status.code() != Some(exit) {
            failures.push(format!("{class}: exit {:?}, documented {exit}\n{text}", output.status.code()));
        }
        for fragment in &fragments {
            if !text.contains(fragment.as_str()) {
                failures.push(format!("{class}: output lacks {fragment:?}\n{text}"));
            }
        }
        for secret in SECRETS {
            if text.contains(secret) {
                failures.push(format!("{class}: a secret leaked\n{text}"));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n---\n"));
}
