//! Log output: `LOG_LEVEL` filtering and the `json` (default) or `pretty` format.
//!
//! JSON lines carry `timestamp`, `level`, `target`, `message`, the event's fields and the
//! fields of every enclosing span flattened in (so `scale_set` and `vm` set on a span appear
//! on each line inside it). Errors logged as `error = &e as &dyn std::error::Error` are
//! written with their whole cause chain (`outer: cause: root cause`) in both formats.
//!
//! This module owns formatting only; what is logged, and keeping secrets out of it, is
//! the caller's job.

use std::fmt;
use std::io;

use serde_json::{Map, Value};
use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::fmt::format::{JsonFields, Writer};
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields, FormattedFields, MakeWriter};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::{EnvFilter, Layer, Registry};

use crate::config::{LogFormat, LogLevel, LoggingSettings};

/// Displays an error followed by its sources, joined with `": "`.
pub struct ErrorChain<'a>(pub &'a (dyn std::error::Error + 'static));

impl fmt::Display for ErrorChain<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)?;
        let mut source = self.0.source();
        while let Some(cause) = source {
            write!(f, ": {cause}")?;
            source = cause.source();
        }
        Ok(())
    }
}

/// The filter for `level`: our crates at `level`; chatty dependencies capped at `info`.
pub fn filter(level: LogLevel) -> EnvFilter {
    let deps = match level {
        LogLevel::Trace | LogLevel::Debug => "info",
        other => other.as_directive(),
    };
    let directives = format!(
        "{level},hyper={deps},hyper_util={deps},rustls={deps},h2={deps},russh={deps},axum={deps}",
        level = level.as_directive()
    );
    EnvFilter::new(directives)
}

/// A subscriber writing to `writer` with `settings` (the global one writes to stderr).
pub fn subscriber<W>(settings: &LoggingSettings, writer: W) -> Box<dyn Subscriber + Send + Sync>
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    let fmt_layer = match settings.format {
        LogFormat::Json => tracing_subscriber::fmt::layer()
            .fmt_fields(JsonFields::new())
            .event_format(JsonLines)
            .with_writer(writer)
            .boxed(),
        LogFormat::Pretty => tracing_subscriber::fmt::layer().with_ansi(false).with_writer(writer).boxed(),
    };
    Box::new(Registry::default().with(filter(settings.level)).with(fmt_layer))
}

/// Installs the global subscriber (stderr), and routes `log` records of dependencies
/// through it. Call once, before logging anything.
pub fn init(settings: &LoggingSettings) -> anyhow::Result<()> {
    use tracing_subscriber::util::SubscriberInitExt as _;
    subscriber(settings, io::stderr)
        .try_init()
        .map_err(|e| anyhow::anyhow!("cannot install the log subscriber: {e}"))
}

/// The JSON line format described in the module docs.
struct JsonLines;

impl<S, N> FormatEvent<S, N> for JsonLines
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let meta = event.metadata();
        let mut line = Map::new();
        line.insert(
            "timestamp".into(),
            humantime::format_rfc3339_millis(std::time::SystemTime::now()).to_string().into(),
        );
        line.insert("level".into(), meta.level().as_str().into());
        line.insert("target".into(), meta.target().into());
        if let Some(scope) = ctx.event_scope() {
            let mut names = Vec::new();
            for span in scope.from_root() {
                names.push(Value::from(span.name()));
                let extensions = span.extensions();
                let Some(fields) = extensions.get::<FormattedFields<N>>() else { continue };
                if let Ok(Value::Object(fields)) = serde_json::from_str::<Value>(fields.as_str()) {
                    line.extend(fields);
                }
            }
            if !names.is_empty() {
                line.insert("spans".into(), Value::Array(names));
            }
        }
        event.record(&mut FieldVisitor(&mut line));
        let text = serde_json::to_string(&line).map_err(|_| fmt::Error)?;
        writeln!(writer, "{text}")
    }
}

struct FieldVisitor<'a>(&'a mut Map<String, Value>);

impl Visit for FieldVisitor<'_> {
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.0.insert(field.name().into(), value.into());
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.0.insert(field.name().into(), value.into());
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.0.insert(field.name().into(), value.into());
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.0.insert(field.name().into(), value.into());
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().into(), value.into());
    }
    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.0.insert(field.name().into(), ErrorChain(value).to_string().into());
    }
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.0.insert(field.name().into(), format!("{value:?}").into());
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;

    #[derive(Clone, Default)]
    struct Buffer(Arc<Mutex<Vec<u8>>>);

    impl io::Write for Buffer {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    impl<'a> MakeWriter<'a> for Buffer {
        type Writer = Buffer;
        fn make_writer(&'a self) -> Self::Writer {
            self.clone()
        }
    }

    impl Buffer {
        fn text(&self) -> String {
            String::from_utf8(self.0.lock().unwrap().clone()).unwrap()
        }
    }

    #[derive(Debug, thiserror::Error)]
    #[error("deploy failed")]
    struct Outer(#[source] Middle);
    #[derive(Debug, thiserror::Error)]
    #[error("orka returned 503")]
    struct Middle(#[source] io::Error);

    fn chain_error() -> Outer {
        Outer(Middle(io::Error::other("connection reset")))
    }

    fn capture(settings: LoggingSettings, body: impl FnOnce()) -> String {
        let buffer = Buffer::default();
        tracing::subscriber::with_default(subscriber(&settings, buffer.clone()), body);
        buffer.text()
    }

    #[test]
    fn json_lines_carry_span_fields_and_error_chains() {
        let settings = LoggingSettings { level: LogLevel::Info, format: LogFormat::Json };
        let text = capture(settings, || {
            let set = tracing::info_span!("scale_set", scale_set = "mac");
            let _set = set.enter();
            let vm = tracing::info_span!("vm", vm = "mac-x7k2p");
            let _vm = vm.enter();
            let e = chain_error();
            tracing::error!(error = &e as &dyn std::error::Error, attempt = 2u64, "provisioning failed");
            tracing::debug!("filtered out at info");
        });
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 1, "{text}");
        let line: Value = serde_json::from_str(lines[0]).unwrap();
        assert_eq!(line["level"], "ERROR");
        assert_eq!(line["message"], "provisioning failed");
        assert_eq!(line["scale_set"], "mac");
        assert_eq!(line["vm"], "mac-x7k2p");
        assert_eq!(line["attempt"], 2);
        assert_eq!(line["error"], "deploy failed: orka returned 503: connection reset");
        assert_eq!(line["spans"], serde_json::json!(["scale_set", "vm"]));
        assert!(line["timestamp"].as_str().unwrap().ends_with('Z'));
    }

    #[test]
    fn pretty_lines_carry_span_fields_and_error_sources() {
        let settings = LoggingSettings { level: LogLevel::Debug, format: LogFormat::Pretty };
        let text = capture(settings, || {
            let set = tracing::info_span!("scale_set", scale_set = "mac");
            let _set = set.enter();
            let e = chain_error();
            tracing::warn!(error = &e as &dyn std::error::Error, "retrying");
            tracing::debug!("visible at debug");
        });
        assert!(text.contains("scale_set=\"mac\"") || text.contains("scale_set=mac"), "{text}");
        assert!(text.contains("deploy failed"), "{text}");
        assert!(text.contains("connection reset"), "the cause chain is printed: {text}");
        assert!(text.contains("visible at debug"), "{text}");
    }

    #[test]
    fn warn_level_hides_info() {
        let settings = LoggingSettings { level: LogLevel::Warn, format: LogFormat::Json };
        let text = capture(settings, || {
            tracing::info!("hidden");
            tracing::warn!("shown");
        });
        assert!(!text.contains("hidden") && text.contains("shown"), "{text}");
    }

    #[test]
    fn error_chain_joins_sources() {
        assert_eq!(
            ErrorChain(&chain_error()).to_string(),
            "deploy failed: orka returned 503: connection reset"
        );
    }
}
