//! The in-VM layout shared with the Go integration (DESIGN.md §2), so VMs started by
//! either controller can be adopted by the other.

/// Set once the runner is installed and configured.
pub const SETUP_SENTINEL: &str = "/tmp/orka-runner-setup-complete";
/// Set when run.sh has exited (whatever its exit code).
pub const RUN_SENTINEL: &str = "/tmp/orka-runner-run-complete";
/// Our addition: the pid of the detached run.sh.
pub const PID_FILE: &str = "/tmp/orka-runner.pid";
/// Our addition: run.sh's exit code, written beside the run sentinel.
pub const EXIT_CODE_FILE: &str = "/tmp/orka-runner-exit-code";
/// Our addition: run.sh's combined output.
pub const LOG_FILE: &str = "/tmp/orka-runner.log";

/// The runner directory for a VM user: `/Users/<user>/actions-runner`.
pub fn runner_dir(username: &str) -> String {
    format!("/Users/{username}/actions-runner")
}

#[cfg(test)]
mod tests {
    #[test]
    fn runner_dir_matches_the_go_integration() {
        assert_eq!(super::runner_dir("admin"), "/Users/admin/actions-runner");
    }
}
