//! Layers against the PyTorch reference fixture `ops.safetensors`: forward outputs and the
//! gradients of a fixed random upstream gradient.

mod common;

use ccssl_nn::layers::batchnorm::BatchNorm2d;
use ccssl_nn::layers::conv::Conv2d;
use ccssl_nn::layers::linear::Linear;
use ccssl_nn::layers::ops;
use ccssl_nn::{Tensor, ThreadPool, Workspace};
use common::{Array, FORWARD_TOLERANCE, Fixture, GRADIENT_TOLERANCE, assert_close};

fn tensor(array: Array) -> Tensor {
    Tensor::new(&array.shape, array.data).unwrap()
}

fn pool() -> ThreadPool {
    ThreadPool::new(2).unwrap()
}

#[test]
fn conv2d_matches_reference() {
    let fx = Fixture::open("ops");
    let pool = pool();
    let mut workspace = Workspace::default();
    for case in ["conv3x3_s1", "conv3x3_s2", "conv1x1_s2"] {
        let input = tensor(fx.f32(&format!("{case}.input")));
        let weight = fx.f32(&format!("{case}.weight"));
        let stride = fx.meta_f64(&format!("{case}.stride")) as usize;
        let padding = fx.meta_f64(&format!("{case}.padding")) as usize;
        let [cout, cin, k, _] = weight.shape[..] else {
            panic!("{case}.weight is not 4-D")
        };
        let mut conv = Conv2d::new(cin, cout, k, stride, padding);
        conv.weight.value = weight.data;

        let mut output = Tensor::default();
        conv.forward(&pool, &mut workspace, &input, &mut output, false)
            .unwrap();
        let expected = fx.f32(&format!("{case}.output"));
        assert_eq!(output.shape(), &expected.shape[..], "{case} output shape");
        assert_close(
            &format!("{case} output"),
            output.data(),
            &expected.data,
            FORWARD_TOLERANCE,
        );

        let d_output = tensor(fx.f32(&format!("{case}.d_output")));
        conv.backward_weight(&pool, &mut workspace, &input, &d_output)
            .unwrap();
        let expected = fx.f32(&format!("{case}.d_weight")).data;
        assert_close(
            &format!("{case} d_weight"),
            &conv.weight.grad,
            &expected,
            GRADIENT_TOLERANCE,
        );

        let mut d_input = Tensor::default();
        conv.backward_data(
            &pool,
            &mut workspace,
            input.shape(),
            &d_output,
            &mut d_input,
            false,
        )
        .unwrap();
        let expected = fx.f32(&format!("{case}.d_input")).data;
        assert_close(
            &format!("{case} d_input"),
            d_input.data(),
            &expected,
            GRADIENT_TOLERANCE,
        );
    }
}

#[test]
fn batchnorm_matches_reference_train_and_eval() {
    let fx = Fixture::open("ops");
    let pool = pool();
    for (case, slope) in [("bn", None), ("bn_leaky", Some(0.1))] {
        let input = tensor(fx.f32(&format!("{case}.input")));
        let channels = input.shape()[1];
        let mut bn = BatchNorm2d::new(channels, fx.meta_f64("bn_momentum") as f32, slope);
        bn.weight.value = fx.f32(&format!("{case}.weight")).data;
        bn.bias.value = fx.f32(&format!("{case}.bias")).data;
        bn.running_mean = fx.f32(&format!("{case}.running_mean")).data;
        bn.running_var = fx.f32(&format!("{case}.running_var")).data;

        let mut output = Tensor::default();
        bn.forward_train(&pool, &input, &mut output).unwrap();
        let expected = fx.f32(&format!("{case}.output")).data;
        assert_close(
            &format!("{case} output"),
            output.data(),
            &expected,
            FORWARD_TOLERANCE,
        );
        let expected = fx.f32(&format!("{case}.running_mean_after")).data;
        assert_close(
            &format!("{case} running_mean"),
            &bn.running_mean,
            &expected,
            FORWARD_TOLERANCE,
        );
        let expected = fx.f32(&format!("{case}.running_var_after")).data;
        assert_close(
            &format!("{case} running_var"),
            &bn.running_var,
            &expected,
            FORWARD_TOLERANCE,
        );

        let mut grad = tensor(fx.f32(&format!("{case}.d_output")));
        bn.backward(&pool, &input, &mut grad).unwrap();
        let expected = fx.f32(&format!("{case}.d_input")).data;
        assert_close(
            &format!("{case} d_input"),
            grad.data(),
            &expected,
            GRADIENT_TOLERANCE,
        );
        let expected = fx.f32(&format!("{case}.d_weight")).data;
        assert_close(
            &format!("{case} d_weight"),
            &bn.weight.grad,
            &expected,
            GRADIENT_TOLERANCE,
        );
        let expected = fx.f32(&format!("{case}.d_bias")).data;
        assert_close(
            &format!("{case} d_bias"),
            &bn.bias.grad,
            &expected,
            GRADIENT_TOLERANCE,
        );

        // Evaluation uses the running statistics as updated by the training batch.
        let mut eval = Tensor::default();
        bn.forward_eval(&pool, &input, &mut eval).unwrap();
        let expected = fx.f32(&format!("{case}.eval_output")).data;
        assert_close(
            &format!("{case} eval output"),
            eval.data(),
            &expected,
            FORWARD_TOLERANCE,
        );
    }
}

#[test]
fn linear_matches_reference() {
    let fx = Fixture::open("ops");
    let input = tensor(fx.f32("linear.input"));
    let weight = fx.f32("linear.weight");
    let mut linear = Linear::new(weight.shape[1], weight.shape[0]);
    linear.weight.value = weight.data;
    linear.bias.value = fx.f32("linear.bias").data;

    let mut output = Tensor::default();
    linear.forward(&input, &mut output).unwrap();
    let expected = fx.f32("linear.output").data;
    assert_close("linear output", output.data(), &expected, FORWARD_TOLERANCE);

    let d_output = tensor(fx.f32("linear.d_output"));
    let mut d_input = Tensor::default();
    linear
        .backward(&input, &d_output, Some(&mut d_input), false)
        .unwrap();
    let expected = fx.f32("linear.d_input").data;
    assert_close(
        "linear d_input",
        d_input.data(),
        &expected,
        GRADIENT_TOLERANCE,
    );
    let expected = fx.f32("linear.d_weight").data;
    assert_close(
        "linear d_weight",
        &linear.weight.grad,
        &expected,
        GRADIENT_TOLERANCE,
    );
    let expected = fx.f32("linear.d_bias").data;
    assert_close(
        "linear d_bias",
        &linear.bias.grad,
        &expected,
        GRADIENT_TOLERANCE,
    );
}

#[test]
fn leaky_relu_matches_reference() {
    let fx = Fixture::open("ops");
    let input = tensor(fx.f32("leaky.input"));
    let slope = fx.meta_f64("leaky_slope") as f32;
    let mut output = Tensor::default();
    ops::leaky_relu_forward(&input, slope, &mut output);
    let expected = fx.f32("leaky.output").data;
    assert_close("leaky output", output.data(), &expected, FORWARD_TOLERANCE);

    let mut grad = tensor(fx.f32("leaky.d_output"));
    ops::leaky_relu_backward(&input, slope, &mut grad).unwrap();
    let expected = fx.f32("leaky.d_input").data;
    assert_close("leaky d_input", grad.data(), &expected, GRADIENT_TOLERANCE);
}

#[test]
fn global_avg_pool_matches_reference() {
    let fx = Fixture::open("ops");
    let input = tensor(fx.f32("pool.input"));
    let mut output = Tensor::default();
    ops::global_avg_pool_forward(&input, &mut output).unwrap();
    let expected = fx.f32("pool.output").data;
    assert_close("pool output", output.data(), &expected, FORWARD_TOLERANCE);

    let d_output = tensor(fx.f32("pool.d_output"));
    let mut d_input = Tensor::default();
    ops::global_avg_pool_backward(input.shape(), &d_output, &mut d_input).unwrap();
    let expected = fx.f32("pool.d_input").data;
    assert_close(
        "pool d_input",
        d_input.data(),
        &expected,
        GRADIENT_TOLERANCE,
    );
}

#[test]
fn l2_normalize_matches_reference() {
    let fx = Fixture::open("ops");
    let input = tensor(fx.f32("l2norm.input"));
    let mut output = Tensor::default();
    ops::l2_normalize_forward(&input, &mut output).unwrap();
    let expected = fx.f32("l2norm.output").data;
    assert_close("l2norm output", output.data(), &expected, FORWARD_TOLERANCE);

    let d_output = tensor(fx.f32("l2norm.d_output"));
    let mut d_input = Tensor::default();
    ops::l2_normalize_backward(&input, &d_output, &mut d_input).unwrap();
    let expected = fx.f32("l2norm.d_input").data;
    assert_close(
        "l2norm d_input",
        d_input.data(),
        &expected,
        GRADIENT_TOLERANCE,
    );
}
