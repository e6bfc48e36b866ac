//! Encoding and decoding of [`Snapshot`] slots: the training step's state after one step.
//!
//! The header carries the step, the checkpoint and final flags, the step's train metrics and a
//! table of named tensors (name, shape, kind). The payload is every tensor's values as
//! little-endian f32, in table order. Optimizer tensors travel only on checkpoint steps, so
//! the common step moves parameters and buffers alone.

use rkyv::{Archive, Deserialize, Serialize};

use super::{SlotError, SlotHeader, encoded_len, read_header, write_prefixed};

/// What a snapshot tensor holds.
#[derive(Archive, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub enum TensorKind {
    /// A trained parameter (convolution or linear weight, bias, BatchNorm affine).
    Param,
    /// A buffer the model updates without gradients (BatchNorm running statistics).
    Buffer,
    /// Optimizer state of the parameter of the same name (SGD momentum).
    Optimizer,
}

impl TensorKind {
    /// Lowercase name, for messages.
    pub fn name(self) -> &'static str {
        match self {
            TensorKind::Param => "param",
            TensorKind::Buffer => "buffer",
            TensorKind::Optimizer => "optimizer",
        }
    }
}

/// One entry of the tensor table: values follow in the payload, `shape` product of them.
#[derive(Archive, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct TensorEntry {
    /// PyTorch-style name, such as `block1.layer.0.conv1.weight`.
    pub name: String,
    /// Shape; the element count is its product (1 for an empty shape).
    pub shape: Vec<u64>,
    /// What the tensor holds.
    pub kind: TensorKind,
}

/// Train metrics of the step a snapshot follows.
#[derive(Archive, Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq)]
pub struct TrainMetrics {
    /// Learning rate the step used.
    pub lr: f32,
    /// Total loss `Lx + lambda_u * Lu + lambda_c * Lc`.
    pub loss: f32,
    /// Supervised cross-entropy `Lx`.
    pub loss_x: f32,
    /// Masked consistency loss `Lu`.
    pub loss_u: f32,
    /// Contrastive loss `Lc`.
    pub loss_c: f32,
    /// Fraction of unlabeled images whose pseudo-label passed the threshold.
    pub mask_ratio: f32,
    /// Accuracy of the pseudo-labels against the true labels, when those were known.
    pub pseudo_label_acc: Option<f32>,
    /// Images through the model in the step.
    pub images: u64,
    /// Wall time of the step in nanoseconds.
    pub step_ns: u64,
}

/// Header of a [`Snapshot`] slot; the tensor values travel as payload.
#[derive(Archive, Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct SnapshotHeader {
    /// Sequence number: the index of the batch the step consumed.
    pub seq: u64,
    /// Training steps completed after this one (`seq + 1` in a run without gaps).
    pub step: u64,
    /// Whether the consumer should write a checkpoint; optimizer tensors are present.
    pub checkpoint: bool,
    /// Whether this is the last snapshot of the run (total steps reached or stop requested).
    pub final_step: bool,
    /// BatchNorm `num_batches_tracked` counter, equal across the model's BatchNorm layers.
    pub batches_tracked: u64,
    /// Train metrics of the step.
    pub metrics: TrainMetrics,
    /// Tensor table, in payload order.
    pub tensors: Vec<TensorEntry>,
}

/// A decoded snapshot: the header and every tensor's values.
#[derive(Clone, Debug, PartialEq)]
pub struct Snapshot {
    /// The header fields.
    pub header: SnapshotHeader,
    /// Values of each tensor of `header.tensors`, same order.
    pub values: Vec<Vec<f32>>,
}

impl Snapshot {
    /// Tensors of one kind as (name, values) pairs, in table order.
    pub fn tensors(&self, kind: TensorKind) -> impl Iterator<Item = (&str, &[f32])> {
        self.header
            .tensors
            .iter()
            .zip(&self.values)
            .filter(move |(entry, _)| entry.kind == kind)
            .map(|(entry, values)| (entry.name.as_str(), values.as_slice()))
    }
}

/// A tensor to encode, borrowed from the model or optimizer.
#[derive(Clone, Copy, Debug)]
pub struct TensorSource<'a> {
    /// Name written into the table.
    pub name: &'a str,
    /// Shape; its product must equal `values.len()`.
    pub shape: &'a [usize],
    /// What the tensor holds.
    pub kind: TensorKind,
    /// Values.
    pub values: &'a [f32],
}

/// Element count of a table shape, or `None` on overflow.
fn numel(shape: &[u64]) -> Option<usize> {
    shape
        .iter()
        .try_fold(1usize, |acc, &d| acc.checked_mul(usize::try_from(d).ok()?))
}

/// Builds the header for `tensors`, checking each shape against its values.
fn header_for(
    seq: u64,
    meta: &SnapshotMeta,
    tensors: &[TensorSource<'_>],
) -> Result<SnapshotHeader, SlotError> {
    let mut entries = Vec::with_capacity(tensors.len());
    for tensor in tensors {
        let expected: usize = tensor.shape.iter().product();
        if expected != tensor.values.len() {
            return Err(SlotError::InvalidBatch {
                seq,
                field: "snapshot tensor values",
                len: tensor.values.len(),
                expected,
            });
        }
        entries.push(TensorEntry {
            name: tensor.name.to_owned(),
            shape: tensor.shape.iter().map(|&d| d as u64).collect(),
            kind: tensor.kind,
        });
    }
    Ok(SnapshotHeader {
        seq,
        step: meta.step,
        checkpoint: meta.checkpoint,
        final_step: meta.final_step,
        batches_tracked: meta.batches_tracked,
        metrics: meta.metrics,
        tensors: entries,
    })
}

/// The header fields of a snapshot besides its sequence number and tensor table.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct SnapshotMeta {
    /// Training steps completed.
    pub step: u64,
    /// Checkpoint flag.
    pub checkpoint: bool,
    /// Final flag.
    pub final_step: bool,
    /// BatchNorm `num_batches_tracked`.
    pub batches_tracked: u64,
    /// Train metrics.
    pub metrics: TrainMetrics,
}

/// Bytes a snapshot slot of `tensors` needs (values are not read, only names, shapes and
/// lengths); `usize::MAX` on overflow.
pub fn snapshot_size(tensors: &[TensorSource<'_>]) -> usize {
    let Ok(header) = header_for(0, &SnapshotMeta::default(), tensors) else {
        return usize::MAX;
    };
    let payload = tensors.iter().try_fold(0usize, |acc, t| {
        acc.checked_add(t.values.len().checked_mul(4)?)
    });
    // The metrics hold an Option, whose archive is as long when set.
    payload.map_or(usize::MAX, |p| {
        encoded_len(&SlotHeader::Snapshot(header), p)
    })
}

/// Encodes a snapshot of `tensors` with sequence number `seq` into `out`; returns bytes used.
///
/// Fails with [`SlotError::InvalidBatch`] when a shape disagrees with its values and with
/// [`SlotError::SlotTooSmall`] when `out` is too short.
pub fn encode_snapshot(
    seq: u64,
    meta: &SnapshotMeta,
    tensors: &[TensorSource<'_>],
    out: &mut [u8],
) -> Result<usize, SlotError> {
    let header = SlotHeader::Snapshot(header_for(seq, meta, tensors)?);
    let payload_len: usize = tensors.iter().map(|t| t.values.len() * 4).sum();
    write_prefixed(&header, payload_len, out, |payload| {
        let mut at = 0;
        for tensor in tensors {
            for value in tensor.values {
                payload[at..at + 4].copy_from_slice(&value.to_le_bytes());
                at += 4;
            }
        }
    })
}

/// Decodes a snapshot slot, checking the payload length against the tensor table.
pub fn decode_snapshot(slot: &[u8]) -> Result<Snapshot, SlotError> {
    let (header, payload) = read_header(slot)?;
    let SlotHeader::Snapshot(h) = header else {
        return Err(SlotError::WrongKind {
            expected: "Snapshot",
            found: header.kind(),
        });
    };
    let counts: Option<Vec<usize>> = h.tensors.iter().map(|t| numel(&t.shape)).collect();
    let total = counts.as_ref().and_then(|c| {
        c.iter()
            .try_fold(0usize, |acc, &n| acc.checked_add(n.checked_mul(4)?))
    });
    let (Some(counts), Some(total)) = (counts, total) else {
        return Err(SlotError::PayloadLength {
            kind: "Snapshot",
            seq: h.seq,
            expected: u64::MAX,
            actual: payload.len() as u64,
        });
    };
    if total != payload.len() {
        return Err(SlotError::PayloadLength {
            kind: "Snapshot",
            seq: h.seq,
            expected: total as u64,
            actual: payload.len() as u64,
        });
    }
    let mut values = Vec::with_capacity(counts.len());
    let mut rest = payload;
    for count in counts {
        let (part, tail) = rest.split_at(count * 4);
        rest = tail;
        values.push(
            part.chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect(),
        );
    }
    Ok(Snapshot { header: h, values })
}

#[cfg(test)]
mod tests {
    use super::*;
    use rkyv::util::AlignedVec;

    fn buffer(len: usize) -> AlignedVec<64> {
        let mut b = AlignedVec::<64>::with_capacity(len);
        b.resize(len, 0);
        b
    }

    fn meta() -> SnapshotMeta {
        SnapshotMeta {
            step: 8,
            checkpoint: true,
            final_step: false,
            batches_tracked: 8,
            metrics: TrainMetrics {
                lr: 0.03,
                loss: 2.5,
                loss_x: 2.0,
                loss_u: 0.25,
                loss_c: 0.25,
                mask_ratio: 0.5,
                pseudo_label_acc: Some(0.75),
                images: 160,
                step_ns: 1_000,
            },
        }
    }

    #[test]
    fn snapshot_round_trips_every_tensor_and_field() {
        let weight: Vec<f32> = (0..24).map(|i| i as f32 * 0.5 - 3.0).collect();
        let mean = vec![0.1f32, -0.2];
        let momentum: Vec<f32> = (0..24).map(|i| -(i as f32)).collect();
        let tensors = [
            TensorSource {
                name: "conv1.weight",
                shape: &[2, 3, 2, 2],
                kind: TensorKind::Param,
                values: &weight,
            },
            TensorSource {
                name: "bn1.running_mean",
                shape: &[2],
                kind: TensorKind::Buffer,
                values: &mean,
            },
            TensorSource {
                name: "conv1.weight",
                shape: &[2, 3, 2, 2],
                kind: TensorKind::Optimizer,
                values: &momentum,
            },
        ];
        let mut slot = buffer(snapshot_size(&tensors));
        let used = encode_snapshot(7, &meta(), &tensors, &mut slot).expect("encode");
        assert_eq!(used, slot.len(), "snapshot_size is exact");
        assert_eq!(super::super::read_seq(&slot).expect("seq"), 7);
        let decoded = decode_snapshot(&slot[..used]).expect("decode");
        assert_eq!(decoded.header.seq, 7);
        assert_eq!(decoded.header.step, 8);
        assert!(decoded.header.checkpoint && !decoded.header.final_step);
        assert_eq!(decoded.header.metrics, meta().metrics);
        assert_eq!(decoded.header.tensors[0].shape, vec![2, 3, 2, 2]);
        assert_eq!(decoded.values, vec![weight.clone(), mean.clone(), momentum]);
        let params: Vec<_> = decoded.tensors(TensorKind::Param).collect();
        assert_eq!(params, vec![("conv1.weight", weight.as_slice())]);
        assert_eq!(decoded.tensors(TensorKind::Buffer).count(), 1);
    }

    #[test]
    fn shape_that_disagrees_with_values_is_refused() {
        let values = [1.0f32; 5];
        let tensors = [TensorSource {
            name: "fc.bias",
            shape: &[6],
            kind: TensorKind::Param,
            values: &values,
        }];
        let mut slot = buffer(4096);
        let err = encode_snapshot(1, &meta(), &tensors, &mut slot).expect_err("bad shape");
        assert!(matches!(
            err,
            SlotError::InvalidBatch {
                len: 5,
                expected: 6,
                ..
            }
        ));
    }

    #[test]
    fn too_small_slot_and_truncated_payload_are_errors() {
        let values = vec![0.5f32; 100];
        let tensors = [TensorSource {
            name: "fc.weight",
            shape: &[10, 10],
            kind: TensorKind::Param,
            values: &values,
        }];
        let size = snapshot_size(&tensors);
        let mut small = buffer(size - 1);
        assert!(matches!(
            encode_snapshot(0, &meta(), &tensors, &mut small),
            Err(SlotError::SlotTooSmall { .. })
        ));
        let mut slot = buffer(size);
        let used = encode_snapshot(0, &meta(), &tensors, &mut slot).expect("encode");
        assert!(matches!(
            decode_snapshot(&slot[..used - 4]),
            Err(SlotError::Truncated { .. })
        ));
        // A prefix that claims a shorter payload than the table needs.
        let mut lying = slot.to_vec();
        let short = (400u64 - 4).to_le_bytes();
        lying[8..16].copy_from_slice(&short);
        assert!(matches!(
            decode_snapshot(&lying),
            Err(SlotError::PayloadLength {
                kind: "Snapshot",
                expected: 400,
                actual: 396,
                ..
            })
        ));
    }

    #[test]
    fn other_kinds_are_refused() {
        let mut slot = buffer(256);
        let used = super::super::encode_test(3, b"abc", &mut slot).expect("encode");
        assert!(matches!(
            decode_snapshot(&slot[..used]),
            Err(SlotError::WrongKind {
                expected: "Snapshot",
                found: "Test"
            })
        ));
    }
}
