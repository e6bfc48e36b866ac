//! SGD with momentum and Nesterov (PyTorch `torch.optim.SGD` semantics) and the cosine
//! learning-rate schedule of the reference trainer.

use crate::{NnError, Param};

/// SGD settings.
#[derive(Debug, Clone, PartialEq)]
pub struct SgdConfig {
    /// Momentum factor (0.9 in the reference).
    pub momentum: f32,
    /// Nesterov momentum (on in the reference).
    pub nesterov: bool,
    /// L2 weight decay added to the gradient of decayed parameters.
    pub weight_decay: f32,
    /// A parameter whose name contains any of these substrings gets no weight decay. The
    /// reference uses `["bias", "bn"]`, so biases and BatchNorm parameters are not decayed.
    pub no_decay: Vec<String>,
}

impl SgdConfig {
    /// The reference settings: momentum 0.9, Nesterov, no decay on `bias` and `bn` parameters.
    pub fn reference(weight_decay: f32) -> Self {
        Self {
            momentum: 0.9,
            nesterov: true,
            weight_decay,
            no_decay: vec!["bias".into(), "bn".into()],
        }
    }

    /// Whether the parameter called `name` is weight-decayed.
    pub fn decays(&self, name: &str) -> bool {
        !self
            .no_decay
            .iter()
            .any(|pattern| name.contains(pattern.as_str()))
    }
}

/// SGD optimizer holding one momentum buffer per parameter, keyed by name.
#[derive(Debug, Clone)]
pub struct Sgd {
    config: SgdConfig,
    buffers: Vec<(String, Vec<f32>)>,
}

impl Sgd {
    /// Builds an optimizer with empty momentum buffers (filled at the first step).
    pub fn new(config: SgdConfig) -> Self {
        Self {
            config,
            buffers: Vec::new(),
        }
    }

    /// The settings.
    pub fn config(&self) -> &SgdConfig {
        &self.config
    }

    /// Applies one update with learning rate `lr` to `params` (the same list, in the same
    /// order, at every step), per parameter:
    /// `d = g + wd * p; buf = momentum * buf + d; d = d + momentum * buf (Nesterov) or buf;
    /// p -= lr * d`. At the first step `buf = d`, as PyTorch does.
    ///
    /// # Errors
    /// [`NnError::Optimizer`] when a name or length differs from the first step's list.
    pub fn step<'a>(
        &mut self,
        params: impl IntoIterator<Item = (String, &'a mut Param)>,
        lr: f32,
    ) -> Result<(), NnError> {
        let first = self.buffers.is_empty();
        let (m, wd) = (self.config.momentum, self.config.weight_decay);
        let mut count = 0;
        for (index, (name, param)) in params.into_iter().enumerate() {
            count += 1;
            let decay = if self.config.decays(&name) { wd } else { 0.0 };
            if first {
                self.buffers.push((name.clone(), Vec::new()));
            }
            let Some((buffer_name, buffer)) = self.buffers.get_mut(index) else {
                return Err(NnError::Optimizer {
                    name,
                    reason: "not in the parameter list of the first step".into(),
                });
            };
            if *buffer_name != name {
                return Err(NnError::Optimizer {
                    name,
                    reason: format!("expected parameter {buffer_name} at position {index}"),
                });
            }
            if param.grad.len() != param.value.len()
                || (!buffer.is_empty() && buffer.len() != param.value.len())
            {
                return Err(NnError::Optimizer {
                    name,
                    reason: "gradient or momentum length differs from the value length".into(),
                });
            }
            let init = buffer.is_empty();
            if init {
                buffer.resize(param.value.len(), 0.0);
            }
            let nesterov = self.config.nesterov;
            for ((p, &g), b) in param
                .value
                .iter_mut()
                .zip(&param.grad)
                .zip(buffer.iter_mut())
            {
                let d = g + decay * *p;
                *b = if init { d } else { m * *b + d };
                let step = if nesterov { d + m * *b } else { *b };
                *p -= lr * step;
            }
        }
        if count != self.buffers.len() {
            return Err(NnError::Optimizer {
                name: format!("{} parameters", count),
                reason: format!("the first step had {} parameters", self.buffers.len()),
            });
        }
        Ok(())
    }

    /// Momentum buffers by parameter name (empty before the first step).
    pub fn momentum_buffers(&self) -> &[(String, Vec<f32>)] {
        &self.buffers
    }

    /// Replaces the momentum buffers, e.g. when resuming from a checkpoint.
    pub fn set_momentum_buffers(&mut self, buffers: Vec<(String, Vec<f32>)>) {
        self.buffers = buffers;
    }
}

/// Learning-rate factor of the reference schedule at step `step` of `total_steps`: linear
/// warm-up `step / warmup_steps` for `step < warmup_steps`, then
/// `max(0, cos(7 pi / 16 * (step - warmup) / max(1, total - warmup)))`.
/// Multiply the base learning rate by it.
pub fn cosine_lr_factor(step: u64, total_steps: u64, warmup_steps: u64) -> f64 {
    if step < warmup_steps {
        return step as f64 / warmup_steps.max(1) as f64;
    }
    let progress =
        (step - warmup_steps) as f64 / total_steps.saturating_sub(warmup_steps).max(1) as f64;
    (std::f64::consts::PI * 7.0 / 16.0 * progress)
        .cos()
        .max(0.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sgd_matches_hand_computed_nesterov_steps() {
        let mut weight = Param {
            value: vec![1.0, -2.0],
            grad: vec![0.5, 0.25],
            shape: vec![2],
        };
        let mut bias = Param {
            value: vec![3.0],
            grad: vec![1.0],
            shape: vec![1],
        };
        let mut sgd = Sgd::new(SgdConfig::reference(0.1));
        sgd.step(
            [
                ("fc.weight".to_string(), &mut weight),
                ("fc.bias".to_string(), &mut bias),
            ],
            0.5,
        )
        .unwrap();
        // weight[0]: d = 0.5 + 0.1 * 1 = 0.6; buf = 0.6; step = 0.6 + 0.9 * 0.6 = 1.14.
        assert!((weight.value[0] - (1.0 - 0.5 * 1.14)).abs() < 1e-6);
        // bias: no decay; d = 1; buf = 1; step = 1.9.
        assert!((bias.value[0] - (3.0 - 0.5 * 1.9)).abs() < 1e-6);
        let w0 = weight.value[0];
        sgd.step(
            [
                ("fc.weight".to_string(), &mut weight),
                ("fc.bias".to_string(), &mut bias),
            ],
            0.5,
        )
        .unwrap();
        // Second step: d = 0.5 + 0.1 * w0; buf = 0.9 * 0.6 + d; step = d + 0.9 * buf.
        let d = 0.5 + 0.1 * w0;
        let buf = 0.9 * 0.6 + d;
        assert!((weight.value[0] - (w0 - 0.5 * (d + 0.9 * buf))).abs() < 1e-6);
    }

    #[test]
    fn sgd_rejects_a_different_parameter_list() {
        let mut a = Param::filled(&[2], 1.0);
        let mut sgd = Sgd::new(SgdConfig::reference(0.0));
        sgd.step([("a".to_string(), &mut a)], 0.1).unwrap();
        let err = sgd.step([("b".to_string(), &mut a)], 0.1).unwrap_err();
        assert!(
            matches!(err, NnError::Optimizer { ref name, .. } if name == "b"),
            "{err}"
        );
    }

    #[test]
    fn cosine_schedule_reference_points() {
        assert_eq!(cosine_lr_factor(0, 100, 0), 1.0);
        let end = cosine_lr_factor(100, 100, 0);
        assert!((end - (7.0 * std::f64::consts::PI / 16.0).cos()).abs() < 1e-12);
        assert_eq!(cosine_lr_factor(5, 100, 10), 0.5);
        assert_eq!(cosine_lr_factor(10, 100, 10), 1.0);
        assert!(cosine_lr_factor(55, 100, 10) < 1.0);
    }
}
