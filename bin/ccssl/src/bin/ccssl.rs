//! `ccssl`: evaluation, prediction, graph checks and the attachable dashboard.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(name = "ccssl", version, about = "Tools around ccssl training runs")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Measure the throughput of a pipeline stage.
    #[command(subcommand)]
    Bench(BenchCommand),
}

#[derive(Debug, Subcommand)]
enum BenchCommand {
    /// Time full CCSSL training steps (forward, losses, backward, SGD) on synthetic views.
    Step(ccssl::bench::StepBenchArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match &cli.command {
        Command::Bench(BenchCommand::Step(args)) => ccssl::bench::bench_step(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("ccssl: {err:#}");
            ExitCode::from(1)
        }
    }
}
