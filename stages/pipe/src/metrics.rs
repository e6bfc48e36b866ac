//! Per-stage metrics blocks in shared memory.
//!
//! One segment per stage contains a small header and one [`StageMetrics`] record per replica.
//! Every field is an atomic: each record is written by its replica's process (the supervisor
//! writes `restarts` and may write `state` after a crash) and read by anyone, such as the
//! supervisor's heartbeat check and the dashboard. Readers get each field's latest value, not
//! a consistent snapshot across fields.
//!
//! ```
//! use ccssl_pipe::metrics::{self, MetricsBlock, StageState};
//! # fn main() -> Result<(), ccssl_pipe::metrics::MetricsError> {
//! let path = ccssl_pipe::shm::segment_path(&ccssl_pipe::shm::new_run_id(), "metrics-augment");
//! metrics::create(&path, 2)?;
//! let block = MetricsBlock::open(&path)?;
//! let record = block.replica(1).expect("two replicas");
//! record.set_state(StageState::Running);
//! record.add_items_in(1);
//! assert_eq!(record.snapshot().items_in, 1);
//! block.unlink()?;
//! # Ok(())
//! # }
//! ```

use std::mem::size_of;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering::{Acquire, Relaxed, Release};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use memmap2::MmapRaw;

use crate::shm::{self, ShmError};

/// Magic number at offset 0 of a metrics segment ("CCSSLMET" in little-endian bytes).
const MAGIC: u64 = u64::from_le_bytes(*b"CCSSLMET");

/// Version of this byte layout; bump it on any change to the header or [`StageMetrics`].
const LAYOUT_VERSION: u32 = 2;

/// Largest replica count a block accepts.
pub const MAX_REPLICAS: u32 = 1024;

/// Number of free `f64` gauges per record. [`gauge`] names the ones training stages set.
pub const GAUGES: usize = 16;

/// Indices of the gauges a training stage sets, read by the dashboard and the progress line.
///
/// One stage of a run (the step stage) reports training progress: it sets [`TOTAL_STEPS`] to
/// a positive value, and readers take the progress gauges of the first replica of the first
/// stage that did. Losses are the values of the latest finished step; ratios are in `0..=1`.
/// The remaining indices, up to [`GAUGES`](super::GAUGES), are free for stage-specific use.
///
/// [`TOTAL_STEPS`]: gauge::TOTAL_STEPS
pub mod gauge {
    /// Training steps finished so far.
    pub const STEP: usize = 0;
    /// Training steps of the whole run; positive in the stage that reports training progress.
    pub const TOTAL_STEPS: usize = 1;
    /// Learning rate of the step in progress.
    pub const LR: usize = 2;
    /// Weighted total loss `loss_x + lambda_u * loss_u + lambda_c * loss_c`.
    pub const LOSS: usize = 3;
    /// Supervised cross-entropy on the labeled batch.
    pub const LOSS_X: usize = 4;
    /// Masked pseudo-label cross-entropy on the strong views.
    pub const LOSS_U: usize = 5;
    /// Class-aware contrastive loss.
    pub const LOSS_C: usize = 6;
    /// Share of unlabeled images whose confidence passed the threshold.
    pub const MASK_RATIO: usize = 7;
    /// Share of masked pseudo-labels equal to the true label.
    pub const PSEUDO_LABEL_ACC: usize = 8;
}

/// Lifecycle state of one stage replica.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u32)]
pub enum StageState {
    /// The record exists but no process has started on it.
    Pending = 0,
    /// The process started and is setting up.
    Starting = 1,
    /// The process is handling items.
    Running = 2,
    /// The process was asked to stop and is finishing.
    Stopping = 3,
    /// The process exited normally.
    Stopped = 4,
    /// The process failed or was killed.
    Failed = 5,
}

impl StageState {
    fn from_u32(value: u32) -> Option<StageState> {
        Some(match value {
            0 => StageState::Pending,
            1 => StageState::Starting,
            2 => StageState::Running,
            3 => StageState::Stopping,
            4 => StageState::Stopped,
            5 => StageState::Failed,
            _ => return None,
        })
    }
}

/// Errors of metrics-block creation and opening.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MetricsError {
    /// Creating, opening or mapping the segment failed.
    #[error(transparent)]
    Shm(#[from] ShmError),
    /// The replica count is out of range.
    #[error("invalid replica count {replicas} for metrics block {path}: expected 1 ..= 1024")]
    InvalidReplicas {
        /// Segment path.
        path: PathBuf,
        /// Rejected count.
        replicas: u32,
    },
    /// The file is not a metrics block of this layout version, or is truncated.
    #[error(
        "{path} is not a ccssl metrics block of layout version {version}: {reason}",
        version = LAYOUT_VERSION
    )]
    Invalid {
        /// Segment path.
        path: PathBuf,
        /// Mismatch found.
        reason: String,
    },
}

#[repr(C, align(128))]
struct BlockHeader {
    magic: AtomicU64,
    layout_version: AtomicU32,
    replicas: AtomicU32,
}

/// Live counters of one stage replica. Times are nanoseconds; the heartbeat is nanoseconds
/// since the Unix epoch.
#[repr(C, align(128))]
#[derive(Debug)]
pub struct StageMetrics {
    state: AtomicU32,
    pid: AtomicU32,
    restarts: AtomicU32,
    /// Depth of [`beat_while`] calls in progress: long work the stage is inside.
    working: AtomicU32,
    heartbeat_ns: AtomicU64,
    items_in: AtomicU64,
    items_out: AtomicU64,
    images_in: AtomicU64,
    images_out: AtomicU64,
    busy_ns: AtomicU64,
    blocked_in_ns: AtomicU64,
    blocked_out_ns: AtomicU64,
    gauges: [AtomicU64; GAUGES],
}

/// Values of one [`StageMetrics`] record, read field by field.
#[derive(Clone, Debug, PartialEq)]
pub struct MetricsSnapshot {
    /// Lifecycle state; `None` for a value this build does not know.
    pub state: Option<StageState>,
    /// Pid of the replica's process, 0 before it started.
    pub pid: u32,
    /// Times the supervisor respawned this replica.
    pub restarts: u32,
    /// Last heartbeat, nanoseconds since the Unix epoch; 0 before the first.
    pub heartbeat_ns: u64,
    /// Items taken from the inputs.
    pub items_in: u64,
    /// Items committed to the outputs.
    pub items_out: u64,
    /// Images in the items taken, each dataset image counted once however many views of it an
    /// item holds; 0 for stages that do not count images.
    pub images_in: u64,
    /// Images in the items committed, counted like `images_in`.
    pub images_out: u64,
    /// Nanoseconds spent working on items.
    pub busy_ns: u64,
    /// Nanoseconds spent waiting for input.
    pub blocked_in_ns: u64,
    /// Nanoseconds spent waiting for space on an output.
    pub blocked_out_ns: u64,
    /// Free gauges (step, learning rate, losses, ...), as the stage defines them.
    pub gauges: [f64; GAUGES],
    /// Whether the stage is inside long work wrapped in [`beat_while`] (a training step, an
    /// evaluation, a checkpoint write).
    pub working: bool,
}

fn add_duration(counter: &AtomicU64, duration: Duration) {
    let ns = u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX);
    counter.fetch_add(ns, Relaxed);
}

/// Nanoseconds since the Unix epoch, 0 if the clock is before it.
pub fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

/// Period of the heartbeat that [`beat_while`] keeps up.
pub const BEAT_PERIOD: Duration = Duration::from_millis(200);

/// Runs `work` on the calling thread while a helper thread renews the heartbeat of `metrics`
/// every [`BEAT_PERIOD`]. Stages wrap work that can outlast the supervisor's stale limit in it:
/// a training step of a large model, an evaluation pass, a dataset download. A stage inside
/// `work` therefore shows as alive, not stalled, for as long as its process runs, and as
/// working, which lets a graceful stop wait for it.
pub fn beat_while<R>(metrics: Option<&StageMetrics>, work: impl FnOnce() -> R) -> R {
    let Some(metrics) = metrics else {
        return work();
    };
    let done = AtomicBool::new(false);
    metrics.working.fetch_add(1, Relaxed);
    let result = std::thread::scope(|scope| {
        let beat = scope.spawn(|| {
            while !done.load(Relaxed) {
                metrics.heartbeat();
                std::thread::park_timeout(BEAT_PERIOD);
            }
        });
        let result = work();
        done.store(true, Relaxed);
        // An unpark before the helper parks makes that park return at once, so the helper
        // reads `done` without waiting out its period.
        beat.thread().unpark();
        result
    });
    metrics.working.fetch_sub(1, Relaxed);
    result
}

impl StageMetrics {
    /// Sets the lifecycle state.
    pub fn set_state(&self, state: StageState) {
        self.state.store(state as u32, Release);
    }

    /// Lifecycle state; `None` for a value this build does not know.
    pub fn state(&self) -> Option<StageState> {
        StageState::from_u32(self.state.load(Acquire))
    }

    /// Records the pid of the process that now owns this record.
    pub fn set_pid(&self, pid: u32) {
        self.pid.store(pid, Relaxed);
    }

    /// Stores the current time as the heartbeat.
    pub fn heartbeat(&self) {
        self.heartbeat_ns.store(now_ns(), Relaxed);
    }

    /// Counts `n` items taken from the inputs.
    pub fn add_items_in(&self, n: u64) {
        self.items_in.fetch_add(n, Relaxed);
    }

    /// Counts `n` items committed to the outputs.
    pub fn add_items_out(&self, n: u64) {
        self.items_out.fetch_add(n, Relaxed);
    }

    /// Counts `n` images in the items taken from the inputs.
    pub fn add_images_in(&self, n: u64) {
        self.images_in.fetch_add(n, Relaxed);
    }

    /// Counts `n` images in the items committed to the outputs.
    pub fn add_images_out(&self, n: u64) {
        self.images_out.fetch_add(n, Relaxed);
    }

    /// Adds working time.
    pub fn add_busy(&self, duration: Duration) {
        add_duration(&self.busy_ns, duration);
    }

    /// Adds time spent waiting for input.
    pub fn add_blocked_in(&self, duration: Duration) {
        add_duration(&self.blocked_in_ns, duration);
    }

    /// Adds time spent waiting for output space.
    pub fn add_blocked_out(&self, duration: Duration) {
        add_duration(&self.blocked_out_ns, duration);
    }

    /// Counts one respawn of this replica.
    pub fn add_restart(&self) {
        self.restarts.fetch_add(1, Relaxed);
    }

    /// Sets gauge `index` (`index < GAUGES`); an out-of-range index is ignored.
    pub fn set_gauge(&self, index: usize, value: f64) {
        if let Some(gauge) = self.gauges.get(index) {
            gauge.store(value.to_bits(), Relaxed);
        }
    }

    /// Reads every field.
    pub fn snapshot(&self) -> MetricsSnapshot {
        MetricsSnapshot {
            state: self.state(),
            pid: self.pid.load(Relaxed),
            restarts: self.restarts.load(Relaxed),
            heartbeat_ns: self.heartbeat_ns.load(Relaxed),
            items_in: self.items_in.load(Relaxed),
            items_out: self.items_out.load(Relaxed),
            images_in: self.images_in.load(Relaxed),
            images_out: self.images_out.load(Relaxed),
            busy_ns: self.busy_ns.load(Relaxed),
            blocked_in_ns: self.blocked_in_ns.load(Relaxed),
            blocked_out_ns: self.blocked_out_ns.load(Relaxed),
            gauges: std::array::from_fn(|i| f64::from_bits(self.gauges[i].load(Relaxed))),
            working: self.working.load(Relaxed) > 0,
        }
    }
}

fn segment_len(replicas: u32) -> u64 {
    (size_of::<BlockHeader>() + size_of::<StageMetrics>() * replicas as usize) as u64
}

/// Creates a metrics segment with `replicas` zeroed records (state `Pending`) at `path`.
pub fn create(path: impl AsRef<Path>, replicas: u32) -> Result<(), MetricsError> {
    let path = path.as_ref();
    if replicas == 0 || replicas > MAX_REPLICAS {
        return Err(MetricsError::InvalidReplicas {
            path: path.to_owned(),
            replicas,
        });
    }
    let map = shm::create_segment(path, segment_len(replicas))?;
    // SAFETY: the fresh mapping is page aligned and at least one BlockHeader long. Any bit
    // pattern is a valid BlockHeader because its fields are integer atomics.
    let header = unsafe { &*map.as_ptr().cast::<BlockHeader>() };
    header.layout_version.store(LAYOUT_VERSION, Relaxed);
    header.replicas.store(replicas, Relaxed);
    header.magic.store(MAGIC, Release);
    Ok(())
}

/// A mapped metrics segment with one record per replica.
pub struct MetricsBlock {
    map: MmapRaw,
    path: PathBuf,
    replicas: u32,
}

// SAFETY: the mapping is only accessed through atomics.
unsafe impl Send for MetricsBlock {}
// SAFETY: as for Send.
unsafe impl Sync for MetricsBlock {}

impl std::fmt::Debug for MetricsBlock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MetricsBlock")
            .field("path", &self.path)
            .field("replicas", &self.replicas)
            .finish()
    }
}

impl MetricsBlock {
    /// Maps the metrics segment at `path` and validates its header.
    pub fn open(path: impl AsRef<Path>) -> Result<MetricsBlock, MetricsError> {
        let path = path.as_ref();
        let map = shm::open_segment(path)?;
        let invalid = |reason: String| MetricsError::Invalid {
            path: path.to_owned(),
            reason,
        };
        if map.len() < size_of::<BlockHeader>() {
            return Err(invalid(format!("file is only {} bytes", map.len())));
        }
        // SAFETY: the mapping is page aligned and holds at least a BlockHeader; any bit
        // pattern is valid for its atomics.
        let header = unsafe { &*map.as_ptr().cast::<BlockHeader>() };

        let magic = header.magic.load(Acquire);
        if magic != MAGIC {
            return Err(invalid(format!("magic {magic:#018x}")));
        }
        let version = header.layout_version.load(Relaxed);
        if version != LAYOUT_VERSION {
            return Err(invalid(format!("layout version {version}")));
        }
        let replicas = header.replicas.load(Relaxed);
        if replicas == 0 || replicas > MAX_REPLICAS {
            return Err(invalid(format!("replica count {replicas}")));
        }
        if (map.len() as u64) < segment_len(replicas) {
            return Err(invalid(format!(
                "file is {} bytes, {replicas} records need {}",
                map.len(),
                segment_len(replicas)
            )));
        }
        Ok(MetricsBlock {
            map,
            path: path.to_owned(),
            replicas,
        })
    }

    /// Segment path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Number of replica records.
    pub fn replicas(&self) -> u32 {
        self.replicas
    }

    /// Record of replica `index`, or `None` when `index >= replicas()`.
    pub fn replica(&self, index: u32) -> Option<&StageMetrics> {
        if index >= self.replicas {
            return None;
        }
        let offset = size_of::<BlockHeader>() + size_of::<StageMetrics>() * index as usize;
        // SAFETY: `open` checked that the mapping contains every record. The offset is a multiple
        // of 128 from a page-aligned base, and any bit pattern is valid for the atomics. The
        // record lives as long as `self`.
        Some(unsafe { &*self.map.as_ptr().add(offset).cast::<StageMetrics>() })
    }

    /// Removes the segment file; mappings stay valid.
    pub fn unlink(self) -> Result<(), MetricsError> {
        shm::unlink(&self.path)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::shm::{new_run_id, segment_path};

    #[test]
    fn records_are_shared_between_mappings() {
        let path = segment_path(&new_run_id(), "metrics-shared");
        create(&path, 3).expect("create");
        let writer = MetricsBlock::open(&path).expect("open writer");
        let reader = MetricsBlock::open(&path).expect("open reader");
        assert_eq!(reader.replicas(), 3);
        assert!(reader.replica(3).is_none());

        let record = writer.replica(2).expect("replica 2");
        assert_eq!(record.state(), Some(StageState::Pending));
        record.set_state(StageState::Running);
        record.set_pid(4242);
        record.heartbeat();
        record.add_items_in(5);
        record.add_items_out(4);
        record.add_images_in(320);
        record.add_images_out(256);
        record.add_busy(Duration::from_millis(3));
        record.add_blocked_in(Duration::from_nanos(7));
        record.add_blocked_out(Duration::from_nanos(11));
        record.add_restart();
        record.set_gauge(gauge::LR, 0.03);
        record.set_gauge(GAUGES - 1, 7.0);
        record.set_gauge(GAUGES, 9.0);

        let seen = reader.replica(2).expect("replica 2").snapshot();
        assert_eq!(seen.state, Some(StageState::Running));
        assert_eq!(seen.pid, 4242);
        assert!(seen.heartbeat_ns > 1_700_000_000_000_000_000);
        assert_eq!((seen.items_in, seen.items_out), (5, 4));
        assert_eq!((seen.images_in, seen.images_out), (320, 256));
        assert_eq!(seen.busy_ns, 3_000_000);
        assert_eq!((seen.blocked_in_ns, seen.blocked_out_ns), (7, 11));
        assert_eq!(seen.restarts, 1);
        assert_eq!(seen.gauges[gauge::LR], 0.03);
        assert_eq!(seen.gauges[GAUGES - 1], 7.0);
        assert_eq!(reader.replica(0).expect("replica 0").snapshot().items_in, 0);
        writer.unlink().expect("unlink");
    }

    #[test]
    fn create_rejects_zero_replicas() {
        let path = segment_path(&new_run_id(), "metrics-zero");
        let result = create(&path, 0);
        assert!(matches!(
            result,
            Err(MetricsError::InvalidReplicas { replicas: 0, .. })
        ));
        assert!(!path.exists());
    }

    #[test]
    fn open_rejects_ring_segment() {
        let path = segment_path(&new_run_id(), "metrics-not");
        std::fs::write(&path, [1u8; 256]).expect("write");
        let result = MetricsBlock::open(&path);
        assert!(
            matches!(result, Err(MetricsError::Invalid { .. })),
            "{:?}",
            result.err()
        );
        std::fs::remove_file(&path).expect("remove");
    }

    #[test]
    fn beat_while_renews_heartbeat_during_work() {
        let path = segment_path(&new_run_id(), "metrics-beat");
        create(&path, 1).unwrap();
        let block = MetricsBlock::open(&path).unwrap();
        let record = block.replica(0).unwrap();
        record.heartbeat();
        let before = record.snapshot().heartbeat_ns;

        // The work returns once the heartbeat is newer than the one stored before it began.
        let renewed = beat_while(Some(record), || {
            let deadline = std::time::Instant::now() + Duration::from_secs(10);
            while std::time::Instant::now() < deadline {
                if record.snapshot().heartbeat_ns > before {
                    return true;
                }
                std::thread::yield_now();
            }
            false
        });

        assert!(renewed);
        block.unlink().unwrap();
    }

    #[test]
    fn beat_while_without_metrics_runs_work() {
        assert_eq!(beat_while(None, || 41 + 1), 42);
    }
}
