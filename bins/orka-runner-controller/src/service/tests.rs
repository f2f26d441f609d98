//! Session lifecycle tests with mocked GitHub seams and a recording fleet.

use std::sync::Mutex;

use github_scaleset::{MockMessageQueue, MockScaleSetApi, ScaleSetRef};
use secrecy::SecretString;

use super::*;

#[derive(Debug, Clone, PartialEq)]
enum Event {
    Statistics(u32),
    Message(i64),
    Tick,
    Sweep,
    Drain,
}

/// A fleet and sweeper that record what the service asked of them and fail on request.
#[derive(Default)]
struct Recorder {
    events: Mutex<Vec<Event>>,
    /// Message ids whose handling fails every time.
    failing: Mutex<Vec<i64>>,
    /// Message ids whose handling panics every time.
    panicking: Mutex<Vec<i64>>,
    /// Failures of the next sweeps (popped from the end).
    sweep_failures: Mutex<Vec<String>>,
}

impl Recorder {
    fn push(&self, e: Event) {
        self.events.lock().unwrap().push(e);
    }
    fn events(&self) -> Vec<Event> {
        self.events.lock().unwrap().clone()
    }
}

#[async_trait]
impl RunnerFleet for Recorder {
    async fn on_statistics(&self, statistics: Statistics) {
        self.push(Event::Statistics(statistics.total_assigned_jobs));
    }
    async fn handle_message(&self, message: &ScaleSetMessage, _queue: &dyn MessageQueue) -> Result<(), WorkError> {
        self.push(Event::Message(message.message_id));
        if self.failing.lock().unwrap().contains(&message.message_id) {
            return Err(WorkError(format!("message {} cannot be handled", message.message_id)));
        }
        if self.panicking.lock().unwrap().contains(&message.message_id) {
            panic!("handler bug on message {}", message.message_id);
        }
        Ok(())
    }
    async fn tick(&self) {
        self.push(Event::Tick);
    }
    async fn drain(&self, _deadline: Duration) {
        self.push(Event::Drain);
    }
}

#[async_trait]
impl Sweeper for Recorder {
    async fn sweep(&self) -> Result<(), WorkError> {
        self.push(Event::Sweep);
        let failure = self.sweep_failures.lock().unwrap().pop();
        match failure {
            Some(reason) => Err(WorkError(reason)),
            None => Ok(()),
        }
    }
}

impl FleetFactory for Arc<Recorder> {
    fn for_scale_set(&self, scale_set_id: i64) -> (Arc<dyn RunnerFleet>, Arc<dyn Sweeper>) {
        assert_eq!(scale_set_id, 7);
        (self.clone(), self.clone())
    }
}

/// Hands out pre-built queues, one per session, in order.
struct Queues(Mutex<Vec<MockMessageQueue>>);

impl QueueOpener for Queues {
    fn open(&self, session: MessageSession) -> Arc<dyn MessageQueue> {
        let mut queue = self.0.lock().unwrap().remove(0);
        queue.expect_session().return_const(session);
        Arc::new(queue)
    }
}

fn session(id: &str, assigned: u32) -> MessageSession {
    MessageSession {
        session_id: id.into(),
        owner_name: "host".into(),
        scale_set: ScaleSetRef { id: 7, name: "mac".into() },
        message_queue_url: "http://127.0.0.1:1/queue".into(),
        message_queue_access_token: SecretString::from("queue-token"),
        statistics: Statistics { total_assigned_jobs: assigned, ..Statistics::default() },
    }
}

fn scale_set() -> ScaleSet {
    ScaleSet {
        id: 7,
        name: "mac".into(),
        runner_group_id: 1,
        runner_group_name: None,
        labels: vec![Label::system("mac")],
        runner_setting: RunnerSetting::default(),
        statistics: None,
    }
}

fn message(id: i64, assigned: u32) -> ScaleSetMessage {
    ScaleSetMessage {
        message_id: id,
        message_type: github_scaleset::messages::JOB_MESSAGES_TYPE.into(),
        statistics: Statistics { total_assigned_jobs: assigned, ..Statistics::default() },
        job_messages: vec![],
    }
}

fn spec() -> ScaleSetSpec {
    ScaleSetSpec {
        name: "mac".into(),
        runner_group_id: 1,
        extra_labels: vec!["arm64".into()],
        max_runners: 4,
        owner_name: "host".into(),
        manage_scale_set: false,
        recreate_on_conflict: false,
        credentials_settings: "GITHUB_PAT and GITHUB_URL".into(),
    }
}

const TIMINGS: ServiceTimings = ServiceTimings {
    min_backoff: Duration::from_secs(1),
    max_backoff: Duration::from_secs(30),
    standby_retry: Duration::from_secs(5),
    tick_interval: Duration::from_secs(3600),
    reconcile_interval: Some(Duration::from_secs(3600)),
    drain_deadline: Duration::from_secs(5),
};

struct Harness {
    recorder: Arc<Recorder>,
    poisoned: Arc<std::sync::atomic::AtomicU32>,
    phase: watch::Receiver<Phase>,
    cancel: CancellationToken,
    task: tokio::task::JoinHandle<Result<(), FatalError>>,
}

fn start(api: MockScaleSetApi, queues: Vec<MockMessageQueue>, spec: ScaleSetSpec) -> Harness {
    start_with(Arc::new(api), queues, spec, Arc::new(Recorder::default()), TIMINGS)
}

fn start_with(
    api: Arc<dyn ScaleSetApi>,
    queues: Vec<MockMessageQueue>,
    spec: ScaleSetSpec,
    recorder: Arc<Recorder>,
    timings: ServiceTimings,
) -> Harness {
    let poisoned = Arc::new(std::sync::atomic::AtomicU32::new(0));
    let counter = poisoned.clone();
    let deps = ServiceDeps {
        api,
        queues: Arc::new(Queues(Mutex::new(queues))),
        fleets: Arc::new(recorder.clone()),
        heartbeat: Arc::new(|| {}),
        poison_message: Arc::new(move || {
            counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }),
    };
    let (tx, phase) = watch::channel(Phase::Starting);
    let cancel = CancellationToken::new();
    let task = tokio::spawn(run_scale_set(spec, deps, timings, tx, cancel.clone()));
    Harness { recorder, poisoned, phase, cancel, task }
}

async fn wait_for_phase(phase: &mut watch::Receiver<Phase>, wanted: fn(&Phase) -> bool) -> Phase {
    let seen = tokio::time::timeout(Duration::from_secs(600), phase.wait_for(wanted)).await;
    seen.expect("phase not reached").expect("service dropped its phase").clone()
}

/// A queue whose polls return the scripted answers, then block until shutdown.
fn scripted_queue(answers: Vec<Result<Option<ScaleSetMessage>, ScaleSetError>>) -> MockMessageQueue {
    let mut queue = MockMessageQueue::new();
    let answers = Mutex::new(answers.into_iter());
    let seen_ids = Arc::new(Mutex::new(Vec::new()));
    queue.expect_get_message().returning(move |last_id, capacity| {
        assert_eq!(capacity, 4, "X-ScaleSetMaxCapacity must be max_runners");
        seen_ids.lock().unwrap().push(last_id);
        match answers.lock().unwrap().next() {
            Some(answer) => answer,
            // Long poll with nothing to say: the real queue would block ~50 s, then 202.
            None => Err(ScaleSetError::Transport { context: "idle".into(), source: "parked".into() }),
        }
    });
    queue
}

#[tokio::test(start_paused = true)]
async fn messages_are_handled_then_acknowledged_and_empty_polls_resync() {
    let mut api = MockScaleSetApi::new();
    api.expect_get_scale_set().returning(|_, _| Ok(Some(scale_set())));
    api.expect_create_session().times(1).returning(|_, _| Ok(session("s1", 2)));
    api.expect_delete_session().times(1).returning(|s| {
        assert_eq!(s.session_id, "s1");
        Ok(())
    });
    let mut queue = scripted_queue(vec![Ok(Some(message(10, 3))), Ok(None), Ok(Some(message(11, 1)))]);
    let acked = Arc::new(Mutex::new(Vec::new()));
    let acked_in_mock = acked.clone();
    queue.expect_delete_message().returning(move |id| {
        acked_in_mock.lock().unwrap().push(id);
        Ok(())
    });
    let mut h = start(api, vec![queue], spec());
    wait_for_phase(&mut h.phase, Phase::is_serving).await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    h.cancel.cancel();
    h.task.await.unwrap().unwrap();

    assert_eq!(*acked.lock().unwrap(), vec![10, 11], "each message is acknowledged once, in order");
    let events = h.recorder.events();
    let served: Vec<_> = events.iter().filter(|e| !matches!(e, Event::Tick)).cloned().collect();
    assert_eq!(
        served,
        [
            Event::Statistics(2), // session statistics drive the first decision
            Event::Sweep,         // first reconciliation before serving
            Event::Message(10),
            Event::Statistics(3), // empty poll: resync with the latest statistics
            Event::Message(11),
            // then transport errors: retried with backoff, no resync, nothing fatal
            Event::Drain,
        ]
    );
    assert_eq!(events.last(), Some(&Event::Drain), "shutdown drains the fleet");
}

#[tokio::test(start_paused = true)]
async fn session_conflict_means_standby_without_reconciling_then_takeover() {
    let mut api = MockScaleSetApi::new();
    api.expect_get_scale_set().returning(|_, _| Ok(Some(scale_set())));
    let attempts = Arc::new(Mutex::new(0));
    let counter = attempts.clone();
    api.expect_create_session().returning(move |_, _| {
        let mut n = counter.lock().unwrap();
        *n += 1;
        if *n < 4 { Err(ScaleSetError::SessionConflict) } else { Ok(session("s2", 0)) }
    });
    api.expect_delete_session().returning(|_| Ok(()));
    let mut h = start(api, vec![scripted_queue(vec![])], spec());
    wait_for_phase(&mut h.phase, |p| *p == Phase::Standby).await;
    assert!(h.recorder.events().is_empty(), "a standby neither reconciles nor provisions");
    wait_for_phase(&mut h.phase, Phase::is_serving).await;
    assert_eq!(*attempts.lock().unwrap(), 4);
    assert_eq!(h.recorder.events()[..2], [Event::Statistics(0), Event::Sweep]);
    h.cancel.cancel();
    h.task.await.unwrap().unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_vanished_session_is_recreated_and_the_cursor_kept() {
    let mut api = MockScaleSetApi::new();
    api.expect_get_scale_set().returning(|_, _| Ok(Some(scale_set())));
    let created = Arc::new(Mutex::new(0));
    let counter = created.clone();
    api.expect_create_session().returning(move |_, _| {
        let mut n = counter.lock().unwrap();
        *n += 1;
        Ok(session(&format!("s{n}"), 0))
    });
    api.expect_delete_session().returning(|_| Ok(()));
    let mut first = scripted_queue(vec![Ok(Some(message(41, 1))), Err(ScaleSetError::SessionNotFound)]);
    first.expect_delete_message().returning(|_| Ok(()));
    let mut second = MockMessageQueue::new();
    let (seen_tx, mut seen_rx) = tokio::sync::mpsc::unbounded_channel();
    second.expect_get_message().returning(move |last_id, _| {
        let _ = seen_tx.send(last_id);
        Err(ScaleSetError::Transport { context: "idle".into(), source: "parked".into() })
    });
    let h = start(api, vec![first, second], spec());
    let last_id = tokio::time::timeout(Duration::from_secs(600), seen_rx.recv()).await.unwrap().unwrap();
    assert_eq!(last_id, 41, "the new session continues after the last handled message");
    assert_eq!(*created.lock().unwrap(), 2);
    h.cancel.cancel();
    h.task.await.unwrap().unwrap();
}

#[tokio::test(start_paused = true)]
async fn missing_scale_set_is_created_with_its_labels() {
    let mut api = MockScaleSetApi::new();
    api.expect_get_scale_set().returning(|_, _| Ok(None));
    api.expect_create_scale_set().times(1).returning(|new| {
        let labels: Vec<_> = new.labels.iter().map(|l| l.name.as_str()).collect();
        assert_eq!(labels, ["mac", "arm64"]);
        assert!(new.runner_setting.disable_update);
        Ok(scale_set())
    });
    api.expect_create_session().returning(|_, _| Ok(session("s1", 0)));
    api.expect_delete_session().returning(|_| Ok(()));
    let mut h = start(api, vec![scripted_queue(vec![])], spec());
    wait_for_phase(&mut h.phase, Phase::is_serving).await;
    h.cancel.cancel();
    h.task.await.unwrap().unwrap();
}

#[tokio::test(start_paused = true)]
async fn rejected_credentials_are_fatal_and_reported() {
    let mut api = MockScaleSetApi::new();
    api.expect_get_scale_set()
        .returning(|_, _| Err(ScaleSetError::Unauthorized { status: 401, message: "bad token".into() }));
    let mut h = start(api, vec![], spec());
    let err = h.task.await.unwrap().unwrap_err();
    assert!(matches!(err.source, ScaleSetError::Unauthorized { .. }));
    let text = err.to_string();
    assert!(text.contains("check GITHUB_PAT and GITHUB_URL"), "the fatal error names the settings to fix: {text}");
    let stopped = wait_for_phase(&mut h.phase, |p| matches!(p, Phase::Stopped(_))).await;
    assert!(matches!(stopped, Phase::Stopped(reason) if reason.starts_with("fatal")));
    assert!(h.recorder.events().is_empty(), "no fleet was ever built, nothing to drain");
}

#[tokio::test(start_paused = true)]
async fn managed_scale_sets_are_recreated_at_start_and_deleted_on_exit() {
    let mut api = MockScaleSetApi::new();
    let exists = Arc::new(Mutex::new(true));
    let seen = exists.clone();
    api.expect_get_scale_set().returning(move |_, _| Ok((*seen.lock().unwrap()).then(scale_set)));
    let deleted = exists.clone();
    api.expect_delete_scale_set().times(2).returning(move |id| {
        assert_eq!(id, 7);
        *deleted.lock().unwrap() = false;
        Ok(())
    });
    let created = exists.clone();
    api.expect_create_scale_set().times(1).returning(move |_| {
        *created.lock().unwrap() = true;
        Ok(scale_set())
    });
    api.expect_create_session().times(1).returning(|_, _| Ok(session("s1", 0)));
    api.expect_delete_session().returning(|_| Ok(()));
    let mut h = start(api, vec![scripted_queue(vec![])], ScaleSetSpec { manage_scale_set: true, ..spec() });
    wait_for_phase(&mut h.phase, Phase::is_serving).await;
    h.cancel.cancel();
    h.task.await.unwrap().unwrap();
    assert!(!*exists.lock().unwrap(), "deleted again on exit");
}

#[tokio::test(start_paused = true)]
async fn opt_in_conflict_escape_recreates_the_scale_set() {
    let mut api = MockScaleSetApi::new();
    api.expect_get_scale_set().returning(|_, _| Ok(Some(scale_set())));
    let conflicts = Arc::new(Mutex::new(1));
    let remaining = conflicts.clone();
    api.expect_create_session().returning(move |_, _| {
        let mut n = remaining.lock().unwrap();
        if *n > 0 {
            *n -= 1;
            Err(ScaleSetError::SessionConflict)
        } else {
            Ok(session("s2", 0))
        }
    });
    api.expect_delete_scale_set().times(1).returning(|_| Ok(()));
    api.expect_delete_session().returning(|_| Ok(()));
    let escape = ScaleSetSpec { recreate_on_conflict: true, ..spec() };
    let mut h = start(api, vec![scripted_queue(vec![])], escape);
    wait_for_phase(&mut h.phase, Phase::is_serving).await;
    h.cancel.cancel();
    h.task.await.unwrap().unwrap();
}
