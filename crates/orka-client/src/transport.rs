//! HTTP transport: a hyper client over rustls (aws-lc-rs), the bearer token, timeouts,
//! back-pressure (a 429 or 503 with `Retry-After` is sent again once the time asked for
//! has passed, a bounded number of times: the server said it did not act on it), and the
//! mapping of non-2xx responses to [`OrkaError`].
//!
//! It knows URLs, headers and status codes; it does not know Orka's resources or the
//! deploy algorithm. The token is only ever placed in a sensitive header and scrubbed
//! from anything the server echoes back.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE, RETRY_AFTER};
use http::{HeaderMap, HeaderValue, Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use secrecy::{ExposeSecret, SecretString};

use crate::{OrkaConfig, OrkaError, wire};

/// Largest response body read (a list of thousands of VMs fits easily).
const MAX_BODY: usize = 16 * 1024 * 1024;

/// A complete response.
#[derive(Debug)]
pub(crate) struct Response {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

/// The HTTP layer of the client.
pub(crate) struct Transport {
    client: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
    base_url: String,
    token: SecretString,
    auth_header: HeaderValue,
    max_retry_after: Duration,
    throttle_resends: u32,
}

#[derive(Debug, thiserror::Error)]
#[error("no response within {0:?}")]
pub(crate) struct TimedOut(pub Duration);

impl Transport {
    pub fn new(config: &OrkaConfig, base_url: String) -> Result<Self, OrkaError> {
        let tls = tls_config(base_url.starts_with("https://"), config.extra_ca.as_deref())?;
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_nodelay(true);
        http.set_connect_timeout(Some(config.connect_timeout));
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .wrap_connector(http);
        let client =
            Client::builder(TokioExecutor::new()).pool_idle_timeout(Duration::from_secs(30)).build(https);
        let mut auth_header =
            HeaderValue::from_str(&format!("Bearer {}", config.token.expose_secret().trim())).map_err(
                |_| OrkaError::Config("the Orka token contains characters not allowed in a header".into()),
            )?;
        auth_header.set_sensitive(true);
        if config.token.expose_secret().trim().is_empty() {
            return Err(OrkaError::Config("the Orka token is empty".into()));
        }
        Ok(Self {
            client,
            base_url,
            token: config.token.clone(),
            auth_header,
            max_retry_after: config.max_retry_after,
            throttle_resends: config.throttle_resends,
        })
    }

    /// Sends one request, again after a throttling answer whose `Retry-After` we honour
    /// (see [`throttled_for`]). `timeout` bounds each exchange including the body; `None`
    /// leaves bounding to the caller (deploy has its own deadline).
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
        authenticated: bool,
        timeout: Option<Duration>,
        context: &str,
    ) -> Result<Response, OrkaError> {
        let mut resends = 0;
        loop {
            let response =
                self.send_once(method.clone(), path, body.clone(), authenticated, timeout, context).await?;
            let wait = throttled_for(&response, self.max_retry_after);
            match wait {
                Some(wait) if resends < self.throttle_resends => {
                    resends += 1;
                    tracing::info!(
                        %method, path, status = response.status.as_u16(), ?wait, resends,
                        "Orka asked us to wait (Retry-After); sending again after it"
                    );
                    tokio::time::sleep(wait).await;
                }
                _ => return Ok(response),
            }
        }
    }

    async fn send_once(
        &self,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
        authenticated: bool,
        timeout: Option<Duration>,
        context: &str,
    ) -> Result<Response, OrkaError> {
        let uri = format!("{}{}", self.base_url, path);
        let mut builder =
            Request::builder().method(method.clone()).uri(&uri).header(ACCEPT, "application/json");
        if authenticated {
            builder = builder.header(AUTHORIZATION, self.auth_header.clone());
        }
        let request = match body {
            Some(bytes) => {
                builder.header(CONTENT_TYPE, "application/json; charset=utf-8").body(Full::from(bytes))
            }
            None => builder.body(Full::default()),
        }
        .map_err(|e| OrkaError::Config(format!("cannot build request to {uri}: {e}")))?;

        let exchange = async {
            let response = self.client.request(request).await.map_err(|e| transport(context, e))?;
            let (parts, body) = response.into_parts();
            let body = http_body_util::Limited::new(body, MAX_BODY)
                .collect()
                .await
                .map_err(|e| OrkaError::Transport { context: context.to_owned(), source: e })?
                .to_bytes();
            Ok(Response { status: parts.status, headers: parts.headers, body })
        };
        let result = match timeout {
            Some(limit) => tokio::time::timeout(limit, exchange)
                .await
                .unwrap_or_else(|_| Err(transport(context, TimedOut(limit)))),
            None => exchange.await,
        };
        match &result {
            Ok(r) => tracing::debug!(%method, path, status = r.status.as_u16(), "orka request"),
            Err(e) => {
                tracing::debug!(%method, path, error = e as &dyn std::error::Error, "orka request failed")
            }
        }
        result
    }

    /// The typed error for a non-2xx response; `what` names the resource for 404s.
    pub fn error_for(&self, response: &Response, what: &str) -> OrkaError {
        let message = self.scrub(wire::error_message(&response.body));
        let status = response.status.as_u16();
        match status {
            401 => OrkaError::Unauthorized { message: or_reason(message, response.status) },
            403 => OrkaError::Forbidden { message: or_reason(message, response.status) },
            404 => OrkaError::NotFound {
                what: if message.is_empty() { what.to_owned() } else { format!("{what}: {message}") },
            },
            429 => OrkaError::RateLimited { retry_after: retry_after(&response.headers) },
            400 | 409 | 422 => OrkaError::Invalid { status, message: or_reason(message, response.status) },
            _ => OrkaError::Server { status, message: or_reason(message, response.status) },
        }
    }

    /// Removes the token from text the server sent back (some proxies echo headers).
    pub fn scrub(&self, text: String) -> String {
        let token = self.token.expose_secret().trim();
        if token.len() >= 4 && text.contains(token) { text.replace(token, "[REDACTED]") } else { text }
    }
}

fn or_reason(message: String, status: StatusCode) -> String {
    if message.is_empty() { status.canonical_reason().unwrap_or("no message").to_owned() } else { message }
}

fn transport(context: &str, e: impl std::error::Error + Send + Sync + 'static) -> OrkaError {
    OrkaError::Transport { context: context.to_owned(), source: Box::new(e) }
}

/// How long to wait before sending a throttled request again: a 429 or 503 whose
/// `Retry-After` asks for at most `limit`. `None` for anything else (no header, a longer
/// wait, another status): that answer goes to the caller.
fn throttled_for(response: &Response, limit: Duration) -> Option<Duration> {
    if !matches!(response.status, StatusCode::TOO_MANY_REQUESTS | StatusCode::SERVICE_UNAVAILABLE) {
        return None;
    }
    retry_after(&response.headers).filter(|wait| *wait <= limit)
}

/// `Retry-After` in seconds (HTTP dates are rare at ingresses and ignored).
fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let raw = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    raw.parse::<u64>().ok().map(Duration::from_secs)
}

fn tls_config(https: bool, extra_ca: Option<&[u8]>) -> Result<rustls::ClientConfig, OrkaError> {
    let mut roots = rustls::RootCertStore::empty();
    if https {
        // Plain-http clusters (the default Orka endpoints) never need the system roots.
        for cert in rustls_native_certs::load_native_certs().certs {
            let _ = roots.add(cert);
        }
    }
    if let Some(pem) = extra_ca {
        let mut added = 0;
        for cert in rustls_pemfile::certs(&mut &pem[..]) {
            let cert =
                cert.map_err(|e| OrkaError::Config(format!("extra CA bundle is not valid PEM: {e}")))?;
            roots.add(cert).map_err(|e| OrkaError::Config(format!("extra CA certificate rejected: {e}")))?;
            added += 1;
        }
        if added == 0 {
            return Err(OrkaError::Config("extra CA bundle contains no PEM certificate".into()));
        }
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| OrkaError::Config(format!("TLS setup failed: {e}")))?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

/// Percent-encodes one path segment (VM names are already safe; this guards odd input).
pub(crate) fn segment(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len());
    for b in raw.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn response(status: u16, retry_after: Option<&'static str>) -> Response {
        let mut headers = HeaderMap::new();
        if let Some(value) = retry_after {
            headers.insert(RETRY_AFTER, HeaderValue::from_static(value));
        }
        Response { status: StatusCode::from_u16(status).unwrap(), headers, body: Bytes::new() }
    }

    #[test]
    fn only_429_and_503_with_a_short_enough_retry_after_are_sent_again() {
        let limit = Duration::from_secs(60);
        assert_eq!(throttled_for(&response(429, Some("2")), limit), Some(Duration::from_secs(2)));
        assert_eq!(throttled_for(&response(503, Some(" 0 ")), limit), Some(Duration::ZERO));
        assert_eq!(throttled_for(&response(503, Some("60")), limit), Some(limit));
        assert_eq!(throttled_for(&response(503, Some("61")), limit), None, "longer than we wait");
        assert_eq!(throttled_for(&response(429, None), limit), None, "no header: the caller's backoff");
        assert_eq!(throttled_for(&response(503, None), limit), None);
        assert_eq!(throttled_for(&response(500, Some("1")), limit), None, "500 is not throttling");
        assert_eq!(throttled_for(&response(502, Some("1")), limit), None);
        let date = response(429, Some("Wed, 21 Oct 2026 07:28:00 GMT"));
        assert_eq!(throttled_for(&date, limit), None, "HTTP dates are not honoured");
        assert_eq!(throttled_for(&response(200, Some("1")), limit), None);
    }

    #[test]
    fn path_segments_are_encoded() {
        assert_eq!(segment("mac-x7k2p"), "mac-x7k2p");
        assert_eq!(segment("../a b"), "..%2Fa%20b");
    }

    #[test]
    fn extra_ca_must_contain_a_certificate() {
        assert!(matches!(tls_config(false, Some(b"not a pem")), Err(OrkaError::Config(_))));
        assert!(tls_config(false, None).is_ok());
    }

    #[tokio::test]
    async fn token_is_scrubbed_and_rejected_when_unusable() {
        let config = OrkaConfig::new("http://127.0.0.1:1", SecretString::from("tok-123456"));
        let t = Transport::new(&config, config.base_url.clone()).unwrap();
        assert_eq!(t.scrub("bad token tok-123456!".into()), "bad token [REDACTED]!");
        let bad = OrkaConfig::new("http://127.0.0.1:1", SecretString::from("tok\nwith-newline"));
        let err = Transport::new(&bad, bad.base_url.clone()).err().unwrap();
        assert!(!err.to_string().contains("with-newline"), "{err}");
        let empty = OrkaConfig::new("http://127.0.0.1:1", SecretString::from(" "));
        assert!(Transport::new(&empty, empty.base_url.clone()).is_err());
    }
}
