//! Tests of the whole WideResNet: gradients, determinism, modes, names and guards.

use super::*;
use crate::gradcheck::{values, weighted_sum};

fn small_config(widen: usize) -> WideResNetConfig {
    WideResNetConfig {
        depth: 10,
        widen,
        num_classes: 3,
        proj_dim: 4,
    }
}

fn input(n: usize, size: usize, seed: u32) -> Tensor {
    Tensor::new(&[n, 3, size, size], values(n * 3 * size * size, seed)).unwrap()
}

/// The scalar `sum(w_logits * logits) + sum(w_proj * projections)` of a training forward.
fn objective(
    model: &mut WideResNet,
    pool: &ThreadPool,
    x: &Tensor,
    w_logits: &[f32],
    w_proj: &[f32],
) -> f64 {
    let out = model.forward_train(pool, x).unwrap();
    weighted_sum(out.logits.data(), w_logits) + weighted_sum(out.projections.data(), w_proj)
}

#[test]
fn parameter_gradients_match_finite_differences() {
    let pool = ThreadPool::new(2).unwrap();
    // Widen 2 gives all three block variants: equal widths, a shortcut with
    // activate_before_residual (block1) and a shortcut without it (block2, block3).
    let mut model = WideResNet::new(small_config(2), 3).unwrap();
    // Batch statistics over many values keep the function smooth at the step size.
    let x = input(8, 16, 1);
    let (w_logits, w_proj) = (values(8 * 3, 2), values(8 * 4, 3));
    model.forward_train(&pool, &x).unwrap();
    let d_logits = Tensor::new(&[8, 3], w_logits.clone()).unwrap();
    let d_proj = Tensor::new(&[8, 4], w_proj.clone()).unwrap();
    model.backward(&pool, &d_logits, &d_proj).unwrap();

    let names = [
        "conv1.weight",
        "block1.layer.0.bn1.weight",
        "block1.layer.0.conv1.weight",
        "block1.layer.0.convShortcut.weight",
        "block2.layer.0.conv1.weight",
        "block2.layer.0.convShortcut.weight",
        "block2.layer.0.bn2.bias",
        "block3.layer.0.conv2.weight",
        "bn1.weight",
        "bn1.bias",
        "fc.weight",
        "fc.bias",
        "fc1.weight",
        "fc2.weight",
        "fc2.bias",
    ];
    // BatchNorm centres pre-activations at zero, so many LeakyReLU kinks lie within any step
    // and single whole-network finite differences wander by 10-25% at every step size (1e-1
    // to 1e-4 measured). So this test compares each tensor's sampled gradient as a vector:
    // it catches wrong signs, missing terms and wrong wiring. Exact agreement is checked per
    // layer and against the PyTorch fixtures.
    let h = 1e-2f32;
    let (mut all_numeric, mut all_analytic) = (Vec::new(), Vec::new());
    for name in names {
        let (value, grad) = {
            let params = model.named_parameters();
            let (_, p) = params
                .iter()
                .find(|(n, _)| n == name)
                .unwrap_or_else(|| panic!("no parameter {name}"));
            (p.value.clone(), p.grad.clone())
        };
        let set = |model: &mut WideResNet, index: usize, v: f32| {
            for (n, p) in model.named_parameters_mut() {
                if n == name {
                    p.value[index] = v;
                }
            }
        };
        let (mut numeric, mut analytic) = (Vec::new(), Vec::new());
        for index in (0..value.len()).step_by((value.len() / 8).max(1)) {
            set(&mut model, index, value[index] + h);
            let plus = objective(&mut model, &pool, &x, &w_logits, &w_proj);
            set(&mut model, index, value[index] - h);
            let minus = objective(&mut model, &pool, &x, &w_logits, &w_proj);
            set(&mut model, index, value[index]);
            numeric.push((plus - minus) / (2.0 * h as f64));
            analytic.push(grad[index] as f64);
        }
        let error = relative_distance(&numeric, &analytic);
        assert!(
            error < 0.3,
            "{name}: finite differences {numeric:?} vs analytic {analytic:?} (relative distance {error:.3})"
        );
        all_numeric.extend(numeric);
        all_analytic.extend(analytic);
    }
    let error = relative_distance(&all_numeric, &all_analytic);
    assert!(
        error < 0.1,
        "all sampled gradients: relative distance {error:.3}"
    );
}

/// `|a - b| / |b|` for vectors.
fn relative_distance(a: &[f64], b: &[f64]) -> f64 {
    let diff: f64 = a
        .iter()
        .zip(b)
        .map(|(x, y)| (x - y).powi(2))
        .sum::<f64>()
        .sqrt();
    let norm: f64 = b.iter().map(|y| y * y).sum::<f64>().sqrt();
    diff / norm.max(1e-12)
}

#[test]
fn unused_bn1_gets_zero_gradient_but_tracks_statistics() {
    let pool = ThreadPool::new(1).unwrap();
    let mut model = WideResNet::new(small_config(2), 4).unwrap();
    let x = input(2, 8, 5);
    model.forward_train(&pool, &x).unwrap();
    model
        .backward(
            &pool,
            &Tensor::new(&[2, 3], values(6, 6)).unwrap(),
            &Tensor::new(&[2, 4], values(8, 7)).unwrap(),
        )
        .unwrap();
    let params = model.named_parameters();
    let bn = params
        .iter()
        .find(|(n, _)| n == "block2.layer.0.bn1.weight")
        .unwrap()
        .1;
    assert!(
        bn.grad.iter().all(|&g| g == 0.0),
        "bn1 output is discarded in block2.layer.0"
    );
    let used = params
        .iter()
        .find(|(n, _)| n == "block1.layer.0.bn1.weight")
        .unwrap()
        .1;
    assert!(used.grad.iter().any(|&g| g != 0.0));
    let norms = model.named_batch_norms();
    let (_, bn) = norms
        .iter()
        .find(|(n, _)| n == "block2.layer.0.bn1")
        .unwrap();
    assert_eq!(bn.num_batches_tracked, 1);
    assert!(bn.running_mean.iter().any(|&m| m != 0.0));
}

#[test]
fn results_do_not_depend_on_thread_count() {
    let x = input(5, 16, 8);
    let d_logits = Tensor::new(&[5, 3], values(15, 9)).unwrap();
    let d_proj = Tensor::new(&[5, 4], values(20, 10)).unwrap();
    let run = |threads: usize| {
        let pool = ThreadPool::new(threads).unwrap();
        let mut model = WideResNet::new(small_config(2), 11).unwrap();
        let out = model.forward_train(&pool, &x).unwrap();
        model.backward(&pool, &d_logits, &d_proj).unwrap();
        let grads: Vec<Vec<f32>> = model
            .named_parameters()
            .iter()
            .map(|(_, p)| p.grad.clone())
            .collect();
        (out, grads)
    };
    let (out1, grads1) = run(1);
    let (out3, grads3) = run(3);
    assert_eq!(out1, out3, "outputs differ between 1 and 3 threads");
    assert_eq!(grads1, grads3, "gradients differ between 1 and 3 threads");
}

#[test]
fn eval_forward_changes_no_state() {
    let pool = ThreadPool::new(2).unwrap();
    let mut model = WideResNet::new(small_config(1), 12).unwrap();
    let x = input(3, 8, 13);
    model.forward_train(&pool, &x).unwrap();
    let before: Vec<Vec<f32>> = model
        .named_buffers()
        .iter()
        .map(|(_, b)| b.to_vec())
        .collect();
    let first = model.forward_eval(&pool, &x).unwrap();
    let second = model.forward_eval(&pool, &x).unwrap();
    let after: Vec<Vec<f32>> = model
        .named_buffers()
        .iter()
        .map(|(_, b)| b.to_vec())
        .collect();
    assert_eq!(before, after);
    assert_eq!(first, second);
    let err = model
        .backward(&pool, &Tensor::zeros(&[3, 3]), &Tensor::zeros(&[3, 4]))
        .unwrap_err();
    assert!(matches!(err, NnError::NoForwardCache), "{err}");
}

#[test]
fn projections_have_unit_norm() {
    let pool = ThreadPool::new(2).unwrap();
    let mut model = WideResNet::new(small_config(1), 14).unwrap();
    let out = model.forward_train(&pool, &input(3, 8, 15)).unwrap();
    assert_eq!(out.logits.shape(), &[3, 3]);
    assert_eq!(out.projections.shape(), &[3, 4]);
    for row in out.projections.data().chunks(4) {
        let norm = row.iter().map(|v| v * v).sum::<f32>().sqrt();
        assert!((norm - 1.0).abs() < 1e-5, "projection norm {norm}");
    }
}

#[test]
fn names_follow_the_reference_model() {
    let model = WideResNet::new(
        WideResNetConfig {
            depth: 28,
            widen: 2,
            num_classes: 10,
            proj_dim: 64,
        },
        0,
    )
    .unwrap();
    let params = model.named_parameters();
    let names: Vec<&str> = params.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        &names[..4],
        &[
            "conv1.weight",
            "block1.layer.0.bn1.weight",
            "block1.layer.0.bn1.bias",
            "block1.layer.0.conv1.weight"
        ]
    );
    assert!(names.contains(&"block1.layer.0.convShortcut.weight"));
    assert!(!names.contains(&"block1.layer.1.convShortcut.weight"));
    assert!(names.contains(&"block3.layer.3.conv2.weight"));
    assert_eq!(
        &names[names.len() - 8..],
        &[
            "bn1.weight",
            "bn1.bias",
            "fc.weight",
            "fc.bias",
            "fc1.weight",
            "fc1.bias",
            "fc2.weight",
            "fc2.bias"
        ]
    );
    let count: usize = params.iter().map(|(_, p)| p.value.len()).sum();
    // Parameter count of the reference WRN-28-2 with the 128-128-64 projection head.
    assert_eq!(count, 1_467_610 + 128 * 128 + 128 + 128 * 64 + 64);
    let shape = |name: &str| {
        params
            .iter()
            .find(|(n, _)| n == name)
            .unwrap()
            .1
            .shape
            .clone()
    };
    assert_eq!(shape("block2.layer.0.conv1.weight"), vec![64, 32, 3, 3]);
    assert_eq!(
        shape("block2.layer.0.convShortcut.weight"),
        vec![64, 32, 1, 1]
    );
    assert_eq!(shape("fc.weight"), vec![10, 128]);
}

#[test]
fn invalid_config_and_input_are_rejected() {
    for depth in [4, 12, 27] {
        let err = WideResNet::new(
            WideResNetConfig {
                depth,
                ..small_config(1)
            },
            0,
        )
        .err()
        .unwrap();
        assert!(
            matches!(err, NnError::Config { name: "depth", .. }),
            "{err}"
        );
    }
    let err = WideResNet::new(
        WideResNetConfig {
            widen: 0,
            ..small_config(1)
        },
        0,
    )
    .err()
    .unwrap();
    assert!(
        matches!(err, NnError::Config { name: "widen", .. }),
        "{err}"
    );
    let pool = ThreadPool::new(1).unwrap();
    let mut model = WideResNet::new(small_config(1), 0).unwrap();
    let err = model
        .forward_train(&pool, &Tensor::zeros(&[2, 1, 8, 8]))
        .unwrap_err();
    assert!(err.to_string().contains("model input"), "{err}");
    model.forward_train(&pool, &input(2, 8, 1)).unwrap();
    let err = model
        .backward(&pool, &Tensor::zeros(&[2, 5]), &Tensor::zeros(&[2, 4]))
        .unwrap_err();
    assert!(err.to_string().contains("logits gradient"), "{err}");
}

#[test]
fn same_seed_same_weights() {
    let a = WideResNet::new(small_config(1), 21).unwrap();
    let b = WideResNet::new(small_config(1), 21).unwrap();
    let c = WideResNet::new(small_config(1), 22).unwrap();
    let values = |m: &WideResNet| {
        m.named_parameters()
            .iter()
            .map(|(_, p)| p.value.clone())
            .collect::<Vec<_>>()
    };
    assert_eq!(values(&a), values(&b));
    assert_ne!(values(&a), values(&c));
    let params = a.named_parameters();
    let bias = params.iter().find(|(n, _)| n == "fc.bias").unwrap().1;
    assert!(bias.value.iter().all(|&v| v == 0.0));
    let gamma = params.iter().find(|(n, _)| n == "bn1.weight").unwrap().1;
    assert!(gamma.value.iter().all(|&v| v == 1.0));
}
