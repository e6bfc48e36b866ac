//! Augmentation of whole batches: per-image RNG streams and worker threads.
//!
//! Every (batch seed, sequence number, image position, view) gets its own ChaCha8 stream, so an
//! image's views never depend on how the batch is split among threads or stage replicas.

use ccssl_pipe::batch::{RawBatch, ViewBatch};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use crate::views::{contrast_view, strong_view, weak_view};
use crate::{AugmentConfig, AugmentError, RgbImage};

/// The view an RNG stream is for; part of the stream's key.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum View {
    /// Weak view of a labeled image.
    LabeledWeak,
    /// Weak view of an unlabeled image.
    UnlabeledWeak,
    /// Strong view of an unlabeled image.
    UnlabeledStrong,
    /// Contrast view of an unlabeled image.
    UnlabeledContrast,
}

impl View {
    fn key(self) -> u64 {
        match self {
            Self::LabeledWeak => 0,
            Self::UnlabeledWeak => 1,
            Self::UnlabeledStrong => 2,
            Self::UnlabeledContrast => 3,
        }
    }
}

/// Creates the RNG of one view of one image: ChaCha8 keyed by the little-endian bytes of
/// `seed`, `seq`, `index` (position in its part of the batch) and the view.
pub fn image_rng(seed: u64, seq: u64, index: u64, view: View) -> ChaCha8Rng {
    let mut key = [0u8; 32];
    key[0..8].copy_from_slice(&seed.to_le_bytes());
    key[8..16].copy_from_slice(&seq.to_le_bytes());
    key[16..24].copy_from_slice(&index.to_le_bytes());
    key[24..32].copy_from_slice(&view.key().to_le_bytes());
    ChaCha8Rng::from_seed(key)
}

/// Computes one view of the image at `index` of a batch with `seed` and `seq`. A contrast
/// view with the contrast view switched off returns the image unchanged.
pub fn augment_image(
    image: &RgbImage,
    config: &AugmentConfig,
    seed: u64,
    seq: u64,
    index: u64,
    view: View,
) -> RgbImage {
    let mut rng = image_rng(seed, seq, index, view);
    match view {
        View::LabeledWeak | View::UnlabeledWeak => weak_view(image, &config.weak, &mut rng),
        View::UnlabeledStrong => strong_view(image, &config.weak, &config.strong, &mut rng),
        View::UnlabeledContrast => match &config.contrast {
            Some(contrast) => contrast_view(image, contrast, &mut rng),
            None => image.clone(),
        },
    }
}

/// Images per work item handed to a thread.
const CHUNK_IMAGES: usize = 8;

/// A run of consecutive output images of one view.
struct Job<'a> {
    view: View,
    first: usize,
    source: &'a [u8],
    target: &'a mut [u8],
}

/// Computes every view of `raw` with `threads` worker threads (0 counts as 1).
///
/// Output is byte-identical for any thread count. Errors when the batch's buffers disagree
/// with its counts or the configuration does not fit its image size.
pub fn augment_batch(
    raw: &RawBatch,
    config: &AugmentConfig,
    threads: usize,
) -> Result<ViewBatch, AugmentError> {
    let (width, height) = (raw.width as usize, raw.height as usize);
    check_batch(raw)?;
    config.validate(width, height)?;
    let bytes = raw.image_bytes();
    let contrast_len = if config.contrast.is_some() {
        raw.unlabeled_images.len()
    } else {
        0
    };
    let mut out = ViewBatch {
        seq: raw.seq,
        seed: raw.seed,
        height: raw.height,
        width: raw.width,
        labeled_weak: vec![0; raw.labeled_images.len()],
        labels: raw.labels.clone(),
        labeled_indices: raw.labeled_indices.clone(),
        unlabeled_weak: vec![0; raw.unlabeled_images.len()],
        unlabeled_strong: vec![0; raw.unlabeled_images.len()],
        unlabeled_contrast: vec![0; contrast_len],
        unlabeled_true_labels: raw.unlabeled_true_labels.clone(),
        unlabeled_indices: raw.unlabeled_indices.clone(),
    };
    if bytes == 0 {
        return Ok(out);
    }

    let parts: [(View, &[u8], &mut Vec<u8>); 4] = [
        (
            View::LabeledWeak,
            &raw.labeled_images,
            &mut out.labeled_weak,
        ),
        (
            View::UnlabeledWeak,
            &raw.unlabeled_images,
            &mut out.unlabeled_weak,
        ),
        (
            View::UnlabeledStrong,
            &raw.unlabeled_images,
            &mut out.unlabeled_strong,
        ),
        (
            View::UnlabeledContrast,
            &raw.unlabeled_images,
            &mut out.unlabeled_contrast,
        ),
    ];
    let mut jobs = Vec::new();
    for (view, source, target) in parts {
        for (n, chunk) in target.chunks_mut(CHUNK_IMAGES * bytes).enumerate() {
            let first = n * CHUNK_IMAGES;
            let source = &source[first * bytes..first * bytes + chunk.len()];
            jobs.push(Job {
                view,
                first,
                source,
                target: chunk,
            });
        }
    }

    let threads = threads.max(1).min(jobs.len().max(1));
    tracing::trace!(
        seq = raw.seq,
        jobs = jobs.len(),
        threads,
        "augmenting batch"
    );
    let mut per_thread: Vec<Vec<Job>> = (0..threads).map(|_| Vec::new()).collect();
    for (i, job) in jobs.into_iter().enumerate() {
        per_thread[i % threads].push(job);
    }
    let run = |jobs: Vec<Job>| {
        for job in jobs {
            run_job(job, config, raw.seed, raw.seq, width, height);
        }
    };
    std::thread::scope(|scope| {
        let mut lists = per_thread.into_iter();
        let own = lists.next().unwrap_or_default();
        for list in lists {
            scope.spawn(move || run(list));
        }
        run(own);
    });
    Ok(out)
}

fn run_job(job: Job, config: &AugmentConfig, seed: u64, seq: u64, width: usize, height: usize) {
    let bytes = width * height * 3;
    for (k, (src, dst)) in job
        .source
        .chunks_exact(bytes)
        .zip(job.target.chunks_exact_mut(bytes))
        .enumerate()
    {
        let image = RgbImage::from_slice(width, height, src)
            .expect("chunks have exactly one image's bytes");
        let index = (job.first + k) as u64;
        let view = augment_image(&image, config, seed, seq, index, job.view);
        dst.copy_from_slice(view.as_bytes());
    }
}

fn check_batch(raw: &RawBatch) -> Result<(), AugmentError> {
    let bytes = raw.image_bytes();
    let fail = |reason: String| {
        Err(AugmentError::Batch {
            seq: raw.seq,
            reason,
        })
    };
    let labeled = raw.labels.len();
    if raw.labeled_images.len() != labeled * bytes {
        return fail(format!(
            "{} labeled image bytes for {labeled} labels of {}x{} RGB images (expected {})",
            raw.labeled_images.len(),
            raw.width,
            raw.height,
            labeled * bytes
        ));
    }
    if raw.labeled_indices.len() != labeled {
        return fail(format!(
            "{} labeled indices for {labeled} labels",
            raw.labeled_indices.len()
        ));
    }
    let unlabeled = raw.unlabeled_indices.len();
    if raw.unlabeled_images.len() != unlabeled * bytes {
        return fail(format!(
            "{} unlabeled image bytes for {unlabeled} indices of {}x{} RGB images (expected {})",
            raw.unlabeled_images.len(),
            raw.width,
            raw.height,
            unlabeled * bytes
        ));
    }
    if raw.unlabeled_true_labels.len() != unlabeled {
        return fail(format!(
            "{} unlabeled true labels for {unlabeled} indices",
            raw.unlabeled_true_labels.len()
        ));
    }
    Ok(())
}
