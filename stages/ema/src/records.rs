//! `metrics.jsonl`: one JSON record per log interval and per evaluation, and the end-of-run
//! summary computed from the evaluations.
//!
//! Each line is one [`MetricsRecord`], tagged by `kind`:
//!
//! ```text
//! {"kind":"train","step":200,"lr":0.0299,"loss":2.0,"loss_x":0.25,"loss_u":0.5,"loss_c":1.25,"mask_ratio":0.75,"pseudo_label_acc":0.9,"images_per_s":310.5,"time_ns":1764892800000000000}
//! {"kind":"eval","step":1024,"top1_ema":41.2,"top5_ema":88.1,"loss_ema":1.71,"top1_raw":39.8,"top5_raw":87.0,"loss_raw":1.8,"images":10000}
//! {"kind":"summary","evaluations":4,"ema":{"best":41.2,"best_step":1024,"last":40.0,"median_last5":40.5},"raw":{...}}
//! {"kind":"end","step":1024,"total_steps":1024,"status":"completed","time_ns":1764893100000000000}
//! {"kind":"resume","step":768,"time_ns":1764893400000000000}
//! ```
//!
//! The step stage writes a `train` record per log interval, the EMA stage an `eval` record per
//! evaluation and the `summary` at the end, and the supervisor one `end` record as the run
//! exits and one `resume` record when `ccssl-run --resume` continues it. The file is only ever
//! appended to, so a resumed run keeps the records of its earlier attempts; [`current_history`]
//! drops the ones a `resume` record supersedes. Readers ignore fields they do not know, so a newer writer can add fields.
//! Accuracies of evaluations are percentages in [0, 100]; ratios of training records are in
//! [0, 1]. A run killed mid-write can leave a last line without
//! its newline: [`read_records`] skips it with a warning, while a malformed line anywhere else is
//! an error naming its line number.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Deserializer, Serialize};

/// Name of the records file in a run directory.
pub const METRICS_FILE: &str = "metrics.jsonl";

/// Training metrics averaged over one log interval.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct TrainRecord {
    // Every f64 field accepts `null`, the JSON form of a NaN loss after divergence.
    /// Steps completed at the end of the interval.
    pub step: u64,
    /// Learning rate of the last step.
    #[serde(deserialize_with = "nan_from_null")]
    pub lr: f64,
    /// Total loss `Lx + lambda_u * Lu + lambda_c * Lc`.
    #[serde(deserialize_with = "nan_from_null")]
    pub loss: f64,
    /// Supervised cross-entropy `Lx`.
    #[serde(deserialize_with = "nan_from_null")]
    pub loss_x: f64,
    /// Unsupervised pseudo-label loss `Lu`.
    #[serde(deserialize_with = "nan_from_null")]
    pub loss_u: f64,
    /// Class-aware contrastive loss `Lc` (0 when the contrast branch is off).
    #[serde(deserialize_with = "nan_from_null")]
    pub loss_c: f64,
    /// Fraction of unlabeled images whose pseudo-label passed the threshold, in [0, 1].
    #[serde(deserialize_with = "nan_from_null")]
    pub mask_ratio: f64,
    /// Accuracy of the masked pseudo-labels against the true labels, in [0, 1].
    #[serde(deserialize_with = "nan_from_null")]
    pub pseudo_label_acc: f64,
    /// Training images per second over the interval, counting every view; 0 when unknown.
    #[serde(default, deserialize_with = "nan_from_null")]
    pub images_per_s: f64,
    /// Wall clock when written, nanoseconds since the Unix epoch.
    pub time_ns: u64,
}

/// One evaluation on the whole test set, for the EMA model and the raw (online) model.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct EvalRecord {
    /// Steps completed when the evaluation ran.
    pub step: u64,
    /// Top-1 accuracy of the EMA model, percent.
    #[serde(deserialize_with = "nan_from_null")]
    pub top1_ema: f64,
    /// Top-5 accuracy of the EMA model, percent.
    #[serde(deserialize_with = "nan_from_null")]
    pub top5_ema: f64,
    /// Mean cross-entropy of the EMA model.
    #[serde(deserialize_with = "nan_from_null")]
    pub loss_ema: f64,
    /// Top-1 accuracy of the raw model, percent.
    #[serde(deserialize_with = "nan_from_null")]
    pub top1_raw: f64,
    /// Top-5 accuracy of the raw model, percent.
    #[serde(deserialize_with = "nan_from_null")]
    pub top5_raw: f64,
    /// Mean cross-entropy of the raw model.
    #[serde(deserialize_with = "nan_from_null")]
    pub loss_raw: f64,
    /// Test images evaluated.
    pub images: u64,
}

/// Best, last and median-of-last-five top-1 of one model over a run's evaluations.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SummaryRow {
    /// Highest top-1, percent.
    pub best: f64,
    /// Step of the highest top-1 (the earliest one on a tie).
    pub best_step: u64,
    /// Top-1 of the last evaluation, percent.
    pub last: f64,
    /// Median top-1 of the last five evaluations (fewer when the run had fewer), percent.
    pub median_last5: f64,
}

/// End-of-run summary, with the EMA and the raw model in separate rows.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    /// Evaluations the summary is computed from.
    pub evaluations: u64,
    /// The EMA model, the one the reference accuracies are reported for.
    pub ema: SummaryRow,
    /// The raw (online) model.
    pub raw: SummaryRow,
}

/// Record written once by the supervisor when the run exits.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EndRecord {
    /// Steps completed.
    pub step: u64,
    /// Total steps of the schedule.
    pub total_steps: u64,
    /// How the run ended.
    pub status: EndStatus,
    /// Wall clock when written, nanoseconds since the Unix epoch.
    pub time_ns: u64,
}

/// Outcome of a run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EndStatus {
    /// Every step ran.
    Completed,
    /// Stopped on request (`q` in the dashboard, Ctrl-C) after the final checkpoint.
    Stopped,
    /// A stage failed.
    Failed,
}

/// Record written by the supervisor when a run resumes from its checkpoint at `step`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResumeRecord {
    /// Step of the checkpoint the run continues from.
    pub step: u64,
    /// Wall clock when written, nanoseconds since the Unix epoch.
    pub time_ns: u64,
}

/// One line of `metrics.jsonl`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum MetricsRecord {
    /// A log interval of training.
    Train(TrainRecord),
    /// An evaluation.
    Eval(EvalRecord),
    /// The end-of-run summary of the evaluations.
    Summary(Summary),
    /// The supervisor's record of how the run ended.
    End(EndRecord),
    /// The supervisor's record of a resume.
    Resume(ResumeRecord),
}

impl MetricsRecord {
    /// Step the record belongs to; a summary belongs to no single step.
    pub fn step(&self) -> Option<u64> {
        match self {
            MetricsRecord::Train(r) => Some(r.step),
            MetricsRecord::Eval(r) => Some(r.step),
            MetricsRecord::Summary(_) => None,
            MetricsRecord::End(r) => Some(r.step),
            MetricsRecord::Resume(r) => Some(r.step),
        }
    }
}

/// Returns the records of the run's current history. Each `resume` record supersedes what the
/// earlier attempt wrote after the checkpoint it resumes from, and that attempt's `summary`
/// and `end` records: those steps run again and are recorded again.
pub fn current_history(records: Vec<MetricsRecord>) -> Vec<MetricsRecord> {
    let mut history: Vec<MetricsRecord> = Vec::with_capacity(records.len());
    for record in records {
        if let MetricsRecord::Resume(resume) = &record {
            history.retain(|kept| match kept {
                MetricsRecord::Summary(_) | MetricsRecord::End(_) => false,
                other => other.step().is_some_and(|step| step <= resume.step),
            });
        }
        history.push(record);
    }
    history
}

/// Error raised while reading or appending `metrics.jsonl`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RecordsError {
    /// A file system call failed.
    #[error("failed to {action} {path}: {source}")]
    Io {
        /// Operation that failed, such as `open`.
        action: &'static str,
        /// The file.
        path: PathBuf,
        /// The operating system's error.
        source: io::Error,
    },
    /// A complete line is not a valid record.
    #[error(
        "invalid record on line {line} of {path}: {message}; each line must be a JSON object \
         with \"kind\" set to \"train\", \"eval\", \"summary\", \"end\" or \"resume\""
    )]
    Invalid {
        /// The file.
        path: PathBuf,
        /// Line number, from 1.
        line: usize,
        /// Message of the JSON parser.
        message: String,
    },
}

impl Summary {
    /// Summarises evaluations in step order; `None` when there are none.
    pub fn from_evals(evals: &[EvalRecord]) -> Option<Self> {
        if evals.is_empty() {
            return None;
        }
        Some(Self {
            evaluations: evals.len() as u64,
            ema: summarize(evals, |e| e.top1_ema),
            raw: summarize(evals, |e| e.top1_raw),
        })
    }
}

fn summarize(evals: &[EvalRecord], top1: impl Fn(&EvalRecord) -> f64) -> SummaryRow {
    let mut best = &evals[0];
    for eval in evals {
        if top1(eval) > top1(best) {
            best = eval;
        }
    }
    let mut tail: Vec<f64> = evals[evals.len().saturating_sub(5)..]
        .iter()
        .map(&top1)
        .collect();
    tail.sort_by(f64::total_cmp);
    let mid = tail.len() / 2;
    let median = if tail.len() % 2 == 1 {
        tail[mid]
    } else {
        (tail[mid - 1] + tail[mid]) / 2.0
    };
    SummaryRow {
        best: top1(best),
        best_step: best.step,
        last: top1(&evals[evals.len() - 1]),
        median_last5: median,
    }
}

fn nan_from_null<'de, D: Deserializer<'de>>(deserializer: D) -> Result<f64, D::Error> {
    Ok(Option::<f64>::deserialize(deserializer)?.unwrap_or(f64::NAN))
}

/// Appends records to `metrics.jsonl`, one flushed line each.
#[derive(Debug)]
pub struct RecordWriter {
    path: PathBuf,
    file: File,
}

impl RecordWriter {
    /// Opens `path` for appending, creating it when missing. A last line without its newline,
    /// left by a writer killed mid-line, is cut off first: appending after it would turn it
    /// into a malformed line in the middle of the file.
    pub fn append(path: &Path) -> Result<Self, RecordsError> {
        let io = |action, source| RecordsError::Io {
            action,
            path: path.to_owned(),
            source,
        };
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(|source| io("open", source))?;
        let text = fs::read(path).map_err(|source| io("read", source))?;
        if text.last().is_some_and(|&byte| byte != b'\n') {
            let keep = text
                .iter()
                .rposition(|&byte| byte == b'\n')
                .map_or(0, |i| i + 1);
            file.set_len(keep as u64)
                .map_err(|source| io("truncate", source))?;
            tracing::warn!(
                path = %path.display(),
                bytes = text.len() - keep,
                "cut off a partly written last record"
            );
        }
        Ok(Self {
            path: path.to_owned(),
            file,
        })
    }

    /// Writes one record as a line; evaluations and summaries are also fsynced, because
    /// they are what a researcher reads after a crash.
    pub fn write(&mut self, record: &MetricsRecord) -> Result<(), RecordsError> {
        // Serialising cannot fail because every field is a number or a string. A NaN loss is
        // written as `null`, which the reader turns back into NaN.
        let mut line = serde_json::to_string(record).unwrap_or_default();
        line.push('\n');
        let io = |source| RecordsError::Io {
            action: "append to",
            path: self.path.clone(),
            source,
        };
        self.file.write_all(line.as_bytes()).map_err(io)?;
        if !matches!(record, MetricsRecord::Train(_)) {
            self.file.sync_data().map_err(|source| RecordsError::Io {
                action: "sync",
                path: self.path.clone(),
                source,
            })?;
        }
        Ok(())
    }
}

/// Reads every record of a `metrics.jsonl` file.
pub fn read_records(path: &Path) -> Result<Vec<MetricsRecord>, RecordsError> {
    let text = fs::read_to_string(path).map_err(|source| RecordsError::Io {
        action: "read",
        path: path.to_owned(),
        source,
    })?;
    parse_records(&text, path)
}

/// Parses the text of a `metrics.jsonl` file; `path` only names it in errors.
///
/// Blank lines are skipped. A last line without its newline that does not parse is skipped
/// with a warning, because a writer may be halfway through it.
pub fn parse_records(text: &str, path: &Path) -> Result<Vec<MetricsRecord>, RecordsError> {
    let mut records = Vec::new();
    let mut rest = text;
    let mut number = 0;
    while !rest.is_empty() {
        number += 1;
        let (line, complete) = match rest.find('\n') {
            Some(end) => {
                let line = &rest[..end];
                rest = &rest[end + 1..];
                (line, true)
            }
            None => (std::mem::take(&mut rest), false),
        };
        if line.trim().is_empty() {
            continue;
        }
        match serde_json::from_str::<MetricsRecord>(line) {
            Ok(record) => records.push(record),
            Err(_) if !complete => {
                tracing::warn!(path = %path.display(), line = number, "skipping a partly written last record");
            }
            Err(err) => {
                return Err(RecordsError::Invalid {
                    path: path.to_owned(),
                    line: number,
                    message: err.to_string(),
                });
            }
        }
    }
    Ok(records)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn eval(step: u64, top1_ema: f64, top1_raw: f64) -> EvalRecord {
        EvalRecord {
            step,
            top1_ema,
            top5_ema: 99.0,
            loss_ema: 0.5,
            top1_raw,
            top5_raw: 98.0,
            loss_raw: 0.6,
            images: 10_000,
        }
    }

    #[test]
    fn summary_keeps_ema_and_raw_apart() {
        let evals: Vec<_> = [
            (1, 10.0, 12.0),
            (2, 30.0, 20.0),
            (3, 25.0, 40.0),
            (4, 20.0, 35.0),
        ]
        .into_iter()
        .map(|(s, e, r)| eval(s, e, r))
        .collect();
        let summary = Summary::from_evals(&evals).unwrap();

        assert_eq!(summary.ema.best, 30.0);
        assert_eq!(summary.ema.best_step, 2);
        assert_eq!(summary.ema.last, 20.0);
        // Four evaluations: median of 10, 20, 25, 30 is (20 + 25) / 2.
        assert_eq!(summary.ema.median_last5, 22.5);
        assert_eq!(summary.raw.best, 40.0);
        assert_eq!(summary.raw.best_step, 3);
    }

    #[test]
    fn median_uses_last_five_only() {
        let evals: Vec<_> = [90.0, 1.0, 2.0, 3.0, 4.0, 5.0]
            .iter()
            .enumerate()
            .map(|(i, &v)| eval(i as u64, v, v))
            .collect();
        let summary = Summary::from_evals(&evals).unwrap();
        assert_eq!(summary.ema.median_last5, 3.0);
        assert_eq!(summary.ema.best, 90.0);
    }

    #[test]
    fn documented_lines_parse() {
        let text = concat!(
            r#"{"kind":"train","step":200,"lr":0.0299,"loss":2.0,"loss_x":0.25,"loss_u":0.5,"loss_c":1.25,"mask_ratio":0.75,"pseudo_label_acc":0.9,"time_ns":1,"future_field":3}"#,
            "\n\n",
            r#"{"kind":"end","step":200,"total_steps":200,"status":"stopped","time_ns":2}"#,
            "\n",
        );
        let records = parse_records(text, Path::new("metrics.jsonl")).unwrap();

        assert_eq!(records.len(), 2);
        let MetricsRecord::Train(train) = &records[0] else {
            panic!("{records:?}")
        };
        assert_eq!(train.images_per_s, 0.0);
        assert_eq!(train.pseudo_label_acc, 0.9);
        let MetricsRecord::End(end) = &records[1] else {
            panic!("{records:?}")
        };
        assert_eq!(end.status, EndStatus::Stopped);
    }

    #[test]
    fn no_evals_no_summary() {
        assert_eq!(Summary::from_evals(&[]), None);
    }

    #[test]
    fn records_round_trip_through_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("metrics.jsonl");
        let records = vec![
            MetricsRecord::Train(TrainRecord {
                step: 10,
                lr: 0.03,
                loss: 2.0,
                loss_x: 1.0,
                loss_u: 0.5,
                loss_c: 0.5,
                mask_ratio: 0.25,
                pseudo_label_acc: 0.9,
                images_per_s: 100.0,
                time_ns: 1_500,
            }),
            MetricsRecord::Eval(eval(10, 50.0, 45.0)),
        ];
        let mut writer = RecordWriter::append(&path).unwrap();
        for record in &records {
            writer.write(record).unwrap();
        }

        let text = std::fs::read_to_string(&path).unwrap();
        assert!(
            text.starts_with("{\"kind\":\"train\",\"step\":10,"),
            "{text}"
        );
        assert_eq!(read_records(&path).unwrap(), records);
    }

    #[test]
    fn nan_loss_survives_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("metrics.jsonl");
        let mut record = eval(3, 10.0, 10.0);
        record.loss_raw = f64::NAN;
        RecordWriter::append(&path)
            .unwrap()
            .write(&MetricsRecord::Eval(record))
            .unwrap();

        let read = read_records(&path).unwrap();
        let MetricsRecord::Eval(back) = &read[0] else {
            panic!("expected an eval record, got {read:?}")
        };
        assert!(back.loss_raw.is_nan());
        assert_eq!(back.top1_raw, 10.0);
    }

    #[test]
    fn partial_last_line_is_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("metrics.jsonl");
        let full = serde_json::to_string(&MetricsRecord::Eval(eval(5, 1.0, 2.0))).unwrap();
        std::fs::write(&path, format!("{full}\n{{\"kind\":\"ev")).unwrap();

        assert_eq!(
            read_records(&path).unwrap(),
            vec![MetricsRecord::Eval(eval(5, 1.0, 2.0))]
        );
    }

    #[test]
    fn malformed_middle_line_names_its_number() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("metrics.jsonl");
        let full = serde_json::to_string(&MetricsRecord::Eval(eval(5, 1.0, 2.0))).unwrap();
        std::fs::write(&path, format!("{full}\nnot json\n{full}\n")).unwrap();

        let err = read_records(&path).unwrap_err();
        assert!(
            matches!(err, RecordsError::Invalid { line: 2, .. }),
            "{err}"
        );
    }

    #[test]
    fn append_cuts_partial_last_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("metrics.jsonl");
        let full = serde_json::to_string(&MetricsRecord::Eval(eval(5, 1.0, 2.0))).unwrap();
        std::fs::write(&path, format!("{full}\n{{\"kind\":\"ev")).unwrap();

        let resume = MetricsRecord::Resume(ResumeRecord {
            step: 5,
            time_ns: 7,
        });
        RecordWriter::append(&path).unwrap().write(&resume).unwrap();

        let records = read_records(&path).unwrap();
        assert_eq!(records.len(), 2);
        assert_eq!(records[0], MetricsRecord::Eval(eval(5, 1.0, 2.0)));
        assert_eq!(records[1], resume);
    }

    #[test]
    fn resume_drops_later_records_of_earlier_attempt() {
        let end = MetricsRecord::End(EndRecord {
            step: 25,
            total_steps: 40,
            status: EndStatus::Failed,
            time_ns: 3,
        });
        let records = vec![
            MetricsRecord::Eval(eval(10, 1.0, 1.0)),
            MetricsRecord::Eval(eval(20, 2.0, 2.0)),
            MetricsRecord::Summary(Summary::from_evals(&[eval(10, 1.0, 1.0)]).unwrap()),
            end,
            MetricsRecord::Resume(ResumeRecord {
                step: 10,
                time_ns: 4,
            }),
            MetricsRecord::Eval(eval(20, 3.0, 3.0)),
        ];

        let history = current_history(records);

        let steps: Vec<_> = history.iter().map(MetricsRecord::step).collect();
        assert_eq!(steps, [Some(10), Some(10), Some(20)]);
        assert!(matches!(history[1], MetricsRecord::Resume(_)));
        assert_eq!(history[2], MetricsRecord::Eval(eval(20, 3.0, 3.0)));
    }

    #[test]
    fn history_without_resume_is_unchanged() {
        let records = vec![
            MetricsRecord::Eval(eval(10, 1.0, 1.0)),
            MetricsRecord::Eval(eval(20, 2.0, 2.0)),
        ];
        assert_eq!(current_history(records.clone()), records);
    }
}
