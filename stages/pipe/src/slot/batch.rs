//! Encoding and decoding of [`RawBatch`] and [`ViewBatch`] slots.

use super::{
    RawBatchHeader, SlotError, SlotHeader, ViewBatchHeader, encode, encoded_len, read_header,
};
use crate::batch::{CHANNELS, RawBatch, ViewBatch};

/// Bytes of one image, or `None` on overflow.
fn image_bytes(height: u32, width: u32) -> Option<usize> {
    (height as usize)
        .checked_mul(width as usize)?
        .checked_mul(CHANNELS)
}

fn check_len(seq: u64, field: &'static str, len: usize, expected: usize) -> Result<(), SlotError> {
    if len == expected {
        Ok(())
    } else {
        Err(SlotError::InvalidBatch {
            seq,
            field,
            len,
            expected,
        })
    }
}

/// Checks one list of a decoded header against the count it must match.
fn check_header_len(
    kind: &'static str,
    seq: u64,
    field: &'static str,
    len: usize,
    expected: usize,
) -> Result<(), SlotError> {
    if len == expected {
        Ok(())
    } else {
        Err(SlotError::InconsistentHeader {
            kind,
            seq,
            field,
            len,
            expected,
        })
    }
}

/// Splits `payload` into parts of the given lengths after checking their total.
fn split_payload<'a, const N: usize>(
    kind: &'static str,
    seq: u64,
    payload: &'a [u8],
    image_bytes: Option<usize>,
    counts: [usize; N],
) -> Result<[&'a [u8]; N], SlotError> {
    let lengths = counts.map(|c| image_bytes.and_then(|b| b.checked_mul(c)));
    let total = lengths
        .iter()
        .try_fold(0usize, |acc, l| l.and_then(|l| acc.checked_add(l)));
    if total != Some(payload.len()) {
        return Err(SlotError::PayloadLength {
            kind,
            seq,
            expected: total.map_or(u64::MAX, |t| t as u64),
            actual: payload.len() as u64,
        });
    }
    let mut rest = payload;
    Ok(lengths.map(|len| {
        // Every length is Some and they sum to payload.len(), checked above.
        let (part, tail) = rest.split_at(len.unwrap_or(0));
        rest = tail;
        part
    }))
}

fn raw_header(batch: &RawBatch) -> SlotHeader {
    SlotHeader::RawBatch(RawBatchHeader {
        seq: batch.seq,
        seed: batch.seed,
        height: batch.height,
        width: batch.width,
        labels: batch.labels.clone(),
        labeled_indices: batch.labeled_indices.clone(),
        unlabeled_true_labels: batch.unlabeled_true_labels.clone(),
        unlabeled_indices: batch.unlabeled_indices.clone(),
    })
}

/// Bytes a [`RawBatch`] slot of `labeled` + `unlabeled` images of `height` x `width` needs;
/// `usize::MAX` when that overflows.
pub fn raw_batch_size(height: u32, width: u32, labeled: usize, unlabeled: usize) -> usize {
    let header = raw_header(&RawBatch {
        height,
        width,
        labels: vec![0; labeled],
        labeled_indices: vec![0; labeled],
        unlabeled_true_labels: vec![0; unlabeled],
        unlabeled_indices: vec![0; unlabeled],
        ..RawBatch::default()
    });
    image_bytes(height, width)
        .and_then(|b| b.checked_mul(labeled.checked_add(unlabeled)?))
        .map_or(usize::MAX, |payload| encoded_len(&header, payload))
}

/// Encodes `batch` into `out`; returns the bytes used.
///
/// Fails with [`SlotError::InvalidBatch`] when the batch breaks its invariants and with
/// [`SlotError::SlotTooSmall`] when `out` is too short.
pub fn encode_raw_batch(batch: &RawBatch, out: &mut [u8]) -> Result<usize, SlotError> {
    let seq = batch.seq;
    let labeled = batch.labels.len();
    let unlabeled = batch.unlabeled_indices.len();
    let image = image_bytes(batch.height, batch.width).unwrap_or(usize::MAX);
    check_len(seq, "labeled_indices", batch.labeled_indices.len(), labeled)?;
    check_len(
        seq,
        "unlabeled_true_labels",
        batch.unlabeled_true_labels.len(),
        unlabeled,
    )?;
    let expected = |count: usize| image.saturating_mul(count);
    check_len(
        seq,
        "labeled_images",
        batch.labeled_images.len(),
        expected(labeled),
    )?;
    check_len(
        seq,
        "unlabeled_images",
        batch.unlabeled_images.len(),
        expected(unlabeled),
    )?;
    encode(
        &raw_header(batch),
        &[&batch.labeled_images, &batch.unlabeled_images],
        out,
    )
}

/// Decodes a [`RawBatch`] slot into an owned batch.
pub fn decode_raw_batch(slot: &[u8]) -> Result<RawBatch, SlotError> {
    let (header, payload) = read_header(slot)?;
    let SlotHeader::RawBatch(h) = header else {
        return Err(SlotError::WrongKind {
            expected: "RawBatch",
            found: header.kind(),
        });
    };
    let labeled = h.labels.len();
    let unlabeled = h.unlabeled_indices.len();
    check_header_len(
        "RawBatch",
        h.seq,
        "labeled_indices",
        h.labeled_indices.len(),
        labeled,
    )?;
    check_header_len(
        "RawBatch",
        h.seq,
        "unlabeled_true_labels",
        h.unlabeled_true_labels.len(),
        unlabeled,
    )?;
    let [labeled_images, unlabeled_images] = split_payload(
        "RawBatch",
        h.seq,
        payload,
        image_bytes(h.height, h.width),
        [labeled, unlabeled],
    )?;
    Ok(RawBatch {
        seq: h.seq,
        seed: h.seed,
        height: h.height,
        width: h.width,
        labeled_images: labeled_images.to_vec(),
        labels: h.labels,
        labeled_indices: h.labeled_indices,
        unlabeled_images: unlabeled_images.to_vec(),
        unlabeled_true_labels: h.unlabeled_true_labels,
        unlabeled_indices: h.unlabeled_indices,
    })
}

fn view_header(batch: &ViewBatch) -> SlotHeader {
    SlotHeader::ViewBatch(ViewBatchHeader {
        seq: batch.seq,
        seed: batch.seed,
        height: batch.height,
        width: batch.width,
        labels: batch.labels.clone(),
        labeled_indices: batch.labeled_indices.clone(),
        unlabeled_true_labels: batch.unlabeled_true_labels.clone(),
        unlabeled_indices: batch.unlabeled_indices.clone(),
        has_contrast: !batch.unlabeled_contrast.is_empty(),
    })
}

/// Bytes a [`ViewBatch`] slot needs: `labeled` weak views and `unlabeled` weak, strong and
/// (with `contrast`) contrast views of `height` x `width`; `usize::MAX` on overflow.
pub fn view_batch_size(
    height: u32,
    width: u32,
    labeled: usize,
    unlabeled: usize,
    contrast: bool,
) -> usize {
    let views = if contrast { 3 } else { 2 };
    let header = SlotHeader::ViewBatch(ViewBatchHeader {
        seq: 0,
        seed: 0,
        height,
        width,
        labels: vec![0; labeled],
        labeled_indices: vec![0; labeled],
        unlabeled_true_labels: vec![0; unlabeled],
        unlabeled_indices: vec![0; unlabeled],
        has_contrast: contrast,
    });
    image_bytes(height, width)
        .and_then(|b| b.checked_mul(labeled.checked_add(unlabeled.checked_mul(views)?)?))
        .map_or(usize::MAX, |payload| encoded_len(&header, payload))
}

/// Encodes `batch` into `out`; returns the bytes used.
///
/// Fails with [`SlotError::InvalidBatch`] when the batch breaks its invariants and with
/// [`SlotError::SlotTooSmall`] when `out` is too short.
pub fn encode_view_batch(batch: &ViewBatch, out: &mut [u8]) -> Result<usize, SlotError> {
    let seq = batch.seq;
    let labeled = batch.labels.len();
    let unlabeled = batch.unlabeled_indices.len();
    let image = image_bytes(batch.height, batch.width).unwrap_or(usize::MAX);
    let expected = |count: usize| image.saturating_mul(count);
    check_len(seq, "labeled_indices", batch.labeled_indices.len(), labeled)?;
    check_len(
        seq,
        "unlabeled_true_labels",
        batch.unlabeled_true_labels.len(),
        unlabeled,
    )?;
    check_len(
        seq,
        "labeled_weak",
        batch.labeled_weak.len(),
        expected(labeled),
    )?;
    check_len(
        seq,
        "unlabeled_weak",
        batch.unlabeled_weak.len(),
        expected(unlabeled),
    )?;
    check_len(
        seq,
        "unlabeled_strong",
        batch.unlabeled_strong.len(),
        expected(unlabeled),
    )?;

    // An empty contrast part means the contrast view is switched off.
    let contrast_len = batch.unlabeled_contrast.len();
    if contrast_len != 0 {
        check_len(seq, "unlabeled_contrast", contrast_len, expected(unlabeled))?;
    }

    encode(
        &view_header(batch),
        &[
            &batch.labeled_weak,
            &batch.unlabeled_weak,
            &batch.unlabeled_strong,
            &batch.unlabeled_contrast,
        ],
        out,
    )
}

/// Decodes a [`ViewBatch`] slot into an owned batch.
pub fn decode_view_batch(slot: &[u8]) -> Result<ViewBatch, SlotError> {
    let (header, payload) = read_header(slot)?;
    let SlotHeader::ViewBatch(h) = header else {
        return Err(SlotError::WrongKind {
            expected: "ViewBatch",
            found: header.kind(),
        });
    };
    let labeled = h.labels.len();
    let unlabeled = h.unlabeled_indices.len();
    check_header_len(
        "ViewBatch",
        h.seq,
        "labeled_indices",
        h.labeled_indices.len(),
        labeled,
    )?;
    check_header_len(
        "ViewBatch",
        h.seq,
        "unlabeled_true_labels",
        h.unlabeled_true_labels.len(),
        unlabeled,
    )?;
    let contrast = if h.has_contrast { unlabeled } else { 0 };
    let [
        labeled_weak,
        unlabeled_weak,
        unlabeled_strong,
        unlabeled_contrast,
    ] = split_payload(
        "ViewBatch",
        h.seq,
        payload,
        image_bytes(h.height, h.width),
        [labeled, unlabeled, unlabeled, contrast],
    )?;
    Ok(ViewBatch {
        seq: h.seq,
        seed: h.seed,
        height: h.height,
        width: h.width,
        labeled_weak: labeled_weak.to_vec(),
        labels: h.labels,
        labeled_indices: h.labeled_indices,
        unlabeled_weak: unlabeled_weak.to_vec(),
        unlabeled_strong: unlabeled_strong.to_vec(),
        unlabeled_contrast: unlabeled_contrast.to_vec(),
        unlabeled_true_labels: h.unlabeled_true_labels,
        unlabeled_indices: h.unlabeled_indices,
    })
}
