//! Throughput of the full unlabeled transform (weak, strong and contrast views of each image)
//! on one thread, for `tools/bench/augment.sh`.
//!
//! Usage: `augment_bench CIFAR_BATCH_FILE [SECONDS]`. The program reads the first 4000 records
//! of an official CIFAR-10 binary batch. It augments them in batches of 448 (7 x 64, the
//! unlabeled batch of FixMatch's CIFAR settings) until the process has used SECONDS of CPU
//! time, then prints `images_per_cpu_s <value>` and `images_per_wall_s <value>`. CPU time comes from
//! `/proc/self/schedstat` (Linux), so other processes sharing the core do not skew the rate.

use std::time::{Duration, Instant};

use ccssl_augment::{AugmentConfig, augment_batch};
use ccssl_pipe::batch::RawBatch;

const RECORD: usize = 3073;
const SIDE: usize = 32;
const BATCH: usize = 448;

/// Nanoseconds this process has run on a CPU, from the first field of `/proc/self/schedstat`.
fn cpu_time() -> Result<Duration, Box<dyn std::error::Error>> {
    let text = std::fs::read_to_string("/proc/self/schedstat")?;
    let ns: u64 = text
        .split_whitespace()
        .next()
        .ok_or("empty /proc/self/schedstat")?
        .parse()?;
    Ok(Duration::from_nanos(ns))
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let path = args
        .next()
        .ok_or("usage: augment_bench CIFAR_BATCH_FILE [SECONDS]")?;
    let seconds: f64 = args.next().map(|s| s.parse()).transpose()?.unwrap_or(5.0);
    let data = std::fs::read(&path).map_err(|e| format!("cannot read {path}: {e}"))?;
    let records = (data.len() / RECORD).min(4000);
    if records == 0 {
        return Err(format!("{path} holds no complete CIFAR record").into());
    }

    // CHW planes to HWC.
    let mut images = Vec::with_capacity(records * SIDE * SIDE * 3);
    for r in 0..records {
        let planes = &data[r * RECORD + 1..(r + 1) * RECORD];
        for p in 0..SIDE * SIDE {
            images.extend_from_slice(&[
                planes[p],
                planes[SIDE * SIDE + p],
                planes[2 * SIDE * SIDE + p],
            ]);
        }
    }

    let config = AugmentConfig::ccssl();
    let bytes = SIDE * SIDE * 3;
    let (mut done, mut seq) = (0usize, 0u64);
    let start = Instant::now();
    let cpu_start = cpu_time()?;
    let budget = Duration::from_secs_f64(seconds);
    while cpu_time()? - cpu_start < budget {
        let first = (seq as usize * BATCH) % (records - BATCH.min(records) + 1);
        let count = BATCH.min(records);
        let raw = RawBatch {
            seq,
            seed: 1,
            height: SIDE as u32,
            width: SIDE as u32,
            unlabeled_images: images[first * bytes..(first + count) * bytes].to_vec(),
            unlabeled_true_labels: vec![0; count],
            unlabeled_indices: (first as u32..(first + count) as u32).collect(),
            ..RawBatch::default()
        };
        let views = augment_batch(&raw, &config, 1)?;
        std::hint::black_box(&views);
        done += count;
        seq += 1;
    }
    let cpu = (cpu_time()? - cpu_start).as_secs_f64();
    println!("images_per_cpu_s {:.1}", done as f64 / cpu);
    println!(
        "images_per_wall_s {:.1}",
        done as f64 / start.elapsed().as_secs_f64()
    );
    Ok(())
}
