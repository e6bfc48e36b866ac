//! The in-memory dataset every source decodes into.

use ccssl_pipe::batch::CHANNELS;

/// Half of a dataset: training or test images.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Part {
    /// The training images: labeled split and unlabeled stream.
    Train,
    /// The held-out images used for evaluation.
    Test,
}

impl Part {
    /// Lowercase name for logs and messages.
    pub fn name(self) -> &'static str {
        match self {
            Part::Train => "train",
            Part::Test => "test",
        }
    }
}

/// Decoded images of one part of a dataset, all of the same size.
///
/// Invariants: `images.len() == labels.len() * height * width * 3`, every label is below
/// `class_names.len()`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Dataset {
    /// Short name for logs and for checking a saved split, for example `cifar10`.
    pub name: String,
    /// Class names, indexed by label.
    pub class_names: Vec<String>,
    /// Image height in pixels.
    pub height: u32,
    /// Image width in pixels.
    pub width: u32,
    /// All images back to back, `u8` RGB in HWC order.
    pub images: Vec<u8>,
    /// Class of each image.
    pub labels: Vec<u32>,
}

impl Dataset {
    /// Number of images.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// Whether the dataset contains no image.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// Number of classes.
    pub fn num_classes(&self) -> usize {
        self.class_names.len()
    }

    /// Bytes of one image.
    pub fn image_bytes(&self) -> usize {
        self.height as usize * self.width as usize * CHANNELS
    }

    /// Pixels of image `index`, HWC `u8`.
    ///
    /// # Panics
    /// When `index >= self.len()`.
    pub fn image(&self, index: usize) -> &[u8] {
        let bytes = self.image_bytes();
        &self.images[index * bytes..(index + 1) * bytes]
    }

    /// Number of images of each class, indexed by label.
    pub fn class_counts(&self) -> Vec<usize> {
        let mut counts = vec![0; self.num_classes()];
        for &label in &self.labels {
            counts[label as usize] += 1;
        }
        counts
    }

    /// FNV-1a hash of the labels in order: a cheap fingerprint that lets a saved split check whether
    /// it was drawn on the same images.
    pub fn labels_fingerprint(&self) -> u64 {
        let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
        for &label in &self.labels {
            for byte in label.to_le_bytes() {
                hash ^= u64::from(byte);
                hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
            }
        }
        hash
    }
}
