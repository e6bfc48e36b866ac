//! Losses against the PyTorch reference fixture `loss.safetensors`.

mod common;

use ccssl_nn::loss::{
    ContrastAnchors, SoftSupConConfig, SoftSupConLoss, pseudo_labels, softmax_cross_entropy,
    softmax_rows,
};
use common::{FORWARD_TOLERANCE, Fixture, GRADIENT_TOLERANCE, assert_close};

#[test]
fn cross_entropy_matches_reference() {
    let fx = Fixture::open("loss");
    let logits = fx.f32("ce.logits");
    let classes = logits.shape[1];
    let labels = fx.labels("ce.labels");
    let mut grad = vec![0.0; logits.data.len()];

    let loss =
        softmax_cross_entropy(&logits.data, classes, &labels, None, Some(&mut grad), 1.0).unwrap();
    assert_close(
        "ce loss",
        &[loss],
        &[fx.scalar("ce.loss")],
        FORWARD_TOLERANCE,
    );
    assert_close(
        "ce d_logits",
        &grad,
        &fx.f32("ce.d_logits").data,
        GRADIENT_TOLERANCE,
    );

    let mask = fx.f32("ce.mask").data;
    let loss = softmax_cross_entropy(
        &logits.data,
        classes,
        &labels,
        Some(&mask),
        Some(&mut grad),
        1.0,
    )
    .unwrap();
    assert_close(
        "masked loss",
        &[loss],
        &[fx.scalar("ce.masked_loss")],
        FORWARD_TOLERANCE,
    );
    let expected = fx.f32("ce.masked_d_logits").data;
    assert_close("masked d_logits", &grad, &expected, GRADIENT_TOLERANCE);
}

#[test]
fn softmax_and_pseudo_labels_match_reference() {
    let fx = Fixture::open("loss");
    let logits = fx.f32("ce.logits");
    let classes = logits.shape[1];
    let mut probs = vec![0.0; logits.data.len()];
    softmax_rows(&logits.data, classes, &mut probs).unwrap();
    assert_close(
        "softmax",
        &probs,
        &fx.f32("ce.softmax").data,
        FORWARD_TOLERANCE,
    );

    let pl = pseudo_labels(&logits.data, classes, 1.0, 0.95).unwrap();
    assert_eq!(pl.labels, fx.labels("ce.pseudo_labels"));
    let expected = fx.f32("ce.max_probs").data;
    assert_close("max_probs", &pl.max_probs, &expected, FORWARD_TOLERANCE);
}

/// Converts `[n, views, dim]` (the reference layout) to view-major `[views * n, dim]`.
fn view_major(data: &[f32], n: usize, views: usize, dim: usize) -> Vec<f32> {
    let mut out = vec![0.0; data.len()];
    for i in 0..n {
        for v in 0..views {
            let src = (i * views + v) * dim;
            let dst = (v * n + i) * dim;
            out[dst..dst + dim].copy_from_slice(&data[src..src + dim]);
        }
    }
    out
}

#[test]
fn soft_supcon_matches_reference_for_each_option() {
    let fx = Fixture::open("loss");
    let features = fx.f32("supcon.features");
    let (n, views, dim) = (features.shape[0], features.shape[1], features.shape[2]);
    let input = view_major(&features.data, n, views, dim);
    let labels = fx.labels("supcon.labels");
    let max_probs = fx.f32("supcon.max_probs").data;
    let threshold = fx.meta_f64("supcon_threshold") as f32;

    for (name, anchors) in [
        ("all", ContrastAnchors::All),
        ("threshold", ContrastAnchors::Threshold(threshold)),
        ("left_out", ContrastAnchors::LeftOut(threshold)),
    ] {
        let mut loss = SoftSupConLoss::new(SoftSupConConfig {
            anchors,
            ..SoftSupConConfig::default()
        })
        .unwrap();
        let mut grad = vec![0.0; input.len()];
        let value = loss
            .forward_backward(
                &input,
                views,
                dim,
                &labels,
                &max_probs,
                Some(&mut grad),
                1.0,
            )
            .unwrap();
        let expected_loss = fx.scalar(&format!("supcon.{name}.loss"));
        assert_close(
            &format!("{name} loss"),
            &[value],
            &[expected_loss],
            FORWARD_TOLERANCE,
        );
        let expected = fx.f32(&format!("supcon.{name}.d_features")).data;
        let expected = view_major(&expected, n, views, dim);
        assert_close(
            &format!("{name} d_features"),
            &grad,
            &expected,
            GRADIENT_TOLERANCE,
        );
    }
}
