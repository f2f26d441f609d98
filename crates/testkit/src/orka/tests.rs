//! Tests of the fake Orka on its own, over raw HTTP/1.1 on loopback (no Orka client):
//! the `/__fake/` control API, auth, validation, scheduling and server-side timeouts.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::*;

struct Reply {
    status: u16,
    headers: String,
    body: String,
}

impl Reply {
    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }
}

async fn call(fake: &FakeOrka, method: &str, path: &str, token: Option<&str>, body: Option<Value>) -> Reply {
    let mut socket = tokio::net::TcpStream::connect(fake.addr()).await.unwrap();
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    let auth = token.map(|t| format!("Authorization: Bearer {t}\r\n")).unwrap_or_default();
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: fake\r\n{auth}Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    socket.write_all(request.as_bytes()).await.unwrap();
    let mut raw = String::new();
    tokio::time::timeout(Duration::from_secs(20), socket.read_to_string(&mut raw)).await.unwrap().unwrap();
    let (head, body) = raw.split_once("\r\n\r\n").unwrap_or((&raw, ""));
    let status = head.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    Reply { status, headers: head.to_owned(), body: body.to_owned() }
}

async fn api(fake: &FakeOrka, method: &str, path: &str, body: Option<Value>) -> Reply {
    let token = fake.token();
    call(fake, method, path, Some(&token), body).await
}

const VMS: &str = "/api/v1/namespaces/orka-default/vms";

fn fast() -> FakeOrkaConfig {
    FakeOrkaConfig::default().boot_delay(Duration::from_millis(10))
}

#[tokio::test]
async fn control_api_seeds_and_reports_state_and_journal_over_http() {
    let fake = FakeOrka::start(fast()).await.unwrap();
    let seeded = call(&fake, "POST", "/__fake/vms", None, Some(json!({"name": "foreign-1"}))).await;
    assert_eq!(seeded.status, 201, "{}", seeded.body);
    assert_eq!(seeded.json()["status"], "Running");
    assert_eq!(seeded.json()["ssh"], 8822);

    let listed = api(&fake, "GET", VMS, None).await;
    assert_eq!(listed.json()["items"][0]["name"], "foreign-1");
    assert_eq!(listed.json()["items"][0]["ip"], "127.0.0.2");

    let state = call(&fake, "GET", "/__fake/state", None, None).await.json();
    assert_eq!(state["vms"][0]["name"], "foreign-1");
    assert_eq!(state["vms"][0]["seeded"], true);
    assert_eq!(state["peak_vms"], 1);
    let journal = call(&fake, "GET", "/__fake/journal", None, None).await.json();
    assert_eq!(journal.as_array().unwrap().len(), 1, "control calls are not journaled: {journal}");
    assert_eq!(journal[0]["path"], VMS);
    assert_eq!(journal[0]["status"], 200);
    assert_eq!(call(&fake, "DELETE", "/__fake/journal", None, None).await.status, 204);
    assert!(fake.journal().is_empty());

    let duplicate = call(&fake, "POST", "/__fake/vms", None, Some(json!({"name": "foreign-1"}))).await;
    assert_eq!(duplicate.status, 400);
}

#[tokio::test]
async fn faults_are_armed_and_cleared_over_http() {
    let fake = FakeOrka::start(fast()).await.unwrap();
    let fault =
        json!({"fault": {"HttpError": {"route": "ListVms", "status": 503, "body": "Empty"}}, "times": 2});
    assert_eq!(call(&fake, "POST", "/__fake/faults", None, Some(fault)).await.status, 204);
    assert_eq!(api(&fake, "GET", VMS, None).await.status, 503);
    assert_eq!(api(&fake, "GET", VMS, None).await.body, "");
    assert_eq!(api(&fake, "GET", VMS, None).await.status, 200, "armed for exactly two calls");

    let limited = json!({"fault": {"RateLimited": {"route": "Any", "retry_after_secs": 3}}});
    call(&fake, "POST", "/__fake/faults", None, Some(limited)).await;
    let reply = api(&fake, "GET", "/api/v1/namespaces/orka-default/nodes", None).await;
    assert_eq!(reply.status, 429);
    assert!(reply.headers.to_ascii_lowercase().contains("retry-after: 3"), "{}", reply.headers);

    fake.inject_times(Fault::HttpError { route: Route::Any, status: 500, body: ErrorBody::Html }, 5);
    assert_eq!(fake.state().faults.len(), 1);
    assert_eq!(call(&fake, "DELETE", "/__fake/faults", None, None).await.status, 204);
    assert_eq!(api(&fake, "GET", VMS, None).await.status, 200);
}

#[tokio::test]
async fn vanish_fail_and_tokens_over_http() {
    let fake = FakeOrka::start(fast()).await.unwrap();
    fake.seed_vm(SeedVm::running("a-1")).await.unwrap();
    fake.seed_vm(SeedVm::running("b-1")).await.unwrap();
    assert_eq!(call(&fake, "POST", "/__fake/vms/a-1/vanish", None, None).await.status, 204);
    assert_eq!(call(&fake, "POST", "/__fake/vms/a-1/vanish", None, None).await.status, 404);
    assert_eq!(api(&fake, "GET", &format!("{VMS}/a-1"), None).await.status, 404);
    let failed =
        call(&fake, "POST", "/__fake/vms/b-1/fail", None, Some(json!({"message": "disk full"}))).await;
    assert_eq!(failed.status, 204);
    let vm = api(&fake, "GET", &format!("{VMS}/b-1"), None).await.json();
    assert_eq!((vm["status"].as_str(), vm["errorMessage"].as_str()), (Some("Failed"), Some("disk full")));

    let token = json!({"value": "team-token", "expires_after_ms": null, "namespaces": ["orka-team"]});
    assert_eq!(call(&fake, "POST", "/__fake/tokens", None, Some(token)).await.status, 204);
    let forbidden = call(&fake, "GET", VMS, Some("team-token"), None).await;
    assert_eq!(forbidden.status, 403);
    assert_eq!(forbidden.json()["reason"], "Forbidden");
    assert_eq!(call(&fake, "POST", "/__fake/tokens/fake-orka-token/expire", None, None).await.status, 204);
    let expired = api(&fake, "GET", VMS, None).await;
    assert_eq!((expired.status, expired.json()["message"].as_str()), (401, Some("Unauthorized")));
}

#[tokio::test]
async fn every_api_call_but_cluster_info_needs_a_valid_token() {
    let fake = FakeOrka::start(fast()).await.unwrap();
    assert_eq!(call(&fake, "GET", "/api/v1/cluster-info", None, None).await.status, 200);
    for path in [VMS, "/api/v1/namespaces/orka-default/nodes", "/api/v1/namespaces/orka-default/vmconfigs"] {
        let reply = call(&fake, "GET", path, None, None).await;
        assert_eq!(reply.status, 401, "{path}");
        assert_eq!(reply.json()["kind"], "Status");
        assert_eq!(call(&fake, "GET", path, Some("wrong"), None).await.status, 401);
    }
    assert_eq!(api(&fake, "GET", "/api/v1/namespaces/orka-nope/vms", None).await.status, 404);
}

#[tokio::test]
async fn deploy_validates_like_orka() {
    let fake = FakeOrka::start(fast()).await.unwrap();
    let cases = [
        (json!({"name": "Bad_Name", "vmConfig": "ci-sonoma"}), 422),
        (json!({"name": "x".repeat(64), "vmConfig": "ci-sonoma"}), 422),
        (json!({"name": "ok-1"}), 400),
        (json!({"name": "ok-1", "vmConfig": "nope"}), 404),
        (json!({"name": "ok-1", "image": "nope.orkasi"}), 404),
    ];
    for (body, status) in cases {
        let reply = api(&fake, "POST", VMS, Some(body.clone())).await;
        assert_eq!(reply.status, status, "{body}: {}", reply.body);
    }
    assert_eq!(api(&fake, "POST", VMS, None).await.status, 400, "no body");
    assert!(fake.vms().is_empty());

    // Field names are case-insensitive, unknown fields ignored, OCI images accepted.
    let body = json!({"NAME": "oci-1", "Image": "ghcr.io/macstadium/orka-images/sonoma:latest", "cpu": 4,
        "memory": 0, "someFutureField": {"x": 1}, "customvmmetadata": {"team": "ios"}});
    let reply = api(&fake, "POST", VMS, Some(body)).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    let vm = fake.vm("oci-1").unwrap();
    assert_eq!((vm.cpu, vm.memory_gb), (4, 8.0), "memory 0 = automatic");
    assert_eq!(vm.metadata.get("team").map(String::as_str), Some("ios"));

    let again = api(&fake, "POST", VMS, Some(json!({"name": "oci-1", "vmConfig": "ci-sonoma"}))).await;
    assert_eq!((again.status, again.json()["reason"].as_str()), (409, Some("AlreadyExists")));
}

#[tokio::test]
async fn scheduling_honours_node_tags_and_strategy() {
    let mut config = fast();
    let mut tagged = NodeSpec::new("tagged", "127.0.0.4");
    tagged.tags = vec!["gpu".into()];
    tagged.max_vms = 4;
    let mut plain = NodeSpec::new("plain", "127.0.0.5");
    plain.max_vms = 4;
    config.namespaces[0].nodes = vec![plain, tagged];
    let fake = FakeOrka::start(config).await.unwrap();

    let deploy = |name: &str, extra: Value| {
        let mut body = json!({"name": name, "vmConfig": "ci-sonoma"});
        body.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        body
    };
    let r = api(&fake, "POST", VMS, Some(deploy("t-1", json!({"tag": "gpu", "tagRequired": true})))).await;
    assert_eq!(r.json()["node"], "tagged");
    let r = api(&fake, "POST", VMS, Some(deploy("p-1", json!({"node": "plain"})))).await;
    assert_eq!(r.json()["node"], "plain");
    // most-allocated packs onto the fullest node; default spreads to the emptiest.
    let r =
        api(&fake, "POST", VMS, Some(deploy("m-1", json!({"scheduler": "most-allocated", "cpu": 2})))).await;
    let packed = r.json()["node"].as_str().unwrap().to_owned();
    let r = api(&fake, "POST", VMS, Some(deploy("s-1", json!({})))).await;
    assert_ne!(r.json()["node"].as_str().unwrap(), packed, "default spreads");
    let nodes = api(&fake, "GET", "/api/v1/namespaces/orka-default/nodes", None).await.json();
    let counts: Vec<u64> =
        nodes["items"].as_array().unwrap().iter().map(|n| n["vmCount"].as_u64().unwrap()).collect();
    assert_eq!(counts.iter().sum::<u64>(), 4);
}

#[tokio::test]
async fn server_timeout_leaves_a_pending_vm_behind() {
    let fake = FakeOrka::start(FakeOrkaConfig::with_capacity(1, 1).minute(Duration::from_millis(100)))
        .await
        .unwrap();
    fake.seed_vm(SeedVm::running("blocker")).await.unwrap();
    let reply =
        api(&fake, "POST", VMS, Some(json!({"name": "late-1", "vmConfig": "ci-sonoma", "timeout": 2}))).await;
    assert_eq!(reply.status, 500);
    assert!(reply.json()["message"].as_str().unwrap().contains("timed out"));
    let orphan = fake.vm("late-1").expect("the Pending VM stays behind");
    assert_eq!(orphan.status, FakeVmStatus::Pending);

    // Once capacity frees, the orphan boots with nobody owning it — why clients delete by name.
    assert!(fake.vanish("blocker"));
    let mut running = false;
    for _ in 0..500 {
        if fake.vm("late-1").is_some_and(|vm| vm.status == FakeVmStatus::Running) {
            running = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(running, "the orphan eventually runs");
    assert_eq!(fake.peak_vms(), 2);
}

struct FixedProvider;

#[async_trait]
impl VmProvider for FixedProvider {
    async fn boot(&self, vm_name: &str) -> anyhow::Result<(String, u16)> {
        if vm_name.starts_with("broken") {
            anyhow::bail!("no SSH for you");
        }
        Ok(("127.0.0.77".to_owned(), 2222))
    }
    async fn destroy(&self, _vm_name: &str) {}
}

#[tokio::test]
async fn a_provider_supplies_endpoints_for_deployed_and_seeded_vms() {
    let fake = FakeOrka::start(fast()).await.unwrap();
    fake.set_provider(Arc::new(FixedProvider));
    let seeded = fake.seed_vm(SeedVm::running("seed-1")).await.unwrap();
    assert_eq!((seeded.ip.as_deref(), seeded.ssh), (Some("127.0.0.77"), Some(2222)));
    let pending = fake.seed_vm(SeedVm::running("seed-2").with_status(FakeVmStatus::Pending)).await.unwrap();
    assert_eq!(pending.status, FakeVmStatus::Pending);

    let reply = api(&fake, "POST", VMS, Some(json!({"name": "dep-1", "vmConfig": "ci-sonoma"}))).await;
    assert_eq!((reply.json()["ip"].as_str(), reply.json()["ssh"].as_u64()), (Some("127.0.0.77"), Some(2222)));
    let reply = api(&fake, "POST", VMS, Some(json!({"name": "broken-1", "vmConfig": "ci-sonoma"}))).await;
    assert_eq!(reply.status, 500);
    assert_eq!(fake.vm("broken-1").unwrap().status, FakeVmStatus::Failed);
    assert!(fake.seed_vm(SeedVm::running("broken-2")).await.is_err());
    assert!(fake.vm("broken-2").is_none(), "a failed seed leaves nothing");
}

#[tokio::test]
async fn delete_frees_capacity_and_ports() {
    let fake = FakeOrka::start(FakeOrkaConfig::with_capacity(1, 2).boot_delay(Duration::from_millis(5)))
        .await
        .unwrap();
    let first = api(&fake, "POST", VMS, Some(json!({"name": "v-1", "vmConfig": "ci-sonoma"}))).await.json();
    let second = api(&fake, "POST", VMS, Some(json!({"name": "v-2", "vmConfig": "ci-sonoma"}))).await.json();
    assert_eq!((first["ssh"].as_u64(), second["ssh"].as_u64()), (Some(8822), Some(8823)));
    let deleted = api(&fake, "DELETE", &format!("{VMS}/v-1"), None).await;
    assert_eq!((deleted.status, deleted.body.as_str()), (200, ""));
    assert_eq!(api(&fake, "DELETE", &format!("{VMS}/v-1"), None).await.status, 404);
    let third = api(&fake, "POST", VMS, Some(json!({"name": "v-3", "vmConfig": "ci-sonoma"}))).await.json();
    assert_eq!(third["ssh"].as_u64(), Some(8822), "the freed port is reused");
    assert_eq!(fake.peak_vms(), 2);
    api(&fake, "DELETE", &format!("{VMS}/v-3"), None).await;
    fake.reset_peak();
    assert_eq!(fake.peak_vms(), 1);
}
