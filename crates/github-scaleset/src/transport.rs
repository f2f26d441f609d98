//! HTTP transport: one hyper client (rustls with aws-lc-rs, http and https, optional extra
//! CA bundle, optional proxy), per-request timeouts, body caps, secret scrubbing of error
//! bodies, the retry policy ([`RetryPolicy`]), and waiting out GitHub's rate limits.
//!
//! Where rate-limit waits happen: here, inside [`Transport::send`]. A rate-limited answer
//! (see [`crate::ratelimit`]) is not retried by the ordinary backoff; the request sleeps
//! until the reset or `Retry-After` (each wait bounded by [`RateLimitPolicy::max_wait`])
//! and is sent again. One request waits at most [`RateLimitPolicy::request_budget`] in all
//! (and [`RateLimitPolicy::max_waits`] times); then the caller gets
//! [`ScaleSetError::RateLimited`] with the time left and retries on its own schedule, so a
//! loop that reports liveness between calls keeps doing so through an hour-long limit.
//! While a host is known to be limited, every request to it holds back (within its budget)
//! until the limit lifts instead of being refused one by one. The sleeps are part of the
//! request's future: a caller that races the call against its cancellation token (or
//! drops it) ends the wait at once.
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
    ratelimit::{self, RateLimitPolicy, RateLimitState},
    secrets::Secrets,
};

/// Largest response body read, per kind of endpoint; a larger (or endless) body fails the
/// request with [`ScaleSetError::Protocol`] as soon as the cap is passed.
pub(crate) mod body_cap {
    /// REST bootstrap answers (tokens, runner registration): a few hundred bytes.
    pub(crate) const TOKEN: usize = 64 * 1024;
    /// Actions-service answers (scale sets, sessions, runners, JIT configs).
    pub(crate) const SERVICE: usize = 1024 * 1024;
    /// Message-queue answers and job lists (a batch of job messages).
    pub(crate) const MESSAGES: usize = 8 * 1024 * 1024;
    /// The runner release lookup (release notes and the asset list).
    pub(crate) const RELEASE: usize = 2 * 1024 * 1024;
}

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
    /// Largest body accepted (see [`body_cap`]).
    pub(crate) max_body: usize,
}

/// A complete response.
#[derive(Debug)]
pub(crate) struct HttpResponse {
    pub(crate) status: StatusCode,
    pub(crate) headers: HeaderMap,
    pub(crate) body: Bytes,
    /// The settings that hold the credential used (named in credential errors).
    pub(crate) credential_setting: &'static str,
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
    /// The body passed its cap.
    TooLarge(usize),
}

type HyperClient = Client<HttpsConnector<ProxyConnector>, Full<Bytes>>;

/// The shared HTTP client.
pub(crate) struct Transport {
    client: HyperClient,
    user_agent: HeaderValue,
    /// Scrubbed from every error body.
    pub(crate) secrets: Secrets,
    /// Budgets seen and the primary-limit gate.
    rate_limits: RateLimitState,
    rate_policy: RateLimitPolicy,
    credential_setting: &'static str,
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
        let fixed = match &config.auth {
            crate::Auth::Pat(pat) => vec![pat.clone()],
            crate::Auth::App { .. } => Vec::new(),
        };
        Ok(Self {
            client,
            user_agent,
            secrets: Secrets::new(fixed),
            rate_limits: RateLimitState::new(config.rate_limit_observer.clone()),
            rate_policy: config.rate_limit,
            credential_setting: config.auth.settings(),
        })
    }

    /// Sends `req`, retrying per `policy` and waiting out rate limits (see the module
    /// docs). Returns the final response whatever its status (a rate limit or retryable
    /// status that outlasted every wait included; an error body has every known secret
    /// scrubbed); errors only when no response arrived.
    pub(crate) async fn send(
        &self,
        req: &HttpRequest,
        policy: &RetryPolicy,
    ) -> Result<HttpResponse, ScaleSetError> {
        let host = req.url.host_str().unwrap_or_default().to_owned();
        let budget = self.rate_policy.request_budget;
        let mut spent = Duration::ZERO;
        let mut waits = 0;
        loop {
            if let Some(hold) = self.rate_limits.hold_back(&host) {
                let slept = hold.min(budget.saturating_sub(spent));
                tracing::debug!(
                    context = req.context,
                    ?hold,
                    "holding back until the GitHub rate limit lifts"
                );
                tokio::time::sleep(slept).await;
                spent += slept;
                if slept < hold {
                    return Err(ScaleSetError::RateLimited { retry_after: Some(hold - slept) });
                }
            }
            let resp = self.send_retrying(req, policy).await?;
            self.rate_limits.observe(&resp.headers);
            let Some(limit) = ratelimit::classify(resp.status, &resp.headers, &resp.body) else {
                return Ok(resp);
            };
            let wait = self.rate_policy.wait(&limit, waits, std::time::SystemTime::now());
            if waits >= self.rate_policy.max_waits {
                return Err(ScaleSetError::RateLimited { retry_after: Some(wait) });
            }
            self.rate_limits.waiting(&host, req.context, &limit, wait);
            let slept = wait.min(budget.saturating_sub(spent));
            tokio::time::sleep(slept).await;
            spent += slept;
            waits += 1;
            if slept < wait {
                // Out of this request's budget: the caller gets `RateLimited` and retries
                // later; meanwhile the gate keeps further requests to this host waiting.
                return Err(ScaleSetError::RateLimited { retry_after: Some(wait - slept) });
            }
        }
    }

    /// Sends `req`, retrying transport errors and retryable statuses per `policy`.
    async fn send_retrying(
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
            Err(Attempt::TooLarge(cap)) => Err(ScaleSetError::protocol(
                req.context,
                format!("response body larger than {} KiB; refusing to read more", cap / 1024),
            )),
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
            let body = http_body_util::Limited::new(body, req.max_body)
                .collect()
                .await
                .map_err(|e| {
                    if e.is::<http_body_util::LengthLimitError>() {
                        Attempt::TooLarge(req.max_body)
                    } else {
                        Attempt::Broken(e)
                    }
                })?
                .to_bytes();
            let credential_setting = self.credential_setting;
            Ok(HttpResponse { status: parts.status, headers: parts.headers, body, credential_setting })
        };
        let mut resp = tokio::time::timeout(req.timeout, exchange)
            .await
            .map_err(|_| Attempt::TimedOut(req.timeout))??;
        if !resp.status.is_success() {
            resp.body = self.secrets.scrub_bytes(&resp.body);
        }
        let rate_limited = ratelimit::classify(resp.status, &resp.headers, &resp.body).is_some();
        if is_retryable_status(resp.status) && !rate_limited { Err(Attempt::Status(resp)) } else { Ok(resp) }
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
        Attempt::Fatal(_) | Attempt::TooLarge(_) => false,
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
        Attempt::TooLarge(cap) => format!("body over {cap} bytes"),
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
                credential_setting: "GITHUB_PAT",
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
