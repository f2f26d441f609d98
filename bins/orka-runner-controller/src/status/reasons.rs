//! Why a job waits: a pure function of what the process knows about one scale set.
//!
//! Binding a job to a runner is nominal (any idle runner of the scale set may take any
//! job), so a waiting job is explained by pairing the waiting jobs with the runners that
//! could take them, most advanced runner first; jobs left without a runner are explained by
//! what holds new runners back.

use provisioner::RunnerStage;
use serde::{Deserialize, Serialize};

/// The reason one job is still waiting. The serialized strings are what `status` and
/// `/status` show, and what operators and the end-to-end tests match on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum WaitReason {
    /// Another replica holds the scale set's message session and serves its jobs.
    #[serde(rename = "session held elsewhere")]
    SessionElsewhere,
    /// This process does not hold the session and is not standing by (starting, GitHub
    /// unreachable, credentials rejected, stopped): see the phase.
    #[serde(rename = "no session")]
    NoSession,
    /// GitHub's rate limit holds the controller's requests back.
    #[serde(rename = "GitHub rate limit")]
    GitHubRateLimit,
    /// GitHub refuses the runner version: new VMs are held back until a retry or a new
    /// release.
    #[serde(rename = "runner version refused")]
    RunnerVersionRefused,
    /// Orka has no room for another VM; deploys are retried with backoff.
    #[serde(rename = "Orka out of capacity")]
    OrkaOutOfCapacity,
    /// The scale set already has `MAX_RUNNERS` runners.
    #[serde(rename = "MAX_RUNNERS reached")]
    MaxRunnersReached,
    /// A runner's VM is being deployed.
    #[serde(rename = "VM deploying")]
    VmDeploying,
    /// A runner is being registered and installed in its VM.
    #[serde(rename = "runner installing")]
    RunnerInstalling,
    /// A runner waits for a provisioning slot (`MAX_CONCURRENT_PROVISIONS`).
    #[serde(rename = "waiting for a provisioning slot")]
    ProvisioningSlot,
    /// A runner is online and idle; GitHub has not started the job on it yet.
    #[serde(rename = "runner online, job not started yet")]
    RunnerOnline,
    /// No runner was asked for yet (the next plan, at the latest on the periodic tick,
    /// asks for one).
    #[serde(rename = "runner not requested yet")]
    NotRequestedYet,
}

impl WaitReason {
    /// The text shown to people (the same as the serialized form).
    pub fn as_str(self) -> &'static str {
        match self {
            WaitReason::SessionElsewhere => "session held elsewhere",
            WaitReason::NoSession => "no session",
            WaitReason::GitHubRateLimit => "GitHub rate limit",
            WaitReason::RunnerVersionRefused => "runner version refused",
            WaitReason::OrkaOutOfCapacity => "Orka out of capacity",
            WaitReason::MaxRunnersReached => "MAX_RUNNERS reached",
            WaitReason::VmDeploying => "VM deploying",
            WaitReason::RunnerInstalling => "runner installing",
            WaitReason::ProvisioningSlot => "waiting for a provisioning slot",
            WaitReason::RunnerOnline => "runner online, job not started yet",
            WaitReason::NotRequestedYet => "runner not requested yet",
        }
    }
}

/// This process's part in serving the scale set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Holds the session.
    Active,
    /// Another process holds the session.
    Standby,
    /// Neither (starting, retrying, degraded, stopped).
    None,
}

/// What the decision reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WaitInputs<'a> {
    /// This process's role for the scale set.
    pub role: Role,
    /// Jobs assigned to the scale set and not running, per the latest statistics.
    pub waiting_jobs: u32,
    /// Every runner the fleet tracks, with its stage.
    pub runners: &'a [(String, RunnerStage)],
    /// `MAX_RUNNERS` of the scale set.
    pub max_runners: u32,
    /// Runners waiting for Orka capacity now.
    pub capacity_waiting: usize,
    /// GitHub refuses the runner version.
    pub version_refused: bool,
    /// A GitHub request is waiting out a rate limit now.
    pub rate_limited: bool,
}

/// One waiting job's explanation, with the runner that will most likely take it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WaitingJob {
    /// Why it waits.
    pub reason: WaitReason,
    /// The runner it waits for, when one is on its way.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runner: Option<String>,
}

impl WaitingJob {
    fn new(reason: WaitReason, runner: Option<&str>) -> Self {
        Self { reason, runner: runner.map(str::to_owned) }
    }
}

/// How close a runner is to taking a job; `None` for runners that cannot take one (busy or
/// retiring).
fn closeness(stage: RunnerStage) -> Option<u8> {
    match stage {
        RunnerStage::Idle => Some(0),
        RunnerStage::Installing => Some(1),
        RunnerStage::CreatingJitConfig => Some(2),
        RunnerStage::DeployingVm => Some(3),
        RunnerStage::Queued => Some(4),
        _ => None,
    }
}

/// Explains every waiting job of a scale set.
///
/// Without the session this process sees no statistics: a standby answers with one entry
/// "session held elsewhere" (the active replica's status has the jobs), a process without
/// any role with one "GitHub rate limit" or "no session" entry.
pub fn explain_waiting(inputs: &WaitInputs<'_>) -> Vec<WaitingJob> {
    match inputs.role {
        Role::Standby => return vec![WaitingJob::new(WaitReason::SessionElsewhere, None)],
        Role::None if inputs.rate_limited => return vec![WaitingJob::new(WaitReason::GitHubRateLimit, None)],
        Role::None => return vec![WaitingJob::new(WaitReason::NoSession, None)],
        Role::Active => {}
    }
    let mut candidates: Vec<(u8, &str, RunnerStage)> = inputs
        .runners
        .iter()
        .filter_map(|(name, stage)| closeness(*stage).map(|c| (c, name.as_str(), *stage)))
        .collect();
    candidates.sort();
    let mut capacity_left = inputs.capacity_waiting;
    let mut out = Vec::with_capacity(inputs.waiting_jobs as usize);
    for (_, name, stage) in candidates.into_iter().take(inputs.waiting_jobs as usize) {
        let reason = match stage {
            RunnerStage::Idle => WaitReason::RunnerOnline,
            RunnerStage::Installing | RunnerStage::CreatingJitConfig => WaitReason::RunnerInstalling,
            RunnerStage::DeployingVm if capacity_left > 0 => {
                capacity_left -= 1;
                WaitReason::OrkaOutOfCapacity
            }
            RunnerStage::DeployingVm => WaitReason::VmDeploying,
            _ if inputs.version_refused => WaitReason::RunnerVersionRefused,
            _ => WaitReason::ProvisioningSlot,
        };
        out.push(WaitingJob::new(reason, Some(name)));
    }
    let without_runner = (inputs.waiting_jobs as usize).saturating_sub(out.len());
    let reason = if inputs.rate_limited {
        WaitReason::GitHubRateLimit
    } else if inputs.version_refused {
        WaitReason::RunnerVersionRefused
    } else if inputs.runners.len() >= inputs.max_runners as usize {
        WaitReason::MaxRunnersReached
    } else if inputs.capacity_waiting > 0 {
        WaitReason::OrkaOutOfCapacity
    } else {
        WaitReason::NotRequestedYet
    };
    out.extend(std::iter::repeat_n(WaitingJob::new(reason, None), without_runner));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use RunnerStage::*;
    use WaitReason::*;

    fn runners(stages: &[RunnerStage]) -> Vec<(String, RunnerStage)> {
        stages.iter().enumerate().map(|(i, s)| (format!("mac-r{i:04}"), *s)).collect()
    }

    fn active(waiting_jobs: u32, runners: &[(String, RunnerStage)]) -> WaitInputs<'_> {
        WaitInputs {
            role: Role::Active,
            waiting_jobs,
            runners,
            max_runners: 10,
            capacity_waiting: 0,
            version_refused: false,
            rate_limited: false,
        }
    }

    fn reasons(inputs: &WaitInputs<'_>) -> Vec<WaitReason> {
        explain_waiting(inputs).into_iter().map(|w| w.reason).collect()
    }

    #[test]
    fn the_decision_table() {
        let none: Vec<(String, RunnerStage)> = Vec::new();
        let busy_two = runners(&[Busy, Busy]);
        let on_the_way = runners(&[Queued, DeployingVm, Installing, Idle, CreatingJitConfig]);
        let deploying = runners(&[DeployingVm, DeployingVm]);
        let queued = runners(&[Queued]);
        let retiring = runners(&[Finishing, Deregistering, DeletingVm]);
        let cases: Vec<(&str, WaitInputs<'_>, Vec<WaitReason>)> = vec![
            ("nothing waits", active(0, &busy_two), vec![]),
            ("standby", WaitInputs { role: Role::Standby, ..active(3, &none) }, vec![SessionElsewhere]),
            ("no role", WaitInputs { role: Role::None, ..active(3, &none) }, vec![NoSession]),
            (
                "no role, rate limited",
                WaitInputs { role: Role::None, rate_limited: true, ..active(3, &none) },
                vec![GitHubRateLimit],
            ),
            (
                "all runners busy at MAX_RUNNERS",
                WaitInputs { max_runners: 2, ..active(3, &busy_two) },
                vec![MaxRunnersReached; 3],
            ),
            (
                "retiring runners still count against MAX_RUNNERS",
                WaitInputs { max_runners: 3, ..active(1, &retiring) },
                vec![MaxRunnersReached],
            ),
            ("below MAX_RUNNERS, nothing asked yet", active(2, &busy_two), vec![NotRequestedYet; 2]),
            (
                "most advanced runner first",
                active(5, &on_the_way),
                vec![RunnerOnline, RunnerInstalling, RunnerInstalling, VmDeploying, ProvisioningSlot],
            ),
            ("more runners than jobs", active(1, &on_the_way), vec![RunnerOnline]),
            (
                "deploys waiting for capacity",
                WaitInputs { capacity_waiting: 1, ..active(2, &deploying) },
                vec![OrkaOutOfCapacity, VmDeploying],
            ),
            (
                "capacity wait with jobs beyond the runners",
                WaitInputs { capacity_waiting: 2, max_runners: 5, ..active(3, &deploying) },
                vec![OrkaOutOfCapacity; 3],
            ),
            (
                "version refused holds queued runners and new ones",
                WaitInputs { version_refused: true, ..active(2, &queued) },
                vec![RunnerVersionRefused; 2],
            ),
            (
                "rate limit holds new runners back",
                WaitInputs { rate_limited: true, ..active(2, &queued) },
                vec![ProvisioningSlot, GitHubRateLimit],
            ),
        ];
        for (what, inputs, expected) in cases {
            assert_eq!(reasons(&inputs), expected, "{what}");
        }
    }

    #[test]
    fn each_waiting_job_names_the_runner_it_waits_for() {
        let rs = runners(&[DeployingVm, Busy]);
        let got = explain_waiting(&WaitInputs { max_runners: 2, ..active(2, &rs) });
        assert_eq!(
            got,
            vec![
                WaitingJob { reason: VmDeploying, runner: Some("mac-r0000".into()) },
                WaitingJob { reason: MaxRunnersReached, runner: None },
            ]
        );
    }

    #[test]
    fn the_serialized_reason_is_the_shown_text() {
        for reason in [
            SessionElsewhere,
            NoSession,
            GitHubRateLimit,
            RunnerVersionRefused,
            OrkaOutOfCapacity,
            MaxRunnersReached,
            VmDeploying,
            RunnerInstalling,
            ProvisioningSlot,
            RunnerOnline,
            NotRequestedYet,
        ] {
            assert_eq!(serde_json::to_value(reason).unwrap(), serde_json::json!(reason.as_str()));
        }
    }
}
