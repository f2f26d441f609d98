//! What Linux reports about a process: CPU time and RSS (`/proc/<pid>/stat`, `status`),
//! thread count, and its established TCP connections (`/proc/<pid>/fd` socket inodes
//! matched against `/proc/net/tcp` and `tcp6`). Owns reading `/proc`; nothing else.

use std::collections::HashSet;
use std::time::Duration;

/// One sample of a process's resource use.
#[derive(Debug, Clone, Copy, Default)]
pub struct Usage {
    /// User + system CPU time so far.
    pub cpu: Duration,
    /// Resident set size, KiB.
    pub rss_kib: u64,
    /// Number of threads of the process.
    pub threads: u64,
}

/// Clock ticks per second (`getconf CLK_TCK`; 100 when unknown).
pub fn clock_ticks() -> u64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100)
}

/// CPU, RSS and threads of `pid` (`"self"` for this process); `None` when it is gone.
pub fn usage(pid: &str, ticks: u64) -> Option<Usage> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    Some(Usage {
        cpu: Duration::from_millis((utime + stime) * 1000 / ticks.max(1)),
        rss_kib: field("VmRSS:"),
        threads: field("Threads:"),
    })
}

/// Socket inodes the process holds open.
fn socket_inodes(pid: u32) -> HashSet<u64> {
    let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/fd")) else { return HashSet::new() };
    dir.filter_map(|e| e.ok())
        .filter_map(|e| std::fs::read_link(e.path()).ok())
        .filter_map(|target| {
            let text = target.to_string_lossy().into_owned();
            text.strip_prefix("socket:[")?.strip_suffix(']')?.parse().ok()
        })
        .collect()
}

/// TCP sockets of `pid`: (remote port, established?) each.
pub fn tcp_sockets(pid: u32) -> Vec<(u16, bool)> {
    let inodes = socket_inodes(pid);
    let mut sockets = Vec::new();
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let Ok(text) = std::fs::read_to_string(table) else { continue };
        for line in text.lines().skip(1) {
            let cols: Vec<&str> = line.split_whitespace().collect();
            let (Some(remote), Some(state), Some(inode)) =
                (cols.get(2), cols.get(3), cols.get(9).and_then(|i| i.parse::<u64>().ok()))
            else {
                continue;
            };
            if inode == 0 || !inodes.contains(&inode) {
                continue;
            }
            let port = remote.rsplit(':').next().and_then(|p| u16::from_str_radix(p, 16).ok()).unwrap_or(0);
            sockets.push((port, *state == "01"));
        }
    }
    sockets
}

/// Open file descriptors of `pid`.
pub fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map(|d| d.count()).unwrap_or(0)
}

/// Busy CPU time of the whole machine so far (every core; `/proc/stat` minus idle and iowait).
pub fn machine_busy(ticks: u64) -> Duration {
    let Ok(text) = std::fs::read_to_string("/proc/stat") else { return Duration::ZERO };
    let Some(line) = text.lines().find(|l| l.starts_with("cpu ")) else { return Duration::ZERO };
    let values: Vec<u64> = line.split_whitespace().skip(1).filter_map(|v| v.parse().ok()).collect();
    // user nice system idle iowait irq softirq steal guest guest_nice; guests are in user.
    let busy: u64 =
        values.iter().take(8).enumerate().filter(|(i, _)| *i != 3 && *i != 4).map(|(_, v)| v).sum();
    Duration::from_millis(busy * 1000 / ticks.max(1))
}
