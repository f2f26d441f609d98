//! The fake VM's one trick: the controller uses absolute VM paths (`/tmp/orka-runner-*`,
//! `/Users/<user>/actions-runner`), and every fake VM shares the host's file system, so
//! the command text of each exec has its `/tmp` and `/Users` path prefixes rewritten into
//! the VM's own root (`<root>/tmp/…`, `<root>/Users/…`). Only prefixes that start a path
//! (after a space, quote, `=`, `:`, `(`, `;`, …) are rewritten, so `/var/tmp/x` is left alone.
//! Paths a command builds at run time from pieces (`"/" + "tmp"`) are not seen; nothing
//! the controller sends does that.

use std::path::Path;

const PREFIXES: [&str; 2] = ["/tmp", "/Users"];

fn is_path_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '/' | '~' | '$' | '}')
}

/// Rewrites `/tmp` and `/Users` path prefixes in `command` to live under `root`.
pub fn rewrite_paths(command: &str, root: &Path) -> String {
    let root = root.to_string_lossy();
    let root = root.trim_end_matches('/');
    let mut out = String::with_capacity(command.len() + 64);
    let mut prev: Option<char> = None;
    let mut i = 0;
    while i < command.len() {
        let rest = &command[i..];
        let starts_path = prev.is_none_or(|p| !is_path_char(p));
        let prefix = PREFIXES.iter().find(|prefix| {
            rest.starts_with(**prefix)
                && rest[prefix.len()..].chars().next().is_none_or(|c| !is_path_char(c) || c == '/')
        });
        if let (true, Some(prefix)) = (starts_path, prefix) {
            out.push_str(root);
            out.push_str(prefix);
            i += prefix.len();
            prev = prefix.chars().last();
            continue;
        }
        let c = rest.chars().next().unwrap_or_default();
        out.push(c);
        prev = Some(c);
        i += c.len_utf8();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rewrites_vm_paths_and_nothing_else() {
        let root = Path::new("/scratch/vm1");
        assert_eq!(
            rewrite_paths("test -e '/tmp/orka-runner-setup-complete'", root),
            "test -e '/scratch/vm1/tmp/orka-runner-setup-complete'"
        );
        assert_eq!(
            rewrite_paths("cd /Users/admin/actions-runner && ls /tmp", root),
            "cd /scratch/vm1/Users/admin/actions-runner && ls /scratch/vm1/tmp"
        );
        assert_eq!(rewrite_paths("x=/tmp/a:/Users/b", root), "x=/scratch/vm1/tmp/a:/scratch/vm1/Users/b");
        assert_eq!(rewrite_paths("ls /var/tmp/x /tmpfoo /Usersx", root), "ls /var/tmp/x /tmpfoo /Usersx");
        assert_eq!(
            rewrite_paths("pgrep -f '/Users/admin/[a]ctions-runner/run\\.sh'", root),
            "pgrep -f '/scratch/vm1/Users/admin/[a]ctions-runner/run\\.sh'"
        );
    }

    #[test]
    fn a_root_under_tmp_is_not_rewritten_twice() {
        let root = Path::new("/tmp/.tmpX/vm");
        assert_eq!(rewrite_paths("cat /tmp/a", root), "cat /tmp/.tmpX/vm/tmp/a");
    }
}
