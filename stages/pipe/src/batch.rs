//! Owned, in-memory forms of the batches that travel between stages.
//!
//! Images are `u8`, interleaved RGB in HWC order (`[image][row][column][channel]`), exactly as
//! the datasets store them after decoding. Normalisation to `f32` happens in the step stage.

/// Number of colour channels of every image in a batch.
pub const CHANNELS: usize = 3;

/// One step's worth of source images, as the loader emits them.
///
/// Invariants: `labeled_images.len() == labels.len() * height * width * CHANNELS`, and likewise
/// for the unlabeled part; all per-image vectors of one part have the same length.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RawBatch {
    /// Training step this batch feeds, counted from 0. Batch `seq` is a pure function of the
    /// run seed and `seq`.
    pub seq: u64,
    /// Seed for every random choice made downstream of the loader for this batch.
    pub seed: u64,
    /// Image height in pixels.
    pub height: u32,
    /// Image width in pixels.
    pub width: u32,
    /// Labeled images, HWC `u8`.
    pub labeled_images: Vec<u8>,
    /// Class of each labeled image.
    pub labels: Vec<u32>,
    /// Dataset index of each labeled image.
    pub labeled_indices: Vec<u32>,
    /// Unlabeled images, HWC `u8`.
    pub unlabeled_images: Vec<u8>,
    /// True class of each unlabeled image, used only to report pseudo-label accuracy.
    pub unlabeled_true_labels: Vec<u32>,
    /// Dataset index of each unlabeled image.
    pub unlabeled_indices: Vec<u32>,
}

/// The augmented views of one [`RawBatch`], as the augmenter emits them.
///
/// Invariants: as for [`RawBatch`]; `unlabeled_contrast` is either empty (the contrast view is
/// switched off, as in plain FixMatch) or as long as `unlabeled_weak`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ViewBatch {
    /// Training step, copied from the source batch.
    pub seq: u64,
    /// Per-batch seed, copied from the source batch.
    pub seed: u64,
    /// Image height in pixels.
    pub height: u32,
    /// Image width in pixels.
    pub width: u32,
    /// Weak view of each labeled image, HWC `u8`.
    pub labeled_weak: Vec<u8>,
    /// Class of each labeled image.
    pub labels: Vec<u32>,
    /// Dataset index of each labeled image.
    pub labeled_indices: Vec<u32>,
    /// Weak view of each unlabeled image.
    pub unlabeled_weak: Vec<u8>,
    /// Strong (RandAugment + Cutout) view of each unlabeled image.
    pub unlabeled_strong: Vec<u8>,
    /// Contrast (SimCLR-style) view of each unlabeled image, or empty when switched off.
    pub unlabeled_contrast: Vec<u8>,
    /// True class of each unlabeled image.
    pub unlabeled_true_labels: Vec<u32>,
    /// Dataset index of each unlabeled image.
    pub unlabeled_indices: Vec<u32>,
}

impl RawBatch {
    /// Bytes of one image.
    pub fn image_bytes(&self) -> usize {
        self.height as usize * self.width as usize * CHANNELS
    }
}

impl ViewBatch {
    /// Bytes of one image.
    pub fn image_bytes(&self) -> usize {
        self.height as usize * self.width as usize * CHANNELS
    }
}
