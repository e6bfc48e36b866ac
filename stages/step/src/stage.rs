//! The step stage on the pipeline runtime: reads `ViewBatch` items in sequence order, runs one
//! training step per item and publishes a `Snapshot` of the model after every step.
//!
//! Snapshots carry parameters and BatchNorm buffers every step. Every `checkpoint_every`
//! steps, and on the last step (total steps reached or a graceful stop), the snapshot is
//! flagged `checkpoint` and carries the SGD momentum buffers too, so the consumer can write a
//! checkpoint the run resumes from.
//!
//! The stage publishes train metrics in its gauges (indices [`gauge`]) and in each snapshot;
//! the EMA stage, the only writer of `metrics.jsonl`, turns those into `train` records.

use std::time::Instant;

use ccssl_pipe::metrics::beat_while;
use ccssl_pipe::slot::{self, SnapshotMeta, TensorKind, TensorSource, TrainMetrics};
use ccssl_pipe::stage::{StageContext, StageError};
use serde::{Deserialize, Serialize};

use crate::{LossConfig, ModelConfig, Normalization, OptimizerConfig, Step, StepConfig};

/// Gauge indices of the step stage's metrics record: the shared training-progress convention.
pub use ccssl_pipe::metrics::gauge;

fn default_checkpoint_every() -> u64 {
    1024
}

/// The `Step` entry of a graph: the training step's settings plus the checkpoint cadence.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename = "Step", deny_unknown_fields)]
pub struct StepStageConfig {
    /// The network; default WideResNet-28-2 with a 64-d projection and 10 classes.
    #[serde(default)]
    pub model: ModelConfig,
    /// The objective; default CCSSL.
    #[serde(default)]
    pub loss: LossConfig,
    /// The optimizer and its schedule; default SGD, lr 0.03, Nesterov momentum 0.9.
    #[serde(default)]
    pub optimizer: OptimizerConfig,
    /// Total steps of the run and of the cosine schedule.
    pub total_steps: u64,
    /// Threads of the step's pool; default 1.
    #[serde(default = "one")]
    pub threads: usize,
    /// Normalisation of each view; default CIFAR-10 mean/std except for the contrast view.
    #[serde(default)]
    pub normalization: Normalization,
    /// Steps between checkpoint snapshots (with optimizer state); default 1024.
    #[serde(default = "default_checkpoint_every")]
    pub checkpoint_every: u64,
}

fn one() -> usize {
    1
}

impl StepStageConfig {
    /// The settings of the training step alone.
    pub fn step_config(&self) -> StepConfig {
        StepConfig {
            model: self.model,
            loss: self.loss,
            optimizer: self.optimizer,
            total_steps: self.total_steps,
            threads: self.threads,
            normalization: self.normalization,
        }
    }

    /// Checks the fields the step does not check itself; returns (field, message).
    pub fn check(&self) -> Result<(), (&'static str, String)> {
        if self.total_steps == 0 {
            return Err((
                "total_steps",
                "invalid total_steps 0; expected at least 1".to_string(),
            ));
        }
        if self.checkpoint_every == 0 {
            return Err((
                "checkpoint_every",
                "invalid checkpoint_every 0; expected at least 1".to_string(),
            ));
        }
        if self.threads == 0 {
            return Err((
                "threads",
                "invalid threads 0; expected at least 1".to_string(),
            ));
        }
        Ok(())
    }
}

/// Owned names and shapes of the model's tensors, so snapshots borrow them without
/// reallocating per step.
struct Table {
    params: Vec<(String, Vec<usize>)>,
    buffers: Vec<(String, Vec<usize>)>,
}

impl Table {
    fn of(step: &Step) -> Table {
        let model = step.model();
        Table {
            params: model
                .named_parameters()
                .into_iter()
                .map(|(name, p)| (name, p.shape.clone()))
                .collect(),
            buffers: model
                .named_buffers()
                .into_iter()
                .map(|(name, values)| (name, vec![values.len()]))
                .collect(),
        }
    }
}

/// Borrows every tensor of `step` for a snapshot, momentum buffers included when `optimizer`.
fn sources<'a>(step: &'a Step, table: &'a Table, optimizer: bool) -> Vec<TensorSource<'a>> {
    let model = step.model();
    let mut out = Vec::new();
    for ((name, shape), (_, param)) in table.params.iter().zip(model.named_parameters()) {
        out.push(TensorSource {
            name,
            shape,
            kind: TensorKind::Param,
            values: &param.value,
        });
    }
    for ((name, shape), (_, values)) in table.buffers.iter().zip(model.named_buffers()) {
        out.push(TensorSource {
            name,
            shape,
            kind: TensorKind::Buffer,
            values,
        });
    }
    if optimizer {
        let momentum = step.optimizer().momentum_buffers();
        for (name, values) in momentum {
            let shape = table
                .params
                .iter()
                .find(|(p, _)| p == name)
                .map_or(&[][..], |(_, s)| s.as_slice());
            out.push(TensorSource {
                name,
                shape,
                kind: TensorKind::Optimizer,
                values,
            });
        }
    }
    out
}

/// Bytes the step stage's output slots need: a checkpoint snapshot of `config`'s model with
/// every momentum buffer; `None` when the model settings are invalid.
pub fn snapshot_slot_bytes(config: &StepStageConfig) -> Option<u64> {
    let step = Step::new(config.step_config(), 0).ok()?;
    let table = Table::of(&step);
    let mut tensors = sources(&step, &table, false);
    // The optimizer has no buffers before its first step; size them as the parameters.
    let params: Vec<_> = step.model().named_parameters();
    for (name, param) in &params {
        tensors.push(TensorSource {
            name,
            shape: &param.shape,
            kind: TensorKind::Optimizer,
            values: &param.value,
        });
    }
    Some(slot::snapshot_size(&tensors) as u64)
}

fn failed(message: String) -> StageError {
    StageError::Failed(message)
}

/// Runs the step stage with `step`, fresh or restored from a checkpoint. Training continues
/// from `step.steps_done()`, which must equal the sequence number of the first input item.
pub fn run(
    ctx: &mut StageContext,
    config: &StepStageConfig,
    mut step: Step,
) -> Result<(), StageError> {
    let table = Table::of(&step);
    let total = config.total_steps;
    let (inputs, outputs, metrics) = ctx.ports();
    let (Some(input), Some(output)) = (inputs.first_mut(), outputs.first_mut()) else {
        return Err(failed(
            "the step stage needs one ViewBatch input edge and one Snapshot output edge".into(),
        ));
    };
    if let Some(m) = metrics {
        m.set_gauge(gauge::STEP, step.steps_done() as f64);
        m.set_gauge(gauge::TOTAL_STEPS, total as f64);
    }
    tracing::info!(
        first_step = step.steps_done(),
        total_steps = total,
        "training"
    );
    let in_edge = input.edge().to_string();
    let out_edge = output.edge().to_string();
    while step.steps_done() < total {
        let Some(item) = input.next(metrics)? else {
            tracing::info!(
                step = step.steps_done(),
                "input closed before the last step"
            );
            break;
        };
        let seq = item.seq();
        if seq != step.steps_done() {
            return Err(failed(format!(
                "edge {in_edge}: batch {seq} arrived but the model has taken {} steps; \
                 the loader must start at the step the run resumes from",
                step.steps_done()
            )));
        }
        let started = Instant::now();
        let batch = slot::decode_view_batch(&item).map_err(|source| StageError::Slot {
            edge: in_edge.clone(),
            source,
        })?;
        let lr = step.learning_rate();
        let step_batch = crate::StepBatch::from_view_batch(&batch);
        let result = beat_while(metrics, || step.train_step(&step_batch))
            .map_err(|err| failed(format!("step {seq}: {err}")))?;
        let done = step.steps_done();
        let final_step = done >= total || ccssl_pipe::stage::stop_requested();
        let checkpoint = final_step || done.is_multiple_of(config.checkpoint_every);
        let meta = SnapshotMeta {
            step: done,
            checkpoint,
            final_step,
            batches_tracked: step
                .model()
                .named_batch_norms()
                .first()
                .map_or(0, |(_, bn)| bn.num_batches_tracked.max(0) as u64),
            metrics: TrainMetrics {
                lr,
                loss: result.loss,
                loss_x: result.loss_x,
                loss_u: result.loss_u,
                loss_c: result.loss_c,
                mask_ratio: result.mask_ratio,
                pseudo_label_acc: result.pseudo_label_accuracy,
                images: result.images as u64,
                step_ns: u64::try_from(started.elapsed().as_nanos()).unwrap_or(u64::MAX),
            },
        };
        let tensors = sources(&step, &table, checkpoint);
        let mut out = output.reserve(seq, metrics)?;
        let used = slot::encode_snapshot(seq, &meta, &tensors, &mut out).map_err(|source| {
            StageError::Slot {
                edge: out_edge.clone(),
                source,
            }
        })?;
        out.commit(used);
        // Released only after the snapshot is committed, as the runtime requires.
        item.release();
        if let Some(m) = metrics {
            m.add_busy(started.elapsed());
            m.add_items_out(1);
            // Dataset images, not views, so the rate compares with the data stages.
            m.add_images_in((batch.labels.len() + batch.unlabeled_indices.len()) as u64);
            set_gauges(m, done, &meta.metrics);
        }
        if final_step {
            tracing::info!(step = done, stop_requested = done < total, "last step done");
            break;
        }
    }
    Ok(())
}

fn set_gauges(m: &ccssl_pipe::metrics::StageMetrics, done: u64, t: &TrainMetrics) {
    m.set_gauge(gauge::STEP, done as f64);
    m.set_gauge(gauge::LR, f64::from(t.lr));
    m.set_gauge(gauge::LOSS, f64::from(t.loss));
    m.set_gauge(gauge::LOSS_X, f64::from(t.loss_x));
    m.set_gauge(gauge::LOSS_U, f64::from(t.loss_u));
    m.set_gauge(gauge::LOSS_C, f64::from(t.loss_c));
    m.set_gauge(gauge::MASK_RATIO, f64::from(t.mask_ratio));
    m.set_gauge(
        gauge::PSEUDO_LABEL_ACC,
        t.pseudo_label_acc.map_or(f64::NAN, f64::from),
    );
}
