//! What the fleet reports to the outside: events for an observer (metrics, logs) and a
//! snapshot of counters. Owns no metric library: the binary maps events to Prometheus.

use std::collections::BTreeMap;
use std::time::Duration;

use runner_core::JobResult;
/// Why a runner left (defined with the fleet seam in `runner-core`).
pub use runner_core::RetireReason;

use crate::error::Step;
use crate::lifecycle::RunnerStage;

/// Something an observer may want to count or time.
#[derive(Debug, Clone, PartialEq)]
pub enum FleetEvent {
    /// A runner entered a stage.
    Stage {
        /// Runner (= VM) name.
        runner: String,
        /// The new stage.
        stage: RunnerStage,
        /// Time since the runner was created (or adopted).
        since_created: Duration,
        /// Time spent in the previous stage.
        since_previous: Duration,
        /// Whether the runner was adopted rather than started by this process.
        adopted: bool,
    },
    /// The VM of a runner being provisioned accepts SSH.
    SshReady {
        /// Runner name.
        runner: String,
        /// Time since the runner was created.
        since_created: Duration,
    },
    /// A runner is gone: registration removed and VM deleted.
    Gone {
        /// Runner name.
        runner: String,
        /// Why it left.
        reason: RetireReason,
        /// Time since it was created (or adopted).
        since_created: Duration,
    },
    /// A provisioning or cleanup step failed for good.
    StepFailed {
        /// Runner name.
        runner: String,
        /// The step.
        step: Step,
        /// Stable failure label ([`crate::ProvisionError::reason`]).
        reason: &'static str,
    },
    /// A job message changed the job book.
    Job {
        /// Job id (or `request-<id>`).
        job: String,
        /// What happened.
        kind: JobEventKind,
    },
    /// Orka has no room for another VM: runners started waiting for capacity
    /// (`waiting: true`, once per episode), or the last one stopped waiting (`false`).
    CapacityWait {
        /// Whether the fleet is now waiting for Orka capacity.
        waiting: bool,
    },
    /// A plan was acted on (only emitted when it does something).
    Planned {
        /// Runners created.
        create: u32,
        /// Idle runners retired.
        retire: u32,
        /// Provisioning runners cancelled.
        cancel: u32,
    },
}

/// Job message kinds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JobEventKind {
    /// Assigned to the scale set.
    Assigned,
    /// Started on a runner.
    Started {
        /// Runner name.
        runner: String,
    },
    /// Completed with a result (succeeded, failed, cancelled, …), possibly before any runner took it.
    Completed {
        /// How the job ended.
        result: JobResult,
        /// Runner name (empty when no runner took it).
        runner: String,
    },
    /// Acquired (acquire flow).
    Acquired,
}

/// Receives fleet events. Called synchronously, with the fleet's state locked: keep it
/// cheap and never call back into the fleet from it.
pub trait FleetObserver: Send + Sync {
    /// One event.
    fn on_event(&self, event: &FleetEvent);
}

/// Counters since the fleet was created.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FleetCounters {
    /// Runners this process started provisioning.
    pub provisions_started: u64,
    /// Runners that came online.
    pub provisions_succeeded: u64,
    /// Failed steps by step and reason label.
    pub failures: BTreeMap<(Step, &'static str), u64>,
    /// Runners adopted.
    pub adopted: u64,
    /// Runners gone by reason.
    pub retired: BTreeMap<RetireReason, u64>,
    /// Jobs acquired.
    pub jobs_acquired: u64,
}
