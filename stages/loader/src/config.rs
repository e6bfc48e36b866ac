//! Settings of the loader stage, as they appear in a RON graph.
//!
//! ```ron
//! Loader(dataset: Cifar10(root: "data/cifar10"), num_labeled: 4000, batch_size: 64, mu: 7)
//! ```

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use ccssl_pipe::graph::Restart;

use crate::error::LoaderError;

/// Base URL of the official CIFAR archives. The archive name is appended to it.
pub const OFFICIAL_BASE_URL: &str = "https://www.cs.toronto.edu/~kriz/";

/// Settings of the loader. Every field except `dataset` has a default, given on the field.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoaderConfig {
    /// The dataset to read.
    pub dataset: DatasetConfig,
    /// Labeled training images, drawn evenly over the classes. Default 4000.
    #[serde(default = "default_num_labeled")]
    pub num_labeled: usize,
    /// Labeled images per batch (`B`). Default 64.
    #[serde(default = "default_batch_size")]
    pub batch_size: usize,
    /// Ratio of unlabeled to labeled images per batch: each batch contains `mu * B` unlabeled
    /// images. Default 7.
    #[serde(default = "default_mu")]
    pub mu: usize,
    /// Whether to repeat the labeled index list `ceil(batch_size * eval_step / num_labeled)`
    /// times, as the FixMatch reference does with `expand_labels`. The repetition also happens
    /// when `num_labeled < batch_size`, whatever this is set to. Default false.
    #[serde(default)]
    pub expand_labeled: bool,
    /// Steps per reference epoch, used only to size the expansion above. Default 1024, the
    /// `eval_step` of the reference CIFAR configurations.
    #[serde(default = "default_eval_step")]
    pub eval_step: usize,
    /// Batches the loader stage emits before it closes its output, `None` for no limit (until
    /// the run is stopped). Default none.
    #[serde(default)]
    pub total_steps: Option<u64>,
    /// Policy of the supervisor when the loader stage fails: the loader is stateless (batch
    /// `k` depends only on the seed and `k`), so a respawned loader resumes after the last
    /// batch its predecessor committed. Default `Never`.
    #[serde(default)]
    pub restart: Restart,
}

/// The source of images. In RON each variant reads like a struct:
/// `Cifar10(root: "data/cifar10", download: false)`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub enum DatasetConfig {
    /// CIFAR-10 in the official binary layout.
    Cifar10 {
        /// A directory holding the binary batches (or their official subdirectory
        /// `cifar-10-batches-bin`), or the official `cifar-10-binary.tar.gz` itself.
        root: PathBuf,
        /// Download the official archive into the cache (`$CCSSL_CACHE`, else
        /// `~/.cache/ccssl/`) when `root` does not exist. Default true.
        #[serde(default = "default_true")]
        download: bool,
        /// Base URL the archive name is appended to. Default [`OFFICIAL_BASE_URL`].
        #[serde(default = "default_base_url")]
        base_url: String,
    },
    /// CIFAR-100 in the official binary layout, with the 100 fine labels.
    Cifar100 {
        /// A directory holding `train.bin` and `test.bin` (or their official subdirectory
        /// `cifar-100-binary`), or the official `cifar-100-binary.tar.gz` itself.
        root: PathBuf,
        /// As for CIFAR-10. Default true.
        #[serde(default = "default_true")]
        download: bool,
        /// As for CIFAR-10. Default [`OFFICIAL_BASE_URL`].
        #[serde(default = "default_base_url")]
        base_url: String,
    },
    /// The user's own images, `root/<class>/<image>.png|jpg|jpeg`. Classes are the
    /// subfolders sorted by name; other files are skipped.
    ImageFolder {
        /// Training images, one subfolder per class.
        root: PathBuf,
        /// Test images laid out like `root`, with the same class folders. Default none.
        #[serde(default)]
        test_root: Option<PathBuf>,
        /// Height every image is resized to, in pixels. Default 32.
        #[serde(default = "default_side")]
        height: u32,
        /// Width every image is resized to, in pixels. Default 32.
        #[serde(default = "default_side")]
        width: u32,
        /// Resampling filter. Images are resized to `height x width` without keeping the
        /// aspect ratio, as torchvision's `Resize((h, w))` does. Default `Bilinear`.
        #[serde(default)]
        filter: ResizeFilter,
    },
    /// Generated images for tests: class `c` has its own base colour and stripe orientation,
    /// and each image adds a seeded stripe phase and per-pixel noise.
    Synthetic {
        /// Number of classes. Default 10.
        #[serde(default = "default_classes")]
        classes: usize,
        /// Training images per class. Default 100.
        #[serde(default = "default_train_per_class")]
        train_per_class: usize,
        /// Test images per class. Default 20.
        #[serde(default = "default_test_per_class")]
        test_per_class: usize,
        /// Image height in pixels. Default 32.
        #[serde(default = "default_side")]
        height: u32,
        /// Image width in pixels. Default 32.
        #[serde(default = "default_side")]
        width: u32,
        /// Amplitude of the uniform per-pixel noise, in grey levels. Default 24.
        #[serde(default = "default_noise")]
        noise: u8,
        /// Seed of the images themselves, independent of the run seed so that runs with
        /// different seeds see the same data. Default 0.
        #[serde(default)]
        data_seed: u64,
    },
}

/// Image resampling filter of ImageFolder, as the `image` crate implements them. Each one
/// widens its support when shrinking, so downscaling is antialiased as in Pillow.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum ResizeFilter {
    /// Nearest neighbour.
    Nearest,
    /// Linear (triangle) filter, the counterpart of Pillow's `BILINEAR`, which torchvision's
    /// `Resize` uses by default.
    #[default]
    Bilinear,
    /// Catmull-Rom cubic filter.
    Bicubic,
    /// Lanczos with a window of 3.
    Lanczos3,
}

/// The shape of a synthetic dataset; the fields mean what they mean in
/// [`DatasetConfig::Synthetic`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SyntheticSpec {
    /// Number of classes.
    pub classes: usize,
    /// Training images per class.
    pub train_per_class: usize,
    /// Test images per class.
    pub test_per_class: usize,
    /// Image height in pixels.
    pub height: u32,
    /// Image width in pixels.
    pub width: u32,
    /// Amplitude of the uniform per-pixel noise, in grey levels.
    pub noise: u8,
    /// Seed of the images.
    pub data_seed: u64,
}

impl Default for SyntheticSpec {
    fn default() -> Self {
        Self {
            classes: default_classes(),
            train_per_class: default_train_per_class(),
            test_per_class: default_test_per_class(),
            height: default_side(),
            width: default_side(),
            noise: default_noise(),
            data_seed: 0,
        }
    }
}

impl DatasetConfig {
    /// CIFAR-10 read from `root`, with downloading switched off.
    pub fn cifar10_local(root: impl Into<PathBuf>) -> Self {
        Self::Cifar10 {
            root: root.into(),
            download: false,
            base_url: default_base_url(),
        }
    }

    /// Builds the config of the synthetic dataset described by `spec`.
    pub fn synthetic(spec: &SyntheticSpec) -> Self {
        Self::Synthetic {
            classes: spec.classes,
            train_per_class: spec.train_per_class,
            test_per_class: spec.test_per_class,
            height: spec.height,
            width: spec.width,
            noise: spec.noise,
            data_seed: spec.data_seed,
        }
    }

    /// Returns the synthetic spec of a `Synthetic` config, `None` for the other datasets.
    pub fn synthetic_spec(&self) -> Option<SyntheticSpec> {
        match *self {
            Self::Synthetic {
                classes,
                train_per_class,
                test_per_class,
                height,
                width,
                noise,
                data_seed,
            } => Some(SyntheticSpec {
                classes,
                train_per_class,
                test_per_class,
                height,
                width,
                noise,
                data_seed,
            }),
            _ => None,
        }
    }

    /// CIFAR-100 read from `root`, with downloading switched off.
    pub fn cifar100_local(root: impl Into<PathBuf>) -> Self {
        Self::Cifar100 {
            root: root.into(),
            download: false,
            base_url: default_base_url(),
        }
    }
}

impl LoaderConfig {
    /// Builds a config for `dataset` with every other setting at its default.
    pub fn new(dataset: DatasetConfig) -> Self {
        Self {
            dataset,
            num_labeled: default_num_labeled(),
            batch_size: default_batch_size(),
            mu: default_mu(),
            expand_labeled: false,
            eval_step: default_eval_step(),
            total_steps: None,
            restart: Restart::Never,
        }
    }

    /// Returns the height and width of the images the dataset yields, known without reading
    /// it: 32 x 32 for CIFAR, the configured size for ImageFolder and Synthetic.
    pub fn image_size(&self) -> (u32, u32) {
        match &self.dataset {
            DatasetConfig::Cifar10 { .. } | DatasetConfig::Cifar100 { .. } => (32, 32),
            DatasetConfig::ImageFolder { height, width, .. }
            | DatasetConfig::Synthetic { height, width, .. } => (*height, *width),
        }
    }

    /// Checks the ranges that do not depend on the dataset.
    pub fn validate(&self) -> Result<(), LoaderError> {
        let positive = [
            ("num_labeled", self.num_labeled),
            ("batch_size", self.batch_size),
            ("mu", self.mu),
            ("eval_step", self.eval_step),
        ];
        for (field, value) in positive {
            if value == 0 {
                return Err(config_error(field, value, "must be at least 1"));
            }
        }
        // Batches index images with u32 and the batch arithmetic runs in u64.
        if self.batch_size.saturating_mul(self.mu) > u32::MAX as usize {
            let value = format!("{} (times mu {})", self.batch_size, self.mu);
            return Err(config_error(
                "batch_size",
                value,
                "batch_size * mu must fit in u32",
            ));
        }
        match &self.dataset {
            DatasetConfig::ImageFolder { height, width, .. } => check_size(*height, *width),
            DatasetConfig::Synthetic {
                classes,
                train_per_class,
                height,
                width,
                ..
            } => {
                check_size(*height, *width)?;
                if *classes == 0 {
                    return Err(config_error("classes", 0, "must be at least 1"));
                }
                if *train_per_class == 0 {
                    return Err(config_error("train_per_class", 0, "must be at least 1"));
                }
                Ok(())
            }
            DatasetConfig::Cifar10 { .. } | DatasetConfig::Cifar100 { .. } => Ok(()),
        }
    }
}

/// Largest side accepted for resized or generated images, in pixels; it keeps one image
/// well below 4 GiB and catches typos such as `3200`.
const MAX_SIDE: u32 = 4096;

fn check_size(height: u32, width: u32) -> Result<(), LoaderError> {
    for (field, value) in [("height", height), ("width", width)] {
        if value == 0 || value > MAX_SIDE {
            return Err(config_error(
                field,
                value,
                "must be between 1 and 4096 pixels",
            ));
        }
    }
    Ok(())
}

fn config_error(field: &'static str, value: impl ToString, reason: &str) -> LoaderError {
    LoaderError::Config {
        field,
        value: value.to_string(),
        reason: reason.to_string(),
    }
}

fn default_num_labeled() -> usize {
    4000
}
fn default_batch_size() -> usize {
    64
}
fn default_mu() -> usize {
    7
}
fn default_eval_step() -> usize {
    1024
}
fn default_true() -> bool {
    true
}
fn default_base_url() -> String {
    OFFICIAL_BASE_URL.to_string()
}
fn default_side() -> u32 {
    32
}
fn default_classes() -> usize {
    10
}
fn default_train_per_class() -> usize {
    100
}
fn default_test_per_class() -> usize {
    20
}
fn default_noise() -> u8 {
    24
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ron_graph_entry_parses_with_defaults() {
        let text = r#"(dataset: Cifar10(root: "data/cifar10"), num_labeled: 250)"#;
        let config: LoaderConfig = ron::from_str(text).unwrap();
        let DatasetConfig::Cifar10 {
            root,
            download,
            base_url,
        } = &config.dataset
        else {
            panic!("expected Cifar10, got {:?}", config.dataset);
        };
        assert_eq!(root, &PathBuf::from("data/cifar10"));
        assert!(*download);
        assert_eq!(base_url, OFFICIAL_BASE_URL);
        assert_eq!(config.num_labeled, 250);
        assert_eq!(config.batch_size, 64);
        assert_eq!(config.mu, 7);
        assert_eq!(config.eval_step, 1024);
        assert!(!config.expand_labeled);
    }

    #[test]
    fn ron_unknown_field_is_rejected() {
        let text = r#"(dataset: Synthetic(classes: 3), num_labelled: 30)"#;
        let error = ron::from_str::<LoaderConfig>(text).unwrap_err().to_string();
        assert!(error.contains("num_labelled"), "{error}");

        let text = r#"(dataset: Cifar100(root: "x", downlaod: false))"#;
        let error = ron::from_str::<LoaderConfig>(text).unwrap_err().to_string();
        assert!(error.contains("downlaod"), "{error}");
    }

    #[test]
    fn ron_image_folder_and_synthetic_parse() {
        let text = r#"(dataset: ImageFolder(root: "pets", height: 48, filter: Lanczos3))"#;
        let config: LoaderConfig = ron::from_str(text).unwrap();
        let expected = DatasetConfig::ImageFolder {
            root: "pets".into(),
            test_root: None,
            height: 48,
            width: 32,
            filter: ResizeFilter::Lanczos3,
        };
        assert_eq!(config.dataset, expected);

        let config: LoaderConfig = ron::from_str("(dataset: Synthetic())").unwrap();
        let expected = DatasetConfig::synthetic(&SyntheticSpec::default());
        assert_eq!(config.dataset, expected);
        assert_eq!(
            config.dataset.synthetic_spec(),
            Some(SyntheticSpec::default())
        );
    }

    #[test]
    fn validate_rejects_zero_batch_size() {
        let mut config = LoaderConfig::new(DatasetConfig::synthetic(&SyntheticSpec::default()));
        config.batch_size = 0;
        let message = config.validate().unwrap_err().to_string();
        assert_eq!(
            message,
            "invalid loader setting batch_size = 0: must be at least 1"
        );
    }

    #[test]
    fn validate_rejects_oversized_images() {
        let folder = DatasetConfig::ImageFolder {
            root: "x".into(),
            test_root: None,
            height: 32,
            width: 5000,
            filter: ResizeFilter::Bilinear,
        };
        let config = LoaderConfig::new(folder);
        let message = config.validate().unwrap_err().to_string();
        assert!(message.contains("width = 5000"), "{message}");
    }
}
