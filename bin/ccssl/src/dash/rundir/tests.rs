use std::process::Command;

use super::*;

/// Creates a fresh run directory under the system temp dir, with only its graph.ron.
fn run_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("ccssl-dash-rundir-{}-{name}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).unwrap();
    fs::write(
        dir.join("graph.ron"),
        "Graph(name: \"g\", stages: {}, edges: [])\n",
    )
    .unwrap();
    dir
}

const TRAIN: &str = r#"{"kind":"train","step":200,"lr":0.0299,"loss":2.0,"loss_x":0.25,"loss_u":0.5,"loss_c":1.25,"mask_ratio":0.75,"pseudo_label_acc":0.9,"time_ns":1}"#;
const EVAL_1: &str = r#"{"kind":"eval","step":100,"top1_ema":40.5,"top1_raw":38.25,"top5_ema":88.0,"loss_ema":1.75,"top5_raw":87.0,"loss_raw":1.8,"images":10000}"#;
const EVAL_2: &str = r#"{"kind":"eval","step":200,"top1_ema":39.0,"top1_raw":41.0,"top5_ema":89.5,"loss_ema":1.5,"top5_raw":88.0,"loss_raw":1.6,"images":10000}"#;
const END: &str = r#"{"kind":"end","step":200,"total_steps":200,"status":"completed","time_ns":2}"#;

fn write_metrics(dir: &Path, lines: &[&str]) {
    fs::write(dir.join(METRICS_FILE), lines.join("\n") + "\n").unwrap();
}

/// Pid of a process that has exited and been reaped.
fn dead_pid() -> u32 {
    let mut child = Command::new("true").spawn().unwrap();
    let pid = child.id();
    child.wait().unwrap();
    pid
}

#[test]
fn missing_directory_is_an_error() {
    let err = run_status(Path::new("/nonexistent/runs/x")).unwrap_err();
    assert!(matches!(err, RunDirError::NotFound { .. }));
    assert!(err.to_string().contains("/nonexistent/runs/x"), "{err}");
}

#[test]
fn directory_without_graph_is_not_a_run() {
    let dir = run_dir("plain");
    fs::remove_file(dir.join("graph.ron")).unwrap();
    let err = run_status(&dir).unwrap_err();
    assert!(matches!(err, RunDirError::NotARun { .. }), "{err}");
    assert!(
        err.to_string().contains("not a ccssl run directory"),
        "{err}"
    );
}

#[test]
fn run_without_records_is_not_running() {
    let dir = run_dir("empty");
    let status = run_status(&dir).unwrap();
    assert_eq!(status, RunStatus::NotRunning(RunSummary::default()));
    let message = status.describe(&dir);
    assert!(message.contains("is not running"), "{message}");
    assert!(
        message.contains("no training records in metrics.jsonl"),
        "{message}"
    );
}

#[test]
fn live_supervisor_is_running() {
    let dir = run_dir("live");
    write_metrics(&dir, &[TRAIN]);
    let pid = std::process::id();
    fs::write(dir.join(SUPERVISOR_PID_FILE), format!("{pid}\n")).unwrap();
    assert_eq!(
        run_status(&dir).unwrap(),
        RunStatus::Running {
            supervisor_pid: pid
        }
    );
}

#[test]
fn dead_supervisor_is_not_running() {
    let dir = run_dir("dead");
    write_metrics(&dir, &[TRAIN, EVAL_1]);
    fs::write(dir.join(SUPERVISOR_PID_FILE), dead_pid().to_string()).unwrap();
    let RunStatus::NotRunning(summary) = run_status(&dir).unwrap() else {
        panic!("a dead supervisor must not count as running");
    };
    assert_eq!(summary.last_train.map(|t| t.step), Some(200));
    assert_eq!(summary.evals.len(), 1);
}

#[test]
fn garbage_pid_file_is_not_running() {
    let dir = run_dir("garbage-pid");
    fs::write(dir.join(SUPERVISOR_PID_FILE), "not a pid").unwrap();
    assert!(matches!(
        run_status(&dir).unwrap(),
        RunStatus::NotRunning(_)
    ));
}

#[test]
fn end_record_means_finished_even_with_live_pid() {
    let dir = run_dir("finished");
    write_metrics(&dir, &[TRAIN, EVAL_1, EVAL_2, END]);
    fs::write(
        dir.join(SUPERVISOR_PID_FILE),
        std::process::id().to_string(),
    )
    .unwrap();
    let status = run_status(&dir).unwrap();
    let RunStatus::Finished(summary) = &status else {
        panic!("expected finished, got {status:?}");
    };
    // The first evaluation has the higher EMA accuracy.
    assert_eq!(summary.best_eval().map(|e| e.step), Some(100));

    let message = status.describe(&dir);
    let lines: Vec<&str> = message.lines().collect();
    assert_eq!(lines[0], format!("run {} has finished", dir.display()));
    assert_eq!(lines[1], "ended: completed at step 200/200");
    assert_eq!(
        lines[2],
        "last train (step 200): loss 2.0000 (Lx 0.2500 Lu 0.5000 Lc 1.2500), mask 75.0%, \
         pseudo-label acc 90.0%, lr 0.02990"
    );
    assert_eq!(
        lines[3],
        "last eval (step 200): top-1 EMA 39.00%, raw 41.00%, top-5 EMA 89.50%, loss EMA 1.5000"
    );
    assert_eq!(lines[4], "top-1 over 2 evaluations:");
    // Medians of two values: (40.5 + 39.0) / 2 and (38.25 + 41.0) / 2 = 39.625, printed with
    // round-half-to-even.
    assert_eq!(
        lines[5],
        "  EMA best 40.50% (step 100), last 39.00%, median of last 5 39.75%"
    );
    assert_eq!(
        lines[6],
        "  raw best 41.00% (step 200), last 41.00%, median of last 5 39.62%"
    );
    assert_eq!(lines.len(), 7);
}

#[test]
fn resume_record_supersedes_later_records() {
    let dir = run_dir("resumed");
    let resume = r#"{"kind":"resume","step":100,"time_ns":3}"#;
    write_metrics(&dir, &[EVAL_1, TRAIN, EVAL_2, END, resume]);
    let summary = read_summary(&dir.join(METRICS_FILE)).unwrap();
    // The evaluation at step 200 and the end record came before the resume from step 100.
    assert_eq!(summary.evals.len(), 1);
    assert_eq!(summary.evals[0].step, 100);
    assert!(summary.end.is_none());
    assert!(summary.last_train.is_none());
}

#[test]
fn broken_metrics_line_is_reported() {
    let dir = run_dir("broken");
    write_metrics(&dir, &[TRAIN, "{\"kind\":\"eval\",\"step\":\"late\"}", END]);
    let err = run_status(&dir).unwrap_err();
    let message = err.to_string();
    assert!(message.contains("line 2"), "{message}");
    assert!(message.contains("metrics.jsonl"), "{message}");
}

#[test]
fn paths_in_run_dir() {
    let dir = RunDir::new("runs/a");
    assert_eq!(dir.metrics_path(), Path::new("runs/a/metrics.jsonl"));
    assert_eq!(dir.log_path(), Path::new("runs/a/train.log"));
    assert_eq!(
        dir.supervisor_pid_path(),
        Path::new("runs/a/supervisor.pid")
    );
}
