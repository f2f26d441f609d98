//! The warm pool (`MIN_RUNNERS`): refilled the moment a warm runner is taken, recycled when
//! its VM grows old without ever dipping below its size, busy runners never touched. On a
//! paused clock with the in-memory fakes; no tick is called where "at once" is claimed.

mod common;

use std::time::Duration;

use common::*;
use provisioner::{FleetConfig, FleetEvent, RetireReason, RunnerStage};

const HOUR: Duration = Duration::from_secs(3600);

fn warm_config(min_idle: u32, max_age: Option<Duration>) -> FleetConfig {
    let mut config = config();
    config.scaling.min_idle_runners = min_idle;
    config.scaling.warm_max_age = max_age;
    // Only the planner recycles here; the probe's backstop stays out of the way.
    config.max_idle = Duration::MAX;
    config
}

/// A lab whose warm pool of one runner is online.
async fn lab_with_one_warm_runner(config: FleetConfig) -> (Lab, String) {
    let lab = Lab::new(config);
    lab.fleet.on_statistics(stats(0, 0)).await;
    lab.settle().await;
    let warm = lab.only_runner();
    assert_eq!(lab.stage_of(&warm), Some(RunnerStage::Idle));
    (lab, warm)
}

fn deploys(lab: &Lab) -> usize {
    lab.orka.calls().iter().filter(|c| c.starts_with("deploy ")).count()
}

/// Lets spawned tasks run for a few virtual milliseconds: far less than any tick or deploy.
async fn moment() {
    tokio::time::sleep(Duration::from_millis(10)).await;
}

#[tokio::test(start_paused = true)]
async fn a_job_assigned_to_the_warm_runner_starts_its_replacement_at_once() {
    let (lab, warm) = lab_with_one_warm_runner(warm_config(1, None)).await;
    *lab.orka.deploy_delay.lock().unwrap() = Duration::from_secs(60);

    lab.deliver(&msg(1, stats(1, 0), vec![assigned("j1")])).await;
    moment().await;

    assert_eq!(lab.names().len(), 2, "the warm runner and its replacement");
    assert_eq!(deploys(&lab), 2, "the replacement's VM is being deployed already");
    assert_eq!(lab.stage_of(&warm), Some(RunnerStage::Idle), "the warm runner waits for its job");
}

#[tokio::test(start_paused = true)]
async fn a_job_started_on_the_warm_runner_starts_its_replacement_at_once_even_with_lagging_statistics() {
    let (lab, warm) = lab_with_one_warm_runner(warm_config(1, None)).await;
    *lab.orka.deploy_delay.lock().unwrap() = Duration::from_secs(60);

    // The statistics of this message do not count the job yet.
    lab.deliver(&msg(1, stats(0, 0), vec![started("j1", &warm)])).await;
    moment().await;

    assert_eq!(lab.stage_of(&warm), Some(RunnerStage::Busy));
    assert_eq!(lab.names().len(), 2);
    assert_eq!(deploys(&lab), 2);
}

#[tokio::test(start_paused = true)]
async fn a_stale_warm_runner_is_retired_only_once_its_replacement_is_online() {
    let (lab, old) = lab_with_one_warm_runner(warm_config(1, Some(4 * HOUR))).await;
    tokio::time::advance(4 * HOUR).await;
    *lab.orka.deploy_delay.lock().unwrap() = Duration::from_secs(60);

    lab.fleet.on_statistics(stats(0, 0)).await;
    moment().await;
    assert_eq!(lab.names().len(), 2, "replacement started");
    assert_eq!(lab.stage_of(&old), Some(RunnerStage::Idle), "the old one still serves while it provisions");

    lab.fleet.on_statistics(stats(0, 0)).await;
    moment().await;
    assert_eq!(lab.stage_of(&old), Some(RunnerStage::Idle), "a provisioning replacement is not enough");

    lab.settle().await;
    let fresh = lab.names().into_iter().find(|n| *n != old).expect("replacement");
    assert_eq!(lab.stage_of(&fresh), Some(RunnerStage::Idle));
    lab.fleet.on_statistics(stats(0, 0)).await;
    lab.settle().await;

    assert_eq!(lab.names(), vec![fresh.clone()]);
    assert!(!lab.orka.exists(&old));
    assert_eq!(lab.fleet.counters().retired.get(&RetireReason::IdleTooLong), Some(&1));
    let events = lab.recorder.events();
    let position = |runner: &str, stage: RunnerStage| {
        events.iter().position(
            |e| matches!(e, FleetEvent::Stage { runner: r, stage: s, .. } if r == runner && *s == stage),
        )
    };
    let fresh_online = position(&fresh, RunnerStage::Idle).expect("replacement online");
    let old_leaves = position(&old, RunnerStage::Deregistering).expect("old retired");
    assert!(fresh_online < old_leaves, "replaced before retired");
}

#[tokio::test(start_paused = true)]
async fn an_old_busy_runner_is_never_recycled() {
    let (lab, old) = lab_with_one_warm_runner(warm_config(1, Some(HOUR))).await;
    lab.deliver(&msg(1, stats(1, 1), vec![started("j1", &old)])).await;
    lab.settle().await;
    tokio::time::advance(3 * HOUR).await;

    lab.fleet.on_statistics(stats(1, 1)).await;
    lab.settle().await;

    assert_eq!(lab.stage_of(&old), Some(RunnerStage::Busy));
    assert!(lab.orka.exists(&old));
    // The warm runner made when the job started is as old by now: it was replaced, and
    // the next plan retires it.
    lab.fleet.on_statistics(stats(1, 1)).await;
    lab.settle().await;
    assert_eq!(lab.stage_of(&old), Some(RunnerStage::Busy));
    assert_eq!(lab.names().len(), 2, "the busy runner and a fresh warm one");
}

#[tokio::test(start_paused = true)]
async fn with_recycling_off_an_old_warm_runner_is_kept() {
    let (lab, old) = lab_with_one_warm_runner(warm_config(1, None)).await;
    tokio::time::advance(48 * HOUR).await;
    lab.fleet.on_statistics(stats(0, 0)).await;
    lab.settle().await;
    assert_eq!(lab.names(), vec![old]);
}

#[tokio::test(start_paused = true)]
async fn with_the_default_settings_the_probe_does_not_recycle_a_warm_runner_before_the_planner() {
    let defaults = FleetConfig::new(1, "defaults", "vm", config().runner_install);
    let mut config = config();
    config.scaling.min_idle_runners = 1;
    config.scaling.warm_max_age = defaults.scaling.warm_max_age;
    config.max_idle = defaults.max_idle;
    let max_age = config.scaling.warm_max_age.expect("recycling is on by default");
    let (lab, warm) = lab_with_one_warm_runner(config).await;

    // Probe ticks through the warm runner's useful life: it is probed, never recycled.
    let mut elapsed = Duration::ZERO;
    while elapsed + 10 * 60 * Duration::from_secs(1) < max_age {
        tokio::time::advance(Duration::from_secs(10 * 60)).await;
        elapsed += Duration::from_secs(10 * 60);
        lab.fleet.tick().await;
        lab.settle().await;
        assert_eq!(lab.names(), vec![warm.clone()], "after {elapsed:?}");
    }
    assert!(lab.fleet.counters().retired.is_empty(), "{:?}", lab.fleet.counters().retired);

    // Past the age: replaced first, then retired by the planner.
    tokio::time::advance(max_age - elapsed).await;
    *lab.orka.deploy_delay.lock().unwrap() = Duration::from_secs(60);
    lab.fleet.tick().await;
    moment().await;
    assert_eq!(lab.names().len(), 2);
    assert_eq!(lab.stage_of(&warm), Some(RunnerStage::Idle));
    lab.settle().await;
    lab.fleet.tick().await;
    lab.settle().await;
    assert!(!lab.orka.exists(&warm));
    assert_eq!(lab.fleet.counters().retired.get(&RetireReason::IdleTooLong), Some(&1));
    assert_eq!(lab.names().len(), 1);
}
