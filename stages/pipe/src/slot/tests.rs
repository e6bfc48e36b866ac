//! Round trips and corrupted-slot cases of the slot codec.

use super::*;
use crate::batch::{RawBatch, ViewBatch};
use proptest::prelude::*;

/// Allocates a zeroed 64-byte aligned buffer, as ring slots are.
fn slot_buffer(len: usize) -> AlignedVec<64> {
    let mut buffer = AlignedVec::<64>::with_capacity(len);
    buffer.resize(len, 0);
    buffer
}

fn sample_raw_batch(labeled: usize, unlabeled: usize) -> RawBatch {
    let image = 4 * 5 * 3;
    RawBatch {
        seq: 17,
        seed: 0xdead_beef,
        height: 4,
        width: 5,
        labeled_images: (0..labeled * image).map(|i| i as u8).collect(),
        labels: (0..labeled as u32).map(|i| i % 10).collect(),
        labeled_indices: (0..labeled as u32).map(|i| i * 7).collect(),
        unlabeled_images: (0..unlabeled * image).map(|i| (i * 3) as u8).collect(),
        unlabeled_true_labels: (0..unlabeled as u32).map(|i| i % 9).collect(),
        unlabeled_indices: (0..unlabeled as u32).map(|i| i + 1000).collect(),
    }
}

fn sample_view_batch(contrast: bool) -> ViewBatch {
    let image = 2 * 3 * 3;
    let (labeled, unlabeled) = (2, 3);
    ViewBatch {
        seq: 9,
        seed: 4,
        height: 2,
        width: 3,
        labeled_weak: vec![1; labeled * image],
        labels: vec![3, 4],
        labeled_indices: vec![10, 11],
        unlabeled_weak: vec![2; unlabeled * image],
        unlabeled_strong: vec![3; unlabeled * image],
        unlabeled_contrast: if contrast {
            vec![4; unlabeled * image]
        } else {
            Vec::new()
        },
        unlabeled_true_labels: vec![0, 1, 2],
        unlabeled_indices: vec![5, 6, 7],
    }
}

#[test]
fn test_payload_round_trip() {
    let payload: Vec<u8> = (0..1000u32).map(|i| (i * 31) as u8).collect();
    let mut slot = slot_buffer(test_slot_size(payload.len()));
    let used = encode_test(42, &payload, &mut slot).expect("encode");
    assert_eq!(used, slot.len());
    let decoded = decode_test(&slot[..used]).expect("decode");
    assert_eq!(decoded.seq, 42);
    assert_eq!(decoded.payload, &payload[..]);
    assert_eq!(read_seq(&slot).expect("seq"), 42);
}

#[test]
fn raw_batch_round_trip_and_size() {
    let batch = sample_raw_batch(3, 5);
    let size = raw_batch_size(4, 5, 3, 5);
    let mut slot = slot_buffer(size);
    let used = encode_raw_batch(&batch, &mut slot).expect("encode");
    assert_eq!(used, size);
    assert_eq!(decode_raw_batch(&slot).expect("decode"), batch);
    assert_eq!(read_seq(&slot).expect("seq"), 17);
}

#[test]
fn view_batch_round_trip_with_and_without_contrast() {
    for contrast in [true, false] {
        let batch = sample_view_batch(contrast);
        let size = view_batch_size(2, 3, 2, 3, contrast);
        let mut slot = slot_buffer(size);
        let used = encode_view_batch(&batch, &mut slot).expect("encode");
        assert_eq!(used, size, "contrast {contrast}");
        assert_eq!(decode_view_batch(&slot).expect("decode"), batch);
    }
}

#[test]
fn misaligned_input_still_decodes() {
    let mut slot = slot_buffer(test_slot_size(10) + 1);
    let used = encode_test(5, b"0123456789", &mut slot[1..]).expect("encode");
    let decoded = decode_test(&slot[1..1 + used]).expect("decode misaligned");
    assert_eq!(decoded.payload, b"0123456789");
}

#[test]
fn encode_rejects_small_slot_and_bad_batch() {
    let mut slot = slot_buffer(64);
    let result = encode_test(1, &[0; 100], &mut slot);
    assert!(
        matches!(result, Err(SlotError::SlotTooSmall { capacity: 64, .. })),
        "{result:?}"
    );

    let mut batch = sample_raw_batch(2, 2);
    batch.labels.pop();
    let mut slot = slot_buffer(4096);
    let result = encode_raw_batch(&batch, &mut slot);
    assert_eq!(
        result,
        Err(SlotError::InvalidBatch {
            seq: 17,
            field: "labeled_indices",
            len: 2,
            expected: 1,
        })
    );

    let mut view = sample_view_batch(true);
    view.unlabeled_contrast.pop();
    let result = encode_view_batch(&view, &mut slot);
    assert!(
        matches!(
            result,
            Err(SlotError::InvalidBatch {
                field: "unlabeled_contrast",
                ..
            })
        ),
        "{result:?}"
    );
}

#[test]
fn decode_rejects_wrong_kind() {
    let mut slot = slot_buffer(4096);
    encode_test(3, b"abc", &mut slot).expect("encode");
    let result = decode_raw_batch(&slot);
    assert_eq!(
        result,
        Err(SlotError::WrongKind {
            expected: "RawBatch",
            found: "Test",
        })
    );
    encode_raw_batch(&sample_raw_batch(1, 1), &mut slot).expect("encode batch");
    assert!(matches!(
        decode_view_batch(&slot),
        Err(SlotError::WrongKind { .. })
    ));
    assert!(matches!(
        decode_test(&slot),
        Err(SlotError::WrongKind { .. })
    ));
}

/// Encodes a reference test slot: payload of 40 bytes, sequence 77.
fn reference_slot() -> (AlignedVec<64>, usize) {
    let mut slot = slot_buffer(512);
    let used = encode_test(77, &[0x5a; 40], &mut slot).expect("encode");
    (slot, used)
}

fn header_len(slot: &[u8]) -> usize {
    u32::from_le_bytes(slot[4..8].try_into().expect("4 bytes")) as usize
}

#[test]
fn corrupted_slots_give_typed_errors() {
    type Corruption = fn(&mut Vec<u8>);
    type Expectation = fn(&SlotError) -> bool;
    let cases: Vec<(&str, Corruption, Expectation)> = vec![
        (
            "empty",
            |s| s.clear(),
            |e| matches!(e, SlotError::Truncated { part: "prefix", .. }),
        ),
        (
            "magic",
            |s| s[0] = b'X',
            |e| matches!(e, SlotError::BadMagic { .. }),
        ),
        (
            "header length past end",
            |s| s[4..8].copy_from_slice(&10_000u32.to_le_bytes()),
            |e| matches!(e, SlotError::Truncated { part: "header", .. }),
        ),
        (
            "header length u32::MAX",
            |s| s[4..8].copy_from_slice(&u32::MAX.to_le_bytes()),
            |e| matches!(e, SlotError::Truncated { part: "header", .. }),
        ),
        (
            "payload length past end",
            |s| s[8..16].copy_from_slice(&1_000_000u64.to_le_bytes()),
            |e| {
                matches!(
                    e,
                    SlotError::Truncated {
                        part: "payload",
                        ..
                    }
                )
            },
        ),
        (
            "payload length u64::MAX",
            |s| s[8..16].copy_from_slice(&u64::MAX.to_le_bytes()),
            |e| {
                matches!(
                    e,
                    SlotError::Truncated {
                        part: "payload",
                        ..
                    }
                )
            },
        ),
        (
            "payload shorter than header says",
            |s| s[8..16].copy_from_slice(&39u64.to_le_bytes()),
            |e| {
                matches!(
                    e,
                    SlotError::PayloadLength {
                        expected: 40,
                        actual: 39,
                        ..
                    }
                )
            },
        ),
        (
            "payload byte flipped",
            |s| {
                let at = payload_offset(header_len(s)) + 7;
                s[at] ^= 1;
            },
            |e| matches!(e, SlotError::ChecksumMismatch { seq: 77, .. }),
        ),
        (
            "header truncated to 3 bytes",
            |s| s[4..8].copy_from_slice(&3u32.to_le_bytes()),
            |e| matches!(e, SlotError::InvalidHeader { .. }),
        ),
        (
            "enum tag out of range",
            |s| {
                // The root of an rkyv archive is at its end; its first byte is the tag.
                let root = PREFIX_LEN + header_len(s) - std::mem::size_of::<ArchivedSlotHeader>();
                s[root] = 200;
            },
            |e| matches!(e, SlotError::InvalidHeader { .. }),
        ),
        (
            "truncated slot",
            |s| s.truncate(70),
            |e| matches!(e, SlotError::Truncated { .. }),
        ),
    ];
    for (name, corrupt, expected) in cases {
        let (slot, used) = reference_slot();
        let mut bytes = slot[..used].to_vec();
        corrupt(&mut bytes);
        let result = decode_test(&bytes);
        match result {
            Err(ref e) if expected(e) => {}
            other => panic!("case {name}: unexpected result {other:?}"),
        }
    }
}

#[test]
fn corrupted_batch_header_lists_give_typed_errors() {
    // A header whose label list is shorter than its index list, written through the codec's
    // own encoder so only that inconsistency is wrong.
    let header = SlotHeader::RawBatch(RawBatchHeader {
        seq: 8,
        seed: 0,
        height: 1,
        width: 1,
        labels: vec![1],
        labeled_indices: vec![1, 2],
        unlabeled_true_labels: vec![],
        unlabeled_indices: vec![],
    });
    let mut slot = slot_buffer(4096);
    encode(&header, &[&[0; 3]], &mut slot).expect("encode");
    assert_eq!(
        decode_raw_batch(&slot),
        Err(SlotError::InconsistentHeader {
            kind: "RawBatch",
            seq: 8,
            field: "labeled_indices",
            len: 2,
            expected: 1,
        })
    );

    // Payload of 5 bytes where one 1x1 image (3 bytes) is expected.
    let header = SlotHeader::ViewBatch(ViewBatchHeader {
        seq: 2,
        seed: 0,
        height: 1,
        width: 1,
        labels: vec![1],
        labeled_indices: vec![1],
        unlabeled_true_labels: vec![],
        unlabeled_indices: vec![],
        has_contrast: true,
    });
    encode(&header, &[&[0; 5]], &mut slot).expect("encode");
    assert!(matches!(
        decode_view_batch(&slot),
        Err(SlotError::PayloadLength {
            expected: 3,
            actual: 5,
            ..
        })
    ));

    // Image dimensions whose product overflows.
    let header = SlotHeader::RawBatch(RawBatchHeader {
        seq: 3,
        seed: 0,
        height: u32::MAX,
        width: u32::MAX,
        labels: vec![1; 4],
        labeled_indices: vec![1; 4],
        unlabeled_true_labels: vec![],
        unlabeled_indices: vec![],
    });
    encode(&header, &[&[0; 5]], &mut slot).expect("encode");
    assert!(matches!(
        decode_raw_batch(&slot),
        Err(SlotError::PayloadLength { .. })
    ));
}

#[test]
fn checksum_detects_single_word_change() {
    let base: Vec<u8> = (0..64u8).collect();
    let reference = checksum(&base);
    for byte in 0..base.len() {
        let mut changed = base.clone();
        changed[byte] ^= 0x80;
        assert_ne!(checksum(&changed), reference, "byte {byte}");
    }
    assert_ne!(checksum(&base[..63]), reference);
    assert_ne!(checksum(&[]), checksum(&[0]));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Arbitrary bytes never panic the decoders.
    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
        let _ = decode_test(&bytes);
        let _ = decode_raw_batch(&bytes);
        let _ = decode_view_batch(&bytes);
        let _ = read_seq(&bytes);
    }

    /// A valid slot with one byte overwritten gives a typed error or a batch that keeps the
    /// batch invariants (a changed label or pixel is not detectable without a checksum).
    #[test]
    fn mutated_slot_decodes_to_valid_batch_or_error(
        at in 0usize..400,
        value in any::<u8>(),
        labeled in 0usize..4,
        unlabeled in 0usize..4,
    ) {
        let batch = sample_raw_batch(labeled, unlabeled);
        let mut slot = slot_buffer(raw_batch_size(4, 5, labeled, unlabeled));
        let used = encode_raw_batch(&batch, &mut slot).expect("encode");
        let at = at % used;
        slot[at] = value;
        if let Ok(decoded) = decode_raw_batch(&slot[..used]) {
            let mut again = slot_buffer(used + 4096);
            prop_assert!(encode_raw_batch(&decoded, &mut again).is_ok());
        }
    }
}
