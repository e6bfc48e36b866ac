//! Losses of the CCSSL objective: softmax cross-entropy with per-sample weights, pseudo-labels
//! from a softmax, and the class-aware soft supervised-contrastive loss.
//!
//! Every loss works on plain row-major `f32` slices, so the training step can pass sub-slices
//! of one concatenated batch (labeled rows, weak rows, strong rows, contrast rows) without
//! copying. Each loss returns its value and, when asked, writes `scale * dloss/dinput` into a
//! caller-owned buffer; `scale` folds in the loss weight (`lambda_u`, `lambda_c`). Sums run in
//! `f64` because the contrastive loss takes logarithms of sums over hundreds of terms.

mod cross_entropy;
mod supcon;

pub use cross_entropy::{PseudoLabels, pseudo_labels, softmax_cross_entropy, softmax_rows};
pub use supcon::{ContrastAnchors, SoftSupConConfig, SoftSupConLoss};

use std::fmt;

/// Invalid input to a loss.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum LossError {
    /// A buffer does not have the length its shape requires.
    ShapeMismatch {
        /// Name of the buffer, e.g. `logits`.
        tensor: &'static str,
        /// Length the other arguments imply.
        expected: usize,
        /// Length passed.
        actual: usize,
    },
    /// A class label is not below the number of classes.
    LabelOutOfRange {
        /// Row of the offending label.
        index: usize,
        /// The label.
        label: u32,
        /// Number of classes of the logits.
        num_classes: usize,
    },
    /// A setting is outside its accepted range.
    InvalidSetting {
        /// Name of the setting.
        name: &'static str,
        /// The rejected value.
        value: f32,
        /// The accepted range, in words.
        accepted: &'static str,
    },
}

impl fmt::Display for LossError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::ShapeMismatch {
                tensor,
                expected,
                actual,
            } => write!(
                f,
                "{tensor} has {actual} elements but its shape requires {expected}; \
                 pass a buffer of {expected} elements"
            ),
            Self::LabelOutOfRange {
                index,
                label,
                num_classes,
            } => write!(
                f,
                "label {label} at row {index} is out of range for {num_classes} classes; \
                 labels must be in 0..{num_classes}"
            ),
            Self::InvalidSetting {
                name,
                value,
                accepted,
            } => write!(f, "{name} = {value} is invalid; accepted: {accepted}"),
        }
    }
}

impl std::error::Error for LossError {}

/// Checks that a buffer of `actual` elements has the `expected` length.
fn check_len(tensor: &'static str, actual: usize, expected: usize) -> Result<(), LossError> {
    if actual == expected {
        Ok(())
    } else {
        Err(LossError::ShapeMismatch {
            tensor,
            expected,
            actual,
        })
    }
}
