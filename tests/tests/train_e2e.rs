//! End-to-end training on `graphs/smoke.ron` through `ccssl-run`: the run completes, writes
//! its run directory, and its last checkpoint restores to the EMA it was taken from: evaluated
//! in-process and by `ccssl eval`, it gives exactly the accuracy and loss logged at its step.

use std::process::Command;

use ccssl_ema::{MetricsRecord, Weights, open_checkpoint, read_records};
use ccssl_tests::{TempDir, ccssl_bin, repo_root};

#[test]
fn smoke_graph_trains_evaluates_and_checkpoints() {
    let out = TempDir::new("train-e2e");
    let status = Command::new(ccssl_bin("ccssl-run"))
        .current_dir(repo_root())
        .args(["graphs/smoke.ron", "--headless", "--out"])
        .arg(out.path())
        .output()
        .expect("run ccssl-run");
    let stdout = String::from_utf8_lossy(&status.stdout);
    assert!(
        status.status.success(),
        "ccssl-run failed: {stdout}\n{}",
        String::from_utf8_lossy(&status.stderr)
    );
    let run_dir = std::fs::read_dir(out.path())
        .expect("list out")
        .map(|e| e.expect("entry").path())
        .find(|p| p.is_dir())
        .expect("a run directory");
    for file in ["graph.ron", "split.json", "train.log", "metrics.jsonl"] {
        assert!(
            run_dir.join(file).is_file(),
            "{file} missing in {run_dir:?}"
        );
    }
    let last = run_dir.join("checkpoints").join("last");
    for file in [
        "model.safetensors",
        "ema.safetensors",
        "optimizer.safetensors",
        "state.ron",
    ] {
        assert!(last.join(file).is_file(), "{file} missing in {last:?}");
    }

    let records = read_records(&run_dir.join("metrics.jsonl")).expect("read metrics.jsonl");
    let evals: Vec<_> = records
        .iter()
        .filter_map(|r| match r {
            MetricsRecord::Eval(e) => Some(*e),
            _ => None,
        })
        .collect();
    assert_eq!(
        evals.iter().map(|e| e.step).collect::<Vec<_>>(),
        vec![10, 20, 30]
    );
    let trains = records
        .iter()
        .filter(|r| matches!(r, MetricsRecord::Train(_)))
        .count();
    assert_eq!(trains, 6, "one train record per 5 steps");
    assert!(
        records
            .iter()
            .any(|r| matches!(r, MetricsRecord::Summary(_))),
        "summary record missing"
    );
    // Stage output goes to the run's log; the EMA stage prints the summary there.
    let log = std::fs::read_to_string(run_dir.join("train.log")).expect("read train.log");
    assert!(log.contains("EMA top-1: best"), "summary not in train.log");
    assert!(
        log.contains("raw top-1: best"),
        "raw summary not in train.log"
    );

    // The checkpoint's EMA weights give the EMA accuracy logged at its step.
    let loaded = open_checkpoint(&last).expect("open last checkpoint");
    assert_eq!(loaded.state.step, 30);
    let model = loaded.load_model(Weights::Ema).expect("load EMA weights");
    let test = ccssl_loader::load_dataset(&loaded.state.dataset, ccssl_loader::Part::Test)
        .expect("test set");
    let mut evaluator = ccssl_ema::Evaluator::with_model(
        model,
        loaded.state.eval_normalization(),
        ccssl_ema::DEFAULT_EVAL_BATCH,
        1,
    )
    .expect("evaluator");
    let metrics = evaluator.evaluate(&test).expect("evaluate");
    assert_eq!(metrics.top1, evals[2].top1_ema);
    assert_eq!(metrics.loss, evals[2].loss_ema);

    // So does `ccssl eval` on the run directory, for the EMA and the raw weights. Its JSON
    // and metrics.jsonl both print the shortest text that parses back to the same f64, so
    // equal values mean bit-equal results.
    for (flags, top1, top5, loss) in [
        (
            &[][..],
            evals[2].top1_ema,
            evals[2].top5_ema,
            evals[2].loss_ema,
        ),
        (
            &["--raw"][..],
            evals[2].top1_raw,
            evals[2].top5_raw,
            evals[2].loss_raw,
        ),
    ] {
        let output = Command::new(ccssl_bin("ccssl"))
            .current_dir(repo_root())
            .args(["eval", "--json", "--checkpoint"])
            .arg(&run_dir)
            .args(flags)
            .output()
            .expect("run ccssl eval");
        assert!(
            output.status.success(),
            "ccssl eval {flags:?} failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        let report: serde_json::Value =
            serde_json::from_slice(&output.stdout).expect("ccssl eval --json prints JSON");
        assert_eq!(report["step"].as_u64(), Some(30), "{report}");
        assert_eq!(report["top1"].as_f64(), Some(top1), "{flags:?}: {report}");
        assert_eq!(report["top5"].as_f64(), Some(top5), "{flags:?}: {report}");
        assert_eq!(report["loss"].as_f64(), Some(loss), "{flags:?}: {report}");
    }
}
