use std::path::Path;

use ccssl_loader::{Part, generate_synthetic};

use super::*;
use crate::cmd_testutil::{self, spec};

fn args(checkpoint: &Path, images: &[PathBuf]) -> PredictArgs {
    PredictArgs {
        checkpoint: checkpoint.to_owned(),
        images: images.to_vec(),
        raw: false,
        threads: Some(1),
        json: true,
    }
}

fn run_predict(args: &PredictArgs) -> (ExitCode, String, String) {
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let code = run_with(args, &mut out, &mut err).unwrap();
    (
        code,
        String::from_utf8(out).unwrap(),
        String::from_utf8(err).unwrap(),
    )
}

fn lines(out: &str) -> Vec<serde_json::Value> {
    out.lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}")))
        .collect()
}

fn solid(width: u32, height: u32, colour: [u8; 3]) -> image::RgbImage {
    image::RgbImage::from_pixel(width, height, image::Rgb(colour))
}

#[test]
fn top_classes_sorts_and_normalises() {
    let ranked = top_classes(&[0.0, 2.0, 1.0, 2.0], 3);

    let classes: Vec<usize> = ranked.iter().map(|r| r.class).collect();
    assert_eq!(classes, [1, 3, 2]);
    let sum = 1.0 + 2.0 * 2f64.exp() + 1f64.exp();
    assert!((ranked[0].score - 2f64.exp() / sum).abs() < 1e-12);
    assert!((ranked[2].score - 1f64.exp() / sum).abs() < 1e-12);
}

#[test]
fn top_classes_stops_at_class_count() {
    assert_eq!(top_classes(&[1.0, 0.0], 5).len(), 2);
}

#[test]
fn any_size_is_resized_to_model_input() {
    let run = tempfile::tempdir().unwrap();
    cmd_testutil::write_run(run.path(), 3, None);
    let colour = [200, 60, 90];
    let small = run.path().join("small.png");
    let large = run.path().join("large.png");
    let photo = run.path().join("photo.jpg");
    solid(10, 10, colour).save(&small).unwrap();
    solid(37, 23, colour).save(&large).unwrap();
    solid(64, 48, colour).save(&photo).unwrap();

    let (code, out, err) = run_predict(&args(run.path(), &[small.clone(), large, photo]));

    assert_eq!(code, ExitCode::SUCCESS, "{err}");
    let predictions = lines(&out);
    assert_eq!(predictions.len(), 3, "{out}");
    assert_eq!(predictions[0]["image"], small.display().to_string());
    // A solid colour stays the same colour at any size, so both PNGs predict alike.
    assert_eq!(predictions[0]["top"], predictions[1]["top"]);
    for prediction in &predictions {
        let top = prediction["top"].as_array().unwrap();
        assert_eq!(top.len(), 5, "{prediction}");
        let scores: Vec<f64> = top.iter().map(|t| t["score"].as_f64().unwrap()).collect();
        assert!(scores.windows(2).all(|w| w[0] >= w[1]), "{prediction}");
        assert!(scores.iter().sum::<f64>() <= 1.0 + 1e-9, "{prediction}");
        for entry in top {
            let class = entry["class"].as_u64().unwrap();
            assert_eq!(entry["name"], format!("pattern-{class}"));
        }
    }
}

/// A test image saved as a 10x10 PNG predicts what the EMA model computes for the same pixels
/// through the evaluation path.
#[test]
fn prediction_matches_evaluation_logits() {
    let run = tempfile::tempdir().unwrap();
    let (_, ema, step) = cmd_testutil::write_run(run.path(), 3, None);
    let test = generate_synthetic(&spec(), Part::Test);
    let path = run.path().join("test-0.png");
    image::RgbImage::from_raw(10, 10, test.image(0).to_vec())
        .unwrap()
        .save(&path)
        .unwrap();
    let mut evaluator = ccssl_ema::Evaluator::new(
        *step.model().config(),
        step.config().normalization.labeled,
        1,
        1,
    )
    .unwrap();
    evaluator.load_ema(&ema).unwrap();
    let pool = ThreadPool::new(1).unwrap();
    let mut input = Tensor::default();
    evaluator.table().fill(test.image(0), 10, 10, &mut input);
    let logits = evaluator
        .model_mut()
        .forward_eval(&pool, &input)
        .unwrap()
        .logits;
    let expected = top_classes(logits.data(), TOP);

    let (code, out, err) = run_predict(&args(run.path(), &[path]));

    assert_eq!(code, ExitCode::SUCCESS, "{err}");
    let top = lines(&out)[0]["top"].as_array().unwrap().clone();
    for (entry, want) in top.iter().zip(&expected) {
        assert_eq!(entry["class"].as_u64(), Some(want.class as u64));
        // Compared as text because serde_json's parser may round the last bit of an f64.
        let score = format!("\"score\":{}", serde_json::to_string(&want.score).unwrap());
        assert!(out.contains(&score), "expected {score} in {out}");
    }
}

#[test]
fn unreadable_images_are_named_and_exit_2() {
    let run = tempfile::tempdir().unwrap();
    cmd_testutil::write_run(run.path(), 1, None);
    let good = run.path().join("good.png");
    solid(5, 5, [1, 2, 3]).save(&good).unwrap();
    let not_image = run.path().join("notes.png");
    std::fs::write(&not_image, "not a picture").unwrap();
    let missing = run.path().join("missing.jpg");

    let (code, out, err) = run_predict(&args(
        run.path(),
        &[not_image.clone(), good.clone(), missing.clone()],
    ));

    assert_eq!(code, ExitCode::from(2));
    assert_eq!(lines(&out).len(), 1, "{out}");
    assert_eq!(lines(&out)[0]["image"], good.display().to_string());
    let errors: Vec<&str> = err.lines().collect();
    assert_eq!(errors.len(), 2, "{err}");
    assert!(errors[0].starts_with("ccssl predict: error: "), "{err}");
    assert!(
        errors[0].contains(&*not_image.display().to_string()),
        "{err}"
    );
    assert!(errors[1].contains(&*missing.display().to_string()), "{err}");
}

#[test]
fn text_output_lists_classes_per_image() {
    let run = tempfile::tempdir().unwrap();
    cmd_testutil::write_run(run.path(), 1, None);
    let image = run.path().join("x.png");
    solid(8, 8, [10, 200, 30]).save(&image).unwrap();
    let mut text = args(run.path(), std::slice::from_ref(&image));
    text.json = false;
    text.raw = true;

    let (code, out, err) = run_predict(&text);

    assert_eq!(code, ExitCode::SUCCESS, "{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 6, "{out}");
    assert_eq!(lines[0], image.display().to_string());
    for line in &lines[1..] {
        let fields: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(fields.len(), 3, "{line}");
        assert_eq!(fields[2], format!("pattern-{}", fields[0]));
        let score: f64 = fields[1].parse().unwrap();
        assert!((0.0..=1.0).contains(&score), "{line}");
    }
}

#[test]
fn missing_checkpoint_exits_2() {
    let run = tempfile::tempdir().unwrap();
    let (code, out, err) = run_predict(&args(&run.path().join("gone"), &[PathBuf::from("a.png")]));

    assert_eq!(code, ExitCode::from(2));
    assert!(out.is_empty());
    assert!(err.starts_with("ccssl predict: error: "), "{err}");
    assert!(err.contains("gone"), "{err}");
}
