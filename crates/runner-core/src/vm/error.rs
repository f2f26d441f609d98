//! Errors of the VM backend seam, each marked retryable or not.

use std::time::Duration;

/// Everything that can go wrong talking to a VM backend.
///
/// The variants are the failures a caller branches on (auth, capacity, name conflict,
/// deploy failure or timeout, rate limit, transport, …). The messages name Orka because
/// the Orka client is the backend this project ships; another backend maps its own faults
/// onto the same variants so the fleet's retry policy keeps working.
///
/// `Display` never includes the bearer token. Sources are kept in `#[source]` and not
/// repeated in the message.
#[derive(Debug, thiserror::Error)]
pub enum VmBackendError {
    /// 401: the token is missing, invalid or expired.
    #[error("Orka rejected the token (401 Unauthorized): {message}")]
    Unauthorized {
        /// The server's message, if any.
        message: String,
    },
    /// 403: the token has no access to the namespace or operation.
    #[error("Orka denied access (403 Forbidden): {message}")]
    Forbidden {
        /// The server's message, if any.
        message: String,
    },
    /// 404 on something other than a delete.
    #[error("not found in Orka: {what}")]
    NotFound {
        /// What was looked up.
        what: String,
    },
    /// 409: the VM name is taken.
    #[error("VM name {name} already exists")]
    NameConflict {
        /// The conflicting name.
        name: String,
    },
    /// The cluster has no room for the VM right now.
    #[error("Orka capacity exhausted: {message}")]
    CapacityExhausted {
        /// The server's message.
        message: String,
    },
    /// The deploy failed (VM `Failed`, or a server error during deploy). The VM was deleted.
    #[error("deploy of {name} failed: {message}")]
    DeployFailed {
        /// The VM name.
        name: String,
        /// What Orka said.
        message: String,
    },
    /// The deploy did not reach `Running` before its deadline. The VM was deleted.
    #[error("deploy of {name} timed out after {after:?}")]
    DeployTimedOut {
        /// The VM name.
        name: String,
        /// The deadline that passed.
        after: Duration,
    },
    /// 429 from the API or its ingress.
    #[error("Orka rate limited the request")]
    RateLimited {
        /// The server's `Retry-After`, when given.
        retry_after: Option<Duration>,
    },
    /// A request the server refused as invalid (400 / 422).
    #[error("Orka rejected the request ({status}): {message}")]
    Invalid {
        /// HTTP status.
        status: u16,
        /// The server's message.
        message: String,
    },
    /// A 5xx or another unexpected status.
    #[error("Orka server error ({status}): {message}")]
    Server {
        /// HTTP status.
        status: u16,
        /// The server's message, or the raw body.
        message: String,
    },
    /// The request did not complete: connect, TLS, timeout or a broken connection.
    #[error("transport error talking to Orka ({context})")]
    Transport {
        /// What was being done.
        context: String,
        /// The underlying error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// A 2xx whose body could not be understood.
    #[error("unexpected response from Orka ({context}): {message}")]
    Protocol {
        /// What was being done.
        context: String,
        /// What was wrong.
        message: String,
    },
    /// A configuration value is invalid (base URL, name, metadata, IP mapping).
    #[error("invalid Orka configuration: {0}")]
    Config(String),
    /// Node-IP mapping is enabled but the VM's node IP is not in the map.
    #[error("node IP {ip} is not in the node IP mapping (ORKA_NODE_IP_MAPPING)")]
    UnmappedNodeIp {
        /// The unmapped node IP as Orka reported it.
        ip: String,
    },
}

impl VmBackendError {
    /// Whether trying again later may succeed. Auth, validation and configuration errors
    /// are final; capacity, rate limits, server and transport errors are not.
    pub fn is_retryable(&self) -> bool {
        match self {
            VmBackendError::Unauthorized { .. }
            | VmBackendError::Forbidden { .. }
            | VmBackendError::NotFound { .. }
            | VmBackendError::Invalid { .. }
            | VmBackendError::Protocol { .. }
            | VmBackendError::Config(_)
            | VmBackendError::UnmappedNodeIp { .. } => false,
            VmBackendError::NameConflict { .. }
            | VmBackendError::CapacityExhausted { .. }
            | VmBackendError::DeployFailed { .. }
            | VmBackendError::DeployTimedOut { .. }
            | VmBackendError::RateLimited { .. }
            | VmBackendError::Server { .. }
            | VmBackendError::Transport { .. } => true,
        }
    }

    /// The delay the server asked for, if any.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            VmBackendError::RateLimited { retry_after } => *retry_after,
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auth_and_validation_errors_are_final_capacity_is_not() {
        assert!(!VmBackendError::Unauthorized { message: String::new() }.is_retryable());
        assert!(!VmBackendError::Forbidden { message: String::new() }.is_retryable());
        assert!(!VmBackendError::Invalid { status: 422, message: String::new() }.is_retryable());
        assert!(VmBackendError::CapacityExhausted { message: String::new() }.is_retryable());
        assert!(VmBackendError::Server { status: 503, message: String::new() }.is_retryable());
        let limited = VmBackendError::RateLimited { retry_after: Some(Duration::from_secs(3)) };
        assert!(limited.is_retryable());
        assert_eq!(limited.retry_after(), Some(Duration::from_secs(3)));
    }
}
