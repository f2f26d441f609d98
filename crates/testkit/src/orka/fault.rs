//! Fault injection for the fake Orka (docs/protocol/orka.md#fault-cases).
//!
//! A [`Fault`] is armed for a number of matching requests and consumed as they arrive.
//! Out-of-band events that are not tied to a request (a VM vanishing or turning
//! `Failed`, a token expiring) are methods of [`crate::orka::FakeOrka`] instead.

use http::Method;
use serde::{Deserialize, Serialize};

/// Which API calls a fault applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Route {
    /// Every Orka API call (never the `/__fake/` control API).
    Any,
    /// `GET /api/v1/cluster-info`.
    ClusterInfo,
    /// `GET …/vms`.
    ListVms,
    /// `GET …/vms/{name}`.
    GetVm,
    /// `POST …/vms`.
    Deploy,
    /// `DELETE …/vms/{name}`.
    DeleteVm,
    /// `GET …/nodes`.
    ListNodes,
    /// `GET …/vmconfigs`.
    ListVmConfigs,
    /// `GET …/images`.
    ListImages,
}

impl Route {
    /// Classifies an API request; `None` for paths the fake does not serve.
    pub fn classify(method: &Method, path: &str) -> Option<Route> {
        let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
        match (method.as_str(), parts.as_slice()) {
            ("GET", ["api", "v1", "cluster-info"]) => Some(Route::ClusterInfo),
            ("GET", ["api", "v1", "namespaces", _, "vms"]) => Some(Route::ListVms),
            ("POST", ["api", "v1", "namespaces", _, "vms"]) => Some(Route::Deploy),
            ("GET", ["api", "v1", "namespaces", _, "vms", _]) => Some(Route::GetVm),
            ("DELETE", ["api", "v1", "namespaces", _, "vms", _]) => Some(Route::DeleteVm),
            ("GET", ["api", "v1", "namespaces", _, "nodes"]) => Some(Route::ListNodes),
            ("GET", ["api", "v1", "namespaces", _, "vmconfigs"]) => Some(Route::ListVmConfigs),
            ("GET", ["api", "v1", "namespaces", _, "images"]) => Some(Route::ListImages),
            _ => None,
        }
    }

    /// Whether a fault for `self` applies to a request on `actual`.
    pub fn matches(self, actual: Route) -> bool {
        self == Route::Any || self == actual
    }
}

/// The body of an injected error response.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ErrorBody {
    /// A Kubernetes `Status` object.
    Json,
    /// An ingress-style HTML page.
    Html,
    /// No body at all.
    Empty,
}

/// How a successful response is corrupted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Malformed {
    /// VM objects lose their `ssh` field.
    MissingSsh,
    /// VM ports are sent as numeric strings (`"ssh":"8822"`).
    PortsAsStrings,
    /// Unknown fields of every JSON type are added.
    ExtraFields,
    /// The body is not JSON at all.
    NotJson,
    /// The body is empty.
    Empty,
}

/// One injectable fault (docs/protocol/orka.md#fault-cases). Durations are in milliseconds so
/// faults can also
/// be sent as JSON to `POST /__fake/faults`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Fault {
    /// Slow deploy: the VM takes this much longer than the boot delay to reach `Running`
    /// (it does reach it, even if the client gave up — unless it is deleted).
    SlowDeploy {
        /// Extra boot time.
        delay_ms: u64,
    },
    /// Deploy failure: the VM goes `Failed` with this `errorMessage` when it would have
    /// become `Running`; the POST answers 500 with the message.
    DeployFailure {
        /// The VM's `errorMessage`.
        message: String,
    },
    /// Capacity exhausted, fast: the deploy fails at once with "Not enough CPU available"
    /// and this status; no VM is created.
    CapacityExhaustedFast {
        /// 500, 400 or 409.
        status: u16,
    },
    /// Capacity exhausted, slow: the VM can never be scheduled; it stays `Pending` until
    /// the deploy timeout, then the POST fails and the `Pending` VM stays behind.
    CapacityExhaustedSlow,
    /// The deploy answers at once with the still-`Pending` VM (status `deploy_status`) and
    /// keeps booting in the background; clients must poll.
    RespondBeforeRunning,
    /// An error status for matching calls, with a JSON, HTML or empty body.
    HttpError {
        /// Calls it applies to.
        route: Route,
        /// E.g. 500, 502, 503, 504.
        status: u16,
        /// Body shape.
        body: ErrorBody,
    },
    /// 429 for matching calls, optionally with `Retry-After` (seconds).
    RateLimited {
        /// Calls it applies to.
        route: Route,
        /// `Retry-After` header value, if any.
        retry_after_secs: Option<u64>,
    },
    /// 503 from the ingress in front of the API (nginx's HTML page), optionally with
    /// `Retry-After` (seconds): the request never reached Orka.
    Unavailable {
        /// Calls it applies to.
        route: Route,
        /// `Retry-After` header value, if any.
        retry_after_secs: Option<u64>,
    },
    /// Matching calls succeed with a corrupted body.
    MalformedSuccess {
        /// Calls it applies to.
        route: Route,
        /// The corruption.
        shape: Malformed,
    },
    /// Matching calls are held this long before being handled (e.g. a `cluster-info`
    /// that hangs beyond the client's ping timeout).
    Hang {
        /// Calls it applies to.
        route: Route,
        /// How long to hold.
        delay_ms: u64,
    },
}

impl Fault {
    /// The route the fault is consumed on.
    pub fn route(&self) -> Route {
        match self {
            Fault::SlowDeploy { .. }
            | Fault::DeployFailure { .. }
            | Fault::CapacityExhaustedFast { .. }
            | Fault::CapacityExhaustedSlow
            | Fault::RespondBeforeRunning => Route::Deploy,
            Fault::HttpError { route, .. }
            | Fault::RateLimited { route, .. }
            | Fault::Unavailable { route, .. }
            | Fault::MalformedSuccess { route, .. }
            | Fault::Hang { route, .. } => *route,
        }
    }

    /// Faults that change how a deploy behaves, applied by the deploy handler.
    pub(crate) fn is_deploy_behaviour(&self) -> bool {
        matches!(
            self,
            Fault::SlowDeploy { .. }
                | Fault::DeployFailure { .. }
                | Fault::CapacityExhaustedFast { .. }
                | Fault::CapacityExhaustedSlow
                | Fault::RespondBeforeRunning
        )
    }

    /// Faults that replace or delay the handler, applied before it runs.
    pub(crate) fn is_pre_handler(&self) -> bool {
        matches!(
            self,
            Fault::HttpError { .. }
                | Fault::RateLimited { .. }
                | Fault::Unavailable { .. }
                | Fault::Hang { .. }
        )
    }
}

/// An armed fault and how many more requests it applies to.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ArmedFault {
    /// The fault.
    pub fault: Fault,
    /// Remaining matching requests.
    pub remaining: usize,
}

/// Takes the first armed fault that applies to `route` and satisfies `pick`, decrementing
/// its count (and dropping it at zero).
pub(crate) fn take(
    armed: &mut Vec<ArmedFault>,
    route: Route,
    pick: impl Fn(&Fault) -> bool,
) -> Option<Fault> {
    let index =
        armed.iter().position(|a| a.remaining > 0 && a.fault.route().matches(route) && pick(&a.fault))?;
    let fault = armed[index].fault.clone();
    armed[index].remaining -= 1;
    if armed[index].remaining == 0 {
        armed.remove(index);
    }
    Some(fault)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_are_classified() {
        assert_eq!(Route::classify(&Method::GET, "/api/v1/cluster-info"), Some(Route::ClusterInfo));
        assert_eq!(
            Route::classify(&Method::POST, "/api/v1/namespaces/orka-default/vms"),
            Some(Route::Deploy)
        );
        assert_eq!(
            Route::classify(&Method::DELETE, "/api/v1/namespaces/orka-x/vms/a-1"),
            Some(Route::DeleteVm)
        );
        assert_eq!(Route::classify(&Method::GET, "/__fake/state"), None);
    }

    #[test]
    fn faults_are_consumed_in_order_and_counted() {
        let mut armed = vec![
            ArmedFault { fault: Fault::CapacityExhaustedSlow, remaining: 1 },
            ArmedFault {
                fault: Fault::HttpError { route: Route::Any, status: 502, body: ErrorBody::Html },
                remaining: 2,
            },
        ];
        assert_eq!(
            take(&mut armed, Route::ListVms, Fault::is_pre_handler).map(|f| f.route()),
            Some(Route::Any)
        );
        assert!(take(&mut armed, Route::ListVms, Fault::is_deploy_behaviour).is_none());
        assert_eq!(
            take(&mut armed, Route::Deploy, Fault::is_deploy_behaviour),
            Some(Fault::CapacityExhaustedSlow)
        );
        assert!(take(&mut armed, Route::Deploy, Fault::is_pre_handler).is_some());
        assert!(armed.is_empty());
    }
}
