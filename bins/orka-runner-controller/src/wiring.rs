//! Picks the concrete implementations: the hyper GitHub client, the hyper Orka client and
//! the ssh2 shell, built from the validated [`Config`], and connects them to the
//! per-scale-set [`service`], the provisioner's [`Fleet`] and the [`Reconciler`].
//!
//! Owns construction and adaptation only; every decision lives in a library crate.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use async_trait::async_trait;
use github_scaleset::{
    Auth, GitHubClient, GitHubConfig, MessageQueue, MessageSession, ScaleSetApi, ScaleSetMessage, Statistics,
};
use orka_client::{NodeIpMap, OrkaClient, OrkaConfig, VmBackend};
use provisioner::{
    Fleet, FleetConfig, FleetDeps, FleetEvent, FleetObserver, RunnerInstallConfig, RunnerPhase, RunnerStage,
    ScalingConfig,
};
use reconciler::{Mode, ReconcilePolicy, Reconciler, ReconcilerConfig, ReconcilerDeps};
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use vm_probe::{Ssh2Shell, SshAuth, SshConfig, VmShell};

use crate::check::{CheckReport, Outcome};
use crate::config::{Config, GitHubAuth, RunnerVersion, ScaleSetSettings};
use crate::health::ScaleSetHealth;
use crate::http::Telemetry;
use crate::metrics::{Metrics, ProvisionFailure, Stage};
use crate::runner_version;
use crate::service::{
    self, FleetFactory, Phase, QueueOpener, RunnerFleet, ScaleSetSpec, ServiceDeps, ServiceTimings, Sweeper,
};

/// The concrete clients every scale set shares.
pub struct Clients {
    /// GitHub (REST bootstrap + Actions service).
    pub github: Arc<GitHubClient>,
    /// One Orka client per namespace in use.
    pub orka: HashMap<String, Arc<OrkaClient>>,
    /// SSH into VMs.
    pub shell: Arc<Ssh2Shell>,
}

impl Clients {
    /// Builds every client from the configuration (no network traffic yet).
    pub fn build(config: &Config) -> anyhow::Result<Self> {
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
            orka_config.node_ip_mapping = node_ip_mapping.clone();
            let client = OrkaClient::new(orka_config).context("configuring the Orka client")?;
            orka.insert(scale_set.namespace.clone(), Arc::new(client));
        }

        let ssh_auth = match &config.orka.vm_ssh_key_path {
            Some(path) => SshAuth::PrivateKey { path: path.clone(), passphrase: None },
            None => SshAuth::Password(config.orka.vm_password.clone()),
        };
        let mut ssh = SshConfig::new(config.orka.vm_username.clone(), ssh_auth);
        ssh.max_concurrent = ssh.max_concurrent.max(config.runners.max_concurrent_provisions as usize * 2);
        let shell = Arc::new(Ssh2Shell::new(ssh).context("configuring SSH")?);
        Ok(Self { github, orka, shell })
    }

    fn orka_for(&self, scale_set: &ScaleSetSettings) -> Arc<OrkaClient> {
        self.orka[&scale_set.namespace].clone()
    }
}

/// `run`: serves every scale set until `shutdown` fires. Fails only when no scale set
/// can be served.
pub async fn run(config: Config, telemetry: Telemetry, shutdown: CancellationToken) -> anyhow::Result<()> {
    let clients = Clients::build(&config)?;
    let version = runner_version::resolve(&config).await?;
    tracing::info!(runner_version = %version, "runner version");
    let owner = owner_name();
    let mut tasks = tokio::task::JoinSet::new();
    for scale_set in config.scale_sets.clone() {
        let deps = ServiceDeps {
            api: clients.github.clone(),
            queues: Arc::new(Queues(clients.github.clone())),
            fleets: Arc::new(FleetBuilder {
                clients: ClientSet {
                    vms: clients.orka_for(&scale_set),
                    github: clients.github.clone(),
                    shell: clients.shell.clone(),
                },
                config: config.clone(),
                scale_set: scale_set.clone(),
                runner_version: version.clone(),
                metrics: telemetry.metrics.clone(),
                current: Mutex::new(None),
            }),
        };
        let spec = ScaleSetSpec {
            name: scale_set.name.clone(),
            runner_group_id: i64::try_from(scale_set.runner_group_id).context("runner group id")?,
            extra_labels: scale_set.labels.iter().filter(|l| **l != scale_set.name).cloned().collect(),
            max_runners: scale_set.max_runners,
            owner_name: owner.clone(),
            delete_scale_set_on_exit: config.github.manage_scale_sets,
        };
        let timings = ServiceTimings {
            min_backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(30),
            tick_interval: config.reconcile.probe_interval.min(Duration::from_secs(5)),
            reconcile_interval: config.reconcile.enabled.then_some(config.reconcile.interval),
            drain_deadline: config.shutdown_drain_timeout,
        };
        let (phase_tx, phase_rx) = watch::channel(Phase::Starting);
        let health = telemetry.health.scale_set(scale_set.name.clone());
        tokio::spawn(forward_phase(phase_rx, health, telemetry.metrics.clone(), scale_set.name.clone()));
        let cancel = shutdown.child_token();
        let name = scale_set.name.clone();
        tasks.spawn(
            async move { (name, service::run_scale_set(spec, deps, timings, phase_tx, cancel).await) },
        );
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

/// Keeps `/readyz` and the session gauge in step with a scale set's phase.
async fn forward_phase(
    mut phase: watch::Receiver<Phase>,
    health: ScaleSetHealth,
    metrics: Arc<Metrics>,
    name: String,
) {
    loop {
        let current = phase.borrow_and_update().clone();
        metrics.set_session_held(&name, matches!(current, Phase::Reconciling | Phase::Serving));
        match current {
            Phase::Starting => health.waiting_for_session("starting"),
            Phase::WaitingForSession(reason) => health.waiting_for_session(reason),
            Phase::Reconciling => health.session_acquired(),
            Phase::Serving => health.reconciled(),
            Phase::Stopped(reason) if reason.starts_with("fatal") => health.failed(reason),
            Phase::Stopped(_) => health.stopping(),
        }
        if phase.changed().await.is_err() {
            return;
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

struct Queues(Arc<GitHubClient>);

impl QueueOpener for Queues {
    fn open(&self, session: MessageSession) -> Arc<dyn MessageQueue> {
        self.0.queue(session)
    }
}

#[derive(Clone)]
struct ClientSet {
    vms: Arc<OrkaClient>,
    github: Arc<GitHubClient>,
    shell: Arc<Ssh2Shell>,
}

/// Builds (and keeps) the fleet and reconciler of one scale set.
struct FleetBuilder {
    clients: ClientSet,
    config: Config,
    scale_set: ScaleSetSettings,
    runner_version: String,
    metrics: Arc<Metrics>,
    current: Mutex<Option<(i64, Arc<FleetRuntime>)>>,
}

impl FleetFactory for FleetBuilder {
    fn for_scale_set(&self, scale_set_id: i64) -> (Arc<dyn RunnerFleet>, Arc<dyn Sweeper>) {
        let mut current = self.current.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((id, runtime)) = current.as_ref()
            && *id == scale_set_id
        {
            return (runtime.clone(), runtime.clone());
        }
        let runtime = Arc::new(build_runtime(
            &self.clients,
            &self.config,
            &self.scale_set,
            scale_set_id,
            &self.runner_version,
            Some(self.metrics.clone()),
        ));
        if let Some((_, old)) = current.replace((scale_set_id, runtime.clone())) {
            // The scale set was re-created: the old fleet's runners belong to a scale set
            // that no longer exists; the reconciler deletes their VMs.
            let old = old.clone();
            tokio::spawn(async move { old.fleet.drain(Duration::from_secs(30)).await });
        }
        (runtime.clone(), runtime)
    }
}

/// A scale set's fleet and reconciler, adapted to the service's seams.
struct FleetRuntime {
    name: String,
    fleet: Arc<Fleet>,
    reconciler: Reconciler,
    metrics: Option<Arc<Metrics>>,
}

fn build_runtime(
    clients: &ClientSet,
    config: &Config,
    scale_set: &ScaleSetSettings,
    scale_set_id: i64,
    runner_version: &str,
    metrics: Option<Arc<Metrics>>,
) -> FleetRuntime {
    let vms: Arc<dyn VmBackend> = clients.vms.clone();
    let github: Arc<dyn ScaleSetApi> = clients.github.clone();
    let shell: Arc<dyn VmShell> = clients.shell.clone();
    let fleet_config = fleet_config(config, scale_set, scale_set_id, runner_version);
    let observer = metrics.clone().map(|metrics| {
        Arc::new(MetricsObserver { metrics, scale_set: scale_set.name.clone(), paths: Mutex::default() })
            as Arc<dyn FleetObserver>
    });
    let fleet = Arc::new(Fleet::with_observer(
        FleetDeps { vms: vms.clone(), github: github.clone(), shell: shell.clone() },
        fleet_config,
        observer,
    ));
    let mut reconciler_config = ReconcilerConfig::new(scale_set_id, scale_set.name.clone());
    reconciler_config.policy = ReconcilePolicy {
        deploy_deadline: config.orka.deploy_timeout + Duration::from_secs(120),
        unreachable_strikes: config.reconcile.unreachable_strikes,
    };
    reconciler_config.probe_timeout = config.reconcile.probe_timeout;
    let reconciler = Reconciler::new(ReconcilerDeps { vms, github, shell }, fleet.clone(), reconciler_config);
    FleetRuntime { name: scale_set.name.clone(), fleet, reconciler, metrics }
}

fn fleet_config(config: &Config, scale_set: &ScaleSetSettings, id: i64, runner_version: &str) -> FleetConfig {
    let install = RunnerInstallConfig {
        version: runner_version.to_owned(),
        download_url_template: config.github.runner_download_url.clone(),
    };
    let mut fleet = FleetConfig::new(id, scale_set.name.clone(), scale_set.vm_config.clone(), install);
    fleet.metadata = scale_set.metadata.clone();
    fleet.scaling = ScalingConfig {
        max_runners: scale_set.max_runners,
        min_idle_runners: scale_set.min_runners,
        idle_grace: scale_set.idle_grace,
    };
    fleet.provisioning_concurrency = config.runners.max_concurrent_provisions.max(1) as usize;
    fleet.deploy.deadline = config.orka.deploy_timeout + Duration::from_secs(120);
    fleet.deregistration_timeout = config.runners.deregistration_timeout;
    fleet.deregistration_poll_interval = config.runners.deregistration_poll_interval;
    fleet.probe_interval = config.reconcile.probe_interval;
    fleet.probe_timeout = config.reconcile.probe_timeout;
    fleet.probe_strikes = config.reconcile.unreachable_strikes;
    fleet
}

#[async_trait]
impl RunnerFleet for FleetRuntime {
    async fn on_statistics(&self, statistics: Statistics) {
        if let Some(metrics) = &self.metrics {
            metrics.record_statistics(&self.name, &statistics);
        }
        self.fleet.on_statistics(statistics).await;
    }

    async fn handle_message(&self, message: &ScaleSetMessage, queue: &dyn MessageQueue) {
        if let Some(metrics) = &self.metrics {
            metrics.record_statistics(&self.name, &message.statistics);
        }
        if let Err(e) = self.fleet.handle_message(message, queue).await {
            tracing::warn!(scale_set = %self.name, error = &e as &dyn std::error::Error, "handling a message partly failed");
        }
    }

    async fn tick(&self) {
        self.fleet.tick().await;
        if let Some(metrics) = &self.metrics {
            let runners = self.fleet.runners();
            let now = Instant::now();
            let phases: Vec<RunnerPhase> = runners
                .iter()
                .map(|r| match r.stage {
                    RunnerStage::Idle => {
                        RunnerPhase::Idle { idle_for: now.saturating_duration_since(r.since) }
                    }
                    RunnerStage::Busy => RunnerPhase::Busy,
                    stage if stage.is_provisioning() => RunnerPhase::Provisioning,
                    _ => RunnerPhase::Finishing,
                })
                .collect();
            metrics.set_runner_phases(&self.name, &phases);
            metrics.set_vms_owned(&self.name, runners.len() as u64);
        }
    }

    async fn drain(&self, deadline: Duration) {
        self.fleet.drain(deadline).await;
    }
}

#[async_trait]
impl Sweeper for FleetRuntime {
    async fn sweep(&self) {
        match self.reconciler.reconcile_once(Mode::Act).await {
            Ok(report) => {
                for row in &report.rows {
                    if let (Some(decision), Some(metrics)) = (&row.decision, &self.metrics) {
                        metrics.record_reconcile_decision(&self.name, decision);
                    }
                    if row.applied {
                        tracing::info!(scale_set = %self.name, vm = %row.vm, action = row.action_label(), reason = row.reason_label(), "reconciled VM");
                    }
                }
                tracing::info!(
                    scale_set = %self.name,
                    vms = report.rows.len(),
                    registrations_removed = report.registrations_removed.len(),
                    "reconcile pass"
                );
            }
            Err(e) => {
                tracing::warn!(scale_set = %self.name, error = &e as &dyn std::error::Error, "reconcile pass failed")
            }
        }
    }
}

/// Turns fleet events into per-stage latency histograms and provisioning counters.
struct MetricsObserver {
    metrics: Arc<Metrics>,
    scale_set: String,
    /// Per runner: when it passed its last milestone and which milestones it passed.
    paths: Mutex<HashMap<String, RunnerPath>>,
}

/// Where one runner is on the path job assigned → … → VM deleted.
struct RunnerPath {
    last: Instant,
    passed: Vec<Stage>,
}

impl MetricsObserver {
    /// Records `stage` for `runner` (time since its previous milestone) once.
    fn milestone(&self, runner: &str, stage: Stage) {
        let now = Instant::now();
        let mut paths = self.paths.lock().unwrap_or_else(|p| p.into_inner());
        let Some(path) = paths.get_mut(runner) else { return };
        if !path.passed.contains(&stage) {
            self.metrics.observe_stage(&self.scale_set, stage, now.saturating_duration_since(path.last));
            path.passed.push(stage);
        }
        path.last = now;
    }

    /// Starts (or, for an adopted runner, joins midway) the path of `runner`.
    fn begin(&self, runner: &str, already_passed: &[Stage]) {
        let mut paths = self.paths.lock().unwrap_or_else(|p| p.into_inner());
        paths
            .entry(runner.to_owned())
            .or_insert_with(|| RunnerPath { last: Instant::now(), passed: already_passed.to_vec() });
    }

    fn has_passed(&self, runner: &str, stage: Stage) -> bool {
        let paths = self.paths.lock().unwrap_or_else(|p| p.into_inner());
        paths.get(runner).is_some_and(|p| p.passed.contains(&stage))
    }
}

impl FleetObserver for MetricsObserver {
    fn on_event(&self, event: &FleetEvent) {
        use Stage::*;
        match event {
            FleetEvent::Stage { runner, stage, adopted, .. } => match stage {
                RunnerStage::Queued | RunnerStage::DeployingVm => self.begin(runner, &[]),
                RunnerStage::CreatingJitConfig => self.milestone(runner, VmDeployed),
                // Adopted runners join the path where they were found; earlier stages
                // happened under another process and are not timed.
                RunnerStage::Idle | RunnerStage::Busy if *adopted => {
                    self.begin(runner, &[VmDeployed, SshReady, RunnerOnline]);
                    if *stage == RunnerStage::Busy {
                        self.begin(runner, &[JobStarted]);
                    }
                }
                RunnerStage::Idle => {
                    self.metrics.provision_succeeded(&self.scale_set);
                    self.milestone(runner, RunnerOnline);
                }
                RunnerStage::Busy => {
                    // A runner may take its job before the fleet saw it idle: it came
                    // online at the latest now, and took its job at once.
                    if !self.has_passed(runner, RunnerOnline) {
                        self.metrics.provision_succeeded(&self.scale_set);
                        self.milestone(runner, RunnerOnline);
                    }
                    self.milestone(runner, JobStarted);
                }
                RunnerStage::Finishing => self.milestone(runner, JobCompleted),
                _ => {}
            },
            FleetEvent::SshReady { runner, .. } => self.milestone(runner, SshReady),
            FleetEvent::Gone { runner, .. } => {
                self.milestone(runner, VmDeleted);
                self.paths.lock().unwrap_or_else(|p| p.into_inner()).remove(runner);
            }
            FleetEvent::StepFailed { step, reason, .. } => {
                self.metrics.provision_failed(&self.scale_set, failure_of(*step, reason));
            }
            FleetEvent::Job { .. } | FleetEvent::Planned { .. } => {}
        }
    }
}

fn failure_of(step: provisioner::Step, reason: &str) -> ProvisionFailure {
    use provisioner::Step;
    match step {
        Step::DeployVm if reason.contains("timeout") || reason.contains("timed_out") => {
            ProvisionFailure::DeployTimeout
        }
        Step::DeployVm => ProvisionFailure::Deploy,
        Step::CreateJitConfig => ProvisionFailure::JitConfig,
        Step::WaitSsh => ProvisionFailure::Ssh,
        Step::InstallRunner => ProvisionFailure::Install,
        Step::Deregister | Step::DeleteVm => ProvisionFailure::Other,
    }
}

/// `check`: GitHub authentication, scale sets resolvable, Orka reachable with a valid
/// token, VM configs present. Each item passes or fails on its own.
pub async fn check_connectivity(config: &Config, report: &mut CheckReport) -> anyhow::Result<()> {
    let clients = Clients::build(config)?;
    let github_ok = match clients.github.get_runner_group("default").await {
        Ok(_) => {
            report.push(
                "GitHub authentication",
                Outcome::Pass(format!("authenticated to {}", config.github.url)),
            );
            true
        }
        Err(e) => {
            report.push("GitHub authentication", Outcome::Fail(error_chain(&e)));
            false
        }
    };
    for scale_set in &config.scale_sets {
        let item = format!("scale set {}", scale_set.name);
        if !github_ok {
            report.push(&item, Outcome::Skipped("GitHub authentication failed".into()));
            continue;
        }
        let group = i64::try_from(scale_set.runner_group_id).unwrap_or(i64::MAX);
        match clients.github.get_scale_set(group, &scale_set.name).await {
            Ok(Some(found)) => report.push(&item, Outcome::Pass(format!("exists (id {})", found.id))),
            Ok(None) => report.push(&item, Outcome::Pass("absent; `run` will create it".into())),
            Err(e) => report.push(&item, Outcome::Fail(error_chain(&e))),
        }
    }
    for (namespace, orka) in &clients.orka {
        match orka.ping().await {
            Ok(_) => report
                .push(&format!("Orka reachable ({namespace})"), Outcome::Pass(config.orka.url.to_string())),
            Err(e) => {
                report.push(&format!("Orka reachable ({namespace})"), Outcome::Fail(error_chain(&e)));
                continue;
            }
        }
        match orka.check_token().await {
            Ok(()) => report.push(&format!("Orka token ({namespace})"), Outcome::Pass("accepted".into())),
            Err(e) => {
                report.push(&format!("Orka token ({namespace})"), Outcome::Fail(error_chain(&e)));
                continue;
            }
        }
        match orka.list_vm_configs().await {
            Ok(configs) => {
                for scale_set in config.scale_sets.iter().filter(|s| &s.namespace == namespace) {
                    let item = format!("VM config {} ({})", scale_set.vm_config, scale_set.name);
                    if configs.iter().any(|c| c.name == scale_set.vm_config) {
                        report.push(&item, Outcome::Pass("exists".into()));
                    } else {
                        report.push(&item, Outcome::Fail("no such VM config in Orka".into()));
                    }
                }
            }
            Err(e) => report.push(&format!("VM configs ({namespace})"), Outcome::Fail(error_chain(&e))),
        }
    }
    Ok(())
}

/// `reconcile [--dry-run]`: one pass per scale set, printing the decision table.
pub async fn reconcile_once(config: &Config, dry_run: bool) -> anyhow::Result<()> {
    let clients = Clients::build(config)?;
    let version = match &config.github.runner_version {
        RunnerVersion::Pinned(v) => v.clone(),
        RunnerVersion::Latest => "unused".to_owned(),
    };
    let mode = if dry_run { Mode::DryRun } else { Mode::Act };
    for scale_set in &config.scale_sets {
        let group = i64::try_from(scale_set.runner_group_id).context("runner group id")?;
        let Some(found) = clients.github.get_scale_set(group, &scale_set.name).await? else {
            println!("scale set {}: not registered with GitHub; nothing to reconcile", scale_set.name);
            continue;
        };
        let set = ClientSet {
            vms: clients.orka_for(scale_set),
            github: clients.github.clone(),
            shell: clients.shell.clone(),
        };
        let runtime = build_runtime(&set, config, scale_set, found.id, &version, None);
        let report = runtime.reconciler.reconcile_once(mode).await?;
        println!(
            "scale set {} (id {}){}",
            scale_set.name,
            found.id,
            if dry_run { " — dry run, nothing changed" } else { "" }
        );
        println!("{:<32} {:<9} {:<14} {:<22} evidence", "VM", "status", "action", "reason");
        for row in &report.rows {
            let evidence = row.evidence.map(|e| format!("{e:?}")).unwrap_or_else(|| "-".into());
            println!(
                "{:<32} {:<9} {:<14} {:<22} {evidence}",
                row.vm,
                row.status.to_string(),
                row.action_label(),
                row.reason_label()
            );
        }
        if !report.registrations_removed.is_empty() {
            let verb = if dry_run { "would remove" } else { "removed" };
            println!("{verb} registrations without a VM: {}", report.registrations_removed.join(", "));
        }
        if !dry_run {
            runtime.fleet.drain(config.shutdown_drain_timeout).await;
        }
    }
    Ok(())
}

fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
