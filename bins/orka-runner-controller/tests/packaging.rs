//! Hygiene checks of the packaging against the binary's own constants: the Dockerfile,
//! the systemd unit and the Kubernetes manifests must agree with what the binary does
//! (exit codes, endpoints, default drain time, active/standby).

use std::time::Duration;

use orka_runner_controller::app::EXIT_CONFIG;
use orka_runner_controller::config::settings;
use orka_runner_controller::config::values::parse_go_duration;

fn file(path: &str) -> String {
    let full = format!("{}/../../{path}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&full).unwrap_or_else(|e| panic!("cannot read {full}: {e}"))
}

/// Lines that are not comments.
fn code(text: &str) -> Vec<&str> {
    text.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')).collect()
}

fn default_drain() -> Duration {
    let setting = settings::find("SHUTDOWN_DRAIN_TIMEOUT").unwrap();
    parse_go_duration(setting.default).unwrap()
}

#[test]
fn the_dockerfile_is_multi_stage_locked_and_non_root() {
    let text = file("deploy/Dockerfile");
    let lines = code(&text);
    assert_eq!(lines.iter().filter(|l| l.starts_with("FROM ")).count(), 2, "builder + runtime");
    assert!(text.contains("cargo build --release --locked -p orka-runner-controller"));
    let user = lines.iter().rev().find(|l| l.starts_with("USER ")).expect("a USER line");
    assert!(!user.contains("root") && !user.ends_with(" 0") && !user.contains(" 0:"), "{user}");
    let entrypoint = lines.iter().find(|l| l.starts_with("ENTRYPOINT")).expect("an ENTRYPOINT");
    assert!(entrypoint.ends_with("orka-runner-controller\"]"), "no subcommand means run: {entrypoint}");
    assert!(lines.contains(&"WORKDIR /"), "a Go-style /.env mount must be read");
}

#[test]
fn the_systemd_unit_matches_exit_codes_and_drain() {
    let text = file("deploy/orka-runner-controller.service");
    let lines = code(&text);
    assert!(
        lines.contains(&format!("RestartPreventExitStatus={EXIT_CONFIG}").as_str()),
        "config errors are final"
    );
    assert!(lines.contains(&"KillSignal=SIGTERM"));
    let stop = lines.iter().find_map(|l| l.strip_prefix("TimeoutStopSec=")).expect("TimeoutStopSec");
    assert!(
        Duration::from_secs(stop.parse().unwrap()) > default_drain(),
        "stop timeout must exceed the drain"
    );
    for credential in lines.iter().filter_map(|l| l.strip_prefix("Environment=")) {
        let name = credential.split('=').next().unwrap();
        assert!(settings::is_known_variable(name), "{name} is not a setting of the binary");
    }
}

#[test]
fn the_kubernetes_deployment_is_active_standby_with_probes() {
    let text = file("deploy/kubernetes/deployment.yaml");
    assert!(text.contains("replicas: 2"));
    assert!(
        text.contains("type: RollingUpdate") && text.contains("maxUnavailable: 0"),
        "a standby is Ready, so a rolling update never stops job intake"
    );
    assert!(text.contains("path: /healthz") && text.contains("path: /readyz"));
    let grace = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("terminationGracePeriodSeconds: "))
        .expect("terminationGracePeriodSeconds");
    let config = file("deploy/kubernetes/configmap.yaml");
    let drain = config
        .lines()
        .find_map(|l| l.trim().strip_prefix("SHUTDOWN_DRAIN_TIMEOUT: "))
        .map_or_else(default_drain, |v| parse_go_duration(v.trim_matches('"')).unwrap());
    assert!(Duration::from_secs(grace.parse().unwrap()) > drain, "the grace period must exceed the drain");
    assert!(config.contains("ENABLE_HEALTH_ENDPOINTS: \"true\""), "probes need the endpoints");
    assert!(config.contains("METRICS_ADDR: \":8080\"") && text.contains("containerPort: 8080"));
    // Every variable the manifests set is one the binary reads.
    for line in config.lines().chain(text.lines()) {
        let line = line.trim();
        let name = line.strip_prefix("- name: ").or_else(|| {
            let (key, _) = line.split_once(": ")?;
            key.chars().all(|c| c.is_ascii_uppercase() || c == '_').then_some(key)
        });
        if let Some(name) = name.filter(|n| n.chars().all(|c| c.is_ascii_uppercase() || c == '_')) {
            assert!(settings::is_known_variable(name), "{name} is not a setting of the binary");
        }
    }
}
