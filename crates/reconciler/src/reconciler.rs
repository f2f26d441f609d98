//! The reconciler: one idempotent activation that re-reads the world — every VM this scale
//! set owns (exact name match), the GitHub runner of each and, where it matters, an SSH
//! probe — decides per VM with [`decide`], and executes the decisions through the fleet.
//! The startup sweep is simply the first activation of [`Reconciler::run_periodic`];
//! [`Reconciler::trigger`] asks for an extra one.
//!
//! Each VM is examined on its own: its decision is carried out as soon as its own evidence
//! is complete, so a VM that needs no probe (no registration, `Failed`, pending past the
//! deadline) goes at once, not after the slowest probe of the pass. A VM whose probe
//! failed is probed again within the pass (quick strikes, about one probe timeout apart) until
//! the probe is conclusive, the evidence changes or it strikes out. Before every strike
//! and before acting, the safety rules are checked again with fresh evidence: tracked by
//! the fleet → left to it; a job message or GitHub says busy → adopted as busy; a GitHub
//! lookup error → looked at again later. The pass's table is returned (and logged) at the
//! end.
//!
//! Never touched: VMs whose name another scale set owns (`mac` never claims
//! `mac-large-x7k2p`), VMs the fleet tracks (provisioning, online or being cleaned up), and
//! anything while the evidence is inconclusive (a GitHub lookup error re-checks later).
//!
//! It must run only while this process holds the scale set's message session (the binary
//! starts and cancels it with the session), so a standby replica never deletes anything.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use futures::stream::FuturesUnordered;
use runner_core::{FleetControl, RetireReason, RunnerState, ScaleSetError};
use runner_core::{Vm, VmStatus, naming};
use tokio::sync::Notify;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::decision::{Action, Decision, Evidence, OrkaEvidence, Reason, ReconcilePolicy, decide};
use crate::error::ReconcileError;
use crate::evidence::{
    Deadlines, Slots, gather, lookup_runner, orka_evidence, probe_failed, runner_evidence,
};

/// The seams the reconciler reads the world through (it acts through the fleet): the same
/// bundle the fleet of the scale set uses ([`runner_core::Seams`]).
pub type ReconcilerDeps = runner_core::Seams;

/// Settings of the reconciler.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReconcilerConfig {
    /// The scale set's name (exact ownership test).
    pub scale_set_name: String,
    /// The scale set's id (only its runner registrations are removed).
    pub scale_set_id: i64,
    /// Thresholds of the decision table.
    pub policy: ReconcilePolicy,
    /// Deadline of one VM's SSH probe, measured from when the probe gets its slot (a
    /// backstop when the shell bounds its own phases).
    pub probe_timeout: Duration,
    /// Quick strikes: each strike of a VM starts at least this long after its previous one
    /// (set it to `PROBE_TIMEOUT`). A black hole's strikes follow each other at once (each
    /// already took a timeout); a VM that refuses connections is not struck out in a burst,
    /// so N strikes take about N × this whichever way the probe fails.
    pub strike_spacing: Duration,
    /// Deadline of one GitHub runner lookup.
    pub github_timeout: Duration,
    /// Deadline of listing the VMs.
    pub list_timeout: Duration,
    /// GitHub lookups, and separately SSH probes, in flight at once. Every VM's
    /// examination starts at once (a VM needing no probe never waits behind probes); N
    /// probes cost ⌈N / concurrency⌉ timeouts.
    pub concurrency: usize,
}

impl ReconcilerConfig {
    /// Defaults: 20 s probe, strikes 10 s apart, 30 s lookups, 64 lookups and 64 probes at
    /// a time.
    pub fn new(scale_set_id: i64, scale_set_name: impl Into<String>) -> Self {
        Self {
            scale_set_name: scale_set_name.into(),
            scale_set_id,
            policy: ReconcilePolicy::default(),
            probe_timeout: Duration::from_secs(20),
            strike_spacing: Duration::from_secs(10),
            github_timeout: Duration::from_secs(30),
            list_timeout: Duration::from_secs(60),
            concurrency: 64,
        }
    }
}

/// Whether decisions are executed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Execute the decisions.
    Act,
    /// Only report them (`reconcile --dry-run`); nothing is changed, not even strike counts.
    /// Each VM is probed once: a failed probe shows as `probe_failed` where an acting pass
    /// would strike again.
    DryRun,
}

/// One VM's line of the decision table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecisionRow {
    /// VM name.
    pub vm: String,
    /// Orka status.
    pub status: VmStatus,
    /// The evidence (`None` when the fleet tracks the VM and it was not examined).
    pub evidence: Option<Evidence>,
    /// The decision (`None`: tracked by the fleet, left to it).
    pub decision: Option<Decision>,
    /// Whether the decision was handed to the fleet (always false in a dry run).
    pub applied: bool,
}

impl DecisionRow {
    /// The action label for tables: `adopt`, `clean_up`, `delete`, `recheck` or `tracked`.
    pub fn action_label(&self) -> &'static str {
        match self.decision.map(|d| d.action) {
            None => "tracked",
            Some(Action::Adopt) => "adopt",
            Some(Action::CleanUp) => "clean_up",
            Some(Action::Delete) => "delete",
            Some(Action::RecheckLater) => "recheck",
        }
    }

    /// The evidence in one line for tables and logs, e.g.
    /// `orka=running github=idle probe=setup:yes,run:no,alive:yes strikes=0` (with
    /// ` job=running` after the GitHub state when a job message says a job runs on it).
    pub fn evidence_label(&self) -> String {
        let Some(e) = &self.evidence else { return "tracked by the fleet".to_owned() };
        let orka = match e.orka {
            OrkaEvidence::Pending { age } => format!("pending({}s)", age.as_secs()),
            OrkaEvidence::Running => "running".to_owned(),
            OrkaEvidence::Failed => "failed".to_owned(),
        };
        let github = match e.runner {
            crate::RunnerEvidence::Absent => "absent",
            crate::RunnerEvidence::Idle => "idle",
            crate::RunnerEvidence::Busy => "busy",
            crate::RunnerEvidence::Offline => "offline",
            crate::RunnerEvidence::Unknown => "unknown",
            crate::RunnerEvidence::LookupError => "lookup_error",
        };
        let tri = |t: runner_core::Tri| match t {
            runner_core::Tri::Yes => "yes",
            runner_core::Tri::No => "no",
            runner_core::Tri::Unknown => "?",
        };
        let probe = match e.probe {
            crate::ProbeEvidence::Report(r) => {
                format!(
                    "setup:{},run:{},alive:{}",
                    tri(r.setup_complete),
                    tri(r.run_complete),
                    tri(r.runner_alive)
                )
            }
            crate::ProbeEvidence::Unreachable => "unreachable".to_owned(),
            crate::ProbeEvidence::AuthFailed => "auth_failed".to_owned(),
            crate::ProbeEvidence::NotProbed => "not_probed".to_owned(),
        };
        let job = if e.job_running { " job=running" } else { "" };
        format!("orka={orka} github={github}{job} probe={probe} strikes={}", e.previous_probe_failures)
    }

    /// The reason label, or `tracked_by_fleet`.
    pub fn reason_label(&self) -> &'static str {
        self.decision.map_or("tracked_by_fleet", |d| d.reason.as_str())
    }
}

/// What one pass found and did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReconcileReport {
    /// One row per owned VM, sorted by name.
    pub rows: Vec<DecisionRow>,
    /// Runner registrations of this scale set whose VM no longer exists, removed (or, in a
    /// dry run, that would be removed).
    pub registrations_removed: Vec<String>,
}

impl ReconcileReport {
    /// The table in one line for logs: how many VMs got each action and reason, e.g.
    /// `delete/no_runner=50 delete/unreachable=50 adopt/busy_per_github=5`, most frequent first.
    pub fn summary(&self) -> String {
        let mut counts: HashMap<(&'static str, &'static str), usize> = HashMap::new();
        for row in &self.rows {
            *counts.entry((row.action_label(), row.reason_label())).or_default() += 1;
        }
        let mut counts: Vec<_> = counts.into_iter().collect();
        counts.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        counts
            .iter()
            .map(|((action, reason), n)| format!("{action}/{reason}={n}"))
            .collect::<Vec<_>>()
            .join(" ")
    }
}

#[derive(Default)]
struct Memory {
    /// Consecutive failed probes of a VM (quick strikes and earlier passes).
    strikes: HashMap<String, u32>,
    /// When a VM was first seen pending (its age for the deploy deadline).
    pending_since: HashMap<String, Instant>,
    /// VM names seen in the previous pass (a vanished one may leave a registration).
    last_seen: HashSet<String>,
    /// Names whose registration must still be checked.
    registration_candidates: HashSet<String>,
}

/// Startup and periodic reconciliation of one scale set's VMs.
pub struct Reconciler {
    deps: ReconcilerDeps,
    fleet: Arc<dyn FleetControl>,
    config: ReconcilerConfig,
    memory: Mutex<Memory>,
    wake: Notify,
    pass: tokio::sync::Mutex<()>,
}

impl Reconciler {
    /// A reconciler acting through `fleet`.
    pub fn new(deps: ReconcilerDeps, fleet: Arc<dyn FleetControl>, config: ReconcilerConfig) -> Self {
        Self {
            deps,
            fleet,
            config,
            memory: Mutex::new(Memory::default()),
            wake: Notify::new(),
            pass: tokio::sync::Mutex::new(()),
        }
    }

    /// Asks [`Reconciler::run_periodic`] for a pass now.
    pub fn trigger(&self) {
        self.wake.notify_one();
    }

    /// Runs a pass now, then every `interval` (`VM_TRACKER_INTERVAL`) or when triggered,
    /// until `cancel` fires. The first pass is the startup sweep.
    pub async fn run_periodic(&self, interval: Duration, cancel: CancellationToken) {
        loop {
            let pass = tokio::select! {
                biased;
                () = cancel.cancelled() => return,
                pass = self.reconcile_once(Mode::Act) => pass,
            };
            match pass {
                Ok(report) => {
                    let acted = report.rows.iter().filter(|r| r.applied).count();
                    tracing::info!(
                        vms = report.rows.len(),
                        acted,
                        decisions = %report.summary(),
                        registrations_removed = report.registrations_removed.len(),
                        "reconcile pass"
                    );
                }
                Err(e) => tracing::warn!(error = &e as &dyn std::error::Error, "reconcile pass failed"),
            }
            tokio::select! {
                biased;
                () = cancel.cancelled() => return,
                () = self.wake.notified() => {}
                () = tokio::time::sleep(interval) => {}
            }
        }
    }

    /// One pass: list, then examine every VM in parallel, each decided and (in
    /// [`Mode::Act`]) acted on as soon as its own evidence is complete; returns the table.
    pub async fn reconcile_once(&self, mode: Mode) -> Result<ReconcileReport, ReconcileError> {
        let _pass = self.pass.lock().await;
        let listed = tokio::time::timeout(self.config.list_timeout, self.deps.vms.list_vms())
            .await
            .map_err(|_| ReconcileError::ListTimedOut)?
            .map_err(ReconcileError::ListVms)?;
        let now = Instant::now();
        let owned: Vec<Vm> = listed
            .into_iter()
            .filter(|vm| naming::is_owned_by(&self.config.scale_set_name, &vm.name))
            .collect();
        let present: HashSet<String> = owned.iter().map(|vm| vm.name.clone()).collect();

        let (tracked, examine): (Vec<Vm>, Vec<Vm>) =
            owned.into_iter().partition(|vm| self.fleet.owns(&vm.name));
        let inputs: Vec<(Vm, OrkaEvidence, u32)> = {
            let memory = self.memory.lock().unwrap_or_else(|p| p.into_inner());
            examine
                .into_iter()
                .map(|vm| {
                    let pending_since = memory.pending_since.get(&vm.name).copied().unwrap_or(now);
                    let age = now.saturating_duration_since(pending_since);
                    let orka = orka_evidence(&vm, age, self.config.policy.deploy_deadline);
                    let strikes = memory.strikes.get(&vm.name).copied().unwrap_or(0);
                    (vm, orka, strikes)
                })
                .collect()
        };
        let slots = Slots::new(self.config.concurrency);
        let examined: Vec<DecisionRow> = inputs
            .into_iter()
            .map(|(vm, orka, strikes)| self.examine(vm, orka, strikes, mode, now, &slots))
            .collect::<FuturesUnordered<_>>()
            .collect()
            .await;

        let mut rows: Vec<DecisionRow> = tracked
            .into_iter()
            .map(|vm| DecisionRow {
                vm: vm.name,
                status: vm.status,
                evidence: None,
                decision: None,
                applied: false,
            })
            .collect();
        rows.extend(examined);
        rows.sort_by(|a, b| a.vm.cmp(&b.vm));

        let registrations_removed = self.sweep_registrations(&present, mode).await;
        if mode == Mode::Act {
            let mut memory = self.memory.lock().unwrap_or_else(|p| p.into_inner());
            memory.strikes.retain(|name, _| present.contains(name));
            memory.pending_since.retain(|name, _| present.contains(name));
            memory.last_seen = present;
        }
        Ok(ReconcileReport { rows, registrations_removed })
    }

    /// One VM: gather, decide, strike again while the probe fails (each strike at least
    /// `strike_spacing` after the previous one), confirm the evidence a destructive decision
    /// rests on, act. Every strike re-reads everything (fleet, job messages, GitHub, probe).
    async fn examine(
        &self,
        vm: Vm,
        orka: OrkaEvidence,
        mut strikes: u32,
        mode: Mode,
        now: Instant,
        slots: &Slots,
    ) -> DecisionRow {
        let deadlines = Deadlines { github: self.config.github_timeout, probe: self.config.probe_timeout };
        // Bounded: every extra round follows a strike, and N strikes decide "delete".
        let max_rounds = self.config.policy.unreachable_strikes.max(1);
        let mut round = 0;
        let (mut evidence, mut record) = loop {
            round += 1;
            let strike_started = Instant::now();
            if self.fleet.owns(&vm.name) {
                return self.left_to_fleet(vm, None, mode);
            }
            let (mut evidence, record) =
                gather(&vm, orka, strikes, &*self.deps.github, &*self.deps.shell, deadlines, slots).await;
            evidence.job_running = self.fleet.job_running_on(&vm.name);
            let decision = decide(&evidence, &self.config.policy);
            let strike = decision.reason == Reason::ProbeFailed && probe_failed(&evidence.probe);
            // A dry run looks once: it previews a pass without its duration.
            if !strike || round >= max_rounds || mode == Mode::DryRun {
                break (evidence, record);
            }
            self.remember(&vm, &evidence, decision, now);
            strikes += 1;
            tracing::info!(vm = %vm.name, strikes, "probe failed; probing again");
            tokio::time::sleep_until(strike_started + self.config.strike_spacing).await;
        };

        // Before acting: the fleet may have taken the VM, a job may have started, and the
        // last probe may have taken a whole timeout — confirm what a deletion rests on.
        if self.fleet.owns(&vm.name) {
            return self.left_to_fleet(vm, Some(evidence), mode);
        }
        evidence.job_running = self.fleet.job_running_on(&vm.name);
        let mut decision = decide(&evidence, &self.config.policy);
        if matches!(decision.reason, Reason::Unreachable | Reason::AuthRejected) {
            match lookup_runner(&vm, &*self.deps.github, self.config.github_timeout, slots).await {
                Ok(fresh) => {
                    evidence.runner = runner_evidence(fresh.as_ref());
                    record = fresh;
                }
                Err(()) => evidence.runner = crate::RunnerEvidence::LookupError,
            }
            evidence.job_running = self.fleet.job_running_on(&vm.name);
            decision = decide(&evidence, &self.config.policy);
            if self.fleet.owns(&vm.name) {
                return self.left_to_fleet(vm, Some(evidence), mode);
            }
        }

        let mut applied = false;
        if mode == Mode::Act {
            self.remember(&vm, &evidence, decision, now);
            let busy = evidence.job_running;
            applied = self.execute(&vm, decision, record, busy).await;
        }
        tracing::info!(
            vm = %vm.name,
            action = ?decision.action,
            reason = decision.reason.as_str(),
            evidence = ?evidence,
            dry_run = mode == Mode::DryRun,
            "reconcile decision"
        );
        DecisionRow {
            vm: vm.name,
            status: vm.status,
            evidence: Some(evidence),
            decision: Some(decision),
            applied,
        }
    }

    /// The row of a VM the fleet started tracking while it was being examined.
    fn left_to_fleet(&self, vm: Vm, evidence: Option<Evidence>, mode: Mode) -> DecisionRow {
        tracing::info!(vm = %vm.name, "the fleet tracks the VM now; leaving it to the fleet");
        if mode == Mode::Act {
            self.memory.lock().unwrap_or_else(|p| p.into_inner()).strikes.remove(&vm.name);
        }
        DecisionRow { vm: vm.name, status: vm.status, evidence, decision: None, applied: false }
    }

    fn remember(&self, vm: &Vm, evidence: &Evidence, decision: Decision, now: Instant) {
        let mut memory = self.memory.lock().unwrap_or_else(|p| p.into_inner());
        match evidence.orka {
            OrkaEvidence::Pending { .. } => {
                memory.pending_since.entry(vm.name.clone()).or_insert(now);
            }
            _ => {
                memory.pending_since.remove(&vm.name);
            }
        }
        // A strike per pass whose probe failed and that left the VM for later; any
        // conclusive probe, or any other decision, clears the count.
        let inconclusive = evidence.probe == crate::ProbeEvidence::NotProbed;
        if decision.action == Action::RecheckLater && probe_failed(&evidence.probe) {
            *memory.strikes.entry(vm.name.clone()).or_default() += 1;
        } else if decision.action != Action::RecheckLater || !inconclusive {
            memory.strikes.remove(&vm.name);
        }
    }

    /// Hands the decision to the fleet. `job_running`: a job message says a job runs on
    /// the runner, so it is adopted as busy whatever GitHub's list says.
    async fn execute(
        &self,
        vm: &Vm,
        decision: Decision,
        record: Option<runner_core::RunnerRecord>,
        job_running: bool,
    ) -> bool {
        match decision.action {
            Action::RecheckLater => false,
            Action::Adopt => match record {
                Some(record) => {
                    let busy = job_running || record.state() == RunnerState::Busy;
                    self.fleet.adopt(vm.clone(), record, busy).await
                }
                None => false,
            },
            Action::CleanUp => self.fleet.retire_vm(&vm.name, RetireReason::RunComplete).await,
            Action::Delete => self.fleet.retire_vm(&vm.name, RetireReason::Reconciler).await,
        }
    }

    /// Removes registrations of this scale set whose VM no longer exists. Candidates: runner
    /// names job messages mentioned that the fleet does not track, and VMs seen in an
    /// earlier pass that have vanished (the API has no "list runners of a scale set", so
    /// registrations are found by name).
    async fn sweep_registrations(&self, present: &HashSet<String>, mode: Mode) -> Vec<String> {
        let candidates: Vec<String> = {
            let mut memory = self.memory.lock().unwrap_or_else(|p| p.into_inner());
            let vanished: Vec<String> = memory.last_seen.difference(present).cloned().collect();
            memory.registration_candidates.extend(vanished);
            memory.registration_candidates.extend(self.fleet.seen_runner_names());
            memory
                .registration_candidates
                .iter()
                .filter(|name| naming::is_owned_by(&self.config.scale_set_name, name))
                .filter(|name| !present.contains(*name) && !self.fleet.owns(name))
                .cloned()
                .collect()
        };
        let mut removed = Vec::new();
        for name in candidates {
            let lookup =
                tokio::time::timeout(self.config.github_timeout, self.deps.github.get_runner_by_name(&name))
                    .await;
            let record = match lookup {
                Ok(Ok(record)) => record,
                Ok(Err(e)) => {
                    tracing::warn!(runner = %name, error = &e as &dyn std::error::Error, "runner lookup failed; will retry");
                    continue;
                }
                Err(_) => continue,
            };
            let done = match record {
                None => true,
                Some(r)
                    if r.runner_scale_set_id != self.config.scale_set_id && r.runner_scale_set_id != 0 =>
                {
                    true
                }
                Some(_) if mode == Mode::DryRun => {
                    removed.push(name.clone());
                    false
                }
                Some(r) => match tokio::time::timeout(
                    self.config.github_timeout,
                    self.deps.github.remove_runner(r.id),
                )
                .await
                {
                    Ok(Ok(())) | Ok(Err(ScaleSetError::AgentNotFound)) => {
                        tracing::info!(runner = %name, "removed the registration of a runner whose VM is gone");
                        removed.push(name.clone());
                        true
                    }
                    Ok(Err(ScaleSetError::JobStillRunning)) => {
                        tracing::info!(runner = %name, "registration without VM still has a job; will retry");
                        false
                    }
                    Ok(Err(e)) => {
                        tracing::warn!(runner = %name, error = &e as &dyn std::error::Error, "removing registration failed; will retry");
                        false
                    }
                    Err(_) => false,
                },
            };
            if done && mode == Mode::Act {
                self.memory.lock().unwrap_or_else(|p| p.into_inner()).registration_candidates.remove(&name);
                self.fleet.forget_seen_runner(&name);
            }
        }
        removed.sort();
        removed
    }
}
