//! Orka's JSON, read leniently (docs/protocol/orka.md#vm-object, docs/protocol/orka.md#conventions)
//! and written exactly.
//!
//! Owns the wire models and their conversion into this crate's public types. Ports are
//! accepted as integers, numeric strings, `null` or absent; unknown fields are ignored;
//! error bodies may be Kubernetes `Status` objects, other JSON, HTML or empty.
//! It does not know HTTP status semantics (see `status`) or node-IP mapping.

use std::collections::BTreeMap;

use serde::{Deserialize, Deserializer, Serialize};
use serde_json::Value;

use crate::VmStatus;

/// Longest piece of a non-JSON error body kept in an error message.
const MAX_RAW_ERROR: usize = 300;

/// A VM as the gateway returns it (deploy, get, list items).
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct WireVm {
    #[serde(default)]
    pub name: String,
    #[serde(default, deserialize_with = "lenient_string")]
    pub ip: Option<String>,
    #[serde(default, deserialize_with = "lenient_port")]
    pub ssh: Option<u16>,
    #[serde(default, alias = "phase", deserialize_with = "lenient_string")]
    pub status: Option<String>,
    #[serde(default, alias = "nodeName", deserialize_with = "lenient_string")]
    pub node: Option<String>,
    #[serde(default, rename = "errorMessage", alias = "error", deserialize_with = "lenient_string")]
    pub error_message: Option<String>,
}

impl WireVm {
    pub fn status(&self) -> VmStatus {
        VmStatus::parse(self.status.as_deref().unwrap_or("Pending"))
    }
}

/// `{"items": [...]}`; a missing or null `items` is an empty list.
#[derive(Debug, Deserialize)]
#[serde(bound(deserialize = "T: Deserialize<'de>"))]
pub(crate) struct Items<T> {
    #[serde(default = "Vec::new", deserialize_with = "null_as_empty")]
    pub items: Vec<T>,
}

/// The deploy body. Field names are Orka's camelCase; metadata goes in
/// `customVMMetadata` (the CRD's name; the gateway's is unverified, unconfirmed,
/// docs/protocol/orka.md#metadata).
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct WireDeploy<'a> {
    pub name: &'a str,
    pub vm_config: &'a str,
    /// Server-side deploy timeout in minutes.
    pub timeout: u64,
    #[serde(rename = "customVMMetadata", skip_serializing_if = "BTreeMap::is_empty")]
    pub custom_vm_metadata: &'a BTreeMap<String, String>,
}

/// Connectivity information returned by `GET /api/v1/cluster-info`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ClusterInfo {
    /// The Kubernetes API endpoint behind the gateway.
    #[serde(default, deserialize_with = "lenient_string")]
    pub api_endpoint: Option<String>,
    /// TLS server name of the Kubernetes API.
    #[serde(default, deserialize_with = "lenient_string")]
    pub api_domain: Option<String>,
    /// Whether GPU passthrough is enabled on the cluster.
    #[serde(default, deserialize_with = "lenient_bool")]
    pub gpu_passthrough_enabled: bool,
}

/// A VM config (template) VMs are deployed from.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VmConfig {
    /// Config name (`ORKA_VM_CONFIG`).
    pub name: String,
    /// Image the config deploys.
    #[serde(default, deserialize_with = "lenient_string")]
    pub image: Option<String>,
    /// CPU cores.
    #[serde(default, deserialize_with = "lenient_u32")]
    pub cpu: Option<u32>,
    /// Memory in GiB (0 or absent = automatic).
    #[serde(default, deserialize_with = "lenient_f64")]
    pub memory: Option<f64>,
}

/// An image known to the cluster.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Image {
    /// Image name, e.g. `sonoma-90gb.orkasi`.
    pub name: String,
    /// Free-text description.
    #[serde(default, deserialize_with = "lenient_string")]
    pub description: Option<String>,
    /// Architecture (`arm64` / `amd64`), the gateway's `type`.
    #[serde(default, rename = "type", deserialize_with = "lenient_string")]
    pub arch: Option<String>,
}

/// A node of the namespace.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Node {
    /// Node name.
    pub name: String,
    /// The node's IP (VM `ip` of NAT-networked VMs).
    #[serde(default, rename = "nodeIP", alias = "nodeIp", deserialize_with = "lenient_string")]
    pub node_ip: Option<String>,
    /// CPU cores allocatable to VMs.
    #[serde(default, deserialize_with = "lenient_u32")]
    pub allocatable_cpu: Option<u32>,
    /// CPU cores still free.
    #[serde(default, deserialize_with = "lenient_u32")]
    pub available_cpu: Option<u32>,
    /// Node phase, `READY` / `NOT READY`.
    #[serde(default, deserialize_with = "lenient_string")]
    pub phase: Option<String>,
}

impl Node {
    /// Whether the node reports itself ready (case-insensitive `READY`).
    pub fn is_ready(&self) -> bool {
        self.phase.as_deref().is_some_and(|p| p.eq_ignore_ascii_case("ready"))
    }
}

/// Parses the body of a VM list response (`{"items":[…]}`) the way `list_vms` reads
/// it, without node-address mapping: unnamed entries are skipped. Public so that the
/// fuzz targets (tests/fuzz) can reach the wire parser.
#[doc(hidden)]
pub fn parse_vm_list(body: &[u8]) -> Result<Vec<crate::Vm>, serde_json::Error> {
    let items: Items<WireVm> = serde_json::from_slice(body)?;
    Ok(items
        .items
        .into_iter()
        .filter(|vm| !vm.name.is_empty())
        .map(|vm| crate::Vm {
            status: vm.status(),
            name: vm.name,
            ip: vm.ip,
            ssh_port: vm.ssh,
            node: vm.node,
        })
        .collect())
}

/// The human-readable message of an error body: a JSON `message` (Kubernetes `Status`),
/// else a JSON `error`, else the raw text (whitespace collapsed, truncated), else empty.
pub(crate) fn error_message(body: &[u8]) -> String {
    if let Ok(value) = serde_json::from_slice::<Value>(body) {
        for key in ["message", "error", "Message"] {
            if let Some(text) = value.get(key).and_then(Value::as_str) {
                return text.to_owned();
            }
        }
        let first_error = value.get("errors").and_then(|e| e.get(0)).and_then(|e| e.get("message"));
        if let Some(text) = first_error.and_then(Value::as_str) {
            return text.to_owned();
        }
    }
    let text = String::from_utf8_lossy(body);
    let collapsed = text.split_whitespace().collect::<Vec<_>>().join(" ");
    match collapsed.char_indices().nth(MAX_RAW_ERROR) {
        Some((cut, _)) => format!("{}…", &collapsed[..cut]),
        None => collapsed,
    }
}

fn lenient_string<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    Ok(match Option::<Value>::deserialize(d)? {
        Some(Value::String(s)) if !s.trim().is_empty() => Some(s),
        Some(Value::Number(n)) => Some(n.to_string()),
        Some(Value::Bool(b)) => Some(b.to_string()),
        _ => None,
    })
}

fn lenient_port<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u16>, D::Error> {
    use serde::de::Error;
    match Option::<Value>::deserialize(d)? {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.trim().is_empty() => Ok(None),
        Some(Value::String(s)) => s
            .trim()
            .parse::<u16>()
            .map(Some)
            .map_err(|_| D::Error::custom(format!("port {s:?} is not a number"))),
        Some(Value::Number(n)) => n
            .as_u64()
            .and_then(|p| u16::try_from(p).ok())
            .map(Some)
            .ok_or_else(|| D::Error::custom(format!("port {n} is out of range"))),
        Some(other) => Err(D::Error::custom(format!("port {other} has an unexpected type"))),
    }
}

fn lenient_f64<'de, D: Deserializer<'de>>(d: D) -> Result<Option<f64>, D::Error> {
    Ok(match Option::<Value>::deserialize(d)? {
        Some(Value::Number(n)) => n.as_f64(),
        // "8G", "8Gi", "8.5" → 8 / 8 / 8.5
        Some(Value::String(s)) => {
            s.trim().trim_end_matches(|c: char| c.is_ascii_alphabetic()).trim().parse::<f64>().ok()
        }
        _ => None,
    })
}

fn lenient_u32<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u32>, D::Error> {
    Ok(lenient_f64(d)?.filter(|v| *v >= 0.0 && *v <= f64::from(u32::MAX)).map(|v| v as u32))
}

fn lenient_bool<'de, D: Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    Ok(match Option::<Value>::deserialize(d)? {
        Some(Value::Bool(b)) => b,
        Some(Value::String(s)) => s.eq_ignore_ascii_case("true"),
        _ => false,
    })
}

fn null_as_empty<'de, D: Deserializer<'de>, T: Deserialize<'de>>(d: D) -> Result<Vec<T>, D::Error> {
    Ok(Option::<Vec<T>>::deserialize(d)?.unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_are_int_string_null_or_absent_and_unknown_fields_ignored() {
        let vm: WireVm = serde_json::from_str(
            r#"{"name":"a-1","ip":"10.0.0.1","ssh":8822,"status":"Running","extra":{"x":[1]},"memory":"8G"}"#,
        )
        .unwrap();
        assert_eq!((vm.ssh, vm.status()), (Some(8822), VmStatus::Running));
        let vm: WireVm = serde_json::from_str(r#"{"name":"a","ssh":"9281","errorMessage":"boom"}"#).unwrap();
        assert_eq!(vm.error_message.as_deref(), Some("boom"));
        assert_eq!(vm.ssh, Some(9281));
        assert_eq!(vm.status(), VmStatus::Pending, "absent status means not running yet");
        let vm: WireVm = serde_json::from_str(r#"{"name":"a","ssh":null,"ip":""}"#).unwrap();
        assert_eq!((vm.ssh, vm.ip), (None, None));
        assert!(serde_json::from_str::<WireVm>(r#"{"name":"a","ssh":"twenty-two"}"#).is_err());
        assert!(serde_json::from_str::<WireVm>(r#"{"name":"a","ssh":70000}"#).is_err());
    }

    #[test]
    fn error_messages_come_from_status_json_or_raw_bodies() {
        let status = br#"{"kind":"Status","status":"Failure","message":"vm \"x\" not found","code":404}"#;
        assert_eq!(error_message(status), "vm \"x\" not found");
        assert_eq!(
            error_message(b"<html>\n<body>502 Bad   Gateway</body></html>"),
            "<html> <body>502 Bad Gateway</body></html>"
        );
        assert_eq!(error_message(b""), "");
        assert_eq!(error_message(&[b'x'; 1000]).chars().count(), MAX_RAW_ERROR + 1);
    }

    #[test]
    fn lists_tolerate_null_items_and_odd_number_types() {
        let nodes: Items<Node> = serde_json::from_str(
            r#"{"items":[{"name":"n1","nodeIP":"10.0.0.3","allocatableCpu":"8","availableCpu":4,"phase":"ready","allocatableMemory":"64G"}]}"#,
        )
        .unwrap();
        assert_eq!(nodes.items[0].allocatable_cpu, Some(8));
        assert!(nodes.items[0].is_ready());
        let empty: Items<Image> = serde_json::from_str(r#"{"items":null}"#).unwrap();
        assert!(empty.items.is_empty());
        let configs: Items<VmConfig> =
            serde_json::from_str(r#"{"items":[{"name":"c","cpu":4,"memory":"8G","image":"sonoma"}]}"#)
                .unwrap();
        assert_eq!(configs.items[0].memory, Some(8.0));
    }

    #[test]
    fn deploy_body_uses_orka_field_names() {
        let meta = BTreeMap::from([("team".to_owned(), "ios".to_owned())]);
        let body = serde_json::to_value(WireDeploy {
            name: "mac-abcde",
            vm_config: "sonoma",
            timeout: 15,
            custom_vm_metadata: &meta,
        })
        .unwrap();
        assert_eq!(
            body,
            serde_json::json!({"name":"mac-abcde","vmConfig":"sonoma","timeout":15,"customVMMetadata":{"team":"ios"}})
        );
        let none = BTreeMap::new();
        let body = serde_json::to_value(WireDeploy {
            name: "a",
            vm_config: "c",
            timeout: 1,
            custom_vm_metadata: &none,
        })
        .unwrap();
        assert!(body.get("customVMMetadata").is_none());
    }
}
