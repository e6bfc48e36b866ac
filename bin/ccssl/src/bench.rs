//! `ccssl bench ...`: throughput benchmarks of the pipeline's stages.

use anyhow::{Context, Result, bail};
use ccssl_step::bench::{BenchOptions, parse_model, run};

/// Options of `ccssl bench step`.
#[derive(Debug, Clone, clap::Args)]
pub struct StepBenchArgs {
    /// Network as wrn-DEPTH-WIDEN, e.g. wrn-28-2.
    #[arg(long, default_value = "wrn-28-2")]
    pub model: String,
    /// Labeled images per step (B).
    #[arg(long, default_value_t = 16)]
    pub batch: usize,
    /// Unlabeled images per labeled image (mu); each has weak, strong and contrast views.
    #[arg(long, default_value_t = 3)]
    pub mu: usize,
    /// Threads of the step's pool [default: the number of available CPUs].
    #[arg(long)]
    pub threads: Option<usize>,
    /// Timed steps.
    #[arg(long, default_value_t = 10)]
    pub steps: usize,
    /// Untimed steps before the timed ones.
    #[arg(long, default_value_t = 2)]
    pub warmup: usize,
    /// Extra steps with per-operation timing (0 skips the profile).
    #[arg(long, default_value_t = 3)]
    pub profile_steps: usize,
}

/// Runs `ccssl bench step`: times full CCSSL training steps on synthetic 32x32 views and
/// prints the step times, a per-operation profile, peak resident memory, and as the last
/// line `images_per_second N`.
///
/// # Errors
/// An invalid model name, thread count or batch, or a failing step.
pub fn bench_step(args: &StepBenchArgs) -> Result<()> {
    let Some(model) = parse_model(&args.model) else {
        bail!(
            "invalid --model {:?}: use wrn-DEPTH-WIDEN, e.g. wrn-28-2",
            args.model
        );
    };
    let threads = match args.threads {
        Some(threads) => threads,
        None => std::thread::available_parallelism()
            .context("failed to count the available CPUs; pass --threads")?
            .get(),
    };
    let options = BenchOptions {
        model,
        batch: args.batch,
        mu: args.mu,
        threads,
        warmup_steps: args.warmup,
        steps: args.steps,
        profile_steps: args.profile_steps,
        ..BenchOptions::default()
    };
    let report = run(&options).context("step benchmark failed")?;
    println!("{report}");
    Ok(())
}
