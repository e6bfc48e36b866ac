//! 2-D convolution without bias: im2col + GEMM forward, two GEMMs + col2im backward.
//! 3x3 convolutions with stride 1 and padding 1 (in WideResNet, every 3x3 convolution except
//! the two with stride 2) take the Winograd path of [`winograd`] instead in all three passes, with 16 multiplications per
//! output tile of 2x2 pixels and channel pair where im2col needs 36.
//!
//! Images are processed in groups of `G` whose column matrices are laid side by side, so small
//! feature maps still give the GEMM a wide right-hand side. `G` and the split of the weight
//! gradient into partial sums depend only on shapes, so results do not depend on the thread
//! count.

use rayon::prelude::*;

use crate::matmul::{MatRef, Scratch, matmul, matmul_column_major};
use crate::{NnError, Param, Tensor, ThreadPool, Workspace};

mod winograd;

/// Minimum number of output columns (images x output pixels) one GEMM call covers.
const GROUP_COLUMNS: usize = 512;
/// Maximum number of partial weight gradients summed at the end of backward.
const MAX_PARTIALS: usize = 16;

/// Shape of one convolution call.
#[derive(Debug, Clone, Copy)]
struct Geometry {
    batch: usize,
    in_channels: usize,
    out_channels: usize,
    height: usize,
    width: usize,
    out_height: usize,
    out_width: usize,
    kernel: usize,
    stride: usize,
    padding: usize,
}

impl Geometry {
    fn in_plane(&self) -> usize {
        self.in_channels * self.height * self.width
    }
    fn out_pixels(&self) -> usize {
        self.out_height * self.out_width
    }
    /// Rows of the column matrix: in_channels * kernel * kernel.
    fn col_rows(&self) -> usize {
        self.in_channels * self.kernel * self.kernel
    }
    fn group_size(&self) -> usize {
        GROUP_COLUMNS
            .div_ceil(self.out_pixels().max(1))
            .clamp(1, self.batch.max(1))
    }
}

/// For stride 1: the output columns `lo..hi` whose input column `ox + kx - p` lies inside
/// `0..w` (empty when none does).
fn valid_range(kx: usize, p: usize, w: usize, wo: usize) -> (usize, usize) {
    let lo = p.saturating_sub(kx).min(wo);
    let hi = (w + p).saturating_sub(kx).min(wo).max(lo);
    (lo, hi)
}

/// Writes the column matrix of one `[C, H, W]` image into `col` at column offset `offset`;
/// `ld` is the row stride of `col`. Row `(c * k + ky) * k + kx` contains input pixel
/// `(c, oy * s + ky - p, ox * s + kx - p)` at column `oy * out_w + ox`, zero outside the image.
fn im2col(x: &[f32], g: &Geometry, col: &mut [f32], ld: usize, offset: usize) {
    let (h, w, k, s, p) = (g.height, g.width, g.kernel, g.stride, g.padding);
    let (ho, wo) = (g.out_height, g.out_width);
    for c in 0..g.in_channels {
        let plane = &x[c * h * w..(c + 1) * h * w];
        for ky in 0..k {
            for kx in 0..k {
                let row = (c * k + ky) * k + kx;
                let dst = &mut col[row * ld + offset..row * ld + offset + ho * wo];
                let (lo, hi) = valid_range(kx, p, w, wo);
                for oy in 0..ho {
                    let d = &mut dst[oy * wo..(oy + 1) * wo];
                    let iy = (oy * s + ky) as isize - p as isize;
                    if iy < 0 || iy >= h as isize {
                        d.fill(0.0);
                        continue;
                    }
                    let src = &plane[iy as usize * w..(iy as usize + 1) * w];
                    if s == 1 {
                        // A contiguous run of valid pixels between zero-padded edges.
                        d[..lo].fill(0.0);
                        d[hi..].fill(0.0);
                        d[lo..hi].copy_from_slice(&src[lo + kx - p..hi + kx - p]);
                        continue;
                    }
                    for (ox, v) in d.iter_mut().enumerate() {
                        let ix = (ox * s + kx) as isize - p as isize;
                        *v = if ix >= 0 && ix < w as isize {
                            src[ix as usize]
                        } else {
                            0.0
                        };
                    }
                }
            }
        }
    }
}

/// Adds the column-matrix gradient back onto one `[C, H, W]` image gradient (inverse of
/// [`im2col`]'s gather).
fn col2im(col: &[f32], g: &Geometry, ld: usize, offset: usize, dx: &mut [f32]) {
    let (h, w, k, s, p) = (g.height, g.width, g.kernel, g.stride, g.padding);
    let (ho, wo) = (g.out_height, g.out_width);
    for c in 0..g.in_channels {
        let plane = &mut dx[c * h * w..(c + 1) * h * w];
        for ky in 0..k {
            for kx in 0..k {
                let row = (c * k + ky) * k + kx;
                let src = &col[row * ld + offset..row * ld + offset + ho * wo];
                let (lo, hi) = valid_range(kx, p, w, wo);
                for oy in 0..ho {
                    let iy = (oy * s + ky) as isize - p as isize;
                    if iy < 0 || iy >= h as isize {
                        continue;
                    }
                    let d = &mut plane[iy as usize * w..(iy as usize + 1) * w];
                    let values = &src[oy * wo..(oy + 1) * wo];
                    if s == 1 {
                        let to = &mut d[lo + kx - p..hi + kx - p];
                        to.iter_mut()
                            .zip(&values[lo..hi])
                            .for_each(|(d, v)| *d += v);
                        continue;
                    }
                    for (ox, &v) in values.iter().enumerate() {
                        let ix = (ox * s + kx) as isize - p as isize;
                        if ix >= 0 && ix < w as isize {
                            d[ix as usize] += v;
                        }
                    }
                }
            }
        }
    }
}

/// Copies images `[G, C, P]` into a `[C, G * P]` matrix.
fn pack_group(src: &[f32], images: usize, channels: usize, pixels: usize, dst: &mut [f32]) {
    for i in 0..images {
        for c in 0..channels {
            let from = &src[(i * channels + c) * pixels..][..pixels];
            dst[c * images * pixels + i * pixels..][..pixels].copy_from_slice(from);
        }
    }
}

/// Copies (or adds, with `accumulate`) a `[C, G * P]` matrix into images `[G, C, P]`.
fn unpack_group(
    src: &[f32],
    images: usize,
    channels: usize,
    pixels: usize,
    dst: &mut [f32],
    accumulate: bool,
) {
    for i in 0..images {
        for c in 0..channels {
            let from = &src[c * images * pixels + i * pixels..][..pixels];
            let to = &mut dst[(i * channels + c) * pixels..][..pixels];
            if accumulate {
                to.iter_mut().zip(from).for_each(|(d, s)| *d += s);
            } else {
                to.copy_from_slice(from);
            }
        }
    }
}

/// Computes `y = conv(x)` (or `y += conv(x)`) for geometry `g` with a row-major weight
/// `[out_channels, in_channels * k * k]`, in parallel over groups of images. `transformed`
/// receives the Winograd weight when that path applies.
#[allow(clippy::too_many_arguments)]
fn convolve(
    pool: &ThreadPool,
    scratch: &Scratch,
    transformed: &mut Vec<f32>,
    weight: &[f32],
    g: &Geometry,
    x: &[f32],
    y: &mut [f32],
    accumulate: bool,
) {
    if winograd::applies(g) {
        winograd::transform_weight(weight, g.out_channels, g.in_channels, transformed);
        winograd::convolve(pool, scratch, transformed, g, x, y, accumulate);
    } else {
        convolve_im2col(pool, scratch, weight, g, x, y, accumulate);
    }
}

/// [`convolve`] through im2col and one GEMM per group of images.
fn convolve_im2col(
    pool: &ThreadPool,
    scratch: &Scratch,
    weight: &[f32],
    g: &Geometry,
    x: &[f32],
    y: &mut [f32],
    accumulate: bool,
) {
    let (group, k_rows, pixels) = (g.group_size(), g.col_rows(), g.out_pixels());
    let out_image = g.out_channels * pixels;
    let weight = MatRef::rows(weight, g.out_channels, k_rows);
    pool.install(|| {
        y.par_chunks_mut(group * out_image)
            .zip(x.par_chunks(group * g.in_plane()))
            .for_each(|(y, x)| {
                let images = y.len() / out_image;
                let cols = images * pixels;
                scratch.with(k_rows * cols + out_image * images, |buf| {
                    let (col, tmp) = buf.split_at_mut(k_rows * cols);
                    for i in 0..images {
                        im2col(&x[i * g.in_plane()..], g, col, cols, i * pixels);
                    }
                    let col = MatRef::rows(col, k_rows, cols);
                    if images == 1 {
                        matmul(y, cols, weight, col, accumulate);
                    } else {
                        matmul(tmp, cols, weight, col, false);
                        unpack_group(tmp, images, g.out_channels, pixels, y, accumulate);
                    }
                });
            });
    });
}

/// 2-D convolution without bias (PyTorch `Conv2d(bias=False)`), square kernel.
#[derive(Debug, Clone)]
pub struct Conv2d {
    /// Weight `[out_channels, in_channels, kernel, kernel]`.
    pub weight: Param,
    in_channels: usize,
    out_channels: usize,
    kernel: usize,
    stride: usize,
    padding: usize,
    /// Partial weight gradients, `MAX_PARTIALS` at most, reused across steps.
    partials: Vec<f32>,
}

impl Conv2d {
    /// Builds a convolution with zero weights.
    pub fn new(
        in_channels: usize,
        out_channels: usize,
        kernel: usize,
        stride: usize,
        padding: usize,
    ) -> Self {
        Self {
            weight: Param::filled(&[out_channels, in_channels, kernel, kernel], 0.0),
            in_channels,
            out_channels,
            kernel,
            stride: stride.max(1),
            padding,
            partials: Vec::new(),
        }
    }

    /// Output height and width for an input of `height x width`, or `None` when the kernel
    /// does not fit.
    pub fn output_size(&self, height: usize, width: usize) -> Option<(usize, usize)> {
        let h = (height + 2 * self.padding).checked_sub(self.kernel)? / self.stride + 1;
        let w = (width + 2 * self.padding).checked_sub(self.kernel)? / self.stride + 1;
        Some((h, w))
    }

    fn geometry(&self, shape: &[usize]) -> Result<Geometry, NnError> {
        let bad = || NnError::Shape {
            name: "conv2d input".into(),
            expected: format!(
                "[N, {}, H, W] with H, W >= {} - 2 * {}",
                self.in_channels, self.kernel, self.padding
            ),
            actual: shape.to_vec(),
        };
        let &[batch, channels, height, width] = shape else {
            return Err(bad());
        };
        if channels != self.in_channels {
            return Err(bad());
        }
        let (out_height, out_width) = self.output_size(height, width).ok_or_else(bad)?;
        Ok(Geometry {
            batch,
            in_channels: self.in_channels,
            out_channels: self.out_channels,
            height,
            width,
            out_height,
            out_width,
            kernel: self.kernel,
            stride: self.stride,
            padding: self.padding,
        })
    }

    /// Output shape for `input_shape`.
    ///
    /// # Errors
    /// [`NnError::Shape`] when the input is not `[N, in_channels, H, W]` with room for the kernel.
    pub fn output_shape(&self, input_shape: &[usize]) -> Result<[usize; 4], NnError> {
        let g = self.geometry(input_shape)?;
        Ok([g.batch, g.out_channels, g.out_height, g.out_width])
    }

    /// Computes `output = conv(input)`, or `output += conv(input)` with `accumulate` (then
    /// `output` must already have the output shape); `output` is resized to
    /// `[N, out_channels, H', W']`.
    ///
    /// # Errors
    /// [`NnError::Shape`] when the input is not `[N, in_channels, H, W]`.
    pub fn forward(
        &self,
        pool: &ThreadPool,
        workspace: &mut Workspace,
        input: &Tensor,
        output: &mut Tensor,
        accumulate: bool,
    ) -> Result<(), NnError> {
        let g = self.geometry(input.shape())?;
        let out_shape = [g.batch, g.out_channels, g.out_height, g.out_width];
        if accumulate && output.shape() != out_shape {
            return Err(NnError::Shape {
                name: "conv2d accumulated output".into(),
                expected: format!("{out_shape:?}"),
                actual: output.shape().to_vec(),
            });
        }
        output.resize(&out_shape);
        workspace.scratch.ensure_threads(pool.threads());
        convolve(
            pool,
            &workspace.scratch,
            &mut workspace.winograd,
            &self.weight.value,
            &g,
            input.data(),
            output.data_mut(),
            accumulate,
        );
        Ok(())
    }

    /// Computes the weight gradient (overwriting `weight.grad`) from the forward input and the
    /// output gradient.
    ///
    /// # Errors
    /// [`NnError::Shape`] when `input` or `d_output` do not fit this layer.
    pub fn backward_weight(
        &mut self,
        pool: &ThreadPool,
        workspace: &mut Workspace,
        input: &Tensor,
        d_output: &Tensor,
    ) -> Result<(), NnError> {
        let g = self.geometry(input.shape())?;
        self.check_d_output(&g, d_output)?;
        workspace.scratch.ensure_threads(pool.threads());
        let scratch = &workspace.scratch;
        if winograd::applies(&g) {
            winograd::backward_weight(
                pool,
                scratch,
                &g,
                input.data(),
                d_output.data(),
                &mut self.partials,
                &mut self.weight.grad,
            );
            return Ok(());
        }
        let (group, k_rows, pixels) = (g.group_size(), g.col_rows(), g.out_pixels());
        let groups = g.batch.div_ceil(group);
        let partial_count = groups.clamp(1, MAX_PARTIALS);
        let weight_len = g.out_channels * k_rows;
        self.partials.resize(partial_count * weight_len, 0.0);
        let (x, dy) = (input.data(), d_output.data());
        let out_image = g.out_channels * pixels;
        pool.install(|| {
            self.partials
                .par_chunks_mut(weight_len)
                .enumerate()
                .for_each(|(j, partial)| {
                    let first = j * groups / partial_count;
                    let last = (j + 1) * groups / partial_count;
                    partial.fill(0.0);
                    for gi in first..last {
                        let start = gi * group;
                        let images = group.min(g.batch - start);
                        let cols = images * pixels;
                        scratch.with(k_rows * cols + out_image * images, |buf| {
                            let (col, packed) = buf.split_at_mut(k_rows * cols);
                            for i in 0..images {
                                im2col(&x[(start + i) * g.in_plane()..], &g, col, cols, i * pixels);
                            }
                            let dy_group = &dy[start * out_image..(start + images) * out_image];
                            let dy_mat = if images == 1 {
                                dy_group
                            } else {
                                pack_group(dy_group, images, g.out_channels, pixels, packed);
                                &packed[..]
                            };
                            let dy_mat = MatRef::rows(dy_mat, g.out_channels, cols);
                            let col_t = MatRef::rows(col, k_rows, cols).t();
                            // A column-major partial lets the gemm crate transpose-pack the
                            // small dy operand instead of the large column matrix.
                            matmul_column_major(partial, dy_mat, col_t, true);
                        });
                    }
                });
            // Partials are column-major [k_rows, out_channels]; the gradient is row-major
            // [out_channels, k_rows]. Each element sums the partials in index order.
            let partials = &self.partials;
            let out_channels = g.out_channels;
            self.weight
                .grad
                .par_chunks_mut(k_rows)
                .enumerate()
                .for_each(|(co, row)| {
                    for (r, value) in row.iter_mut().enumerate() {
                        let mut sum = 0.0;
                        for j in 0..partial_count {
                            sum += partials[j * weight_len + r * out_channels + co];
                        }
                        *value = sum;
                    }
                });
        });
        Ok(())
    }

    /// Computes the input gradient into `d_input` (resized to the input shape). With
    /// `accumulate` the gradient is added to the current contents of `d_input`, which must
    /// then already have the input's shape.
    ///
    /// # Errors
    /// [`NnError::Shape`] when shapes do not fit this layer.
    pub fn backward_data(
        &self,
        pool: &ThreadPool,
        workspace: &mut Workspace,
        input_shape: &[usize],
        d_output: &Tensor,
        d_input: &mut Tensor,
        accumulate: bool,
    ) -> Result<(), NnError> {
        let g = self.geometry(input_shape)?;
        self.check_d_output(&g, d_output)?;
        if accumulate && d_input.shape() != input_shape {
            return Err(NnError::Shape {
                name: "conv2d accumulated input gradient".into(),
                expected: format!("{input_shape:?}"),
                actual: d_input.shape().to_vec(),
            });
        }
        d_input.resize(input_shape);
        workspace.scratch.ensure_threads(pool.threads());
        if g.stride == 1 && g.padding < g.kernel {
            // With stride 1 the input gradient is itself a convolution of d_output with the
            // spatially flipped, channel-transposed weight and padding k - 1 - p. That GEMM
            // reduces over out_channels * k * k instead of out_channels and needs no col2im.
            let k = g.kernel;
            let taps = k * k;
            let mut flipped = std::mem::take(&mut workspace.flipped);
            flipped.resize(self.weight.value.len(), 0.0);
            for co in 0..g.out_channels {
                for ci in 0..g.in_channels {
                    let src = &self.weight.value[(co * g.in_channels + ci) * taps..][..taps];
                    let dst = &mut flipped[(ci * g.out_channels + co) * taps..][..taps];
                    for (t, v) in dst.iter_mut().enumerate() {
                        *v = src[taps - 1 - t];
                    }
                }
            }
            let transposed = Geometry {
                in_channels: g.out_channels,
                out_channels: g.in_channels,
                height: g.out_height,
                width: g.out_width,
                out_height: g.height,
                out_width: g.width,
                padding: k - 1 - g.padding,
                ..g
            };
            let (dy, dx) = (d_output.data(), d_input.data_mut());
            convolve(
                pool,
                &workspace.scratch,
                &mut workspace.winograd,
                &flipped,
                &transposed,
                dy,
                dx,
                accumulate,
            );
            workspace.flipped = flipped;
            return Ok(());
        }
        let scratch = &workspace.scratch;
        let (group, k_rows, pixels) = (g.group_size(), g.col_rows(), g.out_pixels());
        let out_image = g.out_channels * pixels;
        let weight_t = MatRef::rows(&self.weight.value, g.out_channels, k_rows).t();
        pool.install(|| {
            d_input
                .data_mut()
                .par_chunks_mut(group * g.in_plane())
                .zip(d_output.data().par_chunks(group * out_image))
                .for_each(|(dx, dy)| {
                    let images = dy.len() / out_image;
                    let cols = images * pixels;
                    if !accumulate {
                        dx.fill(0.0);
                    }
                    scratch.with(k_rows * cols + out_image * images, |buf| {
                        let (dcol, packed) = buf.split_at_mut(k_rows * cols);
                        let dy_mat = if images == 1 {
                            dy
                        } else {
                            pack_group(dy, images, g.out_channels, pixels, packed);
                            &packed[..]
                        };
                        let dy_mat = MatRef::rows(dy_mat, g.out_channels, cols);
                        matmul(dcol, cols, weight_t, dy_mat, false);
                        for i in 0..images {
                            col2im(dcol, &g, cols, i * pixels, &mut dx[i * g.in_plane()..]);
                        }
                    });
                });
        });
        Ok(())
    }

    fn check_d_output(&self, g: &Geometry, d_output: &Tensor) -> Result<(), NnError> {
        let expected = [g.batch, g.out_channels, g.out_height, g.out_width];
        if d_output.shape() != expected {
            return Err(NnError::Shape {
                name: "conv2d output gradient".into(),
                expected: format!("{expected:?}"),
                actual: d_output.shape().to_vec(),
            });
        }
        Ok(())
    }
}
