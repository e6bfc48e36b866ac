//! Single-process tests of the ring API; the multi-process stress test is in `tests/`.

use super::*;
use crate::shm::new_run_id;
use std::fs::OpenOptions;
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::time::Instant;

/// A ring segment removed when the test ends, pass or fail.
struct TempRing(PathBuf);

impl TempRing {
    fn new(name: &str, slot_size: usize, slot_count: u32) -> TempRing {
        let path = segment_path(&new_run_id(), name);
        create(
            &path,
            RingConfig {
                slot_size,
                slot_count,
            },
        )
        .expect("create ring");
        TempRing(path)
    }
}

impl Drop for TempRing {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

fn push(producer: &mut Producer, bytes: &[u8]) {
    let mut slot = producer.reserve().expect("reserve");
    slot[..bytes.len()].copy_from_slice(bytes);
    slot.commit(bytes.len());
}

#[test]
fn fifo_with_wraparound() {
    let ring = TempRing::new("ring-fifo", 16, 3);
    let mut producer = Producer::open(&ring.0).expect("producer");
    let mut consumer = Consumer::open(&ring.0).expect("consumer");
    for round in 0u8..10 {
        push(&mut producer, &[round; 5]);
        push(&mut producer, &[round + 100]);
        for expected in [vec![round; 5], vec![round + 100]] {
            let slot = consumer.peek().expect("peek").expect("slot");
            assert_eq!(&*slot, &expected[..]);
            slot.release();
        }
    }
    assert_eq!(producer.pushed(), 20);
    assert_eq!(consumer.popped(), 20);
    let stats = Monitor::open(&ring.0).expect("monitor").stats();
    assert_eq!(
        (stats.head, stats.tail, stats.pushes, stats.pops),
        (20, 20, 20, 20)
    );
    assert_eq!(stats.producer_pid, Some(std::process::id()));
}

#[test]
fn full_ring_rejects_try_reserve() {
    let ring = TempRing::new("ring-full", 8, 2);
    let mut producer = Producer::open(&ring.0).expect("producer");
    push(&mut producer, b"a");
    push(&mut producer, b"b");
    assert!(producer.try_reserve().expect("try_reserve").is_none());
    let deadline = Instant::now() + Duration::from_millis(30);
    assert!(
        producer
            .reserve_deadline(deadline)
            .expect("deadline")
            .is_none()
    );
    assert!(Instant::now() >= deadline);
    let stats = Monitor::open(&ring.0).expect("monitor").stats();
    assert!(stats.producer_blocked_ns >= 20_000_000, "{stats:?}");
    assert_eq!(stats.occupancy(), 2);
}

#[test]
fn dropped_slots_are_not_published_or_lost() {
    let ring = TempRing::new("ring-drop", 8, 2);
    let mut producer = Producer::open(&ring.0).expect("producer");
    let mut consumer = Consumer::open(&ring.0).expect("consumer");
    {
        let _unpublished = producer.reserve().expect("reserve");
    }
    assert!(matches!(
        consumer.try_peek().expect("try_peek"),
        Peeked::Empty
    ));
    push(&mut producer, b"x");
    // A peek without release leaves the slot for the next peek.
    {
        let _unreleased = consumer.peek().expect("peek").expect("slot");
    }
    let slot = consumer.peek().expect("peek again").expect("slot again");
    assert_eq!(&*slot, b"x");
    assert_eq!(slot.seq(), 0);
}

#[test]
fn restarted_consumer_sees_unreleased_slot() {
    let ring = TempRing::new("ring-restart", 8, 4);
    let mut producer = Producer::open(&ring.0).expect("producer");
    push(&mut producer, b"1");
    push(&mut producer, b"2");
    {
        let mut consumer = Consumer::open(&ring.0).expect("consumer");
        consumer.peek().expect("peek").expect("slot").release();
        let in_flight = consumer.peek().expect("peek").expect("slot");
        assert_eq!(&*in_flight, b"2");
    }
    let mut consumer = Consumer::open(&ring.0).expect("second consumer");
    assert_eq!(consumer.popped(), 1);
    assert_eq!(&*consumer.peek().expect("peek").expect("slot"), b"2");
    drop(producer);
    let producer = Producer::open(&ring.0).expect("second producer");
    assert_eq!(producer.pushed(), 2);
}

#[test]
fn second_live_producer_is_rejected() {
    let ring = TempRing::new("ring-two-producers", 8, 2);
    let _producer = Producer::open(&ring.0).expect("producer");
    let second = Producer::open(&ring.0);
    assert!(
        matches!(
            second,
            Err(RingError::PeerAttached {
                role: "producer",
                ..
            })
        ),
        "{:?}",
        second.err()
    );
}

#[test]
fn close_ends_stream_after_drain() {
    let ring = TempRing::new("ring-close", 8, 4);
    let mut producer = Producer::open(&ring.0).expect("producer");
    let mut consumer = Consumer::open(&ring.0).expect("consumer");
    push(&mut producer, b"last");
    producer.close();
    assert!(matches!(producer.reserve(), Err(RingError::Closed { .. })));
    consumer.peek().expect("peek").expect("slot").release();
    assert!(consumer.peek().expect("peek after close").is_none());
    assert!(matches!(
        consumer.try_peek().expect("try_peek"),
        Peeked::Closed
    ));
}

#[test]
fn abandon_wakes_blocked_consumer() {
    let ring = TempRing::new("ring-abandon", 8, 2);
    let mut consumer = Consumer::open(&ring.0).expect("consumer");
    let path = ring.0.clone();
    let abandoner = std::thread::spawn(move || {
        let monitor = Monitor::open(&path).expect("monitor");
        // Gives the consumer time to reach its futex sleep, so usually the wake-up ends the
        // wait; the assertions hold whichever way the race goes.
        std::thread::sleep(Duration::from_millis(50));
        monitor.mark_abandoned();
    });
    let start = Instant::now();
    let result = consumer.peek();
    assert!(
        matches!(result, Err(RingError::Abandoned { .. })),
        "{:?}",
        result.err()
    );
    assert!(start.elapsed() < Duration::from_secs(5));
    abandoner.join().expect("abandoner thread");
    assert!(Monitor::open(&ring.0).expect("monitor").stats().abandoned);
}

#[test]
fn commit_longer_than_slot_panics() {
    let ring = TempRing::new("ring-overlong", 8, 2);
    let mut producer = Producer::open(&ring.0).expect("producer");
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        producer.reserve().expect("reserve").commit(9);
    }));
    assert!(result.is_err());
}

#[test]
fn open_rejects_foreign_and_corrupt_files() {
    let path = segment_path(&new_run_id(), "ring-foreign");
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&path)
        .expect("create file");
    file.write_all(&[7u8; 8192]).expect("write");
    let foreign = Producer::open(&path);
    assert!(
        matches!(foreign, Err(RingError::NotARing { .. })),
        "{:?}",
        foreign.err()
    );
    std::fs::remove_file(&path).expect("remove");

    let ring = TempRing::new("ring-corrupt", 64, 4);
    let file = OpenOptions::new().write(true).open(&ring.0).expect("open");
    // Bump the layout version field (offset 8) to an unknown one.
    file.write_all_at(&99u32.to_le_bytes(), 8)
        .expect("write version");
    let result = Consumer::open(&ring.0);
    assert!(
        matches!(result, Err(RingError::LayoutVersion { found: 99, .. })),
        "{:?}",
        result.err()
    );
    file.write_all_at(&segment::LAYOUT_VERSION.to_le_bytes(), 8)
        .expect("restore version");
    // Slot count (offset 12) that disagrees with the stored offsets.
    file.write_all_at(&5000u32.to_le_bytes(), 12)
        .expect("write count");
    let result = Monitor::open(&ring.0);
    assert!(
        matches!(result, Err(RingError::Corrupt { .. })),
        "{:?}",
        result.err()
    );

    file.write_all_at(&4u32.to_le_bytes(), 12)
        .expect("restore count");
    Monitor::open(&ring.0).expect("restored header opens");
    // A tail past the head (the tail cursor starts on the third 128-byte line).
    let tail_offset = std::mem::offset_of!(segment::Header, cursors) as u64 + 128;
    file.write_all_at(&7u64.to_le_bytes(), tail_offset)
        .expect("write tail");
    let result = Producer::open(&ring.0);
    assert!(
        matches!(result, Err(RingError::Corrupt { .. })),
        "{:?}",
        result.err()
    );

    let short = segment_path(&new_run_id(), "ring-short");
    std::fs::write(&short, b"tiny").expect("write short file");
    let result = Monitor::open(&short);
    assert!(
        matches!(result, Err(RingError::Corrupt { .. })),
        "{:?}",
        result.err()
    );
    std::fs::remove_file(&short).expect("remove short file");
}

#[test]
fn create_rejects_bad_config_without_file() {
    let path = segment_path(&new_run_id(), "ring-bad-config");
    let result = create(
        &path,
        RingConfig {
            slot_size: 0,
            slot_count: 4,
        },
    );
    assert!(matches!(
        result,
        Err(RingError::InvalidConfig {
            field: "slot_size",
            ..
        })
    ));
    assert!(!path.exists());
}

#[test]
fn threads_move_many_slots_in_order() {
    const COUNT: u64 = 20_000;
    let ring = TempRing::new("ring-threads", 64, 4);
    let path = ring.0.clone();
    let producer = std::thread::spawn(move || {
        let mut producer = Producer::open(&path).expect("producer");
        for seq in 0..COUNT {
            let mut slot = producer.reserve().expect("reserve");
            let len = (seq % 57) as usize + 8;
            slot[..8].copy_from_slice(&seq.to_le_bytes());
            slot[8..len].fill(seq as u8);
            slot.commit(len);
        }
        producer.close();
    });
    let mut consumer = Consumer::open(&ring.0).expect("consumer");
    let mut expected = 0u64;
    while let Some(slot) = consumer.peek().expect("peek") {
        let seq = u64::from_le_bytes(slot[..8].try_into().expect("8 bytes"));
        assert_eq!(seq, expected);
        assert_eq!(slot.len(), (seq % 57) as usize + 8);
        assert!(slot[8..].iter().all(|&b| b == seq as u8));
        slot.release();
        expected += 1;
    }
    producer.join().expect("producer thread");
    assert_eq!(expected, COUNT);
}

/// One step of the model-based ring test.
#[derive(Clone, Debug)]
enum Op {
    /// Reserve, write `len` bytes and commit.
    Push(usize),
    /// Reserve and drop the slot without committing.
    Abort,
    /// Peek and release.
    Pop,
    /// Peek and drop the slot without releasing.
    PeekOnly,
    /// Drop the consumer and attach a new one, as after a restart.
    ReopenConsumer,
    /// Drop the producer and attach a new one.
    ReopenProducer,
}

fn op_strategy() -> impl proptest::strategy::Strategy<Value = Op> {
    use proptest::prelude::*;
    prop_oneof![
        4 => (0usize..=24).prop_map(Op::Push),
        1 => Just(Op::Abort),
        4 => Just(Op::Pop),
        1 => Just(Op::PeekOnly),
        1 => Just(Op::ReopenConsumer),
        1 => Just(Op::ReopenProducer),
    ]
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(64))]

    /// The ring behaves like a bounded FIFO queue under any sequence of non-blocking calls,
    /// aborted reserves, unreleased peeks and reattachments.
    #[test]
    fn ring_matches_fifo_model(ops in proptest::collection::vec(op_strategy(), 1..120)) {
        const CAPACITY: usize = 3;
        let ring = TempRing::new("ring-model", 24, CAPACITY as u32);
        let mut producer = Some(Producer::open(&ring.0).expect("producer"));
        let mut consumer = Some(Consumer::open(&ring.0).expect("consumer"));
        let mut model = std::collections::VecDeque::<Vec<u8>>::new();
        let mut next_byte = 0u8;
        for op in ops {
            let p = producer.as_mut().expect("producer attached");
            let c = consumer.as_mut().expect("consumer attached");
            match op {
                Op::Push(len) => match p.try_reserve().expect("try_reserve") {
                    Some(mut slot) => {
                        proptest::prop_assert!(model.len() < CAPACITY);
                        let bytes = vec![next_byte; len];
                        next_byte = next_byte.wrapping_add(1);
                        slot[..len].copy_from_slice(&bytes);
                        slot.commit(len);
                        model.push_back(bytes);
                    }
                    None => proptest::prop_assert_eq!(model.len(), CAPACITY),
                },
                Op::Abort => {
                    if let Some(mut slot) = p.try_reserve().expect("try_reserve") {
                        slot.fill(0xee);
                    }
                }
                Op::Pop | Op::PeekOnly => match c.try_peek().expect("try_peek") {
                    Peeked::Slot(slot) => {
                        let expected = if matches!(op, Op::Pop) {
                            model.pop_front()
                        } else {
                            model.front().cloned()
                        };
                        proptest::prop_assert_eq!(Some(slot.to_vec()), expected);
                        if matches!(op, Op::Pop) {
                            slot.release();
                        }
                    }
                    Peeked::Empty => proptest::prop_assert!(model.is_empty()),
                    Peeked::Closed => proptest::prop_assert!(false, "ring closed unexpectedly"),
                },
                Op::ReopenConsumer => {
                    // The old consumer detaches before the new one attaches.
                    drop(consumer.take());
                    consumer = Some(Consumer::open(&ring.0).expect("reopen consumer"));
                }
                Op::ReopenProducer => {
                    drop(producer.take());
                    producer = Some(Producer::open(&ring.0).expect("reopen producer"));
                }
            }
            let stats = Monitor::open(&ring.0).expect("monitor").stats();
            proptest::prop_assert_eq!(stats.occupancy(), model.len() as u64);
        }
    }
}
