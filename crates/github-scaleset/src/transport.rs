//! HTTP transport: one hyper client (rustls with aws-lc-rs, http and https, optional extra
//! CA bundle, optional proxy), per-request timeouts, and the retry policy of §5.2.
//!
//! Owns: sending a request and deciding whether to send it again. Does not own: URLs,
//! authentication or the meaning of a status code beyond "retryable".

use std::{sync::Arc, time::Duration};

use backon::{ExponentialBuilder, Retryable};
use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use http_body_util::{BodyExt, Full};
use hyper_rustls::HttpsConnector;
use hyper_util::{
    client::legacy::{Client, connect::HttpConnector},
    rt::TokioExecutor,
};
use url::Url;

use crate::{
    ScaleSetError,
    config::{GitHubConfig, RetryPolicy},
    proxy::{ProxyConnector, ProxySettings},
};

/// Whether a request may be sent again after it possibly reached the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Idempotency {
    /// Safe to repeat (GET, DELETE, PATCH refresh, acquire).
    Idempotent,
    /// Repeated only when it surely did not reach the server (connect failure, 429, or a
    /// 503 that names a `Retry-After`).
    NonIdempotent,
}

/// One request, fully described (so it can be re-sent).
pub(crate) struct HttpRequest {
    pub(crate) method: Method,
    pub(crate) url: Url,
    pub(crate) headers: HeaderMap,
    pub(crate) body: Option<Bytes>,
    pub(crate) timeout: Duration,
    pub(crate) idempotency: Idempotency,
    /// What is being done, for errors and logs (never contains a secret).
    pub(crate) context: &'static str,
}

/// A complete response.
#[derive(Debug)]
pub(crate) struct HttpResponse {
    pub(crate) status: StatusCode,
    pub(crate) headers: HeaderMap,
    pub(crate) body: Bytes,
}

enum Attempt {
    /// The request never reached the server.
    Unsent(Box<dyn std::error::Error + Send + Sync>),
    /// The request may have reached the server.
    Broken(Box<dyn std::error::Error + Send + Sync>),
    /// No complete response within the deadline.
    TimedOut(Duration),
    /// A retryable status.
    Status(HttpResponse),
    /// Never worth repeating (TLS verification failed).
    Fatal(Box<dyn std::error::Error + Send + Sync>),
}

type HyperClient = Client<HttpsConnector<ProxyConnector>, Full<Bytes>>;

/// The shared HTTP client.
pub(crate) struct Transport {
    client: HyperClient,
    user_agent: HeaderValue,
}

impl Transport {
    /// Builds the client from the configuration (reads the extra CA bundle).
    pub(crate) fn new(config: &GitHubConfig) -> Result<Self, ScaleSetError> {
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let mut roots = rustls::RootCertStore::empty();
        for cert in rustls_native_certs::load_native_certs().certs {
            // A broken system certificate must not stop the client; skip it.
            let _ = roots.add(cert);
        }
        if let Some(path) = &config.extra_ca {
            let pem = std::fs::read(path)
                .map_err(|e| ScaleSetError::Config(format!("extra CA bundle {}: {e}", path.display())))?;
            let mut added = 0;
            for cert in rustls_pemfile::certs(&mut pem.as_slice()) {
                let cert = cert
                    .map_err(|e| ScaleSetError::Config(format!("extra CA bundle {}: {e}", path.display())))?;
                roots
                    .add(cert)
                    .map_err(|e| ScaleSetError::Config(format!("extra CA bundle {}: {e}", path.display())))?;
                added += 1;
            }
            if added == 0 {
                return Err(ScaleSetError::Config(format!(
                    "extra CA bundle {} holds no certificate",
                    path.display()
                )));
            }
        }
        let tls = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| ScaleSetError::Config(format!("TLS: {e}")))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_nodelay(true);
        http.set_connect_timeout(Some(Duration::from_secs(10)));
        let proxy = ProxySettings::new(&config.proxy);
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .wrap_connector(ProxyConnector::new(http, proxy));
        let client =
            Client::builder(TokioExecutor::new()).pool_idle_timeout(Duration::from_secs(60)).build(connector);
        let user_agent = HeaderValue::from_str(&config.user_agent)
            .map_err(|_| ScaleSetError::Config("user agent is not a valid header value".into()))?;
        Ok(Self { client, user_agent })
    }

    /// Sends `req`, retrying per `policy`. Returns the final response whatever its status
    /// (a retryable status that survived every retry included); errors only when no
    /// response arrived.
    pub(crate) async fn send(
        &self,
        req: &HttpRequest,
        policy: &RetryPolicy,
    ) -> Result<HttpResponse, ScaleSetError> {
        let backoff = ExponentialBuilder::default()
            .with_min_delay(policy.min_delay)
            .with_max_delay(policy.max_delay)
            .with_max_times(policy.max_retries);
        let cap = policy.max_retry_after;
        let result = (|| self.send_once(req))
            .retry(backoff)
            .sleep(tokio::time::sleep)
            .when(|a| retryable(a, req.idempotency))
            .adjust(move |a, dur| {
                let dur = dur?;
                match a {
                    Attempt::Status(r) => Some(retry_after(&r.headers).map_or(dur, |ra| ra.min(cap))),
                    _ => Some(dur),
                }
            })
            .notify(|a, dur| {
                tracing::debug!(context = req.context, attempt = %describe(a), delay = ?dur, "retrying GitHub request");
            })
            .await;
        match result {
            Ok(resp) => Ok(resp),
            Err(Attempt::Status(resp)) => Ok(resp),
            Err(Attempt::Unsent(source)) | Err(Attempt::Broken(source)) | Err(Attempt::Fatal(source)) => {
                Err(ScaleSetError::Transport { context: req.context.to_owned(), source })
            }
            Err(Attempt::TimedOut(after)) => Err(ScaleSetError::Transport {
                context: req.context.to_owned(),
                source: format!("no response within {after:?}").into(),
            }),
        }
    }

    async fn send_once(&self, req: &HttpRequest) -> Result<HttpResponse, Attempt> {
        let mut builder = http::Request::builder().method(req.method.clone()).uri(req.url.as_str());
        let headers = builder.headers_mut().expect("fresh builder has headers");
        headers.extend(req.headers.iter().map(|(k, v)| (k.clone(), v.clone())));
        headers.insert(header::USER_AGENT, self.user_agent.clone());
        let body = req.body.clone().unwrap_or_default();
        let http_req = builder
            .body(Full::new(body))
            .map_err(|e| Attempt::Unsent(Box::new(e) as Box<dyn std::error::Error + Send + Sync>))?;
        let exchange = async {
            let resp = self.client.request(http_req).await.map_err(|e| {
                if is_tls_failure(&e) {
                    Attempt::Fatal(Box::new(e))
                } else if e.is_connect() {
                    Attempt::Unsent(Box::new(e))
                } else {
                    Attempt::Broken(Box::new(e))
                }
            })?;
            let (parts, body) = resp.into_parts();
            let body = body.collect().await.map_err(|e| Attempt::Broken(Box::new(e)))?.to_bytes();
            Ok(HttpResponse { status: parts.status, headers: parts.headers, body })
        };
        let resp = tokio::time::timeout(req.timeout, exchange)
            .await
            .map_err(|_| Attempt::TimedOut(req.timeout))??;
        if is_retryable_status(resp.status) { Err(Attempt::Status(resp)) } else { Ok(resp) }
    }
}

/// Whether a TLS error (e.g. an untrusted certificate) is in the cause chain; like the Go
/// clients, such failures are not retried.
fn is_tls_failure(err: &(dyn std::error::Error + 'static)) -> bool {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(e) = cur {
        if e.is::<rustls::Error>() {
            return true;
        }
        // `io::Error::source` skips the wrapped error itself; descend into it explicitly.
        cur = match e.downcast_ref::<std::io::Error>().and_then(|io| io.get_ref()) {
            Some(inner) => Some(inner as &(dyn std::error::Error + 'static)),
            None => e.source(),
        };
    }
    false
}

fn is_retryable_status(status: StatusCode) -> bool {
    status == StatusCode::TOO_MANY_REQUESTS
        || (status.is_server_error() && status != StatusCode::NOT_IMPLEMENTED)
}

fn retryable(attempt: &Attempt, idempotency: Idempotency) -> bool {
    let idempotent = idempotency == Idempotency::Idempotent;
    match attempt {
        Attempt::Unsent(_) => true,
        Attempt::Fatal(_) => false,
        Attempt::Broken(_) | Attempt::TimedOut(_) => idempotent,
        Attempt::Status(resp) => {
            idempotent
                || resp.status == StatusCode::TOO_MANY_REQUESTS
                || (resp.status == StatusCode::SERVICE_UNAVAILABLE && retry_after(&resp.headers).is_some())
        }
    }
}

fn describe(attempt: &Attempt) -> String {
    match attempt {
        Attempt::Unsent(e) => format!("connect failed: {e}"),
        Attempt::Broken(e) => format!("connection failed: {e}"),
        Attempt::TimedOut(d) => format!("timed out after {d:?}"),
        Attempt::Status(r) => format!("status {}", r.status),
        Attempt::Fatal(e) => format!("TLS failure: {e}"),
    }
}

/// Parses `Retry-After` (delay-seconds or HTTP-date) into a delay from now.
pub(crate) fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let raw = headers.get(header::RETRY_AFTER)?.to_str().ok()?.trim();
    if let Ok(secs) = raw.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = httpdate::parse_http_date(raw).ok()?;
    Some(at.duration_since(std::time::SystemTime::now()).unwrap_or(Duration::ZERO))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_in_both_forms() {
        let mut h = HeaderMap::new();
        h.insert(header::RETRY_AFTER, HeaderValue::from_static("7"));
        assert_eq!(retry_after(&h), Some(Duration::from_secs(7)));
        let later = std::time::SystemTime::now() + Duration::from_secs(120);
        h.insert(header::RETRY_AFTER, HeaderValue::from_str(&httpdate::fmt_http_date(later)).unwrap());
        let d = retry_after(&h).unwrap();
        assert!(d > Duration::from_secs(100) && d <= Duration::from_secs(120), "{d:?}");
        h.insert(header::RETRY_AFTER, HeaderValue::from_static("Thu, 01 Jan 1970 00:00:00 GMT"));
        assert_eq!(retry_after(&h), Some(Duration::ZERO), "a date in the past means now");
        h.insert(header::RETRY_AFTER, HeaderValue::from_static("soon"));
        assert_eq!(retry_after(&h), None);
    }

    #[test]
    fn which_statuses_retry() {
        let resp = |s: u16, ra: Option<&'static str>| {
            let mut headers = HeaderMap::new();
            if let Some(v) = ra {
                headers.insert(header::RETRY_AFTER, HeaderValue::from_static(v));
            }
            Attempt::Status(HttpResponse {
                status: StatusCode::from_u16(s).unwrap(),
                headers,
                body: Bytes::new(),
            })
        };
        assert!(retryable(&resp(500, None), Idempotency::Idempotent));
        assert!(!retryable(&resp(500, None), Idempotency::NonIdempotent), "a POST may have been committed");
        assert!(retryable(&resp(429, None), Idempotency::NonIdempotent));
        assert!(retryable(&resp(503, Some("1")), Idempotency::NonIdempotent));
        assert!(!retryable(&resp(503, None), Idempotency::NonIdempotent));
        assert!(!is_retryable_status(StatusCode::NOT_IMPLEMENTED));
        assert!(!is_retryable_status(StatusCode::NOT_FOUND));
        let broken = Attempt::Broken("reset".into());
        assert!(retryable(&broken, Idempotency::Idempotent));
        assert!(!retryable(&broken, Idempotency::NonIdempotent));
        assert!(retryable(&Attempt::Unsent("refused".into()), Idempotency::NonIdempotent));
    }
}
