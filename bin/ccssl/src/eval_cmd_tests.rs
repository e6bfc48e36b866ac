use ccssl_ema::{DEFAULT_EVAL_BATCH, Evaluator};
use ccssl_loader::{ResizeFilter, generate_synthetic};

use super::*;
use crate::cmd_testutil::{self, spec};

fn args(checkpoint: &Path) -> EvalArgs {
    EvalArgs {
        checkpoint: checkpoint.to_owned(),
        raw: false,
        data: None,
        threads: Some(2),
        batch_size: DEFAULT_EVAL_BATCH,
        json: true,
    }
}

/// Runs the command and returns its exit code, stdout and stderr.
fn run_eval(args: &EvalArgs, env_data: Option<&str>) -> (ExitCode, String, String) {
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let code = run_with(args, env_data.map(OsString::from), &mut out, &mut err).unwrap();
    (
        code,
        String::from_utf8(out).unwrap(),
        String::from_utf8(err).unwrap(),
    )
}

/// Asserts that the JSON text `out` has `"key":value` with `value` printed exactly as
/// serde_json prints `expected`. The text is compared because serde_json's parser may round
/// the last bit of an f64.
fn assert_number(out: &str, key: &str, expected: f64) {
    let field = format!("\"{key}\":{}", serde_json::to_string(&expected).unwrap());
    assert!(out.contains(&field), "expected {field} in {out}");
}

fn json(text: &str) -> serde_json::Value {
    serde_json::from_str(text.trim()).unwrap_or_else(|e| panic!("{e}: {text}"))
}

#[test]
fn eval_reproduces_in_memory_ema_metrics() {
    let run = tempfile::tempdir().unwrap();
    let (_, ema, step) = cmd_testutil::write_run(run.path(), 4, None);
    let test = generate_synthetic(&spec(), Part::Test);
    let mut evaluator = Evaluator::new(
        *step.model().config(),
        step.config().normalization.labeled,
        DEFAULT_EVAL_BATCH,
        1,
    )
    .unwrap();
    evaluator.load_ema(&ema).unwrap();
    let expected = evaluator.evaluate(&test).unwrap();

    let (code, out, err) = run_eval(&args(run.path()), None);

    assert_eq!(code, ExitCode::SUCCESS, "{err}");
    let value = json(&out);
    assert_eq!(value["weights"], "ema");
    assert_eq!(value["step"], 4);
    assert_eq!(value["images"], 30);
    assert_number(&out, "top1", expected.top1);
    assert_number(&out, "top5", expected.top5);
    assert_number(&out, "loss", expected.loss);
}

#[test]
fn raw_flag_evaluates_online_model() {
    let run = tempfile::tempdir().unwrap();
    let (dir, _, step) = cmd_testutil::write_run(run.path(), 4, None);
    let test = generate_synthetic(&spec(), Part::Test);
    let online = ccssl_ema::open_checkpoint(&dir)
        .unwrap()
        .load_model(Weights::Raw)
        .unwrap();
    assert_eq!(
        ccssl_ema::model_bytes(&online).unwrap(),
        ccssl_ema::model_bytes(step.model()).unwrap()
    );
    let mut evaluator =
        Evaluator::with_model(online, step.config().normalization.labeled, 7, 1).unwrap();
    let expected = evaluator.evaluate(&test).unwrap();
    let mut raw = args(&dir);
    raw.raw = true;
    raw.batch_size = 7;

    let (code, out, err) = run_eval(&raw, None);

    assert_eq!(code, ExitCode::SUCCESS, "{err}");
    let value = json(&out);
    assert_eq!(value["weights"], "raw");
    assert_number(&out, "top1", expected.top1);
    assert_number(&out, "loss", expected.loss);
}

#[test]
fn text_output_names_weights_and_metrics() {
    let run = tempfile::tempdir().unwrap();
    cmd_testutil::write_run(run.path(), 1, None);
    let mut text = args(&run.path().join("checkpoints"));
    text.json = false;

    let (code, out, err) = run_eval(&text, None);

    assert_eq!(code, ExitCode::SUCCESS, "{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 6, "{out}");
    assert!(lines[0].starts_with("checkpoint: "), "{out}");
    assert!(lines[0].ends_with("step-00000001 (step 1)"), "{out}");
    assert_eq!(lines[1], "weights:    ema (ema.safetensors)");
    assert_eq!(lines[2], "test set:   synthetic, 30 images, 6 classes");
    assert!(
        lines[3].starts_with("top-1: ") && lines[3].ends_with(" %"),
        "{out}"
    );
    assert!(
        lines[4].starts_with("top-5: ") && lines[4].ends_with(" %"),
        "{out}"
    );
    assert!(lines[5].starts_with("loss: "), "{out}");
}

#[test]
fn missing_checkpoint_exits_2() {
    let run = tempfile::tempdir().unwrap();
    let missing = run.path().join("no-such-run");

    let (code, out, err) = run_eval(&args(&missing), None);

    assert_eq!(code, ExitCode::from(2));
    assert!(out.is_empty(), "{out}");
    assert!(err.starts_with("ccssl eval: error: "), "{err}");
    assert!(err.contains("no-such-run"), "{err}");
}

#[test]
fn empty_directory_exits_2() {
    let run = tempfile::tempdir().unwrap();

    let (code, _, err) = run_eval(&args(run.path()), None);

    assert_eq!(code, ExitCode::from(2));
    assert!(err.contains("no checkpoint found"), "{err}");
}

#[test]
fn corrupt_ema_file_exits_2_naming_it() {
    let run = tempfile::tempdir().unwrap();
    let (dir, _, _) = cmd_testutil::write_run(run.path(), 1, None);
    let path = dir.join(ccssl_ema::EMA_FILE);
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[100] ^= 1;
    std::fs::write(&path, bytes).unwrap();

    let (code, _, err) = run_eval(&args(run.path()), None);

    assert_eq!(code, ExitCode::from(2));
    assert!(err.contains("ema.safetensors"), "{err}");
    assert!(err.contains("altered or corrupted"), "{err}");
}

#[test]
fn zero_threads_exit_2() {
    let run = tempfile::tempdir().unwrap();
    let mut zero = args(run.path());
    zero.threads = Some(0);

    let (code, _, err) = run_eval(&zero, None);

    assert_eq!(code, ExitCode::from(2));
    assert!(err.contains("invalid --threads 0"), "{err}");
}

#[test]
fn data_root_is_ignored_for_synthetic_data() {
    let run = tempfile::tempdir().unwrap();
    cmd_testutil::write_run(run.path(), 1, None);

    let (code, out, err) = run_eval(&args(run.path()), Some("/data/elsewhere"));

    assert_eq!(code, ExitCode::SUCCESS, "{err}");
    assert!(err.contains("ignoring data root /data/elsewhere"), "{err}");
    assert_eq!(json(&out)["images"], 30);
}

#[test]
fn missing_cifar_root_exits_2_naming_data_flag() {
    let run = tempfile::tempdir().unwrap();
    let recorded = DatasetConfig::Cifar10 {
        root: run.path().join("recorded"),
        download: true,
        base_url: "http://127.0.0.1:9/".into(),
    };
    cmd_testutil::write_run(run.path(), 1, Some(recorded));
    let mut missing = args(run.path());
    missing.data = Some(run.path().join("cifar-missing"));

    let (code, _, err) = run_eval(&missing, Some("/ignored/because/flag/wins"));

    assert_eq!(code, ExitCode::from(2));
    assert!(err.contains("cifar-missing"), "{err}");
    assert!(err.contains("--data"), "{err}");
}

/// The real CIFAR-10 sample has 32x32 images and 10 classes. The fixture model was trained on
/// 10x10 images of 6 classes, so the command rejects that test set.
#[test]
fn test_set_of_other_size_exits_2() {
    let sample = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data/cifar10");
    let run = tempfile::tempdir().unwrap();
    cmd_testutil::write_run(
        run.path(),
        1,
        Some(DatasetConfig::cifar10_local(run.path().join("absent"))),
    );

    let (code, _, err) = run_eval(&args(run.path()), Some(sample.to_str().unwrap()));

    assert_eq!(code, ExitCode::from(2));
    assert!(err.contains("has 32x32 images"), "{err}");
    assert!(err.contains("trained on 10x10"), "{err}");
}

#[test]
fn data_root_replaces_recorded_roots() {
    let cifar = DatasetConfig::Cifar100 {
        root: "old".into(),
        download: true,
        base_url: "x".into(),
    };
    let (config, ignored) = with_root(&cifar, Some(Path::new("new")));
    assert_eq!(ignored, None);
    assert_eq!(
        config,
        DatasetConfig::Cifar100 {
            root: "new".into(),
            download: false,
            base_url: "x".into(),
        }
    );

    let folder = DatasetConfig::ImageFolder {
        root: "old/train".into(),
        test_root: Some("old/train/../test".into()),
        height: 32,
        width: 32,
        filter: ResizeFilter::Bilinear,
    };
    let (config, _) = with_root(&folder, Some(Path::new("/mnt/pets")));
    let DatasetConfig::ImageFolder {
        root, test_root, ..
    } = config
    else {
        panic!("expected ImageFolder, got {config:?}");
    };
    assert_eq!(root, PathBuf::from("/mnt/pets"));
    assert_eq!(test_root, Some(PathBuf::from("/mnt/pets/../test")));

    let (config, ignored) = with_root(&cifar, None);
    assert_eq!((config, ignored), (cifar, None));
}
