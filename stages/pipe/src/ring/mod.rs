//! Single-producer single-consumer rings in shared memory, one `/dev/shm` segment per edge.
//!
//! A ring is a fixed array of `slot_count` slots of `slot_size` bytes behind a `repr(C)` header
//! (see the `segment` module for the byte layout). The producer reserves the next free slot,
//! writes into it in place and commits a length. The consumer peeks the oldest published slot,
//! reads it in place and releases it. Nothing is copied and nothing is dropped: a full ring
//! blocks the producer, an empty one blocks the consumer. Waiting spins briefly (crossbeam
//! `Backoff`) and then sleeps on a futex in slices of [`WAIT_SLICE`], so a marked-abandoned ring
//! is noticed within one slice even if a wake-up is lost with a dying peer.
//!
//! The cursor protocol and its memory orderings are documented in the `protocol` module and
//! model-checked with loom.
//!
//! ```
//! use ccssl_pipe::ring::{self, Consumer, Producer, RingConfig};
//! # fn main() -> Result<(), ccssl_pipe::ring::RingError> {
//! let path = ring::segment_path(&ccssl_pipe::shm::new_run_id(), "loader-to-augment");
//! ring::create(&path, RingConfig { slot_size: 4096, slot_count: 8 })?;
//! let mut producer = Producer::open(&path)?;
//! let mut consumer = Consumer::open(&path)?;
//!
//! let mut slot = producer.reserve()?;
//! slot[..5].copy_from_slice(b"hello");
//! slot.commit(5);
//! producer.close();
//!
//! while let Some(slot) = consumer.peek()? {
//!     assert_eq!(&*slot, b"hello");
//!     slot.release();
//! }
//! ring::Monitor::open(&path)?.unlink()?;
//! # Ok(())
//! # }
//! ```

mod endpoints;
pub(crate) mod futex;
pub mod protocol;
mod segment;

use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

pub use crate::shm::segment_path;
pub use endpoints::{Consumer, Peeked, Producer, SlotMut, SlotRef};
pub use segment::{MAX_SLOT_COUNT, MAX_SLOT_SIZE};

use crate::shm::ShmError;
use protocol::StdPlatform;
use segment::{Geometry, Segment};

/// Maximum duration of one futex sleep, so a waiting side re-checks the abandoned flag at least
/// this often.
pub const WAIT_SLICE: Duration = Duration::from_millis(100);

/// Size of a ring.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RingConfig {
    /// Bytes per slot, 1 ..= [`MAX_SLOT_SIZE`].
    pub slot_size: usize,
    /// Number of slots, 1 ..= [`MAX_SLOT_COUNT`].
    pub slot_count: u32,
}

/// Errors of ring creation, opening and use.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RingError {
    /// Creating, opening or mapping the segment failed.
    #[error(transparent)]
    Shm(#[from] ShmError),
    /// A ring size is out of range.
    #[error("invalid ring {field} {value}: expected {accepted}")]
    InvalidConfig {
        /// Name of the rejected setting.
        field: &'static str,
        /// Rejected value.
        value: u64,
        /// Accepted range.
        accepted: &'static str,
    },
    /// The file does not start with the ring magic number.
    #[error(
        "{path} is not a ccssl ring segment (magic {found:#018x}); check the path, or recreate \
         the segment"
    )]
    NotARing {
        /// Segment path.
        path: PathBuf,
        /// Magic number found.
        found: u64,
    },
    /// The segment was written by a build with another layout.
    #[error(
        "ring segment {path} has layout version {found}, this build reads version {expected}; \
         run every stage from the same build"
    )]
    LayoutVersion {
        /// Segment path.
        path: PathBuf,
        /// Version found.
        found: u32,
        /// Version this build writes and reads.
        expected: u32,
    },
    /// The header or a slot length is inconsistent.
    #[error("ring segment {path} is corrupt: {reason}")]
    Corrupt {
        /// Segment path.
        path: PathBuf,
        /// Inconsistency found.
        reason: String,
    },
    /// Another live process is attached on the same side.
    #[error("ring {path} already has a live {role} (pid {pid}); a ring takes one {role} at a time")]
    PeerAttached {
        /// Segment path.
        path: PathBuf,
        /// `producer` or `consumer`.
        role: &'static str,
        /// Pid of the attached process.
        pid: u32,
    },
    /// The ring was marked abandoned because a stage of the run failed.
    #[error("ring {path} was abandoned: a stage on this edge or elsewhere in the run failed")]
    Abandoned {
        /// Segment path.
        path: PathBuf,
    },
    /// A reserve after this producer closed the ring.
    #[error("ring {path} is closed: the producer ended the stream and cannot reserve slots")]
    Closed {
        /// Segment path.
        path: PathBuf,
    },
}

/// Creates the segment of a new, empty ring at `path` (`O_EXCL`, mode 0600).
///
/// Fails with [`ShmError::Exists`] if the file exists, and leaves no file behind on error.
pub fn create(path: impl AsRef<Path>, config: RingConfig) -> Result<(), RingError> {
    Segment::create(path.as_ref(), &config)
}

/// Returns the segment size in bytes that `config` needs, for free-space checks.
pub fn segment_len(config: RingConfig) -> Result<u64, RingError> {
    Ok(Geometry::new(&config)?.total_len)
}

/// Point-in-time view of a ring, as [`Monitor::stats`] reads it.
///
/// Fields are read one by one without a lock, so they may belong to slightly different
/// instants; `tail <= head` still holds because `tail` is read first.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RingStats {
    /// Slots released by the consumer since creation.
    pub tail: u64,
    /// Slots published by the producer since creation.
    pub head: u64,
    /// Number of slots.
    pub slot_count: u32,
    /// Bytes per slot.
    pub slot_size: usize,
    /// Commits counted by the producer.
    pub pushes: u64,
    /// Releases counted by the consumer.
    pub pops: u64,
    /// Nanoseconds the producer waited on a full ring.
    pub producer_blocked_ns: u64,
    /// Nanoseconds the consumer waited on an empty ring.
    pub consumer_blocked_ns: u64,
    /// The producer closed the stream.
    pub closed: bool,
    /// The ring was marked abandoned.
    pub abandoned: bool,
    /// Pid of the attached producer.
    pub producer_pid: Option<u32>,
    /// Pid of the attached consumer.
    pub consumer_pid: Option<u32>,
}

impl RingStats {
    /// Published slots not yet released.
    pub fn occupancy(&self) -> u64 {
        self.head.saturating_sub(self.tail)
    }
}

/// Read-mostly view of a ring for the supervisor and dashboard.
pub struct Monitor {
    segment: Segment,
}

impl std::fmt::Debug for Monitor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Monitor")
            .field("path", &self.segment.path())
            .finish()
    }
}

impl Monitor {
    /// Maps the ring at `path` without attaching as producer or consumer.
    pub fn open(path: impl AsRef<Path>) -> Result<Monitor, RingError> {
        Ok(Monitor {
            segment: Segment::open(path.as_ref())?,
        })
    }

    /// Segment path.
    pub fn path(&self) -> &Path {
        self.segment.path()
    }

    /// Reads the cursors, counters, flags and pids.
    pub fn stats(&self) -> RingStats {
        let header = self.segment.header();
        let cursors = self.segment.cursors();
        let pid = |v: u32| (v != 0).then_some(v);
        let tail = cursors.tail();
        RingStats {
            tail,
            head: cursors.head(),
            slot_count: self.segment.slot_count(),
            slot_size: self.segment.slot_size(),
            pushes: header.producer_stats.0.count.load(Relaxed),
            pops: header.consumer_stats.0.count.load(Relaxed),
            producer_blocked_ns: header.producer_stats.0.blocked_ns.load(Relaxed),
            consumer_blocked_ns: header.consumer_stats.0.blocked_ns.load(Relaxed),
            closed: cursors.is_closed(),
            abandoned: cursors.is_abandoned(),
            producer_pid: pid(header.producer_pid.load(Relaxed)),
            consumer_pid: pid(header.consumer_pid.load(Relaxed)),
        }
    }

    /// Marks the ring abandoned and wakes both sides: their next or current wait returns
    /// [`RingError::Abandoned`].
    pub fn mark_abandoned(&self) {
        self.segment.cursors().abandon(&StdPlatform);
    }

    /// Removes the segment file. Processes that still map it keep working on their mapping.
    pub fn unlink(self) -> Result<(), RingError> {
        crate::shm::unlink(self.segment.path())?;
        Ok(())
    }
}

#[cfg(test)]
mod tests;
