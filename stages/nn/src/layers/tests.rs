//! Finite-difference gradient tests of every layer and operation.

use super::batchnorm::BatchNorm2d;
use super::conv::Conv2d;
use super::linear::Linear;
use super::ops;
use crate::gradcheck::{check, values, weighted_sum};
use crate::{Tensor, ThreadPool, Workspace};

fn pool() -> ThreadPool {
    ThreadPool::new(2).unwrap()
}

/// Convolution (in, out, kernel, stride, padding, batch, size) cases: 3x3 stride 1 and 2,
/// 1x1 stride 2, and a 16x16 case whose batch spans several image groups and partial sums.
const CONV_CASES: [(usize, usize, usize, usize, usize, usize, usize); 4] = [
    (2, 3, 3, 1, 1, 2, 5),
    (3, 2, 3, 2, 1, 2, 6),
    (3, 4, 1, 2, 0, 2, 5),
    (2, 3, 3, 1, 1, 5, 16),
];

#[test]
fn conv2d_gradients_match_finite_differences() {
    let pool = pool();
    let mut ws = Workspace::default();
    for (case, &(cin, cout, k, s, p, n, size)) in CONV_CASES.iter().enumerate() {
        let mut conv = Conv2d::new(cin, cout, k, s, p);
        conv.weight.value = values(conv.weight.value.len(), 10 + case as u32);
        let mut input =
            Tensor::new(&[n, cin, size, size], values(n * cin * size * size, 20)).unwrap();
        let out_shape = conv.output_shape(input.shape()).unwrap();
        let weights = values(out_shape.iter().product(), 30);
        let d_output = Tensor::new(&out_shape, weights.clone()).unwrap();

        conv.backward_weight(&pool, &mut ws, &input, &d_output)
            .unwrap();
        let mut d_input = Tensor::default();
        conv.backward_data(
            &pool,
            &mut ws,
            input.shape(),
            &d_output,
            &mut d_input,
            false,
        )
        .unwrap();

        let shape = input.shape().to_vec();
        let eval = |conv: &Conv2d, x: &[f32], ws: &mut Workspace| {
            let x = Tensor::new(&shape, x.to_vec()).unwrap();
            let mut y = Tensor::default();
            conv.forward(&pool, ws, &x, &mut y, false).unwrap();
            weighted_sum(y.data(), &weights)
        };
        // The convolution is linear, so a large step loses nothing to curvature.
        let tol = (2e-3, 1e-3);
        let len = input.len();
        let stride = (len / 97).max(1);
        let grad = d_input.data().to_vec();
        check(
            &format!("conv case {case} input"),
            input.data_mut(),
            &grad,
            (0..len).step_by(stride),
            0.05,
            tol,
            |x| eval(&conv, x, &mut ws),
        );
        let mut weight = conv.weight.value.clone();
        let grad = conv.weight.grad.clone();
        let len = weight.len();
        check(
            &format!("conv case {case} weight"),
            &mut weight,
            &grad,
            0..len,
            0.05,
            tol,
            |w| {
                let mut probe = conv.clone();
                probe.weight.value = w.to_vec();
                eval(&probe, input.data(), &mut ws)
            },
        );
    }
}

#[test]
fn conv2d_accumulate_adds_to_output() {
    let pool = pool();
    let mut ws = Workspace::default();
    let mut conv = Conv2d::new(2, 3, 3, 1, 1);
    conv.weight.value = values(conv.weight.value.len(), 1);
    let input = Tensor::new(&[2, 2, 4, 4], values(64, 2)).unwrap();
    let mut once = Tensor::default();
    conv.forward(&pool, &mut ws, &input, &mut once, false)
        .unwrap();
    let mut twice = once.clone();
    conv.forward(&pool, &mut ws, &input, &mut twice, true)
        .unwrap();
    for (a, b) in once.data().iter().zip(twice.data()) {
        assert!((2.0 * a - b).abs() < 1e-5, "{b} is not twice {a}");
    }
}

#[test]
fn conv2d_rejects_wrong_input_shape() {
    let pool = pool();
    let mut ws = Workspace::default();
    let conv = Conv2d::new(3, 4, 3, 1, 1);
    let input = Tensor::zeros(&[2, 2, 5, 5]);
    let err = conv
        .forward(&pool, &mut ws, &input, &mut Tensor::default(), false)
        .unwrap_err();
    let message = err.to_string();
    assert!(
        message.contains("conv2d input") && message.contains("[2, 2, 5, 5]"),
        "{message}"
    );
}

fn bn_gradient_case(slope: Option<f32>, seed: u32) {
    let pool = pool();
    let shape = [3, 2, 3, 3];
    let numel: usize = shape.iter().product();
    let mut bn = BatchNorm2d::new(2, 0.1, slope);
    bn.weight.value = vec![1.3, -0.7];
    bn.bias.value = vec![0.2, -0.1];
    // Per-channel offset and scale so that the statistics matter.
    let mut input = Tensor::new(
        &shape,
        values(numel, seed)
            .iter()
            .enumerate()
            .map(|(i, v)| v * 2.0 + (i / 9 % 2) as f32)
            .collect(),
    )
    .unwrap();
    let weights = values(numel, seed + 1);
    let mut output = Tensor::default();
    bn.forward_train(&pool, &input, &mut output).unwrap();
    let mut grad = Tensor::new(&shape, weights.clone()).unwrap();
    bn.backward(&pool, &input, &mut grad).unwrap();

    let eval = |bn: &BatchNorm2d, x: &[f32]| {
        let mut probe = bn.clone();
        let x = Tensor::new(&shape, x.to_vec()).unwrap();
        let mut y = Tensor::default();
        probe.forward_train(&pool, &x, &mut y).unwrap();
        weighted_sum(y.data(), &weights)
    };
    let tol = (3e-3, 1e-2);
    let name = format!("batchnorm (slope {slope:?})");
    let d_input = grad.data().to_vec();
    check(
        &format!("{name} input"),
        input.data_mut(),
        &d_input,
        0..numel,
        1e-3,
        tol,
        |x| eval(&bn, x),
    );
    let (mut gamma, d_gamma) = (bn.weight.value.clone(), bn.weight.grad.clone());
    check(
        &format!("{name} weight"),
        &mut gamma,
        &d_gamma,
        0..2,
        1e-3,
        tol,
        |g| {
            let mut probe = bn.clone();
            probe.weight.value = g.to_vec();
            eval(&probe, input.data())
        },
    );
    let (mut beta, d_beta) = (bn.bias.value.clone(), bn.bias.grad.clone());
    check(
        &format!("{name} bias"),
        &mut beta,
        &d_beta,
        0..2,
        1e-3,
        tol,
        |b| {
            let mut probe = bn.clone();
            probe.bias.value = b.to_vec();
            eval(&probe, input.data())
        },
    );
}

#[test]
fn batchnorm_gradients_match_finite_differences() {
    bn_gradient_case(None, 3);
}

#[test]
fn batchnorm_leaky_relu_gradients_match_finite_differences() {
    bn_gradient_case(Some(0.1), 5);
}

#[test]
fn batchnorm_running_stats_follow_pytorch_rule() {
    let pool = pool();
    let mut bn = BatchNorm2d::new(1, 0.25, None);
    // One channel with values 1, 2, 3, 6: mean 3, biased variance 3.5, unbiased 14 / 3.
    let input = Tensor::new(&[2, 1, 1, 2], vec![1.0, 2.0, 3.0, 6.0]).unwrap();
    bn.forward_train(&pool, &input, &mut Tensor::default())
        .unwrap();
    assert!((bn.running_mean[0] - 0.75 * 0.0 - 0.25 * 3.0).abs() < 1e-6);
    assert!((bn.running_var[0] - (0.75 * 1.0 + 0.25 * 14.0 / 3.0)).abs() < 1e-6);
    assert_eq!(bn.num_batches_tracked, 1);
    let mut out = Tensor::default();
    bn.forward_eval(&pool, &input, &mut out).unwrap();
    let expected = (6.0 - bn.running_mean[0]) / (bn.running_var[0] + 1e-5).sqrt();
    assert!(
        (out.data()[3] - expected).abs() < 1e-5,
        "{} vs {expected}",
        out.data()[3]
    );
    assert_eq!(bn.num_batches_tracked, 1, "eval must not count batches");
}

#[test]
fn batchnorm_statistics_survive_a_large_mean() {
    let pool = pool();
    let mut bn = BatchNorm2d::new(1, 1.0, None);
    // Mean 1000, standard deviation about 0.577: a naive E[x^2] - E[x]^2 in f32 loses it.
    let data: Vec<f32> = (0..300).map(|i| 1000.0 + (i % 3) as f32 - 1.0).collect();
    let input = Tensor::new(&[3, 1, 10, 10], data).unwrap();
    bn.forward_train(&pool, &input, &mut Tensor::default())
        .unwrap();
    assert!((bn.running_mean[0] - 1000.0).abs() < 1e-3);
    let unbiased = 200.0 / 299.0;
    assert!(
        (bn.running_var[0] - unbiased).abs() < 1e-4,
        "{}",
        bn.running_var[0]
    );
}

#[test]
fn linear_gradients_match_finite_differences() {
    let mut layer = Linear::new(4, 3);
    layer.weight.value = values(12, 7);
    layer.bias.value = values(3, 8);
    let mut input = Tensor::new(&[5, 4], values(20, 9)).unwrap();
    let weights = values(15, 10);
    let d_output = Tensor::new(&[5, 3], weights.clone()).unwrap();
    let mut d_input = Tensor::default();
    layer
        .backward(&input, &d_output, Some(&mut d_input), false)
        .unwrap();
    let eval = |layer: &Linear, x: &[f32]| {
        let mut y = Tensor::default();
        layer
            .forward(&Tensor::new(&[5, 4], x.to_vec()).unwrap(), &mut y)
            .unwrap();
        weighted_sum(y.data(), &weights)
    };
    let tol = (1e-3, 1e-3);
    let grad = d_input.data().to_vec();
    check(
        "linear input",
        input.data_mut(),
        &grad,
        0..20,
        0.05,
        tol,
        |x| eval(&layer, x),
    );
    let (mut w, dw) = (layer.weight.value.clone(), layer.weight.grad.clone());
    check("linear weight", &mut w, &dw, 0..12, 0.05, tol, |w| {
        let mut probe = layer.clone();
        probe.weight.value = w.to_vec();
        eval(&probe, input.data())
    });
    let (mut b, db) = (layer.bias.value.clone(), layer.bias.grad.clone());
    check("linear bias", &mut b, &db, 0..3, 0.05, tol, |b| {
        let mut probe = layer.clone();
        probe.bias.value = b.to_vec();
        eval(&probe, input.data())
    });
}

#[test]
fn elementwise_ops_gradients_match_finite_differences() {
    let tol = (1e-3, 1e-3);
    // LeakyReLU; inputs kept away from the kink at 0 by more than the step.
    let data: Vec<f32> = values(24, 11)
        .iter()
        .map(|v| if v.abs() < 0.05 { 0.3 } else { *v })
        .collect();
    let mut input = Tensor::new(&[2, 3, 2, 2], data).unwrap();
    let weights = values(24, 12);
    let mut grad = Tensor::new(&[2, 3, 2, 2], weights.clone()).unwrap();
    ops::leaky_relu_backward(&input, 0.1, &mut grad).unwrap();
    let d = grad.data().to_vec();
    check(
        "leaky_relu input",
        input.data_mut(),
        &d,
        0..24,
        1e-2,
        tol,
        |x| {
            let mut y = Tensor::default();
            ops::leaky_relu_forward(
                &Tensor::new(&[2, 3, 2, 2], x.to_vec()).unwrap(),
                0.1,
                &mut y,
            );
            weighted_sum(y.data(), &weights)
        },
    );

    // Global average pooling.
    let weights = values(6, 13);
    let mut d_input = Tensor::default();
    ops::global_avg_pool_backward(
        input.shape(),
        &Tensor::new(&[2, 3], weights.clone()).unwrap(),
        &mut d_input,
    )
    .unwrap();
    let d = d_input.data().to_vec();
    check(
        "global_avg_pool input",
        input.data_mut(),
        &d,
        0..24,
        1e-2,
        tol,
        |x| {
            let mut y = Tensor::default();
            ops::global_avg_pool_forward(&Tensor::new(&[2, 3, 2, 2], x.to_vec()).unwrap(), &mut y)
                .unwrap();
            weighted_sum(y.data(), &weights)
        },
    );

    // L2 normalisation.
    let mut input = Tensor::new(&[3, 5], values(15, 14)).unwrap();
    let weights = values(15, 15);
    let mut d_input = Tensor::default();
    ops::l2_normalize_backward(
        &input,
        &Tensor::new(&[3, 5], weights.clone()).unwrap(),
        &mut d_input,
    )
    .unwrap();
    let mut out = Tensor::default();
    ops::l2_normalize_forward(&input, &mut out).unwrap();
    for row in out.data().chunks(5) {
        let norm: f32 = row.iter().map(|v| v * v).sum::<f32>().sqrt();
        assert!((norm - 1.0).abs() < 1e-6, "row norm {norm}");
    }
    let d = d_input.data().to_vec();
    check(
        "l2_normalize input",
        input.data_mut(),
        &d,
        0..15,
        1e-3,
        (2e-3, 1e-2),
        |x| {
            let mut y = Tensor::default();
            ops::l2_normalize_forward(&Tensor::new(&[3, 5], x.to_vec()).unwrap(), &mut y).unwrap();
            weighted_sum(y.data(), &weights)
        },
    );
}
