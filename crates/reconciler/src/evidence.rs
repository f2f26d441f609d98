//! Gathering the evidence about one VM: its Orka status, the GitHub runner of the same
//! name, and an SSH probe — each with a deadline, an error kept as evidence rather than
//! raised. The probe runs only when the decision needs it (a `Running` VM whose runner
//! GitHub knows), so a VM without a registration is never SSH'd into.
//!
//! Owns no decision: it produces [`Evidence`] for [`crate::decide`].

use std::time::Duration;

use runner_core::{RunnerRecord, RunnerState, ScaleSetApi};
use runner_core::{ShellError, SshTarget, VmShell};
use runner_core::{Vm, VmStatus};

use crate::decision::{Evidence, OrkaEvidence, ProbeEvidence, RunnerEvidence};

/// Deadlines of the evidence calls.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Deadlines {
    pub(crate) github: Duration,
    pub(crate) probe: Duration,
}

/// Maps Orka's view; `age` is how long this VM has been seen in its current pending state.
pub(crate) fn orka_evidence(vm: &Vm, age: Duration, deploy_deadline: Duration) -> OrkaEvidence {
    match vm.status {
        VmStatus::Failed => OrkaEvidence::Failed,
        VmStatus::Running if vm.ssh_endpoint().is_some() => OrkaEvidence::Running,
        // Running without an SSH endpoint cannot be probed or used: give it the deploy
        // deadline, then treat it as failed.
        VmStatus::Running if age >= deploy_deadline => OrkaEvidence::Failed,
        VmStatus::Running | VmStatus::Pending | VmStatus::Other(_) => OrkaEvidence::Pending { age },
    }
}

/// Maps a runner record.
pub(crate) fn runner_evidence(record: Option<&RunnerRecord>) -> RunnerEvidence {
    match record.map(RunnerRecord::state) {
        None => RunnerEvidence::Absent,
        Some(RunnerState::Idle) => RunnerEvidence::Idle,
        Some(RunnerState::Busy) => RunnerEvidence::Busy,
        Some(RunnerState::Offline) => RunnerEvidence::Offline,
        Some(RunnerState::Unknown) => RunnerEvidence::Unknown,
    }
}

/// Everything known about one VM, plus the runner record (needed to adopt).
pub(crate) async fn gather(
    vm: &Vm,
    orka: OrkaEvidence,
    previous_probe_failures: u32,
    github: &dyn ScaleSetApi,
    shell: &dyn VmShell,
    deadlines: Deadlines,
) -> (Evidence, Option<RunnerRecord>) {
    let mut evidence = Evidence {
        orka,
        runner: RunnerEvidence::Unknown,
        probe: ProbeEvidence::NotProbed,
        previous_probe_failures,
    };
    if orka != OrkaEvidence::Running {
        return (evidence, None);
    }
    let record = match tokio::time::timeout(deadlines.github, github.get_runner_by_name(&vm.name)).await {
        Ok(Ok(record)) => record,
        Ok(Err(e)) => {
            tracing::warn!(vm = %vm.name, error = &e as &dyn std::error::Error, "runner lookup failed");
            evidence.runner = RunnerEvidence::LookupError;
            return (evidence, None);
        }
        Err(_) => {
            tracing::warn!(vm = %vm.name, "runner lookup timed out");
            evidence.runner = RunnerEvidence::LookupError;
            return (evidence, None);
        }
    };
    evidence.runner = runner_evidence(record.as_ref());
    if record.is_none() {
        return (evidence, None);
    }
    let Some((host, port)) = vm.ssh_endpoint() else { return (evidence, record) };
    let target = SshTarget { host, port };
    evidence.probe = match tokio::time::timeout(deadlines.probe, shell.probe(&target)).await {
        Ok(Ok(report)) => ProbeEvidence::Report(report),
        Ok(Err(ShellError::AuthFailed { .. })) => ProbeEvidence::AuthFailed,
        Ok(Err(e)) => {
            tracing::info!(vm = %vm.name, error = &e as &dyn std::error::Error, "probe failed");
            ProbeEvidence::Unreachable
        }
        Err(_) => {
            tracing::info!(vm = %vm.name, after = ?deadlines.probe, "probe timed out");
            ProbeEvidence::Unreachable
        }
    };
    (evidence, record)
}

/// Whether the probe failed in a way that counts as a strike.
pub(crate) fn probe_failed(probe: &ProbeEvidence) -> bool {
    match probe {
        ProbeEvidence::Unreachable => true,
        ProbeEvidence::Report(r) => {
            use runner_core::Tri::Unknown;
            r.setup_complete == Unknown || r.run_complete == Unknown || r.runner_alive == Unknown
        }
        ProbeEvidence::AuthFailed | ProbeEvidence::NotProbed => false,
    }
}
