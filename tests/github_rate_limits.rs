//! GitHub rate limits against the real binary: GitHub answers with its primary rate limit
//! (403, `X-RateLimit-Remaining: 0`, "API rate limit exceeded for installation ID …")
//! at start-up and again during a run, and with its secondary limit (429 + `Retry-After`).
//!
//! | Phase | What happens | What must hold |
//! |---|---|---|
//! | start-up | every GitHub endpoint is rate-limited for a few seconds | the process keeps running, logs the wait once with the reset time, serves the job once the limit resets |
//! | during a run | the primary limit again on every endpoint, then a secondary limit | the process keeps running; the next job is served; it never says "rejected the credentials" |

#[path = "support/mod.rs"]
mod support;

use std::time::Duration;

use anyhow::{Result, bail};
use support::{PATIENCE, Scenario, eventually, explained, stop};
use testkit::github::{Endpoint, Fault};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limits_at_start_up_and_during_a_run_are_waited_out() -> Result<()> {
    let s = Scenario::start().await?;
    s.world.github.inject(Fault::PrimaryRateLimit { endpoint: Endpoint::Any, status: 403, for_ms: 4_000 });
    let mut controller = s.controller("controller.log", &[])?;
    explained(&[controller.log_path()], async {
        eventually("the rate-limit wait is logged", PATIENCE, || async {
            controller.log().contains("GitHub rate limit reached").then_some(())
        })
        .await?;
        let first = s.world.enqueue_jobs(1, Duration::from_secs(1));
        eventually("the first job completes once the limit resets", PATIENCE, || async {
            s.world.snapshot().completed(first[0]).then_some(())
        })
        .await?;

        s.world.github.inject(Fault::PrimaryRateLimit {
            endpoint: Endpoint::Any,
            status: 403,
            for_ms: 3_000,
        });
        s.world.github.inject(Fault::SecondaryRateLimit {
            endpoint: Endpoint::Any,
            status: 429,
            retry_after_secs: Some(1),
            times: 3,
        });
        let second = s.world.enqueue_jobs(1, Duration::from_secs(1));
        eventually("the second job completes after the limits", PATIENCE, || async {
            s.world.snapshot().completed(second[0]).then_some(())
        })
        .await?;
        s.wait_clean().await?;
        if controller.wait_exit(Duration::from_millis(200)).await.is_ok() {
            bail!("the controller exited on a rate limit");
        }
        let text = controller.log();
        if text.contains("rejected the credentials") || text.contains("cannot be served") {
            bail!("a rate limit was reported as a credentials failure");
        }
        stop(&mut controller).await?;
        let mut jobs = first;
        jobs.extend(second);
        s.world.check_invariants(&jobs, 2).map_err(|v| anyhow::anyhow!("{v:#?}"))
    })
    .await
}
