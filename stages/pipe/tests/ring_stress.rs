//! Multi-process stress test of the rings: 1,000,000 checksummed test slots of varying sizes
//! go through one ring, and another 1,000,000 through a replicated pair (fan-out by
//! `seq % 2` to two relay processes, merge by `seq` on the far side). The receiver counts
//! lost, duplicated and out-of-order slots and checks each payload byte for byte.
//!
//! Each test re-executes this test binary for its child processes; the `CCSSL_STRESS_ROLE`
//! environment variable selects the role a child plays instead of running the test.

use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use ccssl_pipe::ring::{self, Consumer, Monitor, Peeked, Producer, RingConfig};
use ccssl_pipe::shm::new_run_id;
use ccssl_pipe::slot;

const ROLE_ENV: &str = "CCSSL_STRESS_ROLE";
const ARGS_ENV: &str = "CCSSL_STRESS_ARGS";

/// Slots per topology.
const COUNT: u64 = 1_000_000;
/// Largest payload in bytes; every 997th slot is between 8 KiB and this.
const MAX_PAYLOAD: usize = 16 * 1024;
/// Bytes of the shared pseudo-random pool that payloads are cut from.
const POOL_LEN: usize = 1 << 16;
/// Maximum time a test may take before it reports a hang.
const TIMEOUT: Duration = Duration::from_secs(240);

fn splitmix64(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// Pseudo-random bytes that every process derives identically.
fn pool() -> Vec<u8> {
    (0..POOL_LEN / 8)
        .flat_map(|i| splitmix64(i as u64 ^ 0x5eed).to_le_bytes())
        .collect()
}

/// Payload of slot `seq`: a deterministic slice of the pool, 0 ..= 256 bytes mostly, and
/// 8 KiB ..= 16 KiB for every 997th slot.
fn payload(pool: &[u8], seq: u64) -> &[u8] {
    let r = splitmix64(seq);
    let len = if seq.is_multiple_of(997) {
        MAX_PAYLOAD / 2 + (r % (MAX_PAYLOAD as u64 / 2 + 1)) as usize
    } else {
        (r % 257) as usize
    };
    let start = ((r >> 32) as usize) % (POOL_LEN - MAX_PAYLOAD);
    &pool[start..start + len]
}

fn config() -> RingConfig {
    RingConfig {
        slot_size: slot::test_slot_size(MAX_PAYLOAD),
        slot_count: 64,
    }
}

/// Removes the rings and kills the children when a test ends, pass or fail.
struct Run {
    rings: Vec<PathBuf>,
    children: Vec<(&'static str, Child)>,
}

impl Run {
    fn new(names: &[&str]) -> Run {
        let run_id = new_run_id();
        let rings: Vec<PathBuf> = names
            .iter()
            .map(|name| ring::segment_path(&run_id, name))
            .collect();
        for path in &rings {
            ring::create(path, config()).expect("create ring");
        }
        Run {
            rings,
            children: Vec::new(),
        }
    }

    fn spawn(&mut self, test: &str, role: &'static str, args: &[&Path]) {
        let joined: Vec<String> = args.iter().map(|p| p.display().to_string()).collect();
        let child = Command::new(std::env::current_exe().expect("test binary path"))
            .args([test, "--exact", "--nocapture", "--test-threads=1", "-q"])
            .env(ROLE_ENV, role)
            // The child's test-harness chatter would interleave with the parent's output;
            // its panics go to stderr, which stays attached.
            .stdout(std::process::Stdio::null())
            .env(ARGS_ENV, joined.join("\n"))
            .spawn()
            .expect("spawn child process");
        self.children.push((role, child));
    }

    fn wait_children(&mut self) {
        for (role, child) in &mut self.children {
            let status = child.wait().expect("wait for child");
            assert!(status.success(), "{role} process failed: {status}");
        }
        self.children.clear();
    }
}

impl Drop for Run {
    fn drop(&mut self) {
        for path in &self.rings {
            if let Ok(monitor) = Monitor::open(path) {
                monitor.mark_abandoned();
            }
        }
        for (_, child) in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
        for path in &self.rings {
            let _ = std::fs::remove_file(path);
        }
    }
}

/// Runs the child role named in the environment, if any; returns whether it did.
fn run_child_role() -> bool {
    let Ok(role) = std::env::var(ROLE_ENV) else {
        return false;
    };
    // SAFETY: prctl(PR_SET_PDEATHSIG) only sets a flag of this process.
    unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) };
    let args = std::env::var(ARGS_ENV).expect("child arguments");
    let paths: Vec<&str> = args.split('\n').collect();
    match role.as_str() {
        "producer" => produce(&paths),
        "relay" => relay(paths[0], paths[1]),
        "drain" => drain(paths[0]),
        other => panic!("unknown stress role {other}"),
    }
    true
}

/// Writes slots 0..COUNT, slot `seq` to ring `seq % rings`, then closes every ring.
fn produce(paths: &[&str]) {
    let pool = pool();
    let mut producers: Vec<Producer> = paths
        .iter()
        .map(|p| Producer::open(p).expect("open producer"))
        .collect();
    let fan_out = producers.len() as u64;
    for seq in 0..COUNT {
        let producer = &mut producers[(seq % fan_out) as usize];
        let mut out = producer.reserve().expect("reserve");
        let len = slot::encode_test(seq, payload(&pool, seq), &mut out).expect("encode");
        out.commit(len);
    }
    for producer in &mut producers {
        producer.close();
    }
}

/// Copies every slot from `input` to `output` after checking it, releasing the input slot
/// only after the output slot is committed.
fn relay(input: &str, output: &str) {
    let mut consumer = Consumer::open(input).expect("open relay input");
    let mut producer = Producer::open(output).expect("open relay output");
    while let Some(slot_in) = consumer.peek().expect("relay peek") {
        slot::decode_test(&slot_in).expect("relay decode");
        // A relay passes the checked item on unchanged, so the encoded bytes are copied as is.
        let mut out = producer.reserve().expect("relay reserve");
        out[..slot_in.len()].copy_from_slice(&slot_in);
        out.commit(slot_in.len());
        slot_in.release();
    }
    producer.close();
}

/// Consumes and checks slots in order until the ring closes (or the process is killed).
fn drain(path: &str) {
    let pool = pool();
    let mut consumer = Consumer::open(path).expect("open drain consumer");
    let mut expected = consumer.popped();
    while let Some(slot_in) = consumer.peek().expect("drain peek") {
        let test = slot::decode_test(&slot_in).expect("drain decode");
        assert_eq!(test.seq, expected);
        assert_eq!(test.payload, payload(&pool, test.seq));
        slot_in.release();
        expected += 1;
    }
}

#[derive(Debug, Default, PartialEq, Eq)]
struct Tally {
    received: u64,
    lost: u64,
    duplicated: u64,
    out_of_order: u64,
    bad_payload: u64,
}

/// Merges the rings by `seq` (the smallest head first), checking every payload.
fn merge(paths: &[PathBuf], deadline: Instant) -> Tally {
    let pool = pool();
    let mut consumers: Vec<Consumer> = paths
        .iter()
        .map(|p| Consumer::open(p).expect("open consumer"))
        .collect();
    // Sequence number at the head of each ring and whether its payload checked out; None
    // while the head is not yet read or once the ring ended.
    let mut heads: Vec<Option<(u64, bool)>> = vec![None; consumers.len()];
    let mut last_seen: Vec<Option<u64>> = vec![None; consumers.len()];
    let mut open: Vec<bool> = vec![true; consumers.len()];
    let mut tally = Tally::default();
    let mut expected = 0u64;
    loop {
        for (i, consumer) in consumers.iter_mut().enumerate() {
            if heads[i].is_some() || !open[i] {
                continue;
            }
            match consumer.peek_deadline(deadline).expect("merge peek") {
                Peeked::Slot(s) => {
                    let test = slot::decode_test(&s).expect("decode test slot");
                    heads[i] = Some((test.seq, test.payload == payload(&pool, test.seq)));
                }
                Peeked::Closed => open[i] = false,
                Peeked::Empty => panic!("timed out at seq {expected}: {tally:?}"),
            }
        }
        let Some((ring, (seq, payload_ok))) = heads
            .iter()
            .enumerate()
            .filter_map(|(i, h)| h.map(|head| (i, head)))
            .min_by_key(|&(_, (seq, _))| seq)
        else {
            break;
        };
        if last_seen[ring].is_some_and(|last| seq <= last) {
            tally.out_of_order += 1;
        }
        last_seen[ring] = Some(seq);
        if !payload_ok {
            tally.bad_payload += 1;
        }
        // The head slot was peeked but not released, so the next peek returns it again.
        let Peeked::Slot(s) = consumers[ring].try_peek().expect("re-peek") else {
            panic!("slot at head of ring {ring} disappeared");
        };
        s.release();
        heads[ring] = None;
        tally.received += 1;
        if seq < expected {
            tally.duplicated += 1;
        } else {
            tally.lost += seq - expected;
            expected = seq + 1;
        }
    }
    tally.lost += COUNT.saturating_sub(expected);
    tally
}

fn assert_clean(tally: &Tally, paths: &[PathBuf]) {
    assert_eq!(
        tally,
        &Tally {
            received: COUNT,
            ..Tally::default()
        }
    );
    for path in paths {
        let stats = Monitor::open(path).expect("monitor").stats();
        assert_eq!(stats.pushes, stats.pops, "{}: {stats:?}", path.display());
        assert_eq!(stats.head, stats.tail, "{}: {stats:?}", path.display());
        assert!(stats.closed, "{}: {stats:?}", path.display());
    }
}

#[test]
fn stress_one_ring_across_processes() {
    if run_child_role() {
        return;
    }
    let start = Instant::now();
    let mut run = Run::new(&["stress-single"]);
    let ring = run.rings[0].clone();
    run.spawn("stress_one_ring_across_processes", "producer", &[&ring]);
    let tally = merge(std::slice::from_ref(&ring), start + TIMEOUT);
    run.wait_children();
    assert_clean(&tally, std::slice::from_ref(&ring));
    eprintln!(
        "one ring: {} slots in {:.2} s",
        tally.received,
        start.elapsed().as_secs_f64()
    );
}

#[test]
fn stress_replicated_pair_across_processes() {
    if run_child_role() {
        return;
    }
    let start = Instant::now();
    let mut run = Run::new(&["fan-0", "fan-1", "merge-0", "merge-1"]);
    let rings = run.rings.clone();
    let test = "stress_replicated_pair_across_processes";
    run.spawn(test, "producer", &[&rings[0], &rings[1]]);
    run.spawn(test, "relay", &[&rings[0], &rings[2]]);
    run.spawn(test, "relay", &[&rings[1], &rings[3]]);
    let tally = merge(&rings[2..], start + TIMEOUT);
    run.wait_children();
    assert_clean(&tally, &rings);
    for path in &rings {
        let stats = Monitor::open(path).expect("monitor").stats();
        assert_eq!(stats.pushes, COUNT / 2, "{}", path.display());
    }
    eprintln!(
        "replicated pair: {} slots in {:.2} s",
        tally.received,
        start.elapsed().as_secs_f64()
    );
}

#[test]
fn killed_consumer_successor_resumes_at_tail() {
    const SLOTS: u64 = 200_000;
    const KILL_AFTER: u64 = 50_000;
    if run_child_role() {
        return;
    }
    let mut run = Run::new(&["restart"]);
    let path = run.rings[0].clone();
    run.spawn(
        "killed_consumer_successor_resumes_at_tail",
        "drain",
        &[&path],
    );
    let producer = {
        let path = path.clone();
        std::thread::spawn(move || {
            let pool = pool();
            let mut producer = Producer::open(&path).expect("open producer");
            for seq in 0..SLOTS {
                let mut out = producer.reserve().expect("reserve");
                let len = slot::encode_test(seq, payload(&pool, seq), &mut out).expect("encode");
                out.commit(len);
            }
            producer.close();
        })
    };

    // SIGKILL the consumer mid-stream, at whatever point of peek or release it has reached.
    let monitor = Monitor::open(&path).expect("monitor");
    let deadline = Instant::now() + TIMEOUT;
    while monitor.stats().pops < KILL_AFTER {
        assert!(
            Instant::now() < deadline,
            "consumer stalled: {:?}",
            monitor.stats()
        );
        std::thread::yield_now();
    }
    let (_, mut child) = run.children.pop().expect("drain child");
    child.kill().expect("kill consumer");
    let status = child.wait().expect("reap consumer");
    assert!(
        !status.success(),
        "consumer exited before the kill: {status}"
    );

    // The successor starts at the ring's tail: every released slot was consumed and checked,
    // and the first unreleased one (possibly peeked by the killed consumer) comes next.
    let pool = pool();
    let mut consumer = Consumer::open(&path).expect("successor consumer");
    let tail = consumer.popped();
    assert!(tail >= KILL_AFTER, "tail {tail}");
    let mut expected = tail;
    loop {
        let slot_in = match consumer.peek_deadline(deadline).expect("successor peek") {
            Peeked::Slot(slot_in) => slot_in,
            Peeked::Closed => break,
            Peeked::Empty => panic!("successor timed out at seq {expected}"),
        };
        let test = slot::decode_test(&slot_in).expect("successor decode");
        assert_eq!(test.seq, expected);
        assert_eq!(test.payload, payload(&pool, expected));
        slot_in.release();
        expected += 1;
    }
    producer.join().expect("producer thread");
    assert_eq!(expected, SLOTS);
    let stats = monitor.stats();
    assert_eq!((stats.head, stats.tail), (SLOTS, SLOTS));
    assert_eq!(stats.consumer_pid, Some(std::process::id()));
}
