//! Dense f32 tensor in row-major (NCHW for images) layout.

use crate::NnError;

/// A dense, row-major f32 tensor. Images are stored NCHW.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Tensor {
    shape: Vec<usize>,
    data: Vec<f32>,
}

impl Tensor {
    /// Builds a tensor from its shape and row-major data.
    ///
    /// # Errors
    /// [`NnError::Shape`] when `data.len()` is not the product of `shape`.
    pub fn new(shape: &[usize], data: Vec<f32>) -> Result<Self, NnError> {
        let numel: usize = shape.iter().product();
        if numel != data.len() {
            return Err(NnError::Shape {
                name: "tensor data".into(),
                expected: format!("{numel} elements for shape {shape:?}"),
                actual: vec![data.len()],
            });
        }
        Ok(Self {
            shape: shape.to_vec(),
            data,
        })
    }

    /// Builds a zero-filled tensor.
    pub fn zeros(shape: &[usize]) -> Self {
        let numel = shape.iter().product();
        Self {
            shape: shape.to_vec(),
            data: vec![0.0; numel],
        }
    }

    /// Shape, outermost dimension first.
    pub fn shape(&self) -> &[usize] {
        &self.shape
    }

    /// Row-major elements.
    pub fn data(&self) -> &[f32] {
        &self.data
    }

    /// Mutable row-major elements.
    pub fn data_mut(&mut self) -> &mut [f32] {
        &mut self.data
    }

    /// Number of elements.
    pub fn len(&self) -> usize {
        self.data.len()
    }

    /// Whether the tensor has no elements.
    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    /// Consumes the tensor and returns its elements.
    pub fn into_data(self) -> Vec<f32> {
        self.data
    }

    /// Changes the shape, keeping the allocation when it is large enough.
    ///
    /// Element values after a resize are unspecified (old contents or zeros); callers overwrite
    /// them. This is how layers reuse their buffers from one step to the next.
    pub fn resize(&mut self, shape: &[usize]) {
        let numel: usize = shape.iter().product();
        if self.shape != shape {
            self.shape.clear();
            self.shape.extend_from_slice(shape);
        }
        self.data.resize(numel, 0.0);
    }
}
