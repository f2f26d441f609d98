//! The deploy algorithm (docs/protocol/orka.md#deploy): one call that either returns a `Running` VM
//! with an SSH endpoint or returns an error having deleted the VM by name.
//!
//! - The name is ours (validated before sending), so cleanup is always possible.
//! - The server-side `timeout` (whole minutes, at least 1, never above the budget when
//!   the budget is ≥ 1 min) is sent; the client waits that budget plus a margin, so the
//!   server normally gives up first and says why.
//! - 409 (name taken by someone else) regenerates the suffix once and never deletes the
//!   other VM. Any other failure — error status, unusable body, `Failed`, deadline, an
//!   unmapped node IP, or the caller dropping the future — deletes the VM by name. When
//!   the POST got no answer (timeout, broken connection, abandoned), Orka may still create
//!   the VM after that DELETE, so the name is checked again `cleanup_recheck` later.
//! - Retrying across attempts is the caller's job; errors say whether it may help.

use std::collections::BTreeMap;

use http::Method;
use tokio::time::Instant;

use crate::naming::is_valid_vm_name;
use crate::wire::{WireDeploy, WireVm, error_message};
use crate::{DeployRequest, OrkaClient, OrkaError, Vm, VmStatus};

/// Phrases Orka and Kubernetes use when no node can take a VM.
const CAPACITY_HINTS: &[&str] =
    &["not enough", "insufficient", "no available node", "no nodes available", "capacity", "unschedulable"];

impl OrkaClient {
    pub(crate) async fn deploy(&self, request: &DeployRequest) -> Result<Vm, OrkaError> {
        let config = &self.inner.config;
        let budget = if request.timeout.is_zero() { config.deploy_timeout } else { request.timeout };
        let server_minutes = (budget.as_secs() / 60).max(1);
        let client_budget = budget + config.deploy_margin;
        let deadline = Instant::now() + client_budget;
        let metadata = merged(&config.metadata, &request.metadata);

        let mut name = request.name.clone();
        let mut regenerated = false;
        loop {
            let text = name.to_string();
            if !is_valid_vm_name(&text) {
                return Err(OrkaError::Config(format!("VM name {text:?} breaks Orka's naming rules")));
            }
            let body = WireDeploy {
                name: &text,
                vm_config: &request.vm_config,
                timeout: server_minutes,
                custom_vm_metadata: &metadata,
            };
            let body =
                serde_json::to_vec(&body).map_err(|e| OrkaError::Config(format!("deploy body: {e}")))?;

            // Armed until the attempt and its cleanup settle: if this future is dropped
            // midway, the guard deletes the VM in the background.
            let mut guard = CleanupGuard { client: Some(self.clone()), name: text.clone() };
            let outcome = match tokio::time::timeout_at(deadline, self.deploy_once(&text, body)).await {
                Ok(outcome) => outcome,
                Err(_) => Err(OrkaError::DeployTimedOut { name: text.clone(), after: client_budget }),
            };
            match outcome {
                Ok(vm) => {
                    guard.disarm();
                    tracing::info!(vm = %vm.name, "VM deployed");
                    return Ok(vm);
                }
                Err(OrkaError::NameConflict { name: taken }) if !regenerated => {
                    // The name belongs to a VM we did not create: leave it alone.
                    guard.disarm();
                    tracing::warn!(vm = %taken, "VM name already taken; regenerating the suffix once");
                    regenerated = true;
                    name = name.regenerate();
                }
                Err(e @ OrkaError::NameConflict { .. }) => {
                    guard.disarm();
                    return Err(e);
                }
                Err(e) => {
                    tracing::warn!(vm = %text, error = &e as &dyn std::error::Error, "deploy failed; deleting the VM");
                    if let Err(cleanup) = self.delete_with_retry(&text).await {
                        tracing::error!(
                            vm = %text,
                            error = &cleanup as &dyn std::error::Error,
                            "could not delete the VM of a failed deploy; reconciliation will retry"
                        );
                    }
                    // Without an answer to the POST, Orka may create the VM after our DELETE.
                    if matches!(e, OrkaError::DeployTimedOut { .. } | OrkaError::Transport { .. }) {
                        self.spawn_recheck(text.clone());
                    }
                    guard.disarm();
                    return Err(e);
                }
            }
        }
    }

    /// POST, then poll until `Running` with an endpoint, `Failed`, gone or an error.
    async fn deploy_once(&self, name: &str, body: Vec<u8>) -> Result<Vm, OrkaError> {
        let path = format!("{}/vms", self.ns_path());
        let transport = &self.inner.transport;
        let response = transport.send(Method::POST, &path, Some(body), true, None, "deploy VM").await?;
        if !response.status.is_success() {
            let message = transport.scrub(error_message(&response.body));
            return Err(deploy_error(name, response.status.as_u16(), message, || {
                transport.error_for(&response, &format!("deploy of {name}"))
            }));
        }
        let wire: WireVm = self.parse_ok(response, &format!("deploy of {name}"))?;
        let mut seen_running_without_endpoint = false;
        let mut current = wire;
        loop {
            match current.status() {
                VmStatus::Failed => {
                    let message = current.error_message.unwrap_or_else(|| "VM reached Failed".to_owned());
                    return Err(OrkaError::DeployFailed { name: name.to_owned(), message });
                }
                VmStatus::Running if current.ip.is_some() && current.ssh.is_some() => {
                    return self.to_vm(current, name, true);
                }
                VmStatus::Running if seen_running_without_endpoint => {
                    return Err(OrkaError::Protocol {
                        context: format!("deploy of {name}"),
                        message: "Orka reports the VM Running but gives no ip/ssh port".to_owned(),
                    });
                }
                VmStatus::Running => seen_running_without_endpoint = true,
                _ => {}
            }
            tokio::time::sleep(self.inner.config.poll_interval).await;
            current = loop {
                match self.get_wire_vm(name).await {
                    Ok(Some(vm)) => break vm,
                    Ok(None) => {
                        return Err(OrkaError::DeployFailed {
                            name: name.to_owned(),
                            message: "the VM disappeared while deploying".to_owned(),
                        });
                    }
                    Err(e) if e.is_retryable() => {
                        tracing::debug!(vm = name, error = &e as &dyn std::error::Error, "polling deploy");
                        tokio::time::sleep(self.inner.config.poll_interval).await;
                    }
                    Err(e) => return Err(e),
                }
            };
        }
    }
}

/// The error for a failed deploy POST. The wording wins over the status code: Orka may
/// report capacity as 500, 400 or 409 and a taken name as 409, 400 or 500 (unconfirmed;
/// docs/protocol/orka.md#status-codes). A taken
/// name must never be mistaken for a failure of ours, or cleanup would delete someone
/// else's VM.
fn deploy_error(name: &str, status: u16, message: String, generic: impl FnOnce() -> OrkaError) -> OrkaError {
    let lower = message.to_ascii_lowercase();
    let is_capacity = CAPACITY_HINTS.iter().any(|hint| lower.contains(hint));
    let is_conflict = lower.contains("already exists") || lower.contains("alreadyexists");
    match status {
        401 | 403 | 429 => generic(),
        _ if is_conflict => OrkaError::NameConflict { name: name.to_owned() },
        _ if is_capacity => OrkaError::CapacityExhausted { message },
        409 => OrkaError::NameConflict { name: name.to_owned() },
        500 => OrkaError::DeployFailed {
            name: name.to_owned(),
            message: if message.is_empty() { "500 Internal Server Error".to_owned() } else { message },
        },
        _ => generic(),
    }
}

/// Deletes the VM in the background if a deploy future is dropped before it settled.
struct CleanupGuard {
    client: Option<OrkaClient>,
    name: String,
}

impl CleanupGuard {
    fn disarm(&mut self) {
        self.client = None;
    }
}

impl Drop for CleanupGuard {
    fn drop(&mut self) {
        let Some(client) = self.client.take() else { return };
        let Ok(runtime) = tokio::runtime::Handle::try_current() else { return };
        let name = std::mem::take(&mut self.name);
        tracing::warn!(vm = %name, "deploy abandoned by the caller; deleting the VM in the background");
        runtime.spawn(async move {
            if let Err(e) = client.delete_with_retry(&name).await {
                tracing::error!(vm = %name, error = &e as &dyn std::error::Error, "background delete failed");
            }
            client.recheck(&name).await;
        });
    }
}

impl OrkaClient {
    fn spawn_recheck(&self, name: String) {
        let client = self.clone();
        tokio::spawn(async move { client.recheck(&name).await });
    }

    /// Deletes `name` if it shows up after `cleanup_recheck` (its POST was still in flight
    /// at Orka when we deleted it).
    async fn recheck(&self, name: &str) {
        tokio::time::sleep(self.inner.config.cleanup_recheck).await;
        match self.get_wire_vm(name).await {
            Ok(None) => {}
            Ok(Some(_)) => {
                tracing::warn!(vm = name, "VM of a failed deploy appeared after its cleanup; deleting it");
                if let Err(e) = self.delete_with_retry(name).await {
                    tracing::error!(vm = name, error = &e as &dyn std::error::Error, "late cleanup failed");
                }
            }
            Err(e) => {
                tracing::warn!(vm = name, error = &e as &dyn std::error::Error, "cleanup re-check failed")
            }
        }
    }
}

/// Merges configured and per-request metadata (the request wins on equal keys).
fn merged(base: &BTreeMap<String, String>, extra: &BTreeMap<String, String>) -> BTreeMap<String, String> {
    let mut out = base.clone();
    out.extend(extra.clone());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn generic() -> OrkaError {
        OrkaError::Server { status: 0, message: "generic".into() }
    }

    #[test]
    fn deploy_errors_are_classified() {
        let cap = deploy_error("a", 500, "Not enough CPU available".into(), generic);
        assert!(matches!(cap, OrkaError::CapacityExhausted { .. }) && cap.is_retryable());
        let cap = deploy_error("a", 409, "Insufficient memory".into(), generic);
        assert!(matches!(cap, OrkaError::CapacityExhausted { .. }));
        assert!(matches!(
            deploy_error("a", 409, "already exists".into(), generic),
            OrkaError::NameConflict { .. }
        ));
        assert!(matches!(deploy_error("a", 500, "".into(), generic), OrkaError::DeployFailed { .. }));
        assert!(matches!(
            deploy_error("a", 401, "not enough rights".into(), generic),
            OrkaError::Server { .. }
        ));
        assert!(matches!(deploy_error("a", 503, "".into(), generic), OrkaError::Server { .. }));
    }

    #[test]
    fn request_metadata_overrides_configured_metadata() {
        let base = BTreeMap::from([("a".to_owned(), "1".to_owned()), ("b".to_owned(), "2".to_owned())]);
        let extra = BTreeMap::from([("b".to_owned(), "3".to_owned())]);
        assert_eq!(merged(&base, &extra).get("b").map(String::as_str), Some("3"));
    }
}
