//! Reading a checkpoint back: the online model, the EMA, the optimizer and the whole training
//! step, from a directory whose files were verified against `state.ron` first.

use std::collections::HashMap;
use std::io;
use std::path::{Path, PathBuf};

use ccssl_nn::{CheckpointMismatch, NnError, WideResNet};
use ccssl_step::Step;
use safetensors::tensor::{Dtype, SafeTensors};

use crate::checkpoint::{CheckpointError, CheckpointState, STATE_FILE, verify_dir};
use crate::contents::{EMA_FILE, MODEL_FILE, OPTIMIZER_FILE};
use crate::ema::Ema;

/// Choice of the weights of a checkpoint to load into a model.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Weights {
    /// The EMA weights (`ema.safetensors`), the ones accuracies are reported for.
    Ema,
    /// The raw online model (`model.safetensors`).
    Raw,
}

impl Weights {
    /// File holding these weights.
    pub fn file_name(self) -> &'static str {
        match self {
            Weights::Ema => EMA_FILE,
            Weights::Raw => MODEL_FILE,
        }
    }

    /// Lowercase name for output: `ema` or `raw`.
    pub fn name(self) -> &'static str {
        match self {
            Weights::Ema => "ema",
            Weights::Raw => "raw",
        }
    }
}

/// A checkpoint directory whose files match its `state.ron`.
#[derive(Clone, Debug)]
pub struct LoadedCheckpoint {
    /// The step directory, such as `runs/x/checkpoints/step-00001024`.
    pub dir: PathBuf,
    /// Its parsed and checked `state.ron`.
    pub state: CheckpointState,
}

/// Finds and verifies the checkpoint `path` names: a step directory holding `state.ron`, a
/// `checkpoints/` directory (its `last` link is followed), or a run directory (its
/// `checkpoints/last` is followed).
///
/// # Errors
/// [`CheckpointError::Io`] when `path` cannot be read, [`CheckpointError::NotFound`] when it
/// matches none of the three, and the errors of [`verify_dir`] for a damaged checkpoint.
pub fn open_checkpoint(path: &Path) -> Result<LoadedCheckpoint, CheckpointError> {
    if let Err(source) = std::fs::metadata(path) {
        return Err(CheckpointError::Io {
            action: "failed to open checkpoint",
            path: path.to_owned(),
            source,
        });
    }
    let dir = if path.join(STATE_FILE).exists() {
        path.to_owned()
    } else if let Some(target) = follow_last(path)? {
        target
    } else if let Some(target) = follow_last(&path.join("checkpoints"))? {
        target
    } else {
        return Err(CheckpointError::NotFound(path.to_owned()));
    };
    let state = verify_dir(&dir)?;
    tracing::debug!(dir = %dir.display(), step = state.step, "checkpoint verified");
    Ok(LoadedCheckpoint { dir, state })
}

/// Returns the directory `root/last` points to, or `None` when there is no such link.
fn follow_last(root: &Path) -> Result<Option<PathBuf>, CheckpointError> {
    let link = root.join("last");
    match std::fs::read_link(&link) {
        Ok(target) => Ok(Some(root.join(target))),
        Err(err)
            if matches!(
                err.kind(),
                io::ErrorKind::NotFound | io::ErrorKind::NotADirectory
            ) =>
        {
            Ok(None)
        }
        // `last` exists but is a plain directory or file: not a link this crate wrote.
        Err(err) if err.kind() == io::ErrorKind::InvalidInput => Ok(None),
        Err(source) => Err(CheckpointError::Io {
            action: "failed to read link",
            path: link,
            source,
        }),
    }
}

impl LoadedCheckpoint {
    /// Path of one of the checkpoint's files.
    pub fn file(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// Builds the model `state.ron` describes and loads `weights` into it.
    ///
    /// # Errors
    /// [`CheckpointError::TensorFile`] for unreadable safetensors data,
    /// [`CheckpointError::TensorMismatch`] listing every missing, extra, wrong-shape or
    /// wrong-dtype tensor, [`CheckpointError::Io`] when the file cannot be read.
    pub fn load_model(&self, weights: Weights) -> Result<WideResNet, CheckpointError> {
        let mut model =
            WideResNet::new(self.state.model_config(), self.state.seed).map_err(|err| {
                CheckpointError::Restore {
                    path: self.dir.clone(),
                    message: err.to_string(),
                }
            })?;
        let path = self.file(weights.file_name());
        ccssl_nn::load_safetensors(&mut model, &path).map_err(|err| nn_error(&path, err))?;
        Ok(model)
    }

    /// Rebuilds the EMA from `ema.safetensors` with the decay of `state.ron`.
    ///
    /// # Errors
    /// As [`Self::load_model`], and [`CheckpointError::Restore`] for an invalid decay.
    pub fn restore_ema(&self) -> Result<Ema, CheckpointError> {
        let model = self.load_model(Weights::Ema)?;
        let (params, buffers) = crate::ema::copy_model_tensors(&model);
        Ema::from_parts(self.state.ema_decay, params, buffers).map_err(|err| {
            CheckpointError::Restore {
                path: self.dir.clone(),
                message: err.to_string(),
            }
        })
    }

    /// Reads the momentum buffers of `optimizer.safetensors` in [`WideResNet::named_parameters`]
    /// order, one per parameter the file holds a buffer for; empty when the file holds no
    /// tensors (a checkpoint taken before the first step). Which parameters need a buffer
    /// depends on the step settings, so [`Self::restore_step`] checks that.
    ///
    /// # Errors
    /// [`CheckpointError::TensorFile`] for unreadable data, [`CheckpointError::TensorMismatch`]
    /// listing every buffer that is not named after a parameter or differs from it in dtype or
    /// shape.
    pub fn restore_momentum(
        &self,
        model: &WideResNet,
    ) -> Result<Vec<(String, Vec<f32>)>, CheckpointError> {
        let path = self.file(OPTIMIZER_FILE);
        let bytes = std::fs::read(&path).map_err(|source| match source.kind() {
            io::ErrorKind::NotFound => CheckpointError::MissingFile(path.clone()),
            _ => CheckpointError::Io {
                action: "failed to read",
                path: path.clone(),
                source,
            },
        })?;
        read_momentum(&bytes, &path, model)
    }

    /// Rebuilds the training step: the online model, the optimizer's momentum buffers and the
    /// step counter (so the learning-rate schedule continues where it stopped), with the step
    /// settings of `state.ron`. `threads` replaces the recorded thread count when given.
    ///
    /// # Errors
    /// As [`Self::load_model`] and [`Self::restore_momentum`], and
    /// [`CheckpointError::Restore`] when the step rejects the recorded settings.
    pub fn restore_step(&self, threads: Option<usize>) -> Result<Step, CheckpointError> {
        let model = self.load_model(Weights::Raw)?;
        let momentum = self.restore_momentum(&model)?;
        check_updated_set(&self.file(OPTIMIZER_FILE), &self.state, &model, &momentum)?;
        let mut config = self.state.step_config.clone();
        if let Some(threads) = threads {
            config.threads = threads;
        }
        let mut step = Step::with_model(config, model).map_err(|err| CheckpointError::Restore {
            path: self.dir.clone(),
            message: err.to_string(),
        })?;
        step.optimizer_mut().set_momentum_buffers(momentum);
        step.set_steps_done(self.state.step);
        tracing::info!(step = self.state.step, dir = %self.dir.display(), "restored the training step");
        Ok(step)
    }
}

/// Checks that a non-empty set of momentum buffers covers exactly the parameters the step
/// updates: all of them, except the projection head (`fc1`, `fc2`) when `lambda_c` is 0.
/// NOTE: this mirrors the rule of `ccssl_step::Step::train_step`; change both together.
fn check_updated_set(
    path: &Path,
    state: &CheckpointState,
    model: &WideResNet,
    momentum: &[(String, Vec<f32>)],
) -> Result<(), CheckpointError> {
    if momentum.is_empty() {
        return Ok(());
    }
    let head_updated = state.step_config.loss.lambda_c != 0.0;
    let mut mismatches = Vec::new();
    for (name, _) in model.named_parameters() {
        let updated = head_updated || !(name.starts_with("fc1.") || name.starts_with("fc2."));
        let saved = momentum.iter().any(|(saved, _)| *saved == name);
        if updated && !saved {
            mismatches.push(CheckpointMismatch::Missing { name });
        } else if saved && !updated {
            mismatches.push(CheckpointMismatch::Unexpected { name });
        }
    }
    if mismatches.is_empty() {
        Ok(())
    } else {
        Err(CheckpointError::TensorMismatch {
            path: path.to_owned(),
            mismatches,
        })
    }
}

/// Parses momentum buffers and checks them against `model`'s parameters.
fn read_momentum(
    bytes: &[u8],
    path: &Path,
    model: &WideResNet,
) -> Result<Vec<(String, Vec<f32>)>, CheckpointError> {
    let file = SafeTensors::deserialize(bytes).map_err(|err| CheckpointError::TensorFile {
        path: path.to_owned(),
        message: err.to_string(),
    })?;
    if file.is_empty() {
        return Ok(Vec::new());
    }
    let found: HashMap<String, _> = file.tensors().into_iter().collect();
    let params = model.named_parameters();
    let mut mismatches = Vec::new();
    let mut extra: Vec<&String> = found
        .keys()
        .filter(|name| !params.iter().any(|(p, _)| p == *name))
        .collect();
    extra.sort();
    for name in extra {
        mismatches.push(CheckpointMismatch::Unexpected { name: name.clone() });
    }
    let mut buffers = Vec::with_capacity(params.len());
    for (name, param) in &params {
        let Some(view) = found.get(name) else {
            continue;
        };
        if view.dtype() != Dtype::F32 {
            mismatches.push(CheckpointMismatch::Dtype {
                name: name.clone(),
                expected: "F32".into(),
                actual: format!("{:?}", view.dtype()),
            });
        } else if view.shape() != param.shape.as_slice() {
            mismatches.push(CheckpointMismatch::Shape {
                name: name.clone(),
                expected: param.shape.clone(),
                actual: view.shape().to_vec(),
            });
        } else {
            let values = view
                .data()
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect();
            buffers.push((name.clone(), values));
        }
    }
    if !mismatches.is_empty() {
        return Err(CheckpointError::TensorMismatch {
            path: path.to_owned(),
            mismatches,
        });
    }
    Ok(buffers)
}

/// Maps an engine error about `path` to the checkpoint error naming the same problem.
fn nn_error(path: &Path, err: NnError) -> CheckpointError {
    match err {
        NnError::Checkpoint { mismatches, .. } => CheckpointError::TensorMismatch {
            path: path.to_owned(),
            mismatches,
        },
        NnError::Format { message, .. } => CheckpointError::TensorFile {
            path: path.to_owned(),
            message,
        },
        NnError::Io { source, .. } if source.kind() == io::ErrorKind::NotFound => {
            CheckpointError::MissingFile(path.to_owned())
        }
        NnError::Io { source, .. } => CheckpointError::Io {
            action: "failed to read",
            path: path.to_owned(),
            source,
        },
        other => CheckpointError::Restore {
            path: path.to_owned(),
            message: other.to_string(),
        },
    }
}

#[cfg(test)]
#[path = "restore_tests.rs"]
mod tests;
