//! The runner lifecycle end to end against in-memory fakes of Orka, GitHub and SSH, on a
//! paused clock: every transition, the job-message rules, the periodic probe, adoption,
//! drain.

mod common;

use std::time::Duration;

use common::*;
use provisioner::{FleetEvent, RetireReason, RunnerStage, ScalingConfig};

#[tokio::test(start_paused = true)]
async fn a_job_gets_a_runner_that_is_deleted_after_its_job() {
    let lab = Lab::new(config());
    lab.deliver(&msg(1, stats(1, 0), vec![assigned("j1")])).await;
    lab.settle().await;
    let name = lab.only_runner();
    assert!(name.starts_with("mac-") && runner_core::naming::is_owned_by("mac", &name), "{name}");
    assert_eq!(lab.stage_of(&name), Some(RunnerStage::Idle));
    assert!(lab.orka.exists(&name));
    assert!(lab.github.is_registered(&name));
    assert!(lab.shell.get(&name).alive, "run.sh started");

    // The JIT config is only requested once the VM exists.
    let deploy_at = lab.orka.calls().iter().position(|c| *c == format!("deploy {name}"));
    assert!(deploy_at.is_some());
    assert_eq!(lab.github.calls().first(), Some(&format!("jit {name}")));

    lab.deliver(&msg(2, stats(1, 1), vec![started("j1", &name)])).await;
    assert_eq!(lab.stage_of(&name), Some(RunnerStage::Busy));

    lab.github.finish_job(&name);
    lab.shell.finish_run(&name);
    lab.deliver(&msg(3, stats(0, 0), vec![completed("j1", &name, "succeeded")])).await;
    lab.settle().await;
    lab.assert_clean();

    use RunnerStage::*;
    assert_eq!(
        lab.recorder.stages(&name),
        vec![Queued, DeployingVm, CreatingJitConfig, Installing, Idle, Busy, Finishing, DeletingVm]
    );
    let gone: Vec<_> = lab
        .recorder
        .events()
        .into_iter()
        .filter_map(|e| match e {
            FleetEvent::Gone { runner, reason, .. } => Some((runner, reason)),
            _ => None,
        })
        .collect();
    assert_eq!(gone, vec![(name.clone(), RetireReason::JobCompleted)]);
    let counters = lab.fleet.counters();
    assert_eq!((counters.provisions_started, counters.provisions_succeeded), (1, 1));
    assert!(
        lab.recorder
            .events()
            .iter()
            .any(|e| matches!(e, FleetEvent::SshReady { runner, .. } if *runner == name))
    );
}

#[tokio::test(start_paused = true)]
async fn the_jit_config_never_reaches_debug_output_or_events() {
    let lab = Lab::new(config());
    lab.deliver(&msg(1, stats(1, 0), vec![assigned("j1")])).await;
    lab.settle().await;
    let installs = lab.shell.installs_seen();
    assert_eq!(installs.len(), 1);
    assert!(!installs[0].contains("jit-secret"), "{}", installs[0]);
    let events = format!("{:?}", lab.recorder.events());
    assert!(!events.contains("jit-secret"), "{events}");
    let snapshot = format!("{:?} {:?}", lab.fleet.runners(), lab.fleet.counters());
    assert!(!snapshot.contains("jit-secret"));
}

#[tokio::test(start_paused = true)]
async fn a_runner_that_does_not_deregister_itself_is_removed_after_the_timeout() {
    let lab = Lab::new(config());
    *lab.github.self_deregister.lock().unwrap() = false;
    lab.deliver(&msg(1, stats(1, 0), vec![assigned("j1")])).await;
    lab.settle().await;
    let name = lab.only_runner();
    lab.deliver(&msg(2, stats(1, 1), vec![started("j1", &name)])).await;
    lab.github.finish_job(&name);

    let before = tokio::time::Instant::now();
    lab.deliver(&msg(3, stats(0, 0), vec![completed("j1", &name, "failed")])).await;
    lab.settle().await;
    let waited = before.elapsed();
    lab.assert_clean();
    assert!(waited >= Duration::from_secs(30), "waited the deregistration timeout first: {waited:?}");
    let calls = lab.github.calls();
    let lookups = calls.iter().filter(|c| **c == format!("lookup {name}")).count();
    assert!(lookups >= 10, "polled every 2 s for 30 s, got {lookups} lookups");
    assert!(calls.iter().any(|c| c.starts_with("remove ")), "{calls:?}");
}

#[tokio::test(start_paused = true)]
async fn job_still_running_sends_a_retiring_runner_back_to_busy() {
    let lab = Lab::new(config());
    lab.deliver(&msg(1, stats(1, 0), vec![assigned("j1")])).await;
    lab.settle().await;
    let name = lab.only_runner();
    // The JobStarted was lost; GitHub knows the runner is busy.
    lab.github.set_busy(&name, true);
    tokio::time::advance(Duration::from_secs(120)).await;
    lab.fleet.on_statistics(stats(0, 0)).await; // looks like surplus idle past the grace
    lab.settle().await;
    assert_eq!(lab.stage_of(&name), Some(RunnerStage::Busy), "a running job is never cut short");
    assert!(lab.orka.exists(&name));
    assert!(lab.github.is_registered(&name));
}

#[tokio::test(start_paused = true)]
async fn duplicates_and_out_of_order_messages_are_harmless() {
    let lab = Lab::new(config());
    let first = msg(1, stats(1, 0), vec![assigned("j1")]);
    lab.deliver(&first).await;
    lab.deliver(&first).await;
    lab.settle().await;
    let name = lab.only_runner();

    // Completed before Started, then the late Started and a duplicate Completed.
    lab.github.finish_job(&name);
    lab.shell.finish_run(&name);
    lab.deliver(&msg(3, stats(0, 0), vec![completed("j1", &name, "succeeded")])).await;
    lab.deliver(&msg(2, stats(1, 1), vec![started("j1", &name), assigned("j1")])).await;
    lab.deliver(&msg(3, stats(0, 0), vec![completed("j1", &name, "succeeded")])).await;
    lab.settle().await;
    lab.assert_clean();
    assert_eq!(lab.fleet.counters().provisions_started, 1, "no second runner for the same job");
    // The older message's statistics did not overwrite the newer ones.
    assert_eq!(lab.fleet.statistics(), stats(0, 0));
}

#[tokio::test(start_paused = true)]
async fn a_withdrawn_job_stops_the_provisioning_nobody_needs() {
    let lab = Lab::new(config());
    *lab.orka.deploy_delay.lock().unwrap() = Duration::from_secs(300);
    lab.deliver(&msg(1, stats(1, 0), vec![assigned("j1")])).await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    let name = lab.only_runner();
    assert_eq!(lab.stage_of(&name), Some(RunnerStage::DeployingVm));

    lab.deliver(&msg(2, stats(0, 0), vec![completed("j1", "", "canceled")])).await;
    lab.settle().await;
    lab.assert_clean();
    assert!(lab.orka.calls().contains(&format!("delete {name}")), "deleted by name: {:?}", lab.orka.calls());
    assert_eq!(lab.fleet.counters().retired.get(&RetireReason::Cancelled), Some(&1));
}

#[tokio::test(start_paused = true)]
async fn a_withdrawn_job_whose_statistics_lag_keeps_provisioning() {
    // The statistics still count the job: the level says a runner is needed (the service
    // often re-assigns a withdrawn job under a new id), so provisioning goes on.
    let lab = Lab::new(config());
    lab.deliver(&msg(1, stats(1, 0), vec![assigned("j1")])).await;
    lab.deliver(&msg(2, stats(1, 0), vec![completed("j1", "", "canceled")])).await;
    lab.settle().await;
    let name = lab.only_runner();
    assert_eq!(lab.stage_of(&name), Some(RunnerStage::Idle));
}

#[tokio::test(start_paused = true)]
async fn the_run_sentinel_finishes_a_runner_whose_job_completed_message_was_lost() {
    let lab = Lab::new(config());
    lab.deliver(&msg(1, stats(1, 0), vec![assigned("j1")])).await;
    lab.settle().await;
    let name = lab.only_runner();
    lab.deliver(&msg(2, stats(1, 1), vec![started("j1", &name)])).await;
    lab.fleet.tick().await;
    assert_eq!(lab.stage_of(&name), Some(RunnerStage::Busy), "healthy busy runner untouched");

    lab.shell.finish_run(&name);
    lab.github.finish_job(&name);
    lab.fleet.on_statistics(stats(0, 0)).await;
    lab.fleet.tick().await;
    lab.settle().await;
    lab.assert_clean();
    assert_eq!(lab.fleet.counters().retired.get(&RetireReason::RunComplete), Some(&1));
}

#[tokio::test(start_paused = true)]
async fn a_crashed_runner_is_retired_and_replaced_while_the_job_waits() {
    let lab = Lab::new(config());
    lab.deliver(&msg(1, stats(1, 0), vec![assigned("j1")])).await;
    lab.settle().await;
    let name = lab.only_runner();
    lab.shell.crash(&name);
    lab.fleet.tick().await;
    lab.settle().await;
    assert!(!lab.orka.exists(&name) && !lab.github.is_registered(&name));
    assert_eq!(lab.fleet.counters().retired.get(&RetireReason::RunnerCrashed), Some(&1));
    // Level-triggered: the job still waits, so the next signal provisions a new runner.
    lab.fleet.tick().await;
    lab.settle().await;
    let replacement = lab.only_runner();
    assert_ne!(replacement, name);
    assert_eq!(lab.stage_of(&replacement), Some(RunnerStage::Idle));
}

#[tokio::test(start_paused = true)]
async fn a_vanished_vm_has_its_registration_removed() {
    let lab = Lab::new(config());
    lab.deliver(&msg(1, stats(1, 0), vec![assigned("j1")])).await;
    lab.settle().await;
    let name = lab.only_runner();
    lab.orka.vanish(&name);
    lab.fleet.on_statistics(stats(0, 0)).await;
    lab.fleet.tick().await;
    lab.settle().await;
    lab.assert_clean();
    assert_eq!(lab.fleet.counters().retired.get(&RetireReason::VmVanished), Some(&1));
}

#[tokio::test(start_paused = true)]
async fn an_unreachable_runner_is_retired_after_strikes_unless_github_reports_it_busy() {
    let lab = Lab::new(config());
    lab.deliver(&msg(1, stats(2, 0), vec![assigned("j1"), assigned("j2")])).await;
    lab.settle().await;
    let names = lab.names();
    let (busy, idle) = (&names[0], &names[1]);
    lab.deliver(&msg(2, stats(2, 1), vec![started("j1", busy)])).await;
    lab.github.set_busy(busy, true);
    lab.shell.set_unreachable(busy, true);
    lab.shell.set_unreachable(idle, true);
    for _ in 0..2 {
        lab.fleet.tick().await;
    }
    lab.settle().await;
    assert_eq!(lab.names().len(), 2, "two strikes are not enough");
    lab.fleet.on_statistics(stats(1, 1)).await;
    lab.fleet.tick().await;
    lab.settle().await;
    assert_eq!(lab.stage_of(busy), Some(RunnerStage::Busy), "GitHub says busy: kept");
    assert_eq!(lab.stage_of(idle), None, "unreachable and not busy: retired");
    assert!(!lab.orka.exists(idle));
    assert_eq!(lab.fleet.counters().retired.get(&RetireReason::Unreachable), Some(&1));
}

#[tokio::test(start_paused = true)]
async fn a_runner_idle_too_long_is_recycled() {
    let mut config = config();
    config.max_idle = Duration::from_secs(600);
    let lab = Lab::new(config);
    lab.deliver(&msg(1, stats(1, 0), vec![assigned("j1")])).await;
    lab.settle().await;
    let name = lab.only_runner();
    tokio::time::advance(Duration::from_secs(601)).await;
    lab.fleet.tick().await;
    lab.settle().await;
    assert!(!lab.orka.exists(&name));
    assert_eq!(lab.fleet.counters().retired.get(&RetireReason::IdleTooLong), Some(&1));
    lab.fleet.tick().await;
    lab.settle().await;
    assert_eq!(lab.names().len(), 1, "the waiting job gets a fresh runner");
}

#[tokio::test(start_paused = true)]
async fn never_above_max_runners_and_provisioning_concurrency_is_bounded() {
    let mut config = config();
    config.scaling.max_runners = 3;
    config.provisioning_concurrency = 2;
    let lab = Lab::new(config);
    *lab.orka.deploy_delay.lock().unwrap() = Duration::from_secs(60);
    lab.deliver(&msg(1, stats(10, 0), vec![])).await;
    lab.fleet.tick().await;
    lab.fleet.on_statistics(stats(12, 0)).await;
    lab.settle().await;
    assert_eq!(lab.names().len(), 3);
    assert_eq!(lab.orka.names().len(), 3);
    assert_eq!(lab.orka.peak_concurrent_deploys(), 2);
}

/// The provisioning limit spares Orka's API: it covers the deploy request only, so a
/// runner still installing over SSH (which Orka never sees) does not hold back the next
/// deploy. Before, the slot was held until the runner was online, and a burst larger than
/// the limit went through Orka in waves of deploy + install.
#[tokio::test(start_paused = true)]
async fn the_provisioning_slot_is_released_once_the_vm_is_deployed() {
    let mut config = config();
    config.scaling.max_runners = 2;
    config.provisioning_concurrency = 1;
    let lab = Lab::new(config);
    *lab.orka.deploy_delay.lock().unwrap() = Duration::from_secs(1);
    *lab.shell.install_delay.lock().unwrap() = Duration::from_secs(20);
    lab.deliver(&msg(1, stats(2, 0), vec![])).await;
    // Both deploys are done long before the first install ends.
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(lab.orka.names().len(), 2, "the second VM must not wait for the first runner's install");
    assert_eq!(lab.orka.peak_concurrent_deploys(), 1, "one deploy request at a time");
    lab.settle().await;
    let counters = lab.fleet.counters();
    assert_eq!(counters.provisions_succeeded, 2, "both runners came online: {counters:?}");
}

#[tokio::test(start_paused = true)]
async fn warm_pool_and_surplus_idle_retired_after_the_grace() {
    let mut config = config();
    config.scaling = ScalingConfig {
        max_runners: 10,
        min_idle_runners: 2,
        idle_grace: Duration::from_secs(60),
        warm_max_age: None,
    };
    let lab = Lab::new(config);
    lab.fleet.on_statistics(stats(0, 0)).await;
    lab.settle().await;
    assert_eq!(lab.names().len(), 2, "warm pool");

    lab.deliver(&msg(1, stats(3, 0), vec![])).await;
    lab.settle().await;
    assert_eq!(lab.names().len(), 5, "3 jobs + 2 warm");

    lab.fleet.on_statistics(stats(0, 0)).await;
    lab.settle().await;
    assert_eq!(lab.names().len(), 5, "surplus kept within the grace");
    tokio::time::advance(Duration::from_secs(61)).await;
    lab.fleet.on_statistics(stats(0, 0)).await;
    lab.settle().await;
    assert_eq!(lab.names().len(), 2);
    assert_eq!(lab.orka.names().len(), 2);
    assert_eq!(lab.fleet.counters().retired.get(&RetireReason::Surplus), Some(&3));
}

#[tokio::test(start_paused = true)]
async fn an_adopted_runner_follows_the_same_lifecycle() {
    let lab = Lab::new(config());
    let name = "mac-ad0pt".to_owned();
    lab.orka.insert(provisioner::fakes::running_vm(&name));
    let record = lab.github.register(&name, SCALE_SET_ID, true);
    lab.shell.set_running(&name);
    assert!(lab.fleet.adopt(provisioner::fakes::running_vm(&name), record.clone(), true).await);
    assert!(!lab.fleet.adopt(provisioner::fakes::running_vm(&name), record, true).await, "adopted once");
    assert_eq!(lab.stage_of(&name), Some(RunnerStage::Busy));
    lab.fleet.on_statistics(stats(1, 1)).await;
    assert_eq!(lab.fleet.counters().provisions_started, 0, "the adopted busy runner covers the running job");

    lab.github.finish_job(&name);
    lab.deliver(&msg(5, stats(0, 0), vec![completed("j9", &name, "succeeded")])).await;
    lab.settle().await;
    lab.assert_clean();
}

#[tokio::test(start_paused = true)]
async fn retiring_an_untracked_vm_deregisters_before_deleting() {
    let lab = Lab::new(config());
    let name = "mac-0ld00";
    lab.orka.insert(provisioner::fakes::running_vm(name));
    let record = lab.github.register(name, SCALE_SET_ID, false);
    assert!(lab.fleet.retire_vm(name, RetireReason::Reconciler).await);
    assert!(!lab.fleet.retire_vm("mac-large-0ld00", RetireReason::Reconciler).await, "foreign");
    lab.settle().await;
    lab.assert_clean();
    assert!(lab.github.calls().contains(&format!("remove {}", record.id)));
}

#[tokio::test(start_paused = true)]
async fn drain_stops_provisioning_and_leaves_online_runners_alone() {
    let lab = Lab::new(config());
    lab.deliver(&msg(1, stats(1, 0), vec![assigned("j1")])).await;
    lab.settle().await;
    let online = lab.only_runner();
    lab.deliver(&msg(2, stats(1, 1), vec![started("j1", &online)])).await;

    *lab.orka.deploy_delay.lock().unwrap() = Duration::from_secs(300);
    lab.deliver(&msg(3, stats(2, 1), vec![assigned("j2")])).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(lab.names().len(), 2);

    lab.fleet.drain(Duration::from_secs(120)).await;
    assert_eq!(lab.names(), vec![online.clone()], "provisioning stopped and cleaned up");
    assert_eq!(lab.orka.names(), vec![online.clone()], "the running job's VM is left running");
    assert_eq!(lab.stage_of(&online), Some(RunnerStage::Busy));
    lab.deliver(&msg(4, stats(5, 1), vec![assigned("j3")])).await;
    assert_eq!(lab.names().len(), 1, "no new work after drain");
}

#[tokio::test(start_paused = true)]
async fn offered_jobs_are_acquired_within_capacity_and_only_once() {
    let mut config = config();
    config.scaling.max_runners = 2;
    let lab = Lab::new(config);
    let offer = msg(1, stats(0, 0), vec![available(11), available(12), available(13)]);
    lab.deliver(&offer).await;
    assert_eq!(lab.queue.acquired(), vec![11, 12]);
    lab.deliver(&offer).await;
    assert_eq!(lab.queue.acquired(), vec![11, 12, 13], "the redelivered offer only acquires what is new");

    *lab.queue.fail_acquire.lock().unwrap() = 1;
    let result =
        lab.fleet.handle_message(&msg(2, stats(1, 0), vec![available(14), assigned("j1")]), &lab.queue).await;
    assert!(result.is_err(), "the caller learns the acquire failed");
    lab.settle().await;
    assert_eq!(lab.names().len(), 1, "the rest of the message was still handled");
}

#[tokio::test(start_paused = true)]
async fn a_new_session_restarts_message_order() {
    let lab = Lab::new(config());
    lab.deliver(&msg(100_000_005, stats(0, 0), vec![])).await;
    lab.deliver(&msg(100_000_004, stats(3, 0), vec![])).await;
    assert_eq!(lab.fleet.statistics(), stats(0, 0), "an older redelivery does not roll statistics back");
    // A new session: its statistics, then its own (lower) message ids.
    lab.fleet.on_statistics(stats(1, 0)).await;
    lab.deliver(&msg(12, stats(2, 0), vec![])).await;
    assert_eq!(lab.fleet.statistics(), stats(2, 0));
    lab.settle().await;
    assert_eq!(lab.names().len(), 2);
}

#[tokio::test(start_paused = true)]
async fn run_sh_may_take_a_job_before_the_install_call_returns() {
    let lab = Lab::new(config());
    *lab.shell.install_delay.lock().unwrap() = Duration::from_secs(25);
    lab.deliver(&msg(1, stats(1, 0), vec![assigned("j1")])).await;
    tokio::time::sleep(Duration::from_secs(10)).await;
    let name = lab.only_runner();
    assert_eq!(lab.stage_of(&name), Some(RunnerStage::Installing));
    lab.deliver(&msg(2, stats(1, 1), vec![started("j1", &name)])).await;
    assert_eq!(lab.stage_of(&name), Some(RunnerStage::Busy));
    lab.settle().await;
    assert_eq!(lab.stage_of(&name), Some(RunnerStage::Busy), "the late install answer does not demote it");
    assert_eq!(lab.fleet.counters().provisions_succeeded, 1);
}

#[tokio::test(start_paused = true)]
async fn a_job_that_ends_before_the_install_call_returns_is_cleaned_up() {
    let lab = Lab::new(config());
    *lab.shell.install_delay.lock().unwrap() = Duration::from_secs(25);
    lab.deliver(&msg(1, stats(1, 0), vec![assigned("j1")])).await;
    tokio::time::sleep(Duration::from_secs(10)).await;
    let name = lab.only_runner();
    lab.github.finish_job(&name);
    lab.deliver(&msg(2, stats(0, 0), vec![started("j1", &name), completed("j1", &name, "succeeded")])).await;
    lab.settle().await;
    lab.assert_clean();
    assert_eq!(lab.fleet.counters().retired.get(&RetireReason::JobCompleted), Some(&1));
}

#[tokio::test(start_paused = true)]
async fn an_install_call_that_times_out_after_run_sh_took_a_job_keeps_the_busy_runner() {
    let lab = Lab::new(config());
    *lab.shell.install_delay.lock().unwrap() = Duration::from_secs(600); // beyond the 30 s deadline
    lab.deliver(&msg(1, stats(1, 0), vec![assigned("j1")])).await;
    tokio::time::sleep(Duration::from_secs(10)).await;
    let name = lab.only_runner();
    lab.deliver(&msg(2, stats(1, 1), vec![started("j1", &name)])).await;
    lab.settle().await;
    assert_eq!(lab.stage_of(&name), Some(RunnerStage::Busy), "a running job is never cut short");
    assert!(lab.orka.exists(&name) && lab.github.is_registered(&name));
    assert_eq!(lab.fleet.counters().failures.len(), 1, "the install failure is still counted");
}

#[tokio::test(start_paused = true)]
async fn drain_stops_cleanups_that_outlive_its_deadline() {
    let lab = Lab::new(config());
    lab.deliver(&msg(1, stats(1, 0), vec![assigned("j1")])).await;
    lab.settle().await;
    let name = lab.only_runner();
    *lab.orka.delete_delay.lock().unwrap() = Duration::from_secs(3600);
    lab.github.finish_job(&name);
    lab.deliver(&msg(2, stats(0, 0), vec![completed("j1", &name, "succeeded")])).await;

    let started = tokio::time::Instant::now();
    lab.fleet.drain(Duration::from_secs(60)).await;
    let took = started.elapsed();
    assert!(took >= Duration::from_secs(60) && took <= Duration::from_secs(70), "{took:?}");
    assert_eq!(lab.stage_of(&name), Some(RunnerStage::DeletingVm), "left for the next process to reconcile");
    assert!(!lab.github.is_registered(&name), "deregistered before the VM deletion started");
}

/// GitHub's runner list reports scale-set runners idle while they run a job: a runner a
/// `JobStarted` message made busy is never retired because the list says `busy: false`,
/// however often its probe fails. Its job's end (a message or the run sentinel) or its VM
/// vanishing lets it go.
#[tokio::test(start_paused = true)]
async fn an_unreachable_runner_busy_per_job_message_is_kept_although_the_list_says_idle() {
    let lab = Lab::new(config());
    lab.deliver(&msg(1, stats(1, 0), vec![assigned("j1")])).await;
    lab.settle().await;
    let name = lab.only_runner();
    lab.deliver(&msg(2, stats(1, 1), vec![started("j1", &name)])).await;
    assert_eq!(lab.stage_of(&name), Some(RunnerStage::Busy));
    // The list keeps saying idle; the VM stops answering SSH.
    lab.github.set_busy(&name, false);
    lab.shell.set_unreachable(&name, true);
    for _ in 0..6 {
        lab.fleet.tick().await;
        lab.settle().await;
    }
    assert_eq!(lab.stage_of(&name), Some(RunnerStage::Busy), "a job message says busy: kept");
    assert!(lab.orka.exists(&name));
    assert!(lab.github.is_registered(&name));
    assert_eq!(lab.fleet.counters().retired.get(&RetireReason::Unreachable), None);

    // The job's end is what lets it go.
    lab.deliver(&msg(3, stats(0, 0), vec![completed("j1", &name, "failed")])).await;
    lab.settle().await;
    lab.assert_clean();
}
