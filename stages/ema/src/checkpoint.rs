//! Checkpoint directories: atomic writes, checksums, `last` and `best`, pruning.
//!
//! Layout under a run directory:
//!
//! ```text
//! checkpoints/
//!   step-00001024/   model.safetensors  ema.safetensors  optimizer.safetensors  state.ron
//!   step-00002048/   ...
//!   last -> step-00002048
//!   best -> step-00001024
//! ```
//!
//! A checkpoint is first written into a hidden temporary directory; every file and the
//! directory are fsynced, then the directory is renamed into place and the `last` / `best`
//! symbolic links are replaced by rename. A crash at any point therefore leaves either the
//! previous checkpoint or the new one behind `last`, never a half-written one. `state.ron`
//! records each file's size and MD5 digest, so a truncated or altered file is detected on load.
//! MD5 detects accidental corruption and edits; it is no defence against a forger.

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use ccssl_loader::DatasetConfig;
use ccssl_nn::{CheckpointMismatch, WideResNetConfig};
use ccssl_step::{StepConfig, ViewNorm};
use md5::{Digest, Md5};
use serde::{Deserialize, Serialize};

/// Version of the `state.ron` layout; bumped when a field changes meaning. Format 2 added the
/// settings that make a checkpoint self-describing (model, normalisation, dataset, classes,
/// optimizer and EMA settings).
pub const STATE_FORMAT: u32 = 2;

/// Name of the file holding a checkpoint's [`CheckpointState`].
pub const STATE_FILE: &str = "state.ron";

/// Error raised while writing, finding or verifying a checkpoint.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CheckpointError {
    /// A file system call failed.
    #[error("{action} {path}: {source}")]
    Io {
        /// What was being done, such as `failed to write`.
        action: &'static str,
        /// The file or directory involved.
        path: PathBuf,
        /// The operating system's error.
        source: io::Error,
    },
    /// The directory has no checkpoint at all.
    #[error(
        "no checkpoint found in {0}: expected a run directory, its checkpoints/ directory \
         with a `last` link, or a step-NNNNNNNN directory with state.ron"
    )]
    NotFound(PathBuf),
    /// A file listed in `state.ron` is missing.
    #[error(
        "checkpoint file {0} is missing; the checkpoint is incomplete, resume from another one"
    )]
    MissingFile(PathBuf),
    /// A file has a different size than recorded.
    #[error(
        "checkpoint file {path} has {actual} bytes but state.ron records {expected}; the file is truncated or replaced"
    )]
    SizeMismatch {
        /// The file.
        path: PathBuf,
        /// Recorded size in bytes.
        expected: u64,
        /// Size found on disk in bytes.
        actual: u64,
    },
    /// A file's MD5 digest differs from the recorded one.
    #[error(
        "checkpoint file {path} has MD5 {actual} but state.ron records {expected}; the file was altered or corrupted"
    )]
    ChecksumMismatch {
        /// The file.
        path: PathBuf,
        /// Recorded digest, lowercase hex.
        expected: String,
        /// Digest of the file on disk, lowercase hex.
        actual: String,
    },
    /// `state.ron` does not parse or contains impossible values.
    #[error("invalid checkpoint state {path}: {message}")]
    InvalidState {
        /// The state file.
        path: PathBuf,
        /// What is wrong with it.
        message: String,
    },
    /// A tensor file is not readable safetensors data.
    #[error("checkpoint file {path} is not a valid safetensors file: {message}")]
    TensorFile {
        /// The file.
        path: PathBuf,
        /// What the safetensors parser reported.
        message: String,
    },
    /// A tensor file's tensors do not fit the model that `state.ron` describes.
    #[error(
        "checkpoint file {path} does not fit the model in state.ron ({} mismatches): {}",
        mismatches.len(),
        join_mismatches(mismatches)
    )]
    TensorMismatch {
        /// The file.
        path: PathBuf,
        /// Every mismatching tensor, by name.
        mismatches: Vec<CheckpointMismatch>,
    },
    /// The model, EMA or training step could not be rebuilt from the checkpoint's settings.
    #[error("failed to restore from checkpoint {path}: {message}")]
    Restore {
        /// The checkpoint directory.
        path: PathBuf,
        /// The reason.
        message: String,
    },
    /// A file name would escape the checkpoint directory or clash with `state.ron`.
    #[error("invalid checkpoint file name `{0}`: expected a plain file name other than state.ron")]
    InvalidFileName(String),
}

/// Size and digest of one file of a checkpoint.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileDigest {
    /// File name inside the checkpoint directory.
    pub name: String,
    /// Size in bytes.
    pub bytes: u64,
    /// MD5 digest, lowercase hex.
    pub md5: String,
}

/// Contents of `state.ron`: where the run stood when the checkpoint was taken.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CheckpointState {
    /// Layout version, [`STATE_FORMAT`].
    pub format: u32,
    /// Training steps completed; a resumed run starts at this step.
    pub step: u64,
    /// Total steps of the run's schedule.
    pub total_steps: u64,
    /// The run seed.
    pub seed: u64,
    /// Hash of the resolved graph, so a resume with another graph is detected.
    pub graph_hash: String,
    /// Best EMA top-1 accuracy so far, in percent, if any evaluation ran.
    pub best_top1: Option<f64>,
    /// Step of the best evaluation.
    pub best_step: Option<u64>,
    /// Settings of the training step: model size, loss, optimizer and its schedule,
    /// normalisation of each view, threads.
    pub step_config: StepConfig,
    /// Learning rate the next step uses, which records the position in the schedule.
    pub next_lr: f32,
    /// Decay of the parameter EMA.
    pub ema_decay: f32,
    /// The dataset the run trains on; evaluation reads its test part.
    pub dataset: DatasetConfig,
    /// Class names, indexed by label; as many as the model has classes.
    pub class_names: Vec<String>,
    /// Height of the model input in pixels.
    pub image_height: u32,
    /// Width of the model input in pixels.
    pub image_width: u32,
    /// Files of the checkpoint with their sizes and digests; filled in by [`Checkpoints::write`].
    pub files: Vec<FileDigest>,
}

impl CheckpointState {
    /// Size of the WideResNet the tensor files hold.
    pub fn model_config(&self) -> WideResNetConfig {
        let model = &self.step_config.model;
        WideResNetConfig {
            depth: model.depth,
            widen: model.widen,
            num_classes: model.num_classes,
            proj_dim: model.proj_dim,
        }
    }

    /// Normalisation of evaluation and prediction inputs: that of the labeled weak view,
    /// which is the plain `ToTensor` + `Normalize` transform the reference applies to test
    /// images too.
    pub fn eval_normalization(&self) -> ViewNorm {
        self.step_config.normalization.labeled
    }

    /// Checks the values a reader relies on: a buildable model, one class name per class and
    /// a non-empty input size. Returns what is wrong.
    fn check(&self) -> Result<(), String> {
        if self.format != STATE_FORMAT {
            return Err(format!(
                "format {} is not supported; this build reads format {STATE_FORMAT}",
                self.format
            ));
        }
        self.model_config()
            .validate()
            .map_err(|err| format!("step_config.model: {err}"))?;
        let classes = self.step_config.model.num_classes;
        if self.class_names.len() != classes {
            return Err(format!(
                "class_names has {} names but the model has {classes} classes",
                self.class_names.len()
            ));
        }
        if self.image_height == 0 || self.image_width == 0 {
            return Err(format!(
                "image size {}x{} is empty",
                self.image_height, self.image_width
            ));
        }
        Ok(())
    }
}

/// The `format` field alone, read before the rest of `state.ron`; other fields are ignored.
#[derive(Deserialize)]
struct FormatProbe {
    format: u32,
}

/// Which checkpoint of a run to load.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Which {
    /// The newest one.
    Last,
    /// The one with the best EMA top-1 accuracy.
    Best,
}

impl Which {
    fn link_name(self) -> &'static str {
        match self {
            Which::Last => "last",
            Which::Best => "best",
        }
    }
}

/// The checkpoint directory of one run.
#[derive(Clone, Debug)]
pub struct Checkpoints {
    root: PathBuf,
    keep: usize,
}

impl Checkpoints {
    /// Opens (creating when needed) `checkpoints/` under `run_dir`, keeping the newest `keep`
    /// step directories besides the ones `last` and `best` point to.
    pub fn new(run_dir: &Path, keep: usize) -> Result<Self, CheckpointError> {
        let root = run_dir.join("checkpoints");
        fs::create_dir_all(&root).map_err(io_error("failed to create", &root))?;
        Ok(Self {
            root,
            keep: keep.max(1),
        })
    }

    /// Directory holding the step directories and links.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Writes a checkpoint atomically and returns its directory.
    ///
    /// `files` are (name, bytes) pairs; `state.files` is replaced by their digests. When a
    /// checkpoint of the same step already exists and verifies, it is kept and only the links
    /// move, because the same step contains the same model.
    pub fn write(
        &self,
        mut state: CheckpointState,
        files: &[(&str, &[u8])],
        is_best: bool,
    ) -> Result<PathBuf, CheckpointError> {
        let final_dir = self.root.join(step_dir_name(state.step));
        if final_dir.exists() && verify_dir(&final_dir).is_ok() {
            tracing::info!(step = state.step, dir = %final_dir.display(), "checkpoint of this step already written");
        } else {
            state.format = STATE_FORMAT;
            state.files = Vec::with_capacity(files.len());
            let tmp = self.root.join(format!(
                ".tmp-{}-{}",
                step_dir_name(state.step),
                std::process::id()
            ));
            remove_dir_if_present(&tmp)?;
            fs::create_dir(&tmp).map_err(io_error("failed to create", &tmp))?;
            for (name, bytes) in files {
                check_file_name(name)?;
                write_synced(&tmp.join(name), bytes)?;
                state.files.push(FileDigest {
                    name: (*name).to_owned(),
                    bytes: bytes.len() as u64,
                    md5: md5_hex(bytes),
                });
            }
            let text = ron::ser::to_string_pretty(&state, ron::ser::PrettyConfig::default())
                .map_err(|err| CheckpointError::InvalidState {
                    path: tmp.join(STATE_FILE),
                    message: err.to_string(),
                })?;
            write_synced(&tmp.join(STATE_FILE), text.as_bytes())?;
            sync_dir(&tmp)?;
            if final_dir.exists() {
                // A damaged directory of the same step: move it aside before the rename, because
                // rename cannot replace a non-empty directory.
                let aside = self.root.join(format!(
                    ".old-{}-{}",
                    step_dir_name(state.step),
                    std::process::id()
                ));
                fs::rename(&final_dir, &aside)
                    .map_err(io_error("failed to move aside", &final_dir))?;
                remove_dir_if_present(&aside)?;
            }
            fs::rename(&tmp, &final_dir).map_err(io_error("failed to rename into place", &tmp))?;
            sync_dir(&self.root)?;
            tracing::info!(step = state.step, dir = %final_dir.display(), "checkpoint written");
        }

        self.point(Which::Last, state.step)?;
        if is_best {
            self.point(Which::Best, state.step)?;
        }
        sync_dir(&self.root)?;
        self.prune()?;
        Ok(final_dir)
    }

    /// Returns the directory `last` or `best` points to, verified.
    pub fn find(&self, which: Which) -> Result<(PathBuf, CheckpointState), CheckpointError> {
        let link = self.root.join(which.link_name());
        let target = fs::read_link(&link).map_err(|err| match err.kind() {
            io::ErrorKind::NotFound => CheckpointError::NotFound(self.root.clone()),
            _ => CheckpointError::Io {
                action: "failed to read link",
                path: link.clone(),
                source: err,
            },
        })?;
        let dir = self.root.join(target);
        let state = verify_dir(&dir)?;
        Ok((dir, state))
    }

    /// Replaces a link by rename, so readers see either the old or the new target.
    fn point(&self, which: Which, step: u64) -> Result<(), CheckpointError> {
        let link = self.root.join(which.link_name());
        let tmp = self
            .root
            .join(format!(".{}-{}", which.link_name(), std::process::id()));
        let _ = fs::remove_file(&tmp);
        std::os::unix::fs::symlink(step_dir_name(step), &tmp)
            .map_err(io_error("failed to create link", &tmp))?;
        fs::rename(&tmp, &link).map_err(io_error("failed to replace link", &link))
    }

    /// Removes step directories beyond the newest `keep`, sparing `last` and `best`, and any
    /// temporary directory left by a crash.
    fn prune(&self) -> Result<(), CheckpointError> {
        let pinned: Vec<PathBuf> = [Which::Last, Which::Best]
            .iter()
            .filter_map(|w| fs::read_link(self.root.join(w.link_name())).ok())
            .collect();
        let mut steps = Vec::new();
        let entries = fs::read_dir(&self.root).map_err(io_error("failed to list", &self.root))?;
        for entry in entries {
            let entry = entry.map_err(io_error("failed to list", &self.root))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if (name.starts_with(".tmp-") || name.starts_with(".old-"))
                && !name.ends_with(&format!("-{}", std::process::id()))
            {
                remove_dir_if_present(&entry.path())?;
            } else if let Some(step) = parse_step_dir(&name) {
                steps.push((step, name));
            }
        }
        steps.sort_unstable();
        let excess = steps.len().saturating_sub(self.keep);
        for (step, name) in steps.into_iter().take(excess) {
            if pinned.iter().any(|p| p.as_os_str() == name.as_str()) {
                continue;
            }
            tracing::debug!(step, "pruning old checkpoint");
            remove_dir_if_present(&self.root.join(name))?;
        }
        Ok(())
    }
}

/// Checks every file of a checkpoint directory against its `state.ron` and returns the state.
pub fn verify_dir(dir: &Path) -> Result<CheckpointState, CheckpointError> {
    let state_path = dir.join(STATE_FILE);
    let text = match fs::read_to_string(&state_path) {
        Ok(text) => text,
        Err(err) if err.kind() == io::ErrorKind::NotFound => {
            return Err(if dir.is_dir() {
                CheckpointError::MissingFile(state_path)
            } else {
                CheckpointError::NotFound(dir.to_owned())
            });
        }
        Err(err) => {
            return Err(CheckpointError::Io {
                action: "failed to read",
                path: state_path,
                source: err,
            });
        }
    };
    // Read the format first, so a state file of another version is reported as such rather
    // than as a missing or unknown field.
    if let Ok(FormatProbe { format }) = ron::from_str(&text)
        && format != STATE_FORMAT
    {
        return Err(CheckpointError::InvalidState {
            path: state_path,
            message: format!(
                "format {format} is not supported; this build reads format {STATE_FORMAT}"
            ),
        });
    }
    let state: CheckpointState =
        ron::from_str(&text).map_err(|err| CheckpointError::InvalidState {
            path: state_path.clone(),
            message: err.to_string(),
        })?;
    if let Err(message) = state.check() {
        return Err(CheckpointError::InvalidState {
            path: state_path,
            message,
        });
    }
    // The file digests do not cover the step, so it is checked against the directory name the
    // writer gave it. The canonical path resolves `dir` when it is the `last` link.
    let named = fs::canonicalize(dir).ok().and_then(|real| {
        real.file_name()
            .and_then(|n| n.to_str())
            .and_then(parse_step_dir)
    });
    if let Some(named) = named
        && named != state.step
    {
        return Err(CheckpointError::InvalidState {
            path: state_path,
            message: format!(
                "step {} differs from the directory name {}; the state file was edited or the \
                 directory renamed, so restore it or pick another checkpoint",
                state.step,
                step_dir_name(named)
            ),
        });
    }
    for file in &state.files {
        check_file_name(&file.name)?;
        let path = dir.join(&file.name);
        let bytes = match fs::read(&path) {
            Ok(bytes) => bytes,
            Err(err) if err.kind() == io::ErrorKind::NotFound => {
                return Err(CheckpointError::MissingFile(path));
            }
            Err(err) => {
                return Err(CheckpointError::Io {
                    action: "failed to read",
                    path,
                    source: err,
                });
            }
        };
        if bytes.len() as u64 != file.bytes {
            return Err(CheckpointError::SizeMismatch {
                path,
                expected: file.bytes,
                actual: bytes.len() as u64,
            });
        }
        let actual = md5_hex(&bytes);
        if actual != file.md5 {
            return Err(CheckpointError::ChecksumMismatch {
                path,
                expected: file.md5.clone(),
                actual,
            });
        }
    }
    Ok(state)
}

fn join_mismatches(mismatches: &[CheckpointMismatch]) -> String {
    let lines: Vec<String> = mismatches.iter().map(ToString::to_string).collect();
    lines.join("; ")
}

/// Name of the directory of a step, zero-padded so names sort by step.
pub fn step_dir_name(step: u64) -> String {
    format!("step-{step:08}")
}

fn parse_step_dir(name: &str) -> Option<u64> {
    name.strip_prefix("step-")?.parse().ok()
}

fn check_file_name(name: &str) -> Result<(), CheckpointError> {
    let plain = !name.is_empty()
        && name != STATE_FILE
        && !name.starts_with('.')
        && !name.contains(['/', '\\']);
    if plain {
        Ok(())
    } else {
        Err(CheckpointError::InvalidFileName(name.to_owned()))
    }
}

/// Lowercase hex MD5 digest of `bytes`.
pub fn md5_hex(bytes: &[u8]) -> String {
    Md5::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn write_synced(path: &Path, bytes: &[u8]) -> Result<(), CheckpointError> {
    let mut file = File::create(path).map_err(io_error("failed to create", path))?;
    file.write_all(bytes)
        .map_err(io_error("failed to write", path))?;
    file.sync_all().map_err(io_error("failed to sync", path))
}

fn sync_dir(dir: &Path) -> Result<(), CheckpointError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_error("failed to sync", dir))
}

fn remove_dir_if_present(dir: &Path) -> Result<(), CheckpointError> {
    match fs::remove_dir_all(dir) {
        Err(err) if err.kind() != io::ErrorKind::NotFound => Err(CheckpointError::Io {
            action: "failed to remove",
            path: dir.to_owned(),
            source: err,
        }),
        _ => Ok(()),
    }
}

fn io_error(action: &'static str, path: &Path) -> impl FnOnce(io::Error) -> CheckpointError {
    let path = path.to_owned();
    move |source| CheckpointError::Io {
        action,
        path,
        source,
    }
}

#[cfg(test)]
#[path = "checkpoint_tests.rs"]
mod tests;
