//! Fake GitHub: REST bootstrap, Actions service and message queue over real loopback HTTP
//! (docs/protocol/github-scaleset.md#fake), plus the fake-runner endpoint of the fake-runner
//! contract and a control API (in-process methods on [`FakeGitHub`] and `/_fake/…` over
//! HTTP, see [`control`](self#http-control-api)).
//!
//! Owns: a faithful, stateful, fault-injectable imitation of the service for tests, the
//! e2e suite and the `demo`. Does not own (and must not know): the client crate — it is an
//! independent reading of docs/protocol/github-scaleset.md.
//!
//! # HTTP control API
//!
//! `POST /_fake/runner/poll`, `POST /_fake/jobs`, `POST /_fake/jobs/{id}/cancel`,
//! `POST /_fake/jobs/{id}/finish`, `GET /_fake/state`, `POST|DELETE /_fake/faults`,
//! `POST /_fake/scalesets`, `POST /_fake/clock` — bodies are the serde forms of [`JobSpec`], [`Fault`],
//! [`FakeState`].
//!
//! # URLs the fake serves
//!
//! REST under `/` and `/api/v3/`; the Actions tenant under
//! `/_services/pipelines/t<generation>/`; message queues under `/_queue/scalesets/{id}/message`.
//! A config URL for clients is [`FakeGitHub::config_url`] (`http://127.0.0.1:PORT/<org>`).

mod control;
mod keys;
mod model;
mod server;
mod state;
mod tokens;

#[cfg(test)]
mod tests;

use std::{
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::Duration,
};

use tokio::sync::Notify;
use tokio_util::sync::{CancellationToken, DropGuard};

pub use model::{
    Endpoint, ErrorBodyKind, FakeJitConfig, FakeState, FakeStatistics, Fault, Flavour, JobId, JobSnapshot,
    JobSpec, JobState, RetryAfter, RunnerPoll, RunnerSnapshot, RunnerStatus, ScaleSetSnapshot,
    SessionSnapshot, endpoint_name,
};

use state::State;
use tokens::TokenMint;

/// The GitHub App the fake accepts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FakeApp {
    /// Numeric App id (accepted as JWT `iss`).
    pub app_id: String,
    /// Client id (also accepted as `iss`).
    pub client_id: Option<String>,
    /// The installation id.
    pub installation_id: i64,
    /// The App's public key (PEM) the JWT signature is checked against.
    pub public_key_pem: String,
}

impl FakeApp {
    /// An App whose private key is [`test_app_private_key_pem`] (app id `12345`, client id
    /// `Iv1.fake`, installation `67890`).
    pub fn test() -> Self {
        Self {
            app_id: "12345".into(),
            client_id: Some("Iv1.fake".into()),
            installation_id: 67890,
            public_key_pem: keys::app().public.clone(),
        }
    }
}

/// The private key (PKCS#8 PEM) matching [`FakeApp::test`], generated at the first call
/// in this process. Test material only.
pub fn test_app_private_key_pem() -> &'static str {
    &keys::app().private
}

/// [`test_app_private_key_pem`] as PKCS#1 PEM (`-----BEGIN RSA PRIVATE KEY-----`), the
/// encoding GitHub hands out. Test material only.
pub fn test_app_private_key_pkcs1_pem() -> &'static str {
    &keys::app().private_pkcs1
}

/// A different RSA key (PKCS#8 PEM, generated at the first call) the fake does not
/// accept. Test material only.
pub fn untrusted_app_private_key_pem() -> &'static str {
    &keys::untrusted().private
}

/// Behaviour and timings of the fake. `Default` is tuned for fast tests; see
/// [`FakeGitHubConfig::realistic`] for the service's own values.
#[derive(Debug, Clone)]
pub struct FakeGitHubConfig {
    /// Listen address (loopback; port 0 picks one).
    pub bind: SocketAddr,
    /// Assign (broker) or acquire (GHES) flavour.
    pub flavour: Flavour,
    /// Accepted PATs.
    pub pats: Vec<String>,
    /// Accepted GitHub App, if any.
    pub app: Option<FakeApp>,
    /// Runner groups `(id, name)`; id 1 is the default group.
    pub runner_groups: Vec<(i64, String)>,
    /// How long an empty long poll is held before 202.
    pub long_poll_hold: Duration,
    /// A session without queue activity for this long expires.
    pub session_idle_expiry: Duration,
    /// Heartbeat lease of fake runners (a fake runner that stops polling for this long is gone).
    pub runner_lease: Duration,
    /// Assignment lease: an assigned job no runner took within it is cancelled and
    /// reassigned with a new `jobId` (docs/protocol/github-scaleset.md#assignment). `None` = never.
    pub assignment_lease: Option<Duration>,
    /// Assignment attempts before an assignment sticks.
    pub max_assignment_attempts: u32,
    /// Admin token lifetime (its JWT `exp`).
    pub admin_token_lifetime: Duration,
    /// Queue token lifetime.
    pub queue_token_lifetime: Duration,
    /// Installation token lifetime.
    pub installation_token_lifetime: Duration,
    /// Registration token lifetime.
    pub registration_token_lifetime: Duration,
    /// First message id of each queue.
    pub first_message_id: i64,
    /// Maximum job messages per message.
    pub max_batch: usize,
    /// Status of `JobStillRunningException` (the ADR says 400, scaleset tests use 409).
    pub job_still_running_status: u16,
    /// Period of timed transitions (job completion, leases, expiry).
    pub tick: Duration,
    /// Reject Actions calls without `api-version=6.0-preview`, and polls without the
    /// `Accept` / `X-ScaleSetMaxCapacity` headers (400), as a check on clients.
    pub strict_headers: bool,
    /// Runner versions (no leading `v`) refused as deprecated: a fake runner of such a
    /// version is told so on its first poll, never connects, and exits with code 7.
    pub refused_runner_versions: std::collections::BTreeSet<String>,
    /// Organizations, owners and enterprises that do not exist: their registration-token
    /// requests answer 404 `Not Found`, as GitHub does for a wrong or invisible name.
    pub missing_owners: Vec<String>,
}

impl Default for FakeGitHubConfig {
    fn default() -> Self {
        Self {
            bind: SocketAddr::from(([127, 0, 0, 1], 0)),
            flavour: Flavour::Assign,
            pats: vec!["ghp_fakepat0123456789".into()],
            app: Some(FakeApp::test()),
            runner_groups: vec![(1, "default".into())],
            long_poll_hold: Duration::from_secs(1),
            session_idle_expiry: Duration::from_secs(30),
            runner_lease: Duration::from_secs(5),
            assignment_lease: None,
            max_assignment_attempts: 3,
            admin_token_lifetime: Duration::from_secs(3600),
            queue_token_lifetime: Duration::from_secs(3600),
            installation_token_lifetime: Duration::from_secs(3600),
            registration_token_lifetime: Duration::from_secs(3600),
            first_message_id: 100_000_001,
            max_batch: 50,
            job_still_running_status: 400,
            tick: Duration::from_millis(50),
            strict_headers: true,
            refused_runner_versions: std::collections::BTreeSet::new(),
            missing_owners: Vec::new(),
        }
    }
}

impl FakeGitHubConfig {
    /// The service's observed values: 50 s long poll, 5 min assignment lease, 1 h tokens.
    pub fn realistic() -> Self {
        Self {
            long_poll_hold: Duration::from_secs(50),
            session_idle_expiry: Duration::from_secs(300),
            assignment_lease: Some(Duration::from_secs(300)),
            ..Self::default()
        }
    }
}

pub(crate) struct Shared {
    pub(crate) state: Mutex<State>,
    pub(crate) mint: TokenMint,
    pub(crate) notify: Notify,
}

/// Applies a fault: immediate ones act now, counted ones wait for their events.
pub(crate) fn apply_fault(shared: &Shared, fault: Fault) {
    let mut st = shared.state.lock().expect("state");
    match fault {
        Fault::ExpireQueueTokens => {
            for s in st.sessions.values_mut() {
                s.min_generation = s.next_generation + 1;
                s.next_generation = s.min_generation;
            }
        }
        Fault::ExpireAdminTokens => st.admin_min_generation += 1,
        Fault::RevokeCredentials => {
            st.credentials_revoked = true;
            st.admin_min_generation += 1;
            for s in st.sessions.values_mut() {
                s.min_generation = s.next_generation + 1;
                s.next_generation = s.min_generation;
            }
        }
        Fault::RestoreCredentials => st.credentials_revoked = false,
        Fault::ChangeTenantUrl => st.change_tenant_pending = true,
        Fault::ExpireSessions => st.sessions.clear(),
        Fault::DeleteScaleSet { scale_set_id } => {
            let _ = st.delete_scale_set(scale_set_id, true);
        }
        Fault::PauseDelivery => st.set_delivery_paused(true),
        Fault::ResumeDelivery => st.set_delivery_paused(false),
        Fault::InjectJobMessages { scale_set_id, messages } => st.inject_events(scale_set_id, messages),
        Fault::Reassign { job } => {
            st.reassign(job);
        }
        Fault::PrematureCompletion { job } => {
            st.premature_completion(job);
        }
        Fault::PrimaryRateLimit { endpoint, status, for_ms } => {
            // GitHub reports the reset in whole epoch seconds; the limit ends exactly then.
            let end = std::time::SystemTime::now() + Duration::from_millis(for_ms);
            let secs = end.duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_secs_f64().ceil();
            st.primary_limits.push((
                endpoint,
                status,
                std::time::UNIX_EPOCH + Duration::from_secs(secs as u64),
            ));
        }
        counted => st.faults.add(counted),
    }
    drop(st);
    shared.notify.notify_waiters();
}

/// A running fake GitHub. Cheap to clone; the server stops when the last clone is dropped
/// (or on [`FakeGitHub::shutdown`]).
#[derive(Clone)]
pub struct FakeGitHub {
    shared: Arc<Shared>,
    addr: SocketAddr,
    cancel: CancellationToken,
    _stop_on_drop: Arc<DropGuard>,
}

impl std::fmt::Debug for FakeGitHub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FakeGitHub").field("addr", &self.addr).finish_non_exhaustive()
    }
}

impl FakeGitHub {
    /// Binds (loopback) and serves until dropped.
    pub async fn start(config: FakeGitHubConfig) -> std::io::Result<Self> {
        let listener = tokio::net::TcpListener::bind(config.bind).await?;
        let addr = listener.local_addr()?;
        let tick = config.tick.max(Duration::from_millis(1));
        let shared = Arc::new(Shared {
            state: Mutex::new(State::new(config, format!("http://{addr}"))),
            mint: TokenMint::new(),
            notify: Notify::new(),
        });
        let cancel = CancellationToken::new();
        let app = axum::Router::new().fallback(server::handle).with_state(shared.clone());
        let stop = cancel.clone();
        tokio::spawn(async move {
            let serve = axum::serve(listener, app).with_graceful_shutdown(stop.cancelled_owned());
            if let Err(e) = serve.await {
                tracing::error!(error = &e as &dyn std::error::Error, "fake GitHub server failed");
            }
        });
        let ticker_shared = Arc::downgrade(&shared);
        let stop = cancel.clone();
        tokio::spawn(async move {
            let mut interval = tokio::time::interval(tick);
            interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = interval.tick() => {}
                }
                let Some(shared) = ticker_shared.upgrade() else { return };
                shared.state.lock().expect("state").tick();
                shared.notify.notify_waiters();
            }
        });
        tracing::debug!(%addr, "fake GitHub listening");
        Ok(Self { shared, addr, _stop_on_drop: Arc::new(cancel.clone().drop_guard()), cancel })
    }

    /// Base URL, `http://127.0.0.1:PORT` (no trailing slash).
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The socket address served.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// A GitHub config URL for `scope` (`my-org`, `my-org/my-repo`, `enterprises/e`).
    pub fn config_url(&self, scope: &str) -> String {
        format!("{}/{}", self.url(), scope.trim_matches('/'))
    }

    /// The first accepted PAT.
    pub fn pat(&self) -> String {
        self.lock().cfg.pats.first().cloned().unwrap_or_default()
    }

    /// Creates a scale set server-side (as if another tool registered it); returns its id.
    ///
    /// # Panics
    /// If a scale set of that name already exists in the default group.
    pub fn create_scale_set(&self, name: &str, labels: &[&str]) -> i64 {
        let id = self
            .lock()
            .create_scale_set(name, 1, labels.iter().map(|l| (*l).to_owned()).collect(), true)
            .unwrap_or_else(|_| panic!("scale set {name} already exists"));
        self.shared.notify.notify_waiters();
        id
    }

    /// Enqueues a job; it is offered/assigned to the first matching scale set with room.
    pub fn enqueue_job(&self, spec: JobSpec) -> JobId {
        let id = self.lock().enqueue(spec);
        self.shared.notify.notify_waiters();
        id
    }

    /// Cancels a job (a running one's runner is told `removed`). False if it already ended.
    pub fn cancel_job(&self, id: JobId) -> bool {
        let done = self.lock().cancel(id);
        self.shared.notify.notify_waiters();
        done
    }

    /// Ends a running job now with `result`. False unless it is running.
    pub fn finish_job(&self, id: JobId, result: &str) -> bool {
        let done = self.lock().finish_job(id, result);
        self.shared.notify.notify_waiters();
        done
    }

    /// Changes the most job messages per message from now on (the service batches up to
    /// this many; a benchmark raises it to deliver a whole burst in one message).
    pub fn set_max_batch(&self, max_batch: usize) {
        self.lock().cfg.max_batch = max_batch;
    }

    /// From now on refuses fake runners of these versions (no leading `v`) as deprecated,
    /// as GitHub refuses outdated runners; an empty list accepts every version again.
    pub fn refuse_runner_versions<S: Into<String>>(&self, versions: impl IntoIterator<Item = S>) {
        self.lock().cfg.refused_runner_versions = versions.into_iter().map(Into::into).collect();
    }

    /// A consistent snapshot of everything.
    pub fn state(&self) -> FakeState {
        self.lock().snapshot()
    }

    /// Injects a fault.
    pub fn inject(&self, fault: Fault) {
        apply_fault(&self.shared, fault);
    }

    /// Drops every pending counted fault.
    pub fn clear_faults(&self) {
        self.lock().faults.clear();
    }

    /// What a fake runner polling with `credential` would be told (and the same effect:
    /// heartbeat, connect, take a job). `None` = unknown credential (HTTP 401).
    pub fn runner_poll(&self, credential: &str) -> Option<RunnerPoll> {
        let mut st = self.lock();
        st.count("runner_poll");
        let r = st.runner_poll(credential);
        drop(st);
        self.shared.notify.notify_waiters();
        r
    }

    /// [`FakeGitHub::runner_poll`] by runner name (the newest registration of that name).
    pub fn poll_runner_named(&self, name: &str) -> Option<RunnerPoll> {
        let cred =
            self.lock().runners.values().rev().find(|r| r.name == name).map(|r| r.credential.clone())?;
        self.runner_poll(&cred)
    }

    /// Moves the fake's wall clock forward (token `exp` checks), e.g. to expire tokens.
    pub fn advance_clock(&self, by: Duration) {
        self.lock().clock_offset += by;
        self.shared.notify.notify_waiters();
    }

    /// Polls the state until `pred` holds (every 20 ms); `None` after `timeout`.
    pub async fn wait_until(
        &self,
        timeout: Duration,
        pred: impl Fn(&FakeState) -> bool,
    ) -> Option<FakeState> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let s = self.state();
            if pred(&s) {
                return Some(s);
            }
            if tokio::time::Instant::now() >= deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Stops serving now (also happens when the last clone is dropped).
    pub fn shutdown(&self) {
        self.cancel.cancel();
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.shared.state.lock().expect("fake GitHub state")
    }
}
