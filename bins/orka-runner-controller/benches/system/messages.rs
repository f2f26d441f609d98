//! Scenario `messages`: time the fleet takes to handle one message of 50 job messages,
//! with in-memory fakes behind every seam so no I/O is timed (what it spawns runs on
//! the runtime's other worker). Two shapes: 50 new assignments (a burst), and a mix of
//! assignments, starts and completions on 50 tracked runners.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Result;
use github_scaleset::{JobCompleted, JobInfo, JobMessage, JobStarted, ScaleSetMessage, Statistics};
use provisioner::fakes::{FakeGitHub, FakeOrka, FakeQueue, FakeShell, running_vm};
use provisioner::{Fleet, FleetConfig, FleetDeps, RunnerInstallConfig};
use tokio::time::Instant;

/// Parameters of the scenario.
#[derive(Debug, Clone)]
pub struct Params {
    /// Job messages per message.
    pub batch: usize,
    /// Messages timed per shape.
    pub samples: usize,
}

fn job(id: usize) -> JobInfo {
    JobInfo {
        runner_request_id: id as i64,
        job_id: format!("job-{id}"),
        request_labels: vec!["mac".into()],
        ..JobInfo::default()
    }
}

async fn fleet(tracked: usize) -> Fleet {
    let orka = Arc::new(FakeOrka::new());
    let github = Arc::new(FakeGitHub::new());
    let shell = Arc::new(FakeShell::new());
    let mut config = FleetConfig::new(
        7,
        "mac",
        "sonoma",
        RunnerInstallConfig { version: "2.330.0".into(), download_url_template: "x".into() },
    );
    config.scaling.max_runners = 10_000;
    config.probe_interval = Duration::from_secs(3600);
    let fleet =
        Fleet::new(FleetDeps { vms: orka.clone(), github: github.clone(), shell: shell.clone() }, config);
    for i in 0..tracked {
        let name = format!("mac-{i:05}");
        orka.insert(running_vm(&name));
        shell.set_running(&name);
        let busy = i % 2 == 1;
        let record = github.register(&name, 7, busy);
        fleet.adopt(running_vm(&name), record, busy).await;
    }
    fleet
}

/// A burst: `batch` new assignments.
fn assignments(batch: usize) -> ScaleSetMessage {
    ScaleSetMessage {
        message_id: 1,
        message_type: "RunnerScaleSetJobMessages".into(),
        statistics: Statistics { total_assigned_jobs: batch as u32, ..Statistics::default() },
        job_messages: (0..batch).map(|i| JobMessage::Assigned(job(i))).collect(),
    }
}

/// A mix on `batch` tracked runners (even = idle, odd = busy): a third new assignments, a
/// third starts on idle runners, a third completions on busy runners.
fn mixed(batch: usize) -> ScaleSetMessage {
    let mut job_messages = Vec::with_capacity(batch);
    for i in 0..batch {
        let name = format!("mac-{i:05}");
        job_messages.push(match i % 3 {
            0 => JobMessage::Assigned(job(10_000 + i)),
            1 if i % 2 == 0 => {
                JobMessage::Started(JobStarted { job: job(i), runner_id: i as i64 + 1, runner_name: name })
            }
            _ if i % 2 == 1 => JobMessage::Completed(JobCompleted {
                job: job(i),
                runner_id: i as i64 + 1,
                runner_name: name,
                result: "succeeded".into(),
            }),
            _ => JobMessage::Started(JobStarted { job: job(i), runner_id: i as i64 + 1, runner_name: name }),
        });
    }
    ScaleSetMessage {
        message_id: 2,
        message_type: "RunnerScaleSetJobMessages".into(),
        statistics: Statistics {
            total_assigned_jobs: batch as u32,
            total_running_jobs: (batch / 2) as u32,
            ..Statistics::default()
        },
        job_messages,
    }
}

/// CPU time of the calling thread so far (zero when unavailable).
fn thread_cpu() -> Duration {
    nix::time::clock_gettime(nix::time::ClockId::CLOCK_THREAD_CPUTIME_ID)
        .map(Duration::from)
        .unwrap_or_default()
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let index = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[index]
}

/// Sorted wall times and sorted thread-CPU times of a series of samples.
type Samples = (Vec<Duration>, Vec<Duration>);

/// Wall and thread-CPU times of handling `message` on fresh fleets.
async fn measure(tracked: usize, message: &ScaleSetMessage, samples: usize) -> Result<Samples> {
    let queue = FakeQueue::new();
    let mut times = Vec::with_capacity(samples);
    let mut cpu = Vec::with_capacity(samples);
    for _ in 0..samples {
        let fleet = fleet(tracked).await;
        let cpu_before = thread_cpu();
        let started = Instant::now();
        let result = fleet.handle_message(message, &queue).await;
        times.push(started.elapsed());
        cpu.push(thread_cpu().saturating_sub(cpu_before));
        result?;
        // What it spawned finishes against the fakes on its own; give it a moment.
        drop(fleet);
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    times.sort();
    cpu.sort();
    Ok((times, cpu))
}

/// [`measure`] on a current-thread runtime of its own thread: what the message spawns
/// cannot run (nor contend for the fleet's lock) until the handling returns.
async fn measure_alone(tracked: usize, message: ScaleSetMessage, samples: usize) -> Result<Samples> {
    let thread = std::thread::Builder::new().name("measure-alone".into()).spawn(move || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?
            .block_on(measure(tracked, &message, samples))
    })?;
    tokio::task::spawn_blocking(move || thread.join())
        .await?
        .map_err(|_| anyhow::anyhow!("the measuring thread panicked"))?
}

/// The control: a fixed, allocation-free computation of about the handling's median cost,
/// timed the same way. Its tail is what this machine adds to any such measurement
/// (preemption, VM steal time, cache and frequency effects), whatever the code.
fn calibration(samples: usize) -> Samples {
    use std::hash::{Hash, Hasher};
    let data = vec![7u8; 640 * 1024];
    let mut times = Vec::with_capacity(samples);
    let mut cpu = Vec::with_capacity(samples);
    for _ in 0..samples {
        let cpu_before = thread_cpu();
        let started = Instant::now();
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        std::hint::black_box(&data).hash(&mut hasher);
        std::hint::black_box(hasher.finish());
        times.push(started.elapsed());
        cpu.push(thread_cpu().saturating_sub(cpu_before));
    }
    times.sort();
    cpu.sort();
    (times, cpu)
}

pub async fn run(params: &Params) -> Result<()> {
    println!(
        "\n## messages — handling one message of {} job messages, in-memory fakes (no I/O timed)",
        params.batch
    );
    println!("target: p99 < 1 ms");
    println!("(wall: elapsed time of `handle_message`, includes preemption by other processes; CPU: the");
    println!("calling thread's CPU time over the same call, which awaits no I/O and stays on that thread.");
    println!("runtime \"2 workers\": what the message spawns runs at once on the controller's other worker");
    println!(
        "and contends for the fleet's lock; \"alone\": a current-thread runtime, the handling by itself)"
    );
    println!(
        "| shape | runtime | samples | wall p50 | wall p99 | wall max | CPU p50 | CPU p99 | met (CPU p99) |"
    );
    println!("|---|---|---|---|---|---|---|---|---|");
    let n = params.batch;
    let shapes: [(String, usize, ScaleSetMessage); 2] = [
        (format!("{n} JobAssigned (a burst: plans and spawns {n} provisions)"), 0, assignments(n)),
        (format!("{n} mixed Assigned/Started/Completed on {n} tracked runners"), n, mixed(n)),
    ];
    let mut rows: Vec<(String, &str, Samples)> = Vec::new();
    for (label, tracked, message) in shapes {
        for alone in [false, true] {
            let measured = if alone {
                measure_alone(tracked, message.clone(), params.samples).await?
            } else {
                measure(tracked, &message, params.samples).await?
            };
            rows.push((label.clone(), if alone { "alone" } else { "2 workers" }, measured));
        }
    }
    rows.push((
        "control: hashing 640 KiB (no allocation, no locks)".into(),
        "—",
        calibration(params.samples),
    ));
    for (label, runtime, (times, cpu)) in rows {
        {
            let ms = |d: Duration| format!("{:.3} ms", d.as_secs_f64() * 1000.0);
            let cpu_p99 = percentile(&cpu, 0.99);
            println!(
                "| {label} | {runtime} | {} | {} | {} | {} | {} | {} | {} |",
                times.len(),
                ms(percentile(&times, 0.50)),
                ms(percentile(&times, 0.99)),
                ms(times.last().copied().unwrap_or_default()),
                ms(percentile(&cpu, 0.50)),
                ms(cpu_p99),
                if cpu_p99 < Duration::from_millis(1) { "yes" } else { "**no**" }
            );
        }
    }
    Ok(())
}
