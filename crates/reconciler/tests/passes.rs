//! Reconcile passes: every decision-table row through `reconcile_once` with strict mocks,
//! ownership, parallel probing on a paused clock, strikes across passes, the registration
//! sweep, dry runs and the periodic driver.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use provisioner::fakes::running_vm;
use provisioner::{Fleet, FleetDeps};
use reconciler::{Action, Mode, Reason, ReconcilerDeps};
use runner_core::{MockScaleSetApi, RunnerRecord, ScaleSetError};
use runner_core::{MockVmBackend, Vm, VmStatus};
use runner_core::{MockVmShell, ProbeReport, ShellError, SshStep, Tri};
use tokio_util::sync::CancellationToken;

#[derive(Clone, Copy, Debug)]
enum Gh {
    Absent,
    Idle,
    Busy,
    Offline,
    Error,
}

#[derive(Clone, Copy, Debug)]
enum Probe {
    None,
    Report(Tri, Tri, Tri),
    Unreachable,
    Auth,
}

fn record(name: &str, gh: Gh) -> Option<RunnerRecord> {
    let (status, busy) = match gh {
        Gh::Absent | Gh::Error => return None,
        Gh::Idle => ("online", false),
        Gh::Busy => ("online", true),
        Gh::Offline => ("offline", false),
    };
    Some(RunnerRecord {
        id: 5,
        name: name.into(),
        runner_scale_set_id: SCALE_SET_ID,
        status: Some(status.into()),
        busy: Some(busy),
    })
}

/// One VM through a dry-run pass with strict mocks: only the calls the row needs may happen.
async fn dry_run_row(vm: Vm, gh: Gh, probe: Probe) -> (Action, Reason) {
    let mut vms = MockVmBackend::new();
    let listed = vm.clone();
    vms.expect_list_vms().times(1).returning(move || Ok(vec![listed.clone()]));
    let mut github = MockScaleSetApi::new();
    let mut shell = MockVmShell::new();
    let name = vm.name.clone();
    if vm.status == VmStatus::Running {
        github.expect_get_runner_by_name().times(1).returning(move |n| match gh {
            Gh::Error => {
                Err(ScaleSetError::Http { status: 502, type_name: None, message: "bad gateway".into() })
            }
            _ => Ok(record(n, gh)),
        });
    }
    match probe {
        Probe::None => {}
        Probe::Report(setup, run, alive) => {
            shell.expect_probe().times(1).returning(move |_| {
                Ok(ProbeReport {
                    setup_complete: setup,
                    run_complete: run,
                    runner_alive: alive,
                    exit_code: None,
                })
            });
        }
        Probe::Unreachable => {
            shell.expect_probe().times(1).returning(|t| {
                Err(ShellError::Timeout {
                    target: t.to_string(),
                    step: SshStep::Connect,
                    after: Duration::from_secs(10),
                })
            });
        }
        Probe::Auth => {
            shell.expect_probe().times(1).returning(|t| {
                Err(ShellError::AuthFailed { target: t.to_string(), username: "admin".into() })
            });
        }
    }
    let (vms, github, shell) = (Arc::new(vms), Arc::new(github), Arc::new(shell));
    let fleet = Arc::new(Fleet::new(
        FleetDeps { vms: vms.clone(), github: github.clone(), shell: shell.clone() },
        fleet_config(),
    ));
    let reconciler =
        reconciler::Reconciler::new(ReconcilerDeps { vms, github, shell }, fleet, reconciler_config());
    let report = reconciler.reconcile_once(Mode::DryRun).await.unwrap();
    assert_eq!(report.rows.len(), 1);
    let row = &report.rows[0];
    assert_eq!(row.vm, name);
    assert!(!row.applied, "dry run");
    let decision = row.decision.expect("decided");
    (decision.action, decision.reason)
}

#[tokio::test(start_paused = true)]
async fn every_row_of_the_decision_table_through_a_pass() {
    use Tri::{No, Unknown, Yes};
    let name = "mac-r0w00";
    let run = || running_vm(name);
    let rows: Vec<(u8, Vm, Gh, Probe, Action, Reason)> = vec![
        (1, vm_with_status(name, VmStatus::Failed), Gh::Busy, Probe::None, Action::Delete, Reason::VmFailed),
        (
            2,
            vm_with_status(name, VmStatus::Pending),
            Gh::Idle,
            Probe::None,
            Action::RecheckLater,
            Reason::StillDeploying,
        ),
        (4, run(), Gh::Error, Probe::None, Action::RecheckLater, Reason::GithubUnknown),
        (5, run(), Gh::Absent, Probe::None, Action::Delete, Reason::NoRunner),
        (6, run(), Gh::Busy, Probe::Unreachable, Action::Adopt, Reason::BusyPerGithub),
        (6, run(), Gh::Busy, Probe::Auth, Action::Adopt, Reason::BusyPerGithub),
        (7, run(), Gh::Idle, Probe::Unreachable, Action::RecheckLater, Reason::ProbeFailed),
        (7, run(), Gh::Offline, Probe::Report(Yes, No, Unknown), Action::RecheckLater, Reason::ProbeFailed),
        (9, run(), Gh::Idle, Probe::Auth, Action::Delete, Reason::AuthRejected),
        (10, run(), Gh::Idle, Probe::Report(No, No, No), Action::Delete, Reason::SetupIncomplete),
        (11, run(), Gh::Offline, Probe::Report(Yes, Yes, No), Action::CleanUp, Reason::RunFinished),
        (12, run(), Gh::Busy, Probe::Report(Yes, No, No), Action::Delete, Reason::RunnerCrashed),
        (13, run(), Gh::Idle, Probe::Report(Yes, No, Yes), Action::Adopt, Reason::RunnerRunning),
        // An `Other` status reads as still deploying; running without an endpoint too.
        (
            2,
            vm_with_status(name, VmStatus::Other("Scheduling".into())),
            Gh::Idle,
            Probe::None,
            Action::RecheckLater,
            Reason::StillDeploying,
        ),
    ];
    for (row, vm, gh, probe, action, reason) in rows {
        assert_eq!(dry_run_row(vm, gh, probe).await, (action, reason), "row {row}");
    }
}

#[tokio::test(start_paused = true)]
async fn rows_3_and_8_need_time_and_repeated_passes() {
    let lab = Lab::new();
    lab.orka.insert(vm_with_status("mac-pend1", VmStatus::Pending));
    lab.leftover("mac-unre1", Some(false), running());
    lab.shell.set_unreachable("mac-unre1", true);
    let decisions = |report: &reconciler::ReconcileReport| {
        report.rows.iter().map(|r| (r.vm.clone(), r.decision.unwrap().reason)).collect::<Vec<_>>()
    };
    let first = lab.reconciler.reconcile_once(Mode::Act).await.unwrap();
    assert_eq!(
        decisions(&first),
        vec![("mac-pend1".into(), Reason::StillDeploying), ("mac-unre1".into(), Reason::ProbeFailed)]
    );
    // A dry run neither counts strikes nor acts.
    lab.reconciler.reconcile_once(Mode::DryRun).await.unwrap();
    lab.reconciler.reconcile_once(Mode::DryRun).await.unwrap();
    tokio::time::advance(Duration::from_secs(300)).await;
    let second = lab.reconciler.reconcile_once(Mode::Act).await.unwrap();
    assert_eq!(decisions(&second)[1].1, Reason::ProbeFailed, "second strike");
    assert!(lab.orka.exists("mac-unre1"));
    tokio::time::advance(Duration::from_secs(601)).await;
    let third = lab.reconciler.reconcile_once(Mode::Act).await.unwrap();
    assert_eq!(
        decisions(&third),
        vec![("mac-pend1".into(), Reason::DeployAbandoned), ("mac-unre1".into(), Reason::Unreachable)]
    );
    lab.settle().await;
    assert!(lab.orka.names().is_empty());
    assert!(lab.github.names().is_empty());
}

#[tokio::test(start_paused = true)]
async fn a_probe_that_recovers_clears_the_strikes() {
    let lab = Lab::new();
    lab.leftover("mac-fl4ky", Some(false), running());
    lab.shell.set_unreachable("mac-fl4ky", true);
    lab.reconciler.reconcile_once(Mode::Act).await.unwrap();
    lab.reconciler.reconcile_once(Mode::Act).await.unwrap();
    lab.shell.set_unreachable("mac-fl4ky", false);
    let report = lab.reconciler.reconcile_once(Mode::Act).await.unwrap();
    assert_eq!(report.rows[0].decision.unwrap().action, Action::Adopt);
    assert!(lab.fleet.owns("mac-fl4ky"));
}

#[tokio::test(start_paused = true)]
async fn a_github_lookup_error_never_deletes() {
    let lab = Lab::new();
    lab.leftover("mac-gh3rr", None, crashed());
    for _ in 0..5 {
        *lab.github.fail_lookups.lock().unwrap() = 1;
        let report = lab.reconciler.reconcile_once(Mode::Act).await.unwrap();
        assert_eq!(report.rows[0].decision.unwrap().reason, Reason::GithubUnknown);
    }
    lab.settle().await;
    assert!(lab.orka.exists("mac-gh3rr"));
}

#[tokio::test(start_paused = true)]
async fn foreign_vms_are_never_touched() {
    let lab = Lab::new();
    for foreign in ["mac-large-x7k2p", "macx7k2p", "mac-x7k2", "mac-X7K2P", "linux-x7k2p", "mac-x7k2pq"] {
        lab.orka.insert(running_vm(foreign));
    }
    lab.leftover("mac-x7k2p", None, setup_incomplete());
    let report = lab.reconciler.reconcile_once(Mode::Act).await.unwrap();
    assert_eq!(report.rows.iter().map(|r| r.vm.as_str()).collect::<Vec<_>>(), vec!["mac-x7k2p"]);
    lab.settle().await;
    let mut left = lab.orka.names();
    left.sort();
    assert_eq!(
        left,
        vec!["linux-x7k2p", "mac-X7K2P", "mac-large-x7k2p", "mac-x7k2", "mac-x7k2pq", "macx7k2p"]
    );
    let looked_up: Vec<_> =
        lab.github.calls().into_iter().filter(|c| c.contains("large") || c.contains("linux")).collect();
    assert!(looked_up.is_empty(), "{looked_up:?}");
    assert!(lab.shell.calls().iter().all(|c| c.ends_with("mac-x7k2p")), "{:?}", lab.shell.calls());
}

#[tokio::test(start_paused = true)]
async fn fifty_unreachable_vms_are_decided_in_about_one_probe_timeout() {
    let lab = Lab::new();
    *lab.shell.hang_when_unreachable.lock().unwrap() = true;
    for i in 0..50 {
        let name = format!("mac-{:05}", i);
        lab.leftover(&name, Some(false), running());
        lab.shell.set_unreachable(&name, true);
    }
    let started = tokio::time::Instant::now();
    let report = lab.reconciler.reconcile_once(Mode::Act).await.unwrap();
    let elapsed = started.elapsed();
    assert_eq!(report.rows.len(), 50);
    assert!(report.rows.iter().all(|r| r.decision.unwrap().reason == Reason::ProbeFailed));
    // Virtual time: the probes ran in parallel, so the pass cost one 20 s timeout, not 50.
    assert!(elapsed >= Duration::from_secs(20), "{elapsed:?}");
    assert!(elapsed < Duration::from_secs(40), "{elapsed:?}");
}

#[tokio::test(start_paused = true)]
async fn the_pool_bounds_parallel_probes() {
    let mut config = reconciler_config();
    config.concurrency = 10;
    let lab = Lab::with(config);
    *lab.shell.hang_when_unreachable.lock().unwrap() = true;
    for i in 0..30 {
        let name = format!("mac-{:05}", i);
        lab.leftover(&name, Some(false), running());
        lab.shell.set_unreachable(&name, true);
    }
    let started = tokio::time::Instant::now();
    lab.reconciler.reconcile_once(Mode::DryRun).await.unwrap();
    let elapsed = started.elapsed();
    assert!(
        elapsed >= Duration::from_secs(60) && elapsed < Duration::from_secs(80),
        "3 waves of 20 s: {elapsed:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn vms_the_fleet_tracks_are_left_to_it() {
    let lab = Lab::new();
    *lab.orka.deploy_delay.lock().unwrap() = Duration::from_secs(0);
    lab.fleet.on_statistics(runner_core::Statistics { total_assigned_jobs: 1, ..Default::default() }).await;
    lab.settle().await;
    let name = lab.fleet.runners()[0].name.clone();
    let calls_before = lab.github.calls().len();
    let report = lab.reconciler.reconcile_once(Mode::Act).await.unwrap();
    assert_eq!(report.rows.len(), 1);
    assert_eq!((report.rows[0].vm.as_str(), report.rows[0].decision), (name.as_str(), None));
    assert_eq!(lab.github.calls().len(), calls_before, "not even looked up");
    assert!(lab.orka.exists(&name));
}

#[tokio::test(start_paused = true)]
async fn registrations_whose_vm_is_gone_are_removed() {
    let lab = Lab::new();
    // A VM seen by one pass that vanishes before the next, leaving its registration.
    lab.leftover("mac-v4n1s", Some(false), running());
    lab.shell.set_unreachable("mac-v4n1s", true);
    lab.reconciler.reconcile_once(Mode::Act).await.unwrap();
    lab.orka.vanish("mac-v4n1s");
    // A runner named in a job message whose VM never showed up in a listing.
    lab.github.register("mac-gh0st", SCALE_SET_ID, false);
    lab.fleet.handle_message(&completed_message(3, "j", "mac-gh0st", "succeeded"), &lab.queue).await.unwrap();
    assert_eq!(lab.fleet.seen_runner_names(), vec!["mac-gh0st".to_owned()]);
    // Another scale set's runner with a name we would own is left alone.
    lab.github.register("mac-0ther", 99, false);

    let dry = lab.reconciler.reconcile_once(Mode::DryRun).await.unwrap();
    assert_eq!(dry.registrations_removed, vec!["mac-gh0st".to_owned(), "mac-v4n1s".to_owned()]);
    assert!(lab.github.is_registered("mac-gh0st"), "dry run removes nothing");

    let report = lab.reconciler.reconcile_once(Mode::Act).await.unwrap();
    assert_eq!(report.registrations_removed, vec!["mac-gh0st".to_owned(), "mac-v4n1s".to_owned()]);
    assert_eq!(lab.github.names(), vec!["mac-0ther".to_owned()]);
    assert!(lab.fleet.seen_runner_names().is_empty());
}

#[tokio::test(start_paused = true)]
async fn a_dry_run_changes_nothing() {
    let lab = Lab::new();
    lab.leftover("mac-dry01", None, setup_incomplete());
    lab.leftover("mac-dry02", Some(true), running());
    let report = lab.reconciler.reconcile_once(Mode::DryRun).await.unwrap();
    let table: Vec<_> =
        report.rows.iter().map(|r| (r.vm.as_str(), r.action_label(), r.reason_label())).collect();
    assert_eq!(table, vec![("mac-dry01", "delete", "no_runner"), ("mac-dry02", "adopt", "runner_running")]);
    assert_eq!(report.rows[0].evidence_label(), "orka=running github=absent probe=not_probed strikes=0");
    assert_eq!(
        report.rows[1].evidence_label(),
        "orka=running github=busy probe=setup:yes,run:no,alive:yes strikes=0"
    );
    lab.settle().await;
    assert_eq!(lab.orka.names().len(), 2);
    assert!(lab.fleet.runners().is_empty());
    assert!(!lab.orka.calls().iter().any(|c| c.starts_with("delete")));
}

#[tokio::test(start_paused = true)]
async fn a_listing_failure_fails_the_pass_and_decides_nothing() {
    let lab = Lab::new();
    lab.leftover("mac-l1st0", None, setup_incomplete());
    *lab.orka.fail_lists.lock().unwrap() = 1;
    assert!(lab.reconciler.reconcile_once(Mode::Act).await.is_err());
    assert!(lab.orka.exists("mac-l1st0"));
}

#[tokio::test(start_paused = true)]
async fn the_startup_sweep_is_the_first_periodic_activation_and_triggers_wake_it() {
    let lab = Arc::new(Lab::new());
    lab.leftover("mac-st4rt", None, setup_incomplete());
    let cancel = CancellationToken::new();
    let runner = {
        let lab = lab.clone();
        let cancel = cancel.clone();
        tokio::spawn(async move { lab.reconciler.run_periodic(Duration::from_secs(300), cancel).await })
    };
    tokio::time::sleep(Duration::from_secs(1)).await;
    lab.settle().await;
    assert!(!lab.orka.exists("mac-st4rt"), "the startup sweep ran at once");

    lab.leftover("mac-l4ter", None, setup_incomplete());
    tokio::time::sleep(Duration::from_secs(10)).await;
    assert!(lab.orka.exists("mac-l4ter"), "next pass not due yet");
    lab.reconciler.trigger();
    tokio::time::sleep(Duration::from_secs(1)).await;
    lab.settle().await;
    assert!(!lab.orka.exists("mac-l4ter"), "on-demand activation");

    lab.leftover("mac-p3r1o", None, setup_incomplete());
    tokio::time::sleep(Duration::from_secs(301)).await;
    lab.settle().await;
    assert!(!lab.orka.exists("mac-p3r1o"), "periodic activation");

    cancel.cancel();
    tokio::time::timeout(Duration::from_secs(5), runner).await.expect("stops when cancelled").unwrap();
}

#[tokio::test(start_paused = true)]
async fn clean_up_and_delete_deregister_before_deleting_the_vm() {
    use mockall::Sequence;
    use mockall::predicate::eq;
    let finished = running_vm("mac-f1n1s");
    let orphan = running_vm("mac-0rph4");
    let mut vms = MockVmBackend::new();
    let listed = vec![finished.clone(), orphan.clone()];
    vms.expect_list_vms().times(1).returning(move || Ok(listed.clone()));
    let mut github = MockScaleSetApi::new();
    let mut shell = MockVmShell::new();
    let mut finished_seq = Sequence::new();
    let mut orphan_seq = Sequence::new();
    let finished_record = record("mac-f1n1s", Gh::Offline);
    let orphan_record = record("mac-0rph4", Gh::Idle);
    // Evidence.
    let r = finished_record.clone();
    github
        .expect_get_runner_by_name()
        .with(eq("mac-f1n1s"))
        .times(1)
        .in_sequence(&mut finished_seq)
        .returning(move |_| Ok(r.clone()));
    shell.expect_probe().withf(|t| t.host == "mac-f1n1s").times(1).returning(|_| {
        Ok(ProbeReport {
            setup_complete: Tri::Yes,
            run_complete: Tri::Yes,
            runner_alive: Tri::No,
            exit_code: Some(0),
        })
    });
    let r = orphan_record.clone();
    github
        .expect_get_runner_by_name()
        .with(eq("mac-0rph4"))
        .times(1)
        .in_sequence(&mut orphan_seq)
        .returning(move |_| Ok(r.clone()));
    shell.expect_probe().withf(|t| t.host == "mac-0rph4").times(1).returning(|_| {
        Ok(ProbeReport {
            setup_complete: Tri::No,
            run_complete: Tri::No,
            runner_alive: Tri::No,
            exit_code: None,
        })
    });
    // Clean up: the finished runner leaves by itself on the next poll, then the VM goes.
    github
        .expect_get_runner_by_name()
        .with(eq("mac-f1n1s"))
        .times(1)
        .in_sequence(&mut finished_seq)
        .returning(|_| Ok(None));
    vms.expect_delete_vm()
        .with(eq("mac-f1n1s"))
        .times(1)
        .in_sequence(&mut finished_seq)
        .returning(|_| Ok(()));
    // Delete: the registration is removed at once, then the VM goes.
    github
        .expect_get_runner_by_name()
        .with(eq("mac-0rph4"))
        .times(1)
        .in_sequence(&mut orphan_seq)
        .returning(move |_| Ok(orphan_record.clone()));
    github.expect_remove_runner().with(eq(5)).times(1).in_sequence(&mut orphan_seq).returning(|_| Ok(()));
    vms.expect_delete_vm().with(eq("mac-0rph4")).times(1).in_sequence(&mut orphan_seq).returning(|_| Ok(()));

    let (vms, github, shell) = (Arc::new(vms), Arc::new(github), Arc::new(shell));
    let fleet = Arc::new(Fleet::new(
        FleetDeps { vms: vms.clone(), github: github.clone(), shell: shell.clone() },
        fleet_config(),
    ));
    let reconciler = reconciler::Reconciler::new(
        ReconcilerDeps { vms, github, shell },
        fleet.clone(),
        reconciler_config(),
    );
    let report = reconciler.reconcile_once(Mode::Act).await.unwrap();
    let actions: Vec<_> = report.rows.iter().map(|r| (r.vm.as_str(), r.action_label(), r.applied)).collect();
    assert_eq!(actions, vec![("mac-0rph4", "delete", true), ("mac-f1n1s", "clean_up", true)]);
    tokio::time::timeout(Duration::from_secs(600), fleet.wait_settled()).await.unwrap();
    assert!(fleet.runners().is_empty());
}
