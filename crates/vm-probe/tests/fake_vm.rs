//! Ssh2Shell against testkit's fake VMs (in-process russh servers): the same commands the
//! controller runs on real VMs, without root or sshd.

mod support;

use std::time::Duration;

use secrecy::SecretString;
use support::poll_stub::{JobPlan, PollStub};
use support::{eventually, keygen, process_alive, quick_config};
use testkit::vm::{FakeRunnerDownloads, FakeVm, FakeVmConfig, VmBehaviour};
use vm_probe::{
    HostKeyPolicy, ProbeReport, RunnerInstall, ShellError, Ssh2Shell, SshAuth, SshStep, SshTarget, Tri,
    VmLayout, VmShell,
};

fn password_shell(password: &str) -> Ssh2Shell {
    let config =
        quick_config("admin", SshAuth::Password(SecretString::from(password)), VmLayout::for_user("admin"));
    Ssh2Shell::new(config).unwrap()
}

async fn boot(behaviour: VmBehaviour) -> (FakeVm, tempfile::TempDir, SshTarget) {
    boot_with(FakeVmConfig { behaviour, ..FakeVmConfig::default() }).await
}

async fn boot_with(config: FakeVmConfig) -> (FakeVm, tempfile::TempDir, SshTarget) {
    let scratch = tempfile::tempdir().unwrap();
    let vm = FakeVm::start("mac-abcde", scratch.path().join("vm"), config).await.unwrap();
    let (host, port) = vm.ssh_addr();
    (vm, scratch, SshTarget { host, port })
}

fn install(downloads: &FakeRunnerDownloads, jit: &str) -> RunnerInstall {
    RunnerInstall {
        runner_version: "2.328.0".into(),
        download_url_template: downloads.url_template(),
        jit_config: SecretString::from(jit.to_owned()),
    }
}

fn pid_of(vm: &FakeVm) -> u32 {
    std::fs::read_to_string(vm.host_path(vm_probe::layout::PID_FILE)).unwrap().trim().parse().unwrap()
}

#[tokio::test]
async fn fresh_vm_probes_as_nothing_set_up_and_nothing_running() {
    let (_vm, _dir, target) = boot(VmBehaviour::Normal).await;
    let shell = password_shell("admin");
    shell.wait_ready(&target).await.unwrap();
    let report = shell.probe(&target).await.unwrap();
    assert_eq!(
        report,
        ProbeReport {
            setup_complete: Tri::No,
            run_complete: Tri::No,
            runner_alive: Tri::No,
            exit_code: None
        }
    );
}

#[tokio::test]
async fn run_script_returns_output_and_exit_status_and_paths_map_into_the_vm() {
    let (vm, _dir, target) = boot(VmBehaviour::Normal).await;
    let shell = password_shell("admin");
    let out = shell.run_script(&target, "echo out; echo err >&2; touch /tmp/marker; exit 3").await.unwrap();
    assert_eq!(out.stdout, "out\n");
    assert_eq!(out.stderr, "err\n");
    assert_eq!(out.exit_status, 3);
    assert!(vm.host_path("/tmp/marker").exists(), "the VM's /tmp lives in its root");
    assert!(
        !std::path::Path::new("/tmp/marker").exists() || vm.host_path("/tmp/marker").starts_with(vm.root())
    );
}

#[tokio::test]
async fn provisions_a_runner_end_to_end_and_records_its_exit() {
    let (vm, _dir, target) = boot(VmBehaviour::Normal).await;
    let downloads = FakeRunnerDownloads::start().await.unwrap();
    let github = PollStub::start().await;
    let plan = JobPlan { idle_polls: 3, running_polls: 5, removed: false };
    let jit = github.register("mac-abcde", "cred-fake-vm-1", plan);
    let shell = password_shell("admin");

    downloads.fail_next(1); // curl --retry absorbs a 503
    shell.install_and_start_runner(&target, &install(&downloads, &jit)).await.unwrap();
    assert_eq!(downloads.downloads(), 1);

    let finished = eventually(Duration::from_secs(40), "run.sh to finish its job", || async {
        let report = shell.probe(&target).await.ok()?;
        (report.run_complete == Tri::Yes).then_some(report)
    })
    .await;
    assert_eq!(finished.setup_complete, Tri::Yes);
    assert_eq!(finished.runner_alive, Tri::No);
    assert_eq!(finished.exit_code, Some(0));
    assert!(github.polls("cred-fake-vm-1") >= 9, "the runner polled through idle, running and done");

    let log = shell.tail_log(&target, 50).await.unwrap();
    assert!(log.contains("Listening for Jobs"), "log: {log}");
    assert!(log.contains("Job completed"), "log: {log}");
    assert!(!log.contains(&jit) && !log.contains("cred-fake-vm-1"), "no secret in the runner log");

    // One runner per VM: a second start is refused once the first ran.
    let again = shell.install_and_start_runner(&target, &install(&downloads, &jit)).await;
    assert!(matches!(again, Err(ShellError::RemoteFailed { exit_status: 70, .. })), "{again:?}");
    drop(vm);
}

#[tokio::test]
async fn runner_already_in_the_image_is_not_downloaded_and_a_rejected_credential_exits_1() {
    let (vm, _dir, target) = boot(VmBehaviour::Normal).await;
    let downloads = FakeRunnerDownloads::start().await.unwrap();
    let github = PollStub::start().await;
    let shell = password_shell("admin");
    // Bake the runner into the "image" the way an operator would: unpacked, no marker of ours.
    std::fs::write(vm.host_path("/tmp/r.tgz"), testkit::vm::runner_tarball("2.328.0").unwrap()).unwrap();
    let script =
        "mkdir -p /Users/admin/actions-runner && cd /Users/admin/actions-runner && tar xzf /tmp/r.tgz";
    let out = shell.run_script(&target, script).await.unwrap();
    assert_eq!(out.exit_status, 0, "{out:?}");

    // A JIT config whose credential the server does not know: run.sh gets 401 and exits 1.
    let jit =
        github.register("mac-abcde", "known", JobPlan { idle_polls: 1, running_polls: 1, removed: false });
    let unknown = jit.clone();
    let decoded = String::from_utf8(base64_decode(&unknown)).unwrap().replace("known", "unknown");
    let unknown = base64_encode(&decoded);
    shell.install_and_start_runner(&target, &install(&downloads, &unknown)).await.unwrap();
    assert_eq!(downloads.downloads(), 0, "Runner.Listener --version matched: nothing downloaded");
    let report = eventually(Duration::from_secs(30), "run.sh to exit on 401", || async {
        let report = shell.probe(&target).await.ok()?;
        (report.run_complete == Tri::Yes).then_some(report)
    })
    .await;
    assert_eq!(report.exit_code, Some(1));
    assert!(github.rejected() >= 1);
}

fn base64_decode(text: &str) -> Vec<u8> {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.decode(text).unwrap()
}

fn base64_encode(text: &str) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(text)
}

#[tokio::test]
async fn stop_runner_stops_it_and_the_exit_is_recorded() {
    let (vm, _dir, target) = boot(VmBehaviour::Normal).await;
    let downloads = FakeRunnerDownloads::start().await.unwrap();
    let github = PollStub::start().await;
    let jit = github.register(
        "mac-abcde",
        "cred-stop",
        JobPlan { idle_polls: 100_000, running_polls: 0, removed: false },
    );
    let shell = password_shell("admin");
    shell.install_and_start_runner(&target, &install(&downloads, &jit)).await.unwrap();
    let report = shell.probe(&target).await.unwrap();
    assert_eq!(
        (report.setup_complete, report.runner_alive, report.run_complete),
        (Tri::Yes, Tri::Yes, Tri::No)
    );
    // Starting again while it runs is a no-op success (a retried provision must not start two).
    shell.install_and_start_runner(&target, &install(&downloads, &jit)).await.unwrap();
    let pid = pid_of(&vm);

    shell.stop_runner(&target).await.unwrap();
    let report = eventually(Duration::from_secs(20), "the exit to be recorded", || async {
        let report = shell.probe(&target).await.ok()?;
        (report.run_complete == Tri::Yes).then_some(report)
    })
    .await;
    assert_eq!(report.runner_alive, Tri::No);
    assert_eq!(report.exit_code, Some(143), "run.sh ended by SIGTERM");
    assert!(!process_alive(pid));
    // Stopping again is fine.
    shell.stop_runner(&target).await.unwrap();
}

#[tokio::test]
async fn destroying_the_vm_kills_its_detached_runner() {
    let (mut vm, _dir, target) = boot(VmBehaviour::Normal).await;
    let downloads = FakeRunnerDownloads::start().await.unwrap();
    let github = PollStub::start().await;
    let jit = github.register(
        "mac-abcde",
        "cred-destroy",
        JobPlan { idle_polls: 100_000, running_polls: 0, removed: false },
    );
    let shell = password_shell("admin");
    shell.install_and_start_runner(&target, &install(&downloads, &jit)).await.unwrap();
    let pid = pid_of(&vm);
    // The runner outlives the SSH channel that started it.
    let polls_before = github.polls("cred-destroy");
    eventually(Duration::from_secs(10), "the detached runner to keep polling", || async {
        (github.polls("cred-destroy") > polls_before + 2).then_some(())
    })
    .await;
    assert!(process_alive(pid));
    let root = vm.root().to_path_buf();
    vm.shutdown();
    eventually(Duration::from_secs(10), "the runner to die with its VM", || async {
        (!process_alive(pid)).then_some(())
    })
    .await;
    assert!(!root.exists());
}

#[tokio::test]
async fn key_auth_works_and_pinned_host_keys_are_checked() {
    let keys = tempfile::tempdir().unwrap();
    let (key_path, public) = keygen(keys.path(), "id");
    let authorized = russh::keys::PublicKey::from_openssh(&public).unwrap();
    let config = FakeVmConfig { authorized_keys: vec![authorized], ..FakeVmConfig::default() };
    let (first, _dir, target) = boot_with(config.clone()).await;
    let mut ssh = quick_config(
        "admin",
        SshAuth::PrivateKey { path: key_path, passphrase: None },
        VmLayout::for_user("admin"),
    );
    ssh.host_key_policy = HostKeyPolicy::PinPerVm;
    let shell = Ssh2Shell::new(ssh).unwrap();
    assert_eq!(shell.run_script(&target, "echo hi").await.unwrap().stdout, "hi\n");

    // The address is reused by another VM (another host key) while the pin is kept.
    drop(first);
    let (_second, _dir2, second) = boot_with(config).await;
    let reused = forward(target.port, &second).await;
    let err = shell.run_script(&reused, "true").await.unwrap_err();
    assert!(matches!(err, ShellError::HostKeyMismatch { .. }), "{err:?}");
    assert!(!err.is_retryable());
    // Forgetting the pin (the VM was deleted) trusts the new key.
    shell.forget_host_key(&reused);
    assert_eq!(shell.run_script(&reused, "echo again").await.unwrap().stdout, "again\n");
}

/// Forwards `port` (now free) to `target`, so a different host key answers at an address
/// whose key was pinned.
async fn forward(port: u16, target: &SshTarget) -> SshTarget {
    // The old VM's listener closes asynchronously.
    let listener = eventually(Duration::from_secs(10), "the old port to be free", || async {
        tokio::net::TcpListener::bind(("127.0.0.1", port)).await.ok()
    })
    .await;
    let upstream = format!("{}:{}", target.host, target.port);
    tokio::spawn(async move {
        while let Ok((mut inbound, _)) = listener.accept().await {
            let upstream = upstream.clone();
            tokio::spawn(async move {
                if let Ok(mut outbound) = tokio::net::TcpStream::connect(upstream).await {
                    let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                }
            });
        }
    });
    SshTarget { host: "127.0.0.1".into(), port }
}

#[tokio::test]
async fn wrong_password_and_rejecting_vm_fail_auth_for_good() {
    let (_vm, _dir, target) = boot(VmBehaviour::Normal).await;
    let shell = password_shell("wrong");
    // Readiness is the server's banner, not a login: the first command meets the password.
    shell.wait_ready(&target).await.expect("the VM answers");
    let err = shell.run_script(&target, "true").await.unwrap_err();
    assert!(matches!(err, ShellError::AuthFailed { .. }), "{err:?}");
    assert!(!err.is_retryable());
    assert!(!err.to_string().contains("wrong"), "no password in the message");

    let (_vm, _dir, target) = boot(VmBehaviour::AuthRejected).await;
    let err = password_shell("admin").probe(&target).await.unwrap_err();
    assert_eq!(err.step(), Some(SshStep::Auth));
    assert!(!err.is_retryable());
}

#[tokio::test]
async fn black_hole_times_out_at_the_handshake_and_a_closed_port_fails_to_connect() {
    let (_vm, _dir, hole) = boot(VmBehaviour::BlackHole).await;
    let mut config =
        quick_config("admin", SshAuth::Password(SecretString::from("admin")), VmLayout::for_user("admin"));
    config.io_timeout = Duration::from_millis(500);
    let shell = Ssh2Shell::new(config).unwrap();
    let err = shell.probe(&hole).await.unwrap_err();
    assert!(matches!(err, ShellError::Timeout { step: SshStep::Handshake, .. }), "{err:?}");
    assert!(err.is_retryable());

    let (_vm, _dir, closed) = boot(VmBehaviour::Refuses).await;
    let err = shell.probe(&closed).await.unwrap_err();
    assert_eq!(err.step(), Some(SshStep::Connect), "{err:?}");
    assert!(err.is_retryable());
}

#[tokio::test]
async fn wait_ready_rides_out_a_slow_boot() {
    let (_vm, _dir, target) = boot(VmBehaviour::SlowStart { ready_after: Duration::from_secs(1) }).await;
    let shell = password_shell("admin");
    shell.wait_ready(&target).await.unwrap();
    assert_eq!(shell.probe(&target).await.unwrap().setup_complete, Tri::No);
}

#[tokio::test]
async fn wait_ready_gives_up_after_its_budget() {
    let (_vm, _dir, target) = boot(VmBehaviour::Refuses).await;
    let mut config =
        quick_config("admin", SshAuth::Password(SecretString::from("admin")), VmLayout::for_user("admin"));
    config.ready_timeout = Duration::from_millis(600);
    config.ready_interval = Duration::from_millis(100);
    let err = Ssh2Shell::new(config).unwrap().wait_ready(&target).await.unwrap_err();
    assert_eq!(err.step(), Some(SshStep::Connect));
}

#[tokio::test]
async fn a_connection_dropped_mid_session_is_an_error_not_an_answer() {
    let (_vm, _dir, target) = boot(VmBehaviour::DropMidSession).await;
    let shell = password_shell("admin");
    shell.wait_ready(&target).await.unwrap();
    let err = shell.probe(&target).await.unwrap_err();
    assert!(err.is_retryable(), "{err:?}");
    assert!(matches!(err.step(), Some(SshStep::Exec | SshStep::Io | SshStep::Exit)), "{err:?}");
}

#[tokio::test]
async fn fake_vm_host_boots_isolated_vms_and_destroy_kills_what_runs_inside() {
    use testkit::orka::VmProvider;
    let host = std::sync::Arc::new(testkit::vm::FakeVmHost::new().unwrap());
    host.set_behaviour("mac-hole1", VmBehaviour::BlackHole);
    let provider: std::sync::Arc<dyn VmProvider> = host.clone();
    let target = |(host, port): (String, u16)| SshTarget { host, port };
    let a = target(provider.boot("mac-aaaa1").await.unwrap());
    let b = target(provider.boot("mac-bbbb1").await.unwrap());
    let hole = target(provider.boot("mac-hole1").await.unwrap());
    assert_eq!(host.running(), ["mac-aaaa1", "mac-bbbb1", "mac-hole1"]);

    let mut config =
        quick_config("admin", SshAuth::Password(SecretString::from("admin")), VmLayout::for_user("admin"));
    config.io_timeout = Duration::from_millis(500);
    let shell = Ssh2Shell::new(config).unwrap();
    // Each VM has its own /tmp.
    shell.run_script(&a, "touch /tmp/orka-runner-setup-complete").await.unwrap();
    assert_eq!(shell.probe(&a).await.unwrap().setup_complete, Tri::Yes);
    assert_eq!(shell.probe(&b).await.unwrap().setup_complete, Tri::No);
    assert!(host.host_path("mac-aaaa1", "/tmp/orka-runner-setup-complete").unwrap().exists());
    let err = shell.probe(&hole).await.unwrap_err();
    assert!(matches!(err, ShellError::Timeout { step: SshStep::Handshake, .. }), "{err:?}");

    // A detached process survives its channel, and dies with its VM.
    let out = shell.run_script(&a, "nohup sleep 300 >/dev/null 2>&1 & echo $!").await.unwrap();
    let pid: u32 = out.stdout.trim().parse().unwrap();
    assert!(process_alive(pid));
    let root = host.vm_root("mac-aaaa1").unwrap();
    provider.destroy("mac-aaaa1").await;
    eventually(Duration::from_secs(10), "the VM's process to die", || async {
        (!process_alive(pid)).then_some(())
    })
    .await;
    assert!(!root.exists());
    assert_eq!(host.running(), ["mac-bbbb1", "mac-hole1"]);
    assert!(shell.probe(&a).await.is_err(), "a destroyed VM no longer answers");
}

#[tokio::test]
async fn large_interleaved_output_is_returned_whole_and_a_hung_command_hits_its_budget() {
    let (_vm, _dir, target) = boot(VmBehaviour::Normal).await;
    let mut config =
        quick_config("admin", SshAuth::Password(SecretString::from("admin")), VmLayout::for_user("admin"));
    config.script_timeout = Duration::from_millis(1500);
    let shell = Ssh2Shell::new(config).unwrap();
    let script = "head -c 3000000 /dev/zero | tr '\\000' e >&2; head -c 1000000 /dev/zero | tr '\\000' o";
    let out = shell.run_script(&target, script).await.unwrap();
    assert_eq!((out.stderr.len(), out.stdout.len(), out.exit_status), (3_000_000, 1_000_000, 0));

    let err = shell.run_script(&target, "sleep 30").await.unwrap_err();
    assert!(matches!(err, ShellError::Timeout { step: SshStep::Io, .. }), "{err:?}");
}

#[tokio::test]
async fn commands_see_the_vm_environment_and_home() {
    let config = FakeVmConfig {
        env: vec![("FAKE_RUNNER_POLL_INTERVAL".into(), "0.05".into())],
        ..FakeVmConfig::default()
    };
    let (vm, _dir, target) = boot_with(config).await;
    let out = password_shell("admin")
        .run_script(&target, "echo $FAKE_RUNNER_POLL_INTERVAL; echo $HOME")
        .await
        .unwrap();
    let home = vm.host_path("/Users/admin");
    assert_eq!(out.stdout, format!("0.05\n{}\n", home.display()));
}

#[tokio::test]
async fn stop_runner_kills_the_runners_whole_process_tree() {
    let (vm, _dir, target) = boot(VmBehaviour::Normal).await;
    let downloads = FakeRunnerDownloads::start().await.unwrap();
    let shell = password_shell("admin");
    // An image with a runner whose run.sh starts a grandchild (like Runner.Listener →
    // Runner.Worker) and ignores nothing.
    let image = "mkdir -p /Users/admin/actions-runner && cd /Users/admin/actions-runner && \
                 printf '2.328.0\\n' > .orka-runner-version && \
                 printf '#!/bin/sh\\n(sleep 300; :) &\\necho $! > /tmp/grandchild\\nwait\\n' > run.sh && chmod +x run.sh";
    assert_eq!(shell.run_script(&target, image).await.unwrap().exit_status, 0);
    shell.install_and_start_runner(&target, &install(&downloads, "eyJqaXQiOjF9")).await.unwrap();
    assert_eq!(downloads.downloads(), 0);
    let grandchild: u32 = eventually(Duration::from_secs(10), "the grandchild to start", || async {
        std::fs::read_to_string(vm.host_path("/tmp/grandchild")).ok()?.trim().parse().ok()
    })
    .await;
    assert!(process_alive(grandchild));

    shell.stop_runner(&target).await.unwrap();
    eventually(Duration::from_secs(15), "the grandchild to die", || async {
        (!process_alive(grandchild)).then_some(())
    })
    .await;
    let report = eventually(Duration::from_secs(15), "the exit to be recorded", || async {
        let report = shell.probe(&target).await.ok()?;
        (report.run_complete == Tri::Yes).then_some(report)
    })
    .await;
    assert_eq!(report.runner_alive, Tri::No);
    assert!(report.exit_code.is_some());
}

/// A PATH with every usual tool but `setsid`, which macOS does not have.
fn path_without_setsid(dir: &std::path::Path) -> String {
    for bin in ["/usr/local/bin", "/usr/bin", "/bin", "/usr/sbin", "/sbin"] {
        let Ok(entries) = std::fs::read_dir(bin) else { continue };
        for entry in entries.flatten() {
            let name = entry.file_name();
            if name != "setsid" && !dir.join(&name).exists() {
                let _ = std::os::unix::fs::symlink(entry.path(), dir.join(&name));
            }
        }
    }
    dir.display().to_string()
}

#[tokio::test]
async fn without_setsid_as_on_macos_the_runner_is_still_detached_and_stoppable() {
    let bin = tempfile::tempdir().unwrap();
    let path = path_without_setsid(bin.path());
    let config = FakeVmConfig { env: vec![("PATH".into(), path)], ..FakeVmConfig::default() };
    let (vm, _dir, target) = boot_with(config).await;
    let shell = password_shell("admin");
    assert_eq!(shell.run_script(&target, "command -v setsid || echo none").await.unwrap().stdout, "none\n");
    let downloads = FakeRunnerDownloads::start().await.unwrap();
    let github = PollStub::start().await;
    let jit = github.register(
        "mac-abcde",
        "cred-nosetsid",
        JobPlan { idle_polls: 100_000, running_polls: 0, removed: false },
    );
    shell.install_and_start_runner(&target, &install(&downloads, &jit)).await.unwrap();
    let pid = pid_of(&vm);
    let before = github.polls("cred-nosetsid");
    eventually(Duration::from_secs(10), "the runner to keep polling after its channel closed", || async {
        (github.polls("cred-nosetsid") > before + 2).then_some(())
    })
    .await;
    assert_eq!(shell.probe(&target).await.unwrap().runner_alive, Tri::Yes);

    shell.stop_runner(&target).await.unwrap();
    let report = eventually(Duration::from_secs(20), "the stop to be recorded", || async {
        let report = shell.probe(&target).await.ok()?;
        (report.run_complete == Tri::Yes).then_some(report)
    })
    .await;
    assert_eq!((report.runner_alive, report.exit_code), (Tri::No, Some(143)));
    assert!(!process_alive(pid));
}
