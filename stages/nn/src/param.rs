//! Trainable parameters and the seeded initialisers of the reference WideResNet.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// A trainable tensor with its gradient, both row-major in PyTorch's layout
/// (`[out, in, kh, kw]` for convolutions, `[out, in]` for linear layers).
#[derive(Debug, Clone, PartialEq)]
pub struct Param {
    /// Current values.
    pub value: Vec<f32>,
    /// Gradient of the last `backward`; overwritten, not accumulated, by each backward pass.
    pub grad: Vec<f32>,
    /// PyTorch shape of `value` and `grad`.
    pub shape: Vec<usize>,
}

impl Param {
    /// Builds a parameter filled with `fill` and a zero gradient.
    pub fn filled(shape: &[usize], fill: f32) -> Self {
        let numel: usize = shape.iter().product();
        Self {
            value: vec![fill; numel],
            grad: vec![0.0; numel],
            shape: shape.to_vec(),
        }
    }
}

/// Normal-distribution source for weight initialisation, seeded and platform independent.
pub(crate) struct InitRng {
    rng: ChaCha8Rng,
}

impl InitRng {
    pub fn new(seed: u64) -> Self {
        Self {
            rng: ChaCha8Rng::seed_from_u64(seed),
        }
    }

    /// Fills `out` with N(0, std^2) samples (Box-Muller on two uniform draws).
    pub fn fill_normal(&mut self, out: &mut [f32], std: f64) {
        for value in out.iter_mut() {
            // Uniform in (0, 1] so that ln() is finite.
            let u1: f64 = 1.0 - self.rng.random::<f64>();
            let u2: f64 = self.rng.random::<f64>();
            let z = (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos();
            *value = (z * std) as f32;
        }
    }

    /// PyTorch `kaiming_normal_(mode="fan_out", nonlinearity="leaky_relu")` with the default
    /// slope 0: std = sqrt(2 / fan_out), fan_out = out_channels * kh * kw.
    pub fn kaiming_normal_fan_out(&mut self, weight: &mut Param) {
        let fan_out: usize = weight.shape[0] * weight.shape[2..].iter().product::<usize>();
        self.fill_normal(&mut weight.value, (2.0 / fan_out as f64).sqrt());
    }

    /// PyTorch `xavier_normal_` with gain 1: std = sqrt(2 / (fan_in + fan_out)).
    pub fn xavier_normal(&mut self, weight: &mut Param) {
        let fan_sum = weight.shape[0] + weight.shape[1];
        self.fill_normal(&mut weight.value, (2.0 / fan_sum as f64).sqrt());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kaiming_std_matches_fan_out() {
        let mut weight = Param::filled(&[64, 32, 3, 3], 0.0);
        InitRng::new(7).kaiming_normal_fan_out(&mut weight);
        let n = weight.value.len() as f64;
        let mean = weight.value.iter().map(|&v| v as f64).sum::<f64>() / n;
        let var = weight
            .value
            .iter()
            .map(|&v| (v as f64 - mean).powi(2))
            .sum::<f64>()
            / n;
        let expected = 2.0 / (64.0 * 9.0);
        assert!(mean.abs() < 0.003, "mean {mean}");
        assert!(
            (var / expected - 1.0).abs() < 0.05,
            "var {var} expected {expected}"
        );
    }

    #[test]
    fn same_seed_same_values() {
        let mut a = Param::filled(&[10, 10], 0.0);
        let mut b = Param::filled(&[10, 10], 0.0);
        InitRng::new(3).xavier_normal(&mut a);
        InitRng::new(3).xavier_normal(&mut b);
        assert_eq!(a, b);
        InitRng::new(4).xavier_normal(&mut b);
        assert_ne!(a, b);
    }
}
