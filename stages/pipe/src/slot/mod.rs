//! Slot codec: a validated rkyv header followed by raw payload bytes.
//!
//! ```text
//! offset 0    4 bytes   magic "CSL1"
//! offset 4    u32 LE    header length H in bytes
//! offset 8    u64 LE    payload length P in bytes
//! offset 16   H bytes   rkyv archive of a SlotHeader
//! offset O    P bytes   payload, O = 16 + H rounded up to a multiple of 64
//! ```
//! A reader checks the prefix, then validates the archive with bytecheck (`rkyv::access`)
//! before it reads any header field, then checks the payload length against what the header
//! implies. Every malformed slot gives a [`SlotError`], never a panic.
//!
//! The payload of a `Test` slot is the test bytes. A `RawBatch` payload is the labeled images
//! followed by the unlabeled images. A `ViewBatch` payload is the labeled weak views, then the
//! unlabeled weak, strong and (when present) contrast views. A `Snapshot` payload is the
//! little-endian f32 values of the tensors its header's table lists, in table order. Images are u8 HWC, `height * width * 3` bytes each.

use rkyv::rancor;
use rkyv::ser::writer::Buffer;
use rkyv::util::AlignedVec;
use rkyv::{Archive, Deserialize, Serialize};

/// Magic bytes at the start of every encoded slot.
pub const SLOT_MAGIC: [u8; 4] = *b"CSL1";

/// Bytes before the archived header.
pub const PREFIX_LEN: usize = 16;

/// Alignment of the payload's offset within the slot, in bytes.
pub const PAYLOAD_ALIGN: usize = 64;

/// Alignment the archived header needs; a misaligned input is copied before validation.
const ARCHIVE_ALIGN: usize = 16;

/// Header of a test payload: `len` bytes whose [`checksum`] is `checksum`.
#[derive(Archive, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct TestHeader {
    /// Sequence number.
    pub seq: u64,
    /// Payload length in bytes.
    pub len: u64,
    /// [`checksum`] of the payload.
    pub checksum: u64,
}

/// Header of a [`RawBatch`](crate::batch::RawBatch) slot; the images travel as payload.
#[derive(Archive, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct RawBatchHeader {
    /// Training step.
    pub seq: u64,
    /// Per-batch seed.
    pub seed: u64,
    /// Image height in pixels.
    pub height: u32,
    /// Image width in pixels.
    pub width: u32,
    /// Class of each labeled image.
    pub labels: Vec<u32>,
    /// Dataset index of each labeled image.
    pub labeled_indices: Vec<u32>,
    /// True class of each unlabeled image.
    pub unlabeled_true_labels: Vec<u32>,
    /// Dataset index of each unlabeled image.
    pub unlabeled_indices: Vec<u32>,
}

/// Header of a [`ViewBatch`](crate::batch::ViewBatch) slot; the views travel as payload.
#[derive(Archive, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct ViewBatchHeader {
    /// Training step.
    pub seq: u64,
    /// Per-batch seed.
    pub seed: u64,
    /// Image height in pixels.
    pub height: u32,
    /// Image width in pixels.
    pub width: u32,
    /// Class of each labeled image.
    pub labels: Vec<u32>,
    /// Dataset index of each labeled image.
    pub labeled_indices: Vec<u32>,
    /// True class of each unlabeled image.
    pub unlabeled_true_labels: Vec<u32>,
    /// Dataset index of each unlabeled image.
    pub unlabeled_indices: Vec<u32>,
    /// Whether the payload ends with contrast views.
    pub has_contrast: bool,
}

/// The header at the start of a slot, one variant per slot kind. Not `Eq`: snapshot metrics
/// are floats.
#[derive(Archive, Serialize, Deserialize, Clone, Debug, PartialEq)]
pub enum SlotHeader {
    /// Checksummed test bytes.
    Test(TestHeader),
    /// A loader batch.
    RawBatch(RawBatchHeader),
    /// An augmenter batch.
    ViewBatch(ViewBatchHeader),
    /// The training step's state after one step.
    Snapshot(SnapshotHeader),
}

impl SlotHeader {
    /// Sequence number carried by the header.
    pub fn seq(&self) -> u64 {
        match self {
            SlotHeader::Test(h) => h.seq,
            SlotHeader::RawBatch(h) => h.seq,
            SlotHeader::ViewBatch(h) => h.seq,
            SlotHeader::Snapshot(h) => h.seq,
        }
    }

    /// Name of the slot kind, for messages.
    pub fn kind(&self) -> &'static str {
        match self {
            SlotHeader::Test(_) => "Test",
            SlotHeader::RawBatch(_) => "RawBatch",
            SlotHeader::ViewBatch(_) => "ViewBatch",
            SlotHeader::Snapshot(_) => "Snapshot",
        }
    }
}

impl ArchivedSlotHeader {
    fn kind(&self) -> &'static str {
        match self {
            ArchivedSlotHeader::Test(_) => "Test",
            ArchivedSlotHeader::RawBatch(_) => "RawBatch",
            ArchivedSlotHeader::ViewBatch(_) => "ViewBatch",
            ArchivedSlotHeader::Snapshot(_) => "Snapshot",
        }
    }
}

/// Errors of slot encoding and decoding.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum SlotError {
    /// The slot buffer cannot hold the encoded slot.
    #[error(
        "slot of {capacity} bytes is too small: the encoded item needs {needed}; raise the edge's slot size"
    )]
    SlotTooSmall {
        /// Bytes needed.
        needed: usize,
        /// Bytes available.
        capacity: usize,
    },
    /// The slot is shorter than its prefix, header or payload requires.
    #[error("slot of {len} bytes is truncated: its {part} needs {needed} bytes")]
    Truncated {
        /// Slot length.
        len: usize,
        /// `prefix`, `header` or `payload`.
        part: &'static str,
        /// Bytes that part needs.
        needed: usize,
    },
    /// The slot does not start with [`SLOT_MAGIC`].
    #[error(
        "slot starts with {found:02x?}, not the slot magic {SLOT_MAGIC:02x?}: the producer wrote another format or nothing"
    )]
    BadMagic {
        /// First four bytes.
        found: [u8; 4],
    },
    /// The archived header failed validation.
    #[error("slot header failed validation: {reason}")]
    InvalidHeader {
        /// Message of the validator.
        reason: String,
    },
    /// The slot contains another kind than the caller expected.
    #[error("slot holds a {found} item, expected {expected}")]
    WrongKind {
        /// Kind expected by the caller.
        expected: &'static str,
        /// Kind found.
        found: &'static str,
    },
    /// The payload length disagrees with the header.
    #[error("{kind} slot {seq} has {actual} payload bytes, its header implies {expected}")]
    PayloadLength {
        /// Slot kind.
        kind: &'static str,
        /// Sequence number from the header.
        seq: u64,
        /// Length the header implies.
        expected: u64,
        /// Length in the prefix.
        actual: u64,
    },
    /// The header's own lists disagree (for example fewer labels than labeled indices).
    #[error("{kind} slot {seq}: {field} has {len} entries, expected {expected}")]
    InconsistentHeader {
        /// Slot kind.
        kind: &'static str,
        /// Sequence number from the header.
        seq: u64,
        /// Field with the wrong length.
        field: &'static str,
        /// Its length.
        len: usize,
        /// Expected length.
        expected: usize,
    },
    /// A batch to encode breaks its own invariants.
    #[error("cannot encode batch {seq}: {field} has {len} entries, expected {expected}")]
    InvalidBatch {
        /// Batch sequence number.
        seq: u64,
        /// Field with the wrong length.
        field: &'static str,
        /// Its length.
        len: usize,
        /// Expected length.
        expected: usize,
    },
    /// The payload bytes do not match the header checksum.
    #[error(
        "test slot {seq}: payload checksum {actual:#018x} differs from the header's {expected:#018x}"
    )]
    ChecksumMismatch {
        /// Sequence number from the header.
        seq: u64,
        /// Checksum in the header.
        expected: u64,
        /// Checksum of the payload.
        actual: u64,
    },
}

/// 64-bit checksum of `bytes` (FxHash-style multiply-rotate over 8-byte words, then the
/// tail and length). Not cryptographic: it detects any change confined to one 8-byte word
/// with certainty, because each step is a bijection of the running state.
pub fn checksum(bytes: &[u8]) -> u64 {
    const K: u64 = 0x517c_c1b7_2722_0a95;
    let mut hash: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut words = bytes.chunks_exact(8);
    for word in &mut words {
        let mut buf = [0u8; 8];
        buf.copy_from_slice(word);
        hash = (hash.rotate_left(5) ^ u64::from_le_bytes(buf)).wrapping_mul(K);
    }
    let mut tail = [0u8; 8];
    tail[..words.remainder().len()].copy_from_slice(words.remainder());
    hash = (hash.rotate_left(5) ^ u64::from_le_bytes(tail)).wrapping_mul(K);
    (hash.rotate_left(5) ^ bytes.len() as u64).wrapping_mul(K)
}

fn payload_offset(header_len: usize) -> usize {
    (PREFIX_LEN + header_len).div_ceil(PAYLOAD_ALIGN) * PAYLOAD_ALIGN
}

fn archive(header: &SlotHeader) -> AlignedVec<ARCHIVE_ALIGN> {
    // The header contains only integers, booleans and vectors, whose serialisers fail only
    // on allocation failure, which aborts anyway.
    rkyv::api::high::to_bytes_in::<_, rancor::Error>(header, AlignedVec::<ARCHIVE_ALIGN>::new())
        .expect("serialising a slot header into a vector")
}

/// Bytes needed to encode `header` with a `payload_len`-byte payload.
pub(crate) fn encoded_len(header: &SlotHeader, payload_len: usize) -> usize {
    payload_offset(archive(header).len()).saturating_add(payload_len)
}

/// Writes prefix, header and payload parts into `out`; returns the bytes used.
pub(crate) fn encode(
    header: &SlotHeader,
    parts: &[&[u8]],
    out: &mut [u8],
) -> Result<usize, SlotError> {
    let payload_len: usize = parts.iter().map(|p| p.len()).sum();
    let too_small = |out: &[u8]| SlotError::SlotTooSmall {
        needed: encoded_len(header, payload_len),
        capacity: out.len(),
    };
    if out.len() < PREFIX_LEN {
        return Err(too_small(out));
    }
    // The header is archived in place. rkyv pads relative to the buffer start, and slots
    // start 64-byte aligned, so the archive is aligned where it lands.
    let written = rkyv::api::high::to_bytes_in::<_, rancor::Error>(
        header,
        Buffer::from(&mut out[PREFIX_LEN..]),
    );
    let Ok(header_len) = written.map(|buffer| buffer.len()) else {
        return Err(too_small(out));
    };
    let offset = payload_offset(header_len);
    let needed = offset.saturating_add(payload_len);
    if needed > out.len() {
        return Err(too_small(out));
    }

    out[..4].copy_from_slice(&SLOT_MAGIC);
    out[4..8].copy_from_slice(&(header_len as u32).to_le_bytes());
    out[8..16].copy_from_slice(&(payload_len as u64).to_le_bytes());
    let mut at = offset;
    for part in parts {
        out[at..at + part.len()].copy_from_slice(part);
        at += part.len();
    }
    Ok(needed)
}

/// Writes prefix and header into `out`, then lets `fill` write the `payload_len` payload bytes
/// in place; returns the bytes used. For payloads that are not byte slices already (f32
/// tensors), so they are converted straight into the slot.
pub(crate) fn write_prefixed(
    header: &SlotHeader,
    payload_len: usize,
    out: &mut [u8],
    fill: impl FnOnce(&mut [u8]),
) -> Result<usize, SlotError> {
    let used = encode(header, &[], out)?;
    let needed = used.saturating_add(payload_len);
    if needed > out.len() {
        return Err(SlotError::SlotTooSmall {
            needed,
            capacity: out.len(),
        });
    }
    out[8..16].copy_from_slice(&(payload_len as u64).to_le_bytes());
    fill(&mut out[used..needed]);
    Ok(needed)
}

/// Validates the prefix and header of `slot`, then calls `read` with the validated archived
/// header and the payload bytes.
fn with_archived<'a, R>(
    slot: &'a [u8],
    read: impl FnOnce(&ArchivedSlotHeader, &'a [u8]) -> Result<R, SlotError>,
) -> Result<R, SlotError> {
    if slot.len() < PREFIX_LEN {
        return Err(SlotError::Truncated {
            len: slot.len(),
            part: "prefix",
            needed: PREFIX_LEN,
        });
    }
    let magic: [u8; 4] = [slot[0], slot[1], slot[2], slot[3]];
    if magic != SLOT_MAGIC {
        return Err(SlotError::BadMagic { found: magic });
    }
    let header_len = u32::from_le_bytes([slot[4], slot[5], slot[6], slot[7]]) as usize;
    let mut len_bytes = [0u8; 8];
    len_bytes.copy_from_slice(&slot[8..16]);
    let payload_len = u64::from_le_bytes(len_bytes);
    let header_end = PREFIX_LEN.saturating_add(header_len);
    if header_end > slot.len() {
        return Err(SlotError::Truncated {
            len: slot.len(),
            part: "header",
            needed: header_end,
        });
    }
    let offset = payload_offset(header_len);
    let payload_end = u64::try_from(offset)
        .ok()
        .and_then(|o| o.checked_add(payload_len))
        .filter(|&end| end <= slot.len() as u64)
        .ok_or(SlotError::Truncated {
            len: slot.len(),
            part: "payload",
            needed: usize::try_from(payload_len)
                .unwrap_or(usize::MAX)
                .saturating_add(offset),
        })? as usize;

    let payload = &slot[offset..payload_end];
    let bytes = &slot[PREFIX_LEN..header_end];
    if (bytes.as_ptr() as usize).is_multiple_of(ARCHIVE_ALIGN) {
        read(validate(bytes)?, payload)
    } else {
        let mut copy = AlignedVec::<ARCHIVE_ALIGN>::with_capacity(bytes.len());
        copy.extend_from_slice(bytes);
        read(validate(&copy)?, payload)
    }
}

fn invalid_header(error: rancor::Error) -> SlotError {
    SlotError::InvalidHeader {
        reason: error.to_string(),
    }
}

fn validate(bytes: &[u8]) -> Result<&ArchivedSlotHeader, SlotError> {
    rkyv::access::<ArchivedSlotHeader, rancor::Error>(bytes).map_err(invalid_header)
}

/// Validates the prefix and header of `slot`; returns the header and the payload bytes.
pub fn read_header(slot: &[u8]) -> Result<(SlotHeader, &[u8]), SlotError> {
    with_archived(slot, |archived, payload| {
        let header =
            rkyv::deserialize::<SlotHeader, rancor::Error>(archived).map_err(invalid_header)?;
        Ok((header, payload))
    })
}

/// Sequence number of any slot, after validating its header.
pub fn read_seq(slot: &[u8]) -> Result<u64, SlotError> {
    with_archived(slot, |archived, _| {
        Ok(match archived {
            ArchivedSlotHeader::Test(h) => h.seq.to_native(),
            ArchivedSlotHeader::RawBatch(h) => h.seq.to_native(),
            ArchivedSlotHeader::ViewBatch(h) => h.seq.to_native(),
            ArchivedSlotHeader::Snapshot(h) => h.seq.to_native(),
        })
    })
}

/// A decoded test slot: its sequence number and checksum-verified payload.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TestPayload<'a> {
    /// Sequence number.
    pub seq: u64,
    /// Payload bytes, in place in the slot.
    pub payload: &'a [u8],
}

/// Bytes a test slot with a `len`-byte payload needs.
pub fn test_slot_size(len: usize) -> usize {
    let header = SlotHeader::Test(TestHeader {
        seq: 0,
        len: len as u64,
        checksum: 0,
    });
    encoded_len(&header, len)
}

/// Encodes test payload `payload` with sequence number `seq` into `out`; returns bytes used.
pub fn encode_test(seq: u64, payload: &[u8], out: &mut [u8]) -> Result<usize, SlotError> {
    let header = SlotHeader::Test(TestHeader {
        seq,
        len: payload.len() as u64,
        checksum: checksum(payload),
    });
    encode(&header, &[payload], out)
}

/// Decodes a test slot and verifies its length and checksum.
pub fn decode_test(slot: &[u8]) -> Result<TestPayload<'_>, SlotError> {
    let (test, payload) = with_archived(slot, |archived, payload| match archived {
        ArchivedSlotHeader::Test(h) => Ok((
            TestHeader {
                seq: h.seq.to_native(),
                len: h.len.to_native(),
                checksum: h.checksum.to_native(),
            },
            payload,
        )),
        other => Err(SlotError::WrongKind {
            expected: "Test",
            found: other.kind(),
        }),
    })?;
    if test.len != payload.len() as u64 {
        return Err(SlotError::PayloadLength {
            kind: "Test",
            seq: test.seq,
            expected: test.len,
            actual: payload.len() as u64,
        });
    }
    let actual = checksum(payload);
    if actual != test.checksum {
        return Err(SlotError::ChecksumMismatch {
            seq: test.seq,
            expected: test.checksum,
            actual,
        });
    }
    Ok(TestPayload {
        seq: test.seq,
        payload,
    })
}

mod batch;
pub use batch::{
    decode_raw_batch, decode_view_batch, encode_raw_batch, encode_view_batch, raw_batch_size,
    view_batch_size,
};

mod snapshot;
pub use snapshot::{
    Snapshot, SnapshotHeader, SnapshotMeta, TensorEntry, TensorKind, TensorSource, TrainMetrics,
    decode_snapshot, encode_snapshot, snapshot_size,
};

#[cfg(test)]
mod tests;
