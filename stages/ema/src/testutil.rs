//! Shared test fixtures: a tiny WideResNet trained a few steps on synthetic data.

use ccssl_loader::{Dataset, Part, SyntheticSpec, generate_synthetic};
use ccssl_step::{LossConfig, ModelConfig, Step, StepBatch, StepConfig};

/// Classes of the synthetic fixture data.
pub const CLASSES: usize = 4;
/// Image side of the fixture data, in pixels.
pub const SIDE: u32 = 12;

/// Synthetic data small enough to train on in a test.
pub fn spec() -> SyntheticSpec {
    SyntheticSpec {
        classes: CLASSES,
        train_per_class: 24,
        test_per_class: 15,
        height: SIDE,
        width: SIDE,
        noise: 16,
        data_seed: 3,
    }
}

/// Train and test part of [`spec`].
pub fn data() -> (Dataset, Dataset) {
    (
        generate_synthetic(&spec(), Part::Train),
        generate_synthetic(&spec(), Part::Test),
    )
}

/// Returns the settings of a WideResNet-10-1 step with an 8-d projection, FixMatch loss (no contrast view) and a
/// learning rate large enough to learn the synthetic classes in a few dozen steps.
pub fn step_config(threads: usize) -> StepConfig {
    StepConfig {
        model: ModelConfig {
            depth: 10,
            widen: 1,
            proj_dim: 8,
            num_classes: CLASSES,
        },
        loss: LossConfig {
            lambda_c: 0.0,
            ..LossConfig::default()
        },
        total_steps: 200,
        threads,
        ..StepConfig::default()
    }
}

/// Labeled images per step.
pub const BATCH: usize = 16;

/// Runs step `k` of a fixed batch sequence over `train`: labeled images `k * B ..` (wrapping)
/// and the next `B` images as the unlabeled weak and strong views.
pub fn run_step(step: &mut Step, train: &Dataset, k: usize) {
    let image = train.image_bytes();
    let pick = |start: usize| -> (Vec<u8>, Vec<u32>) {
        let mut images = Vec::with_capacity(BATCH * image);
        let mut labels = Vec::with_capacity(BATCH);
        for i in 0..BATCH {
            let index = (start + i * 7) % train.len();
            images.extend_from_slice(train.image(index));
            labels.push(train.labels[index]);
        }
        (images, labels)
    };
    let (labeled, labels) = pick(k * BATCH);
    let (unlabeled, truth) = pick(k * BATCH + 3);
    let batch = StepBatch {
        height: train.height as usize,
        width: train.width as usize,
        labeled_weak: &labeled,
        labels: &labels,
        unlabeled_weak: &unlabeled,
        unlabeled_strong: &unlabeled,
        unlabeled_contrast: &[],
        unlabeled_true_labels: &truth,
    };
    step.train_step(&batch).expect("fixture step");
}

/// Builds a step from seed 5 and trains it `steps` steps.
pub fn trained_step(steps: usize, threads: usize) -> Step {
    let (train, _) = data();
    let mut step = Step::new(step_config(threads), 5).expect("fixture step config");
    for k in 0..steps {
        run_step(&mut step, &train, k);
    }
    step
}

/// Builds an EMA of `step`'s model that starts as a copy of it.
pub fn ema_of(step: &Step, decay: f32) -> crate::Ema {
    let (params, buffers) = crate::ema::copy_model_tensors(step.model());
    crate::Ema::from_parts(decay, params, buffers).expect("fixture decay")
}

/// Folds the current weights of `step`'s model into `ema`.
pub fn update_ema(ema: &mut crate::Ema, step: &Step) {
    let (params, buffers) = crate::ema::copy_model_tensors(step.model());
    ema.update(&crate::tensor_refs(&params), &crate::tensor_refs(&buffers))
        .expect("fixture EMA update");
}

/// Returns the `state.ron` contents of a checkpoint of `step` trained on the fixture data.
pub fn state_of(step: &Step, ema: &crate::Ema) -> crate::CheckpointState {
    crate::CheckpointState {
        format: crate::checkpoint::STATE_FORMAT,
        step: step.steps_done(),
        total_steps: step.config().total_steps,
        seed: 5,
        graph_hash: "fixture".into(),
        best_top1: None,
        best_step: None,
        step_config: step.config().clone(),
        next_lr: step.learning_rate(),
        ema_decay: ema.decay(),
        dataset: ccssl_loader::DatasetConfig::synthetic(&spec()),
        class_names: (0..CLASSES).map(|c| format!("pattern-{c}")).collect(),
        image_height: SIDE,
        image_width: SIDE,
        files: Vec::new(),
    }
}

/// Writes a checkpoint of `step` and `ema` under `run_dir` and returns its directory.
pub fn write_checkpoint(
    run_dir: &std::path::Path,
    step: &Step,
    ema: &crate::Ema,
) -> std::path::PathBuf {
    let files = crate::CheckpointFiles::build(step.model(), ema, step.optimizer())
        .expect("fixture checkpoint files");
    let checkpoints = crate::Checkpoints::new(run_dir, 3).expect("fixture checkpoints dir");
    checkpoints
        .write(state_of(step, ema), &files.named(), true)
        .expect("fixture checkpoint")
}
