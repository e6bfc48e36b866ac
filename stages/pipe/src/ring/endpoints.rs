//! The producer and consumer ends of a ring and their in-place slot guards.

use std::ops::{Deref, DerefMut};
use std::path::Path;
use std::sync::atomic::AtomicU32;
use std::sync::atomic::Ordering::{AcqRel, Acquire, Relaxed};
use std::time::Instant;

use crossbeam_utils::Backoff;

use super::protocol::{Readiness, StdPlatform};
use super::segment::Segment;
use super::{RingError, WAIT_SLICE};
use crate::shm::pid_alive;

/// Records this process's pid in `word`, unless another live process is attached there or
/// this process already is.
///
/// NOTE: an attached process that died without detaching is recognised by its pid no longer
/// existing. If the pid was reused by an unrelated process meanwhile, attaching fails with
/// [`RingError::PeerAttached`] naming that pid.
fn attach(segment: &Segment, word: &AtomicU32, role: &'static str) -> Result<(), RingError> {
    let me = std::process::id();
    let mut current = word.load(Acquire);
    loop {
        if current != 0 && current != me && pid_alive(current) {
            return Err(RingError::PeerAttached {
                path: segment.path().to_owned(),
                role,
                pid: current,
            });
        }
        if current == me {
            return Err(RingError::PeerAttached {
                path: segment.path().to_owned(),
                role,
                pid: me,
            });
        }
        match word.compare_exchange(current, me, AcqRel, Acquire) {
            Ok(_) => return Ok(()),
            Err(seen) => current = seen,
        }
    }
}

fn detach(word: &AtomicU32) {
    let _ = word.compare_exchange(std::process::id(), 0, AcqRel, Relaxed);
}

/// How long to wait.
#[derive(Clone, Copy)]
enum Wait {
    No,
    Until(Instant),
    Forever,
}

/// Waits with a short spin, then futex sleeps of at most [`WAIT_SLICE`], until `poll` or
/// `sleep` reports something other than `Pending` or the deadline passes. Adds the time spent
/// to `blocked_ns` when it had to wait at all.
fn wait_until(
    wait: Wait,
    blocked_ns: &std::sync::atomic::AtomicU64,
    poll: impl Fn() -> Readiness,
    sleep: impl Fn(std::time::Duration) -> Readiness,
) -> Readiness {
    let first = poll();
    if first != Readiness::Pending || matches!(wait, Wait::No) {
        return first;
    }
    let start = Instant::now();
    let backoff = Backoff::new();
    let readiness = loop {
        let now = Instant::now();
        let slice = match wait {
            Wait::Until(deadline) if now >= deadline => break Readiness::Pending,
            Wait::Until(deadline) => WAIT_SLICE.min(deadline - now),
            _ => WAIT_SLICE,
        };
        let readiness = if backoff.is_completed() {
            sleep(slice)
        } else {
            backoff.snooze();
            poll()
        };
        if readiness != Readiness::Pending {
            break readiness;
        }
    };
    // Single writer per counter, so a load and store loses nothing and avoids a locked RMW.
    let waited = start.elapsed().as_nanos() as u64;
    blocked_ns.store(blocked_ns.load(Relaxed).wrapping_add(waited), Relaxed);
    readiness
}

/// The writing end of a ring; one per ring at a time.
pub struct Producer {
    segment: Segment,
    /// Next sequence number to publish; equals the ring's head.
    head: u64,
    closed: bool,
}

impl Producer {
    /// Attaches to the ring at `path` as its producer, resuming at the ring's head.
    ///
    /// Fails with [`RingError::PeerAttached`] while another live process is its producer.
    pub fn open(path: impl AsRef<Path>) -> Result<Producer, RingError> {
        let segment = Segment::open(path.as_ref())?;
        attach(&segment, &segment.header().producer_pid, "producer")?;
        let head = segment.cursors().head();
        Ok(Producer {
            segment,
            head,
            closed: false,
        })
    }

    /// Segment path.
    pub fn path(&self) -> &Path {
        self.segment.path()
    }

    /// Bytes per slot.
    pub fn slot_size(&self) -> usize {
        self.segment.slot_size()
    }

    /// Number of slots.
    pub fn slot_count(&self) -> u32 {
        self.segment.slot_count()
    }

    /// Slots published on this ring so far, by this and earlier producers.
    pub fn pushed(&self) -> u64 {
        self.head
    }

    /// Whether the ring was marked abandoned.
    pub fn is_abandoned(&self) -> bool {
        self.segment.cursors().is_abandoned()
    }

    /// Marks the ring abandoned and wakes the consumer.
    pub fn mark_abandoned(&self) {
        self.segment.cursors().abandon(&StdPlatform);
    }

    fn wait_free(&mut self, wait: Wait) -> Result<bool, RingError> {
        if self.closed {
            return Err(RingError::Closed {
                path: self.segment.path().to_owned(),
            });
        }
        let segment = &self.segment;
        let cursors = segment.cursors();
        let capacity = u64::from(segment.slot_count());
        let head = self.head;
        let readiness = wait_until(
            wait,
            &segment.header().producer_stats.0.blocked_ns,
            || cursors.producer_poll(head, capacity),
            |slice| cursors.producer_wait(&StdPlatform, head, capacity, Some(slice)),
        );
        match readiness {
            Readiness::Ready => Ok(true),
            Readiness::Pending => Ok(false),
            Readiness::Abandoned | Readiness::Closed => Err(RingError::Abandoned {
                path: segment.path().to_owned(),
            }),
        }
    }

    fn slot(&mut self) -> SlotMut<'_> {
        let index = self.head % u64::from(self.segment.slot_count());
        let data = self.segment.slot_ptr(index);
        SlotMut {
            producer: self,
            data,
        }
    }

    /// Returns the next free slot without waiting, or `None` when the ring is full.
    pub fn try_reserve(&mut self) -> Result<Option<SlotMut<'_>>, RingError> {
        Ok(if self.wait_free(Wait::No)? {
            Some(self.slot())
        } else {
            None
        })
    }

    /// Waits until a slot is free and returns it, or returns `None` once `deadline` passes.
    pub fn reserve_deadline(
        &mut self,
        deadline: Instant,
    ) -> Result<Option<SlotMut<'_>>, RingError> {
        Ok(if self.wait_free(Wait::Until(deadline))? {
            Some(self.slot())
        } else {
            None
        })
    }

    /// Waits until a slot is free and returns it.
    ///
    /// Fails with [`RingError::Abandoned`] once the ring is marked abandoned and with
    /// [`RingError::Closed`] after [`close`](Self::close).
    pub fn reserve(&mut self) -> Result<SlotMut<'_>, RingError> {
        self.wait_free(Wait::Forever)?;
        Ok(self.slot())
    }

    /// Marks the end of the stream and wakes the consumer, which drains the published slots
    /// and then sees the end. Idempotent.
    pub fn close(&mut self) {
        self.closed = true;
        self.segment.cursors().close(&StdPlatform);
    }
}

impl std::fmt::Debug for Producer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Producer")
            .field("path", &self.segment.path())
            .field("head", &self.head)
            .field("closed", &self.closed)
            .finish()
    }
}

impl Drop for Producer {
    fn drop(&mut self) {
        detach(&self.segment.header().producer_pid);
    }
}

/// A reserved, unpublished slot: `slot_size` writable bytes in shared memory.
///
/// [`commit`](Self::commit) publishes it; dropping it publishes nothing and the next reserve
/// returns the same slot. Its bytes keep whatever an earlier use left there.
pub struct SlotMut<'a> {
    producer: &'a mut Producer,
    data: *mut u8,
}

impl SlotMut<'_> {
    /// Ring sequence number this slot will carry: the count of slots published before it.
    pub fn seq(&self) -> u64 {
        self.producer.head
    }

    /// Publishes the first `len` bytes of the slot and wakes a sleeping consumer.
    ///
    /// # Panics
    /// If `len` exceeds the slot size, which is a bug in the caller.
    pub fn commit(self, len: usize) {
        let producer = self.producer;
        let segment = &producer.segment;
        assert!(
            len <= segment.slot_size(),
            "commit of {len} bytes into a {}-byte slot of {}",
            segment.slot_size(),
            segment.path().display()
        );
        let index = producer.head % u64::from(segment.slot_count());
        // Relaxed: the Release store of head in `publish` orders this before the consumer's
        // Acquire load of head.
        segment.len_word(index).store(len as u64, Relaxed);
        producer.head += 1;
        segment.cursors().publish(&StdPlatform, producer.head);
        let pushes = &segment.header().producer_stats.0.count;
        pushes.store(pushes.load(Relaxed).wrapping_add(1), Relaxed);
    }
}

impl Deref for SlotMut<'_> {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        // SAFETY: `data` points to `slot_size` bytes inside the mapping, which lives as long
        // as the borrowed producer. The protocol gives this slot to the producer alone until
        // it is published: the consumer released it (tail passed it) and cannot peek it before
        // head passes it.
        unsafe { std::slice::from_raw_parts(self.data, self.producer.segment.slot_size()) }
    }
}

impl DerefMut for SlotMut<'_> {
    fn deref_mut(&mut self) -> &mut [u8] {
        // SAFETY: as in `deref`; `&mut self` makes this the only reference this process holds.
        unsafe { std::slice::from_raw_parts_mut(self.data, self.producer.segment.slot_size()) }
    }
}

/// Result of a non-blocking or deadline peek.
pub enum Peeked<'a> {
    /// The oldest published slot.
    Slot(SlotRef<'a>),
    /// No slot is published yet (or the deadline passed).
    Empty,
    /// The producer closed the ring and every slot was released.
    Closed,
}

/// The reading end of a ring; one per ring at a time.
pub struct Consumer {
    segment: Segment,
    /// Next sequence number to read; equals the ring's tail.
    tail: u64,
}

impl Consumer {
    /// Attaches to the ring at `path` as its consumer, resuming at the ring's tail, so a slot
    /// peeked but not released by an earlier consumer is delivered again.
    ///
    /// Fails with [`RingError::PeerAttached`] while another live process is its consumer.
    pub fn open(path: impl AsRef<Path>) -> Result<Consumer, RingError> {
        let segment = Segment::open(path.as_ref())?;
        attach(&segment, &segment.header().consumer_pid, "consumer")?;
        let tail = segment.cursors().tail();
        Ok(Consumer { segment, tail })
    }

    /// Segment path.
    pub fn path(&self) -> &Path {
        self.segment.path()
    }

    /// Bytes per slot.
    pub fn slot_size(&self) -> usize {
        self.segment.slot_size()
    }

    /// Number of slots.
    pub fn slot_count(&self) -> u32 {
        self.segment.slot_count()
    }

    /// Slots released on this ring so far, by this and earlier consumers.
    pub fn popped(&self) -> u64 {
        self.tail
    }

    /// Whether the ring was marked abandoned.
    pub fn is_abandoned(&self) -> bool {
        self.segment.cursors().is_abandoned()
    }

    /// Marks the ring abandoned and wakes the producer.
    pub fn mark_abandoned(&self) {
        self.segment.cursors().abandon(&StdPlatform);
    }

    fn peek_with(&mut self, wait: Wait) -> Result<Peeked<'_>, RingError> {
        let segment = &self.segment;
        let cursors = segment.cursors();
        let tail = self.tail;
        let readiness = wait_until(
            wait,
            &segment.header().consumer_stats.0.blocked_ns,
            || cursors.consumer_poll(tail),
            |slice| cursors.consumer_wait(&StdPlatform, tail, Some(slice)),
        );
        match readiness {
            Readiness::Ready => {}
            Readiness::Pending => return Ok(Peeked::Empty),
            Readiness::Closed => return Ok(Peeked::Closed),
            Readiness::Abandoned => {
                return Err(RingError::Abandoned {
                    path: segment.path().to_owned(),
                });
            }
        }
        let index = tail % u64::from(segment.slot_count());
        let len = segment.len_word(index).load(Relaxed);
        if len > segment.slot_size() as u64 {
            return Err(RingError::Corrupt {
                path: segment.path().to_owned(),
                reason: format!(
                    "slot {tail} claims {len} bytes, more than the slot size {}",
                    segment.slot_size()
                ),
            });
        }
        let data = segment.slot_ptr(index);
        Ok(Peeked::Slot(SlotRef {
            consumer: self,
            data,
            len: len as usize,
        }))
    }

    /// Returns the oldest published slot without waiting.
    pub fn try_peek(&mut self) -> Result<Peeked<'_>, RingError> {
        self.peek_with(Wait::No)
    }

    /// Waits until a slot is published, the stream ends, or `deadline` passes
    /// ([`Peeked::Empty`]).
    pub fn peek_deadline(&mut self, deadline: Instant) -> Result<Peeked<'_>, RingError> {
        self.peek_with(Wait::Until(deadline))
    }

    /// Waits for the oldest published slot; `Ok(None)` once the producer closed the ring and
    /// every slot was released.
    ///
    /// Fails with [`RingError::Abandoned`] once the ring is marked abandoned, even if slots
    /// remain.
    pub fn peek(&mut self) -> Result<Option<SlotRef<'_>>, RingError> {
        match self.peek_with(Wait::Forever)? {
            Peeked::Slot(slot) => Ok(Some(slot)),
            Peeked::Closed => Ok(None),
            Peeked::Empty => unreachable!("an unbounded wait returns only when something happened"),
        }
    }
}

impl std::fmt::Debug for Consumer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Consumer")
            .field("path", &self.segment.path())
            .field("tail", &self.tail)
            .finish()
    }
}

impl Drop for Consumer {
    fn drop(&mut self) {
        detach(&self.segment.header().consumer_pid);
    }
}

/// A published slot being read in place: its committed bytes.
///
/// [`release`](Self::release) frees it for the producer. Dropping it without release keeps it,
/// so the next peek (by this or a restarted consumer) returns it again.
pub struct SlotRef<'a> {
    consumer: &'a mut Consumer,
    data: *const u8,
    len: usize,
}

impl SlotRef<'_> {
    /// Ring sequence number of this slot: the count of slots published before it.
    pub fn seq(&self) -> u64 {
        self.consumer.tail
    }

    /// Frees the slot and wakes a producer waiting for space.
    pub fn release(self) {
        let consumer = self.consumer;
        consumer.tail += 1;
        let segment = &consumer.segment;
        segment.cursors().release(&StdPlatform, consumer.tail);
        let pops = &segment.header().consumer_stats.0.count;
        pops.store(pops.load(Relaxed).wrapping_add(1), Relaxed);
    }
}

impl Deref for SlotRef<'_> {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        // SAFETY: `data` points to at least `len` bytes (len <= slot_size was checked) inside
        // the mapping, which lives as long as the borrowed consumer. The producer does not
        // write this slot until tail passes it, which only `release` does.
        unsafe { std::slice::from_raw_parts(self.data, self.len) }
    }
}
