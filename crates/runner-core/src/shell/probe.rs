//! Probe results: what is true inside a VM, with "could not tell" kept distinct from "no".

/// A three-valued answer: an SSH hiccup must never read as "the runner crashed".
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Tri {
    /// Checked, and true.
    Yes,
    /// Checked, and false.
    No,
    /// Could not be checked (the check itself failed).
    Unknown,
}

impl Tri {
    /// `Yes` / `No` from a known boolean.
    pub fn from_bool(value: bool) -> Self {
        if value { Tri::Yes } else { Tri::No }
    }
}

/// The state of the runner inside a VM, from one probe round trip.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProbeReport {
    /// The setup sentinel exists (runner installed and about to start).
    pub setup_complete: Tri,
    /// The run sentinel exists (run.sh exited).
    pub run_complete: Tri,
    /// run.sh is running (pid file, falling back to `pgrep -f actions-runner/run.sh`).
    pub runner_alive: Tri,
    /// run.sh's exit code, when it has exited and recorded one.
    pub exit_code: Option<i32>,
}
