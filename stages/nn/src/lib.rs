//! CPU tensor engine of ccssl.
//!
//! f32 NCHW tensors, layers with explicit forward and backward passes that own their caches,
//! the WideResNet with its projection head, the losses of the CCSSL objective, SGD, and
//! safetensors checkpoint I/O with PyTorch-style parameter names.

pub mod loss;
