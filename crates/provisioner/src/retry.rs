//! One lifecycle step run with a per-attempt deadline, bounded retries with backoff
//! (`backon`) and cancellation. Owns no policy of its own: callers pass the budget and say
//! which errors are worth another attempt.

use std::future::Future;

use backon::Retryable;
use runner_core::ScaleSetError;
use tokio_util::sync::CancellationToken;

use crate::config::StepPolicy;
use crate::error::{Cause, ProvisionError, Step};

enum Failure {
    Error(Cause),
    TimedOut,
}

/// Runs `attempt` until it succeeds, fails with a non-retryable error, the budget runs
/// out or `cancel` fires.
pub(crate) async fn run_step<T, F, Fut>(
    step: Step,
    policy: &StepPolicy,
    cancel: &CancellationToken,
    retryable: impl Fn(&Cause) -> bool,
    retry_timeouts: bool,
    mut attempt: F,
) -> Result<T, ProvisionError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, Cause>>,
{
    let mut attempts = 0u32;
    let deadline = policy.deadline;
    let run = || {
        attempts += 1;
        let fut = attempt();
        async move {
            match tokio::time::timeout(deadline, fut).await {
                Ok(Ok(value)) => Ok(value),
                Ok(Err(cause)) => Err(Failure::Error(cause)),
                Err(_) => Err(Failure::TimedOut),
            }
        }
    };
    let retried = run
        .retry(policy.backoff())
        .sleep(tokio::time::sleep)
        .when(|failure| match failure {
            Failure::Error(cause) => retryable(cause),
            Failure::TimedOut => retry_timeouts,
        })
        // Honour a server's Retry-After when it asks for longer than the backoff.
        .adjust(|failure, next| {
            let asked = match failure {
                Failure::Error(Cause::Orka(e)) => e.retry_after(),
                Failure::Error(Cause::GitHub(ScaleSetError::RateLimited { retry_after })) => *retry_after,
                _ => None,
            };
            next.map(|next| asked.map_or(next, |asked| next.max(asked)))
        })
        .notify(|failure, after| {
            if let Failure::Error(cause) = failure {
                tracing::debug!(step = %step, error = cause as &dyn std::error::Error, ?after, "step failed, retrying");
            } else {
                tracing::debug!(step = %step, ?after, "step timed out, retrying");
            }
        });
    let outcome = tokio::select! {
        biased;
        () = cancel.cancelled() => return Err(ProvisionError::Cancelled { step }),
        outcome = retried => outcome,
    };
    outcome.map_err(|failure| match failure {
        Failure::Error(cause) => ProvisionError::StepFailed { step, attempts, cause },
        Failure::TimedOut => ProvisionError::TimedOut { step, attempts, deadline },
    })
}

/// Whether another attempt may help, by error kind.
pub(crate) fn is_retryable(cause: &Cause) -> bool {
    match cause {
        Cause::Orka(e) => e.is_retryable(),
        Cause::GitHub(e) => e.is_retryable(),
        Cause::Shell(e) => e.is_retryable(),
        Cause::NoSshEndpoint => false,
    }
}
