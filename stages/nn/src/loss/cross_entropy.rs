//! Softmax, softmax cross-entropy with per-sample weights, and FixMatch pseudo-labels.

use super::{LossError, check_len};

/// Writes the row-wise softmax of `logits` (`[rows, num_classes]`, row-major) into `out`.
///
/// # Errors
/// [`LossError::ShapeMismatch`] when `num_classes` is 0, `logits` is not a whole number of
/// rows, or `out` differs in length from `logits`.
pub fn softmax_rows(logits: &[f32], num_classes: usize, out: &mut [f32]) -> Result<(), LossError> {
    let rows = row_count(logits, num_classes)?;
    check_len("softmax output", out.len(), rows * num_classes)?;
    for (row, out_row) in logits
        .chunks_exact(num_classes)
        .zip(out.chunks_exact_mut(num_classes))
    {
        let (max, sum) = max_and_exp_sum(row);
        for (o, &x) in out_row.iter_mut().zip(row) {
            *o = ((f64::from(x) - max).exp() / sum) as f32;
        }
    }
    Ok(())
}

/// Computes `sum_i w_i * CE(logits_i, labels_i) / rows` and, when `d_logits` is given, writes
/// `scale` times its gradient with respect to the logits there.
///
/// `logits` is `[rows, num_classes]` row-major. With `weights = None` every weight is 1 and
/// this is PyTorch's `cross_entropy(reduction="mean")`; with the FixMatch confidence mask as
/// weights it is `(cross_entropy(reduction="none") * mask).mean()`. The divisor is always the
/// row count, not the weight sum, as in both of those. Returns 0 with a zero gradient for
/// zero rows.
///
/// # Errors
/// [`LossError::ShapeMismatch`] for a buffer of the wrong length (including `num_classes == 0`),
/// [`LossError::LabelOutOfRange`] for a label `>= num_classes`.
pub fn softmax_cross_entropy(
    logits: &[f32],
    num_classes: usize,
    labels: &[u32],
    weights: Option<&[f32]>,
    d_logits: Option<&mut [f32]>,
    scale: f32,
) -> Result<f32, LossError> {
    let rows = row_count(logits, num_classes)?;
    check_len("labels", labels.len(), rows)?;
    if let Some(weights) = weights {
        check_len("weights", weights.len(), rows)?;
    }
    if let Some(d) = &d_logits {
        check_len("d_logits", d.len(), logits.len())?;
    }
    check_labels(labels, num_classes)?;

    let mut total = 0.0f64;
    let mut d_logits = d_logits;
    for (i, row) in logits.chunks_exact(num_classes).enumerate() {
        let label = labels[i] as usize;
        let weight = weights.map_or(1.0, |w| f64::from(w[i]));
        let (max, sum) = max_and_exp_sum(row);
        let log_sum = max + sum.ln();
        total += weight * (log_sum - f64::from(row[label]));

        if let Some(d) = d_logits.as_deref_mut() {
            let d_row = &mut d[i * num_classes..(i + 1) * num_classes];
            let factor = f64::from(scale) * weight / rows as f64;
            for (c, (g, &x)) in d_row.iter_mut().zip(row).enumerate() {
                let p = (f64::from(x) - log_sum).exp();
                let target = if c == label { 1.0 } else { 0.0 };
                *g = (factor * (p - target)) as f32;
            }
        }
    }
    if rows == 0 {
        return Ok(0.0);
    }
    Ok((total / rows as f64) as f32)
}

/// Pseudo-labels of FixMatch for a batch of weak-view logits.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PseudoLabels {
    /// Arg-max class of each row's softmax (the first one on ties).
    pub labels: Vec<u32>,
    /// Maximum softmax probability of each row.
    pub max_probs: Vec<f32>,
    /// 1 where `max_prob >= threshold`, else 0.
    pub mask: Vec<f32>,
}

impl PseudoLabels {
    /// Fraction of rows whose mask is 1; 0 for an empty batch.
    pub fn mask_ratio(&self) -> f32 {
        if self.mask.is_empty() {
            return 0.0;
        }
        self.mask.iter().sum::<f32>() / self.mask.len() as f32
    }
}

/// Computes pseudo-labels from `softmax(logits / temperature)` with the confidence mask
/// `max_prob >= threshold`.
///
/// # Errors
/// [`LossError::ShapeMismatch`] for logits that are not whole rows, and
/// [`LossError::InvalidSetting`] for a temperature that is not positive and finite.
pub fn pseudo_labels(
    logits: &[f32],
    num_classes: usize,
    temperature: f32,
    threshold: f32,
) -> Result<PseudoLabels, LossError> {
    if !(temperature.is_finite() && temperature > 0.0) {
        return Err(LossError::InvalidSetting {
            name: "pseudo-label temperature",
            value: temperature,
            accepted: "a finite number > 0",
        });
    }
    let rows = row_count(logits, num_classes)?;
    let mut out = PseudoLabels {
        labels: Vec::with_capacity(rows),
        max_probs: Vec::with_capacity(rows),
        mask: Vec::with_capacity(rows),
    };
    let mut scaled = vec![0.0f32; num_classes];
    for row in logits.chunks_exact(num_classes) {
        for (s, &x) in scaled.iter_mut().zip(row) {
            *s = x / temperature;
        }
        let (max, sum) = max_and_exp_sum(&scaled);
        let mut best = 0;
        for (c, &x) in scaled.iter().enumerate() {
            if x > scaled[best] {
                best = c;
            }
        }
        let max_prob = ((f64::from(scaled[best]) - max).exp() / sum) as f32;
        out.labels.push(best as u32);
        out.max_probs.push(max_prob);
        out.mask.push(if max_prob >= threshold { 1.0 } else { 0.0 });
    }
    Ok(out)
}

/// Number of rows of a `[rows, num_classes]` buffer.
fn row_count(logits: &[f32], num_classes: usize) -> Result<usize, LossError> {
    if num_classes == 0 || !logits.len().is_multiple_of(num_classes) {
        let expected = num_classes.max(1) * logits.len().div_ceil(num_classes.max(1));
        return Err(LossError::ShapeMismatch {
            tensor: "logits",
            expected,
            actual: logits.len(),
        });
    }
    Ok(logits.len() / num_classes)
}

fn check_labels(labels: &[u32], num_classes: usize) -> Result<(), LossError> {
    match labels.iter().position(|&l| l as usize >= num_classes) {
        Some(index) => Err(LossError::LabelOutOfRange {
            index,
            label: labels[index],
            num_classes,
        }),
        None => Ok(()),
    }
}

/// Returns `(max, sum_c exp(x_c - max))` of one row, in `f64`.
fn max_and_exp_sum(row: &[f32]) -> (f64, f64) {
    let max = row
        .iter()
        .fold(f64::NEG_INFINITY, |m, &x| m.max(f64::from(x)));
    let sum = row.iter().map(|&x| (f64::from(x) - max).exp()).sum();
    (max, sum)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample_logits() -> Vec<f32> {
        (0..20)
            .map(|i| ((i * 7 % 11) as f32 - 5.0) * 0.37)
            .collect()
    }

    #[test]
    fn cross_entropy_matches_hand_computation() {
        // Two rows of two classes: CE = log(1 + e^(other - target)).
        let logits = [2.0f32, 0.0, 0.0, 1.0];
        let loss = softmax_cross_entropy(&logits, 2, &[0, 0], None, None, 1.0).unwrap();
        let expected = ((1.0 + (-2.0f64).exp()).ln() + (1.0 + 1.0f64.exp()).ln()) / 2.0;
        assert!(
            (f64::from(loss) - expected).abs() < 1e-6,
            "{loss} vs {expected}"
        );
    }

    #[test]
    fn cross_entropy_weights_divide_by_rows() {
        let logits = [2.0f32, 0.0, 0.0, 1.0];
        let loss = softmax_cross_entropy(&logits, 2, &[0, 0], Some(&[0.0, 1.0]), None, 1.0);
        let expected = (1.0 + 1.0f64.exp()).ln() / 2.0;
        assert!((f64::from(loss.unwrap()) - expected).abs() < 1e-6);
    }

    #[test]
    fn cross_entropy_gradient_matches_finite_differences() {
        let logits = sample_logits();
        let labels = [3u32, 0, 4, 1];
        let weights = [1.0f32, 0.0, 0.5, 2.0];
        let scale = 0.7f32;
        let mut grad = vec![0.0f32; logits.len()];
        softmax_cross_entropy(&logits, 5, &labels, Some(&weights), Some(&mut grad), scale).unwrap();
        let eps = 1e-2f32;
        for k in 0..logits.len() {
            let mut plus = logits.clone();
            let mut minus = logits.clone();
            plus[k] += eps;
            minus[k] -= eps;
            let f = |x: &[f32]| {
                f64::from(softmax_cross_entropy(x, 5, &labels, Some(&weights), None, 1.0).unwrap())
            };
            let numeric = f64::from(scale) * (f(&plus) - f(&minus))
                / (f64::from(plus[k]) - f64::from(minus[k]));
            let analytic = f64::from(grad[k]);
            assert!(
                (numeric - analytic).abs() < 2e-4,
                "d_logits[{k}]: analytic {analytic}, numeric {numeric}"
            );
        }
    }

    #[test]
    fn cross_entropy_rejects_bad_shapes_and_labels() {
        let logits = sample_logits();
        let err = softmax_cross_entropy(&logits, 3, &[0; 4], None, None, 1.0).unwrap_err();
        assert!(matches!(
            err,
            LossError::ShapeMismatch {
                tensor: "logits",
                ..
            }
        ));
        let err = softmax_cross_entropy(&logits, 5, &[0; 3], None, None, 1.0).unwrap_err();
        assert_eq!(
            err,
            LossError::ShapeMismatch {
                tensor: "labels",
                expected: 4,
                actual: 3
            }
        );
        let err = softmax_cross_entropy(&logits, 5, &[0, 5, 0, 0], None, None, 1.0).unwrap_err();
        assert_eq!(
            err,
            LossError::LabelOutOfRange {
                index: 1,
                label: 5,
                num_classes: 5
            }
        );
        let mut short = vec![0.0; 19];
        let err = softmax_cross_entropy(&logits, 5, &[0; 4], None, Some(&mut short), 1.0);
        assert!(matches!(
            err,
            Err(LossError::ShapeMismatch {
                tensor: "d_logits",
                ..
            })
        ));
        assert!(softmax_cross_entropy(&logits, 0, &[], None, None, 1.0).is_err());
    }

    #[test]
    fn softmax_rows_sum_to_one() {
        let logits = sample_logits();
        let mut probs = vec![0.0; logits.len()];
        softmax_rows(&logits, 5, &mut probs).unwrap();
        for row in probs.chunks(5) {
            let sum: f32 = row.iter().sum();
            assert!((sum - 1.0).abs() < 1e-6, "row sums to {sum}");
        }
    }

    #[test]
    fn pseudo_labels_pick_argmax_and_mask() {
        // Row 0 is confident (p = 0.99...), row 1 is uniform, row 2 ties: the first wins.
        let logits = [0.0f32, 10.0, 0.0, 1.0, 1.0, 1.0, 3.0, 3.0, -1.0];
        let pl = pseudo_labels(&logits, 3, 1.0, 0.95).unwrap();
        assert_eq!(pl.labels, vec![1, 0, 0]);
        assert_eq!(pl.mask, vec![1.0, 0.0, 0.0]);
        assert!((pl.max_probs[1] - 1.0 / 3.0).abs() < 1e-6);
        let expected0 = 1.0 / (1.0 + 2.0 * (-10.0f64).exp());
        assert!((f64::from(pl.max_probs[0]) - expected0).abs() < 1e-6);
        assert!((pl.mask_ratio() - 1.0 / 3.0).abs() < 1e-6);
        assert!(pseudo_labels(&logits, 3, 0.0, 0.95).is_err());
    }
}
