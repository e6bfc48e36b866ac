//! The live [`MetricsSource`]: reads the shared-memory metrics block of every stage and the
//! counters of every ring of a running run, and the evaluations from its `metrics.jsonl`.
//!
//! The supervisor writes a [`RunLayout`] to `layout.json` in the run directory before any
//! stage starts, so a process attaching later (`ccssl dash RUN_DIR`) finds the segments
//! without parsing the graph again. Training progress comes from the gauges named in
//! [`ccssl_pipe::metrics::gauge`].

use std::fs;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use serde::{Deserialize, Serialize};

use ccssl_ema::records::{MetricsRecord, parse_records};
use ccssl_pipe::metrics::{self, MetricsBlock, MetricsSnapshot, gauge};
use ccssl_pipe::ring::Monitor;

use super::model::{
    EdgeReading, EvalPoint, MetricsSource, RunHeader, Sample, SourceError, StageReading,
    StageState, TrainGauges,
};
use super::rundir::RunDir;

/// File in the run directory that contains the [`RunLayout`] as JSON.
pub const LAYOUT_FILE: &str = "layout.json";

/// Description of a run's shared memory, for processes that attach to it later.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunLayout {
    /// Run id; every segment of the run is named `ccssl-<run id>-...`.
    pub run_id: String,
    /// Graph name.
    pub run_name: String,
    /// Graph file as given on the command line.
    pub graph_file: String,
    /// When the supervisor created the run, nanoseconds since the Unix epoch.
    pub start_ns: u64,
    /// Stages in graph order.
    pub stages: Vec<LayoutStage>,
    /// Rings in graph order, each replica pair of an edge on its own.
    pub rings: Vec<LayoutRing>,
}

/// One stage in a [`RunLayout`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LayoutStage {
    pub name: String,
    pub kind: String,
    pub replicas: u32,
    /// Metrics segment of the stage.
    pub metrics: PathBuf,
}

/// One ring in a [`RunLayout`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LayoutRing {
    /// Ring name, `from.P-to.C` for producer replica P and consumer replica C.
    pub name: String,
    pub from: String,
    pub to: String,
    /// Ring segment.
    pub path: PathBuf,
}

impl RunLayout {
    /// Writes `layout.json` into `run_dir`.
    pub fn write(&self, run_dir: &Path) -> std::io::Result<()> {
        let text = serde_json::to_string_pretty(self).map_err(std::io::Error::other)?;
        fs::write(run_dir.join(LAYOUT_FILE), text + "\n")
    }

    /// Reads `layout.json` from `run_dir`.
    pub fn read(run_dir: &Path) -> Result<RunLayout, SourceError> {
        let path = run_dir.join(LAYOUT_FILE);
        let text = fs::read_to_string(&path).map_err(|source| SourceError::Io {
            path: path.clone(),
            source,
        })?;
        serde_json::from_str(&text).map_err(|source| SourceError::Parse {
            path,
            line: source.line(),
            source,
        })
    }
}

/// Signal by which a [`LiveSource`] learns that the run is over.
#[derive(Debug, Clone)]
pub enum RunEnd {
    /// The supervisor in this process sets the flag once every stage has exited.
    Flag(Arc<AtomicBool>),
    /// The run belongs to the supervisor with this pid: it is over once that process is gone
    /// or `metrics.jsonl` contains an `end` record.
    Supervisor(u32),
}

/// Reads a running run from shared memory; see the module documentation.
pub struct LiveSource {
    layout: RunLayout,
    blocks: Vec<MetricsBlock>,
    monitors: Vec<Monitor>,
    metrics_path: PathBuf,
    /// Bytes of `metrics.jsonl` already parsed; only complete lines are consumed.
    metrics_offset: u64,
    evals: Vec<EvalPoint>,
    end_seen: bool,
    end: RunEnd,
}

impl LiveSource {
    /// Opens every segment named in the run's `layout.json`. Fails with an I/O error naming
    /// the segment when the run has already removed it.
    pub fn open(run_dir: &Path, end: RunEnd) -> Result<LiveSource, SourceError> {
        let layout = RunLayout::read(run_dir)?;
        let unavailable = |path: &Path, err: &dyn std::fmt::Display| SourceError::Unavailable {
            reason: format!("cannot open segment {}: {err}", path.display()),
        };
        let blocks = layout
            .stages
            .iter()
            .map(|s| MetricsBlock::open(&s.metrics).map_err(|e| unavailable(&s.metrics, &e)))
            .collect::<Result<Vec<_>, _>>()?;
        let monitors = layout
            .rings
            .iter()
            .map(|r| Monitor::open(&r.path).map_err(|e| unavailable(&r.path, &e)))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(LiveSource {
            layout,
            blocks,
            monitors,
            metrics_path: RunDir::new(run_dir).metrics_path(),
            metrics_offset: 0,
            evals: Vec::new(),
            end_seen: false,
            end,
        })
    }

    fn ended(&self) -> bool {
        match &self.end {
            RunEnd::Flag(flag) => flag.load(Ordering::Acquire),
            RunEnd::Supervisor(pid) => {
                self.end_seen || !Path::new(&format!("/proc/{pid}")).exists()
            }
        }
    }

    /// Parses the lines appended to `metrics.jsonl` since the last call.
    fn read_new_records(&mut self) -> Result<(), SourceError> {
        let io = |source| SourceError::Io {
            path: self.metrics_path.clone(),
            source,
        };
        let mut file = match fs::File::open(&self.metrics_path) {
            Ok(file) => file,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(err) => return Err(io(err)),
        };
        file.seek(SeekFrom::Start(self.metrics_offset))
            .map_err(io)?;
        let mut text = String::new();
        file.read_to_string(&mut text).map_err(io)?;
        // A line still being written has no newline yet; it is read at the next call.
        let Some(complete) = text.rfind('\n').map(|end| end + 1) else {
            return Ok(());
        };
        let records = parse_records(&text[..complete], &self.metrics_path).map_err(|err| {
            SourceError::Unavailable {
                reason: err.to_string(),
            }
        })?;
        self.metrics_offset += complete as u64;
        for record in records {
            match record {
                MetricsRecord::Eval(eval) => self.evals.push(EvalPoint {
                    step: eval.step,
                    top1_ema: eval.top1_ema,
                    top1_raw: eval.top1_raw,
                }),
                MetricsRecord::End(_) => self.end_seen = true,
                MetricsRecord::Resume(resume) => {
                    // The attempt before the resume ended, and its steps after the checkpoint
                    // run again.
                    self.end_seen = false;
                    self.evals.retain(|eval| eval.step <= resume.step);
                }
                MetricsRecord::Train(_) | MetricsRecord::Summary(_) => {}
            }
        }
        Ok(())
    }
}

impl MetricsSource for LiveSource {
    fn sample(&mut self) -> Result<Sample, SourceError> {
        if self.ended() {
            return Err(SourceError::Ended);
        }
        self.read_new_records()?;
        if self.ended() {
            return Err(SourceError::Ended);
        }
        let time_ns = metrics::now_ns();
        let mut stages = Vec::new();
        let mut progress: Option<[f64; metrics::GAUGES]> = None;
        for (layout, block) in self.layout.stages.iter().zip(&self.blocks) {
            for replica in 0..block.replicas() {
                let Some(record) = block.replica(replica) else {
                    continue;
                };
                let snapshot = record.snapshot();
                if progress.is_none() && snapshot.gauges[gauge::TOTAL_STEPS] > 0.0 {
                    progress = Some(snapshot.gauges);
                }
                stages.push(stage_reading(layout, replica, block.replicas(), &snapshot));
            }
        }
        let edges = self
            .layout
            .rings
            .iter()
            .zip(&self.monitors)
            .map(|(ring, monitor)| edge_reading(ring, monitor))
            .collect();
        Ok(Sample {
            time_ns,
            run: RunHeader {
                run_name: self.layout.run_name.clone(),
                graph_file: self.layout.graph_file.clone(),
                step: progress.map_or(0, |g| g[gauge::STEP] as u64),
                total_steps: progress.map_or(0, |g| g[gauge::TOTAL_STEPS] as u64),
                lr: progress.map_or(0.0, |g| g[gauge::LR]),
                start_ns: self.layout.start_ns,
            },
            stages,
            edges,
            train: progress
                .filter(|g| g[gauge::STEP] > 0.0)
                .map(|g| train_gauges(&g)),
            evals: self.evals.clone(),
        })
    }
}

fn stage_reading(
    layout: &LayoutStage,
    replica: u32,
    replicas: u32,
    m: &MetricsSnapshot,
) -> StageReading {
    use ccssl_pipe::metrics::StageState as Pipe;
    let state = match m.state {
        Some(Pipe::Running) => StageState::Running,
        Some(Pipe::Stopping) => StageState::Stopping,
        Some(Pipe::Stopped) => StageState::Stopped,
        Some(Pipe::Failed) => StageState::Failed,
        // A state this build does not know is shown as starting rather than guessed.
        Some(Pipe::Pending | Pipe::Starting) | None => StageState::Starting,
    };
    StageReading {
        name: layout.name.clone(),
        kind: layout.kind.clone(),
        replica,
        replicas,
        state,
        pid: (m.pid != 0).then_some(m.pid),
        heartbeat_ns: m.heartbeat_ns,
        items_in: m.items_in,
        items_out: m.items_out,
        // NOTE: only stages that call `add_images_in`/`add_images_out` count images; the
        // built-in test stages do not, so their img/s stays 0.
        images_in: m.images_in,
        images_out: m.images_out,
        busy_ns: m.busy_ns,
        blocked_in_ns: m.blocked_in_ns,
        blocked_out_ns: m.blocked_out_ns,
        restarts: m.restarts,
    }
}

fn edge_reading(ring: &LayoutRing, monitor: &Monitor) -> EdgeReading {
    let stats = monitor.stats();
    EdgeReading {
        name: ring.name.clone(),
        from: ring.from.clone(),
        to: ring.to.clone(),
        slot_count: stats.slot_count,
        head: stats.head,
        tail: stats.tail,
        pushes: stats.pushes,
        pops: stats.pops,
        producer_blocked_ns: stats.producer_blocked_ns,
        consumer_blocked_ns: stats.consumer_blocked_ns,
    }
}

fn train_gauges(g: &[f64; metrics::GAUGES]) -> TrainGauges {
    TrainGauges {
        loss_x: g[gauge::LOSS_X],
        loss_u: g[gauge::LOSS_U],
        loss_c: g[gauge::LOSS_C],
        loss: g[gauge::LOSS],
        mask_ratio: g[gauge::MASK_RATIO],
        pseudo_label_acc: g[gauge::PSEUDO_LABEL_ACC],
    }
}

#[cfg(test)]
mod tests;
