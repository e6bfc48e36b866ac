//! Times forward + backward of a WideResNet on random data and prints a per-operation profile.
//!
//! Usage: `cargo run --release -p ccssl-nn --example wrn_bench -- [--threads 2] [--batch 160]
//! [--depth 28] [--widen 2] [--iters 5] [--warmup 1]`
//!
//! The last line is `images/s <value>`; peak resident memory is read from /proc/self/status.

use std::time::{Duration, Instant};

use ccssl_nn::{OpKind, Tensor, ThreadPool, WideResNet, WideResNetConfig};

struct Args {
    threads: usize,
    batch: usize,
    depth: usize,
    widen: usize,
    iters: usize,
    warmup: usize,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        threads: 2,
        batch: 160,
        depth: 28,
        widen: 2,
        iters: 5,
        warmup: 1,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it
            .next()
            .ok_or_else(|| format!("missing value after {flag}"))?;
        let value: usize = value
            .parse()
            .map_err(|_| format!("invalid number {value} for {flag}"))?;
        match flag.as_str() {
            "--threads" => args.threads = value,
            "--batch" => args.batch = value,
            "--depth" => args.depth = value,
            "--widen" => args.widen = value,
            "--iters" => args.iters = value,
            "--warmup" => args.warmup = value,
            _ => {
                return Err(format!(
                    "unknown flag {flag}; use --threads, --batch, --depth, --widen, --iters, --warmup"
                ));
            }
        }
    }
    Ok(args)
}

/// Peak resident set size in MiB (`VmHWM`), or 0 when /proc is unavailable.
fn peak_rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

fn pseudo_random(len: usize, seed: u32) -> Vec<f32> {
    let mut state = seed.wrapping_mul(2654435761).wrapping_add(1);
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 17;
            state ^= state << 5;
            (state as f32 / u32::MAX as f32) * 2.0 - 1.0
        })
        .collect()
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = parse_args()?;
    let pool = ThreadPool::new(args.threads)?;
    let config = WideResNetConfig {
        depth: args.depth,
        widen: args.widen,
        num_classes: 10,
        proj_dim: 64,
    };
    let mut model = WideResNet::new(config, 1)?;
    let n = args.batch;
    let input = Tensor::new(&[n, 3, 32, 32], pseudo_random(n * 3 * 32 * 32, 1))?;
    let d_logits = Tensor::new(&[n, 10], pseudo_random(n * 10, 2))?;
    let d_proj = Tensor::new(&[n, 64], pseudo_random(n * 64, 3))?;

    for _ in 0..args.warmup {
        model.forward_train(&pool, &input)?;
        model.backward(&pool, &d_logits, &d_proj)?;
    }
    model.set_profiling(true);
    let mut times = Vec::new();
    for _ in 0..args.iters {
        let start = Instant::now();
        model.forward_train(&pool, &input)?;
        model.backward(&pool, &d_logits, &d_proj)?;
        times.push(start.elapsed());
    }
    let total: Duration = times.iter().sum();
    let best = times.iter().min().copied().unwrap_or_default();
    let per_iter = total.as_secs_f64() / args.iters.max(1) as f64;
    println!(
        "WRN-{}-{} batch {n} threads {}: mean {:.1} ms, best {:.1} ms per forward+backward",
        args.depth,
        args.widen,
        args.threads,
        per_iter * 1e3,
        best.as_secs_f64() * 1e3
    );
    println!(
        "{:<24} {:>10} {:>7} {:>7}",
        "op", "ms/iter", "share", "calls"
    );
    let profiled: f64 = OpKind::ALL
        .iter()
        .map(|&k| model.profile().total(k).0.as_secs_f64())
        .sum();
    for kind in OpKind::ALL {
        let (time, calls) = model.profile().total(kind);
        println!(
            "{:<24} {:>10.1} {:>6.1}% {:>7}",
            kind.label(),
            time.as_secs_f64() * 1e3 / args.iters.max(1) as f64,
            100.0 * time.as_secs_f64() / profiled.max(1e-12),
            calls / args.iters.max(1) as u64
        );
    }
    println!("peak RSS {:.0} MiB", peak_rss_mib());
    println!("images/s {:.1}", n as f64 / per_iter);
    Ok(())
}
