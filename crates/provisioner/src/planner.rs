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
//! * recycle = idle runners whose VM is at least `warm_max_age` old ("stale") are replaced
//!   before they are retired: a stale runner does not count as spare, so its replacement is
//!   created at once, and it is retired only when enough fresh runners are *idle* (online)
//!   to cover `waiting + min_idle` without it, oldest first. The warm pool therefore never
//!   dips below its size while a VM is recycled. The exception: when `max_runners` leaves
//!   no room for a replacement and no job waits, stale runners are retired first and
//!   replaced by the next plan. A busy runner is never recycled (it is not idle).
//!
//! `idle_grace` is the scale-down delay: a burst's surplus idle runners stay that long, so
//! the next burst finds them warm instead of waiting for fresh VMs.

use std::time::Duration;

use runner_core::Statistics;

/// Scaling limits of one scale set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ScalingConfig {
    /// Never hold more VMs than this (provisioning ones included).
    pub max_runners: u32,
    /// Idle headroom kept warm (a warm pool), on top of waiting jobs.
    pub min_idle_runners: u32,
    /// How long a surplus idle runner may stay before it is retired (the scale-down delay).
    pub idle_grace: Duration,
    /// Idle runners whose VM is at least this old are replaced, then retired, so a warm
    /// VM does not run for days. `None`: never recycled for age.
    pub warm_max_age: Option<Duration>,
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
    /// Time since its VM was requested (since adoption for an adopted runner).
    pub age: Duration,
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
    /// Surplus idle runners to retire now, by name.
    pub retire: Vec<String>,
    /// Stale idle runners (VM at least `warm_max_age` old) to retire now, by name.
    pub recycle: Vec<String>,
}

/// The counts both planning functions start from.
struct Tally {
    provisioning: u32,
    /// Idle runners younger than `warm_max_age`.
    fresh_idle: u32,
    /// Idle runners at least `warm_max_age` old, to be replaced and retired.
    stale_idle: u32,
    held: u32,
    waiting: u32,
    wanted_spare: u32,
}

fn is_stale(runner: &RunnerView, config: &ScalingConfig) -> bool {
    matches!(runner.phase, RunnerPhase::Idle { .. })
        && config.warm_max_age.is_some_and(|max_age| runner.age >= max_age)
}

fn tally(demand: &Demand, runners: &[RunnerView], config: &ScalingConfig) -> Tally {
    let count = |pred: &dyn Fn(&RunnerView) -> bool| runners.iter().filter(|r| pred(r)).count() as u32;
    let provisioning = count(&|r| r.phase == RunnerPhase::Provisioning);
    let stale_idle = count(&|r| is_stale(r, config));
    let idle = count(&|r| matches!(r.phase, RunnerPhase::Idle { .. }));
    let busy = count(&|r| r.phase == RunnerPhase::Busy);

    let stats = &demand.statistics;
    let running = stats.total_running_jobs.max(busy);
    let waiting = stats.total_assigned_jobs.saturating_sub(running).max(demand.known_waiting_jobs);
    Tally {
        provisioning,
        fresh_idle: idle - stale_idle,
        stale_idle,
        held: runners.len() as u32,
        waiting,
        wanted_spare: waiting.saturating_add(config.min_idle_runners),
    }
}

/// Computes the runner gap. Pure: same input, same plan.
pub fn plan_runner_gap(demand: &Demand, runners: &[RunnerView], config: &ScalingConfig) -> Plan {
    let t = tally(demand, runners, config);
    let fresh_spare = t.provisioning + t.fresh_idle;

    let room = config.max_runners.saturating_sub(t.held);
    let create = t.wanted_spare.saturating_sub(fresh_spare).min(room);

    // Stale runners: keep as many as the fresh idle ones fall short of the wanted spare,
    // unless no replacement can be made and no job waits.
    let replaceable_later = room == 0 && t.waiting == 0;
    let keep_stale =
        if replaceable_later { 0 } else { t.wanted_spare.saturating_sub(t.fresh_idle).min(t.stale_idle) };
    let mut stale: Vec<(&str, Duration)> =
        runners.iter().filter(|r| is_stale(r, config)).map(|r| (r.name.as_str(), r.age)).collect();
    stale.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(b.0)));
    let recycle: Vec<String> = stale
        .into_iter()
        .take((t.stale_idle - keep_stale) as usize)
        .map(|(name, _)| name.to_owned())
        .collect();

    let surplus = fresh_spare.saturating_sub(t.wanted_spare).min(t.fresh_idle) as usize;
    let mut retirable: Vec<(&str, Duration)> = runners
        .iter()
        .filter(|r| !is_stale(r, config))
        .filter_map(|r| match r.phase {
            RunnerPhase::Idle { idle_for } if idle_for >= config.idle_grace => {
                Some((r.name.as_str(), idle_for))
            }
            _ => None,
        })
        .collect();
    retirable.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(b.0)));
    let retire = retirable.into_iter().take(surplus).map(|(name, _)| name.to_owned()).collect();

    Plan { create, retire, recycle }
}

/// How many provisioning runners no demand needs once `plan` is applied. Pure.
///
/// Stale idle runners count for nothing here: the runner provisioning to replace one is
/// needed even while the stale one is still held.
pub fn surplus_provisioning(
    demand: &Demand,
    runners: &[RunnerView],
    config: &ScalingConfig,
    plan: &Plan,
) -> u32 {
    let t = tally(demand, runners, config);
    let surplus = (t.provisioning + t.fresh_idle).saturating_sub(t.wanted_spare);
    surplus.saturating_sub(plan.retire.len() as u32).min(t.provisioning)
}

#[cfg(test)]
mod tests {
    use super::*;

    const CONFIG: ScalingConfig = ScalingConfig {
        max_runners: 10,
        min_idle_runners: 0,
        idle_grace: Duration::from_secs(60),
        warm_max_age: None,
    };

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
        RunnerView { name: name.to_owned(), phase, age: Duration::ZERO }
    }

    fn idle(name: &str, secs: u64) -> RunnerView {
        runner(name, RunnerPhase::Idle { idle_for: Duration::from_secs(secs) })
    }

    #[test]
    fn seed_restart_with_two_adopted_running_vms_creates_nothing() {
        // Logged by the seed: Available 0, Acquired 0, Assigned 2, Running 2, Registered 0, Busy 2, Idle 0.
        let demand = Demand { statistics: stats(0, 0, 2, 2, 0, 2, 0), known_waiting_jobs: 0 };
        let adopted = [runner("mac-aaaaa", RunnerPhase::Busy), runner("mac-bbbbb", RunnerPhase::Busy)];
        assert_eq!(plan_runner_gap(&demand, &adopted, &CONFIG), Plan::default());
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
    fn aged(name: &str, idle_secs: u64, age_secs: u64) -> RunnerView {
        RunnerView { age: Duration::from_secs(age_secs), ..idle(name, idle_secs) }
    }

    #[test]
    fn stale_warm_runners_are_replaced_before_they_are_retired() {
        const HOUR: u64 = 3600;
        let config = ScalingConfig {
            max_runners: 10,
            min_idle_runners: 2,
            idle_grace: Duration::from_secs(60),
            warm_max_age: Some(Duration::from_secs(4 * HOUR)),
        };
        struct Case {
            name: &'static str,
            runners: Vec<RunnerView>,
            config: ScalingConfig,
            create: u32,
            recycle: Vec<&'static str>,
            cancel: u32,
        }
        let cases = vec![
            Case {
                name: "a stale runner gets a replacement and stays until it is online",
                runners: vec![aged("old", 4 * HOUR, 4 * HOUR), aged("new", 60, 120)],
                config,
                create: 1,
                recycle: vec![],
                cancel: 0,
            },
            Case {
                name: "the replacement is provisioning: it is not cancelled, the stale one stays",
                runners: vec![
                    aged("old", 4 * HOUR, 4 * HOUR),
                    aged("new", 60, 120),
                    runner("repl", RunnerPhase::Provisioning),
                ],
                config,
                create: 0,
                recycle: vec![],
                cancel: 0,
            },
            Case {
                name: "the replacement is online: the stale one is retired",
                runners: vec![aged("old", 4 * HOUR, 4 * HOUR), aged("new", 60, 120), aged("repl", 1, 90)],
                config,
                create: 0,
                recycle: vec!["old"],
                cancel: 0,
            },
            Case {
                name: "oldest stale first when only part of the pool is replaced",
                runners: vec![
                    aged("old", 5 * HOUR, 5 * HOUR),
                    aged("older", 6 * HOUR, 6 * HOUR),
                    aged("repl", 1, 90),
                ],
                config,
                create: 1,
                recycle: vec!["older"],
                cancel: 0,
            },
            Case {
                name: "no room for a replacement and no job waits: retire first",
                runners: vec![aged("old", 4 * HOUR, 4 * HOUR), runner("busy", RunnerPhase::Busy)],
                config: ScalingConfig { max_runners: 2, ..config },
                create: 0,
                recycle: vec!["old"],
                cancel: 0,
            },
            Case {
                name: "recycling off: an old warm runner is kept",
                runners: vec![aged("old", 9 * HOUR, 9 * HOUR), aged("new", 60, 120)],
                config: ScalingConfig { warm_max_age: None, ..config },
                create: 0,
                recycle: vec![],
                cancel: 0,
            },
            Case {
                name: "a busy runner is never recycled, however old",
                runners: vec![
                    RunnerView { age: Duration::from_secs(9 * HOUR), ..runner("busy", RunnerPhase::Busy) },
                    aged("a", 60, 120),
                    aged("b", 60, 120),
                ],
                config,
                create: 0,
                recycle: vec![],
                cancel: 0,
            },
        ];
        for case in cases {
            let demand = Demand::default();
            let plan = plan_runner_gap(&demand, &case.runners, &case.config);
            assert_eq!(plan.create, case.create, "{}: create", case.name);
            assert_eq!(plan.recycle, case.recycle, "{}: recycle", case.name);
            assert_eq!(plan.retire, Vec::<String>::new(), "{}: no surplus", case.name);
            assert_eq!(
                surplus_provisioning(&demand, &case.runners, &case.config, &plan),
                case.cancel,
                "{}: cancel",
                case.name
            );
        }
    }

    #[test]
    fn scale_down_delay_keeps_a_bursts_idle_runners_but_never_goes_below_the_pool() {
        let config = ScalingConfig {
            max_runners: 10,
            min_idle_runners: 1,
            idle_grace: Duration::from_secs(300),
            warm_max_age: None,
        };
        let burst_leftovers = vec![idle("a", 299), idle("b", 120), idle("c", 10)];
        let plan = plan_runner_gap(&Demand::default(), &burst_leftovers, &config);
        assert_eq!(plan, Plan::default(), "within the delay the next burst finds them warm");
        let later = vec![idle("a", 900), idle("b", 700), idle("c", 600)];
        let plan = plan_runner_gap(&Demand::default(), &later, &config);
        assert_eq!(plan.retire, vec!["a", "b"], "after the delay: down to MIN_RUNNERS, not below");
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
