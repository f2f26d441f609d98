//! The controller under demonstration, in this process but on its own tokio runtime and
//! thread, so it can be stopped politely (SIGTERM semantics) or crash (its runtime is torn
//! down mid-flight: no session deletion, no drain — what `kill -9` leaves behind). The
//! simulated world lives on the demo's runtime and survives the crash, as real VMs would.

use std::sync::mpsc;
use std::thread::JoinHandle;

use anyhow::Context;
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::http::Telemetry;
use crate::wiring;

enum Stop {
    Graceful,
    Crash,
}

/// A controller instance running `run` on a private runtime.
pub struct InProcessController {
    stop: mpsc::Sender<Stop>,
    thread: Option<JoinHandle<anyhow::Result<()>>>,
}

impl InProcessController {
    /// Starts `run` with `config`, reporting into `telemetry`.
    pub fn start(config: Config, telemetry: Telemetry) -> anyhow::Result<Self> {
        let (stop, stopped) = mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("demo-controller".into())
            .spawn(move || {
                let runtime = tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(2)
                    .enable_all()
                    .build()
                    .context("starting the controller's runtime")?;
                let shutdown = CancellationToken::new();
                let task = runtime.spawn(wiring::run(config, telemetry, shutdown.clone()));
                match stopped.recv() {
                    Ok(Stop::Graceful) | Err(_) => {
                        shutdown.cancel();
                        runtime.block_on(task).context("the controller panicked")?
                    }
                    Ok(Stop::Crash) => {
                        runtime.shutdown_background();
                        Ok(())
                    }
                }
            })
            .context("starting the controller thread")?;
        Ok(Self { stop, thread: Some(thread) })
    }

    /// SIGTERM semantics: stop taking work, delete the session, leave running jobs running.
    pub async fn stop(mut self) -> anyhow::Result<()> {
        let _ = self.stop.send(Stop::Graceful);
        self.join().await
    }

    /// Crash: everything the controller was doing stops at once.
    pub async fn crash(mut self) -> anyhow::Result<()> {
        let _ = self.stop.send(Stop::Crash);
        self.join().await
    }

    async fn join(&mut self) -> anyhow::Result<()> {
        let thread = self.thread.take().context("already stopped")?;
        tokio::task::spawn_blocking(move || thread.join())
            .await?
            .map_err(|_| anyhow::anyhow!("the controller thread panicked"))?
    }
}

impl Drop for InProcessController {
    fn drop(&mut self) {
        let _ = self.stop.send(Stop::Crash);
    }
}
