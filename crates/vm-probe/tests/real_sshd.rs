//! Ssh2Shell against a real OpenSSH sshd on a loopback port: auth, the probe truth table on
//! real files and processes, provisioning end to end with the fake runner, detachment,
//! and secrets kept out of `ps` and logs. Skips loudly without sshd (fails under CI=true).

mod support;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use secrecy::SecretString;
use support::poll_stub::{JobPlan, PollStub};
use support::sshd::{Sshd, lock_password_user, password_user, skip_or_fail};
use support::{SshdTarget as _, eventually, keygen, process_alive, ps_all, quick_config};
use testkit::vm::FakeRunnerDownloads;
use vm_probe::{ProbeReport, RunnerInstall, ShellError, Ssh2Shell, SshAuth, SshStep, Tri, VmLayout, VmShell};

/// A layout of its own under the fixture's temp dir.
fn layout_in(sshd: &Sshd, name: &str) -> VmLayout {
    let base = sshd.dir.path().join(name);
    std::fs::create_dir_all(&base).unwrap();
    VmLayout::under(base.to_str().unwrap())
}

fn key_shell(sshd: &Sshd, layout: VmLayout) -> Ssh2Shell {
    let auth = SshAuth::PrivateKey { path: sshd.key_path.clone(), passphrase: None };
    Ssh2Shell::new(quick_config(&sshd.user, auth, layout)).unwrap()
}

/// Kills a runner left behind by a failing test (by the pid in its pid file).
struct RunnerGuard(String);

impl Drop for RunnerGuard {
    fn drop(&mut self) {
        if let Ok(pid) = std::fs::read_to_string(&self.0) {
            let pid = pid.trim();
            let _ = Command::new("pkill").args(["-KILL", "-P", pid]).status();
            let _ = Command::new("kill").args(["-KILL", pid]).stderr(Stdio::null()).status();
        }
    }
}

/// A child in its own process group, the whole group killed on drop.
struct Spawned(Child);

impl Spawned {
    fn new(command: &mut Command) -> Spawned {
        use std::os::unix::process::CommandExt as _;
        let child = command
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .unwrap();
        Spawned(child)
    }
}

impl Drop for Spawned {
    fn drop(&mut self) {
        let _ = Command::new("kill").args(["-KILL", "--", &format!("-{}", self.0.id())]).status();
        let _ = self.0.wait();
    }
}

fn install(downloads: &FakeRunnerDownloads, jit: &str) -> RunnerInstall {
    RunnerInstall {
        runner_version: "2.330.0".into(),
        download_url_template: downloads.url_template(),
        jit_config: SecretString::from(jit.to_owned()),
    }
}

#[tokio::test]
async fn key_auth_runs_commands_as_the_authorized_user() {
    let Some(sshd) = Sshd::start() else { return };
    let shell = key_shell(&sshd, layout_in(&sshd, "vm"));
    shell.wait_ready(&sshd.target()).await.unwrap();
    let out = shell.run_script(&sshd.target(), "id -un; echo oops >&2; exit 4").await.unwrap();
    assert_eq!(out.stdout.trim(), sshd.user, "sshd log:\n{}", sshd.log());
    assert_eq!(out.stderr, "oops\n");
    assert_eq!(out.exit_status, 4);
}

#[tokio::test]
async fn password_auth_with_a_local_user_and_a_wrong_password_is_final() {
    let Some(sshd) = Sshd::start() else { return };
    let Some((user, password)) = password_user() else {
        skip_or_fail("password auth needs a local user with a password (created only when running as root)");
        return;
    };
    let layout = layout_in(&sshd, "vm");
    let good =
        Ssh2Shell::new(quick_config(&user, SshAuth::Password(SecretString::from(password)), layout.clone()));
    let out = good.unwrap().run_script(&sshd.target(), "id -un").await;
    let bad =
        Ssh2Shell::new(quick_config(&user, SshAuth::Password(SecretString::from("not-it")), layout)).unwrap();
    // Readiness does not log in (the server's banner is enough); the first command does.
    let ready = bad.wait_ready(&sshd.target()).await;
    let err = bad.run_script(&sshd.target(), "id -un").await;
    lock_password_user();
    assert_eq!(out.unwrap().stdout.trim(), user, "sshd log:\n{}", sshd.log());
    ready.unwrap();
    let err = err.unwrap_err();
    assert!(matches!(err, ShellError::AuthFailed { .. }), "{err:?}");
    assert!(!err.is_retryable());
}

#[tokio::test]
async fn an_unauthorized_key_is_a_non_retryable_auth_failure() {
    let Some(sshd) = Sshd::start() else { return };
    let other = tempfile::tempdir().unwrap();
    let (stranger, _) = keygen(other.path(), "stranger");
    let auth = SshAuth::PrivateKey { path: stranger, passphrase: None };
    let shell = Ssh2Shell::new(quick_config(&sshd.user, auth, layout_in(&sshd, "vm"))).unwrap();
    shell.wait_ready(&sshd.target()).await.expect("the server answers; readiness does not log in");
    let err = shell.probe(&sshd.target()).await.unwrap_err();
    assert!(matches!(err, ShellError::AuthFailed { .. }), "{err:?}");
    assert_eq!(err.step(), Some(SshStep::Auth));
    assert!(!err.is_retryable());
}

fn report(setup: Tri, run: Tri, alive: Tri, exit_code: Option<i32>) -> ProbeReport {
    ProbeReport { setup_complete: setup, run_complete: run, runner_alive: alive, exit_code }
}

#[tokio::test]
async fn probe_truth_table_on_real_files_and_processes() {
    let Some(sshd) = Sshd::start() else { return };
    let layout = layout_in(&sshd, "vm");
    let shell = key_shell(&sshd, layout.clone());
    let target = sshd.target();
    let touch = |path: &str, text: &str| std::fs::write(path, text).unwrap();

    // Nothing there.
    assert_eq!(shell.probe(&target).await.unwrap(), report(Tri::No, Tri::No, Tri::No, None));

    // Setup done, no pid file, no run.sh process: the pgrep fallback must not see the
    // probing shell itself (whose command line holds the pattern).
    touch(&layout.setup_sentinel, "");
    assert_eq!(shell.probe(&target).await.unwrap(), report(Tri::Yes, Tri::No, Tri::No, None));

    // A run.sh started the Go integration's way (no pid file): found by pgrep.
    std::fs::create_dir_all(&layout.runner_dir).unwrap();
    let run_sh = layout.run_sh();
    std::fs::write(&run_sh, "#!/bin/sh\nsleep 60\n").unwrap();
    Command::new("chmod").args(["+x", &run_sh]).status().unwrap();
    let go_runner = Spawned::new(Command::new(&run_sh).arg("--jitconfig").arg("x"));
    assert_eq!(shell.probe(&target).await.unwrap(), report(Tri::Yes, Tri::No, Tri::Yes, None));
    drop(go_runner);

    // Our pid file: a live pid is alive, a dead pid is not (whatever else runs).
    let sleeper = Spawned::new(Command::new("sleep").arg("60"));
    touch(&layout.pid_file, &format!("{}\n", sleeper.0.id()));
    assert_eq!(shell.probe(&target).await.unwrap(), report(Tri::Yes, Tri::No, Tri::Yes, None));
    let mut dead = Command::new("true").spawn().unwrap();
    dead.wait().unwrap();
    touch(&layout.pid_file, &format!("{}\n", dead.id()));
    assert_eq!(shell.probe(&target).await.unwrap(), report(Tri::Yes, Tri::No, Tri::No, None));
    drop(sleeper);

    // run.sh exited with a code.
    touch(&layout.run_sentinel, "");
    touch(&layout.exit_code_file, "3\n");
    assert_eq!(shell.probe(&target).await.unwrap(), report(Tri::Yes, Tri::Yes, Tri::No, Some(3)));

    // A garbage pid file falls back to pgrep; a garbage exit code is no code.
    touch(&layout.pid_file, "not-a-pid");
    touch(&layout.exit_code_file, "x");
    assert_eq!(shell.probe(&target).await.unwrap(), report(Tri::Yes, Tri::Yes, Tri::No, None));
}

/// Collects everything logged through `tracing` while alive (for the no-secrets check).
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn provisions_end_to_end_detached_and_keeps_the_jit_config_out_of_ps_and_logs() {
    let captured = Captured::default();
    let writer = captured.clone();
    let _logs = tracing::subscriber::set_default(
        tracing_subscriber::fmt()
            .with_max_level(tracing::Level::TRACE)
            .with_writer(move || writer.clone())
            .finish(),
    );

    let Some(sshd) = Sshd::start() else { return };
    // Outlives the sshd fixture (and its temp dir), which this test drops early.
    let vm_dir = tempfile::tempdir().unwrap();
    let layout = VmLayout::under(vm_dir.path().to_str().unwrap());
    let _guard = RunnerGuard(layout.pid_file.clone());
    let shell = key_shell(&sshd, layout.clone());
    let downloads = FakeRunnerDownloads::start().await.unwrap();
    let github = PollStub::start().await;
    let credential = "cred-real-sshd-s3cr3t";
    let jit = github.register(
        "mac-real1",
        credential,
        JobPlan { idle_polls: 15, running_polls: 15, removed: false },
    );

    shell.wait_ready(&sshd.target()).await.unwrap();
    shell.install_and_start_runner(&sshd.target(), &install(&downloads, &jit)).await.unwrap();
    assert_eq!(downloads.downloads(), 1);
    let report = shell.probe(&sshd.target()).await.unwrap();
    assert_eq!(
        (report.setup_complete, report.run_complete, report.runner_alive),
        (Tri::Yes, Tri::No, Tri::Yes)
    );
    let pid: u32 = std::fs::read_to_string(&layout.pid_file).unwrap().trim().parse().unwrap();

    // The SSH connection that started it is closed; the daemon itself goes away too.
    drop(sshd);
    let before = github.polls(credential);
    eventually(Duration::from_secs(15), "the detached runner to keep polling", || async {
        (github.polls(credential) > before + 3).then_some(())
    })
    .await;
    assert!(process_alive(pid), "run.sh survived its SSH session and sshd");
    let ps = ps_all();
    assert!(ps.contains("actions-runner/run.sh"), "run.sh is visible in ps");
    assert!(!ps.contains(&jit) && !ps.contains(credential), "JIT config in ps output:\n{ps}");

    // It finishes its job; the launcher records the exit.
    eventually(Duration::from_secs(40), "the run-complete sentinel", || async {
        Path::new(&layout.run_sentinel).exists().then_some(())
    })
    .await;
    assert_eq!(std::fs::read_to_string(&layout.exit_code_file).unwrap().trim(), "0");
    assert!(!process_alive(pid));
    let runner_log = std::fs::read_to_string(&layout.log_file).unwrap();
    assert!(runner_log.contains("Job completed"), "{runner_log}");
    assert!(!runner_log.contains(&jit) && !runner_log.contains(credential));

    let ours = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    assert!(ours.contains("runner started"), "the capture works: {ours}");
    assert!(!ours.contains(&jit) && !ours.contains(credential), "JIT config in our logs:\n{ours}");
}

#[tokio::test]
async fn a_runner_that_fails_records_its_code_and_stop_is_safe_afterwards() {
    let Some(sshd) = Sshd::start() else { return };
    let layout = layout_in(&sshd, "vm");
    let _guard = RunnerGuard(layout.pid_file.clone());
    let shell = key_shell(&sshd, layout.clone());
    let downloads = FakeRunnerDownloads::start().await.unwrap();
    let github = PollStub::start().await;
    // A credential the server does not know: 401, run.sh exits 1.
    let jit =
        github.register("mac-real2", "known", JobPlan { idle_polls: 1, running_polls: 1, removed: false });
    let jit = {
        use base64::Engine as _;
        let engine = base64::engine::general_purpose::STANDARD;
        let json = String::from_utf8(engine.decode(&jit).unwrap()).unwrap().replace("known", "forgotten");
        engine.encode(json)
    };
    shell.install_and_start_runner(&sshd.target(), &install(&downloads, &jit)).await.unwrap();
    let report = eventually(Duration::from_secs(30), "run.sh to exit", || async {
        let report = shell.probe(&sshd.target()).await.ok()?;
        (report.run_complete == Tri::Yes).then_some(report)
    })
    .await;
    assert_eq!(
        report,
        ProbeReport {
            setup_complete: Tri::Yes,
            run_complete: Tri::Yes,
            runner_alive: Tri::No,
            exit_code: Some(1)
        }
    );
    shell.stop_runner(&sshd.target()).await.unwrap();
    let tail = shell.tail_log(&sshd.target(), 5).await.unwrap();
    assert!(tail.contains("401"), "{tail}");
}

#[tokio::test]
async fn stop_runner_terminates_a_running_runner() {
    let Some(sshd) = Sshd::start() else { return };
    let layout = layout_in(&sshd, "vm");
    let _guard = RunnerGuard(layout.pid_file.clone());
    let shell = key_shell(&sshd, layout.clone());
    let downloads = FakeRunnerDownloads::start().await.unwrap();
    let github = PollStub::start().await;
    let jit = github.register(
        "mac-real3",
        "cred-3",
        JobPlan { idle_polls: 100_000, running_polls: 0, removed: false },
    );
    shell.install_and_start_runner(&sshd.target(), &install(&downloads, &jit)).await.unwrap();
    let pid: u32 = std::fs::read_to_string(&layout.pid_file).unwrap().trim().parse().unwrap();
    shell.stop_runner(&sshd.target()).await.unwrap();
    let report = eventually(Duration::from_secs(20), "the stop to be recorded", || async {
        let report = shell.probe(&sshd.target()).await.ok()?;
        (report.run_complete == Tri::Yes).then_some(report)
    })
    .await;
    assert_eq!(report.runner_alive, Tri::No);
    assert_eq!(report.exit_code, Some(143));
    assert!(!process_alive(pid));
}

#[tokio::test]
async fn megabytes_on_stderr_before_any_stdout_are_all_returned() {
    let Some(sshd) = Sshd::start() else { return };
    let shell = key_shell(&sshd, layout_in(&sshd, "vm"));
    // More than the SSH channel window on stderr while stdout stays silent: reading the
    // streams one after the other would stall.
    let script =
        "head -c 5000000 /dev/zero | tr '\\000' e >&2; head -c 3000000 /dev/zero | tr '\\000' o; exit 7";
    let out = shell.run_script(&sshd.target(), script).await.unwrap();
    assert_eq!(out.exit_status, 7);
    assert_eq!(out.stderr.len(), 5_000_000);
    assert_eq!(out.stdout.len(), 3_000_000);
    assert!(out.stderr.bytes().all(|b| b == b'e') && out.stdout.bytes().all(|b| b == b'o'));
}

#[tokio::test]
async fn a_command_that_hangs_is_cut_at_its_budget() {
    let Some(sshd) = Sshd::start() else { return };
    let mut config = quick_config(
        &sshd.user,
        SshAuth::PrivateKey { path: sshd.key_path.clone(), passphrase: None },
        layout_in(&sshd, "vm"),
    );
    config.script_timeout = Duration::from_secs(1);
    let shell = Ssh2Shell::new(config).unwrap();
    let err = shell.run_script(&sshd.target(), "echo started; sleep 60").await.unwrap_err();
    assert!(
        matches!(err, ShellError::Timeout { step: SshStep::Io, after, .. } if after == Duration::from_secs(1)),
        "{err:?}"
    );
}
