//! Records of `metrics.jsonl`, the run directory's training log: one JSON object per line,
//! tagged by `kind`.
//!
//! ```text
//! {"kind":"train","step":200,"lr":0.0299,"loss":2.0,"loss_x":0.25,"loss_u":0.5,"loss_c":1.25,"mask_ratio":0.75,"pseudo_label_acc":0.9,"time_ns":1764892800000000000}
//! {"kind":"eval","step":1024,"top1_ema":41.2,"top1_raw":39.8,"top5_ema":88.1,"loss_ema":1.71}
//! {"kind":"end","step":1024,"total_steps":1024,"status":"completed","time_ns":1764893100000000000}
//! ```
//!
//! The step stage writes a `train` record per log interval, the EMA stage an `eval` record
//! per evaluation, and the supervisor one `end` record as the run exits. Readers ignore
//! fields they do not know, so a newer writer can add fields without breaking older readers.

use std::path::Path;

use serde::{Deserialize, Serialize};

/// One line of `metrics.jsonl`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum MetricsRecord {
    Train(TrainRecord),
    Eval(EvalRecord),
    End(EndRecord),
}

/// Training gauges averaged over one log interval.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct TrainRecord {
    /// Steps finished when the record was written.
    pub step: u64,
    pub lr: f64,
    /// Weighted total `loss_x + lambda_u * loss_u + lambda_c * loss_c`.
    pub loss: f64,
    pub loss_x: f64,
    pub loss_u: f64,
    pub loss_c: f64,
    /// Share of unlabeled images above the confidence threshold, in `0..=1`.
    pub mask_ratio: f64,
    /// Share of masked pseudo-labels equal to the true label, in `0..=1`.
    pub pseudo_label_acc: f64,
    /// Wall clock when written, nanoseconds since the Unix epoch.
    pub time_ns: u64,
}

/// One evaluation on the test set. Accuracies are in percent (0 to 100), as the reference
/// FixMatch and CCSSL code logs them.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct EvalRecord {
    pub step: u64,
    /// Top-1 accuracy of the EMA model.
    pub top1_ema: f64,
    /// Top-1 accuracy of the online (training) model.
    pub top1_raw: f64,
    /// Top-5 accuracy of the EMA model.
    pub top5_ema: f64,
    /// Mean test cross-entropy of the EMA model.
    pub loss_ema: f64,
}

/// Written once by the supervisor when the run exits.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct EndRecord {
    pub step: u64,
    pub total_steps: u64,
    pub status: EndStatus,
    pub time_ns: u64,
}

/// Outcome of a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EndStatus {
    /// Every step ran.
    Completed,
    /// Stopped on request (`q` in the dashboard, Ctrl-C) after the final checkpoint.
    Stopped,
    /// A stage failed.
    Failed,
}

/// Errors reading `metrics.jsonl`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RecordError {
    #[error(
        "invalid record on line {line} of {path}: {source}; each line must be a JSON object \
         with \"kind\" set to \"train\", \"eval\" or \"end\""
    )]
    Parse {
        path: String,
        line: usize,
        source: serde_json::Error,
    },
}

impl MetricsRecord {
    /// Writes the record as one line (with its newline) to `out`.
    pub fn write_line(&self, out: &mut impl std::io::Write) -> std::io::Result<()> {
        let line = serde_json::to_string(self).map_err(std::io::Error::other)?;
        writeln!(out, "{line}")
    }
}

/// Parses the text of a `metrics.jsonl` file; `path` only names it in errors.
///
/// A last line without its newline that fails to parse is skipped, because a running writer
/// may be halfway through it. Blank lines are skipped.
pub fn parse_records(text: &str, path: &Path) -> Result<Vec<MetricsRecord>, RecordError> {
    let mut records = Vec::new();
    let complete_lines = text
        .lines()
        .count()
        .saturating_sub(usize::from(!text.ends_with('\n')));
    for (index, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        match serde_json::from_str(line) {
            Ok(record) => records.push(record),
            Err(_) if index >= complete_lines => break,
            Err(source) => {
                return Err(RecordError::Parse {
                    path: path.display().to_string(),
                    line: index + 1,
                    source,
                });
            }
        }
    }
    Ok(records)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn eval_record_matches_documented_format() {
        let line = r#"{"kind":"eval","step":1024,"top1_ema":41.2,"top1_raw":39.8,"top5_ema":88.1,"loss_ema":1.71}"#;
        let record: MetricsRecord = serde_json::from_str(line).unwrap();
        let expected = EvalRecord {
            step: 1024,
            top1_ema: 41.2,
            top1_raw: 39.8,
            top5_ema: 88.1,
            loss_ema: 1.71,
        };
        assert_eq!(record, MetricsRecord::Eval(expected));
    }

    #[test]
    fn written_line_starts_with_kind_tag() {
        let record = MetricsRecord::End(EndRecord {
            step: 5,
            total_steps: 10,
            status: EndStatus::Stopped,
            time_ns: 7,
        });
        let mut out = Vec::new();
        record.write_line(&mut out).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert_eq!(
            text,
            "{\"kind\":\"end\",\"step\":5,\"total_steps\":10,\"status\":\"stopped\",\"time_ns\":7}\n"
        );
    }

    #[test]
    fn unknown_fields_are_ignored() {
        let line = r#"{"kind":"eval","step":1,"top1_ema":1.0,"top1_raw":2.0,"top5_ema":3.0,"loss_ema":4.0,"top5_raw":5.0}"#;
        assert!(parse_records(line, Path::new("m.jsonl")).is_ok());
    }

    #[test]
    fn partial_last_line_is_skipped() {
        let text = "{\"kind\":\"eval\",\"step\":1,\"top1_ema\":1.0,\"top1_raw\":2.0,\"top5_ema\":3.0,\"loss_ema\":4.0}\n{\"kind\":\"tra";
        let records = parse_records(text, Path::new("m.jsonl")).unwrap();
        assert_eq!(records.len(), 1);
    }

    #[test]
    fn broken_complete_line_names_line() {
        let text = "{\"kind\":\"tra\n{\"kind\":\"eval\"}\n";
        let err = parse_records(text, Path::new("run/metrics.jsonl")).unwrap_err();
        let message = err.to_string();
        assert!(
            matches!(err, RecordError::Parse { line: 1, .. }),
            "{message}"
        );
        assert!(message.contains("run/metrics.jsonl"), "{message}");
    }

    #[test]
    fn empty_text_has_no_records() {
        assert!(parse_records("", Path::new("m")).unwrap().is_empty());
    }

    #[test]
    fn unknown_kind_is_rejected() {
        let err = parse_records("{\"kind\":\"debug\"}\n", Path::new("m")).unwrap_err();
        assert!(err.to_string().contains("line 1"));
    }
}
