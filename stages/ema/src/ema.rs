//! Exponential moving average of the model.
//!
//! Parameters follow `ema = decay * ema + (1 - decay) * online` after every step, evaluated
//! in f32 in that order, as the official CCSSL code does with `ema_v * decay + (1 - decay) * v`.
//! BatchNorm running statistics are buffers, not parameters: they are copied from the online
//! model, never averaged.

/// Error raised when the online model does not have the tensors the EMA was built from.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum EmaError {
    /// The decay is not a number in [0, 1).
    #[error("invalid EMA decay {0}: expected a number in [0, 1), for example 0.999")]
    InvalidDecay(String),
    /// The online model has a different number of tensors.
    #[error("the model has {actual} {kind} tensors but the EMA was built with {expected}")]
    CountMismatch {
        /// `parameter` or `buffer`.
        kind: &'static str,
        /// Tensors the EMA holds.
        expected: usize,
        /// Tensors the model passed in.
        actual: usize,
    },
    /// A tensor is named differently or has a different element count.
    #[error(
        "{kind} tensor {index} is `{actual_name}` with {actual_len} values, \
         but the EMA holds `{expected_name}` with {expected_len} values"
    )]
    TensorMismatch {
        /// `parameter` or `buffer`.
        kind: &'static str,
        /// Position in the list.
        index: usize,
        /// Name the EMA holds.
        expected_name: String,
        /// Element count the EMA holds.
        expected_len: usize,
        /// Name the model passed in.
        actual_name: String,
        /// Element count the model passed in.
        actual_len: usize,
    },
}

/// A named flat f32 tensor borrowed from the online model.
#[derive(Clone, Copy, Debug)]
pub struct TensorRef<'a> {
    /// PyTorch-style name, such as `block1.layer.0.conv1.weight`.
    pub name: &'a str,
    /// Values in the model's memory order.
    pub values: &'a [f32],
}

/// The averaged copy of a model: parameters averaged, buffers copied.
///
/// Invariant: `params` and `buffers` keep the order and names they were built with.
#[derive(Clone, Debug, PartialEq)]
pub struct Ema {
    decay: f32,
    params: Vec<(String, Vec<f32>)>,
    buffers: Vec<(String, Vec<f32>)>,
}

impl Ema {
    /// Creates an EMA that starts as a copy of the online model.
    pub fn new(
        decay: f32,
        params: &[TensorRef<'_>],
        buffers: &[TensorRef<'_>],
    ) -> Result<Self, EmaError> {
        if !(0.0..1.0).contains(&decay) {
            return Err(EmaError::InvalidDecay(decay.to_string()));
        }
        let copy = |tensors: &[TensorRef<'_>]| {
            tensors
                .iter()
                .map(|t| (t.name.to_owned(), t.values.to_vec()))
                .collect()
        };
        Ok(Self {
            decay,
            params: copy(params),
            buffers: copy(buffers),
        })
    }

    /// Rebuilds an EMA from saved tensors, for example when a run resumes.
    pub fn from_parts(
        decay: f32,
        params: Vec<(String, Vec<f32>)>,
        buffers: Vec<(String, Vec<f32>)>,
    ) -> Result<Self, EmaError> {
        if !(0.0..1.0).contains(&decay) {
            return Err(EmaError::InvalidDecay(decay.to_string()));
        }
        Ok(Self {
            decay,
            params,
            buffers,
        })
    }

    /// Folds one step of the online model into the average.
    ///
    /// Checks every name and length before changing anything, so a mismatch leaves the EMA as
    /// it was.
    pub fn update(
        &mut self,
        params: &[TensorRef<'_>],
        buffers: &[TensorRef<'_>],
    ) -> Result<(), EmaError> {
        check_same("parameter", &self.params, params)?;
        check_same("buffer", &self.buffers, buffers)?;

        let decay = self.decay;
        let keep = 1.0 - decay;
        for ((_, averaged), online) in self.params.iter_mut().zip(params) {
            for (a, &v) in averaged.iter_mut().zip(online.values) {
                *a = *a * decay + keep * v;
            }
        }
        for ((_, copied), online) in self.buffers.iter_mut().zip(buffers) {
            copied.copy_from_slice(online.values);
        }
        Ok(())
    }

    /// Decay of the average.
    pub fn decay(&self) -> f32 {
        self.decay
    }

    /// Averaged parameters, in the order they were built with.
    pub fn params(&self) -> &[(String, Vec<f32>)] {
        &self.params
    }

    /// Copied buffers, in the order they were built with.
    pub fn buffers(&self) -> &[(String, Vec<f32>)] {
        &self.buffers
    }
}

/// Owned copies of a model's parameters and BatchNorm buffers, in the model's order, named as
/// in its checkpoints.
pub type ModelTensors = (Vec<(String, Vec<f32>)>, Vec<(String, Vec<f32>)>);

/// Copies the parameters and buffers of `model`, the form [`Ema::from_parts`] takes.
pub fn copy_model_tensors(model: &ccssl_nn::WideResNet) -> ModelTensors {
    let params = model
        .named_parameters()
        .into_iter()
        .map(|(name, param)| (name, param.value.clone()))
        .collect();
    let buffers = model
        .named_buffers()
        .into_iter()
        .map(|(name, values)| (name, values.to_vec()))
        .collect();
    (params, buffers)
}

fn check_same(
    kind: &'static str,
    averaged: &[(String, Vec<f32>)],
    online: &[TensorRef<'_>],
) -> Result<(), EmaError> {
    if averaged.len() != online.len() {
        return Err(EmaError::CountMismatch {
            kind,
            expected: averaged.len(),
            actual: online.len(),
        });
    }
    for (index, ((name, values), tensor)) in averaged.iter().zip(online).enumerate() {
        if name != tensor.name || values.len() != tensor.values.len() {
            return Err(EmaError::TensorMismatch {
                kind,
                index,
                expected_name: name.clone(),
                expected_len: values.len(),
                actual_name: tensor.name.to_owned(),
                actual_len: tensor.values.len(),
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t<'a>(name: &'a str, values: &'a [f32]) -> TensorRef<'a> {
        TensorRef { name, values }
    }

    #[test]
    fn update_averages_params_and_copies_buffers() {
        let mut ema =
            Ema::new(0.9, &[t("w", &[1.0, 2.0])], &[t("bn.running_mean", &[0.0])]).unwrap();
        ema.update(&[t("w", &[11.0, -8.0])], &[t("bn.running_mean", &[5.0])])
            .unwrap();

        // 0.9 * 1 + 0.1 * 11 = 2.0 and 0.9 * 2 + 0.1 * -8 = 1.0, worked by hand.
        let w = &ema.params()[0].1;
        assert!((w[0] - 2.0).abs() < 1e-6, "w[0] = {}", w[0]);
        assert!((w[1] - 1.0).abs() < 1e-6, "w[1] = {}", w[1]);
        assert_eq!(ema.buffers()[0].1, vec![5.0]);
    }

    #[test]
    fn repeated_updates_converge_to_constant_model() {
        let mut ema = Ema::new(0.5, &[t("w", &[0.0])], &[]).unwrap();
        for _ in 0..40 {
            ema.update(&[t("w", &[3.0])], &[]).unwrap();
        }
        assert!((ema.params()[0].1[0] - 3.0).abs() < 1e-6);
    }

    #[test]
    fn decay_outside_range_is_rejected() {
        for decay in [1.0, -0.1, f32::NAN] {
            let err = Ema::new(decay, &[], &[]).unwrap_err();
            assert!(
                matches!(err, EmaError::InvalidDecay(_)),
                "decay {decay}: {err}"
            );
        }
    }

    #[test]
    fn renamed_tensor_is_rejected_without_change() {
        let mut ema = Ema::new(0.9, &[t("a", &[1.0]), t("b", &[1.0])], &[]).unwrap();
        let before = ema.clone();
        let err = ema
            .update(&[t("a", &[5.0]), t("c", &[5.0])], &[])
            .unwrap_err();

        assert_eq!(
            err.to_string(),
            "parameter tensor 1 is `c` with 1 values, but the EMA holds `b` with 1 values"
        );
        assert_eq!(ema, before);
    }

    #[test]
    fn missing_buffer_is_rejected() {
        let mut ema = Ema::new(0.9, &[], &[t("m", &[1.0])]).unwrap();
        let err = ema.update(&[], &[]).unwrap_err();
        assert_eq!(
            err,
            EmaError::CountMismatch {
                kind: "buffer",
                expected: 1,
                actual: 0
            }
        );
    }
}
