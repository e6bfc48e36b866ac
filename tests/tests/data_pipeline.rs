//! Runs of the data stages through `ccssl-run` on the real CIFAR-10 sample: loader ->
//! augment -> view sink. The sink's summary contains a checksum over every view in sequence
//! order. These tests compare it across replica counts, across a killed and restarted
//! replica or loader, and against views computed in this process from the loader and
//! augmenter libraries directly.

use std::fs::File;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::Duration;

use ccssl_augment::{AugmentConfig, augment_batch};
use ccssl_loader::{DatasetConfig, Loader, LoaderConfig};
use ccssl_pipe::metrics::MetricsBlock;
use ccssl_pipe::shm::segment_path;
use ccssl_tests::{
    TempDir, ccssl_bin, entries, read_pids, repo_root, segments_of, send_signal, wait_for,
};

/// Generous limit for whole runs: debug builds on a loaded two-core machine are slow.
const RUN_TIMEOUT: Duration = Duration::from_secs(300);

/// Seed of `graphs/data-smoke.ron`.
const SEED: u64 = 1;

/// A `ccssl-run` process started in the repository root (the graph's dataset path is
/// relative to the current directory), with its own output directory and stderr file.
struct Run {
    child: Child,
    out: TempDir,
    stderr_path: PathBuf,
}

impl Run {
    fn start(sets: &[&str]) -> Run {
        Run::start_with(sets, &[])
    }

    /// Starts a run with `--set` overrides and further arguments.
    fn start_with(sets: &[&str], args: &[&str]) -> Run {
        let out = TempDir::new("data-run");
        let stderr_path = out.path().join("stderr.txt");
        let stderr = File::create(&stderr_path).expect("create stderr file");
        let mut command = Command::new(ccssl_bin("ccssl-run"));
        command
            .current_dir(repo_root())
            .arg("graphs/data-smoke.ron")
            .arg("--headless")
            .arg("--out")
            .arg(out.path().join("runs"));
        for set in sets {
            command.arg("--set").arg(set);
        }
        command.args(args).env_remove("CCSSL_DATA");
        let child = command
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .expect("start ccssl-run");
        Run {
            child,
            out,
            stderr_path,
        }
    }

    fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr_path).unwrap_or_default()
    }

    fn runs(&self) -> PathBuf {
        self.out.path().join("runs")
    }

    fn run_dir(&self) -> PathBuf {
        wait_for(RUN_TIMEOUT, || entries(&self.runs()).into_iter().next())
            .expect("run directory never appeared")
    }

    fn wait_exit(&mut self) -> ExitStatus {
        wait_for(RUN_TIMEOUT, || self.child.try_wait().expect("try_wait"))
            .unwrap_or_else(|| panic!("run timed out; stderr:\n{}", self.stderr()))
    }

    /// Parses `sink.summary` into (key, value) pairs.
    fn summary(&self) -> Vec<(String, String)> {
        let text = std::fs::read_to_string(self.run_dir().join("sink.summary"))
            .unwrap_or_else(|e| panic!("no sink.summary ({e}); stderr:\n{}", self.stderr()));
        text.lines()
            .filter_map(|line| {
                let (key, value) = line.split_once(' ')?;
                Some((key.to_string(), value.to_string()))
            })
            .collect()
    }

    fn value(&self, key: &str) -> String {
        self.summary()
            .into_iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v)
            .unwrap_or_else(|| panic!("summary has no {key}"))
    }

    /// Waits until the sink's metrics record shows at least `items` batches read.
    fn wait_sink_items(&self, items: u64) {
        let run_dir = self.run_dir();
        let run_id = wait_for(RUN_TIMEOUT, || {
            std::fs::read_to_string(run_dir.join("run_id")).ok()
        })
        .expect("run_id never written");
        let block = wait_for(RUN_TIMEOUT, || {
            MetricsBlock::open(segment_path(run_id.trim(), "metrics-sink")).ok()
        })
        .expect("open sink metrics");
        let seen = wait_for(RUN_TIMEOUT, || {
            let items_in = block.replica(0).expect("replica 0").snapshot().items_in;
            (items_in >= items).then_some(items_in)
        });
        assert!(
            seen.is_some(),
            "sink never read {items} batches; stderr:\n{}",
            self.stderr()
        );
    }

    fn assert_clean_exit(&mut self) {
        let status = self.wait_exit();
        assert_eq!(status.code(), Some(0), "stderr:\n{}", self.stderr());
        let left = segments_of(self.child.id());
        assert!(left.is_empty(), "segments left: {left:?}");
    }
}

impl Drop for Run {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// 64-bit FNV-1a, written out here so the expected checksum does not come from the code
/// under test.
fn fnv1a(mut hash: u64, bytes: &[u8]) -> u64 {
    for &byte in bytes {
        hash = (hash ^ u64::from(byte)).wrapping_mul(0x0000_0100_0000_01b3);
    }
    hash
}

/// Checksum of the views of batches `0..steps` computed in this process: the loader library
/// makes each batch and the augmenter library its views, with the settings the smoke graph
/// uses (`contrast: ()` is CCSSL's default contrast view).
fn expected_checksum(batch_size: usize, mu: usize, steps: u64) -> String {
    let run = TempDir::new("data-expected");
    let root = repo_root().join("../shared/data/cifar10");
    let mut config = LoaderConfig::new(DatasetConfig::cifar10_local(root));
    config.batch_size = batch_size;
    config.mu = mu;
    let mut loader = Loader::open(&config, SEED, run.path()).expect("open the CIFAR-10 sample");
    let augment = AugmentConfig::ccssl();
    let mut hash = 0xcbf2_9ce4_8422_2325;
    for seq in 0..steps {
        let views = augment_batch(&loader.batch(seq), &augment, 2).expect("augment batch");
        for part in [
            &views.labeled_weak,
            &views.unlabeled_weak,
            &views.unlabeled_strong,
            &views.unlabeled_contrast,
        ] {
            hash = fnv1a(hash, part);
        }
    }
    format!("{hash:016x}")
}

/// Settings of the smaller runs: 16 labeled + 32 unlabeled images per batch.
fn small(steps: u64, replicas: u32) -> Vec<String> {
    vec![
        "stages.loader.batch_size=16".to_string(),
        "stages.loader.mu=2".to_string(),
        format!("stages.loader.total_steps={steps}"),
        format!("stages.sink.expect={steps}"),
        format!("stages.augment.replicas={replicas}"),
    ]
}

fn refs(sets: &[String]) -> Vec<&str> {
    sets.iter().map(String::as_str).collect()
}

#[test]
fn smoke_graph_counts_every_image() {
    let mut run = Run::start(&[]);
    run.assert_clean_exit();
    // 24 batches of 64 labeled and 64 * 7 unlabeled images; three views per unlabeled one.
    assert_eq!(run.value("batches"), "24");
    assert_eq!(run.value("labeled"), (24 * 64).to_string());
    assert_eq!(run.value("unlabeled"), (24 * 448).to_string());
    assert_eq!(run.value("images"), (24 * 512).to_string());
    assert_eq!(run.value("views"), (24 * (64 + 3 * 448)).to_string());
    assert_eq!(run.value("stopped_early"), "false");
    let log = std::fs::read_to_string(run.run_dir().join("train.log")).expect("train.log");
    assert!(log.contains("10000 training images found"), "{log}");
    for stage in ["loader", "augment"] {
        let done = log
            .lines()
            .find(|l| l.contains(&format!("name={stage} ")) && l.contains(" done "))
            .unwrap_or_else(|| panic!("no done line of {stage} in:\n{log}"));
        assert!(done.contains("images_per_second="), "{done}");
    }
    assert!(log.contains("run finished exit_code=0"), "{log}");
}

#[test]
fn checksum_does_not_depend_on_replicas() {
    let steps = 12;
    let expected = expected_checksum(16, 2, steps);
    for replicas in [1, 3] {
        let sets = small(steps, replicas);
        let mut run = Run::start(&refs(&sets));
        run.assert_clean_exit();
        assert_eq!(
            run.value("batches"),
            steps.to_string(),
            "{replicas} replicas"
        );
        assert_eq!(
            run.value("images"),
            (steps * 48).to_string(),
            "{replicas} replicas"
        );
        assert_eq!(run.value("checksum"), expected, "{replicas} replicas");
    }
}

#[test]
fn killed_augment_replica_is_restarted_without_loss() {
    let steps = 160;
    let mut sets = small(steps, 2);
    sets.push("stages.augment.restart=OnFailure(max: 3)".to_string());
    let mut run = Run::start(&refs(&sets));
    run.wait_sink_items(10);
    let pids = read_pids(&run.run_dir());
    let victim = pids
        .iter()
        .find(|p| p.stage == "augment" && p.replica == 1)
        .unwrap_or_else(|| panic!("no augment replica 1 in {pids:?}"));
    send_signal(victim.pid, libc::SIGKILL);
    run.assert_clean_exit();
    let stderr = run.stderr();
    let restarted =
        "ccssl-run: stage \"augment\" replica 1 was killed by signal 9 (SIGKILL); restarted as pid";
    assert!(
        stderr.contains(restarted),
        "missing {restarted:?} in:\n{stderr}"
    );
    assert_eq!(run.value("batches"), steps.to_string());
    assert_eq!(run.value("checksum"), expected_checksum(16, 2, steps));
}

#[test]
fn killed_loader_resumes_after_its_last_batch() {
    let steps = 160;
    let mut sets = small(steps, 1);
    sets.push("stages.loader.restart=OnFailure(max: 1)".to_string());
    let mut run = Run::start(&refs(&sets));
    run.wait_sink_items(10);
    let pids = read_pids(&run.run_dir());
    let victim = pids
        .iter()
        .find(|p| p.stage == "loader")
        .unwrap_or_else(|| panic!("no loader in {pids:?}"));
    send_signal(victim.pid, libc::SIGKILL);
    run.assert_clean_exit();
    let log = std::fs::read_to_string(run.run_dir().join("train.log")).expect("train.log");
    assert!(log.contains("resuming after a restart"), "{log}");
    assert_eq!(run.value("batches"), steps.to_string());
    assert_eq!(run.value("checksum"), expected_checksum(16, 2, steps));
}

#[test]
fn bad_dataset_root_exits_2_before_starting() {
    let missing = "/nonexistent/ccssl-test/cifar10";
    let set = format!("stages.loader.dataset.root=\"{missing}\"");
    let by_set = Run::start(&[&set]);
    let by_data = Run::start_with(&[], &["--data", missing]);
    for mut run in [by_set, by_data] {
        let status = run.wait_exit();
        assert_eq!(status.code(), Some(2), "stderr:\n{}", run.stderr());
        let stderr = run.stderr();
        assert!(stderr.contains(missing), "{stderr}");
        assert!(stderr.contains("--data"), "{stderr}");
        assert!(stderr.contains("stage \"loader\""), "{stderr}");
        assert!(!run.runs().exists(), "a run directory was created");
        assert!(segments_of(run.child.id()).is_empty());
    }
}

#[test]
fn data_option_points_the_loader_at_the_sample() {
    // An absolute spelling of the sample folder that the graph does not contain, so the
    // log shows whether the loader read the root given with --data.
    let root = repo_root().join("tests/../../shared/data/cifar10");
    let root = root.to_str().expect("UTF-8 path");
    let mut run = Run::start_with(&refs(&small(2, 1)), &["--data", root]);
    run.assert_clean_exit();
    assert_eq!(run.value("batches"), "2");
    let log = std::fs::read_to_string(run.run_dir().join("train.log")).expect("train.log");
    assert!(log.contains(root), "{root} not in:\n{log}");
}

#[test]
fn graph_check_accepts_data_smoke() {
    let output = Command::new(ccssl_bin("ccssl"))
        .current_dir(repo_root())
        .args(["graph", "check", "graphs/data-smoke.ron"])
        .output()
        .expect("run ccssl graph check");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
}
