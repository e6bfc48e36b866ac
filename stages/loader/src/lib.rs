//! Datasets and batch sequencing of ccssl.
//!
//! The crate reads CIFAR-10 and CIFAR-100, ImageFolder trees and a synthetic dataset into one
//! in-memory [`Dataset`]. CIFAR comes as official binary batches, from a directory or the
//! official `.tar.gz`, which is downloaded into a cache when allowed. The crate also draws and
//! saves the labeled split ([`LabeledSplit`]) and turns (seed, step) into the step's labeled
//! and unlabeled batch ([`Loader::batch`]), and runs as the loader stage of a pipeline
//! ([`stage::run`]).
//!
//! ```no_run
//! use ccssl_loader::{DatasetConfig, Loader, LoaderConfig};
//!
//! let config = LoaderConfig::new(DatasetConfig::cifar10_local("data/cifar10"));
//! let mut loader = Loader::open(&config, 1, "runs/demo".as_ref())?;
//! let batch = loader.batch(0);
//! assert_eq!(batch.labels.len(), 64);
//! # Ok::<(), ccssl_loader::LoaderError>(())
//! ```

mod cifar;
mod config;
mod dataset;
mod download;
mod error;
mod folder;
mod rng;
mod sequence;
mod split;
pub mod stage;
mod synthetic;
#[cfg(test)]
mod testutil;

pub use config::{DatasetConfig, LoaderConfig, OFFICIAL_BASE_URL, ResizeFilter, SyntheticSpec};
pub use dataset::{Dataset, Part};
pub use download::{ArchiveSpec, cache_dir, ensure_archive};
pub use error::LoaderError;
pub use folder::read_image_resized;
pub use sequence::{BatchIndices, Loader, batch_seed};
pub use split::{LabeledSplit, SPLIT_FILE};
pub use synthetic::generate as generate_synthetic;

/// Reads `part` of the dataset `config` describes.
pub fn load_dataset(config: &DatasetConfig, part: Part) -> Result<Dataset, LoaderError> {
    match config {
        DatasetConfig::Cifar10 {
            root,
            download,
            base_url,
        } => cifar::load(cifar::CifarKind::Ten, root, *download, base_url, part),
        DatasetConfig::Cifar100 {
            root,
            download,
            base_url,
        } => cifar::load(cifar::CifarKind::Hundred, root, *download, base_url, part),
        DatasetConfig::ImageFolder {
            root,
            test_root,
            height,
            width,
            filter,
        } => {
            let resize = folder::Resize {
                height: *height,
                width: *width,
                filter: *filter,
            };
            folder::load(root, test_root.as_deref(), resize, part)
        }
        DatasetConfig::Synthetic { .. } => {
            let spec = config.synthetic_spec().expect("variant is Synthetic");
            Ok(synthetic::generate(&spec, part))
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::testutil::{TempDir, cifar_records};

    fn real_sample() -> std::path::PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data/cifar10")
    }

    #[test]
    fn loader_opens_real_cifar10_sample() {
        let run = TempDir::new("lib-real");
        let config = LoaderConfig::new(DatasetConfig::cifar10_local(real_sample()));

        let mut loader = Loader::open(&config, 1, run.path()).unwrap();
        let batch = loader.batch(0);

        assert_eq!(loader.dataset().len(), 10_000);
        assert_eq!(loader.split().labeled.len(), 4000);
        assert!(run.path().join(SPLIT_FILE).is_file());
        assert_eq!(batch.labels.len(), 64);
        assert_eq!(batch.unlabeled_indices.len(), 448);
        assert_eq!((batch.height, batch.width), (32, 32));
    }

    #[test]
    fn cifar100_loads_through_config() {
        let root = TempDir::new("lib-cifar100");
        std::fs::write(root.path().join("test.bin"), cifar_records(&[17, 3], 2, 0)).unwrap();

        let config = DatasetConfig::cifar100_local(root.path());
        let test = load_dataset(&config, Part::Test).unwrap();

        assert_eq!(test.labels, vec![17, 3]);
        assert_eq!(test.num_classes(), 100);
    }

    #[test]
    fn cifar10_missing_root_without_download() {
        let root = TempDir::new("lib-missing");
        let missing = root.path().join("cifar10");

        let error = load_dataset(&DatasetConfig::cifar10_local(&missing), Part::Train).unwrap_err();

        assert!(
            matches!(error, LoaderError::RootNotFound { .. }),
            "{error:?}"
        );
    }

    #[test]
    fn loader_opens_image_folder() {
        let root = TempDir::new("lib-folder");
        for (class, colour) in [("a", [255, 0, 0]), ("b", [0, 0, 255])] {
            for index in 0..3 {
                let path = root.path().join(format!("train/{class}/{index}.png"));
                std::fs::create_dir_all(path.parent().unwrap()).unwrap();
                image::RgbImage::from_pixel(20, 10, image::Rgb(colour))
                    .save(path)
                    .unwrap();
            }
        }
        let dataset = DatasetConfig::ImageFolder {
            root: root.path().join("train"),
            test_root: None,
            height: 8,
            width: 8,
            filter: ResizeFilter::Bilinear,
        };
        let mut config = LoaderConfig::new(dataset);
        config.num_labeled = 2;
        config.batch_size = 2;
        config.mu = 2;

        let mut loader = Loader::open(&config, 0, &root.path().join("run")).unwrap();
        let batch = loader.batch(1);

        assert_eq!(batch.labels.len(), 2);
        assert_eq!(batch.unlabeled_true_labels.len(), 4);
        for (slot, &label) in batch.labels.iter().enumerate() {
            let expected: &[u8] = if label == 0 {
                &[255, 0, 0]
            } else {
                &[0, 0, 255]
            };
            assert_eq!(&batch.labeled_images[slot * 192..][..3], expected);
        }
    }
}
