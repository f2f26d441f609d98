//! From parsed CLI to exit code: load the configuration, set up logging, build the
//! runtime, dispatch to a handler and map the outcome to 0 (ok), 1 (fatal runtime error)
//! or 2 (configuration error; clap uses 2 for usage errors too).
//!
//! Owns process-level policy only; the handlers live in `commands`.

use std::process::ExitCode;

use crate::cli::{Cli, Command};
use crate::config::{self, Config, ConfigError, Sources};
use crate::http::Telemetry;
use crate::{commands, logging, shutdown};

/// Exit code of a successful run.
pub const EXIT_OK: u8 = 0;
/// Exit code of a fatal runtime error.
pub const EXIT_RUNTIME: u8 = 1;
/// Exit code of an invalid configuration.
pub const EXIT_CONFIG: u8 = 2;
/// Exit code of a one-shot command (`check`, `reconcile`) stopped by SIGTERM/SIGINT.
pub const INTERRUPTED: u8 = 130;

fn config_failure(e: &ConfigError) -> ExitCode {
    eprintln!("{e}\n(see docs/configuration.md for every setting)");
    ExitCode::from(EXIT_CONFIG)
}

/// Runs `cli` with configuration from `sources`.
pub fn main(cli: &Cli, sources: &Sources) -> ExitCode {
    let command = cli.command();
    if let Command::Status(args) = &command {
        return status(args, sources);
    }
    let (config, logging_settings) = match &command {
        #[cfg(feature = "demo")]
        Command::Demo(_) => match config::load_logging(sources) {
            // The demo prints its own progress on stdout; the controller's logs on stderr
            // stay at warnings unless LOG_LEVEL asks for more.
            Ok(mut settings) => {
                if !sources.environment.contains_key("LOG_LEVEL") {
                    settings.level = config::LogLevel::Warn;
                }
                (None, settings)
            }
            Err(e) => return config_failure(&e),
        },
        _ => match config::load(sources) {
            Ok(config) => {
                let settings = config.logging;
                (Some(config), settings)
            }
            Err(e) => return config_failure(&e),
        },
    };
    if let Err(e) = logging::init(&logging_settings) {
        eprintln!("{e:#}");
        return ExitCode::from(EXIT_RUNTIME);
    }
    tracing::info!(version = env!("CARGO_PKG_VERSION"), command = ?command, "orka-runner-controller starting");
    if let Some(config) = &config {
        for warning in &config.warnings {
            tracing::warn!("{warning}");
        }
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(e) => {
            tracing::error!(error = &e as &dyn std::error::Error, "cannot start the async runtime");
            return ExitCode::from(EXIT_RUNTIME);
        }
    };
    let outcome = runtime.block_on(dispatch(command, config));
    match outcome {
        Ok(code) => code,
        Err(e) => {
            tracing::error!(error = %format!("{e:#}"), "fatal");
            ExitCode::from(EXIT_RUNTIME)
        }
    }
}

/// `status`: needs no configuration but the endpoint address, and logs nothing.
fn status(args: &crate::cli::StatusArgs, sources: &Sources) -> ExitCode {
    let addr = match &args.addr {
        Some(addr) => addr.clone(),
        None => match config::endpoint_addr(sources) {
            Ok(addr) => addr.to_string(),
            Err(e) => {
                eprintln!("{e}\n(see docs/configuration.md for every setting)");
                return ExitCode::from(EXIT_CONFIG);
            }
        },
    };
    let fetched = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(anyhow::Error::from)
        .and_then(|runtime| runtime.block_on(crate::status::client::fetch(&addr)));
    match fetched {
        Ok(body) if args.json => {
            println!("{}", body.json);
            ExitCode::SUCCESS
        }
        Ok(body) => {
            print!("{}", crate::status::render::render(&body.report));
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("status: {e:#}");
            ExitCode::from(EXIT_RUNTIME)
        }
    }
}

async fn dispatch(command: Command, config: Option<Config>) -> anyhow::Result<ExitCode> {
    let shutdown = shutdown::on_signals()?;
    let interrupted = shutdown.clone();
    // One-shot commands stop at the first signal; `run` and `demo` shut down gracefully.
    let one_shot = |work: std::pin::Pin<
        Box<dyn std::future::Future<Output = anyhow::Result<ExitCode>> + Send>,
    >| async move {
        tokio::select! {
            result = work => result,
            () = interrupted.cancelled() => Ok(ExitCode::from(INTERRUPTED)),
        }
    };
    match (command, config) {
        #[cfg(feature = "demo")]
        (Command::Demo(args), _) => commands::demo(&args, shutdown).await.map(|()| ExitCode::SUCCESS),
        (Command::Run, Some(config)) => {
            commands::run(config, Telemetry::new(), shutdown).await.map(|()| ExitCode::SUCCESS)
        }
        (Command::Check, Some(config)) => {
            one_shot(Box::pin(async move {
                let report = commands::check(&config).await?;
                println!("{report}");
                Ok(if report.passed() { ExitCode::SUCCESS } else { ExitCode::from(EXIT_RUNTIME) })
            }))
            .await
        }
        (Command::Reconcile(args), Some(config)) => {
            one_shot(Box::pin(async move {
                commands::reconcile(&config, args.dry_run).await.map(|()| ExitCode::SUCCESS)
            }))
            .await
        }
        (Command::Status(_), _) => anyhow::bail!("status is answered before the configuration is loaded"),
        (_, None) => anyhow::bail!("no configuration loaded"),
    }
}
