//! Byte layout of a ring segment and its validated mapping.
//!
//! ```text
//! offset 0              Header (repr(C), 128-byte aligned parts)
//! lens_offset           slot_count x u64: committed length of each slot
//! slots_offset          slot_count x slot_stride bytes of slot data (page aligned)
//! ```
//! Every field of the header is an atomic, because several processes map it at once. The
//! geometry fields are written once by [`Segment::create`] before the magic number, which is
//! stored last with Release; an opener loads the magic with Acquire before trusting the rest.

use std::mem::size_of;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering::{Acquire, Relaxed, Release};
use std::sync::atomic::{AtomicU32, AtomicU64};

use memmap2::MmapRaw;

use super::protocol::{Cursors, Padded, StdPlatform};
use super::{RingConfig, RingError};
use crate::shm;

/// Magic number at offset 0 of every ring segment ("CCSSLRNG" in little-endian bytes).
pub(crate) const MAGIC: u64 = u64::from_le_bytes(*b"CCSSLRNG");

/// Version of this byte layout; bump it on any change to [`Header`] or the offsets.
pub(crate) const LAYOUT_VERSION: u32 = 1;

/// Largest accepted slot size in bytes (1 GiB).
pub const MAX_SLOT_SIZE: usize = 1 << 30;

/// Largest accepted slot count.
pub const MAX_SLOT_COUNT: u32 = 1 << 16;

/// Alignment of each slot's data, in bytes.
const SLOT_ALIGN: u64 = 64;

/// Alignment of the slot area, in bytes: one page, so large slots start on a page.
const PAGE: u64 = 4096;

/// Counters written by one side of the ring.
#[repr(C)]
pub(crate) struct SideStats {
    /// Slots committed (producer) or released (consumer).
    pub count: AtomicU64,
    /// Nanoseconds spent waiting for a free slot (producer) or a published one (consumer).
    pub blocked_ns: AtomicU64,
}

#[repr(C)]
pub(crate) struct Header {
    pub magic: AtomicU64,
    pub layout_version: AtomicU32,
    pub slot_count: AtomicU32,
    pub slot_size: AtomicU64,
    pub slot_stride: AtomicU64,
    pub lens_offset: AtomicU64,
    pub slots_offset: AtomicU64,
    pub total_len: AtomicU64,
    /// Pid of the attached producer, 0 when none.
    pub producer_pid: AtomicU32,
    /// Pid of the attached consumer, 0 when none.
    pub consumer_pid: AtomicU32,
    pub producer_stats: Padded<SideStats>,
    pub consumer_stats: Padded<SideStats>,
    pub cursors: Cursors<StdPlatform>,
}

/// Offsets and sizes derived from a [`RingConfig`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Geometry {
    pub slot_size: u64,
    pub slot_count: u32,
    pub slot_stride: u64,
    pub lens_offset: u64,
    pub slots_offset: u64,
    pub total_len: u64,
}

fn round_up(value: u64, align: u64) -> Option<u64> {
    value.checked_add(align - 1).map(|v| v / align * align)
}

impl Geometry {
    pub fn new(config: &RingConfig) -> Result<Geometry, RingError> {
        if config.slot_size == 0 || config.slot_size > MAX_SLOT_SIZE {
            return Err(RingError::InvalidConfig {
                field: "slot_size",
                value: config.slot_size as u64,
                accepted: "1 ..= 1073741824 bytes",
            });
        }
        if config.slot_count == 0 || config.slot_count > MAX_SLOT_COUNT {
            return Err(RingError::InvalidConfig {
                field: "slot_count",
                value: u64::from(config.slot_count),
                accepted: "1 ..= 65536",
            });
        }
        let too_large = || RingError::InvalidConfig {
            field: "slot_size * slot_count",
            value: (config.slot_size as u64).saturating_mul(u64::from(config.slot_count)),
            accepted: "a segment smaller than 2^63 bytes",
        };
        let slot_size = config.slot_size as u64;
        let slot_count = u64::from(config.slot_count);
        let lens_offset = round_up(size_of::<Header>() as u64, 128).ok_or_else(too_large)?;
        let slots_offset = round_up(lens_offset + 8 * slot_count, PAGE).ok_or_else(too_large)?;
        let slot_stride = round_up(slot_size, SLOT_ALIGN).ok_or_else(too_large)?;
        let total_len = slot_stride
            .checked_mul(slot_count)
            .and_then(|b| b.checked_add(slots_offset))
            .filter(|&t| t < 1 << 63)
            .ok_or_else(too_large)?;
        Ok(Geometry {
            slot_size,
            slot_count: config.slot_count,
            slot_stride,
            lens_offset,
            slots_offset,
            total_len,
        })
    }
}

/// A mapped ring segment whose header passed validation.
pub(crate) struct Segment {
    map: MmapRaw,
    path: PathBuf,
    geometry: Geometry,
}

// SAFETY: the mapping is plain shared memory; every access goes through atomics or through the
// ring protocol, which hands each slot to at most one side at a time.
unsafe impl Send for Segment {}
// SAFETY: as for Send; `&Segment` only exposes atomics and raw pointers.
unsafe impl Sync for Segment {}

impl Segment {
    /// Creates the segment file and writes a fresh header; the magic number goes last.
    pub fn create(path: &Path, config: &RingConfig) -> Result<(), RingError> {
        let geometry = Geometry::new(config)?;
        let map = shm::create_segment(path, geometry.total_len)?;
        let segment = Segment {
            map,
            path: path.to_owned(),
            geometry,
        };
        // The file is zero-filled, and all-zero bytes are a valid header with zero values
        // (empty ring, open, no pids), so only the geometry needs writing.
        let header = segment.header();
        header.layout_version.store(LAYOUT_VERSION, Relaxed);
        header.slot_count.store(geometry.slot_count, Relaxed);
        header.slot_size.store(geometry.slot_size, Relaxed);
        header.slot_stride.store(geometry.slot_stride, Relaxed);
        header.lens_offset.store(geometry.lens_offset, Relaxed);
        header.slots_offset.store(geometry.slots_offset, Relaxed);
        header.total_len.store(geometry.total_len, Relaxed);
        header.magic.store(MAGIC, Release);
        Ok(())
    }

    /// Maps an existing segment and validates its header.
    pub fn open(path: &Path) -> Result<Segment, RingError> {
        let map = shm::open_segment(path)?;
        let corrupt = |reason: String| RingError::Corrupt {
            path: path.to_owned(),
            reason,
        };
        if map.len() < size_of::<Header>() {
            return Err(corrupt(format!(
                "file is {} bytes, shorter than the {}-byte header",
                map.len(),
                size_of::<Header>()
            )));
        }
        // SAFETY: the mapping is page aligned and at least size_of::<Header>() bytes long, and
        // every bit pattern is a valid Header because all its fields are integer atomics.
        let header = unsafe { &*map.as_ptr().cast::<Header>() };
        let magic = header.magic.load(Acquire);
        if magic != MAGIC {
            return Err(RingError::NotARing {
                path: path.to_owned(),
                found: magic,
            });
        }
        let version = header.layout_version.load(Relaxed);
        if version != LAYOUT_VERSION {
            return Err(RingError::LayoutVersion {
                path: path.to_owned(),
                found: version,
                expected: LAYOUT_VERSION,
            });
        }
        let slot_size = header.slot_size.load(Relaxed);
        let config = RingConfig {
            slot_size: usize::try_from(slot_size).unwrap_or(usize::MAX),
            slot_count: header.slot_count.load(Relaxed),
        };
        let geometry = Geometry::new(&config).map_err(|e| corrupt(e.to_string()))?;
        let stored = Geometry {
            slot_size,
            slot_count: config.slot_count,
            slot_stride: header.slot_stride.load(Relaxed),
            lens_offset: header.lens_offset.load(Relaxed),
            slots_offset: header.slots_offset.load(Relaxed),
            total_len: header.total_len.load(Relaxed),
        };
        if stored != geometry {
            return Err(corrupt(format!(
                "stored layout {stored:?} differs from the layout {geometry:?} of its slot size \
                 and count"
            )));
        }
        if (map.len() as u64) < geometry.total_len {
            return Err(corrupt(format!(
                "file is {} bytes, the layout needs {}",
                map.len(),
                geometry.total_len
            )));
        }
        // Tail first: head only grows, so a consistent ring reads tail <= head here.
        let tail = header.cursors.tail();
        let head = header.cursors.head();
        if head < tail || head - tail > u64::from(geometry.slot_count) {
            return Err(corrupt(format!(
                "cursors head {head} and tail {tail} break tail <= head <= tail + {}",
                geometry.slot_count
            )));
        }
        Ok(Segment {
            map,
            path: path.to_owned(),
            geometry,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn slot_size(&self) -> usize {
        self.geometry.slot_size as usize
    }

    pub fn slot_count(&self) -> u32 {
        self.geometry.slot_count
    }

    pub fn header(&self) -> &Header {
        // SAFETY: `create` and `open` checked that the page-aligned mapping holds a Header, and
        // any bit pattern is a valid Header. The mapping lives as long as `self`.
        unsafe { &*self.map.as_ptr().cast::<Header>() }
    }

    pub fn cursors(&self) -> &Cursors<StdPlatform> {
        &self.header().cursors
    }

    /// Committed-length word of slot `index` (`index < slot_count`).
    pub fn len_word(&self, index: u64) -> &AtomicU64 {
        assert!(index < u64::from(self.geometry.slot_count));
        let offset = self.geometry.lens_offset + 8 * index;
        // SAFETY: the layout check proved lens_offset + 8 * slot_count <= mapping length; the
        // offset is 8-byte aligned (lens_offset is a multiple of 128) and any bit pattern is a
        // valid AtomicU64.
        unsafe { &*self.map.as_ptr().add(offset as usize).cast::<AtomicU64>() }
    }

    /// Start of the data of slot `index` (`index < slot_count`); `slot_size` bytes are valid.
    pub fn slot_ptr(&self, index: u64) -> *mut u8 {
        assert!(index < u64::from(self.geometry.slot_count));
        let offset = self.geometry.slots_offset + self.geometry.slot_stride * index;
        // SAFETY: the layout check proved slots_offset + stride * slot_count <= mapping length,
        // so the offset stays inside the mapping.
        unsafe { self.map.as_mut_ptr().add(offset as usize) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn geometry_aligns_slots() {
        let g = Geometry::new(&RingConfig {
            slot_size: 100,
            slot_count: 3,
        })
        .expect("valid config");
        assert_eq!(g.slot_stride, 128);
        assert_eq!(g.slots_offset % 4096, 0);
        assert!(g.lens_offset >= size_of::<Header>() as u64);
        assert_eq!(g.total_len, g.slots_offset + 3 * 128);
    }

    #[test]
    fn geometry_rejects_bad_sizes() {
        for (slot_size, slot_count) in [(0, 4), (1 << 31, 4), (64, 0), (64, (1 << 16) + 1)] {
            let result = Geometry::new(&RingConfig {
                slot_size,
                slot_count,
            });
            assert!(
                matches!(result, Err(RingError::InvalidConfig { .. })),
                "{slot_size} x {slot_count}: {result:?}"
            );
        }
    }

    #[test]
    fn header_parts_are_cache_line_separated() {
        use std::mem::offset_of;
        let producer = offset_of!(Header, producer_stats);
        let consumer = offset_of!(Header, consumer_stats);
        assert_eq!(producer % 128, 0);
        assert_eq!(consumer - producer, 128);
        assert_eq!(offset_of!(Header, cursors) % 128, 0);
    }
}
