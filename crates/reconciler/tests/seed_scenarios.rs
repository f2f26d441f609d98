//! The seed's manual scenarios at crate level: "interrupted run" (the old VM is deleted)
//! and "adopting VMs" (the VM is kept while its job runs, then deleted after it — also
//! when the `JobCompleted` was consumed by the process that died), plus cancelling an
//! adopted job.

mod common;

use common::*;
use reconciler::{Action, Mode, Reason};

#[tokio::test(start_paused = true)]
async fn interrupted_run_old_vms_are_deleted_or_cleaned_up() {
    let lab = Lab::new();
    // Killed mid-provisioning: VM exists, setup never completed.
    lab.leftover("mac-aaaa1", Some(false), setup_incomplete());
    // Killed while a job ran; the job has since ended and the runner deregistered itself.
    lab.leftover("mac-aaaa2", None, finished());
    // Killed after the job ended: run sentinel present, registration still there.
    lab.leftover("mac-aaaa3", Some(false), finished());

    let report = lab.reconciler.reconcile_once(Mode::Act).await.unwrap();
    let decided: Vec<_> = report.rows.iter().map(|r| (r.vm.as_str(), r.decision.unwrap().reason)).collect();
    assert_eq!(
        decided,
        vec![
            ("mac-aaaa1", Reason::SetupIncomplete),
            ("mac-aaaa2", Reason::NoRunner),
            ("mac-aaaa3", Reason::RunFinished)
        ]
    );
    assert!(report.rows.iter().all(|r| r.applied));
    lab.settle().await;
    assert!(lab.orka.names().is_empty(), "old VMs deleted: {:?}", lab.orka.names());
    assert!(lab.github.names().is_empty(), "registrations removed: {:?}", lab.github.names());
    assert!(lab.fleet.runners().is_empty());
    // Never SSH'd into the VM GitHub did not know.
    assert!(!lab.shell.calls().contains(&"probe mac-aaaa2".to_owned()));
}

#[tokio::test(start_paused = true)]
async fn adopting_vms_kept_while_the_job_runs_then_deleted_after_it() {
    let lab = Lab::new();
    lab.leftover("mac-bbbb1", Some(true), running());
    let report = lab.reconciler.reconcile_once(Mode::Act).await.unwrap();
    assert_eq!(report.rows[0].decision.map(|d| d.action), Some(Action::Adopt));
    lab.settle().await;
    assert!(lab.orka.exists("mac-bbbb1"), "a running job is never killed");
    assert!(lab.fleet.owns("mac-bbbb1"));

    // A second pass leaves the tracked VM to the fleet.
    let again = lab.reconciler.reconcile_once(Mode::Act).await.unwrap();
    assert_eq!(again.rows[0].decision, None);
    assert_eq!(again.rows[0].action_label(), "tracked");

    // The job completes; the message reaches this process.
    lab.github.finish_job("mac-bbbb1");
    lab.shell.finish_run("mac-bbbb1");
    lab.fleet
        .handle_message(&completed_message(10, "j", "mac-bbbb1", "succeeded"), &lab.queue)
        .await
        .unwrap();
    lab.settle().await;
    assert!(lab.orka.names().is_empty());
    assert!(lab.github.names().is_empty());
}

#[tokio::test(start_paused = true)]
async fn adopting_vms_whose_job_completed_message_the_dead_process_consumed() {
    let lab = Lab::new();
    lab.leftover("mac-cccc1", Some(true), running());
    lab.reconciler.reconcile_once(Mode::Act).await.unwrap();
    lab.settle().await;
    assert!(lab.fleet.owns("mac-cccc1"));

    // The job ends but no JobCompleted ever arrives: the periodic probe sees the sentinel.
    lab.github.finish_job("mac-cccc1");
    lab.shell.finish_run("mac-cccc1");
    lab.fleet.tick().await;
    lab.settle().await;
    assert!(lab.orka.names().is_empty(), "VM deleted after its job: {:?}", lab.orka.names());
    assert!(lab.github.names().is_empty());
    assert!(lab.fleet.runners().is_empty());
}

#[tokio::test(start_paused = true)]
async fn cancelling_an_adopted_job_cleans_its_vm_up() {
    let lab = Lab::new();
    lab.leftover("mac-dddd1", Some(true), running());
    lab.reconciler.reconcile_once(Mode::Act).await.unwrap();
    lab.github.finish_job("mac-dddd1");
    lab.shell.finish_run("mac-dddd1");
    lab.fleet.handle_message(&completed_message(11, "j", "mac-dddd1", "canceled"), &lab.queue).await.unwrap();
    lab.settle().await;
    assert!(lab.orka.names().is_empty());
    assert!(lab.github.names().is_empty());
}

#[tokio::test(start_paused = true)]
async fn a_delete_github_refuses_keeps_the_vm_and_the_fleet_watches_it() {
    let lab = Lab::new();
    // run.sh crashed, but GitHub still shows the job on the runner.
    lab.leftover("mac-eeee1", Some(true), crashed());
    let report = lab.reconciler.reconcile_once(Mode::Act).await.unwrap();
    assert_eq!(report.rows[0].decision.map(|d| d.reason), Some(Reason::RunnerCrashed));
    lab.settle().await;
    assert!(lab.orka.exists("mac-eeee1"), "JobStillRunning: never delete under a job GitHub sees");
    assert_eq!(lab.fleet.runners()[0].stage, provisioner::RunnerStage::Busy);

    // GitHub gives up on the job; the fleet's probe (endpoint learned from the listing)
    // sees the dead runner and retires it.
    lab.github.set_busy("mac-eeee1", false);
    lab.fleet.tick().await;
    lab.settle().await;
    assert!(lab.orka.names().is_empty());
    assert!(lab.github.names().is_empty());
    assert!(lab.shell.calls().contains(&"probe mac-eeee1".to_owned()));
}
