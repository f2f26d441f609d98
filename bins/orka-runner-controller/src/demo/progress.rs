//! Live progress of the demo: one status line, redrawn in place on a terminal, printed
//! every few seconds otherwise (logs, CI).

use std::io::{IsTerminal, Write};
use std::sync::Arc;
use std::time::Duration;

use testkit::github::{JobState, RunnerStatus};
use testkit::world::World;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// Prints status lines until dropped.
pub struct Progress {
    stop: CancellationToken,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Progress {
    /// Starts reporting on `world`.
    pub fn start(world: Arc<World>, started: Instant) -> Self {
        let stop = CancellationToken::new();
        let tty = std::io::stdout().is_terminal();
        let period = if tty { Duration::from_millis(250) } else { Duration::from_secs(3) };
        let token = stop.clone();
        let task = tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = token.cancelled() => break,
                    _ = tokio::time::sleep(period) => {}
                }
                let line = status_line(&world, started);
                let mut out = std::io::stdout().lock();
                if tty {
                    let _ = write!(out, "\r\x1b[2K{line}");
                } else {
                    let _ = writeln!(out, "{line}");
                }
                let _ = out.flush();
            }
            if tty {
                let mut out = std::io::stdout().lock();
                let _ = write!(out, "\r\x1b[2K");
                let _ = out.flush();
            }
        });
        Self { stop, task: Some(task) }
    }

    /// Stops reporting (clears the line on a terminal).
    pub async fn finish(mut self) {
        self.stop.cancel();
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// `[  12.3s] jobs 2 queued · 3 running · 5 done | VMs 4 (peak 4) | runners 2 idle · 3 busy`
pub fn status_line(world: &World, started: Instant) -> String {
    let snapshot = world.snapshot();
    let jobs = &snapshot.github.jobs;
    let count_jobs = |pred: fn(JobState) -> bool| jobs.iter().filter(|j| pred(j.state)).count();
    let waiting = count_jobs(|s| matches!(s, JobState::Queued | JobState::Available | JobState::Assigned));
    let running = count_jobs(|s| s == JobState::Running);
    let done = count_jobs(|s| s == JobState::Completed);
    let runners = &snapshot.github.runners;
    let count_runners = |wanted: RunnerStatus| runners.iter().filter(|r| r.status == wanted).count();
    format!(
        "[{:>6.1}s] jobs {waiting} waiting · {running} running · {done} done | VMs {} (peak {}) | runners {} registered · {} idle · {} busy",
        started.elapsed().as_secs_f64(),
        snapshot.vms,
        snapshot.peak_vms,
        count_runners(RunnerStatus::Registered),
        count_runners(RunnerStatus::Idle),
        count_runners(RunnerStatus::Busy),
    )
}
