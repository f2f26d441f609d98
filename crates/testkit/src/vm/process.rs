//! Killing everything that runs "inside" a fake VM, including processes detached from
//! their SSH channel (`setsid`, `nohup`): every process a fake VM starts carries a marker
//! in its environment, which its descendants inherit, and on Linux `/proc/<pid>/environ`
//! finds them all. Where there is no `/proc`, the recorded process groups of the execs are
//! killed instead (detached `setsid` children escape that; a documented limit). On Linux
//! the groups are not used: a group whose members all exited may have had its id reused.

use std::path::Path;

/// The environment variable marking a fake VM's processes.
pub const MARKER_VAR: &str = "ORKA_FAKE_VM_ID";

/// Pids whose initial environment holds `MARKER_VAR=<marker>` (Linux; empty elsewhere).
pub fn marked_pids(marker: &str) -> Vec<u32> {
    let needle = format!("{MARKER_VAR}={marker}");
    let Ok(entries) = std::fs::read_dir("/proc") else { return Vec::new() };
    let me = std::process::id();
    entries
        .filter_map(|entry| entry.ok())
        .filter_map(|entry| entry.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| *pid != me)
        .filter(|pid| {
            std::fs::read(Path::new("/proc").join(pid.to_string()).join("environ"))
                .map(|env| env.split(|b| *b == 0).any(|var| var == needle.as_bytes()))
                .unwrap_or(false)
        })
        .collect()
}

/// Sends SIGKILL to the process groups and to every marked process, a few rounds, until
/// none is left (bounded: processes forking while being killed get a few more rounds).
pub fn kill_all(marker: &str, process_groups: &[u32]) {
    if !Path::new("/proc/self/environ").exists() && !process_groups.is_empty() {
        let mut args = vec!["-KILL".to_owned(), "--".to_owned()];
        args.extend(process_groups.iter().map(|g| format!("-{g}")));
        let _ = std::process::Command::new("kill").args(&args).stderr(std::process::Stdio::null()).status();
    }
    for _ in 0..10 {
        let pids = marked_pids(marker);
        if pids.is_empty() {
            return;
        }
        let _ = std::process::Command::new("kill")
            .arg("-KILL")
            .args(pids.iter().map(u32::to_string))
            .stderr(std::process::Stdio::null())
            .status();
    }
}
