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

/// Draws a crop box `(top, left, height, width)` as torchvision's
/// `RandomResizedCrop.get_params` does.
///
/// Each of up to ten tries draws an area fraction uniform in `scale` and an aspect ratio
/// log-uniform in `ratio`, and rounds the sides half to even. When no try fits, the box is the
/// largest centred crop whose ratio lies in range.
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

#[cfg(test)]
mod tests {
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    use super::*;

    fn noise(width: usize, height: usize, seed: u64) -> RgbImage {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let data = (0..width * height * 3)
            .map(|_| rng.random::<u8>())
            .collect();
        RgbImage::from_vec(width, height, data).unwrap()
    }

    #[test]
    fn weak_view_without_pad_or_flip_is_identity() {
        let image = noise(32, 32, 1);
        let config = WeakConfig {
            flip_probability: 0.0,
            pad: 0,
        };
        assert_eq!(
            weak_view(&image, &config, &mut ChaCha8Rng::seed_from_u64(2)),
            image
        );
    }

    #[test]
    fn weak_view_always_flipping_mirrors() {
        let image = noise(32, 32, 1);
        let config = WeakConfig {
            flip_probability: 1.0,
            pad: 0,
        };
        let mut expected = image.clone();
        geometry::flip_horizontal(&mut expected);
        assert_eq!(
            weak_view(&image, &config, &mut ChaCha8Rng::seed_from_u64(2)),
            expected
        );
    }

    #[test]
    fn weak_view_is_a_shifted_window() {
        let image = noise(32, 32, 4);
        let config = WeakConfig {
            flip_probability: 0.0,
            pad: 4,
        };
        let out = weak_view(&image, &config, &mut ChaCha8Rng::seed_from_u64(5));
        // Some shift in -4..=4 in each direction reproduces the interior exactly.
        let found = (-4i64..=4).any(|dy| {
            (-4i64..=4).any(|dx| {
                (8..24).all(|y| {
                    (8..24).all(|x| {
                        out.pixel(x, y)
                            == image.pixel((x as i64 + dx) as usize, (y as i64 + dy) as usize)
                    })
                })
            })
        });
        assert!(found, "weak view is not a shifted copy of the image");
    }

    #[test]
    fn resized_crop_boxes_stay_in_range() {
        let mut rng = ChaCha8Rng::seed_from_u64(9);
        let (mut min_area, mut max_area) = (1.0f64, 0.0f64);
        for _ in 0..2000 {
            let (top, left, h, w) =
                resized_crop_box(32, 32, (0.08, 1.0), (0.75, 4.0 / 3.0), &mut rng);
            assert!(
                h > 0 && w > 0 && top + h <= 32 && left + w <= 32,
                "box {top} {left} {h} {w}"
            );
            let area = (h * w) as f64 / 1024.0;
            min_area = min_area.min(area);
            max_area = max_area.max(area);
            // Rounding each side to whole pixels can move the ratio a little past the range.
            let ratio = w as f64 / h as f64;
            assert!((0.6..=1.7).contains(&ratio), "ratio {ratio}");
        }
        assert!(min_area < 0.12, "smallest area fraction {min_area}");
        assert!(max_area > 0.9, "largest area fraction {max_area}");
    }

    #[test]
    fn resized_crop_falls_back_to_centre_crop() {
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        // Every try requests more than the whole image, so the fallback runs.
        assert_eq!(
            resized_crop_box(32, 32, (2.0, 3.0), (0.75, 4.0 / 3.0), &mut rng),
            (0, 0, 32, 32)
        );
        // A wide image and square crops: the fallback keeps the height, centres the width.
        assert_eq!(
            resized_crop_box(40, 20, (5.0, 6.0), (1.0, 1.0), &mut rng),
            (0, 10, 20, 20)
        );
    }

    #[test]
    fn jitter_draw_gives_permutation_and_ranges() {
        let config = ColorJitterConfig::default();
        let mut rng = ChaCha8Rng::seed_from_u64(11);
        let mut first_steps = [0usize; 4];
        for _ in 0..400 {
            let params = JitterParams::draw(&config, &mut rng);
            let mut sorted = params.order;
            sorted.sort_unstable();
            assert_eq!(sorted, [0, 1, 2, 3]);
            first_steps[params.order[0]] += 1;
            for factor in [params.brightness, params.contrast, params.saturation] {
                assert!((0.6..=1.4).contains(&factor), "factor {factor}");
            }
            assert!((-0.1..=0.1).contains(&params.hue), "hue {}", params.hue);
        }
        assert!(
            first_steps.iter().all(|&n| n > 50),
            "order not uniform: {first_steps:?}"
        );
    }

    #[test]
    fn contrast_view_always_gray_has_equal_channels() {
        let image = noise(32, 32, 7);
        let config = ContrastConfig {
            grayscale_probability: 1.0,
            ..ContrastConfig::default()
        };
        let out = contrast_view(&image, &config, &mut ChaCha8Rng::seed_from_u64(3));
        assert!(
            out.as_bytes()
                .chunks_exact(3)
                .all(|p| p[0] == p[1] && p[1] == p[2])
        );
        assert_eq!((out.width(), out.height()), (32, 32));
    }

    #[test]
    fn weak_view_flips_at_its_probability() {
        let image = noise(16, 16, 12);
        let config = WeakConfig {
            flip_probability: 0.5,
            pad: 0,
        };
        let mut rng = ChaCha8Rng::seed_from_u64(13);
        let flipped = (0..2000)
            .filter(|_| weak_view(&image, &config, &mut rng) != image)
            .count();
        assert!((900..1100).contains(&flipped), "{flipped} of 2000 flipped");
    }

    #[test]
    fn contrast_view_grays_at_its_probability() {
        let image = noise(32, 32, 14);
        let config = ContrastConfig::default();
        let mut rng = ChaCha8Rng::seed_from_u64(15);
        let gray = (0..2000)
            .filter(|_| {
                let out = contrast_view(&image, &config, &mut rng);
                out.as_bytes()
                    .chunks_exact(3)
                    .all(|p| p[0] == p[1] && p[1] == p[2])
            })
            .count();
        // Expected 400; colour noise never turns gray by jitter alone (saturation >= 0.6).
        assert!((330..470).contains(&gray), "{gray} of 2000 gray");
    }

    #[test]
    fn strong_view_differs_from_weak_view() {
        let image = noise(32, 32, 8);
        let weak = WeakConfig::default();
        let strong = StrongConfig::default();
        let a = weak_view(&image, &weak, &mut ChaCha8Rng::seed_from_u64(6));
        let b = strong_view(&image, &weak, &strong, &mut ChaCha8Rng::seed_from_u64(6));
        assert_ne!(a, b, "Cutout alone must change the strong view");
    }
}
