//! The provisioning task of one runner: slot → deploy VM → JIT config (only once the VM
//! exists) → wait for SSH → install and start run.sh detached. The task ends when the
//! runner is online; a failure or cancellation at any step hands the runner to the cleanup
//! (registration removed if one may exist, VM deleted by name). Owns nothing after that.

use std::sync::Arc;
use std::time::Duration;

use runner_core::{DeployRequest, Vm, VmName};
use runner_core::{JitConfig, ScaleSetError};
use runner_core::{RunnerInstall, SshStep, SshTarget};
use tokio_util::sync::CancellationToken;

use backon::{ExponentialBuilder, Retryable};

use crate::capacity::is_capacity;
use crate::error::{Cause, ProvisionError, Step};
use crate::events::{FleetEvent, RetireReason};
use crate::fleet::Shared;
use crate::lifecycle::{LifecycleEvent, Transition};
use crate::retry::{is_retryable, run_step};

/// Extra time our own deadline gives the backend's deploy, so its cleanup of a failed
/// deploy is not cut short.
const DEPLOY_GRACE: Duration = Duration::from_secs(60);

impl Shared {
    pub(crate) async fn provision(self: &Arc<Self>, name: String) {
        let cancel = match self.lock().runners.get(&name) {
            Some(entry) => entry.cancel.clone(),
            None => return,
        };
        let mut name = name;
        match self.provision_steps(&mut name, &cancel).await {
            Ok(()) => {}
            Err(error) => self.provisioning_failed(&name, error).await,
        }
    }

    async fn provision_steps(
        self: &Arc<Self>,
        name: &mut String,
        cancel: &CancellationToken,
    ) -> Result<(), ProvisionError> {
        let permit = tokio::select! {
            biased;
            () = cancel.cancelled() => return Err(ProvisionError::Cancelled { step: Step::DeployVm }),
            permit = Arc::clone(&self.slots).acquire_owned() => permit.expect("the semaphore is never closed"),
        };
        if !self.advance(name, LifecycleEvent::SlotAcquired) {
            return Err(ProvisionError::Cancelled { step: Step::DeployVm });
        }

        let vm = self.deploy(name, cancel).await?;
        // The slot spares Orka's API: what follows (JIT config, SSH, install) never talks
        // to Orka, so the next deploy need not wait for this runner to come online.
        drop(permit);
        if vm.name != *name {
            self.rename(name, &vm.name);
            *name = vm.name.clone();
        }
        if let Some(entry) = self.lock().runners.get_mut(name.as_str()) {
            entry.vm = Some(vm.clone());
        }
        if !self.advance(name, LifecycleEvent::VmDeployed) {
            return Err(ProvisionError::Cancelled { step: Step::CreateJitConfig });
        }

        let jit = self.create_jit_config(name, cancel).await?;
        if let Some(entry) = self.lock().runners.get_mut(name.as_str()) {
            entry.runner_id = Some(jit.runner.id);
        }
        if !self.advance(name, LifecycleEvent::JitConfigCreated) {
            return Err(ProvisionError::Cancelled { step: Step::WaitSsh });
        }

        let (host, port) = vm.ssh_endpoint().ok_or(ProvisionError::StepFailed {
            step: Step::WaitSsh,
            attempts: 0,
            cause: Cause::NoSshEndpoint,
        })?;
        let target = SshTarget { host, port };
        let shell = Arc::clone(&self.deps.shell);
        run_step(Step::WaitSsh, &self.config.ssh_ready, cancel, is_retryable, true, || {
            let shell = Arc::clone(&shell);
            let target = target.clone();
            async move { shell.wait_ready(&target).await.map_err(Cause::Shell) }
        })
        .await?;
        let since_created = self.lock().runners.get(name.as_str()).map(|e| e.created.elapsed());
        self.emit(FleetEvent::SshReady {
            runner: name.clone(),
            since_created: since_created.unwrap_or_default(),
        });

        let install = RunnerInstall {
            runner_version: self.install_version(name),
            download_url_template: self.config.runner_install.download_url_template.clone(),
            jit_config: jit.encoded_jit_config.clone(),
        };
        // Only failures before anything ran in the VM are retried: a second run.sh with the
        // same JIT config must never start.
        let nothing_ran = |cause: &Cause| {
            matches!(cause, Cause::Shell(e)
                if e.is_retryable() && matches!(e.step(), Some(SshStep::Queue | SshStep::Connect | SshStep::Handshake)))
        };
        run_step(Step::InstallRunner, &self.config.install, cancel, nothing_ran, false, || {
            let shell = Arc::clone(&shell);
            let target = target.clone();
            let install = install.clone();
            async move { shell.install_and_start_runner(&target, &install).await.map_err(Cause::Shell) }
        })
        .await?;
        let mut st = self.lock();
        st.counters.provisions_succeeded += 1;
        let outcome = self.apply(&mut st, name, LifecycleEvent::RunnerStarted, None);
        drop(st);
        if outcome != Transition::Ignore {
            tracing::info!(runner = %name, "runner online");
        }
        Ok(())
    }

    /// Applies a provisioning progress event; false when the runner moved on meanwhile
    /// (cancelled, retired, or gone).
    fn advance(&self, name: &str, event: LifecycleEvent) -> bool {
        let mut st = self.lock();
        let cancelled = st.runners.get(name).is_none_or(|e| e.cancelled);
        !cancelled && self.apply(&mut st, name, event, None) != Transition::Ignore
    }

    async fn deploy(self: &Arc<Self>, name: &str, cancel: &CancellationToken) -> Result<Vm, ProvisionError> {
        let vm_name = VmName::parse_owned(&self.config.scale_set_name, name).ok_or_else(|| {
            ProvisionError::Config(runner_core::VmBackendError::Config(format!(
                "generated name {name} is not owned"
            )))
        })?;
        let request = DeployRequest {
            name: vm_name,
            vm_config: self.config.vm_config.clone(),
            metadata: self.config.metadata.clone(),
            timeout: self.config.deploy.deadline,
        };
        let mut policy = self.config.deploy;
        policy.deadline += DEPLOY_GRACE;
        let vms = Arc::clone(&self.deps.vms);
        // Capacity answers are not spent from the step's attempts: they wait below.
        let retryable = |cause: &Cause| {
            is_retryable(cause)
                && !matches!(cause, Cause::Orka(runner_core::VmBackendError::CapacityExhausted { .. }))
        };
        let attempt = || {
            run_step(Step::DeployVm, &policy, cancel, retryable, true, || {
                let vms = Arc::clone(&vms);
                let request = request.clone();
                async move {
                    match vms.deploy_vm(&request).await {
                        Ok(vm) => Ok(vm),
                        Err(e) => Err(Cause::Orka(e)),
                    }
                }
            })
        };
        let backoff = ExponentialBuilder::new()
            .with_min_delay(self.config.capacity_backoff_min)
            .with_max_delay(self.config.capacity_backoff_max)
            .with_jitter()
            .without_max_times();
        let mut waiter = None;
        let deployed = attempt
            .retry(backoff)
            .sleep(tokio::time::sleep)
            .when(is_capacity)
            .notify(|_, after| {
                tracing::debug!(runner = %name, ?after, "Orka has no capacity; deploying again after a pause");
                waiter.get_or_insert_with(|| self.start_capacity_wait(name));
            });
        tokio::select! {
            biased;
            () = cancel.cancelled() => Err(ProvisionError::Cancelled { step: Step::DeployVm }),
            deployed = deployed => deployed,
        }
    }

    async fn create_jit_config(
        self: &Arc<Self>,
        name: &str,
        cancel: &CancellationToken,
    ) -> Result<JitConfig, ProvisionError> {
        if let Some(entry) = self.lock().runners.get_mut(name) {
            entry.maybe_registered = true;
        }
        let github = Arc::clone(&self.deps.github);
        let scale_set_id = self.config.scale_set_id;
        // AgentExists: a registration with our name is left from an earlier attempt whose
        // answer was lost; remove it and try again.
        let retryable =
            |cause: &Cause| matches!(cause, Cause::GitHub(ScaleSetError::AgentExists)) || is_retryable(cause);
        run_step(Step::CreateJitConfig, &self.config.jit, cancel, retryable, true, || {
            let github = Arc::clone(&github);
            let name = name.to_owned();
            async move {
                match github.generate_jit_config(scale_set_id, &name).await {
                    Ok(jit) => Ok(jit),
                    Err(ScaleSetError::AgentExists) => {
                        if let Ok(Some(stale)) = github.get_runner_by_name(&name).await
                            && (stale.runner_scale_set_id == scale_set_id || stale.runner_scale_set_id == 0)
                        {
                            let _ = github.remove_runner(stale.id).await;
                        }
                        Err(Cause::GitHub(ScaleSetError::AgentExists))
                    }
                    Err(e) => Err(Cause::GitHub(e)),
                }
            }
        })
        .await
    }

    fn rename(&self, old: &str, new: &str) {
        let mut st = self.lock();
        if let Some(entry) = st.runners.remove(old) {
            tracing::info!(requested = %old, deployed = %new, "VM deployed under another name");
            st.runners.insert(new.to_owned(), entry);
        }
    }

    async fn provisioning_failed(self: &Arc<Self>, name: &str, error: ProvisionError) {
        let cancelled = matches!(error, ProvisionError::Cancelled { .. });
        let step = error.step().unwrap_or(crate::error::Step::DeployVm);
        if cancelled {
            tracing::info!(runner = %name, %step, "provisioning stopped");
        } else {
            tracing::warn!(runner = %name, error = &error as &dyn std::error::Error, "provisioning failed");
        }
        let reason = if cancelled { RetireReason::Cancelled } else { RetireReason::ProvisioningFailed };
        let run_cleanup = {
            let mut st = self.lock();
            if !cancelled {
                *st.counters.failures.entry((step, error.reason())).or_default() += 1;
            }
            if let Some(entry) = st.runners.get_mut(name)
                && entry.stage.is_provisioning()
            {
                entry.reason = Some(entry.reason.unwrap_or(reason));
            }
            self.apply(&mut st, name, LifecycleEvent::ProvisioningFailed, Some(reason));
            self.claim_retire(&mut st, name)
        };
        if !cancelled {
            self.emit(FleetEvent::StepFailed { runner: name.to_owned(), step, reason: error.reason() });
        }
        if run_cleanup {
            self.run_retire(name).await;
        }
    }
}
