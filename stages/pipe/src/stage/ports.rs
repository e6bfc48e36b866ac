//! Stage inputs and outputs: replica fan-out by sequence number and in-order fan-in.
//!
//! An edge from a stage with `P` replicas to one with `C` replicas is `P * C` rings. Item `seq`
//! is produced by replica `seq % P` and consumed by replica `seq % C`. So producer replica `p`
//! writes `seq` into its ring towards consumer `seq % C`. Consumer replica `c` expects the
//! sequence `c, c + C, c + 2C, ...` and reads each `seq` from the ring of producer `seq % P`.
//! Which replica handles an item never depends on timing, so results do not depend on the
//! replica count.
//!
//! A restarted producer replica redoes the item it had not released, so its output may hold an
//! item a second time. The merge drops an item whose `seq` is lower than the one it expects (a
//! duplicate) and fails on a higher one (an item was lost).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::metrics::StageMetrics;
use crate::ring::{Consumer, Peeked, Producer, SlotMut, SlotRef};
use crate::slot;

use super::StageError;
use super::control::ControlBlock;

/// How long one wait lasts before the runtime updates the heartbeat and waits again.
const WAIT_STEP: Duration = Duration::from_millis(100);

/// One input edge of a stage replica, merged from the rings of every upstream replica.
pub struct Input {
    edge: String,
    rings: Vec<Consumer>,
    /// Next sequence number this replica expects.
    next_seq: u64,
    /// Replica count of this stage: the step between expected sequence numbers.
    stride: u64,
    duplicates: u64,
    /// Control block that keeps `next_seq` across restarts, with this replica's and input's
    /// indices into it.
    control: Arc<ControlBlock>,
    replica: u32,
    index: u32,
}

/// An input item, in place in its ring. Release it after the output made from it is
/// committed; dropping it without release leaves it in the ring for a restarted replica.
pub struct Item<'a> {
    slot: SlotRef<'a>,
    seq: u64,
    next_seq: &'a mut u64,
    cursor: &'a AtomicU64,
    stride: u64,
    metrics: Option<&'a StageMetrics>,
}

impl Item<'_> {
    /// Sequence number of the item.
    pub fn seq(&self) -> u64 {
        self.seq
    }

    /// Frees the slot and moves the input on to the next sequence number.
    pub fn release(self) {
        // The cursor moves before the slot is freed: a replica killed in between finds this
        // item below its cursor after a restart and drops it as already done.
        *self.next_seq = self.seq + self.stride;
        self.cursor.store(*self.next_seq, Ordering::Release);
        if let Some(metrics) = self.metrics {
            metrics.add_items_in(1);
        }
        self.slot.release();
    }
}

impl std::ops::Deref for Item<'_> {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        &self.slot
    }
}

impl Input {
    /// Creates an input resuming at the cursor stored in `control` (the replica index on a first
    /// start).
    pub(super) fn new(
        edge: String,
        rings: Vec<Consumer>,
        replicas: u32,
        control: Arc<ControlBlock>,
        replica: u32,
        index: u32,
    ) -> Input {
        let next_seq = control.cursor(replica, index).load(Ordering::Acquire);
        Input {
            edge,
            rings,
            next_seq,
            stride: u64::from(replicas),
            duplicates: 0,
            control,
            replica,
            index,
        }
    }

    /// Edge name, `from-to`.
    pub fn edge(&self) -> &str {
        &self.edge
    }

    /// Duplicates dropped so far (items a restarted upstream replica sent twice).
    pub fn duplicates(&self) -> u64 {
        self.duplicates
    }

    /// Sequence number the next item must carry.
    pub fn next_seq(&self) -> u64 {
        self.next_seq
    }

    /// Waits for the next item in sequence order; `Ok(None)` once the upstream stage closed
    /// the edge and every item was read.
    pub fn next<'a>(
        &'a mut self,
        metrics: Option<&'a StageMetrics>,
    ) -> Result<Option<Item<'a>>, StageError> {
        let expected = self.next_seq;
        let ring = (expected % self.rings.len() as u64) as usize;
        let started = Instant::now();
        loop {
            if let Some(metrics) = metrics {
                metrics.heartbeat();
            }
            let peeked = self.rings[ring]
                .peek_deadline(Instant::now() + WAIT_STEP)
                .map_err(|source| StageError::Ring {
                    edge: self.edge.clone(),
                    source,
                })?;
            let slot = match peeked {
                Peeked::Empty => continue,
                Peeked::Closed => {
                    record_wait(metrics, started, true);
                    return Ok(None);
                }
                Peeked::Slot(slot) => slot,
            };
            let seq = slot::read_seq(&slot).map_err(|source| StageError::Slot {
                edge: self.edge.clone(),
                source,
            })?;
            if seq < expected {
                // A restarted upstream replica sent this item again.
                slot.release();
                self.duplicates += 1;
                tracing::debug!(edge = %self.edge, seq, expected, "dropped duplicate item");
                continue;
            }
            if seq > expected {
                return Err(StageError::Sequence {
                    edge: self.edge.clone(),
                    expected,
                    found: seq,
                });
            }
            // The expected item is ready. It is peeked again below because the borrow checker
            // rejects returning a borrow from inside this loop. An unreleased slot stays at the
            // front of its ring, so the second peek returns the same slot.
            break;
        }
        record_wait(metrics, started, true);
        match self.rings[ring].try_peek() {
            Ok(Peeked::Slot(slot)) => Ok(Some(Item {
                slot,
                seq: expected,
                next_seq: &mut self.next_seq,
                cursor: self.control.cursor(self.replica, self.index),
                stride: self.stride,
                metrics,
            })),
            Ok(_) => Err(StageError::Failed(format!(
                "edge {}: item {expected} vanished from its ring",
                self.edge
            ))),
            Err(source) => Err(StageError::Ring {
                edge: self.edge.clone(),
                source,
            }),
        }
    }
}

/// One output edge of a stage replica, fanned out to the rings of every downstream replica.
pub struct Output {
    edge: String,
    rings: Vec<Producer>,
}

impl Output {
    pub(super) fn new(edge: String, rings: Vec<Producer>) -> Output {
        Output { edge, rings }
    }

    /// Edge name, `from-to`.
    pub fn edge(&self) -> &str {
        &self.edge
    }

    /// Bytes of each slot.
    pub fn slot_size(&self) -> usize {
        self.rings.first().map_or(0, Producer::slot_size)
    }

    /// Items committed on this edge by this replica, its predecessors included. The counts
    /// live in the rings, so a restarted source replica that emits its items in order resumes
    /// after the last one it committed.
    pub fn pushed(&self) -> u64 {
        self.rings.iter().map(Producer::pushed).sum()
    }

    /// Waits for a free slot in the ring towards the replica that handles `seq`. Write the item
    /// into it (with its header carrying `seq`) and commit it.
    pub fn reserve<'a>(
        &'a mut self,
        seq: u64,
        metrics: Option<&'a StageMetrics>,
    ) -> Result<SlotMut<'a>, StageError> {
        let ring = (seq % self.rings.len() as u64) as usize;
        let started = Instant::now();
        let producer = &mut self.rings[ring];
        // `reserve_deadline` returns a borrow on success, so the wait polls with `try_reserve`
        // semantics through a deadline loop and reserves once a slot is known to be free.
        loop {
            if let Some(metrics) = metrics {
                metrics.heartbeat();
            }
            let ready = producer
                .reserve_deadline(Instant::now() + WAIT_STEP)
                .map_err(|source| StageError::Ring {
                    edge: self.edge.clone(),
                    source,
                })?
                .is_some();
            if ready {
                break;
            }
        }
        record_wait(metrics, started, false);
        producer.reserve().map_err(|source| StageError::Ring {
            edge: self.edge.clone(),
            source,
        })
    }

    /// Marks the end of the stream on every ring of this edge.
    pub fn close(&mut self) {
        for ring in &mut self.rings {
            ring.close();
        }
    }
}

fn record_wait(metrics: Option<&StageMetrics>, started: Instant, input: bool) {
    if let Some(metrics) = metrics {
        if input {
            metrics.add_blocked_in(started.elapsed());
        } else {
            metrics.add_blocked_out(started.elapsed());
        }
    }
}
