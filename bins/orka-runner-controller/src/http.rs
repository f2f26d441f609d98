//! The HTTP endpoints: `/metrics` (only when metrics are enabled, and only that path),
//! `/healthz`, `/readyz` and `/status` (JSON, see `status`), served by axum on `METRICS_ADDR`.
//!
//! Owns routing and the server's lifetime (it stops when its cancellation token fires).
//! What the endpoints say is decided by `metrics` and `health`.

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context as _;
use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::config::HttpSettings;
use crate::metrics::{self, Metrics};
use crate::status::StatusBoard;
use scaleset_service::health::{Health, Report};

/// What the endpoints read: the metrics registry and the health state.
#[derive(Debug, Clone)]
pub struct Telemetry {
    /// Metrics registry and recording API.
    pub metrics: Arc<Metrics>,
    /// Liveness and readiness state.
    pub health: Health,
    /// What `/status` reports.
    pub status: StatusBoard,
}

impl Telemetry {
    /// Fresh metrics and health state.
    pub fn new() -> Self {
        Self { metrics: Arc::new(Metrics::new()), health: Health::new(), status: StatusBoard::default() }
    }
}

impl Default for Telemetry {
    fn default() -> Self {
        Self::new()
    }
}

/// The router: `/healthz`, `/readyz`, `/status`, and `/metrics` when `metrics_enabled`.
pub fn router(telemetry: Telemetry, metrics_enabled: bool) -> Router {
    let mut router = Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/status", get(status));
    if metrics_enabled {
        router = router.route("/metrics", get(scrape));
    }
    router.with_state(telemetry)
}

async fn scrape(State(telemetry): State<Telemetry>) -> Response {
    ([(header::CONTENT_TYPE, metrics::CONTENT_TYPE)], telemetry.metrics.encode()).into_response()
}

fn report_response(report: Report) -> Response {
    let status = if report.ok { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    (status, [(header::CONTENT_TYPE, "text/plain; charset=utf-8")], report.to_string()).into_response()
}

async fn healthz(State(telemetry): State<Telemetry>) -> Response {
    report_response(telemetry.health.liveness())
}

async fn readyz(State(telemetry): State<Telemetry>) -> Response {
    report_response(telemetry.health.readiness())
}

async fn status(State(telemetry): State<Telemetry>) -> Response {
    axum::Json(telemetry.status.snapshot_with_nodes(&telemetry.health).await).into_response()
}

/// Serves `router` on `listener` until `shutdown` fires.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    axum::serve(listener, router).with_graceful_shutdown(shutdown.cancelled_owned()).await
}

/// A running endpoint server.
#[derive(Debug)]
pub struct Server {
    /// The bound address (useful when the port was 0).
    pub addr: SocketAddr,
    /// The serving task; finishes after the shutdown token fires.
    pub task: JoinHandle<std::io::Result<()>>,
}

/// Binds `settings.addr` and serves in a task when the settings enable the server.
pub async fn spawn(
    settings: &HttpSettings,
    telemetry: Telemetry,
    shutdown: CancellationToken,
) -> anyhow::Result<Option<Server>> {
    if !settings.server_enabled() {
        return Ok(None);
    }
    let listener = TcpListener::bind(settings.addr)
        .await
        .with_context(|| format!("cannot listen on METRICS_ADDR {}", settings.addr))?;
    let addr = listener.local_addr()?;
    let task = tokio::spawn(serve(listener, router(telemetry, settings.metrics_enabled), shutdown));
    tracing::info!(%addr, metrics = settings.metrics_enabled, "serving /healthz, /readyz and /status");
    Ok(Some(Server { addr, task }))
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use github_scaleset::Statistics;
    use http_body_util::{BodyExt, Empty};
    use hyper::body::Bytes;
    use hyper_util::client::legacy::Client;
    use hyper_util::rt::TokioExecutor;

    use super::*;
    use crate::metrics::Stage;

    async fn get(addr: SocketAddr, path: &str) -> (u16, String) {
        let client = Client::builder(TokioExecutor::new()).build_http::<Empty<Bytes>>();
        let uri = format!("http://{addr}{path}").parse().unwrap();
        let response = tokio::time::timeout(Duration::from_secs(10), client.get(uri)).await.unwrap().unwrap();
        let status = response.status().as_u16();
        let body = response.into_body().collect().await.unwrap().to_bytes();
        (status, String::from_utf8(body.to_vec()).unwrap())
    }

    async fn start(telemetry: Telemetry, metrics_enabled: bool) -> (SocketAddr, CancellationToken, Server) {
        let settings = HttpSettings {
            metrics_enabled,
            health_enabled: true,
            addr: "127.0.0.1:0".parse().unwrap(),
            metrics_poll_interval: Duration::from_secs(30),
        };
        let shutdown = CancellationToken::new();
        let server = spawn(&settings, telemetry, shutdown.clone()).await.unwrap().unwrap();
        (server.addr, shutdown, server)
    }

    #[tokio::test]
    async fn metrics_are_scraped_over_loopback() {
        let telemetry = Telemetry::new();
        let (addr, shutdown, server) = start(telemetry.clone(), true).await;
        let stats = Statistics {
            total_assigned_jobs: 2,
            total_running_jobs: 2,
            total_busy_runners: 2,
            ..Default::default()
        };
        telemetry.metrics.record_statistics("mac", &stats);
        telemetry.metrics.observe_stage("mac", Stage::VmDeployed, Duration::from_secs(95));
        let (status, body) = get(addr, "/metrics").await;
        assert_eq!(status, 200);
        assert!(body.contains("runner_scale_set_total_assigned_jobs{runner_name=\"mac\"} 2"), "{body}");
        assert!(body.contains("runner_scale_set_total_idle_runners{runner_name=\"mac\"} 0"), "{body}");
        assert!(
            body.contains("orka_runner_controller_stage_duration_seconds_count{scale_set=\"mac\",stage=\"vm_deployed\"} 1"),
            "{body}"
        );
        assert!(body.ends_with("# EOF\n"));
        // Only /metrics serves metrics (the Go integration answered on every path).
        let (status, body) = get(addr, "/anything").await;
        assert_eq!(status, 404);
        assert!(!body.contains("runner_scale_set"));
        shutdown.cancel();
        tokio::time::timeout(Duration::from_secs(10), server.task).await.unwrap().unwrap().unwrap();
    }

    #[tokio::test]
    async fn metrics_off_means_no_metrics_endpoint() {
        let (addr, shutdown, _server) = start(Telemetry::new(), false).await;
        assert_eq!(get(addr, "/metrics").await.0, 404);
        assert_eq!(get(addr, "/healthz").await.0, 200);
        shutdown.cancel();
    }

    #[tokio::test]
    async fn readyz_transitions_from_standby_to_active() {
        let telemetry = Telemetry::new();
        let (addr, shutdown, _server) = start(telemetry.clone(), true).await;
        let (status, body) = get(addr, "/readyz").await;
        assert_eq!((status, body.as_str()), (503, "not ok\nno scale set started yet\n"));

        let mac = telemetry.health.scale_set("mac");
        mac.retrying("creating the message session failed: GitHub returned 503");
        let (status, body) = get(addr, "/readyz").await;
        assert_eq!(status, 503, "a scale set that cannot get its session is not ready");
        assert!(body.contains("mac: none, retrying: creating the message session failed"), "{body}");

        mac.standby();
        let (status, body) = get(addr, "/readyz").await;
        assert_eq!((status, body.as_str()), (200, "ok\nmac: standby, another process holds the session\n"));

        mac.session_acquired();
        let (status, body) = get(addr, "/readyz").await;
        assert_eq!(status, 503, "not ready before the first reconciliation: {body}");

        mac.reconciled();
        let (status, body) = get(addr, "/readyz").await;
        assert_eq!((status, body.as_str()), (200, "ok\nmac: active, serving\n"));
        shutdown.cancel();
    }

    #[tokio::test]
    async fn status_is_json_that_the_status_client_reads() {
        let telemetry = Telemetry::new();
        let (addr, shutdown, _server) = start(telemetry.clone(), false).await;
        telemetry.status.register("mac", 0, 2);
        telemetry.health.scale_set("mac").standby();
        let (code, body) = get(addr, "/status").await;
        assert_eq!(code, 200, "served without metrics too: {body}");
        assert!(body.contains(r#""reason":"session held elsewhere""#), "{body}");
        let fetched = crate::status::client::fetch(&addr.to_string()).await.unwrap();
        assert_eq!(fetched.report.scale_sets[0].role, "standby");
        shutdown.cancel();
    }

    #[tokio::test]
    async fn the_status_client_says_when_nothing_answers() {
        let closed = TcpListener::bind("127.0.0.1:0").await.unwrap().local_addr().unwrap();
        let err = crate::status::client::fetch(&closed.to_string()).await.unwrap_err();
        assert!(format!("{err:#}").contains("cannot reach a controller"), "{err:#}");
    }

    #[tokio::test]
    async fn healthz_reports_a_stopped_loop() {
        let telemetry = Telemetry::new();
        let (addr, shutdown, _server) = start(telemetry.clone(), false).await;
        let beat = telemetry.health.heartbeat("message-loop mac", Duration::from_secs(600));
        beat.beat();
        let (status, body) = get(addr, "/healthz").await;
        assert_eq!((status, body.as_str()), (200, "ok\nmessage-loop mac: turning\n"));
        drop(beat);
        let (status, body) = get(addr, "/healthz").await;
        assert_eq!((status, body.as_str()), (503, "not ok\nmessage-loop mac: stopped\n"));
        shutdown.cancel();
    }

    #[tokio::test]
    async fn a_busy_port_is_a_clear_error() {
        let taken = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let settings = HttpSettings {
            metrics_enabled: true,
            health_enabled: false,
            addr: taken.local_addr().unwrap(),
            metrics_poll_interval: Duration::from_secs(30),
        };
        let err = spawn(&settings, Telemetry::new(), CancellationToken::new()).await.unwrap_err();
        assert!(format!("{err:#}").contains("METRICS_ADDR"), "{err:#}");
    }
}
