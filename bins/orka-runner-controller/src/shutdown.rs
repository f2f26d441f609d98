//! Turns SIGTERM / SIGINT into a [`CancellationToken`]: the first signal asks everything
//! to stop (subsystems take `child_token()`s); a second one exits at once with code 130.
//!
//! Owns signal handling only; what "stop" means (drain, session close) is the caller's.

use tokio_util::sync::CancellationToken;

/// Exit code after a second signal (shell convention for SIGINT).
pub const FORCED_EXIT_CODE: i32 = 130;

/// A token cancelled on the first SIGTERM or SIGINT. Must be called inside a runtime.
pub fn on_signals() -> std::io::Result<CancellationToken> {
    let token = CancellationToken::new();
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let mut interrupt = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())?;
    let cancel = token.clone();
    tokio::spawn(async move {
        let name = tokio::select! {
            _ = terminate.recv() => "SIGTERM",
            _ = interrupt.recv() => "SIGINT",
        };
        tracing::info!(signal = name, "shutting down: no new work; running jobs keep running");
        cancel.cancel();
        tokio::select! {
            _ = terminate.recv() => {},
            _ = interrupt.recv() => {},
        }
        tracing::warn!("second signal: exiting without finishing cleanups");
        std::process::exit(FORCED_EXIT_CODE);
    });
    Ok(token)
}
