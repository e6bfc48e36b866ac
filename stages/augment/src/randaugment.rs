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
    /// Returns whether the op draws a random sign for its magnitude.
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

/// One op drawn by RandAugmentMC.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DrawnOp {
    /// The op.
    pub op: PoolOp,
    /// Magnitude level in `1..m`.
    pub level: u32,
    /// Whether the op's probability coin came up.
    pub applied: bool,
    /// Whether the magnitude is negated (signed ops that are applied only).
    pub negate: bool,
}

/// Everything RandAugmentMC and Cutout draw for one image.
#[derive(Clone, Debug, PartialEq)]
pub struct RandAugmentDraw {
    /// The `n` ops in order of application.
    pub ops: Vec<DrawnOp>,
    /// Cutout centre (x, y), uniform over [0, width) x [0, height).
    pub cutout_centre: (f64, f64),
}

impl RandAugmentDraw {
    /// Draws in the official order. Each of the `n` ops draws the op (uniform over the pool,
    /// with replacement), its level (uniform integer in `1..m`) and a coin with probability
    /// `op_probability` to apply it. A signed op that is applied then draws a fair coin for the
    /// sign. The Cutout centre comes last.
    pub fn draw(config: &StrongConfig, width: usize, height: usize, rng: &mut impl Rng) -> Self {
        let mut ops = Vec::with_capacity(config.n as usize);
        for _ in 0..config.n {
            let op = FIXMATCH_POOL[rng.random_range(0..FIXMATCH_POOL.len())];
            let level = rng.random_range(1..config.m.max(2));
            let applied = rng.random::<f64>() < config.op_probability;
            let negate = applied && op.is_signed() && rng.random::<f64>() < 0.5;
            ops.push(DrawnOp {
                op,
                level,
                applied,
                negate,
            });
        }
        let centre_x = rng.random::<f64>() * width as f64;
        let centre_y = rng.random::<f64>() * height as f64;
        Self {
            ops,
            cutout_centre: (centre_x, centre_y),
        }
    }

    /// Applies the drawn ops, then a Cutout square of side `cutout` pixels.
    pub fn apply(&self, image: &mut RgbImage, cutout: usize) {
        for drawn in self.ops.iter().filter(|d| d.applied) {
            drawn.op.apply(image, drawn.level, drawn.negate);
        }
        let (x, y) = self.cutout_centre;
        geometry::cutout(image, x, y, cutout);
    }
}

/// RandAugmentMC(`n`, `m`) then Cutout on `image`, drawing from `rng` as
/// [`RandAugmentDraw::draw`] describes.
pub fn rand_augment(image: &mut RgbImage, config: &StrongConfig, rng: &mut impl Rng) {
    RandAugmentDraw::draw(config, image.width(), image.height(), rng).apply(image, config.cutout);
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
    fn enhancer_factor_mapping() {
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
    fn draws_cover_pool_levels_and_signs() {
        let config = StrongConfig::default();
        let mut rng = ChaCha8Rng::seed_from_u64(21);
        let (mut per_op, mut per_level) = ([0usize; 14], [0usize; 10]);
        let (mut applied, mut negated, mut signed_applied, mut total) = (0, 0, 0, 0);
        for _ in 0..7000 {
            let draw = RandAugmentDraw::draw(&config, 32, 32, &mut rng);
            assert_eq!(draw.ops.len(), 2);
            let (cx, cy) = draw.cutout_centre;
            assert!(
                (0.0..32.0).contains(&cx) && (0.0..32.0).contains(&cy),
                "centre {cx} {cy}"
            );
            for d in draw.ops {
                total += 1;
                per_op[FIXMATCH_POOL.iter().position(|&op| op == d.op).unwrap()] += 1;
                per_level[d.level as usize] += 1;
                applied += usize::from(d.applied);
                if d.applied && d.op.is_signed() {
                    signed_applied += 1;
                    negated += usize::from(d.negate);
                }
                assert!(
                    d.applied || !d.negate,
                    "an op that is not applied draws no sign"
                );
                assert!(d.op.is_signed() || !d.negate, "{:?} has no sign", d.op);
            }
        }
        // 14000 ops: 1000 expected per op, 1556 per level in 1..=9, half applied.
        assert!(
            per_op.iter().all(|&c| (850..1150).contains(&c)),
            "ops {per_op:?}"
        );
        assert_eq!(per_level[0], 0, "level 0 is never drawn");
        assert!(
            per_level[1..].iter().all(|&c| (1350..1750).contains(&c)),
            "levels {per_level:?}"
        );
        assert!(
            (6700..7300).contains(&applied),
            "{applied} of {total} applied"
        );
        let share = negated as f64 / signed_applied as f64;
        assert!((0.45..0.55).contains(&share), "negated share {share}");
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
