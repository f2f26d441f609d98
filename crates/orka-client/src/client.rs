//! [`OrkaClient`]: the Orka 3 gateway endpoints (docs/protocol/orka.md#endpoints) and the
//! [`VmBackend`]
//! implementation on top of them.
//!
//! Owns paths, auth, node-IP mapping of returned VMs and idempotent delete with backoff.
//! The deploy algorithm lives in `deploy`; wire models in `wire`.

use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use backon::{ExponentialBuilder, Retryable};
use http::Method;
use serde::de::DeserializeOwned;

use crate::config::{DEFAULT_NAMESPACE, normalize_base_url, validate_namespace};
use crate::transport::{Response, Transport, segment};
use crate::wire::{ClusterInfo, Image, Items, Node, VmConfig, WireVm};
use crate::{DeployRequest, OrkaConfig, OrkaError, Vm, VmBackend};

/// The Orka 3 REST client. Cheap to clone (shared connection pool).
///
/// `Debug` shows the endpoint and namespace, never the token.
#[derive(Clone)]
pub struct OrkaClient {
    pub(crate) inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub config: OrkaConfig,
    pub transport: Transport,
}

impl fmt::Debug for OrkaClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OrkaClient")
            .field("base_url", &self.inner.config.base_url)
            .field("namespace", &self.inner.config.namespace)
            .finish_non_exhaustive()
    }
}

impl OrkaClient {
    /// Validates the configuration (URL, namespace, token usable in a header, CA bundle)
    /// and builds the client. Makes no request.
    pub fn new(mut config: OrkaConfig) -> Result<Self, OrkaError> {
        config.base_url = normalize_base_url(&config.base_url)?;
        validate_namespace(&config.namespace)?;
        let transport = Transport::new(&config, config.base_url.clone())?;
        Ok(Self { inner: Arc::new(Inner { config, transport }) })
    }

    /// The normalised base URL.
    pub fn base_url(&self) -> &str {
        &self.inner.config.base_url
    }

    /// The namespace VMs are managed in.
    pub fn namespace(&self) -> &str {
        &self.inner.config.namespace
    }

    /// `GET /api/v1/cluster-info` without the token, bounded by `ping_timeout`: fails fast
    /// when the cluster is unreachable. Says nothing about the token (see [`Self::check_token`]).
    pub async fn ping(&self) -> Result<ClusterInfo, OrkaError> {
        let timeout = self.inner.config.ping_timeout;
        let response = self
            .inner
            .transport
            .send(Method::GET, "/api/v1/cluster-info", None, false, Some(timeout), "ping")
            .await?;
        self.parse_ok(response, "cluster info")
    }

    /// Checks that the token is accepted and may use the namespace, with a cheap
    /// authenticated call (list nodes of the namespace, as the Go integration does).
    pub async fn check_token(&self) -> Result<(), OrkaError> {
        self.list_nodes().await.map(drop)
    }

    /// The nodes of the namespace.
    pub async fn list_nodes(&self) -> Result<Vec<Node>, OrkaError> {
        let path = format!("{}/nodes", self.ns_path());
        self.get_items(&path, "nodes").await
    }

    /// The VM configs (cluster-wide, addressed through `orka-default` like MacStadium's clients).
    pub async fn list_vm_configs(&self) -> Result<Vec<VmConfig>, OrkaError> {
        self.get_items(&format!("/api/v1/namespaces/{DEFAULT_NAMESPACE}/vmconfigs"), "VM configs").await
    }

    /// The images (cluster-wide).
    pub async fn list_images(&self) -> Result<Vec<Image>, OrkaError> {
        self.get_items(&format!("/api/v1/namespaces/{DEFAULT_NAMESPACE}/images"), "images").await
    }

    pub(crate) fn ns_path(&self) -> String {
        format!("/api/v1/namespaces/{}", segment(&self.inner.config.namespace))
    }

    pub(crate) fn vm_path(&self, name: &str) -> String {
        format!("{}/vms/{}", self.ns_path(), segment(name))
    }

    async fn get_items<T: DeserializeOwned>(&self, path: &str, what: &str) -> Result<Vec<T>, OrkaError> {
        let response = self.request(Method::GET, path, what).await?;
        Ok(self.parse_ok::<Items<T>>(response, what)?.items)
    }

    /// An authenticated request with the ordinary timeout; non-2xx becomes an error.
    async fn request(&self, method: Method, path: &str, what: &str) -> Result<Response, OrkaError> {
        let timeout = Some(self.inner.config.request_timeout);
        let context = format!("{method} {what}");
        let response = self.inner.transport.send(method, path, None, true, timeout, &context).await?;
        if response.status.is_success() {
            Ok(response)
        } else {
            Err(self.inner.transport.error_for(&response, what))
        }
    }

    pub(crate) fn parse_ok<T: DeserializeOwned>(
        &self,
        response: Response,
        what: &str,
    ) -> Result<T, OrkaError> {
        if !response.status.is_success() {
            return Err(self.inner.transport.error_for(&response, what));
        }
        serde_json::from_slice(&response.body).map_err(|e| OrkaError::Protocol {
            context: what.to_owned(),
            message: format!("cannot parse the {} response: {e}", response.status.as_u16()),
        })
    }

    /// Converts a wire VM, mapping its IP. `strict` makes an unmapped IP an error;
    /// otherwise the address is dropped with a warning.
    pub(crate) fn to_vm(&self, wire: WireVm, fallback_name: &str, strict: bool) -> Result<Vm, OrkaError> {
        let status = wire.status();
        let name = if wire.name.is_empty() { fallback_name.to_owned() } else { wire.name };
        let ip = match (wire.ip, &self.inner.config.node_ip_mapping) {
            (Some(ip), Some(map)) => match map.map(&ip) {
                Ok(mapped) => Some(mapped),
                Err(e) if strict => return Err(e),
                Err(e) => {
                    tracing::warn!(vm = %name, error = &e as &dyn std::error::Error, "VM address dropped");
                    None
                }
            },
            (ip, _) => ip,
        };
        Ok(Vm { name, ip, ssh_port: wire.ssh, status, node: wire.node })
    }

    /// `GET …/vms/{name}` as the raw wire VM; `None` on 404.
    pub(crate) async fn get_wire_vm(&self, name: &str) -> Result<Option<WireVm>, OrkaError> {
        let timeout = Some(self.inner.config.request_timeout);
        let response = self
            .inner
            .transport
            .send(Method::GET, &self.vm_path(name), None, true, timeout, "GET VM")
            .await?;
        if response.status == http::StatusCode::NOT_FOUND {
            return Ok(None);
        }
        self.parse_ok(response, &format!("VM {name}")).map(Some)
    }

    async fn delete_once(&self, name: &str) -> Result<(), OrkaError> {
        let timeout = Some(self.inner.config.request_timeout);
        let response = self
            .inner
            .transport
            .send(Method::DELETE, &self.vm_path(name), None, true, timeout, "DELETE VM")
            .await?;
        // 404: already gone. Any 2xx body (empty, JSON, anything) is success.
        if response.status.is_success() || response.status == http::StatusCode::NOT_FOUND {
            Ok(())
        } else {
            Err(self.inner.transport.error_for(&response, &format!("VM {name}")))
        }
    }

    /// Idempotent delete with exponential backoff on 5xx, 429 (honouring `Retry-After`)
    /// and transport errors.
    pub(crate) async fn delete_with_retry(&self, name: &str) -> Result<(), OrkaError> {
        let policy = &self.inner.config.delete_retry;
        let backoff = ExponentialBuilder::default()
            .with_min_delay(policy.min_delay)
            .with_max_delay(policy.max_delay)
            .with_max_times(policy.max_retries)
            .with_jitter();
        (|| self.delete_once(name))
            .retry(backoff)
            .sleep(tokio::time::sleep)
            .when(|e| {
                matches!(
                    e,
                    OrkaError::Server { .. } | OrkaError::RateLimited { .. } | OrkaError::Transport { .. }
                )
            })
            .adjust(|e, delay| e.retry_after().or(delay))
            .notify(|e, delay| {
                tracing::warn!(
                    vm = name,
                    ?delay,
                    error = e as &dyn std::error::Error,
                    "VM delete failed, retrying"
                );
            })
            .await
    }
}

#[async_trait]
impl VmBackend for OrkaClient {
    async fn list_vms(&self) -> Result<Vec<Vm>, OrkaError> {
        let path = format!("{}/vms", self.ns_path());
        let items: Vec<WireVm> = self.get_items(&path, "VMs").await?;
        let mut vms = Vec::with_capacity(items.len());
        for item in items {
            if item.name.is_empty() {
                tracing::warn!("Orka listed a VM without a name; ignored");
                continue;
            }
            // An unmapped node IP must not hide the rest of the namespace (foreign VMs
            // can run on nodes we never map); deploy and get stay strict.
            vms.push(self.to_vm(item, "", false)?);
        }
        Ok(vms)
    }

    async fn get_vm(&self, name: &str) -> Result<Option<Vm>, OrkaError> {
        match self.get_wire_vm(name).await? {
            Some(wire) => self.to_vm(wire, name, true).map(Some),
            None => Ok(None),
        }
    }

    async fn deploy_vm(&self, request: &DeployRequest) -> Result<Vm, OrkaError> {
        self.deploy(request).await
    }

    async fn delete_vm(&self, name: &str) -> Result<(), OrkaError> {
        self.delete_with_retry(name).await
    }
}
