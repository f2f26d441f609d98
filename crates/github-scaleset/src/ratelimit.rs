//! GitHub's rate limits: recognising them, deciding how long to wait, and keeping count.
//!
//! GitHub answers a request over its *primary* limit (an hourly budget per token) with 403
//! or 429, `X-RateLimit-Remaining: 0` and the epoch second the budget refills in
//! `X-RateLimit-Reset`. It answers a request over a *secondary* limit (bursts, concurrency,
//! expensive calls) with 403 or 429 and either a `Retry-After` or a body saying "secondary
//! rate limit". Neither means the credentials are wrong: the same request succeeds after
//! the wait. See docs/operations.md ("GitHub rate limits") for what the operator sees.
//!
//! Owns: classification of a response ([`classify`]), the wait for each class
//! ([`RateLimitPolicy`]), the remaining budget seen in responses, and the observer hook
//! the binary turns into metrics. Does not own: sleeping or retrying (the transport).

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use http::{HeaderMap, StatusCode};

use crate::transport::retry_after;

/// Which of GitHub's limits a response reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RateLimitKind {
    /// The hourly budget is spent; it refills at `X-RateLimit-Reset`.
    Primary,
    /// A burst or concurrency limit; wait `Retry-After`, else back off from a minute.
    Secondary,
}

impl RateLimitKind {
    /// `primary` / `secondary` (metric label).
    pub fn label(self) -> &'static str {
        match self {
            RateLimitKind::Primary => "primary",
            RateLimitKind::Secondary => "secondary",
        }
    }
}

/// A rate-limit answer, as read from one response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RateLimit {
    pub(crate) kind: RateLimitKind,
    /// When the primary budget refills (`X-RateLimit-Reset`).
    pub(crate) reset_at: Option<SystemTime>,
    /// The server's `Retry-After`.
    pub(crate) retry_after: Option<Duration>,
}

impl RateLimit {
    /// How long until the limit lifts, as far as the response says.
    pub(crate) fn lifts_in(&self, now: SystemTime) -> Option<Duration> {
        match self.reset_at {
            Some(reset) if self.kind == RateLimitKind::Primary => {
                Some(reset.duration_since(now).unwrap_or(Duration::ZERO))
            }
            _ => self.retry_after,
        }
    }
}

/// Whether a response is a rate-limit answer, and of which kind.
///
/// Only 403 and 429 qualify. `X-RateLimit-Remaining: 0` means primary; otherwise a
/// `Retry-After`, a body mentioning a rate limit, or a bare 429 means secondary. A 403
/// with none of these is a real refusal (credentials or permissions), not a rate limit.
pub(crate) fn classify(status: StatusCode, headers: &HeaderMap, body: &[u8]) -> Option<RateLimit> {
    if status != StatusCode::FORBIDDEN && status != StatusCode::TOO_MANY_REQUESTS {
        return None;
    }
    let retry_after = retry_after(headers);
    if header_u64(headers, "x-ratelimit-remaining") == Some(0) {
        let reset_at = header_u64(headers, "x-ratelimit-reset").map(|s| UNIX_EPOCH + Duration::from_secs(s));
        return Some(RateLimit { kind: RateLimitKind::Primary, reset_at, retry_after });
    }
    let says_so = {
        let head = &body[..body.len().min(4096)];
        String::from_utf8_lossy(head).to_ascii_lowercase().contains("rate limit")
    };
    (retry_after.is_some() || says_so || status == StatusCode::TOO_MANY_REQUESTS).then_some(RateLimit {
        kind: RateLimitKind::Secondary,
        reset_at: None,
        retry_after,
    })
}

fn header_u64(headers: &HeaderMap, name: &str) -> Option<u64> {
    headers.get(name)?.to_str().ok()?.trim().parse().ok()
}

/// How long to wait on rate limits, and how often per request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimitPolicy {
    /// The longest wait for one limit (a reset or `Retry-After` further away is cut to this).
    pub max_wait: Duration,
    /// The most one request waits on rate limits in all; past it the request fails with
    /// [`ScaleSetError::RateLimited`](crate::ScaleSetError::RateLimited) (time left included)
    /// and the caller retries. Keep it below the caller's liveness deadline.
    pub request_budget: Duration,
    /// First wait on a secondary limit without `Retry-After` (doubles per repeat).
    pub secondary_backoff: Duration,
    /// Added to a primary reset time (the server's and our clocks differ a little).
    pub reset_margin: Duration,
    /// Waits per request before the rate limit is returned as
    /// [`ScaleSetError::RateLimited`](crate::ScaleSetError::RateLimited).
    pub max_waits: u32,
}

impl Default for RateLimitPolicy {
    fn default() -> Self {
        Self {
            max_wait: Duration::from_secs(3600),
            request_budget: Duration::from_secs(45),
            secondary_backoff: Duration::from_secs(60),
            reset_margin: Duration::from_secs(1),
            max_waits: 6,
        }
    }
}

impl RateLimitPolicy {
    /// The wait before sending again, `repeat` being how many rate-limit waits this
    /// request already had.
    pub(crate) fn wait(&self, limit: &RateLimit, repeat: u32, now: SystemTime) -> Duration {
        let backoff = || self.secondary_backoff.saturating_mul(1 << repeat.min(16));
        let wait = match (limit.kind, limit.reset_at, limit.retry_after) {
            (RateLimitKind::Primary, Some(reset), _) => {
                reset.duration_since(now).unwrap_or(Duration::ZERO) + self.reset_margin
            }
            (_, _, Some(after)) => after,
            _ => backoff(),
        };
        wait.min(self.max_wait)
    }
}

/// Receives what the client learns about rate limits (the binary turns it into metrics).
pub trait RateLimitObserver: Send + Sync {
    /// A response reported the budget of `resource` (`X-RateLimit-Resource`, `core` when absent).
    fn budget(&self, resource: &str, remaining: u64, limit: u64);
    /// A request to `endpoint` waits `wait` on a rate limit of `kind`.
    fn waiting(&self, endpoint: &'static str, kind: RateLimitKind, wait: Duration);
}

/// The observer slot of [`GitHubConfig`](crate::GitHubConfig) (`Debug` says only whether one is set).
#[derive(Clone, Default)]
pub struct ObserverSlot(pub Option<Arc<dyn RateLimitObserver>>);

impl std::fmt::Debug for ObserverSlot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_some() { "Some(observer)" } else { "None" })
    }
}

/// At most this many distinct resources are tracked (a broken server cannot grow the map).
const MAX_RESOURCES: usize = 16;

/// Budgets seen, episodes logged and the primary-limit gate, shared by every request.
#[derive(Default)]
pub(crate) struct RateLimitState {
    observer: ObserverSlot,
    inner: Mutex<Seen>,
}

#[derive(Default)]
struct Seen {
    /// Per resource: whether it is below 10 % (so the warning is given once per dip).
    low: HashMap<String, bool>,
    /// Per host: until when requests hold back (the limit we last logged).
    exhausted: HashMap<String, SystemTime>,
}

impl RateLimitState {
    pub(crate) fn new(observer: ObserverSlot) -> Self {
        Self { observer, inner: Mutex::default() }
    }

    /// Records the budget a response reports (every response, any status).
    pub(crate) fn observe(&self, headers: &HeaderMap) {
        let (Some(remaining), Some(limit)) =
            (header_u64(headers, "x-ratelimit-remaining"), header_u64(headers, "x-ratelimit-limit"))
        else {
            return;
        };
        let resource = headers
            .get("x-ratelimit-resource")
            .and_then(|v| v.to_str().ok())
            .filter(|r| !r.is_empty() && r.len() <= 64 && r.bytes().all(|b| b.is_ascii_graphic()))
            .unwrap_or("core");
        let is_low = limit > 0 && remaining.saturating_mul(10) < limit;
        {
            let mut seen = self.inner.lock().expect("rate-limit state");
            if !seen.low.contains_key(resource) && seen.low.len() >= MAX_RESOURCES {
                return;
            }
            let was_low = seen.low.insert(resource.to_owned(), is_low).unwrap_or(false);
            if is_low && !was_low {
                tracing::warn!(
                    resource,
                    remaining,
                    limit,
                    "GitHub rate-limit budget below 10 %; requests will wait when it runs out"
                );
            }
        }
        if let Some(o) = &self.observer.0 {
            o.budget(resource, remaining, limit);
        }
    }

    /// Records that a request to `host` waits `wait` on `limit`, and holds further requests
    /// to `host` back until then. The first request of an episode logs a warning with the
    /// time the limit lifts; the rest log at debug.
    pub(crate) fn waiting(&self, host: &str, endpoint: &'static str, limit: &RateLimit, wait: Duration) {
        let until = SystemTime::now() + wait;
        let first = {
            let mut seen = self.inner.lock().expect("rate-limit state");
            let known = seen.exhausted.get(host).is_some_and(|t| *t + Duration::from_secs(1) >= until);
            if !known {
                seen.exhausted.insert(host.to_owned(), until);
            }
            !known
        };
        let reset = httpdate::fmt_http_date(until);
        if first {
            tracing::warn!(
                endpoint,
                kind = limit.kind.label(),
                wait_secs = wait.as_secs(),
                %reset,
                "GitHub rate limit reached; waiting before sending again"
            );
        } else {
            tracing::debug!(endpoint, kind = limit.kind.label(), %reset, "waiting for the GitHub rate limit");
        }
        if let Some(o) = &self.observer.0 {
            o.waiting(endpoint, limit.kind, wait);
        }
    }

    /// How long a new request to `host` should hold back because a limit is known to be in
    /// force (it would only be refused).
    pub(crate) fn hold_back(&self, host: &str) -> Option<Duration> {
        let seen = self.inner.lock().expect("rate-limit state");
        seen.exhausted.get(host)?.duration_since(SystemTime::now()).ok().filter(|d| !d.is_zero())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    const PRIMARY_BODY: &[u8] = br#"{"message":"API rate limit exceeded for installation ID 67890.","documentation_url":"https://docs.github.com/rest/overview/rate-limits-for-the-rest-api"}"#;
    const SECONDARY_BODY: &[u8] = br#"{"message":"You have exceeded a secondary rate limit. Please wait a few minutes before you try again.","documentation_url":"https://docs.github.com/rest/overview/rate-limits-for-the-rest-api#about-secondary-rate-limits"}"#;
    const PERMISSION_BODY: &[u8] = br#"{"message":"Resource not accessible by integration","documentation_url":"https://docs.github.com/rest"}"#;

    /// Status, headers, body → expected kind, reset and `Retry-After` seconds.
    type Row = (
        u16,
        Vec<(&'static str, &'static str)>,
        &'static [u8],
        Option<(RateLimitKind, Option<SystemTime>, Option<u64>)>,
    );

    #[test]
    fn every_status_header_and_body_combination_is_classified() {
        use RateLimitKind::*;
        let reset = "1700000000";
        let reset_at = Some(UNIX_EPOCH + Duration::from_secs(1_700_000_000));
        let primary =
            [("x-ratelimit-remaining", "0"), ("x-ratelimit-limit", "5000"), ("x-ratelimit-reset", reset)];
        let table: Vec<Row> = vec![
            // Primary: remaining 0 with 403 or 429, whatever the body.
            (403, primary.to_vec(), PRIMARY_BODY, Some((Primary, reset_at, None))),
            (429, primary.to_vec(), PRIMARY_BODY, Some((Primary, reset_at, None))),
            (403, primary.to_vec(), b"", Some((Primary, reset_at, None))),
            (403, vec![("x-ratelimit-remaining", "0")], b"", Some((Primary, None, None))),
            (
                403,
                vec![("x-ratelimit-remaining", "0"), ("retry-after", "30")],
                b"",
                Some((Primary, None, Some(30))),
            ),
            // Secondary: Retry-After, or the body says so, or a bare 429.
            (403, vec![("retry-after", "60")], SECONDARY_BODY, Some((Secondary, None, Some(60)))),
            (429, vec![("retry-after", "5")], b"", Some((Secondary, None, Some(5)))),
            (403, vec![("x-ratelimit-remaining", "42")], SECONDARY_BODY, Some((Secondary, None, None))),
            (403, vec![], SECONDARY_BODY, Some((Secondary, None, None))),
            (403, vec![], PRIMARY_BODY, Some((Secondary, None, None))),
            (429, vec![], b"", Some((Secondary, None, None))),
            // Not a rate limit: a real refusal, or another status with the same headers.
            (403, vec![], PERMISSION_BODY, None),
            (
                403,
                vec![("x-ratelimit-remaining", "4999"), ("x-ratelimit-limit", "5000")],
                PERMISSION_BODY,
                None,
            ),
            (401, primary.to_vec(), br#"{"message":"Bad credentials"}"#, None),
            (401, vec![("retry-after", "5")], b"", None),
            (404, primary.to_vec(), b"", None),
            (503, vec![("retry-after", "5")], b"", None),
            (200, primary.to_vec(), b"", None),
            (403, vec![("x-ratelimit-remaining", "soon")], b"", None),
        ];
        for (status, hdrs, body, want) in table {
            let got = classify(StatusCode::from_u16(status).unwrap(), &headers(&hdrs), body);
            let got = got.map(|l| (l.kind, l.reset_at, l.retry_after.map(|d| d.as_secs())));
            assert_eq!(got, want, "{status} {hdrs:?} {}", String::from_utf8_lossy(body));
        }
    }

    #[test]
    fn waits_follow_the_reset_the_retry_after_or_a_backoff_from_a_minute() {
        let policy = RateLimitPolicy::default();
        let now = UNIX_EPOCH + Duration::from_secs(1_000_000);
        let primary = |reset_in: u64| RateLimit {
            kind: RateLimitKind::Primary,
            reset_at: Some(now + Duration::from_secs(reset_in)),
            retry_after: None,
        };
        assert_eq!(policy.wait(&primary(300), 0, now), Duration::from_secs(301), "reset + margin");
        assert_eq!(policy.wait(&primary(86_400), 0, now), Duration::from_secs(3600), "bounded by an hour");
        let past = RateLimit { reset_at: Some(now - Duration::from_secs(5)), ..primary(0) };
        assert_eq!(policy.wait(&past, 0, now), Duration::from_secs(1), "a past reset waits only the margin");
        let secondary = |after: Option<u64>| RateLimit {
            kind: RateLimitKind::Secondary,
            reset_at: None,
            retry_after: after.map(Duration::from_secs),
        };
        assert_eq!(policy.wait(&secondary(Some(7)), 3, now), Duration::from_secs(7));
        assert_eq!(policy.wait(&secondary(Some(7200)), 0, now), Duration::from_secs(3600));
        let backoffs: Vec<u64> = (0..8).map(|r| policy.wait(&secondary(None), r, now).as_secs()).collect();
        assert_eq!(backoffs, [60, 120, 240, 480, 960, 1920, 3600, 3600]);
        let no_reset = RateLimit { reset_at: None, retry_after: None, kind: RateLimitKind::Primary };
        assert_eq!(policy.wait(&no_reset, 1, now), Duration::from_secs(120), "no reset: back off");
    }

    #[derive(Default)]
    struct Recorder(Mutex<Vec<String>>);

    impl RateLimitObserver for Recorder {
        fn budget(&self, resource: &str, remaining: u64, limit: u64) {
            self.0.lock().unwrap().push(format!("budget {resource} {remaining}/{limit}"));
        }
        fn waiting(&self, endpoint: &'static str, kind: RateLimitKind, wait: Duration) {
            self.0.lock().unwrap().push(format!("wait {endpoint} {} {}", kind.label(), wait.as_secs()));
        }
    }

    #[test]
    fn budgets_and_waits_reach_the_observer_and_a_spent_budget_holds_requests_back() {
        let recorder = Arc::new(Recorder::default());
        let state = RateLimitState::new(ObserverSlot(Some(recorder.clone())));
        state.observe(&headers(&[("x-ratelimit-remaining", "4000"), ("x-ratelimit-limit", "5000")]));
        state.observe(&headers(&[
            ("x-ratelimit-remaining", "12"),
            ("x-ratelimit-limit", "15000"),
            ("x-ratelimit-resource", "actions_runner_registration"),
        ]));
        state.observe(&headers(&[("x-ratelimit-remaining", "12")]));
        assert_eq!(state.hold_back("api.github.com"), None);
        let limit = RateLimit { kind: RateLimitKind::Primary, reset_at: None, retry_after: None };
        state.waiting("api.github.com", "registration token", &limit, Duration::from_secs(30));
        let held = state.hold_back("api.github.com").expect("spent budget holds back");
        assert!(held > Duration::from_secs(25) && held <= Duration::from_secs(30), "{held:?}");
        assert_eq!(state.hold_back("broker.actions.githubusercontent.com"), None, "per host");
        assert_eq!(
            *recorder.0.lock().unwrap(),
            [
                "budget core 4000/5000",
                "budget actions_runner_registration 12/15000",
                "wait registration token primary 30"
            ]
        );
    }
}
