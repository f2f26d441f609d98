//! A `VmBackend` for [Tart](https://tart.run) VMs on one Mac: the code the README's
//! "Extending: your own VM provider" section shows. CI compiles it (there is no Mac with
//! Tart in CI, so it is not run there); `local_vms` is the same shape, run end to end.
//!
//! On a Mac with Tart, `cargo run -p extension-example --example tart` lists the local VMs
//! as the fleet and the reconciler would see them.

use std::process::ExitCode;

use async_trait::async_trait;
use runner_core::{DeployRequest, Vm, VmBackend, VmBackendError, VmStatus};
use tokio::process::Command;

/// Runner VMs cloned from a Tart image (`DeployRequest::vm_config`) and reached over SSH
/// on port 22 of the address `tart ip` reports.
pub struct TartVms;

#[async_trait]
impl VmBackend for TartVms {
    async fn list_vms(&self) -> Result<Vec<Vm>, VmBackendError> {
        let listed = tart(&["list", "--source", "local", "--format", "json"]).await?;
        let listed: Vec<serde_json::Value> = serde_json::from_str(&listed)
            .map_err(|e| VmBackendError::Protocol { context: "tart list".into(), message: e.to_string() })?;
        let mut vms = Vec::new();
        for name in listed.iter().filter_map(|vm| vm["Name"].as_str()) {
            vms.push(tart_vm(name.to_owned(), tart(&["ip", name]).await.ok()));
        }
        Ok(vms)
    }

    async fn get_vm(&self, name: &str) -> Result<Option<Vm>, VmBackendError> {
        Ok(self.list_vms().await?.into_iter().find(|vm| vm.name == name))
    }

    async fn deploy_vm(&self, request: &DeployRequest) -> Result<Vm, VmBackendError> {
        let name = request.name.to_string();
        tart(&["clone", &request.vm_config, &name]).await?;
        // `tart run` lives as long as the VM runs; `tart stop` ends it.
        let started = Command::new("tart").args(["run", "--no-graphics", &name]).spawn();
        let wait = request.timeout.as_secs().min(u16::MAX.into()).to_string();
        let ip = match started {
            Ok(_) => tart(&["ip", "--wait", &wait, &name]).await,
            Err(e) => Err(VmBackendError::Transport { context: "tart run".into(), source: e.into() }),
        };
        match ip {
            Ok(ip) => Ok(tart_vm(name, Some(ip))),
            Err(e) => {
                self.delete_vm(&name).await?; // A failed deploy leaves no VM.
                Err(VmBackendError::DeployFailed { name, message: e.to_string() })
            }
        }
    }

    async fn delete_vm(&self, name: &str) -> Result<(), VmBackendError> {
        if self.get_vm(name).await?.is_none() {
            return Ok(()); // Idempotent.
        }
        let _ = tart(&["stop", name]).await; // Fails when the VM is not running; fine.
        tart(&["delete", name]).await.map(drop)
    }
}

/// A VM as the fleet sees it: running once Tart reports its address, SSH on port 22.
fn tart_vm(name: String, ip: Option<String>) -> Vm {
    let status = if ip.is_some() { VmStatus::Running } else { VmStatus::Pending };
    Vm { name, ip, ssh_port: Some(22), status, node: None }
}

/// Runs `tart <args>` and returns its trimmed standard output; a failure to start it is a
/// transport error, a non-zero exit a server error carrying its standard error.
async fn tart(args: &[&str]) -> Result<String, VmBackendError> {
    let output = Command::new("tart").args(args).output().await.map_err(|e| VmBackendError::Transport {
        context: format!("running tart {}", args[0]),
        source: e.into(),
    })?;
    if !output.status.success() {
        let message = String::from_utf8_lossy(&output.stderr).trim().to_owned();
        return Err(VmBackendError::Server { status: output.status.code().unwrap_or(-1) as u16, message });
    }
    Ok(String::from_utf8_lossy(&output.stdout).trim().to_owned())
}

#[tokio::main]
async fn main() -> ExitCode {
    match TartVms.list_vms().await {
        Ok(vms) => {
            for vm in vms {
                println!("{} {} {:?}", vm.name, vm.status, vm.ip);
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("listing Tart VMs failed: {e}");
            ExitCode::FAILURE
        }
    }
}
