//! `ccssl bench step` run as a user runs it, on a tiny model so the test stays short.

use std::process::{Command, Output};

fn ccssl(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ccssl"))
        .args(args)
        .output()
        .expect("failed to start ccssl")
}

#[test]
fn bench_step_prints_throughput_last() {
    let out = ccssl(&[
        "bench",
        "step",
        "--model",
        "wrn-10-1",
        "--batch",
        "2",
        "--mu",
        "1",
        "--threads",
        "1",
        "--steps",
        "1",
        "--warmup",
        "0",
        "--profile-steps",
        "1",
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "exit {:?}: {stdout}", out.status);
    assert!(stdout.contains("8 images/step"), "{stdout}");
    assert!(stdout.contains("conv forward"), "{stdout}");
    assert!(stdout.contains("peak_rss_mib "), "{stdout}");
    let last = stdout.lines().last().unwrap_or_default();
    let rate: f64 = last
        .strip_prefix("images_per_second ")
        .unwrap_or_else(|| panic!("last line {last:?}"))
        .parse()
        .unwrap();
    assert!(rate > 0.0, "{last}");
}

#[test]
fn bench_step_rejects_unknown_model() {
    let out = ccssl(&["bench", "step", "--model", "resnet50"]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("invalid --model \"resnet50\""), "{stderr}");
}

#[test]
fn bench_step_rejects_zero_batch() {
    let out = ccssl(&["bench", "step", "--model", "wrn-10-1", "--batch", "0"]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("batch"), "{stderr}");
}

#[test]
fn bench_without_subcommand_is_a_usage_error() {
    let out = ccssl(&["bench"]);
    assert_eq!(out.status.code(), Some(2));
}
