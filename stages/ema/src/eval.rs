//! Evaluation of a WideResNet on a test set: top-1, top-5 and mean cross-entropy.
//!
//! The [`Evaluator`] owns its own model instance, so loading EMA or snapshot weights into it
//! and running it in eval mode (BatchNorm with running statistics) never touches the model
//! being trained. Images are converted from `u8` HWC to normalised `f32` NCHW with the same
//! arithmetic as the training step, `(x / 255 - mean) / std` per channel, and evaluated in
//! batches of a fixed size in dataset order. Each batch's logits are reduced in image order
//! in f64, so the result depends only on the weights, the images and the batch size, not on the
//! thread count.

use ccssl_loader::Dataset;
use ccssl_nn::{NnError, Tensor, ThreadPool, WideResNet, WideResNetConfig};
use ccssl_step::ViewNorm;

use crate::ema::{Ema, TensorRef};

/// Images per forward pass of an evaluation unless a caller sets another size. The EMA stage
/// and `ccssl eval` both use it, so they evaluate in identical batches.
pub const DEFAULT_EVAL_BATCH: usize = 256;

/// The `k` of the top-k accuracy reported besides top-1.
pub const TOP_K: usize = 5;

/// Error raised while evaluating or loading weights into the evaluation model.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EvalError {
    /// The engine rejected the model, the input or the thread count.
    #[error(transparent)]
    Nn(#[from] NnError),
    /// The dataset has no image.
    #[error("the {dataset} test set has no images; point the run at a dataset with a test part")]
    EmptyDataset {
        /// Dataset name.
        dataset: String,
    },
    /// An image's label is not a class of the model.
    #[error(
        "image {index} of the {dataset} test set has label {label}, but the model has \
         {num_classes} classes; evaluate with the dataset the model was trained on"
    )]
    LabelOutOfRange {
        /// Dataset name.
        dataset: String,
        /// Position of the image in the dataset.
        index: usize,
        /// The label found.
        label: u32,
        /// Classes of the model.
        num_classes: usize,
    },
    /// The batch size is zero.
    #[error("invalid evaluation batch size 0: use at least 1 image per batch")]
    ZeroBatch,
    /// Weights handed to the evaluator do not match its model.
    #[error(
        "{kind} {index} is `{actual}` with {actual_len} values, but the evaluation model \
         expects `{expected}` with {expected_len} values"
    )]
    TensorMismatch {
        /// `parameter` or `buffer`.
        kind: &'static str,
        /// Position in the list.
        index: usize,
        /// Name the model expects.
        expected: String,
        /// Element count the model expects.
        expected_len: usize,
        /// Name passed in.
        actual: String,
        /// Element count passed in.
        actual_len: usize,
    },
    /// Weights handed to the evaluator have a different number of tensors than its model.
    #[error("{actual} {kind} tensors were passed, but the evaluation model has {expected}")]
    CountMismatch {
        /// `parameter` or `buffer`.
        kind: &'static str,
        /// Tensors of the model.
        expected: usize,
        /// Tensors passed in.
        actual: usize,
    },
}

/// Result of one evaluation.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct EvalMetrics {
    /// Top-1 accuracy, percent in [0, 100].
    pub top1: f64,
    /// Top-5 accuracy (top-k with k = min(5, classes)), percent in [0, 100].
    pub top5: f64,
    /// Mean cross-entropy of the logits against the labels, natural log.
    pub loss: f64,
    /// Images evaluated.
    pub images: u64,
}

/// Running sums of an evaluation, so batches can be folded in one at a time.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct EvalTally {
    /// Images whose label ranks first.
    pub top1_correct: u64,
    /// Images whose label ranks among the first `min(5, classes)`.
    pub top5_correct: u64,
    /// Sum of the per-image cross-entropies.
    pub loss_sum: f64,
    /// Images counted.
    pub images: u64,
}

impl EvalTally {
    /// Adds the logits (`labels.len()` rows of `classes` values) of one batch.
    ///
    /// The rank of the label counts the classes with a larger logit, plus the classes of lower
    /// index with an equal one, so ties break towards the lower class index as `argmax` does.
    /// A NaN logit never ranks ahead of the label; a NaN in the label's logit makes the image
    /// wrong and its loss NaN.
    pub fn add(&mut self, logits: &[f32], classes: usize, labels: &[u32]) {
        let k = TOP_K.min(classes);
        for (row, &label) in logits.chunks_exact(classes).zip(labels) {
            let label = label as usize;
            let target = row[label];
            let rank = row
                .iter()
                .enumerate()
                .filter(|&(c, &v)| v > target || (v == target && c < label))
                .count();
            let ranked = !target.is_nan();
            self.top1_correct += u64::from(ranked && rank == 0);
            self.top5_correct += u64::from(ranked && rank < k);
            self.loss_sum += cross_entropy(row, label);
            self.images += 1;
        }
    }

    /// Percentages and mean loss of the images counted so far.
    pub fn metrics(&self) -> EvalMetrics {
        let n = self.images.max(1) as f64;
        EvalMetrics {
            top1: 100.0 * self.top1_correct as f64 / n,
            top5: 100.0 * self.top5_correct as f64 / n,
            loss: self.loss_sum / n,
            images: self.images,
        }
    }
}

/// `logsumexp(row) - row[label]` in f64.
fn cross_entropy(row: &[f32], label: usize) -> f64 {
    let max = row
        .iter()
        .fold(f64::NEG_INFINITY, |m, &v| m.max(f64::from(v)));
    let sum: f64 = row.iter().map(|&v| (f64::from(v) - max).exp()).sum();
    max + sum.ln() - f64::from(row[label])
}

/// Per-channel table from a `u8` value to the model input, built with the training step's
/// order of operations (divide by 255, subtract the mean, divide by the std) so that an image
/// gets bit-identical inputs here and in training.
#[derive(Clone, Debug)]
pub struct InputTable {
    values: [[f32; 256]; 3],
}

impl InputTable {
    /// Builds the table of a view's normalisation.
    pub fn new(norm: ViewNorm) -> Self {
        let (mean, std) = match norm {
            ViewNorm::Unit => ([0.0; 3], [1.0; 3]),
            ViewNorm::MeanStd { mean, std } => (mean, std),
        };
        let mut values = [[0.0f32; 256]; 3];
        for (c, table) in values.iter_mut().enumerate() {
            for (v, out) in table.iter_mut().enumerate() {
                *out = (v as f32 / 255.0 - mean[c]) / std[c];
            }
        }
        Self { values }
    }

    /// Writes `images` (HWC, `height x width` each) as NCHW into `out`, resized to fit.
    pub fn fill(&self, images: &[u8], height: usize, width: usize, out: &mut Tensor) {
        let plane = height * width;
        let count = images.len() / (plane * 3);
        out.resize(&[count, 3, height, width]);
        for (image, dst) in images
            .chunks_exact(plane * 3)
            .zip(out.data_mut().chunks_exact_mut(plane * 3))
        {
            for (p, pixel) in image.chunks_exact(3).enumerate() {
                for c in 0..3 {
                    dst[c * plane + p] = self.values[c][usize::from(pixel[c])];
                }
            }
        }
    }
}

/// Evaluates `model` in eval mode on every image of `dataset`, `batch_size` images per
/// forward pass.
///
/// Parameters and running statistics of `model` stay unchanged, but its training caches are
/// invalidated: pass a model that is not in the middle of a training step.
///
/// # Errors
/// [`EvalError::EmptyDataset`], [`EvalError::ZeroBatch`], [`EvalError::LabelOutOfRange`]
/// before any forward pass, and [`EvalError::Nn`] when the engine fails.
pub fn evaluate_model(
    model: &mut WideResNet,
    pool: &ThreadPool,
    dataset: &Dataset,
    table: &InputTable,
    batch_size: usize,
) -> Result<EvalMetrics, EvalError> {
    let classes = model.config().num_classes;
    check_dataset(dataset, classes)?;
    if batch_size == 0 {
        return Err(EvalError::ZeroBatch);
    }
    let (height, width) = (dataset.height as usize, dataset.width as usize);
    let image_bytes = dataset.image_bytes();
    let mut input = Tensor::default();
    let mut tally = EvalTally::default();
    for (images, labels) in dataset
        .images
        .chunks(batch_size * image_bytes)
        .zip(dataset.labels.chunks(batch_size))
    {
        table.fill(images, height, width, &mut input);
        let output = model.forward_eval(pool, &input)?;
        tally.add(output.logits.data(), classes, labels);
    }
    let metrics = tally.metrics();
    tracing::debug!(
        dataset = %dataset.name,
        images = metrics.images,
        top1 = metrics.top1,
        top5 = metrics.top5,
        loss = metrics.loss,
        "evaluated"
    );
    Ok(metrics)
}

fn check_dataset(dataset: &Dataset, num_classes: usize) -> Result<(), EvalError> {
    if dataset.is_empty() {
        return Err(EvalError::EmptyDataset {
            dataset: dataset.name.clone(),
        });
    }
    if let Some((index, &label)) = dataset
        .labels
        .iter()
        .enumerate()
        .find(|&(_, &label)| label as usize >= num_classes)
    {
        return Err(EvalError::LabelOutOfRange {
            dataset: dataset.name.clone(),
            index,
            label,
            num_classes,
        });
    }
    Ok(())
}

/// A model instance of its own, a thread pool and an input table: evaluates EMA or snapshot
/// weights without touching the training model.
pub struct Evaluator {
    model: WideResNet,
    pool: ThreadPool,
    table: InputTable,
    batch_size: usize,
}

impl std::fmt::Debug for Evaluator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Evaluator")
            .field("model", self.model.config())
            .field("threads", &self.pool.threads())
            .field("batch_size", &self.batch_size)
            .finish_non_exhaustive()
    }
}

impl Evaluator {
    /// Builds an evaluator for models of `config`, inputs normalised by `norm`, on a pool of
    /// `threads` threads. The model starts with seed-0 weights; load weights before use.
    ///
    /// # Errors
    /// [`EvalError::ZeroBatch`], or [`EvalError::Nn`] for an invalid model or thread count.
    pub fn new(
        config: WideResNetConfig,
        norm: ViewNorm,
        batch_size: usize,
        threads: usize,
    ) -> Result<Self, EvalError> {
        let model = WideResNet::new(config, 0)?;
        Self::with_model(model, norm, batch_size, threads)
    }

    /// Builds an evaluator around a model that already holds the weights to evaluate.
    ///
    /// # Errors
    /// As [`Self::new`].
    pub fn with_model(
        model: WideResNet,
        norm: ViewNorm,
        batch_size: usize,
        threads: usize,
    ) -> Result<Self, EvalError> {
        if batch_size == 0 {
            return Err(EvalError::ZeroBatch);
        }
        Ok(Self {
            model,
            pool: ThreadPool::new(threads)?,
            table: InputTable::new(norm),
            batch_size,
        })
    }

    /// The evaluation model.
    pub fn model(&self) -> &WideResNet {
        &self.model
    }

    /// The evaluation model, mutably (for loading a safetensors file into it).
    pub fn model_mut(&mut self) -> &mut WideResNet {
        &mut self.model
    }

    /// The input normalisation table.
    pub fn table(&self) -> &InputTable {
        &self.table
    }

    /// The thread pool the evaluation runs on.
    pub fn thread_pool(&self) -> &ThreadPool {
        &self.pool
    }

    /// Copies the averaged parameters and the copied buffers of `ema` into the model.
    ///
    /// # Errors
    /// [`EvalError::CountMismatch`] or [`EvalError::TensorMismatch`] when `ema` was built from
    /// a model of another shape; the model is then left unchanged.
    pub fn load_ema(&mut self, ema: &Ema) -> Result<(), EvalError> {
        let params = tensor_refs(ema.params());
        let buffers = tensor_refs(ema.buffers());
        self.load_tensors(&params, &buffers)
    }

    /// Copies named parameters (in [`WideResNet::named_parameters`] order) and running
    /// statistics (in [`WideResNet::named_buffers`] order) into the model, for example those
    /// of a training snapshot.
    ///
    /// # Errors
    /// As [`Self::load_ema`]; every name and length is checked before anything is copied.
    pub fn load_tensors(
        &mut self,
        params: &[TensorRef<'_>],
        buffers: &[TensorRef<'_>],
    ) -> Result<(), EvalError> {
        {
            let expected: Vec<(String, usize)> = self
                .model
                .named_parameters()
                .into_iter()
                .map(|(name, p)| (name, p.value.len()))
                .collect();
            check_tensors("parameter", &expected, params)?;
            let expected: Vec<(String, usize)> = self
                .model
                .named_buffers()
                .into_iter()
                .map(|(name, b)| (name, b.len()))
                .collect();
            check_tensors("buffer", &expected, buffers)?;
        }
        for ((_, param), source) in self.model.named_parameters_mut().into_iter().zip(params) {
            param.value.copy_from_slice(source.values);
        }
        for ((_, buffer), source) in self.model.named_buffers_mut().into_iter().zip(buffers) {
            buffer.copy_from_slice(source.values);
        }
        Ok(())
    }

    /// Evaluates the loaded weights on `dataset`; see [`evaluate_model`].
    ///
    /// # Errors
    /// As [`evaluate_model`].
    pub fn evaluate(&mut self, dataset: &Dataset) -> Result<EvalMetrics, EvalError> {
        evaluate_model(
            &mut self.model,
            &self.pool,
            dataset,
            &self.table,
            self.batch_size,
        )
    }
}

/// Borrows owned named tensors as [`TensorRef`]s.
pub fn tensor_refs(tensors: &[(String, Vec<f32>)]) -> Vec<TensorRef<'_>> {
    tensors
        .iter()
        .map(|(name, values)| TensorRef { name, values })
        .collect()
}

fn check_tensors(
    kind: &'static str,
    expected: &[(String, usize)],
    actual: &[TensorRef<'_>],
) -> Result<(), EvalError> {
    if expected.len() != actual.len() {
        return Err(EvalError::CountMismatch {
            kind,
            expected: expected.len(),
            actual: actual.len(),
        });
    }
    for (index, ((name, len), tensor)) in expected.iter().zip(actual).enumerate() {
        if name != tensor.name || *len != tensor.values.len() {
            return Err(EvalError::TensorMismatch {
                kind,
                index,
                expected: name.clone(),
                expected_len: *len,
                actual: tensor.name.to_owned(),
                actual_len: tensor.values.len(),
            });
        }
    }
    Ok(())
}

#[cfg(test)]
#[path = "eval_tests.rs"]
mod tests;
