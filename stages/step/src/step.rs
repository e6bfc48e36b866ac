//! [`Step`]: the model, optimizer and losses of one training process, and the CCSSL update.

use ccssl_nn::loss::{
    ContrastAnchors, SoftSupConConfig, SoftSupConLoss, pseudo_labels, softmax_cross_entropy,
};
use ccssl_nn::{Sgd, SgdConfig, Tensor, ThreadPool, WideResNet, WideResNetConfig};
use ccssl_pipe::batch::{CHANNELS, ViewBatch};

use crate::input::ViewTable;
use crate::{ContrastMode, StepConfig, StepError, ViewNorm};

/// One step's views, borrowed. Images are `u8` RGB in HWC order, `height x width` each.
#[derive(Clone, Copy, Debug, Default)]
pub struct StepBatch<'a> {
    /// Image height in pixels.
    pub height: usize,
    /// Image width in pixels.
    pub width: usize,
    /// Weak view of each labeled image.
    pub labeled_weak: &'a [u8],
    /// Class of each labeled image; its length is the labeled batch size `B`.
    pub labels: &'a [u32],
    /// Weak view of each of the `N` unlabeled images.
    pub unlabeled_weak: &'a [u8],
    /// Strong view of each unlabeled image.
    pub unlabeled_strong: &'a [u8],
    /// Contrast view of each unlabeled image, or empty when the contrast view is off.
    pub unlabeled_contrast: &'a [u8],
    /// True class of each unlabeled image, or empty when unknown; used only for the reported
    /// pseudo-label accuracy.
    pub unlabeled_true_labels: &'a [u32],
}

impl<'a> StepBatch<'a> {
    /// Borrows the views of a batch as the augmenter emits it.
    pub fn from_view_batch(batch: &'a ViewBatch) -> Self {
        Self {
            height: batch.height as usize,
            width: batch.width as usize,
            labeled_weak: &batch.labeled_weak,
            labels: &batch.labels,
            unlabeled_weak: &batch.unlabeled_weak,
            unlabeled_strong: &batch.unlabeled_strong,
            unlabeled_contrast: &batch.unlabeled_contrast,
            unlabeled_true_labels: &batch.unlabeled_true_labels,
        }
    }
}

/// Losses and statistics of one training step.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct StepMetrics {
    /// Index of the step just taken, counted from 0.
    pub step: u64,
    /// Learning rate the update used.
    pub lr: f32,
    /// `loss_x + lambda_u * loss_u + lambda_c * loss_c`.
    pub loss: f32,
    /// Cross-entropy of the labeled images.
    pub loss_x: f32,
    /// Masked cross-entropy of the strong views against the pseudo-labels, averaged over all
    /// unlabeled images.
    pub loss_u: f32,
    /// Soft supervised-contrastive loss of the strong and contrast views; 0 without a
    /// contrast view.
    pub loss_c: f32,
    /// Fraction of unlabeled images whose confidence reaches the threshold.
    pub mask_ratio: f32,
    /// Fraction of the confident pseudo-labels that equal the true labels (denominator at
    /// least 1, as in the reference trainer), or `None` without true labels.
    pub pseudo_label_accuracy: Option<f32>,
    /// Images that went through the model.
    pub images: usize,
}

/// The training state of one step process: model, optimizer, losses and reused buffers.
pub struct Step {
    config: StepConfig,
    model: WideResNet,
    sgd: Sgd,
    pool: ThreadPool,
    supcon: SoftSupConLoss,
    /// Tables of the labeled, weak, strong and contrast views, in that order.
    tables: [ViewTable; 4],
    steps_done: u64,
    input: Tensor,
    d_logits: Tensor,
    d_projections: Tensor,
}

impl Step {
    /// Builds a model initialised from `seed`, the optimizer and the losses.
    ///
    /// # Errors
    /// [`StepError::Config`] or [`StepError::Nn`] for an invalid setting.
    pub fn new(config: StepConfig, seed: u64) -> Result<Self, StepError> {
        validate(&config)?;
        let model = WideResNet::new(model_config(&config), seed)?;
        Self::with_model(config, model)
    }

    /// Builds the step around an existing model, e.g. one loaded from a checkpoint.
    ///
    /// # Errors
    /// [`StepError::Config`] for an invalid setting or a model whose size differs from
    /// `config.model`.
    pub fn with_model(config: StepConfig, model: WideResNet) -> Result<Self, StepError> {
        validate(&config)?;
        if *model.config() != model_config(&config) {
            return Err(StepError::Config {
                name: "model",
                value: format!("{:?}", model.config()),
                reason: format!("the step is configured for {:?}", config.model),
            });
        }
        let pool = ThreadPool::new(config.threads)?;
        let anchors = match config.loss.contrast {
            ContrastMode::All => ContrastAnchors::All,
            ContrastMode::WithThresh(t) => ContrastAnchors::Threshold(t),
            ContrastMode::LeftOut(t) => ContrastAnchors::LeftOut(t),
        };
        let supcon = SoftSupConLoss::new(SoftSupConConfig {
            temperature: config.loss.temperature,
            base_temperature: config.loss.base_temperature,
            anchors,
        })?;
        let opt = &config.optimizer;
        let sgd = Sgd::new(SgdConfig {
            momentum: opt.momentum,
            nesterov: opt.nesterov,
            weight_decay: opt.weight_decay,
            no_decay: vec!["bias".into(), "bn".into()],
        });
        let norm = &config.normalization;
        let tables = [norm.labeled, norm.weak, norm.strong, norm.contrast].map(ViewTable::new);
        tracing::debug!(threads = config.threads, model = ?config.model, "training step ready");
        Ok(Self {
            config,
            model,
            sgd,
            pool,
            supcon,
            tables,
            steps_done: 0,
            input: Tensor::default(),
            d_logits: Tensor::default(),
            d_projections: Tensor::default(),
        })
    }

    /// Returns the settings.
    pub fn config(&self) -> &StepConfig {
        &self.config
    }

    /// Returns the model being trained.
    pub fn model(&self) -> &WideResNet {
        &self.model
    }

    /// Returns the model being trained, mutably (loading weights, profiling).
    pub fn model_mut(&mut self) -> &mut WideResNet {
        &mut self.model
    }

    /// Returns the optimizer, with its momentum buffers.
    pub fn optimizer(&self) -> &Sgd {
        &self.sgd
    }

    /// Returns the optimizer, mutably (restoring momentum buffers on resume).
    pub fn optimizer_mut(&mut self) -> &mut Sgd {
        &mut self.sgd
    }

    /// Returns the thread pool every step runs on.
    pub fn thread_pool(&self) -> &ThreadPool {
        &self.pool
    }

    /// Number of steps taken; the next step uses this index in the learning-rate schedule.
    pub fn steps_done(&self) -> u64 {
        self.steps_done
    }

    /// Sets the number of steps taken, when resuming a run.
    pub fn set_steps_done(&mut self, steps: u64) {
        self.steps_done = steps;
    }

    /// Learning rate of the next step: the base rate times the cosine schedule factor.
    pub fn learning_rate(&self) -> f32 {
        let opt = &self.config.optimizer;
        let factor =
            ccssl_nn::cosine_lr_factor(self.steps_done, self.config.total_steps, opt.warmup_steps);
        (f64::from(opt.lr) * factor) as f32
    }

    /// Runs one CCSSL step on `batch` and updates the model.
    ///
    /// The model receives `[labeled weak; unlabeled weak; unlabeled strong; unlabeled contrast]`
    /// in one forward pass (the contrast part only when present). Pseudo-labels come from the
    /// softmax of the weak-view logits of this model, detached from the gradient. With
    /// `lambda_c = 0` the projection head is not updated at all, as in PyTorch when `Lc` is
    /// left out of the loss.
    ///
    /// NOTE: the official trainer with a contrast view and `lambda_contrast = 0` adds `0 * Lc`.
    /// That gives the head zero gradients, so PyTorch still weight-decays it. This step does not.
    ///
    /// # Errors
    /// [`StepError::Batch`] for buffers that do not match the counts and image size,
    /// [`StepError::MissingContrastView`] when `lambda_c != 0` and the batch has no contrast
    /// view, and [`StepError::Nn`] when the engine fails.
    pub fn train_step(&mut self, batch: &StepBatch<'_>) -> Result<StepMetrics, StepError> {
        let (b, n) = self.check_batch(batch)?;
        let has_contrast = !batch.unlabeled_contrast.is_empty();
        let loss_config = self.config.loss;
        if !has_contrast && loss_config.lambda_c != 0.0 {
            return Err(StepError::MissingContrastView {
                lambda_c: loss_config.lambda_c,
            });
        }
        let total = b + n * if has_contrast { 3 } else { 2 };
        self.fill_input(batch, total);

        let out = self.model.forward_train(&self.pool, &self.input)?;
        let (classes, dim) = (self.config.model.num_classes, self.config.model.proj_dim);
        let logits = out.logits.data();
        let weak = &logits[b * classes..(b + n) * classes];
        let pseudo = pseudo_labels(
            weak,
            classes,
            loss_config.pseudo_temperature,
            loss_config.threshold,
        )?;

        self.d_logits.resize(&[total, classes]);
        self.d_logits.data_mut().fill(0.0);
        let (d_labeled, d_unlabeled) = self.d_logits.data_mut().split_at_mut(b * classes);
        let loss_x = softmax_cross_entropy(
            &logits[..b * classes],
            classes,
            batch.labels,
            None,
            Some(d_labeled),
            1.0,
        )?;
        let strong = (b + n) * classes..(b + 2 * n) * classes;
        let loss_u = softmax_cross_entropy(
            &logits[strong],
            classes,
            &pseudo.labels,
            Some(&pseudo.mask),
            Some(&mut d_unlabeled[n * classes..2 * n * classes]),
            loss_config.lambda_u,
        )?;

        self.d_projections.resize(&[total, dim]);
        self.d_projections.data_mut().fill(0.0);
        let mut loss_c = 0.0;
        if has_contrast {
            // Strong and contrast rows are adjacent, which is the view-major layout the loss
            // expects: row v * n + i is view v of unlabeled image i.
            let rows = (b + n) * dim..(b + 3 * n) * dim;
            let grad = (loss_config.lambda_c != 0.0)
                .then(|| &mut self.d_projections.data_mut()[rows.clone()]);
            loss_c = self.supcon.forward_backward(
                &out.projections.data()[rows],
                2,
                dim,
                &pseudo.labels,
                &pseudo.max_probs,
                grad,
                loss_config.lambda_c,
            )?;
        }

        self.model
            .backward(&self.pool, &self.d_logits, &self.d_projections)?;
        let lr = self.learning_rate();
        // Without the contrastive term the projection head takes no part in the loss. PyTorch
        // then leaves its gradient as None and SGD skips it (no weight decay, no momentum), so
        // the head is left out of the update here too.
        let update_head = loss_config.lambda_c != 0.0;
        let params = self
            .model
            .named_parameters_mut()
            .into_iter()
            .filter(|(name, _)| update_head || !is_projection_head(name));
        self.sgd.step(params, lr)?;

        let metrics = StepMetrics {
            step: self.steps_done,
            lr,
            loss: loss_x + loss_config.lambda_u * loss_u + loss_config.lambda_c * loss_c,
            loss_x,
            loss_u,
            loss_c,
            mask_ratio: pseudo.mask_ratio(),
            pseudo_label_accuracy: pseudo_label_accuracy(
                &pseudo.labels,
                &pseudo.mask,
                batch.unlabeled_true_labels,
            ),
            images: total,
        };
        self.steps_done += 1;
        tracing::trace!(?metrics, "training step done");
        Ok(metrics)
    }

    /// Returns `(B, N)` after checking every buffer of `batch` against them.
    fn check_batch(&self, batch: &StepBatch<'_>) -> Result<(usize, usize), StepError> {
        let image = batch.height * batch.width * CHANNELS;
        if image == 0 {
            return Err(StepError::Config {
                name: "batch image size",
                value: format!("{}x{}", batch.height, batch.width),
                reason: "images need at least one pixel".into(),
            });
        }
        let b = batch.labels.len();
        let n = batch.unlabeled_weak.len() / image;
        let expect = |what, actual: usize, expected: usize| {
            if actual == expected {
                Ok(())
            } else {
                Err(StepError::Batch {
                    what,
                    expected,
                    actual,
                })
            }
        };

        expect("labeled_weak", batch.labeled_weak.len(), b * image)?;
        expect("unlabeled_weak", batch.unlabeled_weak.len(), n * image)?;
        expect("unlabeled_strong", batch.unlabeled_strong.len(), n * image)?;
        if !batch.unlabeled_contrast.is_empty() {
            expect(
                "unlabeled_contrast",
                batch.unlabeled_contrast.len(),
                n * image,
            )?;
        }
        if !batch.unlabeled_true_labels.is_empty() {
            expect(
                "unlabeled_true_labels",
                batch.unlabeled_true_labels.len(),
                n,
            )?;
        }

        let classes = self.config.model.num_classes;
        if let Some(&label) = batch.labels.iter().find(|&&l| l as usize >= classes) {
            return Err(StepError::Config {
                name: "batch label",
                value: label.to_string(),
                reason: format!("labels must be below num_classes = {classes}"),
            });
        }
        if b + n == 0 {
            return Err(StepError::Batch {
                what: "labels and unlabeled_weak",
                expected: 1,
                actual: 0,
            });
        }
        Ok((b, n))
    }

    /// Writes the normalised views, in forward order, into the input tensor.
    fn fill_input(&mut self, batch: &StepBatch<'_>, total: usize) {
        let (h, w) = (batch.height, batch.width);
        self.input.resize(&[total, CHANNELS, h, w]);
        let views = [
            batch.labeled_weak,
            batch.unlabeled_weak,
            batch.unlabeled_strong,
            batch.unlabeled_contrast,
        ];
        let mut rest = self.input.data_mut();
        for (images, table) in views.iter().zip(&self.tables) {
            let (head, tail) = rest.split_at_mut(images.len());
            table.write_nchw(images, h, w, head);
            rest = tail;
        }
    }
}

/// Returns whether a parameter belongs to the projection head `fc1 -> LeakyReLU -> fc2`.
fn is_projection_head(name: &str) -> bool {
    name.starts_with("fc1.") || name.starts_with("fc2.")
}

/// Correct confident pseudo-labels over `max(confident count, 1)`, as the reference trainer
/// reports it; `None` without true labels.
fn pseudo_label_accuracy(labels: &[u32], mask: &[f32], truth: &[u32]) -> Option<f32> {
    if truth.is_empty() {
        return None;
    }
    let mut correct = 0.0;
    for ((&label, &m), &t) in labels.iter().zip(mask).zip(truth) {
        if label == t {
            correct += m;
        }
    }
    let confident: f32 = mask.iter().sum();
    Some(correct / confident.max(1.0))
}

fn model_config(config: &StepConfig) -> WideResNetConfig {
    WideResNetConfig {
        depth: config.model.depth,
        widen: config.model.widen,
        num_classes: config.model.num_classes,
        proj_dim: config.model.proj_dim,
    }
}

/// Checks the settings that the engine does not check itself.
fn validate(config: &StepConfig) -> Result<(), StepError> {
    let invalid = |name: &'static str, value: String, reason: &str| {
        Err(StepError::Config {
            name,
            value,
            reason: reason.into(),
        })
    };

    let loss = &config.loss;
    let opt = &config.optimizer;
    let finite_non_negative = [
        ("loss.lambda_u", loss.lambda_u),
        ("loss.lambda_c", loss.lambda_c),
        ("optimizer.lr", opt.lr),
        ("optimizer.weight_decay", opt.weight_decay),
    ];
    for (name, value) in finite_non_negative {
        if !(value.is_finite() && value >= 0.0) {
            return invalid(name, value.to_string(), "use a finite number >= 0");
        }
    }
    if !loss.threshold.is_finite() {
        return invalid(
            "loss.threshold",
            loss.threshold.to_string(),
            "use a number in [0, 1]",
        );
    }
    if !(opt.momentum.is_finite() && (0.0..1.0).contains(&opt.momentum)) {
        return invalid(
            "optimizer.momentum",
            opt.momentum.to_string(),
            "use a number in [0, 1)",
        );
    }
    if config.total_steps == 0 {
        return invalid("total_steps", "0".into(), "use at least 1 step");
    }
    if config.threads == 0 {
        return invalid("threads", "0".into(), "use at least 1 thread");
    }

    let norm = &config.normalization;
    for (name, view) in [
        ("normalization.labeled", norm.labeled),
        ("normalization.weak", norm.weak),
        ("normalization.strong", norm.strong),
        ("normalization.contrast", norm.contrast),
    ] {
        if let ViewNorm::MeanStd { mean, std } = view
            && !(mean.iter().all(|m| m.is_finite())
                && std.iter().all(|s| s.is_finite() && *s > 0.0))
        {
            return invalid(name, format!("{view:?}"), "use finite means and std > 0");
        }
    }
    // The loss constructors check the temperatures and the contrast threshold; checking them
    // here too gives the error the setting's path.
    if !(loss.pseudo_temperature.is_finite() && loss.pseudo_temperature > 0.0) {
        return invalid(
            "loss.pseudo_temperature",
            loss.pseudo_temperature.to_string(),
            "use a number > 0",
        );
    }
    model_config(config).validate()?;
    Ok(())
}

#[cfg(test)]
mod tests;
