//! Pure parsers for single setting values: Go durations, strict booleans, log levels,
//! metadata lists, the node-IP map, the `RUNNERS` JSON, URLs and listen addresses.
//!
//! Each parser returns `Err(reason)` with a human sentence that never contains the value
//! of a secret (callers decide whether to echo the value). It knows nothing about where a
//! value came from or which setting it belongs to.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use serde::Deserialize;

/// Parses a Go duration (`time.ParseDuration` syntax): `300ms`, `30s`, `5m`, `1h30m`,
/// `1.5h`, `0`. Negative durations and numbers without a unit are rejected.
pub fn parse_go_duration(raw: &str) -> Result<Duration, String> {
    let text = raw.trim();
    let text = text.strip_prefix('+').unwrap_or(text);
    if text == "0" {
        return Ok(Duration::ZERO);
    }
    if text.starts_with('-') {
        return Err("must not be negative".into());
    }
    if text.is_empty() {
        return Err("is not a duration (examples: 30s, 5m, 1h30m, 500ms)".into());
    }
    let mut nanos: u128 = 0;
    let mut rest = text;
    while !rest.is_empty() {
        let number_len = rest.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(rest.len());
        let (number, tail) = rest.split_at(number_len);
        let unit_len = tail.find(|c: char| c.is_ascii_digit() || c == '.').unwrap_or(tail.len());
        let (unit, tail) = tail.split_at(unit_len);
        let unit_nanos: u128 = match unit {
            "ns" => 1,
            "us" | "µs" | "μs" => 1_000,
            "ms" => 1_000_000,
            "s" => 1_000_000_000,
            "m" => 60_000_000_000,
            "h" => 3_600_000_000_000,
            "" => return Err("is missing a unit (examples: 30s, 5m, 1h30m, 500ms)".into()),
            other => return Err(format!("has an unknown unit {other:?} (use ns, us, ms, s, m or h)")),
        };
        nanos = nanos.checked_add(scaled(number, unit_nanos)?).ok_or_else(|| "is too large".to_owned())?;
        rest = tail;
    }
    u64::try_from(nanos).map(Duration::from_nanos).map_err(|_| "is too large".to_owned())
}

/// Parses a Go duration of at least `min`. A zero `min` allows `0`; otherwise the message
/// names the bound.
pub fn parse_go_duration_at_least(raw: &str, min: Duration) -> Result<Duration, String> {
    let d = parse_go_duration(raw)?;
    if d < min {
        return Err(format!("must be at least {}", humantime::format_duration(min)));
    }
    Ok(d)
}

fn scaled(number: &str, unit_nanos: u128) -> Result<u128, String> {
    let bad = || "is not a duration (examples: 30s, 5m, 1h30m, 500ms)".to_owned();
    let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
    if whole.is_empty() && fraction.is_empty() || fraction.contains('.') {
        return Err(bad());
    }
    let whole: u128 = if whole.is_empty() { 0 } else { whole.parse().map_err(|_| bad())? };
    let mut value = whole.checked_mul(unit_nanos).ok_or_else(|| "is too large".to_owned())?;
    let mut scale = unit_nanos;
    for digit in fraction.bytes().take(30) {
        scale /= 10;
        value += u128::from(digit - b'0') * scale;
    }
    Ok(value)
}

/// Parses a boolean strictly: `true`/`false`/`1`/`0`, case-insensitive.
pub fn parse_bool(raw: &str) -> Result<bool, String> {
    match raw.trim().to_ascii_lowercase().as_str() {
        "true" | "1" => Ok(true),
        "false" | "0" => Ok(false),
        _ => Err("must be true, false, 1 or 0".into()),
    }
}

/// Parses an unsigned integer within `[min, max]`.
pub fn parse_u32_in(raw: &str, min: u32, max: u32) -> Result<u32, String> {
    let value: u64 = raw.trim().parse().map_err(|_| "must be a whole number".to_owned())?;
    if value < u64::from(min) || value > u64::from(max) {
        return Err(format!("must be between {min} and {max}"));
    }
    Ok(value as u32)
}

/// Largest id GitHub's APIs carry (a signed 64-bit integer).
pub const MAX_ID: u64 = i64::MAX as u64;

/// Parses a positive id (GitHub App and installation ids, runner group ids), at most
/// [`MAX_ID`].
pub fn parse_id(raw: &str) -> Result<u64, String> {
    match raw.trim().parse::<u64>() {
        Ok(id) if id > 0 && id <= MAX_ID => Ok(id),
        _ => Err("must be a positive whole number".into()),
    }
}

/// Log verbosity.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogLevel {
    /// Everything: the most detailed level.
    Trace,
    /// Debugging detail.
    Debug,
    /// Normal operation.
    Info,
    /// Something unexpected that was handled.
    Warn,
    /// Failures that need attention.
    Error,
}

impl LogLevel {
    /// The `tracing` directive for this level.
    pub fn as_directive(self) -> &'static str {
        match self {
            LogLevel::Trace => "trace",
            LogLevel::Debug => "debug",
            LogLevel::Info => "info",
            LogLevel::Warn => "warn",
            LogLevel::Error => "error",
        }
    }
}

/// Parses `LOG_LEVEL`: `trace`, `debug`, `info`, `warn` or `warning`, `error`; zap's
/// `dpanic`, `panic` and `fatal` (valid in the Go integration) mean `error`.
pub fn parse_log_level(raw: &str) -> Result<LogLevel, String> {
    match raw.trim().to_ascii_lowercase().as_str() {
        "trace" => Ok(LogLevel::Trace),
        "debug" => Ok(LogLevel::Debug),
        "info" => Ok(LogLevel::Info),
        "warn" | "warning" => Ok(LogLevel::Warn),
        "error" | "dpanic" | "panic" | "fatal" => Ok(LogLevel::Error),
        _ => Err("must be one of trace, debug, info, warn (or warning), error".into()),
    }
}

/// Log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// One JSON object per line (the Go integration's format).
    Json,
    /// Human-readable lines.
    Pretty,
}

/// Parses `LOG_FORMAT`: `json` or `pretty` (`text` is accepted as `pretty`).
pub fn parse_log_format(raw: &str) -> Result<LogFormat, String> {
    match raw.trim().to_ascii_lowercase().as_str() {
        "json" => Ok(LogFormat::Json),
        "pretty" | "text" => Ok(LogFormat::Pretty),
        _ => Err("must be json or pretty".into()),
    }
}

fn is_word(text: &str) -> bool {
    !text.is_empty() && text.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'_')
}

/// Checks metadata given as a table in the config file with the same character rules.
pub fn check_metadata_table(table: &BTreeMap<String, String>) -> Result<(), String> {
    match table.iter().find(|(k, v)| !is_word(k) || !is_word(v)) {
        Some((key, _)) => Err(format!("entry {key:?} must use letters, digits and _ only")),
        None => Ok(()),
    }
}

/// One entry of `RUNNERS`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunnerEntry {
    /// Scale set name (also the `runs-on` label and the VM name prefix).
    pub name: String,
    /// Runner group id; the Go integration's default group `1` when absent.
    pub runner_group_id: u64,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRunnerEntry {
    name: String,
    #[serde(default)]
    id: Option<serde_json::Value>,
}

/// The default runner group id (GitHub's "Default" group).
pub const DEFAULT_RUNNER_GROUP_ID: u64 = 1;

/// Parses `RUNNERS`: `[{"name":"…","id":N}]` where `id` is the runner group id (number or
/// numeric string, default 1). Every entry becomes a scale set.
pub fn parse_runners(raw: &str) -> Result<Vec<RunnerEntry>, String> {
    let entries: Vec<RawRunnerEntry> = serde_json::from_str(raw.trim())
        .map_err(|e| format!("must be a JSON array like [{{\"name\":\"macos\",\"id\":1}}] ({e})"))?;
    if entries.is_empty() {
        return Err("must name at least one scale set".into());
    }
    entries
        .into_iter()
        .enumerate()
        .map(|(index, entry)| {
            let runner_group_id = match entry.id {
                None | Some(serde_json::Value::Null) => DEFAULT_RUNNER_GROUP_ID,
                Some(serde_json::Value::Number(n)) => n
                    .as_u64()
                    .filter(|id| *id > 0 && *id <= MAX_ID)
                    .ok_or_else(|| format!("entry {index}: id must be a positive runner group id"))?,
                Some(serde_json::Value::String(s)) => {
                    parse_id(&s).map_err(|e| format!("entry {index}: id {e}"))?
                }
                Some(_) => return Err(format!("entry {index}: id must be a runner group id number")),
            };
            Ok(RunnerEntry { name: entry.name.trim().to_owned(), runner_group_id })
        })
        .collect()
}

/// Parses an `http(s)://` base URL, trimming trailing slashes.
pub fn parse_http_url(raw: &str) -> Result<url::Url, String> {
    let trimmed = raw.trim().trim_end_matches('/');
    let parsed = url::Url::parse(trimmed).map_err(|e| format!("is not a URL ({e})"))?;
    if !matches!(parsed.scheme(), "http" | "https") || parsed.host_str().is_none_or(str::is_empty) {
        return Err("must start with http:// or https:// and name a host".into());
    }
    Ok(parsed)
}

/// Refuses a URL carrying `user:password@`: neither GitHub nor Orka reads credentials
/// there (they belong in `GITHUB_PAT`/`ORKA_TOKEN`), and a password in a non-secret
/// setting would be printed wherever the URL is. The message does not repeat the URL.
pub fn reject_userinfo(url: &url::Url) -> Result<(), String> {
    if url.username().is_empty() && url.password().is_none() {
        Ok(())
    } else {
        Err("must not contain a user name or password (user:password@…); put credentials in \
             GITHUB_PAT, the GITHUB_APP_* settings or ORKA_TOKEN"
            .into())
    }
}

/// Parses a listen address: Go's `:8080` (all interfaces), `host:port` with an IP or
/// `localhost`, or `[v6]:port`.
pub fn parse_listen_addr(raw: &str) -> Result<SocketAddr, String> {
    let text = raw.trim();
    let bad = || "must be [host]:port, like :8080 or 127.0.0.1:9090".to_owned();
    if let Some(port) = text.strip_prefix(':') {
        let port: u16 = port.parse().map_err(|_| bad())?;
        return Ok(SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), port));
    }
    if let Some(port) = text.strip_prefix("localhost:") {
        let port: u16 = port.parse().map_err(|_| bad())?;
        return Ok(SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port));
    }
    text.parse().map_err(|_| bad())
}

/// Splits a comma-separated label list, trimming blanks; empty entries are rejected.
pub fn parse_label_list(raw: &str) -> Result<Vec<String>, String> {
    raw.split(',')
        .map(|label| {
            let label = label.trim();
            if label.is_empty() { Err("has an empty label".to_owned()) } else { Ok(label.to_owned()) }
        })
        .collect()
}

/// Checks a runner version: `MAJOR.MINOR.PATCH`, an optional leading `v` dropped.
pub fn parse_runner_version(raw: &str) -> Result<String, String> {
    let version = raw.trim();
    let version = version.strip_prefix('v').unwrap_or(version);
    let parts: Vec<&str> = version.split('.').collect();
    if parts.len() != 3 || parts.iter().any(|p| p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit())) {
        return Err("must be a runner version like 2.321.0".into());
    }
    Ok(version.to_owned())
}

/// Checks a download URL template: an http(s) URL whose only placeholders are
/// `{version}` and `{arch}`.
pub fn parse_download_template(raw: &str) -> Result<String, String> {
    let template = raw.trim();
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        let close = rest[open..].find('}').ok_or_else(|| "has an unclosed '{'".to_owned())?;
        let placeholder = &rest[open..open + close + 1];
        if !matches!(placeholder, "{version}" | "{arch}") {
            return Err(format!("has an unknown placeholder {placeholder} (use {{version}} and {{arch}})"));
        }
        rest = &rest[open + close + 1..];
    }
    parse_http_url(&template.replace("{version}", "2.0.0").replace("{arch}", "x64"))?;
    Ok(template.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_durations_parse_like_go() {
        let cases = [
            ("30s", Duration::from_secs(30)),
            ("5m", Duration::from_secs(300)),
            ("1h", Duration::from_secs(3600)),
            ("1h30m", Duration::from_secs(5400)),
            ("500ms", Duration::from_millis(500)),
            ("1.5h", Duration::from_secs(5400)),
            ("2m3.5s", Duration::from_millis(123_500)),
            (".5s", Duration::from_millis(500)),
            ("300s", Duration::from_secs(300)),
            ("10us", Duration::from_micros(10)),
            ("10µs", Duration::from_micros(10)),
            ("7ns", Duration::from_nanos(7)),
            ("0", Duration::ZERO),
            ("+5s", Duration::from_secs(5)),
            (" 30s ", Duration::from_secs(30)),
        ];
        for (text, expected) in cases {
            assert_eq!(parse_go_duration(text), Ok(expected), "{text}");
        }
    }

    #[test]
    fn garbage_durations_are_rejected() {
        for text in ["", "30", "abc", "5 minutes", "5min", "1d", "-5s", "s", "1..5s", "5s3", "1h-5m", "."] {
            assert!(parse_go_duration(text).is_err(), "{text:?} should be rejected");
        }
        assert!(parse_go_duration("99999999999h").is_err());
    }

    #[test]
    fn booleans_are_strict() {
        for (text, expected) in
            [("true", true), ("TRUE", true), ("True", true), ("1", true), ("false", false)]
        {
            assert_eq!(parse_bool(text), Ok(expected), "{text}");
        }
        assert_eq!(parse_bool("0"), Ok(false));
        for text in ["yes", "no", "on", "t", "2", "", "tru"] {
            assert!(parse_bool(text).is_err(), "{text:?}");
        }
    }

    #[test]
    fn log_levels_accept_warning() {
        assert_eq!(parse_log_level("warning"), Ok(LogLevel::Warn));
        assert_eq!(parse_log_level("WARN"), Ok(LogLevel::Warn));
        assert_eq!(parse_log_level("Debug"), Ok(LogLevel::Debug));
        assert_eq!(parse_log_level("fatal"), Ok(LogLevel::Error));
        assert!(parse_log_level("verbose").is_err());
        assert_eq!(parse_log_format("pretty"), Ok(LogFormat::Pretty));
        assert!(parse_log_format("xml").is_err());
    }

    #[test]
    fn metadata_tables_follow_the_go_character_rule() {
        let ok = BTreeMap::from([("team".to_owned(), "ios".to_owned())]);
        assert!(check_metadata_table(&ok).is_ok());
        let bad = BTreeMap::from([("team".to_owned(), "i os".to_owned())]);
        assert!(check_metadata_table(&bad).is_err());
    }

    #[test]
    fn runners_json_in_the_go_shape() {
        let runners = parse_runners(r#"[{"name":"orka-mac","id":3}]"#).unwrap();
        assert_eq!(runners, vec![RunnerEntry { name: "orka-mac".into(), runner_group_id: 3 }]);
        let runners = parse_runners(r#"[{"name":"a"},{"name":"b","id":"7"}]"#).unwrap();
        assert_eq!(runners[0].runner_group_id, DEFAULT_RUNNER_GROUP_ID);
        assert_eq!(runners[1].runner_group_id, 7);
        for bad in ["", "[]", "{}", r#"[{"id":1}]"#, r#"[{"name":"a","id":-1}]"#, r#"[{"name":"a","id":0}]"#]
        {
            assert!(parse_runners(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn urls_and_listen_addresses() {
        assert_eq!(parse_http_url("http://10.221.188.20/").unwrap().as_str(), "http://10.221.188.20/");
        assert!(parse_http_url("ftp://x").is_err());
        assert!(parse_http_url("10.0.0.1").is_err());
        assert_eq!(parse_listen_addr(":8080").unwrap(), "0.0.0.0:8080".parse().unwrap());
        assert_eq!(parse_listen_addr("localhost:9").unwrap(), "127.0.0.1:9".parse().unwrap());
        assert_eq!(parse_listen_addr("[::1]:9090").unwrap(), "[::1]:9090".parse().unwrap());
        assert!(parse_listen_addr("8080").is_err());
        assert!(parse_listen_addr(":http").is_err());
    }

    #[test]
    fn runner_version_and_download_template() {
        assert_eq!(parse_runner_version("v2.321.0").unwrap(), "2.321.0");
        assert!(parse_runner_version("latest").is_err());
        assert!(parse_download_template(crate::config::settings::DEFAULT_RUNNER_DOWNLOAD_URL).is_ok());
        assert!(parse_download_template("https://mirror.local/runner-{arch}.tgz").is_ok());
        assert!(parse_download_template("https://mirror.local/runner-{ver}.tgz").is_err());
        assert!(parse_download_template("https://mirror.local/runner-{arch.tgz").is_err());
        assert!(parse_download_template("mirror.local/{version}").is_err());
    }

    #[test]
    fn labels_and_ids() {
        assert_eq!(parse_label_list("macos, arm64").unwrap(), vec!["macos", "arm64"]);
        assert!(parse_label_list("macos,,arm64").is_err());
        assert_eq!(parse_id("42"), Ok(42));
        assert!(parse_id("0").is_err());
        assert!(parse_id("9223372036854775808").is_err(), "beyond i64");
        assert!(parse_u32_in("10", 1, 5).is_err());
        assert_eq!(parse_u32_in("5", 1, 5), Ok(5));
    }
}

#[cfg(test)]
mod properties {
    use proptest::prelude::*;

    use super::*;

    proptest! {
        #[test]
        fn composed_go_durations_add_up(h in 0u64..100, m in 0u64..100, s in 0u64..100, ms in 0u64..1000) {
            let text = format!("{h}h{m}m{s}s{ms}ms");
            let expected = Duration::from_millis(((h * 60 + m) * 60 + s) * 1000 + ms);
            prop_assert_eq!(parse_go_duration(&text), Ok(expected));
        }

        #[test]
        fn arbitrary_text_never_panics(text in ".{0,40}") {
            let _ = parse_go_duration(&text);
            let _ = parse_bool(&text);
            let _ = parse_listen_addr(&text);
            let _ = parse_runners(&text);
            let _ = parse_download_template(&text);
        }

        #[test]
        fn humantime_rendered_durations_of_whole_units_parse_back(secs in 1u64..1_000_000) {
            // 1h2m3s-style text (what operators copy from Go logs) round-trips.
            let d = Duration::from_secs(secs);
            let text = format!("{}h{}m{}s", secs / 3600, secs % 3600 / 60, secs % 60);
            prop_assert_eq!(parse_go_duration(&text), Ok(d));
        }
    }
}
