//! The EMA, evaluation and checkpoint stage of ccssl.
//!
//! This crate owns the exponential moving average of the model parameters, the checkpoint
//! directory layout (atomic writes, checksums, `last` and `best`, pruning) and the
//! `metrics.jsonl` records with their end-of-run summary. Tensor serialisation belongs to
//! `ccssl-nn`: a checkpoint treats its tensor files as opaque bytes with a checksum.

pub mod checkpoint;
pub mod ema;
pub mod records;

pub use checkpoint::{
    CheckpointError, CheckpointState, Checkpoints, FileDigest, Which, verify_dir,
};
pub use ema::{Ema, EmaError, TensorRef};
pub use records::{
    EndRecord, EndStatus, EvalRecord, MetricsRecord, RecordWriter, RecordsError, Summary,
    SummaryRow, TrainRecord, parse_records, read_records,
};
