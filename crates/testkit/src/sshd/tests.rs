//! The sshd fixture and [`SshdVmHost`] against a real sshd, driven with the OpenSSH
//! client. The host tests write the real VM paths, so they run only with `CI=true` or
//! `ORKA_E2E_REAL_SSHD=1` (a loud skip otherwise) and hold the [`HostLock`].

use std::time::Duration;

use anyhow::{Context as _, Result, bail};

use super::*;
use crate::orka::VmProvider;
use crate::vm::MARKER_VAR;

/// Runs `command` as `user` on `127.0.0.1:port` with the OpenSSH client; returns stdout.
async fn ssh(key: &Path, user: &str, port: u16, command: &str) -> Result<String> {
    let run = tokio::process::Command::new("ssh")
        .arg("-i")
        .arg(key)
        .args(["-p", &port.to_string()])
        .args(["-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null"])
        .args(["-o", "BatchMode=yes", "-o", "LogLevel=ERROR", "-o", "ConnectTimeout=10"])
        .arg(format!("{user}@127.0.0.1"))
        .arg(command)
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(Duration::from_secs(60), run).await.context("ssh hung")??;
    if !out.status.success() {
        bail!("ssh {command:?} failed ({}): {}", out.status, String::from_utf8_lossy(&out.stderr));
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .is_ok_and(|stat| !stat.rsplit(')').next().unwrap_or_default().trim_start().starts_with('Z'))
}

fn environ_has(pid: u32, var: &str) -> bool {
    std::fs::read(format!("/proc/{pid}/environ"))
        .is_ok_and(|env| env.split(|b| *b == 0).any(|entry| entry.starts_with(format!("{var}=").as_bytes())))
}

/// Polls `check` every 100 ms for up to 30 s.
async fn eventually(what: &str, mut check: impl FnMut() -> bool) -> Result<()> {
    for _ in 0..300 {
        if check() {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    bail!("timed out waiting for: {what}")
}

/// The host tests share this process's [`HostLock`]; this keeps them apart.
static ONE_HOST_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Whether the host tests may write the real VM paths; says why not.
fn may_touch_host_paths() -> bool {
    let opted_in = std::env::var("ORKA_E2E_REAL_SSHD").is_ok_and(|v| v == "1" || v == "true");
    if !in_ci() && !opted_in {
        eprintln!(
            "\n!!!!! SKIPPED SshdVmHost test: it writes /Users/<user>/actions-runner and \
             /tmp/orka-runner-*; set ORKA_E2E_REAL_SSHD=1 (or CI=true) to run it !!!!!\n"
        );
        return false;
    }
    if !sshd_installed() {
        skip_or_fail(&format!("{SSHD} not found"));
        return false;
    }
    if !is_root() && !Path::new("/Users").exists() {
        skip_or_fail("/Users does not exist and only root may create it");
        return false;
    }
    true
}

#[tokio::test]
async fn the_fixture_authorizes_its_key_and_sets_the_session_environment() -> Result<()> {
    let options =
        SshdOptions { set_env: vec![("FIXTURE_MARK".into(), "mark-42".into())], ..Default::default() };
    let Some(sshd) = Sshd::start_with(options) else { return Ok(()) };
    let out = ssh(&sshd.key_path, &sshd.user, sshd.port, "id -un; echo \"$FIXTURE_MARK\"").await?;
    assert_eq!(out, format!("{}\nmark-42", sshd.user), "sshd log:\n{}", sshd.log());
    // A key it does not know is refused.
    let other = tempfile::tempdir()?;
    let (stranger, _) = keygen(other.path(), "stranger")?;
    assert!(ssh(&stranger, &sshd.user, sshd.port, "true").await.is_err());
    Ok(())
}

#[tokio::test]
async fn a_stopped_fixture_no_longer_listens() -> Result<()> {
    let Some(mut sshd) = Sshd::start() else { return Ok(()) };
    let port = sshd.port;
    sshd.stop();
    assert!(std::net::TcpStream::connect(("127.0.0.1", port)).is_err());
    Ok(())
}

/// Starts, over real SSH, what a provisioned VM runs: a `run.sh` in its own process group
/// recorded in the pid file, plus a stray detached process not recorded anywhere.
/// Returns (run.sh pid, stray pid).
async fn start_runner_like(host: &SshdVmHost, port: u16) -> Result<(u32, u32)> {
    let user = host.username();
    let script = format!(
        "set -e; dir=/Users/{user}/actions-runner; mkdir -p $dir; \
         printf '#!/bin/sh\\nsleep 600\\n' > $dir/run.sh; chmod +x $dir/run.sh; \
         : > /tmp/orka-runner-setup-complete; \
         setsid nohup $dir/run.sh </dev/null >/tmp/orka-runner.log 2>&1 & echo $! > /tmp/orka-runner.pid; \
         setsid nohup sleep 601 </dev/null >/dev/null 2>&1 & echo $!"
    );
    let stray: u32 = ssh(host.key_path(), user, port, &script).await?.parse()?;
    let runner: u32 = std::fs::read_to_string("/tmp/orka-runner.pid")?.trim().parse()?;
    Ok((runner, stray))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn destroy_kills_everything_the_vm_started_and_removes_its_files() -> Result<()> {
    if !may_touch_host_paths() {
        return Ok(());
    }
    let _turn = ONE_HOST_AT_A_TIME.lock().await;
    let host = SshdVmHost::new().await?;
    let user = host.username().to_owned();
    clean_vm_files(&user);
    let (ip, port) = host.boot("vm-a").await?;
    assert_eq!(ip, "127.0.0.1");
    assert_eq!(host.running().await.as_deref(), Some("vm-a"));
    let (runner, stray) = start_runner_like(&host, port).await?;
    assert!(alive(runner) && alive(stray), "both processes run detached");
    assert!(environ_has(stray, MARKER_VAR), "sshd tags the VM's processes");
    assert!(vm_paths(&user).iter().any(|p| p.exists()));

    host.destroy("a-vm-it-never-booted").await;
    assert!(alive(runner), "destroying another name leaves the VM alone");

    host.destroy("vm-a").await;
    eventually("the VM's processes are gone", || !alive(runner) && !alive(stray)).await?;
    for path in vm_paths(&user) {
        assert!(!path.exists(), "{} left behind", path.display());
    }
    assert!(std::net::TcpStream::connect(("127.0.0.1", port)).is_err(), "its sshd is gone");
    assert_eq!(host.running().await, None);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_vm_boots_only_once_the_first_is_destroyed_and_dropping_the_host_ends_it() -> Result<()> {
    if !may_touch_host_paths() {
        return Ok(());
    }
    let _turn = ONE_HOST_AT_A_TIME.lock().await;
    let host = std::sync::Arc::new(SshdVmHost::new().await?);
    let user = host.username().to_owned();
    clean_vm_files(&user);
    let (_, first_port) = host.boot("vm-1").await?;
    assert!(host.boot("vm-1").await.is_err(), "the same VM cannot boot twice");
    let second = tokio::spawn({
        let host = host.clone();
        async move { host.boot("vm-2").await }
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(!second.is_finished(), "vm-2 waits while vm-1 exists");
    assert_eq!(host.running().await.as_deref(), Some("vm-1"));
    host.destroy("vm-1").await;
    assert!(std::net::TcpStream::connect(("127.0.0.1", first_port)).is_err(), "vm-1's sshd is gone");
    let (_, second_port) = tokio::time::timeout(Duration::from_secs(60), second).await???;
    assert_eq!(host.running().await.as_deref(), Some("vm-2"));
    let (runner, _) = start_runner_like(&host, second_port).await?;

    drop(std::sync::Arc::into_inner(host).context("the only handle")?);
    eventually("dropping the host ends its VM", || !alive(runner)).await?;
    assert!(std::net::TcpStream::connect(("127.0.0.1", second_port)).is_err());
    for path in vm_paths(&user) {
        assert!(!path.exists(), "{} left behind", path.display());
    }
    Ok(())
}
