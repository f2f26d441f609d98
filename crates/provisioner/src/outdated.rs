//! Deprecated runner versions: GitHub refuses runners older than it supports. Such a runner
//! prints `Runner version v… is deprecated and cannot receive messages` and exits with code
//! 7 while everything else (Orka, SSH, the message session) looks healthy, so without this
//! module every job would cost a VM that never runs it, again and again.
//!
//! When a runner exits without having run a job, the fleet reads its exit code (from the
//! probe) and the tail of its log over SSH ([`refusal`]). A refusal of the version new
//! runners install marks the scale set *outdated*:
//!
//! * one ERROR line names the refused version and what to do;
//! * no VM is deployed for the scale set except one retry per `outdated_retry_interval`
//!   (the gate in the fleet's plan step, `VersionGate::permit_creates`);
//! * with a [`RunnerVersionSource`] (the version is not pinned) the latest release is
//!   looked up again at once and then once per retry interval; a version other than the
//!   refused one is installed from then on and the scale set resumes by itself;
//! * a runner of the current version that starts a job clears the state (GitHub accepts
//!   the version again).
//!
//! [`crate::Fleet::runner_version_status`] tells the binary where it stands (metric,
//! readiness). Owns the gate and the classification; the probe, the SSH calls and the
//! runner's cleanup stay with the watch and the retire paths.

use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::Duration;

use async_trait::async_trait;
use runner_core::SshTarget;
use tokio::time::Instant;

use crate::fleet::Shared;
use crate::lifecycle::RunnerStage;

/// The runner's exit code when GitHub refuses its version as deprecated.
pub const VERSION_REFUSED_EXIT_CODE: i32 = 7;

/// Log lines read back from a runner that exited without running a job.
pub const LOG_TAIL_LINES: u32 = 50;

/// What GitHub's refusal says after the version (`Runner version v2.300.0 is deprecated…`).
const REFUSAL_TEXT: &str = "is deprecated and cannot receive messages";

/// An error of a [`RunnerVersionSource`].
pub type VersionSourceError = Box<dyn std::error::Error + Send + Sync>;

/// Where the runner version to install comes from when it is not pinned: the latest
/// actions/runner release. The binary implements it with its release lookup.
#[async_trait]
pub trait RunnerVersionSource: Send + Sync {
    /// The version to install now, without a leading `v`.
    async fn latest_version(&self) -> Result<String, VersionSourceError>;
}

/// GitHub refused a runner's version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// The refused version (no leading `v`) when the runner's log names it.
    pub version: Option<String>,
}

/// Whether a runner that exited without a job was refused for its version: exit code 7,
/// or GitHub's deprecation message in its log (`log_tail`, the last lines). Pure.
pub fn refusal(exit_code: Option<i32>, log_tail: &str) -> Option<Refusal> {
    let line = log_tail.lines().rev().find(|line| line.contains(REFUSAL_TEXT));
    if line.is_none() && exit_code != Some(VERSION_REFUSED_EXIT_CODE) {
        return None;
    }
    let version = line.and_then(|line| {
        let (_, after) = line.split_once("Runner version ")?;
        let version = after.split_whitespace().next()?.trim_start_matches(['v', 'V']);
        let plausible = !version.is_empty() && version.chars().all(|c| c.is_ascii_alphanumeric() || c == '.');
        plausible.then(|| version.to_owned())
    });
    Some(Refusal { version })
}

/// Where the scale set stands with its runner version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunnerVersionStatus {
    /// The version new runners install (no leading `v`).
    pub version: String,
    /// Set while GitHub refuses that version.
    pub outdated: Option<Outdated>,
}

/// The scale set is outdated: GitHub refuses the runner version it installs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outdated {
    /// The refused version (no leading `v`).
    pub refused_version: String,
    /// When the refusal was seen.
    pub since: Instant,
    /// Before this, no VM is deployed for the scale set; then one retry.
    pub next_retry: Instant,
}

struct GateState {
    version: String,
    outdated: Option<Outdated>,
    /// When the latest release may be looked up again while outdated.
    next_lookup: Instant,
}

/// The fleet's runner version and the outdated state, with the deploy gate.
pub(crate) struct VersionGate {
    state: Mutex<GateState>,
    source: OnceLock<Arc<dyn RunnerVersionSource>>,
    retry_interval: Duration,
}

impl VersionGate {
    pub(crate) fn new(version: String, retry_interval: Duration) -> Self {
        let state = GateState { version, outdated: None, next_lookup: Instant::now() };
        Self { state: Mutex::new(state), source: OnceLock::new(), retry_interval }
    }

    fn lock(&self) -> MutexGuard<'_, GateState> {
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub(crate) fn set_source(&self, source: Arc<dyn RunnerVersionSource>) -> bool {
        self.source.set(source).is_ok()
    }

    pub(crate) fn status(&self) -> RunnerVersionStatus {
        let st = self.lock();
        RunnerVersionStatus { version: st.version.clone(), outdated: st.outdated.clone() }
    }

    /// The version a runner installs now.
    pub(crate) fn version(&self) -> String {
        self.lock().version.clone()
    }

    /// How many of `wanted` new runners may be deployed now: all while the version is
    /// accepted; while outdated none, except one once the retry is due (which starts the
    /// next retry period).
    pub(crate) fn permit_creates(&self, wanted: u32, now: Instant) -> u32 {
        let mut st = self.lock();
        let Some(outdated) = st.outdated.as_mut() else { return wanted };
        if wanted == 0 || now < outdated.next_retry {
            return 0;
        }
        outdated.next_retry = now + self.retry_interval;
        tracing::info!(
            runner_version = %outdated.refused_version,
            "runner version refused earlier: deploying one runner to try it again"
        );
        1
    }

    /// A runner installed with `version` started a job: GitHub accepts that version.
    pub(crate) fn accepted(&self, version: Option<&str>) {
        let mut st = self.lock();
        let Some(outdated) = &st.outdated else { return };
        if version.is_some_and(|v| v == outdated.refused_version) {
            tracing::info!(runner_version = %outdated.refused_version, "GitHub accepts the runner version again: deploying runners as usual");
            st.outdated = None;
        }
    }
}

impl crate::Fleet {
    /// Lets the fleet look up the latest runner release when GitHub refuses the version it
    /// installs (only when the version is not pinned). False if a source was already set.
    pub fn set_runner_version_source(&self, source: Arc<dyn RunnerVersionSource>) -> bool {
        self.shared.version_gate.set_source(source)
    }

    /// The version new runners install and whether GitHub refuses it (the scale set is
    /// outdated).
    pub fn runner_version_status(&self) -> RunnerVersionStatus {
        self.shared.version_gate.status()
    }
}

impl Shared {
    /// The version to install in `runner`'s VM, remembered on its entry.
    pub(crate) fn install_version(&self, runner: &str) -> String {
        let version = self.version_gate.version();
        if let Some(entry) = self.lock().runners.get_mut(runner) {
            entry.runner_version = Some(version.clone());
        }
        version
    }

    /// A probe found `runner`'s run sentinel. If it never ran a job, reads the tail of its
    /// log and checks whether GitHub refused its version.
    pub(crate) async fn inspect_exit(self: &Arc<Self>, runner: &str, exit_code: Option<i32>) {
        let (target, installed) = {
            let st = self.lock();
            let Some(entry) = st.runners.get(runner) else { return };
            if entry.stage != RunnerStage::Idle || entry.job.is_some() {
                return;
            }
            let target = entry.vm.as_ref().and_then(|vm| vm.ssh_endpoint());
            (target.map(|(host, port)| SshTarget { host, port }), entry.runner_version.clone())
        };
        let tail = match target {
            Some(target) => {
                let read = self.deps.shell.tail_log(&target, LOG_TAIL_LINES);
                match tokio::time::timeout(self.config.probe_timeout, read).await {
                    Ok(Ok(tail)) => tail,
                    Ok(Err(e)) => {
                        tracing::debug!(
                            runner,
                            error = &e as &dyn std::error::Error,
                            "reading the runner's log failed"
                        );
                        String::new()
                    }
                    Err(_) => String::new(),
                }
            }
            None => String::new(),
        };
        match refusal(exit_code, &tail) {
            Some(refusal) => self.version_refused(runner, refusal.version.or(installed)).await,
            None => tracing::warn!(runner, ?exit_code, "runner exited without running a job"),
        }
    }

    /// GitHub refused `version` (None: the version new runners install).
    async fn version_refused(self: &Arc<Self>, runner: &str, version: Option<String>) {
        let gate = &self.version_gate;
        let now = Instant::now();
        {
            let mut st = gate.lock();
            let refused = version.unwrap_or_else(|| st.version.clone());
            if refused != st.version {
                tracing::info!(runner, runner_version = %refused, current = %st.version, "runner of an older version refused by GitHub; new runners install the current version");
                return;
            }
            if st.outdated.is_some() {
                tracing::info!(runner, runner_version = %refused, "runner version still refused by GitHub");
                return;
            }
            let unpinned = gate.source.get().is_some();
            let interval = humantime(gate.retry_interval);
            let what_to_do = if unpinned {
                format!(
                    "the latest runner release is looked up again now and every {interval}; if GitHub keeps refusing it, set GITHUB_RUNNER_VERSION to a current release"
                )
            } else {
                "set GITHUB_RUNNER_VERSION to a current actions/runner release, or unset it to install the latest release"
                    .to_owned()
            };
            tracing::error!(
                scale_set = %self.config.scale_set_name,
                runner_version = %refused,
                "GitHub refuses runner version {refused} as deprecated (the runner exits with code 7: \"Runner version v{refused} is deprecated and cannot receive messages\"); \
                 no VMs are deployed for scale set {} except one retry every {interval}; {what_to_do}",
                self.config.scale_set_name,
            );
            st.outdated = Some(Outdated {
                refused_version: refused,
                since: now,
                next_retry: now + gate.retry_interval,
            });
            st.next_lookup = now;
        }
        self.refresh_runner_version().await;
    }

    /// While outdated and not pinned: looks up the latest release (at most once per retry
    /// interval) and resumes with it when it is not the refused version.
    pub(crate) async fn refresh_runner_version(self: &Arc<Self>) {
        let gate = &self.version_gate;
        let Some(source) = gate.source.get() else { return };
        let now = Instant::now();
        {
            let mut st = gate.lock();
            if st.outdated.is_none() || now < st.next_lookup {
                return;
            }
            st.next_lookup = now + gate.retry_interval;
        }
        let latest =
            match tokio::time::timeout(self.config.github_call.deadline, source.latest_version()).await {
                Ok(Ok(latest)) => latest.trim().trim_start_matches('v').to_owned(),
                Ok(Err(e)) => {
                    tracing::warn!(
                        error = &*e as &dyn std::error::Error,
                        "looking up the latest runner release failed; trying again later"
                    );
                    return;
                }
                Err(_) => {
                    tracing::warn!("looking up the latest runner release timed out; trying again later");
                    return;
                }
            };
        let mut st = gate.lock();
        let Some(outdated) = &st.outdated else { return };
        if latest.is_empty() || latest == outdated.refused_version {
            tracing::info!(runner_version = %latest, "the latest runner release is still the refused version");
            return;
        }
        tracing::info!(
            scale_set = %self.config.scale_set_name,
            refused = %outdated.refused_version,
            runner_version = %latest,
            "new latest runner release: installing it from now on and deploying runners again"
        );
        st.version = latest;
        st.outdated = None;
    }
}

/// `300s` → `5m`, `90s` → `1m30s`: how the settings write durations.
fn humantime(duration: Duration) -> String {
    let secs = duration.as_secs();
    match (secs / 60, secs % 60) {
        (0, _) if secs == 0 => format!("{}ms", duration.as_millis()),
        (0, s) => format!("{s}s"),
        (m, 0) => format!("{m}m"),
        (m, s) => format!("{m}m{s}s"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_7_or_the_message_is_a_refusal_and_the_version_is_read_from_the_message() {
        let log = "Current runner version: '2.300.0'\n\
                   2026-12-06T03:00:00Z: An error occurred: Runner version v2.300.0 is deprecated and cannot receive messages.\n";
        assert_eq!(refusal(Some(7), log), Some(Refusal { version: Some("2.300.0".into()) }));
        assert_eq!(
            refusal(Some(1), log),
            Some(Refusal { version: Some("2.300.0".into()) }),
            "the message alone"
        );
        assert_eq!(refusal(Some(7), ""), Some(Refusal { version: None }), "the code alone");
        assert_eq!(refusal(None, log), Some(Refusal { version: Some("2.300.0".into()) }));
    }

    #[test]
    fn other_exits_are_not_refusals() {
        assert_eq!(refusal(Some(0), "Job completed with result: Succeeded"), None);
        assert_eq!(refusal(Some(1), "fake runner: credential rejected (401)"), None);
        assert_eq!(refusal(None, ""), None);
        assert_eq!(refusal(Some(137), "Runner version v2.1.0 is fine"), None);
    }

    #[test]
    fn an_unreadable_version_in_the_message_is_left_out() {
        let log = "Runner version v2.300.0\"; rm -rf / is deprecated and cannot receive messages";
        assert_eq!(refusal(Some(7), log), Some(Refusal { version: None }));
    }

    #[tokio::test(start_paused = true)]
    async fn the_gate_lets_one_runner_through_per_retry_interval_while_outdated() {
        let gate = VersionGate::new("2.300.0".into(), Duration::from_secs(300));
        let now = Instant::now();
        assert_eq!(gate.permit_creates(3, now), 3, "accepted: no limit");
        gate.lock().outdated = Some(Outdated {
            refused_version: "2.300.0".into(),
            since: now,
            next_retry: now + Duration::from_secs(300),
        });
        assert_eq!(gate.permit_creates(3, now + Duration::from_secs(299)), 0);
        assert_eq!(gate.permit_creates(0, now + Duration::from_secs(300)), 0, "no demand: no retry taken");
        assert_eq!(gate.permit_creates(3, now + Duration::from_secs(300)), 1, "the retry");
        assert_eq!(gate.permit_creates(3, now + Duration::from_secs(301)), 0, "one per period");
        assert_eq!(gate.permit_creates(3, now + Duration::from_secs(600)), 1);
        gate.accepted(Some("2.299.0"));
        assert!(gate.status().outdated.is_some(), "another version's job says nothing");
        gate.accepted(Some("2.300.0"));
        assert_eq!(gate.status().outdated, None);
        assert_eq!(gate.permit_creates(3, now + Duration::from_secs(601)), 3);
    }

    #[test]
    fn durations_read_like_the_settings() {
        assert_eq!(humantime(Duration::from_secs(300)), "5m");
        assert_eq!(humantime(Duration::from_secs(90)), "1m30s");
        assert_eq!(humantime(Duration::from_secs(2)), "2s");
        assert_eq!(humantime(Duration::from_millis(500)), "500ms");
    }
}
