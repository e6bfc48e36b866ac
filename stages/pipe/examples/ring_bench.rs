//! Ring benchmark: throughput of 1 MiB slots between two processes against single-thread
//! memcpy on the same machine, and the handoff latency of a 64-byte slot.
//!
//! Run through `tools/bench/ring.sh`. The parent process is the producer; it re-executes this
//! binary as the consumer. The producer copies each 1 MiB slot in from a private buffer. The
//! consumer reads every byte of it in place (summing its words), as a zero-copy stage does. So
//! the ring figure is the rate at which data written in one process is read in another.
//! The memcpy baseline copies 1 MiB blocks from a source as large as the ring into a 1 MiB
//! destination on one thread.
//!
//! Both figures are the median of several runs, taken alternately. The last line of output is
//! `ratio <ring GB/s / memcpy GB/s>`.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use ccssl_pipe::ring::{self, Consumer, Producer, RingConfig};
use ccssl_pipe::shm::new_run_id;

const MIB: usize = 1 << 20;
/// Slots in the throughput ring.
const SLOTS: u32 = 8;
/// Slots moved before timing starts, so first-touch page faults are not measured.
const WARMUP: u64 = 64;
/// Slots moved while timing.
const MEASURED: u64 = 4096;
/// Ring runs; memcpy runs once before the first and after each.
const ROUNDS: usize = 5;
/// Round trips of the latency test.
const PINGS: usize = 20_000;

fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec; CLOCK_MONOTONIC is system-wide, so the
    // producer's and consumer's readings are comparable.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().collect();
    match args.get(1).map(String::as_str) {
        Some("consume") => consume(Path::new(&args[2])),
        Some("echo") => echo(Path::new(&args[2]), Path::new(&args[3])),
        _ => run(),
    }
}

/// Removes the benchmark's segments on every exit path.
struct Segments(Vec<std::path::PathBuf>);

impl Drop for Segments {
    fn drop(&mut self) {
        for path in &self.0 {
            let _ = std::fs::remove_file(path);
        }
    }
}

fn spawn_self(args: &[&str]) -> Result<std::process::Child> {
    Command::new(std::env::current_exe()?)
        .args(args)
        .stdout(Stdio::piped())
        .spawn()
        .context("failed to start the benchmark's child process")
}

fn run() -> Result<()> {
    let run_id = new_run_id();
    let ping = ring::segment_path(&run_id, "bench-ping");
    let pong = ring::segment_path(&run_id, "bench-pong");
    let mut segments = Segments(vec![ping.clone(), pong.clone()]);

    // Rounds alternate memcpy and ring runs, so both see the same share of a busy machine.
    let mut memcpy_rates = vec![memcpy_gbps()];
    let mut ring_rates = Vec::new();
    for round in 0..ROUNDS {
        let data = ring::segment_path(&run_id, &format!("bench-data-{round}"));
        segments.0.push(data.clone());
        ring_rates.push(throughput(&data)?);
        memcpy_rates.push(memcpy_gbps());
    }
    let (median, p99) = latency(&ping, &pong)?;

    let list = |rates: &[f64]| {
        let text: Vec<String> = rates.iter().map(|r| format!("{r:.2}")).collect();
        text.join(" ")
    };
    let (memcpy, ring_gbps) = (median_of(&memcpy_rates), median_of(&ring_rates));
    println!(
        "memcpy: {memcpy:.2} GB/s median (one thread, 1 MiB blocks; runs: {})",
        list(&memcpy_rates)
    );
    println!(
        "ring: {ring_gbps:.2} GB/s median ({MEASURED} slots of 1 MiB per run, {SLOTS}-slot ring, \
         producer copies in, consumer reads in place; runs: {})",
        list(&ring_rates)
    );
    println!("handoff latency (64-byte slot, one way): median {median} ns, p99 {p99} ns");
    println!("ratio {:.3}", ring_gbps / memcpy);
    Ok(())
}

/// Median of `values` (the mean of the middle two for an even count).
fn median_of(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let mid = sorted.len() / 2;
    if sorted.len().is_multiple_of(2) {
        (sorted[mid - 1] + sorted[mid]) / 2.0
    } else {
        sorted[mid]
    }
}

/// Single-thread memcpy rate in GB/s (10^9 bytes per second).
fn memcpy_gbps() -> f64 {
    let source = vec![7u8; SLOTS as usize * MIB];
    let mut dest = vec![0u8; MIB];
    let blocks = source.len() / MIB;
    for i in 0..blocks {
        dest.copy_from_slice(&source[i * MIB..(i + 1) * MIB]);
    }
    let start = Instant::now();
    for i in 0..MEASURED as usize {
        let block = i % blocks;
        dest.copy_from_slice(&source[block * MIB..(block + 1) * MIB]);
        std::hint::black_box(&mut dest);
    }
    (MEASURED as usize * MIB) as f64 / start.elapsed().as_secs_f64() / 1e9
}

fn throughput(path: &Path) -> Result<f64> {
    ring::create(
        path,
        RingConfig {
            slot_size: MIB,
            slot_count: SLOTS,
        },
    )?;
    let mut producer = Producer::open(path)?;
    let child = spawn_self(&["consume", &path.display().to_string()])?;
    let mut source = vec![0u8; MIB];
    for (i, byte) in source.iter_mut().enumerate() {
        *byte = i as u8;
    }
    for seq in 0..WARMUP + MEASURED {
        source[..8].copy_from_slice(&seq.to_le_bytes());
        let mut slot = producer.reserve()?;
        slot.copy_from_slice(&source);
        slot.commit(MIB);
    }
    producer.close();
    let output = child.wait_with_output()?;
    if !output.status.success() {
        bail!("consumer process failed: {}", output.status);
    }
    let text = String::from_utf8(output.stdout)?;
    let ns: f64 = text.trim().parse().context("consumer output")?;
    Ok((MEASURED as usize * MIB) as f64 / ns)
}

/// Sum of the slot's 64-bit words: reads every byte in place, as a zero-copy consumer does.
fn read_all(bytes: &[u8]) -> u64 {
    bytes
        .chunks_exact(8)
        .map(|w| u64::from_le_bytes(w.try_into().unwrap_or([0; 8])))
        .fold(0u64, u64::wrapping_add)
}

/// Consumer side of the throughput test: prints the nanoseconds the measured slots took.
fn consume(path: &Path) -> Result<()> {
    let mut consumer = Consumer::open(path)?;
    let mut start = Instant::now();
    let mut seq = 0u64;
    let mut expected_sum = None;
    while let Some(slot) = consumer.peek()? {
        if seq == WARMUP {
            start = Instant::now();
        }
        let stamp = u64::from_le_bytes(slot[..8].try_into()?);
        // Every slot carries the same bytes apart from its stamp in the first word.
        let sum = read_all(&slot).wrapping_sub(stamp);
        slot.release();
        if stamp != seq || *expected_sum.get_or_insert(sum) != sum {
            bail!("slot {seq} carries stamp {stamp} and sum {sum}: data corrupted");
        }
        seq += 1;
    }
    if seq != WARMUP + MEASURED {
        bail!("received {seq} slots, expected {}", WARMUP + MEASURED);
    }
    println!("{}", start.elapsed().as_nanos());
    Ok(())
}

/// Runs a ping-pong over two 64-byte rings and returns the median and 99th percentile of the
/// one-way handoff time in nanoseconds. The receiver measures each against the sender's
/// timestamp.
fn latency(ping: &Path, pong: &Path) -> Result<(u64, u64)> {
    let config = RingConfig {
        slot_size: 64,
        slot_count: 8,
    };
    ring::create(ping, config)?;
    ring::create(pong, config)?;
    let mut to_child = Producer::open(ping)?;
    let mut from_child = Consumer::open(pong)?;
    let child = spawn_self(&[
        "echo",
        &ping.display().to_string(),
        &pong.display().to_string(),
    ])?;

    let mut samples = Vec::with_capacity(PINGS * 2);
    for _ in 0..PINGS {
        let mut slot = to_child.reserve()?;
        slot[..8].copy_from_slice(&monotonic_ns().to_le_bytes());
        slot.commit(8);
        let Some(reply) = from_child.peek()? else {
            bail!("echo process closed its ring early");
        };
        let received = monotonic_ns();
        let sent = u64::from_le_bytes(reply[..8].try_into()?);
        samples.push(received.saturating_sub(sent));
        reply.release();
    }
    to_child.close();

    let output = child.wait_with_output()?;
    if !output.status.success() {
        bail!("echo process failed: {}", output.status);
    }
    for line in String::from_utf8(output.stdout)?.lines() {
        samples.push(line.parse()?);
    }
    samples.sort_unstable();
    Ok((
        samples[samples.len() / 2],
        samples[samples.len() * 99 / 100],
    ))
}

/// Runs the echo side of the latency test: replies to each ping with a fresh timestamp, then
/// prints the one-way times it measured, one per line.
fn echo(ping: &Path, pong: &Path) -> Result<()> {
    let mut input = Consumer::open(ping)?;
    let mut output = Producer::open(pong)?;
    let mut samples = Vec::with_capacity(PINGS);
    while let Some(slot) = input.peek()? {
        let received = monotonic_ns();
        let sent = u64::from_le_bytes(slot[..8].try_into()?);
        samples.push(received.saturating_sub(sent));
        slot.release();
        let mut reply = output.reserve()?;
        reply[..8].copy_from_slice(&monotonic_ns().to_le_bytes());
        reply.commit(8);
    }
    output.close();
    let text: Vec<String> = samples.iter().map(u64::to_string).collect();
    println!("{}", text.join("\n"));
    Ok(())
}
