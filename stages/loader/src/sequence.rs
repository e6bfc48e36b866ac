//! Batch sequencing: batch `seq` as a pure function of (run seed, `seq`).
//!
//! The labeled stream (the split's labeled list, expanded) and the unlabeled stream (every
//! training image) are each read as an endless concatenation of per-epoch permutations. The
//! permutation of epoch `e` comes from a ChaCha stream keyed by (seed, stream kind) at stream
//! number `e`. Batch `seq` takes positions `seq * B .. (seq + 1) * B` of the labeled stream and
//! `seq * mu * B .. (seq + 1) * mu * B` of the unlabeled stream; position `p` lies in epoch
//! `p / len` at offset `p % len`. A batch may straddle two epochs. Unlike the reference's
//! `drop_last` data loaders, no image is skipped at the end of an epoch, so every image is
//! seen equally often.

use std::path::Path;
use std::time::{Duration, Instant};

use ccssl_pipe::batch::RawBatch;
use rand::RngCore;

use crate::config::LoaderConfig;
use crate::dataset::{Dataset, Part};
use crate::error::LoaderError;
use crate::rng::{Domain, permutation, stream_rng};
use crate::split::LabeledSplit;

/// Batches between two throughput log lines.
const LOG_EVERY_BATCHES: u64 = 1000;

/// Derives the seed handed downstream with batch `seq` of a run seeded with `seed`.
pub fn batch_seed(seed: u64, seq: u64) -> u64 {
    stream_rng(seed, Domain::BatchSeed, seq).next_u64()
}

/// Dataset indices of one batch.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BatchIndices {
    /// Labeled images, `batch_size` of them.
    pub labeled: Vec<u32>,
    /// Unlabeled images, `mu * batch_size` of them.
    pub unlabeled: Vec<u32>,
}

/// Produces the batches of a run from the training set and its labeled split.
#[derive(Debug)]
pub struct Loader {
    seed: u64,
    batch_size: usize,
    unlabeled_size: usize,
    train: Dataset,
    split: LabeledSplit,
    labeled: EpochStream,
    unlabeled: EpochStream,
    stats: Throughput,
}

impl Loader {
    /// Reads the training set of `config`, loads `run_dir/split.json` or draws and saves it,
    /// and returns the loader of a run seeded with `seed`.
    pub fn open(config: &LoaderConfig, seed: u64, run_dir: &Path) -> Result<Self, LoaderError> {
        config.validate()?;
        let train = crate::load_dataset(&config.dataset, Part::Train)?;
        let split = LabeledSplit::load_or_draw(run_dir, &train, config, seed)?;
        Self::new(train, split, config, seed)
    }

    /// A loader over `train` with `split`, which must fit `train`, `config` and `seed`.
    pub fn new(
        train: Dataset,
        split: LabeledSplit,
        config: &LoaderConfig,
        seed: u64,
    ) -> Result<Self, LoaderError> {
        config.validate()?;
        split
            .check(&train, config, seed)
            .map_err(|reason| LoaderError::SplitUnfit { reason })?;
        if train.is_empty() {
            return Err(LoaderError::Config {
                field: "dataset",
                value: train.name.clone(),
                reason: "the training set holds no image".to_string(),
            });
        }
        let labeled = EpochStream::new(split.labeled_stream(), seed, Domain::LabeledEpoch);
        let unlabeled = EpochStream::new(
            (0..train.len() as u32).collect(),
            seed,
            Domain::UnlabeledEpoch,
        );
        Ok(Self {
            seed,
            batch_size: config.batch_size,
            unlabeled_size: config.batch_size * config.mu,
            train,
            split,
            labeled,
            unlabeled,
            stats: Throughput::default(),
        })
    }

    /// Returns the training set.
    pub fn dataset(&self) -> &Dataset {
        &self.train
    }

    /// Returns the labeled split.
    pub fn split(&self) -> &LabeledSplit {
        &self.split
    }

    /// Labeled images per batch.
    pub fn batch_size(&self) -> usize {
        self.batch_size
    }

    /// Unlabeled images per batch (`mu * batch_size`).
    pub fn unlabeled_size(&self) -> usize {
        self.unlabeled_size
    }

    /// Dataset indices of batch `seq`.
    pub fn batch_indices(&mut self, seq: u64) -> BatchIndices {
        let mut indices = BatchIndices::default();
        self.labeled
            .fill(seq, self.batch_size, &mut indices.labeled);
        self.unlabeled
            .fill(seq, self.unlabeled_size, &mut indices.unlabeled);
        indices
    }

    /// Batch `seq`.
    pub fn batch(&mut self, seq: u64) -> RawBatch {
        let mut batch = RawBatch::default();
        self.fill_batch(seq, &mut batch);
        batch
    }

    /// Writes batch `seq` into `batch`, reusing its buffers.
    pub fn fill_batch(&mut self, seq: u64, batch: &mut RawBatch) {
        let started = Instant::now();
        batch.seq = seq;
        batch.seed = batch_seed(self.seed, seq);
        batch.height = self.train.height;
        batch.width = self.train.width;

        self.labeled
            .fill(seq, self.batch_size, &mut batch.labeled_indices);
        gather(
            &self.train,
            &batch.labeled_indices,
            &mut batch.labeled_images,
            &mut batch.labels,
        );
        self.unlabeled
            .fill(seq, self.unlabeled_size, &mut batch.unlabeled_indices);
        gather(
            &self.train,
            &batch.unlabeled_indices,
            &mut batch.unlabeled_images,
            &mut batch.unlabeled_true_labels,
        );

        let images = (self.batch_size + self.unlabeled_size) as u64;
        self.stats.record(images, started.elapsed());
    }
}

/// Copies the images and labels of `indices` out of `dataset`.
fn gather(dataset: &Dataset, indices: &[u32], images: &mut Vec<u8>, labels: &mut Vec<u32>) {
    images.clear();
    labels.clear();
    images.reserve(indices.len() * dataset.image_bytes());
    for &index in indices {
        images.extend_from_slice(dataset.image(index as usize));
        labels.push(dataset.labels[index as usize]);
    }
}

/// An index list read as a sequence of per-epoch permutations of it.
#[derive(Debug)]
struct EpochStream {
    items: Vec<u32>,
    seed: u64,
    domain: Domain,
    /// The two most recent epochs and their orders: a batch touches at most two consecutive
    /// epochs unless it is longer than the list, so this avoids recomputing in sequence.
    cached: [Option<(u64, Vec<u32>)>; 2],
}

impl EpochStream {
    fn new(items: Vec<u32>, seed: u64, domain: Domain) -> Self {
        Self {
            items,
            seed,
            domain,
            cached: [None, None],
        }
    }

    /// Writes the `count` items of batch `seq` into `out`.
    fn fill(&mut self, seq: u64, count: usize, out: &mut Vec<u32>) {
        out.clear();
        let len = self.items.len() as u128;
        let first = u128::from(seq) * count as u128;
        for position in first..first + count as u128 {
            let epoch = (position / len) as u64;
            let offset = (position % len) as usize;
            let order = self.order(epoch);
            out.push(order[offset]);
        }
    }

    /// Returns the permuted items of `epoch`, computing them unless cached.
    fn order(&mut self, epoch: u64) -> &[u32] {
        let slot = match self
            .cached
            .iter()
            .position(|entry| matches!(entry, Some((cached, _)) if *cached == epoch))
        {
            Some(slot) => slot,
            None => {
                let mut rng = stream_rng(self.seed, self.domain, epoch);
                let order: Vec<u32> = permutation(&mut rng, self.items.len())
                    .into_iter()
                    .map(|i| self.items[i as usize])
                    .collect();
                tracing::debug!(stream = ?self.domain, epoch, len = order.len(), "new epoch order");
                // Keep the newer of the two cached epochs and replace the other.
                let stale = match &self.cached {
                    [Some((a, _)), Some((b, _))] => usize::from(a > b),
                    [None, _] => 0,
                    _ => 1,
                };
                self.cached[stale] = Some((epoch, order));
                stale
            }
        };
        &self.cached[slot]
            .as_ref()
            .expect("slot was just filled or found")
            .1
    }
}

/// Counts images assembled and the time spent, logging images/s every
/// [`LOG_EVERY_BATCHES`] batches.
#[derive(Debug, Default)]
struct Throughput {
    batches: u64,
    images: u64,
    busy: Duration,
}

impl Throughput {
    fn record(&mut self, images: u64, elapsed: Duration) {
        self.batches += 1;
        self.images += images;
        self.busy += elapsed;
        if self.batches.is_multiple_of(LOG_EVERY_BATCHES) {
            let rate = self.images as f64 / self.busy.as_secs_f64().max(1e-9);
            tracing::info!(
                batches = self.batches,
                images = self.images,
                images_per_second = rate as u64,
                "loader assembled {} batches at {:.0} images/s of loader time",
                self.batches,
                rate
            );
        }
    }
}

#[cfg(test)]
#[path = "sequence_tests.rs"]
mod tests;
