//! A malformed CIFAR-10 copy or an impossible labeled split stops `ccssl-run` with exit 2 while
//! the graph is validated, before any stage starts and before a run directory exists.

use std::path::Path;
use std::process::{Command, Output};

use ccssl_tests::{TempDir, ccssl_bin, entries, repo_root};

const SAMPLE: &str = "../shared/data/cifar10";

fn run_data_smoke(data: &Path, out: &Path, extra: &[&str]) -> Output {
    Command::new(ccssl_bin("ccssl-run"))
        .current_dir(repo_root())
        .args(["graphs/data-smoke.ron", "--headless", "--data"])
        .arg(data)
        .arg("--out")
        .arg(out)
        .args(extra)
        .output()
        .expect("run ccssl-run")
}

/// Copies the sample into `dir`, keeping only the first `train_bytes` of the training batch.
fn sample_copy(dir: &Path, train_bytes: usize) {
    let sample = repo_root().join(SAMPLE);
    let train = std::fs::read(sample.join("data_batch_1.bin")).expect("read sample batch");
    std::fs::write(dir.join("data_batch_1.bin"), &train[..train_bytes]).expect("write batch");
    for file in ["test_batch.bin", "batches.meta.txt"] {
        std::fs::copy(sample.join(file), dir.join(file)).expect("copy sample file");
    }
}

#[test]
fn truncated_batch_exits_2_before_start() {
    let data = TempDir::new("truncated-cifar");
    let out = TempDir::new("truncated-out");
    sample_copy(data.path(), 30_000);

    let output = run_data_smoke(data.path(), out.path(), &[]);
    let stderr = String::from_utf8_lossy(&output.stderr);

    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("data_batch_1.bin"), "{stderr}");
    assert!(
        stderr.contains("not a whole number of 3073-byte records"),
        "{stderr}"
    );
    assert!(entries(out.path()).is_empty(), "run directory left behind");
}

#[test]
fn class_too_small_exits_2_before_start() {
    let data = TempDir::new("small-cifar");
    let out = TempDir::new("small-out");
    // 500 records: far fewer than 400 images per class.
    sample_copy(data.path(), 500 * 3073);

    let output = run_data_smoke(data.path(), out.path(), &[]);
    let stderr = String::from_utf8_lossy(&output.stderr);

    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("num_labeled 4000"), "{stderr}");
    assert!(stderr.contains("lower num_labeled"), "{stderr}");
    assert!(entries(out.path()).is_empty(), "run directory left behind");
}

#[test]
fn indivisible_num_labeled_exits_2() {
    let out = TempDir::new("indivisible-out");
    let data = repo_root().join(SAMPLE);

    let output = run_data_smoke(
        &data,
        out.path(),
        &["--set", "stages.loader.num_labeled=4001"],
    );
    let stderr = String::from_utf8_lossy(&output.stderr);

    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("num_labeled 4001 is not divisible by the 10 classes"),
        "{stderr}"
    );
    assert!(entries(out.path()).is_empty(), "run directory left behind");
}
