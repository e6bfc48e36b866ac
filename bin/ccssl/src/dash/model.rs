//! Dashboard data model: one [`Sample`] is a reading of every stage replica, every ring and the
//! training gauges, taken at one instant. It does not depend on shared memory, so the runtime
//! adapter, recorded files and tests all produce the same type.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// One reading of a running pipeline.
///
/// Every timestamp is in nanoseconds since the Unix epoch on the clock the stages use for their
/// heartbeats (`CLOCK_REALTIME`). Rates are computed from differences of `time_ns` between
/// samples, never from when the dashboard happened to draw.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Sample {
    /// When the counters were read, on the heartbeat clock.
    pub time_ns: u64,
    pub run: RunHeader,
    /// One entry per stage replica, in graph order.
    pub stages: Vec<StageReading>,
    /// One entry per ring, in graph order.
    #[serde(default)]
    pub edges: Vec<EdgeReading>,
    /// Latest training gauges; `None` before the first step finishes.
    #[serde(default)]
    pub train: Option<TrainGauges>,
    /// Evaluations known at this instant. A source may send all of them every time or only the
    /// new ones: the dashboard merges them by step.
    #[serde(default)]
    pub evals: Vec<EvalPoint>,
}

/// Run identity and training progress.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunHeader {
    pub run_name: String,
    /// Graph file the run was started from, as given on the command line.
    pub graph_file: String,
    /// Training steps finished so far.
    pub step: u64,
    pub total_steps: u64,
    /// Learning rate of the step in progress.
    pub lr: f64,
    /// When the supervisor started the run, on the heartbeat clock.
    pub start_ns: u64,
}

/// Lifecycle state a stage replica reports in its metrics block.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StageState {
    Starting,
    Running,
    Stopping,
    Stopped,
    Failed,
}

/// Counters of one stage replica. Counters only grow while the replica lives; a restarted
/// replica may start again from zero, which the derived view treats as a reset.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StageReading {
    /// Stage name from the graph; replicas of one stage share it.
    pub name: String,
    /// Stage kind from the graph (`loader`, `augment`, `step`, `ema`, `exec`, ...).
    pub kind: String,
    /// Replica index in `0..replicas`.
    pub replica: u32,
    /// Replica count of the stage.
    pub replicas: u32,
    pub state: StageState,
    /// Process id of the replica; `None` while it is not running.
    pub pid: Option<u32>,
    /// Last heartbeat of the replica. The runtime beats while the replica works and while it
    /// waits on a ring, so a heartbeat that stops advancing means the process hangs.
    pub heartbeat_ns: u64,
    /// Batches taken from input rings.
    pub items_in: u64,
    /// Batches committed to output rings.
    pub items_out: u64,
    /// Images contained in the batches taken, each dataset image counted once however many
    /// augmented views of it the batch holds.
    pub images_in: u64,
    /// Images contained in the batches committed, counted like `images_in`.
    pub images_out: u64,
    /// Time spent working on batches.
    pub busy_ns: u64,
    /// Time spent waiting for an input slot to be published.
    pub blocked_in_ns: u64,
    /// Time spent waiting for a free output slot.
    pub blocked_out_ns: u64,
    /// How often the supervisor restarted this replica.
    pub restarts: u32,
}

/// Counters of one shared-memory ring.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EdgeReading {
    /// Ring name, unique in the graph.
    pub name: String,
    /// Producing stage name.
    pub from: String,
    /// Consuming stage name.
    pub to: String,
    pub slot_count: u32,
    /// Sequence number of the next slot the producer publishes.
    pub head: u64,
    /// Sequence number of the next slot the consumer releases; `head - tail` slots are full.
    pub tail: u64,
    pub pushes: u64,
    pub pops: u64,
    /// Time the producer waited for a free slot.
    pub producer_blocked_ns: u64,
    /// Time the consumer waited for a published slot.
    pub consumer_blocked_ns: u64,
}

/// Training gauges of the latest logged step.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct TrainGauges {
    /// Supervised cross-entropy on the labeled batch.
    pub loss_x: f64,
    /// Masked pseudo-label cross-entropy on the strong views.
    pub loss_u: f64,
    /// Class-aware contrastive loss.
    pub loss_c: f64,
    /// Weighted total `loss_x + lambda_u * loss_u + lambda_c * loss_c`.
    pub loss: f64,
    /// Share of unlabeled images whose confidence passed the threshold, in `0..=1`.
    pub mask_ratio: f64,
    /// Share of masked pseudo-labels equal to the true label, in `0..=1`.
    pub pseudo_label_acc: f64,
}

/// Result of one evaluation, top-1 accuracies in percent.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct EvalPoint {
    pub step: u64,
    pub top1_ema: f64,
    pub top1_raw: f64,
}

/// Errors of a [`MetricsSource`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SourceError {
    /// The run is over (or a recording is exhausted): no sample will come again.
    #[error("the run has ended; no further samples")]
    Ended,
    #[error("failed to read samples from {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "invalid sample on line {line} of {path}: {source}; each line must be one JSON object \
         of the dashboard sample format"
    )]
    Parse {
        path: PathBuf,
        line: usize,
        source: serde_json::Error,
    },
    /// The metrics cannot be read right now, for example while a segment is being recreated.
    /// The dashboard shows the reason and reads again at the next interval.
    #[error("metrics unavailable: {reason}")]
    Unavailable { reason: String },
}

/// Anything that can read the current state of a run.
pub trait MetricsSource {
    /// Reads every counter once. Returns [`SourceError::Ended`] once the run is over.
    fn sample(&mut self) -> Result<Sample, SourceError>;
}

/// Replays samples recorded earlier, one per call, then reports [`SourceError::Ended`].
#[derive(Debug, Clone)]
pub struct RecordedSource {
    samples: std::vec::IntoIter<Sample>,
}

impl RecordedSource {
    pub fn from_samples(samples: Vec<Sample>) -> Self {
        Self {
            samples: samples.into_iter(),
        }
    }

    /// Reads a JSON lines file holding one [`Sample`] per line; blank lines are skipped.
    pub fn open(path: &Path) -> Result<Self, SourceError> {
        let text = fs::read_to_string(path).map_err(|source| SourceError::Io {
            path: path.to_owned(),
            source,
        })?;
        Ok(Self::from_samples(parse_samples(&text, path)?))
    }
}

impl MetricsSource for RecordedSource {
    fn sample(&mut self) -> Result<Sample, SourceError> {
        self.samples.next().ok_or(SourceError::Ended)
    }
}

/// Parses JSON lines text into samples; `path` only names the origin in errors.
pub fn parse_samples(text: &str, path: &Path) -> Result<Vec<Sample>, SourceError> {
    let mut samples = Vec::new();
    for (index, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let sample = serde_json::from_str(line).map_err(|source| SourceError::Parse {
            path: path.to_owned(),
            line: index + 1,
            source,
        })?;
        samples.push(sample);
    }
    Ok(samples)
}

/// Passes samples of another source through and appends each one as a JSON line to a writer,
/// so a live run can be replayed later with [`RecordedSource`].
pub struct SampleRecorder<S, W> {
    inner: S,
    out: W,
    path: PathBuf,
}

impl<S: MetricsSource, W: Write> SampleRecorder<S, W> {
    /// `path` names the writer's destination in errors.
    pub fn new(inner: S, out: W, path: PathBuf) -> Self {
        Self { inner, out, path }
    }
}

impl<S: MetricsSource, W: Write> MetricsSource for SampleRecorder<S, W> {
    fn sample(&mut self) -> Result<Sample, SourceError> {
        let sample = self.inner.sample()?;
        let io_error = |source| SourceError::Io {
            path: self.path.clone(),
            source,
        };
        let line = serde_json::to_string(&sample).map_err(std::io::Error::other);
        let line = line.map_err(io_error)?;
        writeln!(self.out, "{line}").map_err(io_error)?;
        Ok(sample)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ONE_SAMPLE: &str = r#"{"time_ns":5,"run":{"run_name":"r","graph_file":"g.ron","step":3,"total_steps":10,"lr":0.03,"start_ns":1},"stages":[{"name":"loader","kind":"loader","replica":0,"replicas":1,"state":"running","pid":42,"heartbeat_ns":4,"items_in":0,"items_out":7,"images_in":0,"images_out":448,"busy_ns":1,"blocked_in_ns":0,"blocked_out_ns":2,"restarts":0}]}"#;

    #[test]
    fn recorded_source_replays_then_ends() {
        let text = format!("{ONE_SAMPLE}\n\n{ONE_SAMPLE}\n");
        let samples = parse_samples(&text, Path::new("x.jsonl")).unwrap();
        let mut source = RecordedSource::from_samples(samples);

        let first = source.sample().unwrap();
        assert_eq!(first.time_ns, 5);
        assert_eq!(first.stages[0].pid, Some(42));
        assert_eq!(first.stages[0].state, StageState::Running);
        assert!(first.edges.is_empty());
        assert!(source.sample().is_ok());
        assert!(matches!(source.sample(), Err(SourceError::Ended)));
    }

    #[test]
    fn parse_error_names_line_and_file() {
        let text = format!("{ONE_SAMPLE}\n{{\"time_ns\": \"soon\"}}\n");
        let err = parse_samples(&text, Path::new("rec.jsonl")).unwrap_err();
        let message = err.to_string();
        assert!(
            matches!(err, SourceError::Parse { line: 2, .. }),
            "{message}"
        );
        assert!(message.contains("rec.jsonl"), "{message}");
    }

    #[test]
    fn missing_file_is_an_io_error() {
        let err = RecordedSource::open(Path::new("/nonexistent/samples.jsonl")).unwrap_err();
        assert!(matches!(err, SourceError::Io { .. }));
        assert!(err.to_string().contains("/nonexistent/samples.jsonl"));
    }

    #[test]
    fn recorder_writes_lines_that_replay() {
        let samples = parse_samples(ONE_SAMPLE, Path::new("x")).unwrap();
        let mut recorder = SampleRecorder::new(
            RecordedSource::from_samples(samples.clone()),
            Vec::new(),
            PathBuf::from("mem"),
        );
        recorder.sample().unwrap();
        assert!(matches!(recorder.sample(), Err(SourceError::Ended)));

        let text = String::from_utf8(recorder.out).unwrap();
        assert_eq!(text.lines().count(), 1);
        assert_eq!(parse_samples(&text, Path::new("mem")).unwrap(), samples);
    }
}
