//! Error type of the engine.

use std::path::PathBuf;

/// One way in which a checkpoint file disagrees with the model that loads it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum CheckpointMismatch {
    /// The model has this tensor and the file does not.
    Missing {
        /// PyTorch-style tensor name.
        name: String,
    },
    /// The file has this tensor and the model does not.
    Unexpected {
        /// PyTorch-style tensor name.
        name: String,
    },
    /// The tensor exists in both with different shapes.
    Shape {
        /// PyTorch-style tensor name.
        name: String,
        /// Shape the model expects.
        expected: Vec<usize>,
        /// Shape stored in the file.
        actual: Vec<usize>,
    },
    /// The tensor exists in both with different element types.
    Dtype {
        /// PyTorch-style tensor name.
        name: String,
        /// Element type the model expects, as safetensors spells it (`F32`, `I64`).
        expected: String,
        /// Element type stored in the file.
        actual: String,
    },
}

impl std::fmt::Display for CheckpointMismatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Missing { name } => write!(f, "{name}: missing from the file"),
            Self::Unexpected { name } => write!(f, "{name}: not a tensor of this model"),
            Self::Shape {
                name,
                expected,
                actual,
            } => {
                write!(f, "{name}: expected shape {expected:?}, found {actual:?}")
            }
            Self::Dtype {
                name,
                expected,
                actual,
            } => {
                write!(f, "{name}: expected dtype {expected}, found {actual}")
            }
        }
    }
}

fn join_mismatches(mismatches: &[CheckpointMismatch]) -> String {
    let lines: Vec<String> = mismatches.iter().map(ToString::to_string).collect();
    lines.join("; ")
}

/// Errors of the tensor engine, the model, the optimizer and checkpoint I/O.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NnError {
    /// A tensor handed to the engine has the wrong shape or length.
    #[error("invalid shape for {name}: expected {expected}, got {actual:?}")]
    Shape {
        /// The tensor or argument that was checked.
        name: String,
        /// Description of the accepted shape, e.g. `[N, 3, H, W] with N >= 2`.
        expected: String,
        /// The shape that was passed.
        actual: Vec<usize>,
    },
    /// A model or optimizer setting is out of range.
    #[error("invalid setting {name} = {value}: {reason}")]
    Config {
        /// Setting name.
        name: &'static str,
        /// The rejected value.
        value: String,
        /// What is accepted instead.
        reason: String,
    },
    /// The rayon thread pool could not be built.
    #[error("failed to build a thread pool of {threads} threads: {source}")]
    ThreadPool {
        /// Requested thread count.
        threads: usize,
        /// Cause reported by rayon.
        source: rayon::ThreadPoolBuildError,
    },
    /// `backward` was called without a preceding `forward_train` on the same model.
    #[error("backward needs the caches of forward_train; call forward_train first")]
    NoForwardCache,
    /// Reading or writing a checkpoint file failed.
    #[error("failed to access checkpoint {path}: {source}")]
    Io {
        /// File path.
        path: PathBuf,
        /// Cause reported by the OS.
        source: std::io::Error,
    },
    /// The file is not a readable safetensors file.
    #[error("invalid safetensors data in {path}: {message}")]
    Format {
        /// File path (or `<memory>`).
        path: PathBuf,
        /// Cause reported by the safetensors parser.
        message: String,
    },
    /// The checkpoint's tensors do not match the model; every mismatch is listed.
    #[error(
        "checkpoint {path} does not match the model ({} mismatches): {}",
        mismatches.len(),
        join_mismatches(mismatches)
    )]
    Checkpoint {
        /// File path (or `<memory>`).
        path: PathBuf,
        /// All mismatches found, in file order then model order.
        mismatches: Vec<CheckpointMismatch>,
    },
    /// The optimizer was handed a parameter list that differs from the one it was built on.
    #[error("optimizer state does not match parameter {name}: {reason}")]
    Optimizer {
        /// Parameter name.
        name: String,
        /// What differs.
        reason: String,
    },
}
