//! Client configuration: endpoint, token, namespace, timings, node-IP mapping and VM
//! metadata, plus the parsers for the Go integration's `ORKA_VM_METADATA` and
//! `ORKA_NODE_IP_MAPPING` formats.
//!
//! This module only validates values; it reads no environment variables (the binary does).

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use secrecy::SecretString;

use crate::OrkaError;

/// The namespace every Orka user can deploy to.
pub const DEFAULT_NAMESPACE: &str = "orka-default";

/// Everything the Orka client needs. Build with [`OrkaConfig::new`] and adjust fields.
///
/// `Debug` never shows the token (it is a [`SecretString`]).
#[derive(Clone, Debug)]
pub struct OrkaConfig {
    /// Orka API URL (`ORKA_URL`), `http://` or `https://`; a trailing slash is stripped.
    pub base_url: String,
    /// Bearer token (`ORKA_TOKEN`).
    pub token: SecretString,
    /// Namespace VMs live in (`ORKA_NAMESPACE`, default `orka-default`).
    pub namespace: String,
    /// Extra PEM CA bundle trusted in addition to the system roots (https only).
    pub extra_ca: Option<Vec<u8>>,
    /// Deploy budget used when a [`crate::DeployRequest`] carries a zero timeout.
    pub deploy_timeout: Duration,
    /// How much longer than the server-side deploy `timeout` the client waits, so the
    /// server gives up first and reports why.
    pub deploy_margin: Duration,
    /// Poll period while waiting for a deployed VM that is not yet `Running`.
    pub poll_interval: Duration,
    /// Timeout of every ordinary (non-deploy) request.
    pub request_timeout: Duration,
    /// TCP connect timeout.
    pub connect_timeout: Duration,
    /// Timeout of the unauthenticated `cluster-info` ping (fail fast when unreachable).
    pub ping_timeout: Duration,
    /// Node-IP → reachable-IP mapping (`ORKA_ENABLE_NODE_IP_MAPPING` + `ORKA_NODE_IP_MAPPING`).
    pub node_ip_mapping: Option<NodeIpMap>,
    /// Custom metadata sent with every deploy (`ORKA_VM_METADATA`); a request's own
    /// metadata wins on equal keys.
    pub metadata: BTreeMap<String, String>,
    /// Backoff of `delete_vm` on 5xx, 429 and transport errors.
    pub delete_retry: RetryPolicy,
    /// After cleaning up a deploy whose POST may still be in flight at Orka (client
    /// timeout, broken connection, caller gave up), look again after this delay and delete
    /// the VM if it appeared after all.
    pub cleanup_recheck: Duration,
    /// A 429 or 503 answer with a `Retry-After` of at most this long is sent again after
    /// the time asked for (by the transport, for every request), up to
    /// [`OrkaConfig::throttle_resends`] times; a longer wait, or a further refusal, is
    /// returned to the caller as the error.
    pub max_retry_after: Duration,
    /// How many times one request is sent again after a throttling answer.
    pub throttle_resends: u32,
}

impl OrkaConfig {
    /// A configuration with the documented defaults: namespace `orka-default`, deploy
    /// timeout 15 min (+90 s margin), polls every 2 s, requests 60 s, connect 10 s, ping 1 s,
    /// throttling answers honoured up to 60 s, 3 times per request.
    pub fn new(base_url: impl Into<String>, token: SecretString) -> Self {
        Self {
            base_url: base_url.into(),
            token,
            namespace: DEFAULT_NAMESPACE.to_owned(),
            extra_ca: None,
            deploy_timeout: Duration::from_secs(15 * 60),
            deploy_margin: Duration::from_secs(90),
            poll_interval: Duration::from_secs(2),
            request_timeout: Duration::from_secs(60),
            connect_timeout: Duration::from_secs(10),
            ping_timeout: Duration::from_secs(1),
            node_ip_mapping: None,
            metadata: BTreeMap::new(),
            delete_retry: RetryPolicy::default(),
            cleanup_recheck: Duration::from_secs(5),
            max_retry_after: Duration::from_secs(60),
            throttle_resends: 3,
        }
    }
}

/// Exponential backoff for idempotent calls the client retries itself.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RetryPolicy {
    /// First delay.
    pub min_delay: Duration,
    /// Largest delay.
    pub max_delay: Duration,
    /// Retries after the first attempt.
    pub max_retries: usize,
}

impl Default for RetryPolicy {
    /// 0.5 s doubling up to 10 s, 6 retries (about 30 s in total).
    fn default() -> Self {
        Self { min_delay: Duration::from_millis(500), max_delay: Duration::from_secs(10), max_retries: 6 }
    }
}

/// Validates and normalises an Orka base URL: `http(s)://host[:port][/path]`, no query,
/// trailing slashes stripped.
pub fn normalize_base_url(raw: &str) -> Result<String, OrkaError> {
    let trimmed = raw.trim().trim_end_matches('/');
    let parsed = url::Url::parse(trimmed)
        .map_err(|e| OrkaError::Config(format!("Orka URL {trimmed:?} is not a valid URL: {e}")))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(OrkaError::Config(format!("Orka URL {trimmed:?} must start with http:// or https://")));
    }
    if parsed.host_str().is_none_or(str::is_empty) {
        return Err(OrkaError::Config(format!("Orka URL {trimmed:?} has no host")));
    }
    if parsed.query().is_some() || parsed.fragment().is_some() {
        return Err(OrkaError::Config(format!("Orka URL {trimmed:?} must not have a query or fragment")));
    }
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Err(OrkaError::Config("Orka URL must not embed credentials; use ORKA_TOKEN".to_owned()));
    }
    Ok(trimmed.to_owned())
}

/// Checks an Orka namespace name: `orka-default`, or `orka-…` with lowercase letters,
/// digits and dashes, at most 63 characters.
pub fn validate_namespace(ns: &str) -> Result<(), OrkaError> {
    let ok = ns.len() <= 63
        && ns.starts_with("orka-")
        && ns.len() > "orka-".len()
        && ns.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !ns.ends_with('-');
    if ok {
        Ok(())
    } else {
        Err(OrkaError::Config(format!(
            "namespace {ns:?} is not an Orka namespace (orka-…, lowercase letters, digits, '-', ≤ 63 chars)"
        )))
    }
}

/// Parses `ORKA_VM_METADATA`: `key=value[,key=value…]`, keys and values of word characters
/// (`[A-Za-z0-9_]`), optional spaces after commas (the Go integration's rule
/// `^(\w+=\w+)(,\s*\w+=\w+)*$`). An empty string is no metadata.
pub fn parse_vm_metadata(raw: &str) -> Result<BTreeMap<String, String>, OrkaError> {
    let mut out = BTreeMap::new();
    if raw.is_empty() {
        return Ok(out);
    }
    let bad = || {
        OrkaError::Config(format!(
            "VM metadata {raw:?} must be key=value pairs separated by commas, using only letters, digits and '_'"
        ))
    };
    let is_word = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
    for (i, pair) in raw.split(',').enumerate() {
        // Whitespace is allowed only right after a comma.
        let pair = if i == 0 { pair } else { pair.trim_start_matches(|c: char| c.is_ascii_whitespace()) };
        let (key, value) = pair.split_once('=').ok_or_else(bad)?;
        if !is_word(key) || !is_word(value) {
            return Err(bad());
        }
        out.insert(key.to_owned(), value.to_owned());
    }
    Ok(out)
}

/// Node-IP → reachable-IP mapping. With mapping enabled, a VM on an unmapped node IP is an
/// error naming that IP (the Go integration's policy), never a silent fallback.
#[derive(Clone, PartialEq, Eq)]
pub struct NodeIpMap {
    map: BTreeMap<String, String>,
}

impl NodeIpMap {
    /// A mapping from explicit pairs; it must not be empty.
    pub fn new(map: BTreeMap<String, String>) -> Result<Self, OrkaError> {
        if map.is_empty() {
            return Err(OrkaError::Config(
                "node IP mapping is enabled but empty: provide at least one node IP mapping".to_owned(),
            ));
        }
        if let Some((k, v)) = map.iter().find(|(k, v)| k.trim().is_empty() || v.trim().is_empty()) {
            return Err(OrkaError::Config(format!("node IP mapping has an empty entry {k:?} → {v:?}")));
        }
        Ok(Self { map })
    }

    /// Parses `ORKA_NODE_IP_MAPPING`: a JSON object `{"<node ip>": "<public ip>", …}`.
    pub fn from_json(raw: &str) -> Result<Self, OrkaError> {
        let map: BTreeMap<String, String> = serde_json::from_str(raw).map_err(|e| {
            OrkaError::Config(format!(
                "node IP mapping must be a JSON object of strings like {{\"10.221.188.31\":\"203.0.113.7\"}}: {e}"
            ))
        })?;
        Self::new(map)
    }

    /// The mapping given the two Go variables' values: `None` when mapping is disabled.
    pub fn from_env_values(enabled: bool, mapping: Option<&str>) -> Result<Option<Self>, OrkaError> {
        if !enabled {
            return Ok(None);
        }
        Self::from_json(mapping.unwrap_or("")).map(Some)
    }

    /// The reachable address for `node_ip`, or an error naming the unmapped IP.
    pub fn map(&self, node_ip: &str) -> Result<String, OrkaError> {
        self.map.get(node_ip).cloned().ok_or_else(|| OrkaError::UnmappedNodeIp { ip: node_ip.to_owned() })
    }

    /// The pairs, for display.
    pub fn entries(&self) -> impl Iterator<Item = (&str, &str)> {
        self.map.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }
}

impl fmt::Debug for NodeIpMap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.map.iter()).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metadata_follows_the_go_rule() {
        let m = parse_vm_metadata("team=ios,owner=ci_bot, tier=2").unwrap();
        assert_eq!(m.get("team").map(String::as_str), Some("ios"));
        assert_eq!(m.get("tier").map(String::as_str), Some("2"));
        assert_eq!(m.len(), 3);
        assert!(parse_vm_metadata("").unwrap().is_empty());
        for bad in
            ["team", "team=", "=ios", "team=i-os", "a=b,", "a=b,,c=d", " a=b", "a=b ,c=d", "a=b=c", "ä=b"]
        {
            let err = parse_vm_metadata(bad).unwrap_err();
            assert!(matches!(err, OrkaError::Config(_)), "{bad:?} should be rejected");
        }
    }

    #[test]
    fn node_ip_mapping_parses_json_and_names_unmapped_ips() {
        let map = NodeIpMap::from_json(r#"{"10.221.188.31":"127.0.0.2"}"#).unwrap();
        assert_eq!(map.map("10.221.188.31").unwrap(), "127.0.0.2");
        let err = map.map("10.221.188.32").unwrap_err();
        assert!(err.to_string().contains("10.221.188.32"), "{err}");
        assert!(!err.is_retryable());
        assert!(NodeIpMap::from_json("{}").is_err());
        assert!(NodeIpMap::from_json("[1]").is_err());
        assert!(NodeIpMap::from_env_values(true, None).is_err());
        assert_eq!(NodeIpMap::from_env_values(false, Some("garbage")).unwrap(), None);
    }

    #[test]
    fn base_url_is_validated_and_trailing_slash_stripped() {
        assert_eq!(normalize_base_url("http://10.221.188.20/").unwrap(), "http://10.221.188.20");
        assert_eq!(normalize_base_url("https://acme.orka.app//").unwrap(), "https://acme.orka.app");
        assert_eq!(normalize_base_url("http://127.0.0.1:8080/orka/").unwrap(), "http://127.0.0.1:8080/orka");
        for bad in ["", "10.221.188.20", "ftp://x", "http://", "http://h/?a=1", "http://u:p@h"] {
            assert!(normalize_base_url(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn namespaces_follow_orka_rules() {
        validate_namespace("orka-default").unwrap();
        validate_namespace("orka-ci-2").unwrap();
        for bad in ["default", "orka-", "orka-CI", "orka-a_b", &format!("orka-{}", "a".repeat(59))] {
            assert!(validate_namespace(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn debug_never_shows_the_token() {
        let config = OrkaConfig::new("http://127.0.0.1", SecretString::from("s3cr3t-token-value"));
        let debug = format!("{config:?}");
        assert!(!debug.contains("s3cr3t-token-value"), "{debug}");
    }
}
