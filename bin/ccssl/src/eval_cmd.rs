//! `ccssl eval`: top-1, top-5 and loss of a checkpoint on the test split of its dataset.
//!
//! The checkpoint's `state.ron` names the model, the input normalisation and the dataset, so
//! the directory is all the command needs. Exit codes: 0 evaluated, 2 invalid arguments or
//! input (a missing or damaged checkpoint, a missing dataset), 1 an internal failure.

use std::ffi::OsString;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use ccssl_ema::{
    CheckpointError, DEFAULT_EVAL_BATCH, EvalError, EvalMetrics, Evaluator, LoadedCheckpoint,
    Weights, open_checkpoint,
};
use ccssl_loader::{DatasetConfig, Part, load_dataset};

/// Environment variable naming the dataset root when `--data` is absent.
pub const DATA_ENV: &str = "CCSSL_DATA";

/// Arguments of `ccssl eval`.
#[derive(Clone, Debug, clap::Args)]
pub struct EvalArgs {
    /// Checkpoint to evaluate: a run directory (uses checkpoints/last), a checkpoints/
    /// directory, or a step-NNNNNNNN directory.
    #[arg(long, value_name = "DIR")]
    pub checkpoint: PathBuf,
    /// Evaluate the raw (online) model instead of the EMA weights.
    #[arg(long)]
    pub raw: bool,
    /// Dataset root that replaces the one recorded in the checkpoint (environment variable:
    /// CCSSL_DATA). Downloading is off when a root is given.
    #[arg(long, value_name = "ROOT")]
    pub data: Option<PathBuf>,
    /// Worker threads [default: the number of available cores].
    #[arg(long, value_name = "N")]
    pub threads: Option<usize>,
    /// Test images per forward pass. Logits can differ in the last bits between batch sizes,
    /// so reproduce a logged accuracy with the batch size that produced it.
    #[arg(long, value_name = "N", default_value_t = DEFAULT_EVAL_BATCH)]
    pub batch_size: usize,
    /// Print one JSON object with full-precision values instead of text.
    #[arg(long)]
    pub json: bool,
}

/// Runs `ccssl eval`, reading `CCSSL_DATA` from the environment and printing to stdout and
/// stderr.
///
/// # Errors
/// Internal failures only; invalid input is reported on stderr with exit code 2.
pub fn run(args: &EvalArgs) -> anyhow::Result<ExitCode> {
    let env_data = std::env::var_os(DATA_ENV);
    run_with(
        args,
        env_data,
        &mut io::stdout().lock(),
        &mut io::stderr().lock(),
    )
}

/// Runs `ccssl eval` with the `CCSSL_DATA` value and the output streams passed in.
///
/// # Errors
/// As [`run`].
pub fn run_with(
    args: &EvalArgs,
    env_data: Option<OsString>,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> anyhow::Result<ExitCode> {
    match evaluate(args, env_data, err) {
        Ok(report) => {
            report.print(out, args.json)?;
            Ok(ExitCode::SUCCESS)
        }
        Err(Failure::Input(message)) => {
            writeln!(err, "ccssl eval: error: {message}")?;
            Ok(ExitCode::from(2))
        }
        Err(Failure::Internal(error)) => Err(error),
    }
}

/// Why a command stopped: bad input (exit 2) or an internal failure (exit 1).
#[derive(Debug)]
pub(crate) enum Failure {
    /// The message names the bad value and the fix.
    Input(String),
    /// A bug or a resource failure, not the user's input.
    Internal(anyhow::Error),
}

impl From<CheckpointError> for Failure {
    fn from(error: CheckpointError) -> Self {
        Failure::Input(error.to_string())
    }
}

impl From<io::Error> for Failure {
    fn from(error: io::Error) -> Self {
        Failure::Internal(error.into())
    }
}

/// Everything `ccssl eval` prints.
struct Report {
    dir: PathBuf,
    step: u64,
    weights: Weights,
    dataset: String,
    classes: usize,
    metrics: EvalMetrics,
}

impl Report {
    fn print(&self, out: &mut dyn Write, json: bool) -> io::Result<()> {
        if json {
            let value = serde_json::json!({
                "checkpoint": self.dir.display().to_string(),
                "step": self.step,
                "weights": self.weights.name(),
                "dataset": self.dataset,
                "images": self.metrics.images,
                "top1": self.metrics.top1,
                "top5": self.metrics.top5,
                "loss": self.metrics.loss,
            });
            return writeln!(out, "{value}");
        }
        writeln!(
            out,
            "checkpoint: {} (step {})",
            self.dir.display(),
            self.step
        )?;
        writeln!(
            out,
            "weights:    {} ({})",
            self.weights.name(),
            self.weights.file_name()
        )?;
        writeln!(
            out,
            "test set:   {}, {} images, {} classes",
            self.dataset, self.metrics.images, self.classes
        )?;
        writeln!(out, "top-1:      {:.2} %", self.metrics.top1)?;
        writeln!(out, "top-5:      {:.2} %", self.metrics.top5)?;
        writeln!(out, "loss:       {:.4}", self.metrics.loss)
    }
}

fn evaluate(
    args: &EvalArgs,
    env_data: Option<OsString>,
    err: &mut dyn Write,
) -> Result<Report, Failure> {
    let threads = resolve_threads(args.threads)?;
    if args.batch_size == 0 {
        return Err(Failure::Input(
            "invalid --batch-size 0: use at least 1 image per batch".into(),
        ));
    }
    let weights = if args.raw { Weights::Raw } else { Weights::Ema };
    let checkpoint = open_checkpoint(&args.checkpoint)?;
    let state = &checkpoint.state;

    let root = args.data.clone().or(env_data.map(PathBuf::from));
    let (dataset_config, ignored) = with_root(&state.dataset, root.as_deref());
    if let Some(root) = ignored {
        writeln!(
            err,
            "ccssl eval: warning: the checkpoint's dataset is synthetic, ignoring data root {}",
            root.display()
        )?;
    }
    let test = load_dataset(&dataset_config, Part::Test)
        .map_err(|error| Failure::Input(error.to_string()))?;
    check_test_set(&checkpoint, &test)?;

    let model = checkpoint.load_model(weights)?;
    let mut evaluator =
        Evaluator::with_model(model, state.eval_normalization(), args.batch_size, threads)
            .map_err(eval_failure)?;
    tracing::info!(
        dir = %checkpoint.dir.display(),
        weights = weights.name(),
        threads,
        images = test.len(),
        "evaluating checkpoint"
    );
    let metrics = evaluator.evaluate(&test).map_err(eval_failure)?;
    Ok(Report {
        dir: checkpoint.dir.clone(),
        step: state.step,
        weights,
        dataset: test.name.clone(),
        classes: test.num_classes(),
        metrics,
    })
}

/// Returns the thread count to use: the flag, else every available core.
pub(crate) fn resolve_threads(flag: Option<usize>) -> Result<usize, Failure> {
    match flag {
        Some(0) => Err(Failure::Input(
            "invalid --threads 0: use at least 1 thread".into(),
        )),
        Some(threads) => Ok(threads),
        None => Ok(std::thread::available_parallelism().map_or(1, |n| n.get())),
    }
}

pub(crate) fn eval_failure(error: EvalError) -> Failure {
    match error {
        EvalError::Nn(_) => Failure::Internal(error.into()),
        other => Failure::Input(other.to_string()),
    }
}

/// `dataset` with its root replaced by `root`, and with downloading off, since a root given on
/// the command line names data that is already there. An ImageFolder test root inside the old
/// root moves along with it. Returns `root` as the second value when the dataset has no root
/// to replace (synthetic data).
fn with_root<'a>(
    dataset: &DatasetConfig,
    root: Option<&'a Path>,
) -> (DatasetConfig, Option<&'a Path>) {
    let Some(new_root) = root else {
        return (dataset.clone(), None);
    };
    let mut config = dataset.clone();
    match &mut config {
        DatasetConfig::Cifar10 { root, download, .. }
        | DatasetConfig::Cifar100 { root, download, .. } => {
            *root = new_root.to_owned();
            *download = false;
        }
        DatasetConfig::ImageFolder {
            root, test_root, ..
        } => {
            if let Some(test) = test_root
                && let Ok(inside) = test.strip_prefix(&*root)
            {
                *test = new_root.join(inside);
            }
            *root = new_root.to_owned();
        }
        DatasetConfig::Synthetic { .. } => return (config, Some(new_root)),
    }
    (config, None)
}

/// Checks that the test set fits the model: same image size and class count.
fn check_test_set(
    checkpoint: &LoadedCheckpoint,
    test: &ccssl_loader::Dataset,
) -> Result<(), Failure> {
    let state = &checkpoint.state;
    if (test.height, test.width) != (state.image_height, state.image_width) {
        return Err(Failure::Input(format!(
            "the {} test set has {}x{} images but the checkpoint in {} was trained on {}x{}; \
             pass --data with the dataset the run used",
            test.name,
            test.height,
            test.width,
            checkpoint.dir.display(),
            state.image_height,
            state.image_width
        )));
    }
    if test.num_classes() != state.class_names.len() {
        return Err(Failure::Input(format!(
            "the {} test set has {} classes but the checkpoint in {} has {}; \
             pass --data with the dataset the run used",
            test.name,
            test.num_classes(),
            checkpoint.dir.display(),
            state.class_names.len()
        )));
    }
    Ok(())
}

#[cfg(test)]
#[path = "eval_cmd_tests.rs"]
mod tests;
