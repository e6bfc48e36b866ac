//! Geometric ops: Pillow's nearest-neighbour affine transform (rotate, shear, translate) with
//! fill 0, flips, reflect padding with crop, and Cutout.
//!
//! Pillow samples the source at pixel centres: output pixel (x, y) reads the source pixel that
//! contains `A * (x + 0.5, y + 0.5)`, where `A` is the inverse (output to input) matrix
//! `(a, b, c, d, e, f)`: `x_in = a*x + b*y + c`, `y_in = d*x + e*y + f`. Points outside the
//! source give black.

use crate::RgbImage;

/// Output-to-input affine matrix `(a, b, c, d, e, f)` as `Image.transform(AFFINE)` takes it.
pub type AffineMatrix = [f64; 6];

/// Applies `matrix` with nearest-neighbour sampling and fill 0.
///
/// Rounding matches because this picks the same one of three code paths as Pillow's
/// `ImagingTransformAffine` (`Geometry.c`). Pure scaling or translation runs in floating point.
/// Other matrices run in 16.16 fixed point when every corner maps within +-32768, and in
/// floating point otherwise.
pub fn affine_nearest(image: &RgbImage, matrix: &AffineMatrix) -> RgbImage {
    let (w, h) = (image.width(), image.height());
    let mut out = RgbImage::new(w, h);
    let a = matrix;
    if a[1] == 0.0 && a[3] == 0.0 {
        scale_affine(image, &mut out, a);
        return out;
    }
    let within = |x: f64, y: f64| {
        (x * a[0] + y * a[1] + a[2]).abs() < 32768.0 && (x * a[3] + y * a[4] + a[5]).abs() < 32768.0
    };
    let (wf, hf) = (w as f64, h as f64);
    if within(0.0, 0.0) && within(wf, hf) && within(0.0, hf) && within(wf, 0.0) {
        affine_fixed(image, &mut out, a);
    } else {
        affine_float(image, &mut out, a);
    }
    out
}

/// Pillow's `COORD`: floor for non-negative values, -1 (outside) for negative ones.
#[inline]
fn coord(v: f64) -> i64 {
    if v < 0.0 { -1 } else { v as i64 }
}

#[inline]
fn copy_pixel(src: &RgbImage, dst: &mut RgbImage, xin: usize, yin: usize, x: usize, y: usize) {
    let (si, di) = (src.offset(xin, yin), dst.offset(x, y));
    let px = [
        src.as_bytes()[si],
        src.as_bytes()[si + 1],
        src.as_bytes()[si + 2],
    ];
    dst.as_bytes_mut()[di..di + 3].copy_from_slice(&px);
}

fn scale_affine(src: &RgbImage, dst: &mut RgbImage, a: &AffineMatrix) {
    let (w, h) = (dst.width(), dst.height());
    let (sw, sh) = (src.width() as i64, src.height() as i64);
    // Pillow accumulates the source position by repeated addition; so does this loop.
    let mut xin_table = vec![-1i64; w];
    let mut xo = a[2] + a[0] * 0.5;
    for slot in xin_table.iter_mut() {
        let xin = coord(xo);
        if xin >= 0 && xin < sw {
            *slot = xin;
        }
        xo += a[0];
    }
    let mut yo = a[5] + a[4] * 0.5;
    for y in 0..h {
        let yin = coord(yo);
        if yin >= 0 && yin < sh {
            for (x, &xin) in xin_table.iter().enumerate() {
                if xin >= 0 {
                    copy_pixel(src, dst, xin as usize, yin as usize, x, y);
                }
            }
        }
        yo += a[4];
    }
}

fn affine_fixed(src: &RgbImage, dst: &mut RgbImage, a: &AffineMatrix) {
    let fix = |v: f64| (v * 65536.0 + 0.5).floor() as i32;
    let (a0, a1, a3, a4) = (fix(a[0]), fix(a[1]), fix(a[3]), fix(a[4]));
    let mut a2 = fix(a[2] + a[0] * 0.5 + a[1] * 0.5);
    let mut a5 = fix(a[5] + a[3] * 0.5 + a[4] * 0.5);
    let (sw, sh) = (src.width() as i32, src.height() as i32);
    for y in 0..dst.height() {
        let (mut xx, mut yy) = (a2, a5);
        for x in 0..dst.width() {
            // Arithmetic shift floors, so slightly negative positions fall outside.
            let (xin, yin) = (xx >> 16, yy >> 16);
            if xin >= 0 && xin < sw && yin >= 0 && yin < sh {
                copy_pixel(src, dst, xin as usize, yin as usize, x, y);
            }
            xx = xx.wrapping_add(a0);
            yy = yy.wrapping_add(a3);
        }
        a2 = a2.wrapping_add(a1);
        a5 = a5.wrapping_add(a4);
    }
}

fn affine_float(src: &RgbImage, dst: &mut RgbImage, a: &AffineMatrix) {
    let (sw, sh) = (src.width() as i64, src.height() as i64);
    let mut xo = a[2] + a[1] * 0.5 + a[0] * 0.5;
    let mut yo = a[5] + a[4] * 0.5 + a[3] * 0.5;
    for y in 0..dst.height() {
        let (mut xx, mut yy) = (xo, yo);
        for x in 0..dst.width() {
            let (xin, yin) = (coord(xx), coord(yy));
            if xin >= 0 && xin < sw && yin >= 0 && yin < sh {
                copy_pixel(src, dst, xin as usize, yin as usize, x, y);
            }
            xx += a[0];
            yy += a[3];
        }
        xo += a[1];
        yo += a[4];
    }
}

/// Python's `round(x, 15)`, exact whenever `x * 1e15` is computed without a tie error, which
/// holds for the sines and cosines used here.
fn round15(x: f64) -> f64 {
    (x * 1e15).round() / 1e15
}

/// Rotates counter-clockwise by `degrees` about the image centre, keeping the size
/// (`Image.rotate(degrees)` with nearest neighbour and fill 0). Multiples of 180 degrees, and of
/// 90 degrees on square images, are exact transposes as in Pillow.
pub fn rotate(image: &RgbImage, degrees: f64) -> RgbImage {
    let angle = degrees.rem_euclid(360.0);
    let (w, h) = (image.width(), image.height());
    if angle == 0.0 {
        return image.clone();
    }
    if angle == 180.0 || ((angle == 90.0 || angle == 270.0) && w == h) {
        return rotate_quarter_turns(image, (angle / 90.0) as u32);
    }
    let theta = -angle.to_radians();
    let (cos, sin) = (round15(theta.cos()), round15(theta.sin()));
    let mut m = [cos, sin, 0.0, round15(-theta.sin()), cos, 0.0];
    let (cx, cy) = (w as f64 / 2.0, h as f64 / 2.0);
    m[2] = m[0] * -cx + m[1] * -cy + m[2] + cx;
    m[5] = m[3] * -cx + m[4] * -cy + m[5] + cy;
    affine_nearest(image, &m)
}

/// Rotates by `turns` quarter turns counter-clockwise; odd turns need a square image.
fn rotate_quarter_turns(image: &RgbImage, turns: u32) -> RgbImage {
    let (w, h) = (image.width(), image.height());
    let mut out = RgbImage::new(w, h);
    for y in 0..h {
        for x in 0..w {
            let (sx, sy) = match turns % 4 {
                1 => (w - 1 - y, x),
                2 => (w - 1 - x, h - 1 - y),
                3 => (y, h - 1 - x),
                _ => (x, y),
            };
            copy_pixel(image, &mut out, sx, sy, x, y);
        }
    }
    out
}

/// Shears along x: output (x, y) reads input (x + `factor` * y, y), with fill 0.
pub fn shear_x(image: &RgbImage, factor: f64) -> RgbImage {
    affine_nearest(image, &[1.0, factor, 0.0, 0.0, 1.0, 0.0])
}

/// Shears along y: output (x, y) reads input (x, y + `factor` * x), with fill 0.
pub fn shear_y(image: &RgbImage, factor: f64) -> RgbImage {
    affine_nearest(image, &[1.0, 0.0, 0.0, factor, 1.0, 0.0])
}

/// Output (x, y) reads input (x + `pixels`, y): positive values move the content left.
pub fn translate_x(image: &RgbImage, pixels: i64) -> RgbImage {
    affine_nearest(image, &[1.0, 0.0, pixels as f64, 0.0, 1.0, 0.0])
}

/// Output (x, y) reads input (x, y + `pixels`): positive values move the content up.
pub fn translate_y(image: &RgbImage, pixels: i64) -> RgbImage {
    affine_nearest(image, &[1.0, 0.0, 0.0, 0.0, 1.0, pixels as f64])
}

/// Mirrors the image left to right in place.
pub fn flip_horizontal(image: &mut RgbImage) {
    let row = image.width() * 3;
    for line in image.as_bytes_mut().chunks_exact_mut(row.max(1)) {
        let w = line.len() / 3;
        for x in 0..w / 2 {
            let (l, r) = (x * 3, (w - 1 - x) * 3);
            for c in 0..3 {
                line.swap(l + c, r + c);
            }
        }
    }
}

/// numpy's `reflect` padding index (mirror without repeating the edge) for `i` in
/// `-(n-1)..2n-1`.
#[inline]
fn reflect(i: isize, n: usize) -> usize {
    let n = n as isize;
    let i = if i < 0 { -i } else { i };
    (if i >= n { 2 * n - 2 - i } else { i }) as usize
}

/// The `out_height` x `out_width` window at (`top`, `left`) of the image reflect-padded by `pad`
/// on every side, optionally mirrored left to right first. This is torchvision's
/// `RandomHorizontalFlip` then `RandomCrop(size, padding=pad, padding_mode="reflect")` with
/// the crop offset chosen by the caller. `top + out_height` and `left + out_width` must not
/// exceed the padded size, and `pad` must be smaller than both image sides.
pub fn flip_pad_crop(
    image: &RgbImage,
    flip: bool,
    pad: usize,
    top: usize,
    left: usize,
    out_height: usize,
    out_width: usize,
) -> RgbImage {
    let (w, h) = (image.width(), image.height());
    debug_assert!(
        pad < w && pad < h,
        "reflect padding must be smaller than the image"
    );
    let mut out = RgbImage::new(out_width, out_height);
    let columns: Vec<usize> = (0..out_width)
        .map(|x| {
            let sx = reflect((left + x) as isize - pad as isize, w);
            if flip { w - 1 - sx } else { sx }
        })
        .collect();
    for y in 0..out_height {
        let sy = reflect((top + y) as isize - pad as isize, h);
        for (x, &sx) in columns.iter().enumerate() {
            copy_pixel(image, &mut out, sx, sy, x, y);
        }
    }
    out
}

/// The `height` x `width` region at (`top`, `left`), which must lie inside the image.
pub fn crop(image: &RgbImage, top: usize, left: usize, height: usize, width: usize) -> RgbImage {
    let mut out = RgbImage::new(width, height);
    let row = width * 3;
    for y in 0..height {
        let s = image.offset(left, top + y);
        out.as_bytes_mut()[y * row..(y + 1) * row].copy_from_slice(&image.as_bytes()[s..s + row]);
    }
    out
}

/// Grey level of Cutout patches.
pub const CUTOUT_GRAY: u8 = 127;

/// Paints a grey (127) square as FixMatch's `CutoutAbs(img, size)` does, for a centre
/// (`centre_x`, `centre_y`) that the caller draws uniformly from [0, width) x [0, height).
///
/// The corners are `x0 = int(max(0, cx - size/2))` and `x1 = int(min(width, x0 + size))`, and
/// likewise for y. The rectangle includes both corners, as `ImageDraw.rectangle` does, and is
/// clipped to the image.
pub fn cutout(image: &mut RgbImage, centre_x: f64, centre_y: f64, size: usize) {
    let (w, h) = (image.width(), image.height());
    if w == 0 || h == 0 {
        return;
    }
    let half = size as f64 / 2.0;
    let x0 = (centre_x - half).max(0.0) as usize;
    let y0 = (centre_y - half).max(0.0) as usize;
    let x1 = w.min(x0 + size);
    let y1 = h.min(y0 + size);
    for y in y0..=y1.min(h - 1) {
        for x in x0..=x1.min(w - 1) {
            let o = image.offset(x, y);
            image.as_bytes_mut()[o..o + 3].fill(CUTOUT_GRAY);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn numbered(width: usize, height: usize) -> RgbImage {
        let data = (0..width * height)
            .flat_map(|i| [i as u8, (i * 3) as u8, 255 - i as u8])
            .collect();
        RgbImage::from_vec(width, height, data).unwrap()
    }

    #[test]
    fn cutout_rectangle_includes_far_corner() {
        let mut image = RgbImage::new(8, 8);
        // Centre (4, 4), size 2: corners (3, 3) and (5, 5), both painted.
        cutout(&mut image, 4.0, 4.0, 2);
        let painted: Vec<(usize, usize)> = (0..8)
            .flat_map(|y| (0..8).map(move |x| (x, y)))
            .filter(|&(x, y)| image.pixel(x, y) == [CUTOUT_GRAY; 3])
            .collect();
        assert_eq!(painted.len(), 9);
        assert!(painted.contains(&(3, 3)));
        assert!(painted.contains(&(5, 5)));
    }

    #[test]
    fn cutout_clips_at_image_border() {
        let mut image = RgbImage::new(8, 8);
        cutout(&mut image, 7.9, 7.9, 16);
        assert_eq!(
            image
                .as_bytes()
                .iter()
                .filter(|&&v| v == CUTOUT_GRAY)
                .count(),
            8 * 8 * 3
        );
    }

    #[test]
    fn rotate_full_turn_is_copy() {
        let image = numbered(5, 4);
        assert_eq!(rotate(&image, 360.0), image);
        assert_eq!(rotate(&image, 0.0), image);
    }

    #[test]
    fn rotate_quarter_turns() {
        let image = numbered(4, 4);
        let out = rotate(&image, 90.0);
        assert_eq!(out.pixel(0, 0), image.pixel(3, 0));
        assert_eq!(rotate(&image, -90.0).pixel(0, 0), image.pixel(0, 3));
    }

    #[test]
    fn translate_fills_uncovered_pixels_with_black() {
        let image = numbered(6, 3);
        let out = translate_x(&image, 2);
        assert_eq!(out.pixel(0, 1), image.pixel(2, 1));
        assert_eq!(out.pixel(4, 1), [0, 0, 0]);
        assert_eq!(out.pixel(5, 2), [0, 0, 0]);
    }

    #[test]
    fn reflect_padding_skips_edge_pixel() {
        let image = numbered(5, 5);
        let out = flip_pad_crop(&image, false, 2, 0, 0, 5, 5);
        // Padded column 0 is source column 2, column 1 is source column 1.
        assert_eq!(out.pixel(0, 2), image.pixel(2, 0));
        assert_eq!(out.pixel(1, 2), image.pixel(1, 0));
        assert_eq!(out.pixel(2, 2), image.pixel(0, 0));
    }

    #[test]
    fn flip_is_an_involution() {
        let image = numbered(7, 3);
        let mut out = image.clone();
        flip_horizontal(&mut out);
        assert_eq!(out.pixel(0, 0), image.pixel(6, 0));
        flip_horizontal(&mut out);
        assert_eq!(out, image);
    }
}
