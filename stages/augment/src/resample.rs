//! Bilinear resizing with Pillow's separable, antialiased resampler (`Resample.c`, Pillow 13),
//! the resize behind torchvision's `Resize` and `RandomResizedCrop` on PIL images.
//!
//! Each output pixel averages the input over the bilinear (triangle) filter, widened by the
//! scale factor when shrinking. Coefficients are normalised in `f64`, then stored as 22-bit
//! fixed point; the horizontal pass runs first and rounds to `u8`, then the vertical pass.

use crate::RgbImage;

const PRECISION_BITS: u32 = 32 - 8 - 2;

/// Triangle filter of support 1.
fn bilinear(x: f64) -> f64 {
    let x = x.abs();
    if x < 1.0 { 1.0 - x } else { 0.0 }
}

/// For each output index: the first input index, and the fixed-point weights from there
/// (`count[i]` weights at `weights[i * stride..]`).
struct Coefficients {
    first: Vec<usize>,
    count: Vec<usize>,
    stride: usize,
    weights: Vec<i32>,
}

impl Coefficients {
    fn of(&self, i: usize) -> (usize, &[i32]) {
        (
            self.first[i],
            &self.weights[i * self.stride..i * self.stride + self.count[i]],
        )
    }
}

/// Pillow's `precompute_coeffs` for the input range [`in0`, `in1`) of an axis of `in_size`
/// pixels mapped to `out_size` pixels, followed by `normalize_coeffs_8bpc`.
fn coefficients(in_size: usize, in0: f32, in1: f32, out_size: usize) -> Coefficients {
    let scale = (in1 - in0) as f64 / out_size as f64;
    let filterscale = scale.max(1.0);
    let support = filterscale;
    let stride = support.ceil() as usize * 2 + 1;
    let one = (1u32 << PRECISION_BITS) as f64;
    let mut first = Vec::with_capacity(out_size);
    let mut counts = Vec::with_capacity(out_size);
    let mut weights = vec![0i32; out_size * stride];
    let mut raw = vec![0f64; stride];
    for xx in 0..out_size {
        let center = in0 as f64 + (xx as f64 + 0.5) * scale;
        let ss = 1.0 / filterscale;
        let xmin = ((center - support + 0.5) as i64).max(0) as usize;
        let xmax = ((center + support + 0.5) as i64).min(in_size as i64) as usize;
        let count = xmax.saturating_sub(xmin).min(stride);
        let mut total = 0.0;
        for (x, k) in raw[..count].iter_mut().enumerate() {
            *k = bilinear(((x + xmin) as f64 - center + 0.5) * ss);
            total += *k;
        }
        for (k, fixed) in raw[..count].iter().zip(&mut weights[xx * stride..]) {
            let k = if total != 0.0 { k / total } else { *k };
            *fixed = if k < 0.0 {
                (-0.5 + k * one) as i32
            } else {
                (0.5 + k * one) as i32
            };
        }
        first.push(xmin);
        counts.push(count);
    }
    Coefficients {
        first,
        count: counts,
        stride,
        weights,
    }
}

#[inline]
fn clip8(sum: i32) -> u8 {
    (sum >> PRECISION_BITS).clamp(0, 255) as u8
}

/// Resizes to `out_width` x `out_height` with Pillow's bilinear filter
/// (`Image.resize(size, BILINEAR)`); the same size returns a copy, as in Pillow.
pub fn resize_bilinear(image: &RgbImage, out_width: usize, out_height: usize) -> RgbImage {
    let (w, h) = (image.width(), image.height());
    if (w, h) == (out_width, out_height) {
        return image.clone();
    }
    if w == 0 || h == 0 || out_width == 0 || out_height == 0 {
        return RgbImage::new(out_width, out_height);
    }
    let horizontal = coefficients(w, 0.0, w as f32, out_width);
    let vertical = coefficients(h, 0.0, h as f32, out_height);
    let need_horizontal = out_width != w;
    let need_vertical = out_height != h;

    // Rows the vertical pass reads, so the horizontal pass only computes those.
    let first_row = vertical.first[0];
    let last_row = vertical.first[out_height - 1] + vertical.count[out_height - 1];
    let temp = if need_horizontal {
        let mut temp = RgbImage::new(out_width, last_row - first_row);
        let src = image.as_bytes();
        let dst = temp.as_bytes_mut();
        for (ty, y) in (first_row..last_row).enumerate() {
            for xx in 0..out_width {
                let (x0, k) = horizontal.of(xx);
                let mut ss = [1i32 << (PRECISION_BITS - 1); 3];
                for (i, &weight) in k.iter().enumerate() {
                    let o = (y * w + x0 + i) * 3;
                    for c in 0..3 {
                        ss[c] += src[o + c] as i32 * weight;
                    }
                }
                let o = (ty * out_width + xx) * 3;
                for c in 0..3 {
                    dst[o + c] = clip8(ss[c]);
                }
            }
        }
        temp
    } else {
        crop_rows(image, first_row, last_row)
    };
    if !need_vertical {
        return temp;
    }
    let mut out = RgbImage::new(out_width, out_height);
    let src = temp.as_bytes();
    let dst = out.as_bytes_mut();
    for yy in 0..out_height {
        let (y0, k) = vertical.of(yy);
        let y0 = y0 - first_row;
        for xx in 0..out_width {
            let mut ss = [1i32 << (PRECISION_BITS - 1); 3];
            for (i, &weight) in k.iter().enumerate() {
                let o = ((y0 + i) * out_width + xx) * 3;
                for c in 0..3 {
                    ss[c] += src[o + c] as i32 * weight;
                }
            }
            let o = (yy * out_width + xx) * 3;
            for c in 0..3 {
                dst[o + c] = clip8(ss[c]);
            }
        }
    }
    out
}

fn crop_rows(image: &RgbImage, first: usize, last: usize) -> RgbImage {
    let row = image.width() * 3;
    RgbImage::from_slice(
        image.width(),
        last - first,
        &image.as_bytes()[first * row..last * row],
    )
    .expect("a row range of a valid image is a valid image")
}

/// Crops the `height` x `width` region at (`top`, `left`) and resizes it bilinearly to
/// `out_width` x `out_height` (torchvision's `resized_crop` on a PIL image).
pub fn resized_crop(
    image: &RgbImage,
    top: usize,
    left: usize,
    height: usize,
    width: usize,
    out_height: usize,
    out_width: usize,
) -> RgbImage {
    let region = crate::geometry::crop(image, top, left, height, width);
    resize_bilinear(&region, out_width, out_height)
}
