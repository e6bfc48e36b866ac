//! `ViewSink`: the end of a data-only graph. It checks every `ViewBatch` slot, counts batches,
//! images and views, and folds every view byte in sequence order into one checksum, so runs
//! with different replica counts or restarts can be compared by their summaries.

use std::fmt::Write as _;

use ccssl_pipe::graph::Restart;
use ccssl_pipe::slot;
use ccssl_pipe::stage::{StageContext, StageError};
use serde::{Deserialize, Serialize};

fn one() -> u32 {
    1
}

/// Settings of `ViewSink(expect: Some(40))`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ViewSinkConfig {
    /// Must stay 1: the sink counts the whole stream.
    #[serde(default = "one")]
    pub replicas: u32,
    /// Must stay `Never`: a respawned sink would lose its counts.
    #[serde(default)]
    pub restart: Restart,
    /// Batches the sink must receive before its input closes; the stage fails otherwise,
    /// unless the run was stopped early.
    #[serde(default)]
    pub expect: Option<u64>,
}

/// 64-bit FNV-1a offset basis.
pub const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

/// Continues a 64-bit FNV-1a hash over `bytes`.
pub fn fnv1a(mut hash: u64, bytes: &[u8]) -> u64 {
    for &byte in bytes {
        hash = (hash ^ u64::from(byte)).wrapping_mul(FNV_PRIME);
    }
    hash
}

/// What a view sink saw, as written to `<stage>.summary` in the run directory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ViewSummary {
    /// Batches received.
    pub batches: u64,
    /// Labeled images received.
    pub labeled: u64,
    /// Unlabeled images received.
    pub unlabeled: u64,
    /// View images received: one per labeled image, two or three per unlabeled one.
    pub views: u64,
    /// FNV-1a over the bytes of every view, batches in sequence order, each batch as labeled
    /// weak, unlabeled weak, unlabeled strong, unlabeled contrast views.
    pub checksum: u64,
    /// Duplicates the merge dropped (batches a restarted replica sent twice).
    pub duplicates_dropped: u64,
    /// Whether the run was stopped before the loader finished.
    pub stopped_early: bool,
}

impl Default for ViewSummary {
    fn default() -> Self {
        ViewSummary {
            batches: 0,
            labeled: 0,
            unlabeled: 0,
            views: 0,
            checksum: FNV_OFFSET,
            duplicates_dropped: 0,
            stopped_early: false,
        }
    }
}

impl ViewSummary {
    /// Formats the summary as `key value` lines; the checksum in hexadecimal.
    pub fn to_text(&self) -> String {
        let mut text = String::new();
        let _ = write!(
            text,
            "batches {}\nimages {}\nlabeled {}\nunlabeled {}\nviews {}\nchecksum {:016x}\n\
             duplicates_dropped {}\nstopped_early {}\n",
            self.batches,
            self.labeled + self.unlabeled,
            self.labeled,
            self.unlabeled,
            self.views,
            self.checksum,
            self.duplicates_dropped,
            self.stopped_early
        );
        text
    }
}

/// Checks and counts every batch of the first input, then writes the summary.
pub fn run(ctx: &mut StageContext, config: &ViewSinkConfig) -> Result<(), StageError> {
    let summary_path = ctx.run_dir().join(format!("{}.summary", ctx.name()));
    let mut summary = ViewSummary::default();
    let (inputs, _, metrics) = ctx.ports();
    let Some(input) = inputs.first_mut() else {
        return Err(StageError::Failed(
            "a view sink needs one input edge".to_string(),
        ));
    };
    let edge = input.edge().to_string();
    let mut shape = None;
    while let Some(item) = input.next(metrics)? {
        let views = slot::decode_view_batch(&item).map_err(|source| StageError::Slot {
            edge: edge.clone(),
            source,
        })?;
        if views.seq != summary.batches {
            return Err(StageError::Sequence {
                edge,
                expected: summary.batches,
                found: views.seq,
            });
        }
        let this = (
            views.height,
            views.width,
            views.labels.len(),
            views.unlabeled_indices.len(),
            views.unlabeled_contrast.is_empty(),
        );
        if *shape.get_or_insert(this) != this {
            return Err(StageError::Failed(format!(
                "edge {edge}: batch {} has shape {this:?} (height, width, labeled, unlabeled, \
                 no contrast), unlike the first batch's {shape:?}",
                views.seq
            )));
        }
        for part in [
            &views.labeled_weak,
            &views.unlabeled_weak,
            &views.unlabeled_strong,
            &views.unlabeled_contrast,
        ] {
            summary.checksum = fnv1a(summary.checksum, part);
        }
        let image = views.image_bytes().max(1) as u64;
        summary.batches += 1;
        summary.labeled += views.labels.len() as u64;
        summary.unlabeled += views.unlabeled_indices.len() as u64;
        summary.views += (views.labeled_weak.len()
            + views.unlabeled_weak.len()
            + views.unlabeled_strong.len()
            + views.unlabeled_contrast.len()) as u64
            / image;
        item.release();
    }
    summary.duplicates_dropped = input.duplicates();
    summary.stopped_early = ctx.stop_requested();
    std::fs::write(&summary_path, summary.to_text())
        .map_err(|e| StageError::Failed(format!("cannot write {}: {e}", summary_path.display())))?;
    tracing::info!(
        batches = summary.batches,
        images = summary.labeled + summary.unlabeled,
        views = summary.views,
        checksum = format!("{:016x}", summary.checksum),
        "view sink summary written"
    );
    if let Some(expect) = config.expect
        && summary.batches != expect
        && !summary.stopped_early
    {
        return Err(StageError::Failed(format!(
            "received {} batches, expected {expect}",
            summary.batches
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fnv1a_matches_published_vectors() {
        // Test vectors of the FNV reference page for 64-bit FNV-1a.
        assert_eq!(fnv1a(FNV_OFFSET, b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a(FNV_OFFSET, b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(fnv1a(FNV_OFFSET, b"foobar"), 0x8594_4171_f739_67e8);
        // Hashing in pieces equals hashing the whole.
        assert_eq!(
            fnv1a(fnv1a(FNV_OFFSET, b"foo"), b"bar"),
            0x8594_4171_f739_67e8
        );
    }

    #[test]
    fn summary_text_lists_every_count() {
        let summary = ViewSummary {
            batches: 2,
            labeled: 4,
            unlabeled: 8,
            views: 28,
            checksum: 0xabc,
            duplicates_dropped: 1,
            stopped_early: false,
        };
        assert_eq!(
            summary.to_text(),
            "batches 2\nimages 12\nlabeled 4\nunlabeled 8\nviews 28\nchecksum 0000000000000abc\n\
             duplicates_dropped 1\nstopped_early false\n"
        );
    }
}
