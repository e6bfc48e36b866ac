//! Parameter-free operations: LeakyReLU, global average pooling, L2 normalisation.

use crate::{NnError, Tensor};

/// Smallest norm the L2 normalisation divides by (as `torch.nn.functional.normalize`); the
/// reference divides by the plain norm, which differs only for all-zero rows.
pub const L2_NORM_MIN: f32 = 1e-12;

fn shape_error(name: &str, expected: &str, actual: &[usize]) -> NnError {
    NnError::Shape {
        name: name.into(),
        expected: expected.into(),
        actual: actual.to_vec(),
    }
}

/// `output = x if x > 0 else slope * x`, elementwise; `output` takes the input's shape.
pub fn leaky_relu_forward(input: &Tensor, slope: f32, output: &mut Tensor) {
    output.resize(input.shape());
    for (y, &x) in output.data_mut().iter_mut().zip(input.data()) {
        *y = if x > 0.0 { x } else { slope * x };
    }
}

/// In place on `grad`: output gradient in, input gradient out (`input` is the forward input).
///
/// # Errors
/// [`NnError::Shape`] when `grad` and `input` differ in shape.
pub fn leaky_relu_backward(input: &Tensor, slope: f32, grad: &mut Tensor) -> Result<(), NnError> {
    if grad.shape() != input.shape() {
        return Err(shape_error(
            "leaky_relu gradient",
            &format!("{:?}", input.shape()),
            grad.shape(),
        ));
    }
    for (g, &x) in grad.data_mut().iter_mut().zip(input.data()) {
        if x <= 0.0 {
            *g *= slope;
        }
    }
    Ok(())
}

/// Global average pooling `[N, C, H, W] -> [N, C]`.
///
/// # Errors
/// [`NnError::Shape`] when the input is not 4-D with a non-empty plane.
pub fn global_avg_pool_forward(input: &Tensor, output: &mut Tensor) -> Result<(), NnError> {
    let &[n, c, h, w] = input.shape() else {
        return Err(shape_error(
            "global_avg_pool input",
            "[N, C, H, W]",
            input.shape(),
        ));
    };
    if h * w == 0 {
        return Err(shape_error(
            "global_avg_pool input",
            "[N, C, H, W] with H * W > 0",
            input.shape(),
        ));
    }
    output.resize(&[n, c]);
    for (y, plane) in output.data_mut().iter_mut().zip(input.data().chunks(h * w)) {
        *y = plane.iter().sum::<f32>() / (h * w) as f32;
    }
    Ok(())
}

/// Gradient of global average pooling: `d_input[n, c, :, :] = d_output[n, c] / (H * W)`.
///
/// # Errors
/// [`NnError::Shape`] when `d_output` is not `[N, C]` of `input_shape`.
pub fn global_avg_pool_backward(
    input_shape: &[usize],
    d_output: &Tensor,
    d_input: &mut Tensor,
) -> Result<(), NnError> {
    let &[n, c, h, w] = input_shape else {
        return Err(shape_error(
            "global_avg_pool input",
            "[N, C, H, W]",
            input_shape,
        ));
    };
    if d_output.shape() != [n, c] {
        return Err(shape_error(
            "global_avg_pool output gradient",
            &format!("[{n}, {c}]"),
            d_output.shape(),
        ));
    }
    d_input.resize(input_shape);
    let scale = 1.0 / (h * w) as f32;
    for (plane, &g) in d_input.data_mut().chunks_mut(h * w).zip(d_output.data()) {
        plane.fill(g * scale);
    }
    Ok(())
}

/// Row-wise L2 normalisation of `[N, D]`: `output[i] = input[i] / max(|input[i]|, 1e-12)`.
///
/// # Errors
/// [`NnError::Shape`] when the input is not 2-D.
pub fn l2_normalize_forward(input: &Tensor, output: &mut Tensor) -> Result<(), NnError> {
    let &[_, d] = input.shape() else {
        return Err(shape_error("l2_normalize input", "[N, D]", input.shape()));
    };
    output.resize(input.shape());
    if d == 0 {
        return Ok(());
    }
    for (y, x) in output.data_mut().chunks_mut(d).zip(input.data().chunks(d)) {
        let norm = x.iter().map(|&v| v as f64 * v as f64).sum::<f64>().sqrt() as f32;
        let inv = 1.0 / norm.max(L2_NORM_MIN);
        y.iter_mut().zip(x).for_each(|(y, &x)| *y = x * inv);
    }
    Ok(())
}

/// Gradient of [`l2_normalize_forward`]: `dx = (dy - y (y . dy)) / |x|`, from the forward input
/// and the output gradient, written into `d_input`.
///
/// # Errors
/// [`NnError::Shape`] when the shapes differ or are not 2-D.
pub fn l2_normalize_backward(
    input: &Tensor,
    d_output: &Tensor,
    d_input: &mut Tensor,
) -> Result<(), NnError> {
    let &[_, d] = input.shape() else {
        return Err(shape_error("l2_normalize input", "[N, D]", input.shape()));
    };
    if d_output.shape() != input.shape() {
        return Err(shape_error(
            "l2_normalize output gradient",
            &format!("{:?}", input.shape()),
            d_output.shape(),
        ));
    }
    d_input.resize(input.shape());
    if d == 0 {
        return Ok(());
    }
    let rows = d_input
        .data_mut()
        .chunks_mut(d)
        .zip(input.data().chunks(d))
        .zip(d_output.data().chunks(d));
    for ((dx, x), dy) in rows {
        let norm = x.iter().map(|&v| v as f64 * v as f64).sum::<f64>().sqrt() as f32;
        let inv = 1.0 / norm.max(L2_NORM_MIN);
        if norm < L2_NORM_MIN {
            // Below the clamp the output is x / 1e-12, a linear map.
            dx.iter_mut().zip(dy).for_each(|(dx, &g)| *dx = g * inv);
            continue;
        }
        let dot: f32 = x.iter().zip(dy).map(|(&x, &g)| x * inv * g).sum();
        dx.iter_mut()
            .zip(x.iter().zip(dy))
            .for_each(|(dx, (&x, &g))| *dx = (g - x * inv * dot) * inv);
    }
    Ok(())
}
