//! Session lifecycle tests with mocked GitHub seams and a recording fleet.

use std::sync::Mutex;

use runner_core::{MockMessageQueue, MockScaleSetApi, ScaleSetRef};
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
    /// The sweep with this number (1-based) never finishes.
    hanging_sweep: Mutex<Option<usize>>,
    /// Hanging sweeps dropped (stopped) by the service.
    dropped_sweeps: Arc<std::sync::atomic::AtomicU32>,
}

/// Counts its drop: proves a pass future was stopped.
struct DropCounter(Arc<std::sync::atomic::AtomicU32>);

impl Drop for DropCounter {
    fn drop(&mut self) {
        self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    }
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
    async fn handle_message(
        &self,
        message: &ScaleSetMessage,
        _queue: &dyn MessageQueue,
    ) -> Result<(), WorkError> {
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
        let number = self.events().iter().filter(|e| **e == Event::Sweep).count();
        if *self.hanging_sweep.lock().unwrap() == Some(number) {
            let _guard = DropCounter(self.dropped_sweeps.clone());
            std::future::pending::<()>().await;
        }
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
        message_type: runner_core::messages::JOB_MESSAGES_TYPE.into(),
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
    let seen = tokio::time::timeout(Duration::from_secs(7200), phase.wait_for(wanted)).await;
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
    assert!(
        text.contains("check GITHUB_PAT and GITHUB_URL"),
        "the fatal error names the settings to fix: {text}"
    );
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

/// The instants (paused clock) at which a mocked call happened.
#[derive(Clone, Default)]
struct Calls(Arc<Mutex<Vec<tokio::time::Instant>>>);

impl Calls {
    /// Records a call; returns its 1-based number.
    fn record(&self) -> usize {
        let mut calls = self.0.lock().unwrap();
        calls.push(tokio::time::Instant::now());
        calls.len()
    }
    fn gaps(&self) -> Vec<Duration> {
        self.0.lock().unwrap().windows(2).map(|w| w[1] - w[0]).collect()
    }
}

fn rejected() -> ScaleSetError {
    ScaleSetError::Unauthorized { status: 401, message: "Bad credentials".into() }
}

#[tokio::test(start_paused = true)]
async fn credentials_rejected_at_run_time_degrade_with_capped_backoff_and_recover_by_themselves() {
    let mut api = MockScaleSetApi::new();
    // The scale set was obtained: from here on, rejected credentials are not fatal.
    api.expect_get_scale_set().returning(|_, _| Ok(Some(scale_set())));
    let calls = Calls::default();
    let seen = calls.clone();
    api.expect_create_session()
        .returning(move |_, _| if seen.record() <= 12 { Err(rejected()) } else { Ok(session("s1", 0)) });
    api.expect_delete_session().returning(|_| Ok(()));
    // No delete_scale_set / remove_runner expectation: a call would panic the mock.
    let mut h = start(api, vec![scripted_queue(vec![])], spec());
    let degraded = wait_for_phase(&mut h.phase, |p| matches!(p, Phase::Degraded(_))).await;
    let Phase::Degraded(reason) = degraded else { unreachable!() };
    assert!(
        reason.contains("creating the message session") && reason.contains("rejected the credentials"),
        "{reason}"
    );
    assert!(h.recorder.events().is_empty(), "a degraded scale set neither provisions nor reconciles");
    wait_for_phase(&mut h.phase, Phase::is_serving).await;
    let gaps = calls.gaps();
    assert_eq!(gaps.len(), 12);
    assert!(gaps.iter().all(|g| *g <= CREDENTIALS_MAX_BACKOFF), "capped at 5 min: {gaps:?}");
    assert!(
        gaps.iter().any(|g| *g > TIMINGS.max_backoff),
        "credential retries back off past the ordinary cap: {gaps:?}"
    );
    assert!(gaps.windows(2).take(6).all(|w| w[1] > w[0] / 2), "the backoff grows: {gaps:?}");
    h.cancel.cancel();
    h.task.await.expect("no unexpected call, no panic").expect("never fatal after start-up");
}

#[tokio::test(start_paused = true)]
async fn a_queue_401_that_survives_the_refresh_recreates_the_session_and_keeps_the_cursor() {
    let mut api = MockScaleSetApi::new();
    api.expect_get_scale_set().returning(|_, _| Ok(Some(scale_set())));
    let order = Arc::new(Mutex::new(Vec::new()));
    let created = order.clone();
    let counter = Arc::new(Mutex::new(0));
    api.expect_create_session().returning(move |_, _| {
        let mut n = counter.lock().unwrap();
        *n += 1;
        created.lock().unwrap().push(format!("create s{n}"));
        Ok(session(&format!("s{n}"), 0))
    });
    let deleted = order.clone();
    api.expect_delete_session().returning(move |s| {
        deleted.lock().unwrap().push(format!("delete {}", s.session_id));
        Ok(())
    });
    // The queue client already refreshed the session once; the 401 still stands.
    let mut first = scripted_queue(vec![Ok(Some(message(41, 1))), Err(rejected())]);
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
    assert_eq!(
        order.lock().unwrap()[..3],
        ["create s1".to_owned(), "delete s1".to_owned(), "create s2".to_owned()],
        "our old session is deleted first, or GitHub would answer 409 to ourselves"
    );
    h.cancel.cancel();
    h.task.await.unwrap().expect("a persistent queue 401 is not fatal");
}

#[tokio::test(start_paused = true)]
async fn rate_limits_are_retried_and_never_reported_as_rejected_credentials() {
    let mut api = MockScaleSetApi::new();
    let calls = Calls::default();
    let seen = calls.clone();
    api.expect_get_scale_set().returning(move |_, _| {
        if seen.record() <= 3 {
            Err(ScaleSetError::RateLimited { retry_after: None })
        } else {
            Ok(Some(scale_set()))
        }
    });
    api.expect_create_session().returning(|_, _| Ok(session("s1", 0)));
    api.expect_delete_session().returning(|_| Ok(()));
    let mut h = start(api, vec![scripted_queue(vec![])], spec());
    let retrying = wait_for_phase(&mut h.phase, |p| !matches!(p, Phase::Starting)).await;
    assert!(
        matches!(&retrying, Phase::Retrying(reason) if reason.contains("rate limit")),
        "a rate limit at start-up is a retry, not fatal and not degraded: {retrying:?}"
    );
    wait_for_phase(&mut h.phase, Phase::is_serving).await;
    h.cancel.cancel();
    h.task.await.unwrap().unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_message_that_always_fails_is_retried_a_bounded_number_of_times_then_acknowledged() {
    let mut api = MockScaleSetApi::new();
    api.expect_get_scale_set().returning(|_, _| Ok(Some(scale_set())));
    api.expect_create_session().times(1).returning(|_, _| Ok(session("s1", 0)));
    api.expect_delete_session().returning(|_| Ok(()));
    let mut queue =
        scripted_queue(vec![Ok(Some(message(10, 1))), Ok(Some(message(11, 1))), Ok(Some(message(12, 1)))]);
    let acked = Arc::new(Mutex::new(Vec::new()));
    let acked_in_mock = acked.clone();
    queue.expect_delete_message().returning(move |id| {
        acked_in_mock.lock().unwrap().push(id);
        Ok(())
    });
    let recorder = Arc::new(Recorder::default());
    recorder.failing.lock().unwrap().push(10);
    recorder.panicking.lock().unwrap().push(12);
    let h = start_with(Arc::new(api), vec![queue], spec(), recorder, TIMINGS);
    tokio::time::timeout(Duration::from_secs(600), async {
        while acked.lock().unwrap().len() < 3 {
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    })
    .await
    .expect("every message is acknowledged in the end");
    assert_eq!(*acked.lock().unwrap(), vec![10, 11, 12], "the poison messages do not block the next ones");
    let handled: Vec<_> = h
        .recorder
        .events()
        .into_iter()
        .filter_map(|e| if let Event::Message(id) = e { Some(id) } else { None })
        .collect();
    assert_eq!(
        handled,
        [10, 10, 10, 11, 12, 12, 12],
        "{MESSAGE_ATTEMPTS} attempts each, a panic counts as a failure"
    );
    assert_eq!(
        h.poisoned.load(std::sync::atomic::Ordering::SeqCst),
        2,
        "each poison message is counted once"
    );
    h.cancel.cancel();
    h.task.await.unwrap().unwrap();
}

#[tokio::test(start_paused = true)]
async fn losing_the_session_stops_an_in_flight_reconciliation_pass() {
    let mut api = MockScaleSetApi::new();
    api.expect_get_scale_set().returning(|_, _| Ok(Some(scale_set())));
    let counter = Arc::new(Mutex::new(0));
    api.expect_create_session().returning(move |_, _| {
        let mut n = counter.lock().unwrap();
        *n += 1;
        Ok(session(&format!("s{n}"), 0))
    });
    api.expect_delete_session().returning(|_| Ok(()));
    let lose = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut first = MockMessageQueue::new();
    let lost = lose.clone();
    first.expect_get_message().returning(move |_, _| {
        if lost.load(std::sync::atomic::Ordering::SeqCst) {
            Err(ScaleSetError::SessionNotFound)
        } else {
            Err(ScaleSetError::Transport { context: "idle".into(), source: "parked".into() })
        }
    });
    let recorder = Arc::new(Recorder::default());
    *recorder.hanging_sweep.lock().unwrap() = Some(2);
    let timings = ServiceTimings { reconcile_interval: Some(Duration::from_secs(10)), ..TIMINGS };
    let h = start_with(Arc::new(api), vec![first, scripted_queue(vec![])], spec(), recorder.clone(), timings);
    tokio::time::timeout(Duration::from_secs(600), async {
        while recorder.events().iter().filter(|e| **e == Event::Sweep).count() < 2 {
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    })
    .await
    .expect("the periodic pass starts");
    assert_eq!(recorder.dropped_sweeps.load(std::sync::atomic::Ordering::SeqCst), 0, "the pass is in flight");
    lose.store(true, std::sync::atomic::Ordering::SeqCst);
    tokio::time::timeout(Duration::from_secs(600), async {
        while recorder.dropped_sweeps.load(std::sync::atomic::Ordering::SeqCst) == 0 {
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    })
    .await
    .expect("the in-flight pass is stopped when the session is lost");
    h.cancel.cancel();
    h.task.await.unwrap().unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_failed_first_reconciliation_is_not_ready_until_a_pass_succeeds() {
    let mut api = MockScaleSetApi::new();
    api.expect_get_scale_set().returning(|_, _| Ok(Some(scale_set())));
    api.expect_create_session().returning(|_, _| Ok(session("s1", 0)));
    api.expect_delete_session().returning(|_| Ok(()));
    let recorder = Arc::new(Recorder::default());
    recorder.sweep_failures.lock().unwrap().push("reconciliation failed: Orka unreachable".into());
    let mut h = start_with(Arc::new(api), vec![scripted_queue(vec![])], spec(), recorder, TIMINGS);
    let failed =
        wait_for_phase(&mut h.phase, |p| matches!(p, Phase::ReconcileFailed(_) | Phase::Serving)).await;
    assert_eq!(failed, Phase::ReconcileFailed("reconciliation failed: Orka unreachable".into()));
    assert!(failed.holds_session(), "it still serves jobs");
    wait_for_phase(&mut h.phase, Phase::is_serving).await;
    assert_eq!(
        h.recorder.events().iter().filter(|e| **e == Event::Sweep).count(),
        2,
        "ready after the next pass"
    );
    h.cancel.cancel();
    h.task.await.unwrap().unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_standby_asks_for_the_session_at_a_short_jittered_cadence() {
    let mut api = MockScaleSetApi::new();
    api.expect_get_scale_set().returning(|_, _| Ok(Some(scale_set())));
    let calls = Calls::default();
    let seen = calls.clone();
    api.expect_create_session().returning(move |_, _| {
        if seen.record() <= 8 { Err(ScaleSetError::SessionConflict) } else { Ok(session("s1", 0)) }
    });
    api.expect_delete_session().returning(|_| Ok(()));
    let mut h = start(api, vec![scripted_queue(vec![])], spec());
    wait_for_phase(&mut h.phase, Phase::is_serving).await;
    let gaps = calls.gaps();
    let cadence = TIMINGS.standby_retry;
    assert!(
        gaps.iter().all(|g| *g <= cadence && *g >= cadence / 2),
        "no growing backoff for a standby: {gaps:?}"
    );
    h.cancel.cancel();
    h.task.await.unwrap().unwrap();
}

/// A GitHub that accepts connections and never answers.
struct HangingApi;

#[async_trait]
impl ScaleSetApi for HangingApi {
    async fn get_runner_group(&self, _: &str) -> Result<runner_core::RunnerGroup, ScaleSetError> {
        std::future::pending().await
    }
    async fn get_scale_set(&self, _: i64, _: &str) -> Result<Option<ScaleSet>, ScaleSetError> {
        std::future::pending().await
    }
    async fn get_scale_set_by_id(&self, _: i64) -> Result<ScaleSet, ScaleSetError> {
        std::future::pending().await
    }
    async fn create_scale_set(&self, _: &NewScaleSet) -> Result<ScaleSet, ScaleSetError> {
        std::future::pending().await
    }
    async fn delete_scale_set(&self, _: i64) -> Result<(), ScaleSetError> {
        std::future::pending().await
    }
    async fn generate_jit_config(&self, _: i64, _: &str) -> Result<runner_core::JitConfig, ScaleSetError> {
        std::future::pending().await
    }
    async fn get_runner_by_name(&self, _: &str) -> Result<Option<runner_core::RunnerRecord>, ScaleSetError> {
        std::future::pending().await
    }
    async fn get_runner(&self, _: i64) -> Result<Option<runner_core::RunnerRecord>, ScaleSetError> {
        std::future::pending().await
    }
    async fn remove_runner(&self, _: i64) -> Result<(), ScaleSetError> {
        std::future::pending().await
    }
    async fn create_session(&self, _: i64, _: &str) -> Result<MessageSession, ScaleSetError> {
        std::future::pending().await
    }
    async fn refresh_session(&self, _: &MessageSession) -> Result<MessageSession, ScaleSetError> {
        std::future::pending().await
    }
    async fn delete_session(&self, _: &MessageSession) -> Result<(), ScaleSetError> {
        std::future::pending().await
    }
}

#[tokio::test(start_paused = true)]
async fn shutdown_does_not_wait_for_a_hanging_github_at_start_up() {
    for manage_scale_set in [false, true] {
        let h = start_with(
            Arc::new(HangingApi),
            vec![],
            ScaleSetSpec { manage_scale_set, ..spec() },
            Arc::new(Recorder::default()),
            TIMINGS,
        );
        tokio::time::sleep(Duration::from_secs(5)).await;
        h.cancel.cancel();
        // Bounded by the session/scale-set delete timeout, never by GitHub.
        let ended = tokio::time::timeout(DELETE_SESSION_TIMEOUT * 2, h.task).await;
        ended.expect("the service ends after cancellation").unwrap().unwrap();
    }
}
