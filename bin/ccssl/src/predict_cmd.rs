//! `ccssl predict`: the top-5 classes of each image under a checkpoint's model.
//!
//! Images (PNG or JPEG, any size) are decoded and resized to the model's input size by the
//! loader's ImageFolder code, then normalised like evaluation inputs. Every image that cannot
//! be read is reported by path and the command exits 2 after printing the predictions of the
//! others.

use std::io::{self, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use ccssl_ema::{InputTable, Weights, open_checkpoint};
use ccssl_loader::{DatasetConfig, ResizeFilter, read_image_resized};
use ccssl_nn::{Tensor, ThreadPool};

use crate::eval_cmd::{Failure, resolve_threads};

/// Classes listed per image (fewer when the model has fewer classes).
pub const TOP: usize = 5;

/// Images per forward pass.
const PREDICT_BATCH: usize = 64;

/// Arguments of `ccssl predict`.
#[derive(Clone, Debug, clap::Args)]
pub struct PredictArgs {
    /// Checkpoint to predict with: a run directory (uses checkpoints/last), a checkpoints/
    /// directory, or a step-NNNNNNNN directory.
    #[arg(long, value_name = "DIR")]
    pub checkpoint: PathBuf,
    /// PNG or JPEG images of any size; each is resized to the model's input size.
    #[arg(required = true, value_name = "IMAGE")]
    pub images: Vec<PathBuf>,
    /// Predict with the raw (online) model instead of the EMA weights.
    #[arg(long)]
    pub raw: bool,
    /// Worker threads [default: the number of available cores].
    #[arg(long, value_name = "N")]
    pub threads: Option<usize>,
    /// Print one JSON object per image instead of text.
    #[arg(long)]
    pub json: bool,
}

/// One class of a prediction.
#[derive(Clone, Debug, PartialEq)]
pub struct Ranked {
    /// Class id (label).
    pub class: usize,
    /// Softmax probability, in [0, 1].
    pub score: f64,
}

/// Runs `ccssl predict`, printing to stdout and stderr.
///
/// # Errors
/// Internal failures only; invalid input is reported on stderr with exit code 2.
pub fn run(args: &PredictArgs) -> anyhow::Result<ExitCode> {
    run_with(args, &mut io::stdout().lock(), &mut io::stderr().lock())
}

/// Runs `ccssl predict` with the output streams passed in.
///
/// # Errors
/// As [`run`].
pub fn run_with(
    args: &PredictArgs,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> anyhow::Result<ExitCode> {
    match predict(args, out, err) {
        Ok(true) => Ok(ExitCode::SUCCESS),
        Ok(false) => Ok(ExitCode::from(2)),
        Err(Failure::Input(message)) => {
            writeln!(err, "ccssl predict: error: {message}")?;
            Ok(ExitCode::from(2))
        }
        Err(Failure::Internal(error)) => Err(error),
    }
}

/// Predicts every readable image; returns whether all images were readable.
fn predict(args: &PredictArgs, out: &mut dyn Write, err: &mut dyn Write) -> Result<bool, Failure> {
    let threads = resolve_threads(args.threads)?;
    let weights = if args.raw { Weights::Raw } else { Weights::Ema };
    let checkpoint = open_checkpoint(&args.checkpoint)?;
    let state = &checkpoint.state;
    let (height, width) = (state.image_height, state.image_width);
    let filter = match state.dataset {
        DatasetConfig::ImageFolder { filter, .. } => filter,
        _ => ResizeFilter::Bilinear,
    };

    let mut readable = Vec::with_capacity(args.images.len());
    let mut pixels = Vec::new();
    let mut all_read = true;
    for path in &args.images {
        match read_image_resized(path, height, width, filter) {
            Ok(image) => {
                pixels.extend_from_slice(&image);
                readable.push(path);
            }
            Err(error) => {
                writeln!(err, "ccssl predict: error: {error}")?;
                all_read = false;
            }
        }
    }

    let mut model = checkpoint.load_model(weights)?;
    let pool = ThreadPool::new(threads).map_err(|e| Failure::Internal(e.into()))?;
    let table = InputTable::new(state.eval_normalization());
    let classes = state.class_names.len();
    let image_bytes = height as usize * width as usize * 3;
    let mut input = Tensor::default();
    let mut paths = readable.iter();
    for chunk in pixels.chunks(PREDICT_BATCH * image_bytes) {
        table.fill(chunk, height as usize, width as usize, &mut input);
        let output = model
            .forward_eval(&pool, &input)
            .map_err(|e| Failure::Internal(e.into()))?;
        for (row, path) in output.logits.data().chunks_exact(classes).zip(&mut paths) {
            let ranked = top_classes(row, TOP);
            print_prediction(out, path, &ranked, &state.class_names, args.json)?;
        }
    }
    Ok(all_read)
}

/// Returns the `k` most probable classes of one row of logits, most probable first, with ties
/// going to the lower class id. Scores are the softmax of the whole row, computed in f64.
pub fn top_classes(logits: &[f32], k: usize) -> Vec<Ranked> {
    let max = logits
        .iter()
        .fold(f64::NEG_INFINITY, |m, &v| m.max(f64::from(v)));
    let exp: Vec<f64> = logits.iter().map(|&v| (f64::from(v) - max).exp()).collect();
    let sum: f64 = exp.iter().sum();
    let mut order: Vec<usize> = (0..logits.len()).collect();
    order.sort_by(|&a, &b| logits[b].total_cmp(&logits[a]).then(a.cmp(&b)));
    order
        .into_iter()
        .take(k)
        .map(|class| Ranked {
            class,
            score: exp[class] / sum,
        })
        .collect()
}

fn print_prediction(
    out: &mut dyn Write,
    path: &std::path::Path,
    ranked: &[Ranked],
    names: &[String],
    json: bool,
) -> io::Result<()> {
    if json {
        let top: Vec<serde_json::Value> = ranked
            .iter()
            .map(|r| {
                serde_json::json!({
                    "class": r.class,
                    "name": names[r.class],
                    "score": r.score,
                })
            })
            .collect();
        let value = serde_json::json!({ "image": path.display().to_string(), "top": top });
        return writeln!(out, "{value}");
    }
    writeln!(out, "{}", path.display())?;
    for r in ranked {
        writeln!(out, "  {:>4}  {:.4}  {}", r.class, r.score, names[r.class])?;
    }
    Ok(())
}

#[cfg(test)]
#[path = "predict_cmd_tests.rs"]
mod tests;
