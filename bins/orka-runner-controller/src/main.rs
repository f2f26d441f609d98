//! `orka-runner-controller`: runs GitHub Actions jobs on ephemeral macOS VMs in Orka.
//!
//! Installs the process-wide TLS crypto provider, parses the command line and hands over
//! to [`orka_runner_controller::app::main`] for the exit code.

use std::process::ExitCode;

use clap::Parser;
use orka_runner_controller::app;
use orka_runner_controller::cli::Cli;
use orka_runner_controller::config::Sources;

fn main() -> ExitCode {
    // One provider for the whole graph (hyper-rustls and jsonwebtoken both use aws-lc-rs).
    if rustls::crypto::aws_lc_rs::default_provider().install_default().is_err() {
        eprintln!("a TLS crypto provider was already installed");
    }
    let cli = Cli::parse();
    let sources = Sources::from_process(cli.env_file.clone(), cli.config.clone());
    app::main(&cli, &sources)
}
