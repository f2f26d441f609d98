//! The per-VM reconcile decision, a pure function of the evidence.
//!
//! | # | Orka | GitHub runner | Job messages | SSH probe | Action | Reason |
//! |---|------|---------------|--------------|-----------|--------|--------|
//! | 1 | `Failed` | any | any | any | delete | VM failed |
//! | 2 | `Pending`, younger than the deploy deadline | any | any | any | re-check | still deploying |
//! | 3 | `Pending`, past the deploy deadline | any | any | any | delete | deploy abandoned |
//! | 4 | `Running` | lookup error | any | any | re-check | GitHub unknown: never delete on a lookup error |
//! | 5 | `Running` | absent | any | any | delete | no runner registration |
//! | 6a | `Running` | busy | any | unreachable / could not tell / auth failure | adopt (busy) | GitHub says a job runs |
//! | 6b | `Running` | idle / offline / unknown | a job runs on it | unreachable / could not tell / auth failure | adopt (busy) | a job message says a job runs |
//! | 7 | `Running` | idle / offline / unknown | no job | unreachable or could not tell, fewer than N strikes | strike again | probe failed |
//! | 8 | `Running` | idle / offline / unknown | no job | unreachable or could not tell, N strikes | delete | unreachable |
//! | 9 | `Running` | idle / offline / unknown | no job | auth failure | delete | credentials rejected, runner cannot be inspected |
//! | 10 | `Running` | present | any | setup sentinel missing | delete | setup never completed |
//! | 11 | `Running` | present | any | run sentinel present | clean up | run finished, cleanup missed |
//! | 12 | `Running` | present | any | setup done, run.sh not alive, no run sentinel | delete | run.sh crashed |
//! | 13 | `Running` | present | any | setup done, run.sh alive | adopt | runner running |
//!
//! "Could not tell" on any probe answer the row needs counts as a probe failure (rows
//! 6–8), never as "no". Rows 10–13 read the answers in that order.
//!
//! **Busy evidence.** GitHub's runner list reports scale-set runners idle while they run
//! a job, and `JobStarted` and `JobCompleted` can arrive in one batch. So `busy: true`
//! from the list, or a job message ("a job runs on it": a `JobStarted` named the runner
//! and the job's `JobCompleted` has not arrived), each keeps a VM whose probe failed
//! (rows 6a/6b), while `busy: false` is never read as "idle": no row deletes a VM because
//! the list says `busy: false`. Rows 8 and 9 delete on a failed probe *and* no busy
//! evidence from either source; rows 10–12 delete on what the probe found inside the VM.
//! And every deletion goes through the fleet's deregistration first, which GitHub refuses
//! while a job runs (`JobStillRunning`: the VM is kept and the runner tracked as busy).
//!
//! How the evidence is read (see the crate's `evidence` module):
//!
//! * A VM's age is the time since this process first saw it pending (Orka's listing
//!   carries no creation time). An unknown Orka status reads as `Pending`; `Running`
//!   without an SSH endpoint reads as `Pending` until the deploy deadline, then `Failed`.
//! * The probe runs only for a `Running` VM whose runner GitHub knows; otherwise it is
//!   `NotProbed` (rows 1–5 do not need it), so a VM without a registration is never
//!   SSH'd into.
//! * "N strikes" counts consecutive failed probes. Row 7 is not an end state of a pass:
//!   the pass probes the VM again (a *quick strike*, each strike starting at least one
//!   probe timeout after the previous one) until the probe is conclusive, the evidence
//!   changes (busy, lookup error, tracked by the fleet) or the VM strikes out — so the
//!   rule completes in about N × the probe timeout, whatever the reconcile interval.
//!   Strikes are remembered across acting passes (a pass that stopped early resumes the
//!   count); a dry run probes once and remembers nothing. A conclusive probe clears them.
//! * Not in the table because never examined: VMs another scale set owns (exact name
//!   match) and VMs the fleet tracks (provisioning, online or being cleaned up) — checked
//!   again before every strike and before acting.
//! * Delete and clean up go through the fleet: deregister first (clean up waits for the
//!   runner to leave by itself), then delete; `JobStillRunning` keeps the VM and hands
//!   the runner to the fleet as busy.

use std::time::Duration;

use runner_core::{ProbeReport, Tri};

/// What Orka says about the VM.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OrkaEvidence {
    /// `Pending`, for this long (since first seen or since creation).
    Pending {
        /// How long it has been pending.
        age: Duration,
    },
    /// `Running` (with an SSH endpoint).
    Running,
    /// `Failed`, or running without an SSH endpoint past the deploy deadline.
    Failed,
}

/// What GitHub says about the runner of the same name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunnerEvidence {
    /// No registration with this name.
    Absent,
    /// Registered, online, no job.
    Idle,
    /// Registered and executing a job.
    Busy,
    /// Registered, not connected.
    Offline,
    /// Registered, state not reported.
    Unknown,
    /// The lookup failed.
    LookupError,
}

/// What the SSH probe found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProbeEvidence {
    /// The probe ran.
    Report(ProbeReport),
    /// Could not connect or the connection failed mid-probe.
    Unreachable,
    /// The VM rejected our credentials.
    AuthFailed,
    /// Not probed (not needed for the decision, e.g. a `Failed` VM).
    NotProbed,
}

/// Everything known about one owned VM.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Evidence {
    /// Orka status.
    pub orka: OrkaEvidence,
    /// GitHub runner record.
    pub runner: RunnerEvidence,
    /// SSH probe.
    pub probe: ProbeEvidence,
    /// Consecutive earlier failed probes of this VM (strikes), from earlier passes and
    /// earlier strikes of this pass.
    pub previous_probe_failures: u32,
    /// A job message says a job runs on this runner (a `JobStarted` named it and the
    /// job's `JobCompleted` has not arrived). The controller's own busy evidence: GitHub's
    /// runner list reports scale-set runners idle while they run a job.
    pub job_running: bool,
}

/// Thresholds of the decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReconcilePolicy {
    /// A `Pending` VM older than this is abandoned.
    pub deploy_deadline: Duration,
    /// Failed probes (strikes, the current one included) before an unreachable VM is deleted.
    pub unreachable_strikes: u32,
}

impl Default for ReconcilePolicy {
    fn default() -> Self {
        Self { deploy_deadline: Duration::from_secs(15 * 60), unreachable_strikes: 3 }
    }
}

/// What to do with the VM.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Action {
    /// Track it like a runner this process started.
    Adopt,
    /// Deregister the runner, then delete the VM (the run finished).
    CleanUp,
    /// Deregister any runner, then delete the VM (nothing worth keeping).
    Delete,
    /// Leave it alone now; look again next pass.
    RecheckLater,
}

/// Why a [`Decision`] chose its action; its label appears in logs, metrics and the `reconcile` table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Reason {
    /// Orka reports the VM `Failed`.
    VmFailed,
    /// Still `Pending` within the deploy deadline.
    StillDeploying,
    /// `Pending` past the deploy deadline.
    DeployAbandoned,
    /// The GitHub lookup failed; never delete on that.
    GithubUnknown,
    /// No runner registration for the VM.
    NoRunner,
    /// GitHub reports the runner busy although the VM could not be probed.
    BusyPerGithub,
    /// A job message says a job runs on the runner although the VM could not be probed.
    BusyPerJobMessage,
    /// The probe failed; not enough strikes yet.
    ProbeFailed,
    /// The probe failed on enough consecutive passes.
    Unreachable,
    /// The VM rejects our credentials and GitHub shows no job on it.
    AuthRejected,
    /// Setup sentinel missing.
    SetupIncomplete,
    /// Run sentinel present: run.sh finished, cleanup missed.
    RunFinished,
    /// Setup done, run.sh not alive, no run sentinel.
    RunnerCrashed,
    /// Setup done and run.sh alive.
    RunnerRunning,
}

impl Reason {
    /// A short stable label (logs, metrics, dry-run tables).
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::VmFailed => "vm_failed",
            Reason::StillDeploying => "still_deploying",
            Reason::DeployAbandoned => "deploy_abandoned",
            Reason::GithubUnknown => "github_lookup_failed",
            Reason::NoRunner => "no_runner",
            Reason::BusyPerGithub => "busy_per_github",
            Reason::BusyPerJobMessage => "busy_per_job_message",
            Reason::ProbeFailed => "probe_failed",
            Reason::Unreachable => "unreachable",
            Reason::AuthRejected => "ssh_auth_rejected",
            Reason::SetupIncomplete => "setup_incomplete",
            Reason::RunFinished => "run_finished",
            Reason::RunnerCrashed => "runner_crashed",
            Reason::RunnerRunning => "runner_running",
        }
    }
}

/// An action with its reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Decision {
    /// What to do.
    pub action: Action,
    /// The evidence that led to the action.
    pub reason: Reason,
}

const fn decision(action: Action, reason: Reason) -> Decision {
    Decision { action, reason }
}

/// Decides what to do with one owned VM. Pure.
pub fn decide(evidence: &Evidence, policy: &ReconcilePolicy) -> Decision {
    use Action::*;
    match evidence.orka {
        OrkaEvidence::Failed => return decision(Delete, Reason::VmFailed),
        OrkaEvidence::Pending { age } if age < policy.deploy_deadline => {
            return decision(RecheckLater, Reason::StillDeploying);
        }
        OrkaEvidence::Pending { .. } => return decision(Delete, Reason::DeployAbandoned),
        OrkaEvidence::Running => {}
    }
    match evidence.runner {
        RunnerEvidence::LookupError => return decision(RecheckLater, Reason::GithubUnknown),
        RunnerEvidence::Absent => return decision(Delete, Reason::NoRunner),
        _ => {}
    }
    // Busy evidence: GitHub's `busy` flag, or a job message. The list's `busy: false` is
    // never evidence of idleness (it reports scale-set runners idle while they run a job).
    let busy = if evidence.runner == RunnerEvidence::Busy {
        Some(Reason::BusyPerGithub)
    } else if evidence.job_running {
        Some(Reason::BusyPerJobMessage)
    } else {
        None
    };
    let probe_failed = || {
        if let Some(reason) = busy {
            decision(Adopt, reason)
        } else if evidence.previous_probe_failures + 1 >= policy.unreachable_strikes {
            decision(Delete, Reason::Unreachable)
        } else {
            decision(RecheckLater, Reason::ProbeFailed)
        }
    };
    let report = match evidence.probe {
        ProbeEvidence::Report(report) => report,
        ProbeEvidence::AuthFailed => {
            return match busy {
                Some(reason) => decision(Adopt, reason),
                None => decision(Delete, Reason::AuthRejected),
            };
        }
        ProbeEvidence::Unreachable | ProbeEvidence::NotProbed => return probe_failed(),
    };
    match (report.setup_complete, report.run_complete, report.runner_alive) {
        (Tri::No, _, _) => decision(Delete, Reason::SetupIncomplete),
        (Tri::Unknown, _, _) => probe_failed(),
        (Tri::Yes, Tri::Yes, _) => decision(CleanUp, Reason::RunFinished),
        (Tri::Yes, Tri::Unknown, _) => probe_failed(),
        (Tri::Yes, Tri::No, Tri::Yes) => decision(Adopt, Reason::RunnerRunning),
        (Tri::Yes, Tri::No, Tri::No) => decision(Delete, Reason::RunnerCrashed),
        (Tri::Yes, Tri::No, Tri::Unknown) => probe_failed(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const POLICY: ReconcilePolicy =
        ReconcilePolicy { deploy_deadline: Duration::from_secs(900), unreachable_strikes: 3 };

    fn report(setup: Tri, run: Tri, alive: Tri) -> ProbeEvidence {
        ProbeEvidence::Report(ProbeReport {
            setup_complete: setup,
            run_complete: run,
            runner_alive: alive,
            exit_code: None,
        })
    }

    fn running(runner: RunnerEvidence, probe: ProbeEvidence) -> Evidence {
        Evidence {
            orka: OrkaEvidence::Running,
            runner,
            probe,
            previous_probe_failures: 0,
            job_running: false,
        }
    }

    fn check(evidence: Evidence, action: Action, reason: Reason) {
        assert_eq!(decide(&evidence, &POLICY), Decision { action, reason }, "{evidence:?}");
    }

    use RunnerEvidence as R;
    use Tri::{No, Unknown, Yes};

    #[test]
    fn seed_baseline() {
        check(running(R::Absent, report(Yes, No, Yes)), Action::Delete, Reason::NoRunner);
        check(running(R::Idle, report(No, No, No)), Action::Delete, Reason::SetupIncomplete);
        check(running(R::Busy, report(Yes, No, No)), Action::Delete, Reason::RunnerCrashed);
        check(running(R::Offline, report(Yes, Yes, No)), Action::CleanUp, Reason::RunFinished);
        check(running(R::Busy, report(Yes, No, Yes)), Action::Adopt, Reason::RunnerRunning);
        check(running(R::Idle, report(Yes, No, Yes)), Action::Adopt, Reason::RunnerRunning);
    }

    #[test]
    fn orka_status_rows() {
        let pending = |secs| Evidence {
            orka: OrkaEvidence::Pending { age: Duration::from_secs(secs) },
            ..running(R::Absent, ProbeEvidence::NotProbed)
        };
        check(pending(60), Action::RecheckLater, Reason::StillDeploying);
        check(pending(901), Action::Delete, Reason::DeployAbandoned);
        let failed = Evidence { orka: OrkaEvidence::Failed, ..running(R::Busy, report(Yes, No, Yes)) };
        check(failed, Action::Delete, Reason::VmFailed);
    }

    #[test]
    fn a_github_lookup_error_never_deletes() {
        for probe in
            [report(No, No, No), report(Yes, Yes, No), ProbeEvidence::Unreachable, ProbeEvidence::AuthFailed]
        {
            let mut evidence = running(R::LookupError, probe);
            evidence.previous_probe_failures = 10;
            check(evidence, Action::RecheckLater, Reason::GithubUnknown);
        }
    }

    #[test]
    fn unreachable_vm_busy_on_github_is_adopted_otherwise_struck_out() {
        check(running(R::Busy, ProbeEvidence::Unreachable), Action::Adopt, Reason::BusyPerGithub);
        check(running(R::Busy, ProbeEvidence::AuthFailed), Action::Adopt, Reason::BusyPerGithub);
        check(running(R::Idle, ProbeEvidence::Unreachable), Action::RecheckLater, Reason::ProbeFailed);
        let struck =
            Evidence { previous_probe_failures: 2, ..running(R::Offline, ProbeEvidence::Unreachable) };
        check(struck, Action::Delete, Reason::Unreachable);
        check(running(R::Idle, ProbeEvidence::AuthFailed), Action::Delete, Reason::AuthRejected);
    }

    #[test]
    fn every_row_of_the_table() {
        let pending = |secs| Evidence {
            orka: OrkaEvidence::Pending { age: Duration::from_secs(secs) },
            ..running(R::Idle, ProbeEvidence::NotProbed)
        };
        let struck = |runner, probe| Evidence { previous_probe_failures: 2, ..running(runner, probe) };
        let rows: Vec<(u8, Evidence, Action, Reason)> = vec![
            (
                1,
                Evidence { orka: OrkaEvidence::Failed, ..running(R::Idle, report(Yes, No, Yes)) },
                Action::Delete,
                Reason::VmFailed,
            ),
            (2, pending(899), Action::RecheckLater, Reason::StillDeploying),
            (3, pending(900), Action::Delete, Reason::DeployAbandoned),
            (4, running(R::LookupError, report(Yes, Yes, No)), Action::RecheckLater, Reason::GithubUnknown),
            (5, running(R::Absent, report(Yes, No, Yes)), Action::Delete, Reason::NoRunner),
            (6, running(R::Busy, ProbeEvidence::Unreachable), Action::Adopt, Reason::BusyPerGithub),
            (6, running(R::Busy, report(Yes, No, Unknown)), Action::Adopt, Reason::BusyPerGithub),
            (6, running(R::Busy, ProbeEvidence::AuthFailed), Action::Adopt, Reason::BusyPerGithub),
            (7, running(R::Idle, ProbeEvidence::Unreachable), Action::RecheckLater, Reason::ProbeFailed),
            (7, running(R::Offline, report(Unknown, No, No)), Action::RecheckLater, Reason::ProbeFailed),
            (7, running(R::Unknown, ProbeEvidence::NotProbed), Action::RecheckLater, Reason::ProbeFailed),
            (8, struck(R::Idle, ProbeEvidence::Unreachable), Action::Delete, Reason::Unreachable),
            (8, struck(R::Unknown, report(Yes, No, Unknown)), Action::Delete, Reason::Unreachable),
            (9, running(R::Offline, ProbeEvidence::AuthFailed), Action::Delete, Reason::AuthRejected),
            (10, running(R::Busy, report(No, No, Yes)), Action::Delete, Reason::SetupIncomplete),
            (11, running(R::Busy, report(Yes, Yes, No)), Action::CleanUp, Reason::RunFinished),
            (11, running(R::Idle, report(Yes, Yes, Unknown)), Action::CleanUp, Reason::RunFinished),
            (12, running(R::Offline, report(Yes, No, No)), Action::Delete, Reason::RunnerCrashed),
            (13, running(R::Offline, report(Yes, No, Yes)), Action::Adopt, Reason::RunnerRunning),
        ];
        for (row, evidence, action, reason) in rows {
            assert_eq!(decide(&evidence, &POLICY), Decision { action, reason }, "row {row}: {evidence:?}");
        }
    }

    #[test]
    fn a_job_message_is_busy_evidence_and_the_lists_busy_false_is_never_idleness() {
        let job = |runner, probe, strikes| Evidence {
            previous_probe_failures: strikes,
            job_running: true,
            ..running(runner, probe)
        };
        for runner in [R::Idle, R::Offline, R::Unknown] {
            for probe in [ProbeEvidence::Unreachable, ProbeEvidence::AuthFailed, report(Yes, No, Unknown)] {
                for strikes in [0, 2, 100] {
                    check(job(runner, probe, strikes), Action::Adopt, Reason::BusyPerJobMessage);
                }
            }
        }
        // GitHub's own busy flag names the reason first.
        check(job(R::Busy, ProbeEvidence::Unreachable, 5), Action::Adopt, Reason::BusyPerGithub);
        // A lookup error still never deletes; a conclusive probe still decides.
        check(
            job(R::LookupError, ProbeEvidence::Unreachable, 5),
            Action::RecheckLater,
            Reason::GithubUnknown,
        );
        check(job(R::Idle, report(Yes, Yes, No), 0), Action::CleanUp, Reason::RunFinished);
        check(job(R::Idle, report(Yes, No, Yes), 0), Action::Adopt, Reason::RunnerRunning);
        // No delete row is reached with busy evidence from either source and a failed probe.
        for runner in [R::Idle, R::Offline, R::Unknown, R::Busy] {
            for probe in [ProbeEvidence::Unreachable, ProbeEvidence::AuthFailed, report(Unknown, No, No)] {
                for job_running in [false, true] {
                    let evidence =
                        Evidence { previous_probe_failures: 10, job_running, ..running(runner, probe) };
                    let busy = job_running || runner == R::Busy;
                    let deleted = decide(&evidence, &POLICY).action == Action::Delete;
                    assert_eq!(deleted, !busy, "{evidence:?}");
                }
            }
        }
    }

    #[test]
    fn could_not_tell_is_never_read_as_no() {
        for probe in [report(Unknown, No, No), report(Yes, Unknown, No), report(Yes, No, Unknown)] {
            check(running(R::Idle, probe), Action::RecheckLater, Reason::ProbeFailed);
            check(running(R::Busy, probe), Action::Adopt, Reason::BusyPerGithub);
        }
    }
}
