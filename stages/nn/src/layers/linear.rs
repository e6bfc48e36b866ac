//! Fully connected layer `y = x W^T + b` (PyTorch `nn.Linear`).

use crate::matmul::{MatRef, matmul};
use crate::{NnError, Param, Tensor};

/// Linear layer with bias; weight `[out_features, in_features]`, bias `[out_features]`.
#[derive(Debug, Clone)]
pub struct Linear {
    /// Weight `[out_features, in_features]`.
    pub weight: Param,
    /// Bias `[out_features]`.
    pub bias: Param,
}

impl Linear {
    /// Builds a layer with zero weight and bias.
    pub fn new(in_features: usize, out_features: usize) -> Self {
        Self {
            weight: Param::filled(&[out_features, in_features], 0.0),
            bias: Param::filled(&[out_features], 0.0),
        }
    }

    /// Input width.
    pub fn in_features(&self) -> usize {
        self.weight.shape[1]
    }

    /// Output width.
    pub fn out_features(&self) -> usize {
        self.weight.shape[0]
    }

    fn check(&self, shape: &[usize], name: &str, width: usize) -> Result<usize, NnError> {
        match *shape {
            [n, f] if f == width => Ok(n),
            _ => Err(NnError::Shape {
                name: name.into(),
                expected: format!("[N, {width}]"),
                actual: shape.to_vec(),
            }),
        }
    }

    /// Computes `output = input W^T + b`; `output` is resized to `[N, out_features]`.
    ///
    /// # Errors
    /// [`NnError::Shape`] when the input is not `[N, in_features]`.
    pub fn forward(&self, input: &Tensor, output: &mut Tensor) -> Result<(), NnError> {
        let (fin, fout) = (self.in_features(), self.out_features());
        let n = self.check(input.shape(), "linear input", fin)?;
        output.resize(&[n, fout]);
        for row in output.data_mut().chunks_mut(fout) {
            row.copy_from_slice(&self.bias.value);
        }
        let w_t = MatRef::rows(&self.weight.value, fout, fin).t();
        matmul(
            output.data_mut(),
            fout,
            MatRef::rows(input.data(), n, fin),
            w_t,
            true,
        );
        Ok(())
    }

    /// Overwrites the weight and bias gradients and, when `d_input` is given, writes the input
    /// gradient into it (added to its contents with `accumulate`).
    ///
    /// # Errors
    /// [`NnError::Shape`] when shapes do not fit this layer.
    pub fn backward(
        &mut self,
        input: &Tensor,
        d_output: &Tensor,
        d_input: Option<&mut Tensor>,
        accumulate: bool,
    ) -> Result<(), NnError> {
        let (fin, fout) = (self.in_features(), self.out_features());
        let n = self.check(input.shape(), "linear input", fin)?;
        let n_out = self.check(d_output.shape(), "linear output gradient", fout)?;
        if n_out != n {
            return Err(NnError::Shape {
                name: "linear output gradient".into(),
                expected: format!("[{n}, {fout}]"),
                actual: d_output.shape().to_vec(),
            });
        }
        let dy = MatRef::rows(d_output.data(), n, fout);
        matmul(
            &mut self.weight.grad,
            fin,
            dy.t(),
            MatRef::rows(input.data(), n, fin),
            false,
        );
        self.bias.grad.fill(0.0);
        for row in d_output.data().chunks(fout) {
            self.bias
                .grad
                .iter_mut()
                .zip(row)
                .for_each(|(b, &g)| *b += g);
        }
        if let Some(d_input) = d_input {
            if accumulate && d_input.shape() != input.shape() {
                return Err(NnError::Shape {
                    name: "linear accumulated input gradient".into(),
                    expected: format!("[{n}, {fin}]"),
                    actual: d_input.shape().to_vec(),
                });
            }
            d_input.resize(&[n, fin]);
            let w = MatRef::rows(&self.weight.value, fout, fin);
            matmul(d_input.data_mut(), fin, dy, w, accumulate);
        }
        Ok(())
    }
}
