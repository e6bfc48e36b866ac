//! The pre-activation basic block of the WideResNet, forward and backward.

use crate::layers::batchnorm::BatchNorm2d;
use crate::layers::conv::Conv2d;
use crate::profile::{OpKind, Profile};
use crate::wideresnet::{BN_MOMENTUM, LEAKY_SLOPE};
use crate::{NnError, Param, Tensor, ThreadPool, Workspace};

/// What a block call needs besides its own layers.
pub(crate) struct Ctx<'a> {
    pub pool: &'a ThreadPool,
    pub workspace: &'a mut Workspace,
    pub profile: &'a mut Profile,
    pub train: bool,
}

/// One basic block. Keeps `h` (output of `conv1`, input of `bn2`) and `out` between forward
/// and backward; the activations `act(bn(.))` are recomputed in backward.
pub(crate) struct Block {
    pub bn1: BatchNorm2d,
    pub conv1: Conv2d,
    pub bn2: BatchNorm2d,
    pub conv2: Conv2d,
    /// 1x1 convolution on the residual path, present when input and output widths differ.
    pub shortcut: Option<Conv2d>,
    /// With a shortcut: whether `conv1` and the shortcut read `act(bn1(x))` (true) or `x`.
    pub activate_before_residual: bool,
    pub h: Tensor,
    pub out: Tensor,
}

impl Block {
    pub fn new(
        in_channels: usize,
        out_channels: usize,
        stride: usize,
        activate_before_residual: bool,
    ) -> Self {
        let equal = in_channels == out_channels;
        Self {
            bn1: BatchNorm2d::new(in_channels, BN_MOMENTUM, Some(LEAKY_SLOPE)),
            conv1: Conv2d::new(in_channels, out_channels, 3, stride, 1),
            bn2: BatchNorm2d::new(out_channels, BN_MOMENTUM, Some(LEAKY_SLOPE)),
            conv2: Conv2d::new(out_channels, out_channels, 3, 1, 1),
            shortcut: (!equal).then(|| Conv2d::new(in_channels, out_channels, 1, stride, 0)),
            activate_before_residual,
            h: Tensor::default(),
            out: Tensor::default(),
        }
    }

    fn bn_forward(
        bn: &mut BatchNorm2d,
        ctx: &mut Ctx<'_>,
        x: &Tensor,
        y: &mut Tensor,
    ) -> Result<(), NnError> {
        let t = ctx.profile.start();
        if ctx.train {
            bn.forward_train(ctx.pool, x, y)?;
        } else {
            bn.forward_eval(ctx.pool, x, y)?;
        }
        ctx.profile.stop(OpKind::BnForward, t);
        Ok(())
    }

    fn conv_forward(
        conv: &Conv2d,
        ctx: &mut Ctx<'_>,
        x: &Tensor,
        y: &mut Tensor,
        accumulate: bool,
    ) -> Result<(), NnError> {
        let t = ctx.profile.start();
        conv.forward(ctx.pool, ctx.workspace, x, y, accumulate)?;
        ctx.profile.stop(OpKind::ConvForward, t);
        Ok(())
    }

    /// Forward from block input `x`; `act` is a scratch tensor for activations.
    pub fn forward(
        &mut self,
        ctx: &mut Ctx<'_>,
        x: &Tensor,
        act: &mut Tensor,
    ) -> Result<(), NnError> {
        match &self.shortcut {
            None => {
                Self::bn_forward(&mut self.bn1, ctx, x, act)?;
                Self::conv_forward(&self.conv1, ctx, act, &mut self.h, false)?;
                let t = ctx.profile.start();
                self.out.resize(x.shape());
                self.out.data_mut().copy_from_slice(x.data());
                ctx.profile.stop(OpKind::Elementwise, t);
            }
            Some(shortcut) if self.activate_before_residual => {
                Self::bn_forward(&mut self.bn1, ctx, x, act)?;
                Self::conv_forward(&self.conv1, ctx, act, &mut self.h, false)?;
                Self::conv_forward(shortcut, ctx, act, &mut self.out, false)?;
            }
            Some(shortcut) => {
                if ctx.train {
                    let t = ctx.profile.start();
                    self.bn1.track_batch_stats(ctx.pool, x)?;
                    ctx.profile.stop(OpKind::BnForward, t);
                }
                Self::conv_forward(&self.conv1, ctx, x, &mut self.h, false)?;
                Self::conv_forward(shortcut, ctx, x, &mut self.out, false)?;
            }
        }
        Self::bn_forward(&mut self.bn2, ctx, &self.h, act)?;
        Self::conv_forward(&self.conv2, ctx, act, &mut self.out, true)
    }

    fn recompute(
        bn: &BatchNorm2d,
        ctx: &mut Ctx<'_>,
        x: &Tensor,
        act: &mut Tensor,
    ) -> Result<(), NnError> {
        let t = ctx.profile.start();
        bn.apply(ctx.pool, x, act)?;
        ctx.profile.stop(OpKind::BnRecompute, t);
        Ok(())
    }

    fn bn_backward(
        bn: &mut BatchNorm2d,
        ctx: &mut Ctx<'_>,
        x: &Tensor,
        grad: &mut Tensor,
    ) -> Result<(), NnError> {
        let t = ctx.profile.start();
        bn.backward(ctx.pool, x, grad)?;
        ctx.profile.stop(OpKind::BnBackward, t);
        Ok(())
    }

    /// Weight gradient of `conv` and, into `d_input`, its input gradient.
    fn conv_backward(
        conv: &mut Conv2d,
        ctx: &mut Ctx<'_>,
        input: &Tensor,
        d_output: &Tensor,
        d_input: &mut Tensor,
        accumulate: bool,
    ) -> Result<(), NnError> {
        let t = ctx.profile.start();
        conv.backward_weight(ctx.pool, ctx.workspace, input, d_output)?;
        ctx.profile.stop(OpKind::ConvBackwardWeight, t);
        let t = ctx.profile.start();
        conv.backward_data(
            ctx.pool,
            ctx.workspace,
            input.shape(),
            d_output,
            d_input,
            accumulate,
        )?;
        ctx.profile.stop(OpKind::ConvBackwardData, t);
        Ok(())
    }

    /// Backward from `d_out` (gradient of `out`) to `d_x` (gradient of the block input `x`),
    /// overwriting the block's parameter gradients. `act` and `tmp` are scratch tensors.
    pub fn backward(
        &mut self,
        ctx: &mut Ctx<'_>,
        x: &Tensor,
        act: &mut Tensor,
        d_out: &Tensor,
        tmp: &mut Tensor,
        d_x: &mut Tensor,
    ) -> Result<(), NnError> {
        Self::recompute(&self.bn2, ctx, &self.h, act)?;
        Self::conv_backward(&mut self.conv2, ctx, act, d_out, tmp, false)?;
        Self::bn_backward(&mut self.bn2, ctx, &self.h, tmp)?;
        match &mut self.shortcut {
            None => {
                Self::recompute(&self.bn1, ctx, x, act)?;
                Self::conv_backward(&mut self.conv1, ctx, act, tmp, d_x, false)?;
                Self::bn_backward(&mut self.bn1, ctx, x, d_x)?;
                let t = ctx.profile.start();
                d_x.data_mut()
                    .iter_mut()
                    .zip(d_out.data())
                    .for_each(|(d, g)| *d += g);
                ctx.profile.stop(OpKind::Elementwise, t);
            }
            Some(shortcut) if self.activate_before_residual => {
                Self::recompute(&self.bn1, ctx, x, act)?;
                Self::conv_backward(&mut self.conv1, ctx, act, tmp, d_x, false)?;
                Self::conv_backward(shortcut, ctx, act, d_out, d_x, true)?;
                Self::bn_backward(&mut self.bn1, ctx, x, d_x)?;
            }
            Some(shortcut) => {
                Self::conv_backward(&mut self.conv1, ctx, x, tmp, d_x, false)?;
                Self::conv_backward(shortcut, ctx, x, d_out, d_x, true)?;
                // bn1's output is discarded in this variant, so its gradients are zero.
                self.bn1.weight.grad.fill(0.0);
                self.bn1.bias.grad.fill(0.0);
            }
        }
        Ok(())
    }

    pub fn named_parameters<'a>(&'a self, prefix: &str, out: &mut Vec<(String, &'a Param)>) {
        out.push((format!("{prefix}.bn1.weight"), &self.bn1.weight));
        out.push((format!("{prefix}.bn1.bias"), &self.bn1.bias));
        out.push((format!("{prefix}.conv1.weight"), &self.conv1.weight));
        out.push((format!("{prefix}.bn2.weight"), &self.bn2.weight));
        out.push((format!("{prefix}.bn2.bias"), &self.bn2.bias));
        out.push((format!("{prefix}.conv2.weight"), &self.conv2.weight));
        if let Some(shortcut) = &self.shortcut {
            out.push((format!("{prefix}.convShortcut.weight"), &shortcut.weight));
        }
    }

    pub fn named_parameters_mut<'a>(
        &'a mut self,
        prefix: &str,
        out: &mut Vec<(String, &'a mut Param)>,
    ) {
        out.push((format!("{prefix}.bn1.weight"), &mut self.bn1.weight));
        out.push((format!("{prefix}.bn1.bias"), &mut self.bn1.bias));
        out.push((format!("{prefix}.conv1.weight"), &mut self.conv1.weight));
        out.push((format!("{prefix}.bn2.weight"), &mut self.bn2.weight));
        out.push((format!("{prefix}.bn2.bias"), &mut self.bn2.bias));
        out.push((format!("{prefix}.conv2.weight"), &mut self.conv2.weight));
        if let Some(shortcut) = &mut self.shortcut {
            out.push((
                format!("{prefix}.convShortcut.weight"),
                &mut shortcut.weight,
            ));
        }
    }
}
