//! The in-VM layout shared with the Go integration (docs/compatibility.md#vm-layout), so VMs
//! started by
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

/// Where things live inside a VM. [`VmLayout::for_user`] is the layout shared with the Go
/// integration; other layouts exist so tests against a real sshd can run side by side in
/// temporary directories without colliding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VmLayout {
    /// The runner directory (holds `run.sh`).
    pub runner_dir: String,
    /// Setup sentinel ([`SETUP_SENTINEL`] by default).
    pub setup_sentinel: String,
    /// Run-complete sentinel ([`RUN_SENTINEL`] by default).
    pub run_sentinel: String,
    /// Pid file of the detached run.sh ([`PID_FILE`] by default).
    pub pid_file: String,
    /// run.sh's exit code ([`EXIT_CODE_FILE`] by default).
    pub exit_code_file: String,
    /// run.sh's combined output ([`LOG_FILE`] by default).
    pub log_file: String,
}

impl VmLayout {
    /// The layout of the Go integration for a VM user (docs/compatibility.md#vm-layout).
    pub fn for_user(username: &str) -> Self {
        VmLayout {
            runner_dir: runner_dir(username),
            setup_sentinel: SETUP_SENTINEL.to_owned(),
            run_sentinel: RUN_SENTINEL.to_owned(),
            pid_file: PID_FILE.to_owned(),
            exit_code_file: EXIT_CODE_FILE.to_owned(),
            log_file: LOG_FILE.to_owned(),
        }
    }

    /// Everything under one directory (`<base>/actions-runner`, `<base>/orka-runner-*`):
    /// for tests against a real sshd, where several VMs share one host.
    pub fn under(base: &str) -> Self {
        let base = base.trim_end_matches('/');
        VmLayout {
            runner_dir: format!("{base}/actions-runner"),
            setup_sentinel: format!("{base}/orka-runner-setup-complete"),
            run_sentinel: format!("{base}/orka-runner-run-complete"),
            pid_file: format!("{base}/orka-runner.pid"),
            exit_code_file: format!("{base}/orka-runner-exit-code"),
            log_file: format!("{base}/orka-runner.log"),
        }
    }

    /// Path of run.sh, as the Go integration invokes it (absolute, so `pgrep -f` finds it).
    pub fn run_sh(&self) -> String {
        format!("{}/run.sh", self.runner_dir.trim_end_matches('/'))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runner_dir_matches_the_go_integration() {
        assert_eq!(super::runner_dir("admin"), "/Users/admin/actions-runner");
    }

    #[test]
    fn default_layout_is_the_go_integrations() {
        let layout = VmLayout::for_user("admin");
        assert_eq!(layout.runner_dir, "/Users/admin/actions-runner");
        assert_eq!(layout.setup_sentinel, "/tmp/orka-runner-setup-complete");
        assert_eq!(layout.run_sentinel, "/tmp/orka-runner-run-complete");
        assert_eq!(layout.run_sh(), "/Users/admin/actions-runner/run.sh");
    }

    #[test]
    fn layout_under_a_directory_keeps_everything_inside_it() {
        let layout = VmLayout::under("/tmp/x/");
        for path in [
            &layout.runner_dir,
            &layout.setup_sentinel,
            &layout.run_sentinel,
            &layout.pid_file,
            &layout.exit_code_file,
            &layout.log_file,
        ] {
            assert!(path.starts_with("/tmp/x/"), "{path}");
        }
    }
}
