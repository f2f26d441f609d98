//! The one-shot commands that talk to the real services: `check` and `reconcile`.

use anyhow::Context;
use github_scaleset::ScaleSetApi;
use reconciler::Mode;

use crate::check::{CheckReport, Outcome};
use crate::config::{Config, RunnerVersion};

use super::Clients;
use super::runtime::{ClientSet, build_runtime, error_chain};

/// `check`: GitHub authentication, the runner version (the latest-release lookup when not
/// pinned), scale sets resolvable, Orka reachable with a valid
/// token, VM configs present. Each item passes or fails on its own.
pub async fn check_connectivity(config: &Config, report: &mut CheckReport) -> anyhow::Result<()> {
    let clients = Clients::build(config)?;
    let github_ok = match clients.github.get_runner_group("default").await {
        Ok(_) => {
            report.push(
                "GitHub authentication",
                Outcome::Pass(format!("authenticated to {}", config.github.url)),
            );
            true
        }
        Err(e) => {
            report.push("GitHub authentication", Outcome::Fail(error_chain(&e)));
            false
        }
    };
    // The release lookup goes through the same transport (proxy, CA bundle) as `run` uses.
    let version = match &config.github.runner_version {
        RunnerVersion::Pinned(v) => Outcome::Pass(format!("pinned to {v} (GITHUB_RUNNER_VERSION)")),
        RunnerVersion::Latest => match crate::runner_version::resolve(config, &clients.github).await {
            Ok(v) => Outcome::Pass(format!("latest actions/runner release is {v}")),
            Err(e) => Outcome::Fail(format!("{e:#}")),
        },
    };
    report.push("runner version", version);
    for scale_set in &config.scale_sets {
        let item = format!("scale set {}", scale_set.name);
        if !github_ok {
            report.push(&item, Outcome::Skipped("GitHub authentication failed".into()));
            continue;
        }
        let group = i64::try_from(scale_set.runner_group_id).unwrap_or(i64::MAX);
        match clients.github.get_scale_set(group, &scale_set.name).await {
            Ok(Some(found)) => report.push(&item, Outcome::Pass(format!("exists (id {})", found.id))),
            Ok(None) => report.push(&item, Outcome::Pass("absent; `run` will create it".into())),
            Err(e) => report.push(&item, Outcome::Fail(error_chain(&e))),
        }
    }
    for (namespace, orka) in &clients.orka {
        match orka.ping().await {
            Ok(_) => report
                .push(format!("Orka reachable ({namespace})"), Outcome::Pass(config.orka.url.to_string())),
            Err(e) => {
                report.push(format!("Orka reachable ({namespace})"), Outcome::Fail(error_chain(&e)));
                continue;
            }
        }
        match orka.check_token().await {
            Ok(()) => report.push(format!("Orka token ({namespace})"), Outcome::Pass("accepted".into())),
            Err(e) => {
                report.push(format!("Orka token ({namespace})"), Outcome::Fail(error_chain(&e)));
                continue;
            }
        }
        match orka.list_vm_configs().await {
            Ok(configs) => {
                for scale_set in config.scale_sets.iter().filter(|s| &s.namespace == namespace) {
                    let item = format!("VM config {} ({})", scale_set.vm_config, scale_set.name);
                    if configs.iter().any(|c| c.name == scale_set.vm_config) {
                        report.push(&item, Outcome::Pass("exists".into()));
                    } else {
                        report.push(&item, Outcome::Fail("no such VM config in Orka".into()));
                    }
                }
            }
            Err(e) => report.push(format!("VM configs ({namespace})"), Outcome::Fail(error_chain(&e))),
        }
    }
    Ok(())
}

/// `reconcile [--dry-run]`: one pass per scale set, printing the decision table.
pub async fn reconcile_once(config: &Config, dry_run: bool) -> anyhow::Result<()> {
    let clients = Clients::build(config)?;
    let version = match &config.github.runner_version {
        RunnerVersion::Pinned(v) => v.clone(),
        RunnerVersion::Latest => "unused".to_owned(),
    };
    let mode = if dry_run { Mode::DryRun } else { Mode::Act };
    for scale_set in &config.scale_sets {
        let group = i64::try_from(scale_set.runner_group_id).context("runner group id")?;
        let Some(found) = clients.github.get_scale_set(group, &scale_set.name).await? else {
            println!("scale set {}: not registered with GitHub; nothing to reconcile", scale_set.name);
            continue;
        };
        // Acting needs the scale set's session, as the controller does: while another
        // process holds it (a live controller), reconciling here would race it.
        let session = if dry_run {
            None
        } else {
            match clients.github.create_session(found.id, &super::owner_name()).await {
                Ok(session) => Some(session),
                Err(github_scaleset::ScaleSetError::SessionConflict) => anyhow::bail!(
                    "scale set {}: another process holds its message session (a running controller?); refusing to reconcile while it serves the scale set — stop it first, or use --dry-run to only look",
                    scale_set.name
                ),
                Err(e) => {
                    return Err(e).with_context(|| {
                        format!("scale set {}: acquiring its message session", scale_set.name)
                    });
                }
            }
        };
        let set = ClientSet {
            vms: clients.orka_for(scale_set),
            github: clients.github.clone(),
            shell: clients.shell.clone(),
            probe_shell: clients.probe_shell.clone(),
            releases: clients.github.clone(),
        };
        let runtime = build_runtime(&set, config, scale_set, found.id, &version, None);
        let report = runtime.reconciler.reconcile_once(mode).await;
        let report = match report {
            Ok(report) => report,
            Err(e) => {
                if let Some(session) = &session {
                    let _ = clients.github.delete_session(session).await;
                }
                return Err(e.into());
            }
        };
        println!(
            "scale set {} (id {}){}",
            scale_set.name,
            found.id,
            if dry_run { " — dry run, nothing changed" } else { "" }
        );
        println!("{:<32} {:<9} {:<14} {:<22} evidence", "VM", "status", "action", "reason");
        for row in &report.rows {
            println!("{}", decision_table_line(row));
        }
        if !report.registrations_removed.is_empty() {
            let verb = if dry_run { "would remove" } else { "removed" };
            println!("{verb} registrations without a VM: {}", report.registrations_removed.join(", "));
        }
        if !dry_run {
            runtime.fleet.drain(config.shutdown_drain_timeout).await;
        }
        if let Some(session) = session
            && let Err(e) = clients.github.delete_session(&session).await
        {
            tracing::warn!(scale_set = %scale_set.name, error = &e as &dyn std::error::Error, "releasing the message session failed; it expires by itself");
        }
    }
    Ok(())
}

/// One VM's line of the `reconcile` table: name, Orka status, action, reason and the
/// evidence as its one-line label (`orka=… github=… probe=… strikes=…`), never `Debug`.
fn decision_table_line(row: &reconciler::DecisionRow) -> String {
    format!(
        "{:<32} {:<9} {:<14} {:<22} {}",
        row.vm,
        row.status.to_string(),
        row.action_label(),
        row.reason_label(),
        row.evidence_label()
    )
}

#[cfg(test)]
mod tests {
    use orka_client::VmStatus;
    use reconciler::{DecisionRow, Evidence, OrkaEvidence, ProbeEvidence, RunnerEvidence};

    use super::decision_table_line;

    fn row(evidence: Option<Evidence>) -> DecisionRow {
        DecisionRow {
            vm: "ghr-abc12".to_owned(),
            status: VmStatus::Running,
            evidence,
            decision: None,
            applied: false,
        }
    }

    #[test]
    fn the_table_prints_the_evidence_label_not_its_debug_form() {
        let evidence = Evidence {
            orka: OrkaEvidence::Running,
            runner: RunnerEvidence::Idle,
            probe: ProbeEvidence::Unreachable,
            previous_probe_failures: 1,
            job_running: false,
        };
        let line = decision_table_line(&row(Some(evidence)));
        assert!(line.starts_with("ghr-abc12 "), "{line}");
        assert!(line.ends_with("orka=running github=idle probe=unreachable strikes=1"), "{line}");
        assert!(!line.contains("Evidence"), "Debug form leaked: {line}");
        assert!(!line.contains("OrkaEvidence"), "Debug form leaked: {line}");
    }

    #[test]
    fn a_row_left_to_the_fleet_says_so() {
        let line = decision_table_line(&row(None));
        assert!(line.contains("tracked"), "{line}");
        assert!(line.ends_with("tracked by the fleet"), "{line}");
    }
}
