//! Timing of the full training step (input normalisation, forward, losses, backward, SGD
//! update) on synthetic views, for `ccssl bench step`.
//!
//! One step feeds `B` labeled weak views and `mu * B` unlabeled images with three views each,
//! so `B * (1 + 3 * mu)` images go through the model. The images are deterministic
//! pseudo-random bytes: the cost of a step does not depend on the pixel values.

use std::fmt;
use std::time::{Duration, Instant};

use ccssl_nn::OpKind;
use ccssl_pipe::batch::CHANNELS;

use crate::{ModelConfig, Step, StepBatch, StepConfig, StepError};

/// Settings of one benchmark run.
#[derive(Clone, Debug, PartialEq)]
pub struct BenchOptions {
    /// The network.
    pub model: ModelConfig,
    /// Labeled images per step (`B`).
    pub batch: usize,
    /// Unlabeled images per labeled image (`mu`).
    pub mu: usize,
    /// Size of the thread pool.
    pub threads: usize,
    /// Untimed steps before the timed ones (first-touch allocation, caches).
    pub warmup_steps: usize,
    /// Timed steps.
    pub steps: usize,
    /// Extra steps with per-operation timing on, reported separately so the timing calls do
    /// not disturb the throughput figure; 0 skips the profile.
    pub profile_steps: usize,
    /// Image side in pixels (32 for CIFAR).
    pub image_side: usize,
}

impl Default for BenchOptions {
    fn default() -> Self {
        Self {
            model: ModelConfig::default(),
            batch: 16,
            mu: 3,
            threads: 1,
            warmup_steps: 2,
            steps: 10,
            profile_steps: 3,
            image_side: 32,
        }
    }
}

/// Parses a model name of the form `wrn-DEPTH-WIDEN`, e.g. `wrn-28-2`, with 10 classes and a
/// 64-d projection. Returns `None` for any other form.
pub fn parse_model(name: &str) -> Option<ModelConfig> {
    let rest = name.strip_prefix("wrn-")?;
    let (depth, widen) = rest.split_once('-')?;
    Some(ModelConfig {
        depth: depth.parse().ok()?,
        widen: widen.parse().ok()?,
        ..ModelConfig::default()
    })
}

/// Time per operation kind, labelled for reports.
pub type OpTimes = Vec<(&'static str, Duration)>;

/// Results of one benchmark run.
#[derive(Clone, Debug)]
pub struct BenchReport {
    /// The settings of the run.
    pub options: BenchOptions,
    /// Images through the model per step.
    pub images_per_step: usize,
    /// Wall-clock time of each timed step.
    pub step_times: Vec<Duration>,
    /// Timed images per second of wall-clock time.
    pub images_per_second: f64,
    /// Peak resident memory of the process (`VmHWM`), when `/proc/self/status` has it.
    pub peak_resident_bytes: Option<u64>,
    /// Time per operation kind over the profiled steps, in report order.
    pub profile: OpTimes,
    /// Wall-clock time of the profiled steps.
    pub profiled_time: Duration,
    /// Loss of the last timed step, to show the step computed something finite.
    pub last_loss: f32,
}

/// Runs the benchmark.
///
/// # Errors
/// [`StepError`] for invalid options or a failing step.
pub fn run(options: &BenchOptions) -> Result<BenchReport, StepError> {
    if options.batch == 0 || options.steps == 0 || options.image_side == 0 {
        return Err(StepError::Config {
            name: "bench options",
            value: format!(
                "batch {}, steps {}, image side {}",
                options.batch, options.steps, options.image_side
            ),
            reason: "use a batch, step count and image side of at least 1".into(),
        });
    }
    let config = StepConfig {
        model: options.model,
        threads: options.threads,
        ..StepConfig::default()
    };
    let mut step = Step::new(config, 0)?;
    let data = SyntheticViews::new(options);
    let batch = data.batch();

    for _ in 0..options.warmup_steps {
        step.train_step(&batch)?;
    }
    let mut step_times = Vec::with_capacity(options.steps);
    let mut last_loss = f32::NAN;
    let started = Instant::now();
    for _ in 0..options.steps {
        let t = Instant::now();
        last_loss = step.train_step(&batch)?.loss;
        step_times.push(t.elapsed());
    }
    let elapsed = started.elapsed();
    let images_per_step = options.batch * (1 + 3 * options.mu);
    let images_per_second = (images_per_step * options.steps) as f64 / elapsed.as_secs_f64();

    let (profile, profiled_time) = profile_steps(&mut step, &batch, options.profile_steps)?;
    Ok(BenchReport {
        options: options.clone(),
        images_per_step,
        step_times,
        images_per_second,
        peak_resident_bytes: peak_resident_bytes(),
        profile,
        profiled_time,
        last_loss,
    })
}

/// Runs `steps` steps with per-operation timing and returns the time per kind, plus the time
/// spent outside the model (input conversion, losses, SGD) as the last entry.
fn profile_steps(
    step: &mut Step,
    batch: &StepBatch<'_>,
    steps: usize,
) -> Result<(OpTimes, Duration), StepError> {
    if steps == 0 {
        return Ok((Vec::new(), Duration::ZERO));
    }
    step.model_mut().set_profiling(true);
    step.model_mut().profile_mut().reset();
    let started = Instant::now();
    for _ in 0..steps {
        step.train_step(batch)?;
    }
    let total = started.elapsed();
    step.model_mut().set_profiling(false);

    let profile = step.model().profile();
    let mut out: OpTimes = OpKind::ALL
        .iter()
        .map(|&kind| (kind.label(), profile.total(kind).0))
        .collect();
    let inside: Duration = out.iter().map(|(_, d)| *d).sum();
    out.push(("outside the model", total.saturating_sub(inside)));
    Ok((out, total))
}

/// Peak resident set size of this process (`VmHWM` of `/proc/self/status`), in bytes.
pub fn peak_resident_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

impl fmt::Display for BenchReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let o = &self.options;
        let m = &o.model;
        writeln!(
            f,
            "model wrn-{}-{}, batch {}, mu {}: {} images/step, {} threads, {} timed steps",
            m.depth, m.widen, o.batch, o.mu, self.images_per_step, o.threads, o.steps
        )?;
        let mut times: Vec<f64> = self.step_times.iter().map(Duration::as_secs_f64).collect();
        times.sort_by(f64::total_cmp);
        writeln!(
            f,
            "step time: median {:.3} s, min {:.3} s, max {:.3} s; last loss {:.4}",
            times[times.len() / 2],
            times[0],
            times[times.len() - 1],
            self.last_loss
        )?;
        if !self.profile.is_empty() {
            let total = self.profiled_time.as_secs_f64();
            writeln!(f, "profile over {} steps:", o.profile_steps)?;
            for (label, time) in &self.profile {
                let secs = time.as_secs_f64();
                let share = 100.0 * secs / total;
                writeln!(f, "  {label:<22} {secs:>8.3} s {share:>5.1} %")?;
            }
        }
        match self.peak_resident_bytes {
            Some(bytes) => writeln!(f, "peak_rss_mib {:.1}", bytes as f64 / (1 << 20) as f64)?,
            None => writeln!(f, "peak_rss_mib unknown (no /proc/self/status)")?,
        }
        write!(f, "images_per_second {:.2}", self.images_per_second)
    }
}

/// Deterministic synthetic views for one step.
struct SyntheticViews {
    side: usize,
    labeled: Vec<u8>,
    labels: Vec<u32>,
    unlabeled: [Vec<u8>; 3],
    truth: Vec<u32>,
}

impl SyntheticViews {
    fn new(options: &BenchOptions) -> Self {
        let image = options.image_side * options.image_side * CHANNELS;
        let n = options.batch * options.mu;
        let classes = options.model.num_classes.max(1) as u32;
        Self {
            side: options.image_side,
            labeled: pseudo_random_bytes(options.batch * image, 1),
            labels: (0..options.batch as u32).map(|i| i % classes).collect(),
            unlabeled: [2, 3, 4].map(|seed| pseudo_random_bytes(n * image, seed)),
            truth: (0..n as u32).map(|i| i % classes).collect(),
        }
    }

    fn batch(&self) -> StepBatch<'_> {
        StepBatch {
            height: self.side,
            width: self.side,
            labeled_weak: &self.labeled,
            labels: &self.labels,
            unlabeled_weak: &self.unlabeled[0],
            unlabeled_strong: &self.unlabeled[1],
            unlabeled_contrast: &self.unlabeled[2],
            unlabeled_true_labels: &self.truth,
        }
    }
}

fn pseudo_random_bytes(count: usize, seed: u64) -> Vec<u8> {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..count)
        .map(|_| {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (state >> 56) as u8
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn model_names_parse() {
        let m = parse_model("wrn-28-2").unwrap();
        assert_eq!(
            (m.depth, m.widen, m.num_classes, m.proj_dim),
            (28, 2, 10, 64)
        );
        assert_eq!(parse_model("wrn-28").map(|m| m.depth), None);
        assert_eq!(parse_model("resnet-18-1").map(|m| m.depth), None);
        assert_eq!(parse_model("wrn-x-2").map(|m| m.depth), None);
    }

    #[test]
    fn tiny_bench_reports_throughput_and_memory() {
        let options = BenchOptions {
            model: ModelConfig {
                depth: 10,
                widen: 1,
                ..ModelConfig::default()
            },
            batch: 2,
            mu: 1,
            warmup_steps: 1,
            steps: 2,
            profile_steps: 1,
            image_side: 8,
            threads: 1,
        };
        let report = run(&options).unwrap();
        assert_eq!(report.images_per_step, 8);
        assert_eq!(report.step_times.len(), 2);
        assert!(report.images_per_second > 0.0);
        assert!(report.last_loss.is_finite());
        assert!(report.peak_resident_bytes.unwrap_or(1) > 0);
        assert_eq!(report.profile.len(), OpKind::ALL.len() + 1);
        let text = report.to_string();
        assert!(
            text.lines()
                .last()
                .unwrap()
                .starts_with("images_per_second "),
            "{text}"
        );
    }

    #[test]
    fn empty_bench_is_rejected() {
        let options = BenchOptions {
            steps: 0,
            ..BenchOptions::default()
        };
        assert!(run(&options).is_err());
    }
}
