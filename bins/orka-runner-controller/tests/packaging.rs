//! Hygiene checks of the packaging against the binary's own constants: the Dockerfile,
//! the systemd unit and the Kubernetes manifests must agree with what the binary does
//! (exit codes, endpoints, default drain time, rolling upgrades), and the monitoring
//! files name only metrics the controller exports. Rendering and schema validation of the
//! manifests, the Dockerfile lint and `promtool` run in .ci/run.

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
    assert!(
        text.contains("cargo build --release --locked --no-default-features -p orka-runner-controller"),
        "the image is the production build, without the demo's test kit"
    );
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
fn the_kubernetes_deployment_rolls_with_a_surge_and_has_probes() {
    let text = file("deploy/kubernetes/base/deployment.yaml");
    assert!(text.contains("replicas: 2"));
    let strategy: Vec<&str> = code(&text).into_iter().skip_while(|l| *l != "strategy:").take(5).collect();
    assert_eq!(
        strategy,
        ["strategy:", "type: RollingUpdate", "rollingUpdate:", "maxSurge: 1", "maxUnavailable: 0"],
        "upgrades start a standby before stopping a replica"
    );
    assert!(text.contains("path: /healthz") && text.contains("path: /readyz"));
    let grace = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("terminationGracePeriodSeconds: "))
        .expect("terminationGracePeriodSeconds");
    let config = file("deploy/kubernetes/base/configmap.yaml");
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

/// Every sample name the controller can export (`_total`, `_bucket`, `_sum`, `_count`
/// included), with every family touched once.
fn exported_metric_names() -> std::collections::BTreeSet<String> {
    use orka_runner_controller::metrics::{
        Api, ApiStatus, Metrics, ProvisionFailure, ScaleSetIdentity, Stage,
    };
    let metrics = Metrics::new();
    metrics.describe_scale_set(ScaleSetIdentity { name: "mac".into(), ..Default::default() }, 0, 1);
    metrics.record_statistics("mac", &Default::default());
    let now = Some(time::OffsetDateTime::UNIX_EPOCH);
    let job = github_scaleset::JobInfo {
        scale_set_assign_time: now,
        runner_assign_time: now,
        finish_time: now,
        ..Default::default()
    };
    metrics.record_job_messages(
        "mac",
        &[
            github_scaleset::JobMessage::Started(github_scaleset::JobStarted {
                job: job.clone(),
                ..Default::default()
            }),
            github_scaleset::JobMessage::Completed(github_scaleset::JobCompleted {
                job,
                ..Default::default()
            }),
        ],
    );
    metrics.set_runner_phases("mac", []);
    metrics.set_vms_owned("mac", 0);
    metrics.set_session_held("mac", false);
    metrics.set_role("mac", "active");
    metrics.poison_message("mac");
    metrics.set_waiting_for_orka_capacity("mac", false);
    metrics.set_runner_version_outdated("mac", false);
    metrics.set_github_rate_limit("core", 4000, 5000);
    metrics.github_rate_limit_wait("registration token", "primary");
    metrics.provision_failed("mac", ProvisionFailure::Other);
    metrics.runner_retired("mac", "unreachable");
    metrics.observe_api_request(Api::Orka, "list_vms", ApiStatus::Http(500), Duration::ZERO);
    metrics.observe_stage("mac", Stage::VmDeployed, Duration::ZERO);
    let decision = reconciler::decision::Decision {
        action: reconciler::decision::Action::Delete,
        reason: reconciler::decision::Reason::NoRunner,
    };
    metrics.record_reconcile_decision("mac", &decision);
    metrics
        .encode()
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.split(['{', ' ']).next())
        .map(str::to_owned)
        .collect()
}

/// The metric names a PromQL expression uses: identifiers of our three name sets.
fn metric_names_in(expr: &str) -> Vec<String> {
    expr.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
        .filter(|word| {
            ["gha_", "orka_runner_controller_", "runner_scale_set_"].iter().any(|p| word.starts_with(p))
        })
        .map(str::to_owned)
        .collect()
}

/// Fails for every name in `used` the controller does not export.
fn assert_exported(source: &str, used: &[String]) {
    let exported = exported_metric_names();
    let unknown: Vec<&String> = used.iter().filter(|n| !exported.contains(*n)).collect();
    assert!(unknown.is_empty(), "{source} uses metrics the controller does not export: {unknown:?}");
}

#[test]
fn the_alert_rules_parse_and_name_only_exported_metrics() {
    use yaml_rust2::{Yaml, YamlLoader};
    let text = file("deploy/monitoring/alerts.yaml");
    let docs = YamlLoader::load_from_str(&text).expect("alerts.yaml is YAML");
    let groups = docs[0]["groups"].as_vec().expect("a `groups` list");
    let mut used = Vec::new();
    let mut alerts = Vec::new();
    for group in groups {
        assert!(group["name"].as_str().is_some(), "every group has a name");
        for rule in group["rules"].as_vec().expect("every group has `rules`") {
            let alert = rule["alert"].as_str().expect("alert rules only");
            let expr = rule["expr"].as_str().unwrap_or_else(|| panic!("{alert}: no expr"));
            assert!(matches!(rule["for"], Yaml::BadValue | Yaml::String(_)), "{alert}: `for` is a duration");
            let severity = rule["labels"]["severity"].as_str();
            assert!(matches!(severity, Some("warning" | "critical")), "{alert}: severity {severity:?}");
            assert!(rule["annotations"]["summary"].as_str().is_some(), "{alert}: no summary");
            let names = metric_names_in(expr);
            assert!(!names.is_empty(), "{alert}: its expression names none of our metrics");
            used.extend(names);
            alerts.push(alert.to_owned());
        }
    }
    // The alerts the operations guide promises.
    for wanted in ["NotServed", "RateLimitLow", "VmsUnreachable", "VersionRefused", "ProvisioningFailures"] {
        assert!(alerts.iter().any(|a| a.contains(wanted)), "no *{wanted}* alert in {alerts:?}");
    }
    assert_exported("alerts.yaml", &used);
}

#[test]
fn the_dashboard_queries_name_only_exported_metrics() {
    let text = file("deploy/monitoring/grafana-dashboard.json");
    let dashboard: serde_json::Value = serde_json::from_str(&text).expect("the dashboard is JSON");
    let panels = dashboard["panels"].as_array().expect("panels");
    assert!(panels.len() >= 8, "{} panels", panels.len());
    let mut used = Vec::new();
    for panel in panels {
        let title = panel["title"].as_str().expect("every panel has a title");
        let targets = panel["targets"].as_array().unwrap_or_else(|| panic!("{title}: no targets"));
        for target in targets {
            let expr = target["expr"].as_str().unwrap_or_else(|| panic!("{title}: a target without expr"));
            let names = metric_names_in(expr);
            assert!(!names.is_empty(), "{title}: {expr} names none of our metrics");
            used.extend(names);
        }
    }
    // Template variables query metrics too.
    for variable in dashboard["templating"]["list"].as_array().into_iter().flatten() {
        if let Some(query) = variable["query"].as_str() {
            used.extend(metric_names_in(query));
        }
    }
    for family in ["gha_", "orka_runner_controller_"] {
        assert!(used.iter().any(|n| n.starts_with(family)), "the dashboard shows no {family}* metric");
    }
    assert_exported("grafana-dashboard.json", &used);
}

#[test]
fn metric_names_are_found_in_promql() {
    let names = metric_names_in(
        "sum by (le) (rate(gha_job_startup_duration_seconds_bucket{name=~\"$x\"}[5m])) / orka_runner_controller_provisions_total",
    );
    assert_eq!(names, ["gha_job_startup_duration_seconds_bucket", "orka_runner_controller_provisions_total"]);
}
