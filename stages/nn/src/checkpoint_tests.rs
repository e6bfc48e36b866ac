//! Round trips and every kind of mismatch of the safetensors checkpoint I/O.

use super::*;
use crate::{Tensor, ThreadPool, WideResNetConfig};
use safetensors::tensor::serialize;

fn config(widen: usize) -> WideResNetConfig {
    WideResNetConfig {
        depth: 10,
        widen,
        num_classes: 3,
        proj_dim: 4,
    }
}

fn trained_model(seed: u64) -> WideResNet {
    let pool = ThreadPool::new(1).unwrap();
    let mut model = WideResNet::new(config(1), seed).unwrap();
    let input = Tensor::new(
        &[2, 3, 8, 8],
        (0..384).map(|i| (i as f32 * 0.37).sin()).collect(),
    )
    .unwrap();
    model.forward_train(&pool, &input).unwrap();
    model
}

fn temp_path(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("ccssl-nn-checkpoint-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

/// Named f32 tensors.
type Named = Vec<(String, Vec<f32>)>;

/// Parameters, buffers and counters of a model, for equality checks.
fn snapshot(model: &WideResNet) -> (Named, Named, Vec<i64>) {
    let params = model
        .named_parameters()
        .into_iter()
        .map(|(n, p)| (n, p.value.clone()))
        .collect();
    let buffers = model
        .named_buffers()
        .into_iter()
        .map(|(n, b)| (n, b.to_vec()))
        .collect();
    let counters = model
        .named_batch_norms()
        .iter()
        .map(|(_, bn)| bn.num_batches_tracked)
        .collect();
    (params, buffers, counters)
}

#[test]
fn file_round_trip_restores_everything() {
    let source = trained_model(1);
    let path = temp_path("round_trip.safetensors");
    save_safetensors(&source, &path).unwrap();
    let mut target = WideResNet::new(config(1), 2).unwrap();
    assert_ne!(snapshot(&source), snapshot(&target));
    load_safetensors(&mut target, &path).unwrap();
    assert_eq!(snapshot(&source), snapshot(&target));
    assert_eq!(
        snapshot(&target).2[0],
        1,
        "num_batches_tracked after one training batch"
    );
}

#[test]
fn stored_names_dtypes_and_shapes_follow_pytorch() {
    let bytes = to_safetensors_bytes(&trained_model(3)).unwrap();
    let file = SafeTensors::deserialize(&bytes).unwrap();
    let conv = file.tensor("block1.layer.0.conv1.weight").unwrap();
    assert_eq!(conv.dtype(), Dtype::F32);
    assert_eq!(conv.shape(), &[16, 16, 3, 3]);
    let counter = file.tensor("bn1.num_batches_tracked").unwrap();
    assert_eq!(counter.dtype(), Dtype::I64);
    assert!(counter.shape().is_empty());
    assert_eq!(counter.data(), &1i64.to_le_bytes());
    assert_eq!(
        file.tensor("block2.layer.0.bn1.running_var")
            .unwrap()
            .shape(),
        &[16]
    );
    assert!(file.tensor("fc2.bias").is_ok());
}

#[test]
fn wrong_width_lists_every_shape_mismatch() {
    let bytes = to_safetensors_bytes(&WideResNet::new(config(2), 0).unwrap()).unwrap();
    let mut model = WideResNet::new(config(1), 0).unwrap();
    let before = snapshot(&model);
    let err = load_safetensors_bytes(&mut model, &bytes).unwrap_err();
    let NnError::Checkpoint { mismatches, .. } = &err else {
        panic!("unexpected error {err}")
    };
    assert!(mismatches.contains(&CheckpointMismatch::Shape {
        name: "block1.layer.0.conv1.weight".into(),
        expected: vec![16, 16, 3, 3],
        actual: vec![32, 16, 3, 3],
    }));
    assert!(mismatches.contains(&CheckpointMismatch::Unexpected {
        name: "block1.layer.0.convShortcut.weight".into()
    }));
    assert!(
        mismatches.len() > 10,
        "only {} mismatches reported",
        mismatches.len()
    );
    assert!(
        err.to_string().contains(
            "block1.layer.0.conv1.weight: expected shape [16, 16, 3, 3], found [32, 16, 3, 3]"
        ),
        "{err}"
    );
    assert_eq!(
        before,
        snapshot(&model),
        "a failed load must leave the model unchanged"
    );
}

#[test]
fn missing_unexpected_and_dtype_mismatches_are_reported() {
    let model = WideResNet::new(config(1), 0).unwrap();
    let full = to_safetensors_bytes(&model).unwrap();
    let file = SafeTensors::deserialize(&full).unwrap();
    let f64_bytes = vec![0u8; 8 * 3];
    let mut tensors: Vec<(String, TensorView<'_>)> = file
        .tensors()
        .into_iter()
        .filter(|(n, _)| n != "fc.bias" && n != "fc2.weight")
        .collect();
    tensors.push((
        "fc2.weight".into(),
        TensorView::new(Dtype::F64, vec![3], &f64_bytes).unwrap(),
    ));
    tensors.push(("head.extra".into(), file.tensor("fc.weight").unwrap()));
    let bytes = serialize(tensors, None).unwrap();
    let mut target = WideResNet::new(config(1), 0).unwrap();
    let err = load_safetensors_bytes(&mut target, &bytes).unwrap_err();
    let NnError::Checkpoint { mismatches, .. } = &err else {
        panic!("unexpected error {err}")
    };
    assert!(
        mismatches.contains(&CheckpointMismatch::Missing {
            name: "fc.bias".into()
        }),
        "{err}"
    );
    assert!(
        mismatches.contains(&CheckpointMismatch::Unexpected {
            name: "head.extra".into()
        }),
        "{err}"
    );
    assert!(
        mismatches.contains(&CheckpointMismatch::Dtype {
            name: "fc2.weight".into(),
            expected: "F32".into(),
            actual: "F64".into()
        }),
        "{err}"
    );
    assert_eq!(mismatches.len(), 3, "{err}");
}

#[test]
fn unreadable_files_give_typed_errors() {
    let mut model = WideResNet::new(config(1), 0).unwrap();
    let err = load_safetensors_bytes(&mut model, b"not a safetensors file").unwrap_err();
    assert!(matches!(err, NnError::Format { .. }), "{err}");
    let path = temp_path("truncated.safetensors");
    let bytes = to_safetensors_bytes(&model).unwrap();
    std::fs::write(&path, &bytes[..bytes.len() / 2]).unwrap();
    let err = load_safetensors(&mut model, &path).unwrap_err();
    assert!(matches!(err, NnError::Format { .. }), "{err}");
    assert!(err.to_string().contains("truncated.safetensors"), "{err}");
    let missing = temp_path("does-not-exist.safetensors");
    let err = load_safetensors(&mut model, &missing).unwrap_err();
    assert!(matches!(err, NnError::Io { .. }), "{err}");
}
