//! The command line: subcommands and global flags (clap). Parsing only; `app` dispatches.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// Runs GitHub Actions jobs on ephemeral macOS VMs in a MacStadium Orka cluster.
///
/// Configuration comes from environment variables, a `.env` file in the working directory
/// and an optional config file; see docs/configuration.md.
#[derive(Debug, Parser)]
#[command(name = "orka-runner-controller", version, about, long_about = None)]
pub struct Cli {
    /// Config file (TOML or YAML, by extension); the environment overrides it.
    #[arg(long, global = true, value_name = "PATH")]
    pub config: Option<PathBuf>,

    /// Read this file instead of `./.env` (it must exist).
    #[arg(long, global = true, value_name = "PATH")]
    pub env_file: Option<PathBuf>,

    /// What to do; `run` when omitted.
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// The subcommands.
#[derive(Debug, Clone, PartialEq, Eq, Subcommand)]
pub enum Command {
    /// Serve the configured scale sets until SIGTERM/SIGINT (the default).
    Run,
    /// Validate the configuration and check GitHub and Orka access; non-zero on failure.
    Check,
    /// Reconcile the owned VMs once.
    Reconcile(ReconcileArgs),
    /// Show a running controller's scale sets and why each waiting job waits.
    Status(StatusArgs),
    /// Run the whole system against built-in simulated GitHub and Orka (no network).
    #[cfg(feature = "demo")]
    Demo(DemoArgs),
}

/// Options of `reconcile`.
#[derive(Debug, Clone, PartialEq, Eq, Args)]
pub struct ReconcileArgs {
    /// Print the decision for every owned VM and act on nothing.
    #[arg(long)]
    pub dry_run: bool,
}

/// Options of `status`.
#[derive(Debug, Clone, PartialEq, Eq, Args)]
pub struct StatusArgs {
    /// The controller's endpoint address (`host:port`); default: `METRICS_ADDR`.
    #[arg(long, value_name = "HOST:PORT")]
    pub addr: Option<String>,
    /// Print the JSON of `/status` instead of text.
    #[arg(long)]
    pub json: bool,
}

/// Options of `demo`.
#[cfg(feature = "demo")]
#[derive(Debug, Clone, Default, PartialEq, Eq, Args)]
pub struct DemoArgs {}

impl Cli {
    /// The subcommand to run (`run` when none was given, like the Go integration's image).
    pub fn command(&self) -> Command {
        self.command.clone().unwrap_or(Command::Run)
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    #[test]
    fn the_cli_is_well_formed() {
        <Cli as CommandFactory>::command().debug_assert();
    }

    #[test]
    fn no_subcommand_means_run() {
        let cli = Cli::try_parse_from(["orka-runner-controller"]).unwrap();
        assert_eq!(cli.command(), Command::Run);
    }

    #[test]
    fn global_flags_work_before_and_after_the_subcommand() {
        let cli =
            Cli::try_parse_from(["x", "--config", "c.toml", "reconcile", "--dry-run", "--env-file", "e"])
                .unwrap();
        assert_eq!(cli.command(), Command::Reconcile(ReconcileArgs { dry_run: true }));
        assert_eq!(cli.config, Some(PathBuf::from("c.toml")));
        assert_eq!(cli.env_file, Some(PathBuf::from("e")));
    }

    #[test]
    fn status_takes_an_address_and_json() {
        let cli = Cli::try_parse_from(["x", "status", "--addr", "127.0.0.1:9090", "--json"]).unwrap();
        assert_eq!(
            cli.command(),
            Command::Status(StatusArgs { addr: Some("127.0.0.1:9090".into()), json: true })
        );
    }

    #[test]
    fn unknown_subcommands_are_usage_errors() {
        let err = Cli::try_parse_from(["x", "serve"]).unwrap_err();
        assert_eq!(err.exit_code(), 2);
    }
}
