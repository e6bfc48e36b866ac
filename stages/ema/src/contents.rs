//! The tensor files of a checkpoint, as bytes ready for [`Checkpoints::write`].
//!
//! - `model.safetensors`: the online model's state dictionary under the reference PyTorch
//!   names, BatchNorm running statistics and `num_batches_tracked` included.
//! - `ema.safetensors`: the same names and shapes holding the averaged parameters and the
//!   copied running statistics, so it loads into a WideResNet (here or in PyTorch) like the
//!   model file. `num_batches_tracked` is copied from the online model, as the other buffers.
//! - `optimizer.safetensors`: one F32 tensor per parameter, named after the parameter and
//!   shaped like it, holding the SGD momentum buffer. Before the first step the optimizer has
//!   no buffers and the file holds no tensors.
//!
//! [`Checkpoints::write`]: crate::Checkpoints::write

use std::collections::HashMap;
use std::path::PathBuf;

use ccssl_nn::{Sgd, WideResNet};
use safetensors::tensor::{Dtype, TensorView};

use crate::checkpoint::CheckpointError;
use crate::ema::Ema;

/// File name of the online model's weights.
pub const MODEL_FILE: &str = "model.safetensors";
/// File name of the EMA weights.
pub const EMA_FILE: &str = "ema.safetensors";
/// File name of the optimizer's momentum buffers.
pub const OPTIMIZER_FILE: &str = "optimizer.safetensors";

/// One tensor to serialise: name, dtype, shape, little-endian bytes.
struct Entry {
    name: String,
    dtype: Dtype,
    shape: Vec<usize>,
    bytes: Vec<u8>,
}

impl Entry {
    fn f32(name: String, shape: Vec<usize>, values: &[f32]) -> Self {
        Self {
            name,
            dtype: Dtype::F32,
            shape,
            bytes: values.iter().flat_map(|v| v.to_le_bytes()).collect(),
        }
    }
}

fn serialize(file: &str, entries: &[Entry]) -> Result<Vec<u8>, CheckpointError> {
    let invalid = |message: String| CheckpointError::TensorFile {
        path: PathBuf::from(file),
        message,
    };
    let mut views = Vec::with_capacity(entries.len());
    for entry in entries {
        let view = TensorView::new(entry.dtype, entry.shape.clone(), &entry.bytes)
            .map_err(|err| invalid(format!("{}: {err}", entry.name)))?;
        views.push((entry.name.clone(), view));
    }
    safetensors::tensor::serialize(views, None).map_err(|err| invalid(err.to_string()))
}

/// Bytes of `model.safetensors` for the online model.
///
/// # Errors
/// [`CheckpointError::TensorFile`] if the safetensors writer fails.
pub fn model_bytes(model: &WideResNet) -> Result<Vec<u8>, CheckpointError> {
    ccssl_nn::to_safetensors_bytes(model).map_err(|err| CheckpointError::TensorFile {
        path: PathBuf::from(MODEL_FILE),
        message: err.to_string(),
    })
}

/// Bytes of `ema.safetensors`: the parameters and buffers of `ema` under the names and shapes
/// of `online`, plus `online`'s `num_batches_tracked` counters.
///
/// # Errors
/// [`CheckpointError::TensorMismatch`] naming every tensor of `online` that `ema` lacks or
/// holds with another element count.
pub fn ema_bytes(ema: &Ema, online: &WideResNet) -> Result<Vec<u8>, CheckpointError> {
    let params: HashMap<&str, &[f32]> = ema
        .params()
        .iter()
        .map(|(name, values)| (name.as_str(), values.as_slice()))
        .collect();
    let buffers: HashMap<&str, &[f32]> = ema
        .buffers()
        .iter()
        .map(|(name, values)| (name.as_str(), values.as_slice()))
        .collect();
    let mut entries = Vec::new();
    let mut mismatches = Vec::new();
    let mut push = |table: &HashMap<&str, &[f32]>, name: String, shape: Vec<usize>| {
        let numel: usize = shape.iter().product();
        match table.get(name.as_str()) {
            Some(values) if values.len() == numel => {
                entries.push(Entry::f32(name, shape, values));
            }
            Some(values) => mismatches.push(ccssl_nn::CheckpointMismatch::Shape {
                name,
                expected: shape,
                actual: vec![values.len()],
            }),
            None => mismatches.push(ccssl_nn::CheckpointMismatch::Missing { name }),
        }
    };
    for (name, param) in online.named_parameters() {
        push(&params, name, param.shape.clone());
    }
    for (name, values) in online.named_buffers() {
        push(&buffers, name, vec![values.len()]);
    }
    if !mismatches.is_empty() {
        return Err(CheckpointError::TensorMismatch {
            path: PathBuf::from(EMA_FILE),
            mismatches,
        });
    }
    for (prefix, bn) in online.named_batch_norms() {
        entries.push(Entry {
            name: format!("{prefix}.num_batches_tracked"),
            dtype: Dtype::I64,
            shape: Vec::new(),
            bytes: bn.num_batches_tracked.to_le_bytes().to_vec(),
        });
    }
    serialize(EMA_FILE, &entries)
}

/// Bytes of `optimizer.safetensors`: the momentum buffer of every parameter of `model`, named
/// and shaped like the parameter; no tensors when `sgd` has not stepped yet.
///
/// # Errors
/// [`CheckpointError::TensorMismatch`] when the optimizer's buffers are not those of
/// `model`'s parameters (another name, order or length).
pub fn optimizer_bytes(sgd: &Sgd, model: &WideResNet) -> Result<Vec<u8>, CheckpointError> {
    let buffers = sgd.momentum_buffers();
    let params = model.named_parameters();
    let mut entries = Vec::with_capacity(buffers.len());
    let mut mismatches = Vec::new();
    if !buffers.is_empty() {
        let by_name: HashMap<&str, &Vec<f32>> =
            buffers.iter().map(|(n, b)| (n.as_str(), b)).collect();
        for (name, param) in &params {
            match by_name.get(name.as_str()) {
                Some(buffer) if buffer.len() == param.value.len() => {
                    entries.push(Entry::f32(name.clone(), param.shape.clone(), buffer));
                }
                Some(buffer) => mismatches.push(ccssl_nn::CheckpointMismatch::Shape {
                    name: name.clone(),
                    expected: param.shape.clone(),
                    actual: vec![buffer.len()],
                }),
                None => {
                    mismatches.push(ccssl_nn::CheckpointMismatch::Missing { name: name.clone() })
                }
            }
        }
        for (name, _) in buffers {
            if !params.iter().any(|(p, _)| p == name) {
                mismatches.push(ccssl_nn::CheckpointMismatch::Unexpected { name: name.clone() });
            }
        }
    }
    if !mismatches.is_empty() {
        return Err(CheckpointError::TensorMismatch {
            path: PathBuf::from(OPTIMIZER_FILE),
            mismatches,
        });
    }
    serialize(OPTIMIZER_FILE, &entries)
}

/// The three tensor files of one checkpoint.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CheckpointFiles {
    /// Bytes of `model.safetensors`.
    pub model: Vec<u8>,
    /// Bytes of `ema.safetensors`.
    pub ema: Vec<u8>,
    /// Bytes of `optimizer.safetensors`.
    pub optimizer: Vec<u8>,
}

impl CheckpointFiles {
    /// Serialises the online model, its EMA and the optimizer.
    ///
    /// # Errors
    /// As [`model_bytes`], [`ema_bytes`] and [`optimizer_bytes`].
    pub fn build(online: &WideResNet, ema: &Ema, sgd: &Sgd) -> Result<Self, CheckpointError> {
        Ok(Self {
            model: model_bytes(online)?,
            ema: ema_bytes(ema, online)?,
            optimizer: optimizer_bytes(sgd, online)?,
        })
    }

    /// (file name, bytes) pairs in the form [`Checkpoints::write`](crate::Checkpoints::write)
    /// takes.
    pub fn named(&self) -> [(&'static str, &[u8]); 3] {
        [
            (MODEL_FILE, &self.model),
            (EMA_FILE, &self.ema),
            (OPTIMIZER_FILE, &self.optimizer),
        ]
    }
}
