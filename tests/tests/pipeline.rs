//! Runs of real graphs through `ccssl-run`: a clean run, an `Exec` stage, a killed stage, a
//! graceful stop on SIGINT, and a restarted replica. Each test synchronises on files in the
//! run directory (`pids`, `run_id`, summaries) and on the stages' metrics blocks, polled with
//! a deadline.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use ccssl_pipe::metrics::MetricsBlock;
use ccssl_pipe::shm::segment_path;
use ccssl_tests::{
    StagePid, TempDir, ccssl_bin, entries, read_pids, repo_root, segments_of, send_signal, wait_for,
};

/// Generous limit for whole runs: debug builds on a loaded two-core machine are slow.
const RUN_TIMEOUT: Duration = Duration::from_secs(120);

/// A `ccssl-run` process with its own output directory and stderr file.
struct Run {
    child: Child,
    out: TempDir,
    stderr_path: PathBuf,
}

impl Run {
    fn start(graph: &Path, sets: &[&str]) -> Run {
        let out = TempDir::new("run");
        let stderr_path = out.path().join("stderr.txt");
        let stderr = File::create(&stderr_path).expect("create stderr file");
        let mut command = Command::new(ccssl_bin("ccssl-run"));
        command
            .arg(graph)
            .arg("--headless")
            .arg("--out")
            .arg(out.path().join("runs"));
        for set in sets {
            command.arg("--set").arg(set);
        }
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

    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr_path).unwrap_or_default()
    }

    /// Returns the run directory, waiting until the supervisor created it.
    fn run_dir(&self) -> PathBuf {
        let runs = self.out.path().join("runs");
        wait_for(RUN_TIMEOUT, || entries(&runs).into_iter().next())
            .expect("run directory never appeared")
    }

    /// Waits until `count` stage processes are listed in `pids`.
    fn wait_pids(&self, count: usize) -> Vec<StagePid> {
        let run_dir = self.run_dir();
        wait_for(RUN_TIMEOUT, || {
            let pids = read_pids(&run_dir);
            (pids.len() == count).then_some(pids)
        })
        .unwrap_or_else(|| {
            panic!(
                "pids never listed {count} processes; stderr:\n{}",
                self.stderr()
            )
        })
    }

    /// Waits until the sink stage's metrics record shows at least `items` items read.
    fn wait_sink_items(&self, items: u64) {
        let run_dir = self.run_dir();
        let run_id = wait_for(RUN_TIMEOUT, || {
            std::fs::read_to_string(run_dir.join("run_id")).ok()
        })
        .expect("run_id never written");
        let block = MetricsBlock::open(segment_path(run_id.trim(), "metrics-sink"))
            .expect("open sink metrics");
        let seen = wait_for(RUN_TIMEOUT, || {
            let items_in = block.replica(0).expect("replica 0").snapshot().items_in;
            (items_in >= items).then_some(items_in)
        });
        assert!(
            seen.is_some(),
            "sink never read {items} items; stderr:\n{}",
            self.stderr()
        );
    }

    fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        wait_for(timeout, || self.child.try_wait().expect("try_wait"))
    }

    fn summary(&self, stage: &str) -> String {
        std::fs::read_to_string(self.run_dir().join(format!("{stage}.summary"))).unwrap_or_default()
    }
}

impl Drop for Run {
    fn drop(&mut self) {
        // A failed assertion must not leave a supervisor running; its stages die with it.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn smoke_graph() -> PathBuf {
    repo_root().join("graphs/pipe-smoke.ron")
}

/// Settings that keep the smoke graph running until it is stopped or killed. The relay's
/// simulated work keeps the run mostly asleep, so timing checks hold on a loaded machine.
const ENDLESS: &[&str] = &[
    "stages.source.count=1000000000",
    "stages.source.payload_bytes=1024",
    "stages.relay.work_us=200",
    "stages.sink.expect=None",
];

#[test]
fn smoke_graph_runs_clean() {
    let mut run = Run::start(&smoke_graph(), &[]);
    let status = run.wait_exit(RUN_TIMEOUT).expect("smoke run timed out");
    assert_eq!(status.code(), Some(0), "stderr:\n{}", run.stderr());
    assert_eq!(
        run.summary("sink"),
        "received 10000\nduplicates_dropped 0\nstopped_early false\n"
    );
    let finished = format!(
        "ccssl-run: finished; run directory {}\n",
        run.run_dir().display()
    );
    assert!(run.stderr().ends_with(&finished), "{}", run.stderr());
    assert!(
        segments_of(run.pid()).is_empty(),
        "segments left: {:?}",
        segments_of(run.pid())
    );
    let run_dir = run.run_dir();
    let graph = std::fs::read_to_string(run_dir.join("graph.ron")).expect("resolved graph");
    assert!(graph.contains("Relay("), "{graph}");
    let log = std::fs::read_to_string(run_dir.join("train.log")).expect("train.log");
    assert!(
        log.contains("stage{name=relay replica=1}: started"),
        "{log}"
    );
    assert!(log.contains("run finished exit_code=0"), "{log}");
}

#[test]
fn exec_stage_replaces_builtin() {
    let program = format!(
        "stages.external.program=\"{}\"",
        env!("CARGO_BIN_EXE_ccssl-exec-relay")
    );
    let graph = repo_root().join("tests/fixtures/exec-relay.ron");
    let mut run = Run::start(&graph, &[&program]);
    let status = run.wait_exit(RUN_TIMEOUT).expect("exec run timed out");
    assert_eq!(status.code(), Some(0), "stderr:\n{}", run.stderr());
    assert_eq!(
        run.summary("sink"),
        "received 2000\nduplicates_dropped 0\nstopped_early false\n"
    );
    assert!(segments_of(run.pid()).is_empty());
}

#[test]
fn replica_counts_do_not_change_result() {
    // The sink checks every payload's bytes against the source's formula and their order, so
    // equal summaries mean equal streams, whatever the replica counts.
    let graph = repo_root().join("tests/fixtures/two-relays.ron");
    for sets in [
        vec!["stages.first.replicas=1", "stages.second.replicas=1"],
        vec![],
        vec!["stages.first.replicas=4", "stages.second.replicas=2"],
    ] {
        let mut run = Run::start(&graph, &sets);
        let status = run.wait_exit(RUN_TIMEOUT).expect("run timed out");
        assert_eq!(status.code(), Some(0), "{sets:?} stderr:\n{}", run.stderr());
        assert_eq!(
            run.summary("sink"),
            "received 3000\nduplicates_dropped 0\nstopped_early false\n",
            "{sets:?}"
        );
        assert!(segments_of(run.pid()).is_empty(), "{sets:?} left segments");
    }
}

#[test]
fn killed_stage_fails_run_within_two_seconds() {
    for (stage, replica) in [("source", 0), ("relay", 1), ("sink", 0)] {
        let mut sets = ENDLESS.to_vec();
        sets.push("stages.relay.restart=Never");
        let mut run = Run::start(&smoke_graph(), &sets);
        let pids = run.wait_pids(4);
        run.wait_sink_items(50);
        let target = pids
            .iter()
            .find(|p| p.stage == stage && p.replica == replica)
            .unwrap_or_else(|| panic!("no {stage} replica {replica} in {pids:?}"));
        send_signal(target.pid, libc::SIGKILL);
        let killed_at = Instant::now();
        let status = run
            .wait_exit(Duration::from_secs(10))
            .expect("supervisor did not exit after a kill");
        let took = killed_at.elapsed();
        assert!(
            took < Duration::from_secs(2),
            "supervisor took {took:?} after {stage} was killed"
        );
        assert_eq!(status.code(), Some(1), "stderr:\n{}", run.stderr());
        let named = format!(
            "ccssl-run: stage \"{stage}\" replica {replica} (pid {}) was killed by signal 9 (SIGKILL)",
            target.pid
        );
        assert!(
            run.stderr().contains(&named),
            "missing {named:?} in:\n{}",
            run.stderr()
        );
        assert!(
            segments_of(run.pid()).is_empty(),
            "segments left after killing {stage}"
        );
    }
}

#[test]
fn sigint_stops_gracefully_with_130() {
    let mut run = Run::start(&smoke_graph(), ENDLESS);
    run.wait_pids(4);
    run.wait_sink_items(50);
    send_signal(run.pid(), libc::SIGINT);
    let status = run
        .wait_exit(Duration::from_secs(30))
        .expect("no exit after SIGINT");
    assert_eq!(status.code(), Some(130), "stderr:\n{}", run.stderr());
    assert!(
        run.stderr().contains("ccssl-run: stopping gracefully"),
        "{}",
        run.stderr()
    );
    // The sink drained what the source sent before it stopped, and checked all of it.
    let summary = run.summary("sink");
    assert!(
        summary.ends_with("duplicates_dropped 0\nstopped_early true\n"),
        "{summary}"
    );
    let received: u64 = summary
        .lines()
        .next()
        .and_then(|l| l.strip_prefix("received "))
        .and_then(|n| n.parse().ok())
        .expect("received count");
    assert!(received >= 50, "{summary}");
    assert!(segments_of(run.pid()).is_empty());
}

#[test]
fn restarted_replica_loses_and_repeats_nothing() {
    let sets = [
        "stages.source.count=4000",
        "stages.sink.expect=Some(4000)",
        "stages.relay.work_us=500",
        "stages.relay.restart=OnFailure(max: 3)",
    ];
    let mut run = Run::start(&smoke_graph(), &sets);
    let pids = run.wait_pids(4);
    run.wait_sink_items(200);
    let victim = pids
        .iter()
        .find(|p| p.stage == "relay" && p.replica == 1)
        .expect("relay replica 1");
    send_signal(victim.pid, libc::SIGKILL);
    let status = run
        .wait_exit(RUN_TIMEOUT)
        .expect("run with a restart timed out");
    assert_eq!(status.code(), Some(0), "stderr:\n{}", run.stderr());
    let stderr = run.stderr();
    let restarted =
        "ccssl-run: stage \"relay\" replica 1 was killed by signal 9 (SIGKILL); restarted as pid";
    assert!(
        stderr.contains(restarted),
        "missing {restarted:?} in:\n{stderr}"
    );
    // The sink checks order and content itself; every payload arrived exactly once.
    let summary = run.summary("sink");
    assert!(summary.starts_with("received 4000\n"), "{summary}");
    assert!(summary.ends_with("stopped_early false\n"), "{summary}");
    assert!(segments_of(run.pid()).is_empty());
}

#[test]
fn stale_segment_of_dead_run_is_removed() {
    let mut exited = Command::new("true").spawn().expect("spawn true");
    let dead_pid = exited.id();
    exited.wait().expect("wait for true");
    let stale = PathBuf::from(format!("/dev/shm/ccssl-{dead_pid}.0-stale-edge"));
    std::fs::write(&stale, b"left by a killed run").expect("write stale segment");

    let mut run = Run::start(
        &smoke_graph(),
        &["stages.source.count=10", "stages.sink.expect=10"],
    );
    let status = run.wait_exit(RUN_TIMEOUT).expect("run timed out");
    let still_there = stale.exists();
    let _ = std::fs::remove_file(&stale);
    assert_eq!(status.code(), Some(0), "stderr:\n{}", run.stderr());
    assert!(!still_there, "{} was not removed", stale.display());
    // The removal is not looked up in this run's log: a run of a concurrent test may have
    // removed the segment first.
}

#[test]
fn failed_start_leaves_nothing_behind() {
    // An executable whose interpreter does not exist passes validation but cannot be started.
    let dir = TempDir::new("bad-exec");
    let program = dir.path().join("broken-stage");
    std::fs::write(&program, "#!/nonexistent/interpreter\n").expect("write script");
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&program, std::fs::Permissions::from_mode(0o755)).expect("chmod");

    let set = format!("stages.external.program=\"{}\"", program.display());
    let graph = repo_root().join("tests/fixtures/exec-relay.ron");
    let mut run = Run::start(&graph, &[&set]);
    let status = run.wait_exit(RUN_TIMEOUT).expect("run timed out");
    let stderr = run.stderr();
    assert_eq!(status.code(), Some(1), "stderr:\n{stderr}");
    assert!(
        stderr.contains("stage \"external\" replica 0: cannot start "),
        "{stderr}"
    );
    assert!(segments_of(run.pid()).is_empty(), "segments left");
    assert!(
        entries(&run.out.path().join("runs")).is_empty(),
        "run directory left"
    );
}

/// Returns whether `pid` is gone or a zombie.
fn process_gone(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state follows the command name, which is in parentheses.
        Ok(stat) => stat
            .rsplit(')')
            .next()
            .is_some_and(|rest| rest.trim_start().starts_with('Z')),
        Err(_) => true,
    }
}

#[test]
fn killed_supervisor_takes_stages_along() {
    let mut run = Run::start(&smoke_graph(), ENDLESS);
    let pids = run.wait_pids(4);
    run.wait_sink_items(20);
    send_signal(run.pid(), libc::SIGKILL);
    run.wait_exit(Duration::from_secs(10))
        .expect("supervisor survived SIGKILL");

    // PR_SET_PDEATHSIG kills every stage with the supervisor.
    for stage in &pids {
        let gone = wait_for(Duration::from_secs(5), || {
            process_gone(stage.pid).then_some(())
        });
        assert!(
            gone.is_some(),
            "{} replica {} (pid {}) outlived the supervisor",
            stage.stage,
            stage.replica,
            stage.pid
        );
    }

    // Its segments stay behind until a run starts and removes them. Another test's run may
    // already have done so, so only their absence afterwards is checked.
    let mut next = Run::start(
        &smoke_graph(),
        &["stages.source.count=10", "stages.sink.expect=10"],
    );
    let status = next.wait_exit(RUN_TIMEOUT).expect("next run timed out");
    assert_eq!(status.code(), Some(0), "stderr:\n{}", next.stderr());
    assert!(
        segments_of(run.pid()).is_empty(),
        "stale segments of the killed run were kept"
    );
}

#[test]
fn second_sigint_kills_stages() {
    // Slow relays make the graceful drain take seconds, so the second signal arrives during it.
    let sets = [
        "stages.source.count=1000000000",
        "stages.sink.expect=None",
        "stages.relay.work_us=300000",
    ];
    let mut run = Run::start(&smoke_graph(), &sets);
    run.wait_pids(4);
    run.wait_sink_items(1);
    send_signal(run.pid(), libc::SIGINT);
    let stopping = wait_for(Duration::from_secs(10), || {
        run.stderr()
            .contains("ccssl-run: stopping gracefully")
            .then_some(())
    });
    assert!(stopping.is_some(), "no graceful stop:\n{}", run.stderr());
    send_signal(run.pid(), libc::SIGINT);
    let status = run
        .wait_exit(Duration::from_secs(5))
        .expect("no exit after a second SIGINT");
    assert_eq!(status.code(), Some(130), "stderr:\n{}", run.stderr());
    assert!(
        run.stderr()
            .contains("ccssl-run: killing the stages: a second stop signal"),
        "{}",
        run.stderr()
    );
    assert!(segments_of(run.pid()).is_empty());
}
