//! The augmenter as a pipeline stage: decodes each `RawBatch` slot, computes its views with
//! worker threads and writes them as a `ViewBatch` slot with the same sequence number.
//!
//! The stage is stateless and may run as several replicas. Views depend only on the batch,
//! its seed and sequence number and the settings, never on the replica or thread count. An
//! input slot is released only after the output made from it is committed, so a respawned
//! replica redoes the one batch its predecessor had not finished.

use std::time::{Duration, Instant};

use ccssl_pipe::graph::Restart;
use ccssl_pipe::slot;
use ccssl_pipe::stage::{StageContext, StageError};
use serde::{Deserialize, Serialize};

use crate::{AugmentConfig, ContrastConfig, StrongConfig, WeakConfig, augment_batch};

/// How often the stage logs its throughput while running.
const REPORT_EVERY: Duration = Duration::from_secs(5);

/// Maximum worker threads of one augment process.
pub const MAX_THREADS: usize = 256;

fn one_thread() -> usize {
    1
}

fn one_replica() -> u32 {
    1
}

/// Settings of the augment stage as written in a graph:
/// `Augment(threads: 2, replicas: 2, restart: OnFailure(max: 3), contrast: (hue: 0.1))`.
/// `weak`, `strong` and `contrast` are the fields of [`AugmentConfig`].
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AugmentStageConfig {
    /// Weak view settings.
    #[serde(default)]
    pub weak: WeakConfig,
    /// Strong view settings.
    #[serde(default)]
    pub strong: StrongConfig,
    /// Contrast view settings; absent switches the contrast view off (plain FixMatch).
    #[serde(default)]
    pub contrast: Option<ContrastConfig>,
    /// Worker threads per process, 1 to [`MAX_THREADS`]. Default 1.
    #[serde(default = "one_thread")]
    pub threads: usize,
    /// Processes running this stage, 1 to 64; batch `seq` goes to replica `seq % replicas`.
    /// Default 1.
    #[serde(default = "one_replica")]
    pub replicas: u32,
    /// Restart policy for a failed replica. Default `Never`.
    #[serde(default)]
    pub restart: Restart,
}

impl AugmentStageConfig {
    /// The view settings alone.
    pub fn augment(&self) -> AugmentConfig {
        AugmentConfig {
            weak: self.weak.clone(),
            strong: self.strong.clone(),
            contrast: self.contrast.clone(),
        }
    }

    /// Bytes of one output slot for batches of `labeled` and `unlabeled` images of
    /// `height` x `width`.
    pub fn view_slot_bytes(
        &self,
        height: u32,
        width: u32,
        labeled: usize,
        unlabeled: usize,
    ) -> u64 {
        slot::view_batch_size(height, width, labeled, unlabeled, self.contrast.is_some()) as u64
    }
}

/// Images per second since `since`, for logs.
fn per_second(images: u64, since: Instant) -> u64 {
    (images as f64 / since.elapsed().as_secs_f64().max(1e-9)) as u64
}

/// Runs the augment stage: see the module documentation.
pub fn run(ctx: &mut StageContext, config: &AugmentStageConfig) -> Result<(), StageError> {
    let augment = config.augment();
    let threads = config.threads.clamp(1, MAX_THREADS);
    let (inputs, outputs, metrics) = ctx.ports();
    let (Some(input), Some(output)) = (inputs.first_mut(), outputs.first_mut()) else {
        return Err(StageError::Failed(
            "an augmenter needs one input and one output edge".to_string(),
        ));
    };
    let in_edge = input.edge().to_string();
    let out_edge = output.edge().to_string();
    tracing::info!(threads, resume_at = input.next_seq(), "augmenting");

    let started = Instant::now();
    let mut last_report = started;
    let (mut images, mut images_at_report, mut batches) = (0u64, 0u64, 0u64);
    let mut busy = Duration::ZERO;
    while let Some(item) = input.next(metrics)? {
        let work = Instant::now();
        let raw = slot::decode_raw_batch(&item).map_err(|source| StageError::Slot {
            edge: in_edge.clone(),
            source,
        })?;
        let views = augment_batch(&raw, &augment, threads).map_err(|err| {
            StageError::Failed(format!("edge {in_edge}: batch {}: {err}", item.seq()))
        })?;
        let augmented = work.elapsed();
        let mut out = output.reserve(item.seq(), metrics)?;
        let encode = Instant::now();
        let used =
            slot::encode_view_batch(&views, &mut out).map_err(|source| StageError::Slot {
                edge: out_edge.clone(),
                source,
            })?;
        out.commit(used);
        let spent = augmented + encode.elapsed();
        busy += spent;
        if let Some(metrics) = metrics {
            metrics.add_busy(spent);
            metrics.add_items_out(1);
        }
        // Released only now: a replica killed before this line redoes the batch.
        item.release();
        batches += 1;
        images += (raw.labels.len() + raw.unlabeled_indices.len()) as u64;
        if last_report.elapsed() >= REPORT_EVERY {
            tracing::info!(
                images_per_second = per_second(images - images_at_report, last_report),
                "augment throughput"
            );
            last_report = Instant::now();
            images_at_report = images;
        }
    }
    tracing::info!(
        batches,
        images,
        seconds = started.elapsed().as_secs_f64(),
        images_per_second = per_second(images, started),
        busy_images_per_second = (images as f64 / busy.as_secs_f64().max(1e-9)) as u64,
        "augment done"
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<AugmentStageConfig, ron::error::SpannedError> {
        ron::Options::default()
            .with_default_extension(
                ron::extensions::Extensions::UNWRAP_VARIANT_NEWTYPES
                    | ron::extensions::Extensions::IMPLICIT_SOME,
            )
            .from_str(text)
    }

    #[test]
    fn graph_entry_parses_with_defaults() {
        let config = parse("(threads: 2, replicas: 3, restart: OnFailure(max: 3))").unwrap();
        assert_eq!(config.threads, 2);
        assert_eq!(config.replicas, 3);
        assert_eq!(config.restart, Restart::OnFailure { max: 3 });
        assert_eq!(config.augment(), AugmentConfig::default());

        let config = parse("(contrast: (grayscale_probability: 0.5), strong: (n: 3))").unwrap();
        assert_eq!(config.threads, 1);
        assert_eq!(config.strong.n, 3);
        let contrast = config.contrast.expect("contrast view on");
        assert_eq!(contrast.grayscale_probability, 0.5);
        assert_eq!(contrast.flip_probability, 0.5);
    }

    #[test]
    fn unknown_field_is_rejected() {
        let message = parse("(thread: 2)").unwrap_err().to_string();
        assert!(message.contains("thread"), "{message}");
    }

    #[test]
    fn view_slot_fits_an_encoded_batch() {
        let mut raw = ccssl_pipe::batch::RawBatch {
            seq: 4,
            seed: 9,
            height: 8,
            width: 6,
            labels: vec![1, 2],
            labeled_indices: vec![10, 11],
            unlabeled_true_labels: vec![0; 5],
            unlabeled_indices: (0..5).collect(),
            ..Default::default()
        };
        raw.labeled_images = (0..2 * 8 * 6 * 3).map(|i| i as u8).collect();
        raw.unlabeled_images = (0..5 * 8 * 6 * 3).map(|i| (i * 7) as u8).collect();
        let config = parse("(contrast: (), weak: (pad: 2))").unwrap();
        let views = augment_batch(&raw, &config.augment(), 2).unwrap();
        let mut out = vec![0u8; config.view_slot_bytes(8, 6, 2, 5) as usize];

        let used = slot::encode_view_batch(&views, &mut out).unwrap();

        assert!(used <= out.len());
        assert!(out.len() >= (2 + 3 * 5) * 8 * 6 * 3);
        assert_eq!(slot::decode_view_batch(&out[..used]).unwrap(), views);
    }
}
