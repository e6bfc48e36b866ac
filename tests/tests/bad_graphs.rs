//! Every malformed graph under `tests/fixtures/bad-graphs/` makes both `ccssl-run` and
//! `ccssl graph check` exit 2 with one stderr line naming the place, the stage or edge, the bad
//! value and what is accepted, and leaves no shared-memory segment and no run directory.

use std::path::{Path, PathBuf};
use std::process::Command;

use ccssl_tests::{TempDir, ccssl_bin, entries, repo_root, segments_of};

/// Expected content of the one message after `ccssl-run: ` / `ccssl: `.
enum Expected {
    /// The whole message after the fixture path (which the test prepends).
    Exact(&'static str),
    /// Parts the message must contain, for messages with machine-dependent numbers.
    Contains(&'static [&'static str]),
}

use Expected::{Contains, Exact};

const CASES: &[(&str, Expected)] = &[
    (
        "syntax-error.ron",
        Exact(":4:5: expected comma, found `stages`"),
    ),
    (
        "unknown-field.ron",
        Exact(
            ":5:44: stage \"relay\": unknown field `workers`; expected one of `replicas`, `restart`, `work_us`",
        ),
    ),
    (
        "unknown-kind.ron",
        Exact(
            ":5:27: stage \"relay\": unknown kind `Augmenter`; expected one of `Source`, `Relay`, `Sink`, `Exec`, `Loader`, `Augment`, `ViewSink`, `Step`, `Ema`",
        ),
    ),
    (
        "edge-to-missing-stage.ron",
        Exact(
            ":10:33: edge \"relay -> snik\": no stage named \"snik\"; expected one of \"source\", \"relay\", \"sink\"",
        ),
    ),
    (
        "cycle.ron",
        Exact(
            ":10:9: edge \"left -> right\": cycle right -> left -> right; expected a graph without cycles",
        ),
    ),
    (
        "zero-slots.ron",
        Exact(":10:48: edge \"relay -> sink\": invalid slots 0; expected 1 to 4096"),
    ),
    (
        "too-many-slots.ron",
        Exact(":9:50: edge \"source -> relay\": invalid slots 100000; expected 1 to 4096"),
    ),
    (
        "shm-too-small.ron",
        Contains(&[
            ":9:50: edge \"source -> relay\": rings need ",
            "4000 slots of 1073741824 bytes",
            "bytes free; expected fewer slots or a smaller slot_bytes",
        ]),
    ),
    (
        "slot-bytes-too-large.ron",
        Exact(
            ":9:65: edge \"source -> relay\": invalid slot_bytes 2147483648; expected 1 to 1073741824 (1 GiB)",
        ),
    ),
    (
        "slot-bytes-too-small.ron",
        Exact(
            ":9:65: edge \"source -> relay\": slot_bytes 64 is smaller than the 4224 bytes stage \"source\" writes per item; expected at least 4224",
        ),
    ),
    (
        "duplicate-stage.ron",
        Exact(":7:9: stage \"relay\": duplicate stage name; expected each stage name once"),
    ),
    (
        "exec-missing-program.ron",
        Contains(&[
            ":5:32: stage \"relay\": Exec program \"ccssl-no-such-stage-program\" not found in ",
            "; expected an executable file given as an absolute path, a path relative to the graph file, or a name found beside ccssl-run or in PATH",
        ]),
    ),
    (
        "replicas-on-stateful.ron",
        Exact(
            ":6:32: stage \"sink\": replicas 2 on a stateful Sink stage; expected 1, because only stateless stages can be replicated",
        ),
    ),
    (
        "restart-on-stateful.ron",
        Exact(
            ":4:46: stage \"source\": restart OnFailure(max: 2) on a stateful Source stage; expected Never, because a respawned stateful stage would lose its state",
        ),
    ),
    (
        "zero-replicas.ron",
        Exact(":5:34: stage \"relay\": invalid replicas 0; expected 1 to 64"),
    ),
    (
        "too-many-replicas.ron",
        Exact(":5:34: stage \"relay\": invalid replicas 500; expected 1 to 64"),
    ),
    (
        "restart-max-zero.ron",
        Exact(":5:48: stage \"relay\": invalid restart max 0; expected 1 to 1000"),
    ),
    (
        "self-loop.ron",
        Exact(
            ":11:32: edge \"sink -> sink\": edge from a stage to itself; expected two different stages",
        ),
    ),
    (
        "duplicate-edge.ron",
        Exact(
            ":11:9: edge \"relay -> sink\": duplicate edge; expected at most one edge between two stages",
        ),
    ),
    (
        "missing-slots.ron",
        Exact(":10:39: edge \"relay -> sink\": missing field `slots`; expected `slots: VALUE`"),
    ),
    (
        "wrong-type.ron",
        Exact(":10:48: edge \"relay -> sink\": expected integer, found `\"four\"`"),
    ),
    (
        "invalid-graph-name.ron",
        Exact(
            ":2:11: graph: invalid name \"../escape\"; expected 1 to 64 letters, digits, '_', '-' or '.', not starting with '.'",
        ),
    ),
    (
        "no-stages.ron",
        Exact(
            ":3:13: graph: no stages; expected at least one, such as \"source\": Source(count: 100)",
        ),
    ),
    (
        "sink-without-input.ron",
        Exact(":7:19: stage \"orphan\": 0 input edges; a Sink stage takes at least 1"),
    ),
    (
        "source-count-zero.ron",
        Exact(":4:33: stage \"source\": invalid count 0; expected at least 1"),
    ),
    (
        "invalid-stage-name.ron",
        Exact(
            ":5:19: stage \"re lay\": invalid stage name; expected 1 to 32 letters, digits, '_' or '-', starting with a letter",
        ),
    ),
];

fn fixture(name: &str) -> PathBuf {
    repo_root().join("tests/fixtures/bad-graphs").join(name)
}

/// Runs `command`, returning its exit code, its stderr and its pid.
fn run(mut command: Command) -> (Option<i32>, String, u32) {
    let child = command
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("start the binary");
    let pid = child.id();
    let output = child.wait_with_output().expect("wait for the binary");
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
        pid,
    )
}

fn check_message(program: &str, file: &Path, stderr: &str, expected: &Expected) {
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(
        lines.len(),
        1,
        "{program} on {} printed {} lines:\n{stderr}",
        file.display(),
        lines.len()
    );
    let prefix = format!("{program}: {}", file.display());
    let line = lines[0];
    match expected {
        Exact(rest) => assert_eq!(line, format!("{prefix}{rest}")),
        Contains(parts) => {
            assert!(line.starts_with(&prefix), "{line}");
            for part in *parts {
                assert!(line.contains(part), "missing {part:?} in: {line}");
            }
        }
    }
}

#[test]
fn fixture_count_is_at_least_fifteen() {
    let files = entries(&repo_root().join("tests/fixtures/bad-graphs"));
    assert!(files.len() >= 15, "only {} bad graphs", files.len());
    // Every fixture on disk has a case, so none is silently skipped.
    for file in files {
        let name = file.file_name().unwrap().to_string_lossy().into_owned();
        assert!(
            CASES.iter().any(|(case, _)| *case == name),
            "no test case for {name}"
        );
    }
}

#[test]
fn graph_check_rejects_each_bad_graph() {
    let ccssl = ccssl_bin("ccssl");
    for (name, expected) in CASES {
        let file = fixture(name);
        let mut command = Command::new(&ccssl);
        command.arg("graph").arg("check").arg(&file);
        let (code, stderr, _) = run(command);
        assert_eq!(code, Some(2), "ccssl graph check {name}: {stderr}");
        check_message("ccssl", &file, &stderr, expected);
    }
}

#[test]
fn ccssl_run_rejects_each_bad_graph_cleanly() {
    let ccssl_run = ccssl_bin("ccssl-run");
    for (name, expected) in CASES {
        let file = fixture(name);
        let out = TempDir::new("bad-graph");
        let runs = out.path().join("runs");
        let mut command = Command::new(&ccssl_run);
        command.arg(&file).arg("--headless").arg("--out").arg(&runs);
        let (code, stderr, pid) = run(command);
        assert_eq!(code, Some(2), "ccssl-run {name}: {stderr}");
        check_message("ccssl-run", &file, &stderr, expected);
        assert_eq!(
            segments_of(pid),
            Vec::<PathBuf>::new(),
            "{name} left segments"
        );
        assert_eq!(
            entries(&runs),
            Vec::<PathBuf>::new(),
            "{name} left a run directory"
        );
    }
}

#[test]
fn bad_override_exits_two_naming_the_path() {
    let ccssl_run = ccssl_bin("ccssl-run");
    let out = TempDir::new("bad-set");
    let graph = repo_root().join("graphs/pipe-smoke.ron");
    let cases = [
        (
            "stages.relay.replicas=0",
            "ccssl-run: --set stages.relay.replicas=0: stage \"relay\": invalid replicas 0; expected 1 to 64",
        ),
        (
            "stages.relya.replicas=2",
            "ccssl-run: --set stages.relya.replicas=2: `stages` has no `relya`; it contains source, relay, sink",
        ),
        (
            "stages.relay.replicas",
            "ccssl-run: --set stages.relay.replicas: expected PATH=VALUE, such as stages.relay.replicas=3",
        ),
    ];
    for (set, expected) in cases {
        let mut command = Command::new(&ccssl_run);
        command
            .arg(&graph)
            .arg("--set")
            .arg(set)
            .arg("--out")
            .arg(out.path());
        let (code, stderr, pid) = run(command);
        assert_eq!(code, Some(2), "{set}: {stderr}");
        assert_eq!(stderr.trim_end(), expected);
        assert!(segments_of(pid).is_empty(), "{set} left segments");
        assert!(entries(out.path()).is_empty(), "{set} left a run directory");
    }
}

#[test]
fn missing_graph_file_exits_two() {
    let ccssl_run = ccssl_bin("ccssl-run");
    let mut command = Command::new(&ccssl_run);
    command.arg("/nonexistent/graph.ron");
    let (code, stderr, _) = run(command);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.starts_with("ccssl-run: /nonexistent/graph.ron: cannot read the graph file: "),
        "{stderr}"
    );
}

#[test]
fn unknown_flag_exits_two_with_prefixed_lines() {
    let ccssl_run = ccssl_bin("ccssl-run");
    let mut command = Command::new(&ccssl_run);
    command.arg("--no-such-flag");
    let (code, stderr, _) = run(command);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.lines().all(|l| l.starts_with("ccssl-run: ")),
        "{stderr}"
    );
    assert!(stderr.contains("--no-such-flag"), "{stderr}");
}
