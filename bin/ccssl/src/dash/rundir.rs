//! Run directory inspection for `ccssl dash RUN_DIR`: whether its run is running, finished or
//! neither, and the summary of a run that is not running.
//!
//! Files read in the run directory:
//! - `supervisor.pid`: decimal pid of the supervisor, written when the run starts.
//! - `metrics.jsonl`: training log in the [`records`](super::records) format; an `end` record
//!   means the run finished.
//! - `train.log`: the log whose tail the dashboard shows.

use std::fmt::Write as _;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use ccssl_ema::records::{
    EndRecord, EndStatus, EvalRecord, MetricsRecord, RecordsError, Summary, TrainRecord,
    current_history, parse_records,
};

pub const SUPERVISOR_PID_FILE: &str = "supervisor.pid";
pub use ccssl_ema::records::METRICS_FILE;
pub const LOG_FILE: &str = "train.log";

/// Paths of the files in one run directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunDir {
    pub root: PathBuf,
}

impl RunDir {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    pub fn supervisor_pid_path(&self) -> PathBuf {
        self.root.join(SUPERVISOR_PID_FILE)
    }

    pub fn metrics_path(&self) -> PathBuf {
        self.root.join(METRICS_FILE)
    }

    pub fn log_path(&self) -> PathBuf {
        self.root.join(LOG_FILE)
    }
}

/// Errors inspecting a run directory.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RunDirError {
    #[error(
        "run directory {path} not found; pass the directory `ccssl-run` created, e.g. runs/NAME"
    )]
    NotFound { path: PathBuf },
    #[error(
        "{path} is not a ccssl run directory (no graph.ron in it); pass the directory \
         `ccssl-run` created, e.g. runs/NAME"
    )]
    NotARun { path: PathBuf },
    #[error("failed to read {path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error(transparent)]
    Records(#[from] RecordsError),
}

/// State of a run, read from its directory.
#[derive(Debug, Clone, PartialEq)]
pub enum RunStatus {
    /// The supervisor named in `supervisor.pid` is alive; attach a dashboard.
    Running { supervisor_pid: u32 },
    /// `metrics.jsonl` contains an `end` record.
    Finished(RunSummary),
    /// No live supervisor and no `end` record: the run was killed, or never started.
    NotRunning(RunSummary),
}

/// Summary of a run read from `metrics.jsonl`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct RunSummary {
    pub end: Option<EndRecord>,
    /// The newest `train` record.
    pub last_train: Option<TrainRecord>,
    /// Every `eval` record, in file order.
    pub evals: Vec<EvalRecord>,
}

/// Decides whether the run in `run_dir` is running, finished or neither.
///
/// An `end` record wins over a live pid, because the supervisor writes it just before exiting.
/// NOTE: a supervisor counts as alive when `/proc/<pid>` exists. After a crash another process
/// may reuse the pid, and the run then reads as running.
pub fn run_status(run_dir: &Path) -> Result<RunStatus, RunDirError> {
    if !run_dir.is_dir() {
        return Err(RunDirError::NotFound {
            path: run_dir.to_owned(),
        });
    }
    // The supervisor writes graph.ron before any stage starts, so every run directory has it.
    if !run_dir.join("graph.ron").is_file() {
        return Err(RunDirError::NotARun {
            path: run_dir.to_owned(),
        });
    }
    let dir = RunDir::new(run_dir);
    let summary = read_summary(&dir.metrics_path())?;
    if summary.end.is_some() {
        return Ok(RunStatus::Finished(summary));
    }
    match read_pid(&dir.supervisor_pid_path())? {
        Some(pid) if Path::new(&format!("/proc/{pid}")).exists() => Ok(RunStatus::Running {
            supervisor_pid: pid,
        }),
        _ => Ok(RunStatus::NotRunning(summary)),
    }
}

fn read_pid(path: &Path) -> Result<Option<u32>, RunDirError> {
    match fs::read_to_string(path) {
        // A pid file that does not parse (written halfway, edited) counts as no supervisor.
        Ok(text) => Ok(text.trim().parse().ok()),
        Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(RunDirError::Io {
            path: path.to_owned(),
            source,
        }),
    }
}

/// Reads `metrics.jsonl`; a missing file gives an empty summary.
pub fn read_summary(path: &Path) -> Result<RunSummary, RunDirError> {
    let text = match fs::read_to_string(path) {
        Ok(text) => text,
        Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(RunSummary::default()),
        Err(source) => {
            return Err(RunDirError::Io {
                path: path.to_owned(),
                source,
            });
        }
    };
    let mut summary = RunSummary::default();
    for record in current_history(parse_records(&text, path)?) {
        match record {
            MetricsRecord::Train(train) => summary.last_train = Some(train),
            MetricsRecord::Eval(eval) => summary.evals.push(eval),
            MetricsRecord::End(end) => summary.end = Some(end),
            // The summary is recomputed from the evaluations, and a resume only shapes the
            // history, so neither adds anything here.
            MetricsRecord::Summary(_) | MetricsRecord::Resume(_) => {}
        }
    }
    Ok(summary)
}

impl RunSummary {
    /// Returns the evaluation with the highest EMA top-1 accuracy, the earliest on ties.
    pub fn best_eval(&self) -> Option<&EvalRecord> {
        self.evals
            .iter()
            .reduce(|best, e| if e.top1_ema > best.top1_ema { e } else { best })
    }

    /// Formats the summary as lines of plain text for the terminal.
    pub fn render(&self) -> String {
        let mut out = String::new();
        if let Some(end) = &self.end {
            let status = match end.status {
                EndStatus::Completed => "completed",
                EndStatus::Stopped => "stopped on request",
                EndStatus::Failed => "failed",
            };
            let _ = writeln!(
                out,
                "ended: {status} at step {}/{}",
                end.step, end.total_steps
            );
        }
        if let Some(t) = &self.last_train {
            let _ = writeln!(
                out,
                "last train (step {}): loss {:.4} (Lx {:.4} Lu {:.4} Lc {:.4}), mask {:.1}%, \
                 pseudo-label acc {:.1}%, lr {:.5}",
                t.step,
                t.loss,
                t.loss_x,
                t.loss_u,
                t.loss_c,
                t.mask_ratio * 100.0,
                t.pseudo_label_acc * 100.0,
                t.lr
            );
        }
        if let Some(e) = self.evals.last() {
            let _ = writeln!(
                out,
                "last eval (step {}): top-1 EMA {:.2}%, raw {:.2}%, top-5 EMA {:.2}%, loss EMA {:.4}",
                e.step, e.top1_ema, e.top1_raw, e.top5_ema, e.loss_ema
            );
        }
        if let Some(summary) = Summary::from_evals(&self.evals) {
            let _ = writeln!(out, "top-1 over {} evaluations:", summary.evaluations);
            for (model, row) in [("EMA", &summary.ema), ("raw", &summary.raw)] {
                let _ = writeln!(
                    out,
                    "  {model:<3} best {:.2}% (step {}), last {:.2}%, median of last 5 {:.2}%",
                    row.best, row.best_step, row.last, row.median_last5
                );
            }
        }
        if out.is_empty() {
            out.push_str("no training records in metrics.jsonl\n");
        }
        out
    }
}

impl RunStatus {
    /// Formats the message `ccssl dash` prints for a run it does not attach to, with its summary.
    pub fn describe(&self, run_dir: &Path) -> String {
        let dir = run_dir.display();
        match self {
            Self::Running { supervisor_pid } => {
                format!("run {dir} is running (supervisor pid {supervisor_pid})\n")
            }
            Self::Finished(summary) => format!("run {dir} has finished\n{}", summary.render()),
            Self::NotRunning(summary) => format!(
                "run {dir} is not running: no live supervisor and no end record (killed, or \
                 never started)\n{}",
                summary.render()
            ),
        }
    }
}

#[cfg(test)]
mod tests;
