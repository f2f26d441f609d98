//! In-memory fakes of the three seams, for tests of the fleet and the reconciler (and for
//! anyone embedding the crates who wants a dry lab). Behind the `fakes` feature.
//!
//! They are stateful and follow the contracts of the traits: a deploy creates a running
//! VM, a JIT config registers a runner, removing a busy runner answers `JobStillRunning`,
//! deleting a missing VM succeeds. Each has fault switches (fail the next N calls, hang,
//! unreachable). A VM's SSH host is its name (port 22), so the fake shell is keyed by VM
//! name. They do not simulate time: tests move things on (`finish_run`, `set_busy`, …).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use runner_core::{DeployRequest, Vm, VmBackend, VmBackendError, VmStatus};
use runner_core::{
    JitConfig, MessageQueue, MessageSession, NewScaleSet, RunnerGroup, RunnerRecord, ScaleSet, ScaleSetApi,
    ScaleSetError, ScaleSetMessage, ScaleSetRef, Statistics,
};
use runner_core::{ProbeReport, RunnerInstall, ScriptOutput, ShellError, SshStep, SshTarget, Tri, VmShell};
use secrecy::SecretString;

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Takes one from a "fail the next N calls" counter.
fn take(counter: &Mutex<u32>) -> bool {
    let mut n = lock(counter);
    if *n > 0 {
        *n -= 1;
        true
    } else {
        false
    }
}

/// A running VM named `name`, reachable at `name:22`.
pub fn running_vm(name: &str) -> Vm {
    Vm {
        name: name.to_owned(),
        ip: Some(name.to_owned()),
        ssh_port: Some(22),
        status: VmStatus::Running,
        node: None,
    }
}

/// Fake Orka namespace.
#[derive(Default)]
pub struct FakeOrka {
    vms: Mutex<BTreeMap<String, Vm>>,
    calls: Mutex<Vec<String>>,
    /// Fail the next N deploys (retryable: capacity exhausted).
    pub fail_deploys: Mutex<u32>,
    /// Fail the next N deletes (retryable: server error).
    pub fail_deletes: Mutex<u32>,
    /// Fail the next N listings.
    pub fail_lists: Mutex<u32>,
    /// Deploys hang this long before answering.
    pub deploy_delay: Mutex<Duration>,
    /// Deletes hang this long before answering.
    pub delete_delay: Mutex<Duration>,
    deploys_in_flight: Mutex<(u32, u32)>,
}

impl FakeOrka {
    /// An empty namespace.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a VM (left by an earlier process, or a foreign one).
    pub fn insert(&self, vm: Vm) {
        lock(&self.vms).insert(vm.name.clone(), vm);
    }

    /// Removes a VM behind the controller's back.
    pub fn vanish(&self, name: &str) {
        lock(&self.vms).remove(name);
    }

    /// Names of the VMs that exist.
    pub fn names(&self) -> Vec<String> {
        lock(&self.vms).keys().cloned().collect()
    }

    /// Whether a VM exists.
    pub fn exists(&self, name: &str) -> bool {
        lock(&self.vms).contains_key(name)
    }

    /// The most deploys that were in flight at the same time.
    pub fn peak_concurrent_deploys(&self) -> u32 {
        lock(&self.deploys_in_flight).1
    }

    /// Calls made, like `deploy mac-x7k2p`, `delete mac-x7k2p`, `list`.
    pub fn calls(&self) -> Vec<String> {
        lock(&self.calls).clone()
    }

    fn log(&self, call: String) {
        lock(&self.calls).push(call);
    }
}

#[async_trait]
impl VmBackend for FakeOrka {
    async fn list_vms(&self) -> Result<Vec<Vm>, VmBackendError> {
        self.log("list".into());
        if take(&self.fail_lists) {
            return Err(VmBackendError::Server { status: 503, message: "injected".into() });
        }
        Ok(lock(&self.vms).values().cloned().collect())
    }

    async fn get_vm(&self, name: &str) -> Result<Option<Vm>, VmBackendError> {
        Ok(lock(&self.vms).get(name).cloned())
    }

    async fn deploy_vm(&self, request: &DeployRequest) -> Result<Vm, VmBackendError> {
        let name = request.name.to_string();
        self.log(format!("deploy {name}"));
        {
            let mut in_flight = lock(&self.deploys_in_flight);
            in_flight.0 += 1;
            in_flight.1 = in_flight.1.max(in_flight.0);
        }
        struct Done<'a>(&'a Mutex<(u32, u32)>);
        impl Drop for Done<'_> {
            fn drop(&mut self) {
                lock(self.0).0 -= 1;
            }
        }
        let _done = Done(&self.deploys_in_flight);
        let delay = *lock(&self.deploy_delay);
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        if take(&self.fail_deploys) {
            return Err(VmBackendError::CapacityExhausted { message: "injected".into() });
        }
        let vm = running_vm(&name);
        lock(&self.vms).insert(name, vm.clone());
        Ok(vm)
    }

    async fn delete_vm(&self, name: &str) -> Result<(), VmBackendError> {
        self.log(format!("delete {name}"));
        let delay = *lock(&self.delete_delay);
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        if take(&self.fail_deletes) {
            return Err(VmBackendError::Server { status: 500, message: "injected".into() });
        }
        lock(&self.vms).remove(name);
        Ok(())
    }
}

/// Fake GitHub scale-set API: runner registrations only (scale sets and sessions are
/// not the fleet's business and answer a configuration error).
#[derive(Default)]
pub struct FakeGitHub {
    runners: Mutex<BTreeMap<String, RunnerRecord>>,
    next_id: Mutex<i64>,
    calls: Mutex<Vec<String>>,
    /// Fail the next N JIT-config calls (retryable).
    pub fail_jit: Mutex<u32>,
    /// Fail the next N lookups (retryable).
    pub fail_lookups: Mutex<u32>,
    /// Fail the next N removals (retryable).
    pub fail_removals: Mutex<u32>,
    /// Runners that deregister themselves when their job ends (`finish_job`).
    pub self_deregister: Mutex<bool>,
}

impl FakeGitHub {
    /// No runners registered.
    pub fn new() -> Self {
        Self { self_deregister: Mutex::new(true), ..Self::default() }
    }

    /// Registers a runner (as an earlier process would have); returns its record.
    pub fn register(&self, name: &str, scale_set_id: i64, busy: bool) -> RunnerRecord {
        let mut next = lock(&self.next_id);
        *next += 1;
        let record = RunnerRecord {
            id: *next,
            name: name.to_owned(),
            runner_scale_set_id: scale_set_id,
            status: Some("online".into()),
            busy: Some(busy),
        };
        lock(&self.runners).insert(name.to_owned(), record.clone());
        record
    }

    /// Marks a runner busy or idle.
    pub fn set_busy(&self, name: &str, busy: bool) {
        if let Some(r) = lock(&self.runners).get_mut(name) {
            r.busy = Some(busy);
            r.status = Some("online".into());
        }
    }

    /// The job on `name` ended: the ephemeral runner deregisters itself (unless
    /// `self_deregister` is off, then it just becomes idle-offline).
    pub fn finish_job(&self, name: &str) {
        let mut runners = lock(&self.runners);
        if *lock(&self.self_deregister) {
            runners.remove(name);
        } else if let Some(r) = runners.get_mut(name) {
            r.busy = Some(false);
            r.status = Some("offline".into());
        }
    }

    /// Names of the registered runners.
    pub fn names(&self) -> Vec<String> {
        lock(&self.runners).keys().cloned().collect()
    }

    /// Whether a runner is registered.
    pub fn is_registered(&self, name: &str) -> bool {
        lock(&self.runners).contains_key(name)
    }

    /// Calls made, like `jit mac-x7k2p`, `lookup mac-x7k2p`, `remove 3`.
    pub fn calls(&self) -> Vec<String> {
        lock(&self.calls).clone()
    }

    fn log(&self, call: String) {
        lock(&self.calls).push(call);
    }
}

fn unsupported() -> ScaleSetError {
    ScaleSetError::Config("not supported by the in-memory fake".into())
}

fn injected() -> ScaleSetError {
    ScaleSetError::Http { status: 503, type_name: None, message: "injected".into() }
}

#[async_trait]
impl ScaleSetApi for FakeGitHub {
    async fn get_runner_group(&self, _name: &str) -> Result<RunnerGroup, ScaleSetError> {
        Err(unsupported())
    }
    async fn get_scale_set(&self, _group: i64, _name: &str) -> Result<Option<ScaleSet>, ScaleSetError> {
        Err(unsupported())
    }
    async fn get_scale_set_by_id(&self, _id: i64) -> Result<ScaleSet, ScaleSetError> {
        Err(unsupported())
    }
    async fn create_scale_set(&self, _scale_set: &NewScaleSet) -> Result<ScaleSet, ScaleSetError> {
        Err(unsupported())
    }
    async fn delete_scale_set(&self, _id: i64) -> Result<(), ScaleSetError> {
        Err(unsupported())
    }
    async fn generate_jit_config(
        &self,
        scale_set_id: i64,
        runner_name: &str,
    ) -> Result<JitConfig, ScaleSetError> {
        self.log(format!("jit {runner_name}"));
        if take(&self.fail_jit) {
            return Err(injected());
        }
        if self.is_registered(runner_name) {
            return Err(ScaleSetError::AgentExists);
        }
        let mut runner = self.register(runner_name, scale_set_id, false);
        runner.status = Some("offline".into());
        lock(&self.runners).insert(runner_name.to_owned(), runner.clone());
        Ok(JitConfig { runner, encoded_jit_config: SecretString::from(format!("jit-secret-{runner_name}")) })
    }
    async fn get_runner_by_name(&self, name: &str) -> Result<Option<RunnerRecord>, ScaleSetError> {
        self.log(format!("lookup {name}"));
        if take(&self.fail_lookups) {
            return Err(injected());
        }
        Ok(lock(&self.runners).get(name).cloned())
    }
    async fn get_runner(&self, id: i64) -> Result<Option<RunnerRecord>, ScaleSetError> {
        Ok(lock(&self.runners).values().find(|r| r.id == id).cloned())
    }
    async fn remove_runner(&self, id: i64) -> Result<(), ScaleSetError> {
        self.log(format!("remove {id}"));
        if take(&self.fail_removals) {
            return Err(injected());
        }
        let mut runners = lock(&self.runners);
        let Some(name) = runners.values().find(|r| r.id == id).map(|r| r.name.clone()) else { return Ok(()) };
        if runners[&name].busy == Some(true) {
            return Err(ScaleSetError::JobStillRunning);
        }
        runners.remove(&name);
        Ok(())
    }
    async fn create_session(&self, _id: i64, _owner: &str) -> Result<MessageSession, ScaleSetError> {
        Err(unsupported())
    }
    async fn refresh_session(&self, _session: &MessageSession) -> Result<MessageSession, ScaleSetError> {
        Err(unsupported())
    }
    async fn delete_session(&self, _session: &MessageSession) -> Result<(), ScaleSetError> {
        Err(unsupported())
    }
}

/// The state inside one fake VM.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct VmInside {
    /// Setup sentinel present.
    pub setup_complete: bool,
    /// Run sentinel present.
    pub run_complete: bool,
    /// run.sh alive.
    pub alive: bool,
}

/// Fake SSH into fake VMs, keyed by host (= VM name for [`FakeOrka`] VMs).
#[derive(Default)]
pub struct FakeShell {
    vms: Mutex<HashMap<String, VmInside>>,
    unreachable: Mutex<BTreeSet<String>>,
    auth_rejected: Mutex<BTreeSet<String>>,
    calls: Mutex<Vec<String>>,
    installs_seen: Mutex<Vec<String>>,
    /// Unreachable hosts hang (until the caller's deadline) instead of failing fast.
    pub hang_when_unreachable: Mutex<bool>,
    /// Fail the next N readiness waits (retryable connect failure).
    pub fail_ready: Mutex<u32>,
    /// Fail the next N installs at connect (retryable, nothing ran).
    pub fail_install_connect: Mutex<u32>,
    /// Fail the next N installs after the script ran (not retryable).
    pub fail_install_remote: Mutex<u32>,
    /// Installs start run.sh at once but return only after this long (a slow SSH session).
    pub install_delay: Mutex<Duration>,
}

impl FakeShell {
    /// No VMs.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets what is inside a VM.
    pub fn set(&self, host: &str, inside: VmInside) {
        lock(&self.vms).insert(host.to_owned(), inside);
    }

    /// What is inside a VM (all false when unknown).
    pub fn get(&self, host: &str) -> VmInside {
        lock(&self.vms).get(host).copied().unwrap_or_default()
    }

    /// A runner that is set up and running.
    pub fn set_running(&self, host: &str) {
        self.set(host, VmInside { setup_complete: true, run_complete: false, alive: true });
    }

    /// run.sh exited after its job: run sentinel written.
    pub fn finish_run(&self, host: &str) {
        self.set(host, VmInside { setup_complete: true, run_complete: true, alive: false });
    }

    /// run.sh died without writing the run sentinel.
    pub fn crash(&self, host: &str) {
        self.set(host, VmInside { setup_complete: true, run_complete: false, alive: false });
    }

    /// Makes a host unreachable (or reachable again).
    pub fn set_unreachable(&self, host: &str, unreachable: bool) {
        let mut set = lock(&self.unreachable);
        if unreachable {
            set.insert(host.to_owned());
        } else {
            set.remove(host);
        }
    }

    /// Makes a host reject our credentials.
    pub fn reject_auth(&self, host: &str) {
        lock(&self.auth_rejected).insert(host.to_owned());
    }

    /// Calls made, like `probe mac-x7k2p`, `install mac-x7k2p`.
    pub fn calls(&self) -> Vec<String> {
        lock(&self.calls).clone()
    }

    /// The `Debug` renderings of every install request seen (to check no secret leaks).
    pub fn installs_seen(&self) -> Vec<String> {
        lock(&self.installs_seen).clone()
    }

    async fn reach(&self, target: &SshTarget, op: &str) -> Result<(), ShellError> {
        lock(&self.calls).push(format!("{op} {}", target.host));
        if lock(&self.auth_rejected).contains(&target.host) {
            return Err(ShellError::AuthFailed { target: target.to_string(), username: "admin".into() });
        }
        if lock(&self.unreachable).contains(&target.host) {
            if *lock(&self.hang_when_unreachable) {
                std::future::pending::<()>().await;
            }
            return Err(ShellError::Timeout {
                target: target.to_string(),
                step: SshStep::Connect,
                after: Duration::from_secs(10),
            });
        }
        Ok(())
    }
}

fn tri(value: bool) -> Tri {
    Tri::from_bool(value)
}

#[async_trait]
impl VmShell for FakeShell {
    async fn wait_ready(&self, target: &SshTarget) -> Result<(), ShellError> {
        self.reach(target, "ready").await?;
        if take(&self.fail_ready) {
            return Err(ShellError::Timeout {
                target: target.to_string(),
                step: SshStep::Connect,
                after: Duration::from_secs(1),
            });
        }
        Ok(())
    }

    async fn probe(&self, target: &SshTarget) -> Result<ProbeReport, ShellError> {
        self.reach(target, "probe").await?;
        let inside = self.get(&target.host);
        Ok(ProbeReport {
            setup_complete: tri(inside.setup_complete),
            run_complete: tri(inside.run_complete),
            runner_alive: tri(inside.alive),
            exit_code: inside.run_complete.then_some(0),
        })
    }

    async fn install_and_start_runner(
        &self,
        target: &SshTarget,
        install: &RunnerInstall,
    ) -> Result<(), ShellError> {
        self.reach(target, "install").await?;
        lock(&self.installs_seen).push(format!("{install:?}"));
        if take(&self.fail_install_connect) {
            return Err(ShellError::Timeout {
                target: target.to_string(),
                step: SshStep::Connect,
                after: Duration::from_secs(1),
            });
        }
        if take(&self.fail_install_remote) {
            return Err(ShellError::RemoteFailed {
                target: target.to_string(),
                exit_status: 1,
                stderr_tail: "curl: (6)".into(),
            });
        }
        self.set_running(&target.host);
        let delay = *lock(&self.install_delay);
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        Ok(())
    }

    async fn stop_runner(&self, target: &SshTarget) -> Result<(), ShellError> {
        self.reach(target, "stop").await?;
        let mut inside = self.get(&target.host);
        inside.alive = false;
        self.set(&target.host, inside);
        Ok(())
    }

    async fn tail_log(&self, target: &SshTarget, _lines: u32) -> Result<String, ShellError> {
        self.reach(target, "tail").await?;
        Ok(String::new())
    }

    async fn run_script(&self, target: &SshTarget, _script: &str) -> Result<ScriptOutput, ShellError> {
        self.reach(target, "script").await?;
        Ok(ScriptOutput { stdout: String::new(), stderr: String::new(), exit_status: 0 })
    }
}

/// Fake message queue: records acquisitions; acquires everything asked for.
#[derive(Default)]
pub struct FakeQueue {
    acquired: Mutex<Vec<i64>>,
    /// Fail the next N acquisitions.
    pub fail_acquire: Mutex<u32>,
}

impl FakeQueue {
    /// A queue.
    pub fn new() -> Self {
        Self::default()
    }

    /// Request ids acquired so far.
    pub fn acquired(&self) -> Vec<i64> {
        lock(&self.acquired).clone()
    }
}

#[async_trait]
impl MessageQueue for FakeQueue {
    async fn get_message(
        &self,
        _last: i64,
        _capacity: u32,
    ) -> Result<Option<ScaleSetMessage>, ScaleSetError> {
        Ok(None)
    }
    async fn delete_message(&self, _id: i64) -> Result<(), ScaleSetError> {
        Ok(())
    }
    async fn acquire_jobs(&self, request_ids: &[i64]) -> Result<Vec<i64>, ScaleSetError> {
        if take(&self.fail_acquire) {
            return Err(injected());
        }
        lock(&self.acquired).extend_from_slice(request_ids);
        Ok(request_ids.to_vec())
    }
    fn session(&self) -> MessageSession {
        MessageSession {
            session_id: "fake".into(),
            owner_name: "fake".into(),
            scale_set: ScaleSetRef { id: 1, name: "fake".into() },
            message_queue_url: "http://127.0.0.1/fake".into(),
            message_queue_access_token: SecretString::from("fake"),
            statistics: Statistics::default(),
        }
    }
}
