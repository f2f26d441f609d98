//! Orka's "not enough capacity" is a brake, not a failure: the runner keeps its slot and
//! deploys again with growing pauses, the fleet says so once per wait episode, and the
//! wait ends when capacity returns or the demand goes away.

mod common;

use std::time::Duration;

use common::*;
use provisioner::{FleetEvent, RunnerStage};

fn capacity_events(lab: &Lab) -> Vec<bool> {
    lab.recorder
        .events()
        .into_iter()
        .filter_map(|e| match e {
            FleetEvent::CapacityWait { waiting } => Some(waiting),
            _ => None,
        })
        .collect()
}

fn deploys(lab: &Lab) -> usize {
    lab.orka.calls().iter().filter(|c| c.starts_with("deploy")).count()
}

#[tokio::test(start_paused = true)]
async fn a_full_cluster_makes_the_runner_wait_and_the_fleet_say_so_once() {
    let lab = Lab::new(config());
    // More capacity answers than the deploy step has attempts (3).
    *lab.orka.no_capacity.lock().unwrap() = 6;
    lab.deliver(&msg(1, stats(1, 0), vec![assigned("j1")])).await;
    lab.settle().await;

    let name = lab.only_runner();
    assert_eq!(lab.stage_of(&name), Some(RunnerStage::Idle), "the same runner came online");
    assert_eq!(deploys(&lab), 7, "six capacity answers, then the deploy that worked");
    let counters = lab.fleet.counters();
    assert!(counters.failures.is_empty(), "waiting for capacity is no failure: {:?}", counters.failures);
    assert!(counters.retired.is_empty(), "no runner was thrown away and replaced");
    assert_eq!(capacity_events(&lab), vec![true, false], "one episode: opened once, closed once");
}

#[tokio::test(start_paused = true)]
async fn waiting_backs_off_instead_of_looping_and_ends_when_the_demand_goes_away() {
    let lab = Lab::new(config());
    *lab.orka.no_capacity.lock().unwrap() = u32::MAX;
    lab.deliver(&msg(1, stats(1, 0), vec![assigned("j1")])).await;
    tokio::time::sleep(Duration::from_secs(600)).await;

    // Pauses double from 2 s up to 60 s (with jitter): ten minutes hold about a dozen
    // attempts, not thousands.
    let attempts = deploys(&lab);
    assert!((5..=20).contains(&attempts), "{attempts} deploys in 10 minutes");
    assert_eq!(lab.fleet.runners().len(), 1, "one runner waits; none is replaced by another");
    assert_eq!(capacity_events(&lab), vec![true]);
    assert_eq!(lab.fleet.capacity_waiting(), 1, "the status endpoint sees the waiting runner");

    lab.fleet.on_statistics(stats(0, 0)).await;
    lab.settle().await;
    lab.assert_clean();
    assert_eq!(lab.fleet.capacity_waiting(), 0);
    assert_eq!(capacity_events(&lab), vec![true, false], "the episode ends with the last waiter");
    assert!(lab.fleet.counters().failures.is_empty());
}

#[tokio::test(start_paused = true)]
async fn other_deploy_failures_still_spend_the_step_budget() {
    let lab = Lab::new(config());
    *lab.orka.fail_deploys.lock().unwrap() = 3;
    lab.deliver(&msg(1, stats(1, 0), vec![assigned("j1")])).await;
    lab.settle().await;
    assert_eq!(deploys(&lab), 3, "bounded: the step's three attempts");
    assert_eq!(lab.fleet.counters().provisions_succeeded, 0);
    assert!(capacity_events(&lab).is_empty(), "a failed deploy is not a capacity wait");
}
