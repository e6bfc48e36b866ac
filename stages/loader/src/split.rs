//! The labeled split, drawn as FixMatch's `x_u_split` draws it.
//!
//! `num_labeled / num_classes` images of each class are drawn without replacement with the run
//! seed; the unlabeled set is every training image, labeled ones included. When
//! `expand_labeled` is set, or when `num_labeled < batch_size`, the labeled index list is
//! repeated `ceil(batch_size * eval_step / num_labeled)` times, so that one pass over it lasts
//! at least `eval_step` batches. The reference then shuffles the list once; here the batch
//! sequence shuffles it anew every epoch, so the stored list keeps the draw order.
//!
//! The split is saved as `split.json` in the run directory and loaded again on resume, after
//! checking that it fits the dataset and the settings.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::config::LoaderConfig;
use crate::dataset::Dataset;
use crate::error::{LoaderError, io_error};
use crate::rng::{Domain, below, stream_rng};

/// File name of the saved split inside the run directory.
pub const SPLIT_FILE: &str = "split.json";
/// Version of the `split.json` layout.
const SPLIT_VERSION: u32 = 1;

/// The labeled images of a run, with what is needed to check it on resume.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LabeledSplit {
    /// Layout version of the file, currently 1.
    pub version: u32,
    /// Name of the dataset it was drawn on.
    pub dataset: String,
    /// Training images of that dataset; the unlabeled set is `0..num_train`.
    pub num_train: usize,
    /// Classes of that dataset.
    pub num_classes: usize,
    /// [`Dataset::labels_fingerprint`] of the training labels, as 16 hex digits.
    pub labels_fingerprint: String,
    /// Run seed the split was drawn with.
    pub seed: u64,
    /// Number of labeled images.
    pub num_labeled: usize,
    /// Dataset indices of the labeled images, class by class in draw order.
    pub labeled: Vec<u32>,
    /// Times the labeled list is repeated in the labeled stream (1 = no expansion).
    pub expand_copies: usize,
}

impl LabeledSplit {
    /// Draws the split of `train` for `config` with `seed`.
    pub fn draw(train: &Dataset, config: &LoaderConfig, seed: u64) -> Result<Self, LoaderError> {
        let num_classes = train.num_classes();
        let num_labeled = config.num_labeled;
        if num_classes == 0 || !num_labeled.is_multiple_of(num_classes) {
            return Err(LoaderError::NumLabeledNotDivisible {
                num_labeled,
                num_classes,
            });
        }
        let per_class = num_labeled / num_classes;
        let counts = train.class_counts();
        if let Some((class, &available)) = counts
            .iter()
            .enumerate()
            .find(|&(_, &count)| count < per_class)
        {
            let smallest = counts.iter().copied().min().unwrap_or(0);
            return Err(LoaderError::ClassTooSmall {
                num_labeled,
                per_class,
                class,
                name: train.class_names[class].clone(),
                available,
                max: smallest * num_classes,
            });
        }

        let mut labeled = Vec::with_capacity(num_labeled);
        for class in 0..num_classes {
            let mut members: Vec<u32> = (0..train.len() as u32)
                .filter(|&index| train.labels[index as usize] as usize == class)
                .collect();
            // Partial Fisher-Yates: the first `per_class` entries become a uniform sample
            // without replacement, in random order.
            let mut rng = stream_rng(seed, Domain::Split, class as u64);
            for i in 0..per_class {
                let j = i + below(&mut rng, (members.len() - i) as u64) as usize;
                members.swap(i, j);
            }
            labeled.extend_from_slice(&members[..per_class]);
        }

        let split = Self {
            version: SPLIT_VERSION,
            dataset: train.name.clone(),
            num_train: train.len(),
            num_classes,
            labels_fingerprint: format!("{:016x}", train.labels_fingerprint()),
            seed,
            num_labeled,
            labeled,
            expand_copies: expand_copies(config),
        };
        tracing::info!(
            dataset = split.dataset,
            num_labeled,
            per_class,
            expand_copies = split.expand_copies,
            unlabeled = split.num_train,
            seed,
            "drew labeled split"
        );
        Ok(split)
    }

    /// Returns the labeled index list the batch sequence cycles through: `labeled` repeated
    /// `expand_copies` times.
    pub fn labeled_stream(&self) -> Vec<u32> {
        self.labeled.repeat(self.expand_copies.max(1))
    }

    /// Writes the split as JSON to `path` through a temporary file and a rename, so a crash
    /// never leaves a half-written split behind.
    pub fn save(&self, path: &Path) -> Result<(), LoaderError> {
        let json = serde_json::to_vec_pretty(self).map_err(|source| LoaderError::SplitParse {
            path: path.to_path_buf(),
            source,
        })?;
        let temporary = path.with_extension("json.tmp");
        std::fs::write(&temporary, json).map_err(io_error(&temporary))?;
        std::fs::File::open(&temporary)
            .and_then(|file| file.sync_all())
            .map_err(io_error(&temporary))?;
        std::fs::rename(&temporary, path).map_err(io_error(path))
    }

    /// Reads a split saved by [`save`](Self::save) and checks it against `train`, `config` and
    /// `seed`.
    pub fn load(
        path: &Path,
        train: &Dataset,
        config: &LoaderConfig,
        seed: u64,
    ) -> Result<Self, LoaderError> {
        let bytes = std::fs::read(path).map_err(io_error(path))?;
        let split: Self =
            serde_json::from_slice(&bytes).map_err(|source| LoaderError::SplitParse {
                path: path.to_path_buf(),
                source,
            })?;
        split
            .check(train, config, seed)
            .map_err(|reason| LoaderError::SplitMismatch {
                path: path.to_path_buf(),
                reason,
            })?;
        tracing::info!(path = %path.display(), num_labeled = split.num_labeled, "reusing saved split");
        Ok(split)
    }

    /// Loads `run_dir/split.json` when it exists, else draws the split and saves it there.
    pub fn load_or_draw(
        run_dir: &Path,
        train: &Dataset,
        config: &LoaderConfig,
        seed: u64,
    ) -> Result<Self, LoaderError> {
        let path = run_dir.join(SPLIT_FILE);
        if path.exists() {
            return Self::load(&path, train, config, seed);
        }
        let split = Self::draw(train, config, seed)?;
        std::fs::create_dir_all(run_dir).map_err(io_error(run_dir))?;
        split.save(&path)?;
        Ok(split)
    }

    /// Describes the first way the split does not fit, if any.
    pub(crate) fn check(
        &self,
        train: &Dataset,
        config: &LoaderConfig,
        seed: u64,
    ) -> Result<(), String> {
        if self.version != SPLIT_VERSION {
            return Err(format!(
                "layout version {} is not the supported {SPLIT_VERSION}",
                self.version
            ));
        }
        let fingerprint = format!("{:016x}", train.labels_fingerprint());
        if self.dataset != train.name
            || self.num_train != train.len()
            || self.num_classes != train.num_classes()
            || self.labels_fingerprint != fingerprint
        {
            return Err(format!(
                "split was drawn on {} ({} images, {} classes, labels {}), but the dataset is {} \
                 ({} images, {} classes, labels {fingerprint})",
                self.dataset,
                self.num_train,
                self.num_classes,
                self.labels_fingerprint,
                train.name,
                train.len(),
                train.num_classes(),
            ));
        }
        if self.seed != seed {
            return Err(format!(
                "split was drawn with seed {}, but the run seed is {seed}",
                self.seed
            ));
        }
        if self.num_labeled != config.num_labeled || self.labeled.len() != config.num_labeled {
            return Err(format!(
                "split holds {} labeled images (num_labeled {}), but num_labeled is {}",
                self.labeled.len(),
                self.num_labeled,
                config.num_labeled
            ));
        }
        if self.expand_copies != expand_copies(config) {
            return Err(format!(
                "split repeats the labeled list {} times, but the settings give {}",
                self.expand_copies,
                expand_copies(config)
            ));
        }
        self.check_indices(train)
    }

    fn check_indices(&self, train: &Dataset) -> Result<(), String> {
        let mut seen = vec![false; train.len()];
        let mut per_class = vec![0usize; train.num_classes()];
        for &index in &self.labeled {
            let Some(flag) = seen.get_mut(index as usize) else {
                return Err(format!(
                    "labeled index {index} is out of range 0..{}",
                    train.len()
                ));
            };
            if std::mem::replace(flag, true) {
                return Err(format!("labeled index {index} appears twice"));
            }
            per_class[train.labels[index as usize] as usize] += 1;
        }
        let expected = self.num_labeled / train.num_classes().max(1);
        if let Some((class, count)) = per_class
            .iter()
            .enumerate()
            .find(|&(_, &count)| count != expected)
        {
            return Err(format!(
                "class {class} has {count} labeled images, expected {expected}"
            ));
        }
        Ok(())
    }
}

/// Copies of the labeled list in the labeled stream, as the reference computes them.
fn expand_copies(config: &LoaderConfig) -> usize {
    if config.expand_labeled || config.num_labeled < config.batch_size {
        config
            .batch_size
            .saturating_mul(config.eval_step)
            .div_ceil(config.num_labeled.max(1))
    } else {
        1
    }
}

#[cfg(test)]
#[path = "split_tests.rs"]
mod tests;
