//! The weak, strong and contrast views of one image, each drawn from the RNG it is given.

use rand::Rng;

use crate::config::{ColorJitterConfig, ContrastConfig, StrongConfig, WeakConfig};
use crate::{RgbImage, color, geometry, randaugment, resample};

/// Weak view: flip with `flip_probability`, then a crop of the image's size at a uniform
/// offset in the image reflect-padded by `pad`. Draw order: flip coin, row offset, column
/// offset (torchvision draws the crop's row before its column).
pub fn weak_view(image: &RgbImage, config: &WeakConfig, rng: &mut impl Rng) -> RgbImage {
    let flip = rng.random::<f64>() < config.flip_probability;
    let top = rng.random_range(0..=2 * config.pad);
    let left = rng.random_range(0..=2 * config.pad);
    geometry::flip_pad_crop(
        image,
        flip,
        config.pad,
        top,
        left,
        image.height(),
        image.width(),
    )
}

/// Strong view: a weak transform, then RandAugmentMC and Cutout.
pub fn strong_view(
    image: &RgbImage,
    weak: &WeakConfig,
    strong: &StrongConfig,
    rng: &mut impl Rng,
) -> RgbImage {
    let mut out = weak_view(image, weak, rng);
    randaugment::rand_augment(&mut out, strong, rng);
    out
}

/// Crop box `(top, left, height, width)` of torchvision's `RandomResizedCrop.get_params`: up to
/// ten tries of an area fraction uniform in `scale` and a log-uniform aspect ratio in `ratio`,
/// with sides rounded half to even; then the largest centred crop whose ratio lies in range.
pub fn resized_crop_box(
    width: usize,
    height: usize,
    scale: (f64, f64),
    ratio: (f64, f64),
    rng: &mut impl Rng,
) -> (usize, usize, usize, usize) {
    let area = (width * height) as f64;
    let (log_lo, log_hi) = (ratio.0.ln(), ratio.1.ln());
    for _ in 0..10 {
        let target_area = area * uniform(rng, scale.0, scale.1);
        let aspect = uniform(rng, log_lo, log_hi).exp();
        let w = (target_area * aspect).sqrt().round_ties_even() as usize;
        let h = (target_area / aspect).sqrt().round_ties_even() as usize;
        if 0 < w && w <= width && 0 < h && h <= height {
            let top = rng.random_range(0..=height - h);
            let left = rng.random_range(0..=width - w);
            return (top, left, h, w);
        }
    }
    let in_ratio = width as f64 / height as f64;
    let (w, h) = if in_ratio < ratio.0 {
        (
            width,
            ((width as f64 / ratio.0).round_ties_even() as usize).min(height),
        )
    } else if in_ratio > ratio.1 {
        (
            ((height as f64 * ratio.1).round_ties_even() as usize).min(width),
            height,
        )
    } else {
        (width, height)
    };
    ((height - h) / 2, (width - w) / 2, h, w)
}

/// Uniform in [lo, hi), or `lo` when the range is empty.
fn uniform(rng: &mut impl Rng, lo: f64, hi: f64) -> f64 {
    lo + (hi - lo) * rng.random::<f64>()
}

/// Drawn ColorJitter parameters: the order of the four adjustments (0 brightness, 1 contrast,
/// 2 saturation, 3 hue) and their factors.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct JitterParams {
    /// Permutation of 0..4 giving the order of application.
    pub order: [usize; 4],
    /// Brightness factor.
    pub brightness: f32,
    /// Contrast factor.
    pub contrast: f32,
    /// Saturation factor.
    pub saturation: f32,
    /// Hue shift in turns, in [-0.5, 0.5].
    pub hue: f32,
}

impl JitterParams {
    /// Draws the order (uniform permutation), then brightness, contrast, saturation and hue,
    /// each uniform in its range, as torchvision's `ColorJitter.get_params`.
    pub fn draw(config: &ColorJitterConfig, rng: &mut impl Rng) -> Self {
        let mut order = [0, 1, 2, 3];
        for i in (1..4).rev() {
            order.swap(i, rng.random_range(0..=i));
        }
        let factor =
            |rng: &mut _, spread: f64| uniform(rng, (1.0 - spread).max(0.0), 1.0 + spread) as f32;
        let brightness = factor(rng, config.brightness);
        let contrast = factor(rng, config.contrast);
        let saturation = factor(rng, config.saturation);
        let hue = uniform(rng, -config.hue, config.hue) as f32;
        Self {
            order,
            brightness,
            contrast,
            saturation,
            hue,
        }
    }

    /// Applies the four adjustments in `order`, each as torchvision does on a PIL image.
    pub fn apply(&self, image: &mut RgbImage) {
        for step in self.order {
            match step {
                0 => color::brightness(image, self.brightness),
                1 => color::contrast(image, self.contrast),
                2 => color::color(image, self.saturation),
                _ => color::adjust_hue(image, self.hue.clamp(-0.5, 0.5)),
            }
        }
    }
}

/// Contrast view: random resized crop back to the image's size, flip, ColorJitter with its
/// probability, grayscale with its probability. Draw order: crop box, flip coin, jitter coin,
/// jitter parameters (only when applied), grayscale coin.
pub fn contrast_view(image: &RgbImage, config: &ContrastConfig, rng: &mut impl Rng) -> RgbImage {
    let (w, h) = (image.width(), image.height());
    let (top, left, ch, cw) = resized_crop_box(w, h, config.scale, config.ratio, rng);
    let mut out = resample::resized_crop(image, top, left, ch, cw, h, w);
    if rng.random::<f64>() < config.flip_probability {
        geometry::flip_horizontal(&mut out);
    }
    if rng.random::<f64>() < config.jitter.probability {
        JitterParams::draw(&config.jitter, rng).apply(&mut out);
    }
    if rng.random::<f64>() < config.grayscale_probability {
        color::grayscale(&mut out);
    }
    out
}
