use super::*;
use crate::config::{DatasetConfig, SyntheticSpec};
use crate::testutil::TempDir;

fn spec() -> SyntheticSpec {
    SyntheticSpec {
        classes: 10,
        train_per_class: 10,
        test_per_class: 1,
        height: 8,
        width: 8,
        ..Default::default()
    }
}

/// 100 training images, 20 labeled, batches of 8 labeled and 24 unlabeled images.
fn config() -> LoaderConfig {
    let mut config = LoaderConfig::new(DatasetConfig::synthetic(&spec()));
    config.num_labeled = 20;
    config.batch_size = 8;
    config.mu = 3;
    config
}

fn loader(seed: u64) -> Loader {
    let train = crate::synthetic::generate(&spec(), Part::Train);
    let split = LabeledSplit::draw(&train, &config(), seed).unwrap();
    Loader::new(train, split, &config(), seed).unwrap()
}

/// Checks that consecutive windows of `len` items are permutations of `expected`, and that
/// the first two windows differ in order.
fn assert_epochs(stream: &[u32], len: usize, expected: &[u32]) {
    let mut sorted_expected = expected.to_vec();
    sorted_expected.sort_unstable();
    for (epoch, window) in stream.chunks_exact(len).enumerate() {
        let mut sorted = window.to_vec();
        sorted.sort_unstable();
        assert_eq!(
            sorted, sorted_expected,
            "epoch {epoch} is not a permutation"
        );
    }
    assert_ne!(
        stream[..len],
        stream[len..2 * len],
        "two epochs in the same order"
    );
}

#[test]
fn batch_computed_directly_equals_iterated() {
    let mut iterated = loader(3);
    let walked: Vec<RawBatch> = (0..40).map(|seq| iterated.batch(seq)).collect();

    let mut direct = loader(3);
    for seq in [37, 5, 0, 39, 12] {
        assert_eq!(direct.batch(seq), walked[seq as usize], "batch {seq}");
    }
}

#[test]
fn batch_holds_dataset_images_and_labels() {
    let mut loader = loader(3);
    let batch = loader.batch(6);

    assert_eq!((batch.seq, batch.seed), (6, batch_seed(3, 6)));
    assert_eq!((batch.height, batch.width), (8, 8));
    assert_eq!(batch.labels.len(), 8);
    assert_eq!(batch.unlabeled_indices.len(), 24);
    assert_eq!(batch.labeled_images.len(), 8 * batch.image_bytes());
    assert_eq!(batch.unlabeled_images.len(), 24 * batch.image_bytes());
    let train = loader.dataset();
    for (slot, &index) in batch.labeled_indices.iter().enumerate() {
        assert!(
            loader.split().labeled.contains(&index),
            "labeled batch holds unlabeled image {index}"
        );
        assert_eq!(batch.labels[slot], train.labels[index as usize]);
        assert_eq!(
            &batch.labeled_images[slot * 192..][..192],
            train.image(index as usize)
        );
    }
    for (slot, &index) in batch.unlabeled_indices.iter().enumerate() {
        assert_eq!(
            batch.unlabeled_true_labels[slot],
            train.labels[index as usize]
        );
        assert_eq!(
            &batch.unlabeled_images[slot * 192..][..192],
            train.image(index as usize)
        );
    }
}

#[test]
fn streams_are_per_epoch_permutations() {
    let mut loader = loader(11);
    let mut labeled = Vec::new();
    let mut unlabeled = Vec::new();
    // 25 batches: 200 labeled positions (10 epochs of 20), 600 unlabeled (6 epochs of 100).
    for seq in 0..25 {
        let indices = loader.batch_indices(seq);
        labeled.extend(indices.labeled);
        unlabeled.extend(indices.unlabeled);
    }
    assert_epochs(&labeled, 20, &loader.split().labeled.clone());
    assert_epochs(&unlabeled, 100, &(0..100).collect::<Vec<u32>>());
}

#[test]
fn stream_shorter_than_batch_spans_epochs() {
    let mut stream = EpochStream::new(vec![10, 20, 30], 1, Domain::LabeledEpoch);
    let mut first = Vec::new();
    stream.fill(0, 7, &mut first);
    let mut second = Vec::new();
    stream.fill(1, 7, &mut second);

    let positions: Vec<u32> = first.into_iter().chain(second).collect();
    assert_eq!(positions.len(), 14);
    assert_epochs(&positions[..12], 3, &[10, 20, 30]);

    let mut fresh = EpochStream::new(vec![10, 20, 30], 1, Domain::LabeledEpoch);
    let mut again = Vec::new();
    fresh.fill(1, 7, &mut again);
    assert_eq!(again, positions[7..]);
}

#[test]
fn different_seeds_give_different_batches() {
    let (first, second) = (loader(1).batch(0), loader(2).batch(0));
    assert_ne!(first.labeled_indices, second.labeled_indices);
    assert_ne!(first.unlabeled_indices, second.unlabeled_indices);
    assert_ne!(first.seed, second.seed);
    assert_ne!(batch_seed(1, 0), batch_seed(1, 1));
}

#[test]
fn resumed_loader_continues_sequence() {
    let run = TempDir::new("sequence-resume");
    let mut first = Loader::open(&config(), 4, run.path()).unwrap();
    let before: Vec<RawBatch> = (0..30).map(|seq| first.batch(seq)).collect();
    let split_json = std::fs::read(run.path().join(crate::split::SPLIT_FILE)).unwrap();
    drop(first);

    let mut resumed = Loader::open(&config(), 4, run.path()).unwrap();

    assert_eq!(
        std::fs::read(run.path().join(crate::split::SPLIT_FILE)).unwrap(),
        split_json
    );
    for seq in 20..30 {
        assert_eq!(resumed.batch(seq), before[seq as usize], "batch {seq}");
    }
}

#[test]
fn fill_batch_reuses_buffers() {
    let mut loader = loader(5);
    let mut batch = loader.batch(0);
    loader.fill_batch(9, &mut batch);
    assert_eq!(batch, loader.batch(9));
}

#[test]
fn new_rejects_split_of_other_seed() {
    let train = crate::synthetic::generate(&spec(), Part::Train);
    let split = LabeledSplit::draw(&train, &config(), 1).unwrap();

    let message = Loader::new(train, split, &config(), 2)
        .unwrap_err()
        .to_string();

    assert_eq!(
        message,
        "labeled split does not fit the dataset or the settings: split was drawn with seed 1, \
         but the run seed is 2"
    );
}

/// Not a benchmark: a guard that assembling batches stays far from being the bottleneck.
/// Measured on a shared, busy machine, so the bound is loose.
#[test]
fn assembles_well_over_ten_thousand_images_per_second() {
    let spec = SyntheticSpec {
        classes: 10,
        train_per_class: 100,
        height: 32,
        width: 32,
        ..Default::default()
    };
    let mut config = LoaderConfig::new(DatasetConfig::synthetic(&spec));
    config.num_labeled = 250;
    let train = crate::synthetic::generate(&spec, Part::Train);
    let split = LabeledSplit::draw(&train, &config, 0).unwrap();
    let mut loader = Loader::new(train, split, &config, 0).unwrap();

    let mut batch = RawBatch::default();
    let started = Instant::now();
    for seq in 0..200 {
        loader.fill_batch(seq, &mut batch);
    }
    let rate = 200.0 * 512.0 / started.elapsed().as_secs_f64();
    eprintln!("loader throughput: {rate:.0} images/s (32x32, batch 64, mu 7)");
    assert!(rate > 10_000.0, "only {rate:.0} images/s");
}
