//! The shell scripts run inside a VM (probe, install-and-start, stop, log tail) and the
//! parsing of their answers. Pure text: no I/O here, so every script is unit-tested.
//!
//! Every script is POSIX `sh` and is sent as `/bin/sh -c '<script>'`, so the VM user's
//! login shell (zsh on macOS) only ever parses one simple command. Secrets never appear in
//! a script: the JIT config is the first line of stdin.

use crate::layout::VmLayout;
use crate::{ProbeReport, Tri};

/// Marker that starts the probe's answer line (anything else on stdout, e.g. a motd, is
/// ignored).
const PROBE_MARKER: &str = "orka-probe";

/// Exit code of the install script when this VM's runner already ran (ephemeral VMs run
/// one runner, once).
pub(crate) const EXIT_ALREADY_RAN: i32 = 70;

/// Quotes a string for POSIX sh.
pub(crate) fn sh_quote(value: &str) -> String {
    format!("'{}'", value.replace('\'', r"'\''"))
}

/// Wraps a script so the login shell runs it with `/bin/sh`.
pub(crate) fn wrap(script: &str) -> String {
    format!("/bin/sh -c {}", sh_quote(script))
}

/// An extended regex matching `<runner_dir>/run.sh` but not its own text: the first letter
/// of the last path component is put in brackets (`/Users/admin/[a]ctions-runner/run\.sh`),
/// so the probing shell, whose command line holds the pattern, never matches it
/// (docs/compatibility.md#liveness).
pub(crate) fn run_sh_pattern(layout: &VmLayout) -> String {
    let run_sh = layout.run_sh();
    let last_component_start = run_sh[..run_sh.len() - "/run.sh".len()].rfind('/').map_or(0, |i| i + 1);
    let mut pattern = String::with_capacity(run_sh.len() + 8);
    let mut bracketed = false;
    for (i, c) in run_sh.char_indices() {
        if !bracketed && i >= last_component_start && c.is_ascii_alphanumeric() {
            pattern.push('[');
            pattern.push(c);
            pattern.push(']');
            bracketed = true;
        } else if "\\.^$*+?()[]{}|".contains(c) {
            pattern.push('\\');
            pattern.push(c);
        } else {
            pattern.push(c);
        }
    }
    pattern
}

/// One round trip: setup sentinel, run sentinel, liveness and exit code on one line.
/// Liveness: our pid file (`kill -0`); without one (a VM started by the Go integration),
/// `pgrep -f` with the self-excluding pattern. `?` = could not tell.
pub(crate) fn probe(layout: &VmLayout) -> String {
    format!(
        r#"tri() {{
  if [ -e "$1" ]; then echo 1
  elif [ ! -e "$(dirname "$1")" ] || [ -x "$(dirname "$1")" ]; then echo 0
  else echo '?'; fi
}}
setup=$(tri {setup})
run=$(tri {run})
alive='?'
pid=''
if [ -f {pid_file} ]; then pid=$(cat {pid_file} 2>/dev/null) || pid=''; fi
case "$pid" in
  ''|*[!0-9]*)
    if command -v pgrep >/dev/null 2>&1; then
      pgrep -f {pattern} >/dev/null 2>&1
      case $? in 0) alive=1 ;; 1) alive=0 ;; *) alive='?' ;; esac
    fi ;;
  *)
    if kill -0 "$pid" 2>/dev/null; then alive=1
    elif ps -p "$pid" >/dev/null 2>&1; then alive=1
    else alive=0; fi ;;
esac
code=''
if [ -f {code_file} ]; then
  code=$(cat {code_file} 2>/dev/null) || code=''
  case "$code" in ''|*[!0-9]*) code='' ;; esac
fi
echo "{marker} setup=$setup run=$run alive=$alive code=$code"
"#,
        setup = sh_quote(&layout.setup_sentinel),
        run = sh_quote(&layout.run_sentinel),
        pid_file = sh_quote(&layout.pid_file),
        pattern = sh_quote(&run_sh_pattern(layout)),
        code_file = sh_quote(&layout.exit_code_file),
        marker = PROBE_MARKER,
    )
}

/// Parses the probe's answer line; `None` when there is none.
pub(crate) fn parse_probe(stdout: &str) -> Option<ProbeReport> {
    let line = stdout.lines().rev().find(|l| l.starts_with(PROBE_MARKER))?;
    let mut report = ProbeReport {
        setup_complete: Tri::Unknown,
        run_complete: Tri::Unknown,
        runner_alive: Tri::Unknown,
        exit_code: None,
    };
    let mut seen = 0;
    for field in line[PROBE_MARKER.len()..].split_whitespace() {
        let (key, value) = field.split_once('=')?;
        let tri = match value {
            "1" => Tri::Yes,
            "0" => Tri::No,
            _ => Tri::Unknown,
        };
        match key {
            "setup" => report.setup_complete = tri,
            "run" => report.run_complete = tri,
            "alive" => report.runner_alive = tri,
            "code" => report.exit_code = value.parse().ok(),
            _ => continue,
        }
        seen += 1;
    }
    (seen >= 3).then_some(report)
}

/// The two download URLs (x64, arm64) from the template; the VM picks by `uname -m`.
pub(crate) fn download_urls(template: &str, version: &str) -> (String, String) {
    let with_version = template.replace("{version}", version);
    (with_version.replace("{arch}", "x64"), with_version.replace("{arch}", "arm64"))
}

/// Installs the runner unless `version` is already there, writes the setup sentinel and
/// starts run.sh detached, with the JIT config (first line of stdin) in
/// `ACTIONS_RUNNER_INPUT_JITCONFIG`. Returns once the pid file exists.
///
/// Idempotent: a runner already running is left alone (exit 0); a runner that already ran
/// on this VM is refused ([`EXIT_ALREADY_RAN`]).
pub(crate) fn install_and_start(layout: &VmLayout, version: &str, url_template: &str) -> String {
    let (url_x64, url_arm64) = download_urls(url_template, version);
    format!(
        r#"set -eu
IFS= read -r jit || true
if [ -z "$jit" ]; then echo "no JIT config on stdin" >&2; exit 64; fi
runner_dir={runner_dir}
run_sh={run_sh}
pid_file={pid_file}
if [ -f "$pid_file" ]; then
  pid=$(cat "$pid_file" 2>/dev/null || true)
  case "$pid" in
    ''|*[!0-9]*) ;;
    *) if kill -0 "$pid" 2>/dev/null; then echo "runner already running (pid $pid)"; exit 0; fi ;;
  esac
fi
if [ -e {run_sentinel} ]; then echo "the runner already ran on this VM" >&2; exit {already_ran}; fi
case "$(uname -m)" in
  x86_64|amd64) url={url_x64}; arch=x64 ;;
  arm64|aarch64) url={url_arm64}; arch=arm64 ;;
  *) echo "unsupported architecture $(uname -m)" >&2; exit 65 ;;
esac
mkdir -p "$runner_dir"
cd "$runner_dir"
installed=''
if [ -f .orka-runner-version ]; then
  installed=$(cat .orka-runner-version 2>/dev/null || true)
elif [ -x bin/Runner.Listener ]; then
  installed=$(./bin/Runner.Listener --version 2>/dev/null || true)
fi
if [ "$installed" != {version} ] || [ ! -x "$run_sh" ]; then
  echo "downloading runner {version_plain} ($arch)"
  archive="actions-runner-$arch-{version_plain}.tar.gz.part"
  curl -fsSL --retry 5 --retry-delay 2 --retry-all-errors --connect-timeout 20 -o "$archive" "$url"
  tar xzf "$archive"
  rm -f "$archive"
  printf '%s\n' {version} > .orka-runner-version
else
  echo "runner {version_plain} already installed"
fi
if [ ! -x "$run_sh" ]; then echo "run.sh missing after install" >&2; exit 66; fi
rm -f "$pid_file" {code_file}
mkdir -p "$(dirname {setup_sentinel})" "$(dirname {log_file})"
: > {setup_sentinel}
ACTIONS_RUNNER_INPUT_JITCONFIG=$jit
export ACTIONS_RUNNER_INPUT_JITCONFIG
jit=''
launcher='trap "" HUP
"$1" </dev/null &
child=$!
printf "%s\n" "$child" > "$2.tmp" && mv -f "$2.tmp" "$2"
trap "kill -TERM \"\$child\" 2>/dev/null" TERM INT
while :; do
  wait "$child"; code=$?
  kill -0 "$child" 2>/dev/null || break
done
printf "%s\n" "$code" > "$3.tmp" && mv -f "$3.tmp" "$3"
: > "$4"'
if command -v setsid >/dev/null 2>&1; then
  setsid nohup /bin/sh -c "$launcher" orka-runner-launcher "$run_sh" "$pid_file" {code_file} {run_sentinel} </dev/null >>{log_file} 2>&1 &
else
  nohup /bin/sh -c "$launcher" orka-runner-launcher "$run_sh" "$pid_file" {code_file} {run_sentinel} </dev/null >>{log_file} 2>&1 &
fi
unset ACTIONS_RUNNER_INPUT_JITCONFIG
i=0
while [ ! -s "$pid_file" ]; do
  i=$((i + 1))
  if [ "$i" -gt 100 ]; then echo "run.sh did not start" >&2; exit 67; fi
  sleep 0.1
done
echo "runner started (pid $(cat "$pid_file"))"
"#,
        runner_dir = sh_quote(&layout.runner_dir),
        run_sh = sh_quote(&layout.run_sh()),
        pid_file = sh_quote(&layout.pid_file),
        run_sentinel = sh_quote(&layout.run_sentinel),
        setup_sentinel = sh_quote(&layout.setup_sentinel),
        code_file = sh_quote(&layout.exit_code_file),
        log_file = sh_quote(&layout.log_file),
        url_x64 = sh_quote(&url_x64),
        url_arm64 = sh_quote(&url_arm64),
        version = sh_quote(version),
        version_plain = version,
        already_ran = EXIT_ALREADY_RAN,
    )
}

/// Stops run.sh and everything it started: TERM to its process group (the detached
/// launcher's: run.sh, the runner's children and grandchildren; the launcher forwards the
/// signal and records the exit), KILL after 10 s, recording exit code 137 if the launcher
/// could not. Without a pid file (a runner started by the Go integration) falls back to
/// `pkill -f`. A missing runner is a success.
pub(crate) fn stop(layout: &VmLayout) -> String {
    format!(
        r#"pid=$(cat {pid_file} 2>/dev/null || true)
case "$pid" in
  ''|*[!0-9]*)
    if command -v pkill >/dev/null 2>&1; then pkill -TERM -f {pattern} 2>/dev/null || true; fi
    exit 0 ;;
esac
kill -0 "$pid" 2>/dev/null || exit 0
pgid=$(ps -o pgid= -p "$pid" 2>/dev/null | tr -d ' ')
own=$(ps -o pgid= -p $$ 2>/dev/null | tr -d ' ')
signal() {{
  case "$pgid" in
    ''|*[!0-9]*|0|1|"$own")
      pkill -"$1" -P "$pid" 2>/dev/null || true
      kill -"$1" "$pid" 2>/dev/null || true ;;
    *) kill -"$1" -"$pgid" 2>/dev/null || kill -"$1" "$pid" 2>/dev/null || true ;;
  esac
}}
signal TERM
i=0
while kill -0 "$pid" 2>/dev/null && [ "$i" -lt 50 ]; do sleep 0.2; i=$((i + 1)); done
if kill -0 "$pid" 2>/dev/null; then
  signal KILL
  sleep 0.5
  if [ ! -e {run_sentinel} ]; then printf '137\n' > {code_file}; : > {run_sentinel}; fi
fi
exit 0
"#,
        pid_file = sh_quote(&layout.pid_file),
        pattern = sh_quote(&run_sh_pattern(layout)),
        run_sentinel = sh_quote(&layout.run_sentinel),
        code_file = sh_quote(&layout.exit_code_file),
    )
}

/// The last `lines` lines of the runner log (empty when there is no log yet).
pub(crate) fn tail_log(layout: &VmLayout, lines: u32) -> String {
    format!("tail -n {lines} {} 2>/dev/null; exit 0", sh_quote(&layout.log_file))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting_survives_single_quotes() {
        assert_eq!(sh_quote("a'b"), r"'a'\''b'");
        assert_eq!(wrap("echo 'x'"), r"/bin/sh -c 'echo '\''x'\'''");
    }

    #[test]
    fn run_sh_pattern_brackets_the_runner_directory() {
        let layout = VmLayout::for_user("admin");
        assert_eq!(run_sh_pattern(&layout), r"/Users/admin/[a]ctions-runner/run\.sh");
        let layout = VmLayout::under("/tmp/t.1");
        assert_eq!(run_sh_pattern(&layout), r"/tmp/t\.1/[a]ctions-runner/run\.sh");
    }

    #[test]
    fn parses_every_answer_of_the_probe() {
        let report = parse_probe("motd\norka-probe setup=1 run=0 alive=? code=\n").unwrap();
        assert_eq!(
            report,
            ProbeReport {
                setup_complete: Tri::Yes,
                run_complete: Tri::No,
                runner_alive: Tri::Unknown,
                exit_code: None
            }
        );
        let report = parse_probe("orka-probe setup=1 run=1 alive=0 code=3").unwrap();
        assert_eq!(report.exit_code, Some(3));
        assert_eq!(report.run_complete, Tri::Yes);
        assert_eq!(report.runner_alive, Tri::No);
    }

    #[test]
    fn missing_or_truncated_answer_is_not_a_report() {
        assert!(parse_probe("").is_none());
        assert!(parse_probe("orka-probe setup=1").is_none());
        assert!(parse_probe("something else").is_none());
    }

    #[test]
    fn download_urls_fill_version_and_arch() {
        let (x64, arm64) = download_urls(
            "https://github.com/actions/runner/releases/download/v{version}/actions-runner-osx-{arch}-{version}.tar.gz",
            "2.328.0",
        );
        assert_eq!(
            x64,
            "https://github.com/actions/runner/releases/download/v2.328.0/actions-runner-osx-x64-2.328.0.tar.gz"
        );
        assert!(arm64.ends_with("actions-runner-osx-arm64-2.328.0.tar.gz"));
    }

    #[test]
    fn scripts_never_hold_a_jit_config_and_start_run_sh_by_absolute_path() {
        let layout = VmLayout::for_user("admin");
        let script = install_and_start(&layout, "2.328.0", "http://h/{version}/{arch}");
        assert!(script.contains("IFS= read -r jit"));
        assert!(script.contains("'/Users/admin/actions-runner/run.sh'"));
        assert!(!script.contains("--jitconfig"));
    }
}
