//! The `status` subcommand's side: fetch `/status` from a running controller.

use std::time::Duration;

use anyhow::Context as _;
use http_body_util::{BodyExt, Empty, Limited};
use hyper::body::Bytes;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

use super::StatusReport;

/// The longest the whole fetch may take.
const FETCH_TIMEOUT: Duration = Duration::from_secs(10);
/// The largest answer read (a status of many scale sets and VMs fits easily).
const MAX_BODY: usize = 8 * 1024 * 1024;

/// `/status` as sent, and as read.
#[derive(Debug)]
pub struct Fetched {
    /// The JSON text.
    pub json: String,
    /// The parsed report.
    pub report: StatusReport,
}

/// GETs `http://{addr}/status` and parses it.
pub async fn fetch(addr: &str) -> anyhow::Result<Fetched> {
    let uri: hyper::Uri =
        format!("http://{addr}/status").parse().with_context(|| format!("bad address {addr:?}"))?;
    let client = Client::builder(TokioExecutor::new()).build_http::<Empty<Bytes>>();
    let work = async {
        let response =
            client.get(uri).await.with_context(|| format!("cannot reach a controller at {addr}"))?;
        let status = response.status();
        let body = Limited::new(response.into_body(), MAX_BODY)
            .collect()
            .await
            .map_err(|e| anyhow::anyhow!("reading the answer from {addr}: {e}"))?
            .to_bytes();
        anyhow::ensure!(status.is_success(), "{addr} answered /status with HTTP {status}");
        let json = String::from_utf8(body.to_vec()).context("the answer is not UTF-8")?;
        let report = serde_json::from_str(&json).context("the answer is not a controller's status")?;
        Ok(Fetched { json, report })
    };
    tokio::time::timeout(FETCH_TIMEOUT, work)
        .await
        .with_context(|| format!("no answer from {addr} within {FETCH_TIMEOUT:?}"))?
}
