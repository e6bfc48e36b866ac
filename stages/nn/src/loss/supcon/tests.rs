use super::*;

/// Deterministic values in [-1, 1) from a 64-bit LCG, so the tests need no RNG crate.
fn pseudo_random(count: usize, seed: u64) -> Vec<f32> {
    let mut state = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    (0..count)
        .map(|_| {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((state >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        })
        .collect()
}

fn normalised_rows(rows: usize, dim: usize, seed: u64) -> Vec<f32> {
    let mut x = pseudo_random(rows * dim, seed);
    for row in x.chunks_exact_mut(dim) {
        let norm = row.iter().map(|v| v * v).sum::<f32>().sqrt();
        row.iter_mut().for_each(|v| *v /= norm);
    }
    x
}

fn loss_with(anchors: ContrastAnchors) -> SoftSupConLoss {
    SoftSupConLoss::new(SoftSupConConfig {
        anchors,
        ..SoftSupConConfig::default()
    })
    .unwrap()
}

fn value(loss: &mut SoftSupConLoss, f: &[f32], dim: usize, labels: &[u32], q: &[f32]) -> f64 {
    f64::from(
        loss.forward_backward(f, 2, dim, labels, q, None, 1.0)
            .unwrap(),
    )
}

#[test]
fn orthogonal_pairs_match_closed_form() {
    // Sample 0 has both views on e1, sample 1 both on e2, different labels. Each anchor's one
    // positive has similarity 1/T and the two negatives 0, so L = log(1 + 2 exp(-1/T)).
    let f = [1.0f32, 0.0, 0.0, 1.0, 1.0, 0.0, 0.0, 1.0];
    let mut loss = SoftSupConLoss::new(SoftSupConConfig::default()).unwrap();
    let got = value(&mut loss, &f, 2, &[0, 1], &[0.5, 0.9]);
    let expected = (1.0 + 2.0 * (-1.0 / 0.07f64).exp()).ln();
    assert!((got - expected).abs() < 1e-6, "{got} vs {expected}");
}

#[test]
fn single_sample_loss_is_zero() {
    // With one sample the only candidate of each anchor is its positive: log p = 0.
    let f = normalised_rows(2, 3, 1);
    let mut loss = SoftSupConLoss::new(SoftSupConConfig::default()).unwrap();
    assert!(value(&mut loss, &f, 3, &[4], &[0.3]).abs() < 1e-6);
}

#[test]
fn confidence_weights_change_the_loss() {
    // Same-label pairs of distinct samples weigh q_i q_j: with q = 0 they drop out entirely,
    // which equals giving the samples different labels.
    let f = normalised_rows(6, 4, 2);
    let mut loss = SoftSupConLoss::new(SoftSupConConfig::default()).unwrap();
    let zero_confidence = value(&mut loss, &f, 4, &[1, 1, 1], &[0.0, 0.0, 0.0]);
    let distinct_labels = value(&mut loss, &f, 4, &[0, 1, 2], &[0.7, 0.8, 0.9]);
    let confident = value(&mut loss, &f, 4, &[1, 1, 1], &[1.0, 1.0, 1.0]);
    assert!((zero_confidence - distinct_labels).abs() < 1e-6);
    assert!((confident - zero_confidence).abs() > 1e-3);
}

#[test]
fn gradient_matches_finite_differences() {
    let (n, dim) = (5, 4);
    let labels = [0u32, 1, 0, 2, 0];
    let q = [0.97f32, 0.4, 0.6, 0.99, 0.96];
    for anchors in [
        ContrastAnchors::All,
        ContrastAnchors::Threshold(0.8),
        ContrastAnchors::LeftOut(0.8),
    ] {
        let mut loss = loss_with(anchors);
        let f = normalised_rows(2 * n, dim, 3);
        let scale = 1.5f32;
        let mut grad = vec![0.0f32; f.len()];
        loss.forward_backward(&f, 2, dim, &labels, &q, Some(&mut grad), scale)
            .unwrap();
        for k in 0..f.len() {
            let (mut plus, mut minus) = (f.clone(), f.clone());
            plus[k] += 1e-3;
            minus[k] -= 1e-3;
            let h = f64::from(plus[k]) - f64::from(minus[k]);
            let numeric = f64::from(scale)
                * (value(&mut loss, &plus, dim, &labels, &q)
                    - value(&mut loss, &minus, dim, &labels, &q))
                / h;
            let analytic = f64::from(grad[k]);
            assert!(
                (numeric - analytic).abs() < 2e-3 * (1.0 + analytic.abs()),
                "{anchors:?} d_features[{k}]: analytic {analytic}, numeric {numeric}"
            );
        }
    }
}

#[test]
fn threshold_zeroes_low_confidence_anchors() {
    let f = normalised_rows(6, 4, 4);
    let labels = [0u32, 0, 1];
    let mut all_low = loss_with(ContrastAnchors::Threshold(0.95));
    let mut grad = vec![1.0f32; f.len()];
    let got = all_low
        .forward_backward(&f, 2, 4, &labels, &[0.5, 0.9, 0.94], Some(&mut grad), 1.0)
        .unwrap();
    assert_eq!(got, 0.0);
    assert!(grad.iter().all(|&g| g == 0.0), "gradient {grad:?}");

    // With every anchor above the threshold the option changes nothing.
    let q = [0.96f32, 0.99, 0.97];
    let mut thresh = loss_with(ContrastAnchors::Threshold(0.95));
    let mut plain = loss_with(ContrastAnchors::All);
    let a = value(&mut thresh, &f, 4, &labels, &q);
    let b = value(&mut plain, &f, 4, &labels, &q);
    assert!((a - b).abs() < 1e-9);
}

#[test]
fn left_out_pairs_low_confidence_only_with_own_views() {
    // Sample 1 shares label 0 with sample 0 but is below the threshold, so under left-out it
    // behaves as if its label were unique.
    let f = normalised_rows(6, 4, 5);
    let q = [0.99f32, 0.5, 0.98];
    let mut left_out = loss_with(ContrastAnchors::LeftOut(0.9));
    let mut plain = loss_with(ContrastAnchors::All);
    let a = value(&mut left_out, &f, 4, &[0, 0, 1], &q);
    let b = value(&mut plain, &f, 4, &[0, 2, 1], &q);
    let c = value(&mut plain, &f, 4, &[0, 0, 1], &q);
    assert!((a - b).abs() < 1e-6, "{a} vs {b}");
    assert!((a - c).abs() > 1e-4);
}

#[test]
fn rejects_bad_input() {
    let f = normalised_rows(4, 3, 6);
    let mut loss = SoftSupConLoss::new(SoftSupConConfig::default()).unwrap();
    let err = loss.forward_backward(&f, 2, 3, &[0, 1, 2], &[1.0; 3], None, 1.0);
    assert_eq!(
        err,
        Err(LossError::ShapeMismatch {
            tensor: "features",
            expected: 18,
            actual: 12
        })
    );
    let err = loss.forward_backward(&f, 2, 3, &[0, 1], &[1.0; 3], None, 1.0);
    assert!(matches!(
        err,
        Err(LossError::ShapeMismatch {
            tensor: "max_probs",
            ..
        })
    ));
    let err = loss.forward_backward(&f, 1, 6, &[0, 1], &[1.0; 2], None, 1.0);
    assert!(matches!(err, Err(LossError::InvalidSetting { .. })));
    let mut short = vec![0.0; 11];
    let err = loss.forward_backward(&f, 2, 3, &[0, 1], &[1.0; 2], Some(&mut short), 1.0);
    assert!(matches!(
        err,
        Err(LossError::ShapeMismatch {
            tensor: "d_features",
            ..
        })
    ));
    let bad = SoftSupConConfig {
        temperature: 0.0,
        ..SoftSupConConfig::default()
    };
    assert!(SoftSupConLoss::new(bad).is_err());
    assert!(loss_with_checked(ContrastAnchors::LeftOut(f32::NAN)).is_err());
}

fn loss_with_checked(anchors: ContrastAnchors) -> Result<SoftSupConLoss, LossError> {
    SoftSupConLoss::new(SoftSupConConfig {
        anchors,
        ..SoftSupConConfig::default()
    })
}
