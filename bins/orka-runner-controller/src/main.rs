//! `orka-runner-controller`: runs GitHub Actions jobs on ephemeral macOS VMs in Orka.

#[allow(dead_code)] // Wired into `run` by the wiring module (next step).
mod service;

use clap::Parser;

/// Runs GitHub Actions jobs on ephemeral macOS VMs in a MacStadium Orka cluster.
#[derive(Debug, Parser)]
#[command(name = "orka-runner-controller", version, about, long_about = None)]
struct Cli {}

fn main() -> anyhow::Result<()> {
    let _cli = Cli::parse();
    Ok(())
}
