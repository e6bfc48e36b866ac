//! The class-aware soft supervised-contrastive loss of CCSSL.
//!
//! Semantics follow `SoftSupConLoss` of the official CCSSL code
//! (TencentYoutuResearch/Classification-SemiCLS, `loss/soft_supconloss.py`, the revision that
//! sets the diagonal of the score matrix to 1) with `contrast_mode = "all"`, as called by its
//! `trainer/fixmatch_ccssl.py` with `contrast_with_softlabel = True`:
//!
//! * The `m = views * n` anchors are the rows of the features in view-major order (row
//!   `v * n + i` is view `v` of sample `i`), each contrasted with all `m - 1` other rows.
//! * `s_ab = f_a . f_b / temperature`; `log p_ab = s_ab - log sum_{k != a} exp(s_ak)`.
//! * The positive weight of samples `i, j` is `[y_i == y_j] * (i == j ? 1 : q_i q_j)` with
//!   pseudo-labels `y` and confidences `q`; under `contrast_left_out` it is further multiplied
//!   by `[i == j or (q_i >= t and q_j >= t)]`.
//! * `L_a = -(temperature / base_temperature) * sum_b w_ab log p_ab / sum_b w_ab` over `b != a`.
//! * The loss is `sum_a c_a L_a / m`, where `c_a = [q_i >= t]` under `contrast_with_thresh` and
//!   1 otherwise.
//!
//! With two or more views every anchor has its own other views as positives of weight 1, so
//! the weight sums are never 0.

use super::{LossError, check_len};
use crate::matmul::{MatRef, matmul};

/// Selection of the anchors and pairs that count in the contrastive loss.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub enum ContrastAnchors {
    /// Every anchor and every same-label pair counts, weighted by confidence.
    #[default]
    All,
    /// `contrast_with_thresh`: anchors whose confidence is below the threshold get loss 0. The
    /// mean still divides by the count of all anchors.
    Threshold(f32),
    /// `contrast_left_out`: a pair of distinct samples counts only when both confidences reach
    /// the threshold, so low-confidence samples pair only with their own views.
    LeftOut(f32),
}

/// Settings of [`SoftSupConLoss`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SoftSupConConfig {
    /// Temperature dividing the cosine similarities; default 0.07.
    pub temperature: f32,
    /// Base temperature; the loss is scaled by `temperature / base_temperature`. Default 0.07.
    pub base_temperature: f32,
    /// Selection of anchors and pairs; default [`ContrastAnchors::All`].
    pub anchors: ContrastAnchors,
}

impl Default for SoftSupConConfig {
    fn default() -> Self {
        Self {
            temperature: 0.07,
            base_temperature: 0.07,
            anchors: ContrastAnchors::All,
        }
    }
}

/// The soft supervised-contrastive loss with its scratch buffers, reused across calls.
#[derive(Clone, Debug)]
pub struct SoftSupConLoss {
    config: SoftSupConConfig,
    /// `[m, m]` similarities `s_ab`, overwritten by the gradient with respect to them.
    scratch: Vec<f64>,
    /// Positive weights of one anchor row, `[m]`.
    row_weights: Vec<f64>,
    /// `[m, m]` f32 product buffer: the Gram matrix `F F^T`, then the symmetrised gradient.
    product: Vec<f32>,
}

impl SoftSupConLoss {
    /// Creates the loss after checking the settings.
    ///
    /// # Errors
    /// [`LossError::InvalidSetting`] for a temperature or base temperature that is not positive
    /// and finite, or a threshold that is not finite.
    pub fn new(config: SoftSupConConfig) -> Result<Self, LossError> {
        for (name, value) in [
            ("contrastive temperature", config.temperature),
            ("contrastive base temperature", config.base_temperature),
        ] {
            if !(value.is_finite() && value > 0.0) {
                return Err(LossError::InvalidSetting {
                    name,
                    value,
                    accepted: "a finite number > 0",
                });
            }
        }
        if let ContrastAnchors::Threshold(t) | ContrastAnchors::LeftOut(t) = config.anchors
            && !t.is_finite()
        {
            return Err(LossError::InvalidSetting {
                name: "contrastive threshold",
                value: t,
                accepted: "a finite number, usually in [0, 1]",
            });
        }
        Ok(Self {
            config,
            scratch: Vec::new(),
            row_weights: Vec::new(),
            product: Vec::new(),
        })
    }

    /// Returns the settings this loss was created with.
    pub fn config(&self) -> &SoftSupConConfig {
        &self.config
    }

    /// Computes the loss and, when `d_features` is given, writes `scale` times its gradient
    /// with respect to `features` there.
    ///
    /// `features` is `[views * n, dim]`, view-major (row `v * n + i` is view `v` of sample
    /// `i`), normally L2-normalised; `labels` and `max_probs` have one entry per sample.
    /// Returns 0 for `n == 0`.
    ///
    /// # Errors
    /// [`LossError::InvalidSetting`] for fewer than 2 views or `dim == 0`, and
    /// [`LossError::ShapeMismatch`] for a buffer of the wrong length.
    #[allow(clippy::too_many_arguments)]
    pub fn forward_backward(
        &mut self,
        features: &[f32],
        views: usize,
        dim: usize,
        labels: &[u32],
        max_probs: &[f32],
        d_features: Option<&mut [f32]>,
        scale: f32,
    ) -> Result<f32, LossError> {
        if views < 2 || dim == 0 {
            return Err(LossError::InvalidSetting {
                name: if views < 2 {
                    "contrastive views"
                } else {
                    "feature dimension"
                },
                value: if views < 2 { views as f32 } else { dim as f32 },
                accepted: "at least 2 views and a dimension of at least 1",
            });
        }
        let n = labels.len();
        let m = views * n;
        check_len("max_probs", max_probs.len(), n)?;
        check_len("features", features.len(), m * dim)?;
        if let Some(d) = &d_features {
            check_len("d_features", d.len(), m * dim)?;
        }
        if n == 0 {
            return Ok(0.0);
        }

        self.similarities(features, m, dim);
        let loss = self.loss_and_similarity_gradient(labels, max_probs, m);
        if let Some(d) = d_features {
            self.feature_gradient(features, m, dim, scale, d);
        }
        Ok(loss as f32)
    }

    /// Fills `scratch` with `s_ab = f_a . f_b / temperature`.
    ///
    /// The Gram matrix is an f32 GEMM, as in the reference's f32 `matmul`; the rest of the loss
    /// runs in f64.
    fn similarities(&mut self, features: &[f32], m: usize, dim: usize) {
        let inv_t = 1.0 / f64::from(self.config.temperature);
        let rows = MatRef::rows(features, m, dim);
        self.product.resize(m * m, 0.0);
        matmul(&mut self.product, m, rows, rows.t(), false);
        self.scratch.clear();
        self.scratch
            .extend(self.product.iter().map(|&x| f64::from(x) * inv_t));
    }

    /// Positive weight of samples `i` and `j` (see the module doc).
    fn pair_weight(&self, labels: &[u32], q: &[f32], i: usize, j: usize) -> f64 {
        if labels[i] != labels[j] {
            return 0.0;
        }
        if i == j {
            return 1.0;
        }
        if let ContrastAnchors::LeftOut(t) = self.config.anchors
            && (q[i] < t || q[j] < t)
        {
            return 0.0;
        }
        f64::from(q[i]) * f64::from(q[j])
    }

    /// Returns the loss and replaces each row of similarities in `scratch` by the gradient of
    /// the loss with respect to it: `-(T / T_base) c_a / m * (w_ab / sum_b w_ab - p_ab)`.
    fn loss_and_similarity_gradient(&mut self, labels: &[u32], q: &[f32], m: usize) -> f64 {
        let n = labels.len();
        let ratio = f64::from(self.config.temperature) / f64::from(self.config.base_temperature);
        let mut scratch = std::mem::take(&mut self.scratch);
        let mut weights = std::mem::take(&mut self.row_weights);
        weights.clear();
        weights.resize(m, 0.0);
        let mut loss = 0.0;
        for (a, row) in scratch.chunks_exact_mut(m).enumerate() {
            let i = a % n;
            let anchor_weight = match self.config.anchors {
                ContrastAnchors::Threshold(t) if q[i] < t => 0.0,
                _ => 1.0 / m as f64,
            };
            if anchor_weight == 0.0 {
                row.fill(0.0);
                continue;
            }

            // The shift by the row maximum (self-similarity included, as in the reference)
            // cancels in log p and only keeps exp() in range.
            let max = row.iter().fold(f64::NEG_INFINITY, |x, &y| x.max(y));
            let mut exp_sum = 0.0;
            let mut weight_sum = 0.0;
            let mut weighted_sim = 0.0;
            for (b, &s) in row.iter().enumerate() {
                weights[b] = if b == a {
                    0.0
                } else {
                    self.pair_weight(labels, q, i, b % n)
                };
                if b != a {
                    exp_sum += (s - max).exp();
                    weight_sum += weights[b];
                    weighted_sim += weights[b] * s;
                }
            }
            let log_norm = max + exp_sum.ln();
            loss += -ratio * anchor_weight * (weighted_sim / weight_sum - log_norm);

            let coef = -ratio * anchor_weight;
            for (b, s) in row.iter_mut().enumerate() {
                let p = if b == a { 0.0 } else { (*s - log_norm).exp() };
                *s = coef * (weights[b] / weight_sum - p);
            }
        }
        self.scratch = scratch;
        self.row_weights = weights;
        loss
    }

    /// Writes `d_a = scale / T * sum_b (G_ab + G_ba) f_b` from the similarity gradient `G`,
    /// as one f32 GEMM.
    fn feature_gradient(
        &mut self,
        features: &[f32],
        m: usize,
        dim: usize,
        scale: f32,
        d: &mut [f32],
    ) {
        let factor = f64::from(scale) / f64::from(self.config.temperature);
        let g = &self.scratch;
        for a in 0..m {
            for b in 0..m {
                self.product[a * m + b] = (factor * (g[a * m + b] + g[b * m + a])) as f32;
            }
        }
        let sym = MatRef::rows(&self.product, m, m);
        matmul(d, dim, sym, MatRef::rows(features, m, dim), false);
    }
}

#[cfg(test)]
mod tests;
