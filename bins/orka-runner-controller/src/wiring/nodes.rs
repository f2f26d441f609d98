//! Orka's nodes for `status`, read through the Orka client of a scale set's namespace.

use std::sync::Arc;

use orka_client::OrkaClient;

use crate::status::{NodeSource, OrkaNodes};

/// The nodes API of one namespace.
pub(super) struct OrkaNodeSource(pub(super) Arc<OrkaClient>);

#[async_trait::async_trait]
impl NodeSource for OrkaNodeSource {
    async fn nodes(&self) -> Result<OrkaNodes, String> {
        let nodes = self.0.list_nodes().await.map_err(|e| e.to_string())?;
        let ready: Vec<_> = nodes.iter().filter(|n| n.is_ready()).collect();
        Ok(OrkaNodes {
            ready: u32::try_from(ready.len()).unwrap_or(u32::MAX),
            total: u32::try_from(nodes.len()).unwrap_or(u32::MAX),
            available_cpu: ready.iter().filter_map(|n| n.available_cpu).sum(),
        })
    }
}
