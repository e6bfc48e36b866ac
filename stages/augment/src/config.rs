//! Settings of the three views, with the defaults of FixMatch and CCSSL on CIFAR.

use serde::{Deserialize, Serialize};

use crate::AugmentError;

/// Settings of every view the augmenter produces.
///
/// The default is plain FixMatch: weak and strong views, no contrast view.
/// [`AugmentConfig::ccssl`] adds the contrast view with its default settings.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AugmentConfig {
    /// Weak view of labeled and unlabeled images; the strong view starts with it too.
    pub weak: WeakConfig,
    /// RandAugment and Cutout applied on top of a weak transform for the strong view.
    pub strong: StrongConfig,
    /// SimCLR-style contrast view of unlabeled images; `None` switches it off.
    pub contrast: Option<ContrastConfig>,
}

/// Random horizontal flip, then a random crop of the image's own size from the image padded
/// by mirroring (numpy `reflect`, no edge repeat).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WeakConfig {
    /// Probability of the horizontal flip. Default 0.5.
    pub flip_probability: f64,
    /// Padding in pixels on each side before the crop; must be smaller than the image's
    /// sides. Default 4 (an eighth of 32).
    pub pad: usize,
}

/// RandAugmentMC(`n`, `m`) over the FixMatch pool, then Cutout.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StrongConfig {
    /// Ops drawn per image, with replacement; at least 1. Default 2.
    pub n: u32,
    /// Exclusive upper bound of the magnitude level, drawn uniformly from `1..m`; 2 to 10.
    /// Default 10.
    pub m: u32,
    /// Probability of applying each drawn op. Default 0.5.
    pub op_probability: f64,
    /// Side of the grey Cutout square in pixels (Pillow's inclusive rectangle makes it one
    /// pixel wider unless clipped). Default 16.
    pub cutout: usize,
}

/// RandomResizedCrop to the image's own size, horizontal flip, ColorJitter with probability,
/// RandomGrayscale, as torchvision applies them to PIL images.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ContrastConfig {
    /// Range of the crop's area as a fraction of the image. Default (0.08, 1.0).
    pub scale: (f64, f64),
    /// Range of the crop's aspect ratio, width over height. Default (3/4, 4/3).
    pub ratio: (f64, f64),
    /// Probability of the horizontal flip. Default 0.5.
    pub flip_probability: f64,
    /// Colour jitter and the probability of applying it.
    pub jitter: ColorJitterConfig,
    /// Probability of converting to grayscale (three equal channels). Default 0.2.
    pub grayscale_probability: f64,
}

/// torchvision's `ColorJitter(brightness, contrast, saturation, hue)`, applied with probability.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ColorJitterConfig {
    /// Brightness factor drawn from [max(0, 1 - b), 1 + b]. Default 0.4.
    pub brightness: f64,
    /// Contrast factor drawn from [max(0, 1 - c), 1 + c]. Default 0.4.
    pub contrast: f64,
    /// Saturation factor drawn from [max(0, 1 - s), 1 + s]. Default 0.4.
    pub saturation: f64,
    /// Hue shift drawn from [-h, h] turns; at most 0.5. Default 0.1.
    pub hue: f64,
    /// Probability of applying the jitter at all. Default 0.8.
    pub probability: f64,
}

impl Default for WeakConfig {
    fn default() -> Self {
        Self {
            flip_probability: 0.5,
            pad: 4,
        }
    }
}

impl Default for StrongConfig {
    fn default() -> Self {
        Self {
            n: 2,
            m: 10,
            op_probability: 0.5,
            cutout: 16,
        }
    }
}

impl Default for ContrastConfig {
    fn default() -> Self {
        Self {
            scale: (0.08, 1.0),
            ratio: (3.0 / 4.0, 4.0 / 3.0),
            flip_probability: 0.5,
            jitter: ColorJitterConfig::default(),
            grayscale_probability: 0.2,
        }
    }
}

impl Default for ColorJitterConfig {
    fn default() -> Self {
        Self {
            brightness: 0.4,
            contrast: 0.4,
            saturation: 0.4,
            hue: 0.1,
            probability: 0.8,
        }
    }
}

fn invalid(
    field: &'static str,
    value: impl std::fmt::Debug,
    accepted: &'static str,
) -> AugmentError {
    AugmentError::Config {
        field,
        value: format!("{value:?}"),
        accepted,
    }
}

fn check_probability(field: &'static str, p: f64) -> Result<(), AugmentError> {
    if (0.0..=1.0).contains(&p) {
        Ok(())
    } else {
        Err(invalid(field, p, "a probability in [0, 1]"))
    }
}

fn check_range(
    field: &'static str,
    range: (f64, f64),
    accepted: &'static str,
) -> Result<(), AugmentError> {
    let (lo, hi) = range;
    if lo.is_finite() && hi.is_finite() && 0.0 < lo && lo <= hi {
        Ok(())
    } else {
        Err(invalid(field, range, accepted))
    }
}

impl AugmentConfig {
    /// Returns the CCSSL setting: FixMatch's views plus the default contrast view.
    pub fn ccssl() -> Self {
        Self {
            contrast: Some(ContrastConfig::default()),
            ..Self::default()
        }
    }

    /// Checks every value, and that the padding fits images of `width` x `height` pixels.
    pub fn validate(&self, width: usize, height: usize) -> Result<(), AugmentError> {
        check_probability("weak.flip_probability", self.weak.flip_probability)?;
        if self.weak.pad >= width.min(height) && !(width == 0 || height == 0) {
            return Err(invalid(
                "weak.pad",
                self.weak.pad,
                "fewer pixels than the image's shorter side",
            ));
        }
        let strong = &self.strong;
        if strong.n == 0 {
            return Err(invalid("strong.n", strong.n, "at least 1 op per image"));
        }
        if !(2..=10).contains(&strong.m) {
            return Err(invalid(
                "strong.m",
                strong.m,
                "an integer from 2 to 10 (levels are drawn from 1..m)",
            ));
        }
        check_probability("strong.op_probability", strong.op_probability)?;
        if strong.cutout > 4096 {
            return Err(invalid(
                "strong.cutout",
                strong.cutout,
                "a square side of at most 4096 pixels",
            ));
        }
        if let Some(contrast) = &self.contrast {
            contrast.validate()?;
        }
        Ok(())
    }
}

impl ContrastConfig {
    fn validate(&self) -> Result<(), AugmentError> {
        check_range(
            "contrast.scale",
            self.scale,
            "(min, max) with 0 < min <= max",
        )?;
        check_range(
            "contrast.ratio",
            self.ratio,
            "(min, max) with 0 < min <= max",
        )?;
        check_probability("contrast.flip_probability", self.flip_probability)?;
        check_probability("contrast.grayscale_probability", self.grayscale_probability)?;
        let jitter = &self.jitter;
        for (field, value) in [
            ("contrast.jitter.brightness", jitter.brightness),
            ("contrast.jitter.contrast", jitter.contrast),
            ("contrast.jitter.saturation", jitter.saturation),
        ] {
            if !(value.is_finite() && value >= 0.0) {
                return Err(invalid(field, value, "a finite number >= 0"));
            }
        }
        if !(0.0..=0.5).contains(&jitter.hue) {
            return Err(invalid(
                "contrast.jitter.hue",
                jitter.hue,
                "a number in [0, 0.5]",
            ));
        }
        check_probability("contrast.jitter.probability", jitter.probability)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_fixmatch_settings() {
        let config = AugmentConfig::default();
        assert_eq!(
            config.weak,
            WeakConfig {
                flip_probability: 0.5,
                pad: 4
            }
        );
        assert_eq!(
            config.strong,
            StrongConfig {
                n: 2,
                m: 10,
                op_probability: 0.5,
                cutout: 16
            }
        );
        assert_eq!(config.contrast, None);
    }

    #[test]
    fn ccssl_adds_simclr_contrast_view() {
        let contrast = AugmentConfig::ccssl().contrast.expect("contrast view on");
        assert_eq!(contrast.scale, (0.08, 1.0));
        assert_eq!(contrast.ratio, (0.75, 4.0 / 3.0));
        assert_eq!(contrast.flip_probability, 0.5);
        assert_eq!(contrast.grayscale_probability, 0.2);
        let jitter = contrast.jitter;
        assert_eq!(
            (jitter.brightness, jitter.contrast, jitter.saturation),
            (0.4, 0.4, 0.4)
        );
        assert_eq!((jitter.hue, jitter.probability), (0.1, 0.8));
    }

    #[test]
    fn serde_fills_missing_fields_with_defaults() {
        let config: AugmentConfig =
            serde_json::from_str(r#"{"strong": {"m": 5}, "contrast": {"jitter": {"hue": 0.2}}}"#)
                .expect("partial config parses");
        assert_eq!(config.strong.m, 5);
        assert_eq!(config.strong.n, 2);
        let contrast = config.contrast.expect("contrast given");
        assert_eq!(contrast.jitter.hue, 0.2);
        assert_eq!(contrast.jitter.brightness, 0.4);
    }

    #[test]
    fn serde_rejects_unknown_fields() {
        let err = serde_json::from_str::<AugmentConfig>(r#"{"weak": {"flip_prob": 0.5}}"#)
            .expect_err("misspelt field must fail");
        let message = err.to_string();
        assert!(message.contains("flip_prob"), "{message}");
        assert!(message.contains("flip_probability"), "{message}");
    }

    fn field_of(result: Result<(), AugmentError>) -> &'static str {
        match result {
            Err(AugmentError::Config { field, .. }) => field,
            other => panic!("expected a config error, got {other:?}"),
        }
    }

    #[test]
    fn validate_accepts_defaults() {
        assert_eq!(AugmentConfig::ccssl().validate(32, 32), Ok(()));
    }

    #[test]
    fn validate_names_each_bad_value() {
        let mut config = AugmentConfig::ccssl();
        config.weak.pad = 32;
        assert_eq!(field_of(config.validate(32, 32)), "weak.pad");

        let mut config = AugmentConfig::ccssl();
        config.weak.flip_probability = 1.5;
        assert_eq!(field_of(config.validate(32, 32)), "weak.flip_probability");

        let mut config = AugmentConfig::ccssl();
        config.strong.m = 1;
        assert_eq!(field_of(config.validate(32, 32)), "strong.m");

        let mut config = AugmentConfig::ccssl();
        config.strong.n = 0;
        assert_eq!(field_of(config.validate(32, 32)), "strong.n");

        let mut config = AugmentConfig::ccssl();
        config.contrast.as_mut().unwrap().scale = (0.0, 1.0);
        assert_eq!(field_of(config.validate(32, 32)), "contrast.scale");

        let mut config = AugmentConfig::ccssl();
        config.contrast.as_mut().unwrap().jitter.hue = 0.6;
        assert_eq!(field_of(config.validate(32, 32)), "contrast.jitter.hue");

        let mut config = AugmentConfig::ccssl();
        config.contrast.as_mut().unwrap().jitter.saturation = f64::NAN;
        assert_eq!(
            field_of(config.validate(32, 32)),
            "contrast.jitter.saturation"
        );
    }

    #[test]
    fn config_error_message_names_value_and_range() {
        let mut config = AugmentConfig::default();
        config.strong.m = 11;
        let message = config.validate(32, 32).unwrap_err().to_string();
        assert_eq!(
            message,
            "invalid augment setting `strong.m` = 11: an integer from 2 to 10 (levels are drawn from 1..m)"
        );
    }
}
