//! Datasets and batch sequencing of ccssl.
//!
//! Reads CIFAR-10 and CIFAR-100 (official binary batches, from a directory or the official
//! `.tar.gz`, downloaded into a cache when allowed), ImageFolder trees and a synthetic dataset
//! into one in-memory [`Dataset`]; draws and saves the labeled split ([`LabeledSplit`]); and
//! turns (seed, step) into the step's labeled and unlabeled batch ([`Loader::batch`]).
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
pub mod config;
mod dataset;
mod download;
mod error;
mod folder;
mod rng;
mod sequence;
mod split;
mod synthetic;
#[cfg(test)]
mod testutil;

pub use config::{DatasetConfig, LoaderConfig, OFFICIAL_BASE_URL, ResizeFilter, SyntheticSpec};
pub use dataset::{Dataset, Part};
pub use download::{ArchiveSpec, cache_dir, ensure_archive};
pub use error::LoaderError;
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
