//! safetensors save and load of a [`WideResNet`] under the reference PyTorch names
//! (`conv1.weight`, `block1.layer.0.bn1.running_mean`, `bn1.num_batches_tracked`, `fc.weight`,
//! `fc1.bias`, ...), so a checkpoint written here loads with `model.load_state_dict` in the
//! reference model and back. Parameters and running statistics are little-endian F32,
//! `num_batches_tracked` is a 0-dimensional I64 as in PyTorch.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use safetensors::tensor::{Dtype, SafeTensors, TensorView};

use crate::{CheckpointMismatch, NnError, WideResNet};

const MEMORY: &str = "<memory>";

/// One tensor of the state dictionary, as stored.
enum Stored {
    F32 { shape: Vec<usize>, bytes: Vec<u8> },
    I64(i64),
}

fn f32_bytes(values: &[f32]) -> Vec<u8> {
    values.iter().flat_map(|v| v.to_le_bytes()).collect()
}

/// The state dictionary (parameters, running statistics, batch counters) by name.
fn state_dict(model: &WideResNet) -> Vec<(String, Stored)> {
    let mut out = Vec::new();
    for (name, param) in model.named_parameters() {
        out.push((
            name,
            Stored::F32 {
                shape: param.shape.clone(),
                bytes: f32_bytes(&param.value),
            },
        ));
    }
    for (prefix, bn) in model.named_batch_norms() {
        let shape = vec![bn.channels()];
        out.push((
            format!("{prefix}.running_mean"),
            Stored::F32 {
                shape: shape.clone(),
                bytes: f32_bytes(&bn.running_mean),
            },
        ));
        out.push((
            format!("{prefix}.running_var"),
            Stored::F32 {
                shape,
                bytes: f32_bytes(&bn.running_var),
            },
        ));
        out.push((
            format!("{prefix}.num_batches_tracked"),
            Stored::I64(bn.num_batches_tracked),
        ));
    }
    out
}

/// Serialises the model's parameters and buffers into safetensors bytes.
///
/// # Errors
/// [`NnError::Format`] if the safetensors writer fails.
pub fn to_safetensors_bytes(model: &WideResNet) -> Result<Vec<u8>, NnError> {
    let state = state_dict(model);
    let counters: Vec<[u8; 8]> = state
        .iter()
        .map(|(_, stored)| match stored {
            Stored::I64(v) => v.to_le_bytes(),
            Stored::F32 { .. } => [0; 8],
        })
        .collect();
    let mut views = Vec::with_capacity(state.len());
    for ((name, stored), counter) in state.iter().zip(&counters) {
        let view = match stored {
            Stored::F32 { shape, bytes } => TensorView::new(Dtype::F32, shape.clone(), bytes),
            Stored::I64(_) => TensorView::new(Dtype::I64, Vec::new(), counter),
        };
        let view = view.map_err(|e| NnError::Format {
            path: MEMORY.into(),
            message: format!("{name}: {e}"),
        })?;
        views.push((name.clone(), view));
    }
    safetensors::tensor::serialize(views, None).map_err(|e| NnError::Format {
        path: MEMORY.into(),
        message: e.to_string(),
    })
}

/// Writes the model to `path` (through a temporary file in the same directory and a rename,
/// so an interrupted write never leaves a truncated checkpoint under `path`).
///
/// # Errors
/// [`NnError::Io`] when the file cannot be written.
pub fn save_safetensors(model: &WideResNet, path: &Path) -> Result<(), NnError> {
    let bytes = to_safetensors_bytes(model)?;
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    let io = |source| NnError::Io {
        path: path.to_path_buf(),
        source,
    };
    std::fs::write(&tmp, &bytes).map_err(io)?;
    std::fs::rename(&tmp, path).map_err(io)
}

/// Loads parameters and buffers from safetensors bytes. Every tensor of the model must be
/// present with the same shape and dtype and the file may hold no other tensor; otherwise the
/// model is left unchanged and [`NnError::Checkpoint`] lists every mismatch.
///
/// # Errors
/// [`NnError::Format`] for unreadable data, [`NnError::Checkpoint`] for mismatches.
pub fn load_safetensors_bytes(model: &mut WideResNet, bytes: &[u8]) -> Result<(), NnError> {
    load_from(model, bytes, Path::new(MEMORY))
}

/// Loads parameters and buffers from a safetensors file; see [`load_safetensors_bytes`].
///
/// # Errors
/// [`NnError::Io`], [`NnError::Format`] or [`NnError::Checkpoint`] naming `path`.
pub fn load_safetensors(model: &mut WideResNet, path: &Path) -> Result<(), NnError> {
    let bytes = std::fs::read(path).map_err(|source| NnError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    load_from(model, &bytes, path)
}

fn dtype_name(dtype: Dtype) -> String {
    format!("{dtype:?}")
}

fn load_from(model: &mut WideResNet, bytes: &[u8], path: &Path) -> Result<(), NnError> {
    let file = SafeTensors::deserialize(bytes).map_err(|e| NnError::Format {
        path: path.to_path_buf(),
        message: e.to_string(),
    })?;
    let expected = state_dict(model);
    let mut found: HashMap<String, TensorView<'_>> = file.tensors().into_iter().collect();
    let mut mismatches = Vec::new();
    let mut names: Vec<&String> = found
        .keys()
        .filter(|n| !expected.iter().any(|(e, _)| e == *n))
        .collect();
    names.sort();
    for name in names {
        mismatches.push(CheckpointMismatch::Unexpected { name: name.clone() });
    }
    for (name, stored) in &expected {
        let Some(view) = found.get(name) else {
            mismatches.push(CheckpointMismatch::Missing { name: name.clone() });
            continue;
        };
        let (dtype, shape) = match stored {
            Stored::F32 { shape, .. } => (Dtype::F32, shape.clone()),
            Stored::I64(_) => (Dtype::I64, Vec::new()),
        };
        if view.dtype() != dtype {
            mismatches.push(CheckpointMismatch::Dtype {
                name: name.clone(),
                expected: dtype_name(dtype),
                actual: dtype_name(view.dtype()),
            });
        } else if view.shape() != shape {
            mismatches.push(CheckpointMismatch::Shape {
                name: name.clone(),
                expected: shape,
                actual: view.shape().to_vec(),
            });
        }
    }
    if !mismatches.is_empty() {
        return Err(NnError::Checkpoint {
            path: path.to_path_buf(),
            mismatches,
        });
    }
    let read_f32 = |view: &TensorView<'_>, out: &mut [f32]| {
        for (v, chunk) in out.iter_mut().zip(view.data().chunks_exact(4)) {
            *v = f32::from_le_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]);
        }
    };
    for (name, param) in model.named_parameters_mut() {
        if let Some(view) = found.remove(&name) {
            read_f32(&view, &mut param.value);
        }
    }
    for (prefix, bn) in model.named_batch_norms_mut() {
        if let Some(view) = found.remove(&format!("{prefix}.running_mean")) {
            read_f32(&view, &mut bn.running_mean);
        }
        if let Some(view) = found.remove(&format!("{prefix}.running_var")) {
            read_f32(&view, &mut bn.running_var);
        }
        if let Some(view) = found.remove(&format!("{prefix}.num_batches_tracked")) {
            let mut raw = [0u8; 8];
            raw.copy_from_slice(&view.data()[..8]);
            bn.num_batches_tracked = i64::from_le_bytes(raw);
        }
    }
    Ok(())
}

#[cfg(test)]
#[path = "checkpoint_tests.rs"]
mod tests;
