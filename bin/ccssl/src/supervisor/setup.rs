//! Everything a run creates before its first process starts: segments, run directory, logs,
//! and the launch description of each replica. A [`Resources`] value removes the segments
//! on drop, and the run directory too unless the run started.

use std::fs::{self, File, OpenOptions};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result};

use ccssl_pipe::graph::{self, Plan, StageSpec};
use ccssl_pipe::metrics;
use ccssl_pipe::ring::{self, RingConfig};
use ccssl_pipe::shm;
use ccssl_pipe::stage::{self, Launch, Port};

use crate::dash::live::{LayoutRing, LayoutStage, RunLayout};
use crate::supervisor::Resume;

/// Name of the resolved graph in a run directory.
pub const GRAPH_FILE: &str = "graph.ron";

/// Segments and directory of one run.
pub(crate) struct Resources {
    pub run_id: String,
    pub run_dir: PathBuf,
    pub log_path: PathBuf,
    /// Every ring segment of the run.
    pub rings: Vec<PathBuf>,
    /// Metrics segment of each stage, in plan order.
    pub metrics: Vec<PathBuf>,
    /// Control segment (input cursors) of each stage, in plan order.
    pub controls: Vec<PathBuf>,
    /// Sequence number of the first item: 0, or the step a resumed run continues from.
    pub first_seq: u64,
    /// Set once the processes started: from then on the run directory is kept.
    pub started: bool,
    /// Whether the run directory existed before this start (a resume); it is never removed.
    pub resumed: bool,
    /// Segments of dead runs removed before this run, or why the scan failed.
    pub stale: Result<Vec<PathBuf>, String>,
}

impl Drop for Resources {
    fn drop(&mut self) {
        match shm::remove_run_segments(&self.run_id) {
            Ok(removed) => tracing::debug!(count = removed.len(), "removed the run's segments"),
            Err(err) => tracing::error!("cannot remove the run's segments: {err}"),
        }
        if !self.started && !self.resumed {
            let _ = fs::remove_dir_all(&self.run_dir);
        }
    }
}

/// Removes stale segments of dead runs, then creates the run directory (or takes the one of
/// the run `resume` continues), the metrics blocks and the rings of `plan`. On error,
/// whatever was created is removed again; an existing run directory is left as it was.
pub(crate) fn create<S: StageSpec>(
    plan: &Plan<S>,
    out: Option<&Path>,
    resume: Option<&Resume>,
) -> Result<Resources> {
    // Logging starts only once the run directory exists, so the outcome is kept for later.
    let stale = shm::remove_stale_segments().map_err(|err| err.to_string());
    let run_dir = match resume {
        Some(resume) => resume.run_dir.clone(),
        None => {
            let parent = out
                .map(Path::to_path_buf)
                .or_else(|| plan.graph.out.clone())
                .unwrap_or_else(|| PathBuf::from("runs"));
            fs::create_dir_all(&parent)
                .with_context(|| format!("cannot create output directory {}", parent.display()))?;
            new_run_dir(&parent, plan.name())?
        }
    };
    let first_seq = resume.map_or(0, |r| r.step);
    let mut resources = Resources {
        run_id: shm::new_run_id(),
        log_path: run_dir.join("train.log"),
        run_dir,
        rings: Vec::new(),
        metrics: Vec::new(),
        controls: Vec::new(),
        first_seq,
        started: false,
        resumed: resume.is_some(),
        stale,
    };
    for stage in &plan.stages {
        let path = shm::segment_path(&resources.run_id, &format!("metrics-{}", stage.name));
        metrics::create(&path, stage.replicas).with_context(|| {
            format!("stage \"{}\": cannot create its metrics block", stage.name)
        })?;
        resources.metrics.push(path);
        let path = shm::segment_path(&resources.run_id, &format!("control-{}", stage.name));
        stage::create_control(&path, stage.replicas, stage.inputs.len() as u32, first_seq)
            .with_context(|| {
                format!("stage \"{}\": cannot create its control block", stage.name)
            })?;
        resources.controls.push(path);
    }
    for edge in &plan.edges {
        let config = RingConfig {
            slot_size: edge.slot_bytes as usize,
            slot_count: edge.slots,
        };
        for p in 0..edge.from_replicas {
            for c in 0..edge.to_replicas {
                let path = shm::segment_path(&resources.run_id, &edge.ring_name(p, c));
                ring::create(&path, config).with_context(|| {
                    format!(
                        "edge \"{}\": cannot create ring {}",
                        edge.name(),
                        path.display()
                    )
                })?;
                resources.rings.push(path);
            }
        }
    }
    if !resources.resumed {
        fs::write(
            resources.run_dir.join(GRAPH_FILE),
            graph::to_ron(&plan.graph),
        )
        .with_context(|| format!("cannot write {}", resources.run_dir.display()))?;
    }
    layout(plan, &resources)
        .write(&resources.run_dir)
        .with_context(|| format!("cannot write {}", resources.run_dir.display()))?;
    fs::write(
        resources.run_dir.join("run_id"),
        format!("{}\n", resources.run_id),
    )
    .with_context(|| format!("cannot write {}", resources.run_dir.display()))?;
    Ok(resources)
}

/// Describes the run's segments for processes that attach to it later.
fn layout<S: StageSpec>(plan: &Plan<S>, resources: &Resources) -> RunLayout {
    let stages = plan
        .stages
        .iter()
        .zip(&resources.metrics)
        .map(|(stage, path)| LayoutStage {
            name: stage.name.clone(),
            kind: stage.spec.kind().to_string(),
            replicas: stage.replicas,
            metrics: path.clone(),
        })
        .collect();
    let mut rings = Vec::new();
    for edge in &plan.edges {
        for p in 0..edge.from_replicas {
            for c in 0..edge.to_replicas {
                let name = edge.ring_name(p, c);
                rings.push(LayoutRing {
                    path: shm::segment_path(&resources.run_id, &name),
                    name,
                    from: edge.from.clone(),
                    to: edge.to.clone(),
                });
            }
        }
    }
    RunLayout {
        run_id: resources.run_id.clone(),
        run_name: plan.name().to_string(),
        graph_file: plan.file.display().to_string(),
        start_ns: metrics::now_ns(),
        stages,
        rings,
    }
}

/// Creates `<parent>/<name>-<UTC time>`, adding `-2`, `-3`, ... if that exists.
fn new_run_dir(parent: &Path, name: &str) -> Result<PathBuf> {
    let stamp = utc_stamp(SystemTime::now());
    for attempt in 1..1000 {
        let dir = match attempt {
            1 => parent.join(format!("{name}-{stamp}")),
            n => parent.join(format!("{name}-{stamp}-{n}")),
        };
        match fs::create_dir(&dir) {
            Ok(()) => return Ok(dir),
            Err(err) if err.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(err) => {
                return Err(err)
                    .with_context(|| format!("cannot create run directory {}", dir.display()));
            }
        }
    }
    anyhow::bail!(
        "cannot create a run directory in {}: 999 names are taken",
        parent.display()
    )
}

/// Formats a time as `YYYYMMDD-HHMMSS` in UTC.
fn utc_stamp(time: SystemTime) -> String {
    let secs = time.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let (days, rest) = (secs / 86_400, secs % 86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's days_from_civil, inverted).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}{month:02}{day:02}-{:02}{:02}{:02}",
        rest / 3600,
        rest % 3600 / 60,
        rest % 60
    )
}

/// Opens the run's `train.log` for appending, as the writer of a child's stdout or stderr.
pub(crate) fn open_log(path: &Path) -> Result<File> {
    OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .with_context(|| format!("cannot open log {}", path.display()))
}

/// Builds the launch description of replica `replica` of stage `index`.
pub(crate) fn launch<S: StageSpec>(
    plan: &Plan<S>,
    resources: &Resources,
    index: usize,
    replica: u32,
) -> Result<Launch> {
    let stage = &plan.stages[index];
    let ring = |name: String| shm::segment_path(&resources.run_id, &name);
    let inputs = stage
        .inputs
        .iter()
        .map(|&e| {
            let edge = &plan.edges[e];
            let rings = (0..edge.from_replicas)
                .map(|p| ring(edge.ring_name(p, replica)))
                .collect();
            Port {
                edge: edge.name(),
                rings,
            }
        })
        .collect();
    let outputs = stage
        .outputs
        .iter()
        .map(|&e| {
            let edge = &plan.edges[e];
            let rings = (0..edge.to_replicas)
                .map(|c| ring(edge.ring_name(replica, c)))
                .collect();
            Port {
                edge: edge.name(),
                rings,
            }
        })
        .collect();
    let spec = graph::ron_options()
        .to_string(&stage.spec)
        .with_context(|| format!("stage \"{}\": cannot write its config as RON", stage.name))?;
    Ok(Launch {
        run_id: resources.run_id.clone(),
        run_dir: resources.run_dir.clone(),
        seed: plan.graph.seed,
        first_seq: resources.first_seq,
        stage: stage.name.clone(),
        replica,
        replicas: stage.replicas,
        spec,
        inputs,
        outputs,
        metrics: resources.metrics[index].clone(),
        control: resources.controls[index].clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn utc_stamp_formats_known_instants() {
        assert_eq!(utc_stamp(UNIX_EPOCH), "19700101-000000");
        // 2024-02-29 12:34:56 UTC, a leap day.
        assert_eq!(
            utc_stamp(UNIX_EPOCH + Duration::from_secs(1_709_210_096)),
            "20240229-123456"
        );
    }
}
