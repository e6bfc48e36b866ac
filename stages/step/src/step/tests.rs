use super::*;
use crate::{LossConfig, ModelConfig};

const SIDE: usize = 8;
const IMAGE: usize = SIDE * SIDE * CHANNELS;

/// Deterministic pseudo-random bytes from a 64-bit LCG.
fn bytes(count: usize, seed: u64) -> Vec<u8> {
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

struct Views {
    labeled: Vec<u8>,
    labels: Vec<u32>,
    weak: Vec<u8>,
    strong: Vec<u8>,
    contrast: Vec<u8>,
    truth: Vec<u32>,
}

impl Views {
    fn new(b: usize, n: usize) -> Self {
        Self {
            labeled: bytes(b * IMAGE, 1),
            labels: (0..b as u32).map(|i| i % 10).collect(),
            weak: bytes(n * IMAGE, 2),
            strong: bytes(n * IMAGE, 3),
            contrast: bytes(n * IMAGE, 4),
            truth: (0..n as u32).map(|i| (i * 3) % 10).collect(),
        }
    }

    fn batch(&self) -> StepBatch<'_> {
        StepBatch {
            height: SIDE,
            width: SIDE,
            labeled_weak: &self.labeled,
            labels: &self.labels,
            unlabeled_weak: &self.weak,
            unlabeled_strong: &self.strong,
            unlabeled_contrast: &self.contrast,
            unlabeled_true_labels: &self.truth,
        }
    }
}

fn tiny_config() -> StepConfig {
    StepConfig {
        model: ModelConfig {
            depth: 10,
            widen: 1,
            proj_dim: 16,
            num_classes: 10,
        },
        total_steps: 100,
        threads: 2,
        ..StepConfig::default()
    }
}

fn fixmatch_config() -> StepConfig {
    let mut config = tiny_config();
    config.loss.lambda_c = 0.0;
    config
}

#[test]
fn repeated_steps_reduce_loss_on_fixed_batch() {
    let views = Views::new(4, 8);
    let mut config = tiny_config();
    config.optimizer.lr = 0.05;
    let mut step = Step::new(config, 7).unwrap();
    let first = step.train_step(&views.batch()).unwrap();
    let mut last = first;
    for _ in 0..9 {
        last = step.train_step(&views.batch()).unwrap();
    }
    assert_eq!(last.step, 9);
    assert!(first.loss.is_finite(), "first loss {}", first.loss);
    assert!(last.loss.is_finite(), "last loss {}", last.loss);
    assert!(
        last.loss < 0.8 * first.loss,
        "loss went from {} to {}",
        first.loss,
        last.loss
    );
    assert!(
        last.loss_x < first.loss_x,
        "Lx {} -> {}",
        first.loss_x,
        last.loss_x
    );
    assert!(
        last.loss_c < first.loss_c,
        "Lc {} -> {}",
        first.loss_c,
        last.loss_c
    );
}

#[test]
fn fixmatch_runs_without_contrast_view() {
    let mut views = Views::new(2, 4);
    views.contrast.clear();
    let mut step = Step::new(fixmatch_config(), 1).unwrap();
    let metrics = step.train_step(&views.batch()).unwrap();
    assert_eq!(metrics.images, 2 + 2 * 4);
    assert_eq!(metrics.loss_c, 0.0);
    assert!((metrics.loss - metrics.loss_x - metrics.loss_u).abs() < 1e-6);
}

#[test]
fn zero_lambda_c_reports_but_ignores_contrast() {
    let views = Views::new(2, 4);
    let mut step = Step::new(fixmatch_config(), 1).unwrap();
    let metrics = step.train_step(&views.batch()).unwrap();
    assert_eq!(metrics.images, 2 + 3 * 4);
    assert!(metrics.loss_c > 0.0);
    assert!((metrics.loss - metrics.loss_x - metrics.loss_u).abs() < 1e-6);
}

#[test]
fn weighted_contrast_needs_contrast_view() {
    let mut views = Views::new(2, 4);
    views.contrast.clear();
    let mut step = Step::new(tiny_config(), 1).unwrap();
    let err = step.train_step(&views.batch()).unwrap_err();
    assert!(matches!(err, StepError::MissingContrastView { lambda_c } if lambda_c == 1.0));
    assert_eq!(step.steps_done(), 0);
}

#[test]
fn mismatched_buffers_are_rejected() {
    let mut step = Step::new(tiny_config(), 1).unwrap();
    let mut views = Views::new(2, 4);
    views.strong.truncate(3 * IMAGE);
    let err = step.train_step(&views.batch()).unwrap_err();
    let StepError::Batch {
        what,
        expected,
        actual,
    } = err
    else {
        panic!("unexpected error {err}");
    };
    assert_eq!(
        (what, expected, actual),
        ("unlabeled_strong", 4 * IMAGE, 3 * IMAGE)
    );

    let mut views = Views::new(2, 4);
    views.labels.push(1);
    let err = step.train_step(&views.batch()).unwrap_err();
    assert!(
        matches!(
            err,
            StepError::Batch {
                what: "labeled_weak",
                ..
            }
        ),
        "{err}"
    );

    let mut views = Views::new(2, 4);
    views.labels[0] = 10;
    let err = step.train_step(&views.batch()).unwrap_err();
    assert!(err.to_string().contains("num_classes = 10"), "{err}");

    let mut views = Views::new(2, 4);
    views.truth.pop();
    let err = step.train_step(&views.batch()).unwrap_err();
    assert!(err.to_string().contains("unlabeled_true_labels"), "{err}");
}

#[test]
fn pseudo_label_accuracy_needs_true_labels() {
    let mut views = Views::new(2, 4);
    views.truth.clear();
    let mut step = Step::new(tiny_config(), 1).unwrap();
    let metrics = step.train_step(&views.batch()).unwrap();
    assert_eq!(metrics.pseudo_label_accuracy, None);
    assert_eq!(
        pseudo_label_accuracy(&[1, 2, 3], &[1.0, 1.0, 0.0], &[1, 0, 3]),
        Some(0.5)
    );
    assert_eq!(
        pseudo_label_accuracy(&[1, 2], &[0.0, 0.0], &[1, 2]),
        Some(0.0)
    );
}

#[test]
fn results_do_not_depend_on_thread_count() {
    let views = Views::new(2, 4);
    let mut one = tiny_config();
    one.threads = 1;
    let mut results = Vec::new();
    for config in [one, tiny_config()] {
        let mut step = Step::new(config, 3).unwrap();
        step.train_step(&views.batch()).unwrap();
        let metrics = step.train_step(&views.batch()).unwrap();
        let weights: Vec<f32> = step
            .model()
            .named_parameters()
            .into_iter()
            .flat_map(|(_, p)| p.value.clone())
            .collect();
        results.push((metrics.loss, weights));
    }
    assert_eq!(
        results[0].0, results[1].0,
        "loss differs between 1 and 2 threads"
    );
    assert!(
        results[0].1 == results[1].1,
        "weights differ between 1 and 2 threads"
    );
}

#[test]
fn learning_rate_follows_cosine_schedule() {
    let mut step = Step::new(tiny_config(), 1).unwrap();
    assert_eq!(step.learning_rate(), 0.03);
    step.set_steps_done(50);
    let expected = 0.03 * (7.0 * std::f64::consts::PI * 50.0 / (16.0 * 100.0)).cos();
    assert!((f64::from(step.learning_rate()) - expected).abs() < 1e-7);
}

#[test]
fn invalid_settings_are_rejected() {
    type Change = fn(&mut StepConfig);
    let cases: [(&str, Change); 6] = [
        ("threads", |c| c.threads = 0),
        ("optimizer.momentum", |c| c.optimizer.momentum = 1.0),
        ("optimizer.lr", |c| c.optimizer.lr = f32::NAN),
        ("loss.lambda_c", |c| c.loss.lambda_c = -1.0),
        ("total_steps", |c| c.total_steps = 0),
        ("normalization.weak", |c| {
            c.normalization.weak = ViewNorm::MeanStd {
                mean: [0.5; 3],
                std: [0.0; 3],
            }
        }),
    ];
    for (name, change) in cases {
        let mut config = tiny_config();
        change(&mut config);
        let err = Step::new(config, 1)
            .err()
            .expect("invalid setting accepted");
        assert!(err.to_string().contains(name), "{name}: {err}");
    }
    let mut config = tiny_config();
    config.model.depth = 12;
    assert!(Step::new(config, 1).is_err());
    config = tiny_config();
    config.loss = LossConfig {
        temperature: 0.0,
        ..LossConfig::default()
    };
    assert!(Step::new(config, 1).is_err());
}

#[test]
fn model_of_another_size_is_rejected() {
    let other = WideResNet::new(
        WideResNetConfig {
            depth: 10,
            widen: 2,
            num_classes: 10,
            proj_dim: 16,
        },
        0,
    )
    .unwrap();
    let err = Step::with_model(tiny_config(), other).err().unwrap();
    assert!(err.to_string().contains("model"), "{err}");
}

#[test]
fn view_batch_converts_to_step_batch() {
    let views = Views::new(2, 4);
    let view_batch = ViewBatch {
        seq: 5,
        seed: 9,
        height: SIDE as u32,
        width: SIDE as u32,
        labeled_weak: views.labeled.clone(),
        labels: views.labels.clone(),
        labeled_indices: vec![0, 1],
        unlabeled_weak: views.weak.clone(),
        unlabeled_strong: views.strong.clone(),
        unlabeled_contrast: views.contrast.clone(),
        unlabeled_true_labels: views.truth.clone(),
        unlabeled_indices: vec![0, 1, 2, 3],
    };
    let batch = StepBatch::from_view_batch(&view_batch);
    assert_eq!((batch.height, batch.width), (SIDE, SIDE));
    assert_eq!(batch.labels, &views.labels[..]);
    assert_eq!(batch.unlabeled_contrast, &views.contrast[..]);
    assert_eq!(batch.unlabeled_true_labels, &views.truth[..]);

    let mut step = Step::new(tiny_config(), 1).unwrap();
    let metrics = step.train_step(&batch).unwrap();
    assert_eq!(metrics.images, 2 + 3 * 4);
}
