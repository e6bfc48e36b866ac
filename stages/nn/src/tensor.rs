//! Dense f32 tensor in row-major (NCHW for images) layout.

use crate::NnError;

/// A dense, row-major f32 tensor. Images are stored NCHW.
#[derive(Debug, Clone, Default)]
pub struct Tensor {
    shape: Vec<usize>,
    /// Storage; at least `numel` long. Only the first `numel` elements belong to the tensor:
    /// [`Tensor::resize`] never shrinks the vector, so a buffer that alternates between
    /// shapes is neither reallocated nor zero-filled again.
    data: Vec<f32>,
    numel: usize,
}

impl PartialEq for Tensor {
    fn eq(&self, other: &Self) -> bool {
        self.shape == other.shape && self.data() == other.data()
    }
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
            numel,
        })
    }

    /// Builds a zero-filled tensor.
    pub fn zeros(shape: &[usize]) -> Self {
        let numel = shape.iter().product();
        Self {
            shape: shape.to_vec(),
            data: vec![0.0; numel],
            numel,
        }
    }

    /// Shape, outermost dimension first.
    pub fn shape(&self) -> &[usize] {
        &self.shape
    }

    /// Row-major elements.
    pub fn data(&self) -> &[f32] {
        &self.data[..self.numel]
    }

    /// Mutable row-major elements.
    pub fn data_mut(&mut self) -> &mut [f32] {
        &mut self.data[..self.numel]
    }

    /// Number of elements.
    pub fn len(&self) -> usize {
        self.numel
    }

    /// Whether the tensor has no elements.
    pub fn is_empty(&self) -> bool {
        self.numel == 0
    }

    /// Consumes the tensor and returns its elements.
    pub fn into_data(mut self) -> Vec<f32> {
        self.data.truncate(self.numel);
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
        if self.data.len() < numel {
            self.data.resize(numel, 0.0);
        }
        self.numel = numel;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resize_keeps_storage_and_exposes_only_the_shape() {
        let mut t = Tensor::new(&[2, 3], vec![1.0; 6]).unwrap();
        t.resize(&[2]);
        assert_eq!(t.len(), 2);
        assert_eq!(t.data(), &[1.0, 1.0]);
        t.resize(&[4, 2]);
        assert_eq!(t.shape(), &[4, 2]);
        assert_eq!(t.data().len(), 8);
        assert_eq!(t.clone().into_data().len(), 8);
        assert_eq!(Tensor::new(&[1], vec![1.0]).unwrap(), {
            let mut u = Tensor::new(&[3], vec![1.0, 5.0, 6.0]).unwrap();
            u.resize(&[1]);
            u
        });
    }

    #[test]
    fn new_rejects_wrong_length() {
        let err = Tensor::new(&[2, 2], vec![0.0; 3]).unwrap_err();
        assert!(
            err.to_string().contains("4 elements for shape [2, 2]"),
            "{err}"
        );
    }
}
