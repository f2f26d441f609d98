//! SSH into Orka VMs.
//!
//! This crate owns the in-VM layout (docs/compatibility.md#vm-layout: runner directory, sentinel
//! files, pid
//! file) and every command run inside a VM: the one-round-trip probe of a runner's state,
//! installing and starting the runner detached, stopping it, reading its log. The
//! [`VmShell`] seam (defined in `runner-core`, re-exported here) is what the provisioner
//! and reconciler use; the ssh2-based implementation is the only place in the workspace
//! that links ssh2.
//!
//! What it does not know: Orka, GitHub, or what a probe result means for the VM.
//!
//! [`Ssh2Shell`] is the production implementation, two phases per operation: connect and
//! wait for the SSH banner on the async runtime (black holes cost no thread and no CPU),
//! then key exchange → host key → auth → exec → read → exit status on the shell's own SSH
//! thread, key exchanges bounded by what the cores can do in time. Every step is under a
//! timeout that starts when the operation gets its slot, so N dead VMs cost one timeout,
//! not N, and a reachable VM is never timed out while it queues. Inside the VM:
//!
//! - **probe**: one exec printing `orka-probe setup=1 run=0 alive=1 code=`; liveness from
//!   our pid file (`kill -0`), or, without one (a VM started by the Go integration), from
//!   `pgrep -f '/Users/<user>/[a]ctions-runner/run\.sh'`: the bracket keeps the probing
//!   shell, whose command line holds the pattern, from matching itself.
//! - **install and start**: download from the `{version}`/`{arch}` URL template with
//!   `curl --retry` unless that version is installed (our marker file or
//!   `bin/Runner.Listener --version`), write the setup sentinel, start run.sh by its
//!   absolute path under `setsid nohup` (or `nohup` where there is no `setsid`, as on
//!   macOS) with all descriptors redirected, so it survives the SSH session and the
//!   controller. A small launcher shell writes the pid file and, when run.sh exits with
//!   any code, the exit-code file and then the run-complete sentinel. The JIT config is the
//!   first line of stdin and reaches run.sh only as `ACTIONS_RUNNER_INPUT_JITCONFIG`.
//! - **stop**: TERM to run.sh and its children, KILL after 10 s; **tail_log**: `tail -n`.
//!
//! Every script is POSIX `sh` sent as `/bin/sh -c '…'` (the VM user's login shell may be
//! zsh).

mod config;
mod dial;
pub mod layout;
mod script;
mod session;
mod ssh2_shell;
mod threads;

pub use config::{HostKeyPolicy, SshAuth, SshConfig};
pub use layout::VmLayout;
pub use ssh2_shell::Ssh2Shell;

#[cfg(any(test, feature = "mocks"))]
pub use runner_core::MockVmShell;
pub use runner_core::{
    ProbeReport, RunnerInstall, ScriptOutput, ShellError, SshStep, SshTarget, Tri, VmShell,
};
