//! The publish/release protocol of the SPSC ring, written once over abstract atomics.
//!
//! [`Cursors`] is generic over a [`Platform`] that supplies the atomic types, fences and a
//! futex-like wait/wake. The shared-memory ring instantiates it with `std` atomics and the Linux
//! futex. The loom model test instantiates it with loom atomics and a mutex/condvar futex, so
//! the code that the model checks is the code that runs.
//!
//! # Sequence numbers
//! `head` counts slots published by the producer, `tail` slots released by the consumer, both
//! from 0 and never wrapping (a u64 at 10^9 slots/s lasts 584 years). Invariant:
//! `tail <= head <= tail + capacity`. Slot `seq` lives at index `seq % capacity`.
//!
//! # Orderings
//! - Producer: writes slot `h`, then `head.store(h + 1, Release)`. Consumer:
//!   `head.load(Acquire)`, then reads the slot. The Release/Acquire pair makes the slot bytes
//!   (and its length word) visible before the consumer touches them.
//! - Consumer: reads slot `t`, then `tail.store(t + 1, Release)`. Producer:
//!   `tail.load(Acquire)` before reusing index `t % capacity`, so the consumer's reads happen
//!   before the producer's next writes to that slot.
//! - Sleeping uses a flag plus an event counter per direction. The waiter sets its `*_waiting`
//!   flag, issues `fence(SeqCst)`, and re-checks the cursor. The waker stores the cursor, issues
//!   `fence(SeqCst)`, then reads the flag. The two SeqCst fences guarantee that at least one
//!   side sees the other's store, so the waiter either sees the progress or the waker sees the
//!   flag, bumps the event word and wakes it. The waiter read the event word before setting
//!   its flag, so a bump that races with going to sleep makes the futex wait return at once.
//! - `closed` and `abandoned` are stored with Release after everything they cover and read with
//!   Acquire. Both bump both event words and wake both sides.

use std::sync::atomic::Ordering::{Acquire, Relaxed, Release, SeqCst};
use std::sync::atomic::{self, Ordering};
use std::time::Duration;

/// A 64-bit atomic word, as used for the cursors.
pub trait Atomic64: Send + Sync {
    /// Loads the value.
    fn load(&self, order: Ordering) -> u64;
    /// Stores a value.
    fn store(&self, value: u64, order: Ordering);
}

/// A 32-bit atomic word, as used for flags and futex event counters.
pub trait Atomic32: Send + Sync {
    /// Loads the value.
    fn load(&self, order: Ordering) -> u32;
    /// Stores a value.
    fn store(&self, value: u32, order: Ordering);
    /// Adds to the value with wrap-around and returns the previous value.
    fn fetch_add(&self, value: u32, order: Ordering) -> u32;
}

/// Atomics, fences and a futex for one execution environment.
pub trait Platform {
    /// 64-bit atomic type.
    type U64: Atomic64;
    /// 32-bit atomic type usable as a futex word.
    type U32: Atomic32;

    /// Issues a memory fence.
    fn fence(&self, order: Ordering);

    /// Sleeps while `word` equals `expected`, for at most `timeout` (`None`: no limit).
    /// May return early for any reason; callers re-check their condition.
    fn wait(&self, word: &Self::U32, expected: u32, timeout: Option<Duration>);

    /// Wakes every thread or process sleeping on `word`.
    fn wake(&self, word: &Self::U32);
}

/// `T` aligned to 128 bytes, so the producer's and consumer's hot words never share a cache
/// line. 128 rather than 64 because x86-64 and aarch64 prefetch cache lines in adjacent pairs
/// (crossbeam-utils `CachePadded` uses 128 on both for the same reason).
#[repr(C, align(128))]
#[derive(Debug, Default)]
pub struct Padded<T>(pub T);

/// Cursor and wake-up state shared by one producer and one consumer.
///
/// All-zero bytes are the initial state (empty, open), so a freshly created zero-filled
/// segment contains a valid `Cursors<StdPlatform>` without initialisation.
#[repr(C)]
pub struct Cursors<P: Platform> {
    /// Slots published so far; written only by the producer.
    head: Padded<P::U64>,
    /// Slots released so far; written only by the consumer.
    tail: Padded<P::U64>,
    /// Wake-up words and flags, written rarely.
    signals: Padded<Signals<P>>,
}

#[repr(C)]
struct Signals<P: Platform> {
    /// Futex word the consumer sleeps on; bumped after a publish that found it waiting.
    head_event: P::U32,
    /// Futex word the producer sleeps on; bumped after a release that found it waiting.
    tail_event: P::U32,
    /// 1 while the consumer is about to sleep or sleeping.
    consumer_waiting: P::U32,
    /// 1 while the producer is about to sleep or sleeping.
    producer_waiting: P::U32,
    /// 1 once the producer closed the stream.
    closed: P::U32,
    /// 1 once the ring was marked abandoned.
    abandoned: P::U32,
}

/// Readiness of the awaited slot, as a polling or waiting side observed it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Readiness {
    /// The awaited slot exists (a free slot for the producer, a published one for the consumer).
    Ready,
    /// Nothing yet.
    Pending,
    /// The producer closed the ring and every published slot was released (consumer only).
    Closed,
    /// The ring was marked abandoned.
    Abandoned,
}

impl<P: Platform> Cursors<P> {
    /// Builds cursors in the initial state from fresh atomics.
    pub fn new(zero64: impl Fn() -> P::U64, zero32: impl Fn() -> P::U32) -> Self {
        Cursors {
            head: Padded(zero64()),
            tail: Padded(zero64()),
            signals: Padded(Signals {
                head_event: zero32(),
                tail_event: zero32(),
                consumer_waiting: zero32(),
                producer_waiting: zero32(),
                closed: zero32(),
                abandoned: zero32(),
            }),
        }
    }

    /// Current head, read with Acquire.
    pub fn head(&self) -> u64 {
        self.head.0.load(Acquire)
    }

    /// Current tail, read with Acquire.
    pub fn tail(&self) -> u64 {
        self.tail.0.load(Acquire)
    }

    /// Returns whether the producer closed the ring.
    pub fn is_closed(&self) -> bool {
        self.signals.0.closed.load(Acquire) != 0
    }

    /// Returns whether the ring was marked abandoned.
    pub fn is_abandoned(&self) -> bool {
        self.signals.0.abandoned.load(Acquire) != 0
    }

    /// Producer side: whether slot `head` may be written, given `capacity` slots.
    pub fn producer_poll(&self, head: u64, capacity: u64) -> Readiness {
        if self.is_abandoned() {
            return Readiness::Abandoned;
        }
        let tail = self.tail.0.load(Acquire);
        debug_assert!(
            tail <= head && head - tail <= capacity,
            "tail {tail} head {head}"
        );
        if head - tail < capacity {
            Readiness::Ready
        } else {
            Readiness::Pending
        }
    }

    /// Consumer side: whether slot `tail` is published, or the stream ended.
    pub fn consumer_poll(&self, tail: u64) -> Readiness {
        if self.is_abandoned() {
            return Readiness::Abandoned;
        }
        if self.head.0.load(Acquire) > tail {
            return Readiness::Ready;
        }
        if self.is_closed() {
            // `closed` was stored after the last publish, so this head is final.
            return if self.head.0.load(Acquire) > tail {
                Readiness::Ready
            } else {
                Readiness::Closed
            };
        }
        Readiness::Pending
    }

    /// Producer side: publishes every slot below `new_head` and wakes a sleeping consumer.
    pub fn publish(&self, platform: &P, new_head: u64) {
        self.head.0.store(new_head, Release);
        platform.fence(SeqCst);
        let signals = &self.signals.0;
        if signals.consumer_waiting.load(Relaxed) != 0 {
            signals.head_event.fetch_add(1, Release);
            platform.wake(&signals.head_event);
        }
    }

    /// Consumer side: frees every slot below `new_tail` and wakes a sleeping producer.
    pub fn release(&self, platform: &P, new_tail: u64) {
        self.tail.0.store(new_tail, Release);
        platform.fence(SeqCst);
        let signals = &self.signals.0;
        if signals.producer_waiting.load(Relaxed) != 0 {
            signals.tail_event.fetch_add(1, Release);
            platform.wake(&signals.tail_event);
        }
    }

    /// Producer side: sleeps until slot `head` may be written, the ring is abandoned, a wake-up
    /// arrives or `timeout` passes, then returns the readiness it last saw.
    pub fn producer_wait(
        &self,
        platform: &P,
        head: u64,
        capacity: u64,
        timeout: Option<Duration>,
    ) -> Readiness {
        let signals = &self.signals.0;
        let seen = signals.tail_event.load(Acquire);
        signals.producer_waiting.store(1, Relaxed);
        platform.fence(SeqCst);
        let mut readiness = self.producer_poll(head, capacity);
        if readiness == Readiness::Pending {
            platform.wait(&signals.tail_event, seen, timeout);
            readiness = self.producer_poll(head, capacity);
        }
        signals.producer_waiting.store(0, Relaxed);
        readiness
    }

    /// Consumer side: sleeps until slot `tail` is published, the stream ends, the ring is
    /// abandoned, a wake-up arrives or `timeout` passes, then returns what it last saw.
    pub fn consumer_wait(&self, platform: &P, tail: u64, timeout: Option<Duration>) -> Readiness {
        let signals = &self.signals.0;
        let seen = signals.head_event.load(Acquire);
        signals.consumer_waiting.store(1, Relaxed);
        platform.fence(SeqCst);
        let mut readiness = self.consumer_poll(tail);
        if readiness == Readiness::Pending {
            platform.wait(&signals.head_event, seen, timeout);
            readiness = self.consumer_poll(tail);
        }
        signals.consumer_waiting.store(0, Relaxed);
        readiness
    }

    /// Producer side: marks the end of the stream and wakes the consumer.
    pub fn close(&self, platform: &P) {
        self.signals.0.closed.store(1, Release);
        self.wake_both(platform);
    }

    /// Marks the ring abandoned and wakes both sides; either side may call it, and so may a
    /// supervisor that maps the segment.
    pub fn abandon(&self, platform: &P) {
        self.signals.0.abandoned.store(1, Release);
        self.wake_both(platform);
    }

    fn wake_both(&self, platform: &P) {
        let signals = &self.signals.0;
        platform.fence(SeqCst);
        signals.head_event.fetch_add(1, Release);
        signals.tail_event.fetch_add(1, Release);
        platform.wake(&signals.head_event);
        platform.wake(&signals.tail_event);
    }
}

/// `std` atomics with the Linux futex; the platform of the shared-memory ring.
#[derive(Clone, Copy, Debug, Default)]
pub struct StdPlatform;

impl Atomic64 for atomic::AtomicU64 {
    fn load(&self, order: Ordering) -> u64 {
        atomic::AtomicU64::load(self, order)
    }
    fn store(&self, value: u64, order: Ordering) {
        atomic::AtomicU64::store(self, value, order)
    }
}

impl Atomic32 for atomic::AtomicU32 {
    fn load(&self, order: Ordering) -> u32 {
        atomic::AtomicU32::load(self, order)
    }
    fn store(&self, value: u32, order: Ordering) {
        atomic::AtomicU32::store(self, value, order)
    }
    fn fetch_add(&self, value: u32, order: Ordering) -> u32 {
        atomic::AtomicU32::fetch_add(self, value, order)
    }
}

impl Platform for StdPlatform {
    type U64 = atomic::AtomicU64;
    type U32 = atomic::AtomicU32;

    fn fence(&self, order: Ordering) {
        atomic::fence(order);
    }

    fn wait(&self, word: &atomic::AtomicU32, expected: u32, timeout: Option<Duration>) {
        super::futex::wait(word, expected, timeout);
    }

    fn wake(&self, word: &atomic::AtomicU32) {
        super::futex::wake_all(word);
    }
}

#[cfg(test)]
#[path = "loom_model.rs"]
mod loom_model;
