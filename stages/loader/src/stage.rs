//! The loader as a pipeline stage: reads the dataset once, then emits batch `seq` as a
//! `RawBatch` slot for `seq = 0, 1, 2, ...` until `total_steps` or a stop request.
//!
//! The stage is stateless: batch `seq` depends only on the run seed and `seq`, and the split
//! is saved in the run directory. A respawned loader counts the batches its predecessors
//! committed to the output rings and resumes at the next one, so nothing is lost or repeated,
//! and a resumed run starts at the step of its checkpoint (the launch's `first_seq`).

use std::path::Path;
use std::time::{Duration, Instant};

use ccssl_pipe::batch::RawBatch;
use ccssl_pipe::stage::{StageContext, StageError, first_seq_of};
use ccssl_pipe::{metrics, slot};

use crate::{DatasetConfig, LabeledSplit, Loader, LoaderConfig, Part, load_dataset};

/// How often the stage logs its throughput while running.
const REPORT_EVERY: Duration = Duration::from_secs(5);

/// Bytes of one `RawBatch` slot of `config`: `batch_size` labeled and `batch_size * mu`
/// unlabeled images of the dataset's image size.
pub fn raw_slot_bytes(config: &LoaderConfig) -> u64 {
    let (height, width) = config.image_size();
    let unlabeled = config.batch_size.saturating_mul(config.mu);
    slot::raw_batch_size(height, width, config.batch_size, unlabeled) as u64
}

/// Checks, without reading the dataset, that its root exists when nothing else can supply
/// it (CIFAR with `download: false`, ImageFolder). Relative roots are resolved against the
/// current directory. Returns a message that names the path and the ways to fix it.
pub fn check_root(config: &LoaderConfig) -> Result<(), String> {
    let (root, what) = match &config.dataset {
        DatasetConfig::Cifar10 {
            root,
            download: false,
            ..
        } => (
            root,
            "a folder with the CIFAR-10 binary batches or the official .tar.gz",
        ),
        DatasetConfig::Cifar100 {
            root,
            download: false,
            ..
        } => (
            root,
            "a folder with the CIFAR-100 binary files or the official .tar.gz",
        ),
        DatasetConfig::ImageFolder { root, .. } => (root, "a folder with one subfolder per class"),
        _ => return Ok(()),
    };
    if root.exists() {
        return Ok(());
    }
    let cwd = std::env::current_dir()
        .map(|d| d.display().to_string())
        .unwrap_or_else(|_| "?".to_string());
    let relative = if Path::new(root).is_relative() {
        format!(" (relative to the current directory {cwd})")
    } else {
        String::new()
    };
    Err(format!(
        "dataset root {:?} not found{relative}; expected {what}: pass --data DIR (or --set \
         stages.<stage>.dataset.root=\"DIR\"), or allow `download: true` for CIFAR",
        root.display().to_string()
    ))
}

/// Reads a CIFAR dataset that is already on disk and draws its split once, so a truncated
/// file, a label outside the class range or a `num_labeled` the classes cannot supply is
/// reported while the graph is validated, before any process starts. Returns the graph field
/// to blame and the message. Other datasets are checked when the stage opens them: ImageFolder
/// would decode every image twice, and synthetic data cannot be malformed.
pub fn check_dataset(config: &LoaderConfig) -> Result<(), (&'static str, String)> {
    let root = match &config.dataset {
        DatasetConfig::Cifar10 { root, .. } | DatasetConfig::Cifar100 { root, .. } => root,
        _ => return Ok(()),
    };
    if !root.exists() {
        // A missing root with `download: true` is fetched by the stage.
        return Ok(());
    }
    let train = load_dataset(&config.dataset, Part::Train)
        .map_err(|err| ("dataset.root", err.to_string()))?;
    load_dataset(&config.dataset, Part::Test).map_err(|err| ("dataset.root", err.to_string()))?;
    // Any seed: whether a split exists does not depend on it.
    LabeledSplit::draw(&train, config, 0).map_err(|err| ("num_labeled", err.to_string()))?;
    Ok(())
}

/// Images per second since `since`, for logs.
fn per_second(images: u64, since: Instant) -> u64 {
    (images as f64 / since.elapsed().as_secs_f64().max(1e-9)) as u64
}

/// Opens the loader (reading, maybe downloading, the dataset and drawing the split) while the
/// heartbeat is kept fresh, so a long download is not reported as a hung stage.
fn open_with_heartbeat(ctx: &StageContext, config: &LoaderConfig) -> Result<Loader, StageError> {
    metrics::beat_while(ctx.metrics(), || {
        Loader::open(config, ctx.seed(), ctx.run_dir())
    })
    .map_err(|err| StageError::Failed(err.to_string()))
}

/// Runs the loader stage: see the module documentation.
pub fn run(ctx: &mut StageContext, config: &LoaderConfig) -> Result<(), StageError> {
    let opened = Instant::now();
    let mut loader = open_with_heartbeat(ctx, config)?;
    tracing::info!(
        images = loader.dataset().len(),
        labeled = loader.split().labeled.len(),
        batch_size = loader.batch_size(),
        unlabeled_per_batch = loader.unlabeled_size(),
        seconds = opened.elapsed().as_secs_f64(),
        "dataset ready: {} training images found",
        loader.dataset().len()
    );

    let stride = u64::from(ctx.replicas());
    let (_, outputs, _) = ctx.ports();
    let Some(output) = outputs.first() else {
        return Err(StageError::Failed(
            "a loader needs one output edge".to_string(),
        ));
    };
    // The loader commits its batches in order, so the count committed so far tells where a
    // predecessor stopped. A resumed run starts at its checkpoint's step.
    let committed = output.pushed();
    let first = first_seq_of(ctx.launch().first_seq, ctx.replica(), ctx.replicas());
    let mut seq = first + stride * committed;
    if first > 0 {
        tracing::info!(first_seq = first, "resuming the run");
    }
    if committed > 0 {
        tracing::info!(committed, next_seq = seq, "resuming after a restart");
    }

    let started = Instant::now();
    let mut last_report = started;
    let mut images = 0u64;
    let mut batches = 0u64;
    let mut images_at_report = 0u64;
    let mut batch = RawBatch::default();
    while config.total_steps.is_none_or(|total| seq < total) {
        if ctx.stop_requested() {
            tracing::info!(next_seq = seq, "stop requested; closing the output");
            break;
        }
        let work = Instant::now();
        loader.fill_batch(seq, &mut batch);
        let filled = work.elapsed();
        let (_, outputs, metrics) = ctx.ports();
        let output = &mut outputs[0];
        let edge = output.edge().to_string();
        let mut out = output.reserve(seq, metrics)?;
        let encode = Instant::now();
        let used = slot::encode_raw_batch(&batch, &mut out)
            .map_err(|source| StageError::Slot { edge, source })?;
        out.commit(used);
        if let Some(metrics) = metrics {
            metrics.add_busy(filled + encode.elapsed());
            metrics.add_items_out(1);
            // Dataset images, not views, so the dashboard's img/s matches the loader's log.
            metrics.add_images_out((batch.labels.len() + batch.unlabeled_indices.len()) as u64);
        }
        batches += 1;
        images += (batch.labels.len() + batch.unlabeled_indices.len()) as u64;
        if last_report.elapsed() >= REPORT_EVERY {
            tracing::info!(
                seq,
                images_per_second = per_second(images - images_at_report, last_report),
                "loader throughput"
            );
            last_report = Instant::now();
            images_at_report = images;
        }
        seq += stride;
    }
    tracing::info!(
        batches,
        images,
        seconds = started.elapsed().as_secs_f64(),
        images_per_second = per_second(images, started),
        "loader done"
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::SyntheticSpec;
    use crate::testutil::TempDir;

    #[test]
    fn raw_slot_fits_an_encoded_batch() {
        let mut config = LoaderConfig::new(DatasetConfig::synthetic(&SyntheticSpec {
            height: 12,
            width: 20,
            ..SyntheticSpec::default()
        }));
        config.num_labeled = 30;
        config.batch_size = 5;
        config.mu = 3;
        let run = TempDir::new("stage-slot");
        let batch = Loader::open(&config, 3, run.path()).unwrap().batch(7);
        let mut out = vec![0u8; raw_slot_bytes(&config) as usize];

        let used = slot::encode_raw_batch(&batch, &mut out).unwrap();

        assert!(used <= out.len());
        // The slot holds the pixels of 5 + 15 images of 12 x 20 RGB plus a header.
        assert!(out.len() >= 20 * 12 * 20 * 3);
        assert_eq!(slot::decode_raw_batch(&out[..used]).unwrap(), batch);
    }

    #[test]
    fn missing_local_root_names_path_and_fix() {
        let run = TempDir::new("stage-root");
        let missing = run.path().join("no-such-cifar");
        let config = LoaderConfig::new(DatasetConfig::cifar10_local(&missing));

        let message = check_root(&config).unwrap_err();

        assert!(message.contains("no-such-cifar"), "{message}");
        assert!(message.contains("--data"), "{message}");
        assert_eq!(
            check_root(&LoaderConfig::new(DatasetConfig::cifar10_local(run.path()))),
            Ok(())
        );
    }

    #[test]
    fn downloadable_and_synthetic_roots_are_not_checked() {
        let download = DatasetConfig::Cifar10 {
            root: "/no/such/dir".into(),
            download: true,
            base_url: crate::OFFICIAL_BASE_URL.to_string(),
        };
        assert_eq!(check_root(&LoaderConfig::new(download)), Ok(()));
        let synthetic = DatasetConfig::synthetic(&SyntheticSpec::default());
        assert_eq!(check_root(&LoaderConfig::new(synthetic)), Ok(()));
    }
}
