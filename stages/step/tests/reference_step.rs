//! Full training steps of a WideResNet-10-1 against the PyTorch reference fixtures written by
//! `tools/reference/nn_reference.py`: one CCSSL step (`step.safetensors`) and the same step as
//! plain FixMatch (`fixmatch_step.safetensors`), both from `step_weights.safetensors`.

#[path = "../../nn/tests/common/mod.rs"]
mod common;

use ccssl_nn::{WideResNet, WideResNetConfig};
use ccssl_step::{LossConfig, ModelConfig, OptimizerConfig, Step, StepBatch, StepConfig};
use common::{FORWARD_TOLERANCE, Fixture, GRADIENT_TOLERANCE, assert_close, fixture_path};

/// Builds the step settings recorded in a fixture's metadata. The default normalisation (CIFAR-10
/// mean/std, contrast view unnormalised) is the one the fixtures used.
fn config_of(fx: &Fixture) -> StepConfig {
    let meta = |key: &str| fx.meta_f64(key);
    assert_eq!(fx.meta("contrast_normalised"), "False");
    StepConfig {
        model: ModelConfig {
            depth: meta("depth") as usize,
            widen: meta("widen") as usize,
            proj_dim: meta("proj_dim") as usize,
            num_classes: meta("num_classes") as usize,
        },
        loss: LossConfig {
            threshold: meta("threshold") as f32,
            temperature: meta("temperature") as f32,
            lambda_u: meta("lambda_u") as f32,
            lambda_c: meta("lambda_c") as f32,
            ..LossConfig::default()
        },
        optimizer: OptimizerConfig {
            lr: meta("lr") as f32,
            momentum: meta("momentum") as f32,
            weight_decay: meta("weight_decay") as f32,
            ..OptimizerConfig::default()
        },
        total_steps: meta("total_steps") as u64,
        threads: 2,
        ..StepConfig::default()
    }
}

/// Builds a step at the fixture's schedule position, around the reference initial weights.
fn reference_step(fx: &Fixture) -> Step {
    let config = config_of(fx);
    let m = config.model;
    let wrn = WideResNetConfig {
        depth: m.depth,
        widen: m.widen,
        num_classes: m.num_classes,
        proj_dim: m.proj_dim,
    };
    let mut model = WideResNet::new(wrn, 0).unwrap();
    ccssl_nn::load_safetensors(&mut model, &fixture_path("step_weights")).unwrap();
    let mut step = Step::with_model(config, model).unwrap();
    step.set_steps_done(fx.meta_f64("step") as u64);
    step
}

/// The fixture's views; the FixMatch fixture reuses those of `step.safetensors`.
struct Views {
    side: usize,
    labeled: Vec<u8>,
    weak: Vec<u8>,
    strong: Vec<u8>,
    contrast: Vec<u8>,
    labels: Vec<u32>,
    truth: Vec<u32>,
}

impl Views {
    fn read() -> Self {
        let fx = Fixture::open("step");
        let (shape, labeled) = fx.bytes("images.labeled_weak");
        Self {
            side: shape[1],
            labeled,
            weak: fx.bytes("images.unlabeled_weak").1,
            strong: fx.bytes("images.unlabeled_strong").1,
            contrast: fx.bytes("images.unlabeled_contrast").1,
            labels: fx.labels("labels"),
            truth: fx.labels("unlabeled_true_labels"),
        }
    }

    fn batch(&self, with_contrast: bool) -> StepBatch<'_> {
        StepBatch {
            height: self.side,
            width: self.side,
            labeled_weak: &self.labeled,
            labels: &self.labels,
            unlabeled_weak: &self.weak,
            unlabeled_strong: &self.strong,
            unlabeled_contrast: if with_contrast { &self.contrast } else { &[] },
            unlabeled_true_labels: &self.truth,
        }
    }
}

fn parameter_values(step: &Step) -> Vec<(String, Vec<f32>)> {
    let params = step.model().named_parameters();
    params
        .into_iter()
        .map(|(n, p)| (n, p.value.clone()))
        .collect()
}

/// Compares the updated weights and the updates themselves with the fixture's `after.*`
/// tensors, because the weights alone would hide an update error behind the much larger
/// weights. Returns the number of parameters compared.
fn assert_updates_match(fx: &Fixture, step: &Step, initial: &[(String, Vec<f32>)]) -> usize {
    let stored = fx.names();
    let mut compared = 0;
    for ((name, param), (_, before)) in step.model().named_parameters().into_iter().zip(initial) {
        let key = format!("after.{name}");
        if !stored.contains(&key) {
            continue;
        }
        let expected = fx.f32(&key).data;
        assert_close(
            &format!("{name} after step"),
            &param.value,
            &expected,
            FORWARD_TOLERANCE,
        );
        let update: Vec<f32> = param.value.iter().zip(before).map(|(a, b)| a - b).collect();
        let expected: Vec<f32> = expected.iter().zip(before).map(|(a, b)| a - b).collect();
        assert_close(
            &format!("{name} update"),
            &update,
            &expected,
            GRADIENT_TOLERANCE,
        );
        compared += 1;
    }
    for (name, buffer) in step.model().named_buffers() {
        let expected = fx.f32(&format!("after.{name}")).data;
        assert_close(&name, buffer, &expected, FORWARD_TOLERANCE);
    }
    compared
}

#[test]
fn ccssl_step_matches_reference() {
    let fx = Fixture::open("step");
    let mut step = reference_step(&fx);
    let initial = parameter_values(&step);
    let views = Views::read();

    let metrics = step.train_step(&views.batch(true)).unwrap();

    for (name, value) in [
        ("loss", metrics.loss),
        ("loss_x", metrics.loss_x),
        ("loss_u", metrics.loss_u),
        ("loss_c", metrics.loss_c),
        ("mask_ratio", metrics.mask_ratio),
    ] {
        assert_close(name, &[value], &[fx.scalar(name)], FORWARD_TOLERANCE);
    }
    let accuracy = metrics
        .pseudo_label_accuracy
        .expect("true labels were given");
    let expected = fx.scalar("pseudo_label_accuracy");
    assert_close(
        "pseudo_label_accuracy",
        &[accuracy],
        &[expected],
        FORWARD_TOLERANCE,
    );
    assert_eq!(assert_updates_match(&fx, &step, &initial), initial.len());
}

#[test]
fn fixmatch_step_matches_reference() {
    let fx = Fixture::open("fixmatch_step");
    let mut step = reference_step(&fx);
    assert_eq!(step.config().loss.lambda_c, 0.0);
    let initial = parameter_values(&step);
    let views = Views::read();

    let metrics = step.train_step(&views.batch(false)).unwrap();

    assert_eq!(metrics.images, views.labels.len() + 2 * views.truth.len());
    assert_eq!(metrics.loss_c, 0.0);
    for (name, value) in [
        ("loss", metrics.loss),
        ("loss_x", metrics.loss_x),
        ("loss_u", metrics.loss_u),
        ("mask_ratio", metrics.mask_ratio),
    ] {
        assert_close(name, &[value], &[fx.scalar(name)], FORWARD_TOLERANCE);
    }
    assert!(
        metrics.mask_ratio > 0.0,
        "the fixture's threshold lets half the batch pass"
    );
    assert!(assert_updates_match(&fx, &step, &initial) >= 11);

    // The projection head has no gradient in FixMatch, so PyTorch's SGD does not touch it:
    // not even weight decay may move it.
    for ((name, param), (_, before)) in step.model().named_parameters().into_iter().zip(&initial) {
        if name.starts_with("fc1.") || name.starts_with("fc2.") {
            assert!(param.value == *before, "{name} changed");
        }
    }
}
