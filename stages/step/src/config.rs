//! Settings of the training step, deserialisable from the RON graph.
//!
//! Every struct rejects unknown fields and every field has a default, documented on the field,
//! so a graph names only what it changes. The defaults are the CIFAR-10 settings of the official
//! CCSSL configuration (`fixmatchccssl_exp512_cifar10_wres_x2_b1x64_l4000_soft.py` of
//! TencentYoutuResearch/Classification-SemiCLS).

use serde::{Deserialize, Serialize};

/// CIFAR-10 per-channel mean of the training images (RGB, in [0, 1]).
pub const CIFAR10_MEAN: [f32; 3] = [0.4914, 0.4822, 0.4465];
/// CIFAR-10 per-channel standard deviation of the training images (RGB, in [0, 1]).
pub const CIFAR10_STD: [f32; 3] = [0.2471, 0.2435, 0.2616];

/// Settings of the training step.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename = "Step", deny_unknown_fields, default)]
pub struct StepConfig {
    /// The network; default WideResNet-28-2 with a 64-d projection and 10 classes.
    pub model: ModelConfig,
    /// The objective; default CCSSL with threshold 0.95 and both loss weights 1.
    pub loss: LossConfig,
    /// The optimizer and its schedule; default SGD, lr 0.03, Nesterov momentum 0.9.
    pub optimizer: OptimizerConfig,
    /// Total number of training steps `K` of the cosine schedule; default 2^20.
    pub total_steps: u64,
    /// Size of the thread pool the step runs on; default 1.
    pub threads: usize,
    /// Normalisation of each view; default CIFAR-10 mean/std except for the contrast view.
    pub normalization: Normalization,
}

impl Default for StepConfig {
    fn default() -> Self {
        Self {
            model: ModelConfig::default(),
            loss: LossConfig::default(),
            optimizer: OptimizerConfig::default(),
            total_steps: 1 << 20,
            threads: 1,
            normalization: Normalization::default(),
        }
    }
}

/// The WideResNet with its projection head.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename = "WideResNet", deny_unknown_fields, default)]
pub struct ModelConfig {
    /// Depth; `(depth - 4) % 6 == 0`. Default 28.
    pub depth: usize,
    /// Width multiplier; default 2 (8 for CIFAR-100).
    pub widen: usize,
    /// Width of the projection head's output; default 64.
    pub proj_dim: usize,
    /// Number of classes; default 10.
    pub num_classes: usize,
}

impl Default for ModelConfig {
    fn default() -> Self {
        Self {
            depth: 28,
            widen: 2,
            proj_dim: 64,
            num_classes: 10,
        }
    }
}

/// The CCSSL objective `Lx + lambda_u * Lu + lambda_c * Lc`. Plain FixMatch is `lambda_c = 0`
/// with no contrast view.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename = "Ccssl", deny_unknown_fields, default)]
pub struct LossConfig {
    /// Confidence a weak-view prediction needs to become a pseudo-label for `Lu`; default 0.95.
    pub threshold: f32,
    /// Softmax temperature of the pseudo-labels; default 1.
    pub pseudo_temperature: f32,
    /// Temperature of the contrastive loss; default 0.07.
    pub temperature: f32,
    /// Base temperature of the contrastive loss; default 0.07.
    pub base_temperature: f32,
    /// Weight of the unlabeled consistency loss `Lu`; default 1.
    pub lambda_u: f32,
    /// Weight of the contrastive loss `Lc`; default 1, and 0 for FixMatch.
    pub lambda_c: f32,
    /// Anchors and pairs of the contrastive loss; default [`ContrastMode::All`].
    pub contrast: ContrastMode,
}

impl Default for LossConfig {
    fn default() -> Self {
        Self {
            threshold: 0.95,
            pseudo_temperature: 1.0,
            temperature: 0.07,
            base_temperature: 0.07,
            lambda_u: 1.0,
            lambda_c: 1.0,
            contrast: ContrastMode::All,
        }
    }
}

/// Anchor and pair selection of the contrastive loss.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub enum ContrastMode {
    /// Every anchor, every same-pseudo-label pair weighted by both confidences.
    #[default]
    All,
    /// `contrast_with_thresh`: anchors below this confidence contribute 0.
    WithThresh(f32),
    /// `contrast_left_out`: samples below this confidence pair only with their own views.
    LeftOut(f32),
}

/// SGD with momentum and the cosine schedule `lr * cos(7 pi k / (16 K))`.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename = "Sgd", deny_unknown_fields, default)]
pub struct OptimizerConfig {
    /// Base learning rate; default 0.03.
    pub lr: f32,
    /// Momentum; default 0.9.
    pub momentum: f32,
    /// Nesterov momentum; default true.
    pub nesterov: bool,
    /// Weight decay on weights (not biases, not BatchNorm); default 0.001 (CIFAR-10).
    pub weight_decay: f32,
    /// Steps of linear learning-rate warm-up before the cosine decay; default 0.
    pub warmup_steps: u64,
}

impl Default for OptimizerConfig {
    fn default() -> Self {
        Self {
            lr: 0.03,
            momentum: 0.9,
            nesterov: true,
            weight_decay: 0.001,
            warmup_steps: 0,
        }
    }
}

/// Conversion of a view's `u8` pixels into model input: always divided by 255, then optionally
/// standardised per channel.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub enum ViewNorm {
    /// `x / 255` only.
    Unit,
    /// `(x / 255 - mean) / std` per RGB channel.
    MeanStd {
        /// Per-channel mean in [0, 1].
        mean: [f32; 3],
        /// Per-channel standard deviation, > 0.
        std: [f32; 3],
    },
}

impl ViewNorm {
    /// CIFAR-10 standardisation.
    pub const CIFAR10: Self = Self::MeanStd {
        mean: CIFAR10_MEAN,
        std: CIFAR10_STD,
    };
}

/// Normalisation of each view.
///
/// The official PyTorch code feeds the contrast view without mean/std normalisation, while
/// PaddleClas normalises it; the default follows the PyTorch code.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Normalization {
    /// Labeled weak view; default CIFAR-10 mean/std.
    pub labeled: ViewNorm,
    /// Unlabeled weak view; default CIFAR-10 mean/std.
    pub weak: ViewNorm,
    /// Unlabeled strong view; default CIFAR-10 mean/std.
    pub strong: ViewNorm,
    /// Unlabeled contrast view; default [`ViewNorm::Unit`].
    pub contrast: ViewNorm,
}

impl Default for Normalization {
    fn default() -> Self {
        Self {
            labeled: ViewNorm::CIFAR10,
            weak: ViewNorm::CIFAR10,
            strong: ViewNorm::CIFAR10,
            contrast: ViewNorm::Unit,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn graph_step_settings_parse() {
        let text = "Step(model: WideResNet(depth: 28, widen: 2, proj_dim: 64), \
             loss: Ccssl(threshold: 0.95, temperature: 0.07, lambda_u: 1.0, lambda_c: 1.0), \
             optimizer: Sgd(lr: 0.03, momentum: 0.9, nesterov: true, weight_decay: 0.001), \
             total_steps: 1048576, threads: 8)";
        let config: StepConfig = ron::from_str(text).unwrap();
        assert_eq!(config.threads, 8);
        assert_eq!(config.total_steps, 1 << 20);
        assert_eq!(config.model, ModelConfig::default());
        assert_eq!(config.loss, LossConfig::default());
        assert_eq!(config.optimizer, OptimizerConfig::default());
        assert_eq!(config.normalization, Normalization::default());
    }

    #[test]
    fn empty_step_gets_defaults() {
        let config: StepConfig = ron::from_str("Step()").unwrap();
        assert_eq!(config, StepConfig::default());
        assert_eq!(config.total_steps, 1 << 20);
        assert_eq!(config.threads, 1);
        assert_eq!(config.normalization.contrast, ViewNorm::Unit);
        assert_eq!(config.normalization.strong, ViewNorm::CIFAR10);
    }

    #[test]
    fn options_and_views_parse() {
        let text = "(loss: (lambda_c: 0.0, contrast: LeftOut(0.8)), \
             normalization: (contrast: MeanStd(mean: (0.5, 0.5, 0.5), std: (0.25, 0.25, 0.25))))";
        let config: StepConfig = ron::from_str(text).unwrap();
        assert_eq!(config.loss.contrast, ContrastMode::LeftOut(0.8));
        assert_eq!(config.loss.lambda_c, 0.0);
        let expected = ViewNorm::MeanStd {
            mean: [0.5; 3],
            std: [0.25; 3],
        };
        assert_eq!(config.normalization.contrast, expected);
    }

    #[test]
    fn unknown_fields_are_rejected() {
        let err = ron::from_str::<StepConfig>("Step(loss: Ccssl(lambda: 1.0))").unwrap_err();
        assert!(err.to_string().contains("lambda"), "{err}");
        let err = ron::from_str::<StepConfig>("Step(thread: 2)").unwrap_err();
        assert!(err.to_string().contains("thread"), "{err}");
    }
}
