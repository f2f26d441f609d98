//! The operator docs keep up with the binary: every accepted setting is in the
//! configuration reference with its real default, and every metric is in the metrics
//! reference.

use std::time::Duration;

use github_scaleset::JobMessage;
use orka_runner_controller::config::settings::{self, SCALE_SET_KEYS, SETTINGS};
use orka_runner_controller::metrics::{Api, ApiStatus, Metrics, ProvisionFailure, ScaleSetIdentity, Stage};

fn doc(name: &str) -> String {
    let path = format!("{}/../../docs/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {path}: {e}"))
}

/// The cells of the table row whose first cell is `` `key` ``.
fn row<'a>(text: &'a str, key: &str) -> Option<Vec<&'a str>> {
    let start = format!("| `{key}` |");
    let line = text.lines().find(|l| l.starts_with(&start))?;
    Some(line.trim_matches('|').split(" | ").map(str::trim).collect())
}

#[test]
fn the_configuration_reference_documents_every_setting_with_its_default() {
    let text = doc("configuration.md");
    let mut missing = Vec::new();
    for setting in SETTINGS {
        match row(&text, setting.name) {
            None => missing.push(format!("{}: no table row", setting.name)),
            Some(cells) => {
                let default = cells.get(1).copied().unwrap_or_default().replace('`', "");
                if !default.contains(setting.default) {
                    missing.push(format!(
                        "{}: documented default {default:?}, binary uses {:?}",
                        setting.name, setting.default
                    ));
                }
            }
        }
    }
    for name in settings::known_variable_names() {
        if !text.contains(&format!("`{name}`")) {
            missing.push(format!("{name}: not mentioned"));
        }
    }
    for key in SCALE_SET_KEYS {
        if row(&text, key).is_none() {
            missing.push(format!("[[scale_sets]] key {key}: no table row"));
        }
    }
    assert!(missing.is_empty(), "docs/configuration.md is out of date:\n{}", missing.join("\n"));
}

#[test]
fn the_metrics_reference_documents_every_metric() {
    let metrics = Metrics::new();
    // Touch every family so each appears in the exposition.
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
            JobMessage::Started(github_scaleset::JobStarted { job: job.clone(), ..Default::default() }),
            JobMessage::Completed(github_scaleset::JobCompleted { job, ..Default::default() }),
        ],
    );
    metrics.runner_retired("mac", "unreachable");
    metrics.set_runner_phases("mac", []);
    metrics.set_vms_owned("mac", 0);
    metrics.set_session_held("mac", false);
    metrics.set_waiting_for_orka_capacity("mac", false);
    metrics.set_runner_version_outdated("mac", false);
    metrics.set_role("mac", "standby");
    metrics.poison_message("mac");
    metrics.provision_failed("mac", ProvisionFailure::Other);
    metrics.observe_api_request(Api::Orka, "list_vms", ApiStatus::Http(500), Duration::ZERO);
    metrics.observe_stage("mac", Stage::VmDeployed, Duration::ZERO);
    let decision = reconciler::decision::Decision {
        action: reconciler::decision::Action::Delete,
        reason: reconciler::decision::Reason::NoRunner,
    };
    metrics.record_reconcile_decision("mac", &decision);
    metrics.set_github_rate_limit("core", 4000, 5000);
    metrics.github_rate_limit_wait("registration token", "primary");
    let text = doc("metrics.md");
    let exposition = metrics.encode();
    let names: Vec<&str> =
        exposition.lines().filter_map(|l| l.strip_prefix("# TYPE ")?.split(' ').next()).collect();
    assert_eq!(names.len(), 36, "{exposition}");
    let missing: Vec<&str> =
        names.iter().copied().filter(|name| !text.contains(&format!("`{name}"))).collect();
    assert!(missing.is_empty(), "docs/metrics.md misses: {missing:?}");
    for stage in Stage::ALL {
        assert!(text.contains(&format!("`{}`", stage.label())), "stage {} undocumented", stage.label());
    }
    // Every label name of the `gha_*` set is documented.
    let gha_labels: std::collections::BTreeSet<&str> = exposition
        .lines()
        .filter(|l| l.starts_with("gha_"))
        .filter_map(|l| l.split_once('{')?.1.split_once('}').map(|(labels, _)| labels))
        .flat_map(|labels| labels.split(',').filter_map(|pair| pair.split_once('=').map(|(k, _)| k)))
        .filter(|k| *k != "le")
        .collect();
    assert!(gha_labels.len() >= 7, "{gha_labels:?}");
    for label in gha_labels {
        assert!(text.contains(&format!("`{label}`")), "gha_* label {label} undocumented");
    }
}

#[test]
fn the_migration_guide_lists_every_carried_over_and_new_setting() {
    let text = doc("migration.md");
    let missing: Vec<&str> =
        SETTINGS.iter().map(|s| s.name).filter(|name| !text.contains(&format!("`{name}`"))).collect();
    assert!(missing.is_empty(), "docs/migration.md misses: {missing:?}");
}
