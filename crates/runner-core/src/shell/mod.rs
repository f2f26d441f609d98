//! The VM shell seam ([`VmShell`]): commands run inside a VM, the three-valued probe
//! report and the error naming the step that failed.

mod error;
mod probe;
mod seam;

pub use error::{ShellError, SshStep};
pub use probe::{ProbeReport, Tri};
#[cfg(any(test, feature = "mocks"))]
pub use seam::MockVmShell;
pub use seam::{RunnerInstall, ScriptOutput, SshTarget, VmShell};
