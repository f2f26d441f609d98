//! Job traceability: `JobStarted` and `JobCompleted` are logged with the repository,
//! workflow, job name, job id and run id, and the runner's entry carries them while it runs
//! the job.

mod common;

use std::io::Write;
use std::sync::{Arc, Mutex};

use common::*;
use provisioner::{JobTrace, RunnerStage};
use runner_core::{JobCompleted, JobInfo, JobMessage, JobStarted};

#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn job() -> JobInfo {
    JobInfo {
        job_id: "j1".into(),
        owner_name: "acme".into(),
        repository_name: "app".into(),
        job_workflow_ref: "acme/app/.github/workflows/ci.yml@refs/heads/main".into(),
        job_display_name: "build (macos)".into(),
        workflow_run_id: 4242,
        ..JobInfo::default()
    }
}

#[tokio::test(start_paused = true)]
async fn started_and_completed_jobs_are_traceable_in_logs_and_on_the_runner() {
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::INFO)
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let lab = Lab::new(config());
    lab.deliver(&msg(1, stats(1, 0), vec![JobMessage::Assigned(job())])).await;
    lab.settle().await;
    let name = lab.only_runner();
    assert_eq!(lab.fleet.runners()[0].trace, None, "no job on an idle runner");

    let started = JobStarted { job: job(), runner_id: 1, runner_name: name.clone() };
    lab.deliver(&msg(2, stats(1, 1), vec![JobMessage::Started(started)])).await;
    assert_eq!(lab.stage_of(&name), Some(RunnerStage::Busy));
    let expected = JobTrace {
        job_id: "j1".into(),
        run_id: 4242,
        repository: "acme/app".into(),
        workflow: "acme/app/.github/workflows/ci.yml@refs/heads/main".into(),
        job_name: "build (macos)".into(),
    };
    assert_eq!(lab.fleet.runners()[0].trace.as_ref(), Some(&expected));

    lab.github.finish_job(&name);
    lab.shell.finish_run(&name);
    let completed =
        JobCompleted { job: job(), runner_id: 1, runner_name: name.clone(), result: "succeeded".into() };
    lab.deliver(&msg(3, stats(0, 0), vec![JobMessage::Completed(completed)])).await;
    lab.settle().await;
    lab.assert_clean();

    let log = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    for what in ["job started", "job completed"] {
        let line =
            log.lines().find(|l| l.contains(what)).unwrap_or_else(|| panic!("no {what:?} line:\n{log}"));
        for field in [
            "repository=acme/app",
            "workflow=acme/app/.github/workflows/ci.yml@refs/heads/main",
            "job_name=build (macos)",
            "job_id=j1",
            "run_id=4242",
            &format!("runner={name}"),
        ] {
            assert!(line.contains(field), "{what} line lacks {field}: {line}");
        }
    }
}
