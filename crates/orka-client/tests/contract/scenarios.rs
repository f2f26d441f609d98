//! The test scenarios of docs/protocol/orka.md#scenarios, against the fake over loopback.
//! (Scenario 9, SSH slow start, belongs to vm-probe: the Orka side ends at a `Running`
//! VM with a connectable endpoint, proven by scenario 1.)

use std::time::Duration;

use backon::{ConstantBuilder, Retryable};
use orka_client::naming::is_owned_by;
use orka_client::{OrkaError, VmBackend, VmStatus};
use testkit::orka::{CapacityMode, ErrorBody, FakeOrkaConfig, Fault, Route, SeedVm};

use crate::common::*;

/// S1 (docs/protocol/orka.md#scenarios): Happy path: deploy from config → the endpoint accepts TCP
/// → delete; the journal
/// shows the POST with our generated name and `timeout`, then the DELETE.
#[tokio::test]
async fn scenario_1_happy_path_deploy_connect_delete() {
    let (fake, client) = start(fake_config()).await;
    let provider = TcpProvider::new();
    fake.set_provider(provider.clone());
    let request = request();

    let vm = bounded(client.deploy_vm(&request)).await.expect("deploy succeeds");
    assert_eq!(vm.name, request.name.to_string());
    assert_eq!(vm.status, VmStatus::Running);
    let (ip, port) = vm.ssh_endpoint().expect("a running VM has an SSH endpoint");
    tokio::net::TcpStream::connect((ip.as_str(), port)).await.expect("the reported endpoint is connectable");

    bounded(client.delete_vm(&vm.name)).await.expect("delete succeeds");
    assert_no_vms(&fake);
    assert!(provider.destroyed.lock().unwrap().contains(&vm.name), "the VM's endpoint is torn down");

    let journal = fake.journal();
    let post = journal.iter().position(|e| e.is("POST", "/vms")).expect("a deploy POST");
    let body = journal[post].body.clone().expect("deploy has a body");
    assert_eq!(body["name"], vm.name.as_str());
    assert_eq!(body["vmConfig"], "ci-sonoma");
    assert_eq!(body["timeout"], 1, "60 s budget = 1 server-side minute");
    assert_eq!(journal[post].authorization.as_deref(), Some("Bearer fake-orka-token"));
    let delete = journal.iter().position(|e| e.is("DELETE", &format!("/vms/{}", vm.name))).expect("a DELETE");
    assert!(delete > post);
}

/// S2 (docs/protocol/orka.md#scenarios): The deploy times out client-side → exactly one DELETE for
/// that name; no VM left.
#[tokio::test]
async fn scenario_2_client_side_timeout_deletes_exactly_once() {
    let (fake, client) = start(fake_config()).await;
    fake.inject(Fault::SlowDeploy { delay_ms: 20_000 });
    let mut request = request();
    request.timeout = Duration::from_millis(300); // + 500 ms margin; server minute is 60 s

    let err = bounded(client.deploy_vm(&request)).await.unwrap_err();
    assert!(matches!(err, OrkaError::DeployTimedOut { .. }), "{err}");
    assert!(err.is_retryable());
    let name = request.name.to_string();
    assert_eq!(calls(&fake, "DELETE", &format!("/vms/{name}")).len(), 1, "exactly one DELETE");
    assert_no_vms(&fake);
}

/// S3 (docs/protocol/orka.md#scenarios): Capacity exhausted then freed → the caller retries with
/// backoff and succeeds.
#[tokio::test]
async fn scenario_3_capacity_exhausted_then_freed() {
    let mut config = FakeOrkaConfig::with_capacity(1, 1).boot_delay(Duration::from_millis(20));
    config.capacity_mode = CapacityMode::Reject { status: 500 };
    let (fake, client) = start(config).await;
    fake.seed_vm(SeedVm::running("other-team-vm")).await.unwrap();

    let err = bounded(client.deploy_vm(&request())).await.unwrap_err();
    assert!(matches!(err, OrkaError::CapacityExhausted { .. }) && err.is_retryable(), "{err}");
    assert!(fake.vm("other-team-vm").is_some(), "cleanup never touches other VMs");
    assert_eq!(fake.vms().len(), 1, "the failed deploy left nothing");

    // Free the slot shortly; the caller's backoff loop (what the provisioner does) wins.
    let freer = {
        let client = client.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(150)).await;
            client.delete_vm("other-team-vm").await
        })
    };
    let request = request();
    let vm = bounded(
        (|| client.deploy_vm(&request))
            .retry(ConstantBuilder::default().with_delay(Duration::from_millis(50)).with_max_times(100))
            .when(OrkaError::is_retryable),
    )
    .await
    .expect("deploy succeeds once capacity frees");
    freer.await.unwrap().unwrap();
    assert_eq!(vm.status, VmStatus::Running);
    assert!(deploys(&fake).len() >= 2, "it took retries");
    assert_eq!(fake.vms().len(), 1, "only the successful VM exists");
}

/// S4 (docs/protocol/orka.md#scenarios): 409 on the name → a new name, success; the other VM is untouched.
#[tokio::test]
async fn scenario_4_name_conflict_regenerates_the_name() {
    let (fake, client) = start(fake_config()).await;
    let request = request();
    let taken = request.name.to_string();
    fake.seed_vm(SeedVm::running(&taken)).await.unwrap();

    let vm = bounded(client.deploy_vm(&request)).await.expect("deploy succeeds under a new name");
    assert_ne!(vm.name, taken);
    assert!(is_owned_by(SCALE_SET, &vm.name), "{} keeps our scale-set prefix", vm.name);
    assert!(fake.vm(&taken).is_some_and(|v| v.seeded), "the conflicting VM is not ours to delete");
    assert!(calls(&fake, "DELETE", "").is_empty(), "nothing was deleted");
    let posts = deploys(&fake);
    assert_eq!(posts.len(), 2);
    assert_eq!(posts[0].status, Some(409));
}

/// S5 (docs/protocol/orka.md#scenarios): Token expired mid-run → an auth error, no retry storm.
#[tokio::test]
async fn scenario_5_token_expired_mid_run() {
    let (fake, client) = start(fake_config()).await;
    let vm = bounded(client.deploy_vm(&request())).await.unwrap();
    fake.expire_token(&fake.token());

    let err = bounded(client.list_vms()).await.unwrap_err();
    assert!(matches!(err, OrkaError::Unauthorized { .. }) && !err.is_retryable(), "{err}");
    let err = bounded(client.deploy_vm(&request())).await.unwrap_err();
    assert!(matches!(err, OrkaError::Unauthorized { .. }), "{err}");
    let err = bounded(client.delete_vm(&vm.name)).await.unwrap_err();
    assert!(matches!(err, OrkaError::Unauthorized { .. }), "{err}");

    assert_eq!(deploys(&fake).len(), 2, "one POST per deploy call, no retries");
    assert_eq!(calls(&fake, "DELETE", &format!("/vms/{}", vm.name)).len(), 1, "401 on delete is not retried");
    assert!(err.to_string().contains("401"));
}

/// S6 (docs/protocol/orka.md#scenarios): The VM vanishes during the job → GET says gone, list omits
/// it, delete is OK.
#[tokio::test]
async fn scenario_6_vm_vanishes_during_the_job() {
    let (fake, client) = start(fake_config()).await;
    let provider = TcpProvider::new();
    fake.set_provider(provider.clone());
    let vm = bounded(client.deploy_vm(&request())).await.unwrap();
    assert_eq!(provider.live(), 1);

    assert!(fake.vanish(&vm.name));
    assert_eq!(bounded(client.get_vm(&vm.name)).await.unwrap(), None);
    assert!(bounded(client.list_vms()).await.unwrap().iter().all(|v| v.name != vm.name));
    eventually("the vanished VM's endpoint is destroyed", || provider.live() == 0).await;
    bounded(client.delete_vm(&vm.name)).await.expect("404 on delete is success");
    let deletes = calls(&fake, "DELETE", &format!("/vms/{}", vm.name));
    assert_eq!(deletes.len(), 1);
    assert_eq!(deletes[0].status, Some(404));
}

/// S7 (docs/protocol/orka.md#scenarios): A 502 burst on list/delete → list reports a retryable
/// error, delete retries
/// by itself; the state ends consistent.
#[tokio::test]
async fn scenario_7_502_burst_on_list_and_delete() {
    let (fake, client) = start(fake_config()).await;
    let vm = bounded(client.deploy_vm(&request())).await.unwrap();
    fake.inject_times(Fault::HttpError { route: Route::ListVms, status: 502, body: ErrorBody::Html }, 2);
    fake.inject_times(Fault::HttpError { route: Route::DeleteVm, status: 502, body: ErrorBody::Html }, 3);

    let list = || client.list_vms();
    let vms = bounded(
        list.retry(ConstantBuilder::default().with_delay(Duration::from_millis(10)).with_max_times(5))
            .when(OrkaError::is_retryable),
    )
    .await
    .expect("list succeeds after the burst");
    assert_eq!(vms.len(), 1);

    bounded(client.delete_vm(&vm.name)).await.expect("delete retries through the burst");
    let deletes = calls(&fake, "DELETE", &format!("/vms/{}", vm.name));
    assert_eq!(deletes.iter().map(|d| d.status.unwrap()).collect::<Vec<_>>(), [502, 502, 502, 200]);
    assert_no_vms(&fake);
    assert!(bounded(client.list_vms()).await.unwrap().is_empty());
}

/// S8 (docs/protocol/orka.md#scenarios): GC: stray VMs with our prefix and foreign VMs → only ours
/// are deleted
/// (list returns everything; ownership is decided client-side by exact name).
#[tokio::test]
async fn scenario_8_gc_deletes_only_our_vms() {
    let (fake, client) = start(FakeOrkaConfig::with_capacity(3, 2)).await;
    let ours = ["mac-abcde", "mac-12345"];
    let foreign = ["mac-large-x7k2p", "linux-abcde", "mac-toolong1"];
    for name in ours.iter().chain(&foreign) {
        fake.seed_vm(SeedVm::running(name)).await.unwrap();
    }

    let listed = bounded(client.list_vms()).await.unwrap();
    assert_eq!(listed.len(), 5, "list returns foreign VMs too");
    for vm in listed.iter().filter(|vm| is_owned_by(SCALE_SET, &vm.name)) {
        bounded(client.delete_vm(&vm.name)).await.unwrap();
    }
    let mut left: Vec<String> = fake.vms().into_iter().map(|vm| vm.name).collect();
    left.sort();
    let mut expected: Vec<String> = foreign.iter().map(|s| s.to_string()).collect();
    expected.sort();
    assert_eq!(left, expected);
}
