//! Every fault of docs/protocol/orka.md#fault-cases, by name (the SSH faults belong to vm-probe).
//! Every failing deploy must leave no VM in the fake.

use std::sync::Arc;
use std::time::Duration;

use orka_client::{OrkaClient, OrkaError, VmBackend, VmStatus};
use testkit::orka::{
    CapacityMode, ErrorBody, FakeOrkaConfig, FakeVmStatus, Fault, Malformed, Route, SeedVm, TokenSpec,
};

use crate::common::*;

#[tokio::test]
async fn slow_deploy_beyond_the_client_deadline_is_deleted() {
    let (fake, client) = start(fake_config()).await;
    fake.inject(Fault::SlowDeploy { delay_ms: 20_000 });
    let mut request = request();
    request.timeout = Duration::from_millis(200);
    let err = bounded(client.deploy_vm(&request)).await.unwrap_err();
    assert!(matches!(err, OrkaError::DeployTimedOut { .. }), "{err}");
    assert_no_vms(&fake);
}

#[tokio::test]
async fn slow_deploy_beyond_the_server_timeout_is_reported_by_the_server_and_deleted() {
    // One server minute = 100 ms; the client waits 60 s + margin, so the server answers first.
    let (fake, client) = start(fake_config().minute(Duration::from_millis(100))).await;
    fake.inject(Fault::SlowDeploy { delay_ms: 20_000 });
    let err = bounded(client.deploy_vm(&request())).await.unwrap_err();
    assert!(
        matches!(&err, OrkaError::DeployFailed { message, .. } if message.contains("timed out")),
        "{err}"
    );
    assert!(err.is_retryable());
    assert_no_vms(&fake);
}

#[tokio::test]
async fn slow_deploy_within_the_deadline_succeeds() {
    let (fake, client) = start(fake_config()).await;
    fake.inject(Fault::SlowDeploy { delay_ms: 2_000 });
    let request = request();
    let deploy = tokio::spawn({
        let client = client.clone();
        let request = request.clone();
        async move { client.deploy_vm(&request).await }
    });
    wait_pending(&fake, &request.name.to_string()).await;
    let vm = bounded(deploy).await.unwrap().unwrap();
    assert_eq!(vm.status, VmStatus::Running);
}

#[tokio::test]
async fn deploy_failure_vm_failed_is_deleted_and_retryable() {
    let (fake, client) = start(fake_config()).await;
    fake.inject(Fault::DeployFailure { message: "image pull failed".into() });
    let request = request();
    let err = bounded(client.deploy_vm(&request)).await.unwrap_err();
    assert!(
        matches!(&err, OrkaError::DeployFailed { message, .. } if message.contains("image pull failed")),
        "{err}"
    );
    assert!(err.is_retryable());
    assert_eq!(calls(&fake, "DELETE", &format!("/vms/{}", request.name)).len(), 1);
    assert_no_vms(&fake);
}

#[tokio::test]
async fn capacity_exhausted_fast_with_any_status_is_retryable_and_leaves_no_vm() {
    let (fake, client) = start(fake_config()).await;
    for status in [500, 400, 409] {
        fake.inject(Fault::CapacityExhaustedFast { status });
        let err = bounded(client.deploy_vm(&request())).await.unwrap_err();
        assert!(matches!(err, OrkaError::CapacityExhausted { .. }), "{status}: {err}");
        assert!(err.is_retryable());
        assert_no_vms(&fake);
    }
    assert_eq!(deploys(&fake).len(), 3, "capacity errors are not retried inside the client");
}

#[tokio::test]
async fn capacity_exhausted_by_real_usage_in_reject_mode() {
    let mut config = FakeOrkaConfig::with_capacity(1, 1).boot_delay(Duration::from_millis(10));
    config.capacity_mode = CapacityMode::Reject { status: 409 };
    let (fake, client) = start(config).await;
    let first = bounded(client.deploy_vm(&request())).await.unwrap();
    let err = bounded(client.deploy_vm(&request())).await.unwrap_err();
    assert!(
        matches!(err, OrkaError::CapacityExhausted { .. }),
        "a 409 about capacity is not a name conflict: {err}"
    );
    assert_eq!(fake.vms().len(), 1);
    assert_eq!(fake.vms()[0].name, first.name);
}

#[tokio::test]
async fn capacity_exhausted_slow_pending_vm_is_deleted() {
    // One server minute = 500 ms: long enough to observe the Pending VM.
    let (fake, client) = start(fake_config().minute(Duration::from_millis(500))).await;
    fake.inject(Fault::CapacityExhaustedSlow);
    let request = request();
    let name = request.name.to_string();
    let deploy = tokio::spawn({
        let client = client.clone();
        async move { client.deploy_vm(&request).await }
    });
    wait_pending(&fake, &name).await;
    let err = bounded(deploy).await.unwrap().unwrap_err();
    assert!(matches!(err, OrkaError::DeployFailed { .. }) && err.is_retryable(), "{err}");
    assert_no_vms(&fake);
}

#[tokio::test]
async fn capacity_frees_mid_wait_and_the_pending_deploy_succeeds() {
    let (fake, client) =
        start(FakeOrkaConfig::with_capacity(1, 1).boot_delay(Duration::from_millis(10))).await;
    fake.seed_vm(SeedVm::running("blocker")).await.unwrap();
    let request = request();
    let name = request.name.to_string();
    let deploy = tokio::spawn({
        let client = client.clone();
        async move { client.deploy_vm(&request).await }
    });
    let pending = wait_pending(&fake, &name).await;
    assert_eq!(pending.node, None, "not scheduled while the node is full");
    assert!(fake.vanish("blocker"));
    let vm = bounded(deploy).await.unwrap().expect("deploy succeeds once capacity frees");
    assert_eq!(vm.name, name);
    assert_eq!(vm.ssh_port, Some(8822), "the freed port is reused");
}

#[tokio::test]
async fn vm_vanishing_makes_get_none_and_delete_ok() {
    let (fake, client) = start(fake_config()).await;
    let vm = bounded(client.deploy_vm(&request())).await.unwrap();
    assert!(fake.vanish(&vm.name));
    assert_eq!(bounded(client.get_vm(&vm.name)).await.unwrap(), None);
    bounded(client.delete_vm(&vm.name)).await.unwrap();
}

#[tokio::test]
async fn vm_turns_failed_after_running_is_visible_and_deletable() {
    let (fake, client) = start(fake_config()).await;
    let provider = TcpProvider::new();
    fake.set_provider(provider.clone());
    let vm = bounded(client.deploy_vm(&request())).await.unwrap();
    assert!(fake.fail(&vm.name, "kernel panic"));
    let seen = bounded(client.get_vm(&vm.name)).await.unwrap().expect("a Failed VM still exists");
    assert_eq!(seen.status, VmStatus::Failed);
    eventually("the failed VM's SSH endpoint drops", || provider.live() == 0).await;
    bounded(client.delete_vm(&vm.name)).await.unwrap();
    assert_no_vms(&fake);
}

#[tokio::test]
async fn duplicate_name_twice_is_a_conflict_and_deletes_nothing() {
    let (fake, client) = start(fake_config()).await;
    fake.inject_times(Fault::HttpError { route: Route::Deploy, status: 409, body: ErrorBody::Json }, 2);
    let err = bounded(client.deploy_vm(&request())).await.unwrap_err();
    assert!(matches!(err, OrkaError::NameConflict { .. }), "{err}");
    assert_eq!(deploys(&fake).len(), 2, "the name is regenerated exactly once");
    assert!(calls(&fake, "DELETE", "").is_empty(), "a conflicting VM is never ours to delete");
}

#[tokio::test]
async fn duplicate_name_reported_as_400_or_500_is_still_a_conflict() {
    for status in [400, 500] {
        let mut config = fake_config();
        config.conflict_status = status;
        let (fake, client) = start(config).await;
        let request = request();
        fake.seed_vm(SeedVm::running(&request.name.to_string())).await.unwrap();
        let vm = bounded(client.deploy_vm(&request)).await.expect("regenerated name succeeds");
        assert_ne!(vm.name, request.name.to_string());
        assert!(calls(&fake, "DELETE", "").is_empty(), "{status}: the other VM must not be deleted");
        assert_eq!(fake.vms().len(), 2);
    }
}

#[tokio::test]
async fn server_errors_with_html_or_empty_bodies_are_retryable_with_readable_messages() {
    let (fake, client) = start(fake_config()).await;
    fake.inject(Fault::HttpError { route: Route::ListVms, status: 502, body: ErrorBody::Html });
    let err = bounded(client.list_vms()).await.unwrap_err();
    assert!(
        matches!(&err, OrkaError::Server { status: 502, message } if message.contains("502 Bad Gateway")),
        "{err}"
    );
    assert!(err.is_retryable());

    fake.inject(Fault::HttpError { route: Route::ListNodes, status: 503, body: ErrorBody::Empty });
    let err = bounded(client.list_nodes()).await.unwrap_err();
    assert!(
        matches!(&err, OrkaError::Server { status: 503, message } if message == "Service Unavailable"),
        "{err}"
    );

    for (status, body) in [(502, ErrorBody::Html), (504, ErrorBody::Empty), (503, ErrorBody::Json)] {
        fake.inject(Fault::HttpError { route: Route::Deploy, status, body });
        let err = bounded(client.deploy_vm(&request())).await.unwrap_err();
        assert!(matches!(err, OrkaError::Server { status: s, .. } if s == status), "{err}");
        assert!(err.is_retryable());
        assert_no_vms(&fake);
    }

    fake.inject(Fault::HttpError { route: Route::Deploy, status: 500, body: ErrorBody::Html });
    let err = bounded(client.deploy_vm(&request())).await.unwrap_err();
    assert!(matches!(err, OrkaError::DeployFailed { .. }) && err.is_retryable(), "{err}");
    assert_no_vms(&fake);
}

#[tokio::test]
async fn rate_limited_429_surfaces_retry_after_and_delete_honours_it() {
    let (fake, client) = start(fake_config()).await;
    fake.inject(Fault::RateLimited { route: Route::ListVms, retry_after_secs: Some(7) });
    let err = bounded(client.list_vms()).await.unwrap_err();
    assert_eq!(err.retry_after(), Some(Duration::from_secs(7)));
    assert!(err.is_retryable());

    fake.inject(Fault::RateLimited { route: Route::Deploy, retry_after_secs: None });
    let err = bounded(client.deploy_vm(&request())).await.unwrap_err();
    assert!(matches!(err, OrkaError::RateLimited { retry_after: None }), "{err}");
    assert_no_vms(&fake);

    let vm = bounded(client.deploy_vm(&request())).await.unwrap();
    fake.inject(Fault::RateLimited { route: Route::DeleteVm, retry_after_secs: Some(1) });
    bounded(client.delete_vm(&vm.name)).await.unwrap();
    let deletes = calls(&fake, "DELETE", &format!("/vms/{}", vm.name));
    assert_eq!(deletes.len(), 2);
    assert!(deletes[1].at_ms - deletes[0].at_ms >= 900, "Retry-After: 1 was honoured: {deletes:?}");
    assert_no_vms(&fake);
}

#[tokio::test]
async fn throttling_answers_with_a_short_retry_after_are_sent_again_after_the_wait() {
    let (fake, client) = start(fake_config()).await;
    // The ingress's 503 with Retry-After: the list is asked again after 1 s and succeeds.
    fake.inject(Fault::Unavailable { route: Route::ListVms, retry_after_secs: Some(1) });
    assert!(bounded(client.list_vms()).await.unwrap().is_empty());
    let lists: Vec<_> = fake.journal().into_iter().filter(|e| e.is("GET", "/vms")).collect();
    assert_eq!(lists.len(), 2, "{lists:?}");
    assert!(lists[1].at_ms - lists[0].at_ms >= 900, "Retry-After: 1 was honoured: {lists:?}");

    // A throttled deploy was not acted on: sending it again creates exactly one VM.
    fake.inject(Fault::RateLimited { route: Route::Deploy, retry_after_secs: Some(1) });
    let vm = bounded(client.deploy_vm(&request())).await.unwrap();
    assert_eq!(deploys(&fake).len(), 2);
    assert_eq!(fake.vms().len(), 1);
    assert_eq!(fake.vms()[0].name, vm.name);
}

#[tokio::test]
async fn throttling_that_persists_or_asks_too_long_reaches_the_caller() {
    let (fake, client) = start(fake_config()).await;
    // Four refusals in a row: the first answer and three resends, then the error.
    fake.inject_times(Fault::Unavailable { route: Route::ListNodes, retry_after_secs: Some(0) }, 10);
    let err = bounded(client.list_nodes()).await.unwrap_err();
    assert!(matches!(err, OrkaError::Server { status: 503, .. }) && err.is_retryable(), "{err}");
    let nodes = fake.journal().into_iter().filter(|e| e.is("GET", "/nodes")).count();
    assert_eq!(nodes, 4);

    // Retry-After beyond what we wait: one request, the wait handed to the caller.
    fake.inject(Fault::RateLimited { route: Route::Deploy, retry_after_secs: Some(30) });
    let err = bounded(client.deploy_vm(&request())).await.unwrap_err();
    assert_eq!(err.retry_after(), Some(Duration::from_secs(30)));
    assert_eq!(deploys(&fake).len(), 1);
    assert_no_vms(&fake);
}

#[tokio::test]
async fn token_expiry_is_a_final_auth_error_and_deploys_leave_nothing() {
    let mut config = fake_config();
    config.tokens = vec![TokenSpec {
        value: "short-lived-token".into(),
        expires_after_ms: Some(2_000),
        namespaces: None,
    }];
    let started = tokio::time::Instant::now();
    let (fake, client) = start(config).await;
    bounded(client.check_token()).await.expect("valid at first");
    tokio::time::sleep_until(started + Duration::from_millis(2_100)).await;
    let err = bounded(client.check_token()).await.unwrap_err();
    assert!(matches!(err, OrkaError::Unauthorized { .. }) && !err.is_retryable(), "{err}");
    let err = bounded(client.deploy_vm(&request())).await.unwrap_err();
    assert!(matches!(err, OrkaError::Unauthorized { .. }), "{err}");
    assert_eq!(deploys(&fake).len(), 1);
    assert_no_vms(&fake);
}

#[tokio::test]
async fn namespace_forbidden_is_final_and_leaves_nothing() {
    let mut config = fake_config();
    config.tokens = vec![TokenSpec {
        value: "team-token".into(),
        expires_after_ms: None,
        namespaces: Some(vec!["orka-team".into()]),
    }];
    let (fake, client) = start(config).await;
    let err = bounded(client.check_token()).await.unwrap_err();
    assert!(matches!(err, OrkaError::Forbidden { .. }) && !err.is_retryable(), "{err}");
    let err = bounded(client.deploy_vm(&request())).await.unwrap_err();
    assert!(matches!(err, OrkaError::Forbidden { .. }), "{err}");
    assert_eq!(deploys(&fake).len(), 1, "403 is not retried");
    assert_no_vms(&fake);
}

#[tokio::test]
async fn not_found_on_delete_is_success() {
    let (fake, client) = start(fake_config()).await;
    bounded(client.delete_vm("mac-ghost")).await.expect("deleting a missing VM succeeds");
    let deletes = calls(&fake, "DELETE", "/vms/mac-ghost");
    assert_eq!(deletes.len(), 1);
    assert_eq!(deletes[0].status, Some(404));
}

#[tokio::test]
async fn unreachable_api_fails_fast_and_clearly() {
    let (mut fake, client) = start(fake_config()).await;
    // cluster-info hangs well beyond the 2 s ping timeout.
    fake.inject(Fault::Hang { route: Route::ClusterInfo, delay_ms: 20_000 });
    let err = bounded(client.ping()).await.unwrap_err();
    assert!(matches!(err, OrkaError::Transport { .. }) && err.is_retryable(), "{err}");
    assert!(err.to_string().contains("ping"), "{err}");

    fake.stop().await;
    let err = bounded(client.ping()).await.unwrap_err();
    assert!(matches!(err, OrkaError::Transport { .. }), "{err}");
    let err = bounded(client.deploy_vm(&request())).await.unwrap_err();
    assert!(matches!(err, OrkaError::Transport { .. }) && err.is_retryable(), "{err}");
}

#[tokio::test]
async fn malformed_success_missing_ssh_is_recovered_by_polling() {
    let (fake, client) = start(fake_config()).await;
    fake.inject(Fault::MalformedSuccess { route: Route::Deploy, shape: Malformed::MissingSsh });
    let vm = bounded(client.deploy_vm(&request())).await.expect("the GET supplies the port");
    assert_eq!(vm.ssh_port, Some(8822));
    assert_eq!(calls(&fake, "GET", &format!("/vms/{}", vm.name)).len(), 1);
}

#[tokio::test]
async fn malformed_success_running_without_ssh_twice_is_a_protocol_error_and_deleted() {
    let (fake, client) = start(fake_config()).await;
    fake.inject(Fault::MalformedSuccess { route: Route::Deploy, shape: Malformed::MissingSsh });
    fake.inject(Fault::MalformedSuccess { route: Route::GetVm, shape: Malformed::MissingSsh });
    let err = bounded(client.deploy_vm(&request())).await.unwrap_err();
    assert!(matches!(err, OrkaError::Protocol { .. }), "{err}");
    assert_no_vms(&fake);
}

#[tokio::test]
async fn malformed_success_ports_as_strings_and_extra_fields_are_accepted() {
    let (fake, client) = start(fake_config()).await;
    fake.inject(Fault::MalformedSuccess { route: Route::Deploy, shape: Malformed::PortsAsStrings });
    let vm = bounded(client.deploy_vm(&request())).await.unwrap();
    assert_eq!(vm.ssh_port, Some(8822));
    fake.inject(Fault::MalformedSuccess { route: Route::ListVms, shape: Malformed::ExtraFields });
    let listed = bounded(client.list_vms()).await.unwrap();
    assert_eq!(listed.len(), 1);
    fake.inject(Fault::MalformedSuccess { route: Route::GetVm, shape: Malformed::PortsAsStrings });
    assert_eq!(bounded(client.get_vm(&vm.name)).await.unwrap().unwrap().ssh_port, Some(8822));
}

#[tokio::test]
async fn malformed_success_not_json_or_empty_is_a_clear_error_and_deleted() {
    let (fake, client) = start(fake_config()).await;
    for shape in [Malformed::NotJson, Malformed::Empty] {
        fake.inject(Fault::MalformedSuccess { route: Route::Deploy, shape });
        let err = bounded(client.deploy_vm(&request())).await.unwrap_err();
        assert!(matches!(err, OrkaError::Protocol { .. }), "{shape:?}: {err}");
        assert_no_vms(&fake);
    }
    fake.inject(Fault::MalformedSuccess { route: Route::ListVms, shape: Malformed::NotJson });
    assert!(matches!(bounded(client.list_vms()).await.unwrap_err(), OrkaError::Protocol { .. }));
}

#[tokio::test]
async fn responded_before_running_is_polled_until_running() {
    let (fake, client) = start(fake_config().boot_delay(Duration::from_millis(150))).await;
    fake.inject(Fault::RespondBeforeRunning);
    let vm = bounded(client.deploy_vm(&request())).await.unwrap();
    assert_eq!(vm.status, VmStatus::Running);
    assert!(!calls(&fake, "GET", &format!("/vms/{}", vm.name)).is_empty(), "the client polled");
}

#[tokio::test]
async fn responded_before_running_then_failed_is_deleted() {
    let (fake, client) = start(fake_config()).await;
    fake.inject(Fault::RespondBeforeRunning);
    fake.inject(Fault::DeployFailure { message: "boot loop".into() });
    let err = bounded(client.deploy_vm(&request())).await.unwrap_err();
    assert!(matches!(&err, OrkaError::DeployFailed { message, .. } if message == "boot loop"), "{err}");
    assert_no_vms(&fake);
}

#[tokio::test]
async fn responded_before_running_then_vanished_is_a_failed_deploy() {
    let (fake, client) = start(fake_config().boot_delay(Duration::from_secs(5))).await;
    fake.inject(Fault::RespondBeforeRunning);
    let request = request();
    let name = request.name.to_string();
    let deploy = tokio::spawn({
        let client = client.clone();
        async move { client.deploy_vm(&request).await }
    });
    eventually("the client polls", || !calls(&fake, "GET", &format!("/vms/{name}")).is_empty()).await;
    fake.vanish(&name);
    let err = bounded(deploy).await.unwrap().unwrap_err();
    assert!(matches!(err, OrkaError::DeployFailed { .. }), "{err}");
    assert_no_vms(&fake);
}

#[tokio::test]
async fn concurrency_parallel_deploys_race_for_the_last_slots() {
    let mut config = FakeOrkaConfig::with_capacity(3, 1).boot_delay(Duration::from_millis(20));
    config.capacity_mode = CapacityMode::Reject { status: 500 };
    let (fake, client) = start(config).await;
    let client = Arc::new(client);
    let attempts: Vec<_> = (0..8)
        .map(|_| {
            let client: Arc<OrkaClient> = Arc::clone(&client);
            tokio::spawn(async move { client.deploy_vm(&request()).await })
        })
        .collect();
    let mut ok = 0;
    for attempt in attempts {
        match bounded(attempt).await.unwrap() {
            Ok(_) => ok += 1,
            Err(e) => assert!(matches!(e, OrkaError::CapacityExhausted { .. }), "{e}"),
        }
    }
    assert_eq!(ok, 3, "exactly the capacity's worth succeed");
    assert_eq!(fake.vms().len(), 3);
    assert!(fake.vms().iter().all(|vm| vm.status == FakeVmStatus::Running));
    assert_eq!(fake.peak_vms(), 3, "never more VMs than capacity");
}

#[tokio::test]
async fn validation_errors_400_and_422_are_final_and_not_retried() {
    let (fake, client) = start(fake_config()).await;
    for status in [400, 422] {
        fake.inject(Fault::HttpError { route: Route::Deploy, status, body: ErrorBody::Json });
        let err = bounded(client.deploy_vm(&request())).await.unwrap_err();
        assert!(matches!(err, OrkaError::Invalid { status: s, .. } if s == status), "{err}");
        assert!(!err.is_retryable());
        assert_no_vms(&fake);
    }
    assert_eq!(deploys(&fake).len(), 2, "one POST each");
}

#[tokio::test]
async fn delete_gives_up_after_its_retry_budget() {
    let (fake, client) = start(fake_config()).await;
    let vm = bounded(client.deploy_vm(&request())).await.unwrap();
    fake.inject_times(Fault::HttpError { route: Route::DeleteVm, status: 503, body: ErrorBody::Empty }, 100);
    let err = bounded(client.delete_vm(&vm.name)).await.unwrap_err();
    assert!(matches!(err, OrkaError::Server { status: 503, .. }) && err.is_retryable(), "{err}");
    assert_eq!(calls(&fake, "DELETE", &format!("/vms/{}", vm.name)).len(), 6, "1 attempt + 5 retries");
    assert!(fake.vm(&vm.name).is_some());
}
