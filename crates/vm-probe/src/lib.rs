//! SSH into Orka VMs.
//!
//! This crate owns the in-VM layout (DESIGN.md §2: runner directory, sentinel files, pid
//! file) and every command run inside a VM: the one-round-trip probe of a runner's state,
//! installing and starting the runner detached, stopping it, reading its log. The
//! [`VmShell`] seam is what the provisioner and reconciler use; the ssh2-based
//! implementation is the only place in the workspace that links ssh2.
//!
//! What it does not know: Orka, GitHub, or what a probe result means for the VM.

mod config;
mod error;
pub mod layout;
mod probe;
mod script;
mod session;
mod shell;
mod ssh2_shell;

pub use config::{HostKeyPolicy, SshAuth, SshConfig};
pub use layout::VmLayout;
pub use ssh2_shell::Ssh2Shell;

pub use error::{ShellError, SshStep};
pub use probe::{ProbeReport, Tri};
#[cfg(any(test, feature = "mocks"))]
pub use shell::MockVmShell;
pub use shell::{RunnerInstall, ScriptOutput, SshTarget, VmShell};
