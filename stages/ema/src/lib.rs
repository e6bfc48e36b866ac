//! The EMA, evaluation and checkpoint stage of ccssl.
//!
//! This crate owns the exponential moving average of the model parameters, the evaluation of
//! a model on a test set (top-1, top-5, loss), the checkpoint directory layout (atomic writes,
//! checksums, `last` and `best`, pruning), the contents of a checkpoint (tensor files under
//! PyTorch names and a self-describing `state.ron`) with the functions that restore a model,
//! an EMA or a whole training step from it, and the `metrics.jsonl` records with their
//! end-of-run summary.

pub mod checkpoint;
pub mod contents;
pub mod ema;
pub mod eval;
pub mod records;
pub mod restore;
pub mod stage;
#[cfg(test)]
mod testutil;

pub use checkpoint::{
    CheckpointError, CheckpointState, Checkpoints, FileDigest, Which, verify_dir,
};
pub use contents::{
    CheckpointFiles, EMA_FILE, MODEL_FILE, OPTIMIZER_FILE, ema_bytes, model_bytes, optimizer_bytes,
};
pub use ema::{Ema, EmaError, TensorRef};
pub use eval::{
    DEFAULT_EVAL_BATCH, EvalError, EvalMetrics, EvalTally, Evaluator, InputTable, evaluate_model,
    tensor_refs,
};
pub use records::{
    EndRecord, EndStatus, EvalRecord, MetricsRecord, RecordWriter, RecordsError, Summary,
    SummaryRow, TrainRecord, parse_records, read_records,
};
pub use restore::{LoadedCheckpoint, Weights, open_checkpoint};
