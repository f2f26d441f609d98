//! The HTTP endpoints: `/metrics` (only when metrics are enabled, and only that path),
//! `/healthz`, `/readyz` and `/status` (JSON, see `status`), served by axum on `METRICS_ADDR`.
//!
//! Owns routing, connection handling and the server's lifetime (it stops when its
//! cancellation token fires). Connections are served by hyper directly rather than
//! `axum::serve`, which has no header-read timeout and no connection cap.
//! What the endpoints say is decided by `metrics` and `health`.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

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

/// What keeps the endpoint server answering when clients misbehave: it binds all
/// interfaces by default, so anyone who can reach the port can open connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionLimits {
    /// A connection must deliver a request's headers within this time, the first request
    /// and every later one on a kept-alive connection; otherwise it is closed. This is
    /// what closes idle connections.
    pub header_read_timeout: Duration,
    /// Most connections open at once. At the cap, the oldest connection is closed (after
    /// its in-flight request, if any) to make room, so a flood of idle connections cannot
    /// lock out a liveness probe.
    pub max_connections: usize,
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        Self { header_read_timeout: Duration::from_secs(10), max_connections: 256 }
    }
}

/// Serves `router` on `listener` until `shutdown` fires, within `limits`.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: ConnectionLimits,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let connections = TaskTracker::new();
    // Open connections, oldest first: each entry's token asks that connection to close.
    let mut open: VecDeque<CancellationToken> = VecDeque::new();
    loop {
        let (stream, _peer) = tokio::select! {
            () = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // EMFILE and friends: back off briefly instead of spinning.
                    tracing::warn!(error = %e, "endpoint server cannot accept a connection");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        open.retain(|token| !token.is_cancelled());
        while open.len() >= limits.max_connections.max(1) {
            if let Some(oldest) = open.pop_front() {
                oldest.cancel();
            }
        }
        let close = shutdown.child_token();
        open.push_back(close.clone());
        connections.spawn(serve_connection(stream, router.clone(), limits, close));
    }
    for token in open {
        token.cancel();
    }
    connections.close();
    connections.wait().await;
    Ok(())
}

/// One HTTP/1 connection, closed when `close` fires (gracefully: an in-flight request
/// finishes) or when a request's headers are late. Cancels `close` when it ends, which
/// marks its slot free.
async fn serve_connection(
    stream: TcpStream,
    router: Router,
    limits: ConnectionLimits,
    close: CancellationToken,
) {
    let _free_slot_on_exit = close.clone().drop_guard();
    let connection = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .serve_connection(TokioIo::new(stream), TowerToHyperService::new(router));
    let mut connection = std::pin::pin!(connection);
    let result = tokio::select! {
        result = connection.as_mut() => result,
        () = close.cancelled() => {
            connection.as_mut().graceful_shutdown();
            connection.await
        }
    };
    if let Err(e) = result {
        tracing::debug!(error = %e, "endpoint connection ended with an error");
    }
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
    let router = router(telemetry, settings.metrics_enabled);
    let task = tokio::spawn(serve(listener, router, ConnectionLimits::default(), shutdown));
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

    /// Whether the server closes `stream` within `within` (any bytes it sends first, such
    /// as a 408 response, are read and ignored).
    async fn closed_by_server(stream: &mut TcpStream, within: Duration) -> bool {
        use tokio::io::AsyncReadExt as _;
        let mut buffer = [0u8; 1024];
        let read_to_end = async {
            loop {
                match stream.read(&mut buffer).await {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {}
                }
            }
        };
        tokio::time::timeout(within, read_to_end).await.is_ok()
    }

    #[tokio::test]
    async fn a_flood_of_idle_connections_cannot_starve_healthz() {
        let (addr, shutdown, _server) = start(Telemetry::new(), false).await;
        let cap = ConnectionLimits::default().max_connections;
        // More idle connections than the cap, bounded, on loopback.
        let mut idle = Vec::new();
        for _ in 0..cap + 50 {
            idle.push(TcpStream::connect(addr).await.unwrap());
        }
        let (status, body) = get(addr, "/healthz").await;
        assert_eq!((status, body.as_str()), (200, "ok\n"));
        // The oldest ones were closed to make room, long before any header timeout.
        let mut closed = 0;
        for stream in idle.iter_mut().take(50) {
            if closed_by_server(stream, Duration::from_secs(5)).await {
                closed += 1;
            }
        }
        assert_eq!(closed, 50, "the oldest idle connections are closed at the cap");
        shutdown.cancel();
    }

    async fn start_with(
        limits: ConnectionLimits,
    ) -> (SocketAddr, CancellationToken, JoinHandle<std::io::Result<()>>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(serve(listener, router(Telemetry::new(), false), limits, shutdown.clone()));
        (addr, shutdown, task)
    }

    #[tokio::test]
    async fn idle_and_slow_connections_are_closed() {
        use tokio::io::AsyncWriteExt as _;
        let limits = ConnectionLimits { header_read_timeout: Duration::from_millis(300), max_connections: 8 };
        let (addr, shutdown, task) = start_with(limits).await;
        // Never sends a byte.
        let mut silent = TcpStream::connect(addr).await.unwrap();
        assert!(
            closed_by_server(&mut silent, Duration::from_secs(10)).await,
            "a silent connection is closed"
        );
        // Sends half a header and stalls.
        let mut slow = TcpStream::connect(addr).await.unwrap();
        slow.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n").await.unwrap();
        assert!(closed_by_server(&mut slow, Duration::from_secs(10)).await, "a stalled header is cut off");
        // One request, then idle on a kept-alive connection.
        let mut kept = TcpStream::connect(addr).await.unwrap();
        kept.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
        assert!(
            closed_by_server(&mut kept, Duration::from_secs(10)).await,
            "an idle kept-alive connection is closed"
        );
        // And the server still answers, then stops on request.
        assert_eq!(get(addr, "/healthz").await.0, 200);
        shutdown.cancel();
        tokio::time::timeout(Duration::from_secs(10), task).await.unwrap().unwrap().unwrap();
    }

    #[tokio::test]
    async fn shutdown_closes_open_idle_connections() {
        let limits = ConnectionLimits { header_read_timeout: Duration::from_secs(600), max_connections: 8 };
        let (addr, shutdown, task) = start_with(limits).await;
        let mut idle = TcpStream::connect(addr).await.unwrap();
        assert_eq!(get(addr, "/healthz").await.0, 200);
        shutdown.cancel();
        tokio::time::timeout(Duration::from_secs(10), task).await.unwrap().unwrap().unwrap();
        assert!(closed_by_server(&mut idle, Duration::from_secs(5)).await);
    }
}
