//! Fake VMs and the host that boots them: each VM is an in-process russh server on its
//! own `127.0.0.1` port with its own scratch root, or one of the faulty endpoints a real
//! fleet shows (black hole, refused, slow to start, auth rejected, drop mid-session).
//! [`FakeVmHost`] implements [`VmProvider`] so the fake Orka can boot and destroy them.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use rand::RngCore;
use russh::keys::{PrivateKey, PublicKey};
use tokio::net::TcpListener;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::process::kill_all;
use super::rewrite::rewrite_paths;
use super::ssh::{Connection, VmContext};
use crate::orka::VmProvider;

/// How a fake VM's SSH endpoint behaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum VmBehaviour {
    /// A working SSH server.
    #[default]
    Normal,
    /// Accepts TCP connections and never sends a banner (a VM hung in boot, a firewall).
    BlackHole,
    /// Nothing listens: connections are refused.
    Refuses,
    /// Accepts and at once closes connections until `ready_after` has passed since boot,
    /// then serves SSH (sshd not up yet while the port forward is).
    SlowStart {
        /// How long after boot SSH starts working.
        ready_after: Duration,
    },
    /// Every authentication attempt is rejected.
    AuthRejected,
    /// Authenticates, then drops the connection when a command is started.
    DropMidSession,
}

/// Credentials and behaviour of fake VMs.
#[derive(Debug, Clone)]
pub struct FakeVmConfig {
    /// Login user (`admin`).
    pub username: String,
    /// Password (`admin`).
    pub password: String,
    /// Public keys accepted for the user.
    pub authorized_keys: Vec<PublicKey>,
    /// Endpoint behaviour.
    pub behaviour: VmBehaviour,
    /// Extra environment of every command run in the VM (e.g. `FAKE_RUNNER_POLL_INTERVAL`
    /// to slow the fake runner's polling down in benchmarks with hundreds of runners).
    pub env: Vec<(String, String)>,
}

impl Default for FakeVmConfig {
    fn default() -> Self {
        FakeVmConfig {
            username: "admin".into(),
            password: "admin".into(),
            authorized_keys: Vec::new(),
            behaviour: VmBehaviour::Normal,
            env: Vec::new(),
        }
    }
}

/// One running fake VM. Dropping it (or [`FakeVm::shutdown`]) stops its SSH endpoint,
/// kills every process started inside it, detached ones included, and removes its root.
pub struct FakeVm {
    name: String,
    port: u16,
    root: PathBuf,
    context: Option<Arc<VmContext>>,
    stop: CancellationToken,
}

impl std::fmt::Debug for FakeVm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FakeVm").field("name", &self.name).field("port", &self.port).finish_non_exhaustive()
    }
}

fn random_host_key() -> PrivateKey {
    let mut seed = [0u8; 32];
    rand::rng().fill_bytes(&mut seed);
    PrivateKey::from(russh::keys::ssh_key::private::Ed25519Keypair::from_seed(&seed))
}

impl FakeVm {
    /// Starts a VM named `name` whose scratch root is `root` (created; `tmp/` and
    /// `Users/<user>/` inside it).
    pub async fn start(name: &str, root: PathBuf, config: FakeVmConfig) -> std::io::Result<FakeVm> {
        std::fs::create_dir_all(root.join("tmp"))?;
        std::fs::create_dir_all(root.join("Users").join(&config.username))?;
        let listener = TcpListener::bind(("127.0.0.1", 0)).await?;
        let port = listener.local_addr()?.port();
        let stop = CancellationToken::new();
        let mut vm =
            FakeVm { name: name.to_owned(), port, root: root.clone(), context: None, stop: stop.clone() };
        match config.behaviour {
            VmBehaviour::Refuses => drop(listener),
            VmBehaviour::BlackHole => {
                tokio::spawn(black_hole(listener, stop));
            }
            behaviour => {
                let context = Arc::new(VmContext {
                    name: name.to_owned(),
                    root,
                    username: config.username,
                    password: config.password,
                    authorized_keys: config.authorized_keys,
                    reject_auth: behaviour == VmBehaviour::AuthRejected,
                    drop_on_exec: behaviour == VmBehaviour::DropMidSession,
                    env: config.env,
                    marker: uuid::Uuid::new_v4().to_string(),
                    process_groups: Mutex::new(Vec::new()),
                });
                let ready_at = match behaviour {
                    VmBehaviour::SlowStart { ready_after } => Some(Instant::now() + ready_after),
                    _ => None,
                };
                vm.context = Some(Arc::clone(&context));
                tokio::spawn(serve(listener, context, ready_at, stop));
            }
        }
        tracing::debug!(vm = name, port, behaviour = ?config.behaviour, "fake VM booted");
        Ok(vm)
    }

    /// The VM's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// `("127.0.0.1", port)` of its SSH endpoint.
    pub fn ssh_addr(&self) -> (String, u16) {
        ("127.0.0.1".to_owned(), self.port)
    }

    /// The scratch root holding the VM's `tmp/` and `Users/`.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Where an absolute VM path (e.g. `/tmp/orka-runner-setup-complete`) lives on the host.
    pub fn host_path(&self, vm_path: &str) -> PathBuf {
        PathBuf::from(rewrite_paths(vm_path, &self.root))
    }

    /// Stops the endpoint, kills everything running inside, removes the root. Idempotent.
    pub fn shutdown(&mut self) {
        self.stop.cancel();
        if let Some(context) = self.context.take() {
            let groups = context.process_groups.lock().unwrap_or_else(|p| p.into_inner()).clone();
            kill_all(&context.marker, &groups);
        }
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

impl Drop for FakeVm {
    fn drop(&mut self) {
        self.shutdown();
    }
}

async fn black_hole(listener: TcpListener, stop: CancellationToken) {
    let mut held = Vec::new();
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            accepted = listener.accept() => match accepted {
                Ok((socket, _)) => held.push(socket),
                Err(_) => return,
            },
        }
    }
}

async fn serve(
    listener: TcpListener,
    vm: Arc<VmContext>,
    ready_at: Option<Instant>,
    stop: CancellationToken,
) {
    let config = Arc::new(russh::server::Config {
        keys: vec![random_host_key()],
        auth_rejection_time: Duration::from_millis(20),
        auth_rejection_time_initial: Some(Duration::ZERO),
        inactivity_timeout: Some(Duration::from_secs(300)),
        ..Default::default()
    });
    loop {
        let socket = tokio::select! {
            () = stop.cancelled() => return,
            accepted = listener.accept() => match accepted {
                Ok((socket, _)) => socket,
                Err(_) => return,
            },
        };
        if ready_at.is_some_and(|at| Instant::now() < at) {
            drop(socket);
            continue;
        }
        let _ = socket.set_nodelay(true);
        let handler = Connection { vm: Arc::clone(&vm), stdins: HashMap::new() };
        let config = Arc::clone(&config);
        let stop = stop.clone();
        tokio::spawn(async move {
            let Ok(session) = russh::server::run_stream(config, socket, handler).await else { return };
            let handle = session.handle();
            tokio::select! {
                () = stop.cancelled() => {
                    let _ = handle.disconnect(russh::Disconnect::ByApplication, "VM deleted".into(), String::new()).await;
                }
                _ = session => {}
            }
        });
    }
}

/// Boots and destroys fake VMs by name under one scratch directory; the [`VmProvider`]
/// behind the fake Orka. VMs booted get the host's [`FakeVmConfig`], with a per-name
/// behaviour override from [`FakeVmHost::set_behaviour`].
pub struct FakeVmHost {
    base: tempfile::TempDir,
    config: Mutex<FakeVmConfig>,
    overrides: Mutex<HashMap<String, VmBehaviour>>,
    vms: Mutex<HashMap<String, FakeVm>>,
}

impl FakeVmHost {
    /// A host with default VMs (`admin`/`admin`, working SSH).
    pub fn new() -> std::io::Result<Self> {
        Self::with_config(FakeVmConfig::default())
    }

    /// A host whose VMs get `config`.
    pub fn with_config(config: FakeVmConfig) -> std::io::Result<Self> {
        Ok(FakeVmHost {
            base: tempfile::Builder::new().prefix("orka-fake-vms-").tempdir()?,
            config: Mutex::new(config),
            overrides: Mutex::new(HashMap::new()),
            vms: Mutex::new(HashMap::new()),
        })
    }

    /// Changes the configuration of VMs booted from now on.
    pub fn set_config(&self, config: FakeVmConfig) {
        *self.config.lock().unwrap_or_else(|p| p.into_inner()) = config;
    }

    /// Gives the VM `name` (when it boots next) a behaviour.
    pub fn set_behaviour(&self, name: &str, behaviour: VmBehaviour) {
        self.overrides.lock().unwrap_or_else(|p| p.into_inner()).insert(name.to_owned(), behaviour);
    }

    /// Boots a VM and returns its SSH address.
    pub async fn boot_vm(&self, name: &str) -> std::io::Result<(String, u16)> {
        let mut config = self.config.lock().unwrap_or_else(|p| p.into_inner()).clone();
        if let Some(behaviour) = self.overrides.lock().unwrap_or_else(|p| p.into_inner()).get(name) {
            config.behaviour = *behaviour;
        }
        let safe: String =
            name.chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' { c } else { '_' }).collect();
        let root = self.base.path().join(format!("{safe}-{}", uuid::Uuid::new_v4().simple()));
        let vm = FakeVm::start(name, root, config).await?;
        let addr = vm.ssh_addr();
        let old = self.vms.lock().unwrap_or_else(|p| p.into_inner()).insert(name.to_owned(), vm);
        drop(old);
        Ok(addr)
    }

    /// Destroys a VM (kills everything inside, removes its root); unknown names are ignored.
    pub fn destroy_vm(&self, name: &str) {
        let vm = self.vms.lock().unwrap_or_else(|p| p.into_inner()).remove(name);
        drop(vm);
    }

    /// The scratch root of a running VM.
    pub fn vm_root(&self, name: &str) -> Option<PathBuf> {
        self.vms.lock().unwrap_or_else(|p| p.into_inner()).get(name).map(|vm| vm.root.clone())
    }

    /// Where an absolute path inside the VM `name` lives on the host.
    pub fn host_path(&self, name: &str, vm_path: &str) -> Option<PathBuf> {
        self.vms.lock().unwrap_or_else(|p| p.into_inner()).get(name).map(|vm| vm.host_path(vm_path))
    }

    /// Names of the running VMs, sorted.
    pub fn running(&self) -> Vec<String> {
        let mut names: Vec<String> =
            self.vms.lock().unwrap_or_else(|p| p.into_inner()).keys().cloned().collect();
        names.sort();
        names
    }

    /// The scratch directory holding every VM root.
    pub fn base_dir(&self) -> &Path {
        self.base.path()
    }
}

impl Drop for FakeVmHost {
    fn drop(&mut self) {
        let vms: Vec<FakeVm> =
            self.vms.lock().unwrap_or_else(|p| p.into_inner()).drain().map(|(_, vm)| vm).collect();
        drop(vms);
    }
}

#[async_trait]
impl VmProvider for FakeVmHost {
    async fn boot(&self, vm_name: &str) -> anyhow::Result<(String, u16)> {
        Ok(self.boot_vm(vm_name).await?)
    }

    async fn destroy(&self, vm_name: &str) {
        let vm = self.vms.lock().unwrap_or_else(|p| p.into_inner()).remove(vm_name);
        if let Some(vm) = vm {
            // Killing processes and removing the root is blocking work.
            let _ = tokio::task::spawn_blocking(move || drop(vm)).await;
        }
    }
}
