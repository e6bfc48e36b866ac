//! CPU tensor engine of ccssl.
//!
//! f32 NCHW tensors, layers with explicit forward and backward passes (convolution as
//! Winograd F(2x2, 3x3) or im2col + GEMM on the `gemm` crate, BatchNorm fused with LeakyReLU,
//! linear, pooling, L2 normalisation), the WideResNet with its projection head, SGD with the cosine schedule,
//! the losses of the CCSSL objective, and safetensors checkpoint I/O with the parameter names
//! of the reference PyTorch model.
//!
//! All parallel work runs on a [`ThreadPool`] passed in by the caller; results do not depend
//! on its size.
//!
//! The model returns L2-normalised projections, so losses take normalised features and the
//! gradient of the normalisation is part of [`WideResNet::backward`].

mod block;
pub mod checkpoint;
mod error;
#[cfg(test)]
mod gradcheck;
pub mod layers;
pub mod loss;
mod matmul;
pub mod optim;
mod param;
mod pool;
pub mod profile;
mod tensor;
pub mod wideresnet;

pub use checkpoint::{
    load_safetensors, load_safetensors_bytes, save_safetensors, to_safetensors_bytes,
};
pub use error::{CheckpointMismatch, NnError};
pub use optim::{Sgd, SgdConfig, cosine_lr_factor};
pub use param::Param;
pub use pool::ThreadPool;
pub use profile::{OpKind, Profile};
pub use tensor::Tensor;
pub use wideresnet::{ForwardOutput, WideResNet, WideResNetConfig};

/// Reusable scratch memory (column matrices) of the convolution kernels, one buffer per pool
/// thread. Keep one per model and pass it to every call, so the steady state allocates nothing.
#[derive(Default)]
pub struct Workspace {
    scratch: matmul::Scratch,
    /// Flipped, channel-transposed convolution weight of the stride-1 input gradient.
    flipped: Vec<f32>,
    /// Winograd transform `[16, out_channels, in_channels]` of the current 3x3 weight.
    winograd: Vec<f32>,
}

impl std::fmt::Debug for Workspace {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Workspace")
    }
}
