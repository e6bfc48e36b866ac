use ccssl_loader::SyntheticSpec;

use super::*;

fn state(step: u64) -> CheckpointState {
    CheckpointState {
        format: STATE_FORMAT,
        step,
        total_steps: 100,
        seed: 7,
        graph_hash: "abc123".into(),
        best_top1: Some(50.0),
        best_step: Some(step),
        step_config: StepConfig::default(),
        next_lr: 0.03,
        ema_decay: 0.999,
        dataset: DatasetConfig::synthetic(&SyntheticSpec::default()),
        class_names: (0..10).map(|c| format!("class-{c}")).collect(),
        image_height: 32,
        image_width: 32,
        files: Vec::new(),
    }
}

fn write_step(ckpt: &Checkpoints, step: u64, best: bool) -> PathBuf {
    let model = vec![step as u8; 64];
    ckpt.write(
        state(step),
        &[("model.safetensors", &model), ("ema.safetensors", b"ema")],
        best,
    )
    .unwrap()
}

#[test]
fn md5_matches_rfc_1321_vector() {
    // Test suite of RFC 1321, appendix A.5.
    assert_eq!(md5_hex(b"abc"), "900150983cd24fb0d6963f7d28e17f72");
}

#[test]
fn written_checkpoint_verifies_and_is_last() {
    let run = tempfile::tempdir().unwrap();
    let ckpt = Checkpoints::new(run.path(), 3).unwrap();
    let dir = write_step(&ckpt, 10, true);

    assert_eq!(dir, run.path().join("checkpoints/step-00000010"));
    let (found, state) = ckpt.find(Which::Last).unwrap();
    assert_eq!(found, dir);
    assert_eq!(state.step, 10);
    assert_eq!(state.files.len(), 2);
    assert_eq!(state.files[0].bytes, 64);
    assert_eq!(ckpt.find(Which::Best).unwrap().0, dir);
}

#[test]
fn best_link_stays_on_best_step() {
    let run = tempfile::tempdir().unwrap();
    let ckpt = Checkpoints::new(run.path(), 1).unwrap();
    write_step(&ckpt, 10, true);
    write_step(&ckpt, 20, false);
    write_step(&ckpt, 30, false);

    assert_eq!(ckpt.find(Which::Best).unwrap().1.step, 10);
    assert_eq!(ckpt.find(Which::Last).unwrap().1.step, 30);
    // keep = 1 prunes step 20 but spares best (10) and last (30).
    assert!(run.path().join("checkpoints/step-00000010").is_dir());
    assert!(!run.path().join("checkpoints/step-00000020").exists());
    assert!(run.path().join("checkpoints/step-00000030").is_dir());
}

#[test]
fn prune_keeps_newest() {
    let run = tempfile::tempdir().unwrap();
    let ckpt = Checkpoints::new(run.path(), 2).unwrap();
    for step in [1, 2, 3, 4] {
        write_step(&ckpt, step, false);
    }
    let mut names: Vec<String> = fs::read_dir(ckpt.root())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names, ["last", "step-00000003", "step-00000004"]);
}

#[test]
fn truncated_file_is_named() {
    let run = tempfile::tempdir().unwrap();
    let ckpt = Checkpoints::new(run.path(), 3).unwrap();
    let dir = write_step(&ckpt, 5, false);
    let model = dir.join("model.safetensors");
    fs::write(&model, [5u8; 10]).unwrap();

    let err = ckpt.find(Which::Last).unwrap_err();
    assert!(
        matches!(
            err,
            CheckpointError::SizeMismatch {
                expected: 64,
                actual: 10,
                ..
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("model.safetensors"), "{err}");
}

#[test]
fn altered_byte_fails_checksum() {
    let run = tempfile::tempdir().unwrap();
    let ckpt = Checkpoints::new(run.path(), 3).unwrap();
    let dir = write_step(&ckpt, 5, false);
    let mut bytes = fs::read(dir.join("model.safetensors")).unwrap();
    bytes[3] ^= 1;
    fs::write(dir.join("model.safetensors"), bytes).unwrap();

    let err = verify_dir(&dir).unwrap_err();
    assert!(
        matches!(err, CheckpointError::ChecksumMismatch { .. }),
        "{err}"
    );
    assert!(err.to_string().contains("altered or corrupted"), "{err}");
}

#[test]
fn missing_file_is_named() {
    let run = tempfile::tempdir().unwrap();
    let ckpt = Checkpoints::new(run.path(), 3).unwrap();
    let dir = write_step(&ckpt, 5, false);
    fs::remove_file(dir.join("ema.safetensors")).unwrap();

    let err = verify_dir(&dir).unwrap_err();
    assert!(
        matches!(&err, CheckpointError::MissingFile(p) if p.ends_with("ema.safetensors")),
        "{err}"
    );
}

#[test]
fn edited_step_in_state_is_invalid() {
    let run = tempfile::tempdir().unwrap();
    let ckpt = Checkpoints::new(run.path(), 3).unwrap();
    let dir = write_step(&ckpt, 40, false);
    let text = fs::read_to_string(dir.join(STATE_FILE)).unwrap();
    assert!(text.contains("step: 40,"), "{text}");
    fs::write(dir.join(STATE_FILE), text.replace("step: 40,", "step: 45,")).unwrap();

    let err = verify_dir(&dir).unwrap_err();
    assert!(matches!(err, CheckpointError::InvalidState { .. }), "{err}");
    assert!(
        err.to_string()
            .contains("step 45 differs from the directory name step-00000040"),
        "{err}"
    );
    // Through the `last` link the real directory name is compared.
    let err = verify_dir(&run.path().join("checkpoints/last")).unwrap_err();
    assert!(matches!(err, CheckpointError::InvalidState { .. }), "{err}");
}

#[test]
fn garbled_state_is_invalid() {
    let run = tempfile::tempdir().unwrap();
    let ckpt = Checkpoints::new(run.path(), 3).unwrap();
    let dir = write_step(&ckpt, 5, false);
    fs::write(dir.join(STATE_FILE), "(step: oops").unwrap();

    let err = verify_dir(&dir).unwrap_err();
    assert!(matches!(err, CheckpointError::InvalidState { .. }), "{err}");
}

#[test]
fn empty_run_has_no_checkpoint() {
    let run = tempfile::tempdir().unwrap();
    let ckpt = Checkpoints::new(run.path(), 3).unwrap();
    let err = ckpt.find(Which::Last).unwrap_err();
    assert!(matches!(err, CheckpointError::NotFound(_)), "{err}");
}

#[test]
fn same_step_rewrite_keeps_valid_checkpoint() {
    let run = tempfile::tempdir().unwrap();
    let ckpt = Checkpoints::new(run.path(), 3).unwrap();
    write_step(&ckpt, 8, false);
    let dir = write_step(&ckpt, 8, true);

    assert_eq!(verify_dir(&dir).unwrap().step, 8);
    assert_eq!(ckpt.find(Which::Best).unwrap().0, dir);
}

#[test]
fn damaged_same_step_is_replaced() {
    let run = tempfile::tempdir().unwrap();
    let ckpt = Checkpoints::new(run.path(), 3).unwrap();
    let dir = write_step(&ckpt, 8, false);
    fs::write(dir.join("model.safetensors"), b"junk").unwrap();

    write_step(&ckpt, 8, false);
    assert_eq!(verify_dir(&dir).unwrap().files[0].bytes, 64);
}

#[test]
fn leftover_temporary_directory_is_removed() {
    let run = tempfile::tempdir().unwrap();
    let ckpt = Checkpoints::new(run.path(), 3).unwrap();
    let stale = ckpt.root().join(".tmp-step-00000003-1");
    fs::create_dir(&stale).unwrap();
    fs::write(stale.join("model.safetensors"), b"half").unwrap();

    write_step(&ckpt, 4, false);
    assert!(!stale.exists());
}

#[test]
fn file_name_with_slash_is_rejected() {
    let run = tempfile::tempdir().unwrap();
    let ckpt = Checkpoints::new(run.path(), 3).unwrap();
    let err = ckpt.write(state(1), &[("../x", b"1")], false).unwrap_err();
    assert!(matches!(err, CheckpointError::InvalidFileName(_)), "{err}");
}

#[test]
fn state_round_trips_through_ron() {
    let run = tempfile::tempdir().unwrap();
    let ckpt = Checkpoints::new(run.path(), 3).unwrap();
    let mut expected = state(12);
    expected.step_config.optimizer.lr = 0.017;
    expected.step_config.normalization.contrast = ViewNorm::CIFAR10;
    expected.next_lr = 0.012_345_678;
    let dir = ckpt.write(expected.clone(), &[("a", b"1")], false).unwrap();

    let read = verify_dir(&dir).unwrap();
    expected.files = read.files.clone();
    assert_eq!(read, expected);
}

#[test]
fn class_count_mismatch_is_invalid() {
    let run = tempfile::tempdir().unwrap();
    let ckpt = Checkpoints::new(run.path(), 3).unwrap();
    let mut bad = state(3);
    bad.class_names.pop();
    let dir = ckpt.write(bad, &[], false).unwrap();

    let err = verify_dir(&dir).unwrap_err();
    assert!(matches!(err, CheckpointError::InvalidState { .. }), "{err}");
    assert!(
        err.to_string()
            .contains("class_names has 9 names but the model has 10 classes"),
        "{err}"
    );
}

#[test]
fn invalid_model_depth_is_invalid() {
    let run = tempfile::tempdir().unwrap();
    let ckpt = Checkpoints::new(run.path(), 3).unwrap();
    let mut bad = state(3);
    bad.step_config.model.depth = 11;
    let dir = ckpt.write(bad, &[], false).unwrap();

    let err = verify_dir(&dir).unwrap_err();
    assert!(err.to_string().contains("step_config.model"), "{err}");
    assert!(err.to_string().contains("depth"), "{err}");
}

#[test]
fn older_format_is_rejected() {
    let run = tempfile::tempdir().unwrap();
    let ckpt = Checkpoints::new(run.path(), 3).unwrap();
    let dir = write_step(&ckpt, 5, false);
    // A state file as format 1 wrote it, without the settings added in format 2.
    let old = "(format: 1, step: 5, total_steps: 100, seed: 7, graph_hash: \"abc\", \
               best_top1: None, best_step: None, files: [])";
    fs::write(dir.join(STATE_FILE), old).unwrap();

    let err = verify_dir(&dir).unwrap_err();
    assert!(
        err.to_string().contains("format 1 is not supported"),
        "{err}"
    );
}
