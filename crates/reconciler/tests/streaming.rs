//! A pass acts as evidence arrives and completes the strike rule within itself: a VM that
//! needs no probe is acted on at once, an unreachable one is re-probed a probe timeout
//! apart until it answers or strikes out — and every safety rule (GitHub lookup error,
//! busy per GitHub or per job message, tracked by the fleet) is checked again before each
//! strike and before acting. All on a paused clock: "time" below is virtual.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use reconciler::{Mode, ReconcileReport};
use tokio::task::JoinHandle;
use tokio::time::Instant;

/// The probe timeout and the strike spacing of `reconciler_config()`.
const T: Duration = Duration::from_secs(20);

fn spawn_pass(lab: &Arc<Lab>, mode: Mode) -> JoinHandle<ReconcileReport> {
    let lab = lab.clone();
    tokio::spawn(async move { lab.reconciler.reconcile_once(mode).await.expect("pass") })
}

fn reason_of(report: &ReconcileReport, vm: &str) -> &'static str {
    report.rows.iter().find(|r| r.vm == vm).map(|r| r.reason_label()).expect("row")
}

/// An idle runner whose VM does not answer SSH (`hang`: a black hole; otherwise the
/// connection fails at once).
fn unreachable_idle(lab: &Lab, name: &str, hang: bool) {
    lab.leftover(name, Some(false), running());
    lab.shell.set_unreachable(name, true);
    *lab.shell.hang_when_unreachable.lock().unwrap() = hang;
}

#[tokio::test(start_paused = true)]
async fn a_vm_needing_no_probe_is_deleted_before_a_black_hole_probe_times_out() {
    let lab = Arc::new(Lab::new());
    unreachable_idle(&lab, "mac-h0le1", true);
    lab.leftover("mac-n0reg", None, running());
    lab.orka.insert(vm_with_status("mac-fa1ld", runner_core::VmStatus::Failed));
    let pass = spawn_pass(&lab, Mode::Act);

    tokio::time::sleep(T / 4).await;
    assert!(!pass.is_finished(), "the black hole's probe still runs");
    assert!(!lab.orka.exists("mac-n0reg"), "no registration: deleted at once");
    assert!(!lab.orka.exists("mac-fa1ld"), "failed: deleted at once");
    assert!(lab.orka.exists("mac-h0le1"));

    let report = pass.await.unwrap();
    // The table still has every VM, sorted.
    let table: Vec<_> = report.rows.iter().map(|r| (r.vm.as_str(), r.reason_label(), r.applied)).collect();
    assert_eq!(
        table,
        vec![
            ("mac-fa1ld", "vm_failed", true),
            ("mac-h0le1", "unreachable", true),
            ("mac-n0reg", "no_runner", true)
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn black_holes_strike_out_within_one_pass_in_about_n_probe_timeouts() {
    let lab = Arc::new(Lab::new());
    for i in 0..20 {
        unreachable_idle(&lab, &format!("mac-b{i:04}"), true);
    }
    let started = Instant::now();
    let report = lab.reconciler.reconcile_once(Mode::Act).await.unwrap();
    let elapsed = started.elapsed();
    assert!(report.rows.iter().all(|r| r.reason_label() == "unreachable" && r.applied), "{report:?}");
    // Three strikes of one probe timeout each, in parallel across VMs.
    assert!(elapsed >= 3 * T && elapsed < 3 * T + T / 2, "{elapsed:?}");
    lab.settle().await;
    assert!(lab.orka.names().is_empty());
    assert!(lab.github.names().is_empty());
}

#[tokio::test(start_paused = true)]
async fn refused_connections_are_struck_one_probe_timeout_apart_not_in_a_burst() {
    let lab = Arc::new(Lab::new());
    unreachable_idle(&lab, "mac-refu5", false);
    let pass = spawn_pass(&lab, Mode::Act);
    tokio::time::sleep(T + T / 2).await;
    assert!(lab.orka.exists("mac-refu5"), "two fast failures are not yet N strikes");
    let probes = lab.shell.calls().iter().filter(|c| *c == "probe mac-refu5").count();
    assert_eq!(probes, 2);
    let report = pass.await.unwrap();
    assert_eq!(reason_of(&report, "mac-refu5"), "unreachable");
    lab.settle().await;
    assert!(!lab.orka.exists("mac-refu5"));
}

#[tokio::test(start_paused = true)]
async fn a_vm_that_answers_between_strikes_is_kept() {
    let lab = Arc::new(Lab::new());
    unreachable_idle(&lab, "mac-b4ck1", false);
    let pass = spawn_pass(&lab, Mode::Act);
    tokio::time::sleep(T / 2).await;
    lab.shell.set_unreachable("mac-b4ck1", false);
    let report = pass.await.unwrap();
    assert_eq!(reason_of(&report, "mac-b4ck1"), "runner_running");
    assert!(lab.fleet.owns("mac-b4ck1"));
    assert!(lab.orka.exists("mac-b4ck1"));
}

#[tokio::test(start_paused = true)]
async fn quick_strikes_stop_at_a_github_lookup_error() {
    let lab = Arc::new(Lab::new());
    unreachable_idle(&lab, "mac-gherr", false);
    let pass = spawn_pass(&lab, Mode::Act);
    tokio::time::sleep(T / 2).await;
    *lab.github.fail_lookups.lock().unwrap() = 100;
    let report = pass.await.unwrap();
    assert_eq!(reason_of(&report, "mac-gherr"), "github_lookup_failed");
    lab.settle().await;
    assert!(lab.orka.exists("mac-gherr"), "never deleted on a lookup error");
    assert!(lab.github.is_registered("mac-gherr"));
}

#[tokio::test(start_paused = true)]
async fn quick_strikes_stop_when_github_says_busy() {
    let lab = Arc::new(Lab::new());
    unreachable_idle(&lab, "mac-gbusy", false);
    let pass = spawn_pass(&lab, Mode::Act);
    tokio::time::sleep(T / 2).await;
    lab.github.set_busy("mac-gbusy", true);
    let report = pass.await.unwrap();
    assert_eq!(reason_of(&report, "mac-gbusy"), "busy_per_github");
    lab.settle().await;
    assert!(lab.orka.exists("mac-gbusy"));
    assert_eq!(lab.fleet.runners()[0].stage, provisioner::RunnerStage::Busy);
}

/// GitHub's list keeps saying idle; a `JobStarted` message naming the runner is the
/// evidence that a job runs on it.
#[tokio::test(start_paused = true)]
async fn quick_strikes_stop_when_a_job_message_says_busy() {
    let lab = Arc::new(Lab::new());
    unreachable_idle(&lab, "mac-jbusy", false);
    let pass = spawn_pass(&lab, Mode::Act);
    tokio::time::sleep(T / 2).await;
    lab.fleet.handle_message(&started_message(1, "j1", "mac-jbusy"), &lab.queue).await.unwrap();
    let report = pass.await.unwrap();
    assert_eq!(reason_of(&report, "mac-jbusy"), "busy_per_job_message");
    assert_eq!(
        report.rows[0].evidence_label(),
        "orka=running github=idle job=running probe=unreachable strikes=1"
    );
    lab.settle().await;
    assert!(lab.orka.exists("mac-jbusy"));
    assert!(lab.github.is_registered("mac-jbusy"));
    assert_eq!(lab.fleet.runners()[0].stage, provisioner::RunnerStage::Busy);
}

#[tokio::test(start_paused = true)]
async fn quick_strikes_stop_when_the_fleet_takes_the_vm() {
    let lab = Arc::new(Lab::new());
    unreachable_idle(&lab, "mac-tr4ck", false);
    let pass = spawn_pass(&lab, Mode::Act);
    tokio::time::sleep(T / 2).await;
    let record = runner_core::RunnerRecord {
        id: 1,
        name: "mac-tr4ck".into(),
        runner_scale_set_id: SCALE_SET_ID,
        status: Some("online".into()),
        busy: Some(false),
    };
    assert!(lab.fleet.adopt(provisioner::fakes::running_vm("mac-tr4ck"), record, true).await);
    let probes_before = lab.shell.calls().len();
    let report = pass.await.unwrap();
    assert_eq!(reason_of(&report, "mac-tr4ck"), "tracked_by_fleet");
    assert_eq!(lab.shell.calls().len(), probes_before, "not probed again");
    lab.settle().await;
    assert!(lab.orka.exists("mac-tr4ck"));
}

/// The evidence of the last strike is a probe timeout old when the strike ends: a job
/// message or GitHub saying busy in the meantime still prevents the deletion.
#[tokio::test(start_paused = true)]
async fn busy_evidence_that_arrives_during_the_last_probe_prevents_the_deletion() {
    let lab = Arc::new(Lab::new());
    unreachable_idle(&lab, "mac-l4st1", true);
    lab.leftover("mac-l4st2", Some(false), running());
    lab.shell.set_unreachable("mac-l4st2", true);
    let pass = spawn_pass(&lab, Mode::Act);
    tokio::time::sleep(2 * T + T / 2).await;
    lab.fleet.handle_message(&started_message(1, "j1", "mac-l4st1"), &lab.queue).await.unwrap();
    lab.github.set_busy("mac-l4st2", true);
    let report = pass.await.unwrap();
    assert_eq!(reason_of(&report, "mac-l4st1"), "busy_per_job_message");
    assert_eq!(reason_of(&report, "mac-l4st2"), "busy_per_github");
    lab.settle().await;
    assert!(lab.orka.exists("mac-l4st1") && lab.orka.exists("mac-l4st2"));
}

/// The list says idle; a job message said the job started and none said it completed:
/// the unreachable VM is adopted as busy, never deleted, however many passes run.
#[tokio::test(start_paused = true)]
async fn an_unreachable_vm_busy_per_job_message_is_never_deleted_although_the_list_says_idle() {
    let lab = Lab::new();
    unreachable_idle(&lab, "mac-gh1dl", true);
    lab.fleet.handle_message(&started_message(1, "j1", "mac-gh1dl"), &lab.queue).await.unwrap();
    for _ in 0..4 {
        lab.reconciler.reconcile_once(Mode::Act).await.unwrap();
        tokio::time::advance(Duration::from_secs(300)).await;
    }
    lab.settle().await;
    assert!(lab.orka.exists("mac-gh1dl"));
    assert!(lab.github.is_registered("mac-gh1dl"));
    assert_eq!(lab.fleet.runners()[0].stage, provisioner::RunnerStage::Busy);

    // Started and completed (even in one batch): the job is over, the VM may go.
    let lab = Lab::new();
    unreachable_idle(&lab, "mac-d0ne1", true);
    let mut batch = started_message(1, "j1", "mac-d0ne1");
    batch.job_messages.extend(completed_message(1, "j1", "mac-d0ne1", "succeeded").job_messages);
    lab.fleet.handle_message(&batch, &lab.queue).await.unwrap();
    let report = lab.reconciler.reconcile_once(Mode::Act).await.unwrap();
    assert_eq!(reason_of(&report, "mac-d0ne1"), "unreachable");
    lab.settle().await;
    assert!(!lab.orka.exists("mac-d0ne1"));
}

#[tokio::test(start_paused = true)]
async fn a_dry_run_probes_once_remembers_nothing_and_changes_nothing() {
    let lab = Arc::new(Lab::new());
    unreachable_idle(&lab, "mac-dryb1", true);
    for _ in 0..3 {
        let started = Instant::now();
        let report = lab.reconciler.reconcile_once(Mode::DryRun).await.unwrap();
        assert!(started.elapsed() < T + T / 2, "one probe round: {:?}", started.elapsed());
        assert_eq!(reason_of(&report, "mac-dryb1"), "probe_failed");
        assert_eq!(report.rows[0].evidence.unwrap().previous_probe_failures, 0, "no strike remembered");
        assert!(!report.rows[0].applied);
    }
    lab.settle().await;
    assert!(lab.orka.exists("mac-dryb1"));
}
