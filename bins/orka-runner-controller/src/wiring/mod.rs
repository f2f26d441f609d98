//! Picks the concrete implementations: the hyper GitHub client, the hyper Orka client and
//! the ssh2 shell, built from the validated [`Config`], and connects them to the
//! per-scale-set [`service`], the provisioner's [`Fleet`](provisioner::Fleet) and the
//! [`Reconciler`](reconciler::Reconciler).
//!
//! Owns construction and adaptation only; every decision lives in a library crate.

mod metered;
mod nodes;
mod observer;
mod oneshot;
mod outdated;
mod runtime;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use github_scaleset::{Auth, GitHubClient, GitHubConfig, MessageQueue, MessageSession, ScaleSetApi};
use orka_client::{NodeIpMap, OrkaClient, OrkaConfig};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use vm_probe::{Ssh2Shell, SshAuth, SshConfig};

use crate::config::{Config, GitHubAuth, ScaleSetSettings};
use crate::http::Telemetry;
use crate::metrics::Metrics;
use crate::runner_version;
use scaleset_service::health::ScaleSetHealth;
use scaleset_service::{self as service, Phase, QueueOpener, ScaleSetSpec, ServiceDeps, ServiceTimings};

use metered::{MeteredGitHub, MeteredQueue, MeteredVms};
pub use oneshot::{check_connectivity, reconcile_once};
use runtime::{ClientSet, FleetBuilder};

/// VMs examined by a reconcile pass at the same time, and SSH probes dialing at once
/// (connect + banner, no thread): a pass over up to this many unreachable VMs costs about
/// one probe timeout.
pub const PROBE_SLOTS: usize = 512;

/// Logged-in probe sessions at once, each on its own SSH thread; only VMs that sent an SSH
/// banner get one, and key exchanges are capped per core inside the shell.
const PROBE_SESSIONS: usize = 64;
/// How often a standby asks for a scale set's session (jittered to half..all of it): a
/// session released by a replica that shuts down is taken over within this.
pub const STANDBY_RETRY: Duration = Duration::from_secs(5);

/// Longest silence of a scale set's loop before `/healthz` reports it stalled.
const HEARTBEAT_SILENCE: Duration = Duration::from_secs(180);

/// The concrete clients every scale set shares.
pub struct Clients {
    /// GitHub (REST bootstrap + Actions service).
    pub github: Arc<GitHubClient>,
    /// One Orka client per namespace in use.
    pub orka: HashMap<String, Arc<OrkaClient>>,
    /// SSH into VMs.
    pub shell: Arc<Ssh2Shell>,
    /// SSH for reconcile probes: every step bounded by `PROBE_TIMEOUT`, [`PROBE_SLOTS`] dialing
    /// at once.
    pub probe_shell: Arc<Ssh2Shell>,
}

impl Clients {
    /// Builds every client from the configuration (no network traffic yet).
    pub fn build(config: &Config) -> anyhow::Result<Self> {
        Self::build_observed(config, None)
    }

    /// [`Clients::build`], with `rate_limits` told about GitHub's rate-limit budget and waits.
    pub fn build_observed(
        config: &Config,
        rate_limits: Option<Arc<dyn github_scaleset::RateLimitObserver>>,
    ) -> anyhow::Result<Self> {
        let auth = match &config.github.auth {
            GitHubAuth::Pat(pat) => Auth::Pat(pat.clone()),
            GitHubAuth::App { app_id, installation_id, private_key } => Auth::App {
                app_id: app_id.to_string(),
                installation_id: i64::try_from(*installation_id).context("GITHUB_APP_INSTALLATION_ID")?,
                private_key_pem: private_key.clone(),
            },
        };
        let mut github_config = GitHubConfig::new(config.github.url.as_str(), auth);
        github_config.user_agent = format!("orka-runner-controller/{}", env!("CARGO_PKG_VERSION"));
        github_config.extra_ca = config.github.ca_bundle.clone();
        github_config.rate_limit_observer = github_scaleset::ObserverSlot(rate_limits);
        let github = Arc::new(GitHubClient::new(github_config).context("configuring the GitHub client")?);

        let node_ip_mapping: Option<NodeIpMap> = config.orka.node_ip_mapping.clone();
        let mut orka = HashMap::new();
        for scale_set in &config.scale_sets {
            if orka.contains_key(&scale_set.namespace) {
                continue;
            }
            let mut orka_config = OrkaConfig::new(config.orka.url.as_str(), config.orka.token.clone());
            orka_config.namespace = scale_set.namespace.clone();
            orka_config.deploy_timeout = config.orka.deploy_timeout;
            if let Some(path) = &config.orka.ca_bundle {
                let pem = std::fs::read(path)
                    .with_context(|| format!("reading ORKA_CA_BUNDLE {}", path.display()))?;
                orka_config.extra_ca = Some(pem);
            }
            orka_config.node_ip_mapping = node_ip_mapping.clone();
            let client = OrkaClient::new(orka_config).context("configuring the Orka client")?;
            orka.insert(scale_set.namespace.clone(), Arc::new(client));
        }

        let (ssh, probing) = ssh_configs(config);
        let shell = Arc::new(Ssh2Shell::new(ssh).context("configuring SSH")?);
        let probe_shell = Arc::new(Ssh2Shell::new(probing).context("configuring SSH")?);
        Ok(Self { github, orka, shell, probe_shell })
    }

    pub(super) fn orka_for(&self, scale_set: &ScaleSetSettings) -> Arc<OrkaClient> {
        self.orka[&scale_set.namespace].clone()
    }
}

/// SSH settings of provisioning and of probes.
fn ssh_configs(config: &Config) -> (SshConfig, SshConfig) {
    let ssh_auth = match &config.orka.vm_ssh_key_path {
        Some(path) => SshAuth::PrivateKey { path: path.clone(), passphrase: None },
        None => SshAuth::Password(config.orka.vm_password.clone()),
    };
    let mut ssh = SshConfig::new(config.orka.vm_username.clone(), ssh_auth);
    ssh.max_concurrent = ssh.max_concurrent.max(config.runners.max_concurrent_provisions as usize * 2);
    if let Some(handshakes) = config.reconcile.ssh_max_handshakes {
        ssh.max_handshakes = handshakes as usize;
    }
    // Probes get their own shell whose every step is bounded by the probe timeout and
    // enough dialing slots for a whole reconcile pass at once; black holes wait in the
    // dialing phase, which costs no thread.
    let mut probing = ssh.clone().with_step_timeout(config.reconcile.probe_timeout);
    probing.max_dialing = PROBE_SLOTS;
    probing.max_concurrent = PROBE_SESSIONS;
    (ssh, probing)
}

/// The reconciler's own deadline around one probe: only a backstop. The shell bounds every
/// phase of a probe by `PROBE_TIMEOUT` from the moment the VM gets its slot, and a
/// reachable VM's turn in the key-exchange queue must not count against it.
fn probe_backstop(config: &Config) -> Duration {
    let (_, probing) = ssh_configs(config);
    probing.longest_operation(probing.command_timeout)
}

/// `run`: serves every scale set until `shutdown` fires. Fails only when no scale set
/// can be served.
pub async fn run(config: Config, telemetry: Telemetry, shutdown: CancellationToken) -> anyhow::Result<()> {
    let rate_limits =
        crate::status::RateLimitTee { metrics: telemetry.metrics.clone(), board: telemetry.status.clone() };
    let clients = Clients::build_observed(&config, Some(Arc::new(rate_limits)))?;
    let version = tokio::select! {
        version = runner_version::resolve(&config, &clients.github) => version?,
        () = shutdown.cancelled() => return Ok(()),
    };
    tracing::info!(runner_version = %version, "runner version");
    let owner = owner_name();
    // Every scale set reads the same configuration: share it rather than copy it.
    let config = Arc::new(config);
    let mut tasks = tokio::task::JoinSet::new();
    let github: Arc<dyn ScaleSetApi> =
        Arc::new(MeteredGitHub { inner: clients.github.clone(), metrics: telemetry.metrics.clone() });
    for scale_set in &config.scale_sets {
        // The message loop turns at least once per long poll (≤ 90 s) or backoff (≤ 30 s).
        let heartbeat =
            Arc::new(telemetry.health.heartbeat(format!("scale set {}", scale_set.name), HEARTBEAT_SILENCE));
        let beat = heartbeat.clone();
        let health = telemetry.health.scale_set(scale_set.name.clone());
        let poison_metrics = telemetry.metrics.clone();
        let poison_name = scale_set.name.clone();
        let deps = ServiceDeps {
            heartbeat: Arc::new(move || beat.beat()),
            poison_message: Arc::new(move || poison_metrics.poison_message(&poison_name)),
            api: github.clone(),
            queues: Arc::new(Queues { client: clients.github.clone(), metrics: telemetry.metrics.clone() }),
            fleets: Arc::new(
                FleetBuilder::new(
                    ClientSet {
                        vms: Arc::new(MeteredVms {
                            inner: clients.orka_for(scale_set),
                            metrics: telemetry.metrics.clone(),
                        }),
                        github: github.clone(),
                        shell: clients.shell.clone(),
                        probe_shell: clients.probe_shell.clone(),
                        releases: clients.github.clone(),
                    },
                    config.clone(),
                    scale_set.clone(),
                    version.clone(),
                    telemetry.metrics.clone(),
                    health.clone(),
                )
                .with_status(telemetry.status.clone()),
            ),
        };
        telemetry
            .status
            .attach_nodes(&scale_set.name, Arc::new(nodes::OrkaNodeSource(clients.orka_for(scale_set))));
        let spec = ScaleSetSpec {
            name: scale_set.name.clone(),
            runner_group_id: i64::try_from(scale_set.runner_group_id).context("runner group id")?,
            extra_labels: scale_set.labels.iter().filter(|l| **l != scale_set.name).cloned().collect(),
            max_runners: scale_set.max_runners,
            owner_name: owner.clone(),
            manage_scale_set: config.github.manage_scale_sets,
            recreate_on_conflict: config.github.session_conflict_recreate_scale_set,
            credentials_settings: credentials_settings(&config),
        };
        let timings = ServiceTimings {
            min_backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(30),
            standby_retry: STANDBY_RETRY,
            tick_interval: config.reconcile.probe_interval.min(Duration::from_secs(5)),
            reconcile_interval: config.reconcile.enabled.then_some(config.reconcile.interval),
            drain_deadline: config.shutdown_drain_timeout,
        };
        let (phase_tx, phase_rx) = watch::channel(Phase::Starting);
        tokio::spawn(forward_phase(phase_rx, health, telemetry.metrics.clone(), scale_set.name.clone()));
        let cancel = shutdown.child_token();
        let name = scale_set.name.clone();
        tasks.spawn(async move {
            let result = service::run_scale_set(spec, deps, timings, phase_tx, cancel).await;
            // The loop ended on purpose (shutdown or a reported fatal error): stop tracking it.
            if let Ok(heartbeat) = Arc::try_unwrap(heartbeat) {
                heartbeat.finish();
            }
            (name, result)
        });
    }
    let total = tasks.len();
    let mut failed = 0;
    while let Some(joined) = tasks.join_next().await {
        let (name, result) = joined.context("a scale set task panicked")?;
        if let Err(e) = result {
            failed += 1;
            tracing::error!(scale_set = %name, error = &e as &dyn std::error::Error, "scale set stopped");
        }
    }
    if failed == total && total > 0 {
        anyhow::bail!("no scale set could be served ({failed} failed)");
    }
    Ok(())
}

/// Keeps `/readyz`, the session gauge and the role gauge in step with a scale set's phase.
async fn forward_phase(
    mut phase: watch::Receiver<Phase>,
    health: ScaleSetHealth,
    metrics: Arc<Metrics>,
    name: String,
) {
    loop {
        let current = phase.borrow_and_update().clone();
        metrics.set_session_held(&name, current.holds_session());
        metrics.set_role(&name, current.role());
        health.set(current);
        if phase.changed().await.is_err() {
            return;
        }
    }
}

/// The settings to fix when GitHub rejects the credentials, for the fatal start-up error.
fn credentials_settings(config: &Config) -> String {
    match &config.github.auth {
        GitHubAuth::Pat(_) => "GITHUB_PAT and GITHUB_URL".to_owned(),
        GitHubAuth::App { .. } => {
            "GITHUB_APP_ID, GITHUB_APP_INSTALLATION_ID, GITHUB_APP_PRIVATE_KEY and GITHUB_URL".to_owned()
        }
    }
}

/// The session owner name GitHub shows: the host name (the pod name on Kubernetes).
fn owner_name() -> String {
    std::fs::read_to_string("/etc/hostname")
        .ok()
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| format!("orka-runner-controller-{}", std::process::id()))
}

/// Opens metered queues on the GitHub client.
struct Queues {
    client: Arc<GitHubClient>,
    metrics: Arc<Metrics>,
}

impl QueueOpener for Queues {
    fn open(&self, session: MessageSession) -> Arc<dyn MessageQueue> {
        Arc::new(MeteredQueue { inner: self.client.queue(session), metrics: self.metrics.clone() })
    }
}
