//! System benchmark: the real `orka-runner-controller` binary (and, for message handling,
//! its fleet in-process) against the simulated GitHub, Orka and VMs on loopback. Prints
//! Markdown tables with every figure next to its target and the Go integration's model.
//! Not part of the test suite; see `docs/performance.md` for commands and results.
//!
//! ```text
//! cargo bench -p orka-runner-controller --bench system -- [SCENARIO…] [--quick] [--key value…]
//! SCENARIO: reconcile burst steady messages startup cleanup dead warm   (default: all, in that order)
//! ```
//!
//! Options (defaults in brackets; `--quick` lowers them for a run of a few minutes):
//! `--sizes 50,200,500` `--unreachable 0,25,100` `--probe-timeout 5` (s) ·
//! `--burst 200` `--deploy-latency 2` (s) `--provisions 10,200` (MAX_CONCURRENT_PROVISIONS) ·
//! `--steady 500` `--steady-provisions 100` `--window 65` (s) `--probe-interval 30` (s) ·
//! `--runner-poll 20` (s, fake runner poll interval) · `--batch 50` `--samples 1000` ·
//! `--startup-runs 10` · `--cleanup-probe-interval 10` (s) `--reconcile-interval 10` (s) `--orphans 3` ·
//! `--dead 100` `--dead-busy 5` `--dead-probe-timeout 10` (s) `--dead-intervals 3,300` (s, VM_TRACKER_INTERVAL) ·
//! `--warm-pool 2` (MIN_RUNNERS) `--warm-samples 10` `--warm-deploy-latency 2` (s) ·
//! `--perf DIR`: `perf record` the controller during each burst and the steady window ·
//! `--keep-logs DIR`: keep every controller log (their timelines explain a figure).
#![allow(missing_docs)]

mod burst;
mod cleanup;
mod dead_capacity;
mod harness;
mod messages;
mod procfs;
mod reconcile;
mod startup;
mod warm;

use std::collections::HashMap;
use std::time::Duration;

use anyhow::{Context, Result, bail};

const SCENARIOS: [&str; 8] =
    ["reconcile", "burst", "steady", "messages", "startup", "cleanup", "dead", "warm"];

struct Args {
    scenarios: Vec<String>,
    options: HashMap<String, String>,
    quick: bool,
}

impl Args {
    fn parse() -> Result<Self> {
        let mut scenarios = Vec::new();
        let mut options = HashMap::new();
        let mut quick = false;
        let mut args = std::env::args().skip(1);
        while let Some(arg) = args.next() {
            match arg.as_str() {
                // What `cargo bench` passes to every bench binary.
                "--bench" => {}
                "--quick" => quick = true,
                flag if flag.starts_with("--") => {
                    let key = flag.trim_start_matches("--").to_owned();
                    let value = args.next().with_context(|| format!("{flag} needs a value"))?;
                    options.insert(key, value);
                }
                name if SCENARIOS.contains(&name) => scenarios.push(name.to_owned()),
                "all" => scenarios.extend(SCENARIOS.iter().map(|s| (*s).to_owned())),
                other => bail!("unknown scenario {other:?}; known: {SCENARIOS:?}"),
            }
        }
        if scenarios.is_empty() {
            scenarios.extend(SCENARIOS.iter().map(|s| (*s).to_owned()));
        }
        Ok(Self { scenarios, options, quick })
    }

    fn text(&self, key: &str, full: &str, quick: &str) -> String {
        self.options.get(key).cloned().unwrap_or_else(|| if self.quick { quick } else { full }.to_owned())
    }

    fn list(&self, key: &str, full: &str, quick: &str) -> Result<Vec<usize>> {
        self.text(key, full, quick)
            .split(',')
            .map(|v| v.trim().parse().with_context(|| format!("--{key}: {v:?} is not a number")))
            .collect()
    }

    fn number(&self, key: &str, full: usize, quick: usize) -> Result<usize> {
        Ok(self.list(key, &full.to_string(), &quick.to_string())?[0])
    }

    fn seconds(&self, key: &str, full: f64, quick: f64) -> Result<Duration> {
        let text = self.text(key, &full.to_string(), &quick.to_string());
        let value: f64 = text.parse().with_context(|| format!("--{key}: {text:?} is not seconds"))?;
        Ok(Duration::from_secs_f64(value))
    }
}

fn machine() -> String {
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0);
    let memory = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| m.lines().next().map(|l| l.split_whitespace().nth(1).unwrap_or("0").to_owned()))
        .and_then(|kib| kib.parse::<u64>().ok())
        .map(|kib| format!("{:.1} GiB", kib as f64 / 1024.0 / 1024.0))
        .unwrap_or_default();
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    format!(
        "{cores} cores, {memory} memory, load average at start {}",
        load.split_whitespace().take(3).collect::<Vec<_>>().join(" ")
    )
}

async fn run(args: Args) -> Result<()> {
    if let Some(dir) = args.options.get("keep-logs") {
        harness::keep_logs_in(dir.into())?;
    }
    println!("# orka-runner-controller system benchmark\n\nmachine: {}", machine());
    for scenario in &args.scenarios {
        match scenario.as_str() {
            "reconcile" => {
                reconcile::run(&reconcile::Params {
                    sizes: args.list("sizes", "50,200,500", "50")?,
                    unreachable: args.list("unreachable", "0,25,100", "0,100")?,
                    probe_timeout: args.seconds("probe-timeout", 5.0, 2.0)?,
                })
                .await?
            }
            "burst" | "steady" => {
                let steady = scenario == "steady";
                let params = burst::Params {
                    jobs: if steady {
                        args.number("steady", 500, 50)?
                    } else {
                        args.number("burst", 200, 20)?
                    },
                    deploy_latency: args.seconds("deploy-latency", 2.0, 1.0)?,
                    provisions: if steady {
                        args.list("steady-provisions", "100", "50")?
                    } else {
                        args.list("provisions", "10,200", "10,20")?
                    },
                    runner_poll: args.text("runner-poll", "20", "5"),
                    probe_interval: args.seconds("probe-interval", 30.0, 5.0)?,
                    window: args.seconds("window", 65.0, 12.0)?,
                    perf_dir: args.options.get("perf").map(std::path::PathBuf::from),
                };
                if steady { burst::run_steady(&params).await? } else { burst::run_burst(&params).await? }
            }
            "messages" => {
                messages::run(&messages::Params {
                    batch: args.number("batch", 50, 50)?,
                    samples: args.number("samples", 1000, 200)?,
                })
                .await?
            }
            "startup" => startup::run(args.number("startup-runs", 10, 3)?).await?,
            "cleanup" => {
                cleanup::run(&cleanup::Params {
                    probe_interval: args.seconds("cleanup-probe-interval", 10.0, 5.0)?,
                    reconcile_interval: args.seconds("reconcile-interval", 10.0, 5.0)?,
                    orphans: args.number("orphans", 3, 1)?,
                })
                .await?
            }
            "dead" => {
                dead_capacity::run(&dead_capacity::Params {
                    dead: args.number("dead", 100, 20)?,
                    busy: args.number("dead-busy", 5, 2)?,
                    probe_timeout: args.seconds("dead-probe-timeout", 10.0, 10.0)?,
                    intervals: args
                        .list("dead-intervals", "3,300", "300")?
                        .into_iter()
                        .map(|s| Duration::from_secs(s as u64))
                        .collect(),
                })
                .await?
            }
            "warm" => {
                warm::run(&warm::Params {
                    pool: args.number("warm-pool", 2, 2)?,
                    samples: args.number("warm-samples", 10, 3)?,
                    deploy_latency: args.seconds("warm-deploy-latency", 2.0, 1.0)?,
                })
                .await?
            }
            _ => unreachable!("scenarios are validated while parsing"),
        }
    }
    Ok(())
}

fn main() -> Result<()> {
    let args = Args::parse()?;
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    runtime.block_on(run(args))
}
