//! The runner-gap planner: how many runners to create and which idle ones to retire.
//!
//! Level-triggered: evaluated on every message, every empty poll and a periodic resync,
//! from the latest statistics plus what the controller itself knows. It never relies on
//! seeing a `JobAssigned` edge, so a lost edge cannot strand a job.
//!
//! The arithmetic:
//!
//! * `busy` = our runners executing a job (from `JobStarted` and adoption).
//! * `waiting` = jobs that need a runner that does not run them yet:
//!   `max(assigned − max(running, busy), known_waiting)`. Taking the larger running
//!   count protects against statistics that lag a `JobStarted` in the same batch; taking
//!   the larger waiting count protects against statistics that lag a `JobAssigned`.
//!   `totalRegisteredRunners` is deliberately not used: it lags our own provisioning.
//! * `spare` = our runners that can still take a job: provisioning + idle.
//! * create = `waiting + min_idle − spare`, capped so that every VM we hold, provisioning
//!   and finishing included, stays within `max_runners`.
//! * retire = surplus idle runners (spare beyond `waiting + min_idle`) that have been
//!   idle for at least the grace period, longest-idle first. Busy runners never.
//! * cancel ([`surplus_provisioning`]) = the surplus left after retiring, taken from runners
//!   still provisioning: when a job is withdrawn (`canceled` / `ignored` / `abandoned`) or
//!   the statistics drop, provisioning that no job needs any more is stopped. Which runners
//!   stop is the fleet's choice (the least advanced), because the runner↔job binding is
//!   nominal: any idle runner of the scale set may take any job.

use std::time::Duration;

use runner_core::Statistics;

/// Scaling limits of one scale set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ScalingConfig {
    /// Never hold more VMs than this (provisioning ones included).
    pub max_runners: u32,
    /// Idle headroom kept warm (a warm pool), on top of waiting jobs.
    pub min_idle_runners: u32,
    /// How long a surplus idle runner may stay before it is retired.
    pub idle_grace: Duration,
}

/// What the controller's runner is doing, as far as scaling cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunnerPhase {
    /// VM deploying, JIT config being created, or runner being installed.
    Provisioning,
    /// Online and without a job, for this long.
    Idle {
        /// Time since the runner became idle.
        idle_for: Duration,
    },
    /// Executing a job.
    Busy,
    /// Job over; deregistering and deleting the VM. Still holds a VM.
    Finishing,
}

/// One of the controller's runners.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunnerView {
    /// Runner (= VM) name.
    pub name: String,
    /// Its phase.
    pub phase: RunnerPhase,
}

/// The demand signal.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Demand {
    /// The latest statistics (from the session or the last message).
    pub statistics: Statistics,
    /// Jobs the message bodies assigned to us that have neither started nor completed
    /// (deduplicated by job id by the caller).
    pub known_waiting_jobs: u32,
}

/// The planner's answer.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    /// Runners to start now.
    pub create: u32,
    /// Idle runners to retire now, by name.
    pub retire: Vec<String>,
}

/// Computes the runner gap. Pure: same input, same plan.
pub fn plan_runner_gap(demand: &Demand, runners: &[RunnerView], config: &ScalingConfig) -> Plan {
    let count = |pred: fn(&RunnerPhase) -> bool| runners.iter().filter(|r| pred(&r.phase)).count() as u32;
    let provisioning = count(|p| matches!(p, RunnerPhase::Provisioning));
    let idle = count(|p| matches!(p, RunnerPhase::Idle { .. }));
    let busy = count(|p| matches!(p, RunnerPhase::Busy));
    let held = runners.len() as u32;

    let stats = &demand.statistics;
    let running = stats.total_running_jobs.max(busy);
    let waiting = stats.total_assigned_jobs.saturating_sub(running).max(demand.known_waiting_jobs);
    let wanted_spare = waiting.saturating_add(config.min_idle_runners);
    let spare = provisioning + idle;

    let room = config.max_runners.saturating_sub(held);
    let create = wanted_spare.saturating_sub(spare).min(room);

    let surplus = spare.saturating_sub(wanted_spare).min(idle) as usize;
    let mut retirable: Vec<(&str, Duration)> = runners
        .iter()
        .filter_map(|r| match r.phase {
            RunnerPhase::Idle { idle_for } if idle_for >= config.idle_grace => {
                Some((r.name.as_str(), idle_for))
            }
            _ => None,
        })
        .collect();
    retirable.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(b.0)));
    let retire = retirable.into_iter().take(surplus).map(|(name, _)| name.to_owned()).collect();

    Plan { create, retire }
}

/// How many provisioning runners no demand needs once `plan` is applied. Pure.
pub fn surplus_provisioning(
    demand: &Demand,
    runners: &[RunnerView],
    config: &ScalingConfig,
    plan: &Plan,
) -> u32 {
    let provisioning = runners.iter().filter(|r| r.phase == RunnerPhase::Provisioning).count() as u32;
    let idle = runners.iter().filter(|r| matches!(r.phase, RunnerPhase::Idle { .. })).count() as u32;
    let busy = runners.iter().filter(|r| r.phase == RunnerPhase::Busy).count() as u32;
    let stats = &demand.statistics;
    let running = stats.total_running_jobs.max(busy);
    let waiting = stats.total_assigned_jobs.saturating_sub(running).max(demand.known_waiting_jobs);
    let wanted_spare = waiting.saturating_add(config.min_idle_runners);
    let surplus = (provisioning + idle).saturating_sub(wanted_spare);
    surplus.saturating_sub(plan.retire.len() as u32).min(provisioning)
}

#[cfg(test)]
mod tests {
    use super::*;

    const CONFIG: ScalingConfig =
        ScalingConfig { max_runners: 10, min_idle_runners: 0, idle_grace: Duration::from_secs(60) };

    fn stats(
        available: u32,
        acquired: u32,
        assigned: u32,
        running: u32,
        registered: u32,
        busy: u32,
        idle: u32,
    ) -> Statistics {
        Statistics {
            total_available_jobs: available,
            total_acquired_jobs: acquired,
            total_assigned_jobs: assigned,
            total_running_jobs: running,
            total_registered_runners: registered,
            total_busy_runners: busy,
            total_idle_runners: idle,
        }
    }

    fn runner(name: &str, phase: RunnerPhase) -> RunnerView {
        RunnerView { name: name.to_owned(), phase }
    }

    fn idle(name: &str, secs: u64) -> RunnerView {
        runner(name, RunnerPhase::Idle { idle_for: Duration::from_secs(secs) })
    }

    #[test]
    fn seed_restart_with_two_adopted_running_vms_creates_nothing() {
        // Logged by the seed: Available 0, Acquired 0, Assigned 2, Running 2, Registered 0, Busy 2, Idle 0.
        let demand = Demand { statistics: stats(0, 0, 2, 2, 0, 2, 0), known_waiting_jobs: 0 };
        let adopted = [runner("mac-aaaaa", RunnerPhase::Busy), runner("mac-bbbbb", RunnerPhase::Busy)];
        assert_eq!(plan_runner_gap(&demand, &adopted, &CONFIG), Plan { create: 0, retire: vec![] });
    }

    #[test]
    fn seed_jobs_queued_while_down_create_one_runner_each() {
        let demand = Demand { statistics: stats(0, 0, 2, 0, 0, 0, 0), known_waiting_jobs: 0 };
        assert_eq!(plan_runner_gap(&demand, &[], &CONFIG).create, 2);
    }

    #[test]
    fn table() {
        struct Case {
            name: &'static str,
            demand: Demand,
            runners: Vec<RunnerView>,
            config: ScalingConfig,
            create: u32,
            retire: Vec<&'static str>,
        }
        let with = |min_idle, max| ScalingConfig { max_runners: max, min_idle_runners: min_idle, ..CONFIG };
        let cases = vec![
            Case {
                name: "statistics lag a JobAssigned in the same batch",
                demand: Demand { statistics: stats(0, 0, 0, 0, 0, 0, 0), known_waiting_jobs: 1 },
                runners: vec![],
                config: CONFIG,
                create: 1,
                retire: vec![],
            },
            Case {
                name: "registered counted late while our runners provision: no double count",
                demand: Demand { statistics: stats(0, 0, 2, 0, 0, 0, 0), known_waiting_jobs: 2 },
                runners: vec![runner("a", RunnerPhase::Provisioning), runner("b", RunnerPhase::Provisioning)],
                config: CONFIG,
                create: 0,
                retire: vec![],
            },
            Case {
                name: "statistics lag a JobStarted: the busy runner is not replaced",
                demand: Demand { statistics: stats(0, 0, 1, 0, 1, 0, 1), known_waiting_jobs: 0 },
                runners: vec![runner("a", RunnerPhase::Busy)],
                config: CONFIG,
                create: 0,
                retire: vec![],
            },
            Case {
                name: "never above max, provisioning and finishing VMs counted",
                demand: Demand { statistics: stats(0, 0, 20, 0, 0, 0, 0), known_waiting_jobs: 0 },
                runners: vec![
                    runner("a", RunnerPhase::Provisioning),
                    runner("b", RunnerPhase::Finishing),
                    runner("c", RunnerPhase::Busy),
                ],
                config: with(0, 8),
                create: 5,
                retire: vec![],
            },
            Case {
                name: "warm pool: min idle kept on top of waiting jobs",
                demand: Demand { statistics: stats(0, 0, 1, 0, 0, 0, 0), known_waiting_jobs: 0 },
                runners: vec![idle("a", 5)],
                config: with(2, 10),
                create: 2,
                retire: vec![],
            },
            Case {
                name: "surplus idle retired only after the grace, longest idle first, never busy",
                demand: Demand { statistics: stats(0, 0, 1, 1, 0, 0, 0), known_waiting_jobs: 0 },
                runners: vec![
                    idle("young", 10),
                    idle("old", 600),
                    idle("older", 900),
                    runner("busy", RunnerPhase::Busy),
                ],
                config: with(1, 10),
                create: 0,
                retire: vec!["older", "old"],
            },
            Case {
                name: "surplus idle within the grace is kept",
                demand: Demand::default(),
                runners: vec![idle("young", 10)],
                config: CONFIG,
                create: 0,
                retire: vec![],
            },
        ];
        for case in cases {
            let plan = plan_runner_gap(&case.demand, &case.runners, &case.config);
            assert_eq!(plan.create, case.create, "{}: create", case.name);
            assert_eq!(plan.retire, case.retire, "{}: retire", case.name);
        }
    }
    #[test]
    fn surplus_provisioning_is_stopped_least_needed_last() {
        struct Case {
            name: &'static str,
            demand: Demand,
            runners: Vec<RunnerView>,
            retire: usize,
            cancel: u32,
        }
        let cases = vec![
            Case {
                name: "withdrawn job: its provisioning runner is no longer needed",
                demand: Demand { statistics: stats(0, 0, 0, 0, 0, 0, 0), known_waiting_jobs: 0 },
                runners: vec![runner("a", RunnerPhase::Provisioning)],
                retire: 0,
                cancel: 1,
            },
            Case {
                name: "statistics still count the withdrawn job: keep provisioning",
                demand: Demand { statistics: stats(0, 0, 1, 0, 0, 0, 0), known_waiting_jobs: 0 },
                runners: vec![runner("a", RunnerPhase::Provisioning)],
                retire: 0,
                cancel: 0,
            },
            Case {
                name: "a young idle runner covers the job: the provisioning one stops",
                demand: Demand { statistics: stats(0, 0, 1, 0, 0, 0, 0), known_waiting_jobs: 0 },
                runners: vec![idle("ready", 5), runner("b", RunnerPhase::Provisioning)],
                retire: 0,
                cancel: 1,
            },
            Case {
                name: "an idle runner past the grace is retired first; nothing left to cancel",
                demand: Demand { statistics: stats(0, 0, 1, 0, 0, 0, 0), known_waiting_jobs: 0 },
                runners: vec![idle("old", 600), runner("b", RunnerPhase::Provisioning)],
                retire: 1,
                cancel: 0,
            },
            Case {
                name: "busy and finishing runners are never part of the surplus",
                demand: Demand::default(),
                runners: vec![runner("busy", RunnerPhase::Busy), runner("done", RunnerPhase::Finishing)],
                retire: 0,
                cancel: 0,
            },
        ];
        for case in cases {
            let plan = plan_runner_gap(&case.demand, &case.runners, &CONFIG);
            assert_eq!(plan.retire.len(), case.retire, "{}: retire", case.name);
            assert_eq!(
                surplus_provisioning(&case.demand, &case.runners, &CONFIG, &plan),
                case.cancel,
                "{}",
                case.name
            );
        }
    }
}
