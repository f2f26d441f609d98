//! The fake runner tarball and the loopback HTTP server that serves it, laid out like
//! GitHub's release downloads so it can stand in for `GITHUB_RUNNER_DOWNLOAD_URL`.
//!
//! The tarball holds a `run.sh` (POSIX sh + curl) implementing the runner side of the
//! fake-runner contract, and a `bin/Runner.Listener` answering `--version`, as the real
//! runner does. It owns nothing of the fake GitHub: run.sh only knows the contract's URL.
//!
//! The same server answers GitHub's "latest release" endpoint of actions/runner
//! (`/repos/actions/runner/releases/latest`) with the version set by
//! [`FakeRunnerDownloads::set_latest_release`], so a controller that resolves the latest
//! runner release can be pointed here.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use tokio_util::sync::CancellationToken;

/// The fake run.sh (version placeholder `__VERSION__`).
pub const RUN_SH: &str = include_str!("run.sh");

/// Builds the runner tarball `actions-runner-osx-<arch>-<version>.tar.gz` (gzip'd tar
/// with `run.sh`, `config.sh`, `bin/Runner.Listener`).
pub fn runner_tarball(version: &str) -> std::io::Result<Vec<u8>> {
    let encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    let mut tar = tar::Builder::new(encoder);
    let run_sh = RUN_SH.replace("__VERSION__", version);
    let listener = format!(
        "#!/bin/sh\n# Fake Runner.Listener (testkit): answers --version like the real one.\n\
         if [ \"${{1:-}}\" = --version ]; then echo {version}; exit 0; fi\n\
         echo 'fake runner: use run.sh' >&2\nexit 2\n"
    );
    let config_sh = "#!/bin/sh\necho 'fake runner: JIT runners need no configuration' >&2\nexit 0\n";
    let mut dir = tar::Header::new_gnu();
    dir.set_entry_type(tar::EntryType::Directory);
    dir.set_mode(0o755);
    dir.set_size(0);
    dir.set_mtime(1_700_000_000);
    tar.append_data(&mut dir, "bin/", std::io::empty())?;
    for (path, body) in
        [("run.sh", run_sh.as_str()), ("config.sh", config_sh), ("bin/Runner.Listener", &listener)]
    {
        let mut header = tar::Header::new_gnu();
        header.set_mode(0o755);
        header.set_size(body.len() as u64);
        header.set_mtime(1_700_000_000);
        tar.append_data(&mut header, path, body.as_bytes())?;
    }
    tar.into_inner()?.finish()
}

#[derive(Default)]
struct Shared {
    downloads: AtomicU64,
    fail_next: AtomicU32,
    delay_next: AtomicU32,
    delay_ms: AtomicU64,
    cache: Mutex<HashMap<String, Arc<Vec<u8>>>>,
    latest: Mutex<Option<String>>,
    latest_lookups: AtomicU64,
}

/// A loopback HTTP server serving fake runner tarballs for any version and arch at
/// `/actions/runner/releases/download/v<version>/actions-runner-osx-<arch>-<version>.tar.gz`.
/// Stops when dropped.
pub struct FakeRunnerDownloads {
    addr: SocketAddr,
    shared: Arc<Shared>,
    stop: CancellationToken,
}

impl FakeRunnerDownloads {
    /// Starts the server on `127.0.0.1` with an OS-assigned port.
    pub async fn start() -> std::io::Result<Self> {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0)).await?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared::default());
        let stop = CancellationToken::new();
        let app = Router::new()
            .route("/actions/runner/releases/download/{tag}/{file}", get(download))
            .route("/repos/actions/runner/releases/latest", get(latest_release))
            .with_state(Arc::clone(&shared));
        let shutdown = stop.clone().cancelled_owned();
        tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, app).with_graceful_shutdown(shutdown).await {
                tracing::warn!(error = &e as &dyn std::error::Error, "fake runner download server failed");
            }
        });
        Ok(FakeRunnerDownloads { addr, shared, stop })
    }

    /// The `GITHUB_RUNNER_DOWNLOAD_URL` template (`{version}`, `{arch}`) pointing here.
    pub fn url_template(&self) -> String {
        format!(
            "http://{}/actions/runner/releases/download/v{{version}}/actions-runner-osx-{{arch}}-{{version}}.tar.gz",
            self.addr
        )
    }

    /// The URL of the "latest release" endpoint served here (a `GITHUB_RUNNER_RELEASE_URL`).
    pub fn latest_release_url(&self) -> String {
        format!("http://{}/repos/actions/runner/releases/latest", self.addr)
    }

    /// Makes `version` (no leading `v`) the latest release; `None` answers 404, as for a
    /// repository without releases.
    pub fn set_latest_release(&self, version: Option<&str>) {
        *self.shared.latest.lock().unwrap_or_else(|p| p.into_inner()) = version.map(str::to_owned);
    }

    /// How many times the latest release was looked up.
    pub fn latest_release_lookups(&self) -> u64 {
        self.shared.latest_lookups.load(Ordering::SeqCst)
    }

    /// The server's address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// How many tarballs were served.
    pub fn downloads(&self) -> u64 {
        self.shared.downloads.load(Ordering::SeqCst)
    }

    /// Holds the next `n` downloads for `delay` before serving them (a slow mirror; lets a
    /// test catch a VM in the middle of its setup).
    pub fn delay_next(&self, n: u32, delay: std::time::Duration) {
        self.shared.delay_ms.store(u64::try_from(delay.as_millis()).unwrap_or(u64::MAX), Ordering::SeqCst);
        self.shared.delay_next.store(n, Ordering::SeqCst);
    }

    /// Answers the next `n` downloads with 503 (exercises the client's retries).
    pub fn fail_next(&self, n: u32) {
        self.shared.fail_next.store(n, Ordering::SeqCst);
    }
}

impl Drop for FakeRunnerDownloads {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// GitHub's answer for the latest release, reduced to what clients read (`tag_name`).
async fn latest_release(State(shared): State<Arc<Shared>>) -> Response {
    shared.latest_lookups.fetch_add(1, Ordering::SeqCst);
    let latest = shared.latest.lock().unwrap_or_else(|p| p.into_inner()).clone();
    match latest {
        Some(version) => axum::Json(serde_json::json!({
            "tag_name": format!("v{version}"),
            "name": format!("v{version}"),
            "draft": false,
            "prerelease": false,
        }))
        .into_response(),
        None => {
            (StatusCode::NOT_FOUND, axum::Json(serde_json::json!({"message": "Not Found"}))).into_response()
        }
    }
}

async fn download(State(shared): State<Arc<Shared>>, Path((tag, file)): Path<(String, String)>) -> Response {
    let parsed = file
        .strip_prefix("actions-runner-osx-")
        .and_then(|rest| rest.strip_suffix(".tar.gz"))
        .and_then(|rest| rest.split_once('-'));
    let Some((arch, version)) = parsed else {
        return (StatusCode::NOT_FOUND, "no such asset").into_response();
    };
    if !matches!(arch, "x64" | "arm64") || tag != format!("v{version}") {
        return (StatusCode::NOT_FOUND, "no such asset").into_response();
    }
    let delayed = shared.delay_next.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1));
    if delayed.is_ok() {
        let delay = std::time::Duration::from_millis(shared.delay_ms.load(Ordering::SeqCst));
        tokio::time::sleep(delay).await;
    }
    let failing = shared.fail_next.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1));
    if failing.is_ok() {
        return (StatusCode::SERVICE_UNAVAILABLE, "try again").into_response();
    }
    let cached = shared.cache.lock().unwrap_or_else(|p| p.into_inner()).get(version).cloned();
    let body = match cached {
        Some(body) => body,
        None => match runner_tarball(version) {
            Ok(body) => {
                let body = Arc::new(body);
                shared
                    .cache
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .insert(version.to_owned(), Arc::clone(&body));
                body
            }
            Err(e) => return (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
        },
    };
    shared.downloads.fetch_add(1, Ordering::SeqCst);
    ([(header::CONTENT_TYPE, "application/gzip")], body.as_ref().clone()).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tarball_holds_an_executable_run_sh_with_the_version() {
        let bytes = runner_tarball("2.999.0").unwrap();
        let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(&bytes[..]));
        let mut names = Vec::new();
        for entry in archive.entries().unwrap() {
            let mut entry = entry.unwrap();
            let path = entry.path().unwrap().to_string_lossy().into_owned();
            if path == "run.sh" {
                assert_eq!(entry.header().mode().unwrap() & 0o111, 0o111);
                let mut text = String::new();
                std::io::Read::read_to_string(&mut entry, &mut text).unwrap();
                assert!(text.contains("'2.999.0'"));
                assert!(text.contains("/_fake/runner/poll"));
            }
            names.push(path);
        }
        assert!(names.contains(&"bin/Runner.Listener".to_owned()));
    }

    #[tokio::test]
    async fn serves_github_shaped_urls_with_injected_failures() {
        let server = FakeRunnerDownloads::start().await.unwrap();
        let url = server.url_template().replace("{version}", "2.1.0").replace("{arch}", "arm64");
        let get = |url: String| async move {
            let out = tokio::process::Command::new("curl")
                .args(["-s", "-o", "/dev/null", "-w", "%{http_code}", &url])
                .output()
                .await
                .unwrap();
            String::from_utf8(out.stdout).unwrap()
        };
        assert_eq!(get(server.latest_release_url()).await, "404", "no release yet");
        server.set_latest_release(Some("2.331.0"));
        assert_eq!(get(server.latest_release_url()).await, "200");
        assert_eq!(server.latest_release_lookups(), 2);
        server.fail_next(1);
        assert_eq!(get(url.clone()).await, "503");
        assert_eq!(get(url.clone()).await, "200");
        assert_eq!(get(url.replace("arm64", "ppc")).await, "404");
        assert_eq!(server.downloads(), 1);
    }
}
