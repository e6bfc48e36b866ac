//! BatchNorm2d with an optional fused LeakyReLU.
//!
//! Training mode normalises with the batch statistics (biased variance) and updates the running
//! statistics the PyTorch way: `running = (1 - momentum) * running + momentum * batch`, with the
//! unbiased variance for `running_var`. The fused activation is applied to the normalised value,
//! so `output = leaky_relu(weight * x_hat + bias)`. Backward recomputes `x_hat` from the input and
//! the saved statistics instead of caching the normalised tensor, which halves the activation
//! memory of the network at the cost of one extra elementwise pass.

use rayon::prelude::*;

use crate::{NnError, Param, Tensor, ThreadPool};

/// PyTorch's default BatchNorm epsilon.
pub const BN_EPS: f32 = 1e-5;

/// Per-channel statistics of one training batch, kept for backward.
#[derive(Debug, Clone, Default)]
struct BatchStats {
    mean: Vec<f32>,
    inv_std: Vec<f32>,
    shape: Vec<usize>,
}

/// BatchNorm2d (affine, tracking running statistics), optionally followed by LeakyReLU.
#[derive(Debug, Clone)]
pub struct BatchNorm2d {
    /// Scale `gamma`, `[channels]`.
    pub weight: Param,
    /// Shift `beta`, `[channels]`.
    pub bias: Param,
    /// Running mean, `[channels]`.
    pub running_mean: Vec<f32>,
    /// Running (unbiased) variance, `[channels]`.
    pub running_var: Vec<f32>,
    /// Number of training batches seen (PyTorch's `num_batches_tracked`).
    pub num_batches_tracked: i64,
    /// Weight of the newest batch in the running statistics.
    pub momentum: f32,
    /// Variance epsilon.
    pub eps: f32,
    /// Negative slope of the fused LeakyReLU, or `None` for no activation.
    pub negative_slope: Option<f32>,
    stats: BatchStats,
}

impl BatchNorm2d {
    /// Builds a layer with weight 1, bias 0, running mean 0 and running variance 1.
    pub fn new(channels: usize, momentum: f32, negative_slope: Option<f32>) -> Self {
        Self {
            weight: Param::filled(&[channels], 1.0),
            bias: Param::filled(&[channels], 0.0),
            running_mean: vec![0.0; channels],
            running_var: vec![1.0; channels],
            num_batches_tracked: 0,
            momentum,
            eps: BN_EPS,
            negative_slope,
            stats: BatchStats::default(),
        }
    }

    /// Number of channels.
    pub fn channels(&self) -> usize {
        self.running_mean.len()
    }

    fn check(&self, shape: &[usize], name: &str) -> Result<(usize, usize, usize), NnError> {
        match *shape {
            [n, c, h, w] if c == self.channels() && n * h * w > 0 => Ok((n, c, h * w)),
            _ => Err(NnError::Shape {
                name: name.into(),
                expected: format!("[N, {}, H, W] with N * H * W > 0", self.channels()),
                actual: shape.to_vec(),
            }),
        }
    }

    /// Computes the batch statistics of `input`, keeps them for [`Self::apply`] and
    /// [`Self::backward`], and updates the running statistics. Produces no output: the
    /// reference WideResNet computes such a discarded normalisation in its first block of each
    /// downsampling stage, and only its running statistics matter.
    ///
    /// # Errors
    /// [`NnError::Shape`] when the input is not `[N, channels, H, W]`.
    pub fn track_batch_stats(&mut self, pool: &ThreadPool, input: &Tensor) -> Result<(), NnError> {
        let (n, c, hw) = self.check(input.shape(), "batchnorm input")?;
        let x = input.data();
        let count = (n * hw) as f64;
        // Sums of (x - shift) and (x - shift)^2 with shift = the channel's first value, so the
        // variance E[d^2] - E[d]^2 does not cancel catastrophically when |mean| >> std.
        let sums: Vec<(f64, f64, f64)> = pool.install(|| {
            (0..c)
                .into_par_iter()
                .map(|ch| {
                    let shift = x[ch * hw];
                    let (mut s, mut ss) = (0.0f64, 0.0f64);
                    for i in 0..n {
                        let (ps, pss) = shifted_sums(&x[(i * c + ch) * hw..][..hw], shift);
                        s += ps as f64;
                        ss += pss as f64;
                    }
                    (s, ss, shift as f64)
                })
                .collect()
        });
        let stats = &mut self.stats;
        stats.mean.resize(c, 0.0);
        stats.inv_std.resize(c, 0.0);
        stats.shape = input.shape().to_vec();
        let m = self.momentum as f64;
        for (ch, &(s, ss, shift)) in sums.iter().enumerate() {
            let shifted_mean = s / count;
            let var = (ss / count - shifted_mean * shifted_mean).max(0.0);
            let mean = shifted_mean + shift;
            stats.mean[ch] = mean as f32;
            stats.inv_std[ch] = (1.0 / (var + self.eps as f64).sqrt()) as f32;
            let unbiased = if count > 1.0 {
                var * count / (count - 1.0)
            } else {
                var
            };
            self.running_mean[ch] = ((1.0 - m) * self.running_mean[ch] as f64 + m * mean) as f32;
            self.running_var[ch] = ((1.0 - m) * self.running_var[ch] as f64 + m * unbiased) as f32;
        }
        self.num_batches_tracked += 1;
        Ok(())
    }

    /// Training forward: batch statistics, running-statistic update, normalised output.
    ///
    /// # Errors
    /// [`NnError::Shape`] when the input is not `[N, channels, H, W]`.
    pub fn forward_train(
        &mut self,
        pool: &ThreadPool,
        input: &Tensor,
        output: &mut Tensor,
    ) -> Result<(), NnError> {
        self.track_batch_stats(pool, input)?;
        self.apply(pool, input, output)
    }

    /// Recomputes the training output from `input` with the statistics of the last
    /// [`Self::track_batch_stats`] (used by backward passes that did not keep the output).
    ///
    /// # Errors
    /// [`NnError::Shape`] when the input shape differs from the one the statistics came from.
    pub fn apply(
        &self,
        pool: &ThreadPool,
        input: &Tensor,
        output: &mut Tensor,
    ) -> Result<(), NnError> {
        self.check_stats(input.shape())?;
        self.normalise(pool, input, output, &self.stats.mean, &self.stats.inv_std);
        Ok(())
    }

    /// Evaluation forward with the running statistics; changes nothing in the layer.
    ///
    /// # Errors
    /// [`NnError::Shape`] when the input is not `[N, channels, H, W]`.
    pub fn forward_eval(
        &self,
        pool: &ThreadPool,
        input: &Tensor,
        output: &mut Tensor,
    ) -> Result<(), NnError> {
        self.check(input.shape(), "batchnorm input")?;
        let inv_std: Vec<f32> = self
            .running_var
            .iter()
            .map(|&v| 1.0 / (v + self.eps).sqrt())
            .collect();
        self.normalise(pool, input, output, &self.running_mean, &inv_std);
        Ok(())
    }

    fn check_stats(&self, shape: &[usize]) -> Result<(), NnError> {
        if self.stats.shape != shape {
            return Err(NnError::Shape {
                name: "batchnorm input (against the last training batch)".into(),
                expected: format!("{:?}", self.stats.shape),
                actual: shape.to_vec(),
            });
        }
        Ok(())
    }

    fn normalise(
        &self,
        pool: &ThreadPool,
        input: &Tensor,
        output: &mut Tensor,
        mean: &[f32],
        inv_std: &[f32],
    ) {
        let shape = input.shape();
        let (c, hw) = (shape[1], shape[2] * shape[3]);
        output.resize(shape);
        let slope = self.negative_slope;
        let (gamma, beta) = (&self.weight.value, &self.bias.value);
        pool.install(|| {
            output
                .data_mut()
                .par_chunks_mut(hw)
                .zip(input.data().par_chunks(hw))
                .enumerate()
                .for_each(|(plane, (y, x))| {
                    let ch = plane % c;
                    let scale = gamma[ch] * inv_std[ch];
                    let shift = beta[ch] - mean[ch] * scale;
                    match slope {
                        Some(a) => y.iter_mut().zip(x).for_each(|(y, &x)| {
                            let z = x * scale + shift;
                            *y = if z > 0.0 { z } else { a * z };
                        }),
                        None => y
                            .iter_mut()
                            .zip(x)
                            .for_each(|(y, &x)| *y = x * scale + shift),
                    }
                });
        });
    }

    /// Backward of the training forward. On entry `grad` holds the gradient of the output; on
    /// return it holds the gradient of the input. Overwrites `weight.grad` and `bias.grad`.
    ///
    /// # Errors
    /// [`NnError::Shape`] when `input` or `grad` differ from the last training batch's shape.
    pub fn backward(
        &mut self,
        pool: &ThreadPool,
        input: &Tensor,
        grad: &mut Tensor,
    ) -> Result<(), NnError> {
        self.check_stats(input.shape())?;
        self.check_stats(grad.shape())?;
        let shape = input.shape();
        let (n, c, hw) = (shape[0], shape[1], shape[2] * shape[3]);
        let (x, slope) = (input.data(), self.negative_slope);
        let (mean, inv_std) = (&self.stats.mean, &self.stats.inv_std);
        let (gamma, beta) = (&self.weight.value, &self.bias.value);
        let dy = grad.data();
        // Pass 1: per channel, gradient of the pre-activation summed (d_beta) and weighted by
        // x_hat (d_gamma).
        let sums: Vec<(f64, f64)> = pool.install(|| {
            (0..c)
                .into_par_iter()
                .map(|ch| {
                    let scale = gamma[ch] * inv_std[ch];
                    let shift = beta[ch] - mean[ch] * scale;
                    let (mut sb, mut sg) = (0.0f64, 0.0f64);
                    for i in 0..n {
                        let off = (i * c + ch) * hw;
                        let (pb, pg) = grad_sums(
                            &x[off..off + hw],
                            &dy[off..off + hw],
                            [mean[ch], inv_std[ch], scale, shift],
                            slope,
                        );
                        sb += pb as f64;
                        sg += pg as f64;
                    }
                    (sb, sg)
                })
                .collect()
        });
        let count = (n * hw) as f32;
        for (ch, &(sb, sg)) in sums.iter().enumerate() {
            self.bias.grad[ch] = sb as f32;
            self.weight.grad[ch] = sg as f32;
        }
        let (d_beta, d_gamma) = (&self.bias.grad, &self.weight.grad);
        // Pass 2: dx = gamma * inv_std / M * (M * dz - d_beta - x_hat * d_gamma).
        pool.install(|| {
            grad.data_mut()
                .par_chunks_mut(hw)
                .enumerate()
                .for_each(|(plane, g)| {
                    let ch = plane % c;
                    let x = &x[plane * hw..][..hw];
                    let scale = gamma[ch] * inv_std[ch];
                    let shift = beta[ch] - mean[ch] * scale;
                    let negative = slope.unwrap_or(1.0);
                    // dx = k * (M * dz - d_beta - x_hat * d_gamma), expanded into
                    // a * dz + b * x + c so that the loop is one select and two FMAs.
                    let k = scale / count;
                    let a = k * count;
                    let b = -k * inv_std[ch] * d_gamma[ch];
                    let c0 = -k * d_beta[ch] + k * mean[ch] * inv_std[ch] * d_gamma[ch];
                    for (g, &x) in g.iter_mut().zip(x) {
                        let factor = if x * scale + shift > 0.0 {
                            1.0
                        } else {
                            negative
                        };
                        *g = a * factor * *g + b * x + c0;
                    }
                });
        });
        Ok(())
    }
}

/// Lane count of the vectorised reductions below; separate accumulators per lane let the
/// compiler vectorise f32 sums without reassociating them.
const LANES: usize = 8;

/// Returns `(sum(x - shift), sum((x - shift)^2))` over one plane.
fn shifted_sums(plane: &[f32], shift: f32) -> (f32, f32) {
    let (mut s, mut ss) = ([0.0f32; LANES], [0.0f32; LANES]);
    let chunks = plane.chunks_exact(LANES);
    let tail = chunks.remainder();
    for chunk in chunks {
        for j in 0..LANES {
            let d = chunk[j] - shift;
            s[j] += d;
            ss[j] += d * d;
        }
    }
    for &v in tail {
        let d = v - shift;
        s[0] += d;
        ss[0] += d * d;
    }
    (s.iter().sum(), ss.iter().sum())
}

/// Returns `(sum(dz), sum(dz * x_hat))` over one plane, where `dz` is the gradient of the
/// pre-activation. `coefficients` is `[mean, inv_std, scale, shift]` of the channel.
fn grad_sums(x: &[f32], dy: &[f32], coefficients: [f32; 4], slope: Option<f32>) -> (f32, f32) {
    let [mean, inv_std, scale, shift] = coefficients;
    let negative = slope.unwrap_or(1.0);
    let (mut sb, mut sg) = ([0.0f32; LANES], [0.0f32; LANES]);
    let term = |x: f32, dy: f32| {
        let factor = if x * scale + shift > 0.0 {
            1.0
        } else {
            negative
        };
        let dz = dy * factor;
        (dz, dz * (x - mean) * inv_std)
    };
    let (xc, dc) = (x.chunks_exact(LANES), dy.chunks_exact(LANES));
    let (xt, dt) = (xc.remainder(), dc.remainder());
    for (xs, ds) in xc.zip(dc) {
        for j in 0..LANES {
            let (b, g) = term(xs[j], ds[j]);
            sb[j] += b;
            sg[j] += g;
        }
    }
    for (&x, &dy) in xt.iter().zip(dt) {
        let (b, g) = term(x, dy);
        sb[0] += b;
        sg[0] += g;
    }
    (sb.iter().sum(), sg.iter().sum())
}
