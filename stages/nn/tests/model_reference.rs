//! The WideResNet-10-2 and SGD against the PyTorch reference fixtures `wrn.safetensors`
//! (with the initial weights `wrn_weights.safetensors`) and `sgd.safetensors`.

mod common;

use ccssl_nn::{Param, Sgd, SgdConfig, Tensor, ThreadPool, WideResNet, WideResNetConfig};
use common::{FORWARD_TOLERANCE, Fixture, GRADIENT_TOLERANCE, assert_close, fixture_path};

fn tensor(array: common::Array) -> Tensor {
    Tensor::new(&array.shape, array.data).unwrap()
}

fn reference_model(fx: &Fixture) -> WideResNet {
    let config = WideResNetConfig {
        depth: fx.meta_f64("depth") as usize,
        widen: fx.meta_f64("widen") as usize,
        num_classes: fx.meta_f64("num_classes") as usize,
        proj_dim: fx.meta_f64("proj_dim") as usize,
    };
    let mut model = WideResNet::new(config, 0).unwrap();
    ccssl_nn::load_safetensors(&mut model, &fixture_path("wrn_weights")).unwrap();
    model
}

#[test]
fn wideresnet_train_forward_and_gradients_match_reference() {
    let fx = Fixture::open("wrn");
    let pool = ThreadPool::new(2).unwrap();
    let mut model = reference_model(&fx);
    let input = tensor(fx.f32("input"));

    let out = model.forward_train(&pool, &input).unwrap();
    assert_close(
        "logits",
        out.logits.data(),
        &fx.f32("logits").data,
        FORWARD_TOLERANCE,
    );
    let expected = fx.f32("projections").data;
    assert_close(
        "projections",
        out.projections.data(),
        &expected,
        FORWARD_TOLERANCE,
    );
    for (name, buffer) in model.named_buffers() {
        let expected = fx.f32(&format!("after.{name}")).data;
        assert_close(&name, buffer, &expected, FORWARD_TOLERANCE);
    }

    let d_logits = tensor(fx.f32("d_logits"));
    let d_projections = tensor(fx.f32("d_projections"));
    model.backward(&pool, &d_logits, &d_projections).unwrap();
    let params = model.named_parameters();
    assert_eq!(
        params.len(),
        fx.names().iter().filter(|n| n.starts_with("grad.")).count()
    );
    for (name, param) in params {
        let expected = fx.f32(&format!("grad.{name}")).data;
        assert_close(
            &format!("grad {name}"),
            &param.grad,
            &expected,
            GRADIENT_TOLERANCE,
        );
    }
}

#[test]
fn wideresnet_eval_forward_matches_reference() {
    // The reference evaluates after one training forward, whose running statistics it uses.
    let fx = Fixture::open("wrn");
    let pool = ThreadPool::new(2).unwrap();
    let mut model = reference_model(&fx);
    let input = tensor(fx.f32("input"));
    model.forward_train(&pool, &input).unwrap();

    let out = model.forward_eval(&pool, &input).unwrap();
    let expected = fx.f32("eval.logits").data;
    assert_close(
        "eval logits",
        out.logits.data(),
        &expected,
        FORWARD_TOLERANCE,
    );
    let expected = fx.f32("eval.projections").data;
    assert_close(
        "eval projections",
        out.projections.data(),
        &expected,
        FORWARD_TOLERANCE,
    );
}

#[test]
fn sgd_two_nesterov_steps_match_reference() {
    let fx = Fixture::open("sgd");
    let names = [
        "conv.weight",
        "bn.weight",
        "bn.bias",
        "fc.weight",
        "fc.bias",
    ];
    let mut params: Vec<Param> = names
        .iter()
        .map(|name| {
            let initial = fx.f32(&format!("initial.{name}"));
            Param {
                grad: vec![0.0; initial.data.len()],
                value: initial.data,
                shape: initial.shape,
            }
        })
        .collect();
    let mut sgd = Sgd::new(SgdConfig {
        momentum: fx.meta_f64("momentum") as f32,
        nesterov: true,
        weight_decay: fx.meta_f64("weight_decay") as f32,
        no_decay: vec!["bias".into(), "bn".into()],
    });
    let lr = fx.meta_f64("lr") as f32;

    for step in 1..=2 {
        for (name, param) in names.iter().zip(&mut params) {
            param.grad = fx.f32(&format!("grad{step}.{name}")).data;
        }
        let list = names.iter().map(|n| n.to_string()).zip(params.iter_mut());
        sgd.step(list, lr).unwrap();
        for (name, param) in names.iter().zip(&params) {
            let expected = fx.f32(&format!("after{step}.{name}")).data;
            let what = format!("step {step} {name}");
            assert_close(&what, &param.value, &expected, FORWARD_TOLERANCE);
        }
    }
}
