//! Loom model of the ring protocol: the same [`Cursors`] code, run on loom's atomics with a
//! mutex/condvar standing in for the futex.
//!
//! The modelled futex wait has no timeout, so a lost wake-up shows up as a deadlock, which loom
//! reports. Slot contents live in loom `UnsafeCell`s, so a missing Release/Acquire edge between
//! a slot write and its read shows up as a data race.

use super::{Atomic32, Atomic64, Cursors, Platform, Readiness};
use loom::cell::UnsafeCell;
use loom::sync::atomic::{AtomicU32, AtomicU64};
use loom::sync::{Arc, Condvar, Mutex};
use std::sync::atomic::Ordering;
use std::time::Duration;

struct LoomPlatform {
    lock: Mutex<()>,
    condvar: Condvar,
}

impl Atomic64 for AtomicU64 {
    fn load(&self, order: Ordering) -> u64 {
        AtomicU64::load(self, order)
    }
    fn store(&self, value: u64, order: Ordering) {
        AtomicU64::store(self, value, order)
    }
}

impl Atomic32 for AtomicU32 {
    fn load(&self, order: Ordering) -> u32 {
        AtomicU32::load(self, order)
    }
    fn store(&self, value: u32, order: Ordering) {
        AtomicU32::store(self, value, order)
    }
    fn fetch_add(&self, value: u32, order: Ordering) -> u32 {
        AtomicU32::fetch_add(self, value, order)
    }
}

impl Platform for LoomPlatform {
    type U64 = AtomicU64;
    type U32 = AtomicU32;

    fn fence(&self, order: Ordering) {
        loom::sync::atomic::fence(order);
    }

    /// Like FUTEX_WAIT: the compare and the sleep are atomic with respect to `wake`, because
    /// both hold the lock (the kernel holds its hash-bucket lock for the same purpose).
    fn wait(&self, word: &AtomicU32, expected: u32, _timeout: Option<Duration>) {
        let guard = self.lock.lock().expect("futex model lock");
        if word.load(Ordering::SeqCst) == expected {
            drop(self.condvar.wait(guard).expect("futex model wait"));
        }
    }

    fn wake(&self, _word: &AtomicU32) {
        let _guard = self.lock.lock().expect("futex model lock");
        self.condvar.notify_all();
    }
}

/// A ring of `CAPACITY` one-word slots.
struct ModelRing {
    platform: LoomPlatform,
    cursors: Cursors<LoomPlatform>,
    slots: [UnsafeCell<u64>; CAPACITY],
}

const CAPACITY: usize = 2;

impl ModelRing {
    fn new() -> ModelRing {
        ModelRing {
            platform: LoomPlatform {
                lock: Mutex::new(()),
                condvar: Condvar::new(),
            },
            cursors: Cursors::new(|| AtomicU64::new(0), || AtomicU32::new(0)),
            slots: [UnsafeCell::new(0), UnsafeCell::new(0)],
        }
    }

    /// Blocks like `Producer::reserve`; returns false when abandoned.
    fn wait_free(&self, head: u64) -> bool {
        let capacity = CAPACITY as u64;
        loop {
            match self.cursors.producer_poll(head, capacity) {
                Readiness::Ready => return true,
                Readiness::Abandoned => return false,
                _ => {}
            }
            self.cursors
                .producer_wait(&self.platform, head, capacity, None);
        }
    }

    /// Blocks like `Consumer::peek`.
    fn wait_published(&self, tail: u64) -> Readiness {
        loop {
            match self.cursors.consumer_poll(tail) {
                Readiness::Pending => {}
                other => return other,
            }
            self.cursors.consumer_wait(&self.platform, tail, None);
        }
    }
}

fn model() -> loom::model::Builder {
    let mut builder = loom::model::Builder::new();
    // Bounded preemption keeps the run to seconds; two preemptions find most ordering bugs.
    builder.preemption_bound = Some(2);
    builder
}

#[test]
fn loom_ring_delivers_in_order_and_closes() {
    const ITEMS: u64 = 3;
    model().check(|| {
        let ring = Arc::new(ModelRing::new());
        let producer = {
            let ring = Arc::clone(&ring);
            loom::thread::spawn(move || {
                for head in 0..ITEMS {
                    assert!(ring.wait_free(head));
                    let slot = &ring.slots[head as usize % CAPACITY];
                    slot.with_mut(|p| {
                        // SAFETY: the protocol gives this slot to the producer alone; loom
                        // reports a data race here if it does not.
                        unsafe { *p = 100 + head }
                    });
                    ring.cursors.publish(&ring.platform, head + 1);
                }
                ring.cursors.close(&ring.platform);
            })
        };
        let mut received = Vec::new();
        let mut tail = 0;
        loop {
            match ring.wait_published(tail) {
                Readiness::Ready => {}
                Readiness::Closed => break,
                other => panic!("consumer saw {other:?}"),
            }
            let slot = &ring.slots[tail as usize % CAPACITY];
            received.push(slot.with(|p| {
                // SAFETY: slot `tail` is published and not yet released, so the producer does
                // not write it; loom reports a data race here if it does.
                unsafe { *p }
            }));
            tail += 1;
            ring.cursors.release(&ring.platform, tail);
        }
        producer.join().expect("producer thread");
        assert_eq!(received, vec![100, 101, 102]);
    });
}

#[test]
fn loom_abandon_wakes_blocked_producer() {
    model().check(|| {
        let ring = Arc::new(ModelRing::new());
        let producer = {
            let ring = Arc::clone(&ring);
            loom::thread::spawn(move || {
                let mut head = 0;
                while ring.wait_free(head) {
                    head += 1;
                    ring.cursors.publish(&ring.platform, head);
                }
                head
            })
        };
        ring.cursors.abandon(&ring.platform);
        let published = producer.join().expect("producer thread");
        assert!(published <= CAPACITY as u64, "published {published}");
        assert_eq!(ring.wait_published(0), Readiness::Abandoned);
    });
}
