//! Seeded random streams.
//!
//! Every random choice of the loader comes from ChaCha8 keyed by (seed, domain) and positioned
//! on a stream number (an epoch, a batch, an image). Bounded integers and permutations are
//! built here from raw `next_u64` words, so the sequences depend only on the ChaCha keystream,
//! which rand_chacha keeps stable across releases, and not on how a rand release maps words to
//! ranges.

use rand::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// Purpose of a random stream. Each domain has its own key, so streams never overlap.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Domain {
    /// Drawing the labeled images of each class.
    Split,
    /// Per-epoch order of the labeled index list.
    LabeledEpoch,
    /// Per-epoch order of the unlabeled index list.
    UnlabeledEpoch,
    /// The per-batch seed handed downstream.
    BatchSeed,
    /// Pixels of synthetic training images.
    SyntheticTrain,
    /// Pixels of synthetic test images.
    SyntheticTest,
}

impl Domain {
    fn tag(self) -> [u8; 8] {
        *match self {
            Domain::Split => b"split\0\0\0",
            Domain::LabeledEpoch => b"labeled\0",
            Domain::UnlabeledEpoch => b"unlabel\0",
            Domain::BatchSeed => b"batchsd\0",
            Domain::SyntheticTrain => b"syntrain",
            Domain::SyntheticTest => b"syntest\0",
        }
    }
}

/// The generator for (`seed`, `domain`, `stream`).
pub(crate) fn stream_rng(seed: u64, domain: Domain, stream: u64) -> ChaCha8Rng {
    let mut key = [0u8; 32];
    key[..8].copy_from_slice(&seed.to_le_bytes());
    key[8..16].copy_from_slice(&domain.tag());
    let mut rng = ChaCha8Rng::from_seed(key);
    rng.set_stream(stream);
    rng
}

/// Uniform integer in `0..bound`, by rejection so that no value is favoured.
///
/// # Panics
/// When `bound == 0`.
pub(crate) fn below(rng: &mut impl RngCore, bound: u64) -> u64 {
    assert!(bound > 0, "below() needs a positive bound");
    // Largest multiple of `bound` that fits; words at or above it would favour small values.
    let zone = u64::MAX - (u64::MAX % bound + 1) % bound;
    loop {
        let word = rng.next_u64();
        if word <= zone {
            return word % bound;
        }
    }
}

/// Uniform float in `[0, 1)` with 53 random bits.
pub(crate) fn unit_f64(rng: &mut impl RngCore) -> f64 {
    (rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64
}

/// Shuffles `items` in place with Fisher-Yates.
pub(crate) fn shuffle<T>(rng: &mut impl RngCore, items: &mut [T]) {
    for i in (1..items.len()).rev() {
        let j = below(rng, i as u64 + 1) as usize;
        items.swap(i, j);
    }
}

/// Draws a uniformly random permutation of `0..len`.
pub(crate) fn permutation(rng: &mut impl RngCore, len: usize) -> Vec<u32> {
    let mut order: Vec<u32> = (0..len as u32).collect();
    shuffle(rng, &mut order);
    order
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn streams_differ_by_seed_domain_and_stream() {
        let base = stream_rng(1, Domain::LabeledEpoch, 0).next_u64();
        assert_ne!(base, stream_rng(2, Domain::LabeledEpoch, 0).next_u64());
        assert_ne!(base, stream_rng(1, Domain::UnlabeledEpoch, 0).next_u64());
        assert_ne!(base, stream_rng(1, Domain::LabeledEpoch, 1).next_u64());
        assert_eq!(base, stream_rng(1, Domain::LabeledEpoch, 0).next_u64());
    }

    #[test]
    fn permutation_holds_each_index_once() {
        let mut rng = stream_rng(7, Domain::Split, 0);
        let mut order = permutation(&mut rng, 1000);
        assert_ne!(order, (0..1000).collect::<Vec<u32>>());
        order.sort_unstable();
        assert_eq!(order, (0..1000).collect::<Vec<u32>>());
    }

    #[test]
    fn below_is_roughly_uniform() {
        let mut rng = stream_rng(3, Domain::Split, 0);
        let mut counts = [0u32; 6];
        for _ in 0..60_000 {
            counts[below(&mut rng, 6) as usize] += 1;
        }
        for count in counts {
            // Expected 10 000 each; 5 standard deviations is about 460.
            assert!((9_500..10_500).contains(&count), "{counts:?}");
        }
    }
}
