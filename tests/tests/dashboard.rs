//! The terminal dashboard end to end, on the smoke training graph. `ccssl-run` inside a
//! private tmux server shows a row with a non-zero rate for every stage, stops after `q` and
//! its confirmation, exits 0 and leaves its final checkpoint. `ccssl dash` attached to a second
//! run shows the same stage rows. Every wait polls the pane or the run directory with a
//! deadline.
//!
//! Needs `tmux` on the PATH (CI installs it); without it the test fails and says so.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use ccssl_ema::{EndRecord, EndStatus, MetricsRecord, read_records, verify_dir};
use ccssl_tests::{TempDir, ccssl_bin, entries, read_pids, repo_root, send_signal, wait_for};

/// Graph the test runs, which trains a tiny WideResNet on synthetic data for 30 steps unless
/// overridden.
const GRAPH: &str = "graphs/smoke.ron";

/// Stages of [`GRAPH`], in the order its `pids` file lists them.
const STAGES: &[&str] = &["loader", "augment", "step", "ema"];

/// Schedule length that keeps [`GRAPH`] running until it is stopped. At a few steps per
/// second it would take days.
const KEEP_RUNNING_STEPS: u64 = 1_000_000;

/// Graph values set to [`KEEP_RUNNING_STEPS`], the schedule lengths of the loader and the
/// step, which must agree.
const SCHEDULES: &[&str] = &["stages.loader.total_steps", "stages.step.total_steps"];

/// Generous limit for each wait: debug builds on a loaded two-core machine are slow.
const TIMEOUT: Duration = Duration::from_secs(120);

/// Pane size of the tmux sessions, in columns and rows.
const PANE: (u32, u32) = (100, 30);

/// A tmux server on its own socket, apart from the user's sessions, and killed on drop.
struct Tmux {
    socket: String,
}

impl Tmux {
    fn new(label: &str) -> Tmux {
        let socket = format!("ccssl-test-{label}-{}", std::process::id());
        Tmux { socket }
    }

    fn command(&self) -> Command {
        let mut command = Command::new("tmux");
        command
            .arg("-L")
            .arg(&self.socket)
            .env("TERM", "xterm-256color");
        command
    }

    fn run(&self, args: &[&str]) -> Output {
        let output = self
            .command()
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("tmux not found; install tmux to run the dashboard test");
        assert!(
            output.status.success(),
            "tmux {args:?} failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        output
    }

    /// Starts a detached session `name` that runs `script` with `sh`.
    fn start(&self, name: &str, script: &Path) {
        let (columns, rows) = (PANE.0.to_string(), PANE.1.to_string());
        let command = format!("sh {}", script.display());
        self.run(&[
            "new-session",
            "-d",
            "-s",
            name,
            "-x",
            &columns,
            "-y",
            &rows,
            &command,
        ]);
    }

    /// Text of the session's pane; empty once the session has ended.
    fn capture(&self, name: &str) -> String {
        let output = self
            .command()
            .args(["capture-pane", "-p", "-t", name])
            .stdin(Stdio::null())
            .output()
            .expect("run tmux capture-pane");
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    fn send_key(&self, name: &str, key: &str) {
        self.run(&["send-keys", "-t", name, key]);
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = self
            .command()
            .arg("kill-server")
            .stderr(Stdio::null())
            .status();
    }
}

/// Writes a script that runs `program args...` and then writes its exit code to `exit_file`.
fn wrapper_script(dir: &Path, name: &str, program: &Path, args: &[String]) -> PathBuf {
    let quote = |s: &str| format!("'{}'", s.replace('\'', r"'\''"));
    let mut line = quote(&program.to_string_lossy());
    for arg in args {
        line.push(' ');
        line.push_str(&quote(arg));
    }
    let exit_file = dir.join(format!("{name}.exit"));
    let script = format!(
        "{line} 2>{}\necho $? > {}\n",
        quote(&dir.join(format!("{name}.stderr")).to_string_lossy()),
        quote(&exit_file.to_string_lossy())
    );
    let path = dir.join(format!("{name}.sh"));
    std::fs::write(&path, script).expect("write wrapper script");
    path
}

/// Arguments of a `ccssl-run` of [`GRAPH`] that runs until it is stopped and creates its run
/// directory under `out`.
fn run_args(out: &Path) -> Vec<String> {
    let mut args = vec![
        repo_root().join(GRAPH).display().to_string(),
        "--out".to_string(),
        out.display().to_string(),
    ];
    for path in SCHEDULES {
        args.push("--set".to_string());
        args.push(format!("{path}={KEEP_RUNNING_STEPS}"));
    }
    args
}

/// Waits for the single run directory under `runs` and the stage names its `pids` lists.
fn run_dir_and_stages(runs: &Path) -> (PathBuf, Vec<String>) {
    wait_for(TIMEOUT, || {
        let dir = entries(runs).into_iter().next()?;
        let mut stages: Vec<String> = read_pids(&dir).into_iter().map(|p| p.stage).collect();
        stages.dedup();
        (!stages.is_empty()).then_some((dir, stages))
    })
    .expect("the run directory and its pids file never appeared")
}

/// Items per second in the stage table row of `stage`, if the pane shows one. The row reads
/// `stage state pid rep items/s img/s busy% in-w% out-w% rst`, maybe behind a `▶` marker.
fn row_rate(pane: &str, stage: &str) -> Option<f64> {
    pane.lines().find_map(|line| {
        let inner = line.trim_matches(|c: char| c == '│' || c.is_whitespace());
        let inner = inner.trim_start_matches('▶').trim_start();
        let fields: Vec<&str> = inner.split_whitespace().collect();
        if fields.len() < 10 || fields[0] != stage {
            return None;
        }
        let rate = fields[4];
        match rate.strip_suffix('M') {
            Some(millions) => millions.parse::<f64>().ok().map(|m| m * 1e6),
            None => rate.parse().ok(),
        }
    })
}

/// Waits until the pane of `session` shows a row with a non-zero rate for every stage, and
/// returns that pane.
fn wait_rows_with_rates(tmux: &Tmux, session: &str, stages: &[String]) -> String {
    let mut last = String::new();
    let pane = wait_for(TIMEOUT, || {
        last = tmux.capture(session);
        let all = stages
            .iter()
            .all(|s| row_rate(&last, s).is_some_and(|rate| rate > 0.0));
        all.then(|| last.clone())
    });
    pane.unwrap_or_else(|| panic!("not every stage of {stages:?} showed a rate; pane:\n{last}"))
}

fn wait_exit_code(dir: &Path, name: &str) -> Option<i32> {
    let path = dir.join(format!("{name}.exit"));
    wait_for(TIMEOUT, || {
        let text = std::fs::read_to_string(&path).ok()?;
        text.trim().parse().ok()
    })
}

/// Reads the `end` record, which the supervisor writes as the last line of `metrics.jsonl`.
fn end_record(run_dir: &Path) -> EndRecord {
    let path = run_dir.join("metrics.jsonl");
    let records = read_records(&path).unwrap_or_else(|err| panic!("{err}"));
    match records.last() {
        Some(MetricsRecord::End(end)) => *end,
        last => panic!(
            "the last record of {} is not `end`: {last:?}",
            path.display()
        ),
    }
}

/// Asserts that `checkpoints/last` of the run directory points to the checkpoint of `step`,
/// that its files match the sizes and digests in its `state.ron`, and that it contains the
/// model, EMA and optimizer tensors.
fn assert_final_checkpoint(run_dir: &Path, step: u64) {
    let last = run_dir.join("checkpoints").join("last");
    let target = std::fs::read_link(&last)
        .unwrap_or_else(|err| panic!("{} is not a link: {err}", last.display()));
    assert_eq!(
        target,
        Path::new(&format!("step-{step:08}")),
        "{} points elsewhere than the checkpoint of step {step}",
        last.display()
    );

    let state = verify_dir(&last).unwrap_or_else(|err| panic!("{err}"));
    assert_eq!(state.step, step, "step in {}/state.ron", last.display());
    for name in [
        "model.safetensors",
        "ema.safetensors",
        "optimizer.safetensors",
    ] {
        let file = last.join(name);
        assert!(file.is_file(), "{} is missing", file.display());
        assert!(
            state.files.iter().any(|f| f.name == name),
            "state.ron does not list {name}: {:?}",
            state.files
        );
    }
}

#[test]
fn dashboard_shows_stages_and_stops_on_q() {
    let out = TempDir::new("dashboard");
    let tmux = Tmux::new("dash");
    let runs = out.path().join("runs-a");
    let script = wrapper_script(out.path(), "a", &ccssl_bin("ccssl-run"), &run_args(&runs));
    tmux.start("a", &script);

    let (run_dir, stages) = run_dir_and_stages(&runs);
    assert_eq!(stages, STAGES, "stages in the pids file");
    let pane = wait_rows_with_rates(&tmux, "a", &stages);
    assert!(pane.contains("┌ stages"), "{pane}");
    assert!(pane.contains("┌ rings"), "{pane}");
    let stderr = std::fs::read_to_string(out.path().join("a.stderr")).unwrap_or_default();
    assert_eq!(
        stderr, "",
        "nothing may print to stderr under the dashboard"
    );

    tmux.send_key("a", "q");
    let confirm = wait_for(TIMEOUT, || {
        let pane = tmux.capture("a");
        pane.contains("Stop the run?").then_some(pane)
    });
    assert!(confirm.is_some(), "no confirmation after q");
    tmux.send_key("a", "y");

    let code = wait_exit_code(out.path(), "a");
    let stderr = std::fs::read_to_string(out.path().join("a.stderr")).unwrap_or_default();
    assert_eq!(code, Some(0), "stderr:\n{stderr}");
    assert!(
        stderr.starts_with("ccssl-run: stopped; run directory"),
        "only the closing line prints, after the terminal is restored: {stderr}"
    );
    let end = end_record(&run_dir);
    assert_eq!(end.status, EndStatus::Stopped, "{end:?}");
    assert_eq!(end.total_steps, KEEP_RUNNING_STEPS, "{end:?}");
    assert!(end.step > 0, "stopped before the first step: {end:?}");
    assert!(
        end.step < end.total_steps,
        "the run finished by itself: {end:?}"
    );
    assert_final_checkpoint(&run_dir, end.step);
    let log = std::fs::read_to_string(run_dir.join("train.log")).expect("train.log");
    assert!(log.contains("stop requested from the dashboard"), "{log}");
    // Every stage exits by itself: none waits out the grace period and gets killed.
    assert!(!log.contains("killing the remaining stages"), "{log}");
    for stage in STAGES {
        let exited = format!("stage exited stage={stage} ");
        assert!(log.contains(&exited), "no clean exit of {stage}:\n{log}");
    }
}

/// A headless `ccssl-run` process, killed on drop so a failed assertion leaves none behind.
struct Background(Child);

impl Drop for Background {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn attached_dashboard_shows_stage_rows() {
    let out = TempDir::new("dash-attach");
    let runs = out.path().join("runs-b");
    let child = Command::new(ccssl_bin("ccssl-run"))
        .args(run_args(&runs))
        .arg("--headless")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start ccssl-run");
    let mut run = Background(child);
    let (run_dir, stages) = run_dir_and_stages(&runs);
    assert_eq!(stages, STAGES, "stages in the pids file");

    let tmux = Tmux::new("attach");
    let args = ["dash".to_string(), run_dir.display().to_string()];
    let script = wrapper_script(out.path(), "c", &ccssl_bin("ccssl"), &args);
    tmux.start("c", &script);
    let pane = wait_rows_with_rates(&tmux, "c", &stages);
    assert!(pane.contains("q quit"), "{pane}");

    tmux.send_key("c", "q");
    let confirm = wait_for(TIMEOUT, || {
        tmux.capture("c")
            .contains("Leave the dashboard?")
            .then_some(())
    });
    assert!(confirm.is_some(), "no confirmation after q");
    tmux.send_key("c", "y");
    assert_eq!(wait_exit_code(out.path(), "c"), Some(0));
    assert!(
        run.0.try_wait().expect("try_wait").is_none(),
        "leaving the attached dashboard must not stop the run"
    );

    // SIGINT stops the run after its final checkpoint, with exit code 130.
    send_signal(run.0.id(), libc::SIGINT);
    let status = wait_for(TIMEOUT, || run.0.try_wait().expect("try_wait"));
    assert_eq!(status.and_then(|s| s.code()), Some(130));
    let end = end_record(&run_dir);
    assert_eq!(end.status, EndStatus::Stopped, "{end:?}");
    assert_eq!(end.total_steps, KEEP_RUNNING_STEPS, "{end:?}");
    assert!(
        end.step < end.total_steps,
        "the run finished by itself: {end:?}"
    );
    assert_final_checkpoint(&run_dir, end.step);

    // Once the run is over, `ccssl dash` prints its summary and exits 3.
    let output = Command::new(ccssl_bin("ccssl"))
        .arg("dash")
        .arg(&run_dir)
        .output()
        .expect("run ccssl dash");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(3), "{stdout}");
    assert!(stdout.contains("has finished"), "{stdout}");
    assert!(stdout.contains("ended: stopped on request"), "{stdout}");
}

#[test]
fn headless_prints_progress_lines() {
    let out = TempDir::new("dash-headless");
    let runs = out.path().join("runs");
    let child = Command::new(ccssl_bin("ccssl-run"))
        .arg(repo_root().join(GRAPH))
        .arg("--out")
        .arg(&runs)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start ccssl-run");
    let supervisor_pid = child.id();
    let output = child.wait_with_output().expect("wait for ccssl-run");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(0), "stderr:\n{stderr}");

    // Progress lines, then the end-of-run summary.
    let all: Vec<&str> = stdout.lines().collect();
    let summary_at = all
        .iter()
        .position(|line| line.starts_with("ended: "))
        .unwrap_or_else(|| panic!("no summary after the progress lines:\n{stdout}"));
    let (lines, summary) = all.split_at(summary_at);
    assert_eq!(summary[0], "ended: completed at step 30/30");
    assert!(
        summary.iter().any(|l| l.starts_with("  EMA best ")),
        "{stdout}"
    );
    assert!(
        summary.iter().any(|l| l.starts_with("  raw best ")),
        "{stdout}"
    );
    assert!(!lines.is_empty(), "no progress line; stderr:\n{stderr}");
    for line in lines {
        assert!(line.starts_with("step "), "{line}");
        assert!(line.contains(" img/s | ETA "), "{line}");
        // `img/s`, then one `NAME RATE/s` per stage.
        assert!(line.matches("/s").count() >= 2, "no stage rates: {line}");
    }
    assert!(
        !stderr.contains("step "),
        "progress lines belong on stdout: {stderr}"
    );

    let run_dir = entries(&runs).into_iter().next().expect("run directory");
    let end = end_record(&run_dir);
    assert_eq!(end.status, EndStatus::Completed, "{end:?}");
    assert!(end.step > 0, "{end:?}");
    assert_eq!(end.step, end.total_steps, "{end:?}");
    assert_final_checkpoint(&run_dir, end.step);
    let pid = std::fs::read_to_string(run_dir.join("supervisor.pid")).expect("supervisor.pid");
    assert_eq!(pid.trim().parse::<u32>().ok(), Some(supervisor_pid));
}
