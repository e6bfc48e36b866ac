//! Reading of the PyTorch reference fixtures and the error measure the tests share.
//!
//! The fixtures are written by `tools/reference/nn_reference.py`, which records the torch
//! and numpy versions it ran with in each file's safetensors metadata.

#![allow(dead_code)]

use std::collections::HashMap;
use std::path::PathBuf;

use safetensors::{Dtype, SafeTensors};

/// Maximum relative error of forward values against the reference.
pub const FORWARD_TOLERANCE: f64 = 1e-4;
/// Maximum relative error of gradients against the reference.
pub const GRADIENT_TOLERANCE: f64 = 1e-3;

/// One fixture file, read whole into memory.
pub struct Fixture {
    name: String,
    bytes: Vec<u8>,
}

/// A float tensor from a fixture.
pub struct Array {
    pub shape: Vec<usize>,
    pub data: Vec<f32>,
}

impl Fixture {
    /// Reads `stages/nn/tests/fixtures/<name>.safetensors`.
    pub fn open(name: &str) -> Self {
        let path = fixture_path(name);
        let bytes = std::fs::read(&path)
            .unwrap_or_else(|e| panic!("cannot read fixture {}: {e}", path.display()));
        SafeTensors::deserialize(&bytes)
            .unwrap_or_else(|e| panic!("fixture {} is not safetensors: {e}", path.display()));
        Self {
            name: name.to_string(),
            bytes,
        }
    }

    fn tensors(&self) -> SafeTensors<'_> {
        SafeTensors::deserialize(&self.bytes).expect("checked in open")
    }

    /// Names of all tensors of the file.
    pub fn names(&self) -> Vec<String> {
        self.tensors()
            .names()
            .into_iter()
            .map(str::to_string)
            .collect()
    }

    /// Reads an `F32` tensor.
    pub fn f32(&self, tensor: &str) -> Array {
        let view = self.view(tensor, Dtype::F32);
        let data = view
            .data()
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect();
        Array {
            shape: view.shape().to_vec(),
            data,
        }
    }

    /// Reads an `I64` tensor (class labels) as `u32`.
    pub fn labels(&self, tensor: &str) -> Vec<u32> {
        let view = self.view(tensor, Dtype::I64);
        view.data()
            .chunks_exact(8)
            .map(|b| {
                let v = i64::from_le_bytes(b.try_into().expect("8 bytes"));
                u32::try_from(v).expect("label fits in u32")
            })
            .collect()
    }

    /// Reads a `U8` tensor (images).
    pub fn bytes(&self, tensor: &str) -> (Vec<usize>, Vec<u8>) {
        let view = self.view(tensor, Dtype::U8);
        (view.shape().to_vec(), view.data().to_vec())
    }

    /// Reads one scalar stored as a 1-element `F32` tensor.
    pub fn scalar(&self, tensor: &str) -> f32 {
        let array = self.f32(tensor);
        assert_eq!(array.data.len(), 1, "{tensor} is not a scalar");
        array.data[0]
    }

    /// Reads a metadata value.
    pub fn meta(&self, key: &str) -> String {
        let (_, metadata) =
            SafeTensors::read_metadata(&self.bytes).expect("header checked in open");
        let map: HashMap<String, String> = metadata.metadata().clone().unwrap_or_default();
        map.get(key)
            .unwrap_or_else(|| panic!("fixture {} has no metadata {key}", self.name))
            .clone()
    }

    /// Reads a numeric metadata value.
    pub fn meta_f64(&self, key: &str) -> f64 {
        let text = self.meta(key);
        text.parse()
            .unwrap_or_else(|e| panic!("metadata {key} = {text:?} is not a number: {e}"))
    }

    fn view(&self, tensor: &str, dtype: Dtype) -> safetensors::tensor::TensorView<'_> {
        let view = self
            .tensors()
            .tensor(tensor)
            .unwrap_or_else(|e| panic!("fixture {} has no tensor {tensor}: {e}", self.name));
        assert_eq!(view.dtype(), dtype, "dtype of {tensor}");
        view
    }
}

/// Path of a fixture. Written relative to `stages/`, so the `ccssl-step` tests can include this
/// module too.
pub fn fixture_path(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../nn/tests/fixtures")
        .join(format!("{name}.safetensors"))
}

/// Relative error `max |actual - expected| / max |expected|`, the measure every fixture test
/// uses. Element-wise relative errors would blow up on entries near 0. An all-zero reference
/// is compared by absolute error.
pub fn relative_error(actual: &[f32], expected: &[f32]) -> f64 {
    assert_eq!(actual.len(), expected.len(), "lengths differ");
    let scale = expected
        .iter()
        .fold(0.0f64, |m, &x| m.max(f64::from(x).abs()));
    let diff = actual.iter().zip(expected).fold(0.0f64, |m, (&a, &e)| {
        m.max((f64::from(a) - f64::from(e)).abs())
    });
    if scale == 0.0 { diff } else { diff / scale }
}

/// Asserts that `actual` matches `expected` within `tolerance` (see [`relative_error`]) and
/// returns the error for reporting.
pub fn assert_close(what: &str, actual: &[f32], expected: &[f32], tolerance: f64) -> f64 {
    let error = relative_error(actual, expected);
    eprintln!("{what}: relative error {error:.3e}");
    assert!(
        error <= tolerance,
        "{what}: relative error {error:.3e} exceeds {tolerance:.0e}"
    );
    error
}
