//! Job bookkeeping from message bodies, idempotent by job id.
//!
//! A job only moves forward (assigned → started → completed), so duplicates and
//! out-of-order delivery change nothing: a `JobAssigned` after the same job's
//! `JobCompleted` is ignored. The book answers one question for the planner: how many jobs
//! did the bodies assign that the statistics may not show yet ([`JobBook::known_waiting`])
//! — only within a lag window, after which the statistics decide (a lost `JobCompleted`
//! must not keep a runner alive forever). It also remembers acquired request ids so a
//! redelivered `JobAvailable` is not acquired twice.
//!
//! Owns no runner state: binding a job to a runner is nominal (any idle runner of the scale
//! set may take any job), so runners are tracked by name elsewhere.

use std::collections::HashMap;
use std::time::Duration;

use runner_core::{JobInfo, JobResult};
use tokio::time::Instant;

/// Where a job is, as far as message bodies told.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JobState {
    /// Assigned to the scale set; no runner yet.
    Assigned,
    /// A runner started it.
    Started {
        /// The runner's name.
        runner: String,
    },
    /// Completed (or withdrawn).
    Completed {
        /// The result.
        result: JobResult,
    },
}

impl JobState {
    fn rank(&self) -> u8 {
        match self {
            JobState::Assigned => 0,
            JobState::Started { .. } => 1,
            JobState::Completed { .. } => 2,
        }
    }
}

#[derive(Debug, Clone)]
struct JobRecord {
    state: JobState,
    first_seen: Instant,
    updated: Instant,
}

/// The key of a job: its id, or its request id when the id is empty (old services).
pub fn job_key(job: &JobInfo) -> Option<String> {
    if !job.job_id.is_empty() {
        Some(job.job_id.clone())
    } else if job.runner_request_id != 0 {
        Some(format!("request-{}", job.runner_request_id))
    } else {
        None
    }
}

/// Jobs seen in message bodies.
#[derive(Debug, Default)]
pub struct JobBook {
    jobs: HashMap<String, JobRecord>,
    acquired: HashMap<i64, Instant>,
}

impl JobBook {
    /// An empty book.
    pub fn new() -> Self {
        Self::default()
    }

    /// Records a state; returns whether the job moved forward.
    pub fn record(&mut self, key: &str, state: JobState, now: Instant) -> bool {
        match self.jobs.get_mut(key) {
            Some(record) if record.state.rank() >= state.rank() => false,
            Some(record) => {
                record.state = state;
                record.updated = now;
                true
            }
            None => {
                self.jobs.insert(key.to_owned(), JobRecord { state, first_seen: now, updated: now });
                true
            }
        }
    }

    /// The job's state, if known.
    pub fn state(&self, key: &str) -> Option<&JobState> {
        self.jobs.get(key).map(|r| &r.state)
    }

    /// Jobs assigned by a body within `window` that no runner started and that did not complete.
    pub fn known_waiting(&self, now: Instant, window: Duration) -> u32 {
        self.jobs
            .values()
            .filter(|r| r.state == JobState::Assigned && now.saturating_duration_since(r.first_seen) < window)
            .count() as u32
    }

    /// Of `request_ids`, those not acquired before (and remembers them).
    pub fn fresh_requests(&self, request_ids: &[i64]) -> Vec<i64> {
        let mut fresh = Vec::new();
        for id in request_ids {
            if *id > 0 && !self.acquired.contains_key(id) && !fresh.contains(id) {
                fresh.push(*id);
            }
        }
        fresh
    }

    /// Remembers acquired request ids.
    pub fn mark_acquired(&mut self, request_ids: &[i64], now: Instant) {
        for id in request_ids {
            self.acquired.insert(*id, now);
        }
    }

    /// Forgets jobs and request ids untouched for `retention`.
    pub fn forget_older_than(&mut self, now: Instant, retention: Duration) {
        self.jobs.retain(|_, r| now.saturating_duration_since(r.updated) < retention);
        self.acquired.retain(|_, at| now.saturating_duration_since(*at) < retention);
    }

    /// Number of jobs remembered.
    pub fn len(&self) -> usize {
        self.jobs.len()
    }

    /// Whether no job is remembered.
    pub fn is_empty(&self) -> bool {
        self.jobs.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const WINDOW: Duration = Duration::from_secs(120);

    #[test]
    fn states_only_move_forward_so_duplicates_and_reordering_are_harmless() {
        let now = Instant::now();
        let mut book = JobBook::new();
        let done = JobState::Completed { result: JobResult::Succeeded };
        assert!(book.record("j", done.clone(), now));
        assert!(!book.record("j", JobState::Assigned, now), "late JobAssigned ignored");
        assert!(!book.record("j", JobState::Started { runner: "r".into() }, now), "late JobStarted ignored");
        assert_eq!(book.state("j"), Some(&done));
        assert_eq!(book.known_waiting(now, WINDOW), 0);

        assert!(book.record("k", JobState::Assigned, now));
        assert!(!book.record("k", JobState::Assigned, now), "duplicate");
        assert_eq!(book.known_waiting(now, WINDOW), 1);
        assert!(book.record("k", JobState::Started { runner: "r".into() }, now));
        assert_eq!(book.known_waiting(now, WINDOW), 0);
    }

    #[test]
    fn waiting_demand_from_bodies_expires_after_the_lag_window() {
        let now = Instant::now();
        let mut book = JobBook::new();
        book.record("j", JobState::Assigned, now);
        assert_eq!(book.known_waiting(now + WINDOW / 2, WINDOW), 1);
        assert_eq!(book.known_waiting(now + WINDOW, WINDOW), 0);
        book.forget_older_than(now + Duration::from_secs(3600), Duration::from_secs(600));
        assert!(book.is_empty());
    }

    #[test]
    fn request_ids_are_acquired_once() {
        let now = Instant::now();
        let mut book = JobBook::new();
        assert_eq!(book.fresh_requests(&[1, 2, 2, 0]), vec![1, 2]);
        book.mark_acquired(&[1], now);
        assert_eq!(book.fresh_requests(&[1, 2, 3]), vec![2, 3]);
    }

    #[test]
    fn keys() {
        let mut job = JobInfo { job_id: "abc".into(), runner_request_id: 7, ..Default::default() };
        assert_eq!(job_key(&job).as_deref(), Some("abc"));
        job.job_id.clear();
        assert_eq!(job_key(&job).as_deref(), Some("request-7"));
        job.runner_request_id = 0;
        assert_eq!(job_key(&job), None);
    }
}
