//! Views depend only on (batch seed, sequence number, image position, view): not on the number
//! of worker threads, on how images are grouped, or on how many replicas share the batches.

use ccssl_augment::{AugmentConfig, AugmentError, RgbImage, View, augment_batch, augment_image};
use ccssl_pipe::batch::{RawBatch, ViewBatch};

const SIDE: u32 = 32;
const BYTES: usize = (SIDE * SIDE * 3) as usize;

/// Builds a batch of textured images (gradients with a per-image phase), which every op changes.
fn batch(seq: u64, labeled: usize, unlabeled: usize) -> RawBatch {
    let image = |k: usize| -> Vec<u8> {
        (0..BYTES)
            .map(|i| {
                let (pixel, channel) = (i / 3, i % 3);
                let (x, y) = (pixel % SIDE as usize, pixel / SIDE as usize);
                ((x * (3 + k) + y * (5 + channel) + k * 17 + (x * y) % 13) % 256) as u8
            })
            .collect()
    };
    RawBatch {
        seq,
        seed: 0x5EED_0000 + seq * 7919,
        height: SIDE,
        width: SIDE,
        labeled_images: (0..labeled).flat_map(image).collect(),
        labels: (0..labeled as u32).map(|i| i % 10).collect(),
        labeled_indices: (0..labeled as u32).collect(),
        unlabeled_images: (100..100 + unlabeled).flat_map(image).collect(),
        unlabeled_true_labels: (0..unlabeled as u32).map(|i| i % 10).collect(),
        unlabeled_indices: (1000..1000 + unlabeled as u32).collect(),
    }
}

#[test]
fn thread_count_does_not_change_views() {
    let raw = batch(3, 16, 45);
    let config = AugmentConfig::ccssl();
    let one = augment_batch(&raw, &config, 1).unwrap();
    for threads in [2, 4, 7] {
        assert_eq!(
            augment_batch(&raw, &config, threads).unwrap(),
            one,
            "{threads} threads"
        );
    }
}

#[test]
fn image_groups_reproduce_the_batch() {
    let raw = batch(5, 4, 30);
    let config = AugmentConfig::ccssl();
    let whole = augment_batch(&raw, &config, 1).unwrap();

    // Three groups, processed on three threads, last group first.
    let groups = [0..10, 10..21, 21..30];
    let mut strong = vec![0u8; raw.unlabeled_images.len()];
    let mut contrast = vec![0u8; raw.unlabeled_images.len()];
    let parts: Vec<Vec<(usize, RgbImage, RgbImage)>> = std::thread::scope(|scope| {
        let handles: Vec<_> = groups
            .iter()
            .rev()
            .map(|group| {
                let raw = &raw;
                let config = &config;
                scope.spawn(move || {
                    group
                        .clone()
                        .map(|i| {
                            let image = RgbImage::from_slice(
                                32,
                                32,
                                &raw.unlabeled_images[i * BYTES..(i + 1) * BYTES],
                            )
                            .unwrap();
                            let s = augment_image(
                                &image,
                                config,
                                raw.seed,
                                raw.seq,
                                i as u64,
                                View::UnlabeledStrong,
                            );
                            let c = augment_image(
                                &image,
                                config,
                                raw.seed,
                                raw.seq,
                                i as u64,
                                View::UnlabeledContrast,
                            );
                            (i, s, c)
                        })
                        .collect()
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for (i, s, c) in parts.into_iter().flatten() {
        strong[i * BYTES..(i + 1) * BYTES].copy_from_slice(s.as_bytes());
        contrast[i * BYTES..(i + 1) * BYTES].copy_from_slice(c.as_bytes());
    }
    assert_eq!(strong, whole.unlabeled_strong);
    assert_eq!(contrast, whole.unlabeled_contrast);
}

#[test]
fn replica_count_does_not_change_views() {
    let config = AugmentConfig::ccssl();
    let batches: Vec<RawBatch> = (0..6).map(|seq| batch(seq, 2, 6)).collect();
    let single: Vec<ViewBatch> = batches
        .iter()
        .map(|b| augment_batch(b, &config, 1).unwrap())
        .collect();

    // Three replicas, each a thread taking the batches with seq % 3 == r, merged by seq.
    let mut merged: Vec<ViewBatch> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..3u64)
            .map(|replica| {
                let (batches, config) = (&batches, &config);
                scope.spawn(move || {
                    batches
                        .iter()
                        .filter(|b| b.seq % 3 == replica)
                        .map(|b| augment_batch(b, config, 2).unwrap())
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect()
    });
    merged.sort_by_key(|b| b.seq);
    assert_eq!(merged, single);
}

#[test]
fn seed_and_seq_change_views() {
    let config = AugmentConfig::ccssl();
    let raw = batch(1, 2, 8);
    let base = augment_batch(&raw, &config, 1).unwrap();
    let reseeded = augment_batch(
        &RawBatch {
            seed: raw.seed + 1,
            ..raw.clone()
        },
        &config,
        1,
    )
    .unwrap();
    let next_seq = augment_batch(
        &RawBatch {
            seq: raw.seq + 1,
            ..raw.clone()
        },
        &config,
        1,
    )
    .unwrap();
    assert_ne!(base.unlabeled_strong, reseeded.unlabeled_strong);
    assert_ne!(base.unlabeled_strong, next_seq.unlabeled_strong);
    assert_eq!(
        augment_batch(&raw, &config, 1).unwrap(),
        base,
        "same seed must repeat"
    );
}

#[test]
fn views_are_independent_draws() {
    let raw = batch(2, 0, 8);
    let out = augment_batch(&raw, &AugmentConfig::ccssl(), 1).unwrap();
    assert_ne!(out.unlabeled_weak, out.unlabeled_strong);
    assert_ne!(out.unlabeled_weak, out.unlabeled_contrast);
    assert_ne!(out.unlabeled_weak, raw.unlabeled_images);
}

#[test]
fn batch_metadata_is_copied() {
    let raw = batch(9, 3, 5);
    let out = augment_batch(&raw, &AugmentConfig::ccssl(), 2).unwrap();
    assert_eq!(
        (out.seq, out.seed, out.width, out.height),
        (raw.seq, raw.seed, raw.width, raw.height)
    );
    assert_eq!(out.labels, raw.labels);
    assert_eq!(out.labeled_indices, raw.labeled_indices);
    assert_eq!(out.unlabeled_indices, raw.unlabeled_indices);
    assert_eq!(out.unlabeled_true_labels, raw.unlabeled_true_labels);
    assert_eq!(out.labeled_weak.len(), 3 * BYTES);
    assert_eq!(out.unlabeled_contrast.len(), 5 * BYTES);
}

#[test]
fn fixmatch_config_has_no_contrast_view() {
    let out = augment_batch(&batch(0, 2, 4), &AugmentConfig::default(), 2).unwrap();
    assert!(out.unlabeled_contrast.is_empty());
    assert_eq!(out.unlabeled_strong.len(), 4 * BYTES);
}

#[test]
fn empty_batch_gives_empty_views() {
    let out = augment_batch(&batch(0, 0, 0), &AugmentConfig::ccssl(), 4).unwrap();
    assert!(out.labeled_weak.is_empty());
    assert!(out.unlabeled_weak.is_empty());
    assert!(out.unlabeled_contrast.is_empty());
}

#[test]
fn inconsistent_batch_is_rejected() {
    let mut raw = batch(4, 2, 3);
    raw.labels.push(1);
    let err = augment_batch(&raw, &AugmentConfig::default(), 1).unwrap_err();
    assert_eq!(
        err.to_string(),
        "invalid batch 4: 6144 labeled image bytes for 3 labels of 32x32 RGB images (expected 9216)"
    );

    let mut raw = batch(4, 2, 3);
    raw.unlabeled_true_labels.pop();
    let err = augment_batch(&raw, &AugmentConfig::default(), 1).unwrap_err();
    assert_eq!(
        err.to_string(),
        "invalid batch 4: 2 unlabeled true labels for 3 indices"
    );
}

#[test]
fn padding_larger_than_image_is_rejected() {
    let mut config = AugmentConfig::default();
    config.weak.pad = 40;
    let err = augment_batch(&batch(0, 1, 1), &config, 1).unwrap_err();
    assert!(
        matches!(
            err,
            AugmentError::Config {
                field: "weak.pad",
                ..
            }
        ),
        "{err:?}"
    );
}
