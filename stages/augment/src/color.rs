//! Per-pixel colour ops with the rounding of Pillow's C core (`libImaging`, Pillow 13).
//!
//! Lookup-table ops follow `PIL.ImageOps`. The enhancers follow `PIL.ImageEnhance`, which blends
//! the image with a "degenerate" image. That image is black for brightness, the grayscale image
//! for colour, the mean grey level for contrast and the 3x3 smoothed image for sharpness.

use crate::RgbImage;

/// Luma of ITU-R 601-2, `L = R * 299/1000 + G * 587/1000 + B * 114/1000`, in the 16.16
/// fixed point that Pillow uses for `convert("L")` (weights 19595, 38470, 7471, rounded).
#[inline]
pub fn luma(r: u8, g: u8, b: u8) -> u8 {
    ((r as u32 * 19595 + g as u32 * 38470 + b as u32 * 7471 + 0x8000) >> 16) as u8
}

/// Per-channel 256-entry lookup tables.
type Luts = [[u8; 256]; 3];

fn apply_luts(image: &mut RgbImage, luts: &Luts) {
    for px in image.as_bytes_mut().chunks_exact_mut(3) {
        px[0] = luts[0][px[0] as usize];
        px[1] = luts[1][px[1] as usize];
        px[2] = luts[2][px[2] as usize];
    }
}

fn apply_lut_all(image: &mut RgbImage, lut: &[u8; 256]) {
    for v in image.as_bytes_mut() {
        *v = lut[*v as usize];
    }
}

fn histograms(image: &RgbImage) -> [[u32; 256]; 3] {
    let mut hist = [[0u32; 256]; 3];
    for px in image.as_bytes().chunks_exact(3) {
        hist[0][px[0] as usize] += 1;
        hist[1][px[1] as usize] += 1;
        hist[2][px[2] as usize] += 1;
    }
    hist
}

fn identity_lut() -> [u8; 256] {
    std::array::from_fn(|i| i as u8)
}

/// Stretches each channel so its darkest value maps to 0 and its brightest to 255
/// (`ImageOps.autocontrast` with no cutoff).
///
/// The table is `lut[i] = clamp(int(i * scale - lo * scale))` with `scale = 255 / (hi - lo)`.
/// A channel with a single value is left as it is.
pub fn autocontrast(image: &mut RgbImage) {
    let hist = histograms(image);
    let luts: Luts = std::array::from_fn(|c| {
        let h = &hist[c];
        let lo = h.iter().position(|&n| n > 0).unwrap_or(0);
        let hi = h.iter().rposition(|&n| n > 0).unwrap_or(0);
        if hi <= lo {
            return identity_lut();
        }
        let scale = 255.0 / (hi - lo) as f64;
        let offset = -(lo as f64) * scale;
        std::array::from_fn(|i| (i as f64 * scale + offset).clamp(0.0, 255.0) as u8)
    });
    apply_luts(image, &luts);
}

/// Equalizes each channel's histogram as `ImageOps.equalize` does.
///
/// With `step` the number of pixels outside the last occupied bin divided by 255 (floor), the
/// table is `lut[i] = (step / 2 + sum(h[..i])) / step`. A channel with one occupied bin, or with
/// `step == 0`, is left as it is.
pub fn equalize(image: &mut RgbImage) {
    let hist = histograms(image);
    let luts: Luts = std::array::from_fn(|c| {
        let h = &hist[c];
        let occupied = h.iter().filter(|&&n| n > 0).count();
        let last = h.iter().rev().copied().find(|&n| n > 0).unwrap_or(0) as u64;
        let total: u64 = h.iter().map(|&n| n as u64).sum();
        let step = (total - last) / 255;
        if occupied <= 1 || step == 0 {
            return identity_lut();
        }
        let mut n = step / 2;
        std::array::from_fn(|i| {
            let v = (n / step).min(255) as u8;
            n += h[i] as u64;
            v
        })
    });
    apply_luts(image, &luts);
}

/// Keeps the top `bits` bits of each value (`ImageOps.posterize`); `bits` is clamped to 1..=8.
pub fn posterize(image: &mut RgbImage, bits: u32) {
    let bits = bits.clamp(1, 8);
    let mask = !((1u32 << (8 - bits)) - 1) as u8;
    let lut: [u8; 256] = std::array::from_fn(|i| i as u8 & mask);
    apply_lut_all(image, &lut);
}

/// Inverts every value at or above `threshold` (`ImageOps.solarize`); a threshold of 256 or
/// more leaves the image unchanged.
pub fn solarize(image: &mut RgbImage, threshold: u32) {
    let lut: [u8; 256] = std::array::from_fn(|i| {
        if (i as u32) < threshold {
            i as u8
        } else {
            255 - i as u8
        }
    });
    apply_lut_all(image, &lut);
}

/// Replaces each value `v` by `255 - v` (`ImageOps.invert`).
pub fn invert(image: &mut RgbImage) {
    for v in image.as_bytes_mut() {
        *v = 255 - *v;
    }
}

/// Blends `degenerate` toward `image` in place as Pillow's `Image.blend(degenerate, image,
/// factor)`: `out = trunc(d + factor * (i - d))` in `f32`, clipped to 0..=255 when `factor`
/// lies outside [0, 1].
#[inline]
fn blend_value(degenerate: u8, value: u8, factor: f32) -> u8 {
    let d = degenerate as i32;
    // `as u8` truncates toward zero and saturates, which is Pillow's clip-then-cast.
    (d as f32 + factor * (value as i32 - d) as f32) as u8
}

/// Scales every value by `factor` (`ImageEnhance.Brightness`: blend with black).
pub fn brightness(image: &mut RgbImage, factor: f32) {
    let lut: [u8; 256] = std::array::from_fn(|v| blend_value(0, v as u8, factor));
    apply_lut_all(image, &lut);
}

/// Blends with the image's grayscale version (`ImageEnhance.Color`, torchvision's saturation).
pub fn color(image: &mut RgbImage, factor: f32) {
    for px in image.as_bytes_mut().chunks_exact_mut(3) {
        let l = luma(px[0], px[1], px[2]);
        px[0] = blend_value(l, px[0], factor);
        px[1] = blend_value(l, px[1], factor);
        px[2] = blend_value(l, px[2], factor);
    }
}

/// Mean luma rounded half up, the grey level of `ImageEnhance.Contrast`'s degenerate image.
pub fn mean_luma(image: &RgbImage) -> u8 {
    let pixels = image.width() * image.height();
    if pixels == 0 {
        return 0;
    }
    let sum: u64 = image
        .as_bytes()
        .chunks_exact(3)
        .map(|p| luma(p[0], p[1], p[2]) as u64)
        .sum();
    (sum as f64 / pixels as f64 + 0.5) as u8
}

/// Blends with a uniform image at the mean luma (`ImageEnhance.Contrast`).
pub fn contrast(image: &mut RgbImage, factor: f32) {
    let mean = mean_luma(image);
    let lut: [u8; 256] = std::array::from_fn(|v| blend_value(mean, v as u8, factor));
    apply_lut_all(image, &lut);
}

/// Filters the image with Pillow's `ImageFilter.SMOOTH` kernel (1 1 1 / 1 5 1 / 1 1 1, scale 13).
/// As in Pillow, the border rows and columns are copied unfiltered, and images narrower or
/// shorter than 3 pixels come back unchanged.
pub fn smooth(image: &RgbImage) -> RgbImage {
    let (w, h) = (image.width(), image.height());
    let mut out = image.clone();
    if w < 3 || h < 3 {
        return out;
    }
    // Pillow divides the kernel in double precision and stores it as f32.
    let edge = (1.0f64 / 13.0) as f32;
    let centre = (5.0f64 / 13.0) as f32;
    let src = image.as_bytes();
    let row = w * 3;
    let dst = out.as_bytes_mut();
    for y in 1..h - 1 {
        let (above, here, below) = (
            &src[(y - 1) * row..],
            &src[y * row..],
            &src[(y + 1) * row..],
        );
        for i in 3..row - 3 {
            // Same f32 summation order as Pillow's 3x3 filter: row y+1, row y, row y-1, each
            // left to right, starting from the rounding offset 0.5.
            let below_sum =
                below[i - 3] as f32 * edge + below[i] as f32 * edge + below[i + 3] as f32 * edge;
            let here_sum =
                here[i - 3] as f32 * edge + here[i] as f32 * centre + here[i + 3] as f32 * edge;
            let above_sum =
                above[i - 3] as f32 * edge + above[i] as f32 * edge + above[i + 3] as f32 * edge;
            let mut ss = 0.5f32;
            ss += below_sum;
            ss += here_sum;
            ss += above_sum;
            dst[y * row + i] = ss as u8;
        }
    }
    out
}

/// Blends with the smoothed image (`ImageEnhance.Sharpness`); border pixels never change.
pub fn sharpness(image: &mut RgbImage, factor: f32) {
    let degenerate = smooth(image);
    for (v, &d) in image.as_bytes_mut().iter_mut().zip(degenerate.as_bytes()) {
        *v = blend_value(d, *v, factor);
    }
}

/// Replaces every pixel by its luma in all three channels (torchvision's `Grayscale` with three
/// output channels on a PIL image: `convert("L")`, then stacked).
pub fn grayscale(image: &mut RgbImage) {
    for px in image.as_bytes_mut().chunks_exact_mut(3) {
        let l = luma(px[0], px[1], px[2]);
        px.fill(l);
    }
}

/// Converts one pixel to Pillow's 8-bit HSV, mixing `f32` and `f64` as its C code does.
#[inline]
pub fn rgb_to_hsv(rgb: [u8; 3]) -> [u8; 3] {
    let [r, g, b] = rgb;
    let maxc = r.max(g).max(b);
    let minc = r.min(g).min(b);
    if maxc == minc {
        return [0, 0, maxc];
    }
    let cr = (maxc - minc) as f32;
    let s = cr / maxc as f32;
    let rc = (maxc - r) as f32 / cr;
    let gc = (maxc - g) as f32 / cr;
    let bc = (maxc - b) as f32 / cr;
    let h: f32 = if r == maxc {
        bc - gc
    } else if g == maxc {
        (2.0 + rc as f64 - bc as f64) as f32
    } else {
        (4.0 + gc as f64 - rc as f64) as f32
    };
    // fmod(x, 1.0) for x in (0, 2): subtracting 1 is exact there (Sterbenz), and cheaper.
    let x = h as f64 / 6.0 + 1.0;
    let h = (if x >= 1.0 { x - 1.0 } else { x }) as f32;
    let uh = ((h as f64 * 255.0) as i32).clamp(0, 255) as u8;
    let us = ((s as f64 * 255.0) as i32).clamp(0, 255) as u8;
    [uh, us, maxc]
}

/// C's `round()` (half away from zero) for `0 <= x < 2^52`, without a libm call: the
/// fraction `x - trunc(x)` is exact in that range.
#[inline]
fn round_non_negative(x: f64) -> i32 {
    let whole = x as i32;
    if x - whole as f64 >= 0.5 {
        whole + 1
    } else {
        whole
    }
}

/// Converts one pixel from Pillow's 8-bit HSV back to RGB, as its C code does.
#[inline]
pub fn hsv_to_rgb(hsv: [u8; 3]) -> [u8; 3] {
    let [h, s, v] = hsv;
    if s == 0 {
        return [v, v, v];
    }
    let h6 = h as f32 as f64 * 6.0 / 255.0;
    // h6 >= 0, so truncation is C's floor().
    let i = h6 as i32;
    let f = (h6 - i as f64) as f32;
    let fs = (s as f64 / 255.0) as f32;
    let vf = v as f64;
    let clip = |x: f64| round_non_negative(x).clamp(0, 255) as u8;
    let p = clip(vf * (1.0 - fs as f64));
    let q = clip(vf * (1.0 - (fs * f) as f64));
    let t = clip(vf * (1.0 - fs as f64 * (1.0 - f as f64)));
    match i % 6 {
        0 => [v, t, p],
        1 => [q, v, p],
        2 => [p, v, t],
        3 => [p, q, v],
        4 => [t, p, v],
        _ => [v, p, q],
    }
}

/// Lookup tables that remove the divisions from [`rgb_to_hsv`] and [`hsv_to_rgb`] without
/// changing a bit of their results: every table entry is the very `f32` or `u8` value that the
/// reference functions compute for that operand pair.
struct HsvTables {
    /// `saturation[cr * 256 + maxc]`, the saturation byte of a pixel with that range and max.
    saturation: Vec<u8>,
    /// `hue[case][d * 256 + cr]`: the hue byte of a pixel whose channel range is `cr` and whose
    /// middle channel lies `d` below the max, for each of the six orderings of [`hue_case`].
    hue: Vec<[u8; 6]>,
    /// Sextant and fraction of each hue byte: `floor(h * 6 / 255)` and its remainder as `f32`.
    sextant: [(i32, f32); 256],
    /// `s / 255` as `f32` for each saturation byte.
    saturation_fraction: [f32; 256],
}

fn hsv_tables() -> &'static HsvTables {
    static TABLES: std::sync::OnceLock<HsvTables> = std::sync::OnceLock::new();
    TABLES.get_or_init(|| {
        let mut saturation = vec![0u8; 256 * 256];
        for n in 0..256usize {
            for d in 1..256usize {
                saturation[n * 256 + d] =
                    ((n as f32 / d as f32) as f64 * 255.0).clamp(0.0, 255.0) as u8;
            }
        }
        let mut hue = vec![[0u8; 6]; 256 * 256];
        for cr in 1..256usize {
            for d in 0..=cr {
                // Representative pixels with max 255: the reference depends on the channels
                // only through their distances to the max, and takes the same branch here as
                // `hue_case` does for the pixels it maps to this entry.
                let (hi, lo, mid) = (255u8, (255 - cr) as u8, (255 - d) as u8);
                let pixels = [
                    [hi, mid, lo],
                    [hi, lo, mid],
                    [lo, hi, mid],
                    [mid, hi, lo],
                    [lo, mid, hi],
                    [mid, lo, hi],
                ];
                for (case, pixel) in pixels.into_iter().enumerate() {
                    hue[d * 256 + cr][case] = rgb_to_hsv(pixel)[0];
                }
            }
        }
        let sextant = std::array::from_fn(|h| {
            let h6 = h as f32 as f64 * 6.0 / 255.0;
            let i = h6 as i32;
            (i, (h6 - i as f64) as f32)
        });
        let saturation_fraction = std::array::from_fn(|s| (s as f64 / 255.0) as f32);
        HsvTables {
            saturation,
            hue,
            sextant,
            saturation_fraction,
        }
    })
}

/// Classifies a pixel by which channel is the max (Pillow tests red, then green, then blue) and
/// which is the min, and returns that class with the middle channel's value.
#[inline]
fn hue_case(r: u8, g: u8, b: u8, maxc: u8, minc: u8) -> (usize, u8) {
    if r == maxc {
        if b == minc { (0, g) } else { (1, b) }
    } else if g == maxc {
        if r == minc { (2, b) } else { (3, r) }
    } else if r == minc {
        (4, g)
    } else {
        (5, r)
    }
}

/// [`rgb_to_hsv`] with table lookups in place of all floating-point work.
#[inline]
fn rgb_to_hsv_fast(tables: &HsvTables, [r, g, b]: [u8; 3]) -> [u8; 3] {
    let maxc = r.max(g).max(b);
    let minc = r.min(g).min(b);
    if maxc == minc {
        return [0, 0, maxc];
    }
    let cr = (maxc - minc) as usize;
    let (case, mid) = hue_case(r, g, b, maxc, minc);
    let uh = tables.hue[(maxc - mid) as usize * 256 + cr][case];
    [uh, tables.saturation[cr * 256 + maxc as usize], maxc]
}

/// [`hsv_to_rgb`] with table lookups in place of the divisions.
#[inline]
fn hsv_to_rgb_fast(tables: &HsvTables, [h, s, v]: [u8; 3]) -> [u8; 3] {
    if s == 0 {
        return [v, v, v];
    }
    let (i, f) = tables.sextant[h as usize];
    let fs = tables.saturation_fraction[s as usize];
    let vf = v as f64;
    let clip = |x: f64| round_non_negative(x).clamp(0, 255) as u8;
    let p = clip(vf * (1.0 - fs as f64));
    let q = clip(vf * (1.0 - (fs * f) as f64));
    let t = clip(vf * (1.0 - fs as f64 * (1.0 - f as f64)));
    match i % 6 {
        0 => [v, t, p],
        1 => [q, v, p],
        2 => [p, v, t],
        3 => [p, q, v],
        4 => [t, p, v],
        _ => [v, p, q],
    }
}

/// Rotates the hue by `hue_factor` of a turn (torchvision's `adjust_hue` on a PIL image): to
/// HSV, hue plus `int(hue_factor * 255)` modulo 256, back to RGB. `hue_factor` lies in
/// [-0.5, 0.5]; the caller checks the range.
pub fn adjust_hue(image: &mut RgbImage, hue_factor: f32) {
    let shift = (hue_factor as f64 * 255.0) as i32 as u8;
    let tables = hsv_tables();
    for px in image.as_bytes_mut().chunks_exact_mut(3) {
        let [h, s, v] = rgb_to_hsv_fast(tables, [px[0], px[1], px[2]]);
        let rgb = hsv_to_rgb_fast(tables, [h.wrapping_add(shift), s, v]);
        px.copy_from_slice(&rgb);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every one of the 2^24 inputs, in both directions.
    #[test]
    fn hsv_tables_match_reference_conversions() {
        let tables = hsv_tables();
        for i in 0..1u32 << 24 {
            let p = [(i >> 16) as u8, (i >> 8) as u8, i as u8];
            assert_eq!(rgb_to_hsv_fast(tables, p), rgb_to_hsv(p), "RGB {p:?}");
            assert_eq!(hsv_to_rgb_fast(tables, p), hsv_to_rgb(p), "HSV {p:?}");
        }
    }

    #[test]
    fn luma_uses_rounded_601_weights() {
        assert_eq!(luma(255, 255, 255), 255);
        assert_eq!(luma(255, 0, 0), 76); // 76.245
        assert_eq!(luma(0, 255, 0), 150); // 149.685
        assert_eq!(luma(0, 0, 255), 29); // 29.07
    }

    #[test]
    fn blend_extrapolation_clips() {
        let mut image = RgbImage::from_vec(1, 1, vec![200, 10, 128]).unwrap();
        brightness(&mut image, 1.9);
        assert_eq!(image.as_bytes(), &[255, 19, 243]);
    }
}
