//! The EMA stage on the pipeline runtime: reads the step stage's `Snapshot` items in order,
//! folds each into the EMA, evaluates the EMA and the raw model every `eval_every` steps on
//! the whole test set, writes a checkpoint for every snapshot flagged `checkpoint`, and writes
//! `metrics.jsonl` (train records per log interval, eval records, the summary at the end).
//!
//! This stage is the only writer of `metrics.jsonl` besides the supervisor's end record, so
//! the train records come from the metrics each snapshot carries.

use std::path::Path;

use ccssl_loader::{Dataset, DatasetConfig, Part};
use ccssl_nn::{Sgd, SgdConfig, WideResNet};
use ccssl_pipe::metrics::beat_while;
use ccssl_pipe::slot::{self, Snapshot, TensorKind};
use ccssl_pipe::stage::{StageContext, StageError};
use ccssl_step::StepConfig;
use serde::{Deserialize, Serialize};

use crate::records::{METRICS_FILE, current_history, read_records};
use crate::{
    CheckpointFiles, CheckpointState, Checkpoints, DEFAULT_EVAL_BATCH, Ema, EvalRecord, Evaluator,
    MetricsRecord, RecordWriter, Summary, TensorRef, TrainRecord, Which, open_checkpoint,
};

/// Gauge indices of the EMA stage's metrics record. Indices 1 to 8 belong to the training-progress
/// convention of `ccssl_pipe::metrics::gauge`, which readers take from the step stage, so the
/// evaluation gauges sit above it.
pub mod gauge {
    /// Steps folded into the EMA.
    pub const STEP: usize = ccssl_pipe::metrics::gauge::STEP;
    /// EMA top-1 of the last evaluation, percent (NaN before the first).
    pub const TOP1_EMA: usize = 9;
    /// Raw-model top-1 of the last evaluation, percent (NaN before the first).
    pub const TOP1_RAW: usize = 10;
    /// Best EMA top-1 so far, percent (NaN before the first evaluation).
    pub const BEST_TOP1_EMA: usize = 11;
}

fn default_decay() -> f32 {
    0.999
}
fn default_every() -> u64 {
    1024
}
fn default_keep() -> usize {
    3
}
fn default_log_every() -> u64 {
    50
}
fn default_eval_batch() -> usize {
    DEFAULT_EVAL_BATCH
}
fn one() -> usize {
    1
}

/// The `Ema` entry of a graph.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename = "Ema", deny_unknown_fields)]
pub struct EmaStageConfig {
    /// Decay of the parameter average; default 0.999.
    #[serde(default = "default_decay")]
    pub decay: f32,
    /// Steps between evaluations; default 1024. The last step of the schedule is always
    /// evaluated; a step where the run is stopped is checkpointed, not evaluated.
    #[serde(default = "default_every")]
    pub eval_every: u64,
    /// Step directories kept besides `last` and `best`; default 3.
    #[serde(default = "default_keep")]
    pub keep: usize,
    /// Steps per `train` record in `metrics.jsonl`; default 50.
    #[serde(default = "default_log_every")]
    pub log_every: u64,
    /// Images per evaluation batch; default [`DEFAULT_EVAL_BATCH`].
    #[serde(default = "default_eval_batch")]
    pub eval_batch: usize,
    /// Threads of the evaluation pool; default 1.
    #[serde(default = "one")]
    pub threads: usize,
}

impl EmaStageConfig {
    /// Checks the fields; returns (field, message) for the first bad one.
    pub fn check(&self) -> Result<(), (&'static str, String)> {
        if !(0.0..1.0).contains(&self.decay) {
            return Err((
                "decay",
                format!(
                    "invalid decay {}; expected a number in [0, 1), such as 0.999",
                    self.decay
                ),
            ));
        }
        for (field, value) in [
            ("eval_every", self.eval_every),
            ("log_every", self.log_every),
            ("keep", self.keep as u64),
            ("eval_batch", self.eval_batch as u64),
            ("threads", self.threads as u64),
        ] {
            if value == 0 {
                return Err((field, format!("invalid {field} 0; expected at least 1")));
            }
        }
        Ok(())
    }
}

/// What the EMA stage needs from the rest of the graph: the step's settings (written into
/// `state.ron`), the dataset whose test part it evaluates on, and the graph's hash.
#[derive(Clone, Debug)]
pub struct RunInfo {
    /// Settings of the step stage.
    pub step_config: StepConfig,
    /// The dataset of the loader stage.
    pub dataset: DatasetConfig,
    /// Hash of the resolved graph, recorded in every checkpoint.
    pub graph_hash: String,
}

fn failed(message: impl std::fmt::Display) -> StageError {
    StageError::Failed(message.to_string())
}

/// State carried from one snapshot to the next.
struct Tracker {
    evals: Vec<EvalRecord>,
    best: Option<(f64, u64)>,
    interval: Interval,
}

/// Sums of the train metrics over the current log interval.
#[derive(Default)]
struct Interval {
    steps: u64,
    loss: f64,
    loss_x: f64,
    loss_u: f64,
    loss_c: f64,
    mask_ratio: f64,
    pseudo_acc: f64,
    pseudo_steps: u64,
    images: u64,
    ns: u64,
}

impl Interval {
    fn add(&mut self, snapshot: &Snapshot) {
        let m = &snapshot.header.metrics;
        self.steps += 1;
        self.loss += f64::from(m.loss);
        self.loss_x += f64::from(m.loss_x);
        self.loss_u += f64::from(m.loss_u);
        self.loss_c += f64::from(m.loss_c);
        self.mask_ratio += f64::from(m.mask_ratio);
        if let Some(acc) = m.pseudo_label_acc {
            self.pseudo_acc += f64::from(acc);
            self.pseudo_steps += 1;
        }
        self.images += m.images;
        self.ns += m.step_ns;
    }

    fn record(&self, step: u64, lr: f32) -> TrainRecord {
        let n = self.steps.max(1) as f64;
        TrainRecord {
            step,
            lr: f64::from(lr),
            loss: self.loss / n,
            loss_x: self.loss_x / n,
            loss_u: self.loss_u / n,
            loss_c: self.loss_c / n,
            mask_ratio: self.mask_ratio / n,
            pseudo_label_acc: if self.pseudo_steps == 0 {
                f64::NAN
            } else {
                self.pseudo_acc / self.pseudo_steps as f64
            },
            images_per_s: if self.ns == 0 {
                0.0
            } else {
                self.images as f64 * 1e9 / self.ns as f64
            },
            time_ns: ccssl_pipe::metrics::now_ns(),
        }
    }
}

/// Owned (name, values) pairs of one kind of a snapshot.
fn refs(snapshot: &Snapshot, kind: TensorKind) -> Vec<TensorRef<'_>> {
    snapshot
        .tensors(kind)
        .map(|(name, values)| TensorRef { name, values })
        .collect()
}

/// The EMA to start from, with the tracker's evaluations and best so far: the checkpoint
/// `last` points to when the run resumes, else the step's initial model (built from the run
/// seed exactly as the step builds it).
fn start(
    run_dir: &Path,
    config: &EmaStageConfig,
    info: &RunInfo,
    seed: u64,
) -> Result<(Ema, Tracker), StageError> {
    let checkpoints = Checkpoints::new(run_dir, config.keep).map_err(failed)?;
    if checkpoints.root().join("last").exists() {
        let (dir, _) = checkpoints.find(Which::Last).map_err(failed)?;
        let loaded = open_checkpoint(&dir).map_err(failed)?;
        let ema = loaded.restore_ema().map_err(failed)?;
        let step = loaded.state.step;
        let tracker = Tracker {
            evals: earlier_evals(&run_dir.join(METRICS_FILE), step)?,
            best: loaded.state.best_top1.zip(loaded.state.best_step),
            interval: Interval::default(),
        };
        tracing::info!(step, dir = %dir.display(), evaluations = tracker.evals.len(), "resuming the EMA");
        return Ok((ema, tracker));
    }
    let model = WideResNet::new(model_config(&info.step_config), seed).map_err(failed)?;
    let (params, buffers) = crate::ema::copy_model_tensors(&model);
    let ema = Ema::from_parts(config.decay, params, buffers).map_err(failed)?;
    let tracker = Tracker {
        evals: Vec::new(),
        best: None,
        interval: Interval::default(),
    };
    Ok((ema, tracker))
}

/// Reads the evaluations up to `step` from the run's `metrics.jsonl`, so the summary of a
/// resumed run covers the evaluations before the resume too.
fn earlier_evals(path: &Path, step: u64) -> Result<Vec<EvalRecord>, StageError> {
    if !path.exists() {
        return Ok(Vec::new());
    }
    let records = read_records(path).map_err(failed)?;
    Ok(current_history(records)
        .into_iter()
        .filter_map(|record| match record {
            MetricsRecord::Eval(eval) if eval.step <= step => Some(eval),
            _ => None,
        })
        .collect())
}

fn model_config(step: &StepConfig) -> ccssl_nn::WideResNetConfig {
    ccssl_nn::WideResNetConfig {
        depth: step.model.depth,
        widen: step.model.widen,
        num_classes: step.model.num_classes,
        proj_dim: step.model.proj_dim,
    }
}

/// Runs the EMA stage.
pub fn run(
    ctx: &mut StageContext,
    config: &EmaStageConfig,
    info: &RunInfo,
) -> Result<(), StageError> {
    let run_dir = ctx.run_dir().to_path_buf();
    let seed = ctx.seed();
    let test = ccssl_loader::load_dataset(&info.dataset, Part::Test).map_err(failed)?;
    tracing::info!(images = test.len(), "test set loaded");
    let (mut ema, mut tracker) = start(&run_dir, config, info, seed)?;
    let checkpoints = Checkpoints::new(&run_dir, config.keep).map_err(failed)?;
    let mut evaluator = Evaluator::new(
        model_config(&info.step_config),
        info.step_config.normalization.labeled,
        config.eval_batch,
        config.threads,
    )
    .map_err(failed)?;
    let mut writer = RecordWriter::append(&run_dir.join(METRICS_FILE)).map_err(failed)?;
    let (inputs, _, metrics) = ctx.ports();
    let Some(input) = inputs.first_mut() else {
        return Err(failed("the EMA stage needs one Snapshot input edge"));
    };
    let edge = input.edge().to_string();
    while let Some(item) = input.next(metrics)? {
        let started = std::time::Instant::now();
        let snapshot = slot::decode_snapshot(&item).map_err(|source| StageError::Slot {
            edge: edge.clone(),
            source,
        })?;
        let header = &snapshot.header;
        let step = header.step;
        ema.update(
            &refs(&snapshot, TensorKind::Param),
            &refs(&snapshot, TensorKind::Buffer),
        )
        .map_err(|err| failed(format!("step {step}: {err}")))?;
        tracker.interval.add(&snapshot);
        if step.is_multiple_of(config.log_every) || header.final_step {
            let record = tracker.interval.record(step, header.metrics.lr);
            writer
                .write(&MetricsRecord::Train(record))
                .map_err(failed)?;
            tracker.interval = Interval::default();
        }
        let mut is_best = false;
        // A stop before the end of the schedule checkpoints without evaluating: an evaluation
        // pass can take far longer than the stop may, and the resumed run evaluates on schedule.
        let last_step = step >= info.step_config.total_steps;
        if step.is_multiple_of(config.eval_every) || last_step {
            let record = beat_while(metrics, || evaluate(&mut evaluator, &ema, &snapshot, &test))?;
            tracing::info!(
                step,
                top1_ema = record.top1_ema,
                top1_raw = record.top1_raw,
                "evaluated"
            );
            if tracker.best.is_none_or(|(top1, _)| record.top1_ema > top1) {
                tracker.best = Some((record.top1_ema, step));
                is_best = true;
            }
            if let Some(m) = metrics {
                m.set_gauge(gauge::TOP1_EMA, record.top1_ema);
                m.set_gauge(gauge::TOP1_RAW, record.top1_raw);
                m.set_gauge(gauge::BEST_TOP1_EMA, tracker.best.map_or(f64::NAN, |b| b.0));
            }
            writer.write(&MetricsRecord::Eval(record)).map_err(failed)?;
            tracker.evals.push(record);
        }
        if header.checkpoint {
            beat_while(metrics, || {
                write_checkpoint(
                    &checkpoints,
                    &ema,
                    &snapshot,
                    info,
                    &test,
                    seed,
                    &tracker,
                    is_best,
                )
            })?;
        }
        let final_step = header.final_step;
        item.release();
        if let Some(m) = metrics {
            m.add_busy(started.elapsed());
            m.add_items_out(1);
            m.set_gauge(gauge::STEP, step as f64);
        }
        if final_step {
            break;
        }
    }
    if let Some(summary) = Summary::from_evals(&tracker.evals) {
        log_summary(&summary);
        writer
            .write(&MetricsRecord::Summary(summary))
            .map_err(failed)?;
    }
    Ok(())
}

fn log_summary(summary: &Summary) {
    for (model, row) in [("EMA", &summary.ema), ("raw", &summary.raw)] {
        let line = format!(
            "{model} top-1: best {:.2} (step {}), last {:.2}, median of last 5 {:.2}",
            row.best, row.best_step, row.last, row.median_last5
        );
        tracing::info!("{line}");
    }
}

/// Evaluates the EMA and the raw weights of `snapshot` on `test`.
fn evaluate(
    evaluator: &mut Evaluator,
    ema: &Ema,
    snapshot: &Snapshot,
    test: &Dataset,
) -> Result<EvalRecord, StageError> {
    evaluator.load_ema(ema).map_err(failed)?;
    let on_ema = evaluator.evaluate(test).map_err(failed)?;
    evaluator
        .load_tensors(
            &refs(snapshot, TensorKind::Param),
            &refs(snapshot, TensorKind::Buffer),
        )
        .map_err(failed)?;
    let on_raw = evaluator.evaluate(test).map_err(failed)?;
    Ok(EvalRecord {
        step: snapshot.header.step,
        top1_ema: on_ema.top1,
        top5_ema: on_ema.top5,
        loss_ema: on_ema.loss,
        top1_raw: on_raw.top1,
        top5_raw: on_raw.top5,
        loss_raw: on_raw.loss,
        images: on_ema.images,
    })
}

/// Rebuilds the online model and optimizer from a checkpoint snapshot and writes the
/// checkpoint.
#[allow(clippy::too_many_arguments)]
fn write_checkpoint(
    checkpoints: &Checkpoints,
    ema: &Ema,
    snapshot: &Snapshot,
    info: &RunInfo,
    test: &Dataset,
    seed: u64,
    tracker: &Tracker,
    is_best: bool,
) -> Result<(), StageError> {
    let step = snapshot.header.step;
    let mut online = WideResNet::new(model_config(&info.step_config), seed).map_err(failed)?;
    for ((name, param), (snap_name, values)) in online
        .named_parameters_mut()
        .into_iter()
        .zip(snapshot.tensors(TensorKind::Param))
    {
        if name != snap_name || param.value.len() != values.len() {
            return Err(failed(format!(
                "step {step}: snapshot parameter {snap_name} does not match the model's {name}"
            )));
        }
        param.value.copy_from_slice(values);
    }
    for ((name, buffer), (snap_name, values)) in online
        .named_buffers_mut()
        .into_iter()
        .zip(snapshot.tensors(TensorKind::Buffer))
    {
        if name != snap_name || buffer.len() != values.len() {
            return Err(failed(format!(
                "step {step}: snapshot buffer {snap_name} does not match the model's {name}"
            )));
        }
        buffer.copy_from_slice(values);
    }
    let tracked = i64::try_from(snapshot.header.batches_tracked).unwrap_or(i64::MAX);
    for (_, bn) in online.named_batch_norms_mut() {
        bn.num_batches_tracked = tracked;
    }
    let mut sgd = Sgd::new(SgdConfig::reference(
        info.step_config.optimizer.weight_decay,
    ));
    sgd.set_momentum_buffers(
        snapshot
            .tensors(TensorKind::Optimizer)
            .map(|(name, values)| (name.to_owned(), values.to_vec()))
            .collect(),
    );
    let files = CheckpointFiles::build(&online, ema, &sgd).map_err(failed)?;
    let opt = &info.step_config.optimizer;
    let factor = ccssl_nn::cosine_lr_factor(step, info.step_config.total_steps, opt.warmup_steps);
    let state = CheckpointState {
        format: 0,
        step,
        total_steps: info.step_config.total_steps,
        seed,
        graph_hash: info.graph_hash.clone(),
        best_top1: tracker.best.map(|b| b.0),
        best_step: tracker.best.map(|b| b.1),
        step_config: info.step_config.clone(),
        next_lr: (f64::from(opt.lr) * factor) as f32,
        ema_decay: ema.decay(),
        dataset: info.dataset.clone(),
        class_names: test.class_names.clone(),
        image_height: test.height,
        image_width: test.width,
        files: Vec::new(),
    };
    checkpoints
        .write(state, &files.named(), is_best)
        .map_err(failed)?;
    Ok(())
}
