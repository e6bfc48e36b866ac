//! The training step of ccssl: one CCSSL update (FixMatch plus the class-aware contrastive
//! loss) of a WideResNet on the CPU engine of `ccssl-nn`.
//!
//! [`Step::train_step`] takes one batch of `u8` views, normalises them per view, runs one
//! concatenated forward pass (so BatchNorm statistics cover the whole batch), computes
//! `Lx + lambda_u * Lu + lambda_c * Lc`, backpropagates and applies SGD with the cosine
//! schedule. Plain FixMatch is the same call with `lambda_c = 0` and no contrast view.
//! The [`bench`] module times that step.

pub mod bench;
mod config;
mod input;
pub mod stage;
mod step;

pub use config::{
    CIFAR10_MEAN, CIFAR10_STD, ContrastMode, LossConfig, ModelConfig, Normalization,
    OptimizerConfig, StepConfig, ViewNorm,
};
pub use step::{Step, StepBatch, StepMetrics};

/// Errors of the training step.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StepError {
    /// A setting is out of range.
    #[error("invalid step setting {name} = {value}: {reason}")]
    Config {
        /// Setting path, e.g. `loss.threshold`.
        name: &'static str,
        /// The rejected value.
        value: String,
        /// The accepted values.
        reason: String,
    },
    /// A batch buffer does not match the batch's image size and counts.
    #[error("invalid batch: {what} has {actual} elements, expected {expected}")]
    Batch {
        /// The buffer, e.g. `unlabeled_strong`.
        what: &'static str,
        /// Length the other fields imply.
        expected: usize,
        /// Length passed.
        actual: usize,
    },
    /// The contrastive loss is weighted but the batch has no contrast view.
    #[error(
        "lambda_c = {lambda_c} but the batch has no contrast view; \
         enable the contrast view or set lambda_c to 0"
    )]
    MissingContrastView {
        /// The configured weight of the contrastive loss.
        lambda_c: f32,
    },
    /// The engine rejected a tensor or setting.
    #[error(transparent)]
    Nn(#[from] ccssl_nn::NnError),
    /// A loss rejected its input.
    #[error("loss computation failed: {0}")]
    Loss(#[from] ccssl_nn::loss::LossError),
}
