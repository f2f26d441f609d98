//! Fake VMs: SSH endpoints that behave like a macOS VM for the runner's commands, and the
//! fake runner they download. Usable without root and without sshd (tests, benchmarks,
//! the `demo`).
//!
//! - [`FakeVm`] / [`FakeVmHost`]: an in-process russh server per VM on `127.0.0.1` (an
//!   OS-assigned port), password (`admin`/`admin` by default) and public-key auth, `exec`
//!   channels with stdin. Commands run for real with `/bin/sh -c` in a per-VM scratch root.
//!   **The one trick**: the VM's `/tmp` and `/Users` path prefixes in each command's text
//!   are rewritten into that root (module `rewrite`), and `HOME`/`TMPDIR` point into it,
//!   so many VMs share one host file system without seeing each other's files. Detached
//!   processes survive their SSH channel; destroying the VM kills them (module `process`).
//!   Faulty variants: [`VmBehaviour`]. [`FakeVmHost`] is the fake Orka's [`crate::orka::VmProvider`].
//! - [`FakeRunnerDownloads`]: a loopback HTTP server serving the fake runner tarball at
//!   GitHub's release path; [`FakeRunnerDownloads::url_template`] is a
//!   `GITHUB_RUNNER_DOWNLOAD_URL`. Its `run.sh` speaks the fake-runner contract with the
//!   fake GitHub (`POST /_fake/runner/poll`).
//!
//! Not here: what the controller runs (that is vm-probe's), and the fake GitHub.

mod host;
pub(crate) mod process;
mod rewrite;
mod runner;
mod ssh;

pub use host::{FakeVm, FakeVmConfig, FakeVmHost, VmBehaviour};
pub use process::MARKER_VAR;
pub use rewrite::rewrite_paths;
pub use runner::{FakeRunnerDownloads, RUN_SH, runner_tarball};
