//! FixMatch's RandAugmentMC: the 14-op pool with its magnitude mappings, and the random policy.
//!
//! Magnitudes follow `fixmatch_augment_pool` of the official CCSSL code
//! (TencentYoutuResearch/Classification-SemiCLS, `dataset/transforms/randaugment.py`): an
//! integer level `v` in 1..m is mapped to `v * max / 10 + bias` (enhancers, shears,
//! translations) or `int(v * max / 10) + bias` (posterize, rotate, solarize).

use rand::Rng;

use crate::{RgbImage, StrongConfig, color, geometry};

/// Largest magnitude level of the pool's mappings.
pub const MAX_LEVEL: u32 = 10;

/// One op of the FixMatch RandAugment pool.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum PoolOp {
    /// `ImageOps.autocontrast`; ignores the level.
    AutoContrast,
    /// Brightness factor `v * 0.9 / 10 + 0.05`.
    Brightness,
    /// Colour factor `v * 0.9 / 10 + 0.05`.
    Color,
    /// Contrast factor `v * 0.9 / 10 + 0.05`.
    Contrast,
    /// `ImageOps.equalize`; ignores the level.
    Equalize,
    /// No change.
    Identity,
    /// Keeps `int(v * 4 / 10) + 4` bits.
    Posterize,
    /// Rotates by `int(v * 30 / 10)` degrees, sign drawn at random.
    Rotate,
    /// Sharpness factor `v * 0.9 / 10 + 0.05`.
    Sharpness,
    /// Shear factor `v * 0.3 / 10`, sign drawn at random.
    ShearX,
    /// Shear factor `v * 0.3 / 10`, sign drawn at random.
    ShearY,
    /// Solarize threshold `256 - int(v * 256 / 10)`.
    Solarize,
    /// Shift of `int(v * 0.3 / 10 * width)` pixels, sign drawn at random.
    TranslateX,
    /// Shift of `int(v * 0.3 / 10 * height)` pixels, sign drawn at random.
    TranslateY,
}

/// The pool in the order of `fixmatch_augment_pool`, so a uniform index draws the same op.
pub const FIXMATCH_POOL: [PoolOp; 14] = [
    PoolOp::AutoContrast,
    PoolOp::Brightness,
    PoolOp::Color,
    PoolOp::Contrast,
    PoolOp::Equalize,
    PoolOp::Identity,
    PoolOp::Posterize,
    PoolOp::Rotate,
    PoolOp::Sharpness,
    PoolOp::ShearX,
    PoolOp::ShearY,
    PoolOp::Solarize,
    PoolOp::TranslateX,
    PoolOp::TranslateY,
];

fn float_parameter(level: u32, max: f64) -> f64 {
    level as f64 * max / MAX_LEVEL as f64
}

fn int_parameter(level: u32, max: f64) -> i64 {
    (level as f64 * max / MAX_LEVEL as f64) as i64
}

impl PoolOp {
    /// Whether the op draws a random sign for its magnitude.
    pub fn is_signed(self) -> bool {
        matches!(
            self,
            Self::Rotate | Self::ShearX | Self::ShearY | Self::TranslateX | Self::TranslateY
        )
    }

    /// Applies the op at `level` (0..=10), negating the magnitude when `negate` is set (used by
    /// the signed ops only).
    pub fn apply(self, image: &mut RgbImage, level: u32, negate: bool) {
        let sign = if negate { -1.0 } else { 1.0 };
        let enhance = || (float_parameter(level, 0.9) + 0.05) as f32;
        match self {
            Self::AutoContrast => color::autocontrast(image),
            Self::Brightness => color::brightness(image, enhance()),
            Self::Color => color::color(image, enhance()),
            Self::Contrast => color::contrast(image, enhance()),
            Self::Equalize => color::equalize(image),
            Self::Identity => {}
            Self::Posterize => color::posterize(image, (int_parameter(level, 4.0) + 4) as u32),
            Self::Rotate => {
                *image = geometry::rotate(image, sign * int_parameter(level, 30.0) as f64)
            }
            Self::Sharpness => color::sharpness(image, enhance()),
            Self::ShearX => *image = geometry::shear_x(image, sign * float_parameter(level, 0.3)),
            Self::ShearY => *image = geometry::shear_y(image, sign * float_parameter(level, 0.3)),
            Self::Solarize => {
                color::solarize(image, (256 - int_parameter(level, 256.0)).max(0) as u32)
            }
            Self::TranslateX => {
                let pixels = (sign * float_parameter(level, 0.3) * image.width() as f64) as i64;
                *image = geometry::translate_x(image, pixels);
            }
            Self::TranslateY => {
                let pixels = (sign * float_parameter(level, 0.3) * image.height() as f64) as i64;
                *image = geometry::translate_y(image, pixels);
            }
        }
    }
}

/// RandAugmentMC then Cutout, in the official draw order: for each of `n` ops, the op
/// (uniform over the pool, with replacement), its level (uniform integer in `1..m`), a coin
/// with probability `op_probability` to apply it, and for signed ops that are applied a fair
/// coin for the sign; finally the Cutout centre, uniform over the image.
pub fn rand_augment(image: &mut RgbImage, config: &StrongConfig, rng: &mut impl Rng) {
    for _ in 0..config.n {
        let op = FIXMATCH_POOL[rng.random_range(0..FIXMATCH_POOL.len())];
        let level = rng.random_range(1..config.m.max(2));
        if rng.random::<f64>() < config.op_probability {
            let negate = op.is_signed() && rng.random::<f64>() < 0.5;
            op.apply(image, level, negate);
        }
    }
    let centre_x = rng.random::<f64>() * image.width() as f64;
    let centre_y = rng.random::<f64>() * image.height() as f64;
    geometry::cutout(image, centre_x, centre_y, config.cutout);
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    use super::*;

    fn uniform(value: u8) -> RgbImage {
        RgbImage::from_vec(8, 8, vec![value; 8 * 8 * 3]).unwrap()
    }

    fn gradient(width: usize, height: usize) -> RgbImage {
        let data = (0..width * height * 3)
            .map(|i| (i * 7 % 251) as u8)
            .collect();
        RgbImage::from_vec(width, height, data).unwrap()
    }

    fn applied(op: PoolOp, image: &RgbImage, level: u32, negate: bool) -> RgbImage {
        let mut out = image.clone();
        op.apply(&mut out, level, negate);
        out
    }

    #[test]
    fn pool_matches_fixmatch_order() {
        assert_eq!(FIXMATCH_POOL.len(), 14);
        assert_eq!(FIXMATCH_POOL[0], PoolOp::AutoContrast);
        assert_eq!(FIXMATCH_POOL[7], PoolOp::Rotate);
        assert_eq!(FIXMATCH_POOL[13], PoolOp::TranslateY);
    }

    #[test]
    fn posterize_keeps_four_to_seven_bits() {
        // Level 1: int(0.4) + 4 = 4 bits; level 9: int(3.6) + 4 = 7 bits.
        assert_eq!(
            applied(PoolOp::Posterize, &uniform(255), 1, false).as_bytes()[0],
            0xF0
        );
        assert_eq!(
            applied(PoolOp::Posterize, &uniform(255), 9, false).as_bytes()[0],
            0xFE
        );
    }

    #[test]
    fn solarize_threshold_is_256_minus_level_share() {
        // Level 9: threshold 256 - int(230.4) = 26.
        assert_eq!(
            applied(PoolOp::Solarize, &uniform(26), 9, false).as_bytes()[0],
            229
        );
        assert_eq!(
            applied(PoolOp::Solarize, &uniform(25), 9, false).as_bytes()[0],
            25
        );
    }

    #[test]
    fn enhancer_factor_is_level_times_0_09_plus_0_05() {
        // Level 5: factor 0.5; brightness of 200 gives 100 exactly.
        assert_eq!(
            applied(PoolOp::Brightness, &uniform(200), 5, false).as_bytes()[0],
            100
        );
        // Level 0: factor 0.05, the floor of the mapping.
        assert_eq!(
            applied(PoolOp::Brightness, &uniform(200), 0, false).as_bytes()[0],
            10
        );
    }

    #[test]
    fn geometric_levels_map_to_degrees_and_pixels() {
        let image = gradient(32, 32);
        assert_eq!(
            applied(PoolOp::Rotate, &image, 5, false),
            geometry::rotate(&image, 15.0)
        );
        assert_eq!(
            applied(PoolOp::Rotate, &image, 5, true),
            geometry::rotate(&image, -15.0)
        );
        // Level 5: 0.15 * 32 = 4.8, truncated to 4 pixels.
        assert_eq!(
            applied(PoolOp::TranslateX, &image, 5, false),
            geometry::translate_x(&image, 4)
        );
        assert_eq!(
            applied(PoolOp::TranslateY, &image, 5, true),
            geometry::translate_y(&image, -4)
        );
        assert_eq!(
            applied(PoolOp::ShearX, &image, 10, true),
            geometry::shear_x(&image, -0.3)
        );
    }

    #[test]
    fn only_cutout_when_ops_never_apply() {
        let image = uniform(10);
        let config = StrongConfig {
            n: 4,
            m: 10,
            op_probability: 0.0,
            cutout: 4,
        };
        let mut out = image.clone();
        rand_augment(&mut out, &config, &mut ChaCha8Rng::seed_from_u64(3));
        let grey = out
            .as_bytes()
            .iter()
            .filter(|&&v| v == geometry::CUTOUT_GRAY)
            .count();
        let unchanged = out.as_bytes().iter().filter(|&&v| v == 10).count();
        assert!(grey > 0, "cutout must paint something");
        assert_eq!(grey + unchanged, out.as_bytes().len());
        // An inclusive 4-pixel square covers at most 5 x 5 pixels.
        assert!(grey <= 5 * 5 * 3, "{grey} grey values");
    }
}
