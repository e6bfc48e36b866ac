//! WideResNet-depth-widen with the CCSSL projection head, matching the reference PyTorch model
//! (`models/wideresnet.py` of TencentYoutuResearch/Classification-SemiCLS) in structure,
//! parameter names and initialisation.
//!
//! Structure: `conv1` (3 -> 16), three stages `block1..3` of `(depth - 4) / 6` basic blocks
//! with 16k, 32k, 64k channels (strides 1, 2, 2), then `bn1` + LeakyReLU(0.1), global average
//! pooling, the classifier `fc`, and the head `fc1 -> LeakyReLU(0.1) -> fc2 -> L2 normalise`.
//! A basic block is pre-activation: `out = shortcut + conv2(act(bn2(conv1(act(bn1(x))))))`.
//! Where the block changes the channel count, the reference has two variants. With
//! `activate_before_residual` (first block of `block1`), both `conv1` and the 1x1 `convShortcut`
//! read `act(bn1(x))`. Without it (first block of `block2` and `block3`), both read the raw `x`.
//! There `bn1` is still evaluated, so in training it updates its running statistics while its
//! weight and bias receive zero gradient.

use crate::block::{Block, Ctx};
use crate::layers::batchnorm::BatchNorm2d;
use crate::layers::conv::Conv2d;
use crate::layers::linear::Linear;
use crate::layers::ops;
use crate::param::InitRng;
use crate::profile::{OpKind, Profile};
use crate::{NnError, Param, Tensor, ThreadPool, Workspace};

/// Negative slope of every LeakyReLU in the network.
pub const LEAKY_SLOPE: f32 = 0.1;
/// BatchNorm momentum of the reference (weight of the newest batch in the running stats).
pub const BN_MOMENTUM: f32 = 0.001;

/// Size of a WideResNet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WideResNetConfig {
    /// Total depth; `(depth - 4) % 6 == 0` and at least 10 (28 in the CCSSL CIFAR configurations).
    pub depth: usize,
    /// Width multiplier k (2 for CIFAR-10, 8 for CIFAR-100).
    pub widen: usize,
    /// Number of classes of the classifier `fc`.
    pub num_classes: usize,
    /// Output width of the projection head `fc2` (64 in the CCSSL CIFAR configurations).
    pub proj_dim: usize,
}

impl WideResNetConfig {
    /// Checks the ranges documented on the fields.
    ///
    /// # Errors
    /// [`NnError::Config`] naming the first invalid field.
    pub fn validate(&self) -> Result<(), NnError> {
        if self.depth < 10 || !(self.depth - 4).is_multiple_of(6) {
            return Err(NnError::Config {
                name: "depth",
                value: self.depth.to_string(),
                reason: "use a depth of at least 10 with (depth - 4) % 6 == 0, e.g. 10, 16, 22, 28"
                    .into(),
            });
        }
        for (name, value) in [
            ("widen", self.widen),
            ("num_classes", self.num_classes),
            ("proj_dim", self.proj_dim),
        ] {
            if value == 0 {
                return Err(NnError::Config {
                    name,
                    value: "0".into(),
                    reason: "use at least 1".into(),
                });
            }
        }
        Ok(())
    }

    /// Channels after the last stage (64 * widen), the input width of `fc` and `fc1`.
    pub fn feature_dim(&self) -> usize {
        64 * self.widen
    }
}

/// Outputs of one forward pass.
#[derive(Debug, Clone, PartialEq)]
pub struct ForwardOutput {
    /// Classifier logits `[N, num_classes]`.
    pub logits: Tensor,
    /// L2-normalised projections `[N, proj_dim]` (unit rows, as the reference returns them).
    pub projections: Tensor,
}

/// Activations of the head kept between forward and backward.
#[derive(Debug, Default)]
struct HeadCache {
    features: Tensor,
    hidden: Tensor,
    hidden_act: Tensor,
    proj_raw: Tensor,
}

/// WideResNet with projection head; see the module documentation for the structure.
pub struct WideResNet {
    config: WideResNetConfig,
    conv1: Conv2d,
    /// Blocks of all three stages in order; `blocks_per_stage` each.
    blocks: Vec<Block>,
    bn1: BatchNorm2d,
    fc: Linear,
    fc1: Linear,
    fc2: Linear,
    blocks_per_stage: usize,
    input: Tensor,
    stem: Tensor,
    activation: Tensor,
    grads: [Tensor; 3],
    head: HeadCache,
    workspace: Workspace,
    profile: Profile,
    cache_valid: bool,
}

impl WideResNet {
    /// Builds the network with the reference initialisation drawn from `seed`: Kaiming normal
    /// (fan_out, gain sqrt 2) for convolutions, Xavier normal for linear weights, zero biases,
    /// BatchNorm weight 1 and bias 0.
    ///
    /// # Errors
    /// [`NnError::Config`] for an invalid configuration.
    pub fn new(config: WideResNetConfig, seed: u64) -> Result<Self, NnError> {
        config.validate()?;
        let per_stage = (config.depth - 4) / 6;
        let channels = [16, 16 * config.widen, 32 * config.widen, 64 * config.widen];
        let mut blocks = Vec::with_capacity(3 * per_stage);
        for stage in 0..3 {
            let stride = if stage == 0 { 1 } else { 2 };
            for i in 0..per_stage {
                let (cin, s) = if i == 0 {
                    (channels[stage], stride)
                } else {
                    (channels[stage + 1], 1)
                };
                blocks.push(Block::new(cin, channels[stage + 1], s, stage == 0));
            }
        }
        let feat = config.feature_dim();
        let mut model = Self {
            config,
            conv1: Conv2d::new(3, 16, 3, 1, 1),
            blocks,
            bn1: BatchNorm2d::new(feat, BN_MOMENTUM, Some(LEAKY_SLOPE)),
            fc: Linear::new(feat, config.num_classes),
            fc1: Linear::new(feat, feat),
            fc2: Linear::new(feat, config.proj_dim),
            blocks_per_stage: per_stage,
            input: Tensor::default(),
            stem: Tensor::default(),
            activation: Tensor::default(),
            grads: Default::default(),
            head: HeadCache::default(),
            workspace: Workspace::default(),
            profile: Profile::default(),
            cache_valid: false,
        };
        let mut rng = InitRng::new(seed);
        for (name, param) in model.named_parameters_mut() {
            if name.ends_with(".bias") || name.contains("bn") {
                continue;
            }
            if param.shape.len() == 4 {
                rng.kaiming_normal_fan_out(param);
            } else {
                rng.xavier_normal(param);
            }
        }
        Ok(model)
    }

    /// The configuration the model was built with.
    pub fn config(&self) -> &WideResNetConfig {
        &self.config
    }

    /// Switches per-operation timing on or off (off by default).
    pub fn set_profiling(&mut self, enabled: bool) {
        self.profile.set_enabled(enabled);
    }

    /// Time per operation kind since the last [`Profile::reset`].
    pub fn profile(&self) -> &Profile {
        &self.profile
    }

    /// Mutable profile, for resetting it.
    pub fn profile_mut(&mut self) -> &mut Profile {
        &mut self.profile
    }

    fn check_input(&self, input: &Tensor) -> Result<(), NnError> {
        match *input.shape() {
            [n, 3, h, w] if n > 0 && h > 0 && w > 0 => Ok(()),
            _ => Err(NnError::Shape {
                name: "model input".into(),
                expected: "[N, 3, H, W] with N, H, W > 0".into(),
                actual: input.shape().to_vec(),
            }),
        }
    }

    /// Training forward: batch statistics in every BatchNorm (over the whole batch), running
    /// statistics updated, caches kept for [`Self::backward`].
    ///
    /// # Errors
    /// [`NnError::Shape`] when the input is not `[N, 3, H, W]`.
    pub fn forward_train(
        &mut self,
        pool: &ThreadPool,
        input: &Tensor,
    ) -> Result<ForwardOutput, NnError> {
        self.forward(pool, input, true)
    }

    /// Evaluation forward with the running statistics. Parameters and running statistics stay
    /// unchanged; the training caches are invalidated, so call [`Self::forward_train`] again
    /// before the next [`Self::backward`].
    ///
    /// # Errors
    /// [`NnError::Shape`] when the input is not `[N, 3, H, W]`.
    pub fn forward_eval(
        &mut self,
        pool: &ThreadPool,
        input: &Tensor,
    ) -> Result<ForwardOutput, NnError> {
        self.forward(pool, input, false)
    }

    fn forward(
        &mut self,
        pool: &ThreadPool,
        input: &Tensor,
        train: bool,
    ) -> Result<ForwardOutput, NnError> {
        self.check_input(input)?;
        self.cache_valid = false;
        self.input.resize(input.shape());
        self.input.data_mut().copy_from_slice(input.data());
        let mut ctx = Ctx {
            pool,
            workspace: &mut self.workspace,
            profile: &mut self.profile,
            train,
        };

        let t = ctx.profile.start();
        self.conv1
            .forward(pool, ctx.workspace, &self.input, &mut self.stem, false)?;
        ctx.profile.stop(OpKind::ConvForward, t);
        for i in 0..self.blocks.len() {
            let (before, rest) = self.blocks.split_at_mut(i);
            let x = before.last().map_or(&self.stem, |b| &b.out);
            rest[0].forward(&mut ctx, x, &mut self.activation)?;
        }
        let last = self.blocks.last().map_or(&self.stem, |b| &b.out);

        let t = ctx.profile.start();
        if train {
            self.bn1.forward_train(pool, last, &mut self.activation)?;
        } else {
            self.bn1.forward_eval(pool, last, &mut self.activation)?;
        }
        ctx.profile.stop(OpKind::BnForward, t);

        let t = ctx.profile.start();
        let head = &mut self.head;
        ops::global_avg_pool_forward(&self.activation, &mut head.features)?;
        let mut output = ForwardOutput {
            logits: Tensor::default(),
            projections: Tensor::default(),
        };
        self.fc.forward(&head.features, &mut output.logits)?;
        self.fc1.forward(&head.features, &mut head.hidden)?;
        ops::leaky_relu_forward(&head.hidden, LEAKY_SLOPE, &mut head.hidden_act);
        self.fc2.forward(&head.hidden_act, &mut head.proj_raw)?;
        ops::l2_normalize_forward(&head.proj_raw, &mut output.projections)?;
        ctx.profile.stop(OpKind::Head, t);
        self.cache_valid = train;
        Ok(output)
    }

    /// Backward pass of the last [`Self::forward_train`], from the gradients of the logits and
    /// of the normalised projections. Overwrites every parameter gradient.
    ///
    /// # Errors
    /// [`NnError::NoForwardCache`] without a preceding training forward, [`NnError::Shape`]
    /// when a gradient's shape differs from the matching output's.
    pub fn backward(
        &mut self,
        pool: &ThreadPool,
        d_logits: &Tensor,
        d_projections: &Tensor,
    ) -> Result<(), NnError> {
        if !self.cache_valid {
            return Err(NnError::NoForwardCache);
        }
        let n = self.input.shape()[0];
        for (name, grad, width) in [
            ("logits gradient", d_logits, self.config.num_classes),
            ("projections gradient", d_projections, self.config.proj_dim),
        ] {
            if grad.shape() != [n, width] {
                return Err(NnError::Shape {
                    name: name.into(),
                    expected: format!("[{n}, {width}]"),
                    actual: grad.shape().to_vec(),
                });
            }
        }
        let mut ctx = Ctx {
            pool,
            workspace: &mut self.workspace,
            profile: &mut self.profile,
            train: true,
        };
        let [g_out, g_tmp, g_in] = &mut self.grads;

        let t = ctx.profile.start();
        let head = &mut self.head;
        let mut d_proj_raw = Tensor::default();
        ops::l2_normalize_backward(&head.proj_raw, d_projections, &mut d_proj_raw)?;
        let mut d_hidden = Tensor::default();
        self.fc2
            .backward(&head.hidden_act, &d_proj_raw, Some(&mut d_hidden), false)?;
        ops::leaky_relu_backward(&head.hidden, LEAKY_SLOPE, &mut d_hidden)?;
        let mut d_features = Tensor::default();
        self.fc1
            .backward(&head.features, &d_hidden, Some(&mut d_features), false)?;
        self.fc
            .backward(&head.features, d_logits, Some(&mut d_features), true)?;
        let last = self.blocks.last().map_or(&self.stem, |b| &b.out);
        ops::global_avg_pool_backward(last.shape(), &d_features, g_out)?;
        ctx.profile.stop(OpKind::Head, t);

        let t = ctx.profile.start();
        self.bn1.backward(pool, last, g_out)?;
        ctx.profile.stop(OpKind::BnBackward, t);

        for i in (0..self.blocks.len()).rev() {
            let (before, rest) = self.blocks.split_at_mut(i);
            let x = before.last().map_or(&self.stem, |b| &b.out);
            rest[0].backward(&mut ctx, x, &mut self.activation, g_out, g_tmp, g_in)?;
            std::mem::swap(g_out, g_in);
        }
        let t = ctx.profile.start();
        self.conv1
            .backward_weight(pool, ctx.workspace, &self.input, g_out)?;
        ctx.profile.stop(OpKind::ConvBackwardWeight, t);
        Ok(())
    }

    /// Prefix of block `index` in PyTorch names, e.g. `block2.layer.0`.
    fn block_prefix(&self, index: usize) -> String {
        format!(
            "block{}.layer.{}",
            index / self.blocks_per_stage + 1,
            index % self.blocks_per_stage
        )
    }

    /// Trainable parameters with their PyTorch names, in the reference's registration order.
    pub fn named_parameters(&self) -> Vec<(String, &Param)> {
        let mut out = vec![("conv1.weight".to_string(), &self.conv1.weight)];
        for (i, block) in self.blocks.iter().enumerate() {
            block.named_parameters(&self.block_prefix(i), &mut out);
        }
        out.push(("bn1.weight".into(), &self.bn1.weight));
        out.push(("bn1.bias".into(), &self.bn1.bias));
        for (name, layer) in [("fc", &self.fc), ("fc1", &self.fc1), ("fc2", &self.fc2)] {
            out.push((format!("{name}.weight"), &layer.weight));
            out.push((format!("{name}.bias"), &layer.bias));
        }
        out
    }

    /// Mutable trainable parameters, same names and order as [`Self::named_parameters`].
    pub fn named_parameters_mut(&mut self) -> Vec<(String, &mut Param)> {
        let prefixes: Vec<String> = (0..self.blocks.len())
            .map(|i| self.block_prefix(i))
            .collect();
        let mut out = vec![("conv1.weight".to_string(), &mut self.conv1.weight)];
        for (block, prefix) in self.blocks.iter_mut().zip(&prefixes) {
            block.named_parameters_mut(prefix, &mut out);
        }
        out.push(("bn1.weight".into(), &mut self.bn1.weight));
        out.push(("bn1.bias".into(), &mut self.bn1.bias));
        for (name, layer) in [
            ("fc", &mut self.fc),
            ("fc1", &mut self.fc1),
            ("fc2", &mut self.fc2),
        ] {
            out.push((format!("{name}.weight"), &mut layer.weight));
            out.push((format!("{name}.bias"), &mut layer.bias));
        }
        out
    }

    /// Every BatchNorm layer with its PyTorch name prefix (e.g. `block1.layer.0.bn1`).
    pub fn named_batch_norms(&self) -> Vec<(String, &BatchNorm2d)> {
        let mut out = Vec::new();
        for (i, block) in self.blocks.iter().enumerate() {
            let prefix = self.block_prefix(i);
            out.push((format!("{prefix}.bn1"), &block.bn1));
            out.push((format!("{prefix}.bn2"), &block.bn2));
        }
        out.push(("bn1".into(), &self.bn1));
        out
    }

    /// Mutable BatchNorm layers, same names and order as [`Self::named_batch_norms`].
    pub fn named_batch_norms_mut(&mut self) -> Vec<(String, &mut BatchNorm2d)> {
        let prefixes: Vec<String> = (0..self.blocks.len())
            .map(|i| self.block_prefix(i))
            .collect();
        let mut out = Vec::new();
        for (block, prefix) in self.blocks.iter_mut().zip(&prefixes) {
            out.push((format!("{prefix}.bn1"), &mut block.bn1));
            out.push((format!("{prefix}.bn2"), &mut block.bn2));
        }
        out.push(("bn1".into(), &mut self.bn1));
        out
    }

    /// f32 buffers (`*.running_mean`, `*.running_var`) with their PyTorch names.
    pub fn named_buffers(&self) -> Vec<(String, &[f32])> {
        let mut out = Vec::new();
        for (prefix, bn) in self.named_batch_norms() {
            out.push((format!("{prefix}.running_mean"), &bn.running_mean[..]));
            out.push((format!("{prefix}.running_var"), &bn.running_var[..]));
        }
        out
    }

    /// Mutable f32 buffers, same names and order as [`Self::named_buffers`].
    pub fn named_buffers_mut(&mut self) -> Vec<(String, &mut [f32])> {
        let mut out = Vec::new();
        for (prefix, bn) in self.named_batch_norms_mut() {
            out.push((format!("{prefix}.running_mean"), &mut bn.running_mean[..]));
            out.push((format!("{prefix}.running_var"), &mut bn.running_var[..]));
        }
        out
    }

    /// Sets every parameter gradient to zero.
    pub fn zero_grad(&mut self) {
        for (_, param) in self.named_parameters_mut() {
            param.grad.fill(0.0);
        }
    }
}

#[cfg(test)]
#[path = "wideresnet_tests.rs"]
mod tests;
