//! Job traceability: which job a runner runs, in the words a person searches for
//! (repository, workflow, job name, run id), taken from the `JobStarted` message and logged
//! on `JobStarted` and `JobCompleted`.

use runner_core::{JobInfo, JobResult};

/// What the job messages say about the job a runner runs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct JobTrace {
    /// Job id (or `request-<id>` when the service sent none).
    pub job_id: String,
    /// Workflow run id (0 when the message had none).
    pub run_id: i64,
    /// `owner/repository`.
    pub repository: String,
    /// The workflow file and ref (`owner/repo/.github/workflows/ci.yml@refs/heads/main`).
    pub workflow: String,
    /// The job's name as GitHub's UI shows it.
    pub job_name: String,
}

impl JobTrace {
    /// The trace of `job`, keyed like the job book (`key`).
    pub fn of(key: &str, job: &JobInfo) -> Self {
        let repository = match (job.owner_name.as_str(), job.repository_name.as_str()) {
            ("", repo) => repo.to_owned(),
            (owner, "") => owner.to_owned(),
            (owner, repo) => format!("{owner}/{repo}"),
        };
        Self {
            job_id: key.to_owned(),
            run_id: job.workflow_run_id,
            repository,
            workflow: job.job_workflow_ref.clone(),
            job_name: job.job_display_name.clone(),
        }
    }
}

/// The INFO line of a job that started on `runner`.
pub(crate) fn log_started(scale_set: &str, runner: &str, trace: &JobTrace) {
    tracing::info!(
        scale_set = %scale_set,
        runner = %runner,
        repository = %trace.repository,
        workflow = %trace.workflow,
        job_name = %trace.job_name,
        job_id = %trace.job_id,
        run_id = trace.run_id,
        "job started"
    );
}

/// The INFO line of a job that completed (on `runner`, empty when no runner took it).
pub(crate) fn log_completed(scale_set: &str, runner: &str, trace: &JobTrace, result: JobResult) {
    tracing::info!(
        scale_set = %scale_set,
        runner = %runner,
        repository = %trace.repository,
        workflow = %trace.workflow,
        job_name = %trace.job_name,
        job_id = %trace.job_id,
        run_id = trace.run_id,
        result = ?result,
        "job completed"
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_repository_is_owner_slash_name_and_tolerates_missing_parts() {
        let mut job = JobInfo {
            owner_name: "acme".into(),
            repository_name: "app".into(),
            job_workflow_ref: "acme/app/.github/workflows/ci.yml@refs/heads/main".into(),
            job_display_name: "build (macos)".into(),
            workflow_run_id: 42,
            ..JobInfo::default()
        };
        let trace = JobTrace::of("j1", &job);
        assert_eq!(trace.repository, "acme/app");
        assert_eq!(
            (trace.job_id.as_str(), trace.run_id, trace.job_name.as_str()),
            ("j1", 42, "build (macos)")
        );
        job.owner_name.clear();
        assert_eq!(JobTrace::of("j1", &job).repository, "app");
    }
}
