//! The reconciler acts through the `FleetControl` seam, not a concrete fleet: a pass with a
//! strict mock fleet leaves tracked VMs alone, adopts a live runner and hands a crashed one
//! over for deletion, each exactly once.

mod common;

use std::sync::Arc;

use common::*;
use mockall::predicate::eq;
use provisioner::fakes::running_vm;
use reconciler::{Action, Mode, Reason, Reconciler, ReconcilerDeps};
use runner_core::{
    MockFleetControl, MockScaleSetApi, MockVmBackend, MockVmShell, ProbeReport, RetireReason, RunnerRecord,
    Tri,
};

fn record(name: &str, busy: bool) -> RunnerRecord {
    RunnerRecord {
        id: 5,
        name: name.into(),
        runner_scale_set_id: SCALE_SET_ID,
        status: Some("online".into()),
        busy: Some(busy),
    }
}

#[tokio::test(start_paused = true)]
async fn a_pass_acts_only_through_the_fleet_seam() {
    let mut vms = MockVmBackend::new();
    vms.expect_list_vms()
        .times(1)
        .returning(|| Ok(vec![running_vm("mac-track"), running_vm("mac-alive"), running_vm("mac-crash")]));
    let mut github = MockScaleSetApi::new();
    github.expect_get_runner_by_name().times(2).returning(|name| Ok(Some(record(name, name == "mac-crash"))));
    let mut shell = MockVmShell::new();
    shell.expect_probe().times(2).returning(|target| {
        let alive = if target.host == "mac-alive" { Tri::Yes } else { Tri::No };
        Ok(ProbeReport {
            setup_complete: Tri::Yes,
            run_complete: Tri::No,
            runner_alive: alive,
            exit_code: None,
        })
    });

    let mut fleet = MockFleetControl::new();
    fleet.expect_owns().returning(|name| name == "mac-track");
    fleet.expect_seen_runner_names().returning(Vec::new);
    fleet
        .expect_adopt()
        .withf(|vm, runner, busy| vm.name == "mac-alive" && runner.name == "mac-alive" && !busy)
        .times(1)
        .returning(|_, _, _| true);
    fleet
        .expect_retire_vm()
        .with(eq("mac-crash"), eq(RetireReason::Reconciler))
        .times(1)
        .returning(|_, _| true);

    let deps = ReconcilerDeps { vms: Arc::new(vms), github: Arc::new(github), shell: Arc::new(shell) };
    let reconciler = Reconciler::new(deps, Arc::new(fleet), reconciler_config());
    let report = reconciler.reconcile_once(Mode::Act).await.unwrap();

    let rows: Vec<_> = report
        .rows
        .iter()
        .map(|row| (row.vm.as_str(), row.decision.map(|d| (d.action, d.reason)), row.applied))
        .collect();
    assert_eq!(
        rows,
        vec![
            ("mac-alive", Some((Action::Adopt, Reason::RunnerRunning)), true),
            ("mac-crash", Some((Action::Delete, Reason::RunnerCrashed)), true),
            ("mac-track", None, false),
        ]
    );
}
