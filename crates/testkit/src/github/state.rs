//! The fake service's state model (docs/protocol/github-scaleset.md#fake) and its transitions.
//!
//! Owns: scale sets and their queues, sessions, jobs (queued → available → assigned →
//! running → completed), runners (registered → idle → busy → done), statistics, pending
//! faults, and the timed transitions (`tick`). Does not own: HTTP (see `server`), token
//! formats (see `tokens`).

use std::{
    collections::{BTreeMap, HashMap, VecDeque},
    time::{Duration, SystemTime},
};

use serde_json::{Value, json};
use tokio::time::Instant;

use super::{
    FakeGitHubConfig,
    model::{
        FakeState, FakeStatistics, Fault, Flavour, JobId, JobSnapshot, JobSpec, JobState, RunnerPoll,
        RunnerSnapshot, RunnerStatus, ScaleSetSnapshot, SessionSnapshot,
    },
};

pub(crate) const ZERO_TIME: &str = "0001-01-01T00:00:00Z";

pub(crate) fn rfc3339(t: Option<SystemTime>) -> String {
    match t {
        Some(t) => time::OffsetDateTime::from(t)
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_else(|_| ZERO_TIME.to_owned()),
        None => ZERO_TIME.to_owned(),
    }
}

pub(crate) struct ScaleSet {
    pub(crate) id: i64,
    pub(crate) name: String,
    pub(crate) runner_group_id: i64,
    pub(crate) labels: Vec<String>,
    pub(crate) disable_update: bool,
    pub(crate) max_capacity: Option<u32>,
    /// Formed messages not yet deleted, by id.
    queue: BTreeMap<i64, Vec<Value>>,
    /// Job messages not yet formed into a message.
    outbox: VecDeque<Value>,
    next_message_id: i64,
}

pub(crate) struct Session {
    pub(crate) id: String,
    pub(crate) scale_set_id: i64,
    pub(crate) owner: String,
    /// Queue tokens with a lower generation are rejected.
    pub(crate) min_generation: u64,
    pub(crate) next_generation: u64,
    pub(crate) last_activity: Instant,
    pub(crate) active_polls: u32,
}

struct Job {
    id: JobId,
    spec: JobSpec,
    state: JobState,
    scale_set_id: Option<i64>,
    job_uuid: String,
    request_id: i64,
    attempts: u32,
    runner_id: Option<i64>,
    result: Option<String>,
    state_since: Instant,
    started_at: Option<Instant>,
    scale_set_assign_time: Option<SystemTime>,
    runner_assign_time: Option<SystemTime>,
    finish_time: Option<SystemTime>,
}

pub(crate) struct Runner {
    pub(crate) id: i64,
    pub(crate) name: String,
    pub(crate) scale_set_id: i64,
    pub(crate) credential: String,
    pub(crate) status: RunnerStatus,
    job: Option<JobId>,
    last_poll: Option<Instant>,
    /// Lost its job to the heartbeat lease; its next poll is told `removed`.
    lost_job: bool,
}

/// Pending counted faults.
#[derive(Default)]
pub(crate) struct Faults {
    pending: Vec<Fault>,
}

fn times_mut(f: &mut Fault) -> Option<&mut u32> {
    match f {
        Fault::RefreshSessionNotFound { times }
        | Fault::RegistrationDenied { times, .. }
        | Fault::EmptyPollResponse { times }
        | Fault::SessionExpiredOnDelete { times }
        | Fault::DuplicateBatches { times }
        | Fault::ReverseBatches { times }
        | Fault::StaleStatistics { times, .. }
        | Fault::HttpError { times, .. }
        | Fault::Delay { times, .. }
        | Fault::ResetConnection { times, .. }
        | Fault::Bom { times, .. }
        | Fault::EmptyQueueUrl { times }
        | Fault::AcquireTakenElsewhere { times }
        | Fault::UnknownEnvelopeType { times }
        | Fault::SecondaryRateLimit { times, .. }
        | Fault::RejectQueueTokens { times } => Some(times),
        _ => None,
    }
}

impl Faults {
    pub(crate) fn add(&mut self, fault: Fault) {
        self.pending.push(fault);
    }

    pub(crate) fn clear(&mut self) {
        self.pending.clear();
    }

    /// Consumes one use of the first pending fault matching `pred`.
    pub(crate) fn take(&mut self, pred: impl Fn(&Fault) -> bool) -> Option<Fault> {
        let idx = self.pending.iter().position(pred)?;
        let fault = self.pending[idx].clone();
        let exhausted = match times_mut(&mut self.pending[idx]) {
            Some(t) => {
                *t = t.saturating_sub(1);
                *t == 0
            }
            None => true,
        };
        if exhausted {
            self.pending.remove(idx);
        }
        Some(fault)
    }
}

/// An error answer in the service's JSON shape.
#[derive(Debug, Clone)]
pub(crate) struct ServiceError {
    pub(crate) status: u16,
    pub(crate) type_name: &'static str,
    pub(crate) message: String,
}

impl ServiceError {
    pub(crate) fn new(status: u16, type_name: &'static str, message: impl Into<String>) -> Self {
        Self { status, type_name, message: message.into() }
    }
}

pub(crate) struct State {
    pub(crate) cfg: FakeGitHubConfig,
    pub(crate) base_url: String,
    pub(crate) clock_offset: Duration,
    pub(crate) tenant_generation: u64,
    pub(crate) change_tenant_pending: bool,
    /// [`Fault::RevokeCredentials`] in force.
    pub(crate) credentials_revoked: bool,
    pub(crate) admin_min_generation: u64,
    pub(crate) installation_tokens: HashMap<String, SystemTime>,
    pub(crate) registration_tokens: HashMap<String, SystemTime>,
    pub(crate) scale_sets: BTreeMap<i64, ScaleSet>,
    next_scale_set_id: i64,
    pub(crate) sessions: HashMap<String, Session>,
    jobs: BTreeMap<JobId, Job>,
    next_job_id: JobId,
    pub(crate) runners: BTreeMap<i64, Runner>,
    next_runner_id: i64,
    pub(crate) faults: Faults,
    pub(crate) requests: BTreeMap<String, u64>,
    delivery_paused: bool,
    /// Active primary rate limits: endpoint, status, and the reset (real wall clock).
    pub(crate) primary_limits: Vec<(super::model::Endpoint, u16, SystemTime)>,
}

impl State {
    pub(crate) fn new(cfg: FakeGitHubConfig, base_url: String) -> Self {
        Self {
            cfg,
            base_url,
            clock_offset: Duration::ZERO,
            tenant_generation: 1,
            change_tenant_pending: false,
            credentials_revoked: false,
            admin_min_generation: 0,
            installation_tokens: HashMap::new(),
            registration_tokens: HashMap::new(),
            scale_sets: BTreeMap::new(),
            next_scale_set_id: 1,
            sessions: HashMap::new(),
            jobs: BTreeMap::new(),
            next_job_id: 1,
            runners: BTreeMap::new(),
            next_runner_id: 2400,
            faults: Faults::default(),
            requests: BTreeMap::new(),
            primary_limits: Vec::new(),
            delivery_paused: false,
        }
    }

    /// The fake's wall clock (real time plus any `advance_clock`).
    pub(crate) fn wall(&self) -> SystemTime {
        SystemTime::now() + self.clock_offset
    }

    pub(crate) fn tenant_base(&self) -> String {
        format!("{}/_services/pipelines/t{}/", self.base_url, self.tenant_generation)
    }

    pub(crate) fn count(&mut self, name: &str) {
        *self.requests.entry(name.to_owned()).or_default() += 1;
    }

    // ---- scale sets -------------------------------------------------------------------

    pub(crate) fn create_scale_set(
        &mut self,
        name: &str,
        runner_group_id: i64,
        labels: Vec<String>,
        disable_update: bool,
    ) -> Result<i64, ServiceError> {
        if self.scale_sets.values().any(|s| s.name == name && s.runner_group_id == runner_group_id) {
            return Err(ServiceError::new(
                409,
                "GitHub.DistributedTask.WebApi.RunnerScaleSetExistsException",
                format!("A runner scale set named {name} already exists in this runner group."),
            ));
        }
        let id = self.next_scale_set_id;
        self.next_scale_set_id += 1;
        let mut labels = labels;
        if labels.first().is_none_or(|l| l != name) {
            labels.retain(|l| l != name);
            labels.insert(0, name.to_owned());
        }
        self.scale_sets.insert(
            id,
            ScaleSet {
                id,
                name: name.to_owned(),
                runner_group_id,
                labels,
                disable_update,
                max_capacity: None,
                queue: BTreeMap::new(),
                outbox: VecDeque::new(),
                next_message_id: self.cfg.first_message_id,
            },
        );
        self.schedule();
        Ok(id)
    }

    /// Deletes a scale set (blocked while one of its runners runs a job); its sessions go,
    /// jobs waiting on it go back to the queue, idle/offline runners are removed.
    pub(crate) fn delete_scale_set(&mut self, id: i64, force: bool) -> Result<(), ServiceError> {
        if !self.scale_sets.contains_key(&id) {
            return Ok(());
        }
        if !force && self.runners.values().any(|r| r.scale_set_id == id && r.status == RunnerStatus::Busy) {
            return Err(ServiceError::new(
                400,
                "GitHub.DistributedTask.WebApi.JobStillRunningException",
                "The scale set has runners running jobs.",
            ));
        }
        self.scale_sets.remove(&id);
        self.sessions.retain(|_, s| s.scale_set_id != id);
        let now = Instant::now();
        for job in self.jobs.values_mut() {
            if job.scale_set_id == Some(id)
                && matches!(job.state, JobState::Available | JobState::Acquired | JobState::Assigned)
            {
                job.state = JobState::Queued;
                job.scale_set_id = None;
                job.state_since = now;
            }
        }
        let busy: Vec<i64> = self
            .runners
            .values()
            .filter(|r| r.scale_set_id == id && r.status == RunnerStatus::Busy)
            .map(|r| r.id)
            .collect();
        for job_id in self
            .jobs
            .values()
            .filter(|j| j.runner_id.is_some_and(|r| busy.contains(&r)))
            .map(|j| j.id)
            .collect::<Vec<_>>()
        {
            self.finish(job_id, "canceled", RunnerStatus::Removed);
        }
        for r in self.runners.values_mut().filter(|r| r.scale_set_id == id && r.status.is_registered()) {
            r.status = RunnerStatus::Removed;
        }
        self.schedule();
        Ok(())
    }

    pub(crate) fn scale_set_json(&self, ss: &ScaleSet) -> Value {
        json!({
            "id": ss.id,
            "name": ss.name,
            "runnerGroupId": ss.runner_group_id,
            "runnerGroupName": self.group_name(ss.runner_group_id),
            "labels": ss.labels.iter().map(|l| json!({"type": "System", "name": l})).collect::<Vec<_>>(),
            "runnerSetting": {"ephemeral": true, "isElastic": true, "disableUpdate": ss.disable_update},
            "createdOn": rfc3339(Some(self.wall())),
            "runnerJitConfigUrl": format!("{}_apis/runtime/runnerscalesets/{}/generatejitconfig", self.tenant_base(), ss.id),
            "statistics": self.statistics(ss.id),
        })
    }

    pub(crate) fn group_name(&self, id: i64) -> String {
        self.cfg.runner_groups.iter().find(|(gid, _)| *gid == id).map(|(_, n)| n.clone()).unwrap_or_default()
    }

    /// Records the capacity a poll advertised (assigned ≤ advertised capacity:
    /// docs/protocol/github-scaleset.md#message-queue).
    pub(crate) fn set_capacity(&mut self, ss_id: i64, capacity: u32) {
        if let Some(ss) = self.scale_sets.get_mut(&ss_id)
            && ss.max_capacity != Some(capacity)
        {
            ss.max_capacity = Some(capacity);
            self.schedule();
        }
    }

    // ---- statistics -------------------------------------------------------------------

    pub(crate) fn statistics(&self, ss_id: i64) -> FakeStatistics {
        let mut s = FakeStatistics::default();
        for j in self.jobs.values().filter(|j| j.scale_set_id == Some(ss_id)) {
            match j.state {
                JobState::Available => s.total_available_jobs += 1,
                JobState::Acquired => s.total_acquired_jobs += 1,
                JobState::Assigned => s.total_assigned_jobs += 1,
                JobState::Running => {
                    s.total_assigned_jobs += 1;
                    s.total_running_jobs += 1;
                }
                _ => {}
            }
        }
        for r in self.runners.values().filter(|r| r.scale_set_id == ss_id && r.status.is_registered()) {
            s.total_registered_runners += 1;
            match r.status {
                RunnerStatus::Busy => s.total_busy_runners += 1,
                RunnerStatus::Idle => s.total_idle_runners += 1,
                _ => {}
            }
        }
        s
    }

    /// Statistics as delivered (a pending `StaleStatistics` fault wins).
    pub(crate) fn delivered_statistics(&mut self, ss_id: i64) -> FakeStatistics {
        match self.faults.take(|f| matches!(f, Fault::StaleStatistics { .. })) {
            Some(Fault::StaleStatistics { statistics, .. }) => statistics,
            _ => self.statistics(ss_id),
        }
    }

    // ---- jobs -------------------------------------------------------------------------

    pub(crate) fn enqueue(&mut self, spec: JobSpec) -> JobId {
        let id = self.next_job_id;
        self.next_job_id += 1;
        let request_id = match self.cfg.flavour {
            Flavour::Assign => 0,
            Flavour::Acquire => 1_000_000 + id as i64,
        };
        self.jobs.insert(
            id,
            Job {
                id,
                spec,
                state: JobState::Queued,
                scale_set_id: None,
                job_uuid: String::new(),
                request_id,
                attempts: 0,
                runner_id: None,
                result: None,
                state_since: Instant::now(),
                started_at: None,
                scale_set_assign_time: None,
                runner_assign_time: None,
                finish_time: None,
            },
        );
        self.schedule();
        id
    }

    fn labels_match(ss: &ScaleSet, wanted: &[String]) -> bool {
        wanted.iter().all(|w| ss.labels.iter().any(|l| l.eq_ignore_ascii_case(w)))
    }

    /// Offers / assigns queued jobs to scale sets with room; assigns acquired jobs.
    pub(crate) fn schedule(&mut self) {
        let acquired: Vec<(JobId, i64)> = self
            .jobs
            .values()
            .filter(|j| j.state == JobState::Acquired)
            .filter_map(|j| j.scale_set_id.map(|ss| (j.id, ss)))
            .collect();
        for (id, ss) in acquired {
            self.assign(id, ss);
        }
        let queued: Vec<JobId> =
            self.jobs.values().filter(|j| j.state == JobState::Queued).map(|j| j.id).collect();
        for id in queued {
            let labels = self.jobs[&id].spec.labels.clone();
            let target = self.scale_sets.values().filter(|ss| Self::labels_match(ss, &labels)).find(|ss| {
                let used = self
                    .jobs
                    .values()
                    .filter(|j| {
                        j.scale_set_id == Some(ss.id)
                            && matches!(
                                j.state,
                                JobState::Available
                                    | JobState::Acquired
                                    | JobState::Assigned
                                    | JobState::Running
                            )
                    })
                    .count() as u32;
                ss.max_capacity.is_none_or(|cap| used < cap)
            });
            let Some(ss_id) = target.map(|ss| ss.id) else { continue };
            match self.cfg.flavour {
                Flavour::Assign => self.assign(id, ss_id),
                Flavour::Acquire => {
                    let now = Instant::now();
                    let job = self.jobs.get_mut(&id).expect("job");
                    job.state = JobState::Available;
                    job.scale_set_id = Some(ss_id);
                    job.state_since = now;
                    let mut msg = self.job_message(id, "JobAvailable");
                    msg["acquireJobUrl"] = json!(format!(
                        "{}_apis/runtime/runnerscalesets/{ss_id}/acquirejobs",
                        self.tenant_base()
                    ));
                    self.push_event(ss_id, msg);
                }
            }
        }
    }

    fn assign(&mut self, id: JobId, ss_id: i64) {
        let wall = self.wall();
        let job = self.jobs.get_mut(&id).expect("job");
        job.state = JobState::Assigned;
        job.scale_set_id = Some(ss_id);
        job.job_uuid = uuid::Uuid::new_v4().to_string();
        job.attempts += 1;
        job.state_since = Instant::now();
        job.scale_set_assign_time = Some(wall);
        let msg = self.job_message(id, "JobAssigned");
        self.push_event(ss_id, msg);
    }

    /// `acquirejobs`: the subset of `ids` offered to `ss_id` is assigned.
    pub(crate) fn acquire(&mut self, ss_id: i64, ids: &[i64]) -> Vec<i64> {
        let elsewhere = self.faults.take(|f| matches!(f, Fault::AcquireTakenElsewhere { .. })).is_some();
        let mut acquired = Vec::new();
        for rid in ids {
            let Some(id) = self
                .jobs
                .values()
                .find(|j| {
                    j.request_id == *rid && j.scale_set_id == Some(ss_id) && j.state == JobState::Available
                })
                .map(|j| j.id)
            else {
                continue;
            };
            if elsewhere {
                let job = self.jobs.get_mut(&id).expect("job");
                job.state = JobState::Elsewhere;
                job.scale_set_id = None;
                continue;
            }
            let job = self.jobs.get_mut(&id).expect("job");
            job.state = JobState::Acquired;
            job.state_since = Instant::now();
            acquired.push(*rid);
        }
        if elsewhere {
            self.schedule();
        }
        acquired
    }

    pub(crate) fn acquirable(&self, ss_id: i64) -> Vec<Value> {
        self.jobs
            .values()
            .filter(|j| j.scale_set_id == Some(ss_id) && j.state == JobState::Available)
            .map(|j| {
                let mut m = self.job_message(j.id, "JobAvailable");
                m["acquireJobUrl"] =
                    json!(format!("{}_apis/runtime/runnerscalesets/{ss_id}/acquirejobs", self.tenant_base()));
                m
            })
            .collect()
    }

    fn job_message(&self, id: JobId, message_type: &str) -> Value {
        let j = &self.jobs[&id];
        json!({
            "messageType": message_type,
            "repositoryName": j.spec.repository,
            "ownerName": j.spec.owner,
            "jobWorkflowRef": j.spec.workflow_ref,
            "requestLabels": j.spec.labels,
            "scaleSetAssignTime": rfc3339(j.scale_set_assign_time),
            "jobId": j.job_uuid,
            "runnerAssignTime": rfc3339(j.runner_assign_time),
            "finishTime": rfc3339(j.finish_time),
            "jobDisplayName": j.spec.display_name,
            "workflowRunId": j.spec.workflow_run_id,
            "eventName": j.spec.event_name,
            "queueTime": ZERO_TIME,
            "runnerRequestId": j.request_id,
        })
    }

    fn runner_fields(&self, msg: &mut Value, runner_id: Option<i64>) {
        let (id, name) = runner_id
            .and_then(|r| self.runners.get(&r))
            .map(|r| (r.id, r.name.clone()))
            .unwrap_or((0, String::new()));
        msg["runnerId"] = json!(id);
        msg["runnerName"] = json!(name);
    }

    fn push_event(&mut self, ss_id: i64, msg: Value) {
        if let Some(ss) = self.scale_sets.get_mut(&ss_id) {
            ss.outbox.push_back(msg);
        }
    }

    pub(crate) fn inject_events(&mut self, ss_id: i64, messages: Vec<Value>) {
        for m in messages {
            self.push_event(ss_id, m);
        }
    }

    /// Completes a job: `JobCompleted` with `result`; its runner (if any) ends in `runner_end`.
    fn finish(&mut self, id: JobId, result: &str, runner_end: RunnerStatus) {
        let wall = self.wall();
        let Some(job) = self.jobs.get_mut(&id) else { return };
        job.state = JobState::Completed;
        job.result = Some(result.to_owned());
        job.finish_time = Some(wall);
        let (ss_id, runner_id) = (job.scale_set_id, job.runner_id);
        let mut msg = self.job_message(id, "JobCompleted");
        self.runner_fields(&mut msg, runner_id);
        msg["result"] = json!(result);
        if let Some(ss) = ss_id {
            self.push_event(ss, msg);
        }
        if let Some(r) = runner_id.and_then(|r| self.runners.get_mut(&r)) {
            r.status = runner_end;
        }
    }

    /// Cancels a job wherever it is. False if it already ended.
    pub(crate) fn cancel(&mut self, id: JobId) -> bool {
        let Some(job) = self.jobs.get_mut(&id) else { return false };
        match job.state {
            JobState::Queued => {
                job.state = JobState::Completed;
                job.result = Some("canceled".into());
            }
            JobState::Available | JobState::Acquired | JobState::Assigned | JobState::Running => {
                self.finish(id, "canceled", RunnerStatus::Removed);
            }
            JobState::Completed | JobState::Elsewhere => return false,
        }
        self.schedule();
        true
    }

    /// Ends a running job now with `result`. False unless it is running.
    pub(crate) fn finish_job(&mut self, id: JobId, result: &str) -> bool {
        if self.jobs.get(&id).is_none_or(|j| j.state != JobState::Running) {
            return false;
        }
        self.finish(id, result, RunnerStatus::Done);
        self.schedule();
        true
    }

    /// Fault F8 of docs/protocol/github-scaleset.md#fault-cases: cancel the current assignment and
    /// queue the job again.
    pub(crate) fn reassign(&mut self, id: JobId) -> bool {
        let Some(job) = self.jobs.get(&id) else { return false };
        if job.state != JobState::Assigned {
            return false;
        }
        let ss_id = job.scale_set_id;
        let mut msg = self.job_message(id, "JobCompleted");
        self.runner_fields(&mut msg, None);
        msg["result"] = json!("canceled");
        if let Some(ss) = ss_id {
            self.push_event(ss, msg);
        }
        let job = self.jobs.get_mut(&id).expect("job");
        job.state = JobState::Queued;
        job.scale_set_id = None;
        job.state_since = Instant::now();
        self.schedule();
        true
    }

    /// Fault F10 of docs/protocol/github-scaleset.md#fault-cases: `JobCompleted` while the job
    /// keeps running.
    pub(crate) fn premature_completion(&mut self, id: JobId) -> bool {
        let Some(job) = self.jobs.get(&id) else { return false };
        if job.state != JobState::Running {
            return false;
        }
        let (ss_id, runner_id) = (job.scale_set_id, job.runner_id);
        let mut msg = self.job_message(id, "JobCompleted");
        self.runner_fields(&mut msg, runner_id);
        msg["result"] = json!("succeeded");
        msg["finishTime"] = json!(rfc3339(Some(self.wall())));
        if let Some(ss) = ss_id {
            self.push_event(ss, msg);
        }
        true
    }

    // ---- runners ----------------------------------------------------------------------

    /// `generatejitconfig`: registers a runner.
    pub(crate) fn register_runner(&mut self, ss_id: i64, name: &str) -> Result<i64, ServiceError> {
        if !self.scale_sets.contains_key(&ss_id) {
            return Err(ServiceError::new(
                404,
                "GitHub.DistributedTask.WebApi.RunnerScaleSetNotFoundException",
                format!("Runner scale set {ss_id} not found."),
            ));
        }
        if self.runners.values().any(|r| r.name == name && r.status.is_registered()) {
            return Err(ServiceError::new(
                409,
                "GitHub.DistributedTask.WebApi.AgentExistsException",
                format!("A runner with the name {name} already exists."),
            ));
        }
        let id = self.next_runner_id;
        self.next_runner_id += 1;
        let credential: [u8; 24] = rand::random();
        let credential: String = credential.iter().map(|b| format!("{b:02x}")).collect();
        self.runners.insert(
            id,
            Runner {
                id,
                name: name.to_owned(),
                scale_set_id: ss_id,
                credential,
                status: RunnerStatus::Registered,
                job: None,
                last_poll: None,
                lost_job: false,
            },
        );
        Ok(id)
    }

    pub(crate) fn runner_json(r: &Runner) -> Value {
        json!({
            "id": r.id,
            "name": r.name,
            "runnerScaleSetId": r.scale_set_id,
            "status": if matches!(r.status, RunnerStatus::Idle | RunnerStatus::Busy) { "online" } else { "offline" },
            "busy": r.status == RunnerStatus::Busy,
            "enabled": true,
            "ephemeral": true,
            "version": "2.330.0",
            "labels": [],
        })
    }

    /// `DELETE agents/{id}`: absent is fine; busy is `JobStillRunningException`.
    pub(crate) fn remove_runner(&mut self, id: i64) -> Result<(), ServiceError> {
        let Some(r) = self.runners.get_mut(&id) else { return Ok(()) };
        match r.status {
            RunnerStatus::Busy => Err(ServiceError::new(
                self.cfg.job_still_running_status,
                "GitHub.DistributedTask.WebApi.JobStillRunningException",
                format!("Runner {} is still running a job.", r.name),
            )),
            s if s.is_registered() => {
                r.status = RunnerStatus::Removed;
                Ok(())
            }
            _ => Ok(()),
        }
    }

    /// `/_fake/runner/poll`: heartbeat, connect, take a job. `None` = unknown credential.
    pub(crate) fn runner_poll(&mut self, credential: &str) -> Option<RunnerPoll> {
        let now = Instant::now();
        let runner = self.runners.values_mut().find(|r| r.credential == credential)?;
        match runner.status {
            RunnerStatus::Done => return Some(RunnerPoll::Done),
            RunnerStatus::Removed => return Some(RunnerPoll::Removed),
            _ if runner.lost_job => return Some(RunnerPoll::Removed),
            _ => {}
        }
        runner.last_poll = Some(now);
        if runner.status == RunnerStatus::Busy {
            return Some(RunnerPoll::Running);
        }
        runner.status = RunnerStatus::Idle;
        let (runner_id, ss_id) = (runner.id, runner.scale_set_id);
        let next = self
            .jobs
            .values()
            .filter(|j| j.state == JobState::Assigned && j.scale_set_id == Some(ss_id))
            .min_by_key(|j| (j.state_since, j.id))
            .map(|j| j.id);
        let Some(job_id) = next else { return Some(RunnerPoll::Idle) };
        let wall = self.wall();
        let job = self.jobs.get_mut(&job_id).expect("job");
        job.state = JobState::Running;
        job.runner_id = Some(runner_id);
        job.started_at = Some(now);
        job.runner_assign_time = Some(wall);
        let runner = self.runners.get_mut(&runner_id).expect("runner");
        runner.status = RunnerStatus::Busy;
        runner.job = Some(job_id);
        let mut msg = self.job_message(job_id, "JobStarted");
        self.runner_fields(&mut msg, Some(runner_id));
        self.push_event(ss_id, msg);
        Some(RunnerPoll::Running)
    }

    // ---- sessions and the queue -------------------------------------------------------

    pub(crate) fn touch_session(&mut self, id: &str) {
        if let Some(s) = self.sessions.get_mut(id) {
            s.last_activity = Instant::now();
        }
    }

    /// The message to deliver after `last_id`: the oldest undeleted one, else a new one
    /// formed from pending job messages (≤ `max_batch`).
    pub(crate) fn next_message(&mut self, ss_id: i64, last_id: i64) -> Option<(i64, Vec<Value>)> {
        let max_batch = self.cfg.max_batch.max(1);
        let paused = self.delivery_paused;
        let ss = self.scale_sets.get_mut(&ss_id)?;
        if let Some((id, events)) = ss.queue.range(last_id.saturating_add(1)..).next() {
            return Some((*id, events.clone()));
        }
        if paused || ss.outbox.is_empty() {
            return None;
        }
        let n = ss.outbox.len().min(max_batch);
        let mut batch: Vec<Value> = ss.outbox.drain(..n).collect();
        if self.faults.take(|f| matches!(f, Fault::ReverseBatches { .. })).is_some() {
            batch.reverse();
        }
        if self.faults.take(|f| matches!(f, Fault::DuplicateBatches { .. })).is_some() {
            for e in batch.iter().rev() {
                ss.outbox.push_front(e.clone());
            }
        }
        let id = ss.next_message_id.max(last_id + 1);
        ss.next_message_id = id + 1;
        ss.queue.insert(id, batch.clone());
        Some((id, batch))
    }

    pub(crate) fn delete_message(&mut self, ss_id: i64, id: i64) {
        if let Some(ss) = self.scale_sets.get_mut(&ss_id) {
            ss.queue.remove(&id);
        }
    }

    pub(crate) fn set_delivery_paused(&mut self, paused: bool) {
        self.delivery_paused = paused;
    }

    // ---- time -------------------------------------------------------------------------

    /// Timed transitions: job completion, heartbeat lease, assignment lease, session expiry.
    pub(crate) fn tick(&mut self) {
        let now = Instant::now();
        let due: Vec<JobId> = self
            .jobs
            .values()
            .filter(|j| {
                j.state == JobState::Running && j.started_at.is_some_and(|s| now >= s + j.spec.duration)
            })
            .map(|j| j.id)
            .collect();
        for id in due {
            let result = self.jobs[&id].spec.result.clone();
            self.finish(id, &result, RunnerStatus::Done);
        }
        let lease = self.cfg.runner_lease;
        let stale: Vec<(i64, Option<JobId>, RunnerStatus)> = self
            .runners
            .values()
            .filter(|r| matches!(r.status, RunnerStatus::Idle | RunnerStatus::Busy))
            .filter(|r| r.last_poll.is_some_and(|p| now > p + lease))
            .map(|r| (r.id, r.job, r.status))
            .collect();
        for (rid, job, status) in stale {
            if status == RunnerStatus::Busy
                && let Some(job) = job
            {
                self.finish(job, "failed", RunnerStatus::Offline);
                if let Some(r) = self.runners.get_mut(&rid) {
                    r.lost_job = true;
                }
            } else if let Some(r) = self.runners.get_mut(&rid) {
                r.status = RunnerStatus::Offline;
            }
        }
        if let Some(lease) = self.cfg.assignment_lease {
            let max = self.cfg.max_assignment_attempts;
            let expired: Vec<JobId> = self
                .jobs
                .values()
                .filter(|j| j.state == JobState::Assigned && j.attempts < max && now > j.state_since + lease)
                .map(|j| j.id)
                .collect();
            for id in expired {
                self.reassign(id);
            }
        }
        let idle = self.cfg.session_idle_expiry;
        self.sessions.retain(|_, s| s.active_polls > 0 || now <= s.last_activity + idle);
        self.schedule();
    }

    // ---- snapshot ---------------------------------------------------------------------

    pub(crate) fn snapshot(&self) -> FakeState {
        let mut sessions: Vec<SessionSnapshot> = self
            .sessions
            .values()
            .map(|s| SessionSnapshot {
                session_id: s.id.clone(),
                scale_set_id: s.scale_set_id,
                owner_name: s.owner.clone(),
            })
            .collect();
        sessions.sort_by_key(|s| s.scale_set_id);
        FakeState {
            sessions,
            scale_sets: self
                .scale_sets
                .values()
                .map(|ss| ScaleSetSnapshot {
                    id: ss.id,
                    name: ss.name.clone(),
                    runner_group_id: ss.runner_group_id,
                    labels: ss.labels.clone(),
                    disable_update: ss.disable_update,
                    max_capacity: ss.max_capacity,
                    unacked_messages: ss.queue.keys().copied().collect(),
                    pending_events: ss.outbox.len(),
                    statistics: self.statistics(ss.id),
                })
                .collect(),
            jobs: self
                .jobs
                .values()
                .map(|j| JobSnapshot {
                    id: j.id,
                    state: j.state,
                    labels: j.spec.labels.clone(),
                    scale_set_id: j.scale_set_id,
                    job_uuid: j.job_uuid.clone(),
                    request_id: j.request_id,
                    attempts: j.attempts,
                    runner_id: j.runner_id,
                    runner_name: j.runner_id.and_then(|r| self.runners.get(&r)).map(|r| r.name.clone()),
                    result: j.result.clone(),
                })
                .collect(),
            runners: self
                .runners
                .values()
                .map(|r| RunnerSnapshot {
                    id: r.id,
                    name: r.name.clone(),
                    scale_set_id: r.scale_set_id,
                    status: r.status,
                    job: r.job,
                })
                .collect(),
            requests: self.requests.clone(),
        }
    }
}
