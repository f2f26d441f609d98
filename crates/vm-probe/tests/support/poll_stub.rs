//! A tiny stand-in for the fake GitHub's side of the fake-runner contract
//! (`POST /_fake/runner/poll`), so provisioning can be tested end to end here.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use base64::Engine as _;

/// What a registered runner's job looks like: idle for `idle_polls`, running for
/// `running_polls`, then done (or `removed` when `removed` is set).
#[derive(Clone, Copy, Debug)]
pub struct JobPlan {
    pub idle_polls: u32,
    pub running_polls: u32,
    pub removed: bool,
}

#[derive(Default)]
struct Runners {
    plans: HashMap<String, (JobPlan, u32)>,
    rejected: u32,
}

/// The stub server; stops with the test's runtime.
pub struct PollStub {
    pub addr: SocketAddr,
    runners: Arc<Mutex<Runners>>,
}

impl PollStub {
    pub async fn start() -> PollStub {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0)).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let runners = Arc::new(Mutex::new(Runners::default()));
        let app = Router::new().route("/_fake/runner/poll", post(poll)).with_state(Arc::clone(&runners));
        tokio::spawn(async move { axum::serve(listener, app).await });
        PollStub { addr, runners }
    }

    /// Registers a runner and returns its JIT config, shaped as the contract says.
    pub fn register(&self, runner_name: &str, credential: &str, plan: JobPlan) -> String {
        self.runners.lock().unwrap().plans.insert(credential.to_owned(), (plan, 0));
        let json = format!(
            r#"{{"server_url":"http://{}","runner_id":42,"runner_name":"{runner_name}","credential":"{credential}"}}"#,
            self.addr
        );
        base64::engine::general_purpose::STANDARD.encode(json)
    }

    /// How many polls the runner with `credential` made.
    pub fn polls(&self, credential: &str) -> u32 {
        self.runners.lock().unwrap().plans.get(credential).map_or(0, |(_, n)| *n)
    }

    /// How many polls were rejected with 401.
    pub fn rejected(&self) -> u32 {
        self.runners.lock().unwrap().rejected
    }
}

async fn poll(State(runners): State<Arc<Mutex<Runners>>>, headers: HeaderMap) -> Response {
    let credential = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or_default()
        .to_owned();
    let mut runners = runners.lock().unwrap();
    let Some((plan, polls)) = runners.plans.get_mut(&credential) else {
        runners.rejected += 1;
        return (StatusCode::UNAUTHORIZED, "unknown credential").into_response();
    };
    *polls += 1;
    let state = if *polls <= plan.idle_polls {
        "idle"
    } else if *polls <= plan.idle_polls + plan.running_polls {
        "running"
    } else if plan.removed {
        "removed"
    } else {
        "done"
    };
    axum::Json(serde_json::json!({ "state": state })).into_response()
}
