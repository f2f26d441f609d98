//! Property tests: the planner never plans beyond `MAX_RUNNERS` or retires a busy runner,
//! and — with the real fleet against fakes, on a paused clock — under arbitrary loss and
//! duplication of messages every assigned job eventually gets a runner, no running job
//! loses its VM, and nothing is left behind.

mod common;

use std::time::Duration;

use common::*;
use proptest::prelude::*;
use provisioner::{Demand, RunnerPhase, RunnerView, ScalingConfig, plan_runner_gap, surplus_provisioning};
use runner_core::Statistics;

fn phase() -> impl Strategy<Value = RunnerPhase> {
    prop_oneof![
        Just(RunnerPhase::Provisioning),
        (0u64..1000).prop_map(|s| RunnerPhase::Idle { idle_for: Duration::from_secs(s) }),
        Just(RunnerPhase::Busy),
        Just(RunnerPhase::Finishing),
    ]
}

fn statistics() -> impl Strategy<Value = Statistics> {
    (0u32..40, 0u32..40, 0u32..40, 0u32..40, 0u32..40).prop_map(
        |(avail, assigned, running, registered, busy)| Statistics {
            total_available_jobs: avail,
            total_assigned_jobs: assigned,
            total_running_jobs: running,
            total_registered_runners: registered,
            total_busy_runners: busy,
            ..Statistics::default()
        },
    )
}

proptest! {
    #[test]
    fn no_plan_exceeds_max_or_touches_a_busy_runner(
        statistics in statistics(),
        known_waiting in 0u32..20,
        phases in prop::collection::vec(phase(), 0..30),
        max_runners in 0u32..30,
        min_idle in 0u32..5,
        grace in 0u64..600,
        ages in prop::collection::vec(0u64..1000, 30),
        max_age in prop::option::of(1u64..800),
    ) {
        let runners: Vec<RunnerView> = phases
            .iter()
            .enumerate()
            .map(|(i, phase)| RunnerView { name: format!("r{i}"), phase: *phase, age: Duration::from_secs(ages[i]) })
            .collect();
        let config = ScalingConfig {
            max_runners,
            min_idle_runners: min_idle,
            idle_grace: Duration::from_secs(grace),
            warm_max_age: max_age.map(Duration::from_secs),
        };
        let demand = Demand { statistics, known_waiting_jobs: known_waiting };
        let plan = plan_runner_gap(&demand, &runners, &config);
        let held = runners.len() as u32;
        prop_assert!(plan.create <= max_runners.saturating_sub(held), "create {} with {held} held, max {max_runners}", plan.create);
        for name in plan.retire.iter().chain(&plan.recycle) {
            let runner = runners.iter().find(|r| &r.name == name).unwrap();
            let RunnerPhase::Idle { idle_for } = runner.phase else {
                return Err(TestCaseError::fail(format!("retired a non-idle runner {runner:?}")));
            };
            let stale = config.warm_max_age.is_some_and(|max_age| runner.age >= max_age);
            prop_assert!(idle_for >= config.idle_grace || stale, "retired {runner:?} within the grace and not stale");
        }
        // Never below the warm pool: a plan keeps at least `min_idle` spare runners (idle or
        // provisioning) if it had them, except that a stale runner is retired before its
        // replacement when max_runners leaves no room for one.
        let spare_before = runners
            .iter()
            .filter(|r| matches!(r.phase, RunnerPhase::Idle { .. } | RunnerPhase::Provisioning))
            .count() as u32;
        let spare_after = spare_before - (plan.retire.len() + plan.recycle.len()) as u32 + plan.create;
        if max_runners > held {
            prop_assert!(spare_after >= min_idle.min(spare_before), "{spare_after} spare left of {spare_before}, min {min_idle}");
        }
        let cancel = surplus_provisioning(&demand, &runners, &config, &plan);
        let provisioning = runners.iter().filter(|r| r.phase == RunnerPhase::Provisioning).count() as u32;
        prop_assert!(cancel <= provisioning);
        // Recycling may go with creating: surplus stale runners leave while a replacement is
        // made for a stale one still needed. Surplus retirement and cancelling never do.
        prop_assert!(plan.create == 0 || (cancel == 0 && plan.retire.is_empty()), "never grow and shrink at once");
        let stale = runners
            .iter()
            .filter(|r| matches!(r.phase, RunnerPhase::Idle { .. }) && config.warm_max_age.is_some_and(|m| r.age >= m))
            .count();
        prop_assert!(plan.create == 0 || plan.recycle.is_empty() || plan.recycle.len() < stale, "a replacement is made only for a stale runner kept");
    }
}

#[derive(Debug, Clone)]
enum Job {
    Pending { arrive: u32, runs_for: u32 },
    Waiting { runs_for: u32 },
    Running { runner: String, until: u32 },
    Done,
}

/// Simulates GitHub around the real fleet. `fates[i]` says what happens to the i-th
/// message: 0 lost, 1 delivered, 2 delivered twice, 3 overtaken by the next one. Messages after the fate list are
/// delivered; from `STATS_FROM` on, the current statistics reach the fleet every step (a
/// later message, or the session statistics of a restarted listener).
fn simulate(arrivals: Vec<(u32, u32)>, fates: Vec<u8>) -> Result<(), TestCaseError> {
    const STEPS: u32 = 80;
    const STATS_FROM: u32 = 20;
    let runtime =
        tokio::runtime::Builder::new_current_thread().enable_all().start_paused(true).build().unwrap();
    runtime.block_on(async move {
        let mut config = config();
        config.scaling.max_runners = 4;
        let lab = Lab::new(config);
        let mut jobs: Vec<Job> = arrivals
            .iter()
            .map(|(arrive, runs_for)| Job::Pending { arrive: *arrive, runs_for: *runs_for })
            .collect();
        let mut sent = 0usize;
        let mut delayed = None;
        let mut message_id = 0i64;
        let truth = |jobs: &[Job]| {
            let waiting = jobs.iter().filter(|j| matches!(j, Job::Waiting { .. })).count() as u32;
            let running = jobs.iter().filter(|j| matches!(j, Job::Running { .. })).count() as u32;
            stats(waiting + running, running)
        };
        for step in 0..STEPS {
            let mut bodies = Vec::new();
            for (i, job) in jobs.iter_mut().enumerate() {
                if let Job::Pending { arrive, runs_for } = *job
                    && arrive == step
                {
                    *job = Job::Waiting { runs_for };
                    bodies.push(assigned(&format!("j{i}")));
                }
            }
            // GitHub hands waiting jobs to idle runners of the scale set (run.sh is up, the
            // registration exists and GitHub has no job on it — whatever the fleet believes).
            let busy: Vec<String> = jobs
                .iter()
                .filter_map(|j| match j {
                    Job::Running { runner, .. } => Some(runner.clone()),
                    _ => None,
                })
                .collect();
            let mut idle: Vec<String> = lab
                .fleet
                .runners()
                .into_iter()
                .filter(|r| {
                    r.stage.is_online() && lab.github.is_registered(&r.name) && !busy.contains(&r.name)
                })
                .map(|r| r.name)
                .collect();
            for (i, job) in jobs.iter_mut().enumerate() {
                if let Job::Waiting { runs_for } = *job
                    && let Some(runner) = idle.pop()
                {
                    lab.github.set_busy(&runner, true);
                    bodies.push(started(&format!("j{i}"), &runner));
                    *job = Job::Running { runner, until: step + runs_for };
                }
            }
            for (i, job) in jobs.iter_mut().enumerate() {
                if let Job::Running { runner, until } = job
                    && *until <= step
                {
                    lab.github.finish_job(runner);
                    lab.shell.finish_run(runner);
                    bodies.push(completed(&format!("j{i}"), runner, "succeeded"));
                    *job = Job::Done;
                }
            }
            if !bodies.is_empty() {
                message_id += 1;
                let message = msg(message_id, truth(&jobs), bodies);
                let fate = fates.get(sent).copied().unwrap_or(1);
                sent += 1;
                if fate == 3 {
                    // Overtaken: delivered after the next message.
                    if let Some(older) = delayed.replace(message) {
                        lab.deliver(&older).await;
                    }
                } else {
                    for _ in 0..fate {
                        lab.deliver(&message).await;
                    }
                    if fate > 0
                        && let Some(older) = delayed.take()
                    {
                        lab.deliver(&older).await;
                    }
                }
            }
            if step == STATS_FROM
                && let Some(older) = delayed.take()
            {
                lab.deliver(&older).await;
            }
            if step >= STATS_FROM {
                lab.fleet.on_statistics(truth(&jobs)).await;
            }
            lab.fleet.tick().await;
            lab.settle().await;
            tokio::time::advance(Duration::from_secs(10)).await;
            prop_assert!(lab.orka.names().len() <= 4, "never above MAX_RUNNERS: {:?}", lab.orka.names());
            for job in &jobs {
                if let Job::Running { runner, .. } = job {
                    prop_assert!(lab.orka.exists(runner), "the VM of a running job was deleted: {runner}");
                }
            }
        }
        prop_assert!(
            jobs.iter().all(|j| matches!(j, Job::Done)),
            "every job got a runner and finished: {jobs:?}"
        );
        // Idle leftovers are retired after the grace; then nothing is left.
        for _ in 0..20 {
            lab.fleet.on_statistics(truth(&jobs)).await;
            lab.fleet.tick().await;
            lab.settle().await;
            tokio::time::advance(Duration::from_secs(10)).await;
        }
        lab.assert_clean();
        Ok(())
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]
    #[test]
    fn under_message_loss_duplication_and_reordering_every_assigned_job_gets_a_runner(
        arrivals in prop::collection::vec((0u32..15, 1u32..6), 1..7),
        fates in prop::collection::vec(0u8..4, 0..25),
    ) {
        simulate(arrivals, fates)?;
    }
}

#[test]
fn losing_every_early_message_still_serves_the_jobs() {
    simulate(vec![(0, 2), (1, 3), (2, 1)], vec![0; 25]).unwrap();
}
