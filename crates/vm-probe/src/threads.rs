//! The shell's own SSH threads: a pool of OS threads that runs each session's blocking
//! part (key exchange, authentication, the command), separate from tokio's blocking pool
//! of the process so that sessions stuck on slow VMs cannot starve DNS resolution or file
//! I/O elsewhere.
//!
//! Threads are kept for [`IDLE_THREAD_KEEP_ALIVE`] after their last session and reused:
//! a burst of hundreds of sessions costs a few thread creations, not one per session
//! (a new thread's stack, its first page faults and the C allocator's per-thread state
//! were most of a burst's SSH CPU). The pool is the blocking pool of a private tokio
//! runtime whose scheduler is never driven: tokio's pool already does spawning on demand,
//! reuse and idle expiry.

use std::time::Duration;

use tokio::runtime::{Builder, Runtime};

/// How long an idle SSH thread waits for the next session before it exits.
pub(crate) const IDLE_THREAD_KEEP_ALIVE: Duration = Duration::from_secs(10);

/// A pool of at most `max` SSH threads.
pub(crate) struct SshThreads {
    /// Always `Some` until dropped (taken by `Drop` to shut it down without blocking).
    runtime: Option<Runtime>,
}

impl SshThreads {
    /// A pool that grows to `max` threads, each named `ssh-session`.
    pub(crate) fn new(max: usize) -> std::io::Result<Self> {
        let runtime = Builder::new_current_thread()
            .max_blocking_threads(max.max(1))
            .thread_name("ssh-session")
            .thread_keep_alive(IDLE_THREAD_KEEP_ALIVE)
            .build()?;
        Ok(Self { runtime: Some(runtime) })
    }

    /// Runs `work` on an SSH thread (an idle one if there is one), queued while all `max`
    /// are busy.
    pub(crate) fn run<F>(&self, work: F)
    where
        F: FnOnce() + Send + 'static,
    {
        let runtime = self.runtime.as_ref().expect("the pool lives until dropped");
        drop(runtime.spawn_blocking(work));
    }
}

impl Drop for SshThreads {
    /// Lets running sessions finish on their own (each ends at its deadline) without
    /// blocking the dropping thread, which may be an async task.
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;
    use std::sync::mpsc;

    use super::*;

    #[test]
    fn sessions_one_after_another_reuse_one_thread() {
        let threads = SshThreads::new(8).unwrap();
        let mut seen = HashSet::new();
        for _ in 0..20 {
            let (tx, rx) = mpsc::channel();
            threads.run(move || {
                let me = std::thread::current();
                tx.send((me.id(), me.name().map(str::to_owned))).unwrap();
            });
            let (id, name) = rx.recv_timeout(Duration::from_secs(10)).unwrap();
            assert_eq!(name.as_deref(), Some("ssh-session"));
            seen.insert(id);
            // Room for the thread to go idle again (it answers before it is idle; a
            // session arriving in between starts a second thread, which is fine).
            #[allow(clippy::disallowed_methods)] // a plain test thread, not async code
            std::thread::sleep(Duration::from_millis(5));
        }
        // A thread per session (what this pool replaced) would show 20.
        assert!(seen.len() <= 3, "idle threads must take the next sessions; {} threads for 20", seen.len());
    }

    #[test]
    fn at_most_max_threads_run_at_once() {
        let threads = SshThreads::new(3).unwrap();
        let running = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let peak = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let (tx, rx) = mpsc::channel();
        for _ in 0..12 {
            let (running, peak, tx) = (running.clone(), peak.clone(), tx.clone());
            threads.run(move || {
                use std::sync::atomic::Ordering::SeqCst;
                let now = running.fetch_add(1, SeqCst) + 1;
                peak.fetch_max(now, SeqCst);
                #[allow(clippy::disallowed_methods)] // a blocking worker, not async code
                std::thread::sleep(Duration::from_millis(20));
                running.fetch_sub(1, SeqCst);
                tx.send(()).unwrap();
            });
        }
        for _ in 0..12 {
            rx.recv_timeout(Duration::from_secs(10)).unwrap();
        }
        assert_eq!(peak.load(std::sync::atomic::Ordering::SeqCst), 3);
    }

    #[tokio::test]
    async fn dropping_the_pool_inside_async_code_does_not_block_or_panic() {
        let threads = SshThreads::new(2).unwrap();
        let (tx, rx) = tokio::sync::oneshot::channel();
        threads.run(move || {
            let _ = tx.send(());
        });
        rx.await.unwrap();
        drop(threads);
    }
}
