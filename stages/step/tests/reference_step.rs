//! One full CCSSL step of a WideResNet-10-1 against the PyTorch reference fixture
//! `step.safetensors` (initial weights `step_weights.safetensors`), both written by
//! `tools/reference/nn_reference.py`.

#[path = "../../nn/tests/common/mod.rs"]
mod common;

use ccssl_nn::{WideResNet, WideResNetConfig};
use ccssl_step::{LossConfig, ModelConfig, OptimizerConfig, Step, StepBatch, StepConfig};
use common::{FORWARD_TOLERANCE, Fixture, GRADIENT_TOLERANCE, assert_close, fixture_path};

#[test]
fn ccssl_step_matches_reference() {
    let fx = Fixture::open("step");
    let meta = |key: &str| fx.meta_f64(key);
    assert_eq!(fx.meta("contrast_normalised"), "False");
    let model_config = ModelConfig {
        depth: meta("depth") as usize,
        widen: meta("widen") as usize,
        proj_dim: meta("proj_dim") as usize,
        num_classes: meta("num_classes") as usize,
    };
    let config = StepConfig {
        model: model_config,
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
        // The default normalisation (CIFAR-10 mean/std, contrast view unnormalised) is the
        // one the fixture used.
        ..StepConfig::default()
    };
    let mut model = WideResNet::new(
        WideResNetConfig {
            depth: model_config.depth,
            widen: model_config.widen,
            num_classes: model_config.num_classes,
            proj_dim: model_config.proj_dim,
        },
        0,
    )
    .unwrap();
    ccssl_nn::load_safetensors(&mut model, &fixture_path("step_weights")).unwrap();
    let initial: Vec<Vec<f32>> = model
        .named_parameters()
        .into_iter()
        .map(|(_, p)| p.value.clone())
        .collect();
    let mut step = Step::with_model(config, model).unwrap();
    step.set_steps_done(meta("step") as u64);

    let (shape, labeled) = fx.bytes("images.labeled_weak");
    let (_, weak) = fx.bytes("images.unlabeled_weak");
    let (_, strong) = fx.bytes("images.unlabeled_strong");
    let (_, contrast) = fx.bytes("images.unlabeled_contrast");
    let labels = fx.labels("labels");
    let truth = fx.labels("unlabeled_true_labels");
    let batch = StepBatch {
        height: shape[1],
        width: shape[2],
        labeled_weak: &labeled,
        labels: &labels,
        unlabeled_weak: &weak,
        unlabeled_strong: &strong,
        unlabeled_contrast: &contrast,
        unlabeled_true_labels: &truth,
    };
    let metrics = step.train_step(&batch).unwrap();

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

    // Updated weights, and the updates themselves: the weights alone would hide an update
    // error behind the much larger weight values.
    let params = step.model().named_parameters();
    for ((name, param), before) in params.into_iter().zip(&initial) {
        let expected = fx.f32(&format!("after.{name}")).data;
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
    }
    for (name, buffer) in step.model().named_buffers() {
        let expected = fx.f32(&format!("after.{name}")).data;
        assert_close(&name, buffer, &expected, FORWARD_TOLERANCE);
    }
}
