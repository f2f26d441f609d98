//! A failure injected at every lifecycle step: whatever exists is cleaned up (VM deleted by
//! name, registration removed), bounded retries, deregistration before deletion. First
//! against stateful fakes ("nothing is left behind"), then with strict `mockall` mocks
//! (the exact calls, in order).

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use mockall::Sequence;
use mockall::predicate::eq;
use provisioner::{Fleet, FleetDeps, RetireReason, RunnerStage, Step};
use runner_core::{JitConfig, MockScaleSetApi, RunnerRecord, ScaleSetError};
use runner_core::{MockVmBackend, Vm, VmBackendError, VmStatus};
use runner_core::{MockVmShell, ShellError, SshStep};
use secrecy::SecretString;

#[derive(Debug, Clone, Copy)]
enum Fault {
    Deploy,
    Jit,
    SshReady,
    InstallRemote,
}

#[tokio::test(start_paused = true)]
async fn a_provisioning_failure_at_any_step_leaves_nothing_behind() {
    for (fault, step) in [
        (Fault::Deploy, Step::DeployVm),
        (Fault::Jit, Step::CreateJitConfig),
        (Fault::SshReady, Step::WaitSsh),
        (Fault::InstallRemote, Step::InstallRunner),
    ] {
        let lab = Lab::new(config());
        match fault {
            Fault::Deploy => *lab.orka.fail_deploys.lock().unwrap() = 3,
            Fault::Jit => *lab.github.fail_jit.lock().unwrap() = 3,
            Fault::SshReady => *lab.shell.fail_ready.lock().unwrap() = 3,
            Fault::InstallRemote => *lab.shell.fail_install_remote.lock().unwrap() = 1,
        }
        lab.deliver(&msg(1, stats(1, 0), vec![assigned("j1")])).await;
        lab.settle().await;
        lab.assert_clean();
        let counters = lab.fleet.counters();
        assert_eq!(counters.provisions_succeeded, 0, "{fault:?}");
        assert_eq!(counters.failures.keys().map(|(s, _)| *s).collect::<Vec<_>>(), vec![step], "{fault:?}");
        assert_eq!(counters.retired.get(&RetireReason::ProvisioningFailed), Some(&1), "{fault:?}");
        let deploys = lab.orka.calls().iter().filter(|c| c.starts_with("deploy")).count();
        let expected_deploys = if matches!(fault, Fault::Deploy) { 3 } else { 1 };
        assert_eq!(deploys, expected_deploys, "{fault:?}: bounded retries");
        if !matches!(fault, Fault::Deploy | Fault::Jit) {
            assert!(lab.github.calls().iter().any(|c| c.starts_with("remove")), "{fault:?}");
        }
        // The demand is still there: the next signal provisions a new runner.
        lab.fleet.tick().await;
        lab.settle().await;
        assert_eq!(lab.fleet.runners().len(), 1, "{fault:?}: level-triggered, the job is not stranded");
    }
}

#[tokio::test(start_paused = true)]
async fn transient_failures_are_retried_within_the_budget() {
    let lab = Lab::new(config());
    *lab.orka.fail_deploys.lock().unwrap() = 2;
    *lab.github.fail_jit.lock().unwrap() = 2;
    *lab.shell.fail_ready.lock().unwrap() = 2;
    *lab.shell.fail_install_connect.lock().unwrap() = 2;
    lab.deliver(&msg(1, stats(1, 0), vec![assigned("j1")])).await;
    lab.settle().await;
    let name = lab.only_runner();
    assert_eq!(lab.stage_of(&name), Some(RunnerStage::Idle));
    assert_eq!(lab.fleet.counters().provisions_succeeded, 1);
    let installs = lab.shell.calls().iter().filter(|c| c.starts_with("install")).count();
    assert_eq!(installs, 3, "install retried only while nothing ran");
}

#[tokio::test(start_paused = true)]
async fn an_install_that_ran_is_never_retried() {
    let lab = Lab::new(config());
    *lab.shell.fail_install_remote.lock().unwrap() = 1;
    lab.deliver(&msg(1, stats(1, 0), vec![assigned("j1")])).await;
    lab.settle().await;
    let installs = lab.shell.calls().iter().filter(|c| c.starts_with("install")).count();
    assert_eq!(installs, 1, "a second run.sh with the same JIT config must never start");
}

#[tokio::test(start_paused = true)]
async fn a_failed_deregistration_keeps_the_vm_until_a_later_tick_succeeds() {
    let lab = Lab::new(config());
    lab.deliver(&msg(1, stats(1, 0), vec![assigned("j1")])).await;
    lab.settle().await;
    let name = lab.only_runner();
    *lab.github.fail_removals.lock().unwrap() = 3;
    // Past the idle grace and the statistics-lag window of the body's JobAssigned.
    tokio::time::advance(Duration::from_secs(121)).await;
    lab.fleet.on_statistics(stats(0, 0)).await; // surplus idle → retire
    lab.settle().await;
    assert_eq!(lab.stage_of(&name), Some(RunnerStage::Deregistering));
    assert!(lab.orka.exists(&name), "no VM deletion before deregistration");
    assert!(lab.github.is_registered(&name));

    lab.fleet.tick().await;
    lab.settle().await;
    assert!(lab.orka.exists(&name), "not retried before the retry interval");
    tokio::time::advance(Duration::from_secs(31)).await;
    lab.fleet.tick().await;
    lab.settle().await;
    lab.assert_clean();
}

#[tokio::test(start_paused = true)]
async fn a_failed_vm_deletion_is_retried_by_a_later_tick() {
    let lab = Lab::new(config());
    lab.deliver(&msg(1, stats(1, 0), vec![assigned("j1")])).await;
    lab.settle().await;
    let name = lab.only_runner();
    *lab.orka.fail_deletes.lock().unwrap() = 3;
    lab.github.finish_job(&name);
    lab.deliver(&msg(2, stats(0, 0), vec![completed("j1", &name, "succeeded")])).await;
    lab.settle().await;
    assert_eq!(lab.stage_of(&name), Some(RunnerStage::DeletingVm));
    assert!(!lab.github.is_registered(&name));
    tokio::time::advance(Duration::from_secs(31)).await;
    lab.fleet.tick().await;
    lab.settle().await;
    lab.assert_clean();
    let deletes = lab.orka.calls().iter().filter(|c| **c == format!("delete {name}")).count();
    assert_eq!(deletes, 4, "3 failed attempts in the first budget, then one on the retry");
}

#[tokio::test(start_paused = true)]
async fn lookup_errors_while_waiting_for_deregistration_are_ignored() {
    let lab = Lab::new(config());
    lab.deliver(&msg(1, stats(1, 0), vec![assigned("j1")])).await;
    lab.settle().await;
    let name = lab.only_runner();
    *lab.github.fail_lookups.lock().unwrap() = 5;
    lab.github.finish_job(&name);
    lab.deliver(&msg(2, stats(0, 0), vec![completed("j1", &name, "succeeded")])).await;
    lab.settle().await;
    lab.assert_clean();
}

// ---- strict mocks: the exact calls ----

fn vm(name: &str) -> Vm {
    Vm {
        name: name.into(),
        ip: Some("10.0.0.5".into()),
        ssh_port: Some(8822),
        status: VmStatus::Running,
        node: None,
    }
}

fn jit(name: &str) -> JitConfig {
    JitConfig {
        runner: RunnerRecord {
            id: 42,
            name: name.into(),
            runner_scale_set_id: SCALE_SET_ID,
            status: None,
            busy: None,
        },
        encoded_jit_config: SecretString::from("sekrit"),
    }
}

fn fleet(vms: MockVmBackend, github: MockScaleSetApi, shell: MockVmShell) -> Fleet {
    Fleet::new(FleetDeps { vms: Arc::new(vms), github: Arc::new(github), shell: Arc::new(shell) }, config())
}

async fn settle(fleet: &Fleet) {
    tokio::time::timeout(Duration::from_secs(3600), fleet.wait_settled()).await.expect("settles");
}

#[tokio::test(start_paused = true)]
async fn mocks_happy_path_calls_in_order() {
    let mut seq = Sequence::new();
    let mut vms = MockVmBackend::new();
    let mut github = MockScaleSetApi::new();
    let mut shell = MockVmShell::new();
    vms.expect_deploy_vm()
        .times(1)
        .in_sequence(&mut seq)
        .withf(|req| req.vm_config == "sonoma-ci" && req.name.scale_set() == "mac")
        .returning(|req| Ok(vm(&req.name.to_string())));
    github
        .expect_generate_jit_config()
        .times(1)
        .in_sequence(&mut seq)
        .withf(|id, _| *id == SCALE_SET_ID)
        .returning(|_, name| Ok(jit(name)));
    shell.expect_wait_ready().times(1).in_sequence(&mut seq).returning(|_| Ok(()));
    shell
        .expect_install_and_start_runner()
        .times(1)
        .in_sequence(&mut seq)
        .withf(|target, install| {
            target.host == "10.0.0.5" && target.port == 8822 && install.runner_version == "2.328.0"
        })
        .returning(|_, _| Ok(()));
    // After the job: the runner deregistered itself; the VM is deleted.
    github.expect_get_runner_by_name().times(1).in_sequence(&mut seq).returning(|_| Ok(None));
    vms.expect_delete_vm().times(1).in_sequence(&mut seq).returning(|_| Ok(()));

    let fleet = fleet(vms, github, shell);
    let queue = provisioner::fakes::FakeQueue::new();
    fleet.handle_message(&msg(1, stats(1, 0), vec![assigned("j")]), &queue).await.unwrap();
    settle(&fleet).await;
    let name = fleet.runners()[0].name.clone();
    fleet
        .handle_message(&msg(2, stats(0, 0), vec![completed("j", &name, "succeeded")]), &queue)
        .await
        .unwrap();
    settle(&fleet).await;
    assert!(fleet.runners().is_empty());
}

#[tokio::test(start_paused = true)]
async fn mocks_a_final_deploy_failure_deletes_the_vm_by_name_and_registers_nothing() {
    let mut vms = MockVmBackend::new();
    vms.expect_deploy_vm().times(1).returning(|req| {
        Err(VmBackendError::Invalid { status: 422, message: format!("bad config for {}", req.name) })
    });
    vms.expect_delete_vm().times(1).withf(|name| name.starts_with("mac-")).returning(|_| Ok(()));
    // No GitHub or SSH call at all: a strict mock panics on any.
    let fleet = fleet(vms, MockScaleSetApi::new(), MockVmShell::new());
    let queue = provisioner::fakes::FakeQueue::new();
    fleet.handle_message(&msg(1, stats(1, 0), vec![assigned("j")]), &queue).await.unwrap();
    settle(&fleet).await;
    assert!(fleet.runners().is_empty());
}

#[tokio::test(start_paused = true)]
async fn mocks_an_ssh_auth_failure_removes_the_registration_then_deletes_the_vm() {
    let mut seq = Sequence::new();
    let mut vms = MockVmBackend::new();
    let mut github = MockScaleSetApi::new();
    let mut shell = MockVmShell::new();
    vms.expect_deploy_vm().times(1).in_sequence(&mut seq).returning(|req| Ok(vm(&req.name.to_string())));
    github.expect_generate_jit_config().times(1).in_sequence(&mut seq).returning(|_, name| Ok(jit(name)));
    shell
        .expect_wait_ready()
        .times(1)
        .in_sequence(&mut seq)
        .returning(|t| Err(ShellError::AuthFailed { target: t.to_string(), username: "admin".into() }));
    github.expect_remove_runner().times(1).in_sequence(&mut seq).with(eq(42)).returning(|_| Ok(()));
    vms.expect_delete_vm().times(1).in_sequence(&mut seq).returning(|_| Ok(()));
    let fleet = fleet(vms, github, shell);
    let queue = provisioner::fakes::FakeQueue::new();
    fleet.handle_message(&msg(1, stats(1, 0), vec![assigned("j")]), &queue).await.unwrap();
    settle(&fleet).await;
    assert!(fleet.runners().is_empty());
    assert_eq!(fleet.counters().failures.keys().next().map(|k| k.0), Some(Step::WaitSsh));
}

#[tokio::test(start_paused = true)]
async fn mocks_a_stale_registration_with_our_name_is_removed_and_the_jit_retried() {
    let mut vms = MockVmBackend::new();
    let mut github = MockScaleSetApi::new();
    let mut shell = MockVmShell::new();
    vms.expect_deploy_vm().times(1).returning(|req| Ok(vm(&req.name.to_string())));
    let mut first = true;
    github.expect_generate_jit_config().times(2).returning(move |_, name| {
        if std::mem::take(&mut first) { Err(ScaleSetError::AgentExists) } else { Ok(jit(name)) }
    });
    github.expect_get_runner_by_name().times(1).returning(|name| {
        Ok(Some(RunnerRecord {
            id: 9,
            name: name.into(),
            runner_scale_set_id: SCALE_SET_ID,
            status: None,
            busy: None,
        }))
    });
    github.expect_remove_runner().times(1).with(eq(9)).returning(|_| Ok(()));
    shell.expect_wait_ready().times(1).returning(|_| Ok(()));
    shell.expect_install_and_start_runner().times(1).returning(|_, _| Ok(()));
    let fleet = fleet(vms, github, shell);
    let queue = provisioner::fakes::FakeQueue::new();
    fleet.handle_message(&msg(1, stats(1, 0), vec![assigned("j")]), &queue).await.unwrap();
    settle(&fleet).await;
    assert_eq!(fleet.runners()[0].stage, RunnerStage::Idle);
}

#[tokio::test(start_paused = true)]
async fn mocks_an_install_timeout_is_not_retried() {
    let mut vms = MockVmBackend::new();
    let mut github = MockScaleSetApi::new();
    let mut shell = MockVmShell::new();
    vms.expect_deploy_vm().times(1).returning(|req| Ok(vm(&req.name.to_string())));
    github.expect_generate_jit_config().times(1).returning(|_, name| Ok(jit(name)));
    shell.expect_wait_ready().times(1).returning(|_| Ok(()));
    shell.expect_install_and_start_runner().times(1).returning(|t, _| {
        Err(ShellError::Timeout { target: t.to_string(), step: SshStep::Io, after: Duration::from_secs(60) })
    });
    github.expect_remove_runner().times(1).with(eq(42)).returning(|_| Ok(()));
    vms.expect_delete_vm().times(1).returning(|_| Ok(()));
    let fleet = fleet(vms, github, shell);
    let queue = provisioner::fakes::FakeQueue::new();
    fleet.handle_message(&msg(1, stats(1, 0), vec![assigned("j")]), &queue).await.unwrap();
    settle(&fleet).await;
    assert!(fleet.runners().is_empty());
}

#[tokio::test(start_paused = true)]
async fn mocks_retry_after_is_honoured() {
    let mut vms = MockVmBackend::new();
    let mut github = MockScaleSetApi::new();
    let mut shell = MockVmShell::new();
    let mut first = true;
    vms.expect_deploy_vm().times(2).returning(move |req| {
        if std::mem::take(&mut first) {
            Err(VmBackendError::RateLimited { retry_after: Some(Duration::from_secs(90)) })
        } else {
            Ok(vm(&req.name.to_string()))
        }
    });
    github.expect_generate_jit_config().times(1).returning(|_, name| Ok(jit(name)));
    shell.expect_wait_ready().times(1).returning(|_| Ok(()));
    shell.expect_install_and_start_runner().times(1).returning(|_, _| Ok(()));
    let fleet = fleet(vms, github, shell);
    let queue = provisioner::fakes::FakeQueue::new();
    let started = tokio::time::Instant::now();
    fleet.handle_message(&msg(1, stats(1, 0), vec![assigned("j")]), &queue).await.unwrap();
    settle(&fleet).await;
    assert!(started.elapsed() >= Duration::from_secs(90), "{:?}", started.elapsed());
    assert_eq!(fleet.runners()[0].stage, RunnerStage::Idle);
}
