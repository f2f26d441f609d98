//! Endpoints, configuration, lenient parsing, node-IP mapping, metadata, cancellation
//! and shouldGenerateName, against the fake over loopback (token redaction: `redaction.rs`).

use std::collections::BTreeMap;
use std::time::Duration;

use orka_client::{NodeIpMap, OrkaClient, OrkaError, VmBackend, VmStatus, parse_vm_metadata};
use secrecy::SecretString;
use testkit::orka::{FakeOrka, FakeOrkaConfig, Fault, NamespaceSpec, NodeSpec, SeedVm};

use crate::common::*;

#[tokio::test]
async fn ping_sends_no_token_and_returns_cluster_info() {
    let (fake, client) = start(fake_config()).await;
    let info = bounded(client.ping()).await.unwrap();
    assert_eq!(info.api_domain.as_deref(), Some("fake-orka.local"));
    let pings = calls(&fake, "GET", "/api/v1/cluster-info");
    assert_eq!(pings.len(), 1);
    assert_eq!(pings[0].authorization, None, "cluster-info is called without the token");
}

#[tokio::test]
async fn check_token_accepts_a_good_token_and_rejects_a_bad_one() {
    let (fake, client) = start(fake_config()).await;
    bounded(client.check_token()).await.unwrap();
    let bad =
        OrkaClient::new(orka_client::OrkaConfig::new(fake.url(), SecretString::from("wrong-token"))).unwrap();
    let err = bounded(bad.check_token()).await.unwrap_err();
    assert!(matches!(&err, OrkaError::Unauthorized { message } if message.contains("Unauthorized")), "{err}");
}

#[tokio::test]
async fn lists_nodes_configs_and_images() {
    let (fake, client) = start(fake_config()).await;
    let nodes = bounded(client.list_nodes()).await.unwrap();
    assert_eq!(nodes.iter().map(|n| n.name.as_str()).collect::<Vec<_>>(), ["mini-1", "mini-2"]);
    assert!(nodes.iter().all(|n| n.is_ready() && n.allocatable_cpu == Some(12)));
    assert_eq!(nodes[0].node_ip.as_deref(), Some("127.0.0.2"));
    let configs = bounded(client.list_vm_configs()).await.unwrap();
    assert_eq!(configs[0].name, "ci-sonoma");
    assert_eq!(configs[0].cpu, Some(3));
    let images = bounded(client.list_images()).await.unwrap();
    assert_eq!(images[0].name, "sonoma-90gb.orkasi");
    assert_eq!(images[0].arch.as_deref(), Some("arm64"));
    drop(fake);
}

#[tokio::test]
async fn node_capacity_is_reported_after_deploys() {
    let (_fake, client) = start(fake_config()).await;
    bounded(client.deploy_vm(&request())).await.unwrap();
    let nodes = bounded(client.list_nodes()).await.unwrap();
    let free: u32 = nodes.iter().map(|n| n.available_cpu.unwrap()).sum();
    assert_eq!(free, 24 - 3);
}

#[tokio::test]
async fn vms_are_listed_and_fetched_with_their_endpoints() {
    let (fake, client) = start(fake_config()).await;
    let a = bounded(client.deploy_vm(&request())).await.unwrap();
    let b = bounded(client.deploy_vm(&request())).await.unwrap();
    // The default scheduler spreads: one VM per node, both on port 8822 of their node.
    assert_ne!(a.node, b.node);
    assert_eq!((a.ssh_port, b.ssh_port), (Some(8822), Some(8822)));
    let c = bounded(client.deploy_vm(&request())).await.unwrap();
    assert_eq!(c.ssh_port, Some(8823), "ports are allocated per node from 8822");

    let listed = bounded(client.list_vms()).await.unwrap();
    assert_eq!(listed.len(), 3);
    let got = bounded(client.get_vm(&a.name)).await.unwrap().unwrap();
    assert_eq!(got, a);
    assert_eq!(bounded(client.get_vm("mac-nope0")).await.unwrap(), None);
    assert_eq!(fake.peak_vms(), 3);
}

#[tokio::test]
async fn a_pending_vm_is_visible_while_the_deploy_blocks() {
    // A full cluster keeps the VM Pending until the blocker goes.
    let (fake, client) =
        start(FakeOrkaConfig::with_capacity(1, 1).boot_delay(Duration::from_millis(10))).await;
    fake.seed_vm(SeedVm::running("blocker")).await.unwrap();
    let request = request();
    let name = request.name.to_string();
    let deploy = tokio::spawn({
        let client = client.clone();
        async move { client.deploy_vm(&request).await }
    });
    wait_pending(&fake, &name).await;
    let seen = bounded(client.get_vm(&name)).await.unwrap().expect("visible while pending");
    assert_eq!(seen.status, VmStatus::Pending);
    assert_eq!(seen.ssh_endpoint(), None, "a pending VM has no endpoint yet");
    assert!(fake.vanish("blocker"));
    assert_eq!(bounded(deploy).await.unwrap().unwrap().status, VmStatus::Running);
}

#[tokio::test]
async fn the_server_timeout_is_whole_minutes_of_the_budget() {
    let (fake, client) = start(fake_config()).await;
    for (budget, minutes) in
        [(Duration::ZERO, 15), (Duration::from_secs(90), 1), (Duration::from_secs(600), 10)]
    {
        let mut request = request();
        request.timeout = budget; // zero = the configured deploy_timeout (15 min)
        bounded(client.deploy_vm(&request)).await.unwrap();
        let body = deploys(&fake).last().unwrap().body.clone().unwrap();
        assert_eq!(body["timeout"], minutes, "{budget:?}");
    }
}

#[tokio::test]
async fn metadata_from_config_and_request_is_sent_as_custom_vm_metadata() {
    let fake = FakeOrka::start(fake_config()).await.unwrap();
    let mut config = client_config(&fake);
    config.metadata = parse_vm_metadata("team=ios,pool=default").unwrap();
    let client = OrkaClient::new(config).unwrap();
    let mut request = request();
    request.metadata = BTreeMap::from([("pool".to_owned(), "large".to_owned())]);
    let vm = bounded(client.deploy_vm(&request)).await.unwrap();

    let body = deploys(&fake)[0].body.clone().unwrap();
    assert_eq!(body["customVMMetadata"], serde_json::json!({"team": "ios", "pool": "large"}));
    let stored = fake.vm(&vm.name).unwrap().metadata;
    assert_eq!(stored.get("team").map(String::as_str), Some("ios"));
    assert_eq!(stored.get("pool").map(String::as_str), Some("large"));
}

fn private_ip_config() -> FakeOrkaConfig {
    let mut config = fake_config();
    config.namespaces[0].nodes =
        vec![NodeSpec::new("mini-a", "10.221.188.31"), NodeSpec::new("mini-b", "10.221.188.32")];
    config
}

#[tokio::test]
async fn node_ip_mapping_rewrites_the_vm_address() {
    let fake = FakeOrka::start(private_ip_config()).await.unwrap();
    let mut config = client_config(&fake);
    config.node_ip_mapping =
        Some(NodeIpMap::from_json(r#"{"10.221.188.31":"127.0.0.31","10.221.188.32":"127.0.0.32"}"#).unwrap());
    let client = OrkaClient::new(config).unwrap();
    let vm = bounded(client.deploy_vm(&request())).await.unwrap();
    assert_eq!(vm.ip.as_deref(), Some("127.0.0.31"));
    assert_eq!(fake.vm(&vm.name).unwrap().ip.as_deref(), Some("10.221.188.31"), "Orka reports the node IP");
    let got = bounded(client.get_vm(&vm.name)).await.unwrap().unwrap();
    assert_eq!(got.ip.as_deref(), Some("127.0.0.31"));
}

#[tokio::test]
async fn an_unmapped_node_ip_fails_the_deploy_naming_the_ip_and_deletes_the_vm() {
    let fake = FakeOrka::start(private_ip_config()).await.unwrap();
    let mut config = client_config(&fake);
    config.node_ip_mapping = Some(NodeIpMap::from_json(r#"{"10.221.188.99":"127.0.0.99"}"#).unwrap());
    let client = OrkaClient::new(config).unwrap();
    let err = bounded(client.deploy_vm(&request())).await.unwrap_err();
    assert!(matches!(&err, OrkaError::UnmappedNodeIp { ip } if ip == "10.221.188.31"), "{err}");
    assert!(err.to_string().contains("10.221.188.31"));
    assert_no_vms(&fake);

    // get is strict too; list keeps going but drops the unusable address.
    fake.seed_vm(SeedVm::running("foreign-vm")).await.unwrap();
    assert!(matches!(bounded(client.get_vm("foreign-vm")).await, Err(OrkaError::UnmappedNodeIp { .. })));
    let listed = bounded(client.list_vms()).await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].ip, None);
}

#[tokio::test]
async fn custom_namespace_and_201_and_json_delete_bodies_are_handled() {
    let mut config = fake_config();
    config
        .namespaces
        .push(NamespaceSpec { name: "orka-ci".into(), nodes: vec![NodeSpec::new("ci-1", "127.0.0.9")] });
    config.deploy_status = 201;
    config.delete_json_body = true;
    let fake = FakeOrka::start(config).await.unwrap();
    let mut client_config = client_config(&fake);
    client_config.namespace = "orka-ci".into();
    let client = OrkaClient::new(client_config).unwrap();
    let vm = bounded(client.deploy_vm(&request())).await.unwrap();
    assert_eq!(vm.node.as_deref(), Some("ci-1"));
    assert_eq!(fake.vm(&vm.name).unwrap().namespace, "orka-ci");
    assert!(deploys(&fake)[0].path.starts_with("/api/v1/namespaces/orka-ci/"));
    bounded(client.delete_vm(&vm.name)).await.unwrap();
    assert_no_vms(&fake);
}

#[tokio::test]
async fn an_unknown_namespace_or_config_is_a_final_not_found() {
    let fake = FakeOrka::start(fake_config()).await.unwrap();
    let mut config = client_config(&fake);
    config.namespace = "orka-missing".into();
    let client = OrkaClient::new(config).unwrap();
    let err = bounded(client.list_vms()).await.unwrap_err();
    assert!(matches!(err, OrkaError::NotFound { .. }) && !err.is_retryable(), "{err}");

    let client = OrkaClient::new(client_config(&fake)).unwrap();
    let mut request = request();
    request.vm_config = "no-such-config".into();
    let err = bounded(client.deploy_vm(&request)).await.unwrap_err();
    assert!(matches!(&err, OrkaError::NotFound { what } if what.contains("no-such-config")), "{err}");
    assert_no_vms(&fake);
}

#[tokio::test]
async fn deletion_lag_is_tolerated() {
    let mut config = fake_config();
    config.delete_lag = Duration::from_secs(1);
    let (fake, client) = start(config).await;
    let vm = bounded(client.deploy_vm(&request())).await.unwrap();
    bounded(client.delete_vm(&vm.name)).await.unwrap();
    assert!(fake.vm(&vm.name).is_some_and(|v| v.deleting), "still visible while deleting");
    bounded(client.delete_vm(&vm.name)).await.expect("deleting twice is fine");
    eventually("the VM is gone after the lag", || fake.vms().is_empty()).await;
}

#[tokio::test]
async fn a_deploy_abandoned_by_the_caller_deletes_its_vm_in_the_background() {
    let (fake, client) = start(fake_config().boot_delay(Duration::from_secs(20))).await;
    let request = request();
    let name = request.name.to_string();
    let attempt = tokio::time::timeout(Duration::from_millis(300), client.deploy_vm(&request)).await;
    assert!(attempt.is_err(), "the caller gave up");
    eventually("a DELETE is sent", || !calls(&fake, "DELETE", &format!("/vms/{name}")).is_empty()).await;
    eventually("the abandoned VM is deleted", || fake.vms().is_empty()).await;
}

#[tokio::test]
async fn a_vm_created_after_its_cleanup_delete_is_caught_by_the_recheck() {
    // Orka holds the POST before creating the VM; the client gives up first, its DELETE
    // finds nothing (404), and the VM appears afterwards.
    let (fake, _) = start(fake_config()).await;
    fake.inject(Fault::Hang { route: testkit::orka::Route::Deploy, delay_ms: 3_000 });
    let mut config = client_config(&fake);
    config.deploy_margin = Duration::from_millis(900);
    config.cleanup_recheck = Duration::from_millis(3_500);
    let client = OrkaClient::new(config).unwrap();
    let mut request = request();
    request.timeout = Duration::from_millis(100);
    let name = request.name.to_string();

    let err = bounded(client.deploy_vm(&request)).await.unwrap_err();
    assert!(matches!(err, OrkaError::DeployTimedOut { .. }), "{err}");
    assert_eq!(deploys(&fake).len(), 1, "Orka received the POST within the 1 s deadline");
    let first = calls(&fake, "DELETE", &format!("/vms/{name}"));
    assert_eq!(first.len(), 1);
    assert_eq!(first[0].status, Some(404), "the DELETE came before Orka created the VM");
    eventually("Orka creates the VM after all", || fake.vm(&name).is_some()).await;
    eventually("the re-check deletes it", || fake.vms().is_empty()).await;
    assert_eq!(calls(&fake, "DELETE", &format!("/vms/{name}")).len(), 2);
}

#[tokio::test]
async fn a_deploy_abandoned_during_its_cleanup_still_deletes_the_vm() {
    let (fake, client) = start(fake_config()).await;
    fake.inject(Fault::DeployFailure { message: "boom".into() });
    // The cleanup DELETE hangs, and the caller gives up meanwhile.
    fake.inject(Fault::Hang { route: testkit::orka::Route::DeleteVm, delay_ms: 20_000 });
    let request = request();
    let name = request.name.to_string();
    let attempt = tokio::time::timeout(Duration::from_secs(2), client.deploy_vm(&request)).await;
    assert!(attempt.is_err(), "the caller gave up during cleanup");
    eventually("the background delete removes the VM", || fake.vms().is_empty()).await;
    assert!(
        calls(&fake, "DELETE", &format!("/vms/{name}")).len() >= 2,
        "cleanup was retried in the background"
    );
}

#[tokio::test]
async fn should_generate_name_is_supported_by_the_fake() {
    // The client always names VMs itself; the fake still implements server-side names
    // for other clients (TeamCity / the CLI's --generate-name).
    let fake = FakeOrka::start(fake_config()).await.unwrap();
    let body = serde_json::json!({"name": "ci", "shouldGenerateName": true, "VMCONFIG": "ci-sonoma"});
    let response = raw_post(&fake, "/api/v1/namespaces/orka-default/vms", &body.to_string()).await;
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    let vm = fake.vms().pop().unwrap();
    assert!(vm.name.starts_with("ci-") && vm.name.len() == 8, "{}", vm.name);
}

/// A minimal HTTP/1.1 POST over a raw socket (keeps the fake independent of our client).
async fn raw_post(fake: &FakeOrka, path: &str, body: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut socket = tokio::net::TcpStream::connect(fake.addr()).await.unwrap();
    let request = format!(
        "POST {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        fake.token(),
        body.len()
    );
    socket.write_all(request.as_bytes()).await.unwrap();
    let mut out = String::new();
    bounded(socket.read_to_string(&mut out)).await.unwrap();
    out
}
