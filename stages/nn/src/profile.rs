//! Per-operation wall-clock accounting, switched on per model.

use std::time::{Duration, Instant};

/// Kinds of operation the profile accounts separately.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum OpKind {
    /// Convolution forward (im2col + GEMM).
    ConvForward,
    /// Convolution gradient with respect to its input (GEMM + col2im).
    ConvBackwardData,
    /// Convolution gradient with respect to its weight (im2col + GEMM + reduction).
    ConvBackwardWeight,
    /// BatchNorm (+ LeakyReLU) forward, including the statistics.
    BnForward,
    /// BatchNorm (+ LeakyReLU) recomputation of activations during backward.
    BnRecompute,
    /// BatchNorm (+ LeakyReLU) backward.
    BnBackward,
    /// Residual additions and gradient copies.
    Elementwise,
    /// Pooling, linear layers, projection head and L2 normalisation, forward and backward.
    Head,
}

impl OpKind {
    /// Every kind, in report order.
    pub const ALL: [OpKind; 8] = [
        OpKind::ConvForward,
        OpKind::ConvBackwardData,
        OpKind::ConvBackwardWeight,
        OpKind::BnForward,
        OpKind::BnRecompute,
        OpKind::BnBackward,
        OpKind::Elementwise,
        OpKind::Head,
    ];

    /// Short label for reports.
    pub fn label(self) -> &'static str {
        match self {
            OpKind::ConvForward => "conv forward",
            OpKind::ConvBackwardData => "conv backward-data",
            OpKind::ConvBackwardWeight => "conv backward-weight",
            OpKind::BnForward => "bn+lrelu forward",
            OpKind::BnRecompute => "bn+lrelu recompute",
            OpKind::BnBackward => "bn+lrelu backward",
            OpKind::Elementwise => "residual/elementwise",
            OpKind::Head => "pool+linear+head",
        }
    }
}

/// Accumulated time and call count per [`OpKind`].
#[derive(Debug, Clone, Default)]
pub struct Profile {
    enabled: bool,
    totals: [(Duration, u64); 8],
}

impl Profile {
    /// Whether timing is being recorded.
    pub fn enabled(&self) -> bool {
        self.enabled
    }

    pub(crate) fn set_enabled(&mut self, enabled: bool) {
        self.enabled = enabled;
    }

    /// Clears all totals.
    pub fn reset(&mut self) {
        self.totals = Default::default();
    }

    /// Total time and number of calls recorded for `kind`.
    pub fn total(&self, kind: OpKind) -> (Duration, u64) {
        self.totals[Self::index(kind)]
    }

    fn index(kind: OpKind) -> usize {
        OpKind::ALL.iter().position(|&k| k == kind).unwrap_or(0)
    }

    /// Starts a timer when profiling is on.
    pub(crate) fn start(&self) -> Option<Instant> {
        self.enabled.then(Instant::now)
    }

    /// Adds the time since `start` to `kind`.
    pub(crate) fn stop(&mut self, kind: OpKind, start: Option<Instant>) {
        if let Some(start) = start {
            let slot = &mut self.totals[Self::index(kind)];
            slot.0 += start.elapsed();
            slot.1 += 1;
        }
    }
}
