//! The human-readable form of a [`StatusReport`], as `orka-runner-controller status`
//! prints it.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use super::StatusReport;

/// One block per scale set: role, jobs, runners, VMs and the waiting jobs grouped by
/// reason.
pub fn render(report: &StatusReport) -> String {
    let mut out = String::new();
    if report.scale_sets.is_empty() {
        out.push_str("no scale set configured\n");
    }
    for s in &report.scale_sets {
        let _ = writeln!(out, "scale set {}: {}", s.name, s.phase);
        let _ = writeln!(out, "  runners: min {}, max {}", s.min_runners, s.max_runners);
        if let Some(jobs) = &s.jobs {
            let _ = writeln!(
                out,
                "  jobs: {} assigned, {} running; GitHub runners: {} registered, {} busy, {} idle",
                jobs.assigned, jobs.running, jobs.registered_runners, jobs.busy_runners, jobs.idle_runners
            );
        }
        if !s.runners_by_state.is_empty() {
            let by_state: Vec<String> = s.runners_by_state.iter().map(|(k, v)| format!("{v} {k}")).collect();
            let _ = writeln!(out, "  this process's runners: {}", by_state.join(", "));
        }
        if let Some(nodes) = &s.orka_nodes {
            let _ = writeln!(
                out,
                "  Orka nodes: {} of {} ready, {} CPU cores free",
                nodes.ready, nodes.total, nodes.available_cpu
            );
        }
        if let Some(error) = &s.orka_nodes_error {
            let _ = writeln!(out, "  Orka nodes: unknown ({error})");
        }
        if s.orka_capacity_waits > 0 {
            let _ = writeln!(out, "  Orka: {} runner(s) waiting for capacity", s.orka_capacity_waits);
        }
        if let Some(refused) = &s.refused_runner_version {
            let _ = writeln!(out, "  runner version {refused} refused by GitHub");
        }
        if s.github_rate_limited {
            let _ = writeln!(out, "  GitHub rate limit: requests are waiting");
        }
        for vm in &s.vms {
            let job = vm.job.as_ref().map(job_text).unwrap_or_default();
            let adopted = if vm.adopted { ", adopted" } else { "" };
            let _ = writeln!(
                out,
                "  vm {}: {} for {}s, age {}s{adopted}{job}",
                vm.name, vm.state, vm.in_state_seconds, vm.age_seconds
            );
        }
        if s.waiting.is_empty() {
            out.push_str("  no job waiting\n");
        } else {
            let mut by_reason: BTreeMap<&str, usize> = BTreeMap::new();
            for w in &s.waiting {
                *by_reason.entry(w.reason.as_str()).or_default() += 1;
            }
            for (reason, count) in by_reason {
                let _ = writeln!(out, "  waiting: {count} × {reason}");
            }
        }
    }
    out
}

/// `, job <name> (<repository>, <workflow>, run <id>, job id <id>)`, leaving out what the
/// messages did not say.
fn job_text(job: &super::VmJob) -> String {
    let mut details: Vec<String> = Vec::new();
    if !job.repository.is_empty() {
        details.push(job.repository.clone());
    }
    if !job.workflow.is_empty() {
        details.push(job.workflow.clone());
    }
    if job.run_id != 0 {
        details.push(format!("run {}", job.run_id));
    }
    details.push(format!("job id {}", job.id));
    let name = if job.name.is_empty() { String::new() } else { format!("{:?} ", job.name) };
    format!(", job {name}({})", details.join(", "))
}

#[cfg(test)]
mod tests {
    use super::super::reasons::{WaitReason, WaitingJob};
    use super::super::{JobCounts, ScaleSetStatus};
    use super::*;

    #[test]
    fn waiting_jobs_are_grouped_by_reason() {
        let report = StatusReport {
            version: "1".into(),
            scale_sets: vec![ScaleSetStatus {
                name: "mac".into(),
                role: "active".into(),
                phase: "active, serving".into(),
                min_runners: 0,
                max_runners: 1,
                jobs: Some(JobCounts {
                    assigned: 3,
                    running: 1,
                    registered_runners: 1,
                    busy_runners: 1,
                    idle_runners: 0,
                }),
                runners_by_state: BTreeMap::from([("busy".to_owned(), 1)]),
                vms: vec![super::super::VmEntry {
                    name: "mac-ab12c".into(),
                    state: "busy".into(),
                    age_seconds: 90,
                    in_state_seconds: 30,
                    adopted: false,
                    job: Some(super::super::VmJob {
                        id: "j1".into(),
                        run_id: 7,
                        repository: "acme/app".into(),
                        workflow: "ci.yml@main".into(),
                        name: "build".into(),
                    }),
                }],
                orka_capacity_waits: 0,
                orka_nodes: Some(super::super::OrkaNodes { ready: 1, total: 2, available_cpu: 4 }),
                orka_nodes_error: None,
                runner_version: None,
                refused_runner_version: None,
                github_rate_limited: false,
                waiting: vec![WaitingJob { reason: WaitReason::MaxRunnersReached, runner: None }; 2],
            }],
        };
        let text = render(&report);
        assert!(text.starts_with("scale set mac: active, serving\n"), "{text}");
        assert!(text.contains("  jobs: 3 assigned, 1 running"), "{text}");
        assert!(text.contains("  Orka nodes: 1 of 2 ready, 4 CPU cores free\n"), "{text}");
        assert!(text.contains("  waiting: 2 × MAX_RUNNERS reached\n"), "{text}");
        assert!(
            text.contains(
                "  vm mac-ab12c: busy for 30s, age 90s, job \"build\" (acme/app, ci.yml@main, run 7, job id j1)\n"
            ),
            "{text}"
        );
    }

    #[test]
    fn nothing_waiting_says_so() {
        let report = StatusReport { version: "1".into(), scale_sets: vec![] };
        assert_eq!(render(&report), "no scale set configured\n");
    }
}
