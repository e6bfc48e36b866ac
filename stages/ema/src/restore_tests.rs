use std::fs;

use ccssl_nn::CheckpointMismatch;
use safetensors::tensor::SafeTensors;

use super::*;
use crate::contents::ema_bytes;
use crate::testutil;
use crate::{CheckpointFiles, Checkpoints};

/// Steps trained before the checkpoint in the round-trip tests.
const BEFORE: usize = 3;

fn checkpoint_after(steps: usize) -> (tempfile::TempDir, PathBuf, Step, Ema) {
    let run = tempfile::tempdir().unwrap();
    let (train, _) = testutil::data();
    let mut step = Step::new(testutil::step_config(1), 5).unwrap();
    let mut ema = testutil::ema_of(&step, 0.9);
    for k in 0..steps {
        testutil::run_step(&mut step, &train, k);
        testutil::update_ema(&mut ema, &step);
    }
    let dir = testutil::write_checkpoint(run.path(), &step, &ema);
    (run, dir, step, ema)
}

/// Returns the error of `result`. Models and steps have no `Debug`, so `unwrap_err` is
/// unavailable.
fn expect_error<T>(result: Result<T, CheckpointError>) -> CheckpointError {
    match result {
        Ok(_) => panic!("expected an error, got a value"),
        Err(err) => err,
    }
}

fn weights_of(model: &WideResNet) -> Vec<u8> {
    crate::model_bytes(model).unwrap()
}

#[test]
fn resume_continues_bit_exact() {
    let (run, _, mut uninterrupted, mut ema) = checkpoint_after(BEFORE);
    let (train, _) = testutil::data();

    let loaded = open_checkpoint(run.path()).unwrap();
    let mut resumed = loaded.restore_step(None).unwrap();
    let mut resumed_ema = loaded.restore_ema().unwrap();
    assert_eq!(resumed.steps_done(), BEFORE as u64);
    assert_eq!(resumed.learning_rate(), uninterrupted.learning_rate());
    assert_eq!(resumed_ema, ema);

    for k in BEFORE..BEFORE + 2 {
        testutil::run_step(&mut uninterrupted, &train, k);
        testutil::update_ema(&mut ema, &uninterrupted);
        testutil::run_step(&mut resumed, &train, k);
        testutil::update_ema(&mut resumed_ema, &resumed);
    }
    assert_eq!(
        weights_of(resumed.model()),
        weights_of(uninterrupted.model())
    );
    assert_eq!(
        resumed.optimizer().momentum_buffers(),
        uninterrupted.optimizer().momentum_buffers()
    );
    assert_eq!(resumed_ema, ema);
}

#[test]
fn checkpoint_before_first_step_resumes() {
    let (run, dir, _, _) = checkpoint_after(0);
    let bytes = fs::read(dir.join(OPTIMIZER_FILE)).unwrap();
    assert!(SafeTensors::deserialize(&bytes).unwrap().is_empty());

    let step = open_checkpoint(run.path())
        .unwrap()
        .restore_step(Some(2))
        .unwrap();
    assert!(step.optimizer().momentum_buffers().is_empty());
    assert_eq!(step.steps_done(), 0);
    assert_eq!(step.config().threads, 2);
}

#[test]
fn optimizer_file_names_buffers_after_parameters() {
    let (_run, dir, step, _) = checkpoint_after(1);
    let bytes = fs::read(dir.join(OPTIMIZER_FILE)).unwrap();
    let file = SafeTensors::deserialize(&bytes).unwrap();

    let params = step.model().named_parameters();
    assert_eq!(file.len(), params.len());
    for ((name, param), (buffer_name, buffer)) in
        params.iter().zip(step.optimizer().momentum_buffers())
    {
        assert_eq!(name, buffer_name);
        let view = file.tensor(name).unwrap();
        assert_eq!(view.shape(), param.shape.as_slice(), "{name}");
        let first = f32::from_le_bytes(view.data()[..4].try_into().unwrap());
        assert_eq!(first, buffer[0], "{name}");
    }
}

#[test]
fn ema_file_loads_into_wideresnet() {
    let (_run, dir, step, ema) = checkpoint_after(2);
    let mut model = WideResNet::new(*step.model().config(), 99).unwrap();
    ccssl_nn::load_safetensors(&mut model, &dir.join(EMA_FILE)).unwrap();

    for ((name, param), (ema_name, values)) in model.named_parameters().iter().zip(ema.params()) {
        assert_eq!(name, ema_name);
        assert_eq!(&param.value, values, "{name}");
    }
    for ((name, values), (ema_name, ema_values)) in model.named_buffers().iter().zip(ema.buffers())
    {
        assert_eq!(name, ema_name);
        assert_eq!(values, ema_values, "{name}");
    }
    // Two training steps, each one forward pass: BatchNorm counters are copied, not averaged.
    assert_eq!(model.named_batch_norms()[0].1.num_batches_tracked, 2);
    // The averaged weights differ from the online ones after two steps of decay 0.9.
    assert_ne!(weights_of(&model), weights_of(step.model()));
}

#[test]
fn ema_of_other_model_cannot_be_saved() {
    let (_run, _, step, _) = checkpoint_after(0);
    let ema =
        Ema::from_parts(0.9, vec![("conv1.weight".into(), vec![0.0; 3])], Vec::new()).unwrap();
    let err = ema_bytes(&ema, step.model()).unwrap_err();

    let CheckpointError::TensorMismatch { path, mismatches } = &err else {
        panic!("expected a tensor mismatch, got {err}");
    };
    assert_eq!(path, Path::new(EMA_FILE));
    assert!(matches!(
        &mismatches[0],
        CheckpointMismatch::Shape { name, actual, .. } if name == "conv1.weight" && actual == &[3]
    ));
    assert!(
        err.to_string()
            .contains("block1.layer.0.bn1.weight: missing"),
        "{err}"
    );
}

#[test]
fn run_checkpoints_and_step_dirs_all_open() {
    let (run, dir, _, _) = checkpoint_after(1);
    for path in [
        run.path().to_owned(),
        run.path().join("checkpoints"),
        dir.clone(),
    ] {
        let loaded = open_checkpoint(&path).unwrap();
        assert_eq!(
            loaded.dir.canonicalize().unwrap(),
            dir.canonicalize().unwrap()
        );
        assert_eq!(loaded.state.step, 1);
    }
}

#[test]
fn directory_without_checkpoint_is_not_found() {
    let empty = tempfile::tempdir().unwrap();
    let err = open_checkpoint(empty.path()).unwrap_err();
    assert!(matches!(err, CheckpointError::NotFound(_)), "{err}");

    let missing = empty.path().join("nope");
    let err = open_checkpoint(&missing).unwrap_err();
    assert!(matches!(err, CheckpointError::Io { .. }), "{err}");
    assert!(err.to_string().contains("nope"), "{err}");
}

#[test]
fn truncated_model_file_is_named() {
    let (run, dir, _, _) = checkpoint_after(1);
    let path = dir.join(MODEL_FILE);
    let bytes = fs::read(&path).unwrap();
    fs::write(&path, &bytes[..bytes.len() / 2]).unwrap();

    let err = open_checkpoint(run.path()).unwrap_err();
    assert!(matches!(err, CheckpointError::SizeMismatch { .. }), "{err}");
    assert!(err.to_string().contains(MODEL_FILE), "{err}");
}

#[test]
fn corrupt_ema_file_is_named() {
    let (run, dir, _, _) = checkpoint_after(1);
    let path = dir.join(EMA_FILE);
    let mut bytes = fs::read(&path).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0x40;
    fs::write(&path, bytes).unwrap();

    let err = open_checkpoint(run.path()).unwrap_err();
    assert!(
        matches!(err, CheckpointError::ChecksumMismatch { .. }),
        "{err}"
    );
    assert!(err.to_string().contains(EMA_FILE), "{err}");
}

#[test]
fn missing_optimizer_file_is_named() {
    let (run, dir, _, _) = checkpoint_after(1);
    fs::remove_file(dir.join(OPTIMIZER_FILE)).unwrap();

    let err = open_checkpoint(run.path()).unwrap_err();
    assert!(
        matches!(&err, CheckpointError::MissingFile(p) if p.ends_with(OPTIMIZER_FILE)),
        "{err}"
    );
}

/// Files that pass their checksums but hold tensors of another model: the state records 4
/// classes, the files come from a 5-class model.
#[test]
fn wrong_shape_tensors_are_named() {
    let run = tempfile::tempdir().unwrap();
    let mut config = testutil::step_config(1);
    config.model.num_classes = 5;
    let step = Step::new(config, 1).unwrap();
    let ema = testutil::ema_of(&step, 0.9);
    let files = CheckpointFiles::build(step.model(), &ema, step.optimizer()).unwrap();
    let reference = testutil::trained_step(0, 1);
    let state = testutil::state_of(&reference, &ema);
    Checkpoints::new(run.path(), 2)
        .unwrap()
        .write(state, &files.named(), false)
        .unwrap();
    let loaded = open_checkpoint(run.path()).unwrap();

    for weights in [Weights::Raw, Weights::Ema] {
        let err = expect_error(loaded.load_model(weights));
        let CheckpointError::TensorMismatch { path, mismatches } = &err else {
            panic!("expected a tensor mismatch, got {err}");
        };
        assert!(path.ends_with(weights.file_name()), "{err}");
        assert_eq!(
            mismatches,
            &[
                CheckpointMismatch::Shape {
                    name: "fc.weight".into(),
                    expected: vec![4, 64],
                    actual: vec![5, 64],
                },
                CheckpointMismatch::Shape {
                    name: "fc.bias".into(),
                    expected: vec![4],
                    actual: vec![5],
                },
            ]
        );
    }
}

#[test]
fn wrong_optimizer_tensors_are_named() {
    let (_run, dir, step, _) = checkpoint_after(1);
    let loaded = LoadedCheckpoint {
        state: verify_dir(&dir).unwrap(),
        dir,
    };
    let mut other = step.model().named_parameters();
    other.retain(|(name, _)| name != "fc2.bias");
    let buffers: Vec<(String, Vec<u8>, Vec<usize>, Dtype)> = other
        .iter()
        .map(|(name, param)| {
            if name == "fc.bias" {
                (
                    name.clone(),
                    vec![0; 8 * param.value.len()],
                    param.shape.clone(),
                    Dtype::F64,
                )
            } else {
                (
                    name.clone(),
                    vec![0; 4 * param.value.len()],
                    param.shape.clone(),
                    Dtype::F32,
                )
            }
        })
        .collect();
    let views: Vec<(String, safetensors::tensor::TensorView<'_>)> = buffers
        .iter()
        .map(|(name, bytes, shape, dtype)| {
            let view = safetensors::tensor::TensorView::new(*dtype, shape.clone(), bytes).unwrap();
            (name.clone(), view)
        })
        .collect();
    let bytes = safetensors::tensor::serialize(views, None).unwrap();

    let err = read_momentum(&bytes, &loaded.file(OPTIMIZER_FILE), step.model()).unwrap_err();
    let message = err.to_string();
    assert!(message.contains(OPTIMIZER_FILE), "{message}");
    assert!(
        message.contains("fc.bias: expected dtype F32, found F64"),
        "{message}"
    );
    assert!(
        message.contains("fc2.bias: missing from the file"),
        "{message}"
    );
}

#[test]
fn garbage_with_valid_checksum_is_not_safetensors() {
    let run = tempfile::tempdir().unwrap();
    let reference = testutil::trained_step(0, 1);
    let ema = testutil::ema_of(&reference, 0.9);
    let state = testutil::state_of(&reference, &ema);
    let junk: &[u8] = b"this is not a safetensors file";
    Checkpoints::new(run.path(), 2)
        .unwrap()
        .write(
            state,
            &[(MODEL_FILE, junk), (EMA_FILE, junk), (OPTIMIZER_FILE, junk)],
            false,
        )
        .unwrap();
    let loaded = open_checkpoint(run.path()).unwrap();

    let err = expect_error(loaded.load_model(Weights::Ema));
    assert!(
        matches!(&err, CheckpointError::TensorFile { path, .. } if path.ends_with(EMA_FILE)),
        "{err}"
    );
    let err = expect_error(loaded.restore_step(None));
    assert!(
        matches!(&err, CheckpointError::TensorFile { path, .. } if path.ends_with(MODEL_FILE)),
        "{err}"
    );
}
