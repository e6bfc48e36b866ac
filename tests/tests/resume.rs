//! `ccssl-run --resume` end to end on `graphs/smoke.ron`. A run interrupted by `kill -9` of its
//! step stage, or stopped by SIGINT, and then resumed ends with the same EMA weights and the
//! same evaluations as a run that never stopped. Invalid resumes exit 2 and change nothing.
//!
//! Equality is byte for byte: the engine runs the same operations in the same order on the
//! same thread count, so a resumed run has no reason to differ in any bit.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

use ccssl_ema::records::current_history;
use ccssl_ema::{EvalRecord, MetricsRecord, open_checkpoint, read_records};
use ccssl_tests::{TempDir, ccssl_bin, read_pids, repo_root, send_signal, wait_for};

/// Generous limit for each wait: debug builds on a loaded two-core machine are slow.
const TIMEOUT: Duration = Duration::from_secs(120);

/// Runs `ccssl-run` from the repository root with `args` and waits for it.
fn ccssl_run(args: &[&str]) -> Output {
    Command::new(ccssl_bin("ccssl-run"))
        .current_dir(repo_root())
        .args(args)
        .arg("--headless")
        .output()
        .expect("run ccssl-run")
}

fn describe(output: &Output) -> String {
    format!(
        "status {:?}\nstdout:\n{}\nstderr:\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// Returns the only run directory under `out`.
fn run_dir_in(out: &Path) -> PathBuf {
    std::fs::read_dir(out)
        .expect("list out")
        .map(|e| e.expect("entry").path())
        .find(|p| p.is_dir())
        .expect("a run directory")
}

/// Runs `graphs/smoke.ron` to the end once without a stop and returns its run directory,
/// shared by the tests.
fn uninterrupted() -> &'static Path {
    static RUN: OnceLock<PathBuf> = OnceLock::new();
    RUN.get_or_init(|| {
        let out = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
            .join(format!("resume-uninterrupted-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&out);
        let output = ccssl_run(&["graphs/smoke.ron", "--out", out.to_str().unwrap()]);
        assert!(output.status.success(), "{}", describe(&output));
        run_dir_in(&out)
    })
}

/// Returns the evaluations of the run's current history.
fn evals(run_dir: &Path) -> Vec<EvalRecord> {
    let records = read_records(&run_dir.join("metrics.jsonl")).expect("read metrics.jsonl");
    current_history(records)
        .into_iter()
        .filter_map(|r| match r {
            MetricsRecord::Eval(e) => Some(e),
            _ => None,
        })
        .collect()
}

/// Starts `graphs/smoke.ron` in the background, waits for its checkpoint at step 10, and
/// returns the running child and its run directory.
fn run_until_first_checkpoint(out: &Path) -> (std::process::Child, PathBuf) {
    let child = Command::new(ccssl_bin("ccssl-run"))
        .current_dir(repo_root())
        .args(["graphs/smoke.ron", "--headless", "--out"])
        .arg(out)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start ccssl-run");
    let run_dir = wait_for(TIMEOUT, || {
        let dir = std::fs::read_dir(out).ok()?.next()?.ok()?.path();
        dir.join("checkpoints/step-00000010")
            .is_dir()
            .then_some(dir)
    })
    .expect("no checkpoint at step 10");
    (child, run_dir)
}

/// Resumes the interrupted run in `run_dir` and checks that it ends where the uninterrupted
/// run ended.
fn resume_and_compare(run_dir: &Path) {
    let output = ccssl_run(&["--resume", run_dir.to_str().unwrap()]);
    assert!(output.status.success(), "{}", describe(&output));
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        stdout.contains("ended: completed at step 30/30"),
        "{stdout}"
    );

    let reference = uninterrupted();
    let resumed = open_checkpoint(&run_dir.join("checkpoints/last")).expect("resumed checkpoint");
    let whole = open_checkpoint(&reference.join("checkpoints/last")).expect("reference");
    assert_eq!(resumed.state.step, 30);
    assert_eq!(whole.state.step, 30);
    for file in [
        "ema.safetensors",
        "model.safetensors",
        "optimizer.safetensors",
    ] {
        let a = std::fs::read(resumed.dir.join(file)).unwrap();
        let b = std::fs::read(whole.dir.join(file)).unwrap();
        assert!(
            a == b,
            "{file} of the resumed run differs from the uninterrupted run's"
        );
    }
    // Every evaluation, the ones before the interruption included, matches too: a stop
    // checkpoints without an evaluation of its own.
    assert_eq!(evals(run_dir), evals(reference));
}

#[test]
fn kill_step_stage_then_resume_matches_uninterrupted() {
    let out = TempDir::new("resume-kill");
    let (child, run_dir) = run_until_first_checkpoint(out.path());
    let step = read_pids(&run_dir)
        .into_iter()
        .find(|p| p.stage == "step")
        .expect("step stage pid");
    send_signal(step.pid, libc::SIGKILL);
    let output = child.wait_with_output().expect("wait for ccssl-run");
    assert_eq!(output.status.code(), Some(1), "{}", describe(&output));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("stage \"step\""), "{stderr}");

    // The last checkpoint survives the kill intact.
    let last = open_checkpoint(&run_dir.join("checkpoints/last")).expect("last checkpoint");
    assert!(
        last.state.step >= 10,
        "last checkpoint at step {}",
        last.state.step
    );
    // The killed stage wrote no final checkpoint, so the run resumes from a periodic one.
    assert_eq!(last.state.step % 10, 0);
    resume_and_compare(&run_dir);
}

#[test]
fn sigint_stop_then_resume_matches_uninterrupted() {
    let out = TempDir::new("resume-sigint");
    let (child, run_dir) = run_until_first_checkpoint(out.path());
    send_signal(child.id(), libc::SIGINT);
    let output = child.wait_with_output().expect("wait for ccssl-run");
    assert_eq!(output.status.code(), Some(130), "{}", describe(&output));
    // A graceful stop writes a final checkpoint at the step the run reached.
    let last = open_checkpoint(&run_dir.join("checkpoints/last")).expect("last checkpoint");
    assert!(
        last.state.step >= 10,
        "last checkpoint at step {}",
        last.state.step
    );
    resume_and_compare(&run_dir);
}

/// Returns the contents of every file under `dir` by path, with links as their targets.
fn tree(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut files = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(path) = stack.pop() {
        let meta = std::fs::symlink_metadata(&path).unwrap();
        if meta.file_type().is_symlink() {
            let target = std::fs::read_link(&path).unwrap();
            files.insert(path, target.into_os_string().into_encoded_bytes());
        } else if meta.is_dir() {
            stack.extend(std::fs::read_dir(&path).unwrap().map(|e| e.unwrap().path()));
        } else {
            files.insert(path.clone(), std::fs::read(&path).unwrap());
        }
    }
    files
}

/// Copies the tree `from` to `to`, keeping symbolic links as links.
fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        let kind = entry.file_type().unwrap();
        if kind.is_symlink() {
            std::os::unix::fs::symlink(std::fs::read_link(entry.path()).unwrap(), &target).unwrap();
        } else if kind.is_dir() {
            copy_tree(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

/// Runs `ccssl-run` with `args` and checks that it exits 2 with a message containing
/// `expected`, leaving `run_dir` exactly as it was.
fn assert_rejected(args: &[&str], run_dir: &Path, expected: &str) {
    let before = tree(run_dir);
    let output = ccssl_run(args);
    assert_eq!(output.status.code(), Some(2), "{}", describe(&output));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains(expected),
        "expected {expected:?} in:\n{stderr}"
    );
    assert!(before == tree(run_dir), "{} changed", run_dir.display());
}

#[test]
fn invalid_resumes_exit_2_and_change_nothing() {
    let scratch = TempDir::new("resume-invalid");
    let run = scratch.path().join("run");
    copy_tree(uninterrupted(), &run);
    let run_arg = run.to_str().unwrap();

    // A completed run has nothing left to train.
    assert_rejected(
        &["--resume", run_arg],
        &run,
        "already completed its 30 steps",
    );
    // A graph with another setting is not mixed into the run.
    assert_rejected(
        &[
            "graphs/smoke.ron",
            "--set",
            "stages.ema.decay=0.9",
            "--resume",
            run_arg,
        ],
        &run,
        "differs from the graph the run started with",
    );
    assert_rejected(
        &["--resume", run_arg, "--set", "stages.ema.decay=0.9"],
        &run,
        "cannot change the graph of a resumed run",
    );

    // A tampered checkpoint is named, and the run is left for the user to inspect.
    let last = run.join("checkpoints/last");
    let ema = std::fs::canonicalize(last.join("ema.safetensors")).unwrap();
    let mut bytes = std::fs::read(&ema).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x40;
    std::fs::write(&ema, &bytes).unwrap();
    assert_rejected(&["--resume", run_arg], &run, "ema.safetensors");

    // A dangling `last` link is named, with the way to point it at a checkpoint.
    std::fs::remove_file(&last).unwrap();
    std::os::unix::fs::symlink("step-00000099", &last).unwrap();
    assert_rejected(&["--resume", run_arg], &run, "which is missing");

    // Without a checkpoint there is nothing to resume from.
    std::fs::remove_dir_all(run.join("checkpoints")).unwrap();
    assert_rejected(&["--resume", run_arg], &run, "no checkpoint to resume from");

    // A directory that is not a run.
    let empty = scratch.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    assert_rejected(
        &["--resume", empty.to_str().unwrap()],
        &empty,
        "not a ccssl run directory",
    );
    let missing = scratch.path().join("missing");
    let output = ccssl_run(&["--resume", missing.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(2), "{}", describe(&output));
    assert!(!missing.exists());
}
