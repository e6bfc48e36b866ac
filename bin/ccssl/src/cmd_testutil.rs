//! A checkpoint of a tiny model on synthetic data, written by the checkpoint code, for the
//! `eval` and `predict` command tests.

use std::path::{Path, PathBuf};

use ccssl_ema::{CheckpointFiles, CheckpointState, Checkpoints, Ema, tensor_refs};
use ccssl_loader::{DatasetConfig, Part, SyntheticSpec, generate_synthetic};
use ccssl_step::{LossConfig, ModelConfig, Step, StepBatch, StepConfig};

/// Classes of the fixture data.
pub const CLASSES: usize = 6;

pub fn spec() -> SyntheticSpec {
    SyntheticSpec {
        classes: CLASSES,
        train_per_class: 8,
        test_per_class: 5,
        height: 10,
        width: 10,
        noise: 16,
        data_seed: 4,
    }
}

/// Named flat tensors, as [`Ema`] stores them.
type Named = Vec<(String, Vec<f32>)>;

/// Returns the parameters and running statistics of `step`'s model.
fn named(step: &Step) -> (Named, Named) {
    let params = step
        .model()
        .named_parameters()
        .into_iter()
        .map(|(name, param)| (name, param.value.clone()))
        .collect();
    let buffers = step
        .model()
        .named_buffers()
        .into_iter()
        .map(|(name, values)| (name, values.to_vec()))
        .collect();
    (params, buffers)
}

/// Writes one checkpoint of a WideResNet-10-1 trained `steps` steps on the fixture data into
/// `run_dir`, recording `dataset` as the run's dataset (default: the fixture data). Returns the
/// checkpoint directory, the EMA and the step that were saved in it.
pub fn write_run(
    run_dir: &Path,
    steps: usize,
    dataset: Option<DatasetConfig>,
) -> (PathBuf, Ema, Step) {
    let config = StepConfig {
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
        total_steps: 100,
        threads: 1,
        ..StepConfig::default()
    };
    let train = generate_synthetic(&spec(), Part::Train);
    let mut step = Step::new(config, 9).unwrap();
    let (params, buffers) = named(&step);
    let mut ema = Ema::from_parts(0.5, params, buffers).unwrap();
    let image = train.image_bytes();
    for k in 0..steps {
        let start = (k * 8) % train.len();
        let indices: Vec<usize> = (0..8).map(|i| (start + i) % train.len()).collect();
        let images: Vec<u8> = indices
            .iter()
            .flat_map(|&i| train.image(i).to_vec())
            .collect();
        let labels: Vec<u32> = indices.iter().map(|&i| train.labels[i]).collect();
        assert_eq!(images.len(), 8 * image);
        let batch = StepBatch {
            height: 10,
            width: 10,
            labeled_weak: &images,
            labels: &labels,
            unlabeled_weak: &images,
            unlabeled_strong: &images,
            unlabeled_contrast: &[],
            unlabeled_true_labels: &labels,
        };
        step.train_step(&batch).unwrap();
        let (params, buffers) = named(&step);
        ema.update(&tensor_refs(&params), &tensor_refs(&buffers))
            .unwrap();
    }
    let state = CheckpointState {
        format: ccssl_ema::checkpoint::STATE_FORMAT,
        step: step.steps_done(),
        total_steps: 100,
        seed: 9,
        graph_hash: "fixture".into(),
        best_top1: None,
        best_step: None,
        step_config: step.config().clone(),
        next_lr: step.learning_rate(),
        ema_decay: ema.decay(),
        dataset: dataset.unwrap_or_else(|| DatasetConfig::synthetic(&spec())),
        class_names: (0..CLASSES).map(|c| format!("pattern-{c}")).collect(),
        image_height: 10,
        image_width: 10,
        files: Vec::new(),
    };
    let files = CheckpointFiles::build(step.model(), &ema, step.optimizer()).unwrap();
    let dir = Checkpoints::new(run_dir, 2)
        .unwrap()
        .write(state, &files.named(), true)
        .unwrap();
    (dir, ema, step)
}
