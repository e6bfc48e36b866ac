//! Command lines of `ccssl-run` and `ccssl`, and their exit codes.
//!
//! Exit codes: 0 done (also after a stop confirmed in the dashboard), 1 a stage failed (or the
//! supervisor could not start it), 2 invalid graph or arguments, 3 (`ccssl dash` only) the run
//! is not running, 130 interrupted (graceful stop after SIGINT or SIGTERM). Every line
//! either program writes to stderr starts with its name.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use ccssl_pipe::graph::{self, Plan};
use ccssl_pipe::stage::LAUNCH_ENV;

use crate::dash::live::{LiveSource, RunEnd};
use crate::dash::rundir::{RunDir, RunStatus, run_status};
use crate::dash::terminal::{DashExit, attach_dashboard, run_headless};
use crate::kinds::{self, Stage};
use crate::supervisor::{self, Dashboard, Headless, RunOptions};

/// Exit code of a run that failed: a stage died or could not be started.
pub const EXIT_FAILED: u8 = 1;
/// Exit code for an invalid graph or invalid arguments.
pub const EXIT_INVALID: u8 = 2;
/// Exit code of a run stopped by SIGINT or SIGTERM.
pub const EXIT_INTERRUPTED: u8 = 130;
/// Exit code of `ccssl dash` for a run that is not running (finished, killed, or never
/// started); its summary is printed instead of the dashboard.
pub const EXIT_NOT_RUNNING: u8 = 3;

/// `ccssl-run GRAPH [--set PATH=VALUE]... [--data DIR] [--out DIR] [--headless]`, or
/// `ccssl-run [GRAPH] --resume RUN_DIR [--headless]`
#[derive(Debug, Parser)]
#[command(name = "ccssl-run", version, about = "Run a ccssl pipeline graph")]
pub struct RunArgs {
    /// Graph file (RON). With --resume it may be left out; if given, it must resolve to the
    /// graph the run started with.
    #[arg(required_unless_present = "resume")]
    pub graph: Option<PathBuf>,
    /// Continue the run in RUN_DIR from its last checkpoint, with its own graph, split, batch
    /// sequence and schedule, as if it had never stopped.
    #[arg(long, value_name = "RUN_DIR")]
    pub resume: Option<PathBuf>,
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
    /// Print one progress line per second instead of the dashboard (the default when stdout
    /// is not a terminal).
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
    /// Attach a read-only dashboard to a running run (progress lines when stdout is not a
    /// terminal). Exit status: 0 after the run ended or the dashboard was left, 1 on a read
    /// or terminal error, 2 when RUN_DIR is not a run directory, 3 when the run is not
    /// running; its summary is then printed.
    Dash(DashArgs),
    /// Evaluate a checkpoint on the test split of its dataset (top-1, top-5, loss).
    Eval(crate::eval_cmd::EvalArgs),
    /// Print the top-5 classes of each image (PNG or JPEG, any size) under a checkpoint.
    Predict(crate::predict_cmd::PredictArgs),
}

#[derive(Debug, Subcommand)]
enum BenchCommand {
    /// Time full CCSSL training steps (forward, losses, backward, SGD) on synthetic views.
    Step(crate::bench::StepBenchArgs),
}

#[derive(Debug, clap::Args)]
struct DashArgs {
    /// Run directory created by ccssl-run, such as runs/pipe-smoke-20250101-120000.
    run_dir: PathBuf,
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
    let (plan, options) = match plan_run(&args) {
        Ok(planned) => planned,
        Err(message) => {
            eprintln!("ccssl-run: {message}");
            return ExitCode::from(EXIT_INVALID);
        }
    };
    let result = if args.headless || !std::io::stdout().is_terminal() {
        supervisor::run(&plan, &options, &mut Headless::new("ccssl-run"))
    } else {
        let mut dashboard = Dashboard::new();
        let result = supervisor::run(&plan, &options, &mut dashboard);
        // The terminal is restored here, before anything below prints.
        if let Err(err) = dashboard.finish() {
            eprintln!("ccssl-run: dashboard: {err}");
        }
        result
    };
    match result {
        Ok(outcome) => {
            if let Some(failure) = &outcome.failure {
                eprintln!(
                    "ccssl-run: run failed: {failure}; log: {}",
                    outcome.run_dir.join("train.log").display()
                );
                for line in &outcome.failure_log {
                    eprintln!("ccssl-run:   {line}");
                }
            } else if outcome.interrupted || outcome.stop_requested {
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
            print_summary(&outcome.run_dir);
            ExitCode::from(outcome.exit_code())
        }
        Err(err) => {
            eprintln!("ccssl-run: {err:#}");
            ExitCode::from(EXIT_FAILED)
        }
    }
}

/// Loads the graph of a new run, or checks the run `--resume` continues; the error is the
/// message for exit code 2.
fn plan_run(args: &RunArgs) -> Result<(Plan<Stage>, RunOptions), String> {
    let sets = match &args.graph {
        Some(file) => kinds::with_data_root(file, args.data.as_deref(), &args.set),
        None => args.set.clone(),
    };
    if let Some(run_dir) = &args.resume {
        if args.out.is_some() {
            return Err(format!(
                "--resume {}: --out cannot move a resumed run; it continues in its own directory",
                run_dir.display()
            ));
        }
        if args.graph.is_none() && (args.data.is_some() || !args.set.is_empty()) {
            return Err(format!(
                "--resume {}: --set and --data cannot change the graph of a resumed run; drop \
                 them to continue with the run's own graph.ron, or start a new run",
                run_dir.display()
            ));
        }
        let expected = args.graph.as_deref().map(|file| (file, sets.as_slice()));
        let (plan, resume) = crate::resume::prepare(run_dir, expected)?;
        let options = RunOptions {
            resume: Some(resume),
            ..RunOptions::default()
        };
        return Ok((plan, options));
    }
    let Some(file) = &args.graph else {
        return Err("a graph file or --resume RUN_DIR is required".to_string());
    };
    let plan = kinds::load_plan(file, &sets)?;
    let options = RunOptions {
        out: args.out.clone(),
        ..RunOptions::default()
    };
    Ok((plan, options))
}

/// Prints the run's summary from `metrics.jsonl` (best, last and median of the last five
/// evaluations, EMA and raw) to stdout, where it stays after the dashboard closed.
fn print_summary(run_dir: &std::path::Path) {
    let path = run_dir.join(crate::dash::rundir::METRICS_FILE);
    if !path.exists() {
        return;
    }
    match crate::dash::rundir::read_summary(&path) {
        // A graph without training (pipe-smoke) has only its end record: nothing to show.
        Ok(summary) if summary.evals.is_empty() && summary.last_train.is_none() => {}
        Ok(summary) => print!("{}", summary.render()),
        Err(err) => eprintln!("ccssl-run: cannot read the summary: {err}"),
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
        ToolCommand::Dash(dash) => attach(&dash.run_dir),
        ToolCommand::Eval(eval) => report_failure(crate::eval_cmd::run(&eval)),
        ToolCommand::Predict(predict) => report_failure(crate::predict_cmd::run(&predict)),
        ToolCommand::Graph(GraphCommand::Dot(file)) => match load("ccssl", &file.file, &file.set) {
            Ok(plan) => print_stdout(&graph::to_dot(&plan)),
            Err(code) => code,
        },
    }
}

/// Turns an internal failure of a subcommand into exit code 1 with its message; invalid input
/// was already reported by the subcommand with its own exit code.
fn report_failure(result: anyhow::Result<ExitCode>) -> ExitCode {
    result.unwrap_or_else(|err| {
        eprintln!("ccssl: {err:#}");
        ExitCode::from(EXIT_FAILED)
    })
}

/// `ccssl dash RUN_DIR`: shows a running run until it ends or the user leaves, then the
/// summary of a run that ended meanwhile.
fn attach(run_dir: &std::path::Path) -> ExitCode {
    let pid = match run_status(run_dir) {
        Ok(RunStatus::Running { supervisor_pid }) => supervisor_pid,
        Ok(status) => {
            eprintln!("ccssl: the run is not running; nothing to attach to");
            print_stdout(&status.describe(run_dir));
            return ExitCode::from(EXIT_NOT_RUNNING);
        }
        Err(err) => {
            eprintln!("ccssl: {err}");
            return ExitCode::from(EXIT_INVALID);
        }
    };
    let mut source = match LiveSource::open(run_dir, RunEnd::Supervisor(pid)) {
        Ok(source) => source,
        Err(err) => {
            // The run may have ended between the two reads; its summary then explains.
            if let Ok(status @ (RunStatus::Finished(_) | RunStatus::NotRunning(_))) =
                run_status(run_dir)
            {
                print_stdout(&status.describe(run_dir));
                return ExitCode::from(EXIT_NOT_RUNNING);
            }
            eprintln!("ccssl: cannot attach to {}: {err}", run_dir.display());
            return ExitCode::from(EXIT_FAILED);
        }
    };
    let shown = if std::io::stdout().is_terminal() {
        attach_dashboard(&mut source, &RunDir::new(run_dir).log_path())
    } else {
        run_headless(&mut source, Headless::INTERVAL, &mut std::io::stdout())
            .map(|()| DashExit::RunEnded)
    };
    match shown {
        Ok(DashExit::RunEnded) => match run_status(run_dir) {
            Ok(status) => print_stdout(&status.describe(run_dir)),
            Err(err) => {
                eprintln!("ccssl: the run ended, but its summary cannot be read: {err}");
                ExitCode::from(EXIT_FAILED)
            }
        },
        Ok(DashExit::Detached | DashExit::Interrupted) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("ccssl: terminal error: {err}");
            ExitCode::from(EXIT_FAILED)
        }
    }
}

/// Loads and validates a graph, printing the one error line on failure.
fn load(program: &str, file: &std::path::Path, set: &[String]) -> Result<Plan<Stage>, ExitCode> {
    kinds::load_plan(file, set).map_err(|err| {
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
