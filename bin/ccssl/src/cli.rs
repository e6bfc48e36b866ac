//! Command lines of `ccssl-run` and `ccssl`, and their exit codes.
//!
//! Exit codes: 0 done, 1 a stage failed (or the supervisor could not start it), 2 invalid
//! graph or arguments, 130 interrupted (graceful stop after SIGINT or SIGTERM). Every line
//! either program writes to stderr starts with its name.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use ccssl_pipe::graph::{self, Plan};
use ccssl_pipe::stage::LAUNCH_ENV;

use crate::kinds::{self, Stage};
use crate::supervisor::{self, Headless, RunOptions};

/// Exit code of a run that failed: a stage died or could not be started.
pub const EXIT_FAILED: u8 = 1;
/// Exit code for an invalid graph or invalid arguments.
pub const EXIT_INVALID: u8 = 2;
/// Exit code of a run stopped by SIGINT or SIGTERM.
pub const EXIT_INTERRUPTED: u8 = 130;

/// `ccssl-run GRAPH [--set PATH=VALUE]... [--data DIR] [--out DIR] [--headless]`
#[derive(Debug, Parser)]
#[command(name = "ccssl-run", version, about = "Run a ccssl pipeline graph")]
pub struct RunArgs {
    /// Graph file (RON).
    pub graph: PathBuf,
    /// Override one graph value: PATH=VALUE, VALUE written in RON, such as
    /// stages.relay.replicas=3 or edges.0.slots=16. May be repeated; applied in order.
    #[arg(long = "set", value_name = "PATH=VALUE")]
    pub set: Vec<String>,
    /// Dataset root of every Loader stage (replaces `dataset.root`) [default: $CCSSL_DATA,
    /// else the graph's value].
    #[arg(long, value_name = "DIR")]
    pub data: Option<PathBuf>,
    /// Directory in which the run directory `<graph name>-<UTC time>` is created [default:
    /// the graph's `out`, else `runs`].
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// Print plain progress lines instead of the dashboard.
    #[arg(long)]
    pub headless: bool,
}

/// `ccssl graph check|dot FILE`
#[derive(Debug, Parser)]
#[command(name = "ccssl", version, about = "Tools for ccssl graphs and runs")]
pub struct ToolArgs {
    #[command(subcommand)]
    command: ToolCommand,
}

#[derive(Debug, Subcommand)]
enum ToolCommand {
    /// Validate or draw a graph file.
    #[command(subcommand)]
    Graph(GraphCommand),
    /// Measure the throughput of a pipeline stage.
    #[command(subcommand)]
    Bench(BenchCommand),
}

#[derive(Debug, Subcommand)]
enum BenchCommand {
    /// Time full CCSSL training steps (forward, losses, backward, SGD) on synthetic views.
    Step(crate::bench::StepBenchArgs),
}

#[derive(Debug, Subcommand)]
enum GraphCommand {
    /// Validate a graph file; exit 0 if it is valid, 2 with one message otherwise.
    Check(GraphFileArgs),
    /// Print the graph in Graphviz dot format.
    Dot(GraphFileArgs),
}

#[derive(Debug, clap::Args)]
struct GraphFileArgs {
    /// Graph file (RON).
    file: PathBuf,
    /// Override one graph value, as for ccssl-run: PATH=VALUE.
    #[arg(long = "set", value_name = "PATH=VALUE")]
    set: Vec<String>,
}

/// Entry point of `ccssl-run`.
pub fn run_main() -> ExitCode {
    // Stage processes re-execute this binary as `ccssl-run stage` with their launch
    // description in the environment; the subcommand is hidden from help.
    if std::env::args_os().nth(1).is_some_and(|a| a == "stage")
        && std::env::var_os(LAUNCH_ENV).is_some()
    {
        return kinds::run_stage();
    }
    let args = match RunArgs::try_parse() {
        Ok(args) => args,
        Err(err) => return clap_exit("ccssl-run", &err),
    };
    let sets = kinds::with_data_root(&args.graph, args.data.as_deref(), &args.set);
    let plan = match load("ccssl-run", &args.graph, &sets) {
        Ok(plan) => plan,
        Err(code) => return code,
    };
    let options = RunOptions {
        out: args.out,
        ..RunOptions::default()
    };
    // NOTE: the dashboard is not built yet, so both modes print progress lines.
    let _ = args.headless;
    let mut observer = Headless::new("ccssl-run");
    match supervisor::run(&plan, &options, &mut observer) {
        Ok(outcome) => {
            if let Some(failure) = &outcome.failure {
                eprintln!(
                    "ccssl-run: run failed: {failure}; log: {}",
                    outcome.run_dir.join("train.log").display()
                );
                for line in &outcome.failure_log {
                    eprintln!("ccssl-run:   {line}");
                }
            } else if outcome.interrupted {
                eprintln!(
                    "ccssl-run: stopped; run directory {}",
                    outcome.run_dir.display()
                );
            } else {
                eprintln!(
                    "ccssl-run: finished; run directory {}",
                    outcome.run_dir.display()
                );
            }
            ExitCode::from(outcome.exit_code())
        }
        Err(err) => {
            eprintln!("ccssl-run: {err:#}");
            ExitCode::from(EXIT_FAILED)
        }
    }
}

/// Entry point of `ccssl`.
pub fn tool_main() -> ExitCode {
    let args = match ToolArgs::try_parse() {
        Ok(args) => args,
        Err(err) => return clap_exit("ccssl", &err),
    };
    match args.command {
        ToolCommand::Bench(BenchCommand::Step(bench)) => match crate::bench::bench_step(&bench) {
            Ok(()) => ExitCode::SUCCESS,
            Err(err) => {
                eprintln!("ccssl: {err:#}");
                ExitCode::from(EXIT_FAILED)
            }
        },
        ToolCommand::Graph(GraphCommand::Check(file)) => {
            let plan = match load("ccssl", &file.file, &file.set) {
                Ok(plan) => plan,
                Err(code) => return code,
            };
            let rings: u64 = plan
                .edges
                .iter()
                .map(|e| u64::from(e.from_replicas) * u64::from(e.to_replicas))
                .sum();
            let bytes: u64 = plan.edges.iter().map(|e| e.shm_bytes()).sum();
            let processes: u32 = plan.stages.iter().map(|s| s.replicas).sum();
            print_stdout(&format!(
                "{}: valid graph {:?}: {} stages ({processes} processes), {} edges ({rings} rings, about {} MiB of shared memory)\n",
                file.file.display(),
                plan.name(),
                plan.stages.len(),
                plan.edges.len(),
                bytes.div_ceil(1 << 20),
            ))
        }
        ToolCommand::Graph(GraphCommand::Dot(file)) => match load("ccssl", &file.file, &file.set) {
            Ok(plan) => print_stdout(&graph::to_dot(&plan)),
            Err(code) => code,
        },
    }
}

/// Loads and validates a graph, printing the one error line on failure.
fn load(program: &str, file: &std::path::Path, set: &[String]) -> Result<Plan<Stage>, ExitCode> {
    graph::load::<Stage>(file, set).map_err(|err| {
        eprintln!("{program}: {err}");
        ExitCode::from(EXIT_INVALID)
    })
}

/// Writes to stdout; a closed pipe (`ccssl graph dot g.ron | head`) counts as success.
fn print_stdout(text: &str) -> ExitCode {
    let mut stdout = std::io::stdout().lock();
    match stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush())
    {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) if err.kind() == std::io::ErrorKind::BrokenPipe => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("ccssl: cannot write to stdout: {err}");
            ExitCode::from(EXIT_FAILED)
        }
    }
}

/// Prints a clap outcome: help and version to stdout with status 0, usage errors to stderr
/// with every line prefixed and status 2.
fn clap_exit(program: &str, err: &clap::Error) -> ExitCode {
    use clap::error::ErrorKind;
    if matches!(
        err.kind(),
        ErrorKind::DisplayHelp | ErrorKind::DisplayVersion
    ) {
        return print_stdout(&err.render().to_string());
    }
    let text = err.render().to_string();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        eprintln!("{program}: {line}");
    }
    ExitCode::from(EXIT_INVALID)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn run_args_are_consistent() {
        RunArgs::command().debug_assert();
        ToolArgs::command().debug_assert();
    }

    #[test]
    fn run_args_parse_repeated_set() {
        let args = RunArgs::try_parse_from([
            "ccssl-run",
            "g.ron",
            "--set",
            "a=1",
            "--set",
            "b=2",
            "--headless",
        ])
        .unwrap();
        assert_eq!(args.set, ["a=1", "b=2"]);
        assert!(args.headless);
        assert_eq!(args.out, None);
    }
}
