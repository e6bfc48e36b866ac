//! The control block of a stage: the merge cursor of each input of each replica, in shared
//! memory.
//!
//! A replica advances its cursor to the next expected sequence number before it releases an
//! input slot. A restarted replica reads the cursor back, so it expects exactly the item its
//! predecessor had not finished, which is still at the front of its ring. A front item below
//! the cursor is one whose output was already committed, and the merge drops it.
//!
//! Layout: magic (u64), replica count (u32), input count (u32), then one u64 cursor per
//! replica and input, replica-major.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use memmap2::MmapRaw;

use crate::shm::{self, ShmError};

/// "CCSSLCTL" in little-endian bytes.
const MAGIC: u64 = u64::from_le_bytes(*b"CCSSLCTL");
const HEADER_BYTES: usize = 16;

/// Errors of control blocks.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ControlError {
    /// Creating, opening or mapping the segment failed.
    #[error(transparent)]
    Shm(#[from] ShmError),
    /// The segment is not a control block or is too short for its counts.
    #[error("{path} is not a valid ccssl control block: {reason}")]
    Invalid {
        /// Segment path.
        path: PathBuf,
        /// Description of the problem.
        reason: String,
    },
}

/// A mapped control block.
pub struct ControlBlock {
    map: MmapRaw,
    replicas: u32,
    inputs: u32,
}

// SAFETY: the mapping is only accessed through atomics (and a header written before sharing).
unsafe impl Send for ControlBlock {}
// SAFETY: as for Send.
unsafe impl Sync for ControlBlock {}

fn segment_len(replicas: u32, inputs: u32) -> u64 {
    (HEADER_BYTES + 8 * replicas as usize * inputs.max(1) as usize) as u64
}

/// Returns the first sequence number at or after `first_seq` that replica `replica` of
/// `replicas` handles: items are dealt to replicas by `seq % replicas`.
pub fn first_seq_of(first_seq: u64, replica: u32, replicas: u32) -> u64 {
    let replicas = u64::from(replicas.max(1));
    let offset = (u64::from(replica) + replicas - first_seq % replicas) % replicas;
    first_seq + offset
}

/// Creates the control block of a stage with `replicas` replicas and `inputs` input edges,
/// with every cursor at its replica's first sequence number at or after `first_seq` (the
/// replica index when a run starts at 0, see [`first_seq_of`]).
pub fn create(path: &Path, replicas: u32, inputs: u32, first_seq: u64) -> Result<(), ControlError> {
    let map = shm::create_segment(path, segment_len(replicas, inputs))?;
    // SAFETY: the segment was just created with room for the header, is page aligned, and no
    // other process maps it yet.
    unsafe {
        let base = map.as_mut_ptr();
        base.add(8).cast::<u32>().write(replicas);
        base.add(12).cast::<u32>().write(inputs);
    }
    let block = ControlBlock {
        map,
        replicas,
        inputs,
    };
    for replica in 0..replicas {
        for input in 0..inputs {
            block.cursor(replica, input).store(
                first_seq_of(first_seq, replica, replicas),
                Ordering::Relaxed,
            );
        }
    }
    // The magic goes last, so an opener never accepts a half-initialised block.
    block.magic().store(MAGIC, Ordering::Release);
    Ok(())
}

impl ControlBlock {
    /// Maps the control block at `path` and checks its header.
    pub fn open(path: &Path) -> Result<ControlBlock, ControlError> {
        let map = shm::open_segment(path)?;
        let invalid = |reason: String| ControlError::Invalid {
            path: path.to_owned(),
            reason,
        };
        if map.len() < HEADER_BYTES {
            return Err(invalid(format!("file is only {} bytes", map.len())));
        }
        // SAFETY: the mapping holds the header; the counts are written before the magic,
        // which is read first with Acquire.
        let (replicas, inputs) = unsafe {
            let magic = &*map.as_ptr().cast::<AtomicU64>();
            if magic.load(Ordering::Acquire) != MAGIC {
                return Err(invalid("wrong magic number".to_string()));
            }
            (
                map.as_ptr().add(8).cast::<u32>().read(),
                map.as_ptr().add(12).cast::<u32>().read(),
            )
        };
        if (map.len() as u64) < segment_len(replicas, inputs) {
            return Err(invalid(format!(
                "file is {} bytes, too short for {replicas} x {inputs} cursors",
                map.len()
            )));
        }
        Ok(ControlBlock {
            map,
            replicas,
            inputs,
        })
    }

    fn magic(&self) -> &AtomicU64 {
        // SAFETY: offset 0 is inside the mapping, 8-byte aligned (page-aligned base), and any
        // bit pattern is a valid AtomicU64.
        unsafe { &*self.map.as_ptr().cast::<AtomicU64>() }
    }

    /// Cursor of input `input` of replica `replica`: the next sequence number it expects.
    ///
    /// # Panics
    /// If `replica` or `input` is out of range; the runtime only passes indices from the launch
    /// description that sized this block.
    pub fn cursor(&self, replica: u32, input: u32) -> &AtomicU64 {
        assert!(
            replica < self.replicas && input < self.inputs,
            "cursor ({replica}, {input}) out of range"
        );
        let index = replica as usize * self.inputs as usize + input as usize;
        // SAFETY: `open`/`create` checked the mapping holds every cursor; offsets are multiples
        // of 8 from a page-aligned base; any bit pattern is a valid AtomicU64.
        unsafe {
            &*self
                .map
                .as_ptr()
                .add(HEADER_BYTES + 8 * index)
                .cast::<AtomicU64>()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_start_at_replica_index_and_persist() {
        let path = shm::segment_path(&shm::new_run_id(), "control-test");
        create(&path, 3, 2, 0).unwrap();
        let block = ControlBlock::open(&path).unwrap();
        assert_eq!(block.cursor(0, 0).load(Ordering::Relaxed), 0);
        assert_eq!(block.cursor(2, 1).load(Ordering::Relaxed), 2);
        block.cursor(1, 1).store(41, Ordering::Relaxed);
        let again = ControlBlock::open(&path).unwrap();
        assert_eq!(again.cursor(1, 1).load(Ordering::Relaxed), 41);
        shm::unlink(&path).unwrap();
    }

    #[test]
    fn cursors_of_resumed_run_start_at_first_seq() {
        let path = shm::segment_path(&shm::new_run_id(), "control-resume");
        create(&path, 3, 1, 10).unwrap();
        let block = ControlBlock::open(&path).unwrap();
        // 10 % 3 == 1: replica 1 takes 10, replica 2 takes 11, replica 0 takes 12.
        assert_eq!(block.cursor(1, 0).load(Ordering::Relaxed), 10);
        assert_eq!(block.cursor(2, 0).load(Ordering::Relaxed), 11);
        assert_eq!(block.cursor(0, 0).load(Ordering::Relaxed), 12);
        shm::unlink(&path).unwrap();
    }

    #[test]
    fn first_seq_of_single_replica_is_first_seq() {
        assert_eq!(first_seq_of(0, 0, 1), 0);
        assert_eq!(first_seq_of(250, 0, 1), 250);
    }
}
